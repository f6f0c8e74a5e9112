//! Unit tests of the guest logic against a fake kernel.

use std::alloc::Layout;
use std::collections::HashMap;

use super::*;

/// A fake kernel: pages in a map, daemon memory in a `Vec`, allocations
/// tracked, failures injectable.
#[derive(Debug)]
struct Fake {
    /// Frame numbers handed out, in order, from this one (crossing 4 GiB).
    next_frame: u64,
    pages: HashMap<u64, Vec<u8>>,
    /// alloc_page fails with this errno once this many pages are live.
    fail_at: Option<(usize, Errno)>,
    /// The daemon's memory: `user` at address `user_base`.
    user_base: u64,
    user: Vec<u8>,
    allocs: HashMap<usize, usize>,
    logs: Vec<(Level, u32, String)>,
    copies: usize,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            next_frame: FRAMES_BELOW_4G - 100,
            pages: HashMap::new(),
            fail_at: None,
            user_base: USER_BASE,
            user: (0..3 * PAGE_SIZE as usize)
                .map(|i| (i % 251) as u8)
                .collect(),
            allocs: HashMap::new(),
            logs: Vec::new(),
            copies: 0,
        }
    }

    fn page(&self, frame: u64) -> &[u8] {
        self.pages.get(&frame).expect("a live page")
    }

    fn last_log(&self) -> &str {
        self.logs.last().map(|l| l.2.as_str()).unwrap_or("")
    }
}

impl Host for Fake {
    fn alloc_page(&mut self) -> Result<u64, Errno> {
        if let Some((n, e)) = self.fail_at {
            if self.pages.len() >= n {
                return Err(e);
            }
        }
        // Frames are not contiguous: skip one now and then.
        let frame = self.next_frame;
        self.next_frame += if frame.is_multiple_of(7) { 2 } else { 1 };
        self.pages.insert(frame, vec![0; PAGE_SIZE as usize]);
        Ok(frame)
    }

    fn free_page(&mut self, frame: u64) {
        assert!(
            self.pages.remove(&frame).is_some(),
            "double free of {frame}"
        );
    }

    fn copy_from_user(
        &mut self,
        frame: u64,
        offset: usize,
        user: u64,
        len: usize,
    ) -> Result<(), Errno> {
        assert!(offset + len <= PAGE_SIZE as usize && len > 0);
        self.copies += 1;
        let start = user.checked_sub(self.user_base).ok_or(Errno::EFAULT)? as usize;
        let src = self
            .user
            .get(start..start + len)
            .ok_or(Errno::EFAULT)?
            .to_vec();
        let page = self.pages.get_mut(&frame).expect("a live page");
        page[offset..offset + len].copy_from_slice(&src);
        Ok(())
    }

    fn zero(&mut self, frame: u64, offset: usize, len: usize) -> Result<(), Errno> {
        assert!(offset + len <= PAGE_SIZE as usize && len > 0);
        let page = self.pages.get_mut(&frame).expect("a live page");
        page[offset..offset + len].fill(0);
        Ok(())
    }

    fn alloc(&mut self, size: usize) -> Option<NonNull<u8>> {
        let layout = Layout::from_size_align(size.max(1), 8).ok()?;
        // SAFETY: the layout has a nonzero size.
        let p = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })?;
        self.allocs.insert(p.as_ptr() as usize, size);
        Some(p)
    }

    fn free(&mut self, ptr: NonNull<u8>, size: usize) {
        let recorded = self.allocs.remove(&(ptr.as_ptr() as usize));
        assert_eq!(recorded, Some(size), "free of an unknown allocation");
        let layout = Layout::from_size_align(size.max(1), 8).expect("layout");
        // SAFETY: allocated by `alloc` above with this layout.
        unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) };
    }

    fn log(&mut self, level: Level, guest: u32, msg: &[u8]) {
        let text = String::from_utf8(msg.to_vec()).expect("ASCII log");
        self.logs.push((level, guest, text));
    }
}

const MIB: u64 = 1 << 20;
const USER_BASE: u64 = 0x7f00_0000_0000;

fn create_arg(size: u64) -> cooperative_ioctl_create {
    cooperative_ioctl_create {
        abi_version: COOPERATIVE_ABI_VERSION,
        memory_size: size,
        ..Default::default()
    }
}

