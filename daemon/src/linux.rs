//! Booting a Linux guest (`--boot`): where the kernel, the initrd and the
//! driver's translation tables go in guest RAM, the boot parameters, and the
//! run loop that serves the guest's console.
//!
//! Guest-physical layout:
//!
//! ```text
//! 0 .. kernel_end                 the kernel's PT_LOAD segments (p_paddr)
//! kernel_end .. +initrd           the initrd, page aligned (--initrd)
//! .. +virtio table                the virtio devices' descriptors, page
//!                                 aligned (colinux_devices::virtio)
//! ... free RAM ...
//! memory - tables .. memory       p2m and m2p, written by the driver
//! ```

use std::path::Path;

use anyhow::{bail, Context, Result};
use colinux_abi as abi;

use crate::driver::Driver;
use crate::elf::GuestImage;
use crate::lifecycle::End;
use crate::runloop::{self, Kind, Services};
use crate::signals;

const PAGE: u64 = abi::COOPERATIVE_PAGE_SIZE as u64;
/// The guest's entry point.
pub const ENTRY_SYMBOL: &str = "cooperative_start";
/// Its initial stack top, the end of init_task's stack: named
/// `__end_init_task` in 6.1 and `__end_init_stack` in 6.12 (the first
/// found is used).
pub const STACK_SYMBOLS: &[&str] = &["__end_init_task", "__end_init_stack"];

/// Bytes at the top of RAM the driver takes for the p2m and m2p tables of
/// a guest with `memory` bytes of RAM (as the driver computes them).
pub fn tables_size(memory: u64) -> u64 {
    let pages = memory / PAGE;
    let entries = (2 * pages).next_power_of_two();
    let m2p_offset = (pages * 4).next_multiple_of(8);
    (m2p_offset + entries * std::mem::size_of::<abi::cooperative_m2p_entry>() as u64)
        .next_multiple_of(PAGE)
}

/// Where things go in guest RAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Physical end of the kernel, page aligned.
    pub kernel_end: u64,
    /// Guest-physical start of the initrd (0: none).
    pub initrd_address: u64,
    pub initrd_size: u64,
    /// Guest-physical start of the virtio table (0: no devices).
    pub virtio_address: u64,
    /// Devices in it.
    pub virtio_count: u32,
    /// Where the driver's tables will start.
    pub tables_address: u64,
}

/// A Linux guest's RAM must fit what its kernel can map (no HIGHMEM yet).
pub fn check_memory(memory: u64) -> Result<()> {
    let max = u64::from(abi::COOPERATIVE_MAX_LINUX_MEMORY_SIZE);
    if memory > max {
        bail!(
            "{} MiB of guest RAM is more than the i386 guest kernel can map: it has no HIGHMEM, \
             so a Linux guest gets at most {} MiB (--mem {})",
            memory >> 20,
            max >> 20,
            max >> 20
        );
    }
    Ok(())
}

/// Place the initrd after the kernel, the virtio table of `devices`
/// devices after it, and check that everything fits.
pub fn layout(
    memory: u64,
    kernel_physical_end: u64,
    initrd_size: u64,
    devices: usize,
) -> Result<Layout> {
    let kernel_end = kernel_physical_end.next_multiple_of(PAGE);
    let initrd_address = if initrd_size > 0 { kernel_end } else { 0 };
    if devices > abi::COOPERATIVE_VIRTIO_MAX_DEVICES as usize {
        bail!(
            "{devices} virtio devices: at most {}",
            abi::COOPERATIVE_VIRTIO_MAX_DEVICES
        );
    }
    let virtio_address = if devices > 0 {
        (kernel_end + initrd_size).next_multiple_of(PAGE)
    } else {
        0
    };
    let used = (kernel_end + initrd_size).next_multiple_of(PAGE)
        + colinux_devices::virtio::table_size(devices);
    let tables = tables_size(memory);
    let need = used + tables;
    if need > memory {
        bail!(
            "{} MiB of guest RAM is too small: the kernel ends at {:#x}{}, and the driver's translation tables take {} KiB at the top; use --mem {} or more",
            memory >> 20,
            kernel_end,
            if initrd_size > 0 {
                format!(", the initrd ({initrd_size} bytes) follows it")
            } else {
                String::new()
            },
            tables >> 10,
            // Tables grow with RAM: leave room for them at the larger size.
            (need + tables_size(need * 2)).div_ceil(1 << 20),
        );
    }
    Ok(Layout {
        kernel_end,
        initrd_address,
        initrd_size,
        virtio_address,
        virtio_count: devices as u32,
        tables_address: memory - tables,
    })
}

/// The guest command line, as the boot parameters carry it.
pub fn command_line(words: &[String]) -> Result<[u8; abi::COOPERATIVE_CMDLINE_SIZE as usize]> {
    let line = words.join(" ");
    let mut out = [0u8; abi::COOPERATIVE_CMDLINE_SIZE as usize];
    if line.len() >= out.len() {
        bail!(
            "the guest command line is {} bytes, more than {}: {line:?}",
            line.len(),
            out.len() - 1
        );
    }
    if line.as_bytes().contains(&0) {
        bail!("the guest command line contains a NUL byte");
    }
    out[..line.len()].copy_from_slice(line.as_bytes());
    Ok(out)
}

/// The guest's entry point and stack from its symbols.
pub fn entry_and_stack(image: &GuestImage) -> Result<(u32, u32)> {
    let get = |sym: &str, why: &str| {
        image.symbols.get(sym).copied().with_context(|| {
            format!("the kernel has no symbol {sym} ({why}): not a colinux guest kernel (CONFIG_COOPERATIVE)?")
        })
    };
    let stack = STACK_SYMBOLS
        .iter()
        .find_map(|s| image.symbols.get(*s).copied())
        .with_context(|| {
            format!(
                "the kernel has none of the symbols {} (the top of its initial stack): not a colinux guest kernel?",
                STACK_SYMBOLS.join(", ")
            )
        })?;
    Ok((get(ENTRY_SYMBOL, "the guest's entry point")?, stack))
}

