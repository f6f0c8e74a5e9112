//! Where things live: the repository, the cache outside it, the outputs.
//!
//! The cache holds downloads, unpacked kernel trees and kernel build
//! directories. It lives outside the clone so that a fresh clone (CI, a second
//! checkout) reuses them: `$COLINUX_CACHE`, else `$XDG_CACHE_HOME/colinux`,
//! else `~/.cache/colinux`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The root of the colinux repository (the Cargo workspace).
pub fn repo_root() -> PathBuf {
    // buildenv/ is a direct child of the workspace root.
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The cache directory outside the clone (created on demand).
pub fn cache_dir() -> Result<PathBuf> {
    let dir = if let Some(dir) = std::env::var_os("COLINUX_CACHE") {
        PathBuf::from(dir)
    } else if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        PathBuf::from(dir).join("colinux")
    } else if let Some(home) = std::env::var_os("HOME") {
        PathBuf::from(home).join(".cache").join("colinux")
    } else {
        anyhow::bail!("cannot find a cache directory: set COLINUX_CACHE (or HOME)")
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the cache directory {}", dir.display()))?;
    Ok(dir)
}

/// Downloaded source archives.
pub fn downloads_dir() -> Result<PathBuf> {
    sub(cache_dir()?, "downloads")
}

/// The kernel source tree (a git repository) for `version`.
pub fn kernel_tree(version: &str) -> Result<PathBuf> {
    Ok(sub(cache_dir()?, "trees")?.join(format!("linux-{version}")))
}

/// The out-of-tree kernel build directory (`make O=`) for `version`.
pub fn kernel_build_dir(version: &str) -> Result<PathBuf> {
    Ok(sub(cache_dir()?, "build")?.join(format!("linux-{version}-i386")))
}

/// The workspace's target directory: `$CARGO_TARGET_DIR`, else `target/`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// The stable place where `build-kernel` leaves the guest kernel:
/// `target/guest/linux-<version>/` (`vmlinux`, `bzImage`, `config`).
pub fn guest_output_dir(version: &str) -> PathBuf {
    target_dir().join("guest").join(format!("linux-{version}"))
}

fn sub(base: PathBuf, name: &str) -> Result<PathBuf> {
    let dir = base.join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// An exclusive lock on one thing in the cache (a kernel tree, a build
/// directory, a download), held until dropped. Two `cargo xtask` runs (or
/// two tests) sharing the cache wait for each other instead of writing the
/// same files at once. Locks are never nested.
#[derive(Debug)]
pub struct CacheLock {
    _file: std::fs::File,
}

/// Take the lock called `name` (waiting, with a message, if it is held).
pub fn lock(name: &str) -> Result<CacheLock> {
    let dir = sub(cache_dir()?, "locks")?;
    let path = dir.join(format!("{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            tracing::info!(
                "waiting for another cargo xtask that uses {name} ({})",
                path.display()
            );
            file.lock()
                .with_context(|| format!("cannot lock {}", path.display()))?;
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    Ok(CacheLock { _file: file })
}

/// [`lock`] for a directory: the lock's name is `kind` plus the directory's
/// name and a short hash of its full path.
pub fn lock_path(kind: &str, dir: &Path) -> Result<CacheLock> {
    use sha2::Digest;
    let full = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let hash = hex::encode(sha2::Sha256::digest(full.to_string_lossy().as_bytes()));
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    lock(&format!("{kind}-{name}-{}", &hash[..12]))
}
