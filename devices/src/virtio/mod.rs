//! The cooperative virtio transport, host side: the virtio table in guest
//! RAM, the guest's requests (`COOPERATIVE_OP_VIRTIO`) and the back ends
//! ([`VirtioDevice`]) behind it.
//!
//! The contract is the "Virtio devices" block of `<linux/cooperative.h>`
//! (the guest series): virtio-mmio version 2's registers kept as one
//! `struct cooperative_virtio_device` per device in guest RAM, status and
//! config writes as synchronous requests, queue notifications as
//! asynchronous ones. This module
//!
//! - maps guest RAM from the driver's file ([`map_guest_ram`]: the
//!   guest's real pages, in pfn order) as a `vm-memory` `GuestMemoryMmap`,
//!   which rust-vmm's `virtio-queue` works on;
//! - writes each device's descriptor before the guest boots
//!   ([`Transport::new`]);
//! - serves SET_STATUS (feature negotiation, queue activation, reset),
//!   CONFIG_WRITE and — for queues the driver has no eventfd binding for —
//!   NOTIFY ([`Transport::request`]);
//! - gives each back end, once the guest's driver is ready, its queues,
//!   one kick [`EventFd`] per queue (signalled by the host driver without
//!   leaving the guest's run, or by [`Transport::request`]) and an
//!   [`Interrupt`] that sets the device's `isr` bit and signals the
//!   eventfd the host driver turns into the device's line.
//!
//! Back ends run on their own threads and touch guest memory concurrently
//! with the guest, as a device does on real hardware; the guest kernel is
//! trusted with the host, but everything in the rings is checked as
//! hostile (`virtio-queue` validates chains; back ends validate requests).

use std::fs::File;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use colinux_abi as abi;
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
    VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_VERSION_1,
};
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::{Queue, QueueT};
use vm_memory::{
    Address, Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestRegionMmap,
    MmapRegion, VolatileMemory,
};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::sparse::Sparse;

/// Guest RAM as back ends see it: guest-physical address = offset.
pub type GuestRam = GuestMemoryMmap<()>;

/// Map `size` bytes of guest RAM from the host driver's file (its mmap
/// gives the guest's pages in pfn order).
pub fn map_guest_ram(file: &File, size: u64) -> Result<GuestRam> {
    let len = usize::try_from(size).context("guest RAM size")?;
    let file = file
        .try_clone()
        .context("cannot duplicate the driver's file")?;
    let region = MmapRegion::from_file(FileOffset::new(file, 0), len)
        .context("cannot mmap guest RAM from /dev/colinux (a driver with mmap is needed)")?;
    let region = GuestRegionMmap::new(region, GuestAddress(0))
        .context("guest RAM does not fit the address space")?;
    GuestMemoryMmap::from_regions(vec![region]).context("cannot describe guest RAM")
}

/// Guest RAM as the back ends see it: all of it but `hole` (the virtio
/// table, which is the transport's and never RAM for the guest), mapped
/// again from the file `mem` maps; buffers and rings the guest places in
/// the table are then outside RAM for the devices. Memory that is not a
/// file mapping (unit tests) is returned as it is.
pub fn without(mem: &GuestRam, hole: std::ops::Range<u64>) -> Result<GuestRam> {
    let Some(region) = mem.find_region(GuestAddress(0)) else {
        bail!("guest RAM has no region at 0");
    };
    let Some(fo) = region.file_offset() else {
        return Ok(mem.clone());
    };
    let end = region.len() as u64;
    if mem.num_regions() != 1 || hole.start >= hole.end || hole.end > end {
        bail!("cannot leave {hole:#x?} out of guest RAM of {end:#x} bytes");
    }
    let mut regions = Vec::new();
    for (start, stop) in [(0, hole.start), (hole.end, end)] {
        if start == stop {
            continue;
        }
        let len = usize::try_from(stop - start).context("guest RAM size")?;
        let mapping = MmapRegion::from_file(FileOffset::from_arc(fo.arc().clone(), start), len)
            .with_context(|| format!("cannot mmap guest RAM at {start:#x} for the devices"))?;
        regions.push(
            GuestRegionMmap::new(mapping, GuestAddress(start))
                .context("guest RAM does not fit the address space")?,
        );
    }
    GuestMemoryMmap::from_regions(regions).context("cannot describe guest RAM")
}

