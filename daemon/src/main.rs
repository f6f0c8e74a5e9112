//! `colinux-daemon`: configures and runs one cooperative guest and serves its
//! devices.
//!
//! It validates the guest kernel, asks the host driver to create the guest
//! and allocate its RAM, loads the kernel's segments and shows what the
//! driver set up; with `--boot` it boots a Linux guest (initrd, command
//! line, console on stdin/stdout: see `linux.rs`), with `--run` it runs a
//! test payload from an entry symbol until it terminates, else it destroys
//! the guest. With `--boot --console-socket PATH` console clients attach
//! to the guest's console over a Unix socket (`server.rs`, with a shadow of
//! the recent output: `shadow.rs`); `colinux-daemon console PATH` is such a
//! client (`attach.rs`).

use colinux_daemon::runloop::{self, Kind, Services};
use colinux_daemon::{attach, driver, elf, linux};
use colinux_devices::cocon::{Cocon, ConsoleServer};

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

/// Run one cooperative Linux guest beside the host kernel.
///
/// Settings may also be given coLinux-style as NAME=VALUE words:
/// `kernel=vmlinux mem=256 initrd=initrd.cpio`; any other word (e.g.
/// `root=/dev/cobd0 ro`) is appended to the guest kernel command line.
///
/// With --boot the guest's console is the daemon's stdin and stdout (a
/// terminal is put in raw mode; ctrl-] stops the guest). With
/// --console-socket PATH too, `colinux-daemon console PATH` attaches
/// another terminal to it at any time (it is shown the recent output
/// first) and detaches with ctrl-], leaving the guest running. Exit status:
/// 0 when the guest ends, powers off, halts or reboots; 2 when it panics or
/// stops for another reason; 3 when it faults; 1 on errors.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
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
    /// Run the guest after loading it from the --entry symbol, until it
    /// terminates (test payloads)
    #[arg(long, conflicts_with = "boot")]
    run: bool,
    /// The symbol to start the guest at, with --run
    #[arg(long, default_value = "startup_32")]
    entry: String,
    /// Boot a Linux guest: start it at `cooperative_start` with boot
    /// parameters, serve its console on stdin/stdout until it stops
    #[arg(long)]
    boot: bool,
    /// An initrd (initramfs) for the Linux guest, with --boot
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// With --boot: serve the guest's console also on this Unix socket, for
    /// `colinux-daemon console PATH`. Created mode 0600 (missing parent
    /// directories 0700), removed at exit; a stale socket is replaced, any
    /// other existing file refused. Keeps the last 64 KiB of console output
    /// for clients that attach late; one client at a time (a new one takes
    /// over); a client more than 256 KiB behind is disconnected. E.g.
    /// `$XDG_RUNTIME_DIR/colinux/guest0.sock`
    #[arg(long, value_name = "PATH", requires = "boot")]
    console_socket: Option<PathBuf>,
    /// Validate the kernel image and exit, without the driver
    #[arg(long)]
    check_only: bool,
    /// coLinux-style settings (kernel=, mem=, initrd=) and guest command-line
    /// words (with --boot: the command line, joined by spaces, at most 255
    /// bytes)
    params: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Attach this terminal to the console of a guest whose daemon runs
    /// with --console-socket PATH.
    ///
    /// Shows the guest's recent console output, then its live output, and
    /// sends what is typed to the guest (a terminal is put in raw mode).
    /// Ctrl-] (byte 0x1d, also from a pipe) detaches and exits 0; the guest
    /// keeps running. Exits 0 too when the daemon closes the console (the
    /// guest stopped, or another client attached); 1 on errors. At the end
    /// of a non-terminal stdin it keeps showing the output until then.
    Console {
        /// The daemon's --console-socket
        path: PathBuf,
    },
}

