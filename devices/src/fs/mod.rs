//! cofs: host directories shared with the guest, as virtio-fs devices
//! served by virtiofsd over vhost-user.
//!
//! A share (`cofsN=HOSTDIR[,ro][,cache=never|auto]`) is a virtio-fs device whose tag is
//! `cofsN`; the guest mounts it with Linux's own file system
//! (`mount -t virtiofs cofs0 /mnt`: FUSE over a virtio device).
//!
//! **Why virtiofsd as a separate vhost-user back end.** The FUSE server is
//! the Rust `virtiofsd` (crates.io), run as its own process per share and
//! driven over vhost-user, with the daemon as the front end (the `vhost`
//! crate's `vhost-user-frontend`). It is what virtiofsd was built and
//! hardened to be: it sandboxes itself (mount/pid/net namespaces or a
//! chroot, seccomp, dropped capabilities) so a guest that finds a bug in
//! the FUSE server reaches a jailed process holding one directory, not
//! the daemon that holds the driver and every device. Linking it into the
//! daemon as a library would share the daemon's privileges and address
//! space with the most complex, most guest-exposed code we run, and lose
//! its sandbox (which is per process). The cost is a process per share,
//! supervised like passt ([`virtiofsd`]).
//!
//! **How the pieces meet.** The transport (ours) serves the device's
//! status and config space (`tag`, `num_request_queues` = 1); the back
//! end serves the queues:
//!
//! - guest memory: `SET_MEM_TABLE` with the regions the back ends see
//!   (guest RAM without the virtio table), each a mapping of the host
//!   driver's file (`mmap` offset = guest-physical address), so virtiofsd
//!   maps the guest's pages itself; ring addresses are given as the
//!   daemon's own virtual addresses of the same regions, which is what
//!   vhost-user translates through the table;
//! - kicks: the queue's eventfd the host driver signals (IOEVENTFD) goes
//!   straight to virtiofsd (`SET_VRING_KICK`): a guest's notification
//!   never passes through the daemon;
//! - interrupts: virtiofsd signals a call eventfd (`SET_VRING_CALL`)
//!   that the host driver has bound to the device's line with its ISR
//!   word (IRQFD with `COOPERATIVE_IRQFD_ISR`,
//!   [`VirtioDevice::used_eventfds`]): virtiofsd's signal sets the
//!   used-buffer bit and raises the line in the kernel, so an answer
//!   reaches the guest with no daemon thread woken on the way (our
//!   transport's guest driver reads `isr` to know a queue has work, so
//!   a plain line eventfd would not do).
//!
//! **Ownership**: when the daemon (so virtiofsd) runs as root and the
//! share belongs to another user, the guest's root is that user on the
//! share, both ways (virtiofsd's `--translate-uid/gid=map:0:UID:1`):
//! files the guest's root creates belong to the share's owner, not to
//! host root, and files of the owner look like root's in the guest. Other
//! ids pass as they are.
//!
//! **Cache mode** ([`virtiofsd::Cache`], per share): `never` (the
//! default): the guest caches no data, attributes or names of the share,
//! so what one side does is seen by the other at its next system call;
//! the 6.1 guest cannot map its files `MAP_SHARED` (FUSE direct I/O).
//! `cache=auto`: data through the guest's page cache, dropped at each
//! open, attributes and names kept for up to a second; shared mappings
//! work.
//!
//! **When virtiofsd dies** (killed, crashed), the guest's requests would
//! wait forever. The device sees its vhost-user connection hang up (the
//! process that accepted it runs inside virtiofsd's sandbox, a grandchild
//! of the daemon: the connection, not the child's exit, says that nobody
//! serves the queues) and takes the queues over: every request
//! virtiofsd had not answered and every later one is answered with a FUSE
//! error (`EIO`), so the guest's programs get I/O errors, not a hang.
//! virtiofsd serves one request at a time in ring order
//! (`--thread-pool-size=0`), so the unanswered requests are exactly those
//! past the used ring's index. It keeps EVENT_IDX's `avail_event` up to
//! date, or the guest's driver would stop kicking.
//!
//! **The descriptor virtiofsd gets** is the host driver's file itself
//! (SET_MEM_TABLE passes it): virtiofsd could issue the driver's ioctls
//! on it, not only `mmap()` it. docs/SECURITY.md ("cofs") says what that
//! allows and the memory-only descriptor that would close it.

