//! One patch applied to a git tree without a work tree: the patch engine
//! reads the tree's blobs through [`GitView`], and its changes become new
//! blobs and a new tree in the repository's object database. Applying a
//! series ([`crate::apply`]) and rebasing it ([`crate::rebase`]) both go
//! through [`apply_to_tree`].

use std::path::Path;

use anyhow::Result;
use colinux_patch::{Applied, ApplyError, Patch, TreeMut};
use git2::{build::TreeUpdateBuilder, FileMode, Oid, Repository};

/// A git tree seen through the patch engine's [`colinux_patch::Tree`].
#[allow(missing_debug_implementations)] // git2::Repository is not Debug
pub struct GitView<'r> {
    /// The repository holding the tree's blobs.
    pub repo: &'r Repository,
    /// The tree.
    pub tree: git2::Tree<'r>,
}

impl colinux_patch::Tree for GitView<'_> {
    fn read(&self, path: &str) -> Option<(Vec<u8>, u32)> {
        let entry = self.tree.get_path(Path::new(path)).ok()?;
        let mode = u32::try_from(entry.filemode()).ok()?;
        let blob = self.repo.find_blob(entry.id()).ok()?;
        Some((blob.content().to_vec(), mode))
    }
}

/// The git file mode of a patch engine mode (`0o100644`, `0o100755`,
/// `0o120000`).
pub fn file_mode(mode: u32) -> FileMode {
    match mode {
        0o100755 => FileMode::BlobExecutable,
        0o120000 => FileMode::Link,
        _ => FileMode::Blob,
    }
}

/// Apply `patch` (see [`colinux_patch::apply`] for the arguments) to `tree`:
/// the new tree's id and the engine's report, or the engine's error (the
/// outer `Result` is for repository errors).
pub fn apply_to_tree(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    patch: &Patch,
    strip: u32,
    reverse: bool,
    max_fuzz: usize,
) -> Result<std::result::Result<(Oid, Applied), ApplyError>> {
    let view = GitView {
        repo,
        tree: tree.clone(),
    };
    let applied = match colinux_patch::apply(&view, patch, strip, reverse, max_fuzz) {
        Ok(applied) => applied,
        Err(e) => return Ok(Err(e)),
    };
    let mut upd = GitUpdate {
        repo,
        upd: TreeUpdateBuilder::new(),
    };
    colinux_patch::apply_changes(&mut upd, &applied.changes)?;
    Ok(Ok((upd.upd.create_updated(repo, tree)?, applied)))
}

/// Changes to a git tree being built: new blobs in `repo`, recorded in
/// `upd`.
struct GitUpdate<'r> {
    repo: &'r Repository,
    upd: TreeUpdateBuilder,
}

impl TreeMut for GitUpdate<'_> {
    type Error = git2::Error;

    fn write(&mut self, path: &str, content: &[u8], mode: u32) -> Result<(), git2::Error> {
        let oid = self.repo.blob(content)?;
        self.upd.upsert(path, oid, file_mode(mode));
        Ok(())
    }

    fn delete(&mut self, path: &str) -> Result<(), git2::Error> {
        self.upd.remove(path);
        Ok(())
    }
}
