//! The guest's initramfs: a newc cpio archive for the i386 Linux guest
//! (`cargo xtask build-initrd`).
//!
//! It holds Debian's static i386 busybox (`busybox-static:i386`, Debian 12),
//! a symlink per applet the guest session uses ([`APPLETS`]; `/init` installs
//! the rest with `busybox --install -s`), the usual directories, the device
//! nodes `/dev/console` (5,1) and `/dev/null` (1,3), and an `/init` script
//! ([`init_script`]) that mounts proc, sysfs and devtmpfs, prints
//! [`INIT_MARKER`], its `/proc/uptime` and `uname -a`, then hands PID 1 to
//! busybox init, which
//! keeps a login shell on the console ([`INITTAB`]; busybox's `poweroff`
//! signals PID 1, so a shell as PID 1 could not power off). When asked
//! ([`InitrdOptions::test_programs`]) it also holds the test programs of
//! `tests/guest-bench/` as `/bin/<name>` ([`crate::programs`], built with
//! gcc for every call).
//!
//! Busybox comes from Debian's archive through a private apt configuration
//! in the cache ([`colinux_buildenv::apt::PrivateApt::binary`], i386 only),
//! so nothing under `/etc` or `/var/lib` changes and no root is needed. apt
//! verifies the package against the archive's signed
//! indexes; we check its sha256 against the index entry again and record
//! it, extract `bin/busybox` in-process (ar + tar.xz, or `dpkg-deb` for
//! other compressions) and require an ELF32 i386 static executable.
//!
//! Cache layout (`<cache>/guest-initrd/`):
//! - `apt/`: the private apt state (sources, lists, downloaded archives);
//! - `busybox/busybox` and `busybox/source.txt` (package, version, sha256s);
//!   reused as long as the binary matches its recorded sha256;
//! - `initrd.cpio` (with the test programs: `initrd-programs.cpio`) and
//!   `<name>.inputs` (the sha256 of everything that went into it): rebuilt
//!   when busybox, `/init`, the test programs or the layout change.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::initramfs::BusyboxRoot;
use colinux_buildenv::apt::PrivateApt;
use colinux_buildenv::{deb, paths, sysdeps};

/// The Debian package busybox comes from.
pub const BUSYBOX_PACKAGE: &str = "busybox-static";
/// Its architecture (the guest's).
pub const ARCH: &str = "i386";
/// The line `/init` prints once the file systems are mounted, before
/// `uname -a` and the shell.
pub const INIT_MARKER: &str = "colinux-guest: init started";
/// `/init` prints this, then the guest's `/proc/uptime` read just before
/// [`INIT_MARKER`], on the line after it.
pub const INIT_UPTIME_PREFIX: &str = "colinux-guest: uptime at init: ";

/// Applets linked explicitly in `/bin` (the guest sessions and tests use
/// them); `/init` adds links for every other applet with
/// `busybox --install -s`.
pub const APPLETS: &[&str] = &[
    "sh",
    "ash",
    "mount",
    "umount",
    "uname",
    "cat",
    "echo",
    "printf",
    "sleep",
    "usleep",
    "poweroff",
    "reboot",
    "halt",
    "ls",
    "ps",
    "dmesg",
    "grep",
    "date",
    "seq",
    "true",
    "false",
    "test",
    "[",
    "head",
    "tail",
    "wc",
    "cut",
    "sed",
    "awk",
    "sort",
    "uniq",
    "tr",
    "mkdir",
    "rmdir",
    "rm",
    "cp",
    "mv",
    "ln",
    "chmod",
    "mknod",
    "hostname",
    "setsid",
    "cttyhack",
    "stty",
    "tty",
    "free",
    "uptime",
    "sync",
    "kill",
    "id",
    "env",
    "sysctl",
    "dd",
    "hexdump",
    "md5sum",
    "sha256sum",
    "find",
    "xargs",
    "less",
    "more",
    "vi",
    "top",
    "clear",
    "watch",
    "time",
];

