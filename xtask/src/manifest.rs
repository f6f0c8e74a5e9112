//! `kernels.toml`: the pinned kernel versions and where their sources come from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use colinux_series::base::check_version_syntax;
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
        Self::load(&colinux_buildenv::paths::repo_root().join("kernels.toml"))
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

/// The series directory that builds linux `version`, under the repository
/// root `root`: `linux-patches/` when `version` is kernels.toml's
/// `[series] base`, else `linux-patches-<version>/` when it exists (made by
/// `cargo xtask rebase --onto <version> --output linux-patches-<version>`).
/// Any other version is refused with the command that makes its series.
pub fn series_for(manifest: &Manifest, root: &Path, version: &str) -> Result<PathBuf> {
    if version == manifest.series.base {
        return Ok(root.join("linux-patches"));
    }
    manifest.pin(version)?;
    let dir = root.join(format!("linux-patches-{version}"));
    if dir.join("series").is_file() {
        return Ok(dir);
    }
    anyhow::bail!(
        "there is no patch series for linux {version}: linux-patches/ is based on {} \
         (kernels.toml [series] base) and {} does not exist. Make it with \
         `cargo xtask rebase --onto {version} --output linux-patches-{version}`",
        manifest.series.base,
        dir.display()
    )
}

/// The release the series in `series_dir` is based on: V for a
/// `linux-patches-<V>/` directory of a pinned V (see [`series_for`]), else
/// kernels.toml's `[series] base`.
pub fn series_base(manifest: &Manifest, series_dir: &Path) -> String {
    series_dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("linux-patches-"))
        .filter(|v| manifest.kernel.contains_key(*v))
        .map_or_else(|| manifest.series.base.clone(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use colinux_series::base::set_series_base;

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
        let text =
            std::fs::read_to_string(colinux_buildenv::paths::repo_root().join("kernels.toml"))
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
}
