//! The virtio-blk request model against chains built in guest memory, on
//! a real backing file.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::*;
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::GuestMemoryMmap;

const HDR: u64 = 0x10000;
const DATA: u64 = 0x20000;
const STATUS: u64 = 0x80000;
const ISR: u64 = 0x90000;

/// Called by the I/O threads around each request ([`Shared::hook`]).
pub(super) type Hook = Arc<dyn Fn(Stage, u32, u64) + Send + Sync>;

/// How long a test waits for the disk before it fails (never reached
/// unless something hangs).
const PATIENCE: Duration = Duration::from_secs(60);

struct Rig {
    mem: GuestRam,
    file: tempfile::NamedTempFile,
    irqfd: Arc<EventFd>,
}

fn rig(disk_bytes: usize) -> Rig {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let pattern: Vec<u8> = (0..disk_bytes).map(|i| (i / 512) as u8).collect();
    file.write_all(&pattern).unwrap();
    Rig {
        mem,
        file,
        irqfd: Arc::new(EventFd::new(EFD_NONBLOCK).unwrap()),
    }
}

/// A request: (type, sector, data buffers (len, writable)), the k-th
/// request of the batch.
type Req<'a> = (u32, u64, &'a [(u32, bool)]);

/// Chains of requests laid out in guest memory: request k has its header
/// at `HDR + 16k` and its status byte at `STATUS + k`; data buffers follow
/// each other from `DATA`.
#[derive(Default)]
struct Layout {
    /// The next free descriptor.
    desc: u16,
    /// The next request number.
    k: usize,
    data_at: u64,
}

impl Layout {
    fn new() -> Layout {
        Layout {
            desc: 0,
            k: 0,
            data_at: DATA,
        }
    }

    /// Write `reqs`' headers and put their chains in `mock`'s rings; each
    /// request's (number, head descriptor, first data address).
    fn add(
        &mut self,
        r: &Rig,
        mock: &MockSplitQueue<GuestRam>,
        reqs: &[Req],
    ) -> Vec<(usize, u16, u64)> {
        let first_desc = self.desc;
        let mut descs = Vec::new();
        let mut out = Vec::new();
        for (kind, sector, bufs) in reqs {
            let k = self.k;
            self.k += 1;
            let hdr = GuestAddress(HDR + 16 * k as u64);
            r.mem.write_obj(*kind, hdr).unwrap();
            r.mem.write_obj(0u32, hdr.unchecked_add(4)).unwrap();
            r.mem.write_obj(*sector, hdr.unchecked_add(8)).unwrap();
            r.mem
                .write_obj(0xffu8, GuestAddress(STATUS + k as u64))
                .unwrap();
            let first = first_desc + descs.len() as u16;
            let next = |i: u16| first + i + 1;
            out.push((k, first, self.data_at));
            descs.push(RawDescriptor::from(Descriptor::new(
                hdr.0,
                16,
                VRING_DESC_F_NEXT as u16,
                next(0),
            )));
            for (i, (len, writable)) in bufs.iter().enumerate() {
                let flags = VRING_DESC_F_NEXT as u16
                    | if *writable {
                        VRING_DESC_F_WRITE as u16
                    } else {
                        0
                    };
                descs.push(RawDescriptor::from(Descriptor::new(
                    self.data_at,
                    *len,
                    flags,
                    next(i as u16 + 1),
                )));
                self.data_at += u64::from(*len);
            }
            descs.push(RawDescriptor::from(Descriptor::new(
                STATUS + k as u64,
                1,
                VRING_DESC_F_WRITE as u16,
                0,
            )));
        }
        self.desc += descs.len() as u16;
        mock.add_desc_chains(&descs, first_desc).unwrap();
        out
    }
}

/// The disk's threads on `mock`'s queue, with `hook`.
fn start(
    r: &Rig,
    mock: &MockSplitQueue<GuestRam>,
    read_only: bool,
    event_idx: bool,
    hook: Option<Hook>,
) -> (Engine, Arc<EventFd>) {
    let mut queue: Queue = mock.create_queue().unwrap();
    queue.set_event_idx(event_idx);
    let backing = Backing::open(r.file.path(), read_only).unwrap();
    let mut shared = Shared::new(
        r.mem.clone(),
        queue,
        Arc::new(backing),
        Interrupt::new(r.mem.clone(), GuestAddress(ISR), r.irqfd.clone()),
        "cobd3".into(),
    );
    shared.hook = hook;
    let kick = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    let engine = Engine::start(shared, kick.clone(), WORKERS).unwrap();
    (engine, kick)
}

/// The used ring's index.
fn used_idx(r: &Rig, mock: &MockSplitQueue<GuestRam>) -> u16 {
    r.mem.read_obj(mock.used_addr().unchecked_add(2)).unwrap()
}

/// Wait until `n` requests are in the used ring.
fn wait_used(r: &Rig, mock: &MockSplitQueue<GuestRam>, n: u16) {
    let deadline = Instant::now() + PATIENCE;
    while used_idx(r, mock) < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} requests completed",
            used_idx(r, mock)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The used ring's entries in the order they were written: (head, len).
