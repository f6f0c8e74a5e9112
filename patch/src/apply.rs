//! Applying a parsed patch in memory with the semantics of GNU patch 2.7.6 as
//! quilt runs it (`patch -p1 -E --fuzz=N -f`).
//!
//! The placement of hunks (offsets, fuzz, start/end-of-file anchoring), the lazy
//! copying of input lines (context lines come from the file, not from the
//! patch; a hunk may reuse the trailing context of the previous one) and the
//! end-of-file newline handling all follow GNU patch, so that the result is
//! byte-identical to `quilt push`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use super::parse::{FilePatch, Hunk, HunkLine, Patch};

/// Read access to the tree being patched.
pub trait Tree {
    /// Content and git mode (`0o100644`, `0o100755` or `0o120000`; a symlink's
    /// content is its target) of `path`, or `None` if it does not exist.
    fn read(&self, path: &str) -> Option<(Vec<u8>, u32)>;
}

/// A tree held in memory: path -> (content, git mode).
pub type MemTree = BTreeMap<String, (Vec<u8>, u32)>;

impl Tree for MemTree {
    fn read(&self, path: &str) -> Option<(Vec<u8>, u32)> {
        self.get(path).cloned()
    }
}

/// Apply `patch` to the in-memory `tree` in place (see [`apply`] for the
/// arguments); on error the tree is unchanged.
pub fn apply_in_memory(
    tree: &mut MemTree,
    patch: &Patch,
    strip: u32,
    reverse: bool,
    max_fuzz: usize,
) -> Result<Applied, ApplyError> {
    let applied = apply(tree, patch, strip, reverse, max_fuzz)?;
    let Ok(()) = apply_changes(tree, &applied.changes);
    Ok(applied)
}

/// A tree the [`Change`]s of [`apply`] can be made in.
pub trait TreeMut {
    /// What making a change can fail with.
    type Error;
    /// Create or overwrite `path` with `content` and git `mode`.
    fn write(&mut self, path: &str, content: &[u8], mode: u32) -> Result<(), Self::Error>;
    /// Delete `path`.
    fn delete(&mut self, path: &str) -> Result<(), Self::Error>;
}

impl TreeMut for MemTree {
    type Error = std::convert::Infallible;

    fn write(&mut self, path: &str, content: &[u8], mode: u32) -> Result<(), Self::Error> {
        self.insert(path.to_string(), (content.to_vec(), mode));
        Ok(())
    }

    fn delete(&mut self, path: &str) -> Result<(), Self::Error> {
        self.remove(path);
        Ok(())
    }
}

/// Make `changes` (from [`apply`]) in `tree`, in order.
pub fn apply_changes<T: TreeMut + ?Sized>(
    tree: &mut T,
    changes: &[Change],
) -> Result<(), T::Error> {
    for change in changes {
        match change {
            Change::Write {
                path,
                content,
                mode,
            } => tree.write(path, content, *mode)?,
            Change::Delete { path } => tree.delete(path)?,
        }
    }
    Ok(())
}

/// One change to the tree produced by a successful [`apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Create or overwrite `path`.
    Write {
        /// Path relative to the tree root.
        path: String,
        /// New content.
        content: Vec<u8>,
        /// git mode.
        mode: u32,
    },
    /// Remove `path`.
    Delete {
        /// Path relative to the tree root.
        path: String,
    },
}

/// How a hunk was placed; GNU patch prints this as
/// `Hunk #N succeeded at LINE with fuzz F (offset K lines).`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HunkReport {
    /// File the hunk was applied to (after stripping).
    pub file: String,
    /// 1-based hunk number within its file section.
    pub hunk: usize,
    /// GNU patch's reported offset: the accumulated offset of this file's
    /// hunks so far (`in_offset`), as printed in `(offset K lines)`.
    pub offset: isize,
    /// Fuzz needed (0 = exact context match).
    pub fuzz: usize,
    /// Line GNU patch reports the hunk "succeeded at" (position in the output).
    pub line: isize,
}

/// Result of a successful [`apply`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    /// Net changes to the tree, in order of first touch. Files whose final
    /// content and mode equal the tree's are omitted.
    pub changes: Vec<Change>,
    /// Placement of every hunk, in patch order.
    pub hunks: Vec<HunkReport>,
}

