//! The transport against a guest driver played by the test: descriptors,
//! feature negotiation, activation, kicks, config writes, reset, bad
//! requests.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use super::*;
use virtio_bindings::virtio_config::{VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER};

const TABLE: u64 = 0x1_0000;
const RAM: usize = 1 << 20;

#[derive(Debug, Default)]
struct Seen {
    activations: Vec<(Vec<usize>, u64)>,
    resets: usize,
    config_writes: Vec<(usize, Vec<u8>)>,
    config: Vec<u8>,
}

#[derive(Debug)]
struct Fake {
    seen: Arc<Mutex<Seen>>,
    kicks: Arc<Mutex<Vec<Arc<EventFd>>>>,
    interrupt: Arc<Mutex<Option<Interrupt>>>,
}

impl VirtioDevice for Fake {
    fn name(&self) -> String {
        "fake0".into()
    }
    fn device_type(&self) -> u32 {
        42
    }
    fn features(&self) -> u64 {
        1 << 3
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![16, 8]
    }
    fn config(&self) -> Vec<u8> {
        self.seen.lock().unwrap().config.clone()
    }
    fn write_config(&mut self, offset: usize, data: &[u8]) -> Result<()> {
        let mut s = self.seen.lock().unwrap();
        s.config_writes.push((offset, data.to_vec()));
        s.config[offset..offset + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn activate(&mut self, a: Activation) -> Result<()> {
        self.seen
            .lock()
            .unwrap()
            .activations
            .push((a.queues.iter().map(|q| q.0).collect(), a.features));
        *self.kicks.lock().unwrap() = a.queues.iter().map(|q| q.2.clone()).collect();
        *self.interrupt.lock().unwrap() = Some(a.interrupt);
        Ok(())
    }
    fn reset(&mut self) {
        self.seen.lock().unwrap().resets += 1;
    }
}

struct Setup {
    mem: GuestRam,
    t: Transport,
    seen: Arc<Mutex<Seen>>,
    kicks: Arc<Mutex<Vec<Arc<EventFd>>>>,
    interrupt: Arc<Mutex<Option<Interrupt>>>,
}

fn setup() -> Setup {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM)]).unwrap();
    let seen = Arc::new(Mutex::new(Seen {
        config: vec![1, 2, 3, 4, 5, 6, 7, 8],
        ..Default::default()
    }));
    let kicks = Arc::new(Mutex::new(Vec::new()));
    let interrupt = Arc::new(Mutex::new(None));
    let fake = Fake {
        seen: seen.clone(),
        kicks: kicks.clone(),
        interrupt: interrupt.clone(),
    };
    let t = Transport::new(mem.clone(), TABLE, vec![Box::new(fake)]).unwrap();
    Setup {
        mem,
        t,
        seen,
        kicks,
        interrupt,
    }
}

fn at(o: u64) -> GuestAddress {
    GuestAddress(TABLE + o)
}

fn q(i: u64, o: u64) -> GuestAddress {
    at(off::QUEUE + i * off::Q_SIZE + o)
}

fn status(s: &mut Setup, v: u32) -> (u32, u32) {
    let r =
        s.t.request(&[0, abi::COOPERATIVE_VIRTIO_REQ_SET_STATUS.into(), v.into()]);
    (r, s.mem.read_obj(at(off::STATUS)).unwrap())
}

