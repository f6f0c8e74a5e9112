//! conet: the guest's network interfaces, as virtio-net back ends.
//!
//! An interface (`ethN=`) is a virtio-net device the guest drives with
//! Linux's own driver, and a host end ([`backend::Backend`]):
//!
//! - `slirp`: user-mode NAT by passt ([`passt`]), no root, no host
//!   configuration, with host ports forwarded to the guest;
//! - `tuntap`: a TAP device on the host ([`tap`]).
//!
//! Its MAC address is given or derived from the guest's name and the
//! interface's number ([`derived_mac`]: stable across boots, locally
//! administered). One worker thread per interface waits on the two
//! queues' kicks and the back end's descriptor: frames the guest
//! transmits go to the back end (a back end that cannot take more makes
//! the guest's transmit ring wait, never the daemon's run loop or the
//! console), frames from the back end fill the guest's receive buffers
//! (while the guest has none posted, the back end is not read). When the
//! back end fails (passt exited, the TAP went away) the interface's link
//! goes down for the guest (`VIRTIO_NET_F_STATUS`: the guest sees no
//! carrier) besides the error in the log. Chains are
//! checked as hostile: a chain outside guest RAM, of the wrong direction
//! or of an absurd length is returned unused and logged, never a panic.

pub mod backend;
pub mod passt;
pub mod tap;

use std::fmt;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{bail, Context, Result};
use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6,
    VIRTIO_NET_F_MAC, VIRTIO_NET_F_MTU, VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemory};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::virtio::{Activation, GuestRam, Interrupt, VirtioDevice, INDEX_WENT_BACK};
use backend::{Backend, HDR_LEN, MAX_FRAME};

/// Each queue's size.
pub const QUEUE_SIZE: u16 = 256;
/// The MTU the device announces (the guest's receive buffers hold a
/// standard Ethernet frame).
pub const MTU: u16 = passt::MTU;
/// Chains served in one go before the worker looks at its other work.
const BUDGET: usize = 64;

/// A transport protocol of a port forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// A host port forwarded to a guest port (user-mode NAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub proto: Proto,
    pub host: u16,
    pub guest: u16,
}

/// A MAC address.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Mac {
    type Err = anyhow::Error;

    /// `xx:xx:xx:xx:xx:xx` (or with `-`), a unicast address other than
    /// zero.
    fn from_str(s: &str) -> Result<Mac> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            bail!("{s:?} is not a MAC address (six hex bytes, e.g. 02:00:00:12:34:56)");
        }
        let mut b = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            if p.is_empty() || p.len() > 2 {
                bail!("{s:?} is not a MAC address (six hex bytes, e.g. 02:00:00:12:34:56)");
            }
            b[i] = u8::from_str_radix(p, 16)
                .map_err(|_| anyhow::anyhow!("{s:?} is not a MAC address: {p:?} is not hex"))?;
        }
        if b[0] & 1 != 0 {
            bail!("{s} is a multicast address: a guest's MAC address is unicast");
        }
        if b == [0; 6] {
            bail!("the MAC address 00:00:00:00:00:00 is not usable");
        }
        Ok(Mac(b))
    }
}

/// The MAC address interface `unit` of guest `guest` gets unless one is
/// given: FNV-1a of the two, in the locally administered unicast range.
pub fn derived_mac(guest: &str, unit: u32) -> Mac {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("colinux/{guest}/eth{unit}").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let h = h.to_be_bytes();
    let mut m = [h[0], h[1], h[2], h[3], h[4], h[5]];
    m[0] = (m[0] & 0xfc) | 0x02;
    Mac(m)
}

/// Where an interface's frames go on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    /// User-mode NAT (passt) with these forwards.
    Slirp { forwards: Vec<Forward> },
    /// A TAP device: an existing one by name, or one the daemon creates.
    Tap { name: Option<String> },
}

/// An `ethN=` value, parsed: the back end and the MAC address if given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSpec {
    pub backend: BackendConfig,
    pub mac: Option<Mac>,
}

