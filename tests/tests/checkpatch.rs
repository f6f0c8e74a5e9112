//! Kernel style: every patch of `linux-patches/` passes the kernel's own
//! `scripts/checkpatch.pl --strict` (from the vanilla tree of the series
//! base) with no error, warning or check except the ones listed here with
//! their reason.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use xtask::fetch::FetchOptions;
use xtask::manifest::Manifest;

/// Warnings and checks accepted, each for a reason.
const ACCEPTED: &[(&str, &str)] = &[
    (
        "added, moved or deleted file(s), does MAINTAINERS need updating?",
        "the series adds files under arch/x86/cooperative/, arch/x86/include/asm/, \
         include/uapi/linux/, drivers/tty/hvc/ and drivers/virtio/; a MAINTAINERS entry comes with upstreaming",
    ),
    (
        "Avoid CamelCase: <_Static_assert>",
        "the uapi ABI header checks its layout with C11's _Static_assert keyword (the kernel's \
         static_assert() macro is not available to the host and Rust users of the header); \
         checkpatch --no-tree cannot seed its list of known identifiers",
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
    let scratch = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    for patch in &series {
        let path = dir.join(&patch.entry.name);
        let out = Command::new("perl")
            .arg(&script)
            .args(["--no-tree", "--strict", "--terse", "--showfile"])
            .arg(&path)
            // --strict's CamelCase check writes a cache file into a git
            // working directory: run it where that harms nothing.
            .current_dir(scratch.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines() {
            let bad = line.contains(": ERROR:")
                || line.contains(": WARNING:")
                || line.contains(": CHECK:");
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
