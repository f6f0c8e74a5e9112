//! Recorded conflict resolutions: what the maintainer wrote in place of each
//! conflict hunk (or of a whole conflicted file), stored per patch in
//! `<series>/resolutions/<V2>/<patch>.resolution` and replayed when the same
//! conflict text appears again.

use std::path::{Path, PathBuf};

use anyhow::Result;

/// A conflicted file split into common text and conflict hunks.
pub(crate) enum Segment {
    Common(String),
    Hunk(String),
}

pub(crate) fn segments(text: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_hunk = false;
    for line in text.split_inclusive('\n') {
        if !in_hunk && line.starts_with("<<<<<<< ") {
            out.push(Segment::Common(std::mem::take(&mut cur)));
            in_hunk = true;
            cur.push_str(line);
        } else if in_hunk && line.starts_with(">>>>>>> ") {
            cur.push_str(line);
            out.push(Segment::Hunk(std::mem::take(&mut cur)));
            in_hunk = false;
        } else {
            cur.push_str(line);
        }
    }
    out.push(if in_hunk {
        Segment::Hunk(cur)
    } else {
        Segment::Common(cur)
    });
    out
}

/// One recorded resolution: a conflict hunk (or a whole conflicted file) and
/// the text that replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub path: String,
    pub whole_file: bool,
    pub conflict: String,
    pub resolution: String,
}

/// Find what the user wrote in place of each conflict hunk: the common text
/// between hunks must be found unchanged, in order. `None` when it was edited.
pub(crate) fn extract_resolutions(path: &str, conflicted: &str, resolved: &str) -> Vec<Recorded> {
    let segs = segments(conflicted);
    let whole = || {
        vec![Recorded {
            path: path.to_string(),
            whole_file: true,
            conflict: conflicted.to_string(),
            resolution: resolved.to_string(),
        }]
    };
    let mut pos = 0;
    let mut out = Vec::new();
    let mut pending: Option<&str> = None;
    let last = segs.len().saturating_sub(1);
    for (i, seg) in segs.iter().enumerate() {
        match seg {
            Segment::Hunk(h) => pending = Some(h),
            Segment::Common(c) => {
                let start = match pending.take() {
                    None => {
                        if !resolved[pos..].starts_with(c.as_str()) {
                            return whole();
                        }
                        pos += c.len();
                        continue;
                    }
                    Some(h) => (h, pos),
                };
                let (h, from) = start;
                let found = if i == last {
                    resolved
                        .len()
                        .checked_sub(c.len())
                        .filter(|&at| at >= from && resolved[at..] == **c)
                } else if c.is_empty() {
                    Some(from)
                } else {
                    resolved[from..].find(c.as_str()).map(|k| from + k)
                };
                let Some(at) = found else { return whole() };
                out.push(Recorded {
                    path: path.to_string(),
                    whole_file: false,
                    conflict: h.to_string(),
                    resolution: resolved[from..at].to_string(),
                });
                pos = at + c.len();
            }
        }
    }
    if pending.is_some() || pos != resolved.len() {
        return whole();
    }
    out
}

/// Replace the conflict hunks of `text` that have a recorded resolution.
/// Returns the new text and how many hunks are left unresolved.
pub(crate) fn replay(path: &str, text: &str, recorded: &[Recorded]) -> (String, usize) {
    if let Some(r) = recorded
        .iter()
        .find(|r| r.whole_file && r.path == path && r.conflict == text)
    {
        return (r.resolution.clone(), 0);
    }
    let mut out = String::new();
    let mut left = 0;
    for seg in segments(text) {
        match seg {
            Segment::Common(c) => out.push_str(&c),
            Segment::Hunk(h) => match recorded
                .iter()
                .find(|r| !r.whole_file && r.path == path && r.conflict == h)
            {
                Some(r) => out.push_str(&r.resolution),
                None => {
                    left += 1;
                    out.push_str(&h);
                }
            },
        }
    }
    (out, left)
}

