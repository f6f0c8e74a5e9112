//! Bad input to `fetch-kernel`: unknown versions, checksum mismatches,
//! truncated archives, no route to any source.
//!
//! Everything here runs against a temporary manifest and a temporary cache
//! (one per test binary, set before anything reads it), so the real cache is
//! never touched.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use xtask::fetch::{fetch_kernel, obtain_archive, unpack_tar_xz, FetchOptions, SourceKind};
use xtask::manifest::Manifest;

fn temp_cache() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap().keep();
        // Set once, before any test of this binary reads it: every test
        // calls temp_cache() first.
        std::env::set_var("COLINUX_CACHE", &d);
        d
    })
}

/// A manifest whose one version points at sources that cannot work here:
/// a closed local port for kernel.org and a package Debian does not have.
fn broken_manifest(dir: &Path) -> Manifest {
    let text = r#"
[series]
base = "6.1.999"
[kernel."6.1.999"]
kernel_org = { url = "http://127.0.0.1:9/linux-6.1.999.tar.xz", sha256 = "0000000000000000000000000000000000000000000000000000000000000000" }
debian = { package = "colinux-no-such-package", version = "6.1.999-1", file = "linux_6.1.999.orig.tar.xz", sha256 = "1111111111111111111111111111111111111111111111111111111111111111" }
"#;
    let p = dir.join("kernels.toml");
    std::fs::write(&p, text).unwrap();
    Manifest::load(&p).unwrap()
}

/// The error `obtain_archive` gives for `version` with these options.
fn refused(
    m: &Manifest,
    version: &str,
    tarball: Option<std::path::PathBuf>,
    sources: Vec<SourceKind>,
) -> anyhow::Error {
    obtain_archive(m, version, &FetchOptions { tarball, sources }).unwrap_err()
}

#[test]
fn unknown_version_lists_the_pinned_ones() {
    temp_cache();
    let m = Manifest::load_default().unwrap();
    let e = fetch_kernel(&m, "6.1.999", &FetchOptions::default()).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("unknown kernel version")
            && msg.contains("6.1.176")
            && msg.contains("6.12.100"),
        "{msg}"
    );
}

#[test]
fn no_route_to_any_source_lists_what_was_tried() {
    let cache = temp_cache();
    let m = broken_manifest(cache);
    let e = refused(
        &m,
        "6.1.999",
        None,
        vec![
            SourceKind::Tarball,
            SourceKind::KernelOrg,
            SourceKind::Debian,
        ],
    );
    let msg = format!("{e:#}");
    assert!(
        msg.contains("could not get linux 6.1.999 from any source"),
        "{msg}"
    );
    assert!(
        msg.contains("kernel.org:") && msg.contains("127.0.0.1:9"),
        "{msg}"
    );
    assert!(msg.contains("debian:"), "{msg}");
    assert!(msg.contains("--tarball PATH"), "{msg}");
}

#[test]
fn local_archive_with_wrong_checksum_is_refused_and_kept() {
    let cache = temp_cache();
    let m = Manifest::load_default().unwrap();
    let bogus = cache.join("linux-6.1.176.tar.xz");
    std::fs::write(&bogus, b"not a kernel").unwrap();
    let e = refused(
        &m,
        "6.1.176",
        Some(bogus.clone()),
        vec![SourceKind::Tarball],
    );
    let msg = format!("{e:#}");
    assert!(
        msg.contains("matches no pinned archive") && msg.contains("9aad4025"),
        "{msg}"
    );
    assert!(bogus.exists(), "a user's own file is never deleted");
}

#[test]
fn corrupted_download_in_the_cache_is_deleted() {
    let cache = temp_cache();
    let m = broken_manifest(cache);
    // A cached "download" whose checksum does not match: deleted, then the
    // source is tried again (and fails here, having no route).
    let downloads = colinux_buildenv::paths::downloads_dir().unwrap();
    let cached = downloads.join("linux-6.1.999.tar.xz");
    std::fs::write(&cached, b"truncated").unwrap();
    let e = refused(&m, "6.1.999", None, vec![SourceKind::KernelOrg]);
    assert!(!cached.exists(), "the corrupt cached archive was deleted");
    assert!(format!("{e:#}").contains("kernel.org"), "{e:#}");
}

#[test]
fn truncated_and_corrupt_archives_are_reported() {
    let cache = temp_cache();
    // A valid .tar.xz cut in half.
    let src = cache.join("src");
    std::fs::create_dir_all(src.join("linux-1.0/dir")).unwrap();
    for i in 0..50 {
        let mut f = std::fs::File::create(src.join(format!("linux-1.0/dir/f{i}"))).unwrap();
        for j in 0..2000 {
            writeln!(f, "{i} {j} some text that xz will compress {}", i * j).unwrap();
        }
    }
    let archive = cache.join("linux-1.0.tar.xz");
    let status = std::process::Command::new("tar")
        .arg("-cJf")
        .arg(&archive)
        .arg("-C")
        .arg(&src)
        .arg("linux-1.0")
        .status()
        .unwrap();
    assert!(status.success());
    let out = cache.join("unpacked-ok");
    assert_eq!(unpack_tar_xz(&archive, &out).unwrap(), 51);
    assert!(
        out.join("dir/f7").exists(),
        "the top-level directory is stripped"
    );

    let bytes = std::fs::read(&archive).unwrap();
    let cut = cache.join("cut.tar.xz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let msg = format!(
        "{:#}",
        unpack_tar_xz(&cut, &cache.join("unpacked-cut")).unwrap_err()
    );
    assert!(
        msg.contains("corrupt or truncated") && msg.contains("cut.tar.xz"),
        "{msg}"
    );

    let garbage = cache.join("garbage.tar.xz");
    std::fs::write(&garbage, b"\xfd7zXZ\0 this is not xz").unwrap();
    let msg = format!(
        "{:#}",
        unpack_tar_xz(&garbage, &cache.join("unpacked-garbage")).unwrap_err()
    );
    assert!(msg.contains("garbage.tar.xz"), "{msg}");
}
