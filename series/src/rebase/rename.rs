//! Files a patch touches that the target release has moved: found by name
//! and content, as git's rename detection finds them for `git rebase`.

use std::collections::{BTreeSet, HashMap};

use anyhow::Result;
use git2::Repository;

use super::merge::{entry_of, Entry};

/// Every blob path of `tree`, by file name: the candidates when a file a
/// patch touches has moved between the releases.
pub(crate) fn paths_by_name(tree: &git2::Tree<'_>) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let _ = tree.walk(git2::TreeWalkMode::PreOrder, |root, entry| {
        if entry.kind() == Some(git2::ObjectType::Blob) {
            if let Some(name) = entry.name() {
                out.entry(name.to_string())
                    .or_default()
                    .push(format!("{root}{name}"));
            }
        }
        git2::TreeWalkResult::Ok
    });
    out
}

/// Share of lines two texts have in common (0.0 to 1.0), as a measure of
/// whether one file is the other one moved.
pub(crate) fn similarity(a: &[u8], b: &[u8]) -> f64 {
    let la: BTreeSet<&[u8]> = a.split(|&c| c == b'\n').filter(|l| !l.is_empty()).collect();
    let lb: BTreeSet<&[u8]> = b.split(|&c| c == b'\n').filter(|l| !l.is_empty()).collect();
    let most = la.len().max(lb.len());
    if most == 0 {
        return 0.0;
    }
    la.intersection(&lb).count() as f64 / most as f64
}

/// Where `path`, which the patch touches and the target release no longer
/// has, went: a file of the same name that the base release does not
/// have, at least half of whose lines are the base file's (git's rename
/// detection does the same job for `git rebase`).
pub(crate) fn follow_rename(
    repo: &Repository,
    by_name: &HashMap<String, Vec<String>>,
    base_tree: &git2::Tree<'_>,
    theirs_tree: &git2::Tree<'_>,
    path: &str,
    base: Entry,
) -> Result<Option<String>> {
    let Some((base_id, _)) = base else {
        return Ok(None);
    };
    let name = path.rsplit('/').next().unwrap_or(path);
    let Some(candidates) = by_name.get(name) else {
        return Ok(None);
    };
    let base_blob = repo.find_blob(base_id)?;
    let mut best: Option<(f64, &String)> = None;
    for c in candidates {
        if entry_of(base_tree, c).is_some() {
            continue; // not new in the target release
        }
        let Some((id, _)) = entry_of(theirs_tree, c) else {
            continue;
        };
        let score = similarity(base_blob.content(), repo.find_blob(id)?.content());
        if score >= 0.5 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    Ok(best.map(|(_, c)| c.clone()))
}