/// A descriptor chain as a device may serve it: every descriptor, or an
/// error saying how the driver broke the ring (virtio 1.1, 2.6.5): a head
/// outside the queue, a chain cut short (a loop, a next index outside the
/// queue, more than 4 GiB in all, a descriptor outside RAM) or longer than
/// the queue.
pub fn read_chain<M>(
    chain: virtio_queue::DescriptorChain<M>,
    queue_size: u16,
) -> Result<Vec<virtio_queue::desc::split::Descriptor>>
where
    M: std::ops::Deref,
    M::Target: vm_memory::GuestMemory,
{
    let head = chain.head_index();
    if head >= queue_size {
        bail!("descriptor head {head} outside the queue of {queue_size}");
    }
    let descs: Vec<_> = chain.take(usize::from(queue_size) + 1).collect();
    match descs.last() {
        None => bail!("descriptor {head} is outside guest RAM"),
        Some(_) if descs.len() > usize::from(queue_size) => bail!(
            "the chain at {head} is longer than the queue of {queue_size} (indirect descriptors are not offered)"
        ),
        Some(last) if last.has_next() => bail!(
            "the chain at {head} is broken after {} descriptors: a loop, a next index outside the queue, more than 4 GiB, or a descriptor outside guest RAM (next {})",
            descs.len(),
            last.next()
        ),
        Some(_) => Ok(descs),
    }
}

/// Why a device gives up on a queue whose available index moved back:
/// after the ring said more requests were there, the next round found
/// none. A guest's index only grows; this one moves when the device
/// writes its own notification fields or used ring (the rings overlap),
/// and serving on would spin for ever (found by `cargo xtask fuzz`).
pub const INDEX_WENT_BACK: &str =
    "its available index went back (do the rings overlap?): the device needs a reset";

/// The virtio feature bits every device offers (VERSION_1, EVENT_IDX).
pub const TRANSPORT_FEATURES: u64 = (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_RING_F_EVENT_IDX);

/// What a device back end gives the guest once its driver is ready.
#[derive(Debug)]
pub struct Activation {
    pub mem: GuestRam,
    /// The queues the driver set up (ready ones; the index is the queue
    /// number), each with its kick.
    pub queues: Vec<(usize, Queue, Arc<EventFd>)>,
    pub interrupt: Interrupt,
    /// The features the driver accepted.
    pub features: u64,
}

/// A virtio device back end.
pub trait VirtioDevice: Send + std::fmt::Debug {
    /// For logs: `cobd0`.
    fn name(&self) -> String;
    /// The virtio device id (`VIRTIO_ID_*`).
    fn device_type(&self) -> u32;
    /// Device feature bits offered (the transport adds
    /// [`TRANSPORT_FEATURES`]).
    fn features(&self) -> u64;
    /// The largest size of each queue (its length is the queue count).
    fn queue_max_sizes(&self) -> Vec<u16>;
    /// The device's config space, at most
    /// `COOPERATIVE_VIRTIO_CONFIG_SIZE` bytes.
    fn config(&self) -> Vec<u8>;
    /// The driver wrote `data` at `offset` of the config space (already
    /// copied there); refuse what the device does not allow.
    fn write_config(&mut self, offset: usize, data: &[u8]) -> Result<()> {
        let _ = data;
        bail!("{}: config is read-only (write at {offset})", self.name())
    }
    /// Eventfds another process signals when it has used buffers of this
    /// device's queues (a vhost-user back end's call eventfd): the host
    /// driver binds each to the device's line with its used-buffer ISR
    /// bit, so such a signal interrupts the guest without passing through
    /// a thread of the daemon. The same eventfds for the device's life.
    fn used_eventfds(&self) -> Vec<Arc<EventFd>> {
        Vec::new()
    }
    /// The driver is ready: start serving the queues.
    fn activate(&mut self, a: Activation) -> Result<()>;
    /// Stop using the queues and guest memory; return when done.
    fn reset(&mut self);
}

/// What the host driver binds for one device ([`Transport::bindings`]).
#[derive(Debug)]
pub struct Binding<'a> {
    /// The device's index in the table.
    pub index: u32,
    /// For messages: `cobd0`.
    pub name: String,
    /// Its interrupt line.
    pub line: u32,
    /// Raises the line (the daemon's threads set the ISR word first:
    /// [`Interrupt`]).
    pub irqfd: &'a EventFd,
    /// The queues' kick eventfds, by queue number.
    pub kicks: Vec<&'a EventFd>,
    /// Guest-physical address of the device's ISR word.
    pub isr: u64,
    /// [`VirtioDevice::used_eventfds`]: bound to the line with
    /// `COOPERATIVE_VIRTIO_ISR_QUEUE` set in the ISR word by the driver.
    pub used: Vec<Arc<EventFd>>,
}

