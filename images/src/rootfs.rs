//! The guest's root file system: Debian (12, "bookworm", by default) for
//! i386 with Debian's own init, systemd, as an ext4 image
//! (`cargo xtask rootfs`).
//!
//! Two steps, cached separately:
//! 1. **Bootstrap** (once per suite and package list, about a minute with a
//!    warm download cache, a few without): `debootstrap --arch=i386
//!    --variant=minbase --include=…` ([`PACKAGES`]) into the cache. The
//!    downloaded `.deb`s stay in `<cache>/rootfs/debs/` (debootstrap's
//!    `--cache-dir`, checked against the signed indexes on reuse), so a
//!    changed package list downloads only what is new. The tree keeps its
//!    real ownership (debootstrap runs as root); the packages' archives and
//!    the apt lists are removed from it.
//! 2. **Image** (seconds): the tree is linked (`cp -al`) into a staging
//!    directory, configured there ([`config_actions`]: host name, fstab by
//!    label, root autologin on `hvc0`, the `cobdN` udev rule, DHCP, apt
//!    sources, an empty machine id) — every change replaces a file, so the
//!    cached tree is never modified through a shared link — and
//!    `mke2fs -t ext4 -L colinux-root -d STAGING` writes the image. No loop
//!    mount, no chroot after debootstrap.
//!
//! Cache layout (`<cache>/rootfs/`):
//! - `debs/`: debootstrap's package cache;
//! - `<suite>-i386-<key>/tree` and `bootstrap.txt`: a bootstrapped tree,
//!   `<key>` a hash of suite, architecture, variant and package list
//!   ([`tree_key`]); a tree with another key for the same suite is deleted
//!   when a new one is made;
//! - `debootstrap.log`: the last debootstrap's output;
//! - `colinux-root-<suite>-i386.img`: the default image;
//! - `outputs/<hash>.txt`: for each image written, its inputs, size and
//!   modification time (an image in the cache is named relative to it, so
//!   a copied or moved cache keeps its records). An image whose inputs are unchanged is left as it
//!   is; one a guest has written to since (its time or size differ) is
//!   replaced only with `force`: the user's data is never lost silently.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use colinux_buildenv::{paths, sysdeps};

use crate::progress::Progress;

/// The guest's architecture.
pub const ARCH: &str = "i386";
/// The Debian release built by default.
pub const DEFAULT_SUITE: &str = "bookworm";
/// The mirror when neither `--mirror` nor the system's apt sources name one.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// Where the image's apt finds security updates.
pub const SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
/// The file system's label; `/etc/fstab` mounts the root by it.
pub const LABEL: &str = "colinux-root";
/// The image's size unless asked otherwise (the file is sparse: about
/// about 410 MiB of it is written, with git and x11-xserver-utils; measured
/// after the merge: see docs/rootfs.md).
pub const DEFAULT_SIZE: u64 = 2 << 30;
/// debootstrap's variant: only `Priority: required` packages and apt.
pub const VARIANT: &str = "minbase";
/// Debian's archive keys, which debootstrap checks the `Release` file with.
pub const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// What `--include` adds to minbase: Debian's init and device manager, the
/// D-Bus system bus (logind and the `*ctl` tools need it), networking
/// (`iproute2`, `ping`, `systemd-resolved` for DNS of networkd's DHCP),
/// `procps`, `kmod`, `netbase`, `less`, an editor, `e2fsprogs` (fsck of
/// the root at boot), `x11-xserver-utils` (`xsetroot`, `xset`, `xrandr`,
/// `xhost` and the X client libraries: the guest's X clients display on the
/// host's X server, and conet's test shows it; not `x11-utils`, whose
/// `glxinfo` pulls Mesa and LLVM, ~220 MiB) and `git` (the cofs test works
/// in a repository in a share; without its recommends, which debootstrap
/// does not install). No kernel: the guest kernel is colinux's own and has
/// no modules.
pub const PACKAGES: &[&str] = &[
    "systemd-sysv",
    "udev",
    "dbus",
    "systemd-resolved",
    "iproute2",
    "iputils-ping",
    "procps",
    "kmod",
    "netbase",
    "less",
    "vim-tiny",
    "e2fsprogs",
    "x11-xserver-utils",
    "git",
];

/// Bump when the bootstrap step changes in a way [`tree_key`]'s inputs do
/// not show (e.g. what is removed from the tree after debootstrap).
const BOOTSTRAP_VERSION: u32 = 1;

/// What to build.
#[derive(Debug, Clone)]
pub struct RootfsOptions {
    /// The Debian suite (`bookworm`).
    pub suite: String,
    /// The Debian mirror; [`default_mirror`] when `None`.
    pub mirror: Option<String>,
    /// The image's size in bytes.
    pub size: u64,
    /// Where the image goes; `<cache>/rootfs/colinux-root-<suite>-i386.img`
    /// when `None`.
    pub output: Option<PathBuf>,
    /// Replace the output even if a guest changed it (or it is not ours),
    /// and rebuild it even if it is up to date.
    pub force: bool,
    /// Packages added to minbase ([`PACKAGES`]).
    pub packages: Vec<String>,
}

impl Default for RootfsOptions {
    fn default() -> Self {
        RootfsOptions {
            suite: DEFAULT_SUITE.to_string(),
            mirror: None,
            size: DEFAULT_SIZE,
            output: None,
            force: false,
            packages: PACKAGES.iter().map(|p| p.to_string()).collect(),
        }
    }
}

/// What [`build`] did.
#[derive(Debug, Clone)]
pub struct Rootfs {
    /// The image.
    pub image: PathBuf,
    /// The bootstrapped tree it was made from (in the cache).
    pub tree: PathBuf,
    /// debootstrap ran (the tree was not in the cache).
    pub bootstrapped: bool,
    /// The image was written (it was absent, stale, or `force`).
    pub written: bool,
    /// Its size (the file system's).
    pub size: u64,
    /// The bytes the sparse image takes on disk.
    pub allocated: u64,
}

