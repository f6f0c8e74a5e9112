//! Kernel source trees as git repositories.
//!
//! `fetch-kernel` unpacks a release and records it as one commit, tagged
//! `vanilla`, on the branch `colinux`. `apply` rebuilds the branch as the
//! vanilla commit plus one commit per patch of the series and checks it out;
//! git only rewrites the files that differ, so kernel builds stay incremental.
//! The tree's git config remembers where the vanilla release came from
//! (`colinux.version`, `colinux.source`, `colinux.sha256`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use git2::{build::CheckoutBuilder, IndexAddOption, Oid, Repository, Signature, Time};

/// The branch that holds the vanilla commit plus the applied series.
pub const BRANCH: &str = "refs/heads/colinux";
/// The tag on the vanilla release's commit.
pub const VANILLA_TAG: &str = "refs/tags/vanilla";

/// The identity of commits the xtask makes itself. A fixed time makes the
/// same inputs give the same commit ids, which is how `apply` knows that a
/// tree is already up to date.
pub fn xtask_signature() -> Result<Signature<'static>> {
    Ok(Signature::new(
        "colinux xtask",
        "xtask@colinux.invalid",
        &Time::new(0, 0),
    )?)
}

/// A kernel source tree known to the xtask.
#[derive(Debug)]
pub struct KernelTree {
    pub path: PathBuf,
    pub version: String,
    /// `kernel.org`, `debian` or `local archive`.
    pub source: String,
    /// sha256 of the archive it was unpacked from.
    pub sha256: String,
}

impl KernelTree {
    /// Open a tree made by `fetch-kernel`; `None` if `path` does not exist.
    pub fn open_existing(path: &Path) -> Result<Option<KernelTree>> {
        if !path.exists() {
            return Ok(None);
        }
        Self::open(path).map(Some)
    }

    /// Open `path`, which must be a tree made by `fetch-kernel`.
    pub fn open(path: &Path) -> Result<KernelTree> {
        let repo = Repository::open(path).with_context(|| {
            format!(
                "{} is not a kernel tree made by `cargo xtask fetch-kernel` (not a git repository)",
                path.display()
            )
        })?;
        let cfg = repo.config()?;
        let get = |k: &str| {
            cfg.get_string(k).with_context(|| {
                format!(
                    "{} is not a kernel tree made by `cargo xtask fetch-kernel` (no {k} in its git config)",
                    path.display()
                )
            })
        };
        Ok(KernelTree {
            path: path.to_path_buf(),
            version: get("colinux.version")?,
            source: get("colinux.source")?,
            sha256: get("colinux.sha256")?,
        })
    }

    pub fn repo(&self) -> Result<Repository> {
        Repository::open(&self.path).with_context(|| format!("cannot open {}", self.path.display()))
    }

    /// The vanilla release's commit.
    pub fn vanilla(&self) -> Result<Oid> {
        let repo = self.repo()?;
        let r = repo
            .find_reference(VANILLA_TAG)
            .with_context(|| format!("{}: the `vanilla` tag is missing", self.path.display()))?;
        let id = r.peel_to_commit()?.id();
        Ok(id)
    }

    /// The commit the tree is at (`HEAD`).
    pub fn head(&self) -> Result<Oid> {
        let repo = self.repo()?;
        let head = repo
            .head()
            .with_context(|| format!("{}: no HEAD", self.path.display()))?;
        let id = head.peel_to_commit()?.id();
        Ok(id)
    }

    /// Paths that differ from `HEAD` in the work tree (modified, deleted,
    /// untracked, not ignored). Empty when clean.
    pub fn dirty_paths(&self) -> Result<Vec<String>> {
        let repo = self.repo()?;
        let mut opts = git2::StatusOptions::new();
        opts.include_untracked(true)
            .recurse_untracked_dirs(false)
            .include_ignored(false)
            .exclude_submodules(true);
        let statuses = repo
            .statuses(Some(&mut opts))
            .with_context(|| format!("cannot read the status of {}", self.path.display()))?;
        Ok(statuses
            .iter()
            .filter_map(|s| s.path().map(str::to_string))
            .collect())
    }