/// A `tcp:HOSTPORT[:GUESTPORT]` (or `udp:`) item.
fn parse_forward(item: &str) -> Result<Option<Forward>> {
    let (proto, rest) = match item.split_once(':') {
        Some(("tcp", rest)) => (Proto::Tcp, rest),
        Some(("udp", rest)) => (Proto::Udp, rest),
        _ => return Ok(None),
    };
    let port = |p: &str| -> Result<u16> {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .with_context(|| format!("{item}: {p:?} is not a port (1 to 65535)"))
    };
    let (host, guest) = match rest.split_once(':') {
        Some((h, g)) => (port(h)?, port(g)?),
        None => {
            let p = port(rest)?;
            (p, p)
        }
    };
    Ok(Some(Forward { proto, host, guest }))
}

impl NetSpec {
    /// `slirp[,MAC][,tcp:HOSTPORT:GUESTPORT][,udp:HOSTPORT:GUESTPORT]…` or
    /// `tuntap[,NAME][,MAC]` (coLinux's forms; a name may be quoted).
    pub fn parse(value: &str) -> Result<NetSpec> {
        let mut items = value.split(',').map(str::trim);
        let kind = items.next().unwrap_or_default();
        let mut mac = None;
        let mut set_mac = |m: Mac| -> Result<()> {
            if mac.replace(m).is_some() {
                bail!("two MAC addresses");
            }
            Ok(())
        };
        match kind {
            "slirp" => {
                let mut forwards: Vec<Forward> = Vec::new();
                for item in items {
                    if let Some(f) = parse_forward(item)? {
                        if forwards
                            .iter()
                            .any(|o| o.proto == f.proto && o.host == f.host)
                        {
                            bail!("{} host port {} is forwarded twice", f.proto, f.host);
                        }
                        forwards.push(f);
                    } else if item.contains(':') || item.contains('-') {
                        set_mac(item.parse()?)?;
                    } else {
                        bail!(
                            "{item:?}: slirp takes a MAC address and tcp:HOSTPORT:GUESTPORT or \
                             udp:HOSTPORT:GUESTPORT forwards"
                        );
                    }
                }
                Ok(NetSpec {
                    backend: BackendConfig::Slirp { forwards },
                    mac,
                })
            }
            "tuntap" => {
                let mut name = None;
                for item in items {
                    if item.is_empty() {
                        continue;
                    }
                    if let Ok(m) = item.parse::<Mac>() {
                        set_mac(m)?;
                        continue;
                    }
                    let n = item.trim_matches('"');
                    tap::check_name(n).with_context(|| format!("{item:?}"))?;
                    if name.replace(n.to_string()).is_some() {
                        bail!("tuntap takes one TAP name (and a MAC address)");
                    }
                }
                Ok(NetSpec {
                    backend: BackendConfig::Tap { name },
                    mac,
                })
            }
            "" => bail!("no network kind: slirp or tuntap"),
            other => bail!(
                "{other:?} is not a network kind: slirp (user-mode NAT) or tuntap (a TAP device)"
            ),
        }
    }
}

/// A conet interface as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// N of `ethN`.
    pub unit: u32,
    pub mac: Mac,
    pub backend: BackendConfig,
}

/// A conet interface: the virtio-net device and its host end.
#[derive(Debug)]
pub struct Net {
    config: NetConfig,
    /// Taken by the worker while it runs, given back when it stops.
    backend: Option<Box<dyn Backend>>,
    passt: Option<passt::Passt>,
    /// TSO/checksum offloads towards the host (TAP only).
    offloads: bool,
    /// The link is up (the back end works); the config's `status`.
    link: Arc<AtomicBool>,
    worker: Option<Worker>,
}

#[derive(Debug)]
struct Worker {
    stop: Arc<EventFd>,
    thread: JoinHandle<Option<Box<dyn Backend>>>,
}

