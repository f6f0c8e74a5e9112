//! `colinux-probe`: hostile and malformed use of `/dev/colinux`, run inside
//! the QEMU test host by the driver tests. Each subcommand prints one line
//! per check (`ok: …` or `FAIL: …`) and exits non-zero if any check failed.
//!
//! - `malformed`: every ioctl misuse the driver must refuse, with the errno
//!   it must give.
//! - `run`: RUN and every ioctl after it, with a tiny guest that calls the
//!   passage once and then faults: malformed RUNs refused, LOAD and CREATE
//!   refused while it runs and once it is dead, INFO's state, ESRCH for a
//!   dead guest. (Random RUNs are not fuzzed: a RUN that starts random
//!   guest code is a hostile guest *kernel*, which the host trusts.)
//! - `fuzz N SEED`: N random ioctls (numbers, sizes, pointers, contents);
//!   only "no crash" is checked here, the test then checks the kernel log.
//! - `unprivileged`: drop to uid/gid 65534 and try to open the device.
//! - `getppid N`: the cost of N `getppid()` system calls, in TSC cycles
//!   (the yardstick `cargo xtask bench passage` compares the passage with).
//! - `virtio PAYLOAD [DEVICE]`, `virtio-hold PAYLOAD`: the interfaces for
//!   device back ends (mmap of guest RAM, IOEVENTFD, IRQFD, poll) with the
//!   test payload; see `virtio.rs`.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;

use colinux_abi as abi;

mod virtio;

const DEV: &str = "/dev/colinux";

fn open() -> File {
    match OpenOptions::new().read(true).write(true).open(DEV) {
        Ok(f) => f,
        Err(e) => {
            println!("FAIL: cannot open {DEV}: {e}");
            std::process::exit(2);
        }
    }
}

/// Raw ioctl; returns Ok(rc) or Err(errno).
fn raw(f: &File, req: u32, arg: usize) -> Result<i32, i32> {
    // SAFETY: a raw ioctl on our own file descriptor. `arg` is either a
    // pointer to a live buffer of the size the request encodes or a
    // deliberately bad pointer; the kernel must validate it (that is what
    // this program tests) and can never write outside what it is given
    // without faulting safely in copy_to_user.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), req as _, arg) };
    if rc < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(rc)
    }
}

struct Checks {
    failed: usize,
}

impl Checks {
    fn expect(&mut self, what: &str, got: Result<i32, i32>, want_errno: Option<i32>) {
        let ok = match (got, want_errno) {
            (Ok(_), None) => true,
            (Err(e), Some(w)) => e == w,
            _ => false,
        };
        let show = |r: Result<i32, i32>| match r {
            Ok(v) => format!("success ({v})"),
            Err(e) => format!("errno {e} ({})", std::io::Error::from_raw_os_error(e)),
        };
        let want = match want_errno {
            None => "success".to_string(),
            Some(e) => format!("errno {e} ({})", std::io::Error::from_raw_os_error(e)),
        };
        if ok {
            println!("ok: {what}: {}", show(got));
        } else {
            println!("FAIL: {what}: got {}, want {want}", show(got));
            self.failed += 1;
        }
    }
}

fn create_arg(size: u64) -> abi::cooperative_ioctl_create {
    abi::cooperative_ioctl_create {
        abi_version: abi::COOPERATIVE_ABI_VERSION,
        memory_size: size,
        ..Default::default()
    }
}

fn ptr<T>(v: &mut T) -> usize {
    v as *mut T as usize
}

