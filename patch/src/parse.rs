//! Parsing of multi-file unified diffs as found in quilt series, `git
//! format-patch` output and Debian patch files.
//!
//! Like GNU patch, the parser is liberal about what surrounds the diffs:
//! everything before the first file header (mail headers, commit message,
//! diffstat, a lone `---`) and everything between file sections that is not a
//! header or hunk (mail signature, `Index:`/`====` lines, `Only in ...`) is
//! commentary. Hunks are read by their line counts, exactly as GNU patch does.

/// A parsed patch file: its file sections in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Patch {
    /// File sections, in the order they appear.
    pub files: Vec<FilePatch>,
}

/// One file section (`diff --git` or `---`/`+++` header plus hunks).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FilePatch {
    /// Old name as written (before `-p` stripping); `None` for `/dev/null`
    /// or a git `new file mode` section.
    pub old_path: Option<String>,
    /// New name as written (before `-p` stripping); `None` for `/dev/null`
    /// or a git `deleted file mode` section.
    pub new_path: Option<String>,
    /// git `old mode` / `deleted file mode` / mode from the `index` line.
    pub old_mode: Option<u32>,
    /// git `new mode` / `new file mode` / mode from the `index` line.
    pub new_mode: Option<u32>,
    /// The section started with `diff --git`.
    pub is_git: bool,
    /// git `rename from`/`rename to`.
    pub rename: bool,
    /// git `copy from`/`copy to`.
    pub copy: bool,
    /// `Binary files ... differ` or `GIT binary patch`.
    pub binary: bool,
    /// The hunks, in order.
    pub hunks: Vec<Hunk>,
    /// 1-based patch line where the section header starts.
    pub line: usize,
}

/// One `@@ -a,b +c,d @@` hunk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hunk {
    /// `a`: first old line (0 when `old_len` is 0 at the start of the file).
    pub old_start: usize,
    /// `b`: number of old-side (context + removed) lines.
    pub old_len: usize,
    /// `c`: first new line.
    pub new_start: usize,
    /// `d`: number of new-side (context + added) lines.
    pub new_len: usize,
    /// The body lines in patch order.
    pub lines: Vec<HunkLine>,
    /// 1-based patch line of the `@@` header.
    pub line: usize,
}

/// A hunk body line. The text includes its trailing `"\n"` unless it was
/// followed by `\ No newline at end of file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HunkLine {
    /// `' '`: present on both sides.
    Context(Vec<u8>),
    /// `'-'`: old side only.
    Remove(Vec<u8>),
    /// `'+'`: new side only.
    Add(Vec<u8>),
}

impl HunkLine {
    /// The line text (without the diff marker).
    pub fn text(&self) -> &[u8] {
        match self {
            HunkLine::Context(t) | HunkLine::Remove(t) | HunkLine::Add(t) => t,
        }
    }

    fn text_mut(&mut self) -> &mut Vec<u8> {
        match self {
            HunkLine::Context(t) | HunkLine::Remove(t) | HunkLine::Add(t) => t,
        }
    }
}

impl Hunk {
    /// The `@@ -a,b +c,d @@` header as written in unified diffs.
    pub fn header(&self) -> String {
        format!(
            "@@ -{},{} +{},{} @@",
            self.old_start, self.old_len, self.new_start, self.new_len
        )
    }
}

/// A malformed patch; displays as `origin:LINE: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}: {message}")]
pub struct ParseError {
    /// The patch file name given to [`parse_patch`].
    pub origin: String,
    /// 1-based line number in the patch.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

struct Parser<'a> {
    lines: Vec<&'a [u8]>,
    origin: &'a str,
    pos: usize,
}

