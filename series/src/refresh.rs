//! `cargo xtask refresh`: regenerate the patch files of a series from the
//! commits of a worked-on kernel tree, like `quilt refresh`.
//!
//! The commits after the tree's `vanilla` tag are the series: each one's
//! `Patch: <name>` trailer (written by `apply`) names its file; a commit
//! without one becomes a new patch, named from its subject and appended to
//! `series`. Patches are written in the format of `git format-patch
//! --zero-commit --no-signature` (zero `From` hash, diffstat at width 72,
//! `[PATCH i/n]` subjects), with the `Date:` header (and the `From:`/`Subject:`
//! lines when they still say the same thing) taken from the existing patch
//! file, so an unchanged patch comes out byte-identical. [`write_series`] is
//! shared with `rebase`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use git2::{Commit, DiffFindOptions, DiffOptions, Oid, Repository, Tree};

use crate::tree::KernelTree;

/// The width `git format-patch` gives its diffstat (MAIL_DEFAULT_WRAP).
const STAT_WIDTH: usize = 72;
/// Where git folds a long `Subject:` header.
const SUBJECT_WIDTH: usize = 78;

/// What an existing patch file says in its mail headers.
#[derive(Debug, Clone, Default)]
pub struct PatchHeaders {
    /// The `From:` header line(s) as written.
    pub from_lines: Vec<String>,
    /// The author parsed from it: (name, email).
    pub author: Option<(String, String)>,
    /// The `Date:` value.
    pub date: Option<String>,
    /// The `Subject:` header line(s) as written (folded lines included).
    pub subject_lines: Vec<String>,
    /// The subject without the `[PATCH …]` prefix, unfolded.
    pub subject: Option<String>,
    /// Length of the abbreviated ids on its `index` lines.
    pub abbrev: Option<usize>,
}

/// Read the mail headers of a git-format-patch file (absent headers stay `None`).
pub fn parse_headers(text: &str) -> PatchHeaders {
    let mut h = PatchHeaders::default();
    let mut current: Option<&str> = None;
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            match current {
                Some("from") => h.from_lines.push(line.to_string()),
                Some("subject") => h.subject_lines.push(line.to_string()),
                _ => {}
            }
            continue;
        }
        current = None;
        if line.starts_with("From: ") {
            h.from_lines.push(line.to_string());
            current = Some("from");
        } else if let Some(v) = line.strip_prefix("Date: ") {
            h.date = Some(v.to_string());
        } else if line.starts_with("Subject: ") {
            h.subject_lines.push(line.to_string());
            current = Some("subject");
        }
    }
    if !h.from_lines.is_empty() {
        let joined = unfold(&h.from_lines);
        let v = joined.trim_start_matches("From: ");
        if let Some((n, e)) = v.rsplit_once('<') {
            let name = n.trim();
            let name = if name.len() >= 2 && name.starts_with('"') && name.ends_with('"') {
                name[1..name.len() - 1]
                    .replace("\\\"", "\"")
                    .replace("\\\\", "\\")
            } else {
                name.to_string()
            };
            h.author = Some((name, e.trim_end_matches('>').to_string()));
        }
    }
    if !h.subject_lines.is_empty() {
        let joined = unfold(&h.subject_lines);
        let v = joined.trim_start_matches("Subject: ").trim();
        let v = if v.starts_with("[PATCH") {
            v.split_once("] ").map(|(_, r)| r).unwrap_or(v)
        } else {
            v
        };
        h.subject = Some(v.to_string());
    }
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("index ") {
            if let Some((a, _)) = rest.split_once("..") {
                if !a.is_empty() && a.bytes().all(|b| b.is_ascii_hexdigit()) {
                    h.abbrev = Some(a.len());
                    break;
                }
            }
        }
    }
    h
}

