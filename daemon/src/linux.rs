//! Booting a Linux guest (`--boot`): where the kernel, the initrd and the
//! driver's translation tables go in guest RAM, the boot parameters, and the
//! run loop that serves the guest's console.
//!
//! Guest-physical layout:
//!
//! ```text
//! 0 .. kernel_end                 the kernel's PT_LOAD segments (p_paddr)
//! kernel_end .. +initrd           the initrd, page aligned (--initrd)
//! ... free RAM ...
//! memory - tables .. memory       p2m and m2p, written by the driver
//! ```

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use colinux_abi as abi;

use crate::console::{self, Console};
use crate::control::{Control, Request};
use crate::driver::Driver;
use crate::elf::GuestImage;
use crate::registry::State;
use crate::server::ConsoleServer;

const PAGE: u64 = abi::COOPERATIVE_PAGE_SIZE as u64;
/// The guest's entry point.
pub const ENTRY_SYMBOL: &str = "cooperative_start";
/// Its initial stack top, the end of init_task's stack: named
/// `__end_init_task` in 6.1 and `__end_init_stack` in 6.12 (the first
/// found is used).
pub const STACK_SYMBOLS: &[&str] = &["__end_init_task", "__end_init_stack"];
/// How long to sleep on EXIT_IDLE when the guest set no timer.
const IDLE_WITHOUT_TIMER: Duration = Duration::from_secs(1);

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

/// Place the initrd after the kernel and check that everything fits.
pub fn layout(memory: u64, kernel_physical_end: u64, initrd_size: u64) -> Result<Layout> {
    let kernel_end = kernel_physical_end.next_multiple_of(PAGE);
    let initrd_address = if initrd_size > 0 { kernel_end } else { 0 };
    let used = kernel_end + initrd_size;
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

/// What a TERMINATE reason means, and the daemon's exit code for it.
pub fn termination(reason: u64) -> (String, i32) {
    let r = u32::try_from(reason).unwrap_or(u32::MAX);
    let (what, code) = match r {
        abi::COOPERATIVE_TERM_END => ("ended", 0),
        abi::COOPERATIVE_TERM_POWEROFF => ("powered off", 0),
        abi::COOPERATIVE_TERM_HALT => ("halted", 0),
        abi::COOPERATIVE_TERM_REBOOT => ("rebooted", 0),
        abi::COOPERATIVE_TERM_PANIC => ("panicked", 2),
        abi::COOPERATIVE_TERM_BUG => ("BUG", 2),
        abi::COOPERATIVE_TERM_FORCED_OFF => ("forced off", 2),
        abi::COOPERATIVE_TERM_FORCED_END => ("ended by the host", 2),
        abi::COOPERATIVE_TERM_INVALID_OPERATION => ("made an invalid operation", 2),
        abi::COOPERATIVE_TERM_STACK_OVERFLOW => ("overflowed its stack", 2),
        abi::COOPERATIVE_TERM_VMXE => ("stopped: the host CPU has VMX on", 2),
        _ => return (format!("terminated (reason {reason})"), 2),
    };
    (what.to_string(), code)
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
        let layout = layout(memory, image.physical_end(), initrd.len() as u64)?;
        let params = abi::cooperative_boot_params {
            magic: abi::COOPERATIVE_ABI_MAGIC,
            abi_version: abi::COOPERATIVE_ABI_VERSION,
            memory_size: memory,
            kernel_end: layout.kernel_end,
            initrd_address: layout.initrd_address,
            initrd_size: layout.initrd_size,
            command_line: command_line(words)?,
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

/// Exception vectors whose fault report carries an error code, not EIP.
fn has_error_code(vector: u32) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21)
}

/// The text RUN returned (`text_size` bytes).
fn text_of(arg: &abi::cooperative_ioctl_run) -> &[u8] {
    let n = (arg.text_size as usize).min(arg.text.len());
    arg.text.get(..n).unwrap_or_default()
}

/// The text RUN returned, up to a NUL if it holds one.
fn line_of(arg: &abi::cooperative_ioctl_run) -> &[u8] {
    let t = text_of(arg);
    t.split(|&b| b == 0).next().unwrap_or_default()
}

/// How long the daemon, once the guest stopped, keeps sending a console
/// client the output it has not read yet.
const CLIENT_FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// The exit code of a guest ended by `colinux kill` (as by SIGKILL).
pub const KILLED: i32 = 128 + 9;

/// What the run loop serves besides the guest and stdin.
#[derive(Default)]
pub struct Services<'a> {
    /// Console clients attach on its socket.
    pub console: Option<&'a mut ConsoleServer>,
    /// `colinux stop`/`kill` requests come on its socket.
    pub control: Option<&'a mut Control>,
    /// Told when the guest's state changes (a stop was asked for).
    pub on_state: Option<&'a mut dyn FnMut(State)>,
    /// The command that attaches a console client, for the hint printed at
    /// the start (default: `colinux-daemon console <socket>`).
    pub attach_command: Option<String>,
}

