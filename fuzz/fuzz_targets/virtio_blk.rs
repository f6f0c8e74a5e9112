//! A hostile guest kernel's virtio-blk queue (cobd).
//!
//! The input is the guest: a queue size, EVENT_IDX on or off, where the
//! descriptor table and both rings are, and 64 KiB of guest RAM holding
//! them, the requests and their buffers. The disk's back end serves
//! whatever the available ring holds with the code its I/O threads run
//! (`block::serve_available_now`) against a 64 KiB image file. A panic, a
//! hang (libFuzzer's `-timeout`), runaway memory (`-rss_limit_mb`) or a
//! disk whose size changed is a finding; errors are the expected answer.
#![no_main]

use std::sync::{Arc, OnceLock};

use colinux_devices::block::{serve_available_now, Backing};
use colinux_devices::virtio::{GuestRam, Interrupt};
use libfuzzer_sys::fuzz_target;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Guest RAM, bytes.
const RAM: usize = 64 * 1024;
/// The disk, bytes.
const DISK: u64 = 64 * 1024;
/// The device's interrupt status word (not part of the rings' space a
/// guest would use, but any address works: it is only written).
const ISR: u64 = RAM as u64 - 4;

struct Rig {
    disk: tempfile::NamedTempFile,
    backing: Arc<Backing>,
    irq: Arc<EventFd>,
}

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let disk = tempfile::NamedTempFile::new().expect("a temporary disk image");
        disk.as_file().set_len(DISK).expect("the disk's size");
        let backing = Arc::new(Backing::open(disk.path(), false).expect("opening the disk"));
        let irq = Arc::new(EventFd::new(EFD_NONBLOCK).expect("an eventfd"));
        Rig { disk, backing, irq }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((head, ram)) = data.split_first_chunk::<7>() else {
        return;
    };
    let rig = rig();
    let mem = GuestRam::from_ranges(&[(GuestAddress(0), RAM)]).expect("guest RAM");
    let n = ram.len().min(RAM);
    mem.write_slice(&ram[..n], GuestAddress(0))
        .expect("guest RAM write");
    let at = |lo: u8, hi: u8, align: u64| {
        let a = u64::from(u16::from_le_bytes([lo, hi])) * align % RAM as u64;
        Some(a as u32)
    };
    let mut q = Queue::new(256).expect("a queue");
    q.set_size(1 << (head[0] % 9));
    q.set_event_idx(head[0] & 0x80 != 0);
    q.set_desc_table_address(at(head[1], head[2], 16), Some(0));
    q.set_avail_ring_address(at(head[3], head[4], 2), Some(0));
    q.set_used_ring_address(at(head[5], head[6], 4), Some(0));
    q.set_ready(true);
    // The transport refuses such a queue before any device sees it.
    if !q.is_valid(&mem) {
        return;
    }
    let interrupt = Interrupt::new(mem.clone(), GuestAddress(ISR), rig.irq.clone());
    let _ = serve_available_now(&mem, q, rig.backing.clone(), interrupt);
    let _ = rig.irq.read();
    let len = rig
        .disk
        .as_file()
        .metadata()
        .expect("the disk's metadata")
        .len();
    assert_eq!(len, DISK, "a guest request changed the size of its disk");
});
