//! Debian chroots for the host's architecture (amd64), bootstrapped once
//! and cached: a stand-in for a user's own Debian host where the release
//! packages of `cargo xtask package` are installed in a test (with `dkms`
//! and the stock kernel headers, as the install instructions ask for).
//!
//! The same debootstrap pipeline as the guest's root file system
//! ([`crate::rootfs`]): `--variant=minbase --include=…`, downloads kept in
//! `<cache>/chroots/debs/`, the tree in `<cache>/chroots/<suite>-amd64-<key>/`
//! (`<key>` a hash of suite, architecture, variant and package list). The
//! cached tree is never used in place: [`copy`] makes a scratch copy that a
//! test may install into and throw away.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use colinux_buildenv::{paths, sysdeps};

use crate::rootfs::{self, Bootstrap};

/// The host architecture the packages are for.
pub const ARCH: &str = "amd64";

/// `<cache>/chroots/`.
pub fn cache_dir() -> Result<PathBuf> {
    let dir = paths::cache_dir()?.join("chroots");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Where in the chroot the packages of [`Packages::later`] are kept.
pub const LATER_DIR: &str = "var/cache/colinux-later";

/// What a chroot holds besides minbase.
#[derive(Debug, Clone, Default)]
pub struct Packages {
    /// Added by debootstrap, from the suite alone.
    pub base: Vec<String>,
    /// Installed after the bootstrap by apt from the suite, its `-updates`
    /// and its security archive (where Debian's current kernel headers are).
    pub updates: Vec<String>,
    /// Downloaded from the same archives (without the dependencies the
    /// tree already has) into [`LATER_DIR`], not installed: a test
    /// installs them later without the network, e.g. a kernel that
    /// arrives after our packages.
    pub later: Vec<String>,
}

/// The cached tree of a `suite` chroot with `packages`, bootstrapped now
/// if the cache has none. Needs root. Do not change the tree: [`copy`] it.
pub fn ensure(suite: &str, packages: &Packages) -> Result<PathBuf> {
    if !sysdeps::is_root() {
        bail!("bootstrapping a Debian chroot needs root (debootstrap)");
    }
    sysdeps::ensure("bootstrapping a Debian chroot", sysdeps::ROOTFS)?;
    let dir = cache_dir()?;
    let _lock = paths::lock("chroots")?;
    let b = Bootstrap {
        suite,
        arch: ARCH,
        variant: rootfs::VARIANT,
        packages: &packages.base,
    };
    let key = {
        let mut h = Sha256::new();
        h.update(b.key());
        for u in &packages.updates {
            h.update(format!("\nupdate {u}"));
        }
        for l in &packages.later {
            h.update(format!("\nlater {l}"));
        }
        hex::encode(h.finalize())[..16].to_string()
    };
    let tree_dir = dir.join(format!("{suite}-{ARCH}-{key}"));
    let tree = tree_dir.join("tree");
    if tree_dir.join("bootstrap.txt").is_file() && tree.is_dir() {
        tracing::info!("{suite} {ARCH} chroot from the cache: {}", tree.display());
        return Ok(tree);
    }
    let mirror = rootfs::default_mirror();
    let mirror = mirror.trim_end_matches('/');
    rootfs::bootstrap(&dir, &tree_dir, &b, mirror)?;
    if let Err(e) = install_updates(&tree, suite, mirror, packages) {
        crate::mounts::remove_tree(&tree_dir)?;
        return Err(e);
    }
    Ok(tree)
}

/// apt sources for the suite, its updates and security archive; then
/// `apt-get install` of the updates in the tree and the download of the
/// later ones into [`LATER_DIR`].
fn install_updates(tree: &Path, suite: &str, mirror: &str, packages: &Packages) -> Result<()> {
    let (updates, later) = (&packages.updates, &packages.later);
    if updates.is_empty() && later.is_empty() {
        return Ok(());
    }
    let sources = format!(
        "deb {mirror} {suite} main\ndeb {mirror} {suite}-updates main\n\
         deb {} {suite}-security main\n",
        rootfs::SECURITY_MIRROR
    );
    let list = tree.join("etc/apt/sources.list");
    std::fs::write(&list, sources).with_context(|| format!("cannot write {}", list.display()))?;
    tracing::info!(
        "installing {} in the chroot (apt){}",
        updates.join(" "),
        if later.is_empty() {
            String::new()
        } else {
            format!(", keeping {} for later", later.join(" "))
        }
    );
    let later_dir = tree.join(LATER_DIR).join("partial");
    std::fs::create_dir_all(&later_dir)
        .with_context(|| format!("cannot create {}", later_dir.display()))?;
    let archives = format!("Dir::Cache::Archives=/{LATER_DIR}/");
    let install = ["apt-get", "install", "-y", "-q", "--no-install-recommends"];
    let mut steps = vec![vec!["apt-get", "update", "-q"]];
    if !updates.is_empty() {
        steps.push(
            [
                &install[..],
                &updates.iter().map(String::as_str).collect::<Vec<_>>(),
            ]
            .concat(),
        );
    }
    steps.push(vec!["apt-get", "clean"]);
    if !later.is_empty() {
        steps.push(
            [
                &install[..],
                &["--download-only", "-o", archives.as_str()],
                &later.iter().map(String::as_str).collect::<Vec<_>>(),
            ]
            .concat(),
        );
    }
    for args in steps {
        let o = Command::new("chroot")
            .arg(tree)
            .args(&args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C.UTF-8")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
            .context("cannot run chroot")?;
        if !o.status.success() {
            bail!(
                "`{}` in the chroot {} failed:\n{}{}",
                args.join(" "),
                tree.display(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
    Ok(())
}

/// Copy the cached `tree` to `dest` (which must not exist), keeping
/// ownership, modes, links and device nodes (`cp -a`, reflinked where the
/// file system can).
pub fn copy(tree: &Path, dest: &Path) -> Result<()> {
    if dest.exists() {
        bail!("{} exists already", dest.display());
    }
    let st = Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(tree)
        .arg(dest)
        .status()
        .context("cannot run cp")?;
    if !st.success() {
        bail!("cannot copy {} to {}", tree.display(), dest.display());
    }
    Ok(())
}