fn load_arg(guest_address: u64, user_offset: u64, size: u64, zero: u64) -> cooperative_ioctl_load {
    cooperative_ioctl_load {
        abi_version: COOPERATIVE_ABI_VERSION,
        guest_address,
        user_address: USER_BASE + user_offset,
        size,
        zero_size: zero,
        ..Default::default()
    }
}

fn new_guest(fake: &mut Fake, size: u64) -> Slot {
    let mut slot = Slot::empty();
    create(fake, &mut slot, &create_arg(size), u64::MAX).expect("create");
    slot
}

fn frames(slot: &Slot) -> Vec<u64> {
    slot.guest().expect("a guest").frames().to_vec()
}

#[test]
fn create_allocates_every_page_and_accounts_for_them() {
    let mut fake = Fake::new();
    let slot = new_guest(&mut fake, 8 * MIB);
    let f = frames(&slot);
    assert_eq!(f.len(), 2048);
    assert_eq!(fake.pages.len(), 2048);
    let mut info_arg = cooperative_ioctl_info {
        abi_version: COOPERATIVE_ABI_VERSION,
        ..Default::default()
    };
    info(&slot, &mut info_arg).expect("info");
    assert_eq!(info_arg.state, COOPERATIVE_GUEST_STATE_CREATED);
    assert_eq!(info_arg.memory_size, 8 * MIB);
    assert_eq!(info_arg.pages, 2048);
    // The fake hands out frames from 100 below the 4 GiB line.
    assert_eq!(
        info_arg.pages_below_4g,
        f.iter().filter(|&&x| x < FRAMES_BELOW_4G).count() as u64
    );
    assert!(info_arg.pages_below_4g > 0 && info_arg.pages_below_4g < 100);
    assert_eq!(info_arg.lowest_frame, *f.iter().min().expect("frames"));
    assert_eq!(info_arg.highest_frame, *f.iter().max().expect("frames"));
    assert_eq!(info_arg.guest_id, slot.guest().expect("guest").id());
    assert!(fake
        .last_log()
        .starts_with("created: 8 MiB of RAM in 2048 host pages"));
}

#[test]
fn create_validates_its_argument() {
    let mut fake = Fake::new();
    let mut slot = Slot::empty();
    let mut bad = create_arg(8 * MIB);
    bad.abi_version = COOPERATIVE_ABI_VERSION + 1;
    assert_eq!(
        create(&mut fake, &mut slot, &bad, u64::MAX),
        Err(Errno::EPROTO)
    );
    let mut bad = create_arg(8 * MIB);
    bad.flags = 1;
    assert_eq!(
        create(&mut fake, &mut slot, &bad, u64::MAX),
        Err(Errno::EINVAL)
    );
    let mut bad = create_arg(8 * MIB);
    bad.reserved[1] = 1;
    assert_eq!(
        create(&mut fake, &mut slot, &bad, u64::MAX),
        Err(Errno::EINVAL)
    );
    for size in [
        0,
        4096,
        MIN_MEMORY - PAGE_SIZE,
        MIN_MEMORY + 1,
        MAX_MEMORY + PAGE_SIZE,
        u64::MAX,
        u64::MAX - PAGE_MASK,
    ] {
        assert_eq!(
            create(&mut fake, &mut slot, &create_arg(size), u64::MAX),
            Err(Errno::EINVAL),
            "size {size:#x}"
        );
    }
    // More than the host may give: refused before any allocation.
    assert_eq!(
        create(&mut fake, &mut slot, &create_arg(16 * MIB), 4095),
        Err(Errno::ENOMEM)
    );
    assert!(
        fake.last_log().contains("more than the host-wide limit"),
        "{}",
        fake.last_log()
    );
    assert!(fake.pages.is_empty() && fake.allocs.is_empty());
    assert!(slot.guest().is_none());
    assert!(fake.logs.iter().all(|l| l.0 == Level::Warn));
}

#[test]
fn create_accepts_the_limits() {
    let mut fake = Fake::new();
    let mut slot = Slot::empty();
    create(&mut fake, &mut slot, &create_arg(MIN_MEMORY), 2048).expect("min");
    destroy(&mut fake, &mut slot).expect("destroy");
    // The largest size is only checked, not allocated (3 GiB of fake pages).
    fake.fail_at = Some((10, Errno::ENOMEM));
    assert_eq!(
        create(&mut fake, &mut slot, &create_arg(MAX_MEMORY), u64::MAX),
        Err(Errno::ENOMEM)
    );
    assert!(
        fake.last_log().contains("failed after 10 of 786432 pages"),
        "{}",
        fake.last_log()
    );
}

