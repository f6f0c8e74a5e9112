//! virtiofsd in the test host: the back end of cofs runs there beside the
//! daemon.
//!
//! Debian 12 has no virtiofsd package, so the Rust virtiofsd is built from
//! crates.io ([`VERSION`], `cargo install --locked`) into the cache
//! (`$COLINUX_CACHE/virtiofsd-<version>/bin/virtiofsd`) once, with the
//! libraries it links ([`sysdeps::VIRTIOFSD_BUILD`]: libcap-ng and
//! libseccomp); it is copied into the test host's initramfs as
//! [`VIRTIOFSD`] with the shared libraries `ldd` names.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use colinux_buildenv::{paths, sysdeps};

/// The virtiofsd release built.
pub const VERSION: &str = "1.14.0";
/// Where virtiofsd is in the test host.
pub const VIRTIOFSD: &str = "/usr/bin/virtiofsd";

/// Test-host shell lines that make virtiofsd usable there and point the
/// daemon at it (`$COLINUX_VIRTIOFSD`): virtiofsd's sandbox
/// `pivot_root()`s, which fails (EINVAL) while the root is the initramfs
/// itself (rootfs), so the daemon runs it through a wrapper that gives it a
/// mount namespace whose root is a bind mount of `/` (as passt's,
/// [`crate::hostpasst::WRAPPER_SETUP`]).
pub const WRAPPER_SETUP: &str = r#"cat > /tmp/virtiofsd-wrap <<'VIRTIOFSD_WRAP_END'
#!/bin/sh
exec unshare -m sh -c 'mkdir -p /tmp/vfs-root && mount -o rbind / /tmp/vfs-root && cd /tmp/vfs-root && mount -o move . / && exec chroot . /usr/bin/virtiofsd "$@"' virtiofsd "$@"
VIRTIOFSD_WRAP_END
chmod +x /tmp/virtiofsd-wrap
export COLINUX_VIRTIOFSD=/tmp/virtiofsd-wrap
"#;

/// The built virtiofsd in the cache (built now if it is not there).
pub fn program() -> Result<PathBuf> {
    let root = paths::cache_dir()?.join(format!("virtiofsd-{VERSION}"));
    let bin = root.join("bin").join("virtiofsd");
    if bin.is_file() {
        return Ok(bin);
    }
    let _lock = paths::lock("virtiofsd")?;
    if bin.is_file() {
        return Ok(bin);
    }
    sysdeps::ensure("building virtiofsd", sysdeps::VIRTIOFSD_BUILD)?;
    tracing::info!("building virtiofsd {VERSION} into {}", root.display());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let st = Command::new(cargo)
        .args(["install", "--locked", "--root"])
        .arg(&root)
        .arg(format!("virtiofsd@{VERSION}"))
        // Not the workspace's target directory: its own, in the cache.
        .env("CARGO_TARGET_DIR", root.join("build"))
        .status()
        .context("cannot run cargo install virtiofsd")?;
    if !st.success() || !bin.is_file() {
        bail!("cargo install virtiofsd@{VERSION} failed ({st})");
    }
    let _ = std::fs::remove_dir_all(root.join("build"));
    Ok(bin)
}

/// The files virtiofsd needs in the test host: (source on the build
/// machine, path in the test host, mode).
pub fn files() -> Result<Vec<(PathBuf, String, u32)>> {
    let bin = program()?;
    let mut out = vec![(bin.clone(), VIRTIOFSD.to_string(), 0o755)];
    for lib in crate::hostpasst::shared_libraries(Path::new(&bin))? {
        out.push((lib.clone(), lib.display().to_string(), 0o755));
    }
    Ok(out)
}