impl Net {
    /// Open interface `config`'s host end: start passt (refused when
    /// passt is missing, a forwarded port is taken or passt exits at once)
    /// or attach the TAP (refused when it does not exist, is busy or may
    /// not be used).
    pub fn open(config: NetConfig) -> Result<Net> {
        let iface = format!("eth{}", config.unit);
        let (backend, passt, offloads): (Box<dyn Backend>, _, _) = match &config.backend {
            BackendConfig::Slirp { forwards } => {
                let program = passt::program().with_context(|| iface.clone())?;
                let (p, sock) = passt::Passt::start(&iface, &program, forwards)?;
                p.check_started(passt::STARTUP_WATCH)?;
                (
                    Box::new(backend::Stream::new(
                        sock,
                        format!("passt (pid {})", p.pid()),
                    )),
                    Some(p),
                    false,
                )
            }
            BackendConfig::Tap { name } => {
                let t = tap::Tap::open(name.as_deref()).with_context(|| iface.clone())?;
                (Box::new(t), None, true)
            }
        };
        tracing::info!("{iface}: MAC {} on {}", config.mac, backend.describe());
        Ok(Net {
            config,
            backend: Some(backend),
            passt,
            offloads,
            link: Arc::new(AtomicBool::new(true)),
            worker: None,
        })
    }

    /// `ethN`.
    pub fn iface(&self) -> String {
        format!("eth{}", self.config.unit)
    }
}

