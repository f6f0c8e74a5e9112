//! `cargo xtask rebase`: move the patch series from its base release V1 to a
//! new release V2, one patch at a time, with a real 3-way merge per file.
//!
//! The work happens in a work tree of V2 (a scratch clone of the cached V2
//! tree) whose object database also reaches the V1 tree's objects (an
//! `objects/info/alternates` line). The series is first applied to V1 in
//! memory, which gives each patch its *base* (V1 before it) and *ours* (V1
//! after it); *theirs* is V2 with the earlier patches already moved. Only the
//! files a patch touches are merged (libgit2's xdiff merge, diff3 style).
//!
//! A conflict stops the run: the conflicted files are left in the work tree
//! with `<<<<<<< ours` / `||||||| base` / `=======` / `>>>>>>> theirs`
//! markers and the state is saved in `.git/colinux-rebase/state.toml`;
//! [`continue_rebase`], [`skip`] and [`abort`] go on from there. Each manual
//! resolution is recorded, per conflict hunk, in
//! `<series>/resolutions/<V2>/<patch>.resolution` and replayed when the same
//! conflict text appears again.
//!
//! A patch that merges without conflict but must differ on V2 (an interface
//! it uses changed between the releases: a callback's signature) carries
//! its V2 form as a recorded *variant*:
//! `<series>/resolutions/<V2>/<patch>.variant`, a unified diff (`-p1`) from
//! what the patch merges to on V2 to what it should be there. It is applied
//! exactly after the merge (a variant that no longer applies stops the
//! rebase with the file to update) and copied to the output directory with
//! the resolutions. On success the series is rewritten for V2
//! ([`crate::refresh::write_series`]) and, when asked, `kernels.toml`'s
//! `[series] base` is set to V2.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use git2::{build::TreeUpdateBuilder, Oid, Repository};
use serde::{Deserialize, Serialize};

use crate::apply::{load_series, LoadedPatch};
use crate::gitapply::{apply_to_tree, file_mode};
use crate::refresh::{self, WriteReport};
use crate::tree::KernelTree;

pub mod merge;
pub mod rename;
pub mod resolution;
#[cfg(test)]
mod tests;

pub use merge::conflict_hunks;
use merge::{entry_of, has_markers, merge_file, touched_paths, Entry, FileResult};
use rename::{follow_rename, paths_by_name};
use resolution::{
    extract_resolutions, parse_resolution, render_resolution, replay, resolution_path,
    variant_path, Recorded,
};

/// How to start a rebase.
#[derive(Debug, Clone)]
pub struct RebaseOptions {
    /// The series to move (holds `series`), based on the V1 tree's release.
    pub series_dir: PathBuf,
    /// Where the rebased series is written (may be `series_dir`: in place).
    pub out_dir: PathBuf,
    /// The cached V1 tree (the series' base).
    pub v1_tree: PathBuf,
    /// The cached V2 tree (the target).
    pub v2_tree: PathBuf,
    /// The work tree to make (a scratch clone of V2).
    pub work_dir: PathBuf,
    /// `kernels.toml` whose `[series] base` is set to V2 on success.
    pub manifest: Option<PathBuf>,
}

/// What happened to one patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Outcome {
    /// The patch applies to V2 as it is (every hunk at its line, no fuzz).
    Clean,
    /// A 3-way merge moved it without conflicts.
    Merged { files: Vec<String> },
    /// Conflicts resolved by replaying a recorded resolution.
    Replayed {
        files: Vec<String>,
        resolution: String,
    },
    /// Merged without a stop, then the patch's recorded variant for V2 (an
    /// interface that changed between the releases) applied.
    Variant { variant: String },
    /// Conflicts resolved by hand (`--continue`); the resolution is recorded.
    Resolved { files: Vec<String> },
    /// Stopped here: (file, conflict hunks).
    Conflict { files: Vec<(String, usize)> },
    /// Dropped: V2 already has what the patch produces.
    AlreadyUpstream { evidence: String },
    /// Dropped: the merge leaves V2 unchanged.
    Empty { evidence: String },
    /// Dropped by `--skip`.
    Skipped,
}

impl Outcome {
    fn dropped(&self) -> bool {
        matches!(
            self,
            Outcome::AlreadyUpstream { .. } | Outcome::Empty { .. } | Outcome::Skipped
        )
    }