pub mod virtiofsd;

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{bail, Context, Result};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ids::VIRTIO_ID_FS;
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::virtio::{Activation, GuestRam, Interrupt, VirtioDevice, INDEX_WENT_BACK};
pub use virtiofsd::Cache;

/// Each queue's size.
pub const QUEUE_SIZE: u16 = 256;
/// Request queues (virtiofsd serves one).
pub const REQUEST_QUEUES: u32 = 1;
/// Bytes of the tag in the config space (`struct virtio_fs_config`).
pub const TAG_LEN: usize = 36;
/// The FUSE error every request gets once virtiofsd is gone.
pub const DEAD_ERRNO: i32 = libc::EIO;

/// A share as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsConfig {
    /// N of `cofsN`.
    pub unit: u32,
    /// The host directory (absolute, as given after checking it).
    pub dir: PathBuf,
    pub read_only: bool,
    /// The cache mode (`cache=`).
    pub cache: Cache,
}

impl FsConfig {
    /// `HOSTDIR[,ro|,rw][,cache=never|auto]` of a `cofsN=` value,
    /// checked: the directory must exist and be a directory we can read.
    /// Relative paths are made absolute (virtiofsd may run elsewhere).
    /// Options are the comma-separated words at the end that have no `/`
    /// (an unknown last word is an error; an unknown word before an option
    /// is part of the directory's name).
    pub fn parse(unit: u32, value: &str) -> Result<FsConfig> {
        let mut dir = value;
        let mut read_only = None;
        let mut cache = None;
        while let Some((d, opt)) = dir.rsplit_once(',') {
            if opt.contains('/') {
                break;
            }
            let (what, new) = match opt {
                "ro" | "rw" => ("ro/rw", read_only.replace(opt == "ro").is_some()),
                _ => match opt.strip_prefix("cache=") {
                    Some(mode) => ("cache=", cache.replace(Cache::parse(mode)?).is_some()),
                    // Before an option: part of the directory's name.
                    None if dir.len() < value.len() => break,
                    None => bail!(
                        "{opt:?} is not an option of a share (ro, rw, cache=never or cache=auto)"
                    ),
                },
            };
            if new {
                bail!("{what} given twice");
            }
            dir = d;
        }
        let read_only = read_only.unwrap_or(false);
        let cache = cache.unwrap_or_default();
        if dir.is_empty() {
            bail!("no host directory given");
        }
        let meta = std::fs::metadata(dir).with_context(|| dir.to_string())?;
        if !meta.is_dir() {
            bail!("{dir} is not a directory (a share is a host directory)");
        }
        std::fs::read_dir(dir).with_context(|| format!("{dir} cannot be read"))?;
        let dir = std::fs::canonicalize(dir).with_context(|| dir.to_string())?;
        Ok(FsConfig {
            unit,
            dir,
            read_only,
            cache,
        })
    }

    /// The tag the guest mounts it by: `cofsN`.
    pub fn tag(&self) -> String {
        format!("cofs{}", self.unit)
    }

    /// The `cofsN=` value it stands for.
    pub fn value(&self) -> String {
        let mut v = self.dir.display().to_string();
        if self.read_only {
            v.push_str(",ro");
        }
        if self.cache != Cache::Never {
            v.push_str(&format!(",cache={}", self.cache));
        }
        v
    }
}

/// The config space of a share (`struct virtio_fs_config`: the tag, NUL
/// padded, then `num_request_queues`, little-endian).
pub fn config_space(tag: &str) -> Vec<u8> {
    let mut c = vec![0u8; TAG_LEN + 4];
    let t = tag.as_bytes();
    let n = t.len().min(TAG_LEN);
    c[..n].copy_from_slice(&t[..n]);
    c[TAG_LEN..].copy_from_slice(&REQUEST_QUEUES.to_le_bytes());
    c
}

/// A share: its virtiofsd and the vhost-user connection to it.
pub struct Fs {
    config: FsConfig,
    backend: virtiofsd::Virtiofsd,
    frontend: Frontend,
    /// The front end's connection again: hung up once no virtiofsd
    /// process serves it any more (the one that accepted it, inside
    /// virtiofsd's sandbox, is not the child the daemon started).
    conn: Option<UnixStream>,
    /// The virtio features virtiofsd offers.
    backend_features: u64,
    /// virtiofsd's call eventfd (all queues), bound by the host driver.
    call: Arc<EventFd>,
    worker: Option<Worker>,
}

