//! Apply tests, including byte-for-byte comparisons with `/usr/bin/patch`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

type Mem = MemTree;

fn tree(files: &[(&str, &str)]) -> Mem {
    files
        .iter()
        .map(|(p, c)| (p.to_string(), (c.as_bytes().to_vec(), 0o100644)))
        .collect()
}

fn run(t: &Mem, patch: &str, fuzz: usize) -> Result<Applied, ApplyError> {
    run_opts(t, patch, fuzz, false)
}

fn run_opts(t: &Mem, patch: &str, fuzz: usize, reverse: bool) -> Result<Applied, ApplyError> {
    let p = parse_patch(patch.as_bytes(), "test.patch").unwrap();
    apply(t, &p, 1, reverse, fuzz)
}

/// The tree after applying `changes`.
fn result_tree(t: &Mem, a: &Applied) -> Mem {
    let mut t = t.clone();
    let Ok(()) = apply_changes(&mut t, &a.changes);
    t
}

fn content(t: &Mem, path: &str) -> String {
    String::from_utf8(t[path].0.clone()).unwrap()
}

fn lines(range: std::ops::RangeInclusive<u32>) -> String {
    range.map(|i| format!("l{i}\n")).collect()
}

const SIMPLE: &str = "--- a/f\n+++ b/f\n@@ -4,7 +4,7 @@\n l4\n l5\n l6\n-l7\n+L7\n l8\n l9\n l10\n";

#[test]
fn exact_apply() {
    let t = tree(&[("f", &lines(1..=12))]);
    let a = run(&t, SIMPLE, 2).unwrap();
    let r = result_tree(&t, &a);
    assert_eq!(content(&r, "f"), lines(1..=6) + "L7\n" + &lines(8..=12));
    assert_eq!(a.hunks[0].offset, 0);
    assert_eq!(a.hunks[0].fuzz, 0);
}

#[test]
fn positive_and_negative_offsets() {
    let t = tree(&[("f", &(String::from("x\nx\nx\n") + &lines(1..=12)))]);
    let a = run(&t, SIMPLE, 0).unwrap();
    assert_eq!(a.hunks[0].offset, 3);
    assert_eq!(a.hunks[0].line, 7);
    let t = tree(&[("f", &lines(3..=12))]);
    let a = run(&t, SIMPLE, 0).unwrap();
    assert_eq!(a.hunks[0].offset, -2);
    assert!(content(&result_tree(&t, &a), "f").contains("l6\nL7\nl8\n"));
}

#[test]
fn fuzz_one_and_two() {
    // First context line differs: needs fuzz 1.
    let t = tree(&[("f", &lines(1..=12).replace("l4\n", "X4\n"))]);
    assert!(matches!(
        run(&t, SIMPLE, 0),
        Err(ApplyError::HunkFailed { .. })
    ));
    let a = run(&t, SIMPLE, 1).unwrap();
    assert_eq!(a.hunks[0].fuzz, 1);
    // The file's context line is kept, not the patch's.
    assert!(content(&result_tree(&t, &a), "f").starts_with("l1\nl2\nl3\nX4\nl5\nl6\nL7\n"));
    // Two context lines differ at both ends: needs fuzz 2.
    let t = tree(&[(
        "f",
        &lines(1..=12)
            .replace("l5\n", "X5\n")
            .replace("l10\n", "X10\n"),
    )]);
    assert!(run(&t, SIMPLE, 1).is_err());
    let a = run(&t, SIMPLE, 2).unwrap();
    assert_eq!(a.hunks[0].fuzz, 2);
    // Three differing context lines on one side cannot be fuzzed with 2.
    let t = tree(&[("f", &lines(1..=12).replace("l6\n", "X6\n"))]);
    assert!(run(&t, SIMPLE, 2).is_err());
}

