//! cobd: the guest's block devices, as virtio-blk back ends.
//!
//! A unit (`cobdN=PATH`) is a raw image file or a host block device or
//! partition, opened once and locked (`flock`: exclusive for read-write,
//! shared for read-only), so an image in use by another guest is refused
//! before the guest starts. The guest sees a virtio-blk disk whose serial
//! is `cobdN` (the root file system image names it `/dev/cobdN` by a
//! udev rule; the daemon maps `root=/dev/cobdN` to the guest kernel's
//! name for it).
//!
//! The request model is ours (rust-vmm's virtio-blk crate is not
//! published): the virtio spec's section 5.2.6 — IN, OUT, FLUSH, GET_ID,
//! DISCARD and WRITE_ZEROES; anything else is answered UNSUPP. Several
//! requests are in flight at once: a dispatcher thread per disk waits on
//! the queue's kick eventfd and hands the chains, in ring order, to a
//! pool of [`WORKERS`] I/O threads, which do each request's I/O with
//! `preadv`/`pwritev` between the backing file and guest RAM (no copy;
//! `O_DIRECT` when the request is aligned, see [`Backing::transfer`])
//! and put it in the used ring as soon as it is done — out of order, as
//! virtio allows — interrupting the guest when EVENT_IDX says it wants to
//! be (see [`Engine`] for why threads rather than io_uring). FLUSH is
//! `fdatasync`: when the guest is told a flush completed, every write it
//! had seen complete before submitting the flush is on the backing store.
//! Every request is checked against the disk (sector range, lengths,
//! buffers inside guest RAM, read-only) and a bad one gets IOERR, never a
//! panic. Stopping the disk (reset, shutdown) drops the queued requests,
//! waits for those in flight and joins every thread.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{bail, Context, Result};
use virtio_bindings::virtio_blk::*;
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::sparse::Sparse;
use crate::virtio::{read_chain, Activation, GuestRam, Interrupt, VirtioDevice, INDEX_WENT_BACK};

/// Sector size of the virtio-blk protocol.
pub const SECTOR: u64 = 512;
/// The queue's size.
pub const QUEUE_SIZE: u16 = 256;
/// Segments per request the guest may use (two descriptors go to the
/// header and the status).
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Bytes per segment at most.
pub const SIZE_MAX: u32 = 1 << 20;
/// Sectors one DISCARD or WRITE_ZEROES segment may cover.
pub const MAX_DISCARD_SECTORS: u32 = 1 << 21;

/// A cobd unit as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    /// N of `cobdN`.
    pub unit: u32,
    pub path: PathBuf,
    pub read_only: bool,
}

/// The backing store of a unit.
#[derive(Debug)]
pub struct Backing {
    file: File,
    /// The same file opened again with `O_DIRECT`, when the file system
    /// or device allows it: requests whose buffers and offset are
    /// aligned to [`Backing::dio_align`] go through it, straight between
    /// the device and guest RAM, past the host's page cache.
    direct: Option<File>,
    /// Alignment `direct` needs (of offset, lengths and buffer
    /// addresses); 0 once a refusal turned direct I/O off.
    dio_align: AtomicU64,
    /// What went through [`Backing::transfer`], for the summary a disk
    /// logs when it stops.
    counts: Counts,
    /// Bytes, a multiple of [`SECTOR`].
    size: u64,
    read_only: bool,
    block_device: bool,
}

/// iovecs per `preadv`/`pwritev` (`IOV_MAX`).
const IOV_MAX: usize = 1024;

/// `BLKGETSIZE64`, `BLKDISCARD` from `<linux/fs.h>`.
const BLKGETSIZE64: u32 = 0x8008_1272;
const BLKDISCARD: u32 = 0x1277;
const BLKSSZGET: u32 = 0x1268;

