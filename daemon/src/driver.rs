//! The host driver, `/dev/colinux`, through its ioctls (see the ABI header).

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;

use anyhow::{Context, Result};
use colinux_abi as abi;

/// One open `/dev/colinux`: at most one guest.
#[derive(Debug)]
pub struct Driver {
    file: File,
}

fn ioctl<T>(file: &File, request: u32, arg: *mut T, what: &str) -> Result<()> {
    // SAFETY: `arg` points to a live, properly sized `T` (the structure the
    // ioctl number encodes) for the duration of the call, or is null for
    // argument-less ioctls; the driver validates everything it reads.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), request as _, arg) };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        return Err(err).with_context(|| {
            format!("{what} failed (see the host kernel log for the driver's reason)")
        });
    }
    Ok(())
}

impl Driver {
    /// Open the driver's device.
    pub fn open(path: &Path) -> Result<Driver> {
        let file = OpenOptions::new().read(true).write(true).open(path).with_context(|| {
            format!(
                "cannot open {} (is the colinux module loaded? `insmod colinux.ko`; only root may open it)",
                path.display()
            )
        })?;
        Ok(Driver { file })
    }

    /// Create this file's guest with `memory_size` bytes of RAM.
    pub fn create(&self, memory_size: u64) -> Result<()> {
        let mut arg = abi::cooperative_ioctl_create {
            abi_version: abi::COOPERATIVE_ABI_VERSION,
            memory_size,
            ..Default::default()
        };
        ioctl(&self.file, abi::ioctl::CREATE, &mut arg, "CREATE")
            .with_context(|| format!("creating a guest with {} MiB of RAM", memory_size >> 20))
    }

    /// Copy `data` to guest-physical `guest_address`, then zero `zero` bytes.
    pub fn load(&self, guest_address: u64, data: &[u8], zero: u64) -> Result<()> {
        let mut arg = abi::cooperative_ioctl_load {
            abi_version: abi::COOPERATIVE_ABI_VERSION,
            guest_address,
            user_address: data.as_ptr() as u64,
            size: data.len() as u64,
            zero_size: zero,
            ..Default::default()
        };
        ioctl(&self.file, abi::ioctl::LOAD, &mut arg, "LOAD").with_context(|| {
            format!(
                "loading {} bytes (+{zero} zeroed) at guest-physical {guest_address:#x}",
                data.len()
            )
        })
    }

    /// What the driver has set up.
    pub fn info(&self) -> Result<abi::cooperative_ioctl_info> {
        let mut arg = abi::cooperative_ioctl_info {
            abi_version: abi::COOPERATIVE_ABI_VERSION,
            ..Default::default()
        };
        ioctl(&self.file, abi::ioctl::INFO, &mut arg, "INFO")?;
        Ok(arg)
    }

