//! Mounts inside a directory we are about to delete.
//!
//! debootstrap mounts `/proc` and `/sys` (and, in some containers, binds
//! `/dev`) inside its target while it configures packages, and unmounts them
//! when it finishes. If it is killed or fails half-way they stay, and a
//! recursive delete of the target would then walk into the host's `/dev`
//! or `/sys`. So before deleting a tree we unmount whatever is mounted
//! under it, and refuse to delete it when something still is.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Mount points listed in `mountinfo` (the text of `/proc/self/mountinfo`)
/// that are `dir` or below it, deepest first.
pub fn under_in(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// `mountinfo` escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(oct, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount points at or below `dir` on this machine, deepest first.
pub fn under(dir: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .context("cannot read /proc/self/mountinfo")?;
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    Ok(under_in(&text, &dir))
}

/// Unmount everything mounted at or below `dir` (lazily, deepest first) and
/// check that nothing is left.
pub fn unmount_all_under(dir: &Path) -> Result<()> {
    let mounts = under(dir)?;
    for m in &mounts {
        tracing::warn!(
            "unmounting {} (left by an interrupted debootstrap)",
            m.display()
        );
        let status = Command::new("umount")
            .arg("--lazy")
            .arg(m)
            .status()
            .context("cannot run umount")?;
        if !status.success() {
            tracing::warn!("umount --lazy {} failed ({status})", m.display());
        }
    }
    let left = under(dir)?;
    if !left.is_empty() {
        bail!(
            "cannot unmount {} below {}; unmount it by hand before anything there is removed",
            left.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            dir.display()
        );
    }
    Ok(())
}

/// Delete the tree `dir` after unmounting whatever is mounted inside it
/// (nothing is deleted when something stays mounted).
pub fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    unmount_all_under(dir)?;
    std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 22 0:5 / /cache/rootfs/.bootstrap/tree/proc rw - proc proc rw
41 22 0:6 / /cache/rootfs/.bootstrap/tree/sys rw - sysfs sysfs rw
42 41 0:7 / /cache/rootfs/.bootstrap/tree/sys/fs/cgroup rw - cgroup2 cgroup rw
43 22 0:8 / /cache/rootfs/.bootstrap-other/proc rw - proc proc rw
44 22 0:9 / /mnt/with\\040space rw - tmpfs tmpfs rw
";

    #[test]
    fn finds_mounts_below_a_directory_deepest_first() {
        let got = under_in(INFO, Path::new("/cache/rootfs/.bootstrap"));
        assert_eq!(
            got,
            vec![
                PathBuf::from("/cache/rootfs/.bootstrap/tree/sys/fs/cgroup"),
                PathBuf::from("/cache/rootfs/.bootstrap/tree/proc"),
                PathBuf::from("/cache/rootfs/.bootstrap/tree/sys"),
            ]
        );
        assert!(under_in(INFO, Path::new("/cache/rootfs/tree")).is_empty());
        assert_eq!(
            under_in(INFO, Path::new("/mnt")),
            vec![PathBuf::from("/mnt/with space")]
        );
    }

    #[test]
    fn this_machine_has_no_mounts_in_a_fresh_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(under(dir.path()).unwrap().is_empty());
        let inner = dir.path().join("x");
        std::fs::create_dir(&inner).unwrap();
        remove_tree(&inner).unwrap();
        assert!(!inner.exists());
    }
}
