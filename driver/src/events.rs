//! What the daemon hands the device back-end interfaces, checked before the
//! shim acts on it: the IOEVENTFD and IRQFD ioctls and `mmap()` of guest
//! RAM.
//!
//! The shim (`colinux_shim.c`) owns the eventfds, the wait-queue entries and
//! the mapping; it asks the core whether an argument is acceptable first,
//! and the core logs every refusal with the field it is about. The eventfd
//! descriptor itself is checked by the shim (is it open, is it an eventfd),
//! and so is what depends on the bindings already made (EEXIST, ENOENT,
//! ENOSPC).

use colinux_abi::{
    cooperative_ioctl_ioeventfd, cooperative_ioctl_irqfd, COOPERATIVE_ABI_VERSION,
    COOPERATIVE_EVENTFD_DEASSIGN, COOPERATIVE_EVENTFD_FLAGS, COOPERATIVE_IRQFD_FLAGS,
    COOPERATIVE_IRQFD_ISR, COOPERATIVE_NR_IRQS, COOPERATIVE_VIRTIO_MAX_DEVICES,
    COOPERATIVE_VIRTIO_MAX_QUEUES,
};

use crate::guest::{Slot, NO_GUEST};
use crate::host::{Errno, Host, Level};
use crate::msg::Msg;

fn refuse<H: Host>(host: &mut H, guest: u32, ioctl: &str, what: &str, e: Errno) -> Errno {
    host.log(
        Level::Warn,
        guest,
        Msg::new().s(ioctl).s(" refused: ").s(what).as_bytes(),
    );
    e
}

/// What an eventfd ioctl's argument holds besides its indices.
struct Common {
    abi_version: u32,
    flags: u32,
    /// The flags this ioctl knows.
    known_flags: u32,
    reserved_zero: bool,
    /// The descriptor, when the request needs one.
    fd: Option<i32>,
}

/// The part both eventfd ioctls share: version, guest, flags, reserved
/// fields, a descriptor when one is needed. The guest's id, for the logs.
fn check_common<H: Host>(host: &mut H, slot: &Slot, ioctl: &str, a: Common) -> Result<u32, Errno> {
    let Common {
        abi_version,
        flags,
        known_flags,
        reserved_zero,
        fd,
    } = a;
    if abi_version != COOPERATIVE_ABI_VERSION {
        host.log(
            Level::Warn,
            NO_GUEST,
            Msg::new()
                .s(ioctl)
                .s(": the daemon speaks ABI version ")
                .u(abi_version.into())
                .s(", this driver ")
                .u(COOPERATIVE_ABI_VERSION.into())
                .as_bytes(),
        );
        return Err(Errno::EPROTO);
    }
    let Some(g) = slot.guest() else {
        return Err(refuse(
            host,
            NO_GUEST,
            ioctl,
            "no guest on this file",
            Errno::EINVAL,
        ));
    };
    let id = g.id();
    if flags & !known_flags != 0 || !reserved_zero {
        return Err(refuse(
            host,
            id,
            ioctl,
            "unknown flags or nonzero reserved fields",
            Errno::EINVAL,
        ));
    }
    if fd.is_some_and(|fd| fd < 0) {
        return Err(refuse(host, id, ioctl, "fd is negative", Errno::EBADF));
    }
    Ok(id)
}

/// IOEVENTFD's argument for the slot's guest: `EPROTO` for another ABI
/// version, `EINVAL` without a guest, for unknown flags, nonzero reserved
/// fields or an index out of range, `EBADF` for a negative descriptor to
/// bind (DEASSIGN ignores `fd`). Returns the guest's id.
pub fn check_ioeventfd<H: Host>(
    host: &mut H,
    slot: &Slot,
    arg: &cooperative_ioctl_ioeventfd,
) -> Result<u32, Errno> {
    let id = check_common(
        host,
        slot,
        "IOEVENTFD",
        Common {
            abi_version: arg.abi_version,
            flags: arg.flags,
            known_flags: COOPERATIVE_EVENTFD_FLAGS,
            reserved_zero: arg.reserved0 == 0 && arg.reserved.iter().all(|&r| r == 0),
            // Removing a queue's binding names the queue, not the eventfd.
            fd: (arg.flags & COOPERATIVE_EVENTFD_DEASSIGN == 0).then_some(arg.fd),
        },
    )?;
    if arg.device >= COOPERATIVE_VIRTIO_MAX_DEVICES {
        host.log(
            Level::Warn,
            id,
            Msg::new()
                .s("IOEVENTFD refused: device ")
                .u(arg.device.into())
                .s(" is not below COOPERATIVE_VIRTIO_MAX_DEVICES (")
                .u(COOPERATIVE_VIRTIO_MAX_DEVICES.into())
                .s(")")
                .as_bytes(),
        );
        return Err(Errno::EINVAL);
    }
    if arg.queue >= COOPERATIVE_VIRTIO_MAX_QUEUES {
        host.log(
            Level::Warn,
            id,
            Msg::new()
                .s("IOEVENTFD refused: queue ")
                .u(arg.queue.into())
                .s(" is not below COOPERATIVE_VIRTIO_MAX_QUEUES (")
                .u(COOPERATIVE_VIRTIO_MAX_QUEUES.into())
                .s(")")
                .as_bytes(),
        );
        return Err(Errno::EINVAL);
    }
    Ok(id)
}

