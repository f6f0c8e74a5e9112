//! conet's values, the stream framing and the worker against chains built
//! in guest memory, with a socket pair as the back end's peer.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use super::*;
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Address, GuestMemoryMmap};

#[test]
fn values_parse_as_colinux_wrote_them() {
    let s = NetSpec::parse("slirp").unwrap();
    assert_eq!(
        s,
        NetSpec {
            backend: BackendConfig::Slirp { forwards: vec![] },
            mac: None
        }
    );
    let s = NetSpec::parse("slirp,02:11:22:33:44:55,tcp:2222:22,udp:5353:53,tcp:8080").unwrap();
    assert_eq!(s.mac, Some(Mac([2, 0x11, 0x22, 0x33, 0x44, 0x55])));
    assert_eq!(
        s.backend,
        BackendConfig::Slirp {
            forwards: vec![
                Forward {
                    proto: Proto::Tcp,
                    host: 2222,
                    guest: 22
                },
                Forward {
                    proto: Proto::Udp,
                    host: 5353,
                    guest: 53
                },
                Forward {
                    proto: Proto::Tcp,
                    host: 8080,
                    guest: 8080
                },
            ]
        }
    );
    let s = NetSpec::parse("tuntap").unwrap();
    assert_eq!(s.backend, BackendConfig::Tap { name: None });
    let s = NetSpec::parse("tuntap,\"tap3\",02:00:00:00:00:09").unwrap();
    assert_eq!(
        s.backend,
        BackendConfig::Tap {
            name: Some("tap3".into())
        }
    );
    assert_eq!(s.mac.unwrap().to_string(), "02:00:00:00:00:09");
}

#[test]
fn malformed_values_are_refused_with_the_reason() {
    let err = |v: &str| format!("{:#}", NetSpec::parse(v).unwrap_err());
    assert!(
        err("pcap").contains("not a network kind"),
        "{}",
        err("pcap")
    );
    assert!(err("").contains("no network kind"));
    assert!(err("slirp,tcp:0:22").contains("not a port"));
    assert!(err("slirp,tcp:70000:22").contains("not a port"));
    assert!(err("slirp,tcp:22:x").contains("not a port"));
    assert!(err("slirp,tcp:22,tcp:22:23").contains("forwarded twice"));
    assert!(err("slirp,01:00:00:00:00:01").contains("multicast"));
    assert!(err("slirp,02:00:00:00:00").contains("not a MAC address"));
    assert!(err("slirp,zz:00:00:00:00:01").contains("not hex"));
    assert!(err("slirp,bogus").contains("slirp takes"));
    assert!(err("tuntap,a,b").contains("one TAP name"));
    assert!(err("tuntap,averyveryverylongname").contains("1 to 15"));
    assert!(err("tuntap,a/b").contains("not allowed"));
    assert!(err("slirp,02:00:00:00:00:01,02:00:00:00:00:02").contains("two MAC"));
}

#[test]
fn derived_macs_are_stable_local_and_distinct() {
    let a = derived_mac("web", 0);
    assert_eq!(a, derived_mac("web", 0));
    assert_ne!(a, derived_mac("web", 1));
    assert_ne!(a, derived_mac("db", 0));
    for m in [a, derived_mac("db", 3), derived_mac("x", 15)] {
        assert_eq!(m.0[0] & 1, 0, "{m} is multicast");
        assert_eq!(m.0[0] & 2, 2, "{m} is not locally administered");
    }
    // The derivation is part of the guest's identity: it must not change.
    assert_eq!(derived_mac("guest", 0).to_string(), "9e:31:d0:42:74:17");
}

fn eth(len: usize, tag: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_add(tag)).collect()
}