/// `<cache>/rootfs/`.
pub fn cache_dir() -> Result<PathBuf> {
    let dir = paths::cache_dir()?.join("rootfs");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// The image's path when no output is given.
pub fn default_output(suite: &str) -> Result<PathBuf> {
    Ok(cache_dir()?.join(format!("colinux-root-{suite}-{ARCH}.img")))
}

/// The mirror to bootstrap from: the system's Debian archive (its first
/// `deb` entry that is not the security archive), else [`DEFAULT_MIRROR`].
pub fn default_mirror() -> String {
    colinux_buildenv::apt::system_entries()
        .unwrap_or_default()
        .into_iter()
        .find(|e| !e.uri.contains("security") && !e.suite.ends_with("-security"))
        .map(|e| e.uri.trim_end_matches('/').to_string())
        .unwrap_or_else(|| DEFAULT_MIRROR.to_string())
}

/// The cache key of a bootstrapped tree: suite, architecture, variant and
/// the package list (order and repeats do not matter).
pub fn tree_key(suite: &str, packages: &[String]) -> String {
    Bootstrap {
        suite,
        arch: ARCH,
        variant: VARIANT,
        packages,
    }
    .key()
}

/// One debootstrap run: what [`tree_key`] and the cached tree stand for.
/// The guest's root file system uses [`ARCH`] and [`VARIANT`];
/// [`crate::chroot`] bootstraps amd64 build chroots the same way.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bootstrap<'a> {
    pub suite: &'a str,
    pub arch: &'a str,
    pub variant: &'a str,
    pub packages: &'a [String],
}

impl Bootstrap<'_> {
    /// A hash of everything the tree depends on.
    pub fn key(&self) -> String {
        let Bootstrap {
            suite,
            arch,
            variant,
            packages,
        } = *self;
        let set: BTreeSet<&str> = packages.iter().map(|p| p.as_str()).collect();
        let mut h = Sha256::new();
        h.update(format!(
            "bootstrap {BOOTSTRAP_VERSION}\nsuite {suite}\narch {arch}\nvariant {variant}\n"
        ));
        for p in set {
            h.update(format!("include {p}\n"));
        }
        hex::encode(h.finalize())[..16].to_string()
    }
}

fn check_options(opts: &RootfsOptions, mirror: &str) -> Result<()> {
    if opts.suite.is_empty() || !opts.suite.chars().all(|c| c.is_ascii_lowercase()) {
        bail!(
            "not a Debian suite name: {:?} (e.g. {DEFAULT_SUITE})",
            opts.suite
        );
    }
    if !["http://", "https://", "file:///"]
        .iter()
        .any(|s| mirror.starts_with(s))
        || mirror.chars().any(char::is_whitespace)
    {
        bail!("not a mirror URL: {mirror:?} (e.g. {DEFAULT_MIRROR})");
    }
    for p in &opts.packages {
        let ok = !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        if !ok {
            bail!("not a Debian package name: {p:?}");
        }
    }
    if opts.size < 64 << 20 {
        bail!(
            "an image of {} is too small for Debian (it needs about 250 MiB; the default is {})",
            crate::size::human(opts.size),
            crate::size::human(DEFAULT_SIZE)
        );
    }
    Ok(())
}

/// Build the image (bootstrapping the tree first if the cache has none for
/// this suite and package list). Needs root.
pub fn build(opts: &RootfsOptions) -> Result<Rootfs> {
    let mirror = opts.mirror.clone().unwrap_or_else(default_mirror);
    let mirror = mirror.trim_end_matches('/').to_string();
    check_options(opts, &mirror)?;
    if !sysdeps::is_root() {
        bail!(
            "building the root file system needs root: debootstrap makes files owned by \
             other users and device nodes, and mke2fs must read them all"
        );
    }
    sysdeps::ensure("building the guest's root file system", sysdeps::ROOTFS)?;
    let dir = cache_dir()?;
    let _lock = paths::lock("rootfs")?;
    let key = tree_key(&opts.suite, &opts.packages);
    let tree_dir = dir.join(format!("{}-{ARCH}-{key}", opts.suite));
    let tree = tree_dir.join("tree");
    let bootstrapped = if tree_dir.join("bootstrap.txt").is_file() && tree.is_dir() {
        tracing::info!("bootstrapped tree from the cache: {}", tree.display());
        false
    } else {
        let b = Bootstrap {
            suite: &opts.suite,
            arch: ARCH,
            variant: VARIANT,
            packages: &opts.packages,
        };
        bootstrap(&dir, &tree_dir, &b, &mirror)?;
        prune_trees(&dir, &opts.suite, &tree_dir)?;
        true
    };
    let output = match &opts.output {
        Some(p) => absolute(p)?,
        None => default_output(&opts.suite)?,
    };
    let actions = config_actions(&ImageConfig {
        suite: opts.suite.clone(),
        mirror,
    });
    let inputs = image_inputs(&key, &actions, opts.size);
    let rec = record(&dir, &output);
    match output_state(&output, &rec, &inputs)? {
        OutputState::UpToDate if !opts.force => {
            tracing::info!("{} is up to date", output.display());
            return Ok(Rootfs {
                allocated: allocated(&output)?,
                image: output,
                tree,
                bootstrapped,
                written: false,
                size: opts.size,
            });
        }
        OutputState::Changed if !opts.force => bail!(
            "{} exists and is not the image cargo xtask rootfs last wrote there (a guest \
             changed it, or it is another file): pass --force to replace it, or choose \
             another --output",
            output.display()
        ),
        state => tracing::debug!("writing {}: {state:?}", output.display()),
    }
    make_image(&dir, &tree, &actions, &output, opts.size)?;
    write_stamp(&rec, &output, &inputs)?;
    let allocated = allocated(&output)?;
    Ok(Rootfs {
        image: output,
        tree,
        bootstrapped,
        written: true,
        size: opts.size,
        allocated,
    })
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("cannot read the current directory")?
        .join(p))
}