    /// Point the `colinux` branch at `commit` and make the work tree match
    /// it, writing only the files that differ. The caller has checked that
    /// the work tree is clean.
    pub fn checkout(&self, commit: Oid) -> Result<()> {
        let repo = self.repo()?;
        let target = repo.find_commit(commit)?;
        let mut co = CheckoutBuilder::new();
        co.force().remove_untracked(false);
        repo.checkout_tree(target.as_object(), Some(&mut co))
            .with_context(|| format!("cannot check out {commit} in {}", self.path.display()))?;
        repo.reference(BRANCH, commit, true, "colinux: apply series")?;
        repo.set_head(BRANCH)?;
        Ok(())
    }

    /// [`checkout`](Self::checkout) of `to` for a work tree and index known to
    /// match commit `from`: only the files that differ between the two
    /// commits are written (and the index entries for them). A full checkout
    /// compares every file of the tree with the index and the work tree,
    /// which is what makes it cost a second on a kernel; this one costs what
    /// the change costs.
    pub fn switch(&self, from: Oid, to: Oid) -> Result<()> {
        let repo = self.repo()?;
        let target = repo.find_commit(to)?;
        let paths = changed_paths(&repo, &repo.find_commit(from)?.tree()?, &target.tree()?)?;
        self.checkout_paths(&repo, &target, &paths)
    }

    /// Check out only `paths` (literal paths; none: nothing is written) of
    /// `target` and point the `colinux` branch at it.
    fn checkout_paths(
        &self,
        repo: &Repository,
        target: &git2::Commit<'_>,
        paths: &[String],
    ) -> Result<()> {
        if !paths.is_empty() {
            let mut co = CheckoutBuilder::new();
            co.force()
                .remove_untracked(false)
                .disable_pathspec_match(true);
            for p in paths {
                co.path(p);
            }
            repo.checkout_tree(target.as_object(), Some(&mut co))
                .with_context(|| {
                    format!(
                        "cannot check out {} in {}",
                        target.id(),
                        self.path.display()
                    )
                })?;
        }
        repo.reference(BRANCH, target.id(), true, "colinux: apply series")?;
        repo.set_head(BRANCH)?;
        Ok(())
    }

    /// Put back the files of the work tree that differ from the index
    /// (edited or deleted tracked files; untracked files are left alone), and
    /// `also` whatever their state, to `commit`, whose tree the index holds.
    /// What a full forced checkout of `commit` does for such a work tree, but
    /// the index is compared with the files by their stat data only.
    pub fn restore(&self, commit: Oid, also: &[String]) -> Result<()> {
        let repo = self.repo()?;
        let target = repo.find_commit(commit)?;
        let mut opts = git2::DiffOptions::new();
        opts.include_untracked(false).ignore_submodules(true);
        let diff = repo
            .diff_index_to_workdir(None, Some(&mut opts))
            .with_context(|| format!("cannot compare the work tree {}", self.path.display()))?;
        let mut paths: Vec<String> = also.to_vec();
        for d in diff.deltas() {
            for f in [d.old_file(), d.new_file()] {
                if let Some(p) = f.path() {
                    paths.push(p.to_string_lossy().into_owned());
                }
            }
        }
        paths.sort();
        paths.dedup();
        self.checkout_paths(&repo, &target, &paths)
    }

    /// Write the tree of `commit` into the empty or absent directory `dir`
    /// (used to give tests and benchmarks their own copies).
    pub fn export(&self, commit: Oid, dir: &Path) -> Result<()> {
        let repo = self.repo()?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tree = repo.find_commit(commit)?.tree()?;
        let mut co = CheckoutBuilder::new();
        co.force()
            .recreate_missing(true)
            .update_index(false)
            .target_dir(dir);
        repo.checkout_tree(tree.as_object(), Some(&mut co))
            .with_context(|| format!("cannot write the tree into {}", dir.display()))?;
        Ok(())
    }
}

