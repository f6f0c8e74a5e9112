//! The C interface of the core, as declared in `driver/kbuild/colinux_core.h`.
//!
//! The shim calls the `colinux_core_*` functions with the file's mutex held
//! and the ioctl argument already copied into kernel memory; the core calls
//! back into the shim through the `colinux_shim_*` functions, and nothing
//! else: the built object must have no other undefined symbol (`cargo xtask
//! build-driver` checks it).

use core::ffi::{c_int, c_void};
use core::ptr::NonNull;

use colinux_abi::{
    cooperative_boot_params, cooperative_ioctl_create, cooperative_ioctl_info,
    cooperative_ioctl_ioeventfd, cooperative_ioctl_irqfd, cooperative_ioctl_load,
    cooperative_ioctl_run,
};

use crate::guest::{self, Slot};
use crate::host::{Errno, Host, Level};

extern "C" {
    fn colinux_shim_alloc_page(frame: *mut u64) -> c_int;
    fn colinux_shim_free_page(frame: u64);
    fn colinux_shim_copy_from_user(frame: u64, offset: u32, user_address: u64, len: u32) -> c_int;
    fn colinux_shim_zero(frame: u64, offset: u32, len: u32) -> c_int;
    fn colinux_shim_alloc(size: usize) -> *mut c_void;
    fn colinux_shim_free(ptr: *mut c_void);
    fn colinux_shim_log(level: u32, guest_id: u32, msg: *const u8, len: usize);
    #[cfg(target_os = "none")]
    fn colinux_shim_panic() -> !;
}

/// The kernel, through the shim.
#[derive(Debug)]
struct Kernel;

fn result(rc: c_int) -> Result<(), Errno> {
    if rc < 0 {
        Err(Errno(-rc))
    } else {
        Ok(())
    }
}

impl Host for Kernel {
    fn alloc_page(&mut self) -> Result<u64, Errno> {
        let mut frame = 0;
        // SAFETY: the shim writes the frame through a valid pointer to a u64.
        result(unsafe { colinux_shim_alloc_page(&mut frame) })?;
        Ok(frame)
    }

    fn free_page(&mut self, frame: u64) {
        // SAFETY: the core frees only frames alloc_page returned, once.
        unsafe { colinux_shim_free_page(frame) }
    }

    fn copy_from_user(
        &mut self,
        frame: u64,
        offset: usize,
        user: u64,
        len: usize,
    ) -> Result<(), Errno> {
        // Both are at most a page (see Host), so the casts are exact.
        // SAFETY: `frame` is a live page of ours and `offset + len` is within
        // it; the shim checks `user` with copy_from_user.
        result(unsafe { colinux_shim_copy_from_user(frame, offset as u32, user, len as u32) })
    }

    fn zero(&mut self, frame: u64, offset: usize, len: usize) -> Result<(), Errno> {
        // SAFETY: `frame` is a live page of ours and `offset + len` is within it.
        result(unsafe { colinux_shim_zero(frame, offset as u32, len as u32) })
    }

    fn alloc(&mut self, size: usize) -> Option<NonNull<u8>> {
        // SAFETY: plain allocation; a null result is handled.
        NonNull::new(unsafe { colinux_shim_alloc(size) }.cast())
    }

    fn free(&mut self, ptr: NonNull<u8>, _size: usize) {
        // SAFETY: `ptr` came from colinux_shim_alloc and is freed once.
        unsafe { colinux_shim_free(ptr.as_ptr().cast()) }
    }

    fn log(&mut self, level: Level, guest: u32, msg: &[u8]) {
        // SAFETY: `msg` is valid for `msg.len()` bytes during the call.
        unsafe { colinux_shim_log(level as u32, guest, msg.as_ptr(), msg.len()) }
    }
}

#[cfg(target_os = "none")]
pub(crate) fn panic() -> ! {
    // SAFETY: the shim reports the bug and does not return.
    unsafe { colinux_shim_panic() }
}

fn to_c(r: Result<(), Errno>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => e.to_c(),
    }
}

/// CREATE: make the file's guest (`*slot`) with the RAM `arg` asks for, at
/// most `max_pages` pages. 0 or -errno.
///
/// # Safety
/// `slot` points to the file's guest pointer and `arg` to a CREATE argument
/// in kernel memory; calls on one slot are serialised.
#[no_mangle]
pub unsafe extern "C" fn colinux_core_create(
    slot: *mut Slot,
    arg: *const cooperative_ioctl_create,
    max_pages: u64,
) -> c_int {
    // SAFETY: the caller's contract above.
    let (slot, arg) = unsafe { (&mut *slot, &*arg) };
    to_c(guest::create(&mut Kernel, slot, arg, max_pages).map(|_| ()))
}

/// LOAD into the file's guest. 0 or -errno.
///
/// # Safety
/// As for [`colinux_core_create`].
#[no_mangle]
pub unsafe extern "C" fn colinux_core_load(
    slot: *mut Slot,
    arg: *const cooperative_ioctl_load,
) -> c_int {
    // SAFETY: the caller's contract above.
    let (slot, arg) = unsafe { (&mut *slot, &*arg) };
    to_c(guest::load(&mut Kernel, slot, arg))
}

/// INFO about the file's guest, written to `*arg`. 0 or -errno.
///
/// # Safety
/// As for [`colinux_core_create`]; `arg` is writable.
#[no_mangle]
pub unsafe extern "C" fn colinux_core_info(
    slot: *const Slot,
    arg: *mut cooperative_ioctl_info,
) -> c_int {
    // SAFETY: the caller's contract above.
    let (slot, arg) = unsafe { (&*slot, &mut *arg) };
    to_c(guest::info(slot, arg))
}

