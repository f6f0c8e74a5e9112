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
//! DISCARD and WRITE_ZEROES; anything else is answered UNSUPP. A worker
//! thread per disk waits on the queue's kick eventfd, takes the chains in
//! ring order (the guest may have as many requests outstanding as the
//! ring holds), does each request's I/O with positioned reads and writes
//! on the backing file, and interrupts the guest once per batch (EVENT_IDX
//! decides whether at all). FLUSH is `fdatasync`: when the guest is told a
//! flush completed, what was written before it is on the backing store.
//! Every request is checked against the disk (sector range, lengths,
//! read-only) and a bad one gets IOERR, never a panic.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{bail, Context, Result};
use virtio_bindings::virtio_blk::*;
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Address, Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::virtio::{read_chain, Activation, GuestRam, Interrupt, VirtioDevice};

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
    /// Bytes, a multiple of [`SECTOR`].
    size: u64,
    read_only: bool,
    block_device: bool,
}

/// `BLKGETSIZE64`, `BLKDISCARD` from `<linux/fs.h>`.
const BLKGETSIZE64: u32 = 0x8008_1272;
const BLKDISCARD: u32 = 0x1277;

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
        Ok(Backing {
            file,
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
    worker: Option<Worker>,
}

#[derive(Debug)]
struct Worker {
    stop: Arc<EventFd>,
    thread: JoinHandle<()>,
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
            worker: None,
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
        let stop = Arc::new(EventFd::new(EFD_NONBLOCK).context("cannot make an eventfd")?);
        let mut serve = Serve {
            mem: a.mem,
            queue,
            backing: self.backing.clone(),
            interrupt: a.interrupt,
            serial: self.serial(),
        };
        let (stop2, name) = (stop.clone(), self.serial());
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                if let Err(e) = serve.run(&kick, &stop2) {
                    tracing::error!("{name}: the device stopped, it needs a reset: {e:#}");
                    if let Err(e) = serve.interrupt.needs_reset() {
                        tracing::error!("{name}: cannot tell the guest: {e:#}");
                    }
                }
            })
            .context("cannot start the disk's thread")?;
        self.worker = Some(Worker { stop, thread });
        Ok(())
    }

    fn reset(&mut self) {
        if let Some(w) = self.worker.take() {
            let _ = w.stop.write(1);
            if w.thread.join().is_err() {
                tracing::error!("{}: its thread panicked", self.serial());
            }
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.reset();
    }
}

/// The worker's state.
struct Serve {
    mem: GuestRam,
    queue: Queue,
    backing: Arc<Backing>,
    interrupt: Interrupt,
    serial: String,
}

impl Serve {
    fn run(&mut self, kick: &EventFd, stop: &EventFd) -> Result<()> {
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
            if fds[1].revents != 0 {
                return Ok(());
            }
            if fds[0].revents != 0 {
                let _ = kick.read();
                self.process()?;
            }
        }
    }

    /// Serve every available chain; interrupt the guest if it wants.
    fn process(&mut self) -> Result<()> {
        let mem = &self.mem;
        let queue = &mut self.queue;
        let mut served = 0;
        loop {
            queue.disable_notification(mem).context("ring")?;
            // A broken available ring (its index too far ahead) or chain
            // ends the device: it needs a reset.
            while let Some(chain) = queue.iter(mem).context("the available ring")?.next() {
                let head = chain.head_index();
                let bufs = read_chain(chain, queue.size())?;
                let used = request(mem, bufs, &self.backing, &self.serial);
                queue.add_used(mem, head, used).context("used ring")?;
                served += 1;
            }
            if !queue.enable_notification(mem).context("ring")? {
                break;
            }
        }
        if served > 0 && queue.needs_notification(mem).context("ring")? {
            self.interrupt.signal_used()?;
        }
        Ok(())
    }
}

/// One descriptor of a chain, as a guest-physical range.
#[derive(Debug, Clone, Copy)]
struct Buf {
    addr: GuestAddress,
    len: u32,
    writable: bool,
}

/// Serve one request; the bytes written to the guest (data and status).
fn request(
    mem: &GuestRam,
    chain: Vec<virtio_queue::desc::split::Descriptor>,
    disk: &Backing,
    serial: &str,
) -> u32 {
    let bufs: Vec<Buf> = chain
        .into_iter()
        .map(|d| Buf {
            addr: d.addr(),
            len: d.len(),
            writable: d.is_write_only(),
        })
        .collect();
    // Header (readable), data, status byte (writable, last).
    let Some((status, body)) = bufs.split_last() else {
        return 0;
    };
    if !status.writable || status.len < 1 || body.is_empty() || body[0].writable {
        tracing::warn!(
            "{serial}: malformed request chain ({} descriptors)",
            bufs.len()
        );
        return 0;
    }
    let status_at = status.addr.unchecked_add(u64::from(status.len) - 1);
    let (code, written) = match serve(mem, body, disk, serial) {
        Ok(written) => (VIRTIO_BLK_S_OK, written),
        Err(Failure::Unsupported) => (VIRTIO_BLK_S_UNSUPP, 0),
        Err(Failure::Io(e)) => {
            tracing::warn!("{serial}: request failed: {e:#}");
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
    let sector: u64 = mem.read_obj(h.addr.unchecked_add(8))?;
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

/// The data descriptors between header and status.
fn data(body: &[Buf]) -> &[Buf] {
    &body[1..]
}

fn serve(mem: &GuestRam, body: &[Buf], disk: &Backing, serial: &str) -> Result<u32, Failure> {
    let (kind, sector) = header(mem, body)?;
    let data = data(body);
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
            let mut offset = range(disk, sector, total)?;
            let mut buf = Vec::new();
            for b in data {
                buf.resize(b.len as usize, 0);
                disk.file
                    .read_exact_at(&mut buf, offset)
                    .with_context(|| format!("reading {} bytes at byte offset {offset}", b.len))?;
                mem.write_slice(&buf, b.addr)?;
                offset += u64::from(b.len);
            }
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
            let mut offset = range(disk, sector, total)?;
            let mut buf = Vec::new();
            for b in data {
                buf.resize(b.len as usize, 0);
                mem.read_slice(&mut buf, b.addr)?;
                disk.file
                    .write_all_at(&buf, offset)
                    .with_context(|| format!("writing {} bytes at byte offset {offset}", b.len))?;
                offset += u64::from(b.len);
            }
            Ok(0)
        }
        VIRTIO_BLK_T_FLUSH => {
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
                    let at = b.addr.unchecked_add(16 * i);
                    let start: u64 = mem.read_obj(at)?;
                    let count: u32 = mem.read_obj(at.unchecked_add(8))?;
                    let flags: u32 = mem.read_obj(at.unchecked_add(12))?;
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
