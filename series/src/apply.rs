//! `cargo xtask apply`: put a quilt series onto a kernel tree, one git commit
//! per patch, and report what happened to each patch.
//!
//! The patches are applied in-process by [`colinux_patch`] (GNU patch's
//! placement rules: offsets, fuzz up to 2, as `quilt push` does) against git
//! trees in memory; only the final result is checked out, so files that end
//! up unchanged keep their timestamps and kernel rebuilds stay incremental.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use git2::{Oid, Signature, Time};

use colinux_patch as patch;

use crate::gitapply::{apply_to_tree, GitView};
use crate::tree::KernelTree;

/// How `apply` behaves.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// The directory holding the `series` file.
    pub series_dir: PathBuf,
    /// Apply even if the tree is not the manifest's vanilla base.
    pub force: bool,
    /// Largest fuzz accepted (quilt's default is 2).
    pub max_fuzz: usize,
}

/// What happened to one patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every hunk matched where the patch said.
    Clean,
    /// Applied, some hunks at an offset and/or with fuzz.
    Moved {
        /// Largest |offset| in lines over its hunks.
        max_offset: usize,
        /// Largest fuzz over its hunks.
        max_fuzz: usize,
        /// One line per moved hunk: `file: hunk #N at offset K (fuzz F)`.
        details: Vec<String>,
    },
    /// The patch does not apply, but its reverse does: it is already in the
    /// tree (upstreamed, or applied twice).
    AlreadyApplied,
    /// The patch does not apply.
    Failed(String),
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct PatchReport {
    pub name: String,
    pub outcome: Outcome,
    /// The commit made for it (when applied).
    pub commit: Option<Oid>,
}

/// The whole report.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    pub patches: Vec<PatchReport>,
    /// Entries of the series not attempted because an earlier one failed.
    pub not_attempted: Vec<String>,
    /// The commit the tree is now at.
    pub head: Oid,
    /// True when the tree already was at that commit (nothing written).
    pub unchanged: bool,
}

impl ApplyReport {
    pub fn ok(&self) -> bool {
        self.not_attempted.is_empty()
            && self
                .patches
                .iter()
                .all(|p| matches!(p.outcome, Outcome::Clean | Outcome::Moved { .. }))
    }

    /// Human-readable report, one line per patch (plus details).
    pub fn render(&self) -> String {
        let mut s = String::new();
        let n = self.patches.len() + self.not_attempted.len();
        for (i, p) in self.patches.iter().enumerate() {
            let status = match &p.outcome {
                Outcome::Clean => "clean".to_string(),
                Outcome::Moved {
                    max_offset,
                    max_fuzz,
                    details,
                } => {
                    let mut t = format!("applied, moved (offset up to {max_offset} lines, fuzz {max_fuzz})");
                    for d in details {
                        t.push_str(&format!("\n            {d}"));
                    }
                    t
                }
                Outcome::AlreadyApplied => {
                    "ALREADY APPLIED: the patch applies in reverse (upstreamed?); drop it from the series".to_string()
                }
                Outcome::Failed(why) => format!("FAILED\n{}", indent(why, 12)),
            };
            s.push_str(&format!("[{:>3}/{n}] {}  {status}\n", i + 1, p.name));
        }
        for name in &self.not_attempted {
            s.push_str(&format!("[  -/{n}] {name}  not attempted\n"));
        }
        s
    }
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One patch of a series: its series entry, its bytes, its parsed form.
#[derive(Debug)]
pub struct LoadedPatch {
    pub entry: patch::SeriesEntry,
    pub bytes: Vec<u8>,
    pub parsed: patch::Patch,
}

/// Read and parse a whole series (the `series` file of `series_dir` and
/// every patch it lists). Errors name the file and line: a malformed
/// series or patch is reported before any work is done.
pub fn load_series(series_dir: &Path) -> Result<Vec<LoadedPatch>> {
    let series_file = series_dir.join("series");
    let text = std::fs::read_to_string(&series_file)
        .with_context(|| format!("cannot read the series file {}", series_file.display()))?;
    let entries = patch::parse_series(&text, &series_file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = series_dir.join(&entry.name);
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "{}:{}: cannot read patch {}",
                series_file.display(),
                entry.line,
                path.display()
            )
        })?;
        let parsed = patch::parse_patch(&bytes, &path.display().to_string())
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        out.push(LoadedPatch {
            entry,
            bytes,
            parsed,
        });
    }
    Ok(out)
}

