//! The user-mode NAT back end: passt, started and supervised by the
//! daemon.
//!
//! passt (Debian's `passt` package) is a maintained user-mode network
//! stack: it gives the guest DHCP, DNS forwarding, IPv4 and IPv6, and
//! forwards host ports to the guest, all without root or host
//! configuration, by turning the guest's frames into ordinary sockets of
//! the user running it. Debian 12's version speaks QEMU's stream protocol
//! (a 4-byte big-endian length, then the Ethernet frame) on a connected
//! socket it is handed with `--fd`; the daemon makes a socket pair, keeps
//! one end ([`super::backend::Stream`]) and gives passt the other.
//!
//! passt runs in the foreground as the daemon's child: its log lines go
//! to the daemon's log (`ethN: passt: …`), its exit is reported as an
//! error (the interface is then down for the guest), and it ends when the
//! daemon closes its end of the socket (also when the daemon is killed:
//! the kernel closes it). Host ports it is to forward are checked free
//! before it starts, because passt itself only warns when it cannot bind
//! one.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{Forward, Proto};

/// The environment variable naming the passt program (else `passt` is
/// looked up in `PATH`).
pub const PASST_ENV: &str = "COLINUX_PASST";
/// The MTU passt announces by DHCP: the guest's receive buffers hold
/// standard Ethernet frames (the device offers this MTU too).
pub const MTU: u16 = 1500;
/// How long a just-started passt is watched for an early exit (a bad
/// option, no usable host interface) before the guest starts.
pub const STARTUP_WATCH: Duration = Duration::from_millis(300);
/// How long passt has to exit once its socket is closed before it is
/// killed.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Lines of passt's output kept for error messages.
const KEEP_LINES: usize = 20;

/// The passt program: `$COLINUX_PASST`, else `passt` in `PATH`.
pub fn program() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(PASST_ENV) {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join("passt"))
        .find(|p| p.is_file())
        .context(
            "the user-mode network (slirp) needs passt, which is not in PATH \
             (install Debian's passt package, or set COLINUX_PASST)",
        )
}

/// Refuse host ports something else already listens on (passt would
/// only warn and forward nothing).
pub fn check_ports_free(forwards: &[Forward]) -> Result<()> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
    for f in forwards {
        let addrs = [
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, f.host)),
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, f.host)),
        ];
        for (i, a) in addrs.iter().enumerate() {
            let r = match f.proto {
                Proto::Tcp => TcpListener::bind(a).map(drop),
                Proto::Udp => UdpSocket::bind(a).map(drop),
            };
            match r {
                Ok(()) => {}
                // A host without IPv6.
                Err(e)
                    if i == 1
                        && matches!(
                            e.raw_os_error(),
                            Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL)
                        ) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
                    "host {} port {} is already in use: it cannot be forwarded to the guest",
                    f.proto,
                    f.host
                ),
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot listen on host {} port {}", f.proto, f.host)
                    })
                }
            }
        }
    }
    Ok(())
}

/// What the supervisor knows about the child.
#[derive(Debug, Default)]
struct ChildState {
    status: Option<ExitStatus>,
}

/// A running passt.
#[derive(Debug)]
pub struct Passt {
    iface: String,
    pid: u32,
    state: Arc<Mutex<ChildState>>,
    /// Set before the daemon ends passt itself (its exit is then no news).
    stopping: Arc<AtomicBool>,
    lines: Arc<Mutex<Vec<String>>>,
    waiter: Option<JoinHandle<()>>,
    logger: Option<JoinHandle<()>>,
}

/// The arguments passt gets besides `--fd`.
pub fn arguments(forwards: &[Forward]) -> Vec<String> {
    let mut args = vec![
        "--foreground".to_string(),
        "--stderr".to_string(),
        "--mtu".to_string(),
        MTU.to_string(),
    ];
    for f in forwards {
        args.push(match f.proto {
            Proto::Tcp => "--tcp-ports".to_string(),
            Proto::Udp => "--udp-ports".to_string(),
        });
        args.push(format!("{}:{}", f.host, f.guest));
    }
    args
}

/// Whether a line of passt's output is worth the daemon's log (not
/// its complaints that there is no syslog to write to).
fn interesting(line: &str) -> bool {
    !(line.is_empty() || line.starts_with("Failed to send ") && line.ends_with(" to syslog"))
}

