//! The TAP back end: the guest's interface is a TAP device on the host,
//! whose other side the host configures (an address, a bridge: `ip link`,
//! see `docs/config.md`).
//!
//! `/dev/net/tun` is opened with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`: each
//! read and write carries the same 12-byte `virtio_net_hdr_v1` the guest
//! uses, so the guest's checksum and segmentation offloads on transmit
//! pass through to the host's stack unchanged. Receive offloads are off
//! (`TUNSETOFFLOAD 0`): the host hands the TAP whole, checksummed frames,
//! which fit the guest's receive buffers.
//!
//! A named TAP must exist (a persistent one: `ip tuntap add dev NAME mode
//! tap user USER`) and is left as it is. Without a name the daemon
//! creates one (`colinuxN`, which needs CAP_NET_ADMIN), brings its link
//! up, and the kernel deletes it when the daemon's descriptor closes —
//! also when the daemon is killed.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::backend::{Backend, HDR_LEN, MAX_FRAME};

/// `TUNSETIFF`, `TUNSETOFFLOAD`, `TUNSETVNETHDRSZ` (`<linux/if_tun.h>`).
const TUNSETIFF: u64 = 0x4004_54ca;
const TUNSETOFFLOAD: u64 = 0x4004_54d0;
const TUNSETVNETHDRSZ: u64 = 0x4004_54d8;
const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
const IFF_VNET_HDR: i16 = 0x4000;
/// The name pattern of the TAP devices the daemon creates.
pub const CREATED_PATTERN: &str = "colinux%d";

/// `struct ifreq` as TUNSETIFF and SIOC[GS]IFFLAGS use it.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: i16,
    _pad: [u8; 22],
}

/// A valid interface name (what the kernel accepts: 1 to 15 bytes, no
/// `/`, `:` or blanks, not `.` or `..`).
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        bail!("a network interface name has 1 to 15 characters");
    }
    if name == "." || name == ".." {
        bail!("{name:?} is not a network interface name");
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
    {
        bail!("{c:?} is not allowed in a network interface name");
    }
    Ok(())
}

/// An open TAP device.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    /// Made by the daemon (deleted when the descriptor closes).
    created: bool,
}

impl Tap {
    /// Attach to the existing TAP `name`, or create one when `None`.
    pub fn open(name: Option<&str>) -> Result<Tap> {
        if let Some(name) = name {
            check_name(name).with_context(|| format!("TAP {name:?}"))?;
            let sys = Path::new("/sys/class/net").join(name);
            if !sys.exists() {
                bail!(
                    "there is no network interface {name} (create the TAP first: \
                     ip tuntap add dev {name} mode tap user $USER)"
                );
            }
            if !sys.join("tun_flags").exists() {
                bail!("{name} is not a TAP device");
            }
        }
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .context("cannot open /dev/net/tun (the tun module?)")?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
            _pad: [0; 22],
        };
        let want = name.unwrap_or(CREATED_PATTERN);
        req.name[..want.len()].copy_from_slice(want.as_bytes());
        // SAFETY: TUNSETIFF reads and writes one struct ifreq, which `req`
        // is (with its full size).
        if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req) } != 0 {
            let e = std::io::Error::last_os_error();
            let what = name.unwrap_or("a new TAP device");
            return Err(match e.raw_os_error() {
                Some(libc::EBUSY) => {
                    anyhow::anyhow!("TAP {what} is busy (another guest or program has it open)")
                }
                Some(libc::EPERM) => anyhow::anyhow!(
                    "no permission to use {what} (a TAP's owner is set with \
                     `ip tuntap add dev NAME mode tap user USER`; creating one needs CAP_NET_ADMIN)"
                ),
                Some(libc::EINVAL) => {
                    anyhow::anyhow!("{what} is not a TAP device with a virtio-net header")
                }
                _ => anyhow::Error::new(e).context(format!("cannot attach to {what}")),
            });
        }
        let len = req
            .name
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(req.name.len());
        let actual = String::from_utf8_lossy(&req.name[..len]).into_owned();
        let hdr = HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int.
        if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETVNETHDRSZ as _, &hdr) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("TAP {actual}: cannot set the header size"));
        }
        // SAFETY: TUNSETOFFLOAD takes an unsigned long by value.
        if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETOFFLOAD as _, 0 as libc::c_ulong) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("TAP {actual}: cannot turn receive offloads off"));
        }
        let created = name.is_none();
        if created {
            if let Err(e) = link_up(&actual) {
                tracing::warn!("TAP {actual}: cannot bring its link up: {e:#}");
            }
        }
        tracing::info!(
            "TAP {actual}{}",
            if created {
                " created (it goes with the guest)"
            } else {
                ""
            }
        );
        Ok(Tap {
            file,
            name: actual,
            created,
        })
    }

    /// The TAP's name on the host.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Set IFF_UP on interface `name`.
fn link_up(name: &str) -> Result<()> {
    // SAFETY: a plain socket call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket");
    }
    // SAFETY: `fd` was just opened and is owned here only.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write one struct ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) } != 0 {
        return Err(std::io::Error::last_os_error()).context("SIOCGIFFLAGS");
    }
    req.flags |= libc::IFF_UP as i16;
    // SAFETY: as above.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) } != 0 {
        return Err(std::io::Error::last_os_error()).context("SIOCSIFFLAGS");
    }
    Ok(())
}

impl Backend for Tap {
    fn describe(&self) -> String {
        format!("TAP {}", self.name)
    }

    fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    fn can_send(&self) -> bool {
        true
    }

    fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        loop {
            match self.file.write(frame) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // The host's side is full, down (EIO) or refuses this
                // frame (EINVAL: a header it does not take): dropped, as
                // on a wire.
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock
                        || matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::EINVAL)) =>
                {
                    tracing::trace!("{}: frame dropped: {e}", self.name);
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<bool> {
        Ok(false)
    }

    fn recv(&mut self, out: &mut Vec<u8>) -> std::io::Result<bool> {
        out.resize(HDR_LEN + MAX_FRAME, 0);
        loop {
            match self.file.read(out) {
                Ok(n) if n >= HDR_LEN => {
                    out.truncate(n);
                    return Ok(true);
                }
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        if self.created {
            tracing::info!("TAP {}: deleted with the guest", self.name);
        }
    }
}
