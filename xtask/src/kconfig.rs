//! Kernel configuration: a base target plus fragments, merged the way
//! `scripts/kconfig/merge_config.sh` does, then checked.
//!
//! A fragment holds `CONFIG_X=value` lines and `# CONFIG_X is not set`
//! lines; other `#` lines and blank lines are comments. Fragments are merged
//! in file-name order onto the base `.config` (a later value overrides an
//! earlier one, with a warning), `make olddefconfig` resolves dependencies,
//! and every requested option must have its requested value in the final
//! `.config`: Kconfig silently drops what it cannot satisfy, so an option
//! that did not survive is an error naming it and the fragment that asked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// One requested setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `CONFIG_FOO`.
    pub name: String,
    /// `y`, `m`, `"string"`, `123`, or `n` for "is not set".
    pub value: String,
    /// Where it was asked for (`file:line`).
    pub origin: String,
}

/// Parse one fragment. Errors name the file and line.
pub fn parse_fragment(text: &str, origin: &Path) -> Result<Vec<Request>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let at = || format!("{}:{}", origin.display(), i + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            if let Some(name) = rest.strip_suffix(" is not set") {
                check_name(name).with_context(at)?;
                out.push(Request {
                    name: name.to_string(),
                    value: "n".into(),
                    origin: at(),
                });
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            anyhow::bail!(
                "{}: expected CONFIG_NAME=value or `# CONFIG_NAME is not set`, found {raw:?}",
                at()
            );
        };
        check_name(name).with_context(at)?;
        check_value(value).with_context(at)?;
        out.push(Request {
            name: name.to_string(),
            value: value.to_string(),
            origin: at(),
        });
    }
    Ok(out)
}

fn check_name(name: &str) -> Result<()> {
    let ok = name.strip_prefix("CONFIG_").is_some_and(|n| {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    });
    if !ok {
        anyhow::bail!("{name:?} is not a kernel config option name (CONFIG_[A-Za-z0-9_]+)");
    }
    Ok(())
}

fn check_value(value: &str) -> Result<()> {
    let ok = matches!(value, "y" | "m" | "n")
        || (value.len() >= 2 && value.starts_with('"') && value.ends_with('"'))
        || value.parse::<i64>().is_ok()
        || value
            .strip_prefix("0x")
            .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if !ok {
        anyhow::bail!("{value:?} is not a config value (y, m, n, a number, 0x…, or a \"string\")");
    }
    Ok(())
}

/// The fragments in `dir` (`*.config`), in file-name order.
pub fn fragments(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "config"))
        .collect();
    v.sort();
    Ok(v)
}

/// Merge all fragments into one request list (later ones win).
pub fn merge_requests(files: &[PathBuf]) -> Result<Vec<Request>> {
    let mut merged: BTreeMap<String, Request> = BTreeMap::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        for r in parse_fragment(&text, f)? {
            if let Some(prev) = merged.get(&r.name) {
                if prev.value != r.value {
                    tracing::warn!(
                        "{}: {}={} overrides {}={} from {}",
                        r.origin,
                        r.name,
                        r.value,
                        prev.name,
                        prev.value,
                        prev.origin
                    );
                }
            }
            merged.insert(r.name.clone(), r);
        }
    }
    Ok(merged.into_values().collect())
}

/// Parse a `.config` into name -> value (`n` for "is not set").
pub fn parse_dotconfig(text: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        if let Some(name) = line
            .strip_prefix("# ")
            .and_then(|r| r.strip_suffix(" is not set"))
        {
            m.insert(name.to_string(), "n".to_string());
        } else if let Some((k, v)) = line.split_once('=') {
            if k.starts_with("CONFIG_") {
                m.insert(k.to_string(), v.to_string());
            }
        }
    }
    m
}

/// Rewrite the `.config` text with the requests applied (what
/// merge_config.sh does before running `olddefconfig`).
pub fn apply_requests(dotconfig: &str, requests: &[Request]) -> String {
    let wanted: BTreeMap<&str, &Request> = requests.iter().map(|r| (r.name.as_str(), r)).collect();
    let mut out = String::new();
    for line in dotconfig.lines() {
        let name = line
            .strip_prefix("# ")
            .and_then(|r| r.strip_suffix(" is not set"))
            .or_else(|| line.split_once('=').map(|(k, _)| k));
        if name.is_some_and(|n| wanted.contains_key(n)) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    for r in requests {
        if r.value == "n" {
            out.push_str(&format!("# {} is not set\n", r.name));
        } else {
            out.push_str(&format!("{}={}\n", r.name, r.value));
        }
    }
    out
}

/// Every request whose value did not survive into the final `.config`.
pub fn check_survived(final_config: &str, requests: &[Request]) -> Vec<String> {
    let got = parse_dotconfig(final_config);
    let mut bad = Vec::new();
    for r in requests {
        let actual = got.get(&r.name).map(String::as_str).unwrap_or("n");
        if actual != r.value {
            let actual = if got.contains_key(&r.name) {
                actual.to_string()
            } else {
                "absent (its dependencies are not met, or no such option)".to_string()
            };
            bad.push(format!(
                "{}: requested {}={}, final .config has {}",
                r.origin, r.name, r.value, actual
            ));
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_parsing() {
        let r = parse_fragment(
            "# comment\n\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x y\"\nCONFIG_D=0x10\n",
            Path::new("f.config"),
        )
        .expect("valid");
        let v: Vec<_> = r
            .iter()
            .map(|r| format!("{}={}", r.name, r.value))
            .collect();
        assert_eq!(
            v,
            [
                "CONFIG_A=y",
                "CONFIG_B=n",
                "CONFIG_C=\"x y\"",
                "CONFIG_D=0x10"
            ]
        );
        assert_eq!(r[1].origin, "f.config:4");
    }

    #[test]
    fn broken_fragments_name_file_and_line() {
        for (text, line) in [
            ("CONFIG_A=y\nCONFIG_B\n", 2),
            ("FOO=y\n", 1),
            ("CONFIG_A=y\nCONFIG_B=maybe\n", 2),
            ("# CONFIG_bad-name is not set\n", 1),
        ] {
            let e = parse_fragment(text, Path::new("k/x.config")).expect_err(text);
            assert!(
                format!("{e:#}").contains(&format!("k/x.config:{line}")),
                "{e:#}"
            );
        }
    }

    #[test]
    fn merge_and_survival() {
        let base = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\n";
        let reqs = vec![
            Request {
                name: "CONFIG_B".into(),
                value: "y".into(),
                origin: "f:1".into(),
            },
            Request {
                name: "CONFIG_C".into(),
                value: "n".into(),
                origin: "f:2".into(),
            },
            Request {
                name: "CONFIG_Z".into(),
                value: "y".into(),
                origin: "f:3".into(),
            },
        ];
        let merged = apply_requests(base, &reqs);
        assert_eq!(
            merged,
            "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_Z=y\n"
        );
        // Pretend Kconfig dropped CONFIG_Z.
        let bad = check_survived("CONFIG_A=y\nCONFIG_B=y\n", &reqs);
        assert_eq!(bad.len(), 1);
        assert!(
            bad[0].contains("CONFIG_Z") && bad[0].contains("f:3"),
            "{bad:?}"
        );
    }
}