    /// Run the guest until it needs the daemon (RUN ioctl).
    pub fn run(&self, arg: &mut abi::cooperative_ioctl_run) -> Result<()> {
        arg.abi_version = abi::COOPERATIVE_ABI_VERSION;
        ioctl(&self.file, abi::ioctl::RUN, arg, "RUN").map_err(|e| {
            if e.root_cause()
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::raw_os_error)
                == Some(libc::EBUSY)
            {
                e.context(
                    "the host CPU has VMX turned on (another hypervisor, e.g. KVM, runs a \
                     virtual machine): a cooperative guest cannot switch while it is",
                )
            } else {
                e
            }
        })
    }

    /// The open device file: `mmap()` it for guest RAM (file offset =
    /// guest-physical address, `MAP_SHARED` only, after [`Driver::create`];
    /// see `COOPERATIVE_IOCTL_*` in `driver/include/colinux/ioctl.h`), and
    /// `poll()` it for lines raised through [`Driver::irqfd`] that RUN has
    /// not taken yet (readable).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Bind the notifications (`COOPERATIVE_OP_VIRTIO` REQ_NOTIFY) of queue
    /// `queue` of virtio device `device` to the eventfd `fd`: the driver
    /// adds 1 to it and the guest goes on without RUN returning. Fails with
    /// `EEXIST` when the queue is bound already.
    pub fn ioeventfd(&self, device: u32, queue: u32, fd: BorrowedFd<'_>) -> Result<()> {
        let mut arg = abi::cooperative_ioctl_ioeventfd {
            abi_version: abi::COOPERATIVE_ABI_VERSION,
            fd: fd.as_raw_fd(),
            device,
            queue,
            ..Default::default()
        };
        ioctl(&self.file, abi::ioctl::IOEVENTFD, &mut arg, "IOEVENTFD").with_context(|| {
            format!(
                "binding eventfd {} to virtio device {device} queue {queue}",
                fd.as_raw_fd()
            )
        })
    }

    /// Remove the eventfd binding of queue `queue` of device `device`
    /// (`ENOENT` if there is none); its notifications reach the daemon as
    /// operations again.
    pub fn ioeventfd_remove(&self, device: u32, queue: u32) -> Result<()> {
        let mut arg = abi::cooperative_ioctl_ioeventfd {
            abi_version: abi::COOPERATIVE_ABI_VERSION,
            flags: abi::COOPERATIVE_EVENTFD_DEASSIGN,
            fd: -1,
            device,
            queue,
            ..Default::default()
        };
        ioctl(&self.file, abi::ioctl::IOEVENTFD, &mut arg, "IOEVENTFD").with_context(|| {
            format!("removing the eventfd of virtio device {device} queue {queue}")
        })
    }

    /// Make every signal of the eventfd `fd` raise virtual interrupt line
    /// `line` (from any thread or process, while the guest runs or idles;
    /// the driver consumes the eventfd's count). `EEXIST` when that fd and
    /// line are bound already.
    pub fn irqfd(&self, line: u32, fd: BorrowedFd<'_>) -> Result<()> {
        let mut arg = abi::cooperative_ioctl_irqfd {
            abi_version: abi::COOPERATIVE_ABI_VERSION,
            fd: fd.as_raw_fd(),
            line,
            ..Default::default()
        };
        ioctl(&self.file, abi::ioctl::IRQFD, &mut arg, "IRQFD").with_context(|| {
            format!(
                "binding eventfd {} to interrupt line {line}",
                fd.as_raw_fd()
            )
        })
    }

    /// The same, each signal first ORing `bits` into the 32-bit word at
    /// guest-physical `isr` (a virtio device's ISR word): another process
    /// that signals `fd` (a vhost-user back end's call eventfd) then
    /// interrupts the guest with no thread of the daemon in between.
    pub fn irqfd_with_isr(&self, line: u32, fd: BorrowedFd<'_>, isr: u64, bits: u32) -> Result<()> {
        let mut arg = abi::cooperative_ioctl_irqfd {
            abi_version: abi::COOPERATIVE_ABI_VERSION,
            flags: abi::COOPERATIVE_IRQFD_ISR,
            fd: fd.as_raw_fd(),
            line,
            isr,
            isr_bits: bits,
            ..Default::default()
        };
        ioctl(&self.file, abi::ioctl::IRQFD, &mut arg, "IRQFD").with_context(|| {
            format!(
                "binding eventfd {} to interrupt line {line} with ISR bits {bits:#x} at {isr:#x}",
                fd.as_raw_fd()
            )
        })
    }

    /// Remove the binding of the eventfd `fd` to line `line` (`ENOENT` if
    /// there is none).
    pub fn irqfd_remove(&self, line: u32, fd: BorrowedFd<'_>) -> Result<()> {
        let mut arg = abi::cooperative_ioctl_irqfd {
            abi_version: abi::COOPERATIVE_ABI_VERSION,
            flags: abi::COOPERATIVE_EVENTFD_DEASSIGN,
            fd: fd.as_raw_fd(),
            line,
            ..Default::default()
        };
        ioctl(&self.file, abi::ioctl::IRQFD, &mut arg, "IRQFD").with_context(|| {
            format!(
                "removing the binding of eventfd {} to interrupt line {line}",
                fd.as_raw_fd()
            )
        })
    }

    /// Destroy the guest and return its memory to the host.
    pub fn destroy(&self) -> Result<()> {
        ioctl::<u8>(
            &self.file,
            abi::ioctl::DESTROY,
            std::ptr::null_mut(),
            "DESTROY",
        )
    }
}
