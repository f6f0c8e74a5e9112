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

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{Forward, Proto};
use crate::helper::{Helper, Kind};

/// The environment variable naming the passt program (else `passt` is
/// looked up in `PATH`).
pub const PASST_ENV: &str = "COLINUX_PASST";
/// The MTU passt announces by DHCP: the guest's receive buffers hold
/// standard Ethernet frames (the device offers this MTU too).
pub const MTU: u16 = 1500;
/// How long a just-started passt is watched for an early exit (a bad
/// option, no usable host interface) before the guest starts.
pub const STARTUP_WATCH: Duration = Duration::from_millis(300);

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

/// A running passt.
#[derive(Debug)]
pub struct Passt {
    iface: String,
    helper: Helper,
}

/// passt as a supervised helper.
const PASST: Kind = Kind {
    what: "passt",
    down: "the guest's user-mode network is down",
    interesting,
};

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
            .args(arguments(forwards));
        let helper = Helper::spawn(iface, PASST, program, cmd, fd)?;
        drop(theirs);
        let pid = helper.pid();
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
                helper,
            },
            ours,
        ))
    }

    /// passt's process id.
    pub fn pid(&self) -> u32 {
        self.helper.pid()
    }

    /// How passt ended, if it has.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.helper.exit_status()
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
                    self.helper.last_words()
                );
            }
            if Instant::now() >= until {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// End passt (its socket should be closed first: it then exits by
    /// itself); wait for it.
    pub fn stop(&mut self) {
        self.helper.stop();
    }
}
