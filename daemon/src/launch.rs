//! Starting a configured Linux guest and serving it until it ends: what
//! `colinux run` does in the guest's own process (in the foreground, or
//! detached in the background).
//!
//! Everything that can be refused is checked before the driver allocates
//! anything: the configuration ([`crate::config`]), the name (the
//! registry's claim), the kernel image, the initrd and the layout, the
//! sockets. Then the guest is created and loaded (state `created`), boots
//! (`running`) and is served ([`crate::linux::boot`]) until it ends; its
//! directory goes with its process.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::config::{Defaults, GuestConfig};
use crate::control::Control;
use crate::driver::Driver;
use crate::elf::GuestImage;
use crate::lifecycle::{End, State};
use crate::linux::{self, BootPlan};
use crate::registry::{self, Record};
use crate::runloop::Services;
use colinux_devices::block::Disk;
use colinux_devices::cocon::{log as console_log, Cocon, ConsoleLog, ConsoleServer};
use colinux_devices::fs::Fs;
use colinux_devices::net::Net;
use colinux_devices::virtio::{map_guest_ram, Transport, VirtioDevice};

/// The least RAM a Linux guest is given, in MiB.
pub const MIN_MEMORY: u64 = 16;

/// The host's RAM in MiB (`MemTotal` of `/proc/meminfo`).
pub fn host_memory() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").context("cannot read /proc/meminfo")?;
    parse_mem_total(&text).context("/proc/meminfo has no MemTotal line")
}

fn parse_mem_total(text: &str) -> Option<u64> {
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb >> 10)
}

/// The defaults for a guest on this host: guest RAM is bounded by what the
/// i386 guest maps and by the driver's host-wide limit (half of the RAM
/// below 4 GiB, shared by all guests: what running guests hold is
/// subtracted).
pub fn defaults(run_dir: &Path) -> Result<Defaults> {
    let host = host_memory()?;
    let host_wide = host.min(4096) / 2;
    let used: u64 = registry::list(run_dir)
        .unwrap_or_default()
        .iter()
        .map(|r| r.memory)
        .sum();
    let linux_max = u64::from(colinux_abi::COOPERATIVE_MAX_LINUX_MEMORY_SIZE) >> 20;
    Ok(Defaults {
        host_memory: host,
        max_memory: linux_max.min(host_wide.saturating_sub(used)),
        min_memory: MIN_MEMORY,
        run_dir: run_dir.to_path_buf(),
    })
}

/// How to start a guest.
#[derive(Debug)]
pub struct Launch {
    pub config: GuestConfig,
    /// The host driver's device.
    pub device: PathBuf,
    pub run_dir: PathBuf,
    /// Told `started` once the guest runs (a detached `colinux run` waits
    /// for it).
    pub notify: Option<std::fs::File>,
    /// Running in the background: the console goes to `console.log` in the
    /// guest's directory (capped: [`colinux_devices::cocon::log`]), stderr
    /// to `daemon.log`, stdout to /dev/null.
    pub detached: bool,
}

/// Point `fd` at `path` (created or appended to, mode 0600).
fn redirect(fd: i32, path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: dup2 on two open descriptors; `f` stays valid for the call.
    if unsafe { libc::dup2(f.as_raw_fd(), fd) } < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot redirect to {}", path.display()));
    }
    Ok(())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The virtio transport of `devices`, its table written at `table` in
/// guest RAM, and every queue's kick and device's line bound in the host
/// driver (kicks then never leave the guest's run; lines are raised from
/// the back ends' threads).
pub fn virtio_devices(
    drv: &Driver,
    memory: u64,
    table: u64,
    devices: Vec<Box<dyn VirtioDevice>>,
) -> Result<Transport> {
    use std::os::fd::{AsRawFd, BorrowedFd};
    let mem = map_guest_ram(drv.file(), memory)?;
    let mut transport = Transport::new(mem, table, devices)?;
    transport.wake_on(
        drv.file()
            .try_clone()
            .context("cannot duplicate the driver's file")?,
    );
    for b in transport.bindings() {
        let name = &b.name;
        // SAFETY: the eventfds are the transport's and its devices', open
        // while they live, which is longer than these calls.
        let fd =
            |e: &vmm_sys_util::eventfd::EventFd| unsafe { BorrowedFd::borrow_raw(e.as_raw_fd()) };
        drv.irqfd(b.line, fd(b.irqfd))
            .with_context(|| format!("binding the interrupt of {name}"))?;
        for used in &b.used {
            drv.irqfd_with_isr(
                b.line,
                fd(used),
                b.isr,
                colinux_abi::COOPERATIVE_VIRTIO_ISR_QUEUE,
            )
            .with_context(|| format!("binding the back end's interrupt of {name}"))?;
        }
        for (queue, kick) in b.kicks.into_iter().enumerate() {
            drv.ioeventfd(b.index, queue as u32, fd(kick))
                .with_context(|| format!("binding queue {queue} of {name}"))?;
        }
    }
    Ok(transport)
}

