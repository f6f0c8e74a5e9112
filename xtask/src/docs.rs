//! The sections of `docs/` that commands write (`bench …` into
//! BENCHMARKS.md, `soak …` into RELIABILITY.md): each command owns one
//! `## name` section and replaces it whole.

use anyhow::{Context, Result};

/// Replace (or append) the `## name` section of `docs/<doc>` with `text`
/// (which starts with that `## name` line).
pub fn write_section(doc: &str, name: &str, text: &str) -> Result<()> {
    let path = colinux_buildenv::paths::repo_root().join("docs").join(doc);
    let old = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!(
            "# {}\n\nWritten by `cargo xtask …`; each section is replaced by its command.\n",
            doc.trim_end_matches(".md")
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    std::fs::write(&path, replace_section(&old, name, text))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `old` with its `## name` section (up to the next `## ` heading) replaced
/// by `text`, or `text` appended when there is none.
pub fn replace_section(old: &str, name: &str, text: &str) -> String {
    let header = format!("## {name}\n");
    let found = if old.starts_with(&header) {
        Some(0)
    } else {
        old.find(&format!("\n{header}")).map(|i| i + 1)
    };
    match found {
        Some(start) => {
            let rest = &old[start + header.len()..];
            let end = rest
                .find("\n## ")
                .map(|i| start + header.len() + i + 1)
                .unwrap_or(old.len());
            format!("{}{}{}", &old[..start], text, &old[end..])
        }
        None => format!("{}\n\n{}", old.trim_end_matches('\n'), text),
    }
}

#[cfg(test)]
mod tests {
    use super::replace_section;

    #[test]
    fn a_section_is_replaced_whole_and_others_stay() {
        let old = "# T\n\n## a\nold a\n\n## b\nold b\n";
        assert_eq!(
            replace_section(old, "a", "## a\nnew a\n\n"),
            "# T\n\n## a\nnew a\n\n## b\nold b\n"
        );
        assert_eq!(
            replace_section(old, "b", "## b\nnew b\n"),
            "# T\n\n## a\nold a\n\n## b\nnew b\n"
        );
    }

    #[test]
    fn a_missing_section_is_appended_and_prefixes_do_not_match() {
        let old = "# T\n\n## bench cobd extra\nx\n";
        assert_eq!(
            replace_section(old, "bench cobd", "## bench cobd\ny\n"),
            "# T\n\n## bench cobd extra\nx\n\n## bench cobd\ny\n"
        );
    }
}