impl std::fmt::Debug for Services<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("console", &self.console)
            .field("control", &self.control)
            .field("attach_command", &self.attach_command)
            .finish_non_exhaustive()
    }
}

/// Load the initrd, boot the guest and serve it until it stops; returns
/// the daemon's exit code. Console clients may attach on `svc.console`'s
/// socket meanwhile, and `svc.control` takes stop and kill requests.
pub fn boot(drv: &Driver, plan: &BootPlan, mut svc: Services<'_>) -> Result<i32> {
    if !plan.initrd.is_empty() {
        drv.load(plan.layout.initrd_address, &plan.initrd, 0)
            .context("loading the initrd")?;
    }
    console::catch_stop_signals()?;
    let mut con = Console::stdin()?;
    let result = serve(drv, plan, &mut con, &mut svc);
    let server = svc.console;
    drop(con); // the terminal's settings back before anything is printed
    if let Some(s) = server {
        if let Err(e) = &result {
            s.notice(&format!("error: {e:#}"));
        }
        s.finish(CLIENT_FLUSH_LIMIT);
    }
    result
}

/// Wait up to `timeout` for console input on stdin or a console client,
/// a client connecting, a client's socket taking queued output, or a
/// control request; then serve what came. A signal ends the wait early.
fn wait(
    con: &mut Console,
    server: Option<&mut ConsoleServer>,
    control: Option<&mut Control>,
    timeout: Duration,
) -> Result<()> {
    let mut fds = Vec::with_capacity(4);
    let stdin_slot = con.poll_fd().map(|p| {
        fds.push(p);
        fds.len() - 1
    });
    let control_slot = control.as_deref().map(|c| {
        fds.push(c.poll_fd());
        fds.len() - 1
    });
    let first_server_slot = fds.len();
    if let Some(s) = server.as_deref() {
        s.poll_fds(&mut fds, con.room() > 0);
    }
    if !console::poll(&mut fds, timeout).context("waiting for console input")? {
        return Ok(()); // a signal: the run loop looks at it
    }
    if let Some(p) = stdin_slot.and_then(|i| fds.get(i)) {
        con.ready(p.revents)?;
    }
    if let (Some(c), Some(p)) = (control, control_slot.and_then(|i| fds.get(i))) {
        c.ready(p.revents);
    }
    if let Some(s) = server {
        let input = s.ready(fds.get(first_server_slot..).unwrap_or_default(), con.room());
        con.push_input(&input);
    }
    Ok(())
}

/// Say `line` on stderr and to the console client.
fn say(server: Option<&mut ConsoleServer>, line: &str) {
    eprintln!("colinux-daemon: {line}");
    if let Some(s) = server {
        s.notice(line);
    }
}