pub(crate) fn encode_block(text: &str, out: &mut String) {
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, true),
            None => (line, false),
        };
        if body.is_empty() {
            out.push_str("|\n");
        } else {
            out.push_str("| ");
            out.push_str(body);
            out.push('\n');
        }
        if !nl {
            out.push_str("\\ No newline at end of file\n");
        }
    }
}

/// The text of a resolution file.
pub fn render_resolution(patch: &str, v1: &str, v2: &str, recorded: &[Recorded]) -> String {
    let mut s = format!(
        "# colinux rebase resolution: {patch}, moved from Linux {v1} onto {v2}.\n\
         # Recorded by `cargo xtask rebase --continue`; `cargo xtask rebase` replays it\n\
         # when a conflict hunk with exactly this text appears again. Each block: the\n\
         # conflict as the merge wrote it (ours = the patched {v1} file, base = {v1},\n\
         # theirs = {v2} with the earlier patches), then the text that replaces it.\n\
         # Text lines start with \"| \" (\"|\" alone: an empty line).\n"
    );
    for r in recorded {
        s.push('\n');
        s.push_str(&format!(
            "file {}{}\n",
            r.path,
            if r.whole_file { " (whole file)" } else { "" }
        ));
        s.push_str("conflict\n");
        encode_block(&r.conflict, &mut s);
        s.push_str("resolution\n");
        encode_block(&r.resolution, &mut s);
        s.push_str("end\n");
    }
    s
}

/// Parse a resolution file.
pub fn parse_resolution(text: &str, origin: &Path) -> Result<Vec<Recorded>> {
    let mut out = Vec::new();
    let mut cur: Option<Recorded> = None;
    let mut which = 0; // 1: conflict, 2: resolution
    for (i, line) in text.lines().enumerate() {
        let err = |m: &str| anyhow::anyhow!("{}:{}: {m}", origin.display(), i + 1);
        if let Some(rest) = line.strip_prefix("file ") {
            if cur.is_some() {
                return Err(err("`file` inside a block (missing `end`)"));
            }
            let (path, whole) = match rest.strip_suffix(" (whole file)") {
                Some(p) => (p, true),
                None => (rest, false),
            };
            cur = Some(Recorded {
                path: path.to_string(),
                whole_file: whole,
                conflict: String::new(),
                resolution: String::new(),
            });
            which = 0;
            continue;
        }
        let Some(r) = cur.as_mut() else {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            return Err(err("text outside a `file` block"));
        };
        let target = match which {
            1 => Some(&mut r.conflict),
            2 => Some(&mut r.resolution),
            _ => None,
        };
        match (line, target) {
            ("conflict", _) => which = 1,
            ("resolution", _) => which = 2,
            ("end", _) => {
                out.extend(cur.take());
            }
            ("\\ No newline at end of file", Some(t)) => {
                if t.ends_with('\n') {
                    t.pop();
                }
            }
            (l, Some(t)) if l.starts_with('|') => {
                let body = &l[1..];
                t.push_str(body.strip_prefix(' ').unwrap_or(body));
                t.push('\n');
            }
            _ => return Err(err("unexpected line")),
        }
    }
    if cur.is_some() {
        anyhow::bail!("{}: the last block has no `end`", origin.display());
    }
    Ok(out)
}

/// The place of a patch's recorded variant for `v2` under a series
/// directory: a unified diff applied to what the patch merges to on `v2`.
pub fn variant_path(series_dir: &Path, v2: &str, patch: &str) -> PathBuf {
    series_dir
        .join("resolutions")
        .join(v2)
        .join(format!("{patch}.variant"))
}

/// The place of a patch's resolution file under a series directory.
pub fn resolution_path(series_dir: &Path, v2: &str, patch: &str) -> PathBuf {
    series_dir
        .join("resolutions")
        .join(v2)
        .join(format!("{patch}.resolution"))
}