#[test]
fn a_second_create_on_the_same_file_is_refused() {
    let mut fake = Fake::new();
    let mut slot = new_guest(&mut fake, 8 * MIB);
    let before = frames(&slot);
    assert_eq!(
        create(&mut fake, &mut slot, &create_arg(8 * MIB), u64::MAX),
        Err(Errno::EBUSY)
    );
    assert_eq!(frames(&slot), before);
    assert_eq!(fake.pages.len(), 2048);
}

#[test]
fn failed_or_interrupted_allocation_frees_everything() {
    for e in [Errno::ENOMEM, Errno::EINTR] {
        let mut fake = Fake::new();
        fake.fail_at = Some((1000, e));
        let mut slot = Slot::empty();
        assert_eq!(
            create(&mut fake, &mut slot, &create_arg(8 * MIB), u64::MAX),
            Err(e)
        );
        assert!(fake.pages.is_empty(), "pages left after {e:?}");
        assert!(fake.allocs.is_empty(), "tables left after {e:?}");
        assert!(slot.guest().is_none());
        // The file can create a guest afterwards.
        fake.fail_at = None;
        create(&mut fake, &mut slot, &create_arg(8 * MIB), u64::MAX).expect("create after failure");
    }
}

#[test]
fn destroy_frees_every_page_and_table() {
    let mut fake = Fake::new();
    let mut slot = new_guest(&mut fake, 12 * MIB);
    let arg = load_arg(0x1000, 0, 5000, 100);
    load(&mut fake, &mut slot, &arg).expect("load");
    assert_eq!(fake.pages.len(), 3072);
    assert_eq!(fake.allocs.len(), 2);
    destroy(&mut fake, &mut slot).expect("destroy");
    assert!(fake.pages.is_empty());
    assert!(fake.allocs.is_empty());
    assert!(slot.guest().is_none());
    assert!(fake.last_log().contains("3072 host pages freed"));
    assert_eq!(destroy(&mut fake, &mut slot), Err(Errno::EINVAL));
    assert_eq!(load(&mut fake, &mut slot, &arg), Err(Errno::EINVAL));
    let mut i = cooperative_ioctl_info {
        abi_version: COOPERATIVE_ABI_VERSION,
        guest_id: 77,
        pages: 5,
        ..Default::default()
    };
    info(&slot, &mut i).expect("info");
    assert_eq!(i.state, COOPERATIVE_GUEST_STATE_NONE);
    assert_eq!(i.pages, 0);
    assert_eq!(i.guest_id, 0);
}

#[test]
fn load_copies_across_pages_then_zeroes() {
    let mut fake = Fake::new();
    let mut slot = new_guest(&mut fake, 8 * MIB);
    let f = frames(&slot);
    // Dirty the range that will be zeroed, to see the zeroing.
    load(&mut fake, &mut slot, &load_arg(0x3000, 0, 3 * PAGE_SIZE, 0)).expect("dirty");
    // 6000 bytes from user offset 10 to guest 0x1f00: pages 1, 2, 3 (partly);
    // then 4000 zeroed bytes from 0x3670.
    let arg = load_arg(0x1f00, 10, 6000, 4000);
    fake.copies = 0;
    load(&mut fake, &mut slot, &arg).expect("load");
    assert_eq!(fake.copies, 3, "one copy per touched page");
    let user = fake.user.clone();
    let mut guest_ram = Vec::new();
    for &frame in &f[..6] {
        guest_ram.extend_from_slice(fake.page(frame));
    }
    assert_eq!(&guest_ram[0x1f00..0x1f00 + 6000], &user[10..6010]);
    assert!(guest_ram[0x1f00 + 6000..0x1f00 + 10000]
        .iter()
        .all(|&b| b == 0));
    // Beyond the zeroed range, the earlier load is intact.
    let after = 0x1f00 + 10000;
    assert_eq!(&guest_ram[after..0x6000], &user[after - 0x3000..0x3000]);
    assert!(guest_ram[..0x1f00].iter().all(|&b| b == 0));
    let mut i = cooperative_ioctl_info {
        abi_version: COOPERATIVE_ABI_VERSION,
        ..Default::default()
    };
    info(&slot, &mut i).expect("info");
    assert_eq!(i.loads, 2);
    assert_eq!(i.loaded_bytes, 3 * PAGE_SIZE + 6000);
}