impl std::fmt::Debug for Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fs")
            .field("config", &self.config)
            .field("backend", &self.backend)
            .field("backend_features", &self.backend_features)
            .field("conn", &self.conn)
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Worker {
    stop: Arc<EventFd>,
    thread: JoinHandle<()>,
    /// The queues' indexes (for GET_VRING_BASE at reset).
    queues: Vec<usize>,
}

impl Fs {
    /// Start virtiofsd for `config` and greet it over vhost-user; refused
    /// when virtiofsd is missing, exits at once or does not speak what we
    /// need.
    pub fn open(config: FsConfig) -> Result<Fs> {
        let program = virtiofsd::program().with_context(|| config.tag())?;
        Fs::open_with(config, &program)
    }

    /// [`Fs::open`] with the virtiofsd at `program`.
    pub fn open_with(config: FsConfig, program: &std::path::Path) -> Result<Fs> {
        let name = config.tag();
        let (backend, sock) = virtiofsd::Virtiofsd::start(
            &name,
            program,
            &virtiofsd::Options {
                dir: config.dir.clone(),
                read_only: config.read_only,
                cache: config.cache,
                // SAFETY: geteuid cannot fail and touches no memory.
                guest_root_as: virtiofsd::guest_root_as(&config.dir, unsafe { libc::geteuid() })?,
            },
        )?;
        let conn = sock
            .try_clone()
            .context("cannot duplicate the vhost-user socket")?;
        let (frontend, backend_features) = match greet(sock, &name) {
            Ok(f) => f,
            Err(e) => {
                // Its own words say more than a closed socket does.
                backend.check_alive().context(format!("{e:#}"))?;
                return Err(e);
            }
        };
        tracing::info!(
            "{name}: {}{}, cache={} (virtiofsd pid {})",
            config.dir.display(),
            if config.read_only { ", read-only" } else { "" },
            config.cache,
            backend.pid()
        );
        Ok(Fs {
            config,
            backend,
            frontend,
            conn: Some(conn),
            backend_features,
            call: Arc::new(EventFd::new(EFD_NONBLOCK).context("cannot make an eventfd")?),
            worker: None,
        })
    }

    /// The virtiofsd process the daemon started.
    pub fn virtiofsd_pid(&self) -> u32 {
        self.backend.pid()
    }

    /// `cofsN`.
    pub fn tag(&self) -> String {
        self.config.tag()
    }

    fn start_backend(&mut self, a: &Activation, call: &EventFd) -> Result<()> {
        let fe = &mut self.frontend;
        // What the guest's driver accepted (the transport checked it
        // against what we offered, which virtiofsd has: `greet`).
        let features = (a.features & self.backend_features)
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        fe.set_features(features).context("SET_FEATURES")?;
        let regions = a
            .mem
            .iter()
            .map(VhostUserMemoryRegionInfo::from_guest_region)
            .collect::<std::result::Result<Vec<_>, _>>()
            .context("guest RAM is not a file mapping")?;
        fe.set_mem_table(&regions).context("SET_MEM_TABLE")?;
        for (i, q, kick) in &a.queues {
            let hva = |gpa: u64, what: &str| -> Result<u64> {
                a.mem
                    .get_host_address(GuestAddress(gpa))
                    .map(|p| p as u64)
                    .with_context(|| format!("queue {i}: its {what} at {gpa:#x} is not in RAM"))
            };
            fe.set_vring_num(*i, q.size()).context("SET_VRING_NUM")?;
            fe.set_vring_addr(
                *i,
                &VringConfigData {
                    queue_max_size: q.max_size(),
                    queue_size: q.size(),
                    flags: 0,
                    desc_table_addr: hva(q.desc_table(), "descriptor table")?,
                    used_ring_addr: hva(q.used_ring(), "used ring")?,
                    avail_ring_addr: hva(q.avail_ring(), "available ring")?,
                    log_addr: None,
                },
            )
            .context("SET_VRING_ADDR")?;
            fe.set_vring_base(*i, 0).context("SET_VRING_BASE")?;
            fe.set_vring_call(*i, call).context("SET_VRING_CALL")?;
            fe.set_vring_kick(*i, kick).context("SET_VRING_KICK")?;
            fe.set_vring_enable(*i, true).context("SET_VRING_ENABLE")?;
        }
        Ok(())
    }
}