fn used(r: &Rig, mock: &MockSplitQueue<GuestRam>) -> Vec<(u32, u32)> {
    (0..used_idx(r, mock))
        .map(|i| {
            let at = mock.used_addr().unchecked_add(4 + 8 * u64::from(i));
            (
                r.mem.read_obj(at).unwrap(),
                r.mem.read_obj(at.unchecked_add(4)).unwrap(),
            )
        })
        .collect()
}

fn status(r: &Rig, k: usize) -> u8 {
    r.mem.read_obj(GuestAddress(STATUS + k as u64)).unwrap()
}

/// Put `reqs` in a fresh queue, serve them, return the status bytes and the
/// used lengths (in request order).
fn serve_all(r: &Rig, read_only: bool, reqs: &[Req]) -> (Vec<u8>, Vec<u32>) {
    let mock = MockSplitQueue::create(&r.mem, GuestAddress(0x1000), 64);
    let mut layout = Layout::new();
    let heads = layout.add(r, &mock, reqs);
    let (engine, kick) = start(r, &mock, read_only, false, None);
    kick.write(1).unwrap();
    wait_used(r, &mock, reqs.len() as u16);
    engine.stop();
    let entries = used(r, &mock);
    let statuses = heads.iter().map(|(k, ..)| status(r, *k)).collect();
    let lens = heads
        .iter()
        .map(|(_, head, _)| {
            let found: Vec<u32> = entries
                .iter()
                .filter(|(id, _)| *id == u32::from(*head))
                .map(|(_, len)| *len)
                .collect();
            assert_eq!(
                found.len(),
                1,
                "request at {head}: used entries {entries:?}"
            );
            found[0]
        })
        .collect();
    (statuses, lens)
}

fn data(r: &Rig, at: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    r.mem.read_slice(&mut v, GuestAddress(at)).unwrap();
    v
}

fn disk(r: &Rig) -> Vec<u8> {
    let mut f = r.file.reopen().unwrap();
    let mut v = Vec::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut v).unwrap();
    v
}

const OK: u8 = VIRTIO_BLK_S_OK as u8;
const IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;
const UNSUPP: u8 = VIRTIO_BLK_S_UNSUPP as u8;

#[test]
fn reads_and_writes_reach_the_backing_file_and_the_guest_is_interrupted() {
    let r = rig(64 * 512);
    // Read sectors 2..4 into two buffers.
    let (st, used) = serve_all(
        &r,
        false,
        &[(VIRTIO_BLK_T_IN, 2, &[(512, true), (512, true)])],
    );
    assert_eq!((st, used), (vec![OK], vec![1025]));
    assert_eq!(data(&r, DATA, 1024), [[2u8; 512], [3u8; 512]].concat());
    assert_eq!(r.irqfd.read().unwrap(), 1);
    assert_eq!(
        r.mem.read_obj::<u32>(GuestAddress(ISR)).unwrap(),
        colinux_abi::COOPERATIVE_VIRTIO_ISR_QUEUE
    );
    // Write sector 5, then flush; several requests in one batch.
    r.mem.write_slice(&[0xab; 512], GuestAddress(DATA)).unwrap();
    let (st, used) = serve_all(
        &r,
        false,
        &[
            (VIRTIO_BLK_T_OUT, 5, &[(512, false)]),
            (VIRTIO_BLK_T_FLUSH, 0, &[]),
            (VIRTIO_BLK_T_GET_ID, 0, &[(20, true)]),
        ],
    );
    assert_eq!(st, [OK, OK, OK]);
    assert_eq!(used, [1, 1, 21]);
    assert_eq!(&disk(&r)[5 * 512..6 * 512], &[0xab; 512]);
    assert_eq!(&disk(&r)[4 * 512..5 * 512], &[4; 512]);
    assert_eq!(&data(&r, DATA + 512, 20)[..6], b"cobd3\0");
}

#[test]
fn discard_and_write_zeroes_clear_sectors() {
    let r = rig(64 * 512);
    // One segment: sectors 8..16.
    let seg = |sector: u64, count: u32, flags: u32| {
        r.mem.write_obj(sector, GuestAddress(DATA)).unwrap();
        r.mem.write_obj(count, GuestAddress(DATA + 8)).unwrap();
        r.mem.write_obj(flags, GuestAddress(DATA + 12)).unwrap();
    };
    seg(8, 8, 0);
    let (st, _) = serve_all(&r, false, &[(VIRTIO_BLK_T_DISCARD, 0, &[(16, false)])]);
    assert_eq!(st, [OK]);
    assert!(disk(&r)[8 * 512..16 * 512].iter().all(|&b| b == 0));
    assert_eq!(disk(&r).len(), 64 * 512, "discard keeps the size");
    seg(20, 2, 0);
    let (st, _) = serve_all(&r, false, &[(VIRTIO_BLK_T_WRITE_ZEROES, 0, &[(16, false)])]);
    assert_eq!(st, [OK]);
    assert!(disk(&r)[20 * 512..22 * 512].iter().all(|&b| b == 0));
    assert_eq!(&disk(&r)[22 * 512..23 * 512], &[22; 512]);
}