/// The directories of the archive (besides the parents of its files).
const DIRS: &[(&str, u32)] = &[
    ("/bin", 0o755),
    ("/sbin", 0o755),
    ("/usr/bin", 0o755),
    ("/usr/sbin", 0o755),
    ("/dev", 0o755),
    ("/proc", 0o555),
    ("/sys", 0o555),
    ("/tmp", 0o1777),
    ("/root", 0o700),
    ("/etc", 0o755),
    ("/run", 0o755),
    ("/mnt", 0o755),
];

/// Bump when the archive's layout changes in a way the inputs hash does not
/// see (it sees busybox, `/init` and [`APPLETS`]).
const LAYOUT_VERSION: u32 = 3;

/// The cached i386 busybox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busybox {
    /// The extracted `bin/busybox`.
    pub path: PathBuf,
    /// The Debian version of [`BUSYBOX_PACKAGE`] it came from.
    pub version: String,
    /// The sha256 of the `.deb` (as in the archive's signed `Packages`).
    pub deb_sha256: String,
    /// The sha256 of the binary.
    pub sha256: String,
}

/// What the guest initramfs holds besides busybox and `/init`.
#[derive(Debug, Clone, Default)]
pub struct InitrdOptions {
    /// The test programs of [`crate::programs`] as `/bin/<name>`.
    pub test_programs: bool,
}

/// The guest initramfs, built (or found up to date) in the cache; returns
/// its path under `<cache>/guest-initrd/`. Downloads busybox the first time.
pub fn build(opts: &InitrdOptions) -> Result<PathBuf> {
    let dir = cache_dir()?;
    let _lock = paths::lock("guest-initrd")?;
    let bb = busybox_in(&dir, false)?;
    let data = std::fs::read(&bb.path)
        .with_context(|| format!("cannot read the cached busybox {}", bb.path.display()))?;
    let init = init_script();
    let (name, extra) = if opts.test_programs {
        ("initrd-programs.cpio", test_programs()?)
    } else {
        ("initrd.cpio", Vec::new())
    };
    let inputs = inputs_hash(&data, &init, &extra);
    let out = dir.join(name);
    let stamp = dir.join(format!("{name}.inputs"));
    if out.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(inputs.as_str()) {
        tracing::debug!("guest initramfs up to date: {}", out.display());
        return Ok(out);
    }
    tracing::info!(
        "writing the guest initramfs {} (busybox {} {})",
        out.display(),
        bb.version,
        ARCH
    );
    let tmp = dir.join(format!("{name}.tmp"));
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    write_archive(std::io::BufWriter::new(file), &data, &init, &extra)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &out)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), out.display()))?;
    std::fs::write(&stamp, &inputs).with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(out)
}

/// The test programs as `(path in the archive, contents)`.
fn test_programs() -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for name in crate::programs::GUEST_INITRD_PROGRAMS {
        let path = crate::programs::build_guest_program(name)?;
        let data =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        out.push((format!("/bin/{name}"), data));
    }
    Ok(out)
}

/// The cached i386 busybox, downloaded from Debian's archive when absent
/// (or when `refresh` is set).
pub fn busybox(refresh: bool) -> Result<Busybox> {
    let dir = cache_dir()?;
    let _lock = paths::lock("guest-initrd")?;
    busybox_in(&dir, refresh)
}