/// Everything `--boot` needs, checked before the driver is touched.
#[derive(Debug)]
pub struct BootPlan {
    pub entry: u32,
    pub stack: u32,
    pub layout: Layout,
    pub initrd: Vec<u8>,
    pub params: abi::cooperative_boot_params,
}

impl BootPlan {
    pub fn new(
        image: &GuestImage,
        memory: u64,
        initrd: Option<&Path>,
        words: &[String],
        virtio_devices: usize,
    ) -> Result<BootPlan> {
        check_memory(memory)?;
        let (entry, stack) = entry_and_stack(image)?;
        let initrd = match initrd {
            Some(p) => {
                let data = std::fs::read(p)
                    .with_context(|| format!("cannot read the initrd {}", p.display()))?;
                if data.is_empty() {
                    bail!("the initrd {} is empty", p.display());
                }
                data
            }
            None => Vec::new(),
        };
        let layout = layout(
            memory,
            image.physical_end(),
            initrd.len() as u64,
            virtio_devices,
        )?;
        let params = abi::cooperative_boot_params {
            magic: abi::COOPERATIVE_ABI_MAGIC,
            abi_version: abi::COOPERATIVE_ABI_VERSION,
            memory_size: memory,
            kernel_end: layout.kernel_end,
            initrd_address: layout.initrd_address,
            initrd_size: layout.initrd_size,
            command_line: command_line(words)?,
            virtio_address: layout.virtio_address,
            virtio_count: layout.virtio_count,
            ..Default::default()
        };
        Ok(BootPlan {
            entry,
            stack,
            layout,
            initrd,
            params,
        })
    }
}

/// Load the initrd and boot the guest; serve it until it ends
/// ([`crate::runloop`]); how it ended.
pub fn boot(drv: &Driver, plan: &BootPlan, svc: Services<'_>) -> Result<End> {
    if !plan.initrd.is_empty() {
        drv.load(plan.layout.initrd_address, &plan.initrd, 0)
            .context("loading the initrd")?;
    }
    signals::catch_stop_signals()?;
    let arg = abi::cooperative_ioctl_run {
        entry: plan.entry.into(),
        stack: plan.stack.into(),
        boot: &plan.params as *const abi::cooperative_boot_params as u64,
        ..Default::default()
    };
    runloop::run(drv, arg, Kind::Linux, svc)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_linux_guest_larger_than_its_lowmem_is_refused_with_the_limit() {
        let max = u64::from(abi::COOPERATIVE_MAX_LINUX_MEMORY_SIZE);
        assert!(super::check_memory(max).is_ok());
        let err = super::check_memory(1500 << 20).unwrap_err().to_string();
        assert!(
            err.contains("1500 MiB") && err.contains(&format!("at most {} MiB", max >> 20)),
            "{err}"
        );
    }

    #[test]
    fn tables_match_the_driver_layout() {
        // 256 MiB: 65536 pages, p2m 256 KiB, m2p 131072 slots = 1 MiB.
        assert_eq!(tables_size(256 << 20), (256 << 10) + (1 << 20));
        // 8 MiB: 2048 pages, p2m 8 KiB, m2p 4096 slots = 32 KiB.
        assert_eq!(tables_size(8 << 20), (8 << 10) + (32 << 10));
        // A size that is not a power of two rounds the slots up.
        assert_eq!(tables_size(3 << 20), 3 * 1024 + 2048 * 8 + 1024);
    }

    #[test]
    fn initrd_follows_the_kernel_page_aligned() {
        let l = layout(64 << 20, 0x0123_4567, 1000, 0).unwrap();
        assert_eq!(l.kernel_end, 0x0123_5000);
        assert_eq!(l.initrd_address, 0x0123_5000);
        assert_eq!(l.initrd_size, 1000);
        assert_eq!(l.tables_address, (64 << 20) - tables_size(64 << 20));
        let none = layout(64 << 20, 0x0123_4567, 0, 0).unwrap();
        assert_eq!(none.initrd_address, 0);
        assert_eq!((l.virtio_address, l.virtio_count), (0, 0));
        // The virtio table follows the initrd, page aligned.
        let v = layout(64 << 20, 0x0123_4567, 1000, 9).unwrap();
        assert_eq!((v.virtio_address, v.virtio_count), (0x0123_6000, 9));
        let v = layout(64 << 20, 0x0123_4567, 0, 1).unwrap();
        assert_eq!(v.virtio_address, 0x0123_5000);
        assert!(layout(64 << 20, 0x0123_4567, 0, 65).is_err());
    }

    #[test]
    fn too_little_ram_is_refused_with_a_size_that_fits() {
        let err = layout(16 << 20, 10 << 20, 6 << 20, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("too small"), "{err}");
        let mib: u64 = err
            .split("--mem ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        assert!(layout(mib << 20, 10 << 20, 6 << 20, 0).is_ok(), "{err}");
    }

    #[test]
    fn command_line_limits() {
        let ok = command_line(&["console=hvc0".into(), "ro".into()]).unwrap();
        assert_eq!(&ok[..15], b"console=hvc0 ro");
        assert!(ok[15..].iter().all(|&b| b == 0));
        assert!(command_line(&["x".repeat(255)]).is_ok());
        assert!(command_line(&["x".repeat(256)]).is_err());
        assert!(command_line(&[]).unwrap().iter().all(|&b| b == 0));
    }
}