#[test]
fn the_stream_frames_with_a_big_endian_length_and_no_header() {
    let (a, mut peer) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let mut s = backend::Stream::new(a, "test");
    let f1 = eth(60, 1);
    let f2 = eth(1514, 2);
    let mut with_hdr = vec![0xaa; HDR_LEN];
    with_hdr.extend_from_slice(&f1);
    s.send(&with_hdr).unwrap();
    let mut with_hdr = vec![0xbb; HDR_LEN];
    with_hdr.extend_from_slice(&f2);
    s.send(&with_hdr).unwrap();
    assert!(!s.flush().unwrap());
    let mut got = vec![0u8; 8 + 60 + 1514];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got[..4], &60u32.to_be_bytes());
    assert_eq!(&got[4..64], &f1[..]);
    assert_eq!(&got[64..68], &1514u32.to_be_bytes());
    assert_eq!(&got[68..], &f2[..]);

    // Receiving: a frame split across writes, then two in one write.
    let mut out = Vec::new();
    assert!(!s.recv(&mut out).unwrap());
    peer.write_all(&[0, 0, 0]).unwrap();
    assert!(!s.recv(&mut out).unwrap());
    peer.write_all(&[60]).unwrap();
    peer.write_all(&f1[..30]).unwrap();
    assert!(!s.recv(&mut out).unwrap());
    let mut two = f1[30..].to_vec();
    two.extend_from_slice(&1514u32.to_be_bytes());
    two.extend_from_slice(&f2);
    peer.write_all(&two).unwrap();
    assert!(s.recv(&mut out).unwrap());
    assert_eq!(&out[..HDR_LEN], &backend::plain_header());
    assert_eq!(&out[HDR_LEN..], &f1[..]);
    assert!(s.recv(&mut out).unwrap());
    assert_eq!(&out[HDR_LEN..], &f2[..]);
    assert!(!s.recv(&mut out).unwrap());

    // An absurd length is an error, and so is the peer going away.
    peer.write_all(&0x0100_0000u32.to_be_bytes()).unwrap();
    assert!(s.recv(&mut out).is_err());
    let (a, peer) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let mut s = backend::Stream::new(a, "test");
    drop(peer);
    let e = s.recv(&mut out).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
}

#[test]
fn a_full_stream_stops_taking_frames_until_it_drains() {
    let (a, mut peer) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let mut s = backend::Stream::new(a, "test");
    let mut f = vec![0u8; HDR_LEN];
    f.extend_from_slice(&eth(1500, 0));
    let mut sent = 0;
    while s.can_send() {
        s.send(&f).unwrap();
        sent += 1;
        s.flush().unwrap();
        assert!(sent < 100_000, "the stream never filled");
    }
    assert!(s.flush().unwrap(), "bytes should be queued");
    // Drain the peer: everything arrives, in order, whole.
    let mut got = 0;
    let mut len = [0u8; 4];
    let mut body = vec![0u8; 1500];
    while got < sent {
        s.flush().unwrap();
        peer.read_exact(&mut len).unwrap();
        assert_eq!(u32::from_be_bytes(len), 1500);
        peer.read_exact(&mut body).unwrap();
        assert_eq!(body, eth(1500, 0));
        got += 1;
    }
    assert!(!s.flush().unwrap());
    assert!(s.can_send());
}

const ISR: u64 = 0xf0000;
const GENERATION: u64 = 0xf0010;
const CONFIG: u64 = 0xf0100;
const DATA: u64 = 0x40000;

struct Rig {
    mem: GuestRam,
    rx: MockSplitQueue<'static, GuestRam>,
    tx: MockSplitQueue<'static, GuestRam>,
    serve: Serve,
    peer: UnixStream,
}

fn rig() -> Rig {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    // The mocks borrow the memory for their life: leak one handle to it.
    let leaked: &'static GuestRam = Box::leak(Box::new(mem.clone()));
    let rx = MockSplitQueue::create(leaked, GuestAddress(0x1000), 16);
    let tx = MockSplitQueue::create(leaked, GuestAddress(0x8000), 16);
    let (a, peer) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let irqfd = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    let serve = Serve {
        mem: mem.clone(),
        rx: rx.create_queue().unwrap(),
        tx: tx.create_queue().unwrap(),
        backend: Some(Box::new(backend::Stream::new(a, "peer"))),
        interrupt: Interrupt::new(mem.clone(), GuestAddress(ISR), irqfd)
            .with_config(GuestAddress(CONFIG), GuestAddress(GENERATION)),
        iface: "eth9".into(),
        link: Arc::new(AtomicBool::new(true)),
        pending: None,
        spare: Vec::new(),
        tx_frame: Vec::new(),
        flushing: false,
        dropped: 0,
        tx_frames: 0,
        rx_frames: 0,
    };
    Rig {
        mem,
        rx,
        tx,
        serve,
        peer,
    }
}

fn desc(addr: u64, len: u32, writable: bool, next: Option<u16>) -> RawDescriptor {
    let mut flags = if writable {
        VRING_DESC_F_WRITE as u16
    } else {
        0
    };
    if next.is_some() {
        flags |= VRING_DESC_F_NEXT as u16;
    }
    RawDescriptor::from(Descriptor::new(addr, len, flags, next.unwrap_or(0)))
}

fn used_len(mem: &GuestRam, q: &MockSplitQueue<GuestRam>, k: u64) -> u32 {
    mem.read_obj(q.used_addr().unchecked_add(4 + 8 * k + 4))
        .unwrap()
}

