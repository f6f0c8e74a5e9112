//! Both LTS lines stay buildable: `linux-patches/` for the series base
//! (6.1.176) and `linux-patches-6.12.100/` for 6.12.100, picked by
//! `xtask::manifest::series_for`. The 6.12 series must be exactly what
//! `cargo xtask rebase --onto 6.12.100` makes of `linux-patches/` today (so it
//! never goes stale silently), and it must build a kernel with
//! `CONFIG_COOPERATIVE=y`.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use xtask::manifest::Manifest;
use xtask::manifest::{series_base, series_for};

const V2: &str = "6.12.100";

/// Every file under `dir` (relative path, bytes), sorted.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_path_buf();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn the_series_for_a_version_is_looked_up_by_convention() {
    let m = Manifest::load_default().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    assert_eq!(
        series_for(&m, root, &m.series.base).unwrap(),
        root.join("linux-patches")
    );
    // No linux-patches-<V>/: refused, with the command that makes it.
    let e = format!("{:#}", series_for(&m, root, V2).unwrap_err());
    assert!(
        e.contains("cargo xtask rebase --onto 6.12.100 --output linux-patches-6.12.100"),
        "{e}"
    );
    let dir = root.join("linux-patches-6.12.100");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("series"), "").unwrap();
    assert_eq!(series_for(&m, root, V2).unwrap(), dir);
    assert_eq!(series_base(&m, &dir), V2);
    assert_eq!(series_base(&m, &root.join("linux-patches")), m.series.base);
    // Unpinned versions are refused as such.
    let e = format!("{:#}", series_for(&m, root, "5.99.1").unwrap_err());
    assert!(e.contains("unknown kernel version"), "{e}");
    // The repository's own 6.12 line.
    assert_eq!(
        series_for(&m, &colinux_buildenv::paths::repo_root(), V2).unwrap(),
        colinux_buildenv::paths::repo_root().join("linux-patches-6.12.100")
    );
}

#[test]
#[ignore = "needs the linux trees; run by `cargo xtask test`"]
fn the_6_12_series_is_what_rebase_makes_of_linux_patches() {
    let (tmp, run) = colinux_tests::rebase_linux_patches(V2);
    assert!(run.finished(), "{}", run.render());
    let root = colinux_buildenv::paths::repo_root();
    let out = tmp.path().join("out");
    let committed = files(&root.join("linux-patches-6.12.100"));
    let fresh = files(&out);
    let names = |v: &[(PathBuf, Vec<u8>)]| v.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&committed),
        names(&fresh),
        "linux-patches-6.12.100/ is stale: run `cargo xtask rebase --onto 6.12.100 --output linux-patches-6.12.100`"
    );
    for ((name, want), (_, got)) in committed.iter().zip(&fresh) {
        assert!(
            want == got,
            "linux-patches-6.12.100/{} is stale: run `cargo xtask rebase --onto 6.12.100 --output linux-patches-6.12.100`",
            name.display()
        );
    }
}

#[test]
#[ignore = "builds linux 6.12.100; run by `cargo xtask test`"]
fn linux_6_12_builds_from_its_series() {
    let m = Manifest::load_default().unwrap();
    let out = xtask::build::build_kernel(&m, &xtask::build::BuildOptions::guest(&m, V2).unwrap())
        .unwrap();
    assert!(out.vmlinux.exists());
    let config = std::fs::read_to_string(&out.config).unwrap();
    assert!(
        config.lines().any(|l| l == "CONFIG_COOPERATIVE=y"),
        "{} lacks CONFIG_COOPERATIVE=y",
        out.config.display()
    );
}