/// Run debootstrap into a temporary directory of `dir` and move the result
/// to `tree_dir` (`tree/` and `bootstrap.txt`).
pub(crate) fn bootstrap(dir: &Path, tree_dir: &Path, b: &Bootstrap, mirror: &str) -> Result<()> {
    let work = dir.join(format!(
        ".bootstrap-{}",
        tree_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    // A run killed before it finished leaves its work directory (and
    // perhaps debootstrap's mounts in it).
    crate::mounts::remove_tree(&work)?;
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let result = bootstrap_in(dir, &work, b, mirror);
    if let Err(e) = result {
        if let Err(clean) = crate::mounts::remove_tree(&work) {
            tracing::warn!("cannot clean up {}: {clean:#}", work.display());
        }
        return Err(e);
    }
    crate::mounts::remove_tree(tree_dir)?;
    std::fs::rename(&work, tree_dir)
        .with_context(|| format!("cannot move {} to {}", work.display(), tree_dir.display()))?;
    Ok(())
}

fn bootstrap_in(dir: &Path, work: &Path, b: &Bootstrap, mirror: &str) -> Result<()> {
    let target = work.join("tree");
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs).with_context(|| format!("cannot create {}", debs.display()))?;
    let log_path = dir.join("debootstrap.log");
    let include: Vec<&str> = b
        .packages
        .iter()
        .map(|p| p.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut cmd = Command::new("debootstrap");
    cmd.arg(format!("--arch={}", b.arch))
        .arg(format!("--variant={}", b.variant))
        .arg(format!("--include={}", include.join(",")))
        .arg(format!("--cache-dir={}", debs.display()))
        .arg(format!("--keyring={KEYRING}"))
        .arg(b.suite)
        .arg(&target)
        .arg(mirror)
        .env("LC_ALL", "C.UTF-8")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("PATH", sbin_path());
    let version = debootstrap_version();
    tracing::info!(
        "debootstrap {} {} ({} + {} packages) from {mirror} into {} \
         (a few minutes; full output in {})",
        b.suite,
        b.arch,
        b.variant,
        include.len(),
        target.display(),
        log_path.display()
    );
    let took = run_debootstrap(cmd, &log_path, &target)?;
    let removed = clean_tree(&target)?;
    tracing::info!(
        "removed {} of package archives and apt lists from the tree",
        crate::size::human(removed)
    );
    for must in ["usr/bin/passwd", "etc/os-release"] {
        if std::fs::symlink_metadata(target.join(must)).is_err() {
            bail!(
                "debootstrap finished but {} has no /{must}; see {}",
                target.display(),
                log_path.display()
            );
        }
    }
    let record = format!(
        "suite: {}\narchitecture: {}\nvariant: {}\ninclude: {}\nmirror: {mirror}\n\
         debootstrap: {version}\nseconds: {:.0}\n",
        b.suite,
        b.arch,
        b.variant,
        include.join(","),
        took.as_secs_f64()
    );
    let path = work.join("bootstrap.txt");
    std::fs::write(&path, record).with_context(|| format!("cannot write {}", path.display()))
}

/// `$PATH` with the sbin directories debootstrap needs (`chroot`, `mknod`).
fn sbin_path() -> String {
    let current = std::env::var("PATH").unwrap_or_default();
    let mut parts: Vec<&str> = current.split(':').filter(|p| !p.is_empty()).collect();
    for d in ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        if !parts.contains(&d) {
            parts.push(d);
        }
    }
    parts.join(":")
}

fn debootstrap_version() -> String {
    Command::new("debootstrap")
        .arg("--version")
        .env("PATH", sbin_path())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Run debootstrap with its output in `log_path` and progress lines: one
/// per phase (retrieving, validating, extracting, unpacking, configuring)
/// and one every few seconds within it.
fn run_debootstrap(
    mut cmd: Command,
    log_path: &Path,
    target: &Path,
) -> Result<std::time::Duration> {
    let mut log = std::fs::File::create(log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let (reader, writer) = std::io::pipe().context("cannot create a pipe")?;
    cmd.stdin(Stdio::null())
        .stdout(writer.try_clone().context("cannot duplicate a pipe")?)
        .stderr(writer);
    tracing::debug!("running {cmd:?}");
    let mut child = cmd.spawn().context("cannot run debootstrap")?;
    drop(cmd);
    let mut progress = Progress::start("debootstrap");
    let mut phase = String::new();
    let mut count = 0usize;
    let mut tail = std::collections::VecDeque::new();
    for line in BufReader::new(reader).lines() {
        let line = line.unwrap_or_default();
        let _ = writeln!(log, "{line}");
        tail.push_back(line.clone());
        if tail.len() > 30 {
            tail.pop_front();
        }
        let Some(msg) = line.strip_prefix("I: ") else {
            continue;
        };
        let mut words = msg.split_whitespace();
        let verb = words.next().unwrap_or_default();
        let object = words.next().unwrap_or_default().trim_end_matches("...");
        // One line per package: "Retrieving" and "Validating" alternate
        // while downloading, then one verb per later phase.
        let per_package = match verb {
            "Retrieving" | "Validating" => Some("downloading"),
            "Extracting" => Some("extracting"),
            "Unpacking" => Some("unpacking"),
            "Configuring" => Some("configuring"),
            _ => None,
        }
        .filter(|_| {
            !object.is_empty()
                && !object.starts_with("the")
                && !object.starts_with("Release")
                && !object.starts_with("Packages")
        });
        match per_package {
            Some(p) => {
                if p != phase {
                    phase = p.to_string();
                    count = 0;
                    progress.note(&format!("{p} packages"));
                }
                if verb != "Validating" {
                    count += 1;
                }
                progress.tick(|| format!("{phase} packages: {count}, now {object}"));
            }
            None => {
                phase.clear();
                progress.note(msg.trim_end_matches("..."));
            }
        }
    }
    let status = child.wait().context("waiting for debootstrap")?;
    if !status.success() {
        let inner = target.join("debootstrap").join("debootstrap.log");
        let inner_tail = std::fs::read_to_string(&inner)
            .map(|t| {
                let lines: Vec<&str> = t.lines().collect();
                lines[lines.len().saturating_sub(15)..].join("\n")
            })
            .unwrap_or_default();
        bail!(
            "debootstrap failed ({status}); its last lines (full output: {}):\n{}{}",
            log_path.display(),
            tail.into_iter().collect::<Vec<_>>().join("\n"),
            if inner_tail.is_empty() {
                String::new()
            } else {
                format!("\n{}:\n{inner_tail}", inner.display())
            }
        );
    }
    Ok(progress.done("the base system is installed"))
}

/// Remove what the image does not need from a fresh tree: the package
/// archives (debootstrap keeps them in its own cache) and the apt lists
/// (`apt update` in the guest gets current ones). Returns the bytes freed.
fn clean_tree(tree: &Path) -> Result<u64> {
    let mut freed = 0;
    for (dir, keep) in [
        ("var/cache/apt/archives", &["partial", "lock"][..]),
        ("var/lib/apt/lists", &["partial", "lock"][..]),
    ] {
        let dir = tree.join(dir);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let e = e.with_context(|| format!("cannot list {}", dir.display()))?;
            let name = e.file_name();
            if keep.iter().any(|k| name == *k) {
                continue;
            }
            let meta = e
                .metadata()
                .with_context(|| format!("cannot stat {}", e.path().display()))?;
            if meta.is_file() {
                freed += meta.len();
                std::fs::remove_file(e.path())
                    .with_context(|| format!("cannot remove {}", e.path().display()))?;
            }
        }
    }
    for pattern in [
        "var/cache/apt/pkgcache.bin",
        "var/cache/apt/srcpkgcache.bin",
    ] {
        let p = tree.join(pattern);
        if let Ok(m) = std::fs::metadata(&p) {
            freed += m.len();
            std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    Ok(freed)
}

/// Delete bootstrapped trees of `suite` other than `keep` (made for
/// another package list).
fn prune_trees(dir: &Path, suite: &str, keep: &Path) -> Result<()> {
    let prefix = format!("{suite}-{ARCH}-");
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let e = e.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && path != keep && path.is_dir() {
            tracing::info!(
                "removing {} (bootstrapped for another package list)",
                path.display()
            );
            crate::mounts::remove_tree(&path)?;
        }
    }
    Ok(())
}

/// What the image's configuration depends on.
#[derive(Debug, Clone)]
pub struct ImageConfig {
    pub suite: String,
    /// The mirror written into `/etc/apt/sources.list`.
    pub mirror: String,
}

/// One change made to the staged tree. Paths are relative to its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A regular file with this content and mode (replacing what is there).
    File {
        path: String,
        mode: u32,
        contents: String,
    },
    /// A symbolic link (replacing what is there).
    Symlink { path: String, target: String },
    /// root's password field in `/etc/shadow` set to `*` (no password
    /// opens the account; the console logs in without one).
    LockRoot,
}

impl Action {
    fn describe(&self) -> String {
        match self {
            Action::File {
                path,
                mode,
                contents,
            } => format!("file {path} {mode:o}\n{contents}\n"),
            Action::Symlink { path, target } => format!("symlink {path} -> {target}\n"),
            Action::LockRoot => "lock root\n".to_string(),
        }
    }
}

/// The drop-in that logs root in on the console. Debian's
/// `serial-getty@.service` runs `agetty -o '-p -- \\u' --keep-baud
/// 115200,57600,38400,9600 - $TERM`; this one adds `--autologin root`
/// (`-o` goes: agetty passes `-f root` to login itself).
pub const AUTOLOGIN_DROPIN: &str = "\
# colinux: root is logged in on the guest's console (hvc0, the cocon console
# the host user attaches to) without a password. Remove this file to get a
# login prompt instead (root's password is locked: set one with passwd first).
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 - $TERM
";

/// Where [`AUTOLOGIN_DROPIN`] goes.
pub const AUTOLOGIN_PATH: &str = "etc/systemd/system/serial-getty@hvc0.service.d/autologin.conf";

/// The udev rule that gives cobd unit N the name `/dev/cobdN`: the host sets
/// the virtio serial of unit N to `cobdN`, and virtio-blk shows it as the
/// disk's `serial` attribute. Partitions get `/dev/cobdNpM`.
pub const COBD_RULE: &str = "\
# colinux: /dev/cobdN is the virtio disk the host serves as cobd unit N (the
# host sets that disk's virtio serial to \"cobdN\"; virtio-blk shows it as the
# disk's sysfs attribute \"serial\"). Its partitions are /dev/cobdNpM.
ACTION==\"remove\", GOTO=\"colinux_cobd_end\"
SUBSYSTEM!=\"block\", GOTO=\"colinux_cobd_end\"
KERNEL!=\"vd*\", GOTO=\"colinux_cobd_end\"
ENV{DEVTYPE}==\"disk\", ATTR{serial}==\"cobd[0-9]|cobd[0-9][0-9]\", SYMLINK+=\"$attr{serial}\"
ENV{DEVTYPE}==\"partition\", ATTRS{serial}==\"cobd[0-9]|cobd[0-9][0-9]\", SYMLINK+=\"$attr{serial}p%n\"
LABEL=\"colinux_cobd_end\"
";

/// Where [`COBD_RULE`] goes.
pub const COBD_RULE_PATH: &str = "etc/udev/rules.d/60-colinux-cobd.rules";

/// The fstab: the root by its label.
pub fn fstab() -> String {
    format!(
        "# colinux guest (written by cargo xtask rootfs): the root file system by its label\n\
         # <file system>  <mount point>  <type>  <options>  <dump>  <pass>\n\
         LABEL={LABEL} / ext4 defaults 0 1\n"
    )
}

/// Every change the image gets on top of the bootstrapped tree.
pub fn config_actions(cfg: &ImageConfig) -> Vec<Action> {
    let file = |path: &str, mode: u32, contents: String| Action::File {
        path: path.to_string(),
        mode,
        contents,
    };
    let link = |path: &str, target: &str| Action::Symlink {
        path: path.to_string(),
        target: target.to_string(),
    };
    let suite = &cfg.suite;
    let mut sources = format!(
        "# Debian {suite} for the colinux guest (written by cargo xtask rootfs)\n\
         deb {} {suite} main\n",
        cfg.mirror
    );
    if !matches!(suite.as_str(), "sid" | "unstable" | "experimental") {
        sources.push_str(&format!(
            "deb {} {suite}-updates main\ndeb {SECURITY_MIRROR} {suite}-security main\n",
            cfg.mirror
        ));
    }
    let sulogin = "\
# colinux: root's password is locked and the console belongs to the host user,
# so the emergency and rescue shells open without a password.
[Service]
Environment=SYSTEMD_SULOGIN_FORCE=1
"
    .to_string();
    vec![
        file("etc/hostname", 0o644, "colinux\n".into()),
        file(
            "etc/hosts",
            0o644,
            "127.0.0.1\tlocalhost\n127.0.1.1\tcolinux\n\n\
             ::1\t\tlocalhost ip6-localhost ip6-loopback\n\
             ff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n"
                .into(),
        ),
        file("etc/fstab", 0o644, fstab()),
        file(AUTOLOGIN_PATH, 0o644, AUTOLOGIN_DROPIN.into()),
        // Enabled explicitly: systemd's getty generator also starts it for
        // console=hvc0, but the image should not depend on the command line.
        link(
            "etc/systemd/system/getty.target.wants/serial-getty@hvc0.service",
            "/lib/systemd/system/serial-getty@.service",
        ),
        file(
            "etc/systemd/system/emergency.service.d/colinux.conf",
            0o644,
            sulogin.clone(),
        ),
        file(
            "etc/systemd/system/rescue.service.d/colinux.conf",
            0o644,
            sulogin,
        ),
        file(COBD_RULE_PATH, 0o644, COBD_RULE.into()),
        file(
            "etc/systemd/network/20-colinux-ethernet.network",
            0o644,
            "# colinux: DHCP on the guest's ethernet interface (conet).\n\
             [Match]\nType=ether\nName=en* eth*\n\n[Network]\nDHCP=yes\n"
                .into(),
        ),
        link(
            "etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
            "/lib/systemd/system/systemd-networkd.service",
        ),
        link(
            "etc/systemd/system/sockets.target.wants/systemd-networkd.socket",
            "/lib/systemd/system/systemd-networkd.socket",
        ),
        link("etc/resolv.conf", "../run/systemd/resolve/stub-resolv.conf"),
        file("etc/apt/sources.list", 0o644, sources),
        // Empty: systemd makes a new id at the first boot of each image
        // (and commits it once the root is writable), without running the
        // first-boot wizard, which would wait for answers on the console.
        file("etc/machine-id", 0o444, String::new()),
        file(
            "etc/motd",
            0o644,
            format!(
                "\ncolinux guest: Debian {suite} ({ARCH}) beside the host's kernel.\n\
                 root is logged in on the console; its password is locked (passwd sets one).\n\n"
            ),
        ),
        Action::LockRoot,
    ]
}

/// Apply `actions` to the tree at `root`. Every file is replaced (a new
/// file renamed over the old one), never written in place, so a tree whose
/// files are hard links into the cache leaves the cache unchanged. No
/// directory on the way may be a symbolic link (it could lead out of the
/// tree).
pub fn apply(root: &Path, actions: &[Action]) -> Result<()> {
    for a in actions {
        match a {
            Action::File {
                path,
                mode,
                contents,
            } => {
                let dest = inside(root, path)?;
                replace_file(&dest, contents.as_bytes(), *mode)?;
            }
            Action::Symlink { path, target } => {
                let dest = inside(root, path)?;
                let tmp = temp_name(&dest);
                let _ = std::fs::remove_file(&tmp);
                std::os::unix::fs::symlink(target, &tmp)
                    .with_context(|| format!("cannot create the link {}", tmp.display()))?;
                std::fs::rename(&tmp, &dest).with_context(|| {
                    format!("cannot rename {} to {}", tmp.display(), dest.display())
                })?;
            }
            Action::LockRoot => {
                let shadow = inside(root, "etc/shadow")?;
                let text = std::fs::read_to_string(&shadow)
                    .with_context(|| format!("cannot read {}", shadow.display()))?;
                let locked = lock_root(&text)
                    .with_context(|| format!("{}: no entry for root", shadow.display()))?;
                let mode = std::fs::metadata(&shadow)
                    .with_context(|| format!("cannot stat {}", shadow.display()))?
                    .permissions()
                    .mode()
                    & 0o7777;
                replace_file(&shadow, locked.as_bytes(), mode)?;
            }
        }
    }
    Ok(())
}

/// `/etc/shadow` with root's password field set to `*`.
pub fn lock_root(shadow: &str) -> Option<String> {
    let mut found = false;
    let mut out = String::with_capacity(shadow.len());
    for line in shadow.split_inclusive('\n') {
        let mut fields: Vec<&str> = line.split(':').collect();
        if fields.first() == Some(&"root") && fields.len() > 2 {
            found = true;
            fields[1] = "*";
            out.push_str(&fields.join(":"));
        } else {
            out.push_str(line);
        }
    }
    found.then_some(out)
}

/// `root/rel`, created directories included, refusing `..`, absolute paths
/// and symbolic links on the way.
fn inside(root: &Path, rel: &str) -> Result<PathBuf> {
    let rel_path = Path::new(rel);
    if rel_path
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        bail!("not a plain relative path: {rel:?}");
    }
    let mut at = root.to_path_buf();
    let parts: Vec<_> = rel_path.components().collect();
    for (i, c) in parts.iter().enumerate() {
        at.push(c);
        let last = i + 1 == parts.len();
        match std::fs::symlink_metadata(&at) {
            Ok(m) if !last && m.file_type().is_symlink() => bail!(
                "{} is a symbolic link; the image's configuration does not write through links",
                at.display()
            ),
            Ok(m) if !last && !m.is_dir() => bail!("{} is not a directory", at.display()),
            Ok(_) => {}
            Err(_) if !last => {
                std::fs::create_dir(&at)
                    .with_context(|| format!("cannot create {}", at.display()))?;
                std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o755))
                    .with_context(|| format!("cannot set the mode of {}", at.display()))?;
            }
            Err(_) => {}
        }
    }
    Ok(at)
}