/// How a back end interrupts the guest: the device's `isr` bit, then its
/// line (the eventfd the host driver raises the line for).
#[derive(Debug, Clone)]
pub struct Interrupt {
    mem: GuestRam,
    isr: GuestAddress,
    irqfd: Arc<EventFd>,
    /// The device's `status` word, where [`Interrupt::needs_reset`] sets
    /// `DEVICE_NEEDS_RESET`.
    status: Option<GuestAddress>,
    /// The device's config space and its generation word, which
    /// [`Interrupt::config_changed`] updates.
    config: Option<(GuestAddress, GuestAddress)>,
}

impl Interrupt {
    /// The interrupt of the device whose `isr` word is at `isr`, raising
    /// its line through `irqfd`.
    pub fn new(mem: GuestRam, isr: GuestAddress, irqfd: Arc<EventFd>) -> Interrupt {
        Interrupt {
            mem,
            isr,
            irqfd,
            status: None,
            config: None,
        }
    }

    /// The same, with the device's config space at `config` and its
    /// generation word at `generation`.
    pub fn with_config(mut self, config: GuestAddress, generation: GuestAddress) -> Interrupt {
        self.config = Some((config, generation));
        self
    }

    /// The device changed its config: write `data` at `offset` of the
    /// config space under the generation counter (odd while it changes,
    /// as the ABI says) and send a configuration change interrupt.
    pub fn config_changed(&self, offset: u64, data: &[u8]) -> Result<()> {
        let Some((config, gen_at)) = self.config else {
            bail!("the device's config space is not known here");
        };
        if offset + data.len() as u64 > u64::from(abi::COOPERATIVE_VIRTIO_CONFIG_SIZE) {
            bail!("{} bytes at {offset}: beyond the config space", data.len());
        }
        let generation: u32 = self
            .mem
            .read_obj(gen_at)
            .context("the device's config generation is outside guest RAM")?;
        let w = |r: Result<(), vm_memory::GuestMemoryError>| {
            r.context("the device's config is outside guest RAM")
        };
        w(self.mem.write_obj(generation.wrapping_add(1) | 1, gen_at))?;
        w(self.mem.write_slice(data, config.unchecked_add(offset)))?;
        w(self
            .mem
            .write_obj((generation.wrapping_add(1) | 1).wrapping_add(1), gen_at))?;
        self.signal(abi::COOPERATIVE_VIRTIO_ISR_CONFIG)
    }

    /// The same, with the device's `status` word at `status`.
    pub fn with_status(mut self, status: GuestAddress) -> Interrupt {
        self.status = Some(status);
        self
    }

    /// Used buffers are there.
    pub fn signal_used(&self) -> Result<()> {
        self.signal(abi::COOPERATIVE_VIRTIO_ISR_QUEUE)
    }

    /// The device cannot go on (the driver broke its rings): set
    /// `DEVICE_NEEDS_RESET` in its status and send a configuration change
    /// interrupt (virtio 1.1, 2.1.2), as virtio-mmio devices do. The driver
    /// must reset the device to use it again.
    pub fn needs_reset(&self) -> Result<()> {
        if let Some(at) = self.status {
            let slice = self
                .mem
                .get_slice(at, 4)
                .context("the device's status is outside guest RAM")?;
            slice
                .get_atomic_ref::<AtomicU32>(0)
                .context("the device's status is not aligned")?
                .fetch_or(VIRTIO_CONFIG_S_NEEDS_RESET, Ordering::SeqCst);
        }
        self.signal(abi::COOPERATIVE_VIRTIO_ISR_CONFIG)
    }

    fn signal(&self, bits: u32) -> Result<()> {
        let slice = self
            .mem
            .get_slice(self.isr, 4)
            .context("the device's isr is outside guest RAM")?;
        slice
            .get_atomic_ref::<AtomicU32>(0)
            .context("the device's isr is not aligned")?
            .fetch_or(bits, Ordering::SeqCst);
        self.irqfd
            .write(1)
            .context("cannot signal the device's interrupt eventfd")
    }
}