#[test]
fn load_checks_bounds_without_overflow() {
    let mut fake = Fake::new();
    let mut slot = new_guest(&mut fake, 8 * MIB);
    let ram = 8 * MIB;
    let cases = [
        (ram, 1, 0),
        (ram - 10, 11, 0),
        (ram - 10, 10, 1),
        (0, 0, ram + 1),
        (u64::MAX, 1, 0),
        (u64::MAX - 5, 10, 0),
        (1, u64::MAX, 0),
        (0, 1, u64::MAX),
        (ram - 1, 0, u64::MAX),
    ];
    for (addr, size, zero) in cases {
        let arg = load_arg(addr, 0, size, zero);
        assert_eq!(
            load(&mut fake, &mut slot, &arg),
            Err(Errno::EINVAL),
            "{addr:#x} + {size:#x} + {zero:#x}"
        );
    }
    assert_eq!(fake.copies, 0);
    // Exactly up to the end is fine, and so is an empty load.
    load(&mut fake, &mut slot, &load_arg(ram - 100, 0, 60, 40)).expect("to the end");
    load(&mut fake, &mut slot, &load_arg(ram, 0, 0, 0)).expect("empty at the end");
    load(&mut fake, &mut slot, &load_arg(0, 0, 0, ram)).expect("zero all RAM");
    let mut i = cooperative_ioctl_info {
        abi_version: COOPERATIVE_ABI_VERSION,
        ..Default::default()
    };
    info(&slot, &mut i).expect("info");
    assert_eq!((i.loads, i.loaded_bytes), (3, 60));
}

#[test]
fn load_rejects_bad_daemon_addresses_and_fields() {
    let mut fake = Fake::new();
    let mut slot = new_guest(&mut fake, 8 * MIB);
    let mut arg = load_arg(0, 0, 100, 0);
    arg.user_address = u64::MAX - 10;
    assert_eq!(load(&mut fake, &mut slot, &arg), Err(Errno::EFAULT));
    arg.user_address = 0x1000; // unmapped in the fake
    assert_eq!(load(&mut fake, &mut slot, &arg), Err(Errno::EFAULT));
    assert!(fake.last_log().contains("bad daemon address"));
    // Past the end of the daemon's buffer in the second page copied.
    let arg = load_arg(0x800, 2 * PAGE_SIZE + 100, PAGE_SIZE, 0);
    assert_eq!(load(&mut fake, &mut slot, &arg), Err(Errno::EFAULT));
    let mut arg = load_arg(0, 0, 1, 0);
    arg.abi_version = 0;
    assert_eq!(load(&mut fake, &mut slot, &arg), Err(Errno::EPROTO));
    let mut arg = load_arg(0, 0, 1, 0);
    arg.flags = 4;
    assert_eq!(load(&mut fake, &mut slot, &arg), Err(Errno::EINVAL));
    let mut arg = load_arg(0, 0, 1, 0);
    arg.reserved[0] = 1;
    assert_eq!(load(&mut fake, &mut slot, &arg), Err(Errno::EINVAL));
    let mut i = cooperative_ioctl_info {
        abi_version: COOPERATIVE_ABI_VERSION,
        ..Default::default()
    };
    info(&slot, &mut i).expect("info");
    assert_eq!(
        (i.loads, i.loaded_bytes),
        (0, 0),
        "failed loads are not counted"
    );
}

#[test]
fn info_validates_its_argument() {
    let slot = Slot::empty();
    let mut i = cooperative_ioctl_info::default();
    assert_eq!(info(&slot, &mut i), Err(Errno::EPROTO));
    let mut i = cooperative_ioctl_info {
        abi_version: COOPERATIVE_ABI_VERSION,
        reserved: [0, 0, 1, 0],
        ..Default::default()
    };
    assert_eq!(info(&slot, &mut i), Err(Errno::EINVAL));
}

#[test]
fn guests_get_distinct_ids() {
    let mut fake = Fake::new();
    let a = new_guest(&mut fake, 8 * MIB);
    let b = new_guest(&mut fake, 8 * MIB);
    assert_ne!(a.guest().expect("a").id(), b.guest().expect("b").id());
}

// ---- RUN's checks and the guest's state (crate::run) ----

