//! Where a series records the release it is based on: `[series] base` in
//! the repository's `kernels.toml`. A finished rebase moves it (only that
//! line is rewritten; comments and layout stay).

use std::path::Path;

use anyhow::{Context, Result};

/// Set `[series] base` in the manifest at `path` to `version`, changing only
/// that line (comments and layout are kept). Returns false when it already was.
pub fn set_series_base(path: &Path, version: &str) -> Result<bool> {
    check_version_syntax(version)?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the kernel manifest {}", path.display()))?;
    let mut in_series = false;
    let mut done = false;
    let mut changed = false;
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if t.starts_with('[') {
            in_series = t == "[series]";
        } else if in_series && !done && t.starts_with("base") {
            if let Some((key, _)) = line.split_once('=') {
                if key.trim() == "base" {
                    let nl = if line.ends_with('\n') { "\n" } else { "" };
                    let new = format!("{key}= \"{version}\"{nl}");
                    changed = new != line;
                    out.push_str(&new);
                    done = true;
                    continue;
                }
            }
        }
        out.push_str(line);
    }
    if !done {
        anyhow::bail!("{}: no `base = ...` line in [series]", path.display());
    }
    if changed {
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, &out).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(changed)
}

pub fn check_version_syntax(version: &str) -> Result<()> {
    let ok = !version.is_empty()
        && version.split('.').count() >= 2
        && version
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        anyhow::bail!("{version:?} is not a kernel version like 6.1.176")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_version_syntax_is_rejected() {
        assert!(check_version_syntax("6.1.176").is_ok());
        assert!(check_version_syntax("6").is_err());
        assert!(check_version_syntax("6.1-rc1").is_err());
        assert!(check_version_syntax("../6.1").is_err());
    }
}