fn main() -> ExitCode {
    colinux_daemon::init_logging();
    let cli = Cli::parse();
    if let Some(Command::Console { path }) = &cli.command {
        return match attach::attach(path) {
            Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            Err(e) => {
                eprintln!("colinux-daemon console: error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(cli) {
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
            Some(("initrd", v)) => cli.initrd = Some(PathBuf::from(v)),
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
    if cli.initrd.is_some() && !cli.boot {
        bail!("an initrd is only used with --boot");
    }
    let plan = if cli.boot {
        Some(
            linux::BootPlan::new(&image, memory, cli.initrd.as_deref(), &cmdline)
                .with_context(|| format!("cannot boot {}", kernel.display()))?,
        )
    } else {
        None
    };
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
    // Before the guest exists: a socket that cannot be served stops here.
    let mut server = cli
        .console_socket
        .as_deref()
        .map(ConsoleServer::bind)
        .transpose()?;

    let drv = driver::Driver::open(&cli.device)?;
    drv.create(memory)?;
    for s in &image.segments {
        drv.load(s.paddr, image.segment_data(s), s.memsz - s.filesz as u64)?;
    }
    let info = drv.info()?;
    let summary = format!(
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
    if let Some(plan) = &plan {
        // Stdout is the guest's console: the daemon's own lines go to stderr.
        eprintln!("{summary}");
        if let Some(path) = &cli.initrd {
            eprintln!(
                "initrd {}: {} bytes at guest-physical {:#x}",
                path.display(),
                plan.layout.initrd_size,
                plan.layout.initrd_address
            );
        }
        let mut cocon = Cocon::new(server.take())?;
        if cocon.is_tty() {
            eprintln!("colinux-daemon: console on this terminal; ctrl-] stops the guest");
        }
        if let Some(sock) = cocon.socket() {
            eprintln!(
                "colinux-daemon: console clients attach with: colinux-daemon console {}",
                sock.display()
            );
        }
        let result = linux::boot(
            &drv,
            plan,
            Services {
                devices: vec![&mut cocon],
                ..Default::default()
            },
        );
        let destroyed = drv.destroy();
        let end = result?;
        destroyed?;
        if end.code != 0 {
            std::process::exit(end.code);
        }
        return Ok(());
    }
    println!("{summary}");
    if cli.run {
        let code = run_guest(&drv, &image, &cli.entry, memory)?;
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
) -> Result<i32> {
    use colinux_abi as abi;
    let start = *image
        .symbols
        .get(entry)
        .with_context(|| format!("the guest has no symbol {entry:?} to start at"))?;
    let arg = abi::cooperative_ioctl_run {
        entry: start.into(),
        // The top of guest RAM, as the initial page tables map it.
        stack: abi::COOPERATIVE_KERNEL_VA_OFFSET as u64 + memory.min(0x3fc0_0000) - 16,
        ..Default::default()
    };
    Ok(runloop::run(drv, arg, Kind::Payload, Services::default())?.code)
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
    fn existing_invocations_still_parse() {
        let c = parse(&[
            "--boot", "--kernel", "vmlinux", "--initrd", "i.cpio", "--mem", "128",
        ])
        .unwrap();
        assert!(c.boot && c.command.is_none() && c.console_socket.is_none());
        let c = parse(&["--kernel", "p.elf", "--run", "--entry", "test_loop"]).unwrap();
        assert!(c.run && c.entry == "test_loop");
        // Guest command-line words, even ones starting with "console".
        let c = parse(&["kernel=vmlinux", "console=hvc0", "ro", "--boot"]).unwrap();
        assert_eq!(c.params, ["kernel=vmlinux", "console=hvc0", "ro"]);
        assert!(c.command.is_none());
    }

    #[test]
    fn console_socket_and_the_console_command() {
        let c = parse(&[
            "--boot",
            "--kernel",
            "vmlinux",
            "--console-socket",
            "/run/colinux/g.sock",
        ])
        .unwrap();
        assert_eq!(
            c.console_socket.as_deref(),
            Some(std::path::Path::new("/run/colinux/g.sock"))
        );
        // Only with --boot.
        assert!(parse(&["--kernel", "vmlinux", "--console-socket", "s"]).is_err());

        let c = parse(&["console", "/run/colinux/g.sock"]).unwrap();
        assert!(matches!(
            c.command,
            Some(Command::Console { ref path }) if path == std::path::Path::new("/run/colinux/g.sock")
        ));
        assert!(parse(&["console"]).is_err());
    }
}