/// Byte offsets in `struct cooperative_virtio_device`, from the bindings.
mod off {
    use colinux_abi::cooperative_virtio_device as D;
    use colinux_abi::cooperative_virtio_queue as Q;
    use std::mem::offset_of;
    pub const DEVICE_ID: u64 = offset_of!(D, device_id) as u64;
    pub const VENDOR_ID: u64 = offset_of!(D, vendor_id) as u64;
    pub const IRQ: u64 = offset_of!(D, irq) as u64;
    pub const NUM_QUEUES: u64 = offset_of!(D, num_queues) as u64;
    pub const DEVICE_FEATURES: u64 = offset_of!(D, device_features) as u64;
    pub const DRIVER_FEATURES: u64 = offset_of!(D, driver_features) as u64;
    pub const STATUS: u64 = offset_of!(D, status) as u64;
    pub const ISR: u64 = offset_of!(D, isr) as u64;
    pub const CONFIG_GENERATION: u64 = offset_of!(D, config_generation) as u64;
    pub const CONFIG_SIZE: u64 = offset_of!(D, config_size) as u64;
    pub const QUEUE: u64 = offset_of!(D, queue) as u64;
    pub const CONFIG: u64 = offset_of!(D, config) as u64;
    pub const Q_SIZE: u64 = std::mem::size_of::<Q>() as u64;
    pub const Q_NUM_MAX: u64 = offset_of!(Q, num_max) as u64;
    pub const Q_NUM: u64 = offset_of!(Q, num) as u64;
    pub const Q_READY: u64 = offset_of!(Q, ready) as u64;
    pub const Q_DESC: u64 = offset_of!(Q, desc) as u64;
    pub const Q_DRIVER: u64 = offset_of!(Q, driver) as u64;
    pub const Q_DEVICE: u64 = offset_of!(Q, device) as u64;
}

/// Bytes of one descriptor.
pub const DESCRIPTOR_SIZE: u64 = abi::COOPERATIVE_VIRTIO_DEVICE_SIZE as u64;

/// The virtual lines devices get, in order (`COOPERATIVE_IRQ_VIRTIO_LINES`).
pub fn virtio_lines() -> Vec<u32> {
    (0..abi::COOPERATIVE_NR_IRQS)
        .filter(|l| abi::COOPERATIVE_IRQ_VIRTIO_LINES & (1 << l) != 0)
        .collect()
}

/// Bytes the virtio table of `count` devices takes, page aligned.
pub fn table_size(count: usize) -> u64 {
    (count as u64 * DESCRIPTOR_SIZE).next_multiple_of(u64::from(abi::COOPERATIVE_PAGE_SIZE))
}

/// One device of the table.
#[derive(Debug)]
struct Slot {
    dev: Box<dyn VirtioDevice>,
    base: GuestAddress,
    irq: u32,
    kicks: Vec<Arc<EventFd>>,
    irqfd: Arc<EventFd>,
    offered: u64,
    /// The device status as the device accepted it.
    status: u32,
    active: bool,
}

/// The host side of the transport: the table and its devices.
#[derive(Debug)]
pub struct Transport {
    mem: GuestRam,
    /// Guest RAM without the virtio table: what the back ends get.
    device_mem: GuestRam,
    slots: Vec<Slot>,
    /// Refused requests (the log says the first ones only: a guest may
    /// send millions).
    refused: Sparse,
    /// The host driver's file: readable while a line a back end raised
    /// waits for the next RUN (the run loop's wait ends for it).
    wakeup: Option<File>,
}

/// How [`Transport::request`] went, for the guest (`COOPERATIVE_STATUS_*`).
pub type Status = u32;