impl Passt {
    /// Start `program` for interface `iface` with `forwards`; the socket
    /// to talk to it (non-blocking).
    pub fn start(iface: &str, program: &Path, forwards: &[Forward]) -> Result<(Passt, UnixStream)> {
        check_ports_free(forwards).with_context(|| iface.to_string())?;
        let (ours, theirs) = UnixStream::pair().context("cannot make a socket pair for passt")?;
        ours.set_nonblocking(true)
            .context("cannot make passt's socket non-blocking")?;
        let fd: RawFd = theirs.as_raw_fd();
        let mut cmd = Command::new(program);
        cmd.arg("--fd")
            .arg(fd.to_string())
            .args(arguments(forwards))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: between fork and exec the closure only makes two system
        // calls on plain integers (async-signal-safe): passt's end of the
        // socket is kept open across exec, and passt is told to end with
        // the daemon's thread that started it.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("{iface}: cannot start {}", program.display()))?;
        drop(theirs);
        let pid = child.id();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let logger = child.stderr.take().map(|err| {
            let (lines, iface) = (lines.clone(), iface.to_string());
            std::thread::Builder::new()
                .name(format!("{iface}-passt-log"))
                .spawn(move || {
                    for line in BufReader::new(err).lines() {
                        let Ok(line) = line else { break };
                        let line = line.trim_end().to_string();
                        if !interesting(&line) {
                            continue;
                        }
                        tracing::info!("{iface}: passt: {line}");
                        if let Ok(mut l) = lines.lock() {
                            if l.len() == KEEP_LINES {
                                l.remove(0);
                            }
                            l.push(line);
                        }
                    }
                })
        });
        let logger = match logger {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e).context("cannot start a thread for passt's log");
            }
            None => None,
        };
        let state = Arc::new(Mutex::new(ChildState::default()));
        let stopping = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (state, stopping, iface, lines) = (
                state.clone(),
                stopping.clone(),
                iface.to_string(),
                lines.clone(),
            );
            std::thread::Builder::new()
                .name(format!("{iface}-passt"))
                .spawn(move || supervise(child, &iface, &state, &stopping, &lines))
                .context("cannot start a thread to watch passt")?
        };
        tracing::info!(
            "{iface}: user-mode network: {} (pid {pid}){}",
            program.display(),
            forwards
                .iter()
                .map(|f| format!(", {} host port {} → guest {}", f.proto, f.host, f.guest))
                .collect::<String>()
        );
        Ok((
            Passt {
                iface: iface.to_string(),
                pid,
                state,
                stopping,
                lines,
                waiter: Some(waiter),
                logger,
            },
            ours,
        ))
    }

    /// passt's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// How passt ended, if it has.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.state.lock().ok().and_then(|s| s.status)
    }

    /// Watch the new passt for `how_long`: an error (with its last words)
    /// if it exits meanwhile.
    pub fn check_started(&self, how_long: Duration) -> Result<()> {
        let until = Instant::now() + how_long;
        loop {
            if let Some(status) = self.exit_status() {
                // Let the log thread catch up with its last lines.
                std::thread::sleep(Duration::from_millis(50));
                bail!(
                    "{}: passt exited at once ({status}){}",
                    self.iface,
                    self.last_words()
                );
            }
            if Instant::now() >= until {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn last_words(&self) -> String {
        let lines = self.lines.lock().map(|l| l.clone()).unwrap_or_default();
        if lines.is_empty() {
            String::new()
        } else {
            format!(": {}", lines.join(" / "))
        }
    }

    /// End passt (its socket should be closed first: it then exits by
    /// itself); wait for it.
    pub fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let until = Instant::now() + STOP_GRACE;
        let mut signalled = false;
        while self.exit_status().is_none() {
            if Instant::now() >= until && !signalled {
                self.signal(libc::SIGKILL);
                signalled = true;
            }
            if Instant::now() >= until + STOP_GRACE {
                tracing::error!("{}: passt (pid {}) does not end", self.iface, self.pid);
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(w) = self.waiter.take() {
            let _ = w.join();
        }
        if let Some(l) = self.logger.take() {
            let _ = l.join();
        }
    }

    fn signal(&self, sig: i32) {
        // The child is reaped only with the state's lock held, after
        // `status` is set: while it is unset, the pid is still passt's.
        if let Ok(s) = self.state.lock() {
            if s.status.is_none() {
                if let Ok(pid) = libc::pid_t::try_from(self.pid) {
                    // SAFETY: kill with plain integers, on our own child
                    // not yet reaped.
                    unsafe { libc::kill(pid, sig) };
                }
            }
        }
    }
}

impl Drop for Passt {
    fn drop(&mut self) {
        if self.waiter.is_some() {
            self.stop();
        }
    }
}

/// The supervisor thread: wait for passt to exit (without reaping it),
/// then reap it with the state locked and report the exit.
fn supervise(
    mut child: Child,
    iface: &str,
    state: &Mutex<ChildState>,
    stopping: &AtomicBool,
    lines: &Mutex<Vec<String>>,
) {
    let pid: libc::id_t = child.id();
    loop {
        // SAFETY: an all-zero siginfo_t is a valid value for waitid to
        // fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own child with a valid siginfo pointer;
        // WNOWAIT leaves it unreaped.
        let rc =
            unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 {
            break;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break;
        }
    }
    let Ok(mut s) = state.lock() else { return };
    let status = match child.wait() {
        Ok(status) => status,
        Err(e) => {
            tracing::error!("{iface}: cannot wait for passt: {e}");
            return;
        }
    };
    s.status = Some(status);
    drop(s);
    if !stopping.load(Ordering::SeqCst) {
        // Give the log thread a moment for passt's last lines.
        std::thread::sleep(Duration::from_millis(50));
        let words = lines.lock().map(|l| l.join(" / ")).unwrap_or_default();
        tracing::error!(
            "{iface}: passt exited ({status}): the guest's user-mode network is down{}",
            if words.is_empty() {
                String::new()
            } else {
                format!(" (passt said: {words})")
            }
        );
    } else {
        tracing::debug!("{iface}: passt ended ({status})");
    }
}