fn unfold(lines: &[String]) -> String {
    let mut s = String::new();
    for (i, l) in lines.iter().enumerate() {
        if i == 0 {
            s.push_str(l);
        } else {
            s.push(' ');
            s.push_str(l.trim_start());
        }
    }
    s
}

/// A commit message split the way `format-patch` needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The first paragraph, on one line.
    pub subject: String,
    /// Everything after it, without the `Patch:` trailer, trailing blank lines removed.
    pub body: String,
    /// The `Patch: <name>` trailer, if any.
    pub patch_name: Option<String>,
}

/// Split a commit message into subject, body and the `Patch:` trailer.
pub fn split_message(msg: &str) -> Message {
    let lines: Vec<&str> = msg.lines().collect();
    let mut i = 0;
    while i < lines.len() && lines[i].trim().is_empty() {
        i += 1;
    }
    let mut subject = Vec::new();
    while i < lines.len() && !lines[i].trim().is_empty() {
        subject.push(lines[i].trim());
        i += 1;
    }
    let mut body: Vec<&str> = lines[i..].to_vec();
    // The trailer is a line of the last paragraph.
    let last_para_start = body
        .iter()
        .rposition(|l| l.trim().is_empty())
        .map(|p| p + 1)
        .unwrap_or(0);
    let mut patch_name = None;
    let mut k = body.len();
    while k > last_para_start {
        k -= 1;
        if let Some(n) = body[k].strip_prefix("Patch: ") {
            if patch_name.is_none() {
                patch_name = Some(n.trim().to_string());
            }
            body.remove(k);
        }
    }
    while body.first().is_some_and(|l| l.trim().is_empty()) {
        body.remove(0);
    }
    while body.last().is_some_and(|l| l.trim().is_empty()) {
        body.pop();
    }
    Message {
        subject: subject.join(" "),
        body: body.join("\n"),
        patch_name,
    }
}

/// git's abbreviation length for a repository of this size (`core.abbrev`
/// auto): half the bits of the object count, rounded up, at least 7.
pub fn default_abbrev(repo: &Repository) -> Result<usize> {
    let mut count: u64 = 0;
    repo.odb()?.foreach(|_| {
        count += 1;
        true
    })?;
    let bits = 64 - count.max(1).leading_zeros() as usize;
    Ok(bits.div_ceil(2).max(7))
}

/// File name `git format-patch` would give patch number `n` with `subject`.
pub fn patch_file_name(n: usize, subject: &str) -> String {
    let mut slug = String::new();
    let mut pending_dash = false;
    for c in subject.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
            if pending_dash && !slug.is_empty() {
                slug.push('-');
            }
            pending_dash = false;
            slug.push(c);
        } else {
            pending_dash = true;
        }
    }
    // Drop dots that would make the name look odd, and keep it short.
    while slug.contains("..") {
        slug = slug.replace("..", ".");
    }
    let mut slug: String = slug.chars().take(64).collect();
    while slug.ends_with(['.', '-']) {
        slug.pop();
    }
    let slug = slug.trim_start_matches(['.', '-']);
    format!("{n:04}-{slug}.patch")
}

/// An RFC 2822 date the way git prints it (`Wed, 1 Jan 2025 00:00:00 +0000`).
pub fn rfc2822(time: git2::Time) -> String {
    let offset = i64::from(time.offset_minutes());
    let t = time.seconds() + offset * 60;
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let mut y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    if m <= 2 {
        y += 1;
    }
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MO: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let wd = WD[usize::try_from(days.rem_euclid(7)).unwrap_or(0)];
    let mo = MO[usize::try_from(m - 1).unwrap_or(0)];
    let sign = if offset < 0 { '-' } else { '+' };
    let off = offset.abs();
    format!(
        "{wd}, {d} {mo} {y} {:02}:{:02}:{:02} {sign}{:02}{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
        off / 60,
        off % 60
    )
}

fn mail_name(name: &str) -> String {
    if name.chars().any(|c| "()<>@,;:\\\".[]".contains(c)) {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        name.to_string()
    }
}