impl Transport {
    /// Write the descriptors of `devices` at `table` (guest-physical, the
    /// boot parameters' `virtio_address`) and make each device's eventfds.
    pub fn new(mem: GuestRam, table: u64, devices: Vec<Box<dyn VirtioDevice>>) -> Result<Self> {
        let lines = virtio_lines();
        let mut slots = Vec::new();
        for (i, dev) in devices.into_iter().enumerate() {
            let base = GuestAddress(table + i as u64 * DESCRIPTOR_SIZE);
            let irq = lines[i % lines.len()];
            let sizes = dev.queue_max_sizes();
            let config = dev.config();
            if sizes.is_empty() || sizes.len() > abi::COOPERATIVE_VIRTIO_MAX_QUEUES as usize {
                bail!("{}: {} queues", dev.name(), sizes.len());
            }
            if config.len() > abi::COOPERATIVE_VIRTIO_CONFIG_SIZE as usize {
                bail!("{}: {} bytes of config", dev.name(), config.len());
            }
            let offered = (dev.features() | TRANSPORT_FEATURES) & !(1 << VIRTIO_F_ACCESS_PLATFORM);
            let w = |what: &str, r: Result<(), vm_memory::GuestMemoryError>| {
                r.with_context(|| format!("writing the {what} of {} at {base:?}", dev.name()))
            };
            w(
                "descriptor",
                mem.write_slice(&[0u8; DESCRIPTOR_SIZE as usize], base),
            )?;
            w(
                "id",
                mem.write_obj(dev.device_type(), base.unchecked_add(off::DEVICE_ID)),
            )?;
            w(
                "vendor",
                mem.write_obj(0u32, base.unchecked_add(off::VENDOR_ID)),
            )?;
            w("irq", mem.write_obj(irq, base.unchecked_add(off::IRQ)))?;
            w(
                "queue count",
                mem.write_obj(sizes.len() as u32, base.unchecked_add(off::NUM_QUEUES)),
            )?;
            w(
                "features",
                mem.write_obj(offered, base.unchecked_add(off::DEVICE_FEATURES)),
            )?;
            w(
                "config size",
                mem.write_obj(config.len() as u32, base.unchecked_add(off::CONFIG_SIZE)),
            )?;
            w(
                "config",
                mem.write_slice(&config, base.unchecked_add(off::CONFIG)),
            )?;
            for (q, max) in sizes.iter().enumerate() {
                let at = base.unchecked_add(off::QUEUE + q as u64 * off::Q_SIZE + off::Q_NUM_MAX);
                w("queue size", mem.write_obj(*max, at))?;
            }
            let kicks = sizes
                .iter()
                .map(|_| EventFd::new(EFD_NONBLOCK).map(Arc::new))
                .collect::<std::io::Result<Vec<_>>>()
                .context("cannot make a kick eventfd")?;
            let irqfd = Arc::new(EventFd::new(EFD_NONBLOCK).context("cannot make an eventfd")?);
            tracing::info!(
                "virtio device {i}: {} (id {}), line {irq}, {} queues",
                dev.name(),
                dev.device_type(),
                sizes.len()
            );
            slots.push(Slot {
                dev,
                base,
                irq,
                kicks,
                irqfd,
                offered,
                status: 0,
                active: false,
            });
        }
        let device_mem = without(&mem, table..table + table_size(slots.len()))?;
        Ok(Transport {
            mem,
            device_mem,
            slots,
            refused: Sparse::new("requests refused"),
            wakeup: None,
        })
    }