/// Parses a multi-file unified diff.
///
/// Accepts `diff --git` sections (with their extended header lines: modes,
/// renames, copies, similarity, `index`, binary markers) and plain `---`/`+++`
/// sections (optionally preceded by `Index:`/`====`). Names have their
/// tab-separated timestamp removed, git C-style quoting is decoded and
/// `/dev/null` becomes `None`. A hunk is read by its counts; an empty line
/// inside a hunk is an empty context line and `\ No newline at end of file`
/// removes the preceding line's `"\n"` (both as GNU patch does).
///
/// Errors (with the line number): an `@@` header that does not parse, a hunk
/// cut short by the end of input, a hunk whose lines do not add up to its
/// counts, a `--- name` line not followed by `+++`, a hunk outside any file.
pub fn parse_patch(text: &[u8], origin: &str) -> Result<Patch, ParseError> {
    let mut lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let mut p = Parser {
        lines,
        origin,
        pos: 0,
    };
    p.run()
}

impl<'a> Parser<'a> {
    fn err(&self, line: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            origin: self.origin.to_string(),
            line,
            message: message.into(),
        }
    }

    fn peek(&self, at: usize) -> Option<&'a [u8]> {
        self.lines.get(at).copied()
    }

    fn run(&mut self) -> Result<Patch, ParseError> {
        let mut patch = Patch::default();
        while let Some(line) = self.peek(self.pos) {
            if line.starts_with(b"diff --git ") {
                let fp = self.git_section()?;
                patch.files.push(fp);
            } else if line.starts_with(b"--- ")
                && self
                    .peek(self.pos + 1)
                    .is_some_and(|l| l.starts_with(b"+++ "))
            {
                let fp = self.plain_section()?;
                patch.files.push(fp);
            } else if line.starts_with(b"--- ")
                && !trim_eol(&line[4..]).iter().all(u8::is_ascii_whitespace)
                && (!patch.files.is_empty()
                    || self
                        .peek(self.pos + 1)
                        .is_some_and(|l| l.starts_with(b"@@ ")))
            {
                return Err(self.err(self.pos + 1, "`---` header not followed by `+++`"));
            } else if line.starts_with(b"@@ -")
                && !patch.files.is_empty()
                && parse_hunk_header(line).is_some()
            {
                return Err(self.err(self.pos + 1, "hunk without a file header"));
            } else {
                self.pos += 1;
            }
        }
        Ok(patch)
    }

    fn git_section(&mut self) -> Result<FilePatch, ParseError> {
        let start = self.pos;
        let header = trim_eol(&self.lines[start][b"diff --git ".len()..]);
        let (old, new) = split_git_names(header)
            .ok_or_else(|| self.err(start + 1, "cannot parse the names in `diff --git`"))?;
        let mut fp = FilePatch {
            old_path: Some(old),
            new_path: Some(new),
            is_git: true,
            line: start + 1,
            ..FilePatch::default()
        };
        let mut created = false;
        let mut deleted = false;
        self.pos += 1;
        while let Some(line) = self.peek(self.pos) {
            let l = trim_eol(line);
            let lineno = self.pos + 1;
            let mode = |rest: &[u8]| -> Result<u32, ParseError> {
                parse_mode(rest).ok_or_else(|| self.err(lineno, "invalid file mode"))
            };
            if let Some(r) = l.strip_prefix(b"old mode ") {
                fp.old_mode = Some(mode(r)?);
            } else if let Some(r) = l.strip_prefix(b"new mode ") {
                fp.new_mode = Some(mode(r)?);
            } else if let Some(r) = l.strip_prefix(b"deleted file mode ") {
                fp.old_mode = Some(mode(r)?);
                deleted = true;
            } else if let Some(r) = l.strip_prefix(b"new file mode ") {
                fp.new_mode = Some(mode(r)?);
                created = true;
            } else if l.starts_with(b"rename from ")
                || l.starts_with(b"rename to ")
                || l.starts_with(b"rename old ")
                || l.starts_with(b"rename new ")
            {
                fp.rename = true;
            } else if l.starts_with(b"copy from ") || l.starts_with(b"copy to ") {
                fp.copy = true;
            } else if l.starts_with(b"similarity index ") || l.starts_with(b"dissimilarity index ")
            {
            } else if let Some(r) = l.strip_prefix(b"index ") {
                // "index abc..def 100644": the mode applies to both sides.
                if let Some(m) = r.split(|&b| b == b' ').nth(1).and_then(parse_mode) {
                    fp.old_mode.get_or_insert(m);
                    fp.new_mode.get_or_insert(m);
                }
            } else if l.starts_with(b"Binary files ") || l == b"GIT binary patch" {
                fp.binary = true;
            } else {
                break;
            }
            self.pos += 1;
        }
        if self.peek(self.pos).is_some_and(|l| l.starts_with(b"--- ")) {
            if !self
                .peek(self.pos + 1)
                .is_some_and(|l| l.starts_with(b"+++ "))
            {
                return Err(self.err(self.pos + 1, "`---` header not followed by `+++`"));
            }
            fp.old_path = self.header_name(self.pos, 4)?;
            fp.new_path = self.header_name(self.pos + 1, 4)?;
            self.pos += 2;
            self.hunks(&mut fp)?;
        }
        if created {
            fp.old_path = None;
        }
        if deleted {
            fp.new_path = None;
        }
        Ok(fp)
    }

    fn plain_section(&mut self) -> Result<FilePatch, ParseError> {
        let start = self.pos;
        let mut fp = FilePatch {
            old_path: self.header_name(start, 4)?,
            new_path: self.header_name(start + 1, 4)?,
            line: start + 1,
            ..FilePatch::default()
        };
        self.pos += 2;
        self.hunks(&mut fp)?;
        if fp.hunks.is_empty() {
            return Err(self.err(start + 2, "file header without any hunk"));
        }
        Ok(fp)
    }

    fn header_name(&self, at: usize, skip: usize) -> Result<Option<String>, ParseError> {
        let raw = trim_eol(&self.lines[at][skip..]);
        let name = if raw.first() == Some(&b'"') {
            let (name, _) =
                unquote(raw).ok_or_else(|| self.err(at + 1, "malformed quoted file name"))?;
            name
        } else {
            let end = raw.iter().position(|&b| b == b'\t').unwrap_or(raw.len());
            let mut n = &raw[..end];
            while let Some((&last, rest)) = n.split_last() {
                if last == b' ' || last == b'\r' {
                    n = rest;
                } else {
                    break;
                }
            }
            n.to_vec()
        };
        if name.is_empty() {
            return Err(self.err(at + 1, "missing file name"));
        }
        if name == b"/dev/null" {
            return Ok(None);
        }
        Ok(Some(String::from_utf8_lossy(&name).into_owned()))
    }

    fn hunks(&mut self, fp: &mut FilePatch) -> Result<(), ParseError> {
        while let Some(line) = self.peek(self.pos) {
            if !line.starts_with(b"@@ ") {
                break;
            }
            fp.hunks.push(self.hunk()?);
        }
        Ok(())
    }

    fn hunk(&mut self) -> Result<Hunk, ParseError> {
        let start = self.pos;
        let (old_start, old_len, new_start, new_len) = parse_hunk_header(self.lines[start])
            .ok_or_else(|| self.err(start + 1, "malformed hunk header"))?;
        if [old_start, old_len, new_start, new_len]
            .iter()
            .any(|&n| n > MAX_LINE_NUMBER)
        {
            return Err(self.err(
                start + 1,
                format!("hunk header line number too large (at most {MAX_LINE_NUMBER})"),
            ));
        }
        let mut hunk = Hunk {
            old_start,
            old_len,
            new_start,
            new_len,
            lines: Vec::new(),
            line: start + 1,
        };
        let (mut old_left, mut new_left) = (old_len, new_len);
        self.pos += 1;
        while old_left > 0 || new_left > 0 {
            let Some(line) = self.peek(self.pos) else {
                return Err(self.err(
                    start + 1,
                    format!(
                        "hunk cut short by end of patch ({old_left} old and {new_left} new lines missing)"
                    ),
                ));
            };
            let lineno = self.pos + 1;
            let (kind, text) = match line.first() {
                Some(b'\n') => (b' ', line),
                Some(b'\r') if line == b"\r\n" => (b' ', line),
                Some(&c) => (c, &line[1..]),
                None => (0, line),
            };
            let bad = |what: &str| {
                self.err(
                    lineno,
                    format!(
                        "{what} in hunk starting at line {} ({old_left} old and {new_left} new lines still expected)",
                        start + 1
                    ),
                )
            };
            match kind {
                b' ' => {
                    if old_left == 0 || new_left == 0 {
                        return Err(bad("context line exceeds the hunk's counts"));
                    }
                    old_left -= 1;
                    new_left -= 1;
                    hunk.lines.push(HunkLine::Context(text.to_vec()));
                }
                b'-' => {
                    if old_left == 0 {
                        return Err(bad("removed line exceeds the hunk's counts"));
                    }
                    old_left -= 1;
                    hunk.lines.push(HunkLine::Remove(text.to_vec()));
                }
                b'+' => {
                    if new_left == 0 {
                        return Err(bad("added line exceeds the hunk's counts"));
                    }
                    new_left -= 1;
                    hunk.lines.push(HunkLine::Add(text.to_vec()));
                }
                b'\\' => {
                    self.no_newline(&mut hunk, lineno)?;
                }
                _ => return Err(bad("unexpected line")),
            }
            self.pos += 1;
        }
        if self.peek(self.pos).is_some_and(|l| l.starts_with(b"\\")) {
            let lineno = self.pos + 1;
            self.no_newline(&mut hunk, lineno)?;
            self.pos += 1;
        }
        if !hunk
            .lines
            .iter()
            .any(|l| !matches!(l, HunkLine::Context(_)))
        {
            return Err(self.err(start + 1, "hunk without any change"));
        }
        Ok(hunk)
    }

    fn no_newline(&self, hunk: &mut Hunk, lineno: usize) -> Result<(), ParseError> {
        let Some(last) = hunk.lines.last_mut() else {
            return Err(self.err(lineno, "`\\ No newline` marker before any hunk line"));
        };
        let t = last.text_mut();
        if t.last() == Some(&b'\n') {
            t.pop();
        }
        Ok(())
    }
}