fn malformed() -> usize {
    let mut c = Checks { failed: 0 };
    let (einval, efault, enotty, eproto) = (libc::EINVAL, libc::EFAULT, libc::ENOTTY, libc::EPROTO);
    let f = open();
    let mut info = abi::cooperative_ioctl_info {
        abi_version: abi::COOPERATIVE_ABI_VERSION,
        ..Default::default()
    };
    c.expect(
        "INFO before CREATE",
        raw(&f, abi::ioctl::INFO, ptr(&mut info)),
        None,
    );
    if info.state != abi::COOPERATIVE_GUEST_STATE_NONE {
        println!("FAIL: INFO before CREATE reports state {}", info.state);
        c.failed += 1;
    }
    let mut load = abi::cooperative_ioctl_load {
        abi_version: abi::COOPERATIVE_ABI_VERSION,
        ..Default::default()
    };
    c.expect(
        "LOAD before CREATE",
        raw(&f, abi::ioctl::LOAD, ptr(&mut load)),
        Some(einval),
    );
    c.expect(
        "DESTROY before CREATE",
        raw(&f, abi::ioctl::DESTROY, 0),
        Some(einval),
    );
    c.expect(
        "unknown ioctl number",
        raw(
            &f,
            abi::ioctl::ioc(3, abi::COOPERATIVE_IOCTL_TYPE, 99, 8),
            0,
        ),
        Some(enotty),
    );
    c.expect(
        "CREATE with a wrong argument size",
        raw(
            &f,
            abi::ioctl::ioc(
                abi::ioctl::WRITE,
                abi::COOPERATIVE_IOCTL_TYPE,
                abi::COOPERATIVE_IOCTL_NR_CREATE,
                8,
            ),
            0,
        ),
        Some(enotty),
    );
    c.expect(
        "CREATE with a null pointer",
        raw(&f, abi::ioctl::CREATE, 0),
        Some(efault),
    );
    c.expect(
        "CREATE with a kernel pointer",
        raw(&f, abi::ioctl::CREATE, 0xffff_8880_0000_0000),
        Some(efault),
    );
    let mut a = create_arg(256 << 20);
    a.abi_version = 999;
    c.expect(
        "CREATE with another ABI version",
        raw(&f, abi::ioctl::CREATE, ptr(&mut a)),
        Some(eproto),
    );
    let mut a = create_arg(256 << 20);
    a.flags = 1;
    c.expect(
        "CREATE with unknown flags",
        raw(&f, abi::ioctl::CREATE, ptr(&mut a)),
        Some(einval),
    );
    let mut a = create_arg(256 << 20);
    a.reserved[1] = 7;
    c.expect(
        "CREATE with nonzero reserved",
        raw(&f, abi::ioctl::CREATE, ptr(&mut a)),
        Some(einval),
    );
    for (what, size) in [
        ("CREATE with 0 bytes", 0u64),
        ("CREATE below the minimum", 4 << 20),
        ("CREATE not a multiple of the page size", (256 << 20) + 1),
        ("CREATE above the maximum (4 GiB)", 4 << 30),
        ("CREATE with an absurd size (2^63)", 1 << 63),
        ("CREATE with u64::MAX", u64::MAX),
    ] {
        let mut a = create_arg(size);
        c.expect(what, raw(&f, abi::ioctl::CREATE, ptr(&mut a)), Some(einval));
    }
    let mut a = create_arg(64 << 20);
    c.expect(
        "CREATE 64 MiB",
        raw(&f, abi::ioctl::CREATE, ptr(&mut a)),
        None,
    );
    let mut a = create_arg(64 << 20);
    c.expect(
        "a second CREATE on the same file",
        raw(&f, abi::ioctl::CREATE, ptr(&mut a)),
        Some(libc::EBUSY),
    );
    let data = vec![0xabu8; 8192];
    let good = |addr: u64, size: u64, zero: u64| abi::cooperative_ioctl_load {
        abi_version: abi::COOPERATIVE_ABI_VERSION,
        guest_address: addr,
        user_address: data.as_ptr() as u64,
        size,
        zero_size: zero,
        ..Default::default()
    };
    let mut l = good(0x10_0000, 8192, 4096);
    c.expect(
        "LOAD 8 KiB + 4 KiB zeroed",
        raw(&f, abi::ioctl::LOAD, ptr(&mut l)),
        None,
    );
    for (what, mut l, want) in [
        (
            "LOAD past the end of RAM",
            good((64 << 20) - 4096, 8192, 0),
            einval,
        ),
        (
            "LOAD zeroing past the end of RAM",
            good((64 << 20) - 8192, 8192, 1),
            einval,
        ),
        (
            "LOAD with an address that overflows",
            good(u64::MAX - 100, 8192, 0),
            einval,
        ),
        (
            "LOAD with a size that overflows",
            good(4096, u64::MAX, 0),
            einval,
        ),
        (
            "LOAD with a zero size that overflows",
            good(4096, 8192, u64::MAX - 4096),
            einval,
        ),
        (
            "LOAD from a null user pointer",
            abi::cooperative_ioctl_load {
                user_address: 0,
                ..good(0, 8192, 0)
            },
            efault,
        ),
        (
            "LOAD from a kernel address",
            abi::cooperative_ioctl_load {
                user_address: 0xffff_ffff_8100_0000,
                ..good(0, 4096, 0)
            },
            efault,
        ),
        (
            "LOAD with nonzero flags",
            abi::cooperative_ioctl_load {
                flags: 2,
                ..good(0, 16, 0)
            },
            einval,
        ),
    ] {
        c.expect(what, raw(&f, abi::ioctl::LOAD, ptr(&mut l)), Some(want));
    }
    let mut info = abi::cooperative_ioctl_info {
        abi_version: abi::COOPERATIVE_ABI_VERSION,
        ..Default::default()
    };
    c.expect(
        "INFO after CREATE",
        raw(&f, abi::ioctl::INFO, ptr(&mut info)),
        None,
    );
    let want_pages = (64u64 << 20) / 4096;
    if info.pages != want_pages
        || info.loads != 1
        || info.loaded_bytes != 8192
        || info.state != abi::COOPERATIVE_GUEST_STATE_CREATED
    {
        println!("FAIL: INFO says {info:?}; want {want_pages} pages, 1 load of 8192 bytes, state CREATED");
        c.failed += 1;
    } else {
        println!(
            "ok: INFO reports {} pages, {} below 4 GiB, 1 load",
            info.pages, info.pages_below_4g
        );
    }
    static READ_ONLY: [u8; 128] = [0; 128];
    c.expect(
        "INFO into read-only memory",
        raw(&f, abi::ioctl::INFO, READ_ONLY.as_ptr() as usize),
        Some(efault),
    );
    c.expect("DESTROY", raw(&f, abi::ioctl::DESTROY, 0), None);
    c.expect(
        "DESTROY twice",
        raw(&f, abi::ioctl::DESTROY, 0),
        Some(einval),
    );
    c.failed
}

