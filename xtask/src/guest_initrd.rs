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
//! signals PID 1, so a shell as PID 1 could not power off). It also holds
//! the benchmark programs of `tests/guest-bench/` as `/bin/<name>`
//! ([`crate::bench::build_guest_bench`], built with gcc for every call).
//!
//! Busybox comes from Debian's archive through a *private* apt configuration
//! in the cache (like [`crate::debian`], but for binary packages of
//! architecture i386 only): the system's `deb` entries, our own lists and
//! an empty dpkg status, so nothing under `/etc` or `/var/lib` changes and
//! no root is needed. apt verifies the package against the archive's signed
//! indexes; we check its sha256 against the index entry again and record
//! it, extract `bin/busybox` in-process (ar + tar.xz, or `dpkg-deb` for
//! other compressions) and require an ELF32 i386 static executable.
//!
//! Cache layout (`<cache>/guest-initrd/`):
//! - `apt/`: the private apt state (sources, lists, downloaded archives);
//! - `busybox/busybox` and `busybox/source.txt` (package, version, sha256s);
//!   reused as long as the binary matches its recorded sha256;
//! - `initrd.cpio` and `initrd.cpio.inputs` (the sha256 of everything that
//!   went into it): rebuilt when busybox, `/init`, the benchmark programs
//!   or the layout change.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::testhost::cpio;
use crate::{debian, paths, sysdeps};

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
const LAYOUT_VERSION: u32 = 2;

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

/// The guest initramfs, built (or found up to date) in the cache; returns
/// `<cache>/guest-initrd/initrd.cpio`. Downloads busybox the first time.
pub fn build() -> Result<PathBuf> {
    let dir = cache_dir()?;
    let _lock = paths::lock("guest-initrd")?;
    let bb = busybox_in(&dir, false)?;
    let data = std::fs::read(&bb.path)
        .with_context(|| format!("cannot read the cached busybox {}", bb.path.display()))?;
    let init = init_script();
    let extra = bench_programs()?;
    let inputs = inputs_hash(&data, &init, &extra);
    let out = dir.join("initrd.cpio");
    let stamp = dir.join("initrd.cpio.inputs");
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
    let tmp = dir.join("initrd.cpio.tmp");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    write_archive(std::io::BufWriter::new(file), &data, &init, &extra)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &out)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), out.display()))?;
    std::fs::write(&stamp, &inputs).with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(out)
}