/// IRQFD's argument for the slot's guest: as [`check_ioeventfd`], with the
/// line below `COOPERATIVE_NR_IRQS`, `fd` needed for DEASSIGN too, and
/// with `COOPERATIVE_IRQFD_ISR` (binding only) an `isr` word 4-byte
/// aligned inside guest RAM and nonzero `isr_bits`; without it both zero.
/// Returns the guest's id.
pub fn check_irqfd<H: Host>(
    host: &mut H,
    slot: &Slot,
    arg: &cooperative_ioctl_irqfd,
) -> Result<u32, Errno> {
    let id = check_common(
        host,
        slot,
        "IRQFD",
        Common {
            abi_version: arg.abi_version,
            flags: arg.flags,
            known_flags: COOPERATIVE_IRQFD_FLAGS,
            reserved_zero: arg.reserved == 0,
            // Removing a binding names the eventfd too.
            fd: Some(arg.fd),
        },
    )?;
    if arg.line >= COOPERATIVE_NR_IRQS {
        host.log(
            Level::Warn,
            id,
            Msg::new()
                .s("IRQFD refused: line ")
                .u(arg.line.into())
                .s(" is not below COOPERATIVE_NR_IRQS (")
                .u(COOPERATIVE_NR_IRQS.into())
                .s(")")
                .as_bytes(),
        );
        return Err(Errno::EINVAL);
    }
    if arg.flags & COOPERATIVE_IRQFD_ISR == 0 {
        if arg.isr != 0 || arg.isr_bits != 0 {
            return Err(refuse(
                host,
                id,
                "IRQFD",
                "isr or isr_bits set without COOPERATIVE_IRQFD_ISR",
                Errno::EINVAL,
            ));
        }
        return Ok(id);
    }
    if arg.flags & COOPERATIVE_EVENTFD_DEASSIGN != 0 {
        return Err(refuse(
            host,
            id,
            "IRQFD",
            "COOPERATIVE_IRQFD_ISR with DEASSIGN (a binding is named by fd and line)",
            Errno::EINVAL,
        ));
    }
    if arg.isr_bits == 0 {
        return Err(refuse(
            host,
            id,
            "IRQFD",
            "COOPERATIVE_IRQFD_ISR with no isr_bits",
            Errno::EINVAL,
        ));
    }
    let ram = slot.guest().map_or(0, |g| g.memory_size());
    if !arg.isr.is_multiple_of(4) || arg.isr.checked_add(4).is_none_or(|end| end > ram) {
        host.log(
            Level::Warn,
            id,
            Msg::new()
                .s("IRQFD refused: the isr word at guest-physical ")
                .x(arg.isr)
                .s(" is not 4-byte aligned inside guest RAM (")
                .u(ram)
                .s(" bytes)")
                .as_bytes(),
        );
        return Err(Errno::EINVAL);
    }
    Ok(id)
}

/// `mmap()` of guest RAM: `guest_pages` pages of RAM (0: the file has no
/// guest), the mapping's first page `pgoff` (the file offset in pages: the
/// guest pfn), its length `pages`, `shared`: `MAP_SHARED`. `ENODEV` without
/// a guest, `EINVAL` for a private mapping or a range outside guest RAM;
/// each logged (about `guest`).
pub fn check_mmap<H: Host>(
    host: &mut H,
    guest: u32,
    guest_pages: u64,
    pgoff: u64,
    pages: u64,
    shared: bool,
) -> Result<(), Errno> {
    if guest_pages == 0 {
        return Err(refuse(
            host,
            NO_GUEST,
            "mmap",
            "no guest on this file (CREATE first)",
            Errno::ENODEV,
        ));
    }
    if !shared {
        return Err(refuse(
            host,
            guest,
            "mmap",
            "guest RAM is mapped MAP_SHARED only",
            Errno::EINVAL,
        ));
    }
    let end = pgoff.checked_add(pages);
    if pages == 0 || end.is_none_or(|e| e > guest_pages) {
        host.log(
            Level::Warn,
            guest,
            Msg::new()
                .s("mmap refused: pages ")
                .u(pgoff)
                .s("+")
                .u(pages)
                .s(" are not inside guest RAM (")
                .u(guest_pages)
                .s(" pages)")
                .as_bytes(),
        );
        return Err(Errno::EINVAL);
    }
    Ok(())
}

// Tested with the guest logic's fake kernel, in guest/tests.rs.