/// Record the unpacked release in `dir` as a new git repository whose single
/// commit is tagged `vanilla`.
pub fn import_vanilla(dir: &Path, version: &str, source: &str, sha256: &str) -> Result<Oid> {
    let repo = Repository::init(dir)
        .with_context(|| format!("cannot create a git repository in {}", dir.display()))?;
    {
        let mut cfg = repo.config()?;
        cfg.set_bool("core.autocrlf", false)?;
        cfg.set_bool("core.fileMode", true)?;
        cfg.set_str("colinux.version", version)?;
        cfg.set_str("colinux.source", source)?;
        cfg.set_str("colinux.sha256", sha256)?;
    }
    let mut index = repo.index()?;
    // FORCE: a release archive holds files that its own .gitignore files
    // match (upstream force-added them); they are part of the release.
    index
        .add_all(
            ["*"].iter(),
            IndexAddOption::DEFAULT | IndexAddOption::FORCE,
            None,
        )
        .with_context(|| format!("cannot add {} to git", dir.display()))?;
    index.write()?;
    let tree_id = index.write_tree()?;
    let tree = repo.find_tree(tree_id)?;
    let sig = xtask_signature()?;
    let msg = format!(
        "Linux {version} (vanilla)\n\nUnpacked by `cargo xtask fetch-kernel` from the {source} archive\nsha256 {sha256}.\n"
    );
    let oid = repo.commit(Some(BRANCH), &sig, &sig, &msg, &tree, &[])?;
    repo.reference(VANILLA_TAG, oid, true, "vanilla release")?;
    repo.set_head(BRANCH)?;
    Ok(oid)
}

impl KernelTree {
    /// A scratch copy of this tree at `dir` that shares its objects (`git
    /// clone --shared`), checked out at the vanilla commit, with the same
    /// provenance config. Used by tests and benchmarks so that the cached
    /// tree (and the incremental kernel build on it) is left alone.
    pub fn scratch_clone(&self, dir: &Path) -> Result<KernelTree> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        let status = std::process::Command::new("git")
            .args(["clone", "--quiet", "--shared", "--no-checkout"])
            .arg(&self.path)
            .arg(dir)
            .status()
            .context("cannot run git clone")?;
        if !status.success() {
            anyhow::bail!("git clone --shared {} failed", self.path.display());
        }
        let repo = Repository::open(dir)?;
        {
            let mut cfg = repo.config()?;
            cfg.set_str("colinux.version", &self.version)?;
            cfg.set_str("colinux.source", &self.source)?;
            cfg.set_str("colinux.sha256", &self.sha256)?;
        }
        let vanilla = self.vanilla()?;
        repo.reference(VANILLA_TAG, vanilla, true, "vanilla release")?;
        repo.reference(BRANCH, vanilla, true, "scratch")?;
        repo.set_head(BRANCH)?;
        // Writing the ~80,000 files is nearly all of a clone's time, most
        // of it in the kernel creating them; git's parallel checkout (one
        // worker per CPU) overlaps that, libgit2's checkout does not.
        let status = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "checkout.workers=0", "reset", "--quiet", "--hard"])
            .status()
            .context("cannot run git reset")?;
        if !status.success() {
            anyhow::bail!(
                "cannot check out {}: git reset --hard failed",
                dir.display()
            );
        }
        KernelTree::open(dir)
    }

    /// Reset the work tree and branch to the vanilla commit.
    pub fn reset_to_vanilla(&self) -> Result<()> {
        let repo = self.repo()?;
        let vanilla = self.vanilla()?;
        let commit = repo.find_commit(vanilla)?;
        let mut co = CheckoutBuilder::new();
        co.force().remove_untracked(true);
        repo.checkout_tree(commit.as_object(), Some(&mut co))?;
        repo.reference(BRANCH, vanilla, true, "reset to vanilla")?;
        repo.set_head(BRANCH)?;
        Ok(())
    }
}

