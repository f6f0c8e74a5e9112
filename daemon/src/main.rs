//! `colinux-daemon`: the developer's low-level tool beside `colinux`.
//!
//! It validates a guest kernel, asks the host driver to create a guest and
//! allocate its RAM, loads the kernel's segments and shows what the driver
//! set up; with `--run` it runs a test payload from an entry symbol until
//! it terminates, with `--hold S` it keeps the guest for S seconds, else it
//! destroys the guest at once. Linux guests are run with `colinux run`.

use colinux_daemon::runloop::{self, Kind, Services};
use colinux_daemon::{driver, elf, launch};
use colinux_devices::block::{Disk, DiskConfig};
use colinux_devices::virtio::{table_size, VirtioDevice};
use colinux_devices::Device;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;

/// Create a cooperative guest from a kernel image and show what the host
/// driver set up; run test payloads (developers' tool: Linux guests are
/// run with `colinux run`).
///
/// Exit status with --run: 0 when the payload ends; 2 when it stops for
/// another reason; 3 when it faults; 1 on errors.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The guest kernel or payload: an i386 ELF image
    #[arg(long)]
    kernel: PathBuf,
    /// Guest RAM in MiB
    #[arg(long, default_value_t = 256)]
    mem: u64,
    /// The host driver's device
    #[arg(long, default_value = "/dev/colinux")]
    device: PathBuf,
    /// Keep the guest for this many seconds before destroying it (for tests
    /// that kill the daemon while it holds a guest)
    #[arg(long, default_value_t = 0)]
    hold: u64,
    /// Run the guest after loading it from the --entry symbol, until it
    /// terminates (test payloads)
    #[arg(long)]
    run: bool,
    /// The symbol to start the guest at, with --run
    #[arg(long, default_value = "startup_32")]
    entry: String,
    /// Validate the kernel image and exit, without the driver
    #[arg(long)]
    check_only: bool,
    /// With --run: a cobd unit for the payload, `N=PATH[,ro]` (repeatable).
    /// The virtio table goes at the first page after the image's physical
    /// end, one device per unit in the order given; the payload drives it
    /// itself (hostile-guest tests)
    #[arg(long, value_name = "N=PATH[,ro]", value_parser = parse_cobd, requires = "run")]
    cobd: Vec<DiskConfig>,
}

/// `N=PATH[,ro]` of `--cobd`.
fn parse_cobd(value: &str) -> Result<DiskConfig> {
    let (unit, rest) = value
        .split_once('=')
        .with_context(|| format!("--cobd {value}: want N=PATH[,ro]"))?;
    let unit = unit
        .parse::<u32>()
        .with_context(|| format!("--cobd {value}: the unit {unit:?} is not a number"))?;
    let (path, read_only) = match rest.rsplit_once(',') {
        Some((p, "ro")) => (p, true),
        _ => (rest, false),
    };
    if path.is_empty() {
        bail!("--cobd {value}: no path");
    }
    Ok(DiskConfig {
        unit,
        path: path.into(),
        read_only,
    })
}