/// Why a patch could not be applied. Nothing is changed when this is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// A hunk matched nowhere within the allowed fuzz (or would have been
    /// applied before text already written: GNU's "misordered hunks").
    HunkFailed {
        /// File being patched.
        file: String,
        /// 1-based hunk number within the file section.
        hunk: usize,
        /// `@@ -a,b +c,d @@` (as applied, i.e. swapped when reversing).
        header: String,
        /// Patch line of the hunk header.
        patch_line: usize,
        /// The context and removed lines that were looked for.
        expected: Vec<Vec<u8>>,
        /// The hunk matched but before the part of the file already written.
        misordered: bool,
    },
    /// The file to patch does not exist.
    MissingFile {
        /// File name after stripping.
        file: String,
        /// Patch line of the file header.
        patch_line: usize,
    },
    /// The patch creates a file that already exists with content.
    AlreadyExists {
        /// File name after stripping.
        file: String,
        /// Patch line of the file header.
        patch_line: usize,
    },
    /// A patch deletes a file but the file has more content than removed.
    NotDeleted {
        /// File name after stripping.
        file: String,
        /// Patch line of the file header.
        patch_line: usize,
    },
    /// Binary diffs are not supported (GNU patch 2.7.6 refuses them too).
    Binary {
        /// File name after stripping (or raw if stripping failed).
        file: String,
        /// Patch line of the file header.
        patch_line: usize,
    },
    /// After stripping, the path is absolute, contains `..` or is empty.
    UnsafePath {
        /// The path after stripping.
        path: String,
        /// Patch line of the file header.
        patch_line: usize,
    },
    /// The path has fewer components than the strip level.
    StripTooDeep {
        /// The raw path.
        path: String,
        /// The strip level.
        strip: u32,
        /// Patch line of the file header.
        patch_line: usize,
    },
    /// Both names are `/dev/null`.
    NoFileName {
        /// Patch line of the file header.
        patch_line: usize,
    },
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::HunkFailed {
                file,
                hunk,
                header,
                patch_line,
                expected,
                misordered,
            } => {
                write!(
                    f,
                    "{file}: hunk #{hunk} {header} (patch line {patch_line}) FAILED{}; expected:",
                    if *misordered {
                        " (misordered hunks)"
                    } else {
                        ""
                    }
                )?;
                for l in expected {
                    let s = String::from_utf8_lossy(l);
                    write!(f, "\n  |{}", s.strip_suffix('\n').unwrap_or(&s))?;
                }
                Ok(())
            }
            ApplyError::MissingFile { file, patch_line } => {
                write!(
                    f,
                    "{file}: file to patch does not exist (patch line {patch_line})"
                )
            }
            ApplyError::AlreadyExists { file, patch_line } => write!(
                f,
                "{file}: file to create already exists (patch line {patch_line})"
            ),
            ApplyError::NotDeleted { file, patch_line } => write!(
                f,
                "{file}: not deleting file as content differs from patch (patch line {patch_line})"
            ),
            ApplyError::Binary { file, patch_line } => write!(
                f,
                "{file}: binary patches are not supported (patch line {patch_line})"
            ),
            ApplyError::UnsafePath { path, patch_line } => write!(
                f,
                "{path:?}: path escapes the tree (patch line {patch_line})"
            ),
            ApplyError::StripTooDeep {
                path,
                strip,
                patch_line,
            } => write!(
                f,
                "{path:?}: strip level {strip} exceeds the path depth (patch line {patch_line})"
            ),
            ApplyError::NoFileName { patch_line } => {
                write!(
                    f,
                    "file section without a file name (patch line {patch_line})"
                )
            }
        }
    }
}

impl std::error::Error for ApplyError {}

type File = (Vec<u8>, u32);

struct Work<'t> {
    tree: &'t dyn Tree,
    overlay: HashMap<String, Option<File>>,
    order: Vec<String>,
}

impl Work<'_> {
    fn get(&self, path: &str) -> Option<File> {
        match self.overlay.get(path) {
            Some(v) => v.clone(),
            None => self.tree.read(path),
        }
    }

    fn set(&mut self, path: &str, v: Option<File>) {
        if self.overlay.insert(path.to_string(), v).is_none() {
            self.order.push(path.to_string());
        }
    }
}

