//! The test host: Debian's stock x86_64 kernel booted in QEMU (TCG) with an
//! initramfs we write, running one scenario as root.
//!
//! A [`Scenario`] is a `/bin/sh` script plus files (the colinux module, the
//! daemon, a guest kernel, …) placed in the initramfs. [`run`] builds the
//! initramfs (busybox from `busybox-static` with a symlink per applet, a
//! generated `/init`, `/scenario.sh`, the files), boots
//! [`crate::hostkernel`]'s kernel with it, streams the serial console into
//! `target/test-host/<name>.log` (and `tracing` at debug level) and returns
//! an [`Outcome`]. The scenario passes when its script exits 0 *and* the
//! kernel log has no warnings, oopses, lockups, … afterwards
//! ([`init::KLOG_PROBLEMS`]). [`shell`] boots the same host with an
//! interactive shell on the terminal, for humans.
//!
//! The machine: `-machine q35 -accel tcg -cpu max` (SMEP, SMAP, NX, PCID,
//! LA57, …), 2 vCPUs and 2 GiB by default, no network, and the scenario's
//! [`Disk`]s (none by default) as virtio-blk PCI devices. KVM is not used: it
//! hangs on this project's machines.
//!
//! Disks: the host's `/init` loads the stock kernel's virtio and ext4
//! modules (from [`crate::hostkernel::HostModules`], with `insmod`, in
//! dependency order) before the script runs, waits for every disk to
//! appear (`/dev/vda`, `/dev/vdb`, … in the order of [`Scenario::disks`])
//! and links each as `/dev/disk/by-id/virtio-<serial>` (and its partitions
//! as `…-part<N>`), as udev would. [`crate::diskimage`] makes the images.

pub mod init;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::hostkernel::{self, HostKernel};
use colinux_buildenv::{paths, sysdeps};

use crate::initramfs::BusyboxRoot;

/// Destinations the rig itself writes into the initramfs.
const RESERVED: &[&str] = &["/init", "/scenario.sh", "/bin/busybox"];
/// How long QEMU gets to power off after the final marker.
const GRACE: Duration = Duration::from_secs(5);
/// How long after the time limit QEMU is killed if the in-host watchdog
/// (which fires [`MARGIN`] before the limit) has not reported.
const SLACK: Duration = Duration::from_secs(2);
/// Time the in-host watchdog keeps, before the limit, for the kernel log
/// check and power-off.
const MARGIN: Duration = Duration::from_secs(2);
/// Console lines quoted in a failure reason.
const TAIL_LINES: usize = 20;
/// How often the log of a run gets a `### +Ns` time mark.
const TIME_MARK: Duration = Duration::from_secs(10);

/// One run of the test host: a script run as root inside it, and the files
/// it needs.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Names the log: `target/test-host/<name>.log` (characters other than
    /// `[A-Za-z0-9._-]` become `_`).
    pub name: String,
    /// A `/bin/sh` (busybox ash) script run as root inside the host, in
    /// `/root`, with stdin from `/dev/null` and stdout/stderr on the console.
    /// Exit status 0 means pass.
    pub script: String,
    /// Files to put into the initramfs.
    pub files: Vec<GuestFile>,
    /// The limit for the whole run, boot included. Inside the host, a
    /// watchdog kills the script's process group shortly before it, so the
    /// kernel log is still checked; QEMU is killed if it is still running a
    /// few seconds after the limit.
    pub timeout: Duration,
    /// Guest memory in MiB (default 2048).
    pub memory_mb: u32,
    /// Virtual CPUs (default 2).
    pub cpus: u32,
    /// QEMU's `-cpu` model (default `max`: under TCG an AMD-like CPU with
    /// SMEP, SMAP, PCID, LA57, …). `max,vendor=GenuineIntel` gives Linux's
    /// Intel paths (e.g. its machine-check severities).
    pub cpu_model: String,
    /// Extra kernel command line, appended to the rig's
    /// (`console=ttyS0 panic=-1 …`).
    pub append: String,
    /// Check the kernel log after the script (default true). Turning it off
    /// is for scenarios that provoke kernel problems on purpose.
    pub check_klog: bool,
    /// `grep -E` patterns of kernel log problem lines that are expected and
    /// must not fail the scenario (default none).
    pub klog_ignore: Vec<String>,
    /// QEMU monitor commands sent when a console line contains a trigger
    /// (default none; with none, QEMU has no monitor). This is how a
    /// scenario asks for what only the machine can do, e.g. `mce` to inject
    /// a machine check on a CPU at a moment the script chooses.
    pub monitor: Vec<MonitorAction>,
    /// Disks attached to the host, in order: the first is `/dev/vda`.
    pub disks: Vec<Disk>,
    /// How long the boot may take to reach the scenario's start before it
    /// counts as stuck and is tried once more (default 150 s; no retry
    /// when it is not below [`Scenario::timeout`]).
    pub boot_limit: Duration,
    /// For the rig's own tests: this many boots stall before the
    /// scenario's start (the init sleeps), as a hung emulator would.
    pub stall_boots: u32,
}

/// A file or block device of the build machine attached to the test host
/// as a virtio disk (`-drive file=…,format=raw,if=none` +
/// `-device virtio-blk-pci`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// The image file (raw) or block device on the build machine.
    pub path: PathBuf,
    /// The disk's serial number (at most 20 bytes of `[A-Za-z0-9._-]`):
    /// `/sys/block/vdX/serial` and `/dev/disk/by-id/virtio-<serial>` in the
    /// host. [`Scenario::disk`] names them `disk0`, `disk1`, … by position.
    pub serial: String,
    /// Attach it read-only: the host sees a read-only disk
    /// (`blockdev --getro` says 1) and QEMU refuses writes.
    pub read_only: bool,
    /// QEMU's cache mode (default [`DiskCache::Unsafe`]).
    pub cache: DiskCache,
    /// Pass the host's discards to the image (`discard=unmap`; default
    /// off: QEMU ignores them).
    pub discard: bool,
    /// Sectors (512 bytes) whose reads fail with EIO in the host, every
    /// time (QEMU's `blkdebug` filter between the disk and its file): a
    /// failing disk for tests of read errors. Empty: none.
    pub read_errors: Vec<u64>,
}

