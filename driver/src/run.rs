//! What the daemon hands RUN, checked before the passage acts on it.
//!
//! The C side (`colinux_passage.c`) owns the passage, the guest's page tables
//! and the switch; it asks the core whether a RUN argument and a Linux
//! guest's boot parameters are acceptable, and tells it when the guest starts
//! and ends (the state INFO reports; LOAD refuses to rewrite a guest that has
//! run). Every refusal is logged with the field it is about.

use colinux_abi::{
    cooperative_boot_params, cooperative_ioctl_run, COOPERATIVE_ABI_MAGIC, COOPERATIVE_ABI_VERSION,
    COOPERATIVE_GUEST_STATE_CREATED, COOPERATIVE_GUEST_STATE_DEAD, COOPERATIVE_GUEST_STATE_RUNNING,
    COOPERATIVE_KERNEL_VA_OFFSET, COOPERATIVE_MAX_LINUX_MEMORY_SIZE, COOPERATIVE_PAGE_SIZE,
    COOPERATIVE_PASSAGE_GUEST_VA, COOPERATIVE_RUN_FLAGS, COOPERATIVE_VIRTIO_DEVICE_SIZE,
    COOPERATIVE_VIRTIO_MAX_DEVICES,
};

use crate::guest::{Slot, NO_GUEST};
use crate::host::{Errno, Host, Level};
use crate::msg::Msg;

/// Guest virtual address of guest-physical 0.
const VA_OFFSET: u64 = COOPERATIVE_KERNEL_VA_OFFSET as u64;
/// The initial page tables map guest RAM up to the passage's pages.
const VA_LIMIT: u64 = COOPERATIVE_PASSAGE_GUEST_VA as u64;
/// The words the passage writes below the first stack (its call frame).
const START_FRAME: u64 = 11 * 4;

fn refuse<H: Host>(host: &mut H, guest: u32, what: &str) -> Errno {
    host.log(
        Level::Warn,
        guest,
        Msg::new().s("RUN refused: ").s(what).as_bytes(),
    );
    Errno::EINVAL
}

