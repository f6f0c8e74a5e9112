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
    // xtask/ is a direct child of the workspace root.
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

/// The stable place where `build-kernel` leaves the guest kernel:
/// `target/guest/linux-<version>/` (`vmlinux`, `bzImage`, `config`).
pub fn guest_output_dir(version: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    target.join("guest").join(format!("linux-{version}"))
}

fn sub(base: PathBuf, name: &str) -> Result<PathBuf> {
    let dir = base.join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}