#[test]
fn start_and_end_of_file_anchoring() {
    // A hunk at the start of the file (no leading context) may only match at line 1.
    let p = "--- a/f\n+++ b/f\n@@ -1,3 +1,4 @@\n+new\n l1\n l2\n l3\n";
    let t = tree(&[("f", &lines(1..=5))]);
    let r = result_tree(&t, &run(&t, p, 0).unwrap());
    assert_eq!(content(&r, "f"), String::from("new\n") + &lines(1..=5));
    let t = tree(&[("f", &(String::from("x\n") + &lines(1..=5)))]);
    assert!(run(&t, p, 0).is_err());
    // With fuzz 1 the prefix requirement is relaxed by one... still anchored.
    compare_with_gnu(&[("f", "x\nl1\nl2\nl3\nl4\n")], p, 1);
    compare_with_gnu(&[("f", "x\nl1\nl2\nl3\nl4\n")], p, 2);
    // A hunk at the end of file (no trailing context) may only match at EOF.
    let p = "--- a/f\n+++ b/f\n@@ -3,3 +3,4 @@\n l3\n l4\n l5\n+end\n";
    let t = tree(&[("f", &lines(1..=5))]);
    let r = result_tree(&t, &run(&t, p, 0).unwrap());
    assert_eq!(content(&r, "f"), lines(1..=5) + "end\n");
    let t = tree(&[("f", &(lines(1..=5) + "more\n"))]);
    assert!(run(&t, p, 0).is_err());
    compare_with_gnu(&[("f", &(lines(1..=5) + "more\n"))], p, 0);
    compare_with_gnu(&[("f", &(lines(1..=5) + "more\n"))], p, 1);
    compare_with_gnu(&[("f", &(lines(1..=5) + "more\n"))], p, 2);
    compare_with_gnu(&[("f", &(String::from("a\nb\n") + &lines(1..=5)))], p, 0);
}

#[test]
fn no_newline_at_eof_both_ways() {
    let add_nl = "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n";
    let t = tree(&[("f", "a\nb")]);
    let r = result_tree(&t, &run(&t, add_nl, 0).unwrap());
    assert_eq!(content(&r, "f"), "a\nb\n");
    compare_with_gnu(&[("f", "a\nb")], add_nl, 0);
    let drop_nl = "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n\\ No newline at end of file\n";
    let t = tree(&[("f", "a\nb\n")]);
    let r = result_tree(&t, &run(&t, drop_nl, 0).unwrap());
    assert_eq!(content(&r, "f"), "a\nc");
    compare_with_gnu(&[("f", "a\nb\n")], drop_nl, 0);
    // Appending after a last line without newline.
    let append = "--- a/f\n+++ b/f\n@@ -1,2 +1,3 @@\n a\n b\n+c\n";
    compare_with_gnu(&[("f", "a\nb")], append, 2);
    let append2 = "--- a/f\n+++ b/f\n@@ -1,2 +1,3 @@\n a\n b\n\\ No newline at end of file\n+c\n";
    compare_with_gnu(&[("f", "a\nb")], append2, 0);
}

#[test]
fn create_delete_rename_mode() {
    let t = tree(&[("old", "x\n"), ("gone", "1\n2\n"), ("m", "m\n")]);
    let p = "diff --git a/new b/new\nnew file mode 100755\n--- /dev/null\n+++ b/new\n@@ -0,0 +1,2 @@\n+a\n+b\n\
             diff --git a/gone b/gone\ndeleted file mode 100644\n--- a/gone\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-1\n-2\n\
             diff --git a/old b/renamed\nsimilarity index 100%\nrename from old\nrename to renamed\n\
             diff --git a/m b/m\nold mode 100644\nnew mode 100755\n";
    let a = run(&t, p, 0).unwrap();
    let r = result_tree(&t, &a);
    assert_eq!(r["new"], (b"a\nb\n".to_vec(), 0o100755));
    assert!(!r.contains_key("gone"));
    assert!(!r.contains_key("old"));
    assert_eq!(r["renamed"], (b"x\n".to_vec(), 0o100644));
    assert_eq!(r["m"], (b"m\n".to_vec(), 0o100755));
    // Creating an existing file fails; patching a missing one fails.
    let t2 = tree(&[("new", "z\n")]);
    assert!(matches!(
        run(&t2, p, 0),
        Err(ApplyError::AlreadyExists { .. })
    ));
    let t3 = tree(&[]);
    assert!(matches!(
        run(&t3, SIMPLE, 0),
        Err(ApplyError::MissingFile { .. })
    ));
    // Plain-diff creation and -E removal of emptied files.
    let p = "--- /dev/null\n+++ b/d/n\n@@ -0,0 +1 @@\n+n\n--- a/e\n+++ b/e\n@@ -1 +0,0 @@\n-e\n";
    let t = tree(&[("e", "e\n")]);
    let a = run(&t, p, 0).unwrap();
    assert_eq!(
        a.changes,
        vec![
            Change::Write {
                path: "d/n".into(),
                content: b"n\n".to_vec(),
                mode: 0o100644
            },
            Change::Delete { path: "e".into() }
        ]
    );
    compare_with_gnu(&[("e", "e\n")], p, 0);
}