/// RUN and every ioctl after it: a tiny guest (loaded at guest-physical
/// 0x1000) that asks the daemon for one operation (DEBUG_LINE) through the
/// passage and then executes ud2. Malformed RUNs are refused; once it runs,
/// LOAD and CREATE are refused and INFO says RUNNING; after its fault INFO
/// says DEAD and RUN says ESRCH.
fn run_lifecycle() -> usize {
    let mut c = Checks { failed: 0 };
    let (einval, efault, eproto, ebusy, esrch) = (
        libc::EINVAL,
        libc::EFAULT,
        libc::EPROTO,
        libc::EBUSY,
        libc::ESRCH,
    );
    let va = u64::from(abi::COOPERATIVE_KERNEL_VA_OFFSET);
    let good = || abi::cooperative_ioctl_run {
        abi_version: abi::COOPERATIVE_ABI_VERSION,
        entry: va + 0x1000,
        stack: va + 0x3000,
        ..Default::default()
    };
    let f = open();
    let mut r = good();
    c.expect(
        "RUN before CREATE",
        raw(&f, abi::ioctl::RUN, ptr(&mut r)),
        Some(einval),
    );
    let mut a = create_arg(16 << 20);
    c.expect("CREATE", raw(&f, abi::ioctl::CREATE, ptr(&mut a)), None);

    let shared = abi::COOPERATIVE_SHARED_STATE_GUEST_VA;
    let op = shared
        + (std::mem::offset_of!(abi::cooperative_shared_state, vcpu)
            + std::mem::offset_of!(abi::cooperative_vcpu_state, operation)) as u32;
    let entry = shared + std::mem::offset_of!(abi::cooperative_shared_state, passage_entry) as u32;
    let mut code = vec![0xc7, 0x05]; // movl $DEBUG_LINE, operation
    code.extend(op.to_le_bytes());
    code.extend(abi::COOPERATIVE_OP_DEBUG_LINE.to_le_bytes());
    code.extend([0x9c, 0xfa, 0x0e, 0xff, 0x15]); // pushfl; cli; push %cs; call *
    code.extend(entry.to_le_bytes());
    code.extend([0x0f, 0x0b]); // ud2
    let mut l = abi::cooperative_ioctl_load {
        abi_version: abi::COOPERATIVE_ABI_VERSION,
        guest_address: 0x1000,
        user_address: code.as_ptr() as u64,
        size: code.len() as u64,
        ..Default::default()
    };
    c.expect(
        "LOAD the guest",
        raw(&f, abi::ioctl::LOAD, ptr(&mut l)),
        None,
    );

    let mut bad_boot = abi::cooperative_boot_params::default();
    type Spoil = fn(&mut abi::cooperative_ioctl_run, u64);
    let cases: [(&str, Spoil, i32); 8] = [
        (
            "RUN with another ABI version",
            |r, _| r.abi_version += 1,
            eproto,
        ),
        (
            "RUN with an unknown flag",
            |r, _| r.flags = !abi::COOPERATIVE_RUN_FLAGS,
            einval,
        ),
        (
            "RUN with a reserved field",
            |r, _| r.reserved[0] = 1,
            einval,
        ),
        (
            "RUN with entry outside RAM",
            |r, _| r.entry = 0x1000,
            einval,
        ),
        (
            "RUN with entry beyond RAM",
            |r, _| r.entry += 16 << 20,
            einval,
        ),
        ("RUN with a misaligned stack", |r, _| r.stack += 2, einval),
        (
            "RUN with unreadable boot parameters",
            |r, _| r.boot = 8,
            efault,
        ),
        ("RUN with bad boot parameters", |r, p| r.boot = p, einval),
    ];
    for (what, spoil, want) in cases {
        let mut r = good();
        spoil(&mut r, ptr(&mut bad_boot) as u64);
        c.expect(what, raw(&f, abi::ioctl::RUN, ptr(&mut r)), Some(want));
    }

    let mut r = good();
    c.expect("RUN", raw(&f, abi::ioctl::RUN, ptr(&mut r)), None);
    if r.exit_reason != abi::COOPERATIVE_RUN_EXIT_OPERATION
        || r.operation != abi::COOPERATIVE_OP_DEBUG_LINE
    {
        println!(
            "FAIL: RUN came back with exit {} operation {}, want the guest's DEBUG_LINE",
            r.exit_reason, r.operation
        );
        c.failed += 1;
    }
    let state = |f: &File, c: &mut Checks, what: &str, want: u32| {
        let mut info = abi::cooperative_ioctl_info {
            abi_version: abi::COOPERATIVE_ABI_VERSION,
            ..Default::default()
        };
        c.expect(what, raw(f, abi::ioctl::INFO, ptr(&mut info)), None);
        if info.state != want {
            println!("FAIL: {what}: state {}, want {want}", info.state);
            c.failed += 1;
        }
    };
    state(
        &f,
        &mut c,
        "INFO while running",
        abi::COOPERATIVE_GUEST_STATE_RUNNING,
    );
    c.expect(
        "LOAD into a running guest",
        raw(&f, abi::ioctl::LOAD, ptr(&mut l)),
        Some(ebusy),
    );
    let mut a = create_arg(16 << 20);
    c.expect(
        "CREATE beside a running guest",
        raw(&f, abi::ioctl::CREATE, ptr(&mut a)),
        Some(ebusy),
    );
    let mut r = good();
    c.expect(
        "RUN with an entry once started",
        raw(&f, abi::ioctl::RUN, ptr(&mut r)),
        Some(einval),
    );
    let mut r = abi::cooperative_ioctl_run {
        abi_version: abi::COOPERATIVE_ABI_VERSION,
        ..Default::default()
    };
    c.expect(
        "RUN on to the fault",
        raw(&f, abi::ioctl::RUN, ptr(&mut r)),
        None,
    );
    if r.exit_reason != abi::COOPERATIVE_RUN_EXIT_FAULT || r.vector != 6 {
        println!(
            "FAIL: RUN came back with exit {} vector {}, want the guest's ud2 (fault, vector 6)",
            r.exit_reason, r.vector
        );
        c.failed += 1;
    }
    state(
        &f,
        &mut c,
        "INFO after the fault",
        abi::COOPERATIVE_GUEST_STATE_DEAD,
    );
    let mut r = abi::cooperative_ioctl_run {
        abi_version: abi::COOPERATIVE_ABI_VERSION,
        ..Default::default()
    };
    c.expect(
        "RUN a dead guest",
        raw(&f, abi::ioctl::RUN, ptr(&mut r)),
        Some(esrch),
    );
    c.expect(
        "LOAD into a dead guest",
        raw(&f, abi::ioctl::LOAD, ptr(&mut l)),
        Some(ebusy),
    );
    c.expect("DESTROY", raw(&f, abi::ioctl::DESTROY, 0), None);
    let mut r = good();
    c.expect(
        "RUN after DESTROY",
        raw(&f, abi::ioctl::RUN, ptr(&mut r)),
        Some(einval),
    );
    c.failed
}