/// Author and message of a patch file (from its mail headers when it has them).
pub(crate) fn commit_info(name: &str, text: &[u8]) -> (String, String, String) {
    let text = String::from_utf8_lossy(text);
    let h = crate::refresh::parse_headers(&text);
    let (who, email) = h.author.clone().unwrap_or_else(|| {
        (
            "colinux xtask".to_string(),
            "xtask@colinux.invalid".to_string(),
        )
    });
    let has_headers = h.subject.is_some();
    let mut lines = text.lines();
    if has_headers {
        for l in lines.by_ref() {
            if l.is_empty() {
                break;
            }
        }
    }
    let mut body = Vec::new();
    for l in lines {
        if l == "---"
            || l.starts_with("diff --git ")
            || l.starts_with("--- ")
            || l.starts_with("Index: ")
        {
            break;
        }
        body.push(l);
    }
    while body.last().is_some_and(|l| l.trim().is_empty()) {
        body.pop();
    }
    while body.first().is_some_and(|l| l.trim().is_empty()) {
        body.remove(0);
    }
    let mut msg = h.subject.unwrap_or_else(|| name.to_string());
    msg.push('\n');
    if !body.is_empty() {
        msg.push('\n');
        msg.push_str(&body.join("\n"));
        msg.push('\n');
    }
    msg.push_str(&format!("\nPatch: {name}\n"));
    (who, email, msg)
}

/// Path of the guest <-> host ABI header inside a kernel tree (guest uapi,
/// created by the series).
pub const ABI_HEADER: &str = "include/uapi/linux/cooperative.h";

/// The ABI header ([`ABI_HEADER`]) as the series in `series_dir` defines it.
pub fn abi_header(series_dir: &Path) -> Result<String> {
    let content = file_from_series(series_dir, ABI_HEADER)?;
    String::from_utf8(content).context("the ABI header is not UTF-8")
}

/// The file `path` as the series in `series_dir` defines it: every patch
/// that touches it (only its part for that file), applied in order onto
/// nothing. An error when no patch creates it or the series deletes it.
pub fn file_from_series(series_dir: &Path, path: &str) -> Result<Vec<u8>> {
    let mut tree = patch::MemTree::new();
    let mut touched = false;
    for loaded in load_series(series_dir)? {
        let (e, mut p) = (loaded.entry, loaded.parsed);
        p.files.retain(|f| {
            [&f.old_path, &f.new_path].iter().any(|n| {
                n.as_deref()
                    .is_some_and(|n| strip(n, e.strip).as_deref() == Some(path))
            })
        });
        if p.files.is_empty() {
            continue;
        }
        touched = true;
        patch::apply_in_memory(&mut tree, &p, e.strip, e.reverse, 0)
            .map_err(|err| anyhow::anyhow!("{}: {err}", series_dir.join(&e.name).display()))?;
    }
    if !touched {
        anyhow::bail!(
            "no patch in {} creates {path}",
            series_dir.join("series").display()
        );
    }
    let (content, _) = tree
        .remove(path)
        .ok_or_else(|| anyhow::anyhow!("the series deletes {path}"))?;
    Ok(content)
}

/// `name` without its first `n` components (`patch -pN`).
fn strip(name: &str, n: u32) -> Option<String> {
    let mut parts = name.split('/');
    for _ in 0..n {
        parts.next()?;
    }
    let rest: Vec<&str> = parts.collect();
    (!rest.is_empty()).then(|| rest.join("/"))
}

/// Check that `tree` is a tree this series may be applied to.
pub fn check_base(
    tree: &KernelTree,
    base_version: &str,
    accepted: &[(String, &str)],
    force: bool,
) -> Result<()> {
    let dirty = tree.dirty_paths()?;
    if !dirty.is_empty() {
        let shown: Vec<_> = dirty.iter().take(10).cloned().collect();
        anyhow::bail!(
            "{} has local changes that applying would overwrite ({} paths: {}{}).\n\
             Commit them and regenerate the patches, or discard them with `git -C {} reset --hard && git -C {} clean -fd`.",
            tree.path.display(),
            dirty.len(),
            shown.join(", "),
            if dirty.len() > 10 { ", …" } else { "" },
            tree.path.display(),
            tree.path.display(),
        );
    }
    if force {
        return Ok(());
    }
    if tree.version != base_version {
        anyhow::bail!(
            "{} is linux {}, but the series is based on {base_version} (kernels.toml); \
             use --force to apply anyway, or `cargo xtask rebase` to move the series",
            tree.path.display(),
            tree.version
        );
    }
    if !accepted.iter().any(|(h, _)| *h == tree.sha256) {
        anyhow::bail!(
            "{} was unpacked from an archive (sha256 {}) that kernels.toml does not pin for {base_version}; use --force to apply anyway",
            tree.path.display(),
            tree.sha256
        );
    }
    Ok(())
}