use crate::run::{check_boot, check_run, set_state};
use colinux_abi::{
    cooperative_boot_params, cooperative_ioctl_run, COOPERATIVE_ABI_MAGIC,
    COOPERATIVE_GUEST_STATE_RUNNING, COOPERATIVE_MAX_LINUX_MEMORY_SIZE,
    COOPERATIVE_RUN_POWER_BUTTON, COOPERATIVE_VIRTIO_MAX_DEVICES,
};

const VA: u64 = 0xc000_0000;

fn run_arg(entry: u64, stack: u64) -> cooperative_ioctl_run {
    cooperative_ioctl_run {
        abi_version: COOPERATIVE_ABI_VERSION,
        entry,
        stack,
        ..Default::default()
    }
}

fn state(slot: &Slot) -> u32 {
    let mut i = cooperative_ioctl_info {
        abi_version: COOPERATIVE_ABI_VERSION,
        ..Default::default()
    };
    info(slot, &mut i).expect("info");
    i.state
}

#[test]
fn run_checks_version_flags_and_the_first_runs_entry_and_stack() {
    let mut fake = Fake::new();
    assert_eq!(
        check_run(&mut fake, &Slot::empty(), &run_arg(VA, VA + 0x1000), false),
        Err(Errno::EINVAL),
        "no guest"
    );
    let slot = new_guest(&mut fake, 8 * MIB);
    let ok = run_arg(VA + 0x1000, VA + 0x2000);
    assert_eq!(check_run(&mut fake, &slot, &ok, false), Ok(()));
    let mut a = ok;
    a.abi_version += 1;
    assert_eq!(check_run(&mut fake, &slot, &a, false), Err(Errno::EPROTO));
    let mut a = ok;
    a.flags = COOPERATIVE_RUN_POWER_BUTTON;
    assert_eq!(
        check_run(&mut fake, &slot, &a, false),
        Ok(()),
        "the power button"
    );
    let mut a = ok;
    a.flags = 2;
    assert_eq!(check_run(&mut fake, &slot, &a, false), Err(Errno::EINVAL));
    let mut a = ok;
    a.reserved[0] = 1;
    assert_eq!(check_run(&mut fake, &slot, &a, false), Err(Errno::EINVAL));
    for (entry, stack, what) in [
        (0, VA + 0x2000, "entry 0"),
        (VA - 1, VA + 0x2000, "entry below RAM"),
        (VA + 8 * MIB, VA + 0x2000, "entry at the end of RAM"),
        (VA + 0x1000, VA + 8 * MIB + 4, "stack beyond RAM"),
        (VA + 0x1000, VA + 0x2002, "misaligned stack"),
        (VA + 0x1000, VA + 4, "no room for the start frame"),
    ] {
        assert_eq!(
            check_run(&mut fake, &slot, &run_arg(entry, stack), false),
            Err(Errno::EINVAL),
            "{what}"
        );
        assert!(
            fake.last_log().contains("RUN refused"),
            "{what}: {}",
            fake.last_log()
        );
    }
    // Once started: no entry, stack or boot any more.
    assert_eq!(check_run(&mut fake, &slot, &ok, true), Err(Errno::EINVAL));
    assert_eq!(check_run(&mut fake, &slot, &run_arg(0, 0), true), Ok(()));
}

#[test]
fn a_guest_that_has_run_is_not_rewritten_and_a_dead_one_does_not_run() {
    let mut fake = Fake::new();
    let mut slot = new_guest(&mut fake, 8 * MIB);
    assert_eq!(state(&slot), COOPERATIVE_GUEST_STATE_CREATED);
    assert_eq!(load(&mut fake, &mut slot, &load_arg(0, 0, 16, 0)), Ok(()));
    set_state(&mut slot, COOPERATIVE_GUEST_STATE_RUNNING);
    assert_eq!(state(&slot), COOPERATIVE_GUEST_STATE_RUNNING);
    assert_eq!(
        load(&mut fake, &mut slot, &load_arg(0, 0, 16, 0)),
        Err(Errno::EBUSY)
    );
    assert!(fake.last_log().contains("running"), "{}", fake.last_log());
    set_state(&mut slot, COOPERATIVE_GUEST_STATE_DEAD);
    assert_eq!(state(&slot), COOPERATIVE_GUEST_STATE_DEAD);
    // Only forward.
    set_state(&mut slot, COOPERATIVE_GUEST_STATE_RUNNING);
    assert_eq!(state(&slot), COOPERATIVE_GUEST_STATE_DEAD);
    assert_eq!(
        load(&mut fake, &mut slot, &load_arg(0, 0, 16, 0)),
        Err(Errno::EBUSY)
    );
    assert_eq!(
        check_run(&mut fake, &slot, &run_arg(0, 0), true),
        Err(Errno::ESRCH)
    );
    destroy(&mut fake, &mut slot).expect("destroy");
}