/// The benchmark programs as `(path in the archive, contents)`.
fn bench_programs() -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for (name, path) in crate::bench::build_guest_bench()? {
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
    let apt = BinaryApt::new(&dir.join("apt"))?;
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
    let binary = extract_from_deb(&deb_data, &deb, "bin/busybox")?;
    check_elf_i386_static(&binary)
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
    check_elf_i386_static(&data).with_context(|| path.display().to_string())?;
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

/// A private apt setup for binary packages of architecture [`ARCH`].
#[derive(Debug)]
struct BinaryApt {
    dir: PathBuf,
}

impl BinaryApt {
    /// Create (or reuse) the state in `dir`; refresh the lists when the
    /// sources changed, when they are older than a day or absent. A failed
    /// refresh is a warning when old lists exist (a mirror in sync may fail
    /// one index) and the later look-up decides.
    fn new(dir: &Path) -> Result<BinaryApt> {
        if sysdeps::which("apt-get").is_none() {
            bail!("apt-get is not installed (the guest's busybox comes from Debian's archive)");
        }
        let entries = debian::system_entries()?;
        if entries.is_empty() {
            bail!(
                "no Debian archive found in /etc/apt/sources.list{{,.d}}: \
                 cannot download {BUSYBOX_PACKAGE}:{ARCH}"
            );
        }
        for d in ["lists/partial", "cache/archives/partial"] {
            std::fs::create_dir_all(dir.join(d))
                .with_context(|| format!("cannot create {}", dir.join(d).display()))?;
        }
        let status = dir.join("status");
        if !status.exists() {
            std::fs::write(&status, b"")
                .with_context(|| format!("cannot write {}", status.display()))?;
        }
        let list = dir.join("sources.list");
        let text = deb_list(&entries);
        let changed = std::fs::read_to_string(&list).ok().as_deref() != Some(text.as_str());
        std::fs::write(&list, &text).with_context(|| format!("cannot write {}", list.display()))?;
        let apt = BinaryApt {
            dir: dir.to_path_buf(),
        };
        let stamp = dir.join("lists/.updated");
        let fresh = std::fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() < 24 * 3600);
        if changed || !fresh {
            match apt.update() {
                Ok(()) => {}
                Err(e) if !changed && stamp.exists() => {
                    tracing::warn!("{e:#}; going on with the previous lists")
                }
                Err(e) => tracing::warn!("{e:#}; trying the indexes that did download"),
            }
            std::fs::write(&stamp, b"")
                .with_context(|| format!("cannot write {}", stamp.display()))?;
        }
        Ok(apt)
    }

    fn options(&self) -> Vec<String> {
        let d = self.dir.display();
        let mut o = vec![
            format!("-oDir::Etc::SourceList={d}/sources.list"),
            "-oDir::Etc::SourceParts=/dev/null".into(),
            format!("-oDir::State::Lists={d}/lists"),
            format!("-oDir::State::status={d}/status"),
            format!("-oDir::Cache={d}/cache"),
            format!("-oAPT::Architecture={ARCH}"),
            format!("-oAPT::Architectures::={ARCH}"),
            "-oAcquire::Languages=none".into(),
            "-oDebug::NoLocking=1".into(),
            "-oAPT::Sandbox::User=root".into(),
        ];
        for t in [
            "DEP-11",
            "DEP-11-icons",
            "DEP-11-icons-small",
            "Contents-deb",
        ] {
            o.push(format!(
                "-oAcquire::IndexTargets::deb::{t}::DefaultEnabled=false"
            ));
        }
        o
    }

    fn apt(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.args(self.options()).stdin(Stdio::null());
        c
    }

    fn update(&self) -> Result<()> {
        tracing::info!(
            "refreshing Debian's {ARCH} package lists (private apt state in {})",
            self.dir.display()
        );
        let out = self
            .apt("apt-get")
            .args(["-q", "update"])
            .output()
            .context("cannot run apt-get update")?;
        if !out.status.success() {
            bail!(
                "apt-get update ({ARCH} lists) failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// The candidate version of `package:ARCH` and the sha256 its index
    /// entry gives.
    fn candidate(&self, package: &str) -> Result<(String, String)> {
        let spec = format!("{package}:{ARCH}");
        let out = self
            .apt("apt-cache")
            .args(["policy", &spec])
            .output()
            .context("cannot run apt-cache policy")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let version = parse_candidate(&text).with_context(|| {
            format!(
                "Debian's {ARCH} package lists have no {spec} (apt-cache policy said: {}{})",
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
        let out = self
            .apt("apt-cache")
            .args(["show", &format!("{spec}={version}")])
            .output()
            .context("cannot run apt-cache show")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let sha = parse_field(&text, "SHA256").unwrap_or_default();
        if sha.is_empty() {
            tracing::warn!("the index entry of {spec} {version} has no SHA256 field");
        }
        Ok((version, sha))
    }

    /// `apt-get download package:ARCH=version` into `dest`; the `.deb`.
    fn download(&self, package: &str, version: &str, dest: &Path) -> Result<PathBuf> {
        tracing::info!("downloading {package}:{ARCH} {version} from Debian's archive");
        let out = self
            .apt("apt-get")
            .args(["-q", "download", &format!("{package}:{ARCH}={version}")])
            .current_dir(dest)
            .output()
            .context("cannot run apt-get download")?;
        if !out.status.success() {
            bail!(
                "apt-get download {package}:{ARCH}={version} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let prefix = format!("{package}_");
        let suffix = format!("_{ARCH}.deb");
        for entry in
            std::fs::read_dir(dest).with_context(|| format!("cannot read {}", dest.display()))?
        {
            let entry = entry.with_context(|| format!("cannot read {}", dest.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && name.ends_with(&suffix) {
                return Ok(entry.path());
            }
        }
        bail!(
            "apt-get download {package}:{ARCH}={version} succeeded but left no {prefix}*{suffix} in {}",
            dest.display()
        )
    }
}

/// The system's `deb` entries as a sources list of our own.
fn deb_list(entries: &[debian::AptEntry]) -> String {
    let mut s = String::from("# generated by cargo xtask from the system's deb entries\n");
    for e in entries {
        let opts = e
            .signed_by
            .as_ref()
            .map(|k| format!("[signed-by={k}] "))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "deb {opts}{} {} {}",
            e.uri,
            e.suite,
            e.components.join(" ")
        );
    }
    s
}

/// `Candidate: V` from `apt-cache policy` output (`(none)` is none).
fn parse_candidate(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .find(|v| !v.is_empty() && *v != "(none)")
        .map(str::to_string)
}

/// The first `Field: value` of an `apt-cache show` stanza.
fn parse_field(text: &str, field: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(field).and_then(|v| v.strip_prefix(':')))
        .map(|v| v.trim().to_string())
        .next()
}

/// The data member `member` (e.g. `bin/busybox`) of a Debian package:
/// in-process for `data.tar.xz` and `data.tar`, through `dpkg-deb
/// --fsys-tarfile` for other compressions. `deb` names the file in errors.
pub fn extract_from_deb(deb_data: &[u8], deb: &Path, member: &str) -> Result<Vec<u8>> {
    let members =
        ar_members(deb_data).with_context(|| format!("{}: not a Debian package", deb.display()))?;
    let (name, data) = members
        .iter()
        .find(|(n, _)| n.starts_with("data.tar"))
        .with_context(|| format!("{}: no data.tar member", deb.display()))?;
    let found = match name.as_str() {
        "data.tar.xz" => tar_member(xz2::read::XzDecoder::new(*data), member),
        "data.tar" => tar_member(*data, member),
        other => {
            tracing::debug!("{}: {other}: extracting with dpkg-deb", deb.display());
            let out = Command::new("dpkg-deb")
                .arg("--fsys-tarfile")
                .arg(deb)
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("cannot run dpkg-deb for {} ({other})", deb.display()))?;
            if !out.status.success() {
                bail!(
                    "dpkg-deb --fsys-tarfile {} failed: {}",
                    deb.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            tar_member(out.stdout.as_slice(), member)
        }
    }
    .with_context(|| format!("cannot read {name} in {}", deb.display()))?;
    found.with_context(|| format!("{} has no {member}", deb.display()))
}

/// The members of an `ar` archive (Debian packages are `ar` archives).
fn ar_members(data: &[u8]) -> Result<Vec<(String, &[u8])>> {
    let mut rest = data
        .strip_prefix(b"!<arch>\n".as_slice())
        .context("no ar magic")?;
    let mut out = Vec::new();
    while rest.len() >= 60 {
        let (header, after) = rest.split_at(60);
        let name = String::from_utf8_lossy(&header[..16])
            .trim_end()
            .trim_end_matches('/')
            .to_string();
        let size: usize = std::str::from_utf8(&header[48..58])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .with_context(|| format!("ar member {name:?}: bad size field"))?;
        let body = after
            .get(..size)
            .with_context(|| format!("ar member {name:?}: truncated ({size} bytes announced)"))?;
        out.push((name, body));
        // Members are 2-byte aligned.
        rest = after.get(size + size % 2..).unwrap_or_default();
    }
    Ok(out)
}

fn tar_member(reader: impl Read, member: &str) -> Result<Option<Vec<u8>>> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        if path.trim_start_matches("./") == member {
            if entry.header().entry_type() != tar::EntryType::Regular {
                bail!("{member} is not a regular file in the package");
            }
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            return Ok(Some(data));
        }
    }
    Ok(None)
}

/// Require an ELF32 little-endian i386 executable without a program
/// interpreter or dynamic section (static). The error says what it is
/// instead.
pub fn check_elf_i386_static(data: &[u8]) -> Result<()> {
    if data.get(..4) != Some(b"\x7fELF".as_slice()) {
        bail!(
            "not an ELF file (it starts with {:02x?})",
            &data[..data.len().min(4)]
        );
    }
    let class = data.get(4).copied().unwrap_or(0);
    let endian = data.get(5).copied().unwrap_or(0);
    if class != 1 {
        bail!(
            "not a 32-bit ELF (class {class}: {})",
            if class == 2 { "64-bit" } else { "unknown" }
        );
    }
    if endian != 1 {
        bail!("not a little-endian ELF (data encoding {endian})");
    }
    let u16_at = |o: usize| -> Result<u16> {
        data.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .with_context(|| format!("truncated ELF header (offset {o})"))
    };
    let u32_at = |o: usize| -> Result<u32> {
        data.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .with_context(|| format!("truncated ELF (offset {o})"))
    };
    let (e_type, machine) = (u16_at(16)?, u16_at(18)?);
    if machine != 3 {
        bail!(
            "not an i386 ELF (e_machine {machine}{})",
            match machine {
                62 => ": x86_64",
                40 => ": ARM",
                183 => ": AArch64",
                _ => "",
            }
        );
    }
    if e_type != 2 {
        bail!(
            "not an executable (e_type {e_type}{})",
            match e_type {
                1 => ": relocatable object",
                3 => ": shared object or PIE",
                4 => ": core dump",
                _ => "",
            }
        );
    }
    let phoff = u32_at(28)? as usize;
    let phentsize = u16_at(42)? as usize;
    let phnum = u16_at(44)? as usize;
    if phnum == 0 || phentsize < 32 {
        bail!("no program headers ({phnum} of size {phentsize})");
    }
    for i in 0..phnum {
        let p_type = u32_at(phoff + i * phentsize)?;
        match p_type {
            3 => bail!("dynamically linked (it has a PT_INTERP program header)"),
            2 => bail!("dynamically linked (it has a PT_DYNAMIC program header)"),
            _ => {}
        }
    }
    Ok(())
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
# colinux guest init (generated by xtask::guest_initrd; do not edit)
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

/// Write the whole archive: directories, device nodes, busybox and its
/// applet links, `/etc` (passwd, group, hostname, inittab, profile), `/init`,
/// and `extra` executables (`(absolute path, contents)`, mode 0755).
pub fn write_archive<W: Write>(
    out: W,
    busybox: &[u8],
    init: &str,
    extra: &[(String, Vec<u8>)],
) -> Result<W> {
    let mut w = cpio::Writer::new(out);
    for (d, mode) in DIRS {
        w.dir(d, *mode)?;
    }
    w.char_dev("/dev/console", 0o600, 5, 1)?;
    w.char_dev("/dev/null", 0o666, 1, 3)?;
    w.file("/bin/busybox", 0o755, busybox)?;
    for applet in APPLETS {
        w.symlink(&format!("/bin/{applet}"), "busybox")?;
    }
    w.file("/etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n")?;
    w.file("/etc/group", 0o644, b"root:x:0:\n")?;
    w.file("/etc/hostname", 0o644, b"colinux\n")?;
    w.file("/etc/inittab", 0o644, INITTAB.as_bytes())?;
    w.file("/etc/profile", 0o644, PROFILE.as_bytes())?;
    w.file("/init", 0o755, init.as_bytes())?;
    for (path, data) in extra {
        w.file(path, 0o755, data)?;
    }
    Ok(w.finish()?)
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

/// One entry of a newc archive, as [`list_newc`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpioEntry {
    /// The path without a leading `/`.
    pub name: String,
    /// The full mode (type and permission bits).
    pub mode: u32,
    /// The data size (the target's length for a symlink).
    pub size: u32,
    /// `(major, minor)` of a device node.
    pub rdev: (u32, u32),
    /// A symlink's target.
    pub link: Option<String>,
}

impl CpioEntry {
    /// `ls -l`-style: type and permissions, size or device, name, target.
    pub fn render(&self) -> String {
        let kind = match self.mode & 0o170000 {
            0o040000 => 'd',
            0o120000 => 'l',
            0o020000 => 'c',
            0o060000 => 'b',
            _ => '-',
        };
        let size = if kind == 'c' || kind == 'b' {
            format!("{}, {}", self.rdev.0, self.rdev.1)
        } else {
            self.size.to_string()
        };
        let link = self
            .link
            .as_ref()
            .map(|l| format!(" -> {l}"))
            .unwrap_or_default();
        format!(
            "{kind} {:04o} {size:>9} /{}{link}",
            self.mode & 0o7777,
            self.name
        )
    }
}

/// Read the entries of an uncompressed newc (`070701`) archive.
pub fn list_newc(data: &[u8]) -> Result<Vec<CpioEntry>> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let align = |n: usize| n.div_ceil(4) * 4;
    loop {
        let header = data
            .get(pos..pos + 110)
            .with_context(|| format!("truncated cpio header at offset {pos}"))?;
        if &header[..6] != b"070701" {
            bail!("not a newc cpio header at offset {pos}");
        }
        let field = |i: usize| -> Result<u32> {
            let s = std::str::from_utf8(&header[6 + i * 8..14 + i * 8])
                .ok()
                .and_then(|s| u32::from_str_radix(s, 16).ok());
            s.with_context(|| format!("bad cpio header field {i} at offset {pos}"))
        };
        let (mode, size, rmaj, rmin, namesize) = (
            field(1)?,
            field(6)?,
            field(9)?,
            field(10)?,
            field(11)? as usize,
        );
        let name_bytes = data
            .get(pos + 110..pos + 110 + namesize)
            .with_context(|| format!("truncated cpio name at offset {pos}"))?;
        let name = String::from_utf8_lossy(name_bytes.strip_suffix(&[0]).unwrap_or(name_bytes))
            .into_owned();
        let data_at = align(pos + 110 + namesize);
        let body = data
            .get(data_at..data_at + size as usize)
            .with_context(|| format!("truncated cpio data of {name:?}"))?;
        pos = align(data_at + size as usize);
        if name == "TRAILER!!!" {
            return Ok(out);
        }
        let link =
            (mode & 0o170000 == 0o120000).then(|| String::from_utf8_lossy(body).into_owned());
        out.push(CpioEntry {
            name,
            mode,
            size,
            rdev: (rmaj, rmin),
            link,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest ELF header + one program header that passes or fails
    /// the check, as wanted.
    fn elf(class: u8, machine: u16, e_type: u16, p_type: u32) -> Vec<u8> {
        let mut d = vec![0u8; 52 + 32];
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = class;
        d[5] = 1;
        d[6] = 1;
        d[16..18].copy_from_slice(&e_type.to_le_bytes());
        d[18..20].copy_from_slice(&machine.to_le_bytes());
        d[28..32].copy_from_slice(&52u32.to_le_bytes());
        d[42..44].copy_from_slice(&32u16.to_le_bytes());
        d[44..46].copy_from_slice(&1u16.to_le_bytes());
        d[52..56].copy_from_slice(&p_type.to_le_bytes());
        d
    }

    #[test]
    fn elf_check_accepts_static_i386_and_names_what_is_wrong() {
        check_elf_i386_static(&elf(1, 3, 2, 1)).unwrap();
        let err = |d: &[u8]| format!("{:#}", check_elf_i386_static(d).unwrap_err());
        assert!(err(b"#!/bin/sh\necho hi\n").contains("not an ELF"));
        assert!(err(&elf(2, 62, 2, 1)).contains("64-bit"));
        assert!(err(&elf(1, 40, 2, 1)).contains("not an i386 ELF"));
        assert!(err(&elf(1, 3, 3, 1)).contains("shared object or PIE"));
        assert!(err(&elf(1, 3, 2, 3)).contains("PT_INTERP"));
        assert!(err(&elf(1, 3, 2, 2)).contains("PT_DYNAMIC"));
        assert!(err(&elf(1, 3, 2, 1)[..40]).contains("truncated"));
        // This very test binary is an x86_64 (or other 64-bit) program.
        if let Ok(me) = std::env::current_exe().and_then(std::fs::read) {
            assert!(check_elf_i386_static(&me).is_err());
        }
    }

    #[test]
    fn archive_lists_busybox_links_devices_and_init() {
        let fake = elf(1, 3, 2, 1);
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

    #[test]
    fn reads_ar_members_and_apt_output() {
        let mut ar = b"!<arch>\n".to_vec();
        for (name, body) in [("debian-binary", b"2.0\n".as_slice()), ("data.tar", b"abc")] {
            ar.extend(
                format!(
                    "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                    name,
                    0,
                    0,
                    0,
                    100644,
                    body.len()
                )
                .as_bytes(),
            );
            ar.extend(body);
            if body.len() % 2 == 1 {
                ar.push(b'\n');
            }
        }
        let m = ar_members(&ar).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0], ("debian-binary".to_string(), b"2.0\n".as_slice()));
        assert_eq!(m[1].1, b"abc");
        assert!(ar_members(b"garbage").is_err());
        let err = extract_from_deb(b"nope", Path::new("x.deb"), "bin/busybox").unwrap_err();
        assert!(format!("{err:#}").contains("x.deb: not a Debian package"));

        let policy = "busybox-static:i386:\n  Installed: (none)\n  Candidate: 1:1.35.0-4+deb12u1+b1\n  Version table:\n";
        assert_eq!(
            parse_candidate(policy).as_deref(),
            Some("1:1.35.0-4+deb12u1+b1")
        );
        assert_eq!(parse_candidate("x:\n  Candidate: (none)\n"), None);
        let show = "Package: busybox-static\nVersion: 1\nSHA256: abc123\n\nSHA256: other\n";
        assert_eq!(parse_field(show, "SHA256").as_deref(), Some("abc123"));
        let list = deb_list(&[debian::AptEntry {
            uri: "http://deb.debian.org/debian".into(),
            suite: "bookworm".into(),
            components: vec!["main".into()],
            signed_by: Some("/k.gpg".into()),
        }]);
        assert!(
            list.contains("\ndeb [signed-by=/k.gpg] http://deb.debian.org/debian bookworm main\n")
        );
    }
}