#[test]
fn hostile_requests_get_errors_and_change_nothing() {
    let r = rig(16 * 512);
    let before = disk(&r);
    let cases: &[(Req, u8)] = &[
        // Beyond the end; straddling it; a sector number that overflows.
        ((VIRTIO_BLK_T_IN, 16, &[(512, true)]), IOERR),
        ((VIRTIO_BLK_T_OUT, 15, &[(1024, false)]), IOERR),
        ((VIRTIO_BLK_T_IN, u64::MAX / 256, &[(512, true)]), IOERR),
        // Not whole sectors.
        ((VIRTIO_BLK_T_OUT, 0, &[(100, false)]), IOERR),
        // Data buffers the wrong way round.
        ((VIRTIO_BLK_T_IN, 0, &[(512, false)]), IOERR),
        ((VIRTIO_BLK_T_OUT, 0, &[(512, true)]), IOERR),
        // Unknown request types.
        ((2, 0, &[]), UNSUPP),
        ((0xdead, 0, &[(512, false)]), UNSUPP),
        // Discard segments of a bad size.
        ((VIRTIO_BLK_T_DISCARD, 0, &[(10, false)]), IOERR),
    ];
    for (req, want) in cases {
        let (st, _) = serve_all(&r, false, &[*req]);
        assert_eq!(st, [*want], "{:?}", (req.0, req.1, req.2));
    }
    // A discard segment beyond the end.
    r.mem.write_obj(12u64, GuestAddress(DATA)).unwrap();
    r.mem.write_obj(8u32, GuestAddress(DATA + 8)).unwrap();
    let (st, _) = serve_all(&r, false, &[(VIRTIO_BLK_T_DISCARD, 0, &[(16, false)])]);
    assert_eq!(st, [IOERR]);
    assert_eq!(disk(&r), before);
}

#[test]
fn a_read_only_disk_refuses_writes_and_discards() {
    let r = rig(16 * 512);
    let before = disk(&r);
    let (st, _) = serve_all(
        &r,
        true,
        &[
            (VIRTIO_BLK_T_OUT, 0, &[(512, false)]),
            (VIRTIO_BLK_T_DISCARD, 0, &[(16, false)]),
            (VIRTIO_BLK_T_IN, 0, &[(512, true)]),
        ],
    );
    assert_eq!(st, [IOERR, IOERR, OK]);
    assert_eq!(disk(&r), before);
}

#[test]
fn an_image_in_use_is_refused_and_read_only_users_share() {
    let r = rig(16 * 512);
    let a = Backing::open(r.file.path(), false).unwrap();
    let e = Backing::open(r.file.path(), false).unwrap_err();
    assert!(
        format!("{e:#}").contains("in use by another guest"),
        "{e:#}"
    );
    assert!(Backing::open(r.file.path(), true).is_err());
    drop(a);
    let ro1 = Backing::open(r.file.path(), true).unwrap();
    let _ro2 = Backing::open(r.file.path(), true).unwrap();
    assert!(Backing::open(r.file.path(), false).is_err());
    assert_eq!(ro1.size(), 16 * 512);
    // Not there, a directory, empty.
    assert!(Backing::open(Path::new("/nonexistent/disk.img"), false).is_err());
    let dir = tempfile::tempdir().unwrap();
    let e = Backing::open(dir.path(), true).unwrap_err();
    assert!(
        format!("{e:#}").contains("neither a file nor a block device"),
        "{e:#}"
    );
    let empty = tempfile::NamedTempFile::new().unwrap();
    assert!(format!("{:#}", Backing::open(empty.path(), false).unwrap_err()).contains("empty"));
}

#[test]
fn the_config_space_has_the_capacity_and_limits() {
    let r = rig(64 * 512);
    let d = Disk::open(DiskConfig {
        unit: 0,
        path: r.file.path().to_path_buf(),
        read_only: false,
    })
    .unwrap();
    let c = d.config();
    assert_eq!(u64::from_le_bytes(c[0..8].try_into().unwrap()), 64);
    assert_eq!(u32::from_le_bytes(c[12..16].try_into().unwrap()), SEG_MAX);
    assert_eq!(c.len(), std::mem::size_of::<virtio_blk_config>());
    assert_ne!(d.features() & (1 << VIRTIO_BLK_F_FLUSH), 0);
    assert_eq!(d.features() & (1 << VIRTIO_BLK_F_RO), 0);
    assert_eq!(d.name(), "cobd0");
}

