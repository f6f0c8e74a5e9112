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
        let mut co = CheckoutBuilder::new();
        co.force();
        repo.checkout_head(Some(&mut co))
            .with_context(|| format!("cannot check out {}", dir.display()))?;
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