#[test]
fn two_sections_on_the_same_file() {
    let p = "--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n l1\n-l2\n+L2\n l3\n\
             --- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n l1\n-L2\n+M2\n l3\n";
    let t = tree(&[("f", &lines(1..=5))]);
    let r = result_tree(&t, &run(&t, p, 0).unwrap());
    assert_eq!(content(&r, "f"), "l1\nM2\nl3\nl4\nl5\n");
    compare_with_gnu(&[("f", &lines(1..=5))], p, 0);
}

#[test]
fn reverse_apply() {
    let t = tree(&[("f", &(lines(1..=6) + "L7\n" + &lines(8..=12)))]);
    let a = run_opts(&t, SIMPLE, 0, true).unwrap();
    assert_eq!(content(&result_tree(&t, &a), "f"), lines(1..=12));
    // Forward fails on an already-applied patch.
    assert!(run(&t, SIMPLE, 0).is_err());
    // Reverse of a creation is a deletion.
    let p = "--- /dev/null\n+++ b/n\n@@ -0,0 +1 @@\n+n\n";
    let t = tree(&[("n", "n\n")]);
    let a = run_opts(&t, p, 0, true).unwrap();
    assert_eq!(a.changes, vec![Change::Delete { path: "n".into() }]);
}

#[test]
fn failure_carries_the_hunk() {
    let p = "--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n l1\n-l2\n+L2\n l3\n@@ -8,3 +8,3 @@\n l8\n-zz\n+ZZ\n l10\n";
    let t = tree(&[("f", &lines(1..=12))]);
    match run(&t, p, 2) {
        Err(ApplyError::HunkFailed {
            file,
            hunk,
            header,
            patch_line,
            expected,
            misordered,
        }) => {
            assert_eq!(file, "f");
            assert_eq!(hunk, 2);
            assert_eq!(header, "@@ -8,3 +8,3 @@");
            assert_eq!(patch_line, 8);
            assert_eq!(
                expected,
                vec![b"l8\n".to_vec(), b"zz\n".to_vec(), b"l10\n".to_vec()]
            );
            assert!(!misordered);
        }
        other => panic!("unexpected {other:?}"),
    }
    let e = run(&t, p, 2).unwrap_err().to_string();
    assert!(
        e.contains("hunk #2 @@ -8,3 +8,3 @@ (patch line 8)") && e.contains("|zz"),
        "{e}"
    );
}

#[test]
fn path_errors() {
    let t = tree(&[("f", "a\n")]);
    let p = "--- a/../f\n+++ b/../f\n@@ -1 +1 @@\n-a\n+b\n";
    assert!(matches!(run(&t, p, 0), Err(ApplyError::UnsafePath { .. })));
    let p = "--- f\n+++ f\n@@ -1 +1 @@\n-a\n+b\n";
    assert!(matches!(
        run(&t, p, 0),
        Err(ApplyError::StripTooDeep { .. })
    ));
    let p = "diff --git a/f b/f\nindex 1..2 100644\nGIT binary patch\nliteral 1\nIcmZpc00001\n\n";
    assert!(matches!(run(&t, p, 0), Err(ApplyError::Binary { .. })));
    let p = "--- a//abs\n+++ b//abs\n@@ -1 +1 @@\n-a\n+b\n";
    // Like GNU, the slashes after a stripped component collapse: "abs".
    assert!(matches!(run(&t, p, 0), Err(ApplyError::MissingFile { file, .. }) if file == "abs"));
    let p = "--- /etc/f\n+++ /etc/f\n@@ -1 +1 @@\n-a\n+b\n";
    let e = apply(&t, &parse_patch(p.as_bytes(), "p").unwrap(), 0, false, 0);
    assert!(matches!(e, Err(ApplyError::UnsafePath { .. })));
}