#[test]
fn files_that_are_not_raw_disks_are_refused_naming_what_they_are() {
    for (head, what) in [
        (&b"QFI\xfb\0\0\0\x03"[..], "qcow2"),
        (&[0x1f, 0x8b, 8, 0][..], "gzip"),
        (&b"KDMV"[..], "VMDK"),
    ] {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(head).unwrap();
        f.write_all(&[0u8; 4096]).unwrap();
        let e = format!("{:#}", Backing::open(f.path(), true).unwrap_err());
        assert!(e.contains(what) && e.contains("image import"), "{e}");
    }
    let mut vdi = [0u8; 4096];
    vdi[0x40..0x44].copy_from_slice(&[0x7f, 0x10, 0xda, 0xbe]);
    assert_eq!(container_format(&vdi), Some("VirtualBox VDI image"));
    // An ext4 file system or an MBR disk is raw.
    let mut ext4 = [0u8; 4096];
    ext4[1080..1082].copy_from_slice(&[0x53, 0xef]);
    assert_eq!(container_format(&ext4), None);
}

/// A hook that records what the I/O threads do and can hold requests at
/// their beginning.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    cv: Condvar,
}

#[derive(Default)]
struct GateState {
    /// Requests between Begin and End now, and at most.
    inside: usize,
    most: usize,
    /// `rendezvous` requests were inside at once.
    met: bool,
    released: bool,
    log: Vec<(Stage, u32, u64)>,
}

impl Gate {
    /// A hook holding each request for which `hold(kind, sector)` until
    /// [`Gate::release`], and every request until `rendezvous` of them are
    /// inside at once (0: no rendezvous; the wait gives up after a few
    /// seconds so that a disk serving one at a time fails the test rather
    /// than hanging it).
    fn hook(
        self: &Arc<Self>,
        rendezvous: usize,
        hold: impl Fn(u32, u64) -> bool + Send + Sync + 'static,
    ) -> Hook {
        let gate = self.clone();
        Arc::new(move |stage, kind, sector| {
            let mut s = gate.state.lock().unwrap();
            s.log.push((stage, kind, sector));
            if stage == Stage::End {
                s.inside -= 1;
                return;
            }
            s.inside += 1;
            s.most = s.most.max(s.inside);
            if rendezvous > 0 && s.inside >= rendezvous {
                s.met = true;
            }
            gate.cv.notify_all();
            let until = Instant::now() + Duration::from_secs(5);
            while rendezvous > 0 && !s.met && Instant::now() < until {
                s = gate
                    .cv
                    .wait_timeout(s, Duration::from_millis(50))
                    .unwrap()
                    .0;
            }
            let until = Instant::now() + PATIENCE;
            while hold(kind, sector) && !s.released && Instant::now() < until {
                s = gate
                    .cv
                    .wait_timeout(s, Duration::from_millis(50))
                    .unwrap()
                    .0;
            }
        })
    }

    fn release(&self) {
        self.state.lock().unwrap().released = true;
        self.cv.notify_all();
    }

    /// Wait until `n` requests are inside at once.
    fn wait_inside(&self, n: usize) {
        let until = Instant::now() + PATIENCE;
        let mut s = self.state.lock().unwrap();
        while s.inside < n {
            assert!(Instant::now() < until, "only {} requests began", s.inside);
            s = self
                .cv
                .wait_timeout(s, Duration::from_millis(50))
                .unwrap()
                .0;
        }
    }

    fn log(&self) -> Vec<(Stage, u32, u64)> {
        self.state.lock().unwrap().log.clone()
    }
}

#[test]
fn several_requests_are_in_flight_at_once() {
    let r = rig(64 * 512);
    let mock = MockSplitQueue::create(&r.mem, GuestAddress(0x1000), 64);
    let reqs: Vec<Req> = (0..16)
        .map(|s| (VIRTIO_BLK_T_IN, s, &[(512u32, true)][..]))
        .collect();
    let heads = Layout::new().add(&r, &mock, &reqs);
    let gate = Arc::new(Gate::default());
    let (engine, kick) = start(
        &r,
        &mock,
        false,
        false,
        Some(gate.hook(WORKERS, |_, _| false)),
    );
    kick.write(1).unwrap();
    wait_used(&r, &mock, 16);
    engine.stop();
    let s = gate.state.lock().unwrap();
    assert!(
        s.met,
        "the disk never had {WORKERS} requests in flight (at most {})",
        s.most
    );
    assert_eq!(s.most, WORKERS);
    for (k, _, at) in heads {
        assert_eq!(status(&r, k), OK);
        assert_eq!(data(&r, at, 512), [k as u8; 512], "request {k}'s data");
    }
}

#[test]
fn requests_complete_out_of_order() {
    let r = rig(64 * 512);
    let mock = MockSplitQueue::create(&r.mem, GuestAddress(0x1000), 64);
    // Request 0 (sector 20) is slow; 1..8 read sectors 1..8.
    let mut reqs: Vec<Req> = vec![(VIRTIO_BLK_T_IN, 20, &[(512, true)])];
    reqs.extend((1..8).map(|s| (VIRTIO_BLK_T_IN, s, &[(512u32, true)][..])));
    let heads = Layout::new().add(&r, &mock, &reqs);
    let gate = Arc::new(Gate::default());
    let hook = gate.hook(0, |kind, sector| kind == VIRTIO_BLK_T_IN && sector == 20);
    let (engine, kick) = start(&r, &mock, false, false, Some(hook));
    kick.write(1).unwrap();
    // The seven others complete while the first is held.
    wait_used(&r, &mock, 7);
    let first = u32::from(heads[0].1);
    assert!(
        used(&r, &mock).iter().all(|(id, _)| *id != first),
        "{:?}",
        used(&r, &mock)
    );
    assert_eq!(status(&r, 0), 0xff, "the held request is not done");
    gate.release();
    wait_used(&r, &mock, 8);
    engine.stop();
    let entries = used(&r, &mock);
    assert_eq!(entries.last(), Some(&(first, 513)), "{entries:?}");
    for (k, _, at) in heads {
        assert_eq!(status(&r, k), OK);
        let sector = if k == 0 { 20 } else { k as u8 };
        assert_eq!(data(&r, at, 512), [sector; 512], "request {k}'s data");
    }
}

