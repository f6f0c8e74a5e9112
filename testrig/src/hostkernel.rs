//! Debian's stock x86_64 kernel: the host the colinux driver is tested on.
//!
//! The running machine's own kernel is irrelevant (it is not Debian's and
//! cannot load our module). Instead the test host boots Debian's current
//! `linux-image-amd64` in QEMU ([`crate::testhost`]) and the driver is built
//! against the matching `linux-headers-amd64`. Both metapackages are resolved
//! to the same ABI release (e.g. `6.1.0-41-amd64`), so image and headers
//! always match.
//!
//! - Headers are installed system-wide (`linux-headers-<release>`, which
//!   pulls `-common` and `linux-kbuild`) through [`colinux_buildenv::sysdeps::ensure`].
//! - The image is *not* installed (its maintainer scripts run initramfs
//!   tooling on the machine): `apt-get download` fetches the package into the
//!   cache (apt verifies it against the archive's signed indexes) and only
//!   `boot/vmlinuz-<release>` and `config` are kept, in
//!   `<cache>/host-kernel/<release>/`. (The package's `System.map` is a
//!   placeholder; symbols are in `/proc/kallsyms` inside the host.) The second call is a few `apt-cache`
//!   and `dpkg-query` look-ups.
//! - From the same package, the modules the test host loads (virtio, ext4,
//!   …; [`modules::ROOTS`] and their dependencies, resolved by [`modules`]
//!   from what `depmod` says) are kept in `<cache>/host-kernel/<release>/modules/`.
//!   A cache without them (made before they were kept), or with another
//!   list, is completed: the package is downloaded once more.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use colinux_buildenv::{paths, sysdeps};

pub mod modules;

use modules::{LoadPlan, ModuleIndex};

/// The metapackage that names Debian's current stock kernel image.
const IMAGE_META: &str = "linux-image-amd64";
/// The metapackage that names the matching kernel headers.
const HEADERS_META: &str = "linux-headers-amd64";

/// Debian's stock x86_64 kernel, ready to boot in QEMU and to build modules
/// against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKernel {
    /// The kernel release (`uname -r` inside the test host), e.g.
    /// `6.1.0-41-amd64`.
    pub release: String,
    /// The bootable image (`boot/vmlinuz-<release>` from the image package).
    pub vmlinuz: PathBuf,
    /// `config-<release>`: the kernel's configuration.
    pub config: PathBuf,
    /// The kernel headers to build modules against (what
    /// `/lib/modules/<release>/build` points to on an installed system):
    /// `/usr/src/linux-headers-<release>`.
    pub build_dir: PathBuf,
    /// The modules the test host loads ([`modules::ROOTS`] and what they
    /// need).
    pub modules: HostModules,
}

/// The stock kernel's modules kept for the test host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostModules {
    /// Stands for `/lib/modules/<release>/`: the module files at their
    /// package paths (`kernel/fs/ext4/ext4.ko`, …) and a `modules.dep`
    /// naming them alone.
    pub dir: PathBuf,
    /// What to load, in order.
    pub plan: LoadPlan,
}

/// Find Debian's current stock amd64 kernel, install its headers and
/// download and unpack its image (once; later calls reuse the cache).
///
/// The answer is remembered for the life of the process: asking apt takes
/// about a second, and a test binary boots the host many times.
pub fn ensure() -> Result<HostKernel> {
    static FOUND: Mutex<Option<HostKernel>> = Mutex::new(None);
    let mut found = FOUND.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = found.as_ref().filter(|k| k.vmlinuz.is_file()) {
        return Ok(k.clone());
    }
    let release = current_release()?;
    let kernel = ensure_release(&release)?;
    *found = Some(kernel.clone());
    Ok(kernel)
}

/// Like [`ensure`], for a given release (e.g. `6.1.0-41-amd64`) instead of
/// the one the metapackages name. The release must still be in the archive.
pub fn ensure_release(release: &str) -> Result<HostKernel> {
    if release.is_empty()
        || !release
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '~'))
    {
        bail!("not a kernel release: {release:?}");
    }
    let headers = format!("linux-headers-{release}");
    sysdeps::ensure(
        &format!("building modules for the host kernel {release}"),
        &[headers.as_str()],
    )?;
    let build_dir = PathBuf::from(format!("/usr/src/linux-headers-{release}"));
    if !build_dir.join("Makefile").is_file() {
        bail!(
            "{headers} is installed but {} has no Makefile",
            build_dir.display()
        );
    }
    let dir = paths::cache_dir()?.join("host-kernel").join(release);
    let vmlinuz = dir.join("vmlinuz");
    let config = dir.join("config");
    if !complete(&dir) {
        // One download at a time within this process (tests run in threads).
        static LOCK: Mutex<()> = Mutex::new(());
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if !complete(&dir) {
            fetch_image(release, &dir)?;
        }
    }
    let plan = cached_plan(&dir).with_context(|| {
        format!(
            "the host kernel's modules in {} are incomplete after unpacking them",
            dir.join("modules").display()
        )
    })?;
    tracing::debug!("host kernel {release}: {}", vmlinuz.display());
    Ok(HostKernel {
        release: release.to_string(),
        vmlinuz,
        config,
        build_dir,
        modules: HostModules {
            dir: dir.join("modules"),
            plan,
        },
    })
}