/// Apply the series in `opts.series_dir` onto the vanilla commit of `tree`
/// and check out the result (up to the last patch that applied).
pub fn apply_series(tree: &KernelTree, opts: &ApplyOptions) -> Result<ApplyReport> {
    // Parse everything first: a malformed patch is reported before any work.
    let loaded = load_series(&opts.series_dir)?;

    let _lock = colinux_buildenv::paths::lock_path("tree", &tree.path)?;
    let repo = tree.repo()?;
    let base = tree.vanilla()?;
    let mut parent = repo.find_commit(base)?;
    let mut reports = Vec::new();
    let mut not_attempted = Vec::new();
    let mut failed = false;
    for LoadedPatch {
        entry,
        bytes,
        parsed: p,
    } in &loaded
    {
        if failed {
            not_attempted.push(entry.name.clone());
            continue;
        }
        match apply_to_tree(
            &repo,
            &parent.tree()?,
            p,
            entry.strip,
            entry.reverse,
            opts.max_fuzz,
        )? {
            Ok((new_tree, applied)) => {
                let new_tree = repo.find_tree(new_tree)?;
                let (who, email, msg) = commit_info(&entry.name, bytes);
                let sig = Signature::new(&who, &email, &Time::new(0, 0))
                    .or_else(|_| crate::tree::xtask_signature())?;
                let committer = crate::tree::xtask_signature()?;
                let oid = repo.commit(None, &sig, &committer, &msg, &new_tree, &[&parent])?;
                parent = repo.find_commit(oid)?;
                let moved: Vec<_> = applied
                    .hunks
                    .iter()
                    .filter(|h| h.offset != 0 || h.fuzz != 0)
                    .collect();
                let outcome = if moved.is_empty() {
                    Outcome::Clean
                } else {
                    Outcome::Moved {
                        max_offset: moved
                            .iter()
                            .map(|h| h.offset.unsigned_abs())
                            .max()
                            .unwrap_or(0),
                        max_fuzz: moved.iter().map(|h| h.fuzz).max().unwrap_or(0),
                        details: moved
                            .iter()
                            .map(|h| {
                                format!(
                                    "{}: hunk #{} at offset {:+} lines{}",
                                    h.file,
                                    h.hunk,
                                    h.offset,
                                    if h.fuzz > 0 {
                                        format!(" with fuzz {}", h.fuzz)
                                    } else {
                                        String::new()
                                    }
                                )
                            })
                            .collect(),
                    }
                };
                reports.push(PatchReport {
                    name: entry.name.clone(),
                    outcome,
                    commit: Some(oid),
                });
            }
            Err(err) => {
                failed = true;
                let view = GitView {
                    repo: &repo,
                    tree: parent.tree()?,
                };
                let reverse_ok =
                    patch::apply(&view, p, entry.strip, !entry.reverse, opts.max_fuzz).is_ok();
                let outcome = if reverse_ok {
                    Outcome::AlreadyApplied
                } else {
                    Outcome::Failed(err.to_string())
                };
                reports.push(PatchReport {
                    name: entry.name.clone(),
                    outcome,
                    commit: None,
                });
            }
        }
    }
    let head = parent.id();
    let unchanged = tree.head()? == head;
    if !unchanged {
        tree.checkout(head)?;
    }
    Ok(ApplyReport {
        patches: reports,
        not_attempted,
        head,
        unchanged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_info_from_format_patch() {
        let text = b"From 1234 Mon Sep 17 00:00:00 2001\nFrom: A Dev <a@example.org>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nSubject: [PATCH 1/2] x86: do a thing\n\nWhy we do it.\n\nSigned-off-by: A Dev <a@example.org>\n---\n a | 1 +\n";
        let (who, email, msg) = commit_info("0001-x.patch", text);
        assert_eq!(who, "A Dev");
        assert_eq!(email, "a@example.org");
        assert_eq!(
            msg,
            "x86: do a thing\n\nWhy we do it.\n\nSigned-off-by: A Dev <a@example.org>\n\nPatch: 0001-x.patch\n"
        );
    }

    #[test]
    fn commit_info_without_headers() {
        let (who, _, msg) = commit_info("fix.patch", b"Fix the frobnicator.\n--- a/x\n+++ b/x\n");
        assert_eq!(who, "colinux xtask");
        assert_eq!(
            msg,
            "fix.patch\n\nFix the frobnicator.\n\nPatch: fix.patch\n"
        );
    }
}