#[test]
fn a_flush_comes_after_every_write_completed_before_it() {
    let r = rig(64 * 512);
    let mock = MockSplitQueue::create(&r.mem, GuestAddress(0x1000), 64);
    let mut layout = Layout::new();
    // Writes of sectors 1..=4; the one of sector 4 is held in flight.
    let writes: Vec<Req> = (1..=4)
        .map(|s| (VIRTIO_BLK_T_OUT, s, &[(512u32, false)][..]))
        .collect();
    let heads = layout.add(&r, &mock, &writes);
    for (k, _, at) in &heads {
        r.mem
            .write_slice(&[0xa0 + *k as u8; 512], GuestAddress(*at))
            .unwrap();
    }
    let gate = Arc::new(Gate::default());
    let hook = gate.hook(0, |kind, sector| kind == VIRTIO_BLK_T_OUT && sector == 4);
    let (engine, kick) = start(&r, &mock, false, false, Some(hook));
    kick.write(1).unwrap();
    wait_used(&r, &mock, 3);
    // The guest saw three writes complete; now it flushes.
    let completed: Vec<u64> = used(&r, &mock)
        .iter()
        .map(|(id, _)| heads.iter().position(|h| u32::from(h.1) == *id).unwrap() as u64 + 1)
        .collect();
    let flush = layout.add(&r, &mock, &[(VIRTIO_BLK_T_FLUSH, 0, &[])]);
    kick.write(1).unwrap();
    gate.release();
    wait_used(&r, &mock, 5);
    engine.stop();
    assert_eq!(status(&r, flush[0].0), OK);
    let log = gate.log();
    let at = |e: (Stage, u32, u64)| log.iter().position(|x| *x == e).unwrap();
    let flush_begins = at((Stage::Begin, VIRTIO_BLK_T_FLUSH, 0));
    assert_eq!(completed.len(), 3);
    for s in completed {
        assert!(
            at((Stage::End, VIRTIO_BLK_T_OUT, s)) < flush_begins,
            "the write of sector {s} completed before the flush was submitted, \
             but the flush's sync began before its I/O ended: {log:?}"
        );
    }
    let d = disk(&r);
    for s in 1..=4usize {
        assert_eq!(&d[s * 512..(s + 1) * 512], &[0xa0 + s as u8 - 1; 512]);
    }
}

#[test]
fn interrupts_follow_event_idx() {
    let r = rig(64 * 512);
    let mock = MockSplitQueue::create(&r.mem, GuestAddress(0x1000), 64);
    // `used_event`, after the available ring's 64 entries.
    let used_event = mock.avail_addr().unchecked_add(4 + 2 * 64);
    r.mem.write_obj(2u16, used_event).unwrap();
    let mut layout = Layout::new();
    let reqs: Vec<Req> = (0..4)
        .map(|s| (VIRTIO_BLK_T_IN, s, &[(512u32, true)][..]))
        .collect();
    layout.add(&r, &mock, &reqs);
    let (engine, kick) = start(&r, &mock, false, true, None);
    kick.write(1).unwrap();
    wait_used(&r, &mock, 4);
    // Whatever the order of completion, the driver asked for one
    // interrupt: when the used index passes 2.
    let (engine, kick) = {
        engine.stop();
        assert_eq!(r.irqfd.read().unwrap(), 1);
        // It now asks for an interrupt only after the 100th: none.
        r.mem.write_obj(100u16, used_event).unwrap();
        let mut queue: Queue = mock.create_queue().unwrap();
        queue.set_event_idx(true);
        queue.set_next_avail(4);
        queue.set_next_used(4);
        let mut shared = Shared::new(
            r.mem.clone(),
            queue,
            Arc::new(Backing::open(r.file.path(), false).unwrap()),
            Interrupt::new(r.mem.clone(), GuestAddress(ISR), r.irqfd.clone()),
            "cobd3".into(),
        );
        shared.hook = None;
        let kick = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
        (Engine::start(shared, kick.clone(), WORKERS).unwrap(), kick)
    };
    layout.add(&r, &mock, &reqs);
    kick.write(1).unwrap();
    wait_used(&r, &mock, 8);
    engine.stop();
    assert!(
        r.irqfd.read().is_err(),
        "an interrupt the driver did not ask for"
    );
    assert!((0..8).all(|k| status(&r, k) == OK));
}