/// The blob paths that differ between trees `a` and `b` (added, deleted,
/// changed content or mode; a file that became a directory gives the file
/// and every file under the directory), sorted: the paths a
/// `diff_tree_to_tree` has deltas for, without rename detection.
///
/// Why not libgit2's diff: its tree iterators expand both trees entirely
/// (some 5,000 tree objects read and hashed for a kernel), even where a
/// subtree is the same object on both sides. Here equal subtrees are skipped,
/// so the cost follows the size of the change, not of the tree.
pub fn changed_paths(
    repo: &Repository,
    a: &git2::Tree<'_>,
    b: &git2::Tree<'_>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    diff_trees(repo, Some(a), Some(b), "", &mut out)?;
    out.sort();
    out.dedup();
    Ok(out)
}

fn diff_trees(
    repo: &Repository,
    a: Option<&git2::Tree<'_>>,
    b: Option<&git2::Tree<'_>>,
    prefix: &str,
    out: &mut Vec<String>,
) -> Result<()> {
    use std::collections::BTreeMap;
    type Side = (Oid, i32, bool);
    let entries = |t: Option<&git2::Tree<'_>>| -> BTreeMap<Vec<u8>, Side> {
        t.map(|t| {
            t.iter()
                .map(|e| {
                    let is_tree = e.kind() == Some(git2::ObjectType::Tree);
                    (e.name_bytes().to_vec(), (e.id(), e.filemode(), is_tree))
                })
                .collect()
        })
        .unwrap_or_default()
    };
    let (ea, eb) = (entries(a), entries(b));
    let mut names: Vec<&Vec<u8>> = ea.keys().chain(eb.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let path = format!("{prefix}{}", String::from_utf8_lossy(name));
        let (x, y) = (ea.get(name), eb.get(name));
        if x == y {
            continue; // same object and mode: nothing below differs
        }
        let subtree = |s: Option<&Side>| -> Result<Option<git2::Tree<'_>>> {
            match s {
                Some((id, _, true)) => Ok(Some(repo.find_tree(*id)?)),
                _ => Ok(None),
            }
        };
        let (ta, tb) = (subtree(x)?, subtree(y)?);
        // A blob on either side is a changed (added, deleted, modified) path.
        if x.is_some_and(|s| !s.2) || y.is_some_and(|s| !s.2) {
            out.push(path.clone());
        }
        if ta.is_some() || tb.is_some() {
            diff_trees(repo, ta.as_ref(), tb.as_ref(), &format!("{path}/"), out)?;
        }
    }
    Ok(())
}