    fn describe(&self) -> String {
        match self {
            Outcome::Clean => "clean".into(),
            Outcome::Merged { files } => format!("merged (3-way: {})", files.join(", ")),
            Outcome::Replayed { files, resolution } => format!(
                "merged, conflicts resolved by the recorded resolution {resolution} ({})",
                files.join(", ")
            ),
            Outcome::Variant { variant } => {
                format!("merged, then the recorded variant {variant} applied")
            }
            Outcome::Resolved { files } => {
                format!(
                    "resolved by hand, resolution recorded ({})",
                    files.join(", ")
                )
            }
            Outcome::Conflict { files } => {
                let n: usize = files.iter().map(|(_, h)| h).sum();
                let list: Vec<_> = files
                    .iter()
                    .map(|(f, h)| format!("{f} ({h} hunk{})", if *h == 1 { "" } else { "s" }))
                    .collect();
                format!("CONFLICT: {n} hunks in {}", list.join(", "))
            }
            Outcome::AlreadyUpstream { evidence } => {
                format!("already upstream, dropped: {evidence}")
            }
            Outcome::Empty { evidence } => format!("now empty, dropped: {evidence}"),
            Outcome::Skipped => "skipped (--skip), dropped".into(),
        }
    }
}

/// One patch of the series during the rebase.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PatchState {
    name: String,
    /// V1 before the patch.
    base: String,
    /// V1 after the patch.
    ours: String,
    strip: u32,
    reverse: bool,
    outcome: Option<Outcome>,
    /// The commit made on V2.
    commit: Option<String>,
    /// The resolution file's text, when the patch had conflicts.
    resolution: Option<String>,
    /// The recorded variant's text, when one was applied.
    #[serde(default)]
    variant: Option<String>,
}

impl State {
    /// Patch `i` is done with `outcome` (dropped or left out): go on with
    /// the next.
    fn settle(&mut self, i: usize, outcome: Outcome) {
        self.patches[i].outcome = Some(outcome);
        self.next += 1;
    }
}

/// A file left with conflict markers.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ConflictFile {
    path: String,
    /// The merge result with markers, as first written.
    text: String,
}

/// The saved state of a stopped rebase.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    v1: String,
    v2: String,
    series_dir: PathBuf,
    out_dir: PathBuf,
    manifest: Option<PathBuf>,
    /// V2 with the patches moved so far.
    head: String,
    /// Index of the next patch to do (the conflicted one when stopped).
    next: usize,
    patches: Vec<PatchState>,
    /// Files of patch `next` the patch touches.
    touched: Vec<String>,
    conflicts: Vec<ConflictFile>,
    /// Non-interactive ([`start_keep_going`]): a conflicted patch is recorded
    /// as a conflict and left out, and the run goes on with the next one.
    #[serde(default)]
    keep_going: bool,
    /// The checksum of the work tree's index when the run stopped. While the
    /// index and `HEAD` are unchanged, the index holds `head`'s tree and the
    /// work tree is put back file by file from what differs from it, instead
    /// of by a full checkout (see [`index_untouched`]).
    #[serde(default)]
    index: Option<String>,
}

/// The result of a `rebase` command.
#[derive(Debug, Clone)]
pub struct RebaseRun {
    pub v1: String,
    pub v2: String,
    pub work_dir: PathBuf,
    /// Each patch attempted so far with what happened to it.
    pub patches: Vec<(String, Outcome)>,
    /// Set when the run stopped at a conflict.
    pub stopped: Option<String>,
    /// Set when the run finished: how the series files were written.
    pub written: Option<WriteReport>,
    pub out_dir: PathBuf,
    /// Resolution files written.
    pub resolutions: Vec<PathBuf>,
    /// The work tree's commit (V2 plus the moved patches).
    pub head: Oid,
    pub manifest_updated: bool,
}

impl RebaseRun {
    /// True when the run finished (no conflict left).
    pub fn finished(&self) -> bool {
        self.stopped.is_none()
    }

    pub fn outcome(&self, name: &str) -> Option<&Outcome> {
        self.patches.iter().find(|(n, _)| n == name).map(|(_, o)| o)
    }

    pub fn render(&self) -> String {
        let mut s = format!("rebase of the series from {} onto {}:\n", self.v1, self.v2);
        let n = self.patches.len();
        for (i, (name, o)) in self.patches.iter().enumerate() {
            s.push_str(&format!("[{:>3}/{n}] {name}  {}\n", i + 1, o.describe()));
        }
        if let Some(msg) = &self.stopped {
            s.push_str(msg);
        }
        if let Some(w) = &self.written {
            s.push_str(&format!(
                "series for {} written to {}:\n{}",
                self.v2,
                self.out_dir.display(),
                w.render()
            ));
            for r in &self.resolutions {
                s.push_str(&format!("  resolution recorded: {}\n", r.display()));
            }
            if self.manifest_updated {
                s.push_str(&format!("kernels.toml: [series] base = \"{}\"\n", self.v2));
            }
            s.push_str(&format!(
                "the rebased tree is {} (commit {})\n",
                self.work_dir.display(),
                self.head
            ));
        }
        s
    }
}