#[test]
fn hostile_chains_get_errors_and_the_disk_keeps_serving() {
    let r = rig(64 * 512);
    let mock = MockSplitQueue::create(&r.mem, GuestAddress(0x1000), 64);
    let hdr = |k: u64, kind: u32, sector: u64| {
        r.mem.write_obj(kind, GuestAddress(HDR + 16 * k)).unwrap();
        r.mem
            .write_obj(sector, GuestAddress(HDR + 16 * k + 8))
            .unwrap();
        HDR + 16 * k
    };
    let d = |addr: u64, len: u32, flags: u32, next: u16| {
        RawDescriptor::from(Descriptor::new(addr, len, flags as u16, next))
    };
    let (n, w) = (VRING_DESC_F_NEXT, VRING_DESC_F_WRITE);
    // (The loop goes last: the mock takes a descriptor after one with
    // NEXT for part of the same chain.)
    let descs = [
        // 0-2: a read into memory outside guest RAM.
        d(hdr(0, VIRTIO_BLK_T_IN, 0), 16, n, 1),
        d(0xffff_f000, 4096, w | n, 2),
        d(STATUS, 1, w, 0),
        // 3-5: an absurd length.
        d(hdr(1, VIRTIO_BLK_T_IN, 0), 16, n, 4),
        d(DATA, 0xffff_fe00, w | n, 5),
        d(STATUS + 1, 1, w, 0),
        // 6-8: a write from outside guest RAM.
        d(hdr(2, VIRTIO_BLK_T_OUT, 0), 16, n, 7),
        d(0x7fff_0000, 512, n, 8),
        d(STATUS + 2, 1, w, 0),
        // 9-10: its status byte outside guest RAM.
        d(hdr(3, VIRTIO_BLK_T_IN, 0), 16, n, 10),
        d(0x4000_0000, 1, w, 0),
        // (Broken chains — a next index beyond the table, a loop — stop
        // the device until a reset: `broken_rings_stop_the_device_with_the_reason`.)
    ];
    for k in 0..4 {
        r.mem.write_obj(0xffu8, GuestAddress(STATUS + k)).unwrap();
    }
    mock.add_desc_chains(&descs, 0).unwrap();
    let before = disk(&r);
    let (engine, kick) = start(&r, &mock, false, false, None);
    kick.write(1).unwrap();
    wait_used(&r, &mock, 4);
    // The disk still serves a good request after them.
    let mut layout = Layout {
        desc: descs.len() as u16,
        k: 4,
        data_at: DATA,
    };
    let good = layout.add(&r, &mock, &[(VIRTIO_BLK_T_IN, 9, &[(512, true)])]);
    kick.write(1).unwrap();
    wait_used(&r, &mock, 5);
    engine.stop();
    for k in [0, 1, 2] {
        assert_eq!(status(&r, k), IOERR, "hostile request {k}");
    }
    let entries = used(&r, &mock);
    // The request whose status byte is outside guest RAM: used, nothing written.
    assert!(entries.contains(&(9, 0)), "{entries:?}");
    assert_eq!(status(&r, good[0].0), OK);
    assert_eq!(data(&r, DATA, 512), [9u8; 512]);
    assert_eq!(disk(&r), before);
}

#[test]
fn stopping_waits_for_requests_in_flight_and_drops_the_queued_ones() {
    let r = rig(64 * 512);
    let mock = MockSplitQueue::create(&r.mem, GuestAddress(0x1000), 64);
    let reqs: Vec<Req> = (0..12)
        .map(|s| (VIRTIO_BLK_T_IN, s, &[(512u32, true)][..]))
        .collect();
    Layout::new().add(&r, &mock, &reqs);
    let gate = Arc::new(Gate::default());
    let (engine, kick) = start(&r, &mock, false, false, Some(gate.hook(0, |_, _| true)));
    let shared = engine.shared.clone();
    kick.write(1).unwrap();
    gate.wait_inside(WORKERS);
    let stopper = std::thread::spawn(move || engine.stop());
    while !shared.stopping.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    gate.release();
    stopper.join().unwrap();
    // Only the threads' own reference is gone: every thread has ended.
    assert_eq!(Arc::strong_count(&shared), 1);
    let begun = gate
        .log()
        .iter()
        .filter(|(s, ..)| *s == Stage::Begin)
        .count();
    assert_eq!(begun, WORKERS, "queued requests were served after the stop");
    assert_eq!(used_idx(&r, &mock), 0, "completions written after the stop");
}