/// Fold `Subject: …` at word boundaries like git (continuation lines start with a space).
fn fold_subject(first: &str) -> String {
    let mut out = String::new();
    let mut line_len = 0;
    for (i, word) in first.split(' ').enumerate() {
        if i > 0 {
            if line_len + 1 + word.len() > SUBJECT_WIDTH {
                out.push_str("\n ");
                line_len = 1;
            } else {
                out.push(' ');
                line_len += 1;
            }
        }
        out.push_str(word);
        line_len += word.len();
    }
    out
}

/// One file's line of the diffstat.
struct StatEntry {
    name: String,
    added: usize,
    deleted: usize,
}

/// Scale `it` out of `max` onto `width` columns the way git's diffstat does.
fn scale(it: usize, width: usize, max: usize) -> usize {
    if it == 0 || max == 0 {
        0
    } else {
        1 + it * (width.saturating_sub(1)) / max
    }
}

fn render_stat(entries: &[StatEntry]) -> String {
    let max_change = entries
        .iter()
        .map(|e| e.added + e.deleted)
        .max()
        .unwrap_or(0);
    let max_len = entries
        .iter()
        .map(|e| e.name.chars().count())
        .max()
        .unwrap_or(0);
    let number_width = max_change.to_string().len();
    let width = STAT_WIDTH.max(16 + 6 + number_width);
    let mut graph_width = max_change;
    let mut name_width = max_len;
    if name_width + number_width + 6 + graph_width > width {
        let limit = (width * 3 / 8).saturating_sub(number_width + 6);
        if graph_width > limit {
            graph_width = limit.max(6);
        }
        if name_width > width.saturating_sub(number_width + 6 + graph_width) {
            name_width = width.saturating_sub(number_width + 6 + graph_width);
        } else {
            graph_width = width - number_width - 6 - name_width;
        }
    }
    let mut s = String::new();
    let (mut adds, mut dels) = (0, 0);
    for e in entries {
        adds += e.added;
        dels += e.deleted;
        let len = e.name.chars().count();
        let name = if len > name_width {
            let keep = name_width.saturating_sub(3);
            let tail: String = e.name.chars().skip(len - keep).collect();
            // git cuts at a directory boundary when it can.
            let tail = match tail.find('/') {
                Some(p) => tail[p..].to_string(),
                None => tail,
            };
            format!("...{tail}")
        } else {
            e.name.clone()
        };
        let (mut add, mut del) = (e.added, e.deleted);
        if graph_width <= max_change {
            let mut total = scale(add + del, graph_width, max_change);
            if total < 2 && add > 0 && del > 0 {
                total = 2;
            }
            if add < del {
                add = scale(add, graph_width, max_change);
                del = total - add;
            } else {
                del = scale(del, graph_width, max_change);
                add = total - del;
            }
        }
        let graph = format!("{}{}", "+".repeat(add), "-".repeat(del));
        let line = format!(
            " {name:<name_width$} | {:>number_width$}{}{graph}",
            e.added + e.deleted,
            if graph.is_empty() { "" } else { " " }
        );
        s.push_str(&line);
        s.push('\n');
    }
    let files = entries.len();
    if files == 0 {
        s.push_str(" 0 files changed\n");
        return s;
    }
    s.push_str(&format!(
        " {files} file{} changed",
        if files == 1 { "" } else { "s" }
    ));
    if adds > 0 || dels == 0 {
        s.push_str(&format!(
            ", {adds} insertion{}(+)",
            if adds == 1 { "" } else { "s" }
        ));
    }
    if dels > 0 || adds == 0 {
        s.push_str(&format!(
            ", {dels} deletion{}(-)",
            if dels == 1 { "" } else { "s" }
        ));
    }
    s.push('\n');
    s
}

