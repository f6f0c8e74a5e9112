//! `cargo xtask package`: build what a release holds and hand it to
//! [`colinux_packaging::release`] (the layout of the packages is there),
//! then run lintian on each package.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use colinux_buildenv::{paths, sysdeps};
use colinux_packaging::release::{self, Inputs, Release};

use crate::manifest::Manifest;

/// Options of `cargo xtask package`.
#[derive(Debug, Clone)]
pub struct PackageOptions {
    /// Where the release goes [default: target/release-pkg].
    pub out: Option<PathBuf>,
    /// Leave the root file system image out (it takes a debootstrap and a
    /// minute of xz).
    pub no_image: bool,
    /// Run lintian and fail on its errors.
    pub lintian: bool,
}

/// Debian packages the step needs on the build machine.
pub const PACKAGE_TOOLS: &[&str] = &["dpkg", "xz-utils"];
/// And for checking them.
pub const LINTIAN: &[&str] = &["lintian"];

/// The release directory by default.
pub fn default_out() -> PathBuf {
    paths::target_dir().join("release-pkg")
}

/// The guest kernel versions that have a patch series (one per LTS line),
/// with their line (`6.1.176` → `6.1`).
pub fn guest_lines(manifest: &Manifest) -> Vec<(String, String)> {
    let root = paths::repo_root();
    manifest
        .kernel
        .keys()
        .filter(|v| crate::manifest::series_for(manifest, &root, v).is_ok())
        .map(|v| {
            let line = v.split('.').take(2).collect::<Vec<_>>().join(".");
            (line, v.clone())
        })
        .collect()
}

/// Build everything and write the release.
pub fn package(manifest: &Manifest, o: &PackageOptions) -> Result<Release> {
    sysdeps::ensure("packaging the release", PACKAGE_TOOLS)?;
    let out = o.out.clone().unwrap_or_else(default_out);
    let version = env!("CARGO_PKG_VERSION").to_string();

    // The driver's sources for DKMS: the same Kbuild directory
    // `build-driver` builds, with the core object it makes.
    let host = colinux_testrig::hostkernel::ensure()?;
    let core = crate::driver_build::build_core(&host.build_dir.join("tools/objtool/objtool"))?;
    let kbuild = crate::driver_build::output_root().join("dkms-source");
    if kbuild.exists() {
        std::fs::remove_dir_all(&kbuild)
            .with_context(|| format!("cannot remove {}", kbuild.display()))?;
    }
    crate::driver_build::prepare_kbuild_dir(&kbuild, &core)?;

    let built = colinux_testrig::userland::build_static("colinux-daemon", "colinux")?;
    // Debian ships programs without symbols (the test host's copy keeps
    // them, for backtraces).
    let staging = paths::target_dir().join("package");
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    let colinux = staging.join("colinux");
    let st = Command::new("strip")
        .args(["--strip-all", "-o"])
        .arg(&colinux)
        .arg(&built)
        .status()
        .context("cannot run strip (package binutils)")?;
    if !st.success() {
        bail!("strip failed on {}", built.display());
    }
    let generate = |what: &str| -> Result<Vec<u8>> {
        let o = Command::new(&colinux)
            .args(["generate", what])
            .output()
            .with_context(|| format!("cannot run {}", colinux.display()))?;
        if !o.status.success() {
            bail!(
                "colinux generate {what}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        Ok(o.stdout)
    };

    let mut guest_kernels = Vec::new();
    for (line, v) in guest_lines(manifest) {
        tracing::info!("guest kernel {v} (line {line})");
        let opts = crate::build::BuildOptions::guest(manifest, &v)?;
        let built = crate::build::build_kernel(manifest, &opts)?;
        guest_kernels.push((line, built.vmlinux));
    }

    let rootfs = if o.no_image {
        None
    } else {
        let r = colinux_images::rootfs::build(&colinux_images::rootfs::RootfsOptions::default())?;
        Some(r.image)
    };

    let root = paths::repo_root();
    let inputs = Inputs {
        version,
        colinux: colinux.clone(),
        kbuild,
        guest_kernels,
        rootfs,
        image_cache: Some(paths::cache_dir()?.join("release-images")),
        unit: root.join("daemon/systemd/colinux@.service"),
        example_config: std::fs::read_to_string(root.join(EXAMPLE))
            .with_context(|| format!("cannot read {EXAMPLE}"))?,
        man: generate("man")?,
        bash: generate("bash")?,
        zsh: generate("zsh")?,
        fish: generate("fish")?,
        date: commit_date(&root)?,
    };
    let rel = release::make(&inputs, &out)?;
    if o.lintian {
        sysdeps::ensure("checking the packages", LINTIAN)?;
        let mut errors = Vec::new();
        for deb in &rel.debs {
            tracing::info!("lintian {}", deb.display());
            let r = colinux_packaging::lintian::check(deb)?;
            for w in &r.warnings {
                tracing::warn!("{w}");
            }
            errors.extend(r.errors);
        }
        if !errors.is_empty() {
            bail!("lintian found errors:\n{}", errors.join("\n"));
        }
    }
    Ok(rel)
}

/// The example configuration the `colinux` package installs.
pub const EXAMPLE: &str = "daemon/examples/example.toml";

/// The last commit's date, RFC 2822 (a reproducible date for changelogs).
fn commit_date(root: &Path) -> Result<String> {
    let o = Command::new("git")
        .args(["log", "-1", "--format=%cD"])
        .current_dir(root)
        .output()
        .context("cannot run git")?;
    let d = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if !o.status.success() || d.is_empty() {
        bail!("cannot read the last commit's date with git log");
    }
    Ok(d)
}