fn trim_eol(l: &[u8]) -> &[u8] {
    let l = l.strip_suffix(b"\n").unwrap_or(l);
    l.strip_suffix(b"\r").unwrap_or(l)
}

fn parse_mode(s: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(s).ok()?.trim();
    if s.is_empty() {
        return None;
    }
    u32::from_str_radix(s, 8).ok()
}

/// Parses `@@ -a[,b] +c[,d] @@...`; a missing count means 1.
/// The largest line number or count a hunk header may give: GNU patch
/// refuses numbers beyond its line type (`ptrdiff_t`); ours stop a
/// quarter below that, so that the placement's sums and differences of
/// line numbers and offsets cannot overflow (found by `cargo xtask fuzz
/// patch`: a start of 17453950555853655608 overflowed). No real file comes
/// near it.
pub const MAX_LINE_NUMBER: usize = (isize::MAX / 4) as usize;

pub(crate) fn parse_hunk_header(line: &[u8]) -> Option<(usize, usize, usize, usize)> {
    let s = std::str::from_utf8(trim_eol(line)).ok()?;
    let rest = s.strip_prefix("@@ -")?;
    let (ranges, _) = rest.split_once(" @@")?;
    let (old, new) = ranges.split_once(" +")?;
    let range = |r: &str| -> Option<(usize, usize)> {
        match r.split_once(',') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => Some((r.parse().ok()?, 1)),
        }
    };
    let (a, b) = range(old)?;
    let (c, d) = range(new)?;
    Some((a, b, c, d))
}