fn state_dir(work_dir: &Path) -> PathBuf {
    work_dir.join(".git").join("colinux-rebase")
}

fn state_file(work_dir: &Path) -> PathBuf {
    state_dir(work_dir).join("state.toml")
}

/// True when a rebase is stopped in `work_dir`.
pub fn in_progress(work_dir: &Path) -> bool {
    state_file(work_dir).exists()
}

fn save_state(work_dir: &Path, state: &State) -> Result<()> {
    let text = toml::to_string(state).context("cannot serialise the rebase state")?;
    refresh::write_atomic(&state_file(work_dir), text.as_bytes())
}

fn load_state(work_dir: &Path) -> Result<State> {
    let path = state_file(work_dir);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no rebase in progress in {} (no {})",
            work_dir.display(),
            path.display()
        )
    })?;
    toml::from_str(&text).with_context(|| format!("{}: not a rebase state", path.display()))
}

// ---------------------------------------------------------------------------
// The run

/// Start moving the series in `opts.series_dir` from the V1 tree's release
/// onto the V2 tree's release.
pub fn start(opts: &RebaseOptions) -> Result<RebaseRun> {
    start_with(opts, false)
}

/// [`start`] without stopping: each conflicted patch is reported as
/// [`Outcome::Conflict`], left out of the rebased series and of the work
/// tree's history (nothing is written to the work tree for it), and the run
/// goes on with the next patch. For surveys and benchmarks of a whole series;
/// it writes only to an output directory other than the series (and never
/// to kernels.toml), so a conflicted patch is never lost from the series.
pub fn start_keep_going(opts: &RebaseOptions) -> Result<RebaseRun> {
    if opts.out_dir == opts.series_dir || opts.manifest.is_some() {
        anyhow::bail!(
            "a keep-going rebase leaves conflicted patches out: it must write to another \
             output directory than the series, and not to kernels.toml"
        );
    }
    start_with(opts, true)
}

fn start_with(opts: &RebaseOptions, keep_going: bool) -> Result<RebaseRun> {
    let v1 = KernelTree::open(&opts.v1_tree)?;
    let v2 = KernelTree::open(&opts.v2_tree)?;
    if v1.version == v2.version {
        anyhow::bail!("the series is already based on {}", v1.version);
    }
    if in_progress(&opts.work_dir) {
        anyhow::bail!(
            "a rebase is already in progress in {}: finish it with `cargo xtask rebase --continue`, \
             drop its current patch with `--skip`, or forget it with `--abort`",
            opts.work_dir.display()
        );
    }
    let loaded = crate::timed("load the series", || load_series(&opts.series_dir))?;

    // The work tree: reuse a clean earlier one, else a fresh scratch clone.
    let existing = if opts.work_dir.exists() {
        match KernelTree::open(&opts.work_dir) {
            Ok(t) => Some(t),
            Err(_) => {
                let empty = std::fs::read_dir(&opts.work_dir)
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(false);
                if !empty {
                    anyhow::bail!(
                        "{} exists and is not a kernel tree; delete it or choose another work directory",
                        opts.work_dir.display()
                    );
                }
                None
            }
        }
    } else {
        None
    };
    if let Some(t) = &existing {
        let dirty = crate::timed("status of the work tree", || t.dirty_paths())?;
        if !dirty.is_empty() {
            anyhow::bail!(
                "the rebase work tree {} has local changes ({}{}); \
                 commit or discard them (or delete the directory) first",
                opts.work_dir.display(),
                dirty.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
                if dirty.len() > 5 { ", …" } else { "" }
            );
        }
    }
    let reuse =
        existing.filter(|t| t.version == v2.version && t.vanilla().ok() == v2.vanilla().ok());
    let work = match reuse {
        Some(t) => {
            tracing::info!("reusing the work tree {}", t.path.display());
            // Clean (checked above): the index and the files are HEAD's, so
            // only the files HEAD changed need to go back to vanilla.
            let (from, to) = (t.head()?, v2.vanilla()?);
            crate::timed("reset the work tree to vanilla", || t.switch(from, to))?;
            t
        }
        None => {
            tracing::info!(
                "making the work tree {} (a scratch clone of linux {})",
                opts.work_dir.display(),
                v2.version
            );
            if let Some(parent) = opts.work_dir.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            crate::timed("scratch clone", || v2.scratch_clone(&opts.work_dir))?
        }
    };
    // Make V1's objects reachable from the work repository.
    let v1_objects = v1.repo()?.path().join("objects");
    let alternates = opts.work_dir.join(".git/objects/info/alternates");
    let current = std::fs::read_to_string(&alternates).unwrap_or_default();
    let line = v1_objects.display().to_string();
    if !current.lines().any(|l| l == line) {
        let mut text = current.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&line);
        text.push('\n');
        std::fs::create_dir_all(alternates.parent().unwrap_or(Path::new(".")))?;
        std::fs::write(&alternates, text)
            .with_context(|| format!("cannot write {}", alternates.display()))?;
    }
    let repo = work.repo()?;

    // The series on V1, in memory: base and ours of every patch.
    tracing::info!("applying the series to linux {} in memory", v1.version);
    let v1_started = std::time::Instant::now();
    let mut parent = repo.find_commit(v1.vanilla()?).with_context(|| {
        format!(
            "the V1 tree's objects ({}) are not reachable",
            v1_objects.display()
        )
    })?;
    let mut patches = Vec::new();
    for p in &loaded {
        let tree = parent.tree()?;
        let new_tree = match apply_in_memory(&repo, &tree, p, 2)? {
            Ok((t, _)) => t,
            Err(e) => anyhow::bail!(
                "the series does not apply to its base linux {} (kernels.toml [series] base): \
                 {} failed:\n{e}\nFix the series on {} first (`cargo xtask apply` shows the report).",
                v1.version,
                p.entry.name,
                v1.version
            ),
        };
        let (who, email, msg) = crate::apply::commit_info(&p.entry.name, &p.bytes);
        let sig = git2::Signature::new(&who, &email, &git2::Time::new(0, 0))
            .or_else(|_| crate::tree::xtask_signature())?;
        let committer = crate::tree::xtask_signature()?;
        let oid = repo.commit(
            None,
            &sig,
            &committer,
            &msg,
            &repo.find_tree(new_tree)?,
            &[&parent],
        )?;
        patches.push(PatchState {
            name: p.entry.name.clone(),
            base: parent.id().to_string(),
            ours: oid.to_string(),
            strip: p.entry.strip,
            reverse: p.entry.reverse,
            outcome: None,
            commit: None,
            resolution: None,
            variant: None,
        });
        parent = repo.find_commit(oid)?;
    }
    tracing::debug!(
        "series applied to V1 in memory: {:.3}s",
        v1_started.elapsed().as_secs_f64()
    );
    let state = State {
        v1: v1.version.clone(),
        v2: v2.version.clone(),
        series_dir: opts.series_dir.clone(),
        out_dir: opts.out_dir.clone(),
        manifest: opts.manifest.clone(),
        head: v2.vanilla()?.to_string(),
        next: 0,
        patches,
        touched: Vec::new(),
        conflicts: Vec::new(),
        keep_going,
        index: None,
    };
    run_loop(&work, state, &loaded)
}