fn temp_name(dest: &Path) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".colinux-new");
    dest.with_file_name(name)
}

/// Write `dest` as a new file (owner and group kept from the file it
/// replaces) renamed over the old one.
fn replace_file(dest: &Path, data: &[u8], mode: u32) -> Result<()> {
    let old = std::fs::symlink_metadata(dest).ok().filter(|m| m.is_file());
    let tmp = temp_name(dest);
    let _ = std::fs::remove_file(&tmp);
    std::fs::write(&tmp, data).with_context(|| format!("cannot write {}", tmp.display()))?;
    if let Some(old) = old {
        std::os::unix::fs::chown(&tmp, Some(old.uid()), Some(old.gid()))
            .with_context(|| format!("cannot set the owner of {}", tmp.display()))?;
    }
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", tmp.display()))?;
    std::fs::rename(&tmp, dest)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), dest.display()))
}

/// The hash of everything the image is made of.
fn image_inputs(key: &str, actions: &[Action], size: u64) -> String {
    let mut h = Sha256::new();
    h.update(format!("tree {key}\nsize {size}\nlabel {LABEL}\n"));
    for a in actions {
        h.update(a.describe());
    }
    hex::encode(h.finalize())
}

/// Where the record of the image at `output` is kept, and the name it
/// gives the image.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    /// `outputs/<hash of name>.txt`.
    stamp: PathBuf,
    /// The image's path relative to the cache's `rootfs/` directory
    /// (`cache:colinux-root-bookworm-i386.img`) when it is inside it, so
    /// that a cache copied or moved elsewhere (a helper's copy, a CI
    /// cache restored under another home) still knows its images; else
    /// its absolute path.
    name: String,
    /// The record as written before names were relative (keyed and
    /// named by the absolute path), read when `stamp` is absent.
    legacy: PathBuf,
}

