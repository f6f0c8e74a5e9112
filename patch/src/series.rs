//! Parsing of quilt's `series` file.
//!
//! quilt reads the series file with two tiny awk/sed programs (`patch_args` and
//! `cat_series` in `scripts/patchfns`): the first whitespace-separated word of a
//! line is the patch name, the following words are options handed verbatim to
//! `patch`, and a `#` at the start of a line or after whitespace starts a
//! comment. We accept the options quilt itself understands (`-pN` and `-R`) and
//! reject anything else instead of silently ignoring it.

use std::path::Path;

/// One patch listed in a quilt `series` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesEntry {
    /// Patch file name relative to the directory holding `series`, as written.
    pub name: String,
    /// Strip level (`-pN`); quilt defaults to 1 when no `-p` option is given.
    pub strip: u32,
    /// `-R`: the patch is applied in reverse.
    pub reverse: bool,
    /// 1-based line of the entry in the series file.
    pub line: usize,
}

/// A malformed series file line; displays as `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}: {message}")]
pub struct SeriesError {
    /// The series file, as given to [`parse_series`].
    pub origin: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong (names the offending option).
    pub message: String,
}

/// Parses a quilt `series` file.
///
/// Rules reproduced from quilt: blank lines and lines whose first non-blank
/// character is `#` are ignored; a `#` preceded by whitespace starts a trailing
/// comment; the patch name is the first word; `-pN` (or `-p N`, which quilt
/// passes on to `patch` as two arguments that patch accepts) sets the strip
/// level and `-R` reverses the patch. Any other option is an error naming
/// `origin:line` and the option, because quilt would pass it to GNU patch and we
/// cannot reproduce arbitrary patch options.
pub fn parse_series(text: &str, origin: &Path) -> Result<Vec<SeriesEntry>, SeriesError> {
    let mut out = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let err = |message: String| SeriesError {
            origin: origin.display().to_string(),
            line: line_no,
            message,
        };
        let content = strip_comment(raw);
        let mut words = content.split([' ', '\t', '\r']).filter(|w| !w.is_empty());
        let Some(name) = words.next() else { continue };
        let mut entry = SeriesEntry {
            name: name.to_string(),
            strip: 1,
            reverse: false,
            line: line_no,
        };
        let mut seen_p = false;
        while let Some(word) = words.next() {
            if word == "-R" {
                entry.reverse = true;
            } else if let Some(level) = word.strip_prefix("-p") {
                let level = if level.is_empty() {
                    words
                        .next()
                        .ok_or_else(|| err("option -p needs a strip level".to_string()))?
                } else {
                    level
                };
                let parsed: u32 = level
                    .parse()
                    .map_err(|_| err(format!("invalid strip level in option -p{level}")))?;
                if seen_p {
                    return Err(err(format!("duplicate strip option -p{level}")));
                }
                seen_p = true;
                entry.strip = parsed;
            } else {
                return Err(err(format!("unsupported option {word:?} for patch {name}")));
            }
        }
        out.push(entry);
    }
    Ok(out)
}

/// Removes a comment: `#` at the start (after blanks) or after whitespace.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && (i == 0 || bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') {
            return &line[..i];
        }
    }
    line
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<SeriesEntry>, SeriesError> {
        parse_series(text, Path::new("debian/patches/series"))
    }

    #[test]
    fn basic_entries_and_comments() {
        let s = "# header\n\n  # indented comment\nfoo.patch\nbar/baz.diff -p0\n\
                 qux.patch -R -p2 # trailing\nhash#inside.patch\nsp.patch -p 3\n";
        let v = parse(s).unwrap();
        assert_eq!(
            v,
            vec![
                SeriesEntry {
                    name: "foo.patch".into(),
                    strip: 1,
                    reverse: false,
                    line: 4
                },
                SeriesEntry {
                    name: "bar/baz.diff".into(),
                    strip: 0,
                    reverse: false,
                    line: 5
                },
                SeriesEntry {
                    name: "qux.patch".into(),
                    strip: 2,
                    reverse: true,
                    line: 6
                },
                SeriesEntry {
                    name: "hash#inside.patch".into(),
                    strip: 1,
                    reverse: false,
                    line: 7
                },
                SeriesEntry {
                    name: "sp.patch".into(),
                    strip: 3,
                    reverse: false,
                    line: 8
                },
            ]
        );
    }

    #[test]
    fn unknown_option_is_an_error() {
        let e = parse("a.patch\nb.patch --fuzz=3\n").unwrap_err();
        assert_eq!(e.line, 2);
        let msg = e.to_string();
        assert!(msg.starts_with("debian/patches/series:2: "), "{msg}");
        assert!(msg.contains("--fuzz=3"), "{msg}");
    }

    #[test]
    fn bad_strip_levels() {
        assert_eq!(parse("a.patch -pab\n").unwrap_err().line, 1);
        assert_eq!(parse("x\na.patch -p\n").unwrap_err().line, 2);
        assert!(parse("a.patch -p1 -p0\n").is_err());
    }
}