/// A change that makes boot parameters bad.
type Spoil = fn(&mut cooperative_boot_params);

fn boot(ram: u64) -> cooperative_boot_params {
    cooperative_boot_params {
        magic: COOPERATIVE_ABI_MAGIC,
        abi_version: COOPERATIVE_ABI_VERSION,
        memory_size: ram,
        kernel_end: 0x60_0000,
        initrd_address: 0x60_0000,
        initrd_size: 0x20_0000,
        ..Default::default()
    }
}

#[test]
fn boot_parameters_are_checked_field_by_field() {
    let mut fake = Fake::new();
    let ram = 128 * MIB;
    assert_eq!(check_boot(&mut fake, ram, &boot(ram)), Ok(()));
    let mut with_table = boot(ram);
    with_table.virtio_address = 0x80_0000;
    with_table.virtio_count = 3;
    assert_eq!(check_boot(&mut fake, ram, &with_table), Ok(()));
    let cases: [(&str, Spoil); 17] = [
        ("magic", |b| b.magic = 0),
        ("abi_version", |b| b.abi_version = 0),
        ("memory_size", |b| b.memory_size -= 4096),
        ("kernel_end", |b| b.kernel_end = 129 * MIB),
        ("initrd_size without", |b| b.initrd_address = 0),
        ("initrd_address/initrd_size", |b| b.initrd_size = 127 * MIB),
        ("flags", |b| b.flags = 1),
        ("driver fills", |b| b.p2m_address = 1),
        ("not NUL-terminated", |b| b.command_line = [b'x'; 256]),
        ("after its NUL", |b| b.command_line[10] = b'x'),
        ("reserved0", |b| b.reserved0 = 1),
        ("both zero or neither", |b| b.virtio_count = 1),
        ("both zero or neither", |b| b.virtio_address = 0x80_0000),
        ("MAX_DEVICES", |b| {
            b.virtio_address = 0x80_0000;
            b.virtio_count = COOPERATIVE_VIRTIO_MAX_DEVICES + 1;
        }),
        ("not page aligned", |b| {
            b.virtio_address = 0x80_0008;
            b.virtio_count = 1;
        }),
        ("between kernel_end and the end of RAM", |b| {
            b.virtio_address = 128 * MIB - 4096;
            b.virtio_count = 8;
        }),
        ("overlaps the initrd", |b| {
            b.virtio_address = 0x70_0000;
            b.virtio_count = 1;
        }),
    ];
    for (what, spoil) in cases {
        let mut b = boot(ram);
        spoil(&mut b);
        assert_eq!(check_boot(&mut fake, ram, &b), Err(Errno::EINVAL), "{what}");
        assert!(
            fake.last_log().contains(what),
            "{what}: {}",
            fake.last_log()
        );
    }
    // Larger than the i386 guest maps.
    let big = u64::from(COOPERATIVE_MAX_LINUX_MEMORY_SIZE) + 4096;
    assert_eq!(check_boot(&mut fake, big, &boot(big)), Err(Errno::EINVAL));
    assert!(fake.last_log().contains("HIGHMEM"), "{}", fake.last_log());
}

// ---- the device back ends' interfaces (crate::events) ----

