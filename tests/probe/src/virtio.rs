//! `colinux-probe virtio PAYLOAD [O_DIRECT-DEVICE]` and `virtio-hold PAYLOAD`:
//! the driver's interfaces for device back ends with the real test payload
//! (`payload_virtio`, see `tests/payload/README.md`).
//!
//! - `mmap()` of guest RAM: refused before CREATE, for MAP_PRIVATE and
//!   outside RAM; the loaded payload visible through it; `get_user_pages`
//!   works on it (vmsplice, process_vm_readv, and an O_DIRECT read from a
//!   block device into it when one is named); mremap cannot grow it; after
//!   DESTROY the pages it touched stay, an untouched one gives SIGBUS, and
//!   a new guest on the same file does not show through the old mapping.
//! - IOEVENTFD and IRQFD: every malformed argument refused with its errno
//!   (a descriptor that is not an eventfd, one that is not open, indices
//!   out of range, reserved fields, unknown flags, a double bind, removing
//!   what is not bound).
//! - RUN: the payload's unbound NOTIFY and SET_STATUS reach the daemon as
//!   operations; then one RUN serves its 1000 bound NOTIFYs in the kernel
//!   (another thread counts 1000 on the eventfd while that RUN has not
//!   returned) and the guest spins until a line is pending; this thread
//!   writes the IRQFD's eventfd and the guest terminates saying it saw the
//!   line. poll() on the device file reports raised lines; the driver
//!   consumes the IRQFD's count; an eventfd closed while bound is harmless.
//! - `virtio-hold`: the same guest spinning in RUN with both kinds bound
//!   and a thread writing the IRQFD's eventfd in a loop, until the process
//!   is killed (the test kills it: teardown must be clean).

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use colinux_abi as abi;

use crate::{create_arg, open, ptr, raw, Checks};

const MEM: u64 = 64 << 20;
const PAGE: usize = 4096;
/// What `payload_virtio` uses (tests/payload/payload.c).
const DEVICE: u32 = 3;
const BOUND_QUEUE: u32 = 1;
const UNBOUND_QUEUE: u32 = 2;
/// Its last NOTIFY before it waits for a line.
const SPIN_QUEUE: u32 = 3;
const NOTIFIES: u64 = 1000;
/// The line the probe raises: a virtio line (COOPERATIVE_IRQ_VIRTIO_LINES).
const LINE: u32 = 5;

/// The loadable segments and the entry of a 32-bit ELF image.
struct Image {
    /// (guest-physical address, file bytes, bytes to zero after them)
    segments: Vec<(u64, Vec<u8>, u64)>,
    entry: u64,
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The payload's PT_LOAD segments and the address of symbol `entry`.
fn load_image(path: &str, entry: &str) -> Option<Image> {
    let b = std::fs::read(path).ok()?;
    if b.get(..5)? != b"\x7fELF\x01" {
        return None;
    }
    let (phoff, shoff) = (le32(&b, 28)? as usize, le32(&b, 32)? as usize);
    let (phentsize, phnum) = (le16(&b, 42)? as usize, le16(&b, 44)? as usize);
    let (shentsize, shnum) = (le16(&b, 46)? as usize, le16(&b, 48)? as usize);
    let mut segments = Vec::new();
    for i in 0..phnum {
        let p = phoff + i * phentsize;
        if le32(&b, p)? != 1 {
            continue;
        }
        let (off, paddr) = (le32(&b, p + 4)? as usize, le32(&b, p + 12)?);
        let (filesz, memsz) = (le32(&b, p + 16)? as usize, le32(&b, p + 20)?);
        let data = b.get(off..off + filesz)?.to_vec();
        segments.push((u64::from(paddr), data, u64::from(memsz) - filesz as u64));
    }
    // The symbol table and its string table.
    for i in 0..shnum {
        let s = shoff + i * shentsize;
        if le32(&b, s + 4)? != 2 {
            continue;
        }
        let (off, size) = (le32(&b, s + 16)? as usize, le32(&b, s + 20)? as usize);
        let strtab = shoff + le32(&b, s + 24)? as usize * shentsize;
        let stroff = le32(&b, strtab + 16)? as usize;
        for sym in (off..off + size).step_by(16) {
            let name = stroff + le32(&b, sym)? as usize;
            let end = b.get(name..)?.iter().position(|&c| c == 0)?;
            if b.get(name..name + end)? == entry.as_bytes() {
                return Some(Image {
                    segments,
                    entry: u64::from(le32(&b, sym + 4)?),
                });
            }
        }
    }
    None
}

/// A shared mapping of the device file, unmapped when dropped.
struct Mapping {
    addr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(f: &File, offset: u64, len: usize, flags: i32) -> Result<Mapping, i32> {
        // SAFETY: a fresh mapping chosen by the kernel; nothing else is
        // affected. The result is checked.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                f.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(errno());
        }
        Ok(Mapping {
            addr: addr.cast(),
            len,
        })
    }

