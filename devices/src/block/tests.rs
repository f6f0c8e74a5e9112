//! The virtio-blk request model against chains built in guest memory, on
//! a real backing file.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Seek, SeekFrom, Write};

use super::*;
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::GuestMemoryMmap;

const HDR: u64 = 0x10000;
const DATA: u64 = 0x20000;
const STATUS: u64 = 0x80000;
const ISR: u64 = 0x90000;

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

/// Put `reqs` in a fresh queue, serve them, return the status bytes and the
/// used lengths.
fn serve_all(r: &Rig, read_only: bool, reqs: &[Req]) -> (Vec<u8>, Vec<u32>) {
    let mock = MockSplitQueue::create(&r.mem, GuestAddress(0x1000), 64);
    let mut descs = Vec::new();
    let mut data_at = DATA;
    for (k, (kind, sector, bufs)) in reqs.iter().enumerate() {
        let hdr = GuestAddress(HDR + 16 * k as u64);
        r.mem.write_obj(*kind, hdr).unwrap();
        r.mem.write_obj(0u32, hdr.unchecked_add(4)).unwrap();
        r.mem.write_obj(*sector, hdr.unchecked_add(8)).unwrap();
        let first = descs.len() as u16;
        let n = bufs.len() as u16 + 2;
        let next = |i: u16| first + i + 1;
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
                data_at,
                *len,
                flags,
                next(i as u16 + 1),
            )));
            data_at += u64::from(*len);
        }
        descs.push(RawDescriptor::from(Descriptor::new(
            STATUS + k as u64,
            1,
            VRING_DESC_F_WRITE as u16,
            0,
        )));
        assert_eq!(descs.len() as u16, first + n);
    }
    mock.add_desc_chains(&descs, 0).unwrap();
    let queue: Queue = mock.create_queue().unwrap();
    let backing = Backing::open(r.file.path(), read_only).unwrap();
    let mut serve = Serve {
        mem: r.mem.clone(),
        queue,
        backing: Arc::new(backing),
        interrupt: Interrupt::new(r.mem.clone(), GuestAddress(ISR), r.irqfd.clone()),
        serial: "cobd3".into(),
    };
    r.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
    serve.process().unwrap();
    let statuses = (0..reqs.len())
        .map(|k| {
            r.mem
                .read_obj::<u8>(GuestAddress(STATUS + k as u64))
                .unwrap()
        })
        .collect();
    let used = (0..reqs.len())
        .map(|k| {
            let at = mock.used_addr().unchecked_add(4 + 8 * k as u64 + 4);
            r.mem.read_obj::<u32>(at).unwrap()
        })
        .collect();
    (statuses, used)
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

/// A queue whose rings a hostile driver broke: `descs` in the table,
/// `heads` in the available ring and its index at `avail_idx`. What
/// `process` says, and that it returned at all (no spinning on the ring).
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
    let mut serve = Serve {
        mem: r.mem.clone(),
        queue,
        backing: Arc::new(Backing::open(r.file.path(), false).unwrap()),
        interrupt: Interrupt::new(r.mem.clone(), GuestAddress(ISR), r.irqfd.clone()),
        serial: "cobd3".into(),
    };
    format!("{:#}", serve.process().unwrap_err())
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