/// The guest driver's steps up to FEATURES_OK with `features`.
fn negotiate(s: &mut Setup, features: u64) -> u32 {
    status(s, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    status(s, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    s.mem.write_obj(features, at(off::DRIVER_FEATURES)).unwrap();
    status(
        s,
        VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK,
    )
    .1
}

/// Queue 0 at 0x2000.. with 8 entries, ready.
fn setup_queue0(s: &Setup) {
    s.mem.write_obj(8u16, q(0, off::Q_NUM)).unwrap();
    s.mem.write_obj(0x2000u64, q(0, off::Q_DESC)).unwrap();
    s.mem.write_obj(0x3000u64, q(0, off::Q_DRIVER)).unwrap();
    s.mem.write_obj(0x4000u64, q(0, off::Q_DEVICE)).unwrap();
    s.mem.write_obj(1u32, q(0, off::Q_READY)).unwrap();
}

const OK: u32 = VIRTIO_CONFIG_S_ACKNOWLEDGE
    | VIRTIO_CONFIG_S_DRIVER
    | VIRTIO_CONFIG_S_FEATURES_OK
    | VIRTIO_CONFIG_S_DRIVER_OK;

#[test]
fn descriptors_are_written_before_the_guest_boots() {
    let s = setup();
    let r = |o| s.mem.read_obj::<u32>(at(o)).unwrap();
    assert_eq!(r(off::DEVICE_ID), 42);
    assert_eq!(r(off::NUM_QUEUES), 2);
    assert_eq!(r(off::CONFIG_SIZE), 8);
    assert!(virtio_lines().contains(&r(off::IRQ)));
    let features: u64 = s.mem.read_obj(at(off::DEVICE_FEATURES)).unwrap();
    assert_eq!(features, (1 << 3) | TRANSPORT_FEATURES);
    assert_eq!(s.mem.read_obj::<u16>(q(0, off::Q_NUM_MAX)).unwrap(), 16);
    assert_eq!(s.mem.read_obj::<u16>(q(1, off::Q_NUM_MAX)).unwrap(), 8);
    assert_eq!(s.mem.read_obj::<u16>(q(2, off::Q_NUM_MAX)).unwrap(), 0);
    let mut config = [0u8; 8];
    s.mem.read_slice(&mut config, at(off::CONFIG)).unwrap();
    assert_eq!(config, [1, 2, 3, 4, 5, 6, 7, 8]);
    // The lines are those of the ABI.
    assert_eq!(
        virtio_lines().iter().fold(0, |m, l| m | (1 << l)),
        abi::COOPERATIVE_IRQ_VIRTIO_LINES
    );
}

#[test]
fn features_are_negotiated_and_unknown_ones_refused() {
    let mut s = setup();
    let good = (1 << VIRTIO_F_VERSION_1) | (1 << 3);
    assert_ne!(negotiate(&mut s, good) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
    let mut s = setup();
    // A bit the device did not offer.
    let st = negotiate(&mut s, good | (1 << 5));
    assert_eq!(st & VIRTIO_CONFIG_S_FEATURES_OK, 0);
    // A legacy driver (no VERSION_1).
    let mut s = setup();
    assert_eq!(negotiate(&mut s, 1 << 3) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
}

#[test]
fn driver_ok_activates_the_ready_queues_and_kicks_reach_them() {
    let mut s = setup();
    let features = (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_RING_F_EVENT_IDX);
    negotiate(&mut s, features);
    setup_queue0(&s);
    let (r, st) = status(&mut s, OK);
    assert_eq!((r, st), (abi::COOPERATIVE_STATUS_OK, OK));
    assert_eq!(s.seen.lock().unwrap().activations, [(vec![0], features)]);
    // A notification without a driver binding goes to the queue's kick.
    let kick = s.kicks.lock().unwrap()[0].clone();
    assert_eq!(
        s.t.request(&[0, abi::COOPERATIVE_VIRTIO_REQ_NOTIFY.into(), 0]),
        abi::COOPERATIVE_STATUS_OK
    );
    assert_eq!(kick.read().unwrap(), 1);
    // The interrupt sets the isr bit and signals the line's eventfd.
    let irq = s.interrupt.lock().unwrap().clone().unwrap();
    irq.signal_used().unwrap();
    assert_eq!(
        s.mem.read_obj::<u32>(at(off::ISR)).unwrap(),
        abi::COOPERATIVE_VIRTIO_ISR_QUEUE
    );
    let irqfd = s.t.bindings().next().unwrap().irqfd;
    assert_eq!(irqfd.read().unwrap(), 1);
    // Reset: the device stops, the registers clear.
    let (r, st) = status(&mut s, 0);
    assert_eq!((r, st), (abi::COOPERATIVE_STATUS_OK, 0));
    assert_eq!(s.seen.lock().unwrap().resets, 1);
    assert_eq!(s.mem.read_obj::<u32>(at(off::ISR)).unwrap(), 0);
    assert_eq!(s.mem.read_obj::<u64>(at(off::DRIVER_FEATURES)).unwrap(), 0);
}

#[test]
fn bad_queues_make_the_device_need_a_reset() {
    for (i, spoil) in [
        |s: &Setup| s.mem.write_obj(3u16, q(0, off::Q_NUM)).unwrap(),
        |s: &Setup| s.mem.write_obj(32u16, q(0, off::Q_NUM)).unwrap(),
        |s: &Setup| s.mem.write_obj(0x7fff_0000u64, q(0, off::Q_DESC)).unwrap(),
        |s: &Setup| s.mem.write_obj(0x3001u64, q(0, off::Q_DRIVER)).unwrap(),
        |s: &Setup| s.mem.write_obj(0u32, q(0, off::Q_READY)).unwrap(),
    ]
    .into_iter()
    .enumerate()
    {
        let mut s = setup();
        negotiate(&mut s, 1 << VIRTIO_F_VERSION_1);
        setup_queue0(&s);
        spoil(&s);
        let (r, st) = status(&mut s, OK);
        assert_eq!(r, abi::COOPERATIVE_STATUS_INVALID, "case {i}");
        assert_ne!(st & VIRTIO_CONFIG_S_NEEDS_RESET, 0, "case {i}: {st:#x}");
        assert!(s.seen.lock().unwrap().activations.is_empty());
    }
}

#[test]
fn hostile_requests_are_refused_without_effect() {
    let mut s = setup();
    let invalid = abi::COOPERATIVE_STATUS_INVALID;
    // No such device, request, queue.
    assert_eq!(s.t.request(&[1, 0, 0]), invalid);
    assert_eq!(s.t.request(&[u64::MAX, 0, 0]), invalid);
    assert_eq!(s.t.request(&[0, 99, 0]), invalid);
    assert_eq!(s.t.request(&[0, 0, 2]), invalid);
    // DRIVER_OK before FEATURES_OK; status bits taken away.
    status(&mut s, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    assert_eq!(
        status(&mut s, VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK).0,
        invalid
    );
    assert_eq!(
        status(
            &mut s,
            VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK
        )
        .0,
        invalid
    );
    let set = u64::from(abi::COOPERATIVE_VIRTIO_REQ_SET_STATUS);
    assert_eq!(s.t.request(&[0, set, 1 << 40]), invalid);
    // Config writes outside the config.
    let w = abi::COOPERATIVE_VIRTIO_REQ_CONFIG_WRITE as u64;
    assert_eq!(s.t.request(&[0, w, 7, 2]), invalid);
    assert_eq!(s.t.request(&[0, w, u64::MAX, 2]), invalid);
    assert!(s.seen.lock().unwrap().config_writes.is_empty());
    assert!(s.seen.lock().unwrap().activations.is_empty());
}

#[test]
fn config_writes_reach_the_device_and_bump_the_generation_twice() {
    let mut s = setup();
    s.mem.write_slice(&[9, 9], at(off::CONFIG + 2)).unwrap();
    let w = abi::COOPERATIVE_VIRTIO_REQ_CONFIG_WRITE as u64;
    assert_eq!(s.t.request(&[0, w, 2, 2]), abi::COOPERATIVE_STATUS_OK);
    assert_eq!(s.seen.lock().unwrap().config_writes, [(2, vec![9, 9])]);
    // Even again (not being changed), and changed.
    assert_eq!(
        s.mem.read_obj::<u32>(at(off::CONFIG_GENERATION)).unwrap(),
        2
    );
}

#[test]
fn the_table_size_is_whole_pages() {
    assert_eq!(table_size(0), 0);
    assert_eq!(table_size(1), 4096);
    assert_eq!(table_size(7), 4096);
    assert_eq!(table_size(8), 8192);
}

#[test]
fn devices_see_guest_ram_without_the_virtio_table() {
    let file = tempfile::tempfile().unwrap();
    file.set_len(RAM as u64).unwrap();
    let mem = map_guest_ram(&file, RAM as u64).unwrap();
    let dev = without(&mem, TABLE..TABLE + 0x1000).unwrap();
    // Both sides of the table are the same RAM; the table is not there.
    dev.write_obj(7u32, GuestAddress(TABLE - 4)).unwrap();
    dev.write_obj(9u32, GuestAddress(TABLE + 0x1000)).unwrap();
    assert_eq!(mem.read_obj::<u32>(GuestAddress(TABLE - 4)).unwrap(), 7);
    assert_eq!(
        mem.read_obj::<u32>(GuestAddress(TABLE + 0x1000)).unwrap(),
        9
    );
    assert!(dev.read_obj::<u32>(GuestAddress(TABLE)).is_err());
    assert!(dev.read_obj::<u64>(GuestAddress(TABLE - 4)).is_err());
    assert!(dev
        .write_slice(&[1; 8], GuestAddress(TABLE + 0xffc))
        .is_err());
    assert!(dev.read_obj::<u8>(GuestAddress(RAM as u64)).is_err());
    // A table at the start or the end of RAM leaves one piece.
    let dev = without(&mem, 0..0x1000).unwrap();
    assert!(dev.read_obj::<u8>(GuestAddress(0)).is_err());
    let dev = without(&mem, RAM as u64 - 0x1000..RAM as u64).unwrap();
    assert!(dev.read_obj::<u8>(GuestAddress(RAM as u64 - 1)).is_err());
    assert!(without(&mem, 0..RAM as u64 + 1).is_err());
}

#[test]
fn needs_reset_sets_the_status_bit_and_a_config_interrupt() {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM)]).unwrap();
    let irqfd = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    mem.write_obj(0xfu32, GuestAddress(0x100)).unwrap();
    let i = Interrupt::new(mem.clone(), GuestAddress(0x104), irqfd.clone())
        .with_status(GuestAddress(0x100));
    i.needs_reset().unwrap();
    assert_eq!(
        mem.read_obj::<u32>(GuestAddress(0x100)).unwrap(),
        0xf | VIRTIO_CONFIG_S_NEEDS_RESET
    );
    assert_eq!(
        mem.read_obj::<u32>(GuestAddress(0x104)).unwrap(),
        abi::COOPERATIVE_VIRTIO_ISR_CONFIG
    );
    assert_eq!(irqfd.read().unwrap(), 1);
}