fn oid(s: &str) -> Result<Oid> {
    Oid::from_str(s).with_context(|| format!("bad object id {s:?} in the rebase state"))
}

/// Recorded resolutions for `patch` (the output directory's, then the series').
fn recorded_for(state: &State, patch: &str) -> Result<Option<(PathBuf, Vec<Recorded>)>> {
    for dir in [&state.out_dir, &state.series_dir] {
        let p = resolution_path(dir, &state.v2, patch);
        if p.exists() {
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            return Ok(Some((p.clone(), parse_resolution(&text, &p)?)));
        }
    }
    Ok(None)
}

/// Commit `tree` on `parent` as the patch's commit on V1 (`ours`) was
/// made: same author, committer and message.
fn commit_as(
    repo: &Repository,
    ours: &git2::Commit<'_>,
    tree: Oid,
    parent: &git2::Commit<'_>,
) -> Result<Oid> {
    Ok(repo.commit(
        None,
        &ours.author(),
        &ours.committer(),
        &String::from_utf8_lossy(ours.message_bytes()),
        &repo.find_tree(tree)?,
        &[parent],
    )?)
}

/// The recorded variant of `patch` for V2 (the output directory's, then
/// the series'): its file and text.
fn variant_for(state: &State, patch: &str) -> Result<Option<(PathBuf, String)>> {
    for dir in [&state.out_dir, &state.series_dir] {
        let p = variant_path(dir, &state.v2, patch);
        if p.exists() {
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            return Ok(Some((p, text)));
        }
    }
    Ok(None)
}

/// `tree` with the variant `text` (from `file`, for `patch`) applied
/// exactly: no fuzz, no offset beyond what GNU patch finds at once.
fn apply_variant(
    repo: &Repository,
    tree: Oid,
    file: &Path,
    text: &str,
    patch: &str,
    v2: &str,
) -> Result<Oid> {
    let parsed = colinux_patch::parse_patch(text.as_bytes(), &file.display().to_string())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    match apply_to_tree(repo, &repo.find_tree(tree)?, &parsed, 1, false, 0)? {
        Ok((id, _)) => Ok(id),
        Err(e) => anyhow::bail!(
            "{}: the recorded variant of {patch} for linux {v2} no longer applies: {e}\n\
             Update it: it is a diff (-p1) from what the patch merges to on {v2} to what it should be",
            file.display()
        ),
    }
}