/// Applies `patch` to `tree` like `patch -pSTRIP -E --fuzz=MAX_FUZZ -f`
/// (plus `-R` when `reverse`), returning the resulting changes.
///
/// Reproduced GNU patch behaviour:
/// * file choice: git sections use the new name (old name for deletions, and
///   read from the old name for renames/copies); other sections create the new
///   name when the old is `/dev/null`, delete the old when the new is
///   `/dev/null`, else patch whichever of old/new exists (old first);
///   a missing file whose first hunk is `@@ -0,0` is created;
/// * hunk placement with offsets and fuzz exactly as `locate_hunk` (see
///   [`HunkReport`]), output built lazily from the input (context lines keep
///   the file's text);
/// * `-E`: a file left with no content is removed (an empty new file is not
///   created); a deletion that leaves content fails;
/// * modes from git headers (`new file mode`, `new mode`) when they change,
///   else the file's mode, new files 0o100644;
/// * several sections on the same file apply in sequence.
///
/// The whole patch is atomic: on error no change is returned.
pub fn apply(
    tree: &dyn Tree,
    patch: &Patch,
    strip: u32,
    reverse: bool,
    max_fuzz: usize,
) -> Result<Applied, ApplyError> {
    let mut work = Work {
        tree,
        overlay: HashMap::new(),
        order: Vec::new(),
    };
    let mut reports = Vec::new();
    for fp in &patch.files {
        apply_file(&mut work, fp, strip, reverse, max_fuzz, &mut reports)?;
    }
    let mut changes = Vec::new();
    for path in &work.order {
        let now = work.overlay.get(path).cloned().flatten();
        let before = tree.read(path);
        match (now, before) {
            (None, Some(_)) => changes.push(Change::Delete { path: path.clone() }),
            (Some(n), b) if b.as_ref() != Some(&n) => changes.push(Change::Write {
                path: path.clone(),
                content: n.0,
                mode: n.1,
            }),
            _ => {}
        }
    }
    Ok(Applied {
        changes,
        hunks: reports,
    })
}

/// Strips `strip` leading components like GNU patch (`-pN`), then rejects
/// absolute paths and `..` components.
fn strip_path(raw: &str, strip: u32, patch_line: usize) -> Result<String, ApplyError> {
    let mut rest = raw;
    for _ in 0..strip {
        match rest.find('/') {
            Some(i) => rest = rest[i + 1..].trim_start_matches('/'),
            None => {
                return Err(ApplyError::StripTooDeep {
                    path: raw.to_string(),
                    strip,
                    patch_line,
                })
            }
        }
    }
    let unsafe_path =
        rest.is_empty() || rest.starts_with('/') || rest.split('/').any(|c| c == "..");
    if unsafe_path {
        return Err(ApplyError::UnsafePath {
            path: rest.to_string(),
            patch_line,
        });
    }
    Ok(rest.to_string())
}