impl VirtioDevice for Net {
    fn name(&self) -> String {
        self.iface()
    }

    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn features(&self) -> u64 {
        let mut f =
            (1u64 << VIRTIO_NET_F_MAC) | (1 << VIRTIO_NET_F_MTU) | (1 << VIRTIO_NET_F_STATUS);
        if self.offloads {
            f |= (1 << VIRTIO_NET_F_CSUM)
                | (1 << VIRTIO_NET_F_HOST_TSO4)
                | (1 << VIRTIO_NET_F_HOST_TSO6)
                | (1 << VIRTIO_NET_F_HOST_ECN);
        }
        f
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE, QUEUE_SIZE]
    }

    fn config(&self) -> Vec<u8> {
        use std::mem::{offset_of, size_of};
        use virtio_bindings::virtio_net::virtio_net_config as C;
        let mut c = vec![0u8; size_of::<C>()];
        c[offset_of!(C, mac)..offset_of!(C, mac) + 6].copy_from_slice(&self.config.mac.0);
        c[offset_of!(C, mtu)..offset_of!(C, mtu) + 2].copy_from_slice(&MTU.to_le_bytes());
        c[offset_of!(C, status)..offset_of!(C, status) + 2]
            .copy_from_slice(&link_status(self.link.load(Ordering::SeqCst)));
        c
    }

    fn activate(&mut self, a: Activation) -> Result<()> {
        self.reset();
        let mut rx = None;
        let mut tx = None;
        for (i, q, kick) in a.queues {
            match i {
                0 => rx = Some((q, kick)),
                1 => tx = Some((q, kick)),
                _ => {}
            }
        }
        let (Some(rx), Some(tx)) = (rx, tx) else {
            bail!("its receive and transmit queues are not both ready");
        };
        let stop = Arc::new(EventFd::new(EFD_NONBLOCK).context("cannot make an eventfd")?);
        let iface = self.iface();
        let mut serve = Serve {
            mem: a.mem,
            rx: rx.0,
            tx: tx.0,
            backend: self.backend.take(),
            interrupt: a.interrupt,
            iface: iface.clone(),
            link: self.link.clone(),
            pending: None,
            spare: Vec::new(),
            tx_frame: Vec::new(),
            flushing: false,
            dropped: 0,
            tx_frames: 0,
            rx_frames: 0,
        };
        let stop2 = stop.clone();
        let (rx_kick, tx_kick) = (rx.1, tx.1);
        let thread = std::thread::Builder::new()
            .name(iface.clone())
            .spawn(move || {
                if let Err(e) = serve.run(&rx_kick, &tx_kick, &stop2) {
                    tracing::error!("{iface}: the device stopped, it needs a reset: {e:#}");
                    if let Err(e) = serve.interrupt.needs_reset() {
                        tracing::error!("{iface}: cannot tell the guest: {e:#}");
                    }
                }
                serve.backend
            })
            .context("cannot start the interface's thread")?;
        self.worker = Some(Worker { stop, thread });
        Ok(())
    }

    fn reset(&mut self) {
        if let Some(w) = self.worker.take() {
            let _ = w.stop.write(1);
            match w.thread.join() {
                Ok(b) => self.backend = b,
                Err(_) => tracing::error!("{}: its thread panicked", self.iface()),
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.reset();
        // Closing passt's socket ends it; then wait for it.
        self.backend = None;
        if let Some(mut p) = self.passt.take() {
            p.stop();
        }
    }
}

/// The worker's state.
struct Serve {
    mem: GuestRam,
    rx: Queue,
    tx: Queue,
    /// `None` once it failed (the peer is gone): transmitted frames are
    /// then dropped, nothing is received.
    backend: Option<Box<dyn Backend>>,
    interrupt: Interrupt,
    iface: String,
    /// The link state the device's config shows.
    link: Arc<AtomicBool>,
    /// A frame from the back end waiting for a receive buffer.
    pending: Option<Vec<u8>>,
    /// The buffers frames are received into and transmitted from, kept
    /// between frames: a frame buffer (up to 64 KiB) allocated per frame
    /// costs an mmap and a munmap with musl's allocator, and a munmap in
    /// a threaded process interrupts every CPU running one of its threads
    /// (a TLB shootdown) — the guest's CPU among them.
    spare: Vec<u8>,
    tx_frame: Vec<u8>,
    /// The back end has bytes queued to write.
    flushing: bool,
    dropped: u64,
    /// Frames the guest transmitted / received (for the debug log).
    tx_frames: u64,
    rx_frames: u64,
}

/// The config's `status` field for a link that is up or down.
fn link_status(up: bool) -> [u8; 2] {
    let s = if up { VIRTIO_NET_S_LINK_UP as u16 } else { 0 };
    s.to_le_bytes()
}

/// Whether frame number `n` (from 1) of a direction is worth a debug
/// line: the first few, then at powers of two.
fn log_frame(n: u64) -> bool {
    n <= 16 || n.is_power_of_two()
}

/// For the debug log: the length and EtherType of a frame (header +
/// Ethernet frame).
fn frame_summary(frame: &[u8]) -> String {
    let eth = frame.get(HDR_LEN..).unwrap_or_default();
    match eth.get(12..14) {
        Some(t) => format!("{} bytes, type {:02x}{:02x}", eth.len(), t[0], t[1]),
        None => format!("{} bytes", eth.len()),
    }
}

/// One descriptor of a chain.
#[derive(Debug, Clone, Copy)]
struct Buf {
    addr: GuestAddress,
    len: u32,
    writable: bool,
}

fn bufs<M>(chain: virtio_queue::DescriptorChain<M>) -> Vec<Buf>
where
    M: std::ops::Deref,
    M::Target: GuestMemory,
{
    chain
        .map(|d| Buf {
            addr: d.addr(),
            len: d.len(),
            writable: d.is_write_only(),
        })
        .collect()
}

fn pollfd(fd: i32, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

impl Serve {
    fn run(&mut self, rx_kick: &EventFd, tx_kick: &EventFd, stop: &EventFd) -> Result<()> {
        let mut more = true;
        loop {
            if more {
                more = false;
                more |= self.transmit()?;
                more |= self.receive()?;
            }
            // (an array: nothing allocated per round)
            let mut fds = [
                pollfd(stop.as_raw_fd(), libc::POLLIN),
                pollfd(rx_kick.as_raw_fd(), libc::POLLIN),
                pollfd(tx_kick.as_raw_fd(), libc::POLLIN),
                pollfd(-1, 0),
            ];
            let mut n = 3;
            if let Some(b) = &self.backend {
                let mut ev = 0;
                if self.pending.is_none() {
                    ev |= libc::POLLIN;
                }
                if self.flushing {
                    ev |= libc::POLLOUT;
                }
                fds[3] = pollfd(b.fd(), ev);
                n = 4;
            }
            let timeout = if more { Some(Default::default()) } else { None };
            if !crate::poll::poll(&mut fds[..n], timeout).context("poll")? {
                continue;
            }
            if fds[0].revents != 0 {
                return Ok(());
            }
            if fds[1].revents != 0 {
                let _ = rx_kick.read();
                more = true;
            }
            if fds[2].revents != 0 {
                let _ = tx_kick.read();
                more = true;
            }
            if n == 4 && fds[3].revents != 0 {
                more = true;
            }
        }
    }

    /// The back end failed: report it, take the guest's link down, and
    /// from now on drop what the guest sends.
    fn backend_failed(&mut self, e: std::io::Error) {
        if let Some(b) = self.backend.take() {
            tracing::error!(
                "{}: {} failed: {e}; the interface's link is down",
                self.iface,
                b.describe()
            );
            self.link.store(false, Ordering::SeqCst);
            use virtio_bindings::virtio_net::virtio_net_config as C;
            let at = std::mem::offset_of!(C, status) as u64;
            if let Err(e) = self.interrupt.config_changed(at, &link_status(false)) {
                tracing::warn!(
                    "{}: cannot tell the guest its link is down: {e:#}",
                    self.iface
                );
            }
        }
        self.pending = None;
        self.flushing = false;
    }

    /// Send what the guest transmitted; whether there is more to do now.
    fn transmit(&mut self) -> Result<bool> {
        if let Some(b) = self.backend.as_mut() {
            match b.flush() {
                Ok(f) => self.flushing = f,
                Err(e) => self.backend_failed(e),
            }
        }
        let mem = self.mem.clone();
        let mut served = 0;
        let mut more = false;
        let mut frame = std::mem::take(&mut self.tx_frame);
        // The ring said more chains were there after the last round.
        let mut promised = false;
        'outer: loop {
            self.tx
                .disable_notification(&mem)
                .context("transmit ring")?;
            let before = served;
            loop {
                if served >= BUDGET {
                    more = true;
                    break 'outer;
                }
                if self.backend.as_ref().is_some_and(|b| !b.can_send()) {
                    // Resumed when the back end drains (POLLOUT).
                    break 'outer;
                }
                let Some(chain) = self.tx.pop_descriptor_chain(&mem) else {
                    break;
                };
                let head = chain.head_index();
                let bufs = bufs(chain);
                match read_chain(&mem, &bufs, &mut frame) {
                    Ok(()) => {
                        self.tx_frames += 1;
                        if log_frame(self.tx_frames) {
                            tracing::debug!(
                                "{}: transmit frame {}: {}",
                                self.iface,
                                self.tx_frames,
                                frame_summary(&frame)
                            );
                        }
                        if let Some(b) = self.backend.as_mut() {
                            if let Err(e) = b.send(&frame) {
                                self.backend_failed(e);
                            }
                        }
                    }
                    Err(e) => self.bad_chain("transmit", &e),
                }
                self.tx.add_used(&mem, head, 0).context("transmit ring")?;
                served += 1;
            }
            if promised && served == before {
                bail!("transmit ring: {INDEX_WENT_BACK}");
            }
            if !self.tx.enable_notification(&mem).context("transmit ring")? {
                break;
            }
            promised = true;
        }
        if let Some(b) = self.backend.as_mut() {
            match b.flush() {
                Ok(f) => self.flushing = f,
                Err(e) => self.backend_failed(e),
            }
        }
        self.tx_frame = frame;
        if served > 0 && self.tx.needs_notification(&mem).context("transmit ring")? {
            self.interrupt.signal_used()?;
        }
        Ok(more)
    }

    fn bad_chain(&mut self, what: &str, e: &anyhow::Error) {
        self.dropped += 1;
        // Every one at first, then every 1000th: a hostile guest does not
        // flood the log.
        if self.dropped <= 10 || self.dropped.is_multiple_of(1000) {
            tracing::warn!(
                "{}: bad {what} chain ({} so far): {e:#}",
                self.iface,
                self.dropped
            );
        }
    }

    /// Fill the guest's receive buffers from the back end; whether there
    /// is more to do now.
    fn receive(&mut self) -> Result<bool> {
        let mem = self.mem.clone();
        let mut served = 0;
        let mut more = false;
        // The ring said more buffers were there, after none were.
        let mut promised = false;
        self.rx.disable_notification(&mem).context("receive ring")?;
        loop {
            if served >= BUDGET {
                more = true;
                break;
            }
            if self.pending.is_none() {
                let Some(b) = self.backend.as_mut() else {
                    break;
                };
                let mut frame = std::mem::take(&mut self.spare);
                match b.recv(&mut frame) {
                    Ok(true) => self.pending = Some(frame),
                    Ok(false) => {
                        self.spare = frame;
                        break;
                    }
                    Err(e) => {
                        self.spare = frame;
                        self.backend_failed(e);
                        break;
                    }
                }
            }
            let Some(chain) = self.rx.pop_descriptor_chain(&mem) else {
                if promised {
                    bail!("receive ring: {INDEX_WENT_BACK}");
                }
                if self.rx.enable_notification(&mem).context("receive ring")? {
                    self.rx.disable_notification(&mem).context("receive ring")?;
                    promised = true;
                    continue;
                }
                // Waits for the guest to post buffers (its kick).
                break;
            };
            promised = false;
            let head = chain.head_index();
            let bufs = bufs(chain);
            let Some(mut frame) = self.pending.take() else {
                break;
            };
            // One buffer per frame (no mergeable buffers).
            if let Some(n) = frame.get_mut(10..HDR_LEN) {
                n.copy_from_slice(&1u16.to_le_bytes());
            }
            self.rx_frames += 1;
            if log_frame(self.rx_frames) {
                tracing::debug!(
                    "{}: receive frame {}: {} into {} buffer(s) of {} bytes",
                    self.iface,
                    self.rx_frames,
                    frame_summary(&frame),
                    bufs.len(),
                    bufs.iter().map(|b| u64::from(b.len)).sum::<u64>()
                );
            }
            let used = match write_chain(&mem, &bufs, &frame) {
                Ok(n) => n,
                Err(e) => {
                    self.bad_chain("receive", &e);
                    0
                }
            };
            self.spare = frame;
            self.rx.add_used(&mem, head, used).context("receive ring")?;
            served += 1;
        }
        if self.pending.is_none() {
            // Nothing waits for a buffer: let the guest's posts notify.
            let _ = self.rx.enable_notification(&mem);
        }
        if served > 0 && self.rx.needs_notification(&mem).context("receive ring")? {
            self.interrupt.signal_used()?;
        }
        Ok(more)
    }
}

/// The bytes of a transmit chain (readable descriptors only, header and
/// frame, at most `HDR_LEN + MAX_FRAME`) into `out`.
fn read_chain(mem: &GuestRam, bufs: &[Buf], out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    let mut total: usize = 0;
    for b in bufs {
        if b.writable {
            bail!("a writable descriptor in a transmit chain");
        }
        total = total.saturating_add(b.len as usize);
        if total > HDR_LEN + MAX_FRAME {
            bail!("a frame of more than {} bytes", HDR_LEN + MAX_FRAME);
        }
    }
    if total < HDR_LEN + 14 {
        bail!("a frame of {total} bytes (no header and Ethernet header)");
    }
    out.resize(total, 0);
    let mut at = 0;
    for b in bufs {
        let n = b.len as usize;
        mem.read_slice(&mut out[at..at + n], b.addr)
            .with_context(|| format!("reading {n} bytes at {:#x}", b.addr.0))?;
        at += n;
    }
    Ok(())
}

/// Write `frame` (header + Ethernet frame) into a receive chain; the bytes
/// written.
fn write_chain(mem: &GuestRam, bufs: &[Buf], frame: &[u8]) -> Result<u32> {
    let mut room: u64 = 0;
    for b in bufs {
        if !b.writable {
            bail!("a read-only descriptor in a receive chain");
        }
        room += u64::from(b.len);
    }
    if room < frame.len() as u64 {
        bail!(
            "a frame of {} bytes does not fit buffers of {room}: dropped",
            frame.len()
        );
    }
    let mut written = 0usize;
    for b in bufs {
        if written == frame.len() {
            break;
        }
        let n = (b.len as usize).min(frame.len() - written);
        mem.write_slice(&frame[written..written + n], b.addr)
            .with_context(|| format!("writing {n} bytes at {:#x}", b.addr.0))?;
        written += n;
    }
    Ok(u32::try_from(written).unwrap_or(u32::MAX))
}

/// The program the user-mode NAT runs, for checks before a guest starts.
pub fn passt_program() -> Result<PathBuf> {
    passt::program()
}

#[cfg(test)]
mod tests;