/// The diff of a commit against `parent_tree`, as `git format-patch` shows
/// it: diffstat and summary, a blank line, then the patch.
fn diff_text(
    repo: &Repository,
    parent_tree: &Tree<'_>,
    tree: &Tree<'_>,
    abbrev: usize,
) -> Result<String> {
    let mut opts = DiffOptions::new();
    opts.context_lines(3)
        .indent_heuristic(true)
        .id_abbrev(u16::try_from(abbrev).unwrap_or(7));
    // Only the changed paths, as literal paths: libgit2 then reads just the
    // trees along them instead of both whole trees (see `changed_paths`).
    // Rename detection only pairs deleted and added files, which are all
    // among them, so the diff is the same.
    let changed = crate::tree::changed_paths(repo, parent_tree, tree)?;
    if !changed.is_empty() {
        opts.disable_pathspec_match(true);
        for p in &changed {
            opts.pathspec(p);
        }
    }
    let mut diff = repo.diff_tree_to_tree(Some(parent_tree), Some(tree), Some(&mut opts))?;
    diff.find_similar(Some(DiffFindOptions::new().renames(true)))?;
    let mut stats = Vec::new();
    let mut summary = String::new();
    let mut body = String::new();
    for i in 0..diff.deltas().len() {
        let Some(mut patch) = git2::Patch::from_diff(&diff, i)? else {
            continue;
        };
        let delta = patch.delta();
        let old = delta.old_file();
        let new = delta.new_file();
        let old_path = old
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let new_path = new
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (old_mode, new_mode) = (u32::from(old.mode()), u32::from(new.mode()));
        let name = match delta.status() {
            git2::Delta::Renamed => {
                summary.push_str(&format!(" rename {old_path} => {new_path}\n"));
                format!("{old_path} => {new_path}")
            }
            git2::Delta::Added => {
                summary.push_str(&format!(" create mode {new_mode:06o} {new_path}\n"));
                new_path.clone()
            }
            git2::Delta::Deleted => {
                summary.push_str(&format!(" delete mode {old_mode:06o} {old_path}\n"));
                old_path.clone()
            }
            _ => {
                if old_mode != new_mode {
                    summary.push_str(&format!(
                        " mode change {old_mode:06o} => {new_mode:06o} {new_path}\n"
                    ));
                }
                new_path.clone()
            }
        };
        let (_, added, deleted) = patch.line_stats()?;
        stats.push(StatEntry {
            name,
            added,
            deleted,
        });
        let buf = patch.to_buf()?;
        body.push_str(&String::from_utf8_lossy(&buf));
    }
    Ok(format!("{}{summary}\n{body}", render_stat(&stats)))
}