fn fuzz(n: usize, mut seed: u64) -> usize {
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut buf = vec![0u8; 4096];
    let nrs = [
        abi::ioctl::CREATE,
        abi::ioctl::LOAD,
        abi::ioctl::INFO,
        abi::ioctl::DESTROY,
        abi::ioctl::IOEVENTFD,
        abi::ioctl::IRQFD,
    ];
    let mut f = open();
    let (mut ok, mut err) = (0usize, 0usize);
    for i in 0..n {
        if i % 500 == 499 {
            // Close (tearing down any guest) and start over now and then.
            f = open();
        }
        let r = next();
        let req = match r % 8 {
            0..=4 => nrs[(r >> 8) as usize % nrs.len()],
            5 => abi::ioctl::ioc(
                (r >> 8) as u32 % 4,
                abi::COOPERATIVE_IOCTL_TYPE,
                (r >> 16) as u32 % 8,
                (r >> 24) as usize % 128,
            ),
            _ => (r >> 32) as u32,
        };
        for b in buf.iter_mut() {
            *b = next() as u8;
        }
        // Mostly plausible arguments, sometimes plausible values in them.
        if r % 3 == 0 {
            let mut a = create_arg(((next() % 64) + 1) << 20);
            if next() % 4 == 0 {
                a.memory_size = next();
            }
            // SAFETY: buf holds 4096 bytes, more than the structure.
            unsafe { std::ptr::write_unaligned(buf.as_mut_ptr().cast(), a) };
        } else if r % 3 == 1 {
            let l = abi::cooperative_ioctl_load {
                abi_version: abi::COOPERATIVE_ABI_VERSION,
                guest_address: next() % (80 << 20),
                user_address: if next() % 4 == 0 {
                    next()
                } else {
                    buf.as_ptr() as u64
                },
                size: next() % 8192,
                zero_size: next() % (1 << 20),
                ..Default::default()
            };
            // SAFETY: as above.
            unsafe { std::ptr::write_unaligned(buf.as_mut_ptr().cast(), l) };
        }
        let arg = match next() % 10 {
            0 => 0,
            1 => next() as usize,
            2 => 0xffff_8000_0000_0000usize + (next() as usize % 0x1000_0000),
            _ => buf.as_mut_ptr() as usize,
        };
        match raw(&f, req, arg) {
            Ok(_) => ok += 1,
            Err(_) => err += 1,
        }
    }
    println!("ok: {n} random ioctls done ({ok} succeeded, {err} refused)");
    0
}