/// Start the guest and serve it until it ends; how it ended (its `code`
/// is `colinux run`'s exit status). The last state record says it too.
pub fn run(mut l: Launch) -> Result<End> {
    let cfg = &l.config;
    let claim = registry::claim(&l.run_dir, &cfg.name)?;
    if l.detached {
        redirect(libc::STDOUT_FILENO, Path::new("/dev/null"))?;
        redirect(libc::STDERR_FILENO, &claim.dir().join("daemon.log"))?;
    }
    let memory = cfg.memory << 20;
    let data = std::fs::read(&cfg.kernel)
        .with_context(|| format!("cannot read {}", cfg.kernel.display()))?;
    let image = GuestImage::parse(data)
        .with_context(|| format!("{}: not a usable guest kernel", cfg.kernel.display()))?;
    if image.physical_end() > memory {
        bail!(
            "{}: the kernel reaches guest-physical {:#x}, beyond {} MiB of guest RAM",
            cfg.kernel.display(),
            image.physical_end(),
            cfg.memory
        );
    }
    // The disks: opened and locked before anything is allocated.
    let mut devices = cfg
        .disks
        .iter()
        .map(|d| Disk::open(d.clone()).map(|d| Box::new(d) as Box<dyn VirtioDevice>))
        .collect::<Result<Vec<_>>>()?;
    // The network interfaces after the disks (the guest names its disks
    // in table order): passt started or the TAP attached, each refused
    // here if it cannot be.
    for n in &cfg.nets {
        devices.push(Box::new(Net::open(n.clone())?));
    }
    // The shares last: virtiofsd started and greeted over vhost-user for
    // each, refused here if it cannot be.
    for s in &cfg.shares {
        devices.push(Box::new(Fs::open(s.clone())?));
    }
    let plan = BootPlan::new(
        &image,
        memory,
        cfg.initrd.as_deref(),
        &cfg.cmdline,
        devices.len(),
    )
    .with_context(|| format!("cannot boot {}", cfg.kernel.display()))?;
    let server = ConsoleServer::bind(&cfg.console_socket)?;
    let mut control = Control::bind(&claim.dir().join("control.sock"), true)?;

    let drv = Driver::open(&l.device)?;
    drv.create(memory)?;
    for s in &image.segments {
        drv.load(s.paddr, image.segment_data(s), s.memsz - s.filesz as u64)?;
    }
    let mut virtio = if devices.is_empty() {
        None
    } else {
        Some(virtio_devices(
            &drv,
            memory,
            plan.layout.virtio_address,
            devices,
        )?)
    };
    let mut record = Record {
        name: cfg.name.clone(),
        pid: std::process::id(),
        memory: cfg.memory,
        started: now(),
        state: State::Created,
        kernel: cfg.kernel.clone(),
        console_socket: cfg.console_socket.clone(),
    };
    claim.write(&record)?;
    record.state.advance(State::Running);
    claim.write(&record)?;
    tracing::info!(
        "guest {} started: {} MiB, kernel {}, console {}",
        cfg.name,
        cfg.memory,
        cfg.kernel.display(),
        cfg.console_socket.display()
    );
    if let Some(mut n) = l.notify.take() {
        // The parent may be gone (killed): the guest runs on regardless.
        let _ = n.write_all(b"started\n");
    }
    let mut on_state = |state: State| {
        if record.state.advance(state) {
            if let Err(e) = claim.write(&record) {
                tracing::warn!("{e:#}");
            }
        }
    };
    let mut cocon = Cocon::new(Some(server))?;
    if l.detached {
        let path = claim.dir().join("console.log");
        cocon = cocon.with_log(ConsoleLog::open(&path, console_log::LIMIT)?);
    }
    if cocon.is_tty() {
        eprintln!("colinux: console on this terminal; ctrl-] ends the guest");
    }
    eprintln!(
        "colinux: console clients attach with: colinux console {}",
        cfg.name
    );
    let result = linux::boot(
        &drv,
        &plan,
        Services {
            devices: match virtio.as_mut() {
                Some(v) => vec![&mut cocon, v],
                None => vec![&mut cocon],
            },
            control: Some(&mut control),
            on_state: Some(&mut on_state),
        },
    );
    let destroyed = drv.destroy();
    let end = result?;
    destroyed?;
    tracing::info!("guest {} {} (exit status {})", cfg.name, end.why, end.code);
    record.state.advance(State::Ended(end.clone()));
    claim.write(&record)?;
    Ok(end)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn mem_total_is_read_in_mib() {
        assert_eq!(
            parse_mem_total("MemFree: 1 kB\nMemTotal:        2035404 kB\n"),
            Some(1987)
        );
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
    }
}