/// Format `commit` (against its first parent) as patch `number` of `total`.
/// `original` is the existing file's headers: its `Date:` is kept, and its
/// `From:`/`Subject:` lines when they still name the same author and subject.
pub fn format_commit(
    repo: &Repository,
    commit: &Commit<'_>,
    number: usize,
    total: usize,
    original: Option<&PatchHeaders>,
    abbrev: usize,
) -> Result<String> {
    let parent_tree = commit
        .parent(0)
        .with_context(|| format!("commit {} has no parent", commit.id()))?
        .tree()?;
    let msg = split_message(&String::from_utf8_lossy(commit.message_bytes()));
    let author = commit.author();
    let name = author.name().unwrap_or("").to_string();
    let email = author.email().unwrap_or("").to_string();
    let prefix = if total == 1 {
        "[PATCH]".to_string()
    } else {
        format!("[PATCH {number}/{total}]")
    };
    let mut out =
        String::from("From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n");
    match original {
        Some(h) if h.author.as_ref() == Some(&(name.clone(), email.clone())) => {
            for l in &h.from_lines {
                out.push_str(l);
                out.push('\n');
            }
        }
        _ => out.push_str(&format!("From: {} <{email}>\n", mail_name(&name))),
    }
    let date = original
        .and_then(|h| h.date.clone())
        .unwrap_or_else(|| rfc2822(author.when()));
    out.push_str(&format!("Date: {date}\n"));
    match original {
        Some(h)
            if h.subject.as_deref() == Some(msg.subject.as_str()) && h.subject_lines.len() == 1 =>
        {
            out.push_str(&format!("Subject: {prefix} {}\n", msg.subject));
        }
        Some(h) if h.subject.as_deref() == Some(msg.subject.as_str()) => {
            // A folded subject: keep the folding, renumber the prefix.
            let first = &h.subject_lines[0];
            let rest = first
                .trim_start_matches("Subject: ")
                .split_once("] ")
                .map(|(_, r)| r)
                .unwrap_or("");
            out.push_str(&format!("Subject: {prefix} {rest}\n"));
            for l in &h.subject_lines[1..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        _ => {
            out.push_str(&fold_subject(&format!("Subject: {prefix} {}", msg.subject)));
            out.push('\n');
        }
    }
    out.push('\n');
    if !msg.body.is_empty() {
        out.push_str(&msg.body);
        out.push('\n');
    }
    out.push_str("---\n");
    out.push_str(&diff_text(repo, &parent_tree, &commit.tree()?, abbrev)?);
    Ok(out)
}

/// What happened to one patch file when a series was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    /// The file already had this content.
    Unchanged,
    /// The file was rewritten.
    Updated,
    /// A new patch (no file of that name before).
    New,
}

/// The result of writing a series directory.
#[derive(Debug, Clone, Default)]
pub struct WriteReport {
    pub patches: Vec<(String, FileOutcome)>,
    /// Entries of the old series that are no longer in it (their files were removed).
    pub removed: Vec<String>,
    pub series_changed: bool,
}

impl WriteReport {
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (name, o) in &self.patches {
            let what = match o {
                FileOutcome::Unchanged => "unchanged",
                FileOutcome::Updated => "updated",
                FileOutcome::New => "new",
            };
            s.push_str(&format!("  {name}: {what}\n"));
        }
        for name in &self.removed {
            s.push_str(&format!("  {name}: removed from the series\n"));
        }
        s
    }
}

