//! `cargo xtask fetch-kernel`: get a pinned vanilla Linux release, verify it,
//! unpack it once into the cache and record it as a git repository.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::manifest::Manifest;
use colinux_series::tree::KernelTree;

/// Where a source archive can come from, in the default order of trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// A local archive given with `--tarball`.
    Tarball,
    /// The upstream archive from kernel.org.
    KernelOrg,
    /// Debian's source package (`apt-get source --download-only`).
    Debian,
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SourceKind::Tarball => "local archive",
            SourceKind::KernelOrg => "kernel.org",
            SourceKind::Debian => "debian",
        })
    }
}

/// How to fetch.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// A local archive to use (tried first).
    pub tarball: Option<PathBuf>,
    /// Sources to try, in order. Empty: the default order
    /// (`$COLINUX_KERNEL_SOURCES`, else tarball, kernel.org, debian).
    pub sources: Vec<SourceKind>,
}

/// The default order of sources: `$COLINUX_KERNEL_SOURCES` (comma-separated
/// `tarball,kernel-org,debian`) or all three.
pub fn default_sources() -> Result<Vec<SourceKind>> {
    match std::env::var("COLINUX_KERNEL_SOURCES") {
        Ok(list) => list
            .split(',')
            .map(|s| match s.trim() {
                "tarball" => Ok(SourceKind::Tarball),
                "kernel-org" | "kernel.org" => Ok(SourceKind::KernelOrg),
                "debian" => Ok(SourceKind::Debian),
                other => anyhow::bail!(
                    "COLINUX_KERNEL_SOURCES: unknown source {other:?} (use tarball, kernel-org, debian)"
                ),
            })
            .collect(),
        Err(_) => Ok(vec![
            SourceKind::Tarball,
            SourceKind::KernelOrg,
            SourceKind::Debian,
        ]),
    }
}

/// Fetch `version` (if not yet in the cache) and return its tree.
pub fn fetch_kernel(manifest: &Manifest, version: &str, opts: &FetchOptions) -> Result<KernelTree> {
    manifest.pin(version)?;
    let _lock = colinux_buildenv::paths::lock(&format!("fetch-{version}"))?;
    let dest = colinux_buildenv::paths::kernel_tree(version)?;
    if let Some(tree) = KernelTree::open_existing(&dest)? {
        tracing::info!(
            "linux {version} is already unpacked in {} (from {})",
            dest.display(),
            tree.source
        );
        return Ok(tree);
    }
    let (archive, source, sha) = obtain_archive(manifest, version, opts)?;
    let tree = unpack_and_import(&archive, &dest, version, &source, &sha)?;
    Ok(tree)
}

/// Find, download and verify an archive of `version`; returns its path, the
/// source's name and its sha256.
pub fn obtain_archive(
    manifest: &Manifest,
    version: &str,
    opts: &FetchOptions,
) -> Result<(PathBuf, String, String)> {
    let pin = manifest.pin(version)?.clone();
    let sources = if opts.sources.is_empty() {
        default_sources()?
    } else {
        opts.sources.clone()
    };
    let downloads = colinux_buildenv::paths::downloads_dir()?;
    let mut tried: Vec<String> = Vec::new();
    for source in sources {
        let attempt: Result<Option<(PathBuf, String)>> = match source {
            SourceKind::Tarball => match &opts.tarball {
                None => Ok(None),
                Some(path) => verify_local(manifest, version, path).map(Some),
            },
            SourceKind::KernelOrg => match &pin.kernel_org {
                None => Err(anyhow::anyhow!("kernels.toml has no kernel.org entry for {version}")),
                Some(k) => match &k.sha256 {
                    None => Err(anyhow::anyhow!(
                        "kernels.toml pins no sha256 for the kernel.org archive of {version}, so it cannot be verified"
                    )),
                    Some(sha) => {
                        let name = k.url.rsplit('/').next().unwrap_or("linux.tar.xz");
                        let path = downloads.join(name);
                        download_verified(&k.url, &path, sha).map(|()| Some((path, sha.clone())))
                    }
                },
            },
            SourceKind::Debian => match &pin.debian {
                None => Err(anyhow::anyhow!("kernels.toml has no Debian entry for {version}")),
                Some(d) => {
                    let path = downloads.join(&d.file);
                    debian_file(&path, &d.package, &d.version, &d.sha256)
                        .map(|()| Some((path, d.sha256.clone())))
                }
            },
        };
        match attempt {
            Ok(Some((path, sha))) => return Ok((path, source.to_string(), sha)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("source {source} failed: {e:#}");
                tried.push(format!("  - {source}: {e:#}"));
            }
        }
    }
    anyhow::bail!(
        "could not get linux {version} from any source:\n{}\n\
         Supply the archive yourself with `cargo xtask fetch-kernel --version {version} --tarball PATH` \
         (kernel.org's linux-{version}.tar.xz or Debian's orig archive; its sha256 must match kernels.toml).",
        if tried.is_empty() { "  (no source was selected)".to_string() } else { tried.join("\n") }
    )
}