fn serve(drv: &Driver, plan: &BootPlan, con: &mut Console, svc: &mut Services<'_>) -> Result<i32> {
    let mut server = svc.console.as_deref_mut();
    let mut control = svc.control.as_deref_mut();
    let mut arg = abi::cooperative_ioctl_run {
        entry: plan.entry.into(),
        stack: plan.stack.into(),
        boot: &plan.params as *const abi::cooperative_boot_params as u64,
        ..Default::default()
    };
    if con.is_tty() {
        eprintln!("colinux-daemon: console on this terminal; ctrl-] stops the guest");
    }
    if let Some(s) = server.as_deref() {
        let attach = svc
            .attach_command
            .clone()
            .unwrap_or_else(|| format!("colinux-daemon console {}", s.path().display()));
        eprintln!("colinux-daemon: console clients attach with: {attach}");
    }
    let mut out = std::io::stdout().lock();
    let mut unsupported = std::collections::BTreeSet::new();
    let mut stats = Stats::default();
    let code = loop {
        if let Some(sig) = console::stop_signal() {
            say(
                server.as_deref_mut(),
                &format!("signal {sig}: stopping the guest"),
            );
            break 128 + sig;
        }
        if con.detached() {
            say(
                server.as_deref_mut(),
                "ctrl-] on the daemon's terminal: stopping the guest",
            );
            break 0;
        }
        match control.as_deref_mut().and_then(Control::take) {
            Some(Request::Kill) => {
                say(server.as_deref_mut(), "colinux kill: ending the guest");
                break KILLED;
            }
            Some(Request::Stop) => {
                say(
                    server.as_deref_mut(),
                    "colinux stop: pressing the guest's power button",
                );
                arg.flags |= abi::COOPERATIVE_RUN_POWER_BUTTON;
                if let Some(f) = svc.on_state.as_deref_mut() {
                    f(State::Stopping);
                }
            }
            None => {}
        }
        let pending = con.pending();
        arg.input = if pending.is_empty() {
            0
        } else {
            pending.as_ptr() as u64
        };
        arg.input_size = u32::try_from(pending.len()).unwrap_or(u32::MAX);
        drv.run(&mut arg)?;
        arg.flags = 0;
        stats.count(&arg);
        let taken = arg.input_size as usize;
        con.consume(taken);
        arg.entry = 0;
        arg.stack = 0;
        arg.boot = 0;
        arg.status = abi::COOPERATIVE_STATUS_OK;
        match arg.exit_reason {
            abi::COOPERATIVE_RUN_EXIT_INTERRUPTED => {}
            abi::COOPERATIVE_RUN_EXIT_YIELD => wait(
                con,
                server.as_deref_mut(),
                control.as_deref_mut(),
                Duration::ZERO,
            )?,
            abi::COOPERATIVE_RUN_EXIT_IDLE => {
                // Input the ring could not take yet goes in at once.
                if con.pending().is_empty() || taken == 0 {
                    let timeout = match arg.timeout_ns {
                        0 => IDLE_WITHOUT_TIMER,
                        ns => Duration::from_nanos(ns),
                    };
                    wait(con, server.as_deref_mut(), control.as_deref_mut(), timeout)?;
                }
            }
            abi::COOPERATIVE_RUN_EXIT_FAULT => {
                let (what, value) = if has_error_code(arg.vector) {
                    ("error code", arg.fault_eip)
                } else {
                    ("EIP", arg.fault_eip)
                };
                say(
                    server.as_deref_mut(),
                    &format!(
                        "guest fault: vector {}, {what} {value:#x}, CR2 {:#x}",
                        arg.vector, arg.fault_address
                    ),
                );
                break 3;
            }
            abi::COOPERATIVE_RUN_EXIT_OPERATION => match arg.operation {
                abi::COOPERATIVE_OP_MESSAGE_TO_MONITOR
                    if arg.params[0] == u64::from(abi::COOPERATIVE_MODULE_CONSOLE) =>
                {
                    out.write_all(text_of(&arg))
                        .and_then(|()| out.flush())
                        .context("writing the guest console to stdout")?;
                    if let Some(s) = server.as_deref_mut() {
                        s.output(text_of(&arg));
                    }
                }
                abi::COOPERATIVE_OP_DEBUG_LINE => {
                    out.write_all(line_of(&arg))
                        .and_then(|()| out.write_all(b"\n"))
                        .and_then(|()| out.flush())
                        .context("writing the guest's debug output to stdout")?;
                    if let Some(s) = server.as_deref_mut() {
                        s.output(line_of(&arg));
                        s.output(b"\r\n");
                    }
                }
                abi::COOPERATIVE_OP_START => {
                    if arg.params[0] != u64::from(abi::COOPERATIVE_ABI_VERSION) {
                        tracing::warn!(
                            "the guest was built for ABI version {}, the daemon's is {}",
                            arg.params[0],
                            abi::COOPERATIVE_ABI_VERSION
                        );
                        arg.status = abi::COOPERATIVE_STATUS_INVALID;
                    }
                }
                abi::COOPERATIVE_OP_TERMINATE => {
                    let (what, code) = termination(arg.params[0]);
                    let text = String::from_utf8_lossy(line_of(&arg)).into_owned();
                    if text.is_empty() {
                        say(server.as_deref_mut(), &format!("guest {what}"));
                    } else {
                        say(server.as_deref_mut(), &format!("guest {what}: {text}"));
                    }
                    break code;
                }
                op => {
                    let what = if op == abi::COOPERATIVE_OP_MESSAGE_TO_MONITOR {
                        format!("message to module {}", arg.params[0])
                    } else {
                        format!("operation {op}")
                    };
                    if unsupported.insert(what.clone()) {
                        tracing::warn!("guest {what}: not supported, answered UNSUPPORTED");
                    }
                    arg.status = abi::COOPERATIVE_STATUS_UNSUPPORTED;
                }
            },
            other => bail!("RUN returned an unknown exit reason {other}"),
        }
    };
    tracing::info!("{stats}");
    Ok(code)
}