#[test]
fn atomic_on_error() {
    let p = "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n--- a/g\n+++ b/g\n@@ -1 +1 @@\n-zz\n+b\n";
    let t = tree(&[("f", "a\n"), ("g", "a\n")]);
    assert!(run(&t, p, 0).is_err());
}

// ---------------------------------------------------------------- GNU patch

static COUNTER: AtomicUsize = AtomicUsize::new(0);

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("xtask-patch-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read_dir_tree(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            read_dir_tree(root, &p, out);
        } else {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            out.insert(rel, std::fs::read(&p).unwrap());
        }
    }
}

/// Runs GNU patch on `files` (under `tree/`), returning the tree or `None`
/// when it fails.
fn gnu_patch(
    files: &[(&str, &[u8])],
    patch: &[u8],
    fuzz: usize,
    reverse: bool,
) -> Option<BTreeMap<String, Vec<u8>>> {
    let tmp = TempDir::new();
    let root = tmp.0.join("tree");
    std::fs::create_dir_all(&root).unwrap();
    for (p, c) in files {
        let fp = root.join(p);
        std::fs::create_dir_all(fp.parent().unwrap()).unwrap();
        std::fs::write(fp, c).unwrap();
    }
    let pf = tmp.0.join("p.diff");
    std::fs::write(&pf, patch).unwrap();
    let out = Command::new("/usr/bin/patch")
        .current_dir(&root)
        .args([
            "-p1",
            "-E",
            &format!("--fuzz={fuzz}"),
            "-f",
            "--no-backup-if-mismatch",
            "-s",
            "-i",
        ])
        .arg(&pf)
        .args(if reverse { &["-R"][..] } else { &[][..] })
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let mut res = BTreeMap::new();
    read_dir_tree(&root, &root, &mut res);
    Some(res)
}

fn ours(
    files: &[(&str, &[u8])],
    patch: &[u8],
    fuzz: usize,
    reverse: bool,
) -> Option<BTreeMap<String, Vec<u8>>> {
    let t: Mem = files
        .iter()
        .map(|(p, c)| (p.to_string(), (c.to_vec(), 0o100644)))
        .collect();
    let p = parse_patch(patch, "p.diff").unwrap();
    let a = apply(&t, &p, 1, reverse, fuzz).ok()?;
    Some(
        result_tree(&t, &a)
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect(),
    )
}

fn compare_bytes(files: &[(&str, &[u8])], patch: &[u8], fuzz: usize, reverse: bool) -> bool {
    let g = gnu_patch(files, patch, fuzz, reverse);
    let o = ours(files, patch, fuzz, reverse);
    if g != o {
        eprintln!(
            "MISMATCH fuzz={fuzz}\n--- patch\n{}\n--- files {:?}\n--- gnu {:?}\n--- ours {:?}",
            String::from_utf8_lossy(patch),
            files
                .iter()
                .map(|(p, c)| (p, String::from_utf8_lossy(c)))
                .collect::<Vec<_>>(),
            g.map(|m| m
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                .collect::<Vec<_>>()),
            o.map(|m| m
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                .collect::<Vec<_>>()),
        );
        return false;
    }
    true
}

fn compare_with_gnu(files: &[(&str, &str)], patch: &str, fuzz: usize) {
    let files: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (*p, c.as_bytes())).collect();
    assert!(compare_bytes(&files, patch.as_bytes(), fuzz, false));
}