/// The release Debian's metapackages currently name; the image and headers
/// metapackages must agree.
pub fn current_release() -> Result<String> {
    let image = match meta_release(IMAGE_META, "linux-image-") {
        Ok(r) => r,
        Err(first) if sysdeps::is_root() => {
            // A fresh machine may have no package lists yet.
            tracing::info!("{first:#}; running apt-get update once");
            apt_update()?;
            meta_release(IMAGE_META, "linux-image-")?
        }
        Err(e) => return Err(e),
    };
    let headers = meta_release(HEADERS_META, "linux-headers-")?;
    if image != headers {
        bail!(
            "{IMAGE_META} names kernel {image} but {HEADERS_META} names {headers}: \
             the package lists are inconsistent (run `apt-get update`)"
        );
    }
    Ok(image)
}

/// The release that metapackage `meta` depends on, from `apt-cache depends`
/// (its candidate version). `prefix` is the dependency's name prefix.
fn meta_release(meta: &str, prefix: &str) -> Result<String> {
    let out = Command::new("apt-cache")
        .args(["depends", "--important", meta])
        .output()
        .context("cannot run apt-cache (is this a Debian system?)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "apt cannot find {meta} (the package that names Debian's stock kernel): {}\n\
             run `apt-get update` (as root) and make sure Debian's main archive is in the sources",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_depends(&text, prefix).with_context(|| {
        format!("{meta} depends on no {prefix}<release> package (apt-cache depends said:\n{text})")
    })
}

/// The release in the first `Depends: <prefix><release>` line of
/// `apt-cache depends` output (an `-unsigned` suffix is not part of it).
fn parse_depends(text: &str, prefix: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().trim_start_matches('|').strip_prefix("Depends:"))
        .filter_map(|dep| dep.trim().strip_prefix(prefix))
        .map(|r| r.trim_end_matches("-unsigned").to_string())
        .find(|r| r.chars().next().is_some_and(|c| c.is_ascii_digit()))
}