    fn bytes(&self, at: u64, len: usize) -> &[u8] {
        assert!(at as usize + len <= self.len);
        // SAFETY: inside the mapping, which lives as long as `self`; the
        // pages are guest RAM the guest may write (plain bytes: any value
        // is valid).
        unsafe { std::slice::from_raw_parts(self.addr.add(at as usize), len) }
    }

    fn ptr(&self, at: u64) -> *mut u8 {
        assert!((at as usize) < self.len);
        // SAFETY: inside the mapping.
        unsafe { self.addr.add(at as usize) }
    }
}

// SAFETY: the mapping is memory of the process, valid from any thread
// until it is dropped; Mapping hands out byte slices (of guest RAM, which
// the guest writes concurrently anyway) and raw pointers only.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn eventfd() -> OwnedFd {
    // SAFETY: plain system call; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    assert!(fd >= 0, "eventfd: {}", std::io::Error::last_os_error());
    // SAFETY: a new descriptor that we own.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Read an eventfd's count (non-blocking): Ok(count) or Err(errno).
fn efd_read(fd: &OwnedFd) -> Result<u64, i32> {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into `v`.
    let n = unsafe { libc::read(fd.as_raw_fd(), ptr(&mut v) as *mut libc::c_void, 8) };
    if n == 8 {
        Ok(v)
    } else {
        Err(errno())
    }
}

fn efd_write(fd: &OwnedFd, v: u64) -> bool {
    // SAFETY: writes 8 bytes from `v`.
    unsafe { libc::write(fd.as_raw_fd(), (&v as *const u64).cast(), 8) == 8 }
}

/// poll() one descriptor for input: its revents.
fn poll_in(fd: i32, timeout_ms: i32) -> i16 {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if n > 0 {
        p.revents
    } else {
        0
    }
}

fn ioeventfd_arg(device: u32, queue: u32, fd: i32) -> abi::cooperative_ioctl_ioeventfd {
    abi::cooperative_ioctl_ioeventfd {
        abi_version: abi::COOPERATIVE_ABI_VERSION,
        fd,
        device,
        queue,
        ..Default::default()
    }
}

fn irqfd_arg(line: u32, fd: i32) -> abi::cooperative_ioctl_irqfd {
    abi::cooperative_ioctl_irqfd {
        abi_version: abi::COOPERATIVE_ABI_VERSION,
        fd,
        line,
        ..Default::default()
    }
}

/// `a` with COOPERATIVE_IRQFD_ISR: the used-buffer bit at `isr`.
fn with_isr(a: &mut abi::cooperative_ioctl_irqfd, isr: u64) {
    a.flags |= abi::COOPERATIVE_IRQFD_ISR;
    a.isr = isr;
    a.isr_bits = abi::COOPERATIVE_VIRTIO_ISR_QUEUE;
}

/// IRQFD with COOPERATIVE_IRQFD_ISR: each signal of the eventfd (here
/// from this thread, as a vhost-user back end would) ORs the bits into
/// the word in guest RAM, seen through the mapping `m`, and raises the
/// line (poll() says so); the driver consumes the count.
fn isr_binding(c: &mut Checks, f: &File, m: &Mapping) {
    // The last word of guest RAM, with a bit of its own already set.
    let at = MEM - 4;
    let word = m.ptr(at).cast::<u32>();
    // SAFETY: an aligned word inside the mapping; no guest runs now.
    unsafe { word.write_volatile(0x100) };
    c.expect(
        "poll() of the device file before the ISR binding: nothing",
        if poll_in(f.as_raw_fd(), 0) == 0 {
            Ok(0)
        } else {
            Err(0)
        },
        None,
    );
    let used = eventfd();
    let mut a = irqfd_arg(LINE, used.as_raw_fd());
    with_isr(&mut a, at);
    c.expect(
        "IRQFD bind with COOPERATIVE_IRQFD_ISR (the last word of RAM)",
        raw(f, abi::ioctl::IRQFD, ptr(&mut a)),
        None,
    );
    // SAFETY: as above.
    let before = unsafe { word.read_volatile() };
    c.expect(
        &format!("the ISR word untouched before a signal: {before:#x}, want 0x100"),
        if before == 0x100 { Ok(0) } else { Err(0) },
        None,
    );
    efd_write(&used, 1);
    // SAFETY: as above.
    let after = unsafe { word.read_volatile() };
    c.expect(
        &format!("the ISR word after the eventfd was written: {after:#x}, want 0x101"),
        if after == 0x101 { Ok(0) } else { Err(0) },
        None,
    );
    c.expect(
        "poll() of the device file after the ISR binding's eventfd was written",
        if poll_in(f.as_raw_fd(), 1000) & libc::POLLIN != 0 {
            Ok(0)
        } else {
            Err(0)
        },
        None,
    );
    c.expect(
        "the driver consumed the ISR binding's count",
        efd_read(&used).map(|v| v as i32),
        Some(libc::EAGAIN),
    );
}

