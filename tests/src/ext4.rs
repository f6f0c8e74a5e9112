//! Looking into ext4 images from the build machine after a test host run,
//! with e2fsprogs (no mount, no root).

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

/// `e2fsck -fn IMAGE`: its exit status (0: clean) and output.
pub fn fsck(image: &Path) -> (i32, String) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(image)
        .output()
        .expect("e2fsck (e2fsprogs)");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `debugfs -R REQUEST IMAGE`'s output (it prints errors on stderr and
/// exits 0 anyway, so both are returned together).
pub fn debugfs(image: &Path, request: &str) -> String {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(request)
        .arg(image)
        .output()
        .expect("debugfs (e2fsprogs)");
    assert!(out.status.success(), "debugfs -R {request:?}: {out:?}");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The contents of `path` in the image (`debugfs -R "cat PATH"`'s stdout).
pub fn cat(image: &Path, path: &str) -> String {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(image)
        .output()
        .unwrap();
    assert!(out.status.success(), "debugfs cat {path}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
