//! The in-process `apply` against `quilt push -a` (GNU patch) as the oracle,
//! on real kernel trees and a real series not written by this project:
//! Debian's kernel patches followed by Debian's PREEMPT_RT series.
//!
//! These need the cached kernel tree (downloaded once, ~140 MB) and quilt;
//! they are `#[ignore]` so a plain `cargo test` stays quick, and
//! `cargo xtask test` (CI) runs them with `--include-ignored`.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use colinux_series::apply::{apply_series, ApplyOptions, Outcome};
use xtask::fetch::{fetch_kernel, FetchOptions};
use xtask::manifest::Manifest;

fn oracle(version: &str) {
    colinux_buildenv::sysdeps::ensure("the quilt oracle", colinux_buildenv::sysdeps::QUILT_ORACLE)
        .unwrap();
    let manifest = Manifest::load_default().unwrap();
    let tree = fetch_kernel(&manifest, version, &FetchOptions::default()).unwrap();
    let (series, count) = xtask::bench::debian_combined_series(&manifest, version).unwrap();
    assert!(
        count > 100,
        "Debian's series for {version} has only {count} patches"
    );
    let scratch = tempfile::Builder::new()
        .prefix(&format!("oracle-{version}-"))
        .tempdir_in(colinux_buildenv::paths::cache_dir().unwrap())
        .unwrap();
    let ours = tree.scratch_clone(&scratch.path().join("ours")).unwrap();
    let theirs = tree.scratch_clone(&scratch.path().join("quilt")).unwrap();

    let report = apply_series(
        &ours,
        &ApplyOptions {
            series_dir: series.clone(),
            force: false,
            max_fuzz: 2,
        },
    )
    .unwrap();
    assert!(report.ok(), "{}", report.render());
    assert_eq!(report.patches.len(), count);
    xtask::bench::quilt_push_all(&theirs.path, &series).unwrap();

    let diffs =
        colinux_series::tree::compare_dirs(&ours.path, &theirs.path, &[".git", ".pc"], 20).unwrap();
    assert!(
        diffs.is_empty(),
        "trees differ from quilt's:\n{}",
        diffs.join("\n")
    );
    // The series really changed the tree, and every patch is its own commit.
    let changed = colinux_series::tree::compare_dirs(&ours.path, &tree.path, &[".git"], 1).unwrap();
    assert!(!changed.is_empty() || tree.head().unwrap() != tree.vanilla().unwrap());
    let repo = ours.repo().unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push(report.head).unwrap();
    assert_eq!(
        walk.count(),
        count + 1,
        "one commit per patch plus the vanilla commit"
    );
    let moved = report
        .patches
        .iter()
        .filter(|p| matches!(p.outcome, Outcome::Moved { .. }))
        .count();
    eprintln!(
        "linux {version}: {count} patches identical to quilt ({moved} applied with offset/fuzz)"
    );
}

#[test]
#[ignore = "needs the linux 6.1.176 tree and Debian's series; run by `cargo xtask test`"]
fn debian_series_on_6_1_176_matches_quilt() {
    oracle("6.1.176");
}

#[test]
#[ignore = "needs the linux 6.12.100 tree and Debian's series; run by `cargo xtask test`"]
fn debian_series_on_6_12_100_matches_quilt() {
    oracle("6.12.100");
}