/// QEMU's `cache=` for a disk. What the *test host* writes reaches the
/// image file (the build machine's page cache) as soon as QEMU writes it
/// in every mode; the modes differ in what a flush from the test host costs
/// and whether QEMU bypasses the build machine's page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskCache {
    /// Flushes are ignored (no `fsync` on the build machine): the fastest,
    /// and what tests want unless they measure flushes. The default.
    Unsafe,
    /// Flushes become `fdatasync` on the image file.
    Writeback,
    /// Every write is synchronous.
    Writethrough,
    /// `O_DIRECT`, flushes honoured (for benchmarks that must not measure
    /// the build machine's page cache).
    None,
    /// `O_DIRECT` and every write synchronous.
    Directsync,
}

impl DiskCache {
    /// The word QEMU's `cache=` takes.
    pub fn as_qemu(self) -> &'static str {
        match self {
            DiskCache::Unsafe => "unsafe",
            DiskCache::Writeback => "writeback",
            DiskCache::Writethrough => "writethrough",
            DiskCache::None => "none",
            DiskCache::Directsync => "directsync",
        }
    }
}

impl Disk {
    /// A read-write disk on `path` with serial `serial`, `cache=unsafe`.
    pub fn new(path: impl Into<PathBuf>, serial: impl Into<String>) -> Disk {
        Disk {
            path: path.into(),
            serial: serial.into(),
            read_only: false,
            cache: DiskCache::Unsafe,
            discard: false,
            read_errors: Vec::new(),
        }
    }

    /// Reads that touch `sector` fail with EIO in the host (builder
    /// style; repeatable).
    pub fn read_error_at(mut self, sector: u64) -> Disk {
        self.read_errors.push(sector);
        self
    }

    /// Read-only (builder style).
    pub fn read_only(mut self) -> Disk {
        self.read_only = true;
        self
    }

    /// Set the cache mode (builder style).
    pub fn cache(mut self, cache: DiskCache) -> Disk {
        self.cache = cache;
        self
    }

    /// Pass discards through (builder style).
    pub fn discard(mut self) -> Disk {
        self.discard = true;
        self
    }

    /// Parse the CLI form `PATH[,ro]` (a path containing a comma must be
    /// given with the `,ro`-less form of a path that does not end in
    /// `,ro`); the serial is `disk<index>`.
    pub fn parse(spec: &str, index: usize) -> Result<Disk> {
        let (path, read_only) = match spec.strip_suffix(",ro") {
            Some(p) => (p, true),
            None => (spec, false),
        };
        if path.is_empty() {
            bail!("{spec:?}: expected PATH[,ro]");
        }
        let disk = Disk::new(path, format!("disk{index}"));
        Ok(if read_only { disk.read_only() } else { disk })
    }

    /// Check the serial and that the path can be opened (read-write unless
    /// read-only), so that a bad disk is an error naming it rather than a
    /// QEMU failure.
    fn check(&self, index: usize) -> Result<()> {
        let what = || format!("disk {index} ({})", self.path.display());
        if self.serial.is_empty()
            || self.serial.len() > 20
            || !self
                .serial
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            bail!(
                "{}: the serial {:?} must be 1 to 20 characters of [A-Za-z0-9._-]",
                what(),
                self.serial
            );
        }
        std::fs::OpenOptions::new()
            .read(true)
            .write(!self.read_only)
            .open(&self.path)
            .with_context(|| {
                format!(
                    "{}: cannot open it {}",
                    what(),
                    if self.read_only {
                        "for reading"
                    } else {
                        "for reading and writing (attach it read-only?)"
                    }
                )
            })?;
        Ok(())
    }
}

/// QEMU's arguments for `disks`: one `-drive` (`id=disk<N>`) and one
/// `-device virtio-blk-pci` each, in order.
fn disk_args(disks: &[Disk]) -> Vec<std::ffi::OsString> {
    let mut args = Vec::new();
    for (i, d) in disks.iter().enumerate() {
        // QEMU's option syntax doubles a comma inside a value.
        let path = d.path.as_os_str().to_string_lossy().replace(',', ",,");
        let mut drive = std::ffi::OsString::from(if d.read_errors.is_empty() {
            format!("file={path},format=raw")
        } else {
            // The raw format on a blkdebug filter on the file.
            let mut f = format!(
                "driver=raw,file.driver=blkdebug,file.image.driver=file,file.image.filename={path}"
            );
            for (k, sector) in d.read_errors.iter().enumerate() {
                f.push_str(&format!(
                    ",file.inject-error.{k}.event=read_aio,file.inject-error.{k}.errno=5,file.inject-error.{k}.sector={sector}"
                ));
            }
            f
        });
        drive.push(format!(
            ",if=none,id=disk{i},cache={}{}{}",
            d.cache.as_qemu(),
            if d.read_only { ",readonly=on" } else { "" },
            if d.discard { ",discard=unmap" } else { "" },
        ));
        args.push("-drive".into());
        args.push(drive);
        args.push("-device".into());
        args.push(format!("virtio-blk-pci,drive=disk{i},serial={}", d.serial).into());
    }
    args
}

/// Send `command` to QEMU's human monitor each time a console line contains
/// `trigger`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorAction {
    pub trigger: String,
    pub command: String,
}