#[test]
fn gnu_placement_cases() {
    let base = lines(1..=30);
    let two_hunks = "--- a/f\n+++ b/f\n@@ -3,7 +3,7 @@\n l3\n l4\n l5\n-l6\n+L6\n l7\n l8\n l9\n\
                     @@ -9,7 +9,8 @@\n l9\n l10\n l11\n-l12\n+L12\n+L12b\n l13\n l14\n l15\n";
    let variants = [
        base.clone(),
        base.replace("l3\n", "x\n"),
        base.replace("l9\n", "x\n"),
        base.replace("l10\n", "x\n").replace("l8\n", "y\n"),
        String::from("a\nb\nc\n") + &base,
        base.replace("l2\n", ""),
        base.replace("l7\n", "l7\nextra\n"),
        base.clone() + &base,
        base.replace("l1\n", "l12\n"),
    ];
    for v in &variants {
        for fuzz in 0..=3 {
            compare_with_gnu(&[("f", v)], two_hunks, fuzz);
            compare_with_gnu(&[("f", v)], SIMPLE, fuzz);
        }
    }
    // Overlapping hunks (second hunk's prefix context is the first's change).
    let overlap = "--- a/f\n+++ b/f\n@@ -2,3 +2,3 @@\n l2\n-l3\n+L3\n l4\n@@ -3,3 +3,3 @@\n l3\n-l4\n+L4\n l5\n";
    for fuzz in 0..=2 {
        compare_with_gnu(&[("f", &base)], overlap, fuzz);
    }
}

// ---------------------------------------------------------------- random

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % (n as u64)) as usize
    }
}

const VOCAB: &[&str] = &[
    "{\n",
    "}\n",
    "\treturn 0;\n",
    "\n",
    "int x;\n",
    "\tx++;\n",
    "/* c */\n",
    "\tif (x)\n",
    "\t\tbreak;\n",
    "foo();\n",
    "bar();\n",
    "#endif\n",
];

fn random_file(rng: &mut XorShift) -> Vec<String> {
    let n = 30 + rng.below(171);
    (0..n)
        .map(|i| {
            if rng.below(3) == 0 {
                VOCAB[rng.below(VOCAB.len())].to_string()
            } else {
                format!("line {} {}\n", i, rng.below(1000))
            }
        })
        .collect()
}

/// A minimal LCS-free unified diff: edits are explicit so we know the hunks.
fn make_patch(rng: &mut XorShift, old: &[String], ctx: usize) -> (String, Vec<String>) {
    // Choose a few edit points, sorted, non-overlapping.
    let nedits = 1 + rng.below(4);
    let mut points: Vec<usize> = (0..nedits).map(|_| rng.below(old.len())).collect();
    points.sort_unstable();
    points.dedup();
    // Each edit: remove r lines at p, add a lines.
    let mut edits: Vec<(usize, usize, Vec<String>)> = Vec::new();
    let mut last_end = 0;
    for p in points {
        if p < last_end {
            continue;
        }
        let r = rng.below(3).min(old.len() - p);
        let a = rng.below(3);
        if r == 0 && a == 0 {
            continue;
        }
        let adds = (0..a)
            .map(|k| format!("added {} {}\n", p, k + rng.below(100)))
            .collect();
        edits.push((p, r, adds));
        last_end = p + r + 1;
    }
    if edits.is_empty() {
        edits.push((0, 0, vec!["first\n".to_string()]));
    }
    // New file.
    let mut new = Vec::new();
    let mut i = 0;
    for (p, r, adds) in &edits {
        new.extend_from_slice(&old[i..*p]);
        new.extend(adds.iter().cloned());
        i = p + r;
    }
    new.extend_from_slice(&old[i..]);
    // Group edits into hunks with `ctx` lines of context.
    let mut out = String::from("--- a/f\n+++ b/f\n");
    let mut gi = 0;
    let mut delta: isize = 0; // new - old line count before current hunk
    while gi < edits.len() {
        let mut gj = gi;
        while gj + 1 < edits.len() && edits[gj + 1].0 <= edits[gj].0 + edits[gj].1 + 2 * ctx {
            gj += 1;
        }
        let start = edits[gi].0.saturating_sub(ctx);
        let end = (edits[gj].0 + edits[gj].1 + ctx).min(old.len());
        let mut body = String::new();
        let (mut ol, mut nl) = (0, 0);
        let mut pos = start;
        for (p, r, adds) in &edits[gi..=gj] {
            for l in &old[pos..*p] {
                body.push(' ');
                body.push_str(l);
                ol += 1;
                nl += 1;
            }
            for l in &old[*p..p + r] {
                body.push('-');
                body.push_str(l);
                ol += 1;
            }
            for l in adds {
                body.push('+');
                body.push_str(l);
                nl += 1;
            }
            pos = p + r;
        }
        for l in &old[pos..end] {
            body.push(' ');
            body.push_str(l);
            ol += 1;
            nl += 1;
        }
        let os = if ol == 0 { start } else { start + 1 };
        let ns_base = (start as isize + delta) as usize;
        let ns = if nl == 0 { ns_base } else { ns_base + 1 };
        out.push_str(&format!("@@ -{os},{ol} +{ns},{nl} @@\n{body}"));
        delta += nl as isize - ol as isize;
        gi = gj + 1;
    }
    (out, new)
}