/// A local archive must have one of the pinned hashes. It is never deleted.
fn verify_local(manifest: &Manifest, version: &str, path: &Path) -> Result<(PathBuf, String)> {
    let got = sha256_file(path)?;
    let accepted = manifest.accepted_hashes(version)?;
    if accepted.iter().any(|(h, _)| *h == got) {
        return Ok((path.to_path_buf(), got));
    }
    anyhow::bail!(
        "{}: sha256 {got} matches no pinned archive of linux {version} (expected one of: {})",
        path.display(),
        accepted
            .iter()
            .map(|(h, s)| format!("{h} ({s})"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Check a (cached or fresh) file against `sha`; a mismatch deletes it.
fn check_or_delete(path: &Path, sha: &str) -> Result<()> {
    let got = sha256_file(path)?;
    if got == sha {
        return Ok(());
    }
    std::fs::remove_file(path).with_context(|| format!("cannot delete {}", path.display()))?;
    anyhow::bail!(
        "checksum mismatch for {}: expected sha256 {sha}, got {got}; the file was deleted",
        path.display()
    )
}

fn download_verified(url: &str, path: &Path, sha: &str) -> Result<()> {
    if path.exists() {
        match check_or_delete(path, sha) {
            Ok(()) => return Ok(()),
            Err(e) => tracing::warn!("{e:#}; downloading again"),
        }
    }
    tracing::info!("downloading {url}");
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(15))
        .timeout_read(Duration::from_secs(60))
        .build();
    let resp = agent
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let total: Option<u64> = resp.header("Content-Length").and_then(|v| v.parse().ok());
    let part = path.with_extension("part");
    let mut out =
        File::create(&part).with_context(|| format!("cannot create {}", part.display()))?;
    let mut reader = resp.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let (mut done, mut last) = (0u64, Instant::now());
    loop {
        let n = reader
            .read(&mut buf)
            .with_context(|| format!("reading {url}"))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .with_context(|| format!("cannot write {}", part.display()))?;
        done += n as u64;
        if last.elapsed() > Duration::from_secs(5) {
            last = Instant::now();
            match total {
                Some(t) => tracing::info!("  {} / {} MiB", done >> 20, t >> 20),
                None => tracing::info!("  {} MiB", done >> 20),
            }
        }
    }
    out.sync_all().ok();
    drop(out);
    std::fs::rename(&part, path).with_context(|| format!("cannot rename {}", part.display()))?;
    check_or_delete(path, sha)
}

/// Get `file` of Debian source package `package=version` into `path`'s
/// directory, verified against `sha`.
pub fn debian_file(path: &Path, package: &str, version: &str, sha: &str) -> Result<()> {
    if path.exists() {
        match check_or_delete(path, sha) {
            Ok(()) => return Ok(()),
            Err(e) => tracing::warn!("{e:#}; downloading again"),
        }
    }
    colinux_buildenv::sysdeps::ensure(
        "fetching Debian source packages",
        colinux_buildenv::sysdeps::DEBIAN_SOURCE,
    )?;
    let cache = colinux_buildenv::paths::cache_dir()?;
    let apt = colinux_buildenv::apt::PrivateApt::source(&cache.join("apt"))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    apt.download_source(package, version, dir)?;
    if !path.exists() {
        anyhow::bail!(
            "apt-get source {package}={version} did not produce {}",
            path.display()
        );
    }
    check_or_delete(path, sha)
}

/// Unpack a `.tar.xz` kernel archive into `dest` (dropping the top-level
/// directory) and import it as the vanilla commit.
fn unpack_and_import(
    archive: &Path,
    dest: &Path,
    version: &str,
    source: &str,
    sha: &str,
) -> Result<KernelTree> {
    let tmp = dest.with_extension("unpacking");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("cannot remove the leftover {}", tmp.display()))?;
    }
    tracing::info!("unpacking {} …", archive.display());
    let started = Instant::now();
    let files = unpack_tar_xz(archive, &tmp)?;
    tracing::info!(
        "unpacked {files} files in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    tracing::info!("recording the vanilla tree as a git commit …");
    colinux_series::tree::import_vanilla(&tmp, version, source, sha)?;
    tracing::info!("recorded in {:.1}s", started.elapsed().as_secs_f64());
    std::fs::rename(&tmp, dest)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), dest.display()))?;
    KernelTree::open_existing(dest)?.ok_or_else(|| {
        anyhow::anyhow!(
            "{} is not a usable kernel tree after import",
            dest.display()
        )
    })
}