fn run_loop(work: &KernelTree, mut state: State, loaded: &[LoadedPatch]) -> Result<RebaseRun> {
    let repo = work.repo()?;
    // The work tree holds `state.head` on entry; it is only written at a
    // stop and at the end, each time from the commit it then holds.
    let checked_out = oid(&state.head)?;
    // Candidates for files the target release moved, by name: a walk of the
    // whole tree, so made only when a patch touches a file that is missing.
    let mut by_name = None;
    let loop_started = std::time::Instant::now();
    while state.next < state.patches.len() {
        let i = state.next;
        let name = state.patches[i].name.clone();
        tracing::info!("[{}/{}] {name}", i + 1, state.patches.len());
        let base_tree = repo.find_commit(oid(&state.patches[i].base)?)?.tree()?;
        let ours_commit = repo.find_commit(oid(&state.patches[i].ours)?)?;
        let ours_tree = ours_commit.tree()?;
        let head = repo.find_commit(oid(&state.head)?)?;
        let theirs_tree = head.tree()?;
        let touched = touched_paths(&repo, &base_tree, &ours_tree)?;

        if touched.is_empty() {
            state.settle(
                i,
                Outcome::Empty {
                    evidence: "the patch changes no file".into(),
                },
            );
            continue;
        }
        if touched
            .iter()
            .all(|p| entry_of(&theirs_tree, p) == entry_of(&ours_tree, p))
        {
            state.settle(
                i,
                Outcome::AlreadyUpstream {
                    evidence: format!(
                        "linux {} already has the patched content of {}",
                        state.v2,
                        touched.join(", ")
                    ),
                },
            );
            continue;
        }
        let exact = match loaded.iter().find(|p| p.entry.name == name) {
            Some(p) => matches!(apply_in_memory(&repo, &theirs_tree, p, 0)?, Ok((_, true))),
            None => false,
        };

        let mut upd = TreeUpdateBuilder::new();
        let mut conflicts = Vec::new();
        let mut merged_files = Vec::new();
        let mut results = Vec::new();
        let mut dest_paths = Vec::new();
        for old_path in &touched {
            let (b, o) = (
                entry_of(&base_tree, old_path),
                entry_of(&ours_tree, old_path),
            );
            let mut path = old_path.clone();
            let mut t = entry_of(&theirs_tree, old_path);
            if t.is_none() && b.is_some() {
                let by_name = match &mut by_name {
                    Some(m) => m,
                    None => by_name.insert(crate::timed("paths by name", || -> Result<_> {
                        Ok(paths_by_name(&repo.find_commit(checked_out)?.tree()?))
                    })?),
                };
                if let Some(moved) =
                    follow_rename(&repo, by_name, &base_tree, &theirs_tree, old_path, b)?
                {
                    tracing::info!(
                        "{name}: {old_path} moved to {moved} in linux {}; following it",
                        state.v2
                    );
                    t = entry_of(&theirs_tree, &moved);
                    path = moved;
                }
            }
            dest_paths.push(path.clone());
            let path = &path;
            if t != b && o != t {
                merged_files.push(path.clone());
            }
            let r = merge_file(&repo, path, b, o, t)?;
            if let FileResult::Conflict { text, .. } = &r {
                conflicts.push(ConflictFile {
                    path: path.clone(),
                    text: text.clone(),
                });
            }
            results.push((path.clone(), r));
        }

        // Replay recorded resolutions.
        let mut replayed_from = None;
        let mut left = Vec::new();
        if !conflicts.is_empty() {
            let recorded = recorded_for(&state, &name)?;
            for (path, r) in results.iter_mut() {
                let FileResult::Conflict { text, mode, hunks } = r else {
                    continue;
                };
                let Some((file, rec)) = &recorded else {
                    left.push((path.clone(), *hunks));
                    continue;
                };
                let (new_text, unresolved) = replay(path, text, rec);
                if unresolved == 0 {
                    let id = repo.blob(new_text.as_bytes())?;
                    *r = FileResult::Take(Some((id, *mode)));
                    replayed_from = Some(file.clone());
                } else {
                    tracing::warn!(
                        "{}: the recorded resolution does not match {unresolved} of the {hunks} \
                         conflict hunks in {path} (the conflict text differs); resolve by hand",
                        file.display()
                    );
                    *hunks = unresolved;
                    *text = new_text;
                    left.push((path.clone(), unresolved));
                }
            }
        }

        if !left.is_empty() && state.keep_going {
            state.settle(i, Outcome::Conflict { files: left });
            continue;
        }
        if !left.is_empty() {
            tracing::debug!(
                "patches merged: {:.3}s",
                loop_started.elapsed().as_secs_f64()
            );
            // Stop: write the patch's files (merged and conflicted) into the work tree.
            crate::timed("checkout at the stop", || {
                work.switch(checked_out, head.id())
            })?;
            for (path, r) in &results {
                let dest = work.path.join(path);
                match r {
                    FileResult::Take(Some((id, mode))) => {
                        write_work_file(&dest, repo.find_blob(*id)?.content(), *mode)?
                    }
                    FileResult::Take(None) => {
                        if dest.exists() {
                            std::fs::remove_file(&dest)
                                .with_context(|| format!("cannot remove {}", dest.display()))?;
                        }
                    }
                    FileResult::Conflict { text, mode, .. } => {
                        write_work_file(&dest, text.as_bytes(), *mode)?
                    }
                }
            }
            state.patches[i].outcome = Some(Outcome::Conflict {
                files: left.clone(),
            });
            state.touched = dest_paths;
            state.conflicts = conflicts;
            state.index = index_checksum(&work.path);
            save_state(&work.path, &state)?;
            let mut run = report(&state, work, None, Vec::new(), false)?;
            run.stopped = Some(stop_message(
                &state,
                &work.path,
                &left,
                replayed_from.is_some(),
            ));
            return Ok(run);
        }

        for (path, r) in &results {
            match r {
                FileResult::Take(Some((id, mode))) => {
                    upd.upsert(path.as_str(), *id, file_mode(*mode));
                }
                FileResult::Take(None) => {
                    upd.remove(path.as_str());
                }
                FileResult::Conflict { .. } => {}
            }
        }
        let mut new_tree = upd.create_updated(&repo, &theirs_tree)?;
        let variant = variant_for(&state, &name)?;
        if let Some((file, text)) = &variant {
            new_tree = apply_variant(&repo, new_tree, file, text, &name, &state.v2)?;
        }
        if new_tree == theirs_tree.id() {
            state.settle(
                i,
                Outcome::Empty {
                    evidence: format!(
                        "merging it into linux {} changes nothing in {}",
                        state.v2,
                        touched.join(", ")
                    ),
                },
            );
            continue;
        }
        let commit = commit_as(&repo, &ours_commit, new_tree, &head)?;
        let outcome = if let Some((file, text)) = variant {
            state.patches[i].variant = Some(text);
            Outcome::Variant {
                variant: file.display().to_string(),
            }
        } else if let Some(file) = replayed_from {
            let rec = std::fs::read_to_string(&file).unwrap_or_default();
            state.patches[i].resolution = Some(rec);
            Outcome::Replayed {
                files: conflicts.iter().map(|c| c.path.clone()).collect(),
                resolution: file.display().to_string(),
            }
        } else if exact {
            Outcome::Clean
        } else {
            Outcome::Merged {
                files: if merged_files.is_empty() {
                    touched.clone()
                } else {
                    merged_files
                },
            }
        };
        state.patches[i].outcome = Some(outcome);
        state.patches[i].commit = Some(commit.to_string());
        state.head = commit.to_string();
        state.next += 1;
    }
    tracing::debug!(
        "patches merged: {:.3}s",
        loop_started.elapsed().as_secs_f64()
    );
    finish(work, state, checked_out)
}