/// RUN's argument, for the slot's guest. `started`: an earlier RUN has
/// started it. `EPROTO` for another ABI version, `ESRCH` for a guest that
/// ended (it cannot run again), `EINVAL` for the rest, each logged.
pub fn check_run<H: Host>(
    host: &mut H,
    slot: &Slot,
    arg: &cooperative_ioctl_run,
    started: bool,
) -> Result<(), Errno> {
    if arg.abi_version != COOPERATIVE_ABI_VERSION {
        host.log(
            Level::Warn,
            NO_GUEST,
            Msg::new()
                .s("RUN: the daemon speaks ABI version ")
                .u(arg.abi_version.into())
                .s(", this driver ")
                .u(COOPERATIVE_ABI_VERSION.into())
                .as_bytes(),
        );
        return Err(Errno::EPROTO);
    }
    let Some(g) = slot.guest() else {
        return Err(refuse(host, NO_GUEST, "no guest on this file"));
    };
    let id = g.id();
    if arg.flags & !COOPERATIVE_RUN_FLAGS != 0 || arg.reserved.iter().any(|&r| r != 0) {
        return Err(refuse(host, id, "unknown flags or nonzero reserved fields"));
    }
    if g.state() == COOPERATIVE_GUEST_STATE_DEAD {
        host.log(
            Level::Info,
            id,
            Msg::new().s("RUN refused: the guest has ended").as_bytes(),
        );
        return Err(Errno::ESRCH);
    }
    if started {
        if arg.entry != 0 || arg.stack != 0 || arg.boot != 0 {
            return Err(refuse(
                host,
                id,
                "entry, stack and boot are for the first RUN only",
            ));
        }
        return Ok(());
    }
    let limit = VA_OFFSET + g.memory_size().min(VA_LIMIT - VA_OFFSET);
    if !(VA_OFFSET..limit).contains(&arg.entry) {
        host.log(
            Level::Warn,
            id,
            Msg::new()
                .s("RUN refused: entry ")
                .x(arg.entry)
                .s(" is not in the guest's mapped RAM ")
                .x(VA_OFFSET)
                .s("..")
                .x(limit)
                .as_bytes(),
        );
        return Err(Errno::EINVAL);
    }
    if arg.stack < VA_OFFSET + START_FRAME || arg.stack > limit || arg.stack & 3 != 0 {
        host.log(
            Level::Warn,
            id,
            Msg::new()
                .s("RUN refused: stack ")
                .x(arg.stack)
                .s(" is not a 4-byte aligned address in the guest's mapped RAM ")
                .x(VA_OFFSET + START_FRAME)
                .s("..=")
                .x(limit)
                .as_bytes(),
        );
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// The boot parameters of a Linux guest with `ram` bytes of RAM, as the
/// daemon hands them to its first RUN; the fields the driver fills must be
/// zero. The first bad field is logged.
pub fn check_boot<H: Host>(
    host: &mut H,
    ram: u64,
    b: &cooperative_boot_params,
) -> Result<(), Errno> {
    let nul = b.command_line.iter().position(|&c| c == 0);
    let bad = if b.magic != COOPERATIVE_ABI_MAGIC {
        Some("magic is not COOPERATIVE_ABI_MAGIC")
    } else if b.abi_version != COOPERATIVE_ABI_VERSION {
        Some("abi_version is not the driver's")
    } else if b.memory_size != ram {
        Some("memory_size is not the guest's RAM size")
    } else if ram > u64::from(COOPERATIVE_MAX_LINUX_MEMORY_SIZE) {
        Some("memory_size: more than an i386 guest without HIGHMEM maps (COOPERATIVE_MAX_LINUX_MEMORY_SIZE)")
    } else if b.kernel_end > ram {
        Some("kernel_end lies beyond guest RAM")
    } else if b.initrd_address == 0 && b.initrd_size != 0 {
        Some("initrd_size without initrd_address")
    } else if b.initrd_address != 0
        && (b.initrd_address < b.kernel_end
            || b.initrd_address > ram
            || b.initrd_size > ram - b.initrd_address)
    {
        Some("initrd_address/initrd_size: not between kernel_end and the end of RAM")
    } else if let Some(what) = check_virtio_table(ram, b) {
        Some(what)
    } else if b.flags != 0 {
        Some("flags: none are defined")
    } else if b.cpu_khz != 0
        || b.p2m_address != 0
        || b.m2p_address != 0
        || b.m2p_entries != 0
        || b.tables_pages != 0
        || b.host_time_ns != 0
    {
        Some("cpu_khz, p2m/m2p, tables_pages, host_time_ns: the driver fills them, they must be zero")
    } else {
        match nul {
            None => Some("command_line is not NUL-terminated"),
            Some(n) if b.command_line.iter().skip(n).any(|&c| c != 0) => {
                Some("command_line: bytes after its NUL must be zero")
            }
            Some(_) => None,
        }
    };
    match bad {
        None => Ok(()),
        Some(what) => {
            host.log(
                Level::Warn,
                NO_GUEST,
                Msg::new()
                    .s("RUN: bad boot parameters: ")
                    .s(what)
                    .as_bytes(),
            );
            Err(Errno::EINVAL)
        }
    }
}

/// Bytes of a virtio table of `count` devices.
pub fn virtio_table_size(count: u32) -> u64 {
    u64::from(count) * u64::from(COOPERATIVE_VIRTIO_DEVICE_SIZE)
}

/// The virtio table of the boot parameters: none (address and count 0), or
/// page aligned inside guest RAM above the kernel and clear of the initrd.
/// (The translation tables, placed later at the top of RAM, are checked
/// against it when they are built.)
fn check_virtio_table(ram: u64, b: &cooperative_boot_params) -> Option<&'static str> {
    let (at, count) = (b.virtio_address, b.virtio_count);
    let end = at.checked_add(virtio_table_size(count));
    if b.reserved0 != 0 {
        Some("reserved0 must be zero")
    } else if (at == 0) != (count == 0) {
        Some("virtio_address and virtio_count: both zero or neither")
    } else if count == 0 {
        None
    } else if count > COOPERATIVE_VIRTIO_MAX_DEVICES {
        Some("virtio_count: more than COOPERATIVE_VIRTIO_MAX_DEVICES")
    } else if at % u64::from(COOPERATIVE_PAGE_SIZE) != 0 {
        Some("virtio_address is not page aligned")
    } else if at < b.kernel_end || end.is_none_or(|e| e > ram) {
        Some("virtio table: not between kernel_end and the end of RAM")
    } else if b.initrd_address != 0
        && end.is_some_and(|e| e > b.initrd_address)
        && at < b.initrd_address + b.initrd_size
    {
        Some("virtio table overlaps the initrd")
    } else {
        None
    }
}

/// The guest has started (first RUN went through) or ended (it faulted or
/// terminated): what INFO reports, and LOAD is refused from then on.
/// Only forward: CREATED -> RUNNING -> DEAD.
pub fn set_state(slot: &mut Slot, state: u32) {
    if let Some(g) = slot.guest_mut() {
        let now = g.state();
        let forward = matches!(
            (now, state),
            (
                COOPERATIVE_GUEST_STATE_CREATED,
                COOPERATIVE_GUEST_STATE_RUNNING
            ) | (
                COOPERATIVE_GUEST_STATE_CREATED,
                COOPERATIVE_GUEST_STATE_DEAD
            ) | (
                COOPERATIVE_GUEST_STATE_RUNNING,
                COOPERATIVE_GUEST_STATE_DEAD
            )
        );
        if forward {
            g.set_state(state);
        }
    }
}

// Tested with the guest logic's fake kernel, in guest/tests.rs.