fn perturb(rng: &mut XorShift, file: &mut Vec<String>) {
    let n = rng.below(9);
    for _ in 0..n {
        let at = rng.below(file.len() + 1);
        match rng.below(5) {
            0 => file.insert(at, VOCAB[rng.below(VOCAB.len())].to_string()),
            1 if at < file.len() && file.len() > 5 => {
                file.remove(at);
            }
            2 if at + 10 < file.len() => {
                // Duplicate a block elsewhere: creates ambiguous matches.
                let len = 3 + rng.below(8);
                let block: Vec<String> = file[at..at + len].to_vec();
                let to = rng.below(file.len() + 1);
                for (k, l) in block.into_iter().enumerate() {
                    file.insert(to + k, l);
                }
            }
            _ if at < file.len() => file[at] = format!("changed {}\n", rng.below(10)),
            _ => {}
        }
    }
    if rng.below(10) == 0 {
        // Sometimes shift the whole file.
        for k in 0..rng.below(20) {
            file.insert(0, format!("pre {k}\n"));
        }
    }
}

#[test]
fn randomized_against_gnu_patch() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut mismatches = 0;
    let mut applied = 0;
    let (mut fuzzed, mut offset) = (0, 0);
    let cases: usize = std::env::var("PATCH_RANDOM_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    for case in 0..cases {
        let orig = random_file(&mut rng);
        let ctx = [3, 3, 3, 1, 2, 0][rng.below(6)];
        let (patch, new) = make_patch(&mut rng, &orig, ctx);
        let reverse = case % 4 == 3;
        let mut target = if reverse { new } else { orig.clone() };
        if case % 5 != 0 {
            perturb(&mut rng, &mut target);
        }
        let mut text = target.concat();
        if rng.below(8) == 0 {
            text.pop(); // no newline at EOF
        }
        let fuzz = rng.below(3);
        let files = [("f", text.as_bytes())];
        let t: Mem = [("f".to_string(), (text.as_bytes().to_vec(), 0o100644))].into();
        if let Ok(a) = apply(
            &t,
            &parse_patch(patch.as_bytes(), "p").unwrap(),
            1,
            reverse,
            fuzz,
        ) {
            applied += 1;
            fuzzed += usize::from(a.hunks.iter().any(|h| h.fuzz > 0));
            offset += usize::from(a.hunks.iter().any(|h| h.offset != 0));
        }
        if !compare_bytes(&files, patch.as_bytes(), fuzz, reverse) {
            mismatches += 1;
            eprintln!("case {case} mismatched");
        }
    }
    eprintln!(
        "{applied} of {cases} random patches applied ({fuzzed} with fuzz, {offset} with offset)"
    );
    // Both outcomes must be well represented for the comparison to mean something.
    assert!(applied > cases / 4 && applied < cases * 9 / 10, "{applied}");
    assert_eq!(
        mismatches, 0,
        "{mismatches} of {cases} cases differ from GNU patch"
    );
}