/// The vhost-user greeting: owner, features, protocol features; the
/// front end and virtiofsd's virtio features.
fn greet(sock: UnixStream, name: &str) -> Result<(Frontend, u64)> {
    let mut fe = Frontend::from_stream(sock, 1 + u64::from(REQUEST_QUEUES));
    let ctx = |what: &str| format!("{name}: vhost-user {what} with virtiofsd");
    fe.set_owner().with_context(|| ctx("SET_OWNER"))?;
    let features = fe.get_features().with_context(|| ctx("GET_FEATURES"))?;
    let need = (1u64 << VIRTIO_F_VERSION_1)
        | (1 << VIRTIO_RING_F_EVENT_IDX)
        | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
    if features & need != need {
        bail!("{name}: virtiofsd offers features {features:#x}, without some of {need:#x}");
    }
    let protocol = fe
        .get_protocol_features()
        .with_context(|| ctx("GET_PROTOCOL_FEATURES"))?;
    fe.set_protocol_features(protocol & VhostUserProtocolFeatures::MQ)
        .with_context(|| ctx("SET_PROTOCOL_FEATURES"))?;
    Ok((fe, features))
}

impl VirtioDevice for Fs {
    fn name(&self) -> String {
        self.tag()
    }

    fn device_type(&self) -> u32 {
        VIRTIO_ID_FS
    }

    fn features(&self) -> u64 {
        0
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE; 1 + REQUEST_QUEUES as usize]
    }

    fn config(&self) -> Vec<u8> {
        config_space(&self.tag())
    }

    fn used_eventfds(&self) -> Vec<Arc<EventFd>> {
        vec![self.call.clone()]
    }

    fn activate(&mut self, a: Activation) -> Result<()> {
        self.reset();
        if a.queues.len() != 1 + REQUEST_QUEUES as usize {
            bail!(
                "{} of its {} queues are ready",
                a.queues.len(),
                1 + REQUEST_QUEUES
            );
        }
        let call = self.call.clone();
        let stop = Arc::new(EventFd::new(EFD_NONBLOCK).context("cannot make an eventfd")?);
        let conn = self
            .conn
            .as_ref()
            .context("the share is closed")?
            .try_clone()
            .context("cannot duplicate the vhost-user socket")?;
        let name = self.tag();
        // A virtiofsd already gone: the device answers from the start.
        let alive = self.backend.exit_status().is_none();
        if alive {
            if let Err(e) = self.start_backend(&a, &call) {
                if self.backend.exit_status().is_none() {
                    return Err(e.context("cannot hand the queues to virtiofsd"));
                }
                tracing::warn!("{name}: {e:#} (virtiofsd is gone)");
            }
        }
        let queues: Vec<usize> = a.queues.iter().map(|(i, _, _)| *i).collect();
        let mut takeover = Takeover {
            mem: a.mem,
            queues: a.queues,
            interrupt: a.interrupt,
            name: name.clone(),
            answered: 0,
        };
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                if let Err(e) = takeover.run(&stop2, &conn) {
                    tracing::error!("{name}: the device stopped: {e:#}");
                }
            })
            .context("cannot start the share's thread")?;
        self.worker = Some(Worker {
            stop,
            thread,
            queues,
        });
        Ok(())
    }

    fn reset(&mut self) {
        if let Some(w) = self.worker.take() {
            let _ = w.stop.write(1);
            if w.thread.join().is_err() {
                tracing::error!("{}: its thread panicked", self.tag());
            }
            if self.backend.exit_status().is_none() {
                // GET_VRING_BASE stops a ring (vhost-user).
                for i in w.queues {
                    if let Err(e) = self.frontend.get_vring_base(i) {
                        tracing::warn!("{}: stopping queue {i}: {e}", self.tag());
                    }
                }
            }
        }
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        self.reset();
        // Closing the connection ends virtiofsd: replace it with a closed
        // one, drop our duplicate, then wait for it.
        if let Ok((a, _b)) = UnixStream::pair() {
            self.frontend = Frontend::from_stream(a, 1);
        }
        self.conn = None;
        self.backend.stop();
    }
}

/// The share's thread: waits for virtiofsd's connection to hang up (its
/// answers reach the guest through the host driver, not this thread);
/// then answers the guest's requests with errors.
struct Takeover {
    mem: GuestRam,
    queues: Vec<(usize, Queue, Arc<EventFd>)>,
    interrupt: Interrupt,
    name: String,
    /// Requests answered with an error since virtiofsd died.
    answered: u64,
}