/// `<cache>/guest-initrd/`.
pub fn cache_dir() -> Result<PathBuf> {
    let dir = paths::cache_dir()?.join("guest-initrd");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

fn busybox_in(dir: &Path, refresh: bool) -> Result<Busybox> {
    let bb_dir = dir.join("busybox");
    if !refresh {
        match cached_busybox(&bb_dir) {
            Ok(Some(bb)) => {
                tracing::debug!("busybox {} ({ARCH}) from the cache", bb.version);
                return Ok(bb);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("the cached busybox is not usable, downloading it again: {e:#}")
            }
        }
    }
    sysdeps::ensure("downloading the guest's busybox", sysdeps::GUEST_INITRD)?;
    let apt = PrivateApt::binary(&dir.join("apt"), ARCH)?;
    let (version, expected_sha) = apt.candidate(BUSYBOX_PACKAGE)?;
    let work = tempfile::Builder::new()
        .prefix(".busybox-")
        .tempdir_in(dir)
        .with_context(|| format!("cannot create a temporary directory in {}", dir.display()))?;
    let deb = apt.download(BUSYBOX_PACKAGE, &version, work.path())?;
    let deb_data = std::fs::read(&deb).with_context(|| format!("cannot read {}", deb.display()))?;
    let deb_sha = hex::encode(Sha256::digest(&deb_data));
    if !expected_sha.is_empty() && deb_sha != expected_sha {
        bail!(
            "{}: sha256 {deb_sha} differs from the archive index's {expected_sha} \
             for {BUSYBOX_PACKAGE}:{ARCH} {version}",
            deb.display()
        );
    }
    tracing::info!(
        "{BUSYBOX_PACKAGE}:{ARCH} {version}: {} (sha256 {deb_sha})",
        deb.display()
    );
    let binary = deb::extract_from_deb(&deb_data, &deb, "bin/busybox")?;
    crate::elf::check_i386_static(&binary)
        .with_context(|| format!("bin/busybox from {}", deb.display()))?;
    let bin_sha = hex::encode(Sha256::digest(&binary));
    let out = work.path().join("busybox-dir");
    std::fs::create_dir(&out).with_context(|| format!("cannot create {}", out.display()))?;
    write_executable(&out.join("busybox"), &binary)?;
    std::fs::write(
        out.join("source.txt"),
        source_record(&version, &deb, &deb_sha, &bin_sha),
    )
    .with_context(|| format!("cannot write {}", out.join("source.txt").display()))?;
    if bb_dir.exists() {
        std::fs::remove_dir_all(&bb_dir)
            .with_context(|| format!("cannot remove the old {}", bb_dir.display()))?;
    }
    std::fs::rename(&out, &bb_dir)
        .with_context(|| format!("cannot move busybox into {}", bb_dir.display()))?;
    sanity_run(&bb_dir.join("busybox"));
    Ok(Busybox {
        path: bb_dir.join("busybox"),
        version,
        deb_sha256: deb_sha,
        sha256: bin_sha,
    })
}

fn source_record(version: &str, deb: &Path, deb_sha: &str, bin_sha: &str) -> String {
    format!(
        "package: {BUSYBOX_PACKAGE}\narchitecture: {ARCH}\nversion: {version}\ndeb: {}\n\
         deb-sha256: {deb_sha}\nbusybox-sha256: {bin_sha}\n",
        deb.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    )
}

/// The busybox in `bb_dir` if it is complete and matches its record.
fn cached_busybox(bb_dir: &Path) -> Result<Option<Busybox>> {
    let path = bb_dir.join("busybox");
    let record = bb_dir.join("source.txt");
    if !path.is_file() || !record.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&record)
        .with_context(|| format!("cannot read {}", record.display()))?;
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|v| v.strip_prefix(':')))
            .map(|v| v.trim().to_string())
            .with_context(|| format!("{}: no {k:?} line", record.display()))
    };
    let (version, deb_sha, bin_sha) = (
        field("version")?,
        field("deb-sha256")?,
        field("busybox-sha256")?,
    );
    let data = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let actual = hex::encode(Sha256::digest(&data));
    if actual != bin_sha {
        bail!(
            "{}: sha256 {actual} but {} records {bin_sha}",
            path.display(),
            record.display()
        );
    }
    crate::elf::check_i386_static(&data).with_context(|| path.display().to_string())?;
    Ok(Some(Busybox {
        path,
        version,
        deb_sha256: deb_sha,
        sha256: bin_sha,
    }))
}

fn write_executable(path: &Path, data: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, data).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))
}