impl Scenario {
    /// A scenario with the defaults: 2 CPUs, 2 GiB, a 120 s limit, no files,
    /// strict kernel log check.
    pub fn new(name: impl Into<String>, script: impl Into<String>) -> Self {
        Scenario {
            name: name.into(),
            script: script.into(),
            files: Vec::new(),
            timeout: Duration::from_secs(120),
            memory_mb: 2048,
            cpus: 2,
            cpu_model: "max".to_string(),
            append: String::new(),
            check_klog: true,
            klog_ignore: Vec::new(),
            monitor: Vec::new(),
            disks: Vec::new(),
            boot_limit: BOOT_LIMIT,
            stall_boots: 0,
        }
    }

    /// Attach the image file or block device `path` as the next virtio
    /// disk (builder style): read-write, `cache=unsafe`, serial
    /// `disk<N>` (N its position). For other options push a [`Disk`], or
    /// use [`Scenario::disk_with`].
    pub fn disk(self, path: impl Into<PathBuf>) -> Self {
        let serial = format!("disk{}", self.disks.len());
        self.disk_with(Disk::new(path, serial))
    }

    /// Attach `disk` as the next virtio disk (builder style).
    pub fn disk_with(mut self, disk: Disk) -> Self {
        self.disks.push(disk);
        self
    }

    /// Send `command` to the QEMU monitor whenever a console line contains
    /// `trigger` (builder style).
    pub fn on_console(mut self, trigger: impl Into<String>, command: impl Into<String>) -> Self {
        self.monitor.push(MonitorAction {
            trigger: trigger.into(),
            command: command.into(),
        });
        self
    }

    /// Add passt (conet's user-mode NAT) and its libraries at their
    /// paths ([`crate::hostpasst`]).
    pub fn with_passt(self) -> Result<Self> {
        Ok(self.host_files(crate::hostpasst::files()?))
    }

    /// Add dnsmasq (a DNS server for the test host's loopback) and its
    /// libraries at their paths ([`crate::hostpasst::dnsmasq_files`]).
    pub fn with_dnsmasq(self) -> Result<Self> {
        Ok(self.host_files(crate::hostpasst::dnsmasq_files()?))
    }

    /// Add Xvfb, xkbcomp, their libraries and the XKB data at their paths
    /// ([`crate::hostpasst::xvfb_files`]).
    pub fn with_xvfb(self) -> Result<Self> {
        Ok(self.host_files(crate::hostpasst::xvfb_files()?))
    }

    /// Add git and its libraries at their paths
    /// ([`crate::hostpasst::git_files`]).
    pub fn with_git(self) -> Result<Self> {
        Ok(self.host_files(crate::hostpasst::git_files()?))
    }

    /// Add `files` (source, path in the host, mode), skipping paths
    /// already there (libraries programs share).
    pub fn host_files(mut self, files: Vec<crate::hostpasst::HostFile>) -> Self {
        for (source, dest, mode) in files {
            if !self.files.iter().any(|f| f.dest == dest) {
                self = self.file(source, dest, mode);
            }
        }
        self
    }

    /// Copy virtiofsd (built into the cache from crates.io) and its
    /// libraries into the test host (`crate::hostvirtiofsd`).
    pub fn with_virtiofsd(mut self) -> Result<Self> {
        for (source, dest, mode) in crate::hostvirtiofsd::files()? {
            if !self.files.iter().any(|f| f.dest == dest) {
                self = self.file(source, dest, mode);
            }
        }
        Ok(self)
    }

    /// Add a file (builder style).
    pub fn file(mut self, source: impl Into<PathBuf>, dest: impl Into<String>, mode: u32) -> Self {
        self.files.push(GuestFile {
            source: source.into(),
            dest: dest.into(),
            mode,
        });
        self
    }

    /// Set the time limit (builder style).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Set the boot limit (builder style; see [`Scenario::boot_limit`]).
    pub fn boot_limit(mut self, limit: Duration) -> Self {
        self.boot_limit = limit;
        self
    }
}

/// A file copied from the build machine into the initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestFile {
    /// The file on the build machine.
    pub source: PathBuf,
    /// Its absolute path inside the host (parent directories are created).
    pub dest: String,
    /// Its permission bits, e.g. `0o755` for programs, `0o644` for data.
    pub mode: u32,
}

impl GuestFile {
    /// Parse the CLI form `SRC:DEST`; the mode is the source's (`0o755`
    /// when it is executable, else `0o644`).
    pub fn parse(spec: &str) -> Result<Self> {
        let (src, dest) = spec
            .rsplit_once(':')
            .with_context(|| format!("{spec:?}: expected SRC:DEST"))?;
        let source = PathBuf::from(src);
        let meta = std::fs::metadata(&source)
            .with_context(|| format!("cannot read {}", source.display()))?;
        use std::os::unix::fs::PermissionsExt;
        let mode = if meta.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        Ok(GuestFile {
            source,
            dest: dest.to_string(),
            mode,
        })
    }
}

/// How a scenario went.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The script exited 0, the kernel log is clean and nothing timed out.
    pub passed: bool,
    /// One line (or a few) saying why: the exit status, the kernel log
    /// problems, the timeout with the last console lines, a panic, …
    pub reason: String,
    /// The full console log, `target/test-host/<name>.log` (kept on pass).
    pub log: PathBuf,
    /// The serial console, one line per line (no `\r`).
    pub console: String,
    /// The kernel log check found nothing (also true when it was skipped,
    /// false when it never ran).
    pub kernel_log_clean: bool,
    /// The kernel log lines the check flagged.
    pub klog_problems: Vec<String>,
    /// The script's exit status, if it finished or was killed.
    pub exit_status: Option<i32>,
    /// The run hit its time limit (inside the host, or QEMU was killed).
    pub timed_out: bool,
    /// From starting QEMU to its exit.
    pub duration: Duration,
    /// Seconds from starting QEMU to the scenario's start (boot time).
    pub boot_time: Option<Duration>,
}

/// How long a test host gets from starting QEMU to the scenario's start
/// (`START`) before the boot counts as stuck: the host kernel and the
/// rig's init take seconds even on a loaded machine, so a boot that has not
/// started the scenario by then is an emulator hang, not the product's
/// doing (nothing of the project runs before `START`). A stuck boot is
/// killed and tried once more; the log says so.
const BOOT_LIMIT: Duration = Duration::from_secs(150);