/// A way to spoil an argument, the text its refusal logs, the errno.
type SpoilCase<T> = (&'static str, fn(&mut T), Errno);

fn ioeventfd_arg(device: u32, queue: u32, fd: i32) -> colinux_abi::cooperative_ioctl_ioeventfd {
    colinux_abi::cooperative_ioctl_ioeventfd {
        abi_version: COOPERATIVE_ABI_VERSION,
        fd,
        device,
        queue,
        ..Default::default()
    }
}

fn irqfd_arg(line: u32, fd: i32) -> colinux_abi::cooperative_ioctl_irqfd {
    colinux_abi::cooperative_ioctl_irqfd {
        abi_version: COOPERATIVE_ABI_VERSION,
        fd,
        line,
        ..Default::default()
    }
}

#[test]
fn ioeventfd_checks_version_guest_flags_reserved_indices_and_fd() {
    use crate::events::check_ioeventfd;
    use colinux_abi::{
        COOPERATIVE_EVENTFD_DEASSIGN, COOPERATIVE_VIRTIO_MAX_DEVICES, COOPERATIVE_VIRTIO_MAX_QUEUES,
    };
    let mut fake = Fake::new();
    let empty = Slot::empty();
    assert_eq!(
        check_ioeventfd(&mut fake, &empty, &ioeventfd_arg(0, 0, 3)),
        Err(Errno::EINVAL)
    );
    assert!(fake.last_log().contains("no guest"), "{}", fake.last_log());
    let mut slot = new_guest(&mut fake, 16 * MIB);
    let id = slot.guest().expect("guest").id();
    // The largest indices are fine; the next ones are not.
    assert_eq!(
        check_ioeventfd(
            &mut fake,
            &slot,
            &ioeventfd_arg(
                COOPERATIVE_VIRTIO_MAX_DEVICES - 1,
                COOPERATIVE_VIRTIO_MAX_QUEUES - 1,
                3
            )
        ),
        Ok(id)
    );
    let cases: [SpoilCase<colinux_abi::cooperative_ioctl_ioeventfd>; 8] = [
        ("ABI version", |a| a.abi_version += 1, Errno::EPROTO),
        ("unknown flags", |a| a.flags = 2, Errno::EINVAL),
        ("reserved", |a| a.reserved0 = 1, Errno::EINVAL),
        ("reserved", |a| a.reserved[1] = 1, Errno::EINVAL),
        (
            "device 64",
            |a| a.device = COOPERATIVE_VIRTIO_MAX_DEVICES,
            Errno::EINVAL,
        ),
        ("device 4294967295", |a| a.device = u32::MAX, Errno::EINVAL),
        (
            "queue 8",
            |a| a.queue = COOPERATIVE_VIRTIO_MAX_QUEUES,
            Errno::EINVAL,
        ),
        ("fd is negative", |a| a.fd = -1, Errno::EBADF),
    ];
    for (what, spoil, errno) in cases {
        let mut a = ioeventfd_arg(1, 1, 3);
        spoil(&mut a);
        assert_eq!(check_ioeventfd(&mut fake, &slot, &a), Err(errno), "{what}");
        assert!(
            fake.last_log().contains(what),
            "{what}: {}",
            fake.last_log()
        );
    }
    // Removing a binding names the queue only: the fd is ignored.
    let mut a = ioeventfd_arg(1, 1, -1);
    a.flags = COOPERATIVE_EVENTFD_DEASSIGN;
    assert_eq!(check_ioeventfd(&mut fake, &slot, &a), Ok(id));
    // A dead guest's bindings may still be made and removed (they end with it).
    crate::run::set_state(&mut slot, COOPERATIVE_GUEST_STATE_DEAD);
    assert_eq!(
        check_ioeventfd(&mut fake, &slot, &ioeventfd_arg(0, 0, 0)),
        Ok(id)
    );
    destroy(&mut fake, &mut slot).expect("destroy");
}

#[test]
fn irqfd_checks_version_guest_flags_reserved_line_and_fd() {
    use crate::events::check_irqfd;
    use colinux_abi::{COOPERATIVE_EVENTFD_DEASSIGN, COOPERATIVE_NR_IRQS};
    let mut fake = Fake::new();
    assert_eq!(
        check_irqfd(&mut fake, &Slot::empty(), &irqfd_arg(4, 3)),
        Err(Errno::EINVAL)
    );
    let mut slot = new_guest(&mut fake, 16 * MIB);
    let id = slot.guest().expect("guest").id();
    assert_eq!(
        check_irqfd(&mut fake, &slot, &irqfd_arg(COOPERATIVE_NR_IRQS - 1, 3)),
        Ok(id)
    );
    let cases: [SpoilCase<colinux_abi::cooperative_ioctl_irqfd>; 14] = [
        ("ABI version", |a| a.abi_version = 0, Errno::EPROTO),
        ("unknown flags", |a| a.flags = 1 << 31, Errno::EINVAL),
        ("reserved", |a| a.reserved = 1, Errno::EINVAL),
        (
            "without COOPERATIVE_IRQFD_ISR",
            |a| a.isr = 0x1000,
            Errno::EINVAL,
        ),
        (
            "without COOPERATIVE_IRQFD_ISR",
            |a| a.isr_bits = 1,
            Errno::EINVAL,
        ),
        (
            "with DEASSIGN",
            |a| {
                set_isr(a, 0x1000, 1);
                a.flags |= COOPERATIVE_EVENTFD_DEASSIGN;
            },
            Errno::EINVAL,
        ),
        ("no isr_bits", |a| set_isr(a, 0x1000, 0), Errno::EINVAL),
        (
            "not 4-byte aligned",
            |a| set_isr(a, 0x1002, 1),
            Errno::EINVAL,
        ),
        // 16 MiB of RAM: the last word is at 0xfffffc.
        (
            "inside guest RAM",
            |a| set_isr(a, 0x1000000, 1),
            Errno::EINVAL,
        ),
        (
            "inside guest RAM",
            |a| set_isr(a, 0xfffffe, 1),
            Errno::EINVAL,
        ),
        (
            "inside guest RAM",
            |a| set_isr(a, u64::MAX - 3, 1),
            Errno::EINVAL,
        ),
        ("line 16", |a| a.line = COOPERATIVE_NR_IRQS, Errno::EINVAL),
        ("fd is negative", |a| a.fd = -5, Errno::EBADF),
        (
            "fd is negative",
            |a| {
                a.flags = COOPERATIVE_EVENTFD_DEASSIGN;
                a.fd = -1;
            },
            Errno::EBADF,
        ),
    ];
    for (what, spoil, errno) in cases {
        let mut a = irqfd_arg(4, 3);
        spoil(&mut a);
        assert_eq!(check_irqfd(&mut fake, &slot, &a), Err(errno), "{what}");
        assert!(
            fake.last_log().contains(what),
            "{what}: {}",
            fake.last_log()
        );
    }
    let mut a = irqfd_arg(4, 3);
    a.flags = COOPERATIVE_EVENTFD_DEASSIGN;
    assert_eq!(check_irqfd(&mut fake, &slot, &a), Ok(id));
    // The first and the last word of guest RAM are fine.
    for at in [0, 16 * MIB - 4] {
        let mut a = irqfd_arg(4, 3);
        set_isr(&mut a, at, 1 << 31);
        assert_eq!(check_irqfd(&mut fake, &slot, &a), Ok(id), "isr at {at:#x}");
    }
    destroy(&mut fake, &mut slot).expect("destroy");
}

fn set_isr(a: &mut colinux_abi::cooperative_ioctl_irqfd, isr: u64, bits: u32) {
    a.flags |= colinux_abi::COOPERATIVE_IRQFD_ISR;
    a.isr = isr;
    a.isr_bits = bits;
}

#[test]
fn mmap_is_shared_inside_guest_ram_and_needs_a_guest() {
    use crate::events::check_mmap;
    let mut fake = Fake::new();
    let pages = 2048; // 8 MiB
    assert_eq!(
        check_mmap(&mut fake, NO_GUEST, 0, 0, 1, true),
        Err(Errno::ENODEV)
    );
    assert!(
        fake.last_log().contains("CREATE first"),
        "{}",
        fake.last_log()
    );
    // All of it, the last page, a page in the middle.
    assert_eq!(check_mmap(&mut fake, 7, pages, 0, pages, true), Ok(()));
    assert_eq!(check_mmap(&mut fake, 7, pages, pages - 1, 1, true), Ok(()));
    assert_eq!(check_mmap(&mut fake, 7, pages, 100, 1, true), Ok(()));
    assert_eq!(
        check_mmap(&mut fake, 7, pages, 0, 1, false),
        Err(Errno::EINVAL)
    );
    assert!(
        fake.last_log().contains("MAP_SHARED"),
        "{}",
        fake.last_log()
    );
    for (pgoff, len) in [
        (0, pages + 1),
        (pages, 1),
        (pages - 1, 2),
        (1, u64::MAX),
        (u64::MAX, 1),
        (u64::MAX, u64::MAX),
        (0, 0),
    ] {
        assert_eq!(
            check_mmap(&mut fake, 7, pages, pgoff, len, true),
            Err(Errno::EINVAL),
            "{pgoff}+{len}"
        );
        assert!(
            fake.last_log().contains("not inside guest RAM"),
            "{}",
            fake.last_log()
        );
    }
}