/// Run the i386 busybox here if this machine can (an x86_64 kernel with
/// ia32 emulation): only logged, never an error.
fn sanity_run(path: &Path) {
    match Command::new(path).args(["uname", "-m"]).output() {
        Ok(o) if o.status.success() => tracing::info!(
            "sanity check: {} uname -m runs here: {}",
            path.display(),
            String::from_utf8_lossy(&o.stdout).trim()
        ),
        Ok(o) => tracing::info!(
            "sanity check: {} uname -m failed here ({}); not an error",
            path.display(),
            o.status
        ),
        Err(e) => tracing::info!(
            "sanity check: cannot run the i386 busybox on this machine ({e}); not an error"
        ),
    }
}

/// busybox init's table: a login shell on the console (through `cttyhack`,
/// which makes the console's real tty the controlling terminal), started
/// again when it exits; `sync` before power-off.
pub const INITTAB: &str = "\
::respawn:/bin/cttyhack /bin/sh -l
::ctrlaltdel:/bin/reboot
::shutdown:/bin/sync
";

/// Read by the login shell.
const PROFILE: &str = "\
export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root TERM=vt100
cd /root
";

/// The guest's `/init`: it mounts the pseudo file systems, prints
/// [`INIT_MARKER`] and `uname -a`, then hands PID 1 to busybox init (so that
/// `poweroff`, which signals PID 1, works) which runs a shell on the
/// console ([`INITTAB`]); without busybox init, `exec setsid cttyhack sh`.
pub fn init_script() -> String {
    format!(
        r#"#!/bin/sh
# colinux guest init (generated by colinux_testrig::guest_initrd; do not edit)
export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root TERM=vt100
mount -t proc proc /proc 2>/dev/null || echo "colinux-guest: cannot mount /proc"
mount -t sysfs sysfs /sys 2>/dev/null || echo "colinux-guest: cannot mount /sys"
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp 2>/dev/null
/bin/busybox --install -s 2>/dev/null
hostname colinux 2>/dev/null
cd /root
read -r colinux_uptime _ < /proc/uptime 2>/dev/null || colinux_uptime=unknown
echo "{INIT_MARKER}"
echo "{INIT_UPTIME_PREFIX}$colinux_uptime"
uname -a
# busybox's poweroff, reboot and halt ask PID 1 with a signal, as busybox
# init understands: it becomes PID 1 and keeps a shell on the console
# (/etc/inittab). Without init, a shell on the console is all there is.
if /bin/busybox --list | grep -qx init; then
    exec /bin/busybox init
fi
if /bin/busybox --list | grep -qx cttyhack && /bin/busybox --list | grep -qx setsid; then
    exec setsid cttyhack sh -l
fi
exec sh -l
"#
    )
}

/// Write the guest's archive ([`crate::initramfs::BusyboxRoot`]): the
/// directories [`DIRS`], busybox with a link per applet of [`APPLETS`], the
/// host name, [`INITTAB`], a profile, `/init` and `extra` (executables:
/// `(path in the archive, contents)`).
pub fn write_archive<W: Write>(
    out: W,
    busybox: &[u8],
    init: &str,
    extra: &[(String, Vec<u8>)],
) -> Result<W> {
    let mut files: Vec<(String, u32, &[u8])> = vec![
        ("/etc/hostname".into(), 0o644, b"colinux\n".as_slice()),
        ("/etc/inittab".into(), 0o644, INITTAB.as_bytes()),
        ("/etc/profile".into(), 0o644, PROFILE.as_bytes()),
    ];
    files.extend(extra.iter().map(|(p, d)| (p.clone(), 0o755, d.as_slice())));
    let root = BusyboxRoot {
        dirs: DIRS,
        busybox,
        links: APPLETS
            .iter()
            .map(|a| (format!("/bin/{a}"), "busybox".to_string()))
            .collect(),
        init,
        files,
    };
    Ok(root.write(out)?)
}

