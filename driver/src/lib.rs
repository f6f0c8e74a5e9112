//! The `no_std` Rust core of the colinux host driver.
//!
//! It is linked into the Linux kernel module `colinux.ko` (built by Kbuild
//! from `driver/kbuild/`) next to a thin C shim that owns every access to
//! kernel structures: the character device, `copy_from_user`, the page
//! allocator, `printk`. The core owns the logic: validating the ioctl
//! arguments, the per-guest state (guest RAM as a table of host page frames),
//! its accounting, splitting a LOAD into per-page copies, and teardown.
//!
//! - [`host`]: what the core needs from the kernel, as a trait ([`host::Host`]);
//!   the kernel module implements it with the shim's `colinux_shim_*`
//!   functions, the unit tests with a fake.
//! - [`guest`]: the guest and the ioctl logic, generic over the host.
//! - [`msg`]: log messages without `core::fmt` (no indirect calls).
//! - [`run`]: the checks of what the daemon hands RUN, and the guest's
//!   state from its first RUN to its end.
//! - [`events`]: the checks of what the daemon hands the device back-end
//!   interfaces (IOEVENTFD, IRQFD, `mmap()` of guest RAM).
//! - `ffi` (not in unit tests): the `extern "C"` functions the shim calls
//!   (`colinux_core_*`) and the shim functions the core calls.
//!
//! The interface with the shim is declared for C in
//! `driver/kbuild/colinux_core.h`; keep the two in step.
#![cfg_attr(not(test), no_std)]

pub mod events;
pub mod guest;
pub mod host;
pub mod msg;
pub mod run;

#[cfg(not(test))]
mod ffi;

/// A Rust panic in the kernel is a bug in the core: the code is written not
/// to panic (no indexing, no unchecked arithmetic on inputs), and
/// `cargo xtask build-driver` reports when the built object can reach this
/// handler at all. If it ever runs, the shim reports it and stops the
/// calling task.
#[cfg(all(not(test), target_os = "none"))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    ffi::panic()
}