/// Create the guest and load the payload; the RUN argument for its entry.
fn guest(c: &mut Checks, f: &File, payload: &str) -> Option<(Image, abi::cooperative_ioctl_run)> {
    let Some(image) = load_image(payload, "payload_virtio") else {
        println!("FAIL: {payload}: not a 32-bit ELF with the symbol payload_virtio");
        c.failed += 1;
        return None;
    };
    let mut a = create_arg(MEM);
    c.expect("CREATE", raw(f, abi::ioctl::CREATE, ptr(&mut a)), None);
    for (at, data, zero) in &image.segments {
        let mut l = abi::cooperative_ioctl_load {
            abi_version: abi::COOPERATIVE_ABI_VERSION,
            guest_address: *at,
            user_address: data.as_ptr() as u64,
            size: data.len() as u64,
            zero_size: *zero,
            ..Default::default()
        };
        c.expect(
            &format!("LOAD {} bytes at {at:#x}", data.len()),
            raw(f, abi::ioctl::LOAD, ptr(&mut l)),
            None,
        );
    }
    let va = u64::from(abi::COOPERATIVE_KERNEL_VA_OFFSET);
    let run = abi::cooperative_ioctl_run {
        abi_version: abi::COOPERATIVE_ABI_VERSION,
        entry: image.entry,
        stack: va + MEM - 16,
        ..Default::default()
    };
    Some((image, run))
}

/// RUN and check that it returned `operation` with `params`.
fn run_expect_op(
    c: &mut Checks,
    f: &File,
    r: &mut abi::cooperative_ioctl_run,
    what: &str,
    operation: u32,
    params: &[u64],
) {
    c.expect(what, raw(f, abi::ioctl::RUN, ptr(r)), None);
    let ok = r.exit_reason == abi::COOPERATIVE_RUN_EXIT_OPERATION
        && r.operation == operation
        && r.params.get(..params.len()) == Some(params);
    if ok {
        println!("ok: {what}: operation {} params {:?}", r.operation, params);
    } else {
        println!(
            "FAIL: {what}: exit {} operation {} params {:?}, want operation {operation} params {params:?}",
            r.exit_reason, r.operation, r.params
        );
        c.failed += 1;
    }
    *r = abi::cooperative_ioctl_run {
        abi_version: abi::COOPERATIVE_ABI_VERSION,
        status: abi::COOPERATIVE_STATUS_OK,
        ..Default::default()
    };
}