fn apply_file(
    work: &mut Work<'_>,
    fp: &FilePatch,
    strip: u32,
    reverse: bool,
    max_fuzz: usize,
    reports: &mut Vec<HunkReport>,
) -> Result<(), ApplyError> {
    let line = fp.line;
    let (old_raw, new_raw, old_mode, new_mode) = if reverse {
        (&fp.new_path, &fp.old_path, fp.new_mode, fp.old_mode)
    } else {
        (&fp.old_path, &fp.new_path, fp.old_mode, fp.new_mode)
    };
    let old_name = old_raw
        .as_deref()
        .map(|p| strip_path(p, strip, line))
        .transpose()?;
    let new_name = new_raw
        .as_deref()
        .map(|p| strip_path(p, strip, line))
        .transpose()?;
    let creating = old_name.is_none();
    let deleting = new_name.is_none();
    let (target, input_name) = match (&old_name, &new_name) {
        (None, None) => return Err(ApplyError::NoFileName { patch_line: line }),
        (None, Some(n)) => (n.clone(), n.clone()),
        (Some(o), None) => (o.clone(), o.clone()),
        (Some(o), Some(n)) if fp.is_git => {
            if fp.rename || fp.copy {
                (n.clone(), o.clone())
            } else {
                (n.clone(), n.clone())
            }
        }
        (Some(o), Some(n)) => {
            let t = if work.get(o).is_some() || work.get(n).is_none() {
                o.clone()
            } else {
                n.clone()
            };
            (t.clone(), t)
        }
    };
    if fp.binary {
        return Err(ApplyError::Binary {
            file: target,
            patch_line: line,
        });
    }
    let hunks: Vec<Prepared<'_>> = fp.hunks.iter().map(|h| Prepared::new(h, reverse)).collect();
    let implicit_create = hunks
        .first()
        .is_some_and(|h| h.old_start == 0 && h.old.is_empty());
    let (content, mode_in) = match work.get(&input_name) {
        None if creating || implicit_create => (Vec::new(), None),
        None => {
            return Err(ApplyError::MissingFile {
                file: input_name,
                patch_line: line,
            })
        }
        Some((c, m)) => {
            if creating && !c.is_empty() {
                return Err(ApplyError::AlreadyExists {
                    file: target,
                    patch_line: line,
                });
            }
            (c, Some(m))
        }
    };

    let mut eng = Engine::new(&content);
    for (i, (h, raw)) in hunks.iter().zip(&fp.hunks).enumerate() {
        let context = h.prefix.max(h.suffix);
        let my_max_fuzz = isize::try_from(max_fuzz).unwrap_or(isize::MAX).min(context);
        let mut fuzz = 0;
        let mut at = eng.locate(h, fuzz);
        while at == 0 && fuzz < my_max_fuzz {
            fuzz += 1;
            at = eng.locate(h, fuzz);
        }
        let fail = |misordered: bool| ApplyError::HunkFailed {
            file: target.clone(),
            hunk: i + 1,
            header: h.header(),
            patch_line: raw.line,
            expected: h.old.iter().map(|(_, t)| t.to_vec()).collect(),
            misordered,
        };
        if at == 0 {
            return Err(fail(false));
        }
        let newwhere = at + eng.out_offset;
        eng.apply_hunk(h, at).map_err(|()| fail(true))?;
        tracing::debug!(file = %target, hunk = i + 1, at, fuzz, offset = eng.in_offset, "hunk applied");
        reports.push(HunkReport {
            file: target.clone(),
            hunk: i + 1,
            offset: eng.in_offset,
            fuzz: usize::try_from(fuzz).unwrap_or(0),
            line: newwhere,
        });
    }
    let (out, zero_output) = eng.finish();

    let mode = match new_mode {
        Some(m) if Some(m) != old_mode => m,
        _ => mode_in.unwrap_or(0o100644),
    };
    if zero_output {
        // -E (remove_empty_files): an empty result is removed / not created.
        if work.get(&target).is_some() {
            work.set(&target, None);
        }
    } else if deleting {
        return Err(ApplyError::NotDeleted {
            file: target,
            patch_line: line,
        });
    } else {
        work.set(&target, Some((out, mode)));
        if fp.rename && input_name != target {
            work.set(&input_name, None);
        }
    }
    Ok(())
}

/// A hunk in GNU patch's internal form: separate old ("pattern") and new
/// ("replacement") sides, each line flagged as changed or context.
struct Prepared<'h> {
    /// (is_removed, text) for every old-side line.
    old: Vec<(bool, &'h [u8])>,
    /// (is_added, text) for every new-side line.
    new: Vec<(bool, &'h [u8])>,
    old_start: usize,
    new_start: usize,
    /// `pch_first`: first old line, +1 when the old side is empty.
    first: isize,
    prefix: isize,
    suffix: isize,
}

impl<'h> Prepared<'h> {
    fn new(h: &'h Hunk, reverse: bool) -> Self {
        let mut old = Vec::new();
        let mut new = Vec::new();
        for l in &h.lines {
            match (l, reverse) {
                (HunkLine::Context(t), _) => {
                    old.push((false, t.as_slice()));
                    new.push((false, t.as_slice()));
                }
                (HunkLine::Remove(t), false) | (HunkLine::Add(t), true) => {
                    old.push((true, t.as_slice()));
                }
                (HunkLine::Add(t), false) | (HunkLine::Remove(t), true) => {
                    new.push((true, t.as_slice()));
                }
            }
        }
        let is_ctx = |l: &&HunkLine| matches!(l, HunkLine::Context(_));
        let prefix = h.lines.iter().take_while(is_ctx).count();
        let suffix = if prefix == h.lines.len() {
            0
        } else {
            h.lines.iter().rev().take_while(is_ctx).count()
        };
        let (old_start, new_start) = if reverse {
            (h.new_start, h.old_start)
        } else {
            (h.old_start, h.new_start)
        };
        let first = if old.is_empty() {
            old_start + 1
        } else {
            old_start
        };
        Prepared {
            old,
            new,
            old_start,
            new_start,
            first: to_isize(first),
            prefix: to_isize(prefix),
            suffix: to_isize(suffix),
        }
    }

    fn header(&self) -> String {
        format!(
            "@@ -{},{} +{},{} @@",
            self.old_start,
            self.old.len(),
            self.new_start,
            self.new.len()
        )
    }
}

fn to_isize(v: usize) -> isize {
    isize::try_from(v).unwrap_or(isize::MAX)
}

/// GNU patch's per-file state: input lines, output, `last_frozen_line`,
/// `in_offset` and `out_offset`.
struct Engine<'a> {
    input: Vec<&'a [u8]>,
    out: Vec<u8>,
    after_newline: bool,
    zero_output: bool,
    last_frozen_line: isize,
    in_offset: isize,
    out_offset: isize,
}

