//! What the core needs from the kernel.
//!
//! The kernel module implements [`Host`] with the C shim's `colinux_shim_*`
//! functions (see `ffi.rs` and `driver/kbuild/colinux_core.h`); the unit
//! tests implement it with a fake that keeps pages in a `Vec`. The core is
//! generic over it (monomorphised, so the kernel build has no indirect
//! calls).

use core::ptr::NonNull;

/// A Linux error number (positive; the C interface returns it negated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// No such binding (DEASSIGN of an eventfd that is not bound).
    pub const ENOENT: Errno = Errno(2);
    /// The guest has ended: it cannot run again.
    pub const ESRCH: Errno = Errno(3);
    /// Interrupted (a fatal signal arrived during a long operation).
    pub const EINTR: Errno = Errno(4);
    /// A descriptor that is not open (an eventfd ioctl's `fd`).
    pub const EBADF: Errno = Errno(9);
    /// The host is out of memory, or the request exceeds what it may give.
    pub const ENOMEM: Errno = Errno(12);
    /// A daemon address could not be read.
    pub const EFAULT: Errno = Errno(14);
    /// This file already has a guest, or the guest has run (LOAD).
    pub const EBUSY: Errno = Errno(16);
    /// The binding exists already (IOEVENTFD's queue, IRQFD's fd and line).
    pub const EEXIST: Errno = Errno(17);
    /// Nothing to map: `mmap()` of a file without a guest.
    pub const ENODEV: Errno = Errno(19);
    /// An argument is out of range, a reserved field is not zero, or the
    /// file has no guest to act on.
    pub const EINVAL: Errno = Errno(22);
    /// Not one of our ioctls.
    pub const ENOTTY: Errno = Errno(25);
    /// No room for another binding (IRQFD's limit).
    pub const ENOSPC: Errno = Errno(28);
    /// The daemon speaks another ABI version.
    pub const EPROTO: Errno = Errno(71);

    /// The value the C interface returns: `-errno`.
    pub fn to_c(self) -> i32 {
        -self.0
    }
}

/// Severity of a log message (the shim maps it to `pr_info`/`pr_warn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Level {
    /// Normal events: a guest created or destroyed.
    Info = 0,
    /// A refused request, with its reason.
    Warn = 1,
}

/// The kernel services the core uses.
pub trait Host {
    /// Allocate one zeroed host page and return its frame number (the frame
    /// is also the handle given back to [`Host::free_page`]). May sleep;
    /// fails with `EINTR` when the caller has a fatal signal pending, so a
    /// huge allocation can be interrupted, and `ENOMEM` when the host has
    /// no page.
    fn alloc_page(&mut self) -> Result<u64, Errno>;
    /// Free a page [`Host::alloc_page`] returned.
    fn free_page(&mut self, frame: u64);
    /// Copy `len` bytes from the daemon's address `user` into page `frame`
    /// at `offset` (`offset + len <= page size`). `EFAULT` when the daemon's
    /// memory cannot be read, `EINTR` on a fatal signal.
    fn copy_from_user(
        &mut self,
        frame: u64,
        offset: usize,
        user: u64,
        len: usize,
    ) -> Result<(), Errno>;
    /// Zero `len` bytes of page `frame` from `offset` (`offset + len <= page
    /// size`). `EINTR` on a fatal signal.
    fn zero(&mut self, frame: u64, offset: usize, len: usize) -> Result<(), Errno>;
    /// Allocate `size` zeroed bytes, aligned to at least 8, for the core's
    /// own tables (may be large: the frame table of a 3 GiB guest is 6 MiB).
    fn alloc(&mut self, size: usize) -> Option<NonNull<u8>>;
    /// Free what [`Host::alloc`] returned (`size` is what was asked for).
    fn free(&mut self, ptr: NonNull<u8>, size: usize);
    /// Log `msg` (ASCII, no newline) about guest `guest`; rate-limited.
    fn log(&mut self, level: Level, guest: u32, msg: &[u8]);
}