/// What the RUN calls of one boot did, for the log.
#[derive(Debug, Default)]
struct Stats {
    started: Option<std::time::Instant>,
    runs: u64,
    yields: u64,
    idles: u64,
    idle_round_trips: u64,
    interrupts: u64,
    input: u64,
}

impl Stats {
    fn count(&mut self, arg: &abi::cooperative_ioctl_run) {
        self.started.get_or_insert_with(std::time::Instant::now);
        self.runs += 1;
        self.yields += u64::from(arg.exit_reason == abi::COOPERATIVE_RUN_EXIT_YIELD);
        self.idles += u64::from(arg.exit_reason == abi::COOPERATIVE_RUN_EXIT_IDLE);
        self.idle_round_trips += arg.idle_round_trips;
        self.interrupts += arg.interrupts;
        self.input += u64::from(arg.input_size);
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "guest ran {:.1} s: {} RUN calls, {} yields, {} idle exits, {} idles served by the driver, {} host interrupts forwarded, {} input bytes",
            self.started.map_or(0.0, |t| t.elapsed().as_secs_f64()),
            self.runs,
            self.yields,
            self.idles,
            self.idle_round_trips,
            self.interrupts,
            self.input
        )
    }
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
        let l = layout(64 << 20, 0x0123_4567, 1000).unwrap();
        assert_eq!(l.kernel_end, 0x0123_5000);
        assert_eq!(l.initrd_address, 0x0123_5000);
        assert_eq!(l.initrd_size, 1000);
        assert_eq!(l.tables_address, (64 << 20) - tables_size(64 << 20));
        let none = layout(64 << 20, 0x0123_4567, 0).unwrap();
        assert_eq!(none.initrd_address, 0);
    }

    #[test]
    fn too_little_ram_is_refused_with_a_size_that_fits() {
        let err = layout(16 << 20, 10 << 20, 6 << 20).unwrap_err().to_string();
        assert!(err.contains("too small"), "{err}");
        let mib: u64 = err
            .split("--mem ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        assert!(layout(mib << 20, 10 << 20, 6 << 20).is_ok(), "{err}");
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

    #[test]
    fn termination_codes() {
        assert_eq!(termination(abi::COOPERATIVE_TERM_POWEROFF.into()).1, 0);
        assert_eq!(termination(abi::COOPERATIVE_TERM_END.into()).1, 0);
        assert_eq!(
            termination(abi::COOPERATIVE_TERM_PANIC.into()).0,
            "panicked"
        );
        assert_eq!(termination(abi::COOPERATIVE_TERM_PANIC.into()).1, 2);
        assert_eq!(termination(abi::COOPERATIVE_TERM_BUG.into()).1, 2);
        assert_eq!(termination(99).1, 2);
        assert_eq!(termination(u64::MAX).1, 2);
    }
}