impl Backing {
    /// Open and lock `path`.
    pub fn open(path: &Path, read_only: bool) -> Result<Backing> {
        use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
        // A block device written by the guest is claimed exclusively
        // (O_EXCL): refused while the host has it mounted or otherwise
        // claimed, and the host cannot mount it while the guest runs.
        let exclusive =
            !read_only && std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!read_only)
            .custom_flags(libc::O_CLOEXEC | if exclusive { libc::O_EXCL } else { 0 })
            .open(path);
        if exclusive {
            if let Err(e) = &file {
                if e.raw_os_error() == Some(libc::EBUSY) {
                    bail!(
                        "{} is in use by the host (mounted, or claimed by another user of the device)",
                        path.display()
                    );
                }
            }
        }
        let file = file.with_context(|| {
            format!(
                "cannot open {} {}",
                path.display(),
                if read_only {
                    "for reading"
                } else {
                    "for reading and writing (add ,ro for a read-only disk)"
                }
            )
        })?;
        let lock = if read_only {
            libc::LOCK_SH
        } else {
            libc::LOCK_EX
        };
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), lock | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                bail!(
                    "{} is in use by another guest (it is locked)",
                    path.display()
                );
            }
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
        let meta = file
            .metadata()
            .with_context(|| format!("cannot stat {}", path.display()))?;
        let block_device = meta.file_type().is_block_device();
        let size = if block_device {
            let mut size = 0u64;
            // SAFETY: BLKGETSIZE64 writes one u64 to the pointer.
            if unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64 as _, &mut size) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("cannot read the size of {}", path.display()));
            }
            size
        } else if meta.is_file() {
            meta.len()
        } else {
            bail!("{} is neither a file nor a block device", path.display());
        };
        if size < SECTOR {
            bail!("{} is empty ({size} bytes)", path.display());
        }
        let mut head = [0u8; 512];
        file.read_exact_at(&mut head, 0)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if let Some(kind) = container_format(&head) {
            bail!(
                "{} is a {kind}, not a raw disk image: convert it first (`cargo xtask image import {}`)",
                path.display(),
                path.display()
            );
        }
        if size % SECTOR != 0 {
            tracing::warn!(
                "{}: {size} bytes is not a multiple of {SECTOR}: the last {} bytes are not used",
                path.display(),
                size % SECTOR
            );
        }
        let (direct, dio_align) = open_direct(&file, block_device, path);
        Ok(Backing {
            file,
            direct,
            dio_align: AtomicU64::new(dio_align),
            counts: Counts::default(),
            size: size - size % SECTOR,
            read_only,
            block_device,
        })
    }

    /// Bytes of the disk.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn discard(&self, offset: u64, len: u64) -> std::io::Result<()> {
        if self.block_device {
            let range = [offset, len];
            // SAFETY: BLKDISCARD reads two u64 from the pointer.
            if unsafe { libc::ioctl(self.file.as_raw_fd(), BLKDISCARD as _, range.as_ptr()) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            return Ok(());
        }
        self.fallocate(
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    }

    fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> std::io::Result<()> {
        if !self.block_device {
            let mode = if unmap {
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE
            } else {
                libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE
            };
            if self.fallocate(mode, offset, len).is_ok() {
                return Ok(());
            }
        }
        let zeroes = vec![0u8; 1 << 20];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(zeroes.len() as u64) as usize;
            self.file.write_all_at(&zeroes[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }

    /// `preadv` (`write`: `pwritev`) of all of `iov` at `offset`: through
    /// the `O_DIRECT` descriptor when everything is aligned for it, else
    /// through the page cache. Both views stay coherent: Linux writes back
    /// and drops the cached pages of a range before direct I/O on it.
    fn transfer(&self, iov: &mut [libc::iovec], offset: u64, write: bool) -> std::io::Result<()> {
        let bytes: u64 = iov.iter().map(|v| v.iov_len as u64).sum();
        let c = &self.counts;
        (if write { &c.written } else { &c.read }).fetch_add(bytes, Ordering::Relaxed);
        let align = self.dio_align.load(Ordering::Relaxed);
        if let Some(direct) = self.direct.as_ref().filter(|_| aligned(iov, offset, align)) {
            c.direct.fetch_add(bytes, Ordering::Relaxed);
            match transfer_fd(direct, iov, offset, write) {
                // EINVAL before any byte moved: the alignment guess was
                // too small (a 4 KiB-sector device, a file system with
                // stricter rules). Raise it once, then give up direct
                // I/O; this request goes through the page cache.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    let next = if align < 4096 { 4096 } else { 0 };
                    if self
                        .dio_align
                        .compare_exchange(align, next, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                    {
                        c.direct.fetch_sub(bytes, Ordering::Relaxed);
                        tracing::info!(
                            "direct I/O with {align}-byte alignment refused (EINVAL): {}",
                            if next == 0 {
                                "using the host's page cache".to_string()
                            } else {
                                format!("trying {next}")
                            }
                        );
                    }
                }
                r => return r,
            }
        }
        transfer_fd(&self.file, iov, offset, write)
    }

    fn fallocate(&self, mode: i32, offset: u64, len: u64) -> std::io::Result<()> {
        let (Ok(o), Ok(l)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        };
        // SAFETY: fallocate on an open descriptor with plain integers.
        if unsafe { libc::fallocate(self.file.as_raw_fd(), mode, o, l) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Counters of a disk's requests and bytes, logged when it stops.
#[derive(Debug, Default)]
struct Counts {
    requests: AtomicU64,
    read: AtomicU64,
    written: AtomicU64,
    /// Bytes of `read` and `written` that went through `O_DIRECT`.
    direct: AtomicU64,
    /// Nanoseconds the I/O threads spent serving requests, summed.
    service_ns: AtomicU64,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (n, r, w, d) = (
            get(&self.requests),
            get(&self.read),
            get(&self.written),
            get(&self.direct),
        );
        let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
        write!(
            f,
            "{n} requests, {:.1} MiB read, {:.1} MiB written ({:.0}% direct I/O), mean service time {:.3} ms",
            mib(r),
            mib(w),
            if r + w == 0 { 0.0 } else { 100.0 * d as f64 / (r + w) as f64 },
            if n == 0 { 0.0 } else { get(&self.service_ns) as f64 / n as f64 / 1e6 },
        )
    }
}

/// Whether `offset` and every buffer of `iov` (address and length) are
/// multiples of `align` (0: direct I/O is off).
fn aligned(iov: &[libc::iovec], offset: u64, align: u64) -> bool {
    align != 0
        && offset.is_multiple_of(align)
        && iov.iter().all(|v| {
            (v.iov_base as u64).is_multiple_of(align) && (v.iov_len as u64).is_multiple_of(align)
        })
}

/// `path` opened again with `O_DIRECT` (a new open file description of
/// the same file, through `/proc/self/fd`), and the alignment to try
/// first: the logical sector size of a block device, 512 bytes for a file
/// (raised on refusal, see [`Backing::transfer`]). None where the file
/// system refuses `O_DIRECT` (tmpfs).
fn open_direct(file: &File, block_device: bool, path: &Path) -> (Option<File>, u64) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut align = SECTOR;
    if block_device {
        let mut size: libc::c_int = 0;
        // SAFETY: BLKSSZGET writes one int to the pointer.
        if unsafe { libc::ioctl(file.as_raw_fd(), BLKSSZGET as _, &mut size) } == 0 && size > 0 {
            align = align.max(size as u64);
        }
    }
    let writable = {
        // SAFETY: F_GETFL on an open descriptor.
        let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
        flags >= 0 && flags & libc::O_ACCMODE == libc::O_RDWR
    };
    let proc = format!("/proc/self/fd/{}", file.as_raw_fd());
    match std::fs::OpenOptions::new()
        .read(true)
        .write(writable)
        .custom_flags(libc::O_CLOEXEC | libc::O_DIRECT)
        .open(&proc)
    {
        Ok(f) => (Some(f), align),
        Err(e) => {
            tracing::info!(
                "{}: no direct I/O ({e}): requests go through the host's page cache",
                path.display()
            );
            (None, 0)
        }
    }
}

/// `preadv` (`write`: `pwritev`) of all of `iov` at `offset` on `file`,
/// going on after short transfers; the end of the file is an error.
fn transfer_fd(
    file: &File,
    iov: &mut [libc::iovec],
    offset: u64,
    write: bool,
) -> std::io::Result<()> {
    let mut iov = iov;
    let mut offset = offset;
    while !iov.is_empty() {
        let Ok(at) = libc::off_t::try_from(offset) else {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        };
        let count = iov.len().min(IOV_MAX) as libc::c_int;
        let fd = file.as_raw_fd();
        // SAFETY: every iovec covers memory of guest RAM that
        // `iovecs` checked and that the caller's `GuestRam` keeps
        // mapped for the call; the guest may change it meanwhile,
        // which the kernel's copy tolerates.
        let n = unsafe {
            if write {
                libc::pwritev(fd, iov.as_ptr(), count, at)
            } else {
                libc::preadv(fd, iov.as_ptr(), count, at)
            }
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the backing ended early (truncated?)",
            ));
        }
        let mut n = n as usize;
        offset += n as u64;
        while n > 0 {
            let Some(first) = iov.first_mut() else { break };
            if n >= first.iov_len {
                n -= first.iov_len;
                iov = &mut iov[1..];
            } else {
                first.iov_base = first.iov_base.cast::<u8>().wrapping_add(n).cast();
                first.iov_len -= n;
                n = 0;
            }
        }
        while iov.first().is_some_and(|v| v.iov_len == 0) {
            iov = &mut iov[1..];
        }
    }
    Ok(())
}

/// What a file that is not a raw disk is, by its first bytes: disk image
/// containers and compressed files a user might point `cobdN=` at.
pub fn container_format(head: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(0, b"QFI\xfb") {
        Some("qcow2 image")
    } else if at(0, b"KDMV") || at(0, b"# Disk DescriptorFile") {
        Some("VMDK image")
    } else if at(0x40, &[0x7f, 0x10, 0xda, 0xbe]) {
        Some("VirtualBox VDI image")
    } else if at(0, b"vhdxfile") {
        Some("VHDX image")
    } else if at(0, b"conectix") {
        Some("VHD image")
    } else if at(0, &[0x1f, 0x8b]) {
        Some("gzip-compressed file")
    } else if at(0, &[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some("xz-compressed file")
    } else if at(0, &[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("zstd-compressed file")
    } else {
        None
    }
}

/// A cobd unit: the virtio-blk device.
#[derive(Debug)]
pub struct Disk {
    config: DiskConfig,
    backing: Arc<Backing>,
    engine: Option<Engine>,
}

impl Disk {
    /// Open unit `config` (refused when missing, not a file or block
    /// device, unreadable, or in use).
    pub fn open(config: DiskConfig) -> Result<Disk> {
        let backing = Backing::open(&config.path, config.read_only)
            .with_context(|| format!("cobd{}", config.unit))?;
        tracing::info!(
            "cobd{}: {} ({} MiB{})",
            config.unit,
            config.path.display(),
            backing.size >> 20,
            if config.read_only { ", read-only" } else { "" }
        );
        Ok(Disk {
            config,
            backing: Arc::new(backing),
            engine: None,
        })
    }

    /// The serial the guest sees (`cobdN`), also its udev name.
    pub fn serial(&self) -> String {
        format!("cobd{}", self.config.unit)
    }
}

/// Put `value`'s little-endian bytes at `at` of `buf`.
fn put(buf: &mut [u8], at: usize, value: &[u8]) {
    buf[at..at + value.len()].copy_from_slice(value);
}

impl VirtioDevice for Disk {
    fn name(&self) -> String {
        self.serial()
    }

    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn features(&self) -> u64 {
        let mut f = (1u64 << VIRTIO_BLK_F_FLUSH)
            | (1 << VIRTIO_BLK_F_SEG_MAX)
            | (1 << VIRTIO_BLK_F_SIZE_MAX)
            | (1 << VIRTIO_BLK_F_BLK_SIZE);
        if self.config.read_only {
            f |= 1 << VIRTIO_BLK_F_RO;
        } else {
            f |= (1 << VIRTIO_BLK_F_DISCARD) | (1 << VIRTIO_BLK_F_WRITE_ZEROES);
        }
        f
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE]
    }

    fn config(&self) -> Vec<u8> {
        use std::mem::{offset_of, size_of};
        type C = virtio_blk_config;
        let mut c = vec![0u8; size_of::<C>()];
        put(
            &mut c,
            offset_of!(C, capacity),
            &(self.backing.size / SECTOR).to_le_bytes(),
        );
        put(&mut c, offset_of!(C, size_max), &SIZE_MAX.to_le_bytes());
        put(&mut c, offset_of!(C, seg_max), &SEG_MAX.to_le_bytes());
        put(
            &mut c,
            offset_of!(C, blk_size),
            &(SECTOR as u32).to_le_bytes(),
        );
        put(
            &mut c,
            offset_of!(C, max_discard_sectors),
            &MAX_DISCARD_SECTORS.to_le_bytes(),
        );
        put(&mut c, offset_of!(C, max_discard_seg), &1u32.to_le_bytes());
        put(
            &mut c,
            offset_of!(C, discard_sector_alignment),
            &8u32.to_le_bytes(),
        );
        put(
            &mut c,
            offset_of!(C, max_write_zeroes_sectors),
            &MAX_DISCARD_SECTORS.to_le_bytes(),
        );
        put(
            &mut c,
            offset_of!(C, max_write_zeroes_seg),
            &1u32.to_le_bytes(),
        );
        put(&mut c, offset_of!(C, write_zeroes_may_unmap), &[1u8]);
        c
    }

    fn activate(&mut self, a: Activation) -> Result<()> {
        self.reset();
        let Some((_, queue, kick)) = a.queues.into_iter().find(|(i, ..)| *i == 0) else {
            bail!("its request queue is not ready");
        };
        let shared = Shared::new(
            a.mem,
            queue,
            self.backing.clone(),
            a.interrupt,
            self.serial(),
        );
        self.engine = Some(Engine::start(shared, kick, WORKERS)?);
        Ok(())
    }

    fn reset(&mut self) {
        if let Some(e) = self.engine.take() {
            e.stop();
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.reset();
    }
}

/// Requests of one disk served at the same time: the I/O threads of a
/// unit. Four keep a guest's queue busy on a fast backing (the guest's
/// readahead and writeback issue a handful of large requests at a time)
/// without a thread army when 32 units are configured.
pub const WORKERS: usize = 4;

/// What the threads of one active disk share.
struct Shared {
    mem: GuestRam,
    /// Taken from by the dispatcher, completed into by the I/O threads.
    queue: Mutex<Queue>,
    backing: Arc<Backing>,
    interrupt: Interrupt,
    serial: String,
    /// Set when the device stops: queued requests are dropped and no
    /// completion is written to the rings any more.
    stopping: AtomicBool,
    /// Malformed chains and failed requests: a guest can send millions,
    /// the log says the first ones and then a count.
    malformed: Sparse,
    failed: Sparse,
    /// Called around each request's I/O (tests: to hold requests in
    /// flight and see the order of events).
    #[cfg(test)]
    hook: Option<tests::Hook>,
}

impl Shared {
    fn new(
        mem: GuestRam,
        queue: Queue,
        backing: Arc<Backing>,
        interrupt: Interrupt,
        serial: String,
    ) -> Shared {
        Shared {
            mem,
            queue: Mutex::new(queue),
            backing,
            interrupt,
            serial,
            stopping: AtomicBool::new(false),
            malformed: Sparse::new("malformed chains"),
            failed: Sparse::new("failed requests"),
            #[cfg(test)]
            hook: None,
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A panicking thread cannot leave the queue half updated in a way
        // that matters more than stopping the disk would.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Move every available chain to the I/O threads (`jobs`); the number
    /// moved.
    fn dispatch(&self, jobs: &mpsc::Sender<Job>) -> Result<usize> {
        let mem = &self.mem;
        let mut q = self.queue();
        let mut sent = 0;
        // The ring said more requests were there after the last round.
        let mut promised = false;
        loop {
            // A guest whose requests feed themselves (buffers over its own
            // rings) keeps this loop going: stopping the disk still ends it.
            if self.stopping.load(Ordering::SeqCst) {
                return Ok(sent);
            }
            let before = sent;
            q.disable_notification(mem).context("ring")?;
            // A broken available ring (its index too far ahead) or chain
            // ends the device: it needs a reset.
            while let Some(chain) = q.iter(mem).context("the available ring")?.next() {
                let head = chain.head_index();
                let bufs = read_chain(chain, q.size())?
                    .into_iter()
                    .map(|d| Buf {
                        addr: d.addr(),
                        len: d.len(),
                        writable: d.is_write_only(),
                    })
                    .collect();
                if jobs.send(Job { head, bufs }).is_err() {
                    bail!("its I/O threads are gone");
                }
                sent += 1;
            }
            // More requests, the ring said, yet there were none.
            if promised && sent == before {
                bail!("the available ring: {INDEX_WENT_BACK}");
            }
            if !q.enable_notification(mem).context("ring")? {
                return Ok(sent);
            }
            promised = true;
        }
    }

    /// Request `head` is done with `len` bytes written to the guest: put it
    /// in the used ring and interrupt the guest if it asked to be
    /// (`needs_notification` under the same lock, so each completion is
    /// seen by exactly one check and EVENT_IDX suppression stays exact).
    fn complete(&self, head: u16, len: u32) -> Result<()> {
        let notify = {
            let mut q = self.queue();
            if self.stopping.load(Ordering::SeqCst) {
                return Ok(());
            }
            q.add_used(&self.mem, head, len).context("used ring")?;
            q.needs_notification(&self.mem).context("used ring")?
        };
        if notify {
            self.interrupt.signal_used()?;
        }
        Ok(())
    }

    fn hook(&self, _stage: Stage, _kind: u32, _sector: u64) {
        #[cfg(test)]
        if let Some(h) = &self.hook {
            h(_stage, _kind, _sector);
        }
    }
}

/// Where [`Shared::hook`] is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Begin,
    End,
}

/// A chain taken from the ring, for an I/O thread.
struct Job {
    head: u16,
    bufs: Vec<Buf>,
}

/// The threads of an active disk.
///
/// Why threads and not io_uring: io_uring punts `fallocate`, `BLKDISCARD`,
/// `fdatasync` and buffered I/O that misses the cache (the unaligned
/// requests, and backings that refuse `O_DIRECT`) to its own kernel worker
/// threads anyway; a small pool of
/// threads doing `preadv`/`pwritev` straight into guest RAM gives the same
/// concurrency with every request type served the same way, works where
/// io_uring is disabled (`kernel.io_uring_disabled`, container seccomp
/// profiles) and needs no unsafe submission-queue bookkeeping.
///
/// One dispatcher waits for kicks and moves chains from the available
/// ring to a channel; [`WORKERS`] I/O threads take them, do the I/O and
/// complete them into the used ring in whatever order they finish.
#[derive(Debug)]
struct Engine {
    stop: Arc<EventFd>,
    shared: Arc<Shared>,
    dispatcher: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

impl Engine {
    fn start(shared: Shared, kick: Arc<EventFd>, workers: usize) -> Result<Engine> {
        let shared = Arc::new(shared);
        let stop = Arc::new(EventFd::new(EFD_NONBLOCK).context("cannot make an eventfd")?);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let name = shared.serial.clone();
        let mut handles = Vec::new();
        for i in 0..workers.max(1) {
            let (shared, rx) = (shared.clone(), rx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-io{i}"))
                .spawn(move || io_thread(&shared, &rx));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    drop(tx);
                    join_all(&name, handles);
                    return Err(e).context("cannot start the disk's I/O threads");
                }
            }
        }
        let (s2, stop2) = (shared.clone(), stop.clone());
        let spawned = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                if let Err(e) = dispatcher(&s2, &kick, &stop2, tx) {
                    tracing::error!("{}: the device stopped, it needs a reset: {e:#}", s2.serial);
                    if let Err(e) = s2.interrupt.needs_reset() {
                        tracing::error!("{}: cannot tell the guest: {e:#}", s2.serial);
                    }
                }
            });
        let dispatcher = match spawned {
            Ok(h) => h,
            Err(e) => {
                // `tx` went with the closure: the I/O threads end.
                join_all(&name, handles);
                return Err(e).context("cannot start the disk's thread");
            }
        };
        Ok(Engine {
            stop,
            shared,
            dispatcher,
            workers: handles,
        })
    }

    /// Stop taking requests, drop the queued ones, wait for those in
    /// flight and join every thread.
    fn stop(self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = self.stop.write(1);
        let name = self.shared.serial.clone();
        if self.dispatcher.join().is_err() {
            tracing::error!("{name}: its thread panicked");
        }
        join_all(&name, self.workers);
        tracing::info!("{name}: {}", self.shared.backing.counts);
    }
}

fn join_all(name: &str, handles: Vec<JoinHandle<()>>) {
    for h in handles {
        if h.join().is_err() {
            tracing::error!("{name}: an I/O thread panicked");
        }
    }
}

/// The dispatcher: kicks in, chains out to the I/O threads. Returning
/// drops `jobs`, which ends the I/O threads once the queued jobs are gone.
fn dispatcher(
    shared: &Shared,
    kick: &EventFd,
    stop: &EventFd,
    jobs: mpsc::Sender<Job>,
) -> Result<()> {
    loop {
        let mut fds = [
            libc::pollfd {
                fd: kick.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e).context("poll");
        }
        if fds[1].revents != 0 || shared.stopping.load(Ordering::SeqCst) {
            return Ok(());
        }
        if fds[0].revents != 0 {
            let _ = kick.read();
            shared.dispatch(&jobs)?;
        }
    }
}

/// Serve one job and complete it.
fn run_job(shared: &Shared, job: Job) {
    let started = std::time::Instant::now();
    let used = request(shared, &job.bufs);
    let c = &shared.backing.counts;
    c.requests.fetch_add(1, Ordering::Relaxed);
    let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    c.service_ns.fetch_add(ns, Ordering::Relaxed);
    if let Err(e) = shared.complete(job.head, used) {
        tracing::error!("{}: cannot complete a request: {e:#}", shared.serial);
    }
}

/// Serve every request `queue`'s available ring holds now, on this
/// thread, in ring order, with the same code the I/O threads run; the
/// number served, or why the ring needs a reset. For the fuzzer
/// (`fuzz/`, `cargo xtask fuzz virtio_blk`), which needs one thread and no
/// timing; the device itself always serves through [`Engine`].
#[doc(hidden)]
pub fn serve_available_now(
    mem: &GuestRam,
    queue: Queue,
    backing: Arc<Backing>,
    interrupt: Interrupt,
) -> Result<usize> {
    let shared = Shared::new(mem.clone(), queue, backing, interrupt, "fuzz".into());
    let (tx, rx) = mpsc::channel();
    let dispatched = shared.dispatch(&tx);
    drop(tx);
    for job in rx {
        run_job(&shared, job);
    }
    dispatched
}

/// An I/O thread: serve jobs until the dispatcher is gone.
fn io_thread(shared: &Shared, jobs: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = {
            let rx = jobs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            rx.recv()
        };
        let Ok(job) = job else { return };
        if shared.stopping.load(Ordering::SeqCst) {
            continue;
        }
        run_job(shared, job);
    }
}

/// One descriptor of a chain, as a guest-physical range.
#[derive(Debug, Clone, Copy)]
struct Buf {
    addr: GuestAddress,
    len: u32,
    writable: bool,
}

/// Serve one request (the chain's descriptors); the bytes written to the
/// guest (data and status).
fn request(shared: &Shared, bufs: &[Buf]) -> u32 {
    let (mem, serial) = (&shared.mem, &shared.serial);
    // Header (readable), data, status byte (writable, last).
    let Some((status, body)) = bufs.split_last() else {
        return 0;
    };
    if !status.writable || status.len < 1 || body.is_empty() || body[0].writable {
        shared.malformed.warn(format_args!(
            "{serial}: malformed request chain ({} descriptors)",
            bufs.len()
        ));
        return 0;
    }
    // The status byte is the last of its buffer; an address that
    // overflows there is the guest's error (found by `cargo xtask fuzz
    // virtio_blk`: unchecked, the sum wrapped to another guest address).
    let Some(status_at) = status.addr.checked_add(u64::from(status.len) - 1) else {
        shared.malformed.warn(format_args!(
            "{serial}: malformed request chain (its status buffer overflows the address space)"
        ));
        return 0;
    };
    let (code, written) = match serve(shared, body) {
        Ok(written) => (VIRTIO_BLK_S_OK, written),
        Err(Failure::Unsupported) => (VIRTIO_BLK_S_UNSUPP, 0),
        Err(Failure::Io(e)) => {
            shared
                .failed
                .warn(format_args!("{serial}: request failed: {e:#}"));
            (VIRTIO_BLK_S_IOERR, 0)
        }
    };
    if mem.write_obj(code as u8, status_at).is_err() {
        return 0;
    }
    written + 1
}

enum Failure {
    Unsupported,
    Io(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Io(e.into())
    }
}

/// The request header (`struct virtio_blk_outhdr`).
fn header(mem: &GuestRam, body: &[Buf]) -> Result<(u32, u64)> {
    let h = &body[0];
    if h.len < 16 {
        bail!("request header of {} bytes", h.len);
    }
    let kind: u32 = mem.read_obj(h.addr)?;
    let at = h
        .addr
        .checked_add(8)
        .context("the request header's address overflows")?;
    let sector: u64 = mem.read_obj(at)?;
    Ok((kind, sector))
}

/// Check that `len` bytes from `sector` lie on the disk; the byte offset.
fn range(disk: &Backing, sector: u64, len: u64) -> Result<u64> {
    let offset = sector.checked_mul(SECTOR).context("sector overflows")?;
    if !len.is_multiple_of(SECTOR) {
        bail!("{len} bytes is not a whole number of sectors");
    }
    if offset.checked_add(len).is_none_or(|end| end > disk.size) {
        bail!(
            "sectors {sector}..+{} beyond the disk's {}",
            len / SECTOR,
            disk.size / SECTOR
        );
    }
    Ok(offset)
}

/// The data descriptors as host memory, for `preadv`/`pwritev`: each must
/// lie in guest RAM. Empty descriptors are left out.
fn iovecs(mem: &GuestRam, data: &[Buf]) -> Result<Vec<libc::iovec>> {
    data.iter()
        .filter(|b| b.len > 0)
        .map(|b| {
            let slice = mem.get_slice(b.addr, b.len as usize).with_context(|| {
                format!(
                    "data buffer {:#x}+{:#x} is not in guest RAM",
                    b.addr.raw_value(),
                    b.len
                )
            })?;
            Ok(libc::iovec {
                iov_base: slice.ptr_guard_mut().as_ptr().cast(),
                iov_len: slice.len(),
            })
        })
        .collect()
}

fn serve(shared: &Shared, body: &[Buf]) -> Result<u32, Failure> {
    let (mem, disk, serial) = (&shared.mem, &*shared.backing, &shared.serial);
    let (kind, sector) = header(mem, body)?;
    shared.hook(Stage::Begin, kind, sector);
    let r = serve_kind(mem, disk, serial, kind, sector, &body[1..]);
    shared.hook(Stage::End, kind, sector);
    r
}

fn serve_kind(
    mem: &GuestRam,
    disk: &Backing,
    serial: &str,
    kind: u32,
    sector: u64,
    data: &[Buf],
) -> Result<u32, Failure> {
    if let Some(b) = data.iter().find(|b| b.len > SIZE_MAX) {
        return Err(anyhow::anyhow!(
            "a segment of {} bytes at {:#x} (at most {SIZE_MAX}, the device's size_max)",
            b.len,
            b.addr.raw_value()
        )
        .into());
    }
    match kind {
        VIRTIO_BLK_T_IN => {
            if data.iter().any(|b| !b.writable) {
                return Err(anyhow::anyhow!("IN with a read-only data buffer").into());
            }
            let total: u64 = data.iter().map(|b| u64::from(b.len)).sum();
            let offset = range(disk, sector, total)?;
            let mut iov = iovecs(mem, data)?;
            disk.transfer(&mut iov, offset, false)
                .with_context(|| format!("reading {total} bytes at byte offset {offset}"))?;
            Ok(u32::try_from(total).unwrap_or(u32::MAX))
        }
        VIRTIO_BLK_T_OUT => {
            if disk.read_only {
                return Err(anyhow::anyhow!("write to a read-only disk").into());
            }
            if data.iter().any(|b| b.writable) {
                return Err(anyhow::anyhow!("OUT with a writable data buffer").into());
            }
            let total: u64 = data.iter().map(|b| u64::from(b.len)).sum();
            let offset = range(disk, sector, total)?;
            let mut iov = iovecs(mem, data)?;
            disk.transfer(&mut iov, offset, true)
                .with_context(|| format!("writing {total} bytes at byte offset {offset}"))?;
            Ok(0)
        }
        VIRTIO_BLK_T_FLUSH => {
            // Every write the guest has seen complete had its pwritev
            // return before its used entry was written, so before the
            // guest could submit this flush, so before this fdatasync: it
            // covers them all. Writes still in flight on other threads are
            // not covered, as virtio-blk (and a disk's cache flush) allows.
            if !disk.read_only {
                disk.file.sync_data()?;
            }
            Ok(0)
        }
        VIRTIO_BLK_T_GET_ID => {
            let Some(b) = data.first().filter(|b| b.writable) else {
                return Err(anyhow::anyhow!("GET_ID without a writable buffer").into());
            };
            let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
            let n = serial.len().min(id.len());
            id[..n].copy_from_slice(&serial.as_bytes()[..n]);
            let n = (b.len as usize).min(id.len());
            mem.write_slice(&id[..n], b.addr)?;
            Ok(n as u32)
        }
        VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES => {
            if disk.read_only {
                return Err(anyhow::anyhow!("discard on a read-only disk").into());
            }
            for b in data {
                if b.writable || b.len % 16 != 0 {
                    return Err(anyhow::anyhow!("malformed discard segments").into());
                }
                for i in 0..u64::from(b.len / 16) {
                    let field = |off: u64| {
                        b.addr
                            .checked_add(16 * i + off)
                            .context("a discard segment's address overflows")
                    };
                    let start: u64 = mem.read_obj(field(0)?)?;
                    let count: u32 = mem.read_obj(field(8)?)?;
                    let flags: u32 = mem.read_obj(field(12)?)?;
                    if count > MAX_DISCARD_SECTORS {
                        return Err(anyhow::anyhow!("{count} sectors in one segment").into());
                    }
                    let len = u64::from(count) * SECTOR;
                    let offset = range(disk, start, len)?;
                    if kind == VIRTIO_BLK_T_DISCARD {
                        disk.discard(offset, len)?;
                    } else {
                        let unmap = flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0;
                        disk.write_zeroes(offset, len, unmap)?;
                    }
                }
            }
            Ok(0)
        }
        _ => Err(Failure::Unsupported),
    }
}

#[cfg(test)]
mod tests;
