//! In-process replacement for `quilt push`: parses quilt `series` files and
//! unified diffs, and applies them with the exact semantics of GNU patch 2.7.6
//! as quilt invokes it (`patch -p1 -E --fuzz=2 -f`), so that applying a series
//! yields a tree byte-identical to `quilt push -a`.
//!
//! The crate never touches the filesystem: the caller provides the current
//! tree through [`Tree`] and receives a list of [`Change`]s per patch.

pub mod apply;
pub mod parse;
pub mod series;

pub use apply::{
    apply, apply_changes, apply_in_memory, Applied, ApplyError, Change, HunkReport, MemTree, Tree,
    TreeMut,
};
pub use parse::{parse_patch, FilePatch, Hunk, HunkLine, ParseError, Patch};
pub use series::{parse_series, SeriesEntry, SeriesError};

#[cfg(test)]
mod tests;