    /// What the host driver binds for each device. The eventfds live as
    /// long as the transport.
    pub fn bindings(&self) -> impl Iterator<Item = Binding<'_>> {
        self.slots.iter().enumerate().map(|(i, s)| Binding {
            index: i as u32,
            name: s.dev.name(),
            line: s.irq,
            irqfd: &s.irqfd,
            kicks: s.kicks.iter().map(|k| &**k).collect(),
            isr: s.base.unchecked_add(off::ISR).raw_value(),
            used: s.dev.used_eventfds(),
        })
    }

    /// The guest's `COOPERATIVE_OP_VIRTIO` with `params`; its status.
    pub fn request(&mut self, params: &[u64]) -> Status {
        let get = |i: usize| params.get(i).copied().unwrap_or(0);
        let Some(slot) = usize::try_from(get(0))
            .ok()
            .and_then(|i| self.slots.get_mut(i))
        else {
            self.refuse(format_args!(
                "guest virtio request for device {}: no such device",
                get(0)
            ));
            return abi::COOPERATIVE_STATUS_INVALID;
        };
        let r = match u32::try_from(get(1)).unwrap_or(u32::MAX) {
            abi::COOPERATIVE_VIRTIO_REQ_NOTIFY => notify(slot, get(2)),
            abi::COOPERATIVE_VIRTIO_REQ_SET_STATUS => {
                set_status(&self.mem, &self.device_mem, slot, get(2))
            }
            abi::COOPERATIVE_VIRTIO_REQ_CONFIG_WRITE => {
                config_write(&self.mem, slot, get(2), get(3))
            }
            other => Err(anyhow::anyhow!("unknown request {other}")),
        };
        match r {
            Ok(()) => abi::COOPERATIVE_STATUS_OK,
            Err(e) => {
                let name = slot.dev.name();
                self.refuse(format_args!("guest virtio request to {name}: {e:#}"));
                abi::COOPERATIVE_STATUS_INVALID
            }
        }
    }

    /// Log a refused request, sparsely ([`Sparse`]).
    fn refuse(&mut self, what: std::fmt::Arguments<'_>) {
        self.refused.warn(what);
    }

    /// Wake the run loop's wait when `driver` (the host driver's file)
    /// becomes readable: a back end raised a line of an idle guest.
    pub fn wake_on(&mut self, driver: File) {
        self.wakeup = Some(driver);
    }

    /// Stop every device (the guest has ended).
    pub fn shutdown(&mut self) {
        for s in &mut self.slots {
            if s.active {
                s.dev.reset();
                s.active = false;
            }
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl crate::Device for Transport {
    fn name(&self) -> &'static str {
        "virtio"
    }

    fn poll_fds(&self, fds: &mut Vec<libc::pollfd>) {
        use std::os::fd::AsRawFd;
        if let Some(f) = &self.wakeup {
            fds.push(libc::pollfd {
                fd: f.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
    }

    fn ready(&mut self, _fds: &[libc::pollfd]) -> Result<()> {
        // Nothing to do here: the next RUN delivers the raised lines.
        Ok(())
    }

    fn operation(&mut self, op: u32, params: &[u64]) -> Option<u32> {
        (op == abi::COOPERATIVE_OP_VIRTIO).then(|| self.request(params))
    }

    fn finish(&mut self) {
        self.shutdown();
    }
}

fn notify(slot: &mut Slot, queue: u64) -> Result<()> {
    let kick = usize::try_from(queue)
        .ok()
        .and_then(|q| slot.kicks.get(q))
        .with_context(|| format!("NOTIFY of queue {queue}: no such queue"))?;
    kick.write(1).context("cannot signal the kick eventfd")
}

fn read_u32(mem: &GuestRam, at: GuestAddress) -> Result<u32> {
    mem.read_obj(at).with_context(|| format!("reading {at:?}"))
}

fn read_u64(mem: &GuestRam, at: GuestAddress) -> Result<u64> {
    mem.read_obj(at).with_context(|| format!("reading {at:?}"))
}

/// SET_STATUS: the state machine of the virtio spec (3.1, 4.2.3.1).
fn set_status(mem: &GuestRam, device_mem: &GuestRam, slot: &mut Slot, status: u64) -> Result<()> {
    let status_at = slot.base.unchecked_add(off::STATUS);
    let new = u32::try_from(status).context("status wider than 32 bits")?;
    if new == 0 {
        if slot.active {
            slot.dev.reset();
            slot.active = false;
        }
        slot.status = 0;
        mem.write_obj(0u32, status_at)?;
        mem.write_obj(0u32, slot.base.unchecked_add(off::ISR))?;
        mem.write_obj(0u64, slot.base.unchecked_add(off::DRIVER_FEATURES))?;
        tracing::debug!("{}: reset", slot.dev.name());
        return Ok(());
    }
    let mut accepted = new;
    let added = new & !slot.status;
    if new & slot.status != slot.status {
        // Bits are only ever added until a reset.
        bail!(
            "status {new:#x} clears bits of {:#x} without a reset",
            slot.status
        );
    }
    let features = read_u64(mem, slot.base.unchecked_add(off::DRIVER_FEATURES))?;
    if added & VIRTIO_CONFIG_S_FEATURES_OK != 0 {
        let unknown = features & !slot.offered;
        if unknown != 0 || features & (1 << VIRTIO_F_VERSION_1) == 0 {
            tracing::warn!(
                "{}: driver features {features:#x} refused (offered {:#x})",
                slot.dev.name(),
                slot.offered
            );
            accepted &= !VIRTIO_CONFIG_S_FEATURES_OK;
        }
    }
    if added & VIRTIO_CONFIG_S_DRIVER_OK != 0 && !slot.active {
        if accepted & VIRTIO_CONFIG_S_FEATURES_OK == 0 {
            bail!("DRIVER_OK before FEATURES_OK");
        }
        if let Err(e) = activate(mem, device_mem, slot, features) {
            // The guest breaks the device when the write is refused (Linux
            // ignores NEEDS_RESET alone, and its I/O would wait forever).
            let broken = accepted | VIRTIO_CONFIG_S_NEEDS_RESET;
            slot.status = broken;
            mem.write_obj(broken, status_at)?;
            return Err(e.context("cannot start the device"));
        }
        slot.active = true;
    }
    slot.status = accepted;
    mem.write_obj(accepted, status_at)?;
    Ok(())
}

/// Start the device: its queues as the driver set them up in the table
/// (`mem`), checked to lie in `device_mem` (RAM without the table), which
/// the back end gets.
fn activate(mem: &GuestRam, device_mem: &GuestRam, slot: &mut Slot, features: u64) -> Result<()> {
    let event_idx = features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
    let mut queues = Vec::new();
    for (i, kick) in slot.kicks.iter().enumerate() {
        let q = slot.base.unchecked_add(off::QUEUE + i as u64 * off::Q_SIZE);
        if read_u32(mem, q.unchecked_add(off::Q_READY))? != 1 {
            continue;
        }
        let max: u16 = mem.read_obj(q.unchecked_add(off::Q_NUM_MAX))?;
        let num: u16 = mem.read_obj(q.unchecked_add(off::Q_NUM))?;
        if num == 0 || num > max || !num.is_power_of_two() {
            bail!("queue {i}: size {num} (at most {max}, a power of two)");
        }
        let mut queue = Queue::new(max).context("queue")?;
        queue.set_size(num);
        let split = |a: u64| (Some(a as u32), Some((a >> 32) as u32));
        // The split ring's alignments (virtio 1.1, 2.6).
        let addr = |o, align: u64, what| {
            let a = read_u64(mem, q.unchecked_add(o))?;
            if a % align != 0 {
                bail!("queue {i}: its {what} at {a:#x} is not {align}-byte aligned");
            }
            Ok(split(a))
        };
        let (lo, hi) = addr(off::Q_DESC, 16, "descriptor table")?;
        queue.set_desc_table_address(lo, hi);
        let (lo, hi) = addr(off::Q_DRIVER, 2, "available ring")?;
        queue.set_avail_ring_address(lo, hi);
        let (lo, hi) = addr(off::Q_DEVICE, 4, "used ring")?;
        queue.set_used_ring_address(lo, hi);
        queue.set_event_idx(event_idx);
        queue.set_ready(true);
        if !queue.is_valid(device_mem) {
            bail!("queue {i}: its rings are not inside guest RAM (outside the virtio table) or misaligned");
        }
        queues.push((i, queue, kick.clone()));
    }
    if queues.is_empty() {
        bail!("DRIVER_OK with no queue ready");
    }
    slot.dev.activate(Activation {
        mem: device_mem.clone(),
        queues,
        interrupt: Interrupt::new(
            mem.clone(),
            slot.base.unchecked_add(off::ISR),
            slot.irqfd.clone(),
        )
        .with_status(slot.base.unchecked_add(off::STATUS))
        .with_config(
            slot.base.unchecked_add(off::CONFIG),
            slot.base.unchecked_add(off::CONFIG_GENERATION),
        ),
        features,
    })
}

/// CONFIG_WRITE: the driver wrote `len` bytes at `offset` of config.
fn config_write(mem: &GuestRam, slot: &mut Slot, offset: u64, len: u64) -> Result<()> {
    let size = u64::from(read_u32(mem, slot.base.unchecked_add(off::CONFIG_SIZE))?);
    if offset.checked_add(len).is_none_or(|end| end > size) || len > 8 {
        bail!("config write of {len} bytes at {offset}: outside its {size} bytes");
    }
    let mut data = vec![0u8; len as usize];
    mem.read_slice(&mut data, slot.base.unchecked_add(off::CONFIG + offset))?;
    let r = slot.dev.write_config(offset as usize, &data);
    // Whatever the device made of it, its config as it is now, bumping the
    // generation around the change.
    let config = slot.dev.config();
    let gen_at = slot.base.unchecked_add(off::CONFIG_GENERATION);
    let generation = read_u32(mem, gen_at)?;
    mem.write_obj(generation.wrapping_add(1), gen_at)?;
    mem.write_slice(&config, slot.base.unchecked_add(off::CONFIG))?;
    mem.write_obj(generation.wrapping_add(2), gen_at)?;
    r
}

#[cfg(test)]
mod tests;
