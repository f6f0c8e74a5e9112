//! Debian's package checker on the release's packages.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

/// What lintian said about a package.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `E:` lines.
    pub errors: Vec<String>,
    /// `W:` lines.
    pub warnings: Vec<String>,
    /// Everything it printed.
    pub output: String,
}

/// Run lintian on `deb` (overrides the package ships are honoured).
pub fn check(deb: &Path) -> Result<Report> {
    let o = Command::new("lintian")
        .args(["--no-tag-display-limit", "--display-level", ">=warning"])
        .arg(deb)
        .env("LC_ALL", "C.UTF-8")
        .output()
        .context("cannot run lintian (package lintian)")?;
    let output =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    Ok(parse(&output))
}

/// Sort lintian's lines by severity.
pub fn parse(output: &str) -> Report {
    let mut r = Report {
        output: output.to_string(),
        ..Report::default()
    };
    for l in output.lines() {
        if l.starts_with("E: ") {
            r.errors.push(l.to_string());
        } else if l.starts_with("W: ") {
            r.warnings.push(l.to_string());
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_sorted_by_severity() {
        let r = parse("E: a: tag-one x\nW: a: tag-two\nN: note\nI: a: info\n");
        assert_eq!(r.errors, ["E: a: tag-one x"]);
        assert_eq!(r.warnings, ["W: a: tag-two"]);
    }
}