#[test]
fn gnu_file_operations() {
    let git = "diff --git a/old b/renamed\nsimilarity index 80%\nrename from old\nrename to renamed\n\
               --- a/old\n+++ b/renamed\n@@ -1,3 +1,3 @@\n o1\n-o2\n+O2\n o3\n\
               diff --git a/gone b/gone\ndeleted file mode 100644\n--- a/gone\n+++ /dev/null\n@@ -1 +0,0 @@\n-g\n\
               diff --git a/sub/new b/sub/new\nnew file mode 100644\n--- /dev/null\n+++ b/sub/new\n@@ -0,0 +1 @@\n+n\n\
               diff --git a/empty b/empty\nnew file mode 100644\nindex 0000000..e69de29\n";
    compare_with_gnu(&[("old", "o1\no2\no3\n"), ("gone", "g\n")], git, 0);
    // Implicit creation: old name given but missing, hunk starts at -0,0.
    let implicit = "--- a/x\n+++ b/x\n@@ -0,0 +1,2 @@\n+1\n+2\n";
    compare_with_gnu(&[], implicit, 0);
    // Creation onto an existing empty file works, onto a non-empty one fails.
    let create = "--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+1\n";
    compare_with_gnu(&[("x", "")], create, 0);
    compare_with_gnu(&[("x", "y\n")], create, 0);
    // Deleting a file whose content differs fails.
    let delete = "--- a/x\n+++ /dev/null\n@@ -1 +0,0 @@\n-1\n";
    compare_with_gnu(&[("x", "1\n2\n")], delete, 2);
    compare_with_gnu(&[("x", "1\n")], delete, 0);
    // Non-git: the new name is used when only it exists.
    let newname = "--- a/x.orig\n+++ b/x\n@@ -1 +1 @@\n-1\n+2\n";
    compare_with_gnu(&[("x", "1\n")], newname, 0);
    compare_with_gnu(&[("x.orig", "1\n")], newname, 0);
}

/// A hunk whose line number lies far past the end of the file is placed
/// (or refused) as GNU patch places it, without trying every position in
/// between: `cargo xtask fuzz patch` found `@@ -55555555550,0 +1 @@`
/// spinning for billions of tries.
#[test]
fn hunks_numbered_far_past_the_end_are_placed_as_gnu_places_them() {
    let base = lines(1..=30);
    let found = "--- a/f\n+++ b/f\n@@ -3000000,3 +3000000,3 @@\n l3\n-l4\n+L4\n l5\n";
    let missing = "--- a/f\n+++ b/f\n@@ -3000000,3 +3000000,3 @@\n x3\n-x4\n+X4\n x5\n";
    let fuzzy = "--- a/f\n+++ b/f\n@@ -3000000,3 +3000000,3 @@\n x3\n-l4\n+L4\n l5\n";
    for fuzz in 0..=2 {
        for p in [found, missing, fuzzy] {
            compare_with_gnu(&[("f", &base)], p, fuzz);
        }
    }
    // An insertion (no old lines: placed where its header says) that far
    // away: GNU patch walks there line by line and appends; so do we, at
    // once.
    let insertion = "--- a/f\n+++ b/f\n@@ -3000000,0 +3000001,1 @@\n+new\n";
    compare_with_gnu(&[("f", &base)], insertion, 0);
    let far_insertion = "--- a/f\n+++ b/f\n@@ -55555555550,0 +55555555551,1 @@\n+new\n";
    let t = tree(&[("f", &base)]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(run(&t, far_insertion, 0).map(|a| result_tree(&t, &a)));
    });
    let applied = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("placing the insertion did not end")
        .expect("the insertion applies, as with GNU patch");
    assert_eq!(content(&applied, "f"), format!("{base}new\n"));
    let far = "--- a/f\n+++ b/f\n@@ -55555555550,3 +55555555550,3 @@\n x3\n-x4\n+X4\n x5\n";
    let t = tree(&[("f", &base)]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(run(&t, far, 2).is_err());
    });
    let failed = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("placing the hunk did not end");
    assert!(failed, "a hunk that is nowhere in the file was applied");
}