fn record(dir: &Path, output: &Path) -> Record {
    let keyed = |name: &str| {
        let hash = hex::encode(Sha256::digest(name.as_bytes()));
        dir.join("outputs").join(format!("{}.txt", &hash[..16]))
    };
    let absolute = output.to_string_lossy().into_owned();
    let name = match output.strip_prefix(dir) {
        Ok(rel) if !rel.as_os_str().is_empty() => format!("cache:{}", rel.display()),
        _ => absolute.clone(),
    };
    Record {
        stamp: keyed(&name),
        name,
        legacy: keyed(&absolute),
    }
}

/// What is at the output path.
#[derive(Debug, PartialEq, Eq)]
enum OutputState {
    Absent,
    /// The image we wrote, unchanged since, from the same inputs.
    UpToDate,
    /// The image we wrote, unchanged since, from other inputs.
    Stale,
    /// Something else: changed since we wrote it, or never ours.
    Changed,
}

fn output_state(output: &Path, rec: &Record, inputs: &str) -> Result<OutputState> {
    let meta = match std::fs::metadata(output) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(OutputState::Absent),
        Err(e) => return Err(e).with_context(|| format!("cannot stat {}", output.display())),
    };
    let (text, name) = match std::fs::read_to_string(&rec.stamp) {
        Ok(t) => (t, rec.name.clone()),
        Err(_) => match std::fs::read_to_string(&rec.legacy) {
            Ok(t) => (t, output.to_string_lossy().into_owned()),
            Err(_) => return Ok(OutputState::Changed),
        },
    };
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(": "))
            .unwrap_or_default()
            .to_string()
    };
    if field("path") != name
        || field("size") != meta.len().to_string()
        || field("mtime") != mtime_ns(&meta).to_string()
    {
        return Ok(OutputState::Changed);
    }
    Ok(if field("inputs") == inputs {
        OutputState::UpToDate
    } else {
        OutputState::Stale
    })
}