/// A queue whose rings a hostile driver broke: `descs` in the table,
/// `heads` in the available ring and its index at `avail_idx`. What
/// `dispatch` says, and that it returned at all (no spinning on the ring).
fn serve_broken(descs: &[(u64, u32, u16, u16)], heads: &[u16], avail_idx: u16) -> String {
    let r = rig(16 * 512);
    let mock = MockSplitQueue::create(&r.mem, GuestAddress(0x1000), 16);
    for (i, (addr, len, flags, next)) in descs.iter().enumerate() {
        mock.desc_table()
            .store(
                i as u16,
                RawDescriptor::from(Descriptor::new(*addr, *len, *flags, *next)),
            )
            .unwrap();
    }
    for (i, h) in heads.iter().enumerate() {
        mock.avail().ring().ref_at(i).unwrap().store(u16::to_le(*h));
    }
    mock.avail().idx().store(u16::to_le(avail_idx));
    let queue: Queue = mock.create_queue().unwrap();
    let shared = Shared::new(
        r.mem.clone(),
        queue,
        Arc::new(Backing::open(r.file.path(), false).unwrap()),
        Interrupt::new(r.mem.clone(), GuestAddress(ISR), r.irqfd.clone()),
        "cobd3".into(),
    );
    let (jobs, _rx) = mpsc::channel();
    format!("{:#}", shared.dispatch(&jobs).unwrap_err())
}

#[test]
fn broken_rings_stop_the_device_with_the_reason() {
    const NEXT: u16 = VRING_DESC_F_NEXT as u16;
    const WRITE: u16 = VRING_DESC_F_WRITE as u16;
    // A loop: header -> data -> header ...
    let e = serve_broken(&[(HDR, 16, NEXT, 1), (DATA, 512, NEXT | WRITE, 0)], &[0], 1);
    assert!(e.contains("broken after 16 descriptors"), "{e}");
    // A next index outside the queue.
    let e = serve_broken(&[(HDR, 16, NEXT, 200)], &[0], 1);
    assert!(e.contains("broken after 1 descriptors"), "{e}");
    // More than 4 GiB in one chain.
    let e = serve_broken(
        &[
            (HDR, u32::MAX, NEXT, 1),
            (DATA, u32::MAX, NEXT | WRITE, 2),
            (STATUS, 1, WRITE, 0),
        ],
        &[0],
        1,
    );
    assert!(e.contains("broken after 1 descriptors"), "{e}");
    // A head outside the queue.
    let e = serve_broken(&[], &[300], 1);
    assert!(e.contains("head 300 outside the queue of 16"), "{e}");
    // The available index far ahead of what the device has seen.
    let e = serve_broken(&[], &[], 1000);
    assert!(e.contains("available ring"), "{e}");
}

#[test]
fn a_segment_larger_than_size_max_is_refused_before_any_allocation() {
    let r = rig(16 * 512);
    // 4 GiB - 512: never allocated, never read.
    let (st, used) = serve_all(
        &r,
        false,
        &[(VIRTIO_BLK_T_IN, 0, &[(u32::MAX - 511, true)])],
    );
    assert_eq!((st, used), (vec![IOERR], vec![1]));
    let (st, _) = serve_all(
        &r,
        false,
        &[(VIRTIO_BLK_T_OUT, 0, &[(SIZE_MAX + 512, false)])],
    );
    assert_eq!(st, [IOERR]);
}

const TMPFS_MAGIC: i64 = 0x0102_1994;

/// The file system type of `dir` (`statfs`'s `f_type`).
fn fs_type(dir: &std::path::Path) -> i64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: an all-zero statfs is a valid value to be overwritten.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a statfs to write.
    assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut st) }, 0);
    st.f_type as i64
}

/// Where the first 4 KiB-aligned byte of `buf` is.
fn page_start(buf: &[u8]) -> usize {
    let base = buf.as_ptr() as usize;
    base.next_multiple_of(4096) - base
}

/// An iovec over `buf[at..at + len]`.
fn iov_of(buf: &mut [u8], at: usize, len: usize) -> libc::iovec {
    libc::iovec {
        iov_base: buf[at..at + len].as_mut_ptr().cast(),
        iov_len: len,
    }
}

#[test]
fn aligned_requests_go_direct_and_misaligned_ones_through_the_page_cache() {
    // In the crate's own directory (a real file system: /tmp may be
    // tmpfs, which refuses O_DIRECT; then the test checks the fallback).
    let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
    let path = dir.path().join("disk.img");
    let content: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&path, &content).unwrap();
    let b = Backing::open(&path, false).unwrap();
    let direct = b.direct.is_some();
    let fs = fs_type(dir.path());
    assert!(
        direct || fs == TMPFS_MAGIC,
        "no O_DIRECT descriptor on a file system of type {fs:#x}"
    );
    let mut buf = vec![0u8; 3 * 4096 + 4096];
    let p = page_start(&buf);
    // Aligned: 8 KiB at 4 KiB.
    let mut iov = [iov_of(&mut buf, p, 8192)];
    b.transfer(&mut iov, 4096, false).unwrap();
    assert_eq!(buf[p..p + 8192], content[4096..12288]);
    let after_aligned = b.counts.direct.load(Ordering::Relaxed);
    assert_eq!(after_aligned, if direct { 8192 } else { 0 });
    // Misaligned buffer (3 bytes in): the page cache, same bytes.
    let mut iov = [iov_of(&mut buf, p + 3, 1024)];
    b.transfer(&mut iov, 512, false).unwrap();
    assert_eq!(buf[p + 3..p + 3 + 1024], content[512..1536]);
    assert_eq!(b.counts.direct.load(Ordering::Relaxed), after_aligned);
    assert_eq!(b.counts.read.load(Ordering::Relaxed), 8192 + 1024);
    // A direct write is seen by a buffered read and in the file.
    buf[p..p + 4096].fill(0xab);
    let mut iov = [iov_of(&mut buf, p, 4096)];
    b.transfer(&mut iov, 8192, true).unwrap();
    let mut iov = [iov_of(&mut buf, p + 4096 + 3, 16)];
    b.transfer(&mut iov, 8192, false).unwrap();
    assert_eq!(buf[p + 4096 + 3..p + 4096 + 19], [0xab; 16]);
    assert_eq!(std::fs::read(&path).unwrap()[8192..12288], [0xab; 4096]);
}