fn pollfd(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

impl Takeover {
    fn run(&mut self, stop: &EventFd, conn: &UnixStream) -> Result<()> {
        loop {
            let mut fds = [
                pollfd(stop.as_raw_fd()),
                // Only the hang-up: replies are read by the front end.
                libc::pollfd {
                    fd: conn.as_raw_fd(),
                    events: libc::POLLRDHUP,
                    revents: 0,
                },
            ];
            if !crate::poll::poll(&mut fds, None).context("poll")? {
                continue;
            }
            if fds[0].revents != 0 {
                return Ok(());
            }
            if fds[1].revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
                break;
            }
        }
        // No virtiofsd serves the queues any more (its last answers were
        // signalled through the host driver): ours from here.
        for (_, q, _) in &mut self.queues {
            let used = q
                .used_idx(&self.mem, std::sync::atomic::Ordering::Acquire)
                .context("reading the used ring's index")?;
            q.set_next_avail(used.0);
            q.set_next_used(used.0);
        }
        tracing::warn!(
            "{}: virtiofsd hung up: answering the guest's requests with EIO",
            self.name
        );
        loop {
            // Drain, then tell the driver where to kick next
            // (EVENT_IDX's avail_event), draining again what came
            // meanwhile.
            let mut promised = false;
            loop {
                let any = self.fail_all()?;
                if promised && !any {
                    bail!("{INDEX_WENT_BACK}");
                }
                let mut again = false;
                for (_, q, _) in &mut self.queues {
                    again |= q
                        .enable_notification(&self.mem)
                        .context("writing the used ring's avail_event")?;
                }
                if any {
                    self.interrupt.signal_used()?;
                }
                if !again {
                    break;
                }
                promised = true;
            }
            let mut fds: Vec<_> = std::iter::once(pollfd(stop.as_raw_fd()))
                .chain(self.queues.iter().map(|(_, _, k)| pollfd(k.as_raw_fd())))
                .collect();
            if !crate::poll::poll(&mut fds, None).context("poll")? {
                continue;
            }
            if fds[0].revents != 0 {
                return Ok(());
            }
            for (_, _, k) in &self.queues {
                let _ = k.read();
            }
        }
    }

    /// Answer every available request with [`DEAD_ERRNO`]; whether any
    /// was.
    fn fail_all(&mut self) -> Result<bool> {
        let mut any = false;
        for (i, q, _) in &mut self.queues {
            let max = q.size();
            while let Some(chain) = q.pop_descriptor_chain(&self.mem) {
                let head = chain.head_index();
                let len = match crate::virtio::read_chain(chain, max) {
                    Ok(descs) => fail_request(&self.mem, &descs),
                    Err(e) => {
                        tracing::warn!("{}: queue {i}: {e:#}", self.name);
                        0
                    }
                };
                q.add_used(&self.mem, head, len)
                    .context("writing the used ring")?;
                any = true;
                self.answered += 1;
                if self.answered <= 3 || self.answered.is_power_of_two() {
                    tracing::debug!(
                        "{}: {} requests answered with EIO",
                        self.name,
                        self.answered
                    );
                }
            }
        }
        Ok(any)
    }
}

/// Bytes of `struct fuse_in_header` up to and including `unique`, and of
/// `struct fuse_out_header`.
const IN_UNIQUE_END: usize = 16;
const OUT_HEADER: usize = 16;

/// Write a FUSE error reply for the request in `descs` (readable ones
/// first: the request, then writable ones for the reply); the bytes
/// written (0 for a request that wants no reply, e.g. FORGET).
fn fail_request(mem: &GuestRam, descs: &[virtio_queue::desc::split::Descriptor]) -> u32 {
    let Some(req) = descs.iter().find(|d| !d.is_write_only()) else {
        return 0;
    };
    let Some(out) = descs.iter().find(|d| d.is_write_only()) else {
        return 0;
    };
    if (req.len() as usize) < IN_UNIQUE_END || (out.len() as usize) < OUT_HEADER {
        return 0;
    }
    let mut unique = [0u8; 8];
    let Some(at) = req.addr().checked_add(8) else {
        return 0;
    };
    if mem.read_slice(&mut unique, at).is_err() {
        return 0;
    }
    let mut reply = [0u8; OUT_HEADER];
    reply[0..4].copy_from_slice(&(OUT_HEADER as u32).to_le_bytes());
    reply[4..8].copy_from_slice(&(-DEAD_ERRNO).to_le_bytes());
    reply[8..16].copy_from_slice(&unique);
    match mem.write_slice(&reply, out.addr()) {
        Ok(()) => OUT_HEADER as u32,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests;