/// Run `s` in the test host. `Err` means the rig could not run it (QEMU
/// missing, no kernel, unreadable files, …); a failing scenario is
/// `Ok(Outcome { passed: false, .. })`.
pub fn run(s: &Scenario) -> Result<Outcome> {
    let prepared = prepare(s, false)?;
    let log_path = prepared.dir.join(format!("{}.log", prepared.name));
    let mut log =
        File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let boot_limit = (s.boot_limit < s.timeout).then_some(s.boot_limit);
    match attempt(s, &prepared, &log_path, &mut log, boot_limit, 0)? {
        Attempt::Done(outcome) => Ok(outcome),
        Attempt::Stuck { lines, qemu_stderr } => {
            let why = format!(
                "the test host printed {lines} console lines and did not start the scenario \
                 within {}s{}",
                s.boot_limit.as_secs(),
                qemu_said(&qemu_stderr)
            );
            writeln!(log, "### {why}: QEMU killed, booting once more")?;
            tracing::warn!("test host: scenario {:?}: {why}; booting once more", s.name);
            match attempt(s, &prepared, &log_path, &mut log, boot_limit, 1)? {
                Attempt::Done(outcome) => Ok(outcome),
                Attempt::Stuck { .. } => bail!("scenario {:?}: {why}, twice", s.name),
            }
        }
    }
}

/// `" (QEMU said: …)"` when QEMU wrote to its stderr, else nothing.
fn qemu_said(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!(" (QEMU said: {})", stderr.trim())
    }
}

/// One boot of the test host for [`run`].
enum Attempt {
    Done(Outcome),
    /// No `START` within the boot limit; QEMU was killed.
    Stuck {
        lines: usize,
        qemu_stderr: String,
    },
}

fn attempt(
    s: &Scenario,
    prepared: &Prepared,
    log_path: &Path,
    log: &mut File,
    boot_limit: Option<Duration>,
    boot: u32,
) -> Result<Attempt> {
    let mut cmd = prepared.qemu_command(s, false, boot < s.stall_boots);
    writeln!(log, "### colinux test host: scenario {}", s.name)?;
    writeln!(log, "### host kernel {}", prepared.kernel.release)?;
    writeln!(log, "### {}", render_command(&cmd))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tracing::info!(
        "test host: booting {} for scenario {:?} (log: {})",
        prepared.kernel.release,
        s.name,
        log_path.display()
    );
    let started = Instant::now();
    let mut qemu = Qemu::spawn(cmd, true)?;
    let stdout = qemu.child.stdout.take().context("QEMU has no stdout")?;
    let stderr = qemu.child.stderr.take().context("QEMU has no stderr")?;
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']).replace('\r', "");
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut text);
        text
    });

    let marker = init::marker(&prepared.nonce);
    let mut monitor = Monitor::new(prepared.monitor_socket(s));
    let deadline = started + s.timeout + SLACK;
    let boot_deadline = boot_limit.map(|b| started + b);
    let mut st = State::default();
    let mut console = String::new();
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut killed_at_limit = false;
    let mut stuck = false;
    // A time mark in the log every TIME_MARK, to see where a run's time went.
    let mut next_mark = TIME_MARK;
    loop {
        let mut limit = match st.result_at {
            Some(t) => deadline.min(t + GRACE),
            None => deadline,
        };
        if let (Some(b), None) = (boot_deadline, st.start_at) {
            limit = limit.min(b);
        }
        match rx.recv_timeout(limit.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                let at = started.elapsed();
                if at >= next_mark {
                    writeln!(log, "### +{}s", at.as_secs())?;
                    next_mark = at + TIME_MARK;
                }
                writeln!(log, "{line}")?;
                for a in s.monitor.iter().filter(|a| line.contains(&a.trigger)) {
                    let sent = monitor.send(&a.command);
                    writeln!(log, "### monitor <- {}: {}", a.command, sent)?;
                }
                log.flush()?;
                tracing::debug!("{}: {line}", s.name);
                st.parse(&line, &marker, started);
                console.push_str(&line);
                console.push('\n');
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if st.start_at.is_none() && boot_deadline.is_some_and(|b| Instant::now() >= b) {
                    stuck = true;
                } else {
                    killed_at_limit = st.result_at.is_none();
                }
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if stuck {
        qemu.kill();
        let qemu_stderr = stderr_reader.join().unwrap_or_default();
        return Ok(Attempt::Stuck {
            lines: console.lines().count(),
            qemu_stderr,
        });
    }
    let status = if killed_at_limit {
        qemu.kill();
        None
    } else {
        qemu.finish(GRACE)
    };
    let duration = started.elapsed();
    let qemu_stderr = stderr_reader.join().unwrap_or_default();

    if st.start_at.is_none() && !killed_at_limit && console.trim().is_empty() {
        bail!(
            "QEMU failed before the host kernel printed anything ({}): {}",
            status.map_or_else(|| "killed".to_string(), |s| s.to_string()),
            qemu_stderr.trim()
        );
    }
    let outcome = st.outcome(OutcomeInput {
        s,
        log: log_path.to_path_buf(),
        console,
        tail: tail.into_iter().collect(),
        killed_at_limit,
        status,
        qemu_stderr,
        duration,
    });
    writeln!(
        log,
        "### {} in {:.1}s: {}",
        if outcome.passed { "PASS" } else { "FAIL" },
        duration.as_secs_f64(),
        outcome.reason
    )?;
    tracing::info!(
        "test host: scenario {:?} {} in {:.1}s{}",
        s.name,
        if outcome.passed { "passed" } else { "FAILED" },
        duration.as_secs_f64(),
        if outcome.passed {
            String::new()
        } else {
            format!(": {} (log: {})", outcome.reason, log_path.display())
        }
    );
    Ok(Attempt::Done(outcome))
}

/// Boot the test host with an interactive shell on this terminal, after
/// running `s.script` (on the console). Exiting the shell powers off; Ctrl-A X
/// quits QEMU. No time limit; the kernel log is checked at the end.
pub fn shell(s: &Scenario) -> Result<()> {
    let prepared = prepare(s, true)?;
    let mut cmd = prepared.qemu_command(s, true, false);
    tracing::info!(
        "test host: booting {}; exit the shell to power off, Ctrl-A X quits QEMU",
        prepared.kernel.release
    );
    tracing::debug!("{}", render_command(&cmd));
    cmd.stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let mut qemu = Qemu::spawn(cmd, false)?;
    let status = qemu.child.wait().context("cannot wait for QEMU")?;
    if !status.success() {
        bail!("QEMU exited with {status}");
    }
    Ok(())
}

/// The initramfs and everything else a run needs.
struct Prepared {
    name: String,
    dir: PathBuf,
    kernel: HostKernel,
    initramfs: PathBuf,
    nonce: String,
}

impl Prepared {
    /// `stall`: the init sleeps before the scenario's start
    /// ([`Scenario::stall_boots`]).
    fn qemu_command(&self, s: &Scenario, interactive: bool, stall: bool) -> Command {
        let mut cmd = Command::new("qemu-system-x86_64");
        let append = format!(
            "console=ttyS0,115200 panic=-1 loglevel=4 rdinit=/init {}{}",
            s.append,
            if stall { " colinux_testhost.stall" } else { "" }
        );
        cmd.args(["-machine", "q35", "-accel", "tcg", "-cpu", &s.cpu_model])
            .args(["-smp", &s.cpus.to_string(), "-m", &s.memory_mb.to_string()])
            .arg("-kernel")
            .arg(&self.kernel.vmlinuz)
            .arg("-initrd")
            .arg(&self.initramfs)
            .args(["-append", append.trim_end()])
            .args(["-nodefaults", "-no-reboot", "-display", "none"])
            .args(disk_args(&s.disks));
        if interactive {
            cmd.args(["-serial", "mon:stdio"]);
        } else if let Some(sock) = self.monitor_socket(s) {
            cmd.args(["-serial", "stdio", "-monitor"])
                .arg(format!("unix:{},server=on,wait=off", sock.display()));
        } else {
            cmd.args(["-serial", "stdio", "-monitor", "none"]);
        }
        cmd
    }

    /// The monitor's socket, when the scenario uses the monitor.
    fn monitor_socket(&self, s: &Scenario) -> Option<PathBuf> {
        (!s.monitor.is_empty()).then(|| self.dir.join(format!("{}.monitor", self.name)))
    }
}

/// A connection to QEMU's human monitor (connected on first use; what the
/// monitor answers is read and dropped by a thread, so it never blocks).
struct Monitor {
    path: Option<PathBuf>,
    stream: Option<std::os::unix::net::UnixStream>,
}

impl Monitor {
    fn new(path: Option<PathBuf>) -> Monitor {
        Monitor { path, stream: None }
    }

    /// Send one command; says how it went, for the log.
    fn send(&mut self, command: &str) -> String {
        if self.stream.is_none() {
            let Some(path) = &self.path else {
                return "no monitor".to_string();
            };
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(stream) => {
                    if let Ok(mut reader) = stream.try_clone() {
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut reader, &mut std::io::sink());
                        });
                    }
                    self.stream = Some(stream);
                }
                Err(e) => return format!("cannot connect to {}: {e}", path.display()),
            }
        }
        match self.stream.as_mut().map(|st| writeln!(st, "{command}")) {
            Some(Ok(())) => "sent".to_string(),
            Some(Err(e)) => format!("failed: {e}"),
            None => "no monitor".to_string(),
        }
    }
}