/// Decodes a git C-style quoted name at the start of `s`; returns the name and
/// the rest after the closing quote.
fn unquote(s: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut out = Vec::new();
    let mut i = 1;
    if s.first() != Some(&b'"') {
        return None;
    }
    while i < s.len() {
        match s[i] {
            b'"' => return Some((out, &s[i + 1..])),
            b'\\' => {
                let c = *s.get(i + 1)?;
                i += 2;
                match c {
                    b'a' => out.push(7),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'v' => out.push(11),
                    b'0'..=b'7' => {
                        let mut v = u32::from(c - b'0');
                        for _ in 0..2 {
                            match s.get(i) {
                                Some(&d @ b'0'..=b'7') => {
                                    v = v * 8 + u32::from(d - b'0');
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        out.push(u8::try_from(v & 0xff).ok()?);
                    }
                    other => out.push(other),
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    None
}

/// Splits the `a/X b/Y` part of a `diff --git` line.
fn split_git_names(s: &[u8]) -> Option<(String, String)> {
    let lossy = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    if s.first() == Some(&b'"') {
        let (a, rest) = unquote(s)?;
        let rest = rest.strip_prefix(b" ")?;
        let b = if rest.first() == Some(&b'"') {
            unquote(rest)?.0
        } else {
            rest.to_vec()
        };
        return Some((lossy(&a), lossy(&b)));
    }
    if let Some(k) = s.windows(2).position(|w| w == b" \"") {
        let (b, _) = unquote(&s[k + 1..])?;
        return Some((lossy(&s[..k]), lossy(&b)));
    }
    let drop_first = |n: &[u8]| -> Vec<u8> {
        match n.iter().position(|&b| b == b'/') {
            Some(p) => n[p + 1..].to_vec(),
            None => n.to_vec(),
        }
    };
    let spaces: Vec<usize> = s
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b' ')
        .map(|(i, _)| i)
        .collect();
    for &k in &spaces {
        if drop_first(&s[..k]) == drop_first(&s[k + 1..]) {
            return Some((lossy(&s[..k]), lossy(&s[k + 1..])));
        }
    }
    let k = *spaces.first()?;
    Some((lossy(&s[..k]), lossy(&s[k + 1..])))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ctx(s: &str) -> HunkLine {
        HunkLine::Context(s.as_bytes().to_vec())
    }
    fn rem(s: &str) -> HunkLine {
        HunkLine::Remove(s.as_bytes().to_vec())
    }
    fn add(s: &str) -> HunkLine {
        HunkLine::Add(s.as_bytes().to_vec())
    }

    #[test]
    fn format_patch_with_commentary_and_signature() {
        let text = "From 1234 Mon Sep 17 00:00:00 2001\nFrom: A <a@b>\nSubject: [PATCH] x\n\n\
                    body\n---\n foo.c | 2 +-\n 1 file changed\n\n\
                    diff --git a/foo.c b/foo.c\nindex 1111111..2222222 100644\n--- a/foo.c\n+++ b/foo.c\n\
                    @@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n\
                    @@ -10 +10,2 @@ func\n-x\n+y\n+z\n\
                    -- \n2.39.2\n\n";
        let p = parse_patch(text.as_bytes(), "t.patch").unwrap();
        assert_eq!(p.files.len(), 1);
        let f = &p.files[0];
        assert!(f.is_git);
        assert_eq!(f.line, 10);
        assert_eq!(f.old_path.as_deref(), Some("a/foo.c"));
        assert_eq!(f.new_path.as_deref(), Some("b/foo.c"));
        assert_eq!(f.old_mode, Some(0o100644));
        assert_eq!(f.hunks.len(), 2);
        assert_eq!(
            f.hunks[0].lines,
            vec![ctx("a\n"), rem("b\n"), add("B\n"), ctx("c\n")]
        );
        assert_eq!(f.hunks[1].old_start, 10);
        assert_eq!(f.hunks[1].old_len, 1);
        assert_eq!(f.hunks[1].line, 19);
    }

    #[test]
    fn plain_headers_timestamps_empty_context_and_no_newline() {
        let text = "Index: x/y\n=====\n--- x.orig/y\t2020-01-01 00:00:00\n+++ x/y\t2020-01-02\n\
                    @@ -1,3 +1,3 @@\n a\n\n-old\n\\ No newline at end of file\n+new\n\\ No newline at end of file\n";
        let p = parse_patch(text.as_bytes(), "t").unwrap();
        let f = &p.files[0];
        assert!(!f.is_git);
        assert_eq!(f.old_path.as_deref(), Some("x.orig/y"));
        assert_eq!(f.new_path.as_deref(), Some("x/y"));
        assert_eq!(
            f.hunks[0].lines,
            vec![ctx("a\n"), ctx("\n"), rem("old"), add("new")]
        );
    }

    #[test]
    fn git_extended_headers() {
        let text = "diff --git a/old b/new\nsimilarity index 100%\nrename from old\nrename to new\n\
                    diff --git a/m b/m\nold mode 100644\nnew mode 100755\n\
                    diff --git a/n b/n\nnew file mode 100755\nindex 0000000..1111111\n--- /dev/null\n+++ b/n\n@@ -0,0 +1 @@\n+x\n\
                    diff --git a/d b/d\ndeleted file mode 100644\nindex 1111111..0000000\n\
                    diff --git \"a/t\\tb\" \"b/t\\tb\"\nindex 1..2 100644\nBinary files a/t\tb and b/t\tb differ\n\
                    diff --git a/sp ace b/sp ace\nnew file mode 100644\n";
        let p = parse_patch(text.as_bytes(), "t").unwrap();
        let f = &p.files;
        assert_eq!(f.len(), 6);
        assert!(f[0].rename && f[0].hunks.is_empty());
        assert_eq!(f[0].old_path.as_deref(), Some("a/old"));
        assert_eq!(f[0].new_path.as_deref(), Some("b/new"));
        assert_eq!(
            (f[1].old_mode, f[1].new_mode),
            (Some(0o100644), Some(0o100755))
        );
        assert_eq!(f[2].old_path, None);
        assert_eq!(f[2].new_mode, Some(0o100755));
        assert_eq!(f[2].hunks.len(), 1);
        assert_eq!(f[3].new_path, None);
        assert_eq!(f[3].old_mode, Some(0o100644));
        assert!(f[4].binary);
        assert_eq!(f[4].new_path.as_deref(), Some("b/t\tb"));
        assert_eq!(f[5].new_path.as_deref(), Some("b/sp ace"));
    }

    #[test]
    fn line_numbers_too_large_to_place_are_refused_with_the_line() {
        for header in [
            "@@ -17453950555853655608,3 +3,3 @@",
            "@@ -3,3 +3,9223372036854775807 @@",
        ] {
            let text = format!("--- a/x\n+++ b/x\n{header}\n a\n-b\n+c\n a\n");
            let e = parse_patch(text.as_bytes(), "big.patch").expect_err(header);
            assert_eq!(e.line, 3, "{e}");
            assert!(e.message.contains("line number too large"), "{e}");
        }
    }

    #[test]
    fn errors_name_the_line() {
        let bad_header = "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @ oops\n a\n";
        let e = parse_patch(bad_header.as_bytes(), "p").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.to_string().starts_with("p:3: "), "{e}");

        let short = "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n";
        assert_eq!(parse_patch(short.as_bytes(), "p").unwrap_err().line, 3);

        let counts = "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+c\nfoo\n";
        assert_eq!(parse_patch(counts.as_bytes(), "p").unwrap_err().line, 7);

        let too_many_removed = "--- a/x\n+++ b/x\n@@ -1,1 +1,1 @@\n-a\n-b\n+c\n";
        assert_eq!(
            parse_patch(too_many_removed.as_bytes(), "p")
                .unwrap_err()
                .line,
            5
        );

        let no_plus = "--- a/x\n@@ -1 +1 @@\n-a\n+b\n";
        assert_eq!(parse_patch(no_plus.as_bytes(), "p").unwrap_err().line, 1);

        let git_no_plus = "diff --git a/x b/x\n--- a/x\n@@ -1 +1 @@\n-a\n+b\n";
        assert_eq!(
            parse_patch(git_no_plus.as_bytes(), "p").unwrap_err().line,
            2
        );
    }

    #[test]
    fn lone_dashes_in_commentary_are_fine() {
        let text = "msg\n---\n--- \n--- just prose\nmore\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n";
        let p = parse_patch(text.as_bytes(), "p").unwrap();
        assert_eq!(p.files.len(), 1);
        assert_eq!(p.files[0].line, 6);
    }
}