fn inputs_hash(busybox: &[u8], init: &str, extra: &[(String, Vec<u8>)]) -> String {
    let mut h = Sha256::new();
    h.update(format!("layout {LAYOUT_VERSION}\n"));
    h.update(Sha256::digest(busybox));
    h.update(init.as_bytes());
    for a in APPLETS {
        h.update(a.as_bytes());
        h.update(b"\n");
    }
    for (d, m) in DIRS {
        h.update(format!("{d} {m:o}\n"));
    }
    h.update(INITTAB.as_bytes());
    h.update(PROFILE.as_bytes());
    for (path, data) in extra {
        h.update(format!("{path} {}\n", data.len()));
        h.update(Sha256::digest(data));
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpio::list_newc;

    #[test]
    fn archive_lists_busybox_links_devices_and_init() {
        let fake = crate::elf::tests::elf(1, 3, 2, 1);
        let init = init_script();
        let extra = vec![("/bin/cpuloop".to_string(), fake.clone())];
        let data = write_archive(Vec::new(), &fake, &init, &extra).unwrap();
        let entries = list_newc(&data).unwrap();
        let get = |n: &str| {
            entries
                .iter()
                .find(|e| e.name == n)
                .unwrap_or_else(|| panic!("no {n} in {entries:#?}"))
        };
        assert_eq!(get("bin/busybox").size as usize, fake.len());
        assert_eq!(get("bin/busybox").mode, 0o100755);
        assert_eq!(get("dev/console").mode, 0o020600);
        assert_eq!(get("dev/console").rdev, (5, 1));
        assert_eq!(get("dev/null").rdev, (1, 3));
        assert_eq!(get("tmp").mode, 0o041777);
        for d in ["proc", "sys", "root", "etc", "dev"] {
            assert_eq!(get(d).mode & 0o170000, 0o040000, "{d}");
        }
        for a in [
            "sh", "mount", "uname", "cat", "poweroff", "cttyhack", "setsid", "seq",
        ] {
            assert_eq!(get(&format!("bin/{a}")).link.as_deref(), Some("busybox"));
        }
        assert_eq!(get("init").mode, 0o100755);
        assert_eq!(get("bin/cpuloop").mode, 0o100755);
        assert_eq!(get("bin/cpuloop").size as usize, fake.len());
        assert_ne!(
            inputs_hash(&fake, &init, &[]),
            inputs_hash(&fake, &init, &extra),
            "the benchmark programs are inputs of the cached archive"
        );
        assert_eq!(get("etc/inittab").size as usize, INITTAB.len());
        assert_eq!(get("init").size as usize, init.len());
        // Each path once; parents before children.
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        let bin = names.iter().position(|n| *n == "bin").unwrap();
        let bb = names.iter().position(|n| *n == "bin/busybox").unwrap();
        assert!(bin < bb);
        assert!(get("dev/console")
            .render()
            .starts_with("c 0600      5, 1 /dev/console"));
        assert!(list_newc(&data[..data.len() - 200]).is_err());
    }

    #[test]
    fn init_mounts_prints_the_marker_and_starts_a_shell() {
        let s = init_script();
        assert!(s.starts_with("#!/bin/sh\n"));
        for needle in [
            "mount -t proc proc /proc",
            "mount -t sysfs sysfs /sys",
            "mount -t devtmpfs devtmpfs /dev",
            "echo \"colinux-guest: init started\"",
            "uname -a",
            "exec /bin/busybox init",
            "exec setsid cttyhack sh",
            "exec sh",
        ] {
            assert!(s.contains(needle), "/init lacks {needle:?}:\n{s}");
        }
        assert!(s.find(INIT_MARKER) < s.find("uname -a"));
        assert!(s.contains(&format!(
            "echo \"{INIT_MARKER}\"\necho \"{INIT_UPTIME_PREFIX}$colinux_uptime\"\n"
        )));
        assert!(s.find("uname -a") < s.find("exec /bin/busybox init"));
        assert!(INITTAB.contains("::respawn:/bin/cttyhack /bin/sh -l\n"));
    }
}