impl<'a> Engine<'a> {
    fn new(content: &'a [u8]) -> Self {
        Engine {
            input: content.split_inclusive(|&b| b == b'\n').collect(),
            out: Vec::with_capacity(content.len() + 256),
            after_newline: true,
            zero_output: true,
            last_frozen_line: 0,
            in_offset: 0,
            out_offset: 0,
        }
    }

    fn input_lines(&self) -> isize {
        to_isize(self.input.len())
    }

    /// Input line `n` (1-based); empty outside the file, like GNU's `ifetch`.
    fn ifetch(&self, n: isize) -> &'a [u8] {
        if n >= 1 && n <= self.input_lines() {
            self.input[usize::try_from(n - 1).unwrap_or(0)]
        } else {
            b""
        }
    }

    /// Does the old side match at `base + offset`, ignoring `prefix_fuzz`
    /// leading and `suffix_fuzz` trailing pattern lines?
    fn patch_match(
        &self,
        h: &Prepared<'_>,
        base: isize,
        offset: isize,
        prefix_fuzz: isize,
        suffix_fuzz: isize,
    ) -> bool {
        let pat_end = to_isize(h.old.len()) - suffix_fuzz;
        let mut pline = 1 + prefix_fuzz;
        let mut iline = base + offset + prefix_fuzz;
        while pline <= pat_end {
            let Some((_, text)) = usize::try_from(pline - 1).ok().and_then(|i| h.old.get(i)) else {
                return false;
            };
            if self.ifetch(iline) != *text {
                return false;
            }
            pline += 1;
            iline += 1;
        }
        true
    }

    /// GNU patch 2.7.6 `locate_hunk`: the 1-based line where the hunk's old
    /// side starts, or 0 if it does not match with this fuzz. Updates
    /// `in_offset` on success.
    fn locate(&mut self, h: &Prepared<'_>, fuzz: isize) -> isize {
        let first_guess = h.first + self.in_offset;
        let pat_lines = to_isize(h.old.len());
        let context = h.prefix.max(h.suffix);
        let mut prefix_fuzz = fuzz + h.prefix - context;
        let suffix_fuzz = fuzz + h.suffix - context;
        let input_lines = self.input_lines();
        let max_where = input_lines - (pat_lines - suffix_fuzz) + 1;
        let min_where = self.last_frozen_line + 1 - (h.prefix - prefix_fuzz);
        let max_pos_offset = max_where - first_guess;
        let mut max_neg_offset = first_guess - min_where;
        let max_offset = max_pos_offset.max(max_neg_offset);

        if pat_lines == 0 {
            return first_guess;
        }
        if first_guess <= max_neg_offset {
            max_neg_offset = first_guess - 1;
        }
        if prefix_fuzz < 0 && h.first <= 1 {
            // Can only match the start of the file.
            if suffix_fuzz < 0 && (pat_lines != input_lines || h.prefix < self.last_frozen_line) {
                return 0;
            }
            let offset = 1 - first_guess;
            if self.last_frozen_line <= h.prefix
                && offset <= max_pos_offset
                && self.patch_match(h, first_guess, offset, 0, suffix_fuzz)
            {
                self.in_offset += offset;
                return first_guess + offset;
            }
            return 0;
        } else if prefix_fuzz < 0 {
            prefix_fuzz = 0;
        }
        if suffix_fuzz < 0 {
            // Can only match the end of the file.
            let offset = first_guess - (input_lines - pat_lines + 1);
            if offset <= max_neg_offset && self.patch_match(h, first_guess, -offset, prefix_fuzz, 0)
            {
                self.in_offset -= offset;
                return first_guess - offset;
            }
            return 0;
        }
        // GNU patch tries every offset up to `max_offset`; for a hunk
        // whose line number lies far beyond the end of the file (a broken
        // or hostile header, `@@ -55555555550,0 …`) that is billions of
        // tries of positions past the end (found by `cargo xtask fuzz
        // patch`). Past the end a pattern line can only match an empty
        // one, so while the positive side is out of reach (offsets above
        // `max_pos_offset`) and some compared line is not empty, the
        // first offset that can match is the one whose first compared
        // line is inside the file: start there. The first match, and so
        // the result, is GNU patch's.
        let mut offset = 0;
        let some_compared_line_is_not_empty = h
            .old
            .iter()
            .skip(usize::try_from(prefix_fuzz).unwrap_or(0))
            .take(usize::try_from(pat_lines - prefix_fuzz - suffix_fuzz).unwrap_or(0))
            .any(|(_, text)| !text.is_empty());
        if max_pos_offset < 0 && some_compared_line_is_not_empty {
            offset = (first_guess + prefix_fuzz - input_lines).max(0);
        }
        while offset <= max_offset {
            if offset <= max_pos_offset
                && self.patch_match(h, first_guess, offset, prefix_fuzz, suffix_fuzz)
            {
                self.in_offset += offset;
                return first_guess + offset;
            }
            if 0 < offset
                && offset <= max_neg_offset
                && self.patch_match(h, first_guess, -offset, prefix_fuzz, suffix_fuzz)
            {
                self.in_offset -= offset;
                return first_guess - offset;
            }
            offset += 1;
        }
        0
    }

    fn write_line(&mut self, text: &[u8]) {
        self.out.extend_from_slice(text);
        self.after_newline = text.last() == Some(&b'\n');
        self.zero_output = false;
    }

    /// Copies input lines up to `last` (GNU `copy_till`); fails if `last` is
    /// before what was already written ("misordered hunks").
    fn copy_till(&mut self, last: isize) -> Result<(), ()> {
        if self.last_frozen_line > last {
            return Err(());
        }
        while self.last_frozen_line < last {
            if self.last_frozen_line >= self.input_lines() {
                // Past the end every line is empty and copies nothing: a
                // hunk placed far beyond it (an insertion numbered
                // 55555555550, found by `cargo xtask fuzz patch`) need not
                // walk there line by line.
                self.last_frozen_line = last;
                break;
            }
            self.last_frozen_line += 1;
            let s = self.ifetch(self.last_frozen_line);
            if !s.is_empty() {
                if !self.after_newline {
                    self.out.push(b'\n');
                }
                self.write_line(s);
            }
        }
        Ok(())
    }

    /// GNU `apply_hunk`.
    fn apply_hunk(&mut self, h: &Prepared<'_>, at: isize) -> Result<(), ()> {
        let base = at - 1;
        let lastline = to_isize(h.old.len());
        let pat_end = to_isize(h.new.len());
        let (mut old, mut new) = (1isize, 1isize);
        let side = |v: &[(bool, &'_ [u8])], i: isize| -> (bool, Vec<u8>) {
            let (c, t) = v[usize::try_from(i - 1).unwrap_or(0)];
            (c, t.to_vec())
        };
        while old <= lastline {
            let (removed, _) = side(&h.old, old);
            if removed {
                self.copy_till(base + old - 1)?;
                self.last_frozen_line += 1;
                old += 1;
            } else if new > pat_end {
                break;
            } else {
                let (added, text) = side(&h.new, new);
                if added {
                    self.copy_till(base + old - 1)?;
                    self.write_line(&text);
                    new += 1;
                } else {
                    old += 1;
                    new += 1;
                }
            }
        }
        if new <= pat_end && side(&h.new, new).0 {
            self.copy_till(base + old - 1)?;
            while new <= pat_end {
                let (added, text) = side(&h.new, new);
                if !added {
                    break;
                }
                if !self.after_newline {
                    self.out.push(b'\n');
                }
                self.write_line(&text);
                new += 1;
            }
        }
        self.out_offset += to_isize(h.new.len()) - lastline;
        Ok(())
    }

    fn finish(mut self) -> (Vec<u8>, bool) {
        if self.last_frozen_line < self.input_lines() {
            let last = self.input_lines();
            // Cannot fail: last_frozen_line < last.
            let _ = self.copy_till(last);
        }
        (self.out, self.zero_output)
    }
}