fn hostile_bindings(c: &mut Checks, f: &File) {
    let (einval, eexist, enoent) = (libc::EINVAL, libc::EEXIST, libc::ENOENT);
    let efd = eventfd();
    let e = efd.as_raw_fd();
    let not_eventfd = f.as_raw_fd();
    type IoCase = (&'static str, fn(&mut abi::cooperative_ioctl_ioeventfd), i32);
    let io_cases: [IoCase; 9] = [
        ("another ABI version", |a| a.abi_version += 1, libc::EPROTO),
        ("unknown flags", |a| a.flags = 2, libc::EINVAL),
        ("reserved0 set", |a| a.reserved0 = 1, libc::EINVAL),
        ("reserved[1] set", |a| a.reserved[1] = 1, libc::EINVAL),
        ("device 64", |a| a.device = 64, libc::EINVAL),
        ("device u32::MAX", |a| a.device = u32::MAX, libc::EINVAL),
        ("queue 8", |a| a.queue = 8, libc::EINVAL),
        ("fd -1", |a| a.fd = -1, libc::EBADF),
        ("fd not open", |a| a.fd = 9999, libc::EBADF),
    ];
    for (what, spoil, want) in io_cases {
        let mut a = ioeventfd_arg(DEVICE, 5, e);
        spoil(&mut a);
        c.expect(
            &format!("IOEVENTFD {what}"),
            raw(f, abi::ioctl::IOEVENTFD, ptr(&mut a)),
            Some(want),
        );
    }
    let mut a = ioeventfd_arg(DEVICE, 5, not_eventfd);
    c.expect(
        "IOEVENTFD with /dev/colinux as the eventfd",
        raw(f, abi::ioctl::IOEVENTFD, ptr(&mut a)),
        Some(einval),
    );
    let mut a = ioeventfd_arg(DEVICE, 5, e);
    c.expect(
        "IOEVENTFD bind device 3 queue 5",
        raw(f, abi::ioctl::IOEVENTFD, ptr(&mut a)),
        None,
    );
    let other = eventfd();
    let mut a = ioeventfd_arg(DEVICE, 5, other.as_raw_fd());
    c.expect(
        "IOEVENTFD bind the same queue again",
        raw(f, abi::ioctl::IOEVENTFD, ptr(&mut a)),
        Some(eexist),
    );
    let mut a = ioeventfd_arg(DEVICE, 5, -1);
    a.flags = abi::COOPERATIVE_EVENTFD_DEASSIGN;
    c.expect(
        "IOEVENTFD DEASSIGN device 3 queue 5",
        raw(f, abi::ioctl::IOEVENTFD, ptr(&mut a)),
        None,
    );
    c.expect(
        "IOEVENTFD DEASSIGN it again",
        raw(f, abi::ioctl::IOEVENTFD, ptr(&mut a)),
        Some(enoent),
    );

    type IrqCase = (&'static str, fn(&mut abi::cooperative_ioctl_irqfd), i32);
    let irq_cases: [IrqCase; 14] = [
        ("another ABI version", |a| a.abi_version = 0, libc::EPROTO),
        ("unknown flags", |a| a.flags = 4, libc::EINVAL),
        ("reserved set", |a| a.reserved = 1, libc::EINVAL),
        (
            "isr without COOPERATIVE_IRQFD_ISR",
            |a| a.isr = 0x1000,
            libc::EINVAL,
        ),
        (
            "isr_bits without COOPERATIVE_IRQFD_ISR",
            |a| a.isr_bits = 1,
            libc::EINVAL,
        ),
        (
            "ISR with DEASSIGN",
            |a| {
                with_isr(a, 0x1000);
                a.flags |= abi::COOPERATIVE_EVENTFD_DEASSIGN;
            },
            libc::EINVAL,
        ),
        (
            "ISR with no bits",
            |a| {
                with_isr(a, 0x1000);
                a.isr_bits = 0;
            },
            libc::EINVAL,
        ),
        ("ISR word misaligned", |a| with_isr(a, 0x1001), libc::EINVAL),
        (
            "ISR word past guest RAM",
            |a| with_isr(a, MEM - 2),
            libc::EINVAL,
        ),
        (
            "ISR word at u64::MAX - 3",
            |a| with_isr(a, u64::MAX - 3),
            libc::EINVAL,
        ),
        ("line 16", |a| a.line = 16, libc::EINVAL),
        ("line u32::MAX", |a| a.line = u32::MAX, libc::EINVAL),
        ("fd -1", |a| a.fd = -1, libc::EBADF),
        ("fd not open", |a| a.fd = 9999, libc::EBADF),
    ];
    for (what, spoil, want) in irq_cases {
        let mut a = irqfd_arg(LINE, e);
        spoil(&mut a);
        c.expect(
            &format!("IRQFD {what}"),
            raw(f, abi::ioctl::IRQFD, ptr(&mut a)),
            Some(want),
        );
    }
    let mut a = irqfd_arg(LINE, not_eventfd);
    c.expect(
        "IRQFD with /dev/colinux as the eventfd",
        raw(f, abi::ioctl::IRQFD, ptr(&mut a)),
        Some(einval),
    );
    let mut a = irqfd_arg(LINE, e);
    c.expect(
        "IRQFD bind line 5",
        raw(f, abi::ioctl::IRQFD, ptr(&mut a)),
        None,
    );
    c.expect(
        "IRQFD bind the same eventfd and line again",
        raw(f, abi::ioctl::IRQFD, ptr(&mut a)),
        Some(eexist),
    );
    let mut a = irqfd_arg(LINE + 1, e);
    c.expect(
        "IRQFD bind the same eventfd to line 6",
        raw(f, abi::ioctl::IRQFD, ptr(&mut a)),
        None,
    );
    for line in [LINE, LINE + 1] {
        let mut a = irqfd_arg(line, e);
        a.flags = abi::COOPERATIVE_EVENTFD_DEASSIGN;
        c.expect(
            &format!("IRQFD DEASSIGN line {line}"),
            raw(f, abi::ioctl::IRQFD, ptr(&mut a)),
            None,
        );
        c.expect(
            &format!("IRQFD DEASSIGN line {line} again"),
            raw(f, abi::ioctl::IRQFD, ptr(&mut a)),
            Some(enoent),
        );
    }
    // The limit on bindings.
    let many: Vec<OwnedFd> = (0..abi::COOPERATIVE_IRQFD_MAX).map(|_| eventfd()).collect();
    let mut bound = 0;
    for fd in &many {
        let mut a = irqfd_arg(7, fd.as_raw_fd());
        if raw(f, abi::ioctl::IRQFD, ptr(&mut a)).is_ok() {
            bound += 1;
        }
    }
    c.expect(
        &format!("IRQFD bindings up to the limit ({bound})"),
        if bound == abi::COOPERATIVE_IRQFD_MAX {
            Ok(0)
        } else {
            Err(0)
        },
        None,
    );
    let mut a = irqfd_arg(7, e);
    c.expect(
        "IRQFD beyond COOPERATIVE_IRQFD_MAX",
        raw(f, abi::ioctl::IRQFD, ptr(&mut a)),
        Some(libc::ENOSPC),
    );
    for fd in &many {
        let mut a = irqfd_arg(7, fd.as_raw_fd());
        a.flags = abi::COOPERATIVE_EVENTFD_DEASSIGN;
        let _ = raw(f, abi::ioctl::IRQFD, ptr(&mut a));
    }
}

fn mmap_checks(c: &mut Checks, f: &File, image: &Image) -> Option<Mapping> {
    let private = Mapping::new(f, 0, PAGE, libc::MAP_PRIVATE).map(|_| 0);
    c.expect("mmap MAP_PRIVATE", private, Some(libc::EINVAL));
    let beyond = Mapping::new(f, MEM, PAGE, libc::MAP_SHARED).map(|_| 0);
    c.expect("mmap of the page after RAM", beyond, Some(libc::EINVAL));
    let longer = Mapping::new(f, 0, MEM as usize + PAGE, libc::MAP_SHARED).map(|_| 0);
    c.expect("mmap of RAM and a page more", longer, Some(libc::EINVAL));
    let last = Mapping::new(f, MEM - PAGE as u64, PAGE, libc::MAP_SHARED).map(|_| 0);
    c.expect("mmap of the last page", last, None);
    let m = match Mapping::new(f, 0, MEM as usize, libc::MAP_SHARED) {
        Ok(m) => m,
        Err(e) => {
            c.expect("mmap of guest RAM", Err(e), None);
            return None;
        }
    };
    for (at, data, zero) in &image.segments {
        let same = m.bytes(*at, data.len()) == data.as_slice();
        let zeroed = m
            .bytes(*at + data.len() as u64, *zero as usize)
            .iter()
            .all(|&b| b == 0);
        c.expect(
            &format!(
                "the {} loaded bytes at {at:#x} (and {zero} zeroed) seen through the mapping",
                data.len()
            ),
            if same && zeroed { Ok(0) } else { Err(0) },
            None,
        );
    }
    // mremap cannot grow it beyond guest RAM (VM_DONTEXPAND).
    // SAFETY: asks the kernel to grow our mapping in place; it must refuse.
    let grown = unsafe { libc::mremap(m.addr.cast(), m.len, m.len + PAGE, 0) };
    c.expect(
        "mremap growing the mapping",
        if grown == libc::MAP_FAILED {
            Err(errno())
        } else {
            Ok(0)
        },
        Some(libc::EFAULT),
    );
    // get_user_pages on the mapping: vmsplice takes page references.
    let (at, data, _) = image.segments.first()?;
    let mut pipe = [0i32; 2];
    // SAFETY: a fresh pipe.
    if unsafe { libc::pipe(pipe.as_mut_ptr()) } == 0 {
        let n = data.len().min(PAGE);
        let iov = libc::iovec {
            iov_base: m.ptr(*at).cast(),
            iov_len: n,
        };
        // SAFETY: the iovec points into our mapping.
        let spliced = unsafe { libc::vmsplice(pipe[1], &iov, 1, 0) };
        let mut back = vec![0u8; n];
        // SAFETY: reads at most `n` bytes into `back`.
        let got = unsafe { libc::read(pipe[0], back.as_mut_ptr().cast(), n) };
        c.expect(
            "vmsplice from the mapping (get_user_pages) and read back",
            if spliced == n as isize && got == n as isize && back == data[..n] {
                Ok(0)
            } else {
                Err(errno())
            },
            None,
        );
        // SAFETY: our pipe's descriptors, closed once.
        unsafe {
            libc::close(pipe[0]);
            libc::close(pipe[1]);
        }
    }
    let mut back = vec![0u8; data.len()];
    let local = libc::iovec {
        iov_base: back.as_mut_ptr().cast(),
        iov_len: back.len(),
    };
    let remote = libc::iovec {
        iov_base: m.ptr(*at).cast(),
        iov_len: back.len(),
    };
    // SAFETY: reads our own mapping (through get_user_pages) into `back`.
    let got = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    c.expect(
        "process_vm_readv of the mapping (get_user_pages_remote)",
        if got == back.len() as isize && back == *data {
            Ok(0)
        } else {
            Err(errno())
        },
        None,
    );
    Some(m)
}

/// An O_DIRECT read of the first 64 KiB of `device` into guest RAM at
/// 48 MiB through the mapping, compared with a buffered read.
fn odirect(c: &mut Checks, m: &Mapping, device: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    const AT: u64 = 48 << 20;
    const LEN: usize = 64 << 10;
    let want = match std::fs::File::open(device).and_then(|f| {
        let mut v = vec![0u8; LEN];
        std::io::Read::read_exact(&mut &f, &mut v).map(|_| v)
    }) {
        Ok(v) => v,
        Err(e) => {
            println!("FAIL: cannot read {device}: {e}");
            c.failed += 1;
            return;
        }
    };
    let direct = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(device);
    let f = match direct {
        Ok(f) => f,
        Err(e) => {
            println!("FAIL: cannot open {device} with O_DIRECT: {e}");
            c.failed += 1;
            return;
        }
    };
    // SAFETY: reads LEN bytes into our mapping at AT (inside it).
    let n = unsafe { libc::pread(f.as_raw_fd(), m.ptr(AT).cast(), LEN, 0) };
    let same = m.bytes(AT, LEN) == want.as_slice();
    c.expect(
        &format!("O_DIRECT read of {LEN} bytes from {device} into the mapping"),
        if n == LEN as isize && same {
            Ok(0)
        } else {
            Err(if n < 0 { errno() } else { 0 })
        },
        None,
    );
    if n == LEN as isize && !same {
        println!("FAIL: the bytes read with O_DIRECT differ from a buffered read");
    }
}

/// Whether reading `addr` kills a child process with SIGBUS.
fn sigbus_on_read(addr: *const u8) -> bool {
    // SAFETY: fork of a program whose other threads have ended; the child
    // only reads and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: the address lies in a live mapping (it may fault).
        unsafe {
            std::ptr::read_volatile(addr);
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waits for our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS
}

/// The CPUs the process may run on now (before [`pin`] narrows them; musl
/// counts the calling thread's affinity).
fn cpus() -> usize {
    // SAFETY: plain query.
    unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize
}

/// Pin the calling thread to `cpu`, or to every CPU of `n` but `cpu` (when
/// there is another).
fn pin(n: usize, cpu: usize, on: bool) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and
    // sched_setaffinity get valid pointers to it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for i in 0..n {
            if (i == cpu) == on {
                libc::CPU_SET(i, &mut set);
            }
        }
        if n > 1 || on {
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
        }
    }
}

