//! `apply` on small synthetic trees: every report case, and the refusals.
//!
//! The trees are tiny git repositories made by the same import code as real
//! kernel trees, so the whole path (series parsing, in-process apply, one
//! commit per patch, checkout, report) is exercised in milliseconds.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use colinux_series::apply::{apply_series, check_base, ApplyOptions, Outcome};
use colinux_series::tree::{import_vanilla, KernelTree};

fn numbered(n: usize, prefix: &str) -> String {
    (1..=n).map(|i| format!("{prefix} line {i}\n")).collect()
}

/// A tiny "kernel" tree: a.c (40 lines), b.h (10 lines), script.sh (exec).
fn tiny_tree(dir: &Path) -> KernelTree {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("a.c"), numbered(40, "a")).unwrap();
    std::fs::write(dir.join("sub/b.h"), numbered(10, "b")).unwrap();
    std::fs::write(dir.join("script.sh"), "#!/bin/sh\necho hi\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("script.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    import_vanilla(dir, "9.9.9", "local archive", "00").unwrap();
    KernelTree::open(dir).unwrap()
}

fn series(dir: &Path, patches: &[(&str, &str)], series_text: Option<&str>) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut list = String::new();
    for (name, body) in patches {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
        list.push_str(name);
        list.push('\n');
    }
    std::fs::write(dir.join("series"), series_text.unwrap_or(&list)).unwrap();
    dir.to_path_buf()
}

fn opts(series_dir: PathBuf) -> ApplyOptions {
    ApplyOptions {
        series_dir,
        force: false,
        max_fuzz: 2,
    }
}

const CHANGE_A5: &str = "From: Dev One <one@example.org>\nSubject: [PATCH] change a5\n\nBecause.\n---\n\
diff --git a/a.c b/a.c\n--- a/a.c\n+++ b/a.c\n@@ -3,5 +3,5 @@\n a line 3\n a line 4\n-a line 5\n+a line FIVE\n a line 6\n a line 7\n";

const ADD_FILE: &str =
    "Add a file.\n\n--- /dev/null\n+++ b/sub/new.h\n@@ -0,0 +1,2 @@\n+new 1\n+new 2\n";

#[test]
fn clean_series_makes_one_commit_per_patch_and_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tiny_tree(&tmp.path().join("t"));
    let s = series(
        &tmp.path().join("s"),
        &[
            ("0001-a.patch", CHANGE_A5),
            ("dir/0002-new.patch", ADD_FILE),
        ],
        None,
    );
    let r = apply_series(&tree, &opts(s.clone())).unwrap();
    assert!(r.ok(), "{}", r.render());
    assert_eq!(r.patches.len(), 2);
    assert!(
        r.patches.iter().all(|p| p.outcome == Outcome::Clean),
        "{}",
        r.render()
    );
    assert!(std::fs::read_to_string(tree.path.join("a.c"))
        .unwrap()
        .contains("a line FIVE\n"));
    assert_eq!(
        std::fs::read_to_string(tree.path.join("sub/new.h")).unwrap(),
        "new 1\nnew 2\n"
    );
    // One commit per patch, carrying the author and subject of the patch.
    let repo = tree.repo().unwrap();
    let head = repo.find_commit(r.head).unwrap();
    assert_eq!(head.summary(), Some("dir/0002-new.patch"));
    assert!(head.message().unwrap().contains("Add a file."));
    let first = head.parent(0).unwrap();
    assert_eq!(first.summary(), Some("change a5"));
    assert_eq!(first.author().name(), Some("Dev One"));
    assert_eq!(first.parent(0).unwrap().id(), tree.vanilla().unwrap());
    // Applying again changes nothing and writes nothing.
    let mtime = std::fs::metadata(tree.path.join("a.c"))
        .unwrap()
        .modified()
        .unwrap();
    let again = apply_series(&tree, &opts(s)).unwrap();
    assert!(again.unchanged);
    assert_eq!(again.head, r.head);
    assert_eq!(
        std::fs::metadata(tree.path.join("a.c"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
}

#[test]
fn offsets_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tiny_tree(&tmp.path().join("t"));
    // The hunk claims line 20 but "a line 5" context is at line 3.
    let moved = CHANGE_A5.replace("@@ -3,5 +3,5 @@", "@@ -20,5 +20,5 @@");
    let s = series(&tmp.path().join("s"), &[("m.patch", &moved)], None);
    let r = apply_series(&tree, &opts(s)).unwrap();
    assert!(r.ok(), "{}", r.render());
    match &r.patches[0].outcome {
        Outcome::Moved {
            max_offset,
            max_fuzz,
            details,
        } => {
            assert_eq!(*max_offset, 17);
            assert_eq!(*max_fuzz, 0);
            assert!(details[0].contains("a.c"), "{details:?}");
        }
        other => panic!("expected Moved, got {other:?}"),
    }
    assert!(r.render().contains("offset"), "{}", r.render());
}

#[test]
fn already_applied_patch_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tiny_tree(&tmp.path().join("t"));
    let s = series(
        &tmp.path().join("s"),
        &[
            ("1.patch", CHANGE_A5),
            ("2.patch", CHANGE_A5),
            ("3.patch", ADD_FILE),
        ],
        None,
    );
    let r = apply_series(&tree, &opts(s)).unwrap();
    assert!(!r.ok());
    assert_eq!(r.patches[0].outcome, Outcome::Clean);
    assert_eq!(r.patches[1].outcome, Outcome::AlreadyApplied);
    assert_eq!(r.not_attempted, vec!["3.patch".to_string()]);
    // The tree stays at the last patch that applied, like quilt.
    assert_eq!(tree.head().unwrap(), r.patches[0].commit.unwrap());
    assert!(r.render().contains("ALREADY APPLIED"), "{}", r.render());
}