fn used_idx(mem: &GuestRam, q: &MockSplitQueue<GuestRam>) -> u16 {
    mem.read_obj(q.used_addr().unchecked_add(2)).unwrap()
}

#[test]
fn frames_the_guest_sends_reach_the_peer_and_hostile_chains_do_not() {
    let mut r = rig();
    let f = eth(100, 7);
    // Chain 1: the header and the frame in two descriptors.
    r.mem
        .write_slice(&[0u8; HDR_LEN], GuestAddress(DATA))
        .unwrap();
    r.mem.write_slice(&f, GuestAddress(DATA + 0x100)).unwrap();
    let descs = [
        desc(DATA, HDR_LEN as u32, false, Some(1)),
        desc(DATA + 0x100, f.len() as u32, false, None),
        // Chain 2: a writable descriptor (wrong direction).
        desc(DATA, 200, true, None),
        // Chain 3: outside guest RAM.
        desc(0x7000_0000, 200, false, None),
        // Chain 4: an absurd length.
        desc(DATA, 0x7fff_ffff, false, None),
        // Chain 5: header and frame in one descriptor.
        desc(DATA + 0x1000, (HDR_LEN + f.len()) as u32, false, None),
    ];
    r.mem
        .write_slice(&[0u8; HDR_LEN], GuestAddress(DATA + 0x1000))
        .unwrap();
    r.mem
        .write_slice(&f, GuestAddress(DATA + 0x1000 + HDR_LEN as u64))
        .unwrap();
    r.tx.add_desc_chains(&descs, 0).unwrap();
    r.serve.tx = r.tx.create_queue().unwrap();
    assert!(!r.serve.transmit().unwrap());
    assert_eq!(used_idx(&r.mem, &r.tx), 5, "every chain is given back");
    assert_eq!(r.serve.dropped, 3);
    let mut got = vec![0u8; 2 * (4 + 100)];
    r.peer.read_exact(&mut got).unwrap();
    assert_eq!(&got[..4], &100u32.to_be_bytes());
    assert_eq!(&got[4..104], &f[..]);
    assert_eq!(&got[108..], &f[..]);
    assert!(r.serve.backend.is_some());
}

#[test]
fn frames_from_the_peer_fill_the_guests_buffers() {
    let mut r = rig();
    let f1 = eth(60, 3);
    let f2 = eth(1514, 4);
    let big = eth(3000, 5);
    for f in [&f1, &big, &f2] {
        r.peer.write_all(&(f.len() as u32).to_be_bytes()).unwrap();
        r.peer.write_all(f).unwrap();
    }
    // No buffer yet: the first frame waits.
    assert!(!r.serve.receive().unwrap());
    assert!(r.serve.pending.is_some());
    // Three buffers of 1526 bytes, the first one split in two
    // descriptors; the second too small for the 3000-byte frame.
    let size = (HDR_LEN + 1514) as u32;
    r.rx.add_desc_chains(
        &[
            desc(DATA, 10, true, Some(1)),
            desc(DATA + 0x100, size - 10, true, None),
            desc(DATA + 0x1000, size, true, None),
            desc(DATA + 0x2000, size, true, None),
        ],
        0,
    )
    .unwrap();
    // A fresh queue sees the new chains; keep what is pending.
    let pending = r.serve.pending.take();
    r.serve.rx = r.rx.create_queue().unwrap();
    r.serve.pending = pending;
    r.serve.receive().unwrap();
    assert_eq!(used_idx(&r.mem, &r.rx), 3);
    assert_eq!(used_len(&r.mem, &r.rx, 0), (HDR_LEN + 60) as u32);
    assert_eq!(used_len(&r.mem, &r.rx, 1), 0, "the big frame is dropped");
    assert_eq!(used_len(&r.mem, &r.rx, 2), (HDR_LEN + 1514) as u32);
    let read = |at: u64, n: usize| {
        let mut v = vec![0u8; n];
        r.mem.read_slice(&mut v, GuestAddress(at)).unwrap();
        v
    };
    let mut first = read(DATA, 10);
    first.extend(read(DATA + 0x100, 60 + HDR_LEN - 10));
    assert_eq!(&first[..HDR_LEN], &backend::plain_header());
    assert_eq!(&first[HDR_LEN..], &f1[..]);
    assert_eq!(read(DATA + 0x2000 + HDR_LEN as u64, 1514), f2);
    // The guest was interrupted.
    let isr: u32 = r.mem.read_obj(GuestAddress(ISR)).unwrap();
    assert_eq!(isr & 1, 1);
    // The peer going away takes the link down, without an error: the
    // config's status says so under a new (even) generation, with a
    // configuration change interrupt.
    use virtio_bindings::virtio_net::virtio_net_config as C;
    let status_at = GuestAddress(CONFIG + std::mem::offset_of!(C, status) as u64);
    r.mem.write_obj(0u32, GuestAddress(ISR)).unwrap();
    r.mem.write_obj(1u16, status_at).unwrap();
    drop(r.peer);
    r.serve.receive().unwrap();
    assert!(r.serve.backend.is_none());
    assert!(!r.serve.link.load(Ordering::SeqCst));
    let status: u16 = r.mem.read_obj(status_at).unwrap();
    assert_eq!(status, 0, "the link is down");
    let generation: u32 = r.mem.read_obj(GuestAddress(GENERATION)).unwrap();
    assert_eq!(generation, 2);
    let isr: u32 = r.mem.read_obj(GuestAddress(ISR)).unwrap();
    assert_eq!(isr, colinux_abi::COOPERATIVE_VIRTIO_ISR_CONFIG);
}

