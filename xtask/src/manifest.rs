//! `kernels.toml`: the pinned kernel versions and where their sources come from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// The parsed manifest.
#[derive(Debug, Deserialize)]
pub struct Manifest {
    /// What the patch series is based on.
    pub series: SeriesInfo,
    /// Known versions, by version string.
    pub kernel: BTreeMap<String, KernelPin>,
    #[serde(skip)]
    pub path: PathBuf,
}

/// The `[series]` table.
#[derive(Debug, Deserialize)]
pub struct SeriesInfo {
    /// The vanilla release `linux-patches/` applies to.
    pub base: String,
}

/// One pinned version.
#[derive(Debug, Clone, Deserialize)]
pub struct KernelPin {
    pub kernel_org: Option<KernelOrgSource>,
    pub debian: Option<DebianSource>,
}

/// The upstream archive on kernel.org.
#[derive(Debug, Clone, Deserialize)]
pub struct KernelOrgSource {
    pub url: String,
    /// Absent when nobody has verified this archive yet: the source is refused.
    pub sha256: Option<String>,
}

/// Debian's source package for the version (`apt-get source --download-only`).
#[derive(Debug, Clone, Deserialize)]
pub struct DebianSource {
    /// Source package name (`linux`, `linux-6.12`).
    pub package: String,
    /// Debian version (`6.1.176-1`).
    pub version: String,
    /// The `orig` archive's file name.
    pub file: String,
    pub sha256: String,
    /// Debian's own packaging archive (holds Debian's quilt series).
    pub debian_tar: Option<String>,
    pub debian_tar_sha256: Option<String>,
}

impl Manifest {
    /// The manifest at the repository root.
    pub fn load_default() -> Result<Manifest> {
        Self::load(&crate::paths::repo_root().join("kernels.toml"))
    }

    pub fn load(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the kernel manifest {}", path.display()))?;
        let mut manifest: Manifest = toml::from_str(&text)
            .with_context(|| format!("{}: not a valid kernel manifest", path.display()))?;
        manifest.path = path.to_path_buf();
        for (version, pin) in &manifest.kernel {
            check_version_syntax(version)
                .with_context(|| format!("{}: [kernel.\"{version}\"]", path.display()))?;
            if pin.kernel_org.is_none() && pin.debian.is_none() {
                anyhow::bail!(
                    "{}: kernel {version} lists no source at all",
                    path.display()
                );
            }
        }
        if !manifest.kernel.contains_key(&manifest.series.base) {
            anyhow::bail!(
                "{}: the series base {} is not one of the pinned versions",
                path.display(),
                manifest.series.base
            );
        }
        Ok(manifest)
    }

    /// The pin for `version`, or an error listing the known ones.
    pub fn pin(&self, version: &str) -> Result<&KernelPin> {
        self.kernel.get(version).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown kernel version {version:?}: {} pins only {}. \
                 To add one, add its archive's sha256 to that file.",
                self.path.display(),
                self.kernel.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// Every sha256 that a source archive of `version` may have.
    pub fn accepted_hashes(&self, version: &str) -> Result<Vec<(String, &'static str)>> {
        let pin = self.pin(version)?;
        let mut out = Vec::new();
        if let Some(k) = &pin.kernel_org {
            if let Some(h) = &k.sha256 {
                out.push((h.clone(), "kernel.org"));
            }
        }
        if let Some(d) = &pin.debian {
            out.push((d.sha256.clone(), "debian"));
        }
        Ok(out)
    }
}

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

fn check_version_syntax(version: &str) -> Result<()> {
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
    fn repository_manifest_parses_and_pins_required_versions() {
        let m = Manifest::load_default().expect("kernels.toml parses");
        for v in ["6.1.176", "6.12.100", "6.1.4"] {
            let pin = m.pin(v).expect("pinned");
            assert!(pin.debian.is_some(), "{v} has a Debian source");
        }
        let err = m.pin("5.99.1").expect_err("unknown version");
        assert!(err.to_string().contains("6.1.176"), "{err}");
    }

    #[test]
    fn series_base_is_rewritten_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kernels.toml");
        let text = std::fs::read_to_string(crate::paths::repo_root().join("kernels.toml"))
            .expect("manifest");
        std::fs::write(&path, &text).expect("write");
        assert!(set_series_base(&path, "6.12.100").expect("set"));
        let new = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            new,
            text.replace("base = \"6.1.176\"", "base = \"6.12.100\"")
        );
        assert_eq!(
            Manifest::load(&path).expect("parses").series.base,
            "6.12.100"
        );
        assert!(!set_series_base(&path, "6.12.100").expect("set again"));
    }

    #[test]
    fn bad_version_syntax_is_rejected() {
        assert!(check_version_syntax("6.1.176").is_ok());
        assert!(check_version_syntax("6").is_err());
        assert!(check_version_syntax("6.1-rc1").is_err());
        assert!(check_version_syntax("../6.1").is_err());
    }
}
