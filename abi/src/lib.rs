//! The colinux ABI, for Rust: guest↔host structures and constants and the
//! driver↔daemon ioctls.
//!
//! Two C headers define them, each in one place: the guest↔host ABI is
//! `include/uapi/linux/cooperative.h` in the guest patch series
//! (`linux-patches/`), the driver↔daemon ioctls are the driver's
//! `driver/include/colinux/ioctl.h`. [`generated`] is bindgen's output for
//! both, written by `cargo xtask codegen` and committed. CI fails when it
//! is stale. This crate adds what bindgen cannot express (the ioctl
//! numbers, which C builds with function-like macros) and checks, at compile
//! time, that the layouts match the sizes the header exports.
#![no_std]

#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    missing_debug_implementations,
    clippy::all,
    clippy::undocumented_unsafe_blocks
)]
pub mod generated;

pub use generated::*;

/// Linux ioctl numbers, as `<asm-generic/ioctl.h>` builds them on x86.
pub mod ioctl {
    use super::*;

    const NRBITS: u32 = 8;
    const TYPEBITS: u32 = 8;
    const SIZEBITS: u32 = 14;
    const NRSHIFT: u32 = 0;
    const TYPESHIFT: u32 = NRSHIFT + NRBITS;
    const SIZESHIFT: u32 = TYPESHIFT + TYPEBITS;
    const DIRSHIFT: u32 = SIZESHIFT + SIZEBITS;
    /// `_IOC_NONE`, `_IOC_WRITE`, `_IOC_READ`.
    pub const NONE: u32 = 0;
    pub const WRITE: u32 = 1;
    pub const READ: u32 = 2;

    /// `_IOC(dir, type, nr, size)`.
    pub const fn ioc(dir: u32, ty: u32, nr: u32, size: usize) -> u32 {
        assert!(size < (1 << SIZEBITS), "ioctl argument too large");
        (dir << DIRSHIFT) | ((size as u32) << SIZESHIFT) | (ty << TYPESHIFT) | (nr << NRSHIFT)
    }

    /// `COOPERATIVE_IOCTL_CREATE`.
    pub const CREATE: u32 = ioc(
        WRITE,
        COOPERATIVE_IOCTL_TYPE,
        COOPERATIVE_IOCTL_NR_CREATE,
        core::mem::size_of::<cooperative_ioctl_create>(),
    );
    /// `COOPERATIVE_IOCTL_LOAD`.
    pub const LOAD: u32 = ioc(
        WRITE,
        COOPERATIVE_IOCTL_TYPE,
        COOPERATIVE_IOCTL_NR_LOAD,
        core::mem::size_of::<cooperative_ioctl_load>(),
    );
    /// `COOPERATIVE_IOCTL_INFO`.
    pub const INFO: u32 = ioc(
        READ | WRITE,
        COOPERATIVE_IOCTL_TYPE,
        COOPERATIVE_IOCTL_NR_INFO,
        core::mem::size_of::<cooperative_ioctl_info>(),
    );
    /// `COOPERATIVE_IOCTL_RUN`.
    pub const RUN: u32 = ioc(
        READ | WRITE,
        COOPERATIVE_IOCTL_TYPE,
        COOPERATIVE_IOCTL_NR_RUN,
        core::mem::size_of::<cooperative_ioctl_run>(),
    );
    /// `COOPERATIVE_IOCTL_IOEVENTFD`.
    pub const IOEVENTFD: u32 = ioc(
        WRITE,
        COOPERATIVE_IOCTL_TYPE,
        COOPERATIVE_IOCTL_NR_IOEVENTFD,
        core::mem::size_of::<cooperative_ioctl_ioeventfd>(),
    );
    /// `COOPERATIVE_IOCTL_IRQFD`.
    pub const IRQFD: u32 = ioc(
        WRITE,
        COOPERATIVE_IOCTL_TYPE,
        COOPERATIVE_IOCTL_NR_IRQFD,
        core::mem::size_of::<cooperative_ioctl_irqfd>(),
    );
    /// `COOPERATIVE_IOCTL_DESTROY`.
    pub const DESTROY: u32 = ioc(
        NONE,
        COOPERATIVE_IOCTL_TYPE,
        COOPERATIVE_IOCTL_NR_DESTROY,
        0,
    );
}

// The header exports the sizes it was designed with; bindgen's own layout
// tests check every field offset against clang.
const _: () = {
    use core::mem::size_of;
    assert!(size_of::<cooperative_message>() == COOPERATIVE_MESSAGE_SIZE as usize);
    assert!(size_of::<cooperative_boot_params>() == COOPERATIVE_BOOT_PARAMS_SIZE as usize);
    assert!(size_of::<cooperative_vcpu_state>() == COOPERATIVE_VCPU_STATE_SIZE as usize);
    assert!(size_of::<cooperative_shared_state>() == COOPERATIVE_SHARED_STATE_SIZE as usize);
    assert!(size_of::<cooperative_ioctl_create>() == COOPERATIVE_IOCTL_CREATE_SIZE as usize);
    assert!(size_of::<cooperative_ioctl_load>() == COOPERATIVE_IOCTL_LOAD_SIZE as usize);
    assert!(size_of::<cooperative_ioctl_info>() == COOPERATIVE_IOCTL_INFO_SIZE as usize);
    assert!(size_of::<cooperative_ioctl_run>() == COOPERATIVE_IOCTL_RUN_SIZE as usize);
    assert!(size_of::<cooperative_ioctl_ioeventfd>() == COOPERATIVE_IOCTL_IOEVENTFD_SIZE as usize);
    assert!(size_of::<cooperative_ioctl_irqfd>() == COOPERATIVE_IOCTL_IRQFD_SIZE as usize);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_c_macros() {
        // Values computed by gcc from the header's _IOW/_IOWR/_IO macros
        // are checked in tests/tests/abi.rs, which compiles the header with
        // gcc; here only their structure.
        assert_eq!(ioctl::CREATE >> 30, ioctl::WRITE);
        assert_eq!((ioctl::LOAD >> 16) & 0x3fff, COOPERATIVE_IOCTL_LOAD_SIZE);
        assert_eq!(ioctl::INFO & 0xff, COOPERATIVE_IOCTL_NR_INFO);
        assert_eq!((ioctl::DESTROY >> 8) & 0xff, COOPERATIVE_IOCTL_TYPE);
        assert_eq!(ioctl::IOEVENTFD >> 30, ioctl::WRITE);
        assert_eq!(
            (ioctl::IOEVENTFD >> 16) & 0x3fff,
            COOPERATIVE_IOCTL_IOEVENTFD_SIZE
        );
        assert_eq!(ioctl::IRQFD & 0xff, COOPERATIVE_IOCTL_NR_IRQFD);
        assert_eq!((ioctl::IRQFD >> 16) & 0x3fff, COOPERATIVE_IOCTL_IRQFD_SIZE);
    }
}