fn prepare(s: &Scenario, interactive: bool) -> Result<Prepared> {
    if s.cpus == 0 || s.memory_mb < 256 {
        bail!(
            "scenario {:?}: needs at least 1 CPU and 256 MiB (has {} CPUs, {} MiB)",
            s.name,
            s.cpus,
            s.memory_mb
        );
    }
    if s.disks.len() > MAX_DISKS {
        bail!(
            "scenario {:?}: {} disks; the test host takes at most {MAX_DISKS}",
            s.name,
            s.disks.len()
        );
    }
    for (i, d) in s.disks.iter().enumerate() {
        d.check(i)
            .with_context(|| format!("scenario {:?}", s.name))?;
        if let Some(j) = s.disks[..i].iter().position(|o| o.serial == d.serial) {
            bail!(
                "scenario {:?}: disks {j} and {i} have the same serial {:?}",
                s.name,
                d.serial
            );
        }
    }
    sysdeps::ensure("the QEMU test host", sysdeps::TEST_HOST)?;
    let kernel = hostkernel::ensure()?;
    let load_modules = !s.disks.is_empty();
    let serials: Vec<String> = s.disks.iter().map(|d| d.serial.clone()).collect();
    let name = sanitize(&s.name);
    let dir = output_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let nonce = nonce(&name);
    let initramfs = dir.join(format!("{name}.initramfs.cpio"));
    let init = init::script(&init::InitOptions {
        nonce: &nonce,
        deadline_unix: deadline_unix(s.timeout),
        check_klog: s.check_klog,
        klog_ignore: &s.klog_ignore,
        interactive,
        modules: load_modules.then_some(&kernel.modules.plan),
        disks: &serials,
    });
    let modules = if load_modules {
        module_files(&kernel)?
    } else {
        Vec::new()
    };
    write_initramfs(&initramfs, &init, s, modules)
        .with_context(|| format!("cannot build the initramfs for scenario {:?}", s.name))?;
    Ok(Prepared {
        name,
        dir,
        kernel,
        initramfs,
        nonce,
    })
}

