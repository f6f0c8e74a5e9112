//! Static x86_64 binaries for the QEMU test host (its initramfs has only
//! busybox): the daemon and the test probe, built for the musl target that
//! `rust-toolchain.toml` installs.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// The target static test-host binaries are built for.
pub const TARGET: &str = "x86_64-unknown-linux-musl";

/// Build `bin` of `package` statically (release) and return its path.
pub fn build_static(package: &str, bin: &str) -> Result<PathBuf> {
    let root = colinux_buildenv::paths::repo_root();
    let sh = xshell::Shell::new()?;
    sh.change_dir(&root);
    tracing::info!("building {bin} ({package}) for {TARGET}");
    xshell::cmd!(
        sh,
        "cargo build --quiet --release --target {TARGET} --package {package} --bin {bin}"
    )
    .run()
    .with_context(|| format!("building {bin} for {TARGET}"))?;
    let path = colinux_buildenv::paths::target_dir()
        .join(TARGET)
        .join("release")
        .join(bin);
    if !path.exists() {
        anyhow::bail!("cargo built {bin} but {} does not exist", path.display());
    }
    Ok(path)
}
