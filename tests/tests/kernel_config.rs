//! Config fragments against the real kernel's Kconfig: an option that does
//! not survive `olddefconfig` fails the build, naming the option and the
//! fragment line that asked for it; a malformed fragment fails before any
//! work. Uses a build directory of its own (the cached build is untouched).

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use xtask::build::{build_kernel, BuildOptions};
use xtask::fetch::FetchOptions;
use xtask::manifest::Manifest;

fn opts(configs: &std::path::Path, build: &std::path::Path) -> BuildOptions {
    BuildOptions {
        version: "6.1.176".into(),
        fetch: FetchOptions::default(),
        series_dir: colinux_buildenv::paths::repo_root().join("linux-patches"),
        configs_dir: configs.to_path_buf(),
        base_config: "tinyconfig".into(),
        force: false,
        jobs: 2,
        build_dir: Some(build.to_path_buf()),
    }
}

/// The manifest, a temporary directory and its empty `configs/`.
fn setup() -> (Manifest, tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    (Manifest::load_default().unwrap(), tmp, configs)
}

#[test]
#[ignore = "needs the linux 6.1.176 tree and runs Kconfig; run by `cargo xtask test`"]
fn options_that_do_not_survive_are_named() {
    let (manifest, tmp, configs) = setup();
    std::fs::copy(
        colinux_buildenv::paths::repo_root().join("kernel-configs/cooperative.config"),
        configs.join("10-cooperative.config"),
    )
    .unwrap();
    // XEN needs PARAVIRT, which tinyconfig does not have; the other option
    // does not exist at all. Kconfig silently drops both.
    std::fs::write(
        configs.join("20-extra.config"),
        "# extra\nCONFIG_XEN=y\nCONFIG_COLINUX_NO_SUCH_OPTION=y\n",
    )
    .unwrap();
    let e = build_kernel(&manifest, &opts(&configs, &tmp.path().join("build"))).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("did not survive"), "{msg}");
    assert!(
        msg.contains("20-extra.config:2") && msg.contains("CONFIG_XEN=y"),
        "{msg}"
    );
    assert!(
        msg.contains("20-extra.config:3") && msg.contains("CONFIG_COLINUX_NO_SUCH_OPTION"),
        "{msg}"
    );
    assert!(
        !msg.contains("CONFIG_COOPERATIVE"),
        "the fragment's own options survive: {msg}"
    );
}

#[test]
#[ignore = "needs the linux 6.1.176 tree; run by `cargo xtask test`"]
fn malformed_fragment_fails_before_any_build() {
    let (manifest, tmp, configs) = setup();
    std::fs::write(
        configs.join("bad.config"),
        "CONFIG_PRINTK=y\nCONFIG_TTY = yes please\n",
    )
    .unwrap();
    let build = tmp.path().join("build");
    let e = build_kernel(&manifest, &opts(&configs, &build)).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("bad.config:2"), "{msg}");
    assert!(
        !build.join(".config").exists(),
        "no configuration was attempted"
    );
}