/// DESTROY the file's guest and free all its memory; `*slot` becomes NULL.
/// 0, or -EINVAL when there was no guest.
///
/// # Safety
/// As for [`colinux_core_create`].
#[no_mangle]
pub unsafe extern "C" fn colinux_core_destroy(slot: *mut Slot) -> c_int {
    // SAFETY: the caller's contract above.
    let slot = unsafe { &mut *slot };
    to_c(guest::destroy(&mut Kernel, slot))
}

/// RUN's argument for the file's guest (`started`: nonzero when an earlier
/// RUN started it). 0 or -errno (EPROTO, ESRCH, EINVAL), the reason logged.
///
/// # Safety
/// `slot` as for [`colinux_core_create`]; `arg` points to a RUN argument in
/// kernel memory.
#[no_mangle]
pub unsafe extern "C" fn colinux_core_run_check(
    slot: *const Slot,
    arg: *const cooperative_ioctl_run,
    started: c_int,
) -> c_int {
    // SAFETY: the caller's contract above.
    let (slot, arg) = unsafe { (&*slot, &*arg) };
    to_c(crate::run::check_run(&mut Kernel, slot, arg, started != 0))
}

/// A Linux guest's boot parameters for a guest of `ram` bytes. 0 or
/// -EINVAL, the first bad field logged.
///
/// # Safety
/// `boot` points to boot parameters in kernel memory.
#[no_mangle]
pub unsafe extern "C" fn colinux_core_boot_check(
    boot: *const cooperative_boot_params,
    ram: u64,
) -> c_int {
    // SAFETY: the caller's contract above.
    let boot = unsafe { &*boot };
    to_c(crate::run::check_boot(&mut Kernel, ram, boot))
}

/// The file's guest has started or ended (`COOPERATIVE_GUEST_STATE_*`;
/// only forward moves are taken).
///
/// # Safety
/// As for [`colinux_core_create`].
#[no_mangle]
pub unsafe extern "C" fn colinux_core_set_state(slot: *mut Slot, state: u32) {
    // SAFETY: the caller's contract above.
    let slot = unsafe { &mut *slot };
    crate::run::set_state(slot, state);
}

/// The host frame of every guest-physical page of the file's guest:
/// `*frames` gets the table (valid until DESTROY), `*count` its length.
/// 0, or -EINVAL when there is no guest. The passage builds the guest's
/// page tables from it.
///
/// # Safety
/// `slot` as for [`colinux_core_create`]; `frames` and `count` writable.
#[no_mangle]
pub unsafe extern "C" fn colinux_core_frames(
    slot: *const Slot,
    frames: *mut *const u64,
    count: *mut u64,
) -> c_int {
    // SAFETY: the caller's contract above.
    let slot = unsafe { &*slot };
    match slot.guest() {
        Some(g) => {
            let table = g.frames();
            // SAFETY: the caller's contract above.
            unsafe {
                *frames = table.as_ptr();
                *count = table.len() as u64;
            }
            0
        }
        None => crate::host::Errno::EINVAL.to_c(),
    }
}

fn id_to_c(r: Result<u32, Errno>) -> i64 {
    match r {
        Ok(id) => i64::from(id),
        Err(e) => i64::from(e.to_c()),
    }
}

/// IOEVENTFD's argument for the file's guest. The guest's id (>= 0) or
/// -errno (EPROTO, EINVAL, EBADF), the reason logged. The shim then checks
/// the descriptor and the bindings.
///
/// # Safety
/// `slot` as for [`colinux_core_create`]; `arg` points to an IOEVENTFD
/// argument in kernel memory.
#[no_mangle]
pub unsafe extern "C" fn colinux_core_ioeventfd_check(
    slot: *const Slot,
    arg: *const cooperative_ioctl_ioeventfd,
) -> i64 {
    // SAFETY: the caller's contract above.
    let (slot, arg) = unsafe { (&*slot, &*arg) };
    id_to_c(crate::events::check_ioeventfd(&mut Kernel, slot, arg))
}

/// IRQFD's argument for the file's guest: as
/// [`colinux_core_ioeventfd_check`].
///
/// # Safety
/// `slot` as for [`colinux_core_create`]; `arg` points to an IRQFD argument
/// in kernel memory.
#[no_mangle]
pub unsafe extern "C" fn colinux_core_irqfd_check(
    slot: *const Slot,
    arg: *const cooperative_ioctl_irqfd,
) -> i64 {
    // SAFETY: the caller's contract above.
    let (slot, arg) = unsafe { (&*slot, &*arg) };
    id_to_c(crate::events::check_irqfd(&mut Kernel, slot, arg))
}

/// `mmap()` of guest RAM: guest `guest` with `guest_pages` pages (0: no
/// guest), the mapping's first page `pgoff` and length `pages`, `shared`
/// nonzero for MAP_SHARED. 0 or -errno (ENODEV, EINVAL), the reason logged.
/// Takes no lock: the shim calls it from its mmap handler, which must not
/// wait for the file's mutex.
#[no_mangle]
pub extern "C" fn colinux_core_mmap_check(
    guest: u32,
    guest_pages: u64,
    pgoff: u64,
    pages: u64,
    shared: c_int,
) -> c_int {
    to_c(crate::events::check_mmap(
        &mut Kernel,
        guest,
        guest_pages,
        pgoff,
        pages,
        shared != 0,
    ))
}
