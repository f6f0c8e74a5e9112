//! `rebase` and `refresh`: every rebase report case on tiny synthetic trees
//! (clean, merged, conflict → markers → `--continue` → recorded resolution
//! replayed by a second run, `--skip`, `--abort`, already upstream, now
//! empty, a recorded variant, bad input), refresh round trips, and the real series moved from
//! 6.1.176 to 6.12.100 (ignored: needs the kernel trees).

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use colinux_series::rebase::{self, Outcome, RebaseOptions};
use colinux_series::refresh::{self, RefreshOptions};
use colinux_series::tree::{import_vanilla, KernelTree};
use git2::{build::TreeUpdateBuilder, FileMode, Signature, Time};

fn numbered(n: usize, prefix: &str) -> String {
    (1..=n).map(|i| format!("{prefix} line {i}\n")).collect()
}

fn with_line(text: &str, line: usize, new: &str) -> String {
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == line {
                format!("{new}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

fn make_tree(dir: &Path, version: &str, files: &[(&str, String)]) -> KernelTree {
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    import_vanilla(dir, version, "local archive", "00").unwrap();
    KernelTree::open(dir).unwrap()
}

/// Commit `files` (None: delete) on top of the tree's HEAD, in memory.
fn commit(tree: &KernelTree, files: &[(&str, Option<&str>)], msg: &str, when: i64) {
    let repo = tree.repo().unwrap();
    let head = repo.find_commit(tree.head().unwrap()).unwrap();
    let mut upd = TreeUpdateBuilder::new();
    for (path, text) in files {
        match text {
            Some(t) => {
                let id = repo.blob(t.as_bytes()).unwrap();
                upd.upsert(*path, id, FileMode::Blob);
            }
            None => {
                upd.remove(*path);
            }
        }
    }
    let t = repo
        .find_tree(upd.create_updated(&repo, &head.tree().unwrap()).unwrap())
        .unwrap();
    let sig = Signature::new("Dev One", "one@example.org", &Time::new(when, 0)).unwrap();
    let id = repo.commit(None, &sig, &sig, msg, &t, &[&head]).unwrap();
    tree.checkout(id).unwrap();
}

struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    v1: KernelTree,
    v2: KernelTree,
    series: PathBuf,
    manifest: PathBuf,
}

const C10_OURS: &str = "c line TEN (ours)";
const C10_THEIRS: &str = "c line ten (upstream)";

/// V1 ("1.0") with a six-patch series, and V2 ("2.0") made so that each
/// patch meets one report case.
fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let (a, b, c, d, e) = (
        numbered(40, "a"),
        numbered(30, "b"),
        numbered(20, "c"),
        numbered(20, "d"),
        numbered(20, "e"),
    );
    let v1 = make_tree(
        &root.join("v1"),
        "1.0",
        &[
            ("a.c", a.clone()),
            ("b.c", b.clone()),
            ("c.c", c.clone()),
            ("d.c", d.clone()),
            ("e.c", e.clone()),
        ],
    );
    // The series, written by refresh from commits on a scratch clone of V1.
    let work = v1.scratch_clone(&root.join("v1-work")).unwrap();
    let t0 = 1_735_689_600;
    commit(
        &work,
        &[("a.c", Some(&with_line(&a, 5, "a line FIVE")))],
        "a: change line 5\n\nThe clean one.\n\nSigned-off-by: Dev One <one@example.org>\n",
        t0,
    );
    commit(
        &work,
        &[("b.c", Some(&with_line(&b, 10, "b line TEN")))],
        "b: change line 10\n\nUpstream moves it: a 3-way merge.\n",
        t0 + 1,
    );
    commit(
        &work,
        &[("c.c", Some(&with_line(&c, 10, C10_OURS)))],
        "c: change line 10\n\nUpstream changed the same line: a conflict.\n",
        t0 + 2,
    );
    commit(
        &work,
        &[("d.c", Some(&with_line(&d, 5, "d line FIVE")))],
        "d: change line 5\n\nUpstream took it as is.\n",
        t0 + 3,
    );
    commit(
        &work,
        &[("e.c", Some(&with_line(&e, 5, "e line FIVE")))],
        "e: change line 5\n\nUpstream took it along with more.\n",
        t0 + 4,
    );
    commit(
        &work,
        &[("sub/new.h", Some("new 1\nnew 2\n"))],
        "add sub/new.h\n",
        t0 + 5,
    );
    let series = root.join("patches");
    std::fs::create_dir_all(&series).unwrap();
    std::fs::write(
        series.join("series"),
        "# test series\n# Base: vanilla Linux 1.0\n",
    )
    .unwrap();
    let r = refresh::refresh(
        &work,
        &RefreshOptions {
            series_dir: series.clone(),
            out_dir: None,
        },
    )
    .unwrap();
    assert_eq!(r.patches.len(), 6, "{}", r.render());

    let b2 = format!("{}{b}", numbered(5, "inserted"));
    let v2 = make_tree(
        &root.join("v2"),
        "2.0",
        &[
            ("a.c", a.clone()),
            ("b.c", b2),
            ("c.c", with_line(&c, 10, C10_THEIRS)),
            ("d.c", with_line(&d, 5, "d line FIVE")),
            (
                "e.c",
                with_line(&with_line(&e, 5, "e line FIVE"), 15, "e line FIFTEEN"),
            ),
        ],
    );
    let manifest = root.join("kernels.toml");
    std::fs::write(&manifest, "# pins\n[series]\n# base\nbase = \"1.0\"\n").unwrap();
    World {
        _tmp: tmp,
        root,
        v1,
        v2,
        series,
        manifest,
    }
}

impl World {
    fn opts(&self, work: &str, out: &str) -> RebaseOptions {
        RebaseOptions {
            series_dir: self.series.clone(),
            out_dir: self.root.join(out),
            v1_tree: self.v1.path.clone(),
            v2_tree: self.v2.path.clone(),
            work_dir: self.root.join(work),
            manifest: Some(self.manifest.clone()),
        }
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    names(dir)
        .into_iter()
        .filter(|n| dir.join(n).is_file())
        .map(|n| {
            let b = std::fs::read(dir.join(&n)).unwrap();
            (n, b)
        })
        .collect()
}

const P3: &str = "0003-c-change-line-10.patch";

#[test]
fn every_case_conflict_continue_and_replay() {
    let w = world();
    let series_before = snapshot(&w.series);
    let run = rebase::start(&w.opts("work", "out")).unwrap();
    let text = run.render();
    assert!(!run.finished(), "{text}");
    assert_eq!(
        run.outcome("0001-a-change-line-5.patch"),
        Some(&Outcome::Clean),
        "{text}"
    );
    assert!(
        matches!(
            run.outcome("0002-b-change-line-10.patch"),
            Some(Outcome::Merged { .. })
        ),
        "{text}"
    );
    assert_eq!(
        run.outcome(P3),
        Some(&Outcome::Conflict {
            files: vec![("c.c".into(), 1)]
        }),
        "{text}"
    );
    assert!(
        text.contains("--continue") && text.contains("--abort"),
        "{text}"
    );
    let work = w.root.join("work");
    let conflicted = std::fs::read_to_string(work.join("c.c")).unwrap();
    for m in [
        "<<<<<<< ours\n",
        "||||||| base\n",
        "=======\n",
        ">>>>>>> theirs\n",
    ] {
        assert!(conflicted.contains(m), "{conflicted}");
    }
    assert!(conflicted.contains(C10_OURS) && conflicted.contains(C10_THEIRS));
    // The earlier patches are in the work tree already.
    assert!(std::fs::read_to_string(work.join("a.c"))
        .unwrap()
        .contains("a line FIVE"));
    assert!(
        !w.root.join("out").exists(),
        "nothing written before the end"
    );

    // Markers left: refused.
    let err = rebase::continue_rebase(&work).unwrap_err().to_string();
    assert!(err.contains("markers") && err.contains("c.c"), "{err}");

    let resolved = with_line(&numbered(20, "c"), 10, "c line TEN (ours, on upstream)");
    std::fs::write(work.join("c.c"), &resolved).unwrap();
    let run = rebase::continue_rebase(&work).unwrap();
    let text = run.render();
    assert!(run.finished(), "{text}");
    assert!(
        matches!(run.outcome(P3), Some(Outcome::Resolved { .. })),
        "{text}"
    );
    assert!(
        matches!(
            run.outcome("0004-d-change-line-5.patch"),
            Some(Outcome::AlreadyUpstream { .. })
        ),
        "{text}"
    );
    assert!(
        matches!(
            run.outcome("0005-e-change-line-5.patch"),
            Some(Outcome::Empty { .. })
        ),
        "{text}"
    );
    assert_eq!(
        run.outcome("0006-add-sub-new.h.patch"),
        Some(&Outcome::Clean),
        "{text}"
    );

    // The rebased series, the resolution, the manifest, the tree.
    let out = w.root.join("out");
    assert_eq!(
        names(&out),
        [
            "0001-a-change-line-5.patch",
            "0002-b-change-line-10.patch",
            P3,
            "0006-add-sub-new.h.patch",
            "resolutions",
            "series"
        ]
    );
    let series = std::fs::read_to_string(out.join("series")).unwrap();
    assert!(series.contains("# Base: vanilla Linux 2.0"), "{series}");
    assert!(
        !series.contains("0004") && !series.contains("0005"),
        "{series}"
    );
    let p3 = std::fs::read_to_string(out.join(P3)).unwrap();
    assert!(
        p3.contains("+c line TEN (ours, on upstream)") && p3.contains("-c line ten (upstream)"),
        "{p3}"
    );
    assert!(p3.starts_with("From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\nFrom: Dev One <one@example.org>\nDate: Wed, 1 Jan 2025 00:00:02 +0000\nSubject: [PATCH 3/4] c: change line 10\n"), "{p3}");
    let res_file = out.join("resolutions/2.0").join(format!("{P3}.resolution"));
    let res = std::fs::read_to_string(&res_file).unwrap();
    assert!(
        res.contains("file c.c\nconflict\n| <<<<<<< ours\n"),
        "{res}"
    );
    assert!(
        res.contains("resolution\n| c line TEN (ours, on upstream)\nend\n"),
        "{res}"
    );
    assert!(std::fs::read_to_string(&w.manifest)
        .unwrap()
        .contains("base = \"2.0\""));
    assert_eq!(std::fs::read_to_string(work.join("c.c")).unwrap(), resolved);
    assert!(work.join("sub/new.h").exists());
    assert!(KernelTree::open(&work)
        .unwrap()
        .dirty_paths()
        .unwrap()
        .is_empty());
    assert_eq!(
        snapshot(&w.series),
        series_before,
        "--output leaves the series alone"
    );
    let first = snapshot(&out);

    // The same rebase again (same work tree, reused): no manual work, same files.
    let run = rebase::start(&w.opts("work", "out")).unwrap();
    assert!(run.finished(), "{}", run.render());
    assert!(
        matches!(run.outcome(P3), Some(Outcome::Replayed { .. })),
        "{}",
        run.render()
    );
    assert_eq!(snapshot(&out), first);

    // A resolution that no longer matches falls back to the manual path.
    std::fs::write(
        &res_file,
        res.replace("| =======\n", "| =======\n| extra\n"),
    )
    .unwrap();
    let run = rebase::start(&w.opts("work2", "out")).unwrap();
    assert!(!run.finished(), "{}", run.render());
    assert!(matches!(run.outcome(P3), Some(Outcome::Conflict { .. })));

    // The refreshed work tree gives back the rebased series, byte for byte.
    let again = w.root.join("again");
    std::fs::create_dir_all(&again).unwrap();
    let r = refresh::refresh(
        &KernelTree::open(&work).unwrap(),
        &RefreshOptions {
            series_dir: out.clone(),
            out_dir: Some(again.clone()),
        },
    )
    .unwrap();
    assert!(r
        .patches
        .iter()
        .all(|(_, o)| *o == refresh::FileOutcome::New));
    for (n, bytes) in &first {
        if n != "series" {
            assert_eq!(&std::fs::read(again.join(n)).unwrap(), bytes, "{n}");
        }
    }
}

#[test]
fn skip_drops_the_patch_and_abort_leaves_nothing() {
    let w = world();
    let manifest_before = std::fs::read(&w.manifest).unwrap();
    let series_before = snapshot(&w.series);

    let run = rebase::start(&w.opts("work", "out")).unwrap();
    assert!(!run.finished());
    let work = w.root.join("work");
    // A second start while stopped is refused.
    let err = rebase::start(&w.opts("work", "out"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("in progress"), "{err}");
    rebase::abort(&work).unwrap();
    assert!(!rebase::in_progress(&work));
    assert!(!w.root.join("out").exists());
    assert_eq!(std::fs::read(&w.manifest).unwrap(), manifest_before);
    assert_eq!(snapshot(&w.series), series_before);
    let t = KernelTree::open(&work).unwrap();
    assert!(t.dirty_paths().unwrap().is_empty());
    assert_eq!(t.head().unwrap(), t.vanilla().unwrap());
    assert!(
        rebase::continue_rebase(&work).is_err(),
        "nothing to continue"
    );

    let run = rebase::start(&w.opts("work", "out")).unwrap();
    assert!(!run.finished());
    let run = rebase::skip(&work).unwrap();
    assert!(run.finished(), "{}", run.render());
    assert_eq!(run.outcome(P3), Some(&Outcome::Skipped));
    let out = names(&w.root.join("out"));
    assert!(!out.contains(&P3.to_string()), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(work.join("c.c")).unwrap(),
        with_line(&numbered(20, "c"), 10, C10_THEIRS)
    );
    assert!(t.dirty_paths().unwrap().is_empty());
}

/// `--skip` puts back every tracked file edited or deleted by hand while
/// stopped, not only the patch's (untracked files stay), both when the index
/// is as the stop left it and when it was changed by hand (`git add`).
#[test]
fn skip_puts_back_what_was_edited_by_hand() {
    let w = world();
    let work = w.root.join("work");
    let a_head = with_line(&numbered(40, "a"), 5, "a line FIVE");
    let d_v2 = with_line(&numbered(20, "d"), 5, "d line FIVE");
    for staged in [false, true] {
        let run = rebase::start(&w.opts("work", "out")).unwrap();
        assert!(!run.finished(), "{}", run.render());
        std::fs::write(work.join("a.c"), "edited by hand\n").unwrap();
        std::fs::remove_file(work.join("d.c")).unwrap();
        std::fs::write(work.join("notes.txt"), "mine\n").unwrap();
        if staged {
            let repo = git2::Repository::open(&work).unwrap();
            let mut index = repo.index().unwrap();
            index.add_path(Path::new("a.c")).unwrap();
            index.write().unwrap();
        }
        let run = rebase::skip(&work).unwrap();
        assert!(run.finished(), "{}", run.render());
        assert_eq!(std::fs::read_to_string(work.join("a.c")).unwrap(), a_head);
        assert_eq!(std::fs::read_to_string(work.join("d.c")).unwrap(), d_v2);
        assert_eq!(
            std::fs::read_to_string(work.join("sub/new.h")).unwrap(),
            "new 1\nnew 2\n"
        );
        let t = KernelTree::open(&work).unwrap();
        assert_eq!(t.dirty_paths().unwrap(), ["notes.txt"], "staged: {staged}");
        assert_eq!(t.head().unwrap(), run.head);
        std::fs::remove_file(work.join("notes.txt")).unwrap();
    }
}

#[test]
fn bad_input_is_refused() {
    let w = world();
    // A dirty work tree.
    let run = rebase::start(&w.opts("work", "out")).unwrap();
    rebase::skip(&run.work_dir).unwrap();
    std::fs::write(w.root.join("work/a.c"), "local edit\n").unwrap();
    let err = rebase::start(&w.opts("work", "out2"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("local changes") && err.contains("a.c"),
        "{err}"
    );

    // A series that does not apply to its base.
    let bad = w.root.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("series"), "x.patch\n").unwrap();
    std::fs::write(
        bad.join("x.patch"),
        "--- a/a.c\n+++ b/a.c\n@@ -1,2 +1,2 @@\n-nothing like this\n+x\n not here\n",
    )
    .unwrap();
    let mut o = w.opts("work3", "out3");
    o.series_dir = bad;
    let err = rebase::start(&o).unwrap_err().to_string();
    assert!(
        err.contains("does not apply to its base") && err.contains("x.patch"),
        "{err}"
    );

    // Same version.
    let mut o = w.opts("work4", "out4");
    o.v2_tree = w.v1.path.clone();
    assert!(rebase::start(&o).is_err());
}

/// Refresh of the real series: apply linux-patches/ to a scratch clone of
/// 6.1.176, refresh into a temporary directory: every file byte-identical.
#[test]
#[ignore = "needs the linux trees; run by `cargo xtask test`"]
fn refresh_round_trips_the_real_series() {
    let manifest = xtask::manifest::Manifest::load_default().unwrap();
    let base = manifest.series.base.clone();
    let tree = xtask::fetch::fetch_kernel(&manifest, &base, &xtask::fetch::FetchOptions::default())
        .unwrap();
    let tmp = tempfile::tempdir_in(colinux_buildenv::paths::cache_dir().unwrap()).unwrap();
    let scratch = tree.scratch_clone(&tmp.path().join("tree")).unwrap();
    let series = colinux_buildenv::paths::repo_root().join("linux-patches");
    let r = colinux_series::apply::apply_series(
        &scratch,
        &colinux_series::apply::ApplyOptions {
            series_dir: series.clone(),
            force: false,
            max_fuzz: 2,
        },
    )
    .unwrap();
    assert!(r.ok(), "{}", r.render());
    let out = tmp.path().join("out");
    refresh::refresh(
        &scratch,
        &RefreshOptions {
            series_dir: series.clone(),
            out_dir: Some(out.clone()),
        },
    )
    .unwrap();
    let want: Vec<_> = snapshot(&series);
    let got: Vec<_> = snapshot(&out);
    for ((wn, wb), (gn, gb)) in want.iter().zip(&got) {
        assert_eq!(wn, gn);
        assert!(
            wb == gb,
            "{wn} differs:\n--- want\n{}\n--- got\n{}",
            String::from_utf8_lossy(wb),
            String::from_utf8_lossy(gb)
        );
    }
    assert_eq!(want.len(), got.len());
}

/// The real series moved from 6.1.176 to 6.12.100 into a temporary directory.
#[test]
#[ignore = "needs the linux trees; run by `cargo xtask test`"]
fn real_series_moves_to_6_12() {
    let (tmp, run) = colinux_tests::rebase_linux_patches("6.12.100");
    let series = colinux_buildenv::paths::repo_root().join("linux-patches");
    let out = tmp.path().join("out");
    let text = run.render();
    eprintln!("{text}");
    assert!(run.finished(), "{text}");
    let patches = colinux_series::apply::load_series(&series).unwrap().len();
    assert_eq!(run.patches.len(), patches, "{text}");
    // Every patch moves without a stop: cleanly, by a 3-way merge, or by
    // the resolution recorded under linux-patches/resolutions/6.12.100/.
    for (name, o) in &run.patches {
        assert!(
            matches!(
                o,
                Outcome::Clean
                    | Outcome::Merged { .. }
                    | Outcome::Replayed { .. }
                    | Outcome::Variant { .. }
            ),
            "{name}: {o:?}"
        );
    }
    let work = tmp.path().join("work");
    for f in [
        "arch/x86/cooperative/Kconfig",
        "arch/x86/cooperative/Makefile",
        "arch/x86/cooperative/abi.c",
        "arch/x86/cooperative/setup.c",
        "arch/x86/include/asm/cooperative_mmu.h",
        "include/uapi/linux/cooperative.h",
    ] {
        assert!(work.join(f).exists(), "{f}");
    }
    let kconfig = std::fs::read_to_string(work.join("arch/x86/Kconfig")).unwrap();
    assert!(kconfig.contains("source \"arch/x86/cooperative/Kconfig\""));
    // The patches, the series file and the replayed resolution.
    assert_eq!(
        names(&out).len(),
        patches + 2,
        "the patches, the series and the resolution: {:?}",
        names(&out)
    );
    // The new ABI header patch is unchanged (a new file moves as is).
    let name = "0002-x86-cooperative-Add-the-guest-host-ABI-header.patch";
    assert_eq!(
        std::fs::read(out.join(name)).unwrap(),
        std::fs::read(series.join(name)).unwrap()
    );
}

/// The non-interactive mode (used by `bench rebase`): the conflicted patch is
/// reported and left out, the later patches are still moved, and it refuses
/// to write over the series or kernels.toml.
#[test]
fn keep_going_records_the_conflict_and_goes_on() {
    let w = world();
    let manifest_before = std::fs::read(&w.manifest).unwrap();
    assert!(rebase::start_keep_going(&w.opts("work", "out")).is_err());
    let mut opts = w.opts("work", "out");
    opts.manifest = None;
    let run = rebase::start_keep_going(&opts).unwrap();
    let text = run.render();
    assert!(run.finished(), "{text}");
    assert_eq!(
        run.outcome(P3),
        Some(&Outcome::Conflict {
            files: vec![("c.c".into(), 1)]
        }),
        "{text}"
    );
    assert_eq!(run.patches.len(), 6, "{text}");
    let out = names(&w.root.join("out"));
    assert!(!out.iter().any(|n| n == P3), "{out:?}");
    assert!(
        out.iter().any(|n| n == "0001-a-change-line-5.patch"),
        "{out:?}"
    );
    // Nothing of the conflict is left in the work tree.
    let c = std::fs::read_to_string(w.root.join("work/c.c")).unwrap();
    assert!(!c.contains("<<<<<<<"), "{c}");
    assert!(!rebase::in_progress(&w.root.join("work")));
    assert_eq!(std::fs::read(&w.manifest).unwrap(), manifest_before);
}

#[test]
fn a_patch_follows_its_file_when_the_release_moved_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let foo = numbered(30, "foo");
    let v1 = make_tree(
        &root.join("v1"),
        "1.0",
        &[
            ("drivers/x/foo.c", foo.clone()),
            ("other.c", numbered(5, "o")),
        ],
    );
    let work = v1.scratch_clone(&root.join("v1-work")).unwrap();
    commit(
        &work,
        &[(
            "drivers/x/foo.c",
            Some(&with_line(&foo, 5, "foo line FIVE")),
        )],
        "foo: change line 5\n",
        1_735_689_600,
    );
    let series = root.join("patches");
    std::fs::create_dir_all(&series).unwrap();
    std::fs::write(series.join("series"), "# Base: vanilla Linux 1.0\n").unwrap();
    refresh::refresh(
        &work,
        &RefreshOptions {
            series_dir: series.clone(),
            out_dir: None,
        },
    )
    .unwrap();
    // V2 moved the file (and changed another line of it).
    let v2 = make_tree(
        &root.join("v2"),
        "2.0",
        &[
            ("drivers/y/foo.c", with_line(&foo, 20, "foo line TWENTY")),
            ("other.c", numbered(5, "o")),
        ],
    );
    let run = rebase::start(&RebaseOptions {
        series_dir: series,
        out_dir: root.join("out"),
        v1_tree: v1.path.clone(),
        v2_tree: v2.path.clone(),
        work_dir: root.join("work"),
        manifest: None,
    })
    .unwrap();
    let text = run.render();
    assert!(run.finished(), "{text}");
    assert_eq!(
        run.patches[0].1,
        Outcome::Merged {
            files: vec!["drivers/y/foo.c".into()]
        },
        "{text}"
    );
    let merged = std::fs::read_to_string(root.join("work/drivers/y/foo.c")).unwrap();
    assert!(
        merged.contains("foo line FIVE\n") && merged.contains("foo line TWENTY\n"),
        "{merged}"
    );
    assert!(!root.join("work/drivers/x/foo.c").exists());
    let patch = std::fs::read_to_string(root.join("out/0001-foo-change-line-5.patch")).unwrap();
    assert!(patch.contains("+++ b/drivers/y/foo.c"), "{patch}");
}

/// A recorded variant: the V2 form of a patch that merges cleanly (the new
/// header changes for 2.0), applied after the merge, carried into the
/// rebased series and copied beside it; a variant that no longer applies
/// stops the rebase naming its file.
#[test]
fn a_recorded_variant_gives_v2_its_own_form_of_a_patch() {
    let w = world();
    let patch = names(&w.series)
        .into_iter()
        .find(|n| n.contains("add-sub-new.h"))
        .unwrap();
    let dir = w.series.join("resolutions/2.0");
    std::fs::create_dir_all(&dir).unwrap();
    let variant = dir.join(format!("{patch}.variant"));
    std::fs::write(
        &variant,
        "--- a/sub/new.h\n+++ b/sub/new.h\n@@ -1,2 +1,2 @@\n new 1\n-new 2\n+new 2 for 2.0\n",
    )
    .unwrap();
    let mut opts = w.opts("work", "out");
    opts.manifest = None;
    let run = rebase::start_keep_going(&opts).unwrap();
    let text = run.render();
    assert!(run.finished(), "{text}");
    assert_eq!(
        run.outcome(&patch),
        Some(&Outcome::Variant {
            variant: variant.display().to_string()
        }),
        "{text}"
    );
    let rebased = std::fs::read_to_string(w.root.join("out").join(&patch)).unwrap();
    assert!(rebased.contains("+new 2 for 2.0"), "{rebased}");
    assert_eq!(
        std::fs::read_to_string(w.root.join("work/sub/new.h")).unwrap(),
        "new 1\nnew 2 for 2.0\n"
    );
    assert_eq!(
        std::fs::read(
            w.root
                .join("out/resolutions/2.0")
                .join(format!("{patch}.variant"))
        )
        .unwrap(),
        std::fs::read(&variant).unwrap(),
        "the variant goes with the rebased series"
    );

    // One that no longer applies: the rebase stops and names it.
    std::fs::write(
        &variant,
        "--- a/sub/new.h\n+++ b/sub/new.h\n@@ -1,2 +1,2 @@\n new 1\n-new TWO\n+new 2 for 2.0\n",
    )
    .unwrap();
    let mut opts = w.opts("work2", "out2");
    opts.manifest = None;
    let e = rebase::start_keep_going(&opts)
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(
        e.contains(&variant.display().to_string()) && e.contains("no longer applies"),
        "{e}"
    );
}