#[test]
fn malformed_chains_are_counted_and_logged_sparsely() {
    let r = rig(64 * 512);
    let mock = MockSplitQueue::create(&r.mem, GuestAddress(0x1000), 256);
    // 250 one-descriptor chains: a header with no status byte after it.
    let descs: Vec<RawDescriptor> = (0..250u64)
        .map(|k| RawDescriptor::from(Descriptor::new(HDR + 16 * (k % 4), 16, 0, 0)))
        .collect();
    mock.add_desc_chains(&descs, 0).unwrap();
    let (engine, kick) = start(&r, &mock, false, false, None);
    kick.write(1).unwrap();
    wait_used(&r, &mock, 250);
    let malformed = engine.shared.malformed.count();
    engine.stop();
    assert_eq!(malformed, 250);
    assert!(used(&r, &mock).iter().all(|&(_, len)| len == 0));
}

/// Found by `cargo xtask fuzz virtio_blk` (the input is its seed
/// `fuzz/seeds/virtio_blk/overlapping-rings-spin`): a one-entry queue whose
/// used ring lies over its available ring. Writing the used ring's flags
/// (notification off, then on) moves the available index back and forth,
/// so "more requests" never ends: the dispatcher spun for ever. It must
/// give up with an error (the device then needs a reset).
#[test]
fn rings_whose_notification_writes_move_the_available_index_do_not_spin() {
    let mem = GuestRam::from_ranges(&[(GuestAddress(0), 64 * 1024)]).unwrap();
    mem.write_slice(&[0x28, 0x01, 0x50], GuestAddress(0))
        .unwrap();
    let mut q = Queue::new(256).unwrap();
    q.set_size(1);
    q.set_desc_table_address(Some(0x5100), Some(0));
    q.set_avail_ring_address(Some(2), Some(0));
    q.set_used_ring_address(Some(4), Some(0));
    q.set_ready(true);
    assert!(q.is_valid(&mem));
    let file = tempfile::NamedTempFile::new().unwrap();
    file.as_file().set_len(64 * 1024).unwrap();
    let backing = Arc::new(Backing::open(file.path(), false).unwrap());
    let irq = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    let interrupt = Interrupt::new(mem.clone(), GuestAddress(0xfff0), irq);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(serve_available_now(&mem, q, backing, interrupt));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("serving the ring did not end: the dispatcher spins");
    let e = r.expect_err("a ring whose index goes back must be refused");
    assert!(format!("{e:#}").contains("went back"), "{e:#}");
}

/// Found by `cargo xtask fuzz virtio_blk`: a status buffer whose last byte
/// lies past the end of the address space. The sum overflowed (a panic
/// with overflow checks; without them the status went to a wrapped guest
/// address). The request is used with nothing written, the disk unchanged.
#[test]
fn a_status_buffer_past_the_end_of_the_address_space_is_malformed() {
    let r = rig(64 * 512);
    let mock = MockSplitQueue::create(&r.mem, GuestAddress(0x1000), 16);
    r.mem.write_obj(VIRTIO_BLK_T_IN, GuestAddress(HDR)).unwrap();
    r.mem.write_obj(0u64, GuestAddress(HDR + 8)).unwrap();
    let d = |addr: u64, len: u32, flags: u32, next: u16| {
        RawDescriptor::from(Descriptor::new(addr, len, flags as u16, next))
    };
    let (n, w) = (VRING_DESC_F_NEXT, VRING_DESC_F_WRITE);
    mock.add_desc_chains(
        &[
            d(HDR, 16, n, 1),
            d(DATA, 512, w | n, 2),
            d(0xffff_ffff_ffff_fff0, 0x20, w, 0),
        ],
        0,
    )
    .unwrap();
    let before = disk(&r);
    let q: Queue = mock.create_queue().unwrap();
    let backing = Arc::new(Backing::open(r.file.path(), false).unwrap());
    let interrupt = Interrupt::new(r.mem.clone(), GuestAddress(ISR), r.irqfd.clone());
    let served = serve_available_now(&r.mem, q, backing, interrupt).unwrap();
    assert_eq!(served, 1);
    assert_eq!(used(&r, &mock), [(0, 0)]);
    assert_eq!(disk(&r), before);
}