fn apt_update() -> Result<()> {
    let status = Command::new("apt-get")
        .args(["update", "-q"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("cannot run apt-get")?;
    if !status.success() {
        bail!("apt-get update failed ({status})");
    }
    Ok(())
}

/// Download the image package for `release` and keep its kernel files and
/// modules in `dir` (written to a temporary directory, then renamed into
/// place). When `dir` already has the kernel files, only the modules are
/// (re)placed.
fn fetch_image(release: &str, dir: &Path) -> Result<()> {
    sysdeps::ensure(
        "resolving the host kernel's module dependencies (depmod)",
        &["kmod"],
    )?;
    let parent = dir
        .parent()
        .context("the host kernel cache has no parent")?;
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let work = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(parent)
        .with_context(|| {
            format!(
                "cannot create a temporary directory in {}",
                parent.display()
            )
        })?;
    let deb = download_image(release, work.path())?;
    let need_boot = !boot_complete(dir);
    tracing::info!(
        "unpacking the {}modules from {}",
        if need_boot {
            "kernel and its "
        } else {
            "kernel's "
        },
        deb.display()
    );
    let out = work.path().join("out");
    std::fs::create_dir(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let tree = work.path().join("tree");
    extract(&deb, release, &out, &tree)?;
    keep_modules(release, &tree, &out.join("modules"))
        .with_context(|| format!("the modules of {}", deb.display()))?;
    if need_boot {
        if dir.exists() && !complete(dir) {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot remove the incomplete {}", dir.display()))?;
        }
        if let Err(e) = std::fs::rename(&out, dir) {
            // Another process may have finished the same download first.
            if !complete(dir) {
                return Err(e).with_context(|| {
                    format!("cannot move the host kernel into {}", dir.display())
                });
            }
        }
    } else {
        // Only the modules: move an old or partial set aside, then put the
        // new one in its place.
        let modules = dir.join("modules");
        if modules.exists() {
            let old = work.path().join("old-modules");
            std::fs::rename(&modules, &old)
                .with_context(|| format!("cannot move {} aside", modules.display()))?;
        }
        if let Err(e) = std::fs::rename(out.join("modules"), &modules) {
            if !complete(dir) {
                return Err(e).with_context(|| {
                    format!("cannot move the modules into {}", modules.display())
                });
            }
        }
    }
    Ok(())
}

/// Whether `dir` holds everything [`fetch_image`] leaves there.
fn complete(dir: &Path) -> bool {
    boot_complete(dir) && cached_plan(dir).is_ok()
}

/// Whether `dir` has the kernel image and config.
fn boot_complete(dir: &Path) -> bool {
    ["vmlinuz", "config"].iter().all(|f| dir.join(f).is_file())
}

/// The cached modules' plan, if it is there, is for [`modules::ROOTS`] and
/// every file it names is there.
fn cached_plan(dir: &Path) -> Result<LoadPlan> {
    let modules = dir.join("modules");
    let path = modules.join(modules::PLAN_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let plan = LoadPlan::parse(&text).with_context(|| format!("in {}", path.display()))?;
    if plan.roots != modules::ROOTS {
        bail!(
            "{} is for the modules {:?}, not {:?}",
            path.display(),
            plan.roots,
            modules::ROOTS
        );
    }
    if let Some(m) = plan
        .files()
        .into_iter()
        .find(|m| !modules.join(&m.path).is_file())
    {
        bail!("{} lacks {}", modules.display(), m.path);
    }
    Ok(plan)
}

/// Run `depmod` on the unpacked `tree` (`<tree>/lib/modules/<release>/`),
/// resolve [`modules::ROOTS`] and copy what the plan names into `out`, with
/// a trimmed `modules.dep` and the plan (last).
fn keep_modules(release: &str, tree: &Path, out: &Path) -> Result<()> {
    let lib = tree.join("lib/modules").join(release);
    if !lib.join("kernel").is_dir() {
        bail!("the package has no lib/modules/{release}/kernel/");
    }
    let depmod = Command::new("depmod")
        .arg("-b")
        .arg(tree)
        .arg(release)
        .stdin(Stdio::null())
        .output()
        .context("cannot run depmod (Debian package kmod)")?;
    if !depmod.status.success() {
        bail!(
            "depmod -b {} {release} failed ({}): {}",
            tree.display(),
            depmod.status,
            String::from_utf8_lossy(&depmod.stderr).trim()
        );
    }
    let read = |name: &str| {
        let p = lib.join(name);
        std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))
    };
    let index = ModuleIndex::parse(
        &read("modules.dep")?,
        &read("modules.softdep")?,
        &read("modules.alias")?,
    )?;
    let plan = modules::resolve(&index, modules::ROOTS)?;
    for m in plan.files() {
        let src = lib.join(&m.path);
        let dst = out.join(&m.path);
        if let Some(p) = dst.parent() {
            std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
        }
        std::fs::copy(&src, &dst)
            .with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))?;
    }
    let dep = out.join("modules.dep");
    std::fs::write(&dep, plan.trimmed_dep(&index))
        .with_context(|| format!("cannot write {}", dep.display()))?;
    let plan_path = out.join(modules::PLAN_FILE);
    std::fs::write(&plan_path, plan.render())
        .with_context(|| format!("cannot write {}", plan_path.display()))?;
    tracing::info!(
        "host kernel {release}: kept {} modules for the test host",
        plan.files().len()
    );
    Ok(())
}

/// `apt-get download` the signed image package, else the unsigned one.
fn download_image(release: &str, work: &Path) -> Result<PathBuf> {
    let mut errors = Vec::new();
    for package in [
        format!("linux-image-{release}"),
        format!("linux-image-{release}-unsigned"),
    ] {
        tracing::info!("downloading {package} (Debian's stock kernel, for the test host)");
        let out = Command::new("apt-get")
            .args(["download", "-q", &package])
            .current_dir(work)
            .stdin(Stdio::null())
            .output()
            .context("cannot run apt-get")?;
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        tracing::debug!("apt-get download {package}:\n{log}");
        if out.status.success() {
            let prefix = format!("{package}_");
            for entry in std::fs::read_dir(work)
                .with_context(|| format!("cannot read {}", work.display()))?
            {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix) && name.ends_with(".deb") {
                    return Ok(entry.path());
                }
            }
            errors.push(format!(
                "{package}: apt-get download succeeded but left no {prefix}*.deb"
            ));
        } else {
            errors.push(format!("{package}: {}", log.trim()));
        }
    }
    bail!(
        "cannot download Debian's kernel image for {release}:\n{}\n\
         (run `apt-get update` as root if the package lists are old)",
        errors.join("\n")
    )
}

