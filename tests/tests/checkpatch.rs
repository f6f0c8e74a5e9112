//! Kernel style: every patch of `linux-patches/` passes the kernel's own
//! `scripts/checkpatch.pl` (from the vanilla tree of the series base) with
//! no error and no warning except the ones listed here with their reason.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use xtask::fetch::FetchOptions;
use xtask::manifest::Manifest;

/// Warnings accepted, each for a reason.
const ACCEPTED: &[(&str, &str)] = &[
    (
        "added, moved or deleted file(s), does MAINTAINERS need updating?",
        "the series adds files under arch/x86/cooperative/; a MAINTAINERS entry comes with upstreaming",
    ),
    (
        "LINUX_VERSION_CODE should be avoided",
        "one series serves both LTS lines: cocon's tty write() changed its signature in 6.6 (docs/porting.md)",
    ),
    (
        "Comparisons should place the constant on the right side",
        "checkpatch reads `LINUX_VERSION_CODE >= KERNEL_VERSION(...)` as a constant on the left",
    ),
    (
        "Do not crash the kernel unless it is absolutely unavoidable",
        "write_cr3(): a page directory the CPU cannot address (above 4 GiB) cannot be recovered from",
    ),
];

#[test]
#[ignore = "needs the linux 6.1.176 tree; run by `cargo xtask test`"]
fn every_patch_passes_checkpatch() {
    let manifest = Manifest::load_default().unwrap();
    let tree =
        xtask::fetch::fetch_kernel(&manifest, &manifest.series.base, &FetchOptions::default())
            .unwrap();
    let script = tree.path.join("scripts/checkpatch.pl");
    let dir = colinux_buildenv::paths::repo_root().join("linux-patches");
    let series = colinux_series::apply::load_series(&dir).unwrap();
    assert!(!series.is_empty());
    let mut problems = Vec::new();
    for patch in &series {
        let path = dir.join(&patch.entry.name);
        let out = Command::new("perl")
            .arg(&script)
            .args(["--no-tree", "--terse", "--showfile"])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines() {
            let bad = line.contains(": ERROR:") || line.contains(": WARNING:");
            if bad && !ACCEPTED.iter().any(|(w, _)| line.contains(w)) {
                problems.push(format!("{}: {line}", patch.entry.name));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "checkpatch found problems in the series:\n{}",
        problems.join("\n")
    );
}
