//! The 3-way merge of one file a patch touches: libgit2's xdiff merge of
//! *base* (V1 before the patch), *ours* (V1 after it) and *theirs* (V2 with
//! the earlier patches moved), diff3-style conflict markers when it cannot.

use std::path::Path;

use anyhow::{Context, Result};
use git2::{IndexEntry, IndexTime, Oid, Repository};

/// Paths that differ between two trees (old and new names of renames).
pub(crate) fn touched_paths(
    repo: &Repository,
    a: &git2::Tree<'_>,
    b: &git2::Tree<'_>,
) -> Result<Vec<String>> {
    crate::tree::changed_paths(repo, a, b)
}

pub(crate) type Entry = Option<(Oid, u32)>;

pub(crate) fn entry_of(tree: &git2::Tree<'_>, path: &str) -> Entry {
    tree.get_path(Path::new(path))
        .ok()
        .filter(|e| e.kind() == Some(git2::ObjectType::Blob))
        .map(|e| (e.id(), u32::try_from(e.filemode()).unwrap_or(0o100644)))
}

pub(crate) enum FileResult {
    /// The file's merged state (None: absent).
    Take(Entry),
    Conflict {
        text: String,
        mode: u32,
        hunks: usize,
    },
}

pub(crate) fn index_entry(path: &str, id: Oid, mode: u32) -> IndexEntry {
    IndexEntry {
        ctime: IndexTime::new(0, 0),
        mtime: IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode,
        uid: 0,
        gid: 0,
        file_size: 0,
        id,
        flags: 0,
        flags_extended: 0,
        path: path.as_bytes().to_vec(),
    }
}

/// Count the conflict hunks (`<<<<<<< ` lines) in a merge result.
pub fn conflict_hunks(text: &str) -> usize {
    text.lines().filter(|l| l.starts_with("<<<<<<< ")).count()
}

pub(crate) fn has_markers(text: &str) -> bool {
    text.lines().any(|l| {
        l.starts_with("<<<<<<< ") || l.starts_with(">>>>>>> ") || l.starts_with("||||||| ")
    })
}

pub(crate) fn merge_file(
    repo: &Repository,
    path: &str,
    base: Entry,
    ours: Entry,
    theirs: Entry,
) -> Result<FileResult> {
    if ours == theirs || theirs == base {
        return Ok(FileResult::Take(ours));
    }
    if ours == base {
        return Ok(FileResult::Take(theirs));
    }
    let empty = repo.blob(b"")?;
    let mode_of = |e: Entry| e.map(|(_, m)| m).unwrap_or(0o100644);
    let id_of = |e: Entry| e.map(|(id, _)| id).unwrap_or(empty);
    let mode = if mode_of(ours) != mode_of(base) {
        mode_of(ours)
    } else {
        mode_of(theirs)
    };
    let mut opts = git2::MergeFileOptions::new();
    opts.ancestor_label("base")
        .our_label("ours")
        .their_label("theirs")
        .style_diff3(true);
    let result = repo.merge_file_from_index(
        &index_entry(path, id_of(base), mode_of(base)),
        &index_entry(path, id_of(ours), mode_of(ours)),
        &index_entry(path, id_of(theirs), mode_of(theirs)),
        Some(&mut opts),
    )?;
    let content = result.content().to_vec();
    if result.is_automergeable() {
        if ours.is_none() && content.is_empty() {
            return Ok(FileResult::Take(None));
        }
        let id = repo.blob(&content)?;
        return Ok(FileResult::Take(Some((id, mode))));
    }
    let text = String::from_utf8(content)
        .with_context(|| format!("{path}: a conflict in a file that is not UTF-8 text"))?;
    let mut hunks = conflict_hunks(&text);
    if hunks == 0 {
        // libgit2 reports a conflict it could not mark (e.g. binary).
        hunks = 1;
    }
    Ok(FileResult::Conflict { text, mode, hunks })
}