#[test]
fn a_taken_port_is_refused_before_passt_starts() {
    let l = std::net::TcpListener::bind(("0.0.0.0", 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let f = Forward {
        proto: Proto::Tcp,
        host: port,
        guest: 22,
    };
    let e = passt::check_ports_free(&[f]).unwrap_err();
    assert!(e.to_string().contains("already in use"), "{e:#}");
    drop(l);
    passt::check_ports_free(&[f]).unwrap();
    assert_eq!(
        passt::arguments(&[f])[4..],
        ["--tcp-ports".to_string(), format!("{port}:22")]
    );
}

#[test]
fn a_missing_tap_is_refused_by_name() {
    let e = tap::Tap::open(Some("nosuchtap9")).unwrap_err();
    assert!(
        format!("{e:#}").contains("there is no network interface nosuchtap9"),
        "{e:#}"
    );
}

/// An IPv4 header checksum.
fn ip_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A DHCPDISCOVER from `mac`, as an Ethernet frame.
fn dhcp_discover(mac: Mac) -> Vec<u8> {
    let mut bootp = vec![0u8; 236];
    bootp[0] = 1; // BOOTREQUEST
    bootp[1] = 1; // Ethernet
    bootp[2] = 6;
    bootp[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    bootp[28..34].copy_from_slice(&mac.0);
    bootp.extend_from_slice(&[99, 130, 83, 99, 53, 1, 1, 255]);
    let udp_len = 8 + bootp.len();
    let mut udp = Vec::new();
    udp.extend_from_slice(&68u16.to_be_bytes());
    udp.extend_from_slice(&67u16.to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&bootp);
    let mut ip = vec![
        0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255,
    ];
    ip[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    let c = ip_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&udp);
    f
}

#[test]
#[ignore = "needs passt (COLINUX_PASST or in PATH) and a host interface with a default route"]
fn passt_answers_dhcp_through_the_stream_and_ends_with_its_socket() {
    let mac = derived_mac("unit-test", 0);
    let mut net = Net::open(NetConfig {
        unit: 0,
        mac,
        backend: BackendConfig::Slirp { forwards: vec![] },
    })
    .unwrap();
    let b = net.backend.as_mut().unwrap();
    let mut frame = backend::plain_header().to_vec();
    frame.extend_from_slice(&dhcp_discover(mac));
    b.send(&frame).unwrap();
    while b.flush().unwrap() {}
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut out = Vec::new();
    let offer = loop {
        assert!(
            std::time::Instant::now() < until,
            "no DHCP offer from passt"
        );
        if b.recv(&mut out).unwrap() {
            let eth = &out[HDR_LEN..];
            // IPv4, UDP, from port 67 to 68, to our MAC.
            if eth.len() > 42
                && eth[12..14] == [8, 0]
                && eth[23] == 17
                && eth[34..38] == [0, 67, 0, 68]
            {
                break eth.to_vec();
            }
        } else {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    assert_eq!(&offer[..6], &mac.0, "the offer is addressed to the guest");
    // yiaddr: an address for the guest.
    let yiaddr = &offer[42 + 16..42 + 20];
    assert_ne!(yiaddr, [0, 0, 0, 0]);
    let pid = net.passt.as_ref().unwrap().pid();
    drop(net);
    // passt is gone with the device.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

/// A one-entry queue whose used ring lies over its available ring (the
/// layout `cargo xtask fuzz virtio_blk` found spinning cobd): writing the
/// used ring's flags moves the available index back and forth. Returns the
/// queue, with guest RAM prepared.
fn overlapping_queue(mem: &GuestRam) -> Queue {
    mem.write_slice(&[0x28, 0x01, 0x50, 0, 0, 0, 0, 0], GuestAddress(0))
        .unwrap();
    let mut q = Queue::new(QUEUE_SIZE).unwrap();
    q.set_size(1);
    q.set_desc_table_address(Some(0x5100), Some(0));
    q.set_avail_ring_address(Some(2), Some(0));
    q.set_used_ring_address(Some(4), Some(0));
    q.set_ready(true);
    assert!(q.is_valid(mem));
    q
}

/// `f` on its own thread; its result, or a panic if it did not end.
fn ends<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(20))
        .expect("serving the ring did not end: it spins")
}

#[test]
fn a_transmit_ring_whose_index_goes_back_is_refused_not_spun_on() {
    let mut r = rig();
    r.serve.tx = overlapping_queue(&r.mem);
    let e = ends(move || r.serve.transmit().map(|_| ())).expect_err("the ring must be refused");
    assert!(format!("{e:#}").contains("went back"), "{e:#}");
}

#[test]
fn a_receive_ring_whose_index_goes_back_is_refused_not_spun_on() {
    let mut r = rig();
    for f in [eth(60, 1), eth(60, 2), eth(60, 3)] {
        r.peer.write_all(&(f.len() as u32).to_be_bytes()).unwrap();
        r.peer.write_all(&f).unwrap();
    }
    r.serve.rx = overlapping_queue(&r.mem);
    let peer = r.peer;
    let mut serve = r.serve;
    let e = ends(move || serve.receive().map(|_| ())).expect_err("the ring must be refused");
    drop(peer);
    assert!(format!("{e:#}").contains("went back"), "{e:#}");
}

/// A back end that hands out `frames` and records, for each `recv`, the
/// capacity of the buffer it was given.
#[derive(Debug)]
struct Recorder {
    frames: std::collections::VecDeque<Vec<u8>>,
    capacities: Arc<std::sync::Mutex<Vec<usize>>>,
}

impl backend::Backend for Recorder {
    fn describe(&self) -> String {
        "recorder".into()
    }
    fn fd(&self) -> std::os::fd::RawFd {
        -1
    }
    fn can_send(&self) -> bool {
        true
    }
    fn send(&mut self, _frame: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<bool> {
        Ok(false)
    }
    fn recv(&mut self, out: &mut Vec<u8>) -> std::io::Result<bool> {
        self.capacities.lock().unwrap().push(out.capacity());
        let Some(f) = self.frames.pop_front() else {
            return Ok(false);
        };
        // As the TAP does: room for the largest frame, then the frame.
        out.resize(HDR_LEN + backend::MAX_FRAME, 0);
        out.clear();
        out.extend_from_slice(&f);
        Ok(true)
    }
}

/// The receive path keeps its frame buffer: a buffer of the largest
/// frame's size allocated per frame (and per empty poll) was an mmap and a
/// munmap each with the daemon's allocator (musl), and a munmap in a
/// threaded process interrupts the CPU running the guest (a TLB
/// shootdown). Before the fix every `recv` got an empty buffer.
#[test]
fn receiving_reuses_one_frame_buffer() {
    let mut r = rig();
    let capacities = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut frame = backend::plain_header().to_vec();
    frame.extend_from_slice(&eth(60, 5));
    r.serve.backend = Some(Box::new(Recorder {
        frames: std::iter::repeat_n(frame, 3).collect(),
        capacities: capacities.clone(),
    }));
    let size = (HDR_LEN + 1514) as u32;
    r.rx.add_desc_chains(
        &[
            desc(DATA, size, true, None),
            desc(DATA + 0x1000, size, true, None),
            desc(DATA + 0x2000, size, true, None),
        ],
        0,
    )
    .unwrap();
    r.serve.rx = r.rx.create_queue().unwrap();
    r.serve.receive().unwrap();
    assert_eq!(used_idx(&r.mem, &r.rx), 3);
    // Nothing more: the next rounds poll an empty back end.
    r.serve.receive().unwrap();
    r.serve.receive().unwrap();
    let caps = capacities.lock().unwrap().clone();
    assert!(caps.len() >= 5, "{caps:?}");
    assert!(
        caps[1..].iter().all(|&c| c >= HDR_LEN + backend::MAX_FRAME),
        "a recv after the first got a fresh buffer: capacities {caps:?}"
    );
}