/// Extract `boot/{vmlinuz,config}-<release>` from the package `deb` into
/// `out` as `vmlinuz` and `config`, and `lib/modules/<release>/` into
/// `tree` (at its package path).
fn extract(deb: &Path, release: &str, out: &Path, tree: &Path) -> Result<()> {
    let wanted = [
        (format!("boot/vmlinuz-{release}"), "vmlinuz"),
        (format!("boot/config-{release}"), "config"),
    ];
    let modules = format!("lib/modules/{release}/");
    std::fs::create_dir_all(tree).with_context(|| format!("cannot create {}", tree.display()))?;
    let mut child = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run dpkg-deb")?;
    let stdout = child.stdout.take().context("dpkg-deb has no stdout")?;
    let mut found = 0;
    let mut module_files = 0usize;
    let result = (|| -> Result<()> {
        let mut archive = tar::Archive::new(stdout);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.to_string_lossy().into_owned();
            let path = path.trim_start_matches("./");
            if let Some((_, name)) = wanted.iter().find(|(p, _)| p == path) {
                let mut data = Vec::new();
                entry.read_to_end(&mut data)?;
                std::fs::write(out.join(name), &data)
                    .with_context(|| format!("cannot write {}", out.join(name).display()))?;
                found += 1;
            } else if path.starts_with(&modules) {
                // unpack_in refuses paths that leave `tree`.
                if !entry
                    .unpack_in(tree)
                    .with_context(|| format!("cannot unpack {path} into {}", tree.display()))?
                {
                    bail!("{path}: a path outside the package's tree");
                }
                module_files += 1;
            }
        }
        Ok(())
    })();
    let _ = child.kill();
    let output = child.wait_with_output().context("dpkg-deb failed")?;
    result.with_context(|| {
        format!(
            "cannot read {} ({})",
            deb.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )
    })?;
    if found < wanted.len() {
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|(_, n)| !out.join(n).exists())
            .map(|(p, _)| p.as_str())
            .collect();
        bail!("{} has no {}", deb.display(), missing.join(", "));
    }
    tracing::debug!(
        "unpacked {module_files} files of {modules} from {}",
        deb.display()
    );
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A cache made before the modules were kept, or for other modules, or
    /// missing a file, is not complete (and gets completed by a fetch).
    #[test]
    fn incomplete_module_caches_are_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("vmlinuz"), b"k").unwrap();
        std::fs::write(d.join("config"), b"c").unwrap();
        assert!(boot_complete(d));
        assert!(!complete(d), "no modules/: an older cache");
        let plan = LoadPlan {
            roots: modules::ROOTS.iter().map(|r| r.to_string()).collect(),
            steps: vec![modules::Load::Module(modules::ModuleFile {
                name: "ext4".into(),
                path: "kernel/fs/ext4/ext4.ko".into(),
            })],
        };
        let m = d.join("modules");
        std::fs::create_dir_all(m.join("kernel/fs/ext4")).unwrap();
        std::fs::write(m.join(modules::PLAN_FILE), plan.render()).unwrap();
        let e = format!("{:#}", cached_plan(d).unwrap_err());
        assert!(e.contains("lacks kernel/fs/ext4/ext4.ko"), "{e}");
        std::fs::write(m.join("kernel/fs/ext4/ext4.ko"), b"\x7fELF").unwrap();
        assert!(complete(d));
        assert_eq!(cached_plan(d).unwrap(), plan);
        let other = LoadPlan {
            roots: vec!["ext4".into()],
            ..plan
        };
        std::fs::write(m.join(modules::PLAN_FILE), other.render()).unwrap();
        assert!(!complete(d), "a plan for other roots");
    }

    #[test]
    fn parses_apt_cache_depends() {
        let text = "linux-image-amd64\n  Depends: linux-image-6.1.0-41-amd64\n";
        assert_eq!(
            parse_depends(text, "linux-image-").as_deref(),
            Some("6.1.0-41-amd64")
        );
        let text = "linux-image-amd64\n |Depends: linux-image-6.1.0-9-amd64-unsigned\n  Depends: linux-image-6.1.0-9-amd64\n";
        assert_eq!(
            parse_depends(text, "linux-image-").as_deref(),
            Some("6.1.0-9-amd64")
        );
        assert_eq!(parse_depends("linux-image-amd64\n", "linux-image-"), None);
        let text = "linux-headers-amd64\n  Depends: linux-headers-6.1.0-41-amd64\n";
        assert_eq!(
            parse_depends(text, "linux-headers-").as_deref(),
            Some("6.1.0-41-amd64")
        );
    }
}