/// Compare two directory trees byte for byte, including the executable bit
/// and symlink targets, skipping the top-level names in `skip`. Returns the
/// differences found (at most `limit`).
pub fn compare_dirs(a: &Path, b: &Path, skip: &[&str], limit: usize) -> Result<Vec<String>> {
    use std::collections::BTreeSet;
    use std::os::unix::fs::PermissionsExt;
    fn walk(root: &Path, dir: &Path, skip: &[&str], out: &mut BTreeSet<PathBuf>) -> Result<()> {
        for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let e = e?;
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap_or(&p).to_path_buf();
            if dir == root && skip.iter().any(|s| rel.as_os_str() == *s) {
                continue;
            }
            let ft = e.file_type()?;
            if ft.is_dir() {
                walk(root, &p, skip, out)?;
            } else {
                out.insert(rel);
            }
        }
        Ok(())
    }
    let (mut fa, mut fb) = (BTreeSet::new(), BTreeSet::new());
    walk(a, a, skip, &mut fa)?;
    walk(b, b, skip, &mut fb)?;
    let mut diffs = Vec::new();
    for p in fa.symmetric_difference(&fb) {
        let side = if fa.contains(p) { a } else { b };
        diffs.push(format!("only in {}: {}", side.display(), p.display()));
        if diffs.len() >= limit {
            return Ok(diffs);
        }
    }
    for p in fa.intersection(&fb) {
        let (pa, pb) = (a.join(p), b.join(p));
        let (ma, mb) = (
            std::fs::symlink_metadata(&pa)?,
            std::fs::symlink_metadata(&pb)?,
        );
        let differ = if ma.file_type().is_symlink() || mb.file_type().is_symlink() {
            std::fs::read_link(&pa).ok() != std::fs::read_link(&pb).ok()
        } else {
            ma.len() != mb.len()
                || (ma.permissions().mode() & 0o111 != 0) != (mb.permissions().mode() & 0o111 != 0)
                || std::fs::read(&pa)? != std::fs::read(&pb)?
        };
        if differ {
            diffs.push(format!("differs: {}", p.display()));
            if diffs.len() >= limit {
                break;
            }
        }
    }
    Ok(diffs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A tree of `files` (path, content, executable); `None` content: a symlink to "x".
    fn tree_of(repo: &Repository, files: &[(&str, Option<&str>, bool)]) -> Oid {
        let mut index = git2::Index::new().unwrap();
        for (path, content, exec) in files {
            let (bytes, mode) = match content {
                Some(c) => (c.as_bytes(), if *exec { 0o100755 } else { 0o100644 }),
                None => (&b"x"[..], 0o120000),
            };
            let id = repo.blob(bytes).unwrap();
            index
                .add(&crate::rebase::merge::index_entry(path, id, mode))
                .unwrap();
        }
        index.write_tree_to(repo).unwrap()
    }

    fn libgit2_paths(repo: &Repository, a: &git2::Tree<'_>, b: &git2::Tree<'_>) -> Vec<String> {
        let diff = repo.diff_tree_to_tree(Some(a), Some(b), None).unwrap();
        let mut out = std::collections::BTreeSet::new();
        for d in diff.deltas() {
            for f in [d.old_file(), d.new_file()] {
                if let Some(p) = f.path() {
                    out.insert(p.to_string_lossy().into_owned());
                }
            }
        }
        out.into_iter().collect()
    }

    #[test]
    fn changed_paths_are_the_paths_libgit2s_diff_has() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let a = tree_of(
            &repo,
            &[
                ("Makefile", Some("all:\n"), false),
                ("arch/x86/Kconfig", Some("config X86\n"), false),
                ("arch/x86/boot/a.S", Some("nop\n"), false),
                ("arch/arm/Kconfig", Some("config ARM\n"), false),
                ("scripts/run.sh", Some("#!/bin/sh\n"), false),
                ("lib/link", None, false),
                ("drivers/old.c", Some("old\n"), false),
                ("fs/file", Some("a file\n"), false),
                ("same/deep/er/x.c", Some("x\n"), false),
            ],
        );
        let b = tree_of(
            &repo,
            &[
                ("Makefile", Some("all:\n"), false),
                ("arch/x86/Kconfig", Some("config X86\nconfig COOP\n"), false),
                ("arch/x86/boot/a.S", Some("nop\n"), false),
                ("arch/arm/Kconfig", Some("config ARM\n"), false),
                ("scripts/run.sh", Some("#!/bin/sh\n"), true),
                ("lib/link", Some("now a file\n"), false),
                ("drivers/new/new.c", Some("old\n"), false),
                ("fs/file/inside.c", Some("a dir now\n"), false),
                ("same/deep/er/x.c", Some("x\n"), false),
                ("zz-new", Some("new\n"), false),
            ],
        );
        let (a, b) = (repo.find_tree(a).unwrap(), repo.find_tree(b).unwrap());
        for (x, y) in [(&a, &b), (&b, &a), (&a, &a)] {
            let ours = changed_paths(&repo, x, y).unwrap();
            assert_eq!(ours, libgit2_paths(&repo, x, y));
        }
        assert_eq!(
            changed_paths(&repo, &a, &b).unwrap(),
            [
                "arch/x86/Kconfig",
                "drivers/new/new.c",
                "drivers/old.c",
                "fs/file",
                "fs/file/inside.c",
                "lib/link",
                "scripts/run.sh",
                "zz-new"
            ]
        );
    }
}