/// `device`: a block device for the O_DIRECT read (None: none); `cpu`: the
/// CPU the guest runs on, the other threads on the others (None: wherever
/// the scheduler puts them).
pub fn virtio(payload: &str, device: Option<&str>, cpu: Option<usize>) -> usize {
    let mut c = Checks { failed: 0 };
    let f = open();
    c.expect(
        "mmap before CREATE",
        Mapping::new(&f, 0, PAGE, libc::MAP_SHARED).map(|_| 0),
        Some(libc::ENODEV),
    );
    let efd = eventfd();
    let mut a = ioeventfd_arg(DEVICE, BOUND_QUEUE, efd.as_raw_fd());
    c.expect(
        "IOEVENTFD before CREATE",
        raw(&f, abi::ioctl::IOEVENTFD, ptr(&mut a)),
        Some(libc::EINVAL),
    );
    let mut a = irqfd_arg(LINE, efd.as_raw_fd());
    c.expect(
        "IRQFD before CREATE",
        raw(&f, abi::ioctl::IRQFD, ptr(&mut a)),
        Some(libc::EINVAL),
    );
    let Some((image, mut run)) = guest(&mut c, &f, payload) else {
        return c.failed.max(1);
    };
    hostile_bindings(&mut c, &f);
    let Some(m) = mmap_checks(&mut c, &f, &image) else {
        return c.failed.max(1);
    };
    if let Some(device) = device {
        odirect(&mut c, &m, device);
    }

    // The bindings the guest uses, and two whose eventfds are closed
    // before the guest ends.
    let io = eventfd();
    let irq = eventfd();
    let spin = eventfd();
    let mut a = ioeventfd_arg(DEVICE, BOUND_QUEUE, io.as_raw_fd());
    c.expect(
        "IOEVENTFD bind device 3 queue 1",
        raw(&f, abi::ioctl::IOEVENTFD, ptr(&mut a)),
        None,
    );
    let mut a = ioeventfd_arg(DEVICE, SPIN_QUEUE, spin.as_raw_fd());
    c.expect(
        "IOEVENTFD bind device 3 queue 3",
        raw(&f, abi::ioctl::IOEVENTFD, ptr(&mut a)),
        None,
    );
    let mut a = irqfd_arg(LINE, irq.as_raw_fd());
    c.expect(
        "IRQFD bind line 5",
        raw(&f, abi::ioctl::IRQFD, ptr(&mut a)),
        None,
    );
    {
        let closed_io = eventfd();
        let closed_irq = eventfd();
        let mut a = ioeventfd_arg(DEVICE, 4, closed_io.as_raw_fd());
        c.expect(
            "IOEVENTFD bind device 3 queue 4 (its eventfd closed next)",
            raw(&f, abi::ioctl::IOEVENTFD, ptr(&mut a)),
            None,
        );
        let mut a = irqfd_arg(LINE + 2, closed_irq.as_raw_fd());
        c.expect(
            "IRQFD bind line 7 (its eventfd closed next)",
            raw(&f, abi::ioctl::IRQFD, ptr(&mut a)),
            None,
        );
    }
    c.expect(
        "poll() of the device file with no line raised",
        if poll_in(f.as_raw_fd(), 0) == 0 {
            Ok(0)
        } else {
            Err(0)
        },
        None,
    );

    // The daemon's share of the guest's requests.
    run_expect_op(
        &mut c,
        &f,
        &mut run,
        "RUN: NOTIFY of the unbound queue goes to the daemon",
        abi::COOPERATIVE_OP_VIRTIO,
        &[
            u64::from(DEVICE),
            u64::from(abi::COOPERATIVE_VIRTIO_REQ_NOTIFY),
            u64::from(UNBOUND_QUEUE),
        ],
    );
    run_expect_op(
        &mut c,
        &f,
        &mut run,
        "RUN: SET_STATUS goes to the daemon",
        abi::COOPERATIVE_OP_VIRTIO,
        &[
            u64::from(DEVICE),
            u64::from(abi::COOPERATIVE_VIRTIO_REQ_SET_STATUS),
            0,
        ],
    );

    // One more RUN serves the bound NOTIFYs and waits for the line.
    let returned = AtomicBool::new(false);
    let running = AtomicBool::new(false);
    let runs = AtomicU32::new(0);
    let (result, counted, returned_early, poll_before) = std::thread::scope(|s| {
        let n = cpus();
        if let Some(cpu) = cpu {
            pin(n, cpu, false);
        }
        let (running, returned, runs, f) = (&running, &returned, &runs, &f);
        let vcpu = s.spawn(move || {
            if let Some(cpu) = cpu {
                pin(n, cpu, true);
            }
            let mut r = run;
            running.store(true, Ordering::SeqCst);
            let rc = raw(f, abi::ioctl::RUN, ptr(&mut r));
            runs.fetch_add(1, Ordering::SeqCst);
            returned.store(true, Ordering::SeqCst);
            (rc, r)
        });
        while !running.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut counted = 0u64;
        while counted < NOTIFIES && Instant::now() < deadline {
            if poll_in(io.as_raw_fd(), 100) != 0 {
                counted += efd_read(&io).unwrap_or(0);
            }
            if returned.load(Ordering::SeqCst) {
                break;
            }
        }
        // Its last NOTIFY says the wait begins; let it spin a little (for
        // the line to find it in the guest world: then its CPU gets an
        // IPI; the guest must see the line either way).
        while !returned.load(Ordering::SeqCst)
            && Instant::now() < deadline
            && poll_in(spin.as_raw_fd(), 100) == 0
        {
            std::hint::spin_loop();
        }
        // Busy, not asleep: the wake-up timer of a sleep may be queued on
        // the guest's CPU (a busy CPU takes the timers of idle ones), and
        // its interrupt would take the guest out of the guest world just
        // before the line is raised.
        let spun = Instant::now();
        while spun.elapsed() < Duration::from_millis(50) {
            std::hint::spin_loop();
        }
        let returned_early = returned.load(Ordering::SeqCst);
        let poll_before = poll_in(f.as_raw_fd(), 0);
        // The guest spins, waiting for its line: raise it.
        efd_write(&irq, 1);
        (vcpu.join(), counted, returned_early, poll_before)
    });
    c.expect(
        &format!("the ioeventfd counted {counted} NOTIFYs, want {NOTIFIES}"),
        if counted == NOTIFIES { Ok(0) } else { Err(0) },
        None,
    );
    c.expect(
        "the spin queue's NOTIFY was served too",
        efd_read(&spin).map(|v| v as i32),
        None,
    );
    c.expect(
        "RUN had not returned while the NOTIFYs were counted",
        if returned_early { Err(0) } else { Ok(0) },
        None,
    );
    c.expect(
        "poll() of the device file before the line was raised: nothing",
        if poll_before == 0 { Ok(0) } else { Err(0) },
        None,
    );
    match result {
        Ok((rc, r)) => {
            c.expect("RUN while the guest waits for its line", rc, None);
            let text = String::from_utf8_lossy(&r.text[..r.text_size as usize]).into_owned();
            let want = format!("virtio: notifies {NOTIFIES} lines 0x{:08x}", 1u32 << LINE);
            println!("guest terminated: reason {} text {text:?}", r.params[0]);
            c.expect(
                &format!("the guest saw its line: {text:?}, want {want:?}"),
                if r.exit_reason == abi::COOPERATIVE_RUN_EXIT_OPERATION
                    && r.operation == abi::COOPERATIVE_OP_TERMINATE
                    && r.params[0] == u64::from(abi::COOPERATIVE_TERM_END)
                    && text == want
                {
                    Ok(0)
                } else {
                    Err(0)
                },
                None,
            );
            println!(
                "info: that RUN forwarded {} host interrupts, served {} idle round trips",
                r.interrupts, r.idle_round_trips
            );
        }
        Err(_) => {
            println!("FAIL: the RUN thread panicked");
            c.failed += 1;
        }
    }
    c.expect(
        "the driver consumed the IRQFD's count",
        efd_read(&irq).map(|v| v as i32),
        Some(libc::EAGAIN),
    );
    let mut r = abi::cooperative_ioctl_run {
        abi_version: abi::COOPERATIVE_ABI_VERSION,
        ..Default::default()
    };
    c.expect(
        "RUN after TERMINATE",
        raw(&f, abi::ioctl::RUN, ptr(&mut r)),
        Some(libc::ESRCH),
    );

    isr_binding(&mut c, &f, &m);

    // poll(): a line raised while the guest does not run.
    efd_write(&irq, 1);
    c.expect(
        "poll() of the device file after the IRQFD's eventfd was written",
        if poll_in(f.as_raw_fd(), 1000) & libc::POLLIN != 0 {
            Ok(0)
        } else {
            Err(0)
        },
        None,
    );

    // DESTROY: bindings and raised lines go; the mapping's touched pages stay.
    c.expect("DESTROY", raw(&f, abi::ioctl::DESTROY, 0), None);
    c.expect(
        "poll() after DESTROY: nothing",
        if poll_in(f.as_raw_fd(), 0) == 0 {
            Ok(0)
        } else {
            Err(0)
        },
        None,
    );
    efd_write(&irq, 1);
    c.expect(
        "the IRQFD's eventfd keeps its count after DESTROY (unbound)",
        efd_read(&irq).map(|v| v as i32),
        None,
    );
    let (at, data, _) = &image.segments[0];
    c.expect(
        "the payload's pages are still mapped after DESTROY",
        if m.bytes(*at, data.len()) == data.as_slice() {
            Ok(0)
        } else {
            Err(0)
        },
        None,
    );
    c.expect(
        "a page never touched gives SIGBUS after DESTROY",
        if sigbus_on_read(m.ptr(40 << 20)) {
            Ok(0)
        } else {
            Err(0)
        },
        None,
    );
    let mut a = create_arg(MEM);
    c.expect(
        "CREATE a new guest on the file",
        raw(&f, abi::ioctl::CREATE, ptr(&mut a)),
        None,
    );
    match Mapping::new(&f, 0, MEM as usize, libc::MAP_SHARED) {
        Ok(fresh) => {
            let new_zero = fresh.bytes(*at, data.len()).iter().all(|&b| b == 0);
            let old_same = m.bytes(*at, data.len()) == data.as_slice();
            c.expect(
                "the new guest's RAM is zero, the old mapping still shows the old pages",
                if new_zero && old_same && sigbus_on_read(m.ptr(41 << 20)) {
                    Ok(0)
                } else {
                    Err(0)
                },
                None,
            );
        }
        Err(e) => c.expect("mmap of the new guest", Err(e), None),
    }
    drop(m);
    c.failed
}

