//! `colinux-daemon`: configures and runs one cooperative guest and serves its
//! devices.
//!
//! Today (issue 3) it validates the guest kernel, asks the host driver to
//! create the guest and allocate its RAM, loads the kernel's segments, shows
//! what the driver set up, and destroys the guest. Running it comes with the
//! passage (issue 4) and the first boot (issue 5).

mod driver;
mod elf;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Run one cooperative Linux guest beside the host kernel.
///
/// Settings may also be given coLinux-style as NAME=VALUE words:
/// `kernel=vmlinux mem=256`; any other word (e.g. `root=/dev/cobd0 ro`) is
/// appended to the guest kernel command line.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The guest kernel: an i386 `vmlinux` built by `cargo xtask build-kernel`
    #[arg(long)]
    kernel: Option<PathBuf>,
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
    /// Validate the kernel image and exit, without the driver
    #[arg(long)]
    check_only: bool,
    /// coLinux-style settings (kernel=, mem=) and guest command-line words
    params: Vec<String>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("colinux-daemon: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(mut cli: Cli) -> Result<()> {
    let mut cmdline = Vec::new();
    for p in std::mem::take(&mut cli.params) {
        match p.split_once('=') {
            Some(("kernel", v)) => cli.kernel = Some(PathBuf::from(v)),
            Some(("mem", v)) => {
                cli.mem = v
                    .parse()
                    .with_context(|| format!("mem={v}: not a number of MiB"))?
            }
            _ => cmdline.push(p),
        }
    }
    let kernel = cli
        .kernel
        .context("no guest kernel given (--kernel PATH or kernel=PATH)")?;
    if !(8..=3072).contains(&cli.mem) {
        bail!("mem={} MiB is outside 8..=3072", cli.mem);
    }
    let memory = cli.mem << 20;
    let data =
        std::fs::read(&kernel).with_context(|| format!("cannot read {}", kernel.display()))?;
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
        "{}: i386 kernel, entry {:#x}, virtual {:#x}..{:#x}, {} loadable segments, physical end {:#x}, command line {:?}",
        kernel.display(),
        image.entry,
        image.symbols.get("_text").copied().unwrap_or(0),
        image.symbols.get("_end").copied().unwrap_or(0),
        image.segments.len(),
        image.physical_end(),
        cmdline.join(" ")
    );
    if cli.check_only {
        return Ok(());
    }

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
    if cli.hold > 0 {
        println!("holding the guest for {} s", cli.hold);
        std::thread::sleep(std::time::Duration::from_secs(cli.hold));
    }
    drv.destroy()?;
    println!("guest {} destroyed", info.guest_id);
    Ok(())
}