fn write_work_file(dest: &Path, content: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(dest, content).with_context(|| format!("cannot write {}", dest.display()))?;
    let perm = if mode == 0o100755 { 0o755 } else { 0o644 };
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(perm))?;
    Ok(())
}

fn stop_message(state: &State, work_dir: &Path, left: &[(String, usize)], partial: bool) -> String {
    let p = &state.patches[state.next];
    let mut s = format!(
        "\nStopped at {} ({}/{}): conflicts in {} file{}:\n",
        p.name,
        state.next + 1,
        state.patches.len(),
        left.len(),
        if left.len() == 1 { "" } else { "s" }
    );
    for (f, h) in left {
        s.push_str(&format!(
            "  {}  ({h} hunk{})\n",
            work_dir.join(f).display(),
            if *h == 1 { "" } else { "s" }
        ));
    }
    if partial {
        s.push_str("  (a recorded resolution resolved some hunks; the others differ from it)\n");
    }
    s.push_str(&format!(
        "The markers: <<<<<<< ours = the patched {v1} file, ||||||| base = {v1}, \
         >>>>>>> theirs = {v2} with the earlier patches.\n\
         Edit the files to what the patch should make of {v2} (no markers left), then:\n  \
         cargo xtask rebase --continue   record the resolution, commit, go on\n  \
         cargo xtask rebase --skip       drop this patch from the series\n  \
         cargo xtask rebase --abort      forget the rebase (nothing in the repository changes)\n",
        v1 = state.v1,
        v2 = state.v2
    ));
    s
}