/// Unpack `archive` into `dest`, stripping the first path component.
/// Refuses entries that would land outside `dest`.
pub fn unpack_tar_xz(archive: &Path, dest: &Path) -> Result<usize> {
    let f = File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let xz = xz2::read::XzDecoder::new(BufReader::with_capacity(1 << 20, f));
    let mut tar = tar::Archive::new(xz);
    tar.set_preserve_permissions(true);
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let mut count = 0usize;
    let entries = tar
        .entries()
        .with_context(|| format!("{}: not a tar archive", archive.display()))?;
    for entry in entries {
        let mut entry = entry
            .with_context(|| format!("{}: corrupt or truncated archive", archive.display()))?;
        let path = entry
            .path()
            .with_context(|| format!("{}: bad path in archive", archive.display()))?
            .into_owned();
        let mut comps = path.components();
        comps.next();
        let rel: PathBuf = comps.collect();
        if rel.as_os_str().is_empty() {
            continue;
        }
        if rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            anyhow::bail!(
                "{}: entry {} escapes the tree",
                archive.display(),
                path.display()
            );
        }
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        let out = dest.join(&rel);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        entry.unpack(&out).with_context(|| {
            format!(
                "{}: corrupt or truncated archive (at {})",
                archive.display(),
                path.display()
            )
        })?;
        count += 1;
    }
    if count == 0 {
        anyhow::bail!("{}: the archive is empty", archive.display());
    }
    Ok(count)
}

/// Debian's quilt series for `version` (from its `.debian.tar.xz`), unpacked
/// once into the cache; returns the `debian/` directory. Used by the tests
/// and benchmarks as a real patch series not written by this project.
pub fn debian_packaging(manifest: &Manifest, version: &str) -> Result<PathBuf> {
    let pin = manifest.pin(version)?;
    let d = pin
        .debian
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("kernels.toml has no Debian entry for {version}"))?;
    let (Some(file), Some(sha)) = (&d.debian_tar, &d.debian_tar_sha256) else {
        anyhow::bail!("kernels.toml pins no Debian packaging archive for {version}");
    };
    let dest = colinux_buildenv::paths::cache_dir()?
        .join("debian-packaging")
        .join(version);
    let done = dest.join(".complete");
    if done.exists() {
        return Ok(dest.join("debian"));
    }
    let path = colinux_buildenv::paths::downloads_dir()?.join(file);
    debian_file(&path, &d.package, &d.version, sha)?;
    if dest.exists() {
        std::fs::remove_dir_all(&dest)
            .with_context(|| format!("cannot remove {}", dest.display()))?;
    }
    std::fs::create_dir_all(&dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let f = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut tar = tar::Archive::new(xz2::read::XzDecoder::new(BufReader::new(f)));
    tar.unpack(&dest)
        .with_context(|| format!("{}: corrupt or truncated archive", path.display()))?;
    std::fs::write(&done, b"").with_context(|| format!("cannot write {}", done.display()))?;
    Ok(dest.join("debian"))
}