/// `target/test-host/` in the workspace's target directory.
pub fn output_dir() -> PathBuf {
    paths::target_dir().join("test-host")
}

/// The test host's directories (besides the parents of its files).
const DIRS: &[(&str, u32)] = &[
    ("/bin", 0o755),
    ("/sbin", 0o755),
    ("/usr/bin", 0o755),
    ("/usr/sbin", 0o755),
    ("/proc", 0o755),
    ("/sys", 0o755),
    ("/dev", 0o755),
    ("/tmp", 0o1777),
    ("/run", 0o755),
    ("/root", 0o755),
    ("/etc", 0o755),
    ("/mnt", 0o755),
    ("/var", 0o755),
];

/// The most disks a scenario can attach.
const MAX_DISKS: usize = 20;

/// The host kernel's modules for the initramfs, at
/// `/lib/modules/<release>/…`: the plan's files and the trimmed
/// `modules.dep` (so busybox `modprobe` works in the host too).
fn module_files(kernel: &HostKernel) -> Result<Vec<(String, u32, Vec<u8>)>> {
    let m = &kernel.modules;
    let mut out = Vec::new();
    let rels = m
        .plan
        .files()
        .into_iter()
        .map(|f| f.path.clone())
        .chain(std::iter::once("modules.dep".to_string()));
    for rel in rels {
        let src = m.dir.join(&rel);
        let data = std::fs::read(&src).with_context(|| format!("cannot read {}", src.display()))?;
        out.push((
            format!("/lib/modules/{}/{rel}", kernel.release),
            0o644,
            data,
        ));
    }
    Ok(out)
}