fn report(
    state: &State,
    work: &KernelTree,
    written: Option<WriteReport>,
    resolutions: Vec<PathBuf>,
    manifest_updated: bool,
) -> Result<RebaseRun> {
    Ok(RebaseRun {
        v1: state.v1.clone(),
        v2: state.v2.clone(),
        work_dir: work.path.clone(),
        patches: state
            .patches
            .iter()
            .filter_map(|p| p.outcome.clone().map(|o| (p.name.clone(), o)))
            .collect(),
        stopped: None,
        written,
        out_dir: state.out_dir.clone(),
        resolutions,
        head: oid(&state.head)?,
        manifest_updated,
    })
}

/// Write the rebased series; the work tree holds `checked_out`.
fn finish(work: &KernelTree, state: State, checked_out: Oid) -> Result<RebaseRun> {
    let repo = work.repo()?;
    let head = oid(&state.head)?;
    crate::timed("final checkout", || work.switch(checked_out, head))?;
    let commits: Vec<(String, Oid)> = state
        .patches
        .iter()
        .filter(|p| !p.outcome.as_ref().is_some_and(Outcome::dropped))
        .filter_map(|p| p.commit.as_deref().map(|c| (p.name.clone(), c)))
        .map(|(n, c)| oid(c).map(|o| (n, o)))
        .collect::<Result<_>>()?;
    let written = crate::timed("write the series", || {
        refresh::write_series(
            &repo,
            &commits,
            &state.series_dir,
            &state.out_dir,
            Some(&state.v2),
        )
    })?;
    let mut resolutions = Vec::new();
    for p in &state.patches {
        if let Some(text) = &p.resolution {
            let path = resolution_path(&state.out_dir, &state.v2, &p.name);
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                refresh::write_atomic(&path, text.as_bytes())?;
            }
            resolutions.push(path);
        }
        if let Some(text) = &p.variant {
            let path = variant_path(&state.out_dir, &state.v2, &p.name);
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                refresh::write_atomic(&path, text.as_bytes())?;
            }
            resolutions.push(path);
        }
    }
    let mut manifest_updated = false;
    if let Some(m) = &state.manifest {
        manifest_updated = crate::base::set_series_base(m, &state.v2)?;
    }
    let dir = state_dir(&work.path);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    report(&state, work, Some(written), resolutions, manifest_updated)
}

/// Read a work tree file back as a tree entry (None: deleted).
fn read_work_entry(repo: &Repository, work_dir: &Path, path: &str) -> Result<Entry> {
    use std::os::unix::fs::PermissionsExt;
    let full = work_dir.join(path);
    let Ok(meta) = std::fs::symlink_metadata(&full) else {
        return Ok(None);
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&full)?;
        let id = repo.blob(target.to_string_lossy().as_bytes())?;
        return Ok(Some((id, 0o120000)));
    }
    let bytes = std::fs::read(&full).with_context(|| format!("cannot read {}", full.display()))?;
    let mode = if meta.permissions().mode() & 0o111 != 0 {
        0o100755
    } else {
        0o100644
    };
    Ok(Some((repo.blob(&bytes)?, mode)))
}

/// `--continue`: the user has resolved the conflicted files; record the
/// resolution, commit the patch and go on.
pub fn continue_rebase(work_dir: &Path) -> Result<RebaseRun> {
    let mut state = load_state(work_dir)?;
    let work = KernelTree::open(work_dir)?;
    let repo = work.repo()?;
    let mut still = Vec::new();
    for c in &state.conflicts {
        if let Ok(text) = std::fs::read_to_string(work_dir.join(&c.path)) {
            if has_markers(&text) {
                still.push(work_dir.join(&c.path).display().to_string());
            }
        }
    }
    if !still.is_empty() {
        anyhow::bail!(
            "conflict markers are still in:\n  {}\nresolve them, then run `cargo xtask rebase --continue` again",
            still.join("\n  ")
        );
    }
    let i = state.next;
    let name = state.patches[i].name.clone();
    let head = repo.find_commit(oid(&state.head)?)?;
    let ours_commit = repo.find_commit(oid(&state.patches[i].ours)?)?;
    let mut paths: BTreeSet<String> = state.touched.iter().cloned().collect();
    paths.extend(
        work.dirty_paths()?
            .into_iter()
            .filter(|p| !p.ends_with('/')),
    );
    let mut upd = TreeUpdateBuilder::new();
    for p in &paths {
        match read_work_entry(&repo, work_dir, p)? {
            Some((id, mode)) => {
                upd.upsert(p.as_str(), id, file_mode(mode));
            }
            None => {
                upd.remove(p.as_str());
            }
        }
    }
    // Record the resolution.
    let mut recorded = Vec::new();
    for c in &state.conflicts {
        let resolved = std::fs::read_to_string(work_dir.join(&c.path)).unwrap_or_default();
        recorded.extend(extract_resolutions(&c.path, &c.text, &resolved));
    }
    state.patches[i].resolution = Some(render_resolution(&name, &state.v1, &state.v2, &recorded));
    let files: Vec<String> = state.conflicts.iter().map(|c| c.path.clone()).collect();
    let new_tree = upd.create_updated(&repo, &head.tree()?)?;
    if new_tree == head.tree_id() {
        state.patches[i].outcome = Some(Outcome::Empty {
            evidence: "resolved to no change".into(),
        });
    } else {
        let commit = commit_as(&repo, &ours_commit, new_tree, &head)?;
        // Untracked new files become tracked: check out the commit.
        if index_untouched(&work, &state)? {
            work.switch(head.id(), commit)?;
        } else {
            work.checkout(commit)?;
        }
        state.head = commit.to_string();
        state.patches[i].commit = Some(commit.to_string());
        state.patches[i].outcome = Some(Outcome::Resolved { files });
    }
    state.next += 1;
    state.touched.clear();
    state.conflicts.clear();
    let loaded = crate::timed("load the series", || load_series(&state.series_dir))?;
    run_loop(&work, state, &loaded)
}