/// The rules for rewriting a `series` file: comment lines are kept (with the
/// entry they precede), surviving entries keep their line, new entries are
/// added in commit order, and a `# Base: …` comment is updated.
pub fn rewrite_series_text(original: &str, names: &[String], base: Option<&str>) -> String {
    let mut groups: Vec<(Vec<String>, Option<String>)> = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    for line in original.lines() {
        let is_entry = {
            let t = line.trim_start();
            !t.is_empty() && !t.starts_with('#')
        };
        let line = match (base, line.strip_prefix("# Base: vanilla Linux ")) {
            (Some(b), Some(rest)) => {
                let tail = rest.split_once(' ').map(|(_, t)| t).unwrap_or("");
                if tail.is_empty() {
                    format!("# Base: vanilla Linux {b}")
                } else {
                    format!("# Base: vanilla Linux {b} {tail}")
                }
            }
            _ => line.to_string(),
        };
        if is_entry {
            groups.push((std::mem::take(&mut pending), Some(line)));
        } else {
            pending.push(line);
        }
    }
    let entry_name = |l: &str| l.split_whitespace().next().unwrap_or("").to_string();
    let mut out = String::new();
    // The comments before the first entry are the file's header: always kept.
    let mut groups = groups.into_iter();
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some((header, first)) = groups.next() {
        for c in header {
            out.push_str(&c);
            out.push('\n');
        }
        if let Some(l) = first {
            by_name.insert(entry_name(&l), Vec::new());
        }
    }
    for (comments, line) in groups {
        if let Some(l) = line {
            by_name.insert(entry_name(&l), comments);
        }
    }
    // Surviving entries keep the comments above them; regenerated patches
    // are -p1 and forwards, so options are dropped.
    for name in names {
        if let Some(comments) = by_name.get(name) {
            for c in comments {
                out.push_str(c);
                out.push('\n');
            }
        }
        out.push_str(name);
        out.push('\n');
    }
    for l in &pending {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// Write `commits` (patch name, commit id; each against its first parent)
/// as the series in `out_dir`. Existing files in `series_dir` with the same
/// names give the headers to keep; the `series` file there is the one whose
/// comments are kept. Files of old entries no longer listed are removed from
/// `out_dir`.
pub fn write_series(
    repo: &Repository,
    commits: &[(String, Oid)],
    series_dir: &Path,
    out_dir: &Path,
    base: Option<&str>,
) -> Result<WriteReport> {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let old_series = std::fs::read_to_string(series_dir.join("series")).unwrap_or_default();
    let old_out_series = std::fs::read_to_string(out_dir.join("series")).unwrap_or_default();
    let mut fallback_abbrev = None;
    let mut report = WriteReport::default();
    let total = commits.len();
    for (i, (name, id)) in commits.iter().enumerate() {
        let original = std::fs::read_to_string(series_dir.join(name))
            .ok()
            .map(|t| parse_headers(&t));
        let abbrev = match original.as_ref().and_then(|h| h.abbrev) {
            Some(a) => a,
            None => match fallback_abbrev {
                Some(a) => a,
                None => {
                    let a = default_abbrev(repo)?;
                    fallback_abbrev = Some(a);
                    a
                }
            },
        };
        let commit = repo.find_commit(*id)?;
        let text = format_commit(repo, &commit, i + 1, total, original.as_ref(), abbrev)?;
        let path = out_dir.join(name);
        let outcome = match std::fs::read(&path) {
            Ok(old) if old == text.as_bytes() => FileOutcome::Unchanged,
            Ok(_) => FileOutcome::Updated,
            Err(_) => FileOutcome::New,
        };
        if outcome != FileOutcome::Unchanged {
            write_atomic(&path, text.as_bytes())?;
        }
        tracing::debug!("{name}: {outcome:?}");
        report.patches.push((name.clone(), outcome));
    }
    let names: Vec<String> = commits.iter().map(|(n, _)| n.clone()).collect();
    for text in [&old_series, &old_out_series] {
        for e in colinux_patch::parse_series(text, Path::new("series")).unwrap_or_default() {
            if !names.contains(&e.name) && !report.removed.contains(&e.name) {
                report.removed.push(e.name.clone());
                let p = out_dir.join(&e.name);
                if p.exists() {
                    std::fs::remove_file(&p)
                        .with_context(|| format!("cannot remove {}", p.display()))?;
                }
            }
        }
    }
    let new_series = rewrite_series_text(&old_series, &names, base);
    if new_series != old_out_series {
        write_atomic(&out_dir.join("series"), new_series.as_bytes())?;
        report.series_changed = true;
    }
    Ok(report)
}

/// Write through a temporary file renamed into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The commits of the series in `tree`: first-parent history from `HEAD`
/// back to the `vanilla` tag, oldest first, each with its patch name
/// (`Patch:` trailer, or a new name from its subject).
pub fn series_commits(repo: &Repository, vanilla: Oid, head: Oid) -> Result<Vec<(String, Oid)>> {
    let mut ids = Vec::new();
    let mut c = repo.find_commit(head)?;
    while c.id() != vanilla {
        ids.push(c.id());
        if c.parent_count() > 1 {
            anyhow::bail!(
                "commit {} is a merge; a series is a straight line of commits on `vanilla`",
                c.id()
            );
        }
        c = c
            .parent(0)
            .with_context(|| format!("HEAD does not descend from the `vanilla` tag ({vanilla})"))?;
    }
    ids.reverse();
    let mut out = Vec::new();
    let mut used = BTreeSet::new();
    for (i, id) in ids.iter().enumerate() {
        let commit = repo.find_commit(*id)?;
        let msg = split_message(&String::from_utf8_lossy(commit.message_bytes()));
        let name = match msg.patch_name {
            Some(n) => n,
            None => patch_file_name(i + 1, &msg.subject),
        };
        if !used.insert(name.clone()) {
            anyhow::bail!("two commits name the same patch {name} (commit {id})");
        }
        out.push((name, *id));
    }
    Ok(out)
}

/// Options of `refresh`.
#[derive(Debug, Clone)]
pub struct RefreshOptions {
    /// The series the tree was made from (its files give the headers to keep).
    pub series_dir: PathBuf,
    /// Where to write [default: `series_dir`].
    pub out_dir: Option<PathBuf>,
}

/// Regenerate the series from the commits of `tree` (after its `vanilla` tag).
pub fn refresh(tree: &KernelTree, opts: &RefreshOptions) -> Result<WriteReport> {
    let dirty = tree.dirty_paths()?;
    if !dirty.is_empty() {
        tracing::warn!(
            "{} has uncommitted changes ({} paths); only commits are refreshed",
            tree.path.display(),
            dirty.len()
        );
    }
    let repo = tree.repo()?;
    let commits = series_commits(&repo, tree.vanilla()?, tree.head()?)?;
    let out = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| opts.series_dir.clone());
    write_series(&repo, &commits, &opts.series_dir, &out, None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dates_like_git() {
        assert_eq!(
            rfc2822(git2::Time::new(1_735_689_600, 0)),
            "Wed, 1 Jan 2025 00:00:00 +0000"
        );
        assert_eq!(
            rfc2822(git2::Time::new(0, 120)),
            "Thu, 1 Jan 1970 02:00:00 +0200"
        );
    }

    #[test]
    fn names_like_format_patch() {
        assert_eq!(
            patch_file_name(4, "x86: add the COOPERATIVE option for i386"),
            "0004-x86-add-the-COOPERATIVE-option-for-i386.patch"
        );
        assert_eq!(
            patch_file_name(12, "cooperative: add the guest/host ABI header"),
            "0012-cooperative-add-the-guest-host-ABI-header.patch"
        );
    }

    #[test]
    fn message_split_drops_the_trailer() {
        let m = split_message("subj\n\nbody\n\nSigned-off-by: A <a@b>\n\nPatch: 0001-x.patch\n");
        assert_eq!(m.subject, "subj");
        assert_eq!(m.body, "body\n\nSigned-off-by: A <a@b>");
        assert_eq!(m.patch_name.as_deref(), Some("0001-x.patch"));
        let m = split_message("only\n");
        assert_eq!((m.body.as_str(), m.patch_name), ("", None));
    }

    #[test]
    fn stat_matches_format_patch() {
        let s = render_stat(&[
            StatEntry {
                name: "arch/x86/cooperative/Makefile".into(),
                added: 3,
                deleted: 0,
            },
            StatEntry {
                name: "arch/x86/cooperative/abi.c".into(),
                added: 90,
                deleted: 0,
            },
        ]);
        assert_eq!(
            s,
            " arch/x86/cooperative/Makefile |  3 ++\n arch/x86/cooperative/abi.c    | 90 +++++++++++++++++++++++++++++++++++\n 2 files changed, 93 insertions(+)\n"
        );
    }

    #[test]
    fn series_rewrite_keeps_comments() {
        let old = "# head\n# Base: vanilla Linux 6.1.176 (see x)\na.patch\n# about b\nb.patch -p0\nc.patch\n";
        let new = rewrite_series_text(
            old,
            &["a.patch".into(), "c.patch".into(), "d.patch".into()],
            Some("6.12.100"),
        );
        assert_eq!(
            new,
            "# head\n# Base: vanilla Linux 6.12.100 (see x)\na.patch\nc.patch\nd.patch\n"
        );
    }
}