/// A guest ready for its last RUN: created, loaded, an ioeventfd on its
/// bound queue and an irqfd on line 5, guest RAM mapped, its two requests
/// for the daemon answered.
struct Held {
    f: File,
    run: abi::cooperative_ioctl_run,
    io: OwnedFd,
    irq: OwnedFd,
    _m: Option<Mapping>,
}

fn hold_one(c: &mut Checks, payload: &str) -> Option<Held> {
    let f = open();
    let (_image, mut run) = guest(c, &f, payload)?;
    let (io, irq) = (eventfd(), eventfd());
    for queue in [BOUND_QUEUE, SPIN_QUEUE] {
        let mut a = ioeventfd_arg(DEVICE, queue, io.as_raw_fd());
        c.expect(
            "IOEVENTFD",
            raw(&f, abi::ioctl::IOEVENTFD, ptr(&mut a)),
            None,
        );
    }
    let mut a = irqfd_arg(LINE, irq.as_raw_fd());
    c.expect("IRQFD", raw(&f, abi::ioctl::IRQFD, ptr(&mut a)), None);
    let m = Mapping::new(&f, 0, MEM as usize, libc::MAP_SHARED);
    c.expect("mmap", m.as_ref().map(|_| 0).map_err(|&e| e), None);
    for what in ["RUN: unbound NOTIFY", "RUN: SET_STATUS"] {
        run_expect_op(
            c,
            &f,
            &mut run,
            what,
            abi::COOPERATIVE_OP_VIRTIO,
            &[u64::from(DEVICE)],
        );
    }
    (c.failed == 0).then_some(Held {
        f,
        run,
        io,
        irq,
        _m: m.ok(),
    })
}

/// Two guests with both kinds of binding and guest RAM mapped: one spins
/// in RUN waiting for a line that never comes (killed mid-RUN), the other
/// gets its line from a thread that writes its IRQFD's eventfd in a loop
/// (after the guest has ended too: the wake function keeps running while
/// the process dies). Prints `holding` and waits to be killed.
pub fn virtio_hold(payload: &str) -> usize {
    let mut c = Checks { failed: 0 };
    let (Some(spinning), Some(raised)) = (hold_one(&mut c, payload), hold_one(&mut c, payload))
    else {
        return c.failed.max(1);
    };
    std::thread::scope(|s| {
        for h in [&spinning, &raised] {
            s.spawn(move || {
                let mut r = h.run;
                let _ = raw(&h.f, abi::ioctl::RUN, ptr(&mut r));
            });
        }
        s.spawn(|| {
            let mut n = 0u64;
            loop {
                efd_write(&raised.irq, 1);
                let _ = efd_read(&raised.io);
                let _ = efd_read(&spinning.io);
                n += 1;
                if n == 1000 {
                    println!("holding");
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        });
    });
    c.failed
}