fn unprivileged() -> usize {
    // SAFETY: plain syscalls changing this process's credentials.
    let rc = unsafe { libc::setgid(65534) | libc::setuid(65534) };
    if rc != 0 {
        println!("FAIL: cannot drop privileges");
        return 1;
    }
    match OpenOptions::new().read(true).write(true).open(DEV) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            println!("ok: uid 65534 cannot open {DEV}: {e}");
            0
        }
        Err(e) => {
            println!("FAIL: uid 65534: unexpected error {e}");
            1
        }
        Ok(_) => {
            println!("FAIL: uid 65534 opened {DEV}");
            1
        }
    }
}

fn getppid_cost(n: u64) -> usize {
    let n = n.max(1);
    // SAFETY: rdtsc has no preconditions on x86_64.
    let start = unsafe { core::arch::x86_64::_rdtsc() };
    for _ in 0..n {
        // SAFETY: getppid has no preconditions and cannot fail.
        unsafe { libc::getppid() };
    }
    // SAFETY: as above.
    let cycles = unsafe { core::arch::x86_64::_rdtsc() } - start;
    println!("getppid: {n} calls, {} TSC cycles each", cycles / n);
    0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let failed = match args.get(1).map(String::as_str) {
        Some("malformed") => malformed(),
        Some("run") => run_lifecycle(),
        Some("fuzz") => {
            let n = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3000);
            let seed = args
                .get(3)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0x9e37_79b9_7f4a_7c15);
            fuzz(n, seed)
        }
        Some("unprivileged") => unprivileged(),
        Some("virtio") => match args.get(2) {
            Some(payload) => virtio::virtio(
                payload,
                args.get(3).map(String::as_str).filter(|d| *d != "-"),
                args.get(4).and_then(|c| c.parse().ok()),
            ),
            None => 2,
        },
        Some("virtio-hold") => match args.get(2) {
            Some(payload) => virtio::virtio_hold(payload),
            None => 2,
        },
        Some("getppid") => getppid_cost(
            args.get(2)
                .and_then(|s| s.parse().ok())
                .unwrap_or(1_000_000),
        ),
        _ => {
            eprintln!(
                "usage: colinux-probe malformed | run | fuzz [N [SEED]] | unprivileged | getppid [N] \
                 | virtio PAYLOAD [O_DIRECT-DEVICE|- [GUEST-CPU]] | virtio-hold PAYLOAD"
            );
            2
        }
    };
    if failed > 0 {
        println!("FAIL: {failed} check(s) failed");
        std::process::exit(1);
    }
}