fn write_initramfs(
    path: &Path,
    init: &str,
    s: &Scenario,
    modules: Vec<(String, u32, Vec<u8>)>,
) -> Result<()> {
    let busybox = Path::new("/bin/busybox");
    let busybox_data =
        std::fs::read(busybox).with_context(|| format!("cannot read {}", busybox.display()))?;
    // A static x86_64 ELF: the initramfs has no libraries.
    if busybox_data.get(..4) != Some(b"\x7fELF".as_slice())
        || busybox_data.get(18..20) != Some([62u8, 0].as_slice())
    {
        bail!("{} is not an x86_64 ELF program", busybox.display());
    }
    let applets = Command::new(busybox)
        .arg("--list-full")
        .output()
        .context("cannot run busybox --list-full")?;
    if !applets.status.success() {
        bail!("busybox --list-full failed ({})", applets.status);
    }
    let mut data = Vec::new();
    let mut seen: std::collections::BTreeSet<&str> =
        modules.iter().map(|(p, _, _)| p.as_str()).collect();
    for f in &s.files {
        if !f.dest.starts_with('/') {
            bail!("{}: the destination must be absolute", f.dest);
        }
        if RESERVED.contains(&f.dest.as_str()) {
            bail!("{}: the test host writes that file itself", f.dest);
        }
        if !seen.insert(f.dest.as_str()) {
            bail!(
                "{}: two files have that destination (or the host kernel's modules do)",
                f.dest
            );
        }
        data.push(
            std::fs::read(&f.source)
                .with_context(|| format!("cannot read {}", f.source.display()))?,
        );
    }
    let mut files = vec![("/scenario.sh".to_string(), 0o755, s.script.as_bytes())];
    files.extend(
        modules
            .iter()
            .map(|(p, m, d)| (p.clone(), *m, d.as_slice())),
    );
    files.extend(
        s.files
            .iter()
            .zip(&data)
            .map(|(f, d)| (f.dest.clone(), f.mode, d.as_slice())),
    );
    let root = BusyboxRoot {
        dirs: DIRS,
        busybox: &busybox_data,
        links: String::from_utf8_lossy(&applets.stdout)
            .lines()
            .map(str::trim)
            .filter(|a| !a.is_empty() && *a != "bin/busybox")
            .map(|a| (format!("/{a}"), "/bin/busybox".to_string()))
            .collect(),
        init,
        files,
    };
    let tmp = path.with_extension("tmp");
    let out = std::io::BufWriter::new(
        File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?,
    );
    root.write(out)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// QEMU, killed (with its process group) when dropped.
struct Qemu {
    child: Child,
    own_group: bool,
}

impl Qemu {
    fn spawn(mut cmd: Command, own_group: bool) -> Result<Self> {
        if sysdeps::which("qemu-system-x86_64").is_none() {
            bail!("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)");
        }
        if own_group {
            cmd.process_group(0);
        }
        // SAFETY: the closure runs in the child between fork and exec and only
        // calls prctl(2), which is async-signal-safe and touches no memory of
        // the parent.
        unsafe {
            cmd.pre_exec(|| {
                // Die with the thread that spawned QEMU (the rig), however it
                // ends.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().context("cannot start qemu-system-x86_64")?;
        Ok(Qemu { child, own_group })
    }

    /// Wait up to `grace` for QEMU to exit, then kill it. `None` when killed.
    fn finish(&mut self, grace: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + grace;
        while Instant::now() < until {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        self.kill();
        None
    }

    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if self.own_group {
                if let Ok(pid) = i32::try_from(self.child.id()) {
                    // SAFETY: kill(2) on QEMU's own process group (it is its
                    // leader and has not been reaped, so the id is not reused).
                    unsafe {
                        libc::kill(-pid, libc::SIGKILL);
                    }
                }
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the console said, as it comes.
#[derive(Debug, Default)]
struct State {
    start_at: Option<Duration>,
    release: Option<String>,
    inner_timeout: Option<u64>,
    exit: Option<i32>,
    klog_problems: Vec<String>,
    klog: Option<Klog>,
    result: Option<bool>,
    result_at: Option<Instant>,
    panic_line: Option<String>,
    setup_failures: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Klog {
    Clean,
    Dirty,
    Skipped,
}

struct OutcomeInput<'a> {
    s: &'a Scenario,
    log: PathBuf,
    console: String,
    tail: Vec<String>,
    killed_at_limit: bool,
    status: Option<ExitStatus>,
    qemu_stderr: String,
    duration: Duration,
}

impl State {
    fn parse(&mut self, line: &str, marker: &str, started: Instant) {
        if self.panic_line.is_none() && line.contains("Kernel panic") {
            self.panic_line = Some(line.trim().to_string());
        }
        let Some(at) = line.find(marker) else {
            return;
        };
        let rest = line[at + marker.len()..].trim();
        let (word, arg) = rest.split_once(' ').unwrap_or((rest, ""));
        match word {
            "START" => {
                self.start_at = Some(started.elapsed());
                self.release = Some(arg.trim().to_string());
            }
            "SETUP-FAIL" => self.setup_failures.push(arg.trim().to_string()),
            "TIMEOUT" => self.inner_timeout = arg.trim().parse().ok().or(Some(0)),
            "EXIT" => self.exit = arg.split_whitespace().next().and_then(|c| c.parse().ok()),
            "KLOG:" => self.klog_problems.push(arg.to_string()),
            "KLOG" => {
                self.klog = match arg.split_whitespace().next() {
                    Some("CLEAN") => Some(Klog::Clean),
                    Some("SKIPPED") => Some(Klog::Skipped),
                    _ => Some(Klog::Dirty),
                }
            }
            "RESULT" => {
                self.result = Some(arg.starts_with("PASS"));
                self.result_at = Some(Instant::now());
            }
            _ => {}
        }
    }

    fn outcome(self, i: OutcomeInput<'_>) -> Outcome {
        let tail = || {
            i.tail
                .iter()
                .map(|l| format!("  | {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let mut problems = Vec::new();
        let mut timed_out = false;
        if i.killed_at_limit {
            timed_out = true;
            problems.push(format!(
                "timed out: no result within the {}s limit (QEMU killed){}; last console lines:\n{}",
                i.s.timeout.as_secs(),
                qemu_said(&i.qemu_stderr),
                tail()
            ));
        } else if self.result.is_none() {
            let how = i
                .status
                .map_or_else(|| "was killed".to_string(), |s| format!("exited ({s})"));
            if let Some(p) = &self.panic_line {
                problems.push(format!("the host kernel panicked: {p}"));
            } else if self.start_at.is_none() {
                problems.push(format!(
                    "QEMU {how} before the scenario started{}; last console lines:\n{}",
                    qemu_said(&i.qemu_stderr),
                    tail()
                ));
            } else {
                problems.push(format!(
                    "QEMU {how} before the scenario finished; last console lines:\n{}",
                    tail()
                ));
            }
        }
        if !self.setup_failures.is_empty() {
            problems.push(format!(
                "the test host's setup failed, the script did not run: {}",
                self.setup_failures.join("; ")
            ));
        }
        if let Some(secs) = self.inner_timeout {
            timed_out = true;
            problems.push(format!(
                "timed out: the script was still running after {secs}s inside the host \
                 (limit {}s, boot included) and was killed",
                i.s.timeout.as_secs()
            ));
        } else if let Some(code) = self
            .exit
            .filter(|c| *c != 0 && self.setup_failures.is_empty())
        {
            problems.push(format!("the script exited with status {code}"));
        }
        if self.klog == Some(Klog::Dirty) {
            problems.push(format!(
                "the host kernel log has {} problem line(s):\n{}",
                self.klog_problems.len(),
                self.klog_problems
                    .iter()
                    .map(|l| format!("  | {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
        let passed = problems.is_empty() && self.result == Some(true) && self.exit == Some(0);
        if problems.is_empty() && !passed {
            problems.push("the host reported a failure (see the log)".to_string());
        }
        Outcome {
            passed,
            reason: if passed {
                "the script exited 0 and the host kernel log is clean".to_string()
            } else {
                problems.join("; ")
            },
            log: i.log,
            console: i.console,
            kernel_log_clean: matches!(self.klog, Some(Klog::Clean | Klog::Skipped)),
            klog_problems: self.klog_problems,
            exit_status: self.exit,
            timed_out,
            duration: i.duration,
            boot_time: self.start_at,
        }
    }
}

/// `name` with every character but ASCII letters, digits, `.`, `_` and
/// `-` replaced by `_`: safe as one file or directory name (unless empty
/// or starting with `.`, which callers check).
pub(crate) fn file_name_chars(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn sanitize(name: &str) -> String {
    let s = file_name_chars(name);
    if s.is_empty() || s.starts_with('.') {
        format!("scenario{s}")
    } else {
        s
    }
}

/// The in-host watchdog's deadline for a run with `timeout` starting now.
fn deadline_unix(timeout: Duration) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    now + timeout.saturating_sub(MARGIN).as_secs().max(1)
}

fn nonce(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = format!(
        "{}-{now}-{name}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    hex::encode(&Sha256::digest(seed.as_bytes())[..6])
}

fn render_command(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.contains([' ', '"', '\'']) {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn markers_make_an_outcome() {
        let marker = init::marker("abc");
        let mut st = State::default();
        let t = Instant::now();
        for l in [
            "[    1.0] random kernel line",
            "COLINUX-TESTHOST[abc]: START 6.1.0-41-amd64",
            "hello from the scenario",
            "[ 2.0] fooCOLINUX-TESTHOST[abc]: EXIT 0",
            "COLINUX-TESTHOST[abc]: KLOG: [ 1.5] WARNING: CPU: 0 PID: 1 at x",
            "COLINUX-TESTHOST[abc]: KLOG DIRTY 1",
            "COLINUX-TESTHOST[abc]: RESULT FAIL 0",
            // A forged marker with another nonce is ignored.
            "COLINUX-TESTHOST[xyz]: RESULT PASS",
        ] {
            st.parse(l, &marker, t);
        }
        assert_eq!(st.release.as_deref(), Some("6.1.0-41-amd64"));
        assert_eq!(st.exit, Some(0));
        assert_eq!(st.result, Some(false));
        let s = Scenario::new("t", "true");
        let o = st.outcome(OutcomeInput {
            s: &s,
            log: PathBuf::from("x.log"),
            console: String::new(),
            tail: vec![],
            killed_at_limit: false,
            status: None,
            qemu_stderr: String::new(),
            duration: Duration::ZERO,
        });
        assert!(!o.passed);
        assert!(!o.kernel_log_clean);
        assert!(o.reason.contains("WARNING: CPU"), "{}", o.reason);
    }

    fn strings(args: &[std::ffi::OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn disks_become_drives_and_virtio_blk_devices_in_order() {
        let s = Scenario::new("d", "true")
            .disk("/t/fs.img")
            .disk_with(
                Disk::new("/t/a,b.img", "raw")
                    .read_only()
                    .cache(DiskCache::Writeback)
                    .discard(),
            )
            .disk("/dev/sdz1");
        assert_eq!(s.disks[2].serial, "disk2");
        assert_eq!(
            strings(&disk_args(&s.disks)),
            [
                "-drive",
                "file=/t/fs.img,format=raw,if=none,id=disk0,cache=unsafe",
                "-device",
                "virtio-blk-pci,drive=disk0,serial=disk0",
                "-drive",
                "file=/t/a,,b.img,format=raw,if=none,id=disk1,cache=writeback,readonly=on,discard=unmap",
                "-device",
                "virtio-blk-pci,drive=disk1,serial=raw",
                "-drive",
                "file=/dev/sdz1,format=raw,if=none,id=disk2,cache=unsafe",
                "-device",
                "virtio-blk-pci,drive=disk2,serial=disk2",
            ]
        );
        assert!(disk_args(&[]).is_empty());
        // A failing disk: blkdebug under the raw format.
        assert_eq!(
            strings(&disk_args(&[Disk::new("/t/bad.img", "bad")
                .read_error_at(8192)
                .read_error_at(9000)])),
            [
                "-drive",
                "driver=raw,file.driver=blkdebug,file.image.driver=file,file.image.filename=/t/bad.img\
                 ,file.inject-error.0.event=read_aio,file.inject-error.0.errno=5,file.inject-error.0.sector=8192\
                 ,file.inject-error.1.event=read_aio,file.inject-error.1.errno=5,file.inject-error.1.sector=9000\
                 ,if=none,id=disk0,cache=unsafe",
                "-device",
                "virtio-blk-pci,drive=disk0,serial=bad",
            ]
        );

        // In the whole command, after the machine's options.
        let prepared = Prepared {
            name: "d".into(),
            dir: PathBuf::from("/t"),
            kernel: HostKernel {
                release: "r".into(),
                vmlinuz: "/k/vmlinuz".into(),
                config: "/k/config".into(),
                build_dir: "/k/build".into(),
                modules: hostkernel::HostModules {
                    dir: "/k/modules".into(),
                    plan: hostkernel::modules::LoadPlan {
                        roots: vec![],
                        steps: vec![],
                    },
                },
            },
            initramfs: "/t/d.cpio".into(),
            nonce: "n".into(),
        };
        let cmd = prepared.qemu_command(&s, false, false);
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let at = |a: &str| args.iter().position(|x| x == a).unwrap();
        assert!(at("-nodefaults") < at("virtio-blk-pci,drive=disk0,serial=disk0"));
        assert_eq!(args.iter().filter(|a| *a == "-drive").count(), 3);
    }

    #[test]
    fn parses_cli_disks_and_checks_them() {
        let d = Disk::parse("/x/y.img,ro", 3).unwrap();
        assert_eq!(d, Disk::new("/x/y.img", "disk3").read_only());
        let d = Disk::parse("/x/y.img", 0).unwrap();
        assert!(!d.read_only);
        assert_eq!(d.cache, DiskCache::Unsafe);
        assert!(Disk::parse(",ro", 0).is_err());

        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("a.img");
        std::fs::write(&img, [0u8; 512]).unwrap();
        Disk::new(&img, "ok").check(0).unwrap();
        let e = format!(
            "{:#}",
            Disk::new(dir.path().join("none"), "x")
                .check(1)
                .unwrap_err()
        );
        assert!(e.contains("disk 1") && e.contains("none"), "{e}");
        assert!(Disk::new(&img, "has space").check(0).is_err());
        assert!(Disk::new(&img, "a".repeat(21)).check(0).is_err());
    }

    #[test]
    fn setup_failures_fail_the_outcome_and_say_why() {
        let marker = init::marker("abc");
        let mut st = State::default();
        let t = Instant::now();
        for l in [
            "COLINUX-TESTHOST[abc]: SETUP-FAIL the kernel module ext4 did not load: insmod x: No such file",
            "COLINUX-TESTHOST[abc]: EXIT 125",
            "COLINUX-TESTHOST[abc]: KLOG CLEAN",
            "COLINUX-TESTHOST[abc]: RESULT FAIL 125",
        ] {
            st.parse(l, &marker, t);
        }
        let s = Scenario::new("t", "true");
        let o = st.outcome(OutcomeInput {
            s: &s,
            log: PathBuf::from("x.log"),
            console: String::new(),
            tail: vec![],
            killed_at_limit: false,
            status: None,
            qemu_stderr: String::new(),
            duration: Duration::ZERO,
        });
        assert!(!o.passed);
        assert!(
            o.reason.contains("module ext4 did not load"),
            "{}",
            o.reason
        );
        assert!(!o.reason.contains("status 125"), "{}", o.reason);
    }

    #[test]
    fn sanitizes_names() {
        assert_eq!(sanitize("smoke test/1"), "smoke_test_1");
        assert_eq!(sanitize(""), "scenario");
        assert_eq!(sanitize(".."), "scenario..");
    }
}