fn mtime_ns(meta: &std::fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

fn write_stamp(rec: &Record, output: &Path, inputs: &str) -> Result<()> {
    let stamp = &rec.stamp;
    let meta =
        std::fs::metadata(output).with_context(|| format!("cannot stat {}", output.display()))?;
    if let Some(parent) = stamp.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let text = format!(
        "path: {}\ninputs: {inputs}\nsize: {}\nmtime: {}\n",
        rec.name,
        meta.len(),
        mtime_ns(&meta)
    );
    std::fs::write(stamp, text).with_context(|| format!("cannot write {}", stamp.display()))
}

fn allocated(path: &Path) -> Result<u64> {
    let m = std::fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    Ok(m.blocks() * 512)
}

/// Stage the tree (hard links), configure it, and write the image with
/// `mke2fs -d` to a temporary file renamed to `output`.
fn make_image(dir: &Path, tree: &Path, actions: &[Action], output: &Path, size: u64) -> Result<()> {
    let mut progress = Progress::start(format!("writing {}", output.display()));
    let stage = tempfile::Builder::new()
        .prefix(".stage-")
        .tempdir_in(dir)
        .with_context(|| format!("cannot create a staging directory in {}", dir.display()))?;
    let root = stage.path().join("root");
    let status = Command::new("cp")
        .arg("--archive")
        .arg("--link")
        .arg(tree)
        .arg(&root)
        .status()
        .context("cannot run cp")?;
    if !status.success() {
        bail!(
            "cp --archive --link {} {} failed ({status})",
            tree.display(),
            root.display()
        );
    }
    apply(&root, actions).context("configuring the staged tree")?;
    let needed = tree_usage(&root)?;
    // mke2fs needs room for the journal and its own metadata besides the
    // files: ask for a quarter more than the files take, and 64 MiB.
    let wanted = needed + needed / 4 + (64 << 20);
    if wanted > size {
        bail!(
            "the root file system needs about {} but the image is {}: choose --size {} or more",
            crate::size::human(needed),
            crate::size::human(size),
            crate::size::human(wanted.div_ceil(1 << 20) << 20)
        );
    }
    progress.note(&format!(
        "configured; mke2fs -d of {} of files",
        crate::size::human(needed)
    ));
    let parent = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".colinux-root-")
        .suffix(".img.tmp")
        .tempfile_in(parent)
        .with_context(|| format!("cannot create a temporary file in {}", parent.display()))?;
    let out = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-L", LABEL, "-d"])
        .arg(&root)
        .arg(tmp.path())
        .arg(format!("{}k", size / 1024))
        .env("PATH", sbin_path())
        .stdin(Stdio::null())
        .output()
        .context("cannot run mke2fs (e2fsprogs)")?;
    if !out.status.success() {
        bail!(
            "mke2fs -d {} {} failed ({}):\n{}{}",
            root.display(),
            tmp.path().display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    tmp.persist(output)
        .with_context(|| format!("cannot move the new image to {}", output.display()))?;
    progress.done(&format!(
        "ext4 image of {} ({} allocated)",
        crate::size::human(size),
        crate::size::human(allocated(output)?)
    ));
    Ok(())
}

/// Bytes the files of `root` take (each inode once, in 4 KiB blocks).
pub fn tree_usage(root: &Path) -> Result<u64> {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        total += 4096;
        for e in
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let e = e.with_context(|| format!("cannot list {}", dir.display()))?;
            let m = e
                .metadata()
                .with_context(|| format!("cannot stat {}", e.path().display()))?;
            if m.is_dir() {
                stack.push(e.path());
            } else if seen.insert((m.dev(), m.ino())) {
                total += m.len().div_ceil(4096) * 4096;
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ImageConfig {
        ImageConfig {
            suite: "bookworm".into(),
            mirror: "http://deb.debian.org/debian".into(),
        }
    }

    /// A tree with what the configuration touches, as debootstrap leaves it.
    fn fake_tree(root: &Path) {
        for d in [
            "etc/apt",
            "etc/systemd/system",
            "lib/systemd/system",
            "var/lib",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("etc/hostname"), "buildhost\n").unwrap();
        std::fs::write(root.join("etc/machine-id"), "0123456789abcdef\n").unwrap();
        std::fs::write(
            root.join("etc/shadow"),
            "root:$6$salt$hash:20000:0:99999:7:::\ndaemon:*:20000:0:99999:7:::\n",
        )
        .unwrap();
        std::fs::set_permissions(
            root.join("etc/shadow"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/host-resolv.conf", root.join("etc/resolv.conf")).unwrap();
    }

    #[test]
    fn the_key_follows_the_package_set() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let a = tree_key("bookworm", &p(&["udev", "systemd-sysv"]));
        assert_eq!(
            a,
            tree_key("bookworm", &p(&["systemd-sysv", "udev", "udev"]))
        );
        assert_ne!(
            a,
            tree_key("bookworm", &p(&["systemd-sysv", "udev", "nano"]))
        );
        assert_ne!(a, tree_key("trixie", &p(&["systemd-sysv", "udev"])));
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn options_are_checked() {
        let mirror = DEFAULT_MIRROR;
        assert!(check_options(&RootfsOptions::default(), mirror).is_ok());
        let bad = |f: &dyn Fn(&mut RootfsOptions)| {
            let mut o = RootfsOptions::default();
            f(&mut o);
            check_options(&o, mirror).is_err()
        };
        assert!(bad(&|o| o.suite = "book worm".into()));
        assert!(bad(&|o| o.suite = "../x".into()));
        assert!(bad(&|o| o.size = 10 << 20));
        assert!(bad(&|o| o.packages.push("evil,pkg".into())));
        assert!(check_options(&RootfsOptions::default(), "ftp://x").is_err());
        assert!(check_options(&RootfsOptions::default(), "http://a b").is_err());
    }

    #[test]
    fn configuration_writes_every_file_and_locks_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fake_tree(root);
        let actions = config_actions(&cfg());
        apply(root, &actions).unwrap();
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
        assert_eq!(read("etc/hostname"), "colinux\n");
        assert!(read("etc/fstab").contains("\nLABEL=colinux-root / ext4 defaults 0 1\n"));
        assert!(read(AUTOLOGIN_PATH).contains("agetty --autologin root"));
        assert!(read(AUTOLOGIN_PATH).contains("\nExecStart=\n"));
        assert!(read(COBD_RULE_PATH).contains("SYMLINK+=\"$attr{serial}\""));
        assert_eq!(read("etc/machine-id"), "");
        assert!(read("etc/apt/sources.list")
            .contains("deb http://deb.debian.org/debian-security bookworm-security main\n"));
        assert_eq!(
            read("etc/shadow"),
            "root:*:20000:0:99999:7:::\ndaemon:*:20000:0:99999:7:::\n"
        );
        let mode = |p: &str| {
            std::fs::symlink_metadata(root.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("etc/shadow"), 0o640, "shadow keeps its mode");
        assert_eq!(mode("etc/machine-id"), 0o444);
        assert_eq!(
            mode("etc/systemd/system/serial-getty@hvc0.service.d"),
            0o755
        );
        assert_eq!(
            std::fs::read_link(root.join("etc/resolv.conf")).unwrap(),
            Path::new("../run/systemd/resolve/stub-resolv.conf")
        );
        assert_eq!(
            std::fs::read_link(
                root.join("etc/systemd/system/getty.target.wants/serial-getty@hvc0.service")
            )
            .unwrap(),
            Path::new("/lib/systemd/system/serial-getty@.service")
        );
        // Nothing left behind, and a second run changes nothing.
        let leftovers: Vec<_> = walk(root)
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(".colinux-new"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        apply(root, &actions).unwrap();
        assert_eq!(read("etc/hostname"), "colinux\n");
    }

    fn walk(root: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                    stack.push(p.clone());
                }
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn a_hard_linked_stage_leaves_the_cached_tree_alone() {
        let dir = tempfile::tempdir().unwrap();
        let cached = dir.path().join("tree");
        fake_tree(&cached);
        let stage = dir.path().join("stage");
        let ok = Command::new("cp")
            .arg("-al")
            .arg(&cached)
            .arg(&stage)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        apply(&stage, &config_actions(&cfg())).unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&cached.join("etc/hostname")), "buildhost\n");
        assert!(read(&cached.join("etc/shadow")).starts_with("root:$6$"));
        assert_eq!(read(&cached.join("etc/machine-id")), "0123456789abcdef\n");
        assert!(!cached.join(AUTOLOGIN_PATH).exists());
        assert_eq!(read(&stage.join("etc/hostname")), "colinux\n");
    }

    #[test]
    fn configuration_refuses_to_write_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        fake_tree(&root);
        std::fs::remove_dir_all(root.join("etc/systemd")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("etc/systemd")).unwrap();
        let err = apply(&root, &config_actions(&cfg())).unwrap_err();
        assert!(format!("{err:#}").contains("is a symbolic link"), "{err:#}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert!(inside(&root, "../x").is_err());
        assert!(inside(&root, "/etc/x").is_err());
    }

    #[test]
    fn lock_root_sets_the_password_field_only() {
        assert_eq!(
            lock_root("root:!:1:0:99999:7:::\nuser:$y$x:1::::::\n").as_deref(),
            Some("root:*:1:0:99999:7:::\nuser:$y$x:1::::::\n")
        );
        assert_eq!(lock_root("rootx:a:1\n"), None);
    }

    #[test]
    fn the_output_is_replaced_only_when_it_is_ours_and_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("root.img");
        let rec = record(dir.path(), &out);
        assert_eq!(
            output_state(&out, &rec, "in1").unwrap(),
            OutputState::Absent
        );
        std::fs::write(&out, "image").unwrap();
        assert_eq!(
            output_state(&out, &rec, "in1").unwrap(),
            OutputState::Changed
        );
        write_stamp(&rec, &out, "in1").unwrap();
        assert_eq!(
            output_state(&out, &rec, "in1").unwrap(),
            OutputState::UpToDate
        );
        assert_eq!(output_state(&out, &rec, "in2").unwrap(), OutputState::Stale);
        // A guest writes to it.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&out, "image, changed").unwrap();
        assert_eq!(
            output_state(&out, &rec, "in1").unwrap(),
            OutputState::Changed
        );
    }

    #[test]
    fn a_cache_moved_elsewhere_still_knows_its_image() {
        let top = tempfile::tempdir().unwrap();
        let old = top.path().join("old-cache");
        std::fs::create_dir(&old).unwrap();
        let out = old.join("root.img");
        std::fs::write(&out, "image").unwrap();
        write_stamp(&record(&old, &out), &out, "in1").unwrap();
        // Moved (a copy with `cp -a` keeps the time the same way).
        let new = top.path().join("new-cache");
        std::fs::rename(&old, &new).unwrap();
        let moved = new.join("root.img");
        let rec = record(&new, &moved);
        assert_eq!(rec.name, "cache:root.img");
        assert_eq!(
            output_state(&moved, &rec, "in1").unwrap(),
            OutputState::UpToDate
        );
        // An image outside the cache is known by its absolute path.
        let outside = top.path().join("elsewhere.img");
        std::fs::write(&outside, "image").unwrap();
        let rec = record(&new, &outside);
        assert_eq!(rec.name, outside.to_string_lossy());
        write_stamp(&rec, &outside, "in1").unwrap();
        let moved_out = top.path().join("moved.img");
        std::fs::rename(&outside, &moved_out).unwrap();
        assert_eq!(
            output_state(&moved_out, &record(&new, &moved_out), "in1").unwrap(),
            OutputState::Changed,
            "another file at another path is not ours"
        );
    }

    #[test]
    fn a_record_written_with_the_absolute_path_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("root.img");
        std::fs::write(&out, "image").unwrap();
        let rec = record(dir.path(), &out);
        // The form before names were relative.
        let legacy = Record {
            stamp: rec.legacy.clone(),
            name: out.to_string_lossy().into_owned(),
            legacy: rec.legacy.clone(),
        };
        write_stamp(&legacy, &out, "in1").unwrap();
        assert_ne!(rec.stamp, rec.legacy);
        assert_eq!(
            output_state(&out, &rec, "in1").unwrap(),
            OutputState::UpToDate
        );
    }

    #[test]
    fn the_inputs_follow_size_and_configuration() {
        let a = config_actions(&cfg());
        let mut other = cfg();
        other.mirror = "http://mirror.example/debian".into();
        let b = config_actions(&other);
        assert_ne!(
            image_inputs("k", &a, 1 << 30),
            image_inputs("k", &b, 1 << 30)
        );
        assert_ne!(
            image_inputs("k", &a, 1 << 30),
            image_inputs("k", &a, 2 << 30)
        );
        assert_ne!(
            image_inputs("k", &a, 1 << 30),
            image_inputs("j", &a, 1 << 30)
        );
        assert_eq!(
            image_inputs("k", &a, 1 << 30),
            image_inputs("k", &a, 1 << 30)
        );
    }

    #[test]
    fn the_tree_is_cleaned_of_archives_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        for d in [
            "var/cache/apt/archives/partial",
            "var/lib/apt/lists/partial",
        ] {
            std::fs::create_dir_all(t.join(d)).unwrap();
        }
        std::fs::write(t.join("var/cache/apt/archives/a_1_i386.deb"), [0u8; 100]).unwrap();
        std::fs::write(t.join("var/cache/apt/archives/lock"), "").unwrap();
        std::fs::write(t.join("var/lib/apt/lists/x_Packages"), [0u8; 50]).unwrap();
        assert_eq!(clean_tree(t).unwrap(), 150);
        assert!(t.join("var/cache/apt/archives/lock").exists());
        assert!(t.join("var/lib/apt/lists/partial").is_dir());
        assert!(!t.join("var/lib/apt/lists/x_Packages").exists());
    }
}