fn main() -> ExitCode {
    colinux_daemon::init_logging();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("colinux-daemon: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let kernel = &cli.kernel;
    if !(8..=3072).contains(&cli.mem) {
        bail!("--mem {} MiB is outside 8..=3072", cli.mem);
    }
    let memory = cli.mem << 20;
    let data =
        std::fs::read(kernel).with_context(|| format!("cannot read {}", kernel.display()))?;
    let image = elf::GuestImage::parse(data)
        .with_context(|| format!("{}: not a usable guest kernel", kernel.display()))?;
    if image.physical_end() > memory {
        bail!(
            "{}: the kernel reaches guest-physical {:#x}, beyond {} MiB of guest RAM",
            kernel.display(),
            image.physical_end(),
            cli.mem
        );
    }
    tracing::info!(
        "{}: i386 kernel, entry {:#x}, virtual {:#x}..{:#x}, {} loadable segments, physical end {:#x}",
        kernel.display(),
        image.entry,
        image.symbols.get("_text").copied().unwrap_or(0),
        image.symbols.get("_end").copied().unwrap_or(0),
        image.segments.len(),
        image.physical_end(),
    );
    if cli.check_only {
        return Ok(());
    }
    // The disks: opened and locked before the guest is made.
    let disks = cli
        .cobd
        .iter()
        .map(|d| Disk::open(d.clone()).map(|d| Box::new(d) as Box<dyn VirtioDevice>))
        .collect::<Result<Vec<_>>>()?;
    let drv = driver::Driver::open(&cli.device)?;
    drv.create(memory)?;
    for s in &image.segments {
        drv.load(s.paddr, image.segment_data(s), s.memsz - s.filesz as u64)?;
    }
    let info = drv.info()?;
    println!(
        "guest {}: {} MiB of RAM in {} host pages ({} below 4 GiB, frames {:#x}..={:#x}); loaded {} segments, {} bytes",
        info.guest_id,
        info.memory_size >> 20,
        info.pages,
        info.pages_below_4g,
        info.lowest_frame,
        info.highest_frame,
        info.loads,
        info.loaded_bytes
    );
    if cli.run {
        let code = run_guest(&drv, &image, &cli.entry, memory, disks)?;
        drv.destroy()?;
        println!("guest {} destroyed", info.guest_id);
        if code != 0 {
            std::process::exit(code);
        }
        return Ok(());
    }
    if cli.hold > 0 {
        println!("holding the guest for {} s", cli.hold);
        std::thread::sleep(std::time::Duration::from_secs(cli.hold));
    }
    drv.destroy()?;
    println!("guest {} destroyed", info.guest_id);
    Ok(())
}

/// Run the guest until it terminates or faults; returns the exit code.
fn run_guest(
    drv: &driver::Driver,
    image: &elf::GuestImage,
    entry: &str,
    memory: u64,
    disks: Vec<Box<dyn VirtioDevice>>,
) -> Result<i32> {
    use colinux_abi as abi;
    let start = *image
        .symbols
        .get(entry)
        .with_context(|| format!("the guest has no symbol {entry:?} to start at"))?;
    let mut transport = None;
    if !disks.is_empty() {
        // The first page after the payload: where the payload looks.
        let table = image
            .physical_end()
            .next_multiple_of(u64::from(abi::COOPERATIVE_PAGE_SIZE));
        let count = disks.len();
        // The top 16 MiB hold the driver's tables and the stack.
        if table + table_size(count) > memory.saturating_sub(16 << 20) {
            bail!("no room for the virtio table at {table:#x} in {memory:#x} bytes of guest RAM");
        }
        transport = Some(launch::virtio_devices(drv, memory, table, disks)?);
        println!("virtio table at {table:#x}: {count} devices");
    }
    let arg = abi::cooperative_ioctl_run {
        entry: start.into(),
        // The top of guest RAM, as the initial page tables map it.
        stack: abi::COOPERATIVE_KERNEL_VA_OFFSET as u64 + memory.min(0x3fc0_0000) - 16,
        ..Default::default()
    };
    let devices: Vec<&mut dyn Device> = match transport.as_mut() {
        Some(t) => vec![t],
        None => Vec::new(),
    };
    let svc = Services {
        devices,
        ..Default::default()
    };
    Ok(runloop::run(drv, arg, Kind::Payload, svc)?.code)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("colinux-daemon").chain(args.iter().copied()))
    }

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn payload_invocations_parse_and_linux_boots_are_refused() {
        let c = parse(&["--kernel", "p.elf", "--run", "--entry", "test_loop"]).unwrap();
        assert!(c.run && c.entry == "test_loop");
        let c = parse(&["--kernel", "vmlinux", "--mem", "64", "--hold", "5"]).unwrap();
        assert_eq!((c.mem, c.hold), (64, 5));
        // Linux guests are `colinux run`'s.
        assert!(parse(&["--boot", "--kernel", "vmlinux"]).is_err());
        assert!(parse(&["console", "/run/colinux/g.sock"]).is_err());
        assert!(parse(&["--kernel", "vmlinux", "root=/dev/cobd0"]).is_err());
        // Disks for payloads.
        let c = parse(&[
            "--kernel",
            "p.elf",
            "--run",
            "--cobd",
            "0=/tmp/a.img",
            "--cobd",
            "3=/dev/vdb2,ro",
        ])
        .unwrap();
        assert_eq!(c.cobd.len(), 2);
        assert_eq!((c.cobd[1].unit, c.cobd[1].read_only), (3, true));
        assert_eq!(c.cobd[1].path, std::path::Path::new("/dev/vdb2"));
        assert!(parse(&["--kernel", "p.elf", "--cobd", "0=/tmp/a.img"]).is_err());
        assert!(parse(&["--kernel", "p.elf", "--run", "--cobd", "x=/a"]).is_err());
        assert!(parse(&["--kernel", "p.elf", "--run", "--cobd", "/a"]).is_err());
    }
}