/// Put the work tree back at the state's head, removing files the stopped
/// patch created.
fn reset_work(work: &KernelTree, state: &State) -> Result<()> {
    let repo = work.repo()?;
    let head = repo.find_commit(oid(&state.head)?)?;
    let tree = head.tree()?;
    for p in &state.touched {
        if entry_of(&tree, p).is_none() {
            let f = work.path.join(p);
            if f.exists() {
                std::fs::remove_file(&f)
                    .with_context(|| format!("cannot remove {}", f.display()))?;
            }
        }
    }
    if index_untouched(work, state)? {
        work.restore(head.id(), &state.touched)
    } else {
        work.checkout(head.id())
    }
}

/// The checksum git keeps at the end of the index file (the SHA-1 of the
/// rest): it changes whenever the index is written.
fn index_checksum(work_dir: &Path) -> Option<String> {
    let bytes = std::fs::read(work_dir.join(".git").join("index")).ok()?;
    let tail = bytes.get(bytes.len().checked_sub(20)?..)?;
    Some(tail.iter().map(|b| format!("{b:02x}")).collect())
}

/// True when nothing changed the index or `HEAD` since the run stopped (no
/// `git add`, commit or checkout by hand): the index still holds the state's
/// head, so comparing it with the files finds every file to put back.
fn index_untouched(work: &KernelTree, state: &State) -> Result<bool> {
    Ok(state.index.is_some()
        && state.index == index_checksum(&work.path)
        && work.head().ok() == Some(oid(&state.head)?))
}

/// `--skip`: drop the conflicted patch and go on.
pub fn skip(work_dir: &Path) -> Result<RebaseRun> {
    let mut state = load_state(work_dir)?;
    let work = KernelTree::open(work_dir)?;
    crate::timed("reset the work tree", || reset_work(&work, &state))?;
    let i = state.next;
    state.patches[i].outcome = Some(Outcome::Skipped);
    state.next += 1;
    state.touched.clear();
    state.conflicts.clear();
    let loaded = crate::timed("load the series", || load_series(&state.series_dir))?;
    run_loop(&work, state, &loaded)
}

/// `--abort`: forget the rebase. The series, the resolutions and
/// `kernels.toml` are untouched (they are only written when a rebase
/// finishes); the work tree goes back to vanilla V2.
pub fn abort(work_dir: &Path) -> Result<()> {
    let state = load_state(work_dir)?;
    let work = KernelTree::open(work_dir)?;
    reset_work(&work, &state)?;
    work.reset_to_vanilla()?;
    let dir = state_dir(work_dir);
    std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    Ok(())
}

/// Work directories under `root` (`<cache>/rebase`) with a stopped rebase.
pub fn find_in_progress(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            if in_progress(&e.path()) {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Apply `p` to `tree` in memory; the new tree's id and whether every hunk
/// landed exactly where the patch said.
fn apply_in_memory(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    p: &LoadedPatch,
    max_fuzz: usize,
) -> Result<std::result::Result<(Oid, bool), String>> {
    Ok(apply_to_tree(
        repo,
        tree,
        &p.parsed,
        p.entry.strip,
        p.entry.reverse,
        max_fuzz,
    )?
    .map(|(id, applied)| {
        let exact = applied.hunks.iter().all(|h| h.offset == 0 && h.fuzz == 0);
        (id, exact)
    })
    .map_err(|e| e.to_string()))
}