#[test]
fn failed_hunk_is_reported_with_file_and_context() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tiny_tree(&tmp.path().join("t"));
    let bad = "--- a/sub/b.h\n+++ b/sub/b.h\n@@ -2,3 +2,3 @@\n b line 2\n-b line 3 (not there)\n+b line three\n b line 4\n";
    let s = series(&tmp.path().join("s"), &[("bad.patch", bad)], None);
    let r = apply_series(&tree, &opts(s)).unwrap();
    assert!(!r.ok());
    let text = r.render();
    match &r.patches[0].outcome {
        Outcome::Failed(why) => {
            assert!(why.contains("sub/b.h"), "{why}");
            assert!(why.contains("b line 3 (not there)"), "{why}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(text.contains("FAILED"), "{text}");
    assert_eq!(tree.head().unwrap(), tree.vanilla().unwrap());
}

#[test]
fn malformed_series_and_patches_name_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tiny_tree(&tmp.path().join("t"));
    // An unknown option in the series file.
    let s = series(
        &tmp.path().join("s1"),
        &[("1.patch", CHANGE_A5)],
        Some("# c\n1.patch -X\n"),
    );
    let e = apply_series(&tree, &opts(s)).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("series:2"), "{msg}");
    // A series line naming a missing patch.
    let s = series(&tmp.path().join("s2"), &[], Some("\nmissing.patch\n"));
    let msg = format!("{:#}", apply_series(&tree, &opts(s)).unwrap_err());
    assert!(
        msg.contains("series:2") && msg.contains("missing.patch"),
        "{msg}"
    );
    // A hunk header that does not parse, on line 4 of the patch.
    let broken = "x\n--- a/a.c\n+++ b/a.c\n@@ -1,2 +1,2 @ oops\n a line 1\n";
    let s = series(&tmp.path().join("s3"), &[("broken.patch", broken)], None);
    let msg = format!("{:#}", apply_series(&tree, &opts(s)).unwrap_err());
    assert!(msg.contains("broken.patch:4"), "{msg}");
    // A hunk cut short by the end of the file.
    let short = "--- a/a.c\n+++ b/a.c\n@@ -1,3 +1,3 @@\n a line 1\n-a line 2\n";
    let s = series(&tmp.path().join("s4"), &[("short.patch", short)], None);
    let msg = format!("{:#}", apply_series(&tree, &opts(s)).unwrap_err());
    assert!(msg.contains("short.patch:"), "{msg}");
    // Nothing was applied by any of these.
    assert_eq!(tree.head().unwrap(), tree.vanilla().unwrap());
}

#[test]
fn refusals_dirty_tree_and_wrong_base() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tiny_tree(&tmp.path().join("t"));
    let accepted = vec![("00".to_string(), "local archive")];
    check_base(&tree, "9.9.9", &accepted, false).unwrap();
    let e = check_base(&tree, "6.1.176", &accepted, false).unwrap_err();
    assert!(format!("{e:#}").contains("based on 6.1.176"), "{e:#}");
    check_base(&tree, "6.1.176", &accepted, true).unwrap();
    let e = check_base(&tree, "9.9.9", &[("ff".to_string(), "debian")], false).unwrap_err();
    assert!(format!("{e:#}").contains("does not pin"), "{e:#}");
    // A local edit is never overwritten, even with force.
    std::fs::write(tree.path.join("a.c"), "edited\n").unwrap();
    let e = check_base(&tree, "9.9.9", &accepted, true).unwrap_err();
    assert!(format!("{e:#}").contains("a.c"), "{e:#}");
}

#[test]
fn a_directory_that_is_not_a_kernel_tree_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let e = KernelTree::open(tmp.path()).unwrap_err();
    assert!(format!("{e:#}").contains("not a kernel tree"), "{e:#}");
}

#[test]
fn concurrent_applies_to_one_tree_wait_for_each_other() {
    let tmp = tempfile::tempdir().unwrap();
    // The lock is named after the tree's full path: no other test shares it.
    let tree_dir = tmp.path().join("t");
    let tree = tiny_tree(&tree_dir);
    let s = series(
        &tmp.path().join("s"),
        &[
            ("0001-a.patch", CHANGE_A5),
            ("dir/0002-new.patch", ADD_FILE),
        ],
        None,
    );
    let heads: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                let dir = tree_dir.clone();
                scope.spawn(move || {
                    let t = KernelTree::open(&dir).unwrap();
                    apply_series(&t, &opts(s)).unwrap().head
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(heads.windows(2).all(|w| w[0] == w[1]), "{heads:?}");
    assert_eq!(tree.head().unwrap(), heads[0]);
    assert!(tree.dirty_paths().unwrap().is_empty());
}
