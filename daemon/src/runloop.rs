//! The one run loop: RUN the guest on this thread, and whenever it gives
//! the CPU back serve what it asked for and everything else that is ready —
//! its devices ([`colinux_devices::Device`]: the console, …), the control
//! socket (`colinux stop`/`kill`), the signals that stop it — until it ends.
//!
//! The same loop runs a Linux guest ([`Kind::Linux`]: booted with boot
//! parameters, console on its devices) and a test payload
//! ([`Kind::Payload`]: debug lines and its end on stdout, as the payload
//! tests read them).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use colinux_abi as abi;
use colinux_devices::Device;

use crate::control::{Control, Request};
use crate::driver::Driver;
use crate::lifecycle::{End, State};
use crate::signals;

/// How long to wait on EXIT_IDLE when a Linux guest set no timer.
const IDLE_WITHOUT_TIMER: Duration = Duration::from_secs(1);

/// What kind of guest runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A Linux guest.
    Linux,
    /// A test payload (`tests/payload/`).
    Payload,
}

/// What the loop serves besides the guest.
#[derive(Default)]
pub struct Services<'a> {
    /// The device back ends, served in this order.
    pub devices: Vec<&'a mut dyn Device>,
    /// `colinux stop`/`kill` requests come on its socket.
    pub control: Option<&'a mut Control>,
    /// Told when the guest's state changes (a stop was asked for).
    pub on_state: Option<&'a mut dyn FnMut(State)>,
}

impl std::fmt::Debug for Services<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("devices", &self.devices)
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

/// Run the guest from `arg` (the first RUN: entry, stack, boot parameters)
/// until it ends; how it ended. The devices are finished (the terminal
/// restored, clients flushed) however it ends.
pub fn run(
    drv: &Driver,
    mut arg: abi::cooperative_ioctl_run,
    kind: Kind,
    mut svc: Services<'_>,
) -> Result<End> {
    let result = serve(drv, &mut arg, kind, &mut svc);
    for d in svc.devices.iter_mut() {
        if let Err(e) = &result {
            d.notice(&format!("error: {e:#}"));
        }
        d.finish();
    }
    result
}

/// Say `line` on stderr and to the devices' users.
fn say(devices: &mut [&mut dyn Device], line: &str) {
    eprintln!("colinux: {line}");
    for d in devices.iter_mut() {
        d.notice(line);
    }
}

/// The wait's lists, kept between waits: the run loop allocates nothing
/// per round (an allocation can wait for the allocator's lock while a
/// device thread holds it).
#[derive(Default)]
struct WaitLists {
    fds: Vec<libc::pollfd>,
    ranges: Vec<std::ops::Range<usize>>,
}

/// Wait up to `timeout` for any device's or the control socket's
/// descriptors; then let them serve what came. A signal ends the wait early.
fn wait(svc: &mut Services<'_>, lists: &mut WaitLists, timeout: Duration) -> Result<()> {
    let WaitLists { fds, ranges } = lists;
    fds.clear();
    ranges.clear();
    for d in svc.devices.iter() {
        let start = fds.len();
        d.poll_fds(fds);
        ranges.push(start..fds.len());
    }
    let control_slot = svc.control.as_deref().map(|c| {
        fds.push(c.poll_fd());
        fds.len() - 1
    });
    if !colinux_devices::poll::poll(fds, timeout).context("waiting for the devices")? {
        return Ok(()); // a signal: the loop looks at it
    }
    for (d, range) in svc.devices.iter_mut().zip(ranges.iter().cloned()) {
        d.ready(fds.get(range).unwrap_or_default())
            .with_context(|| format!("serving {}", d.name()))?;
    }
    if let (Some(c), Some(p)) = (svc.control.as_deref_mut(), control_slot.map(|i| fds[i])) {
        c.ready(p.revents);
    }
    Ok(())
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

/// The payload's text: up to the first NUL of the whole buffer.
fn payload_text(arg: &abi::cooperative_ioctl_run) -> String {
    let end = arg
        .text
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(arg.text.len());
    String::from_utf8_lossy(&arg.text[..end]).into_owned()
}

fn serve(
    drv: &Driver,
    arg: &mut abi::cooperative_ioctl_run,
    kind: Kind,
    svc: &mut Services<'_>,
) -> Result<End> {
    let mut unsupported = BTreeSet::new();
    let mut stats = Stats::default();
    let mut lists = WaitLists::default();
    if kind == Kind::Payload {
        // The payload's report counts from its first RUN call.
        stats.started = Some(Instant::now());
    }
    let code = loop {
        if let Some(sig) = signals::stop_signal() {
            say(
                &mut svc.devices,
                &format!("signal {sig}: stopping the guest"),
            );
            break End::signal(sig);
        }
        if let Some(why) = svc.devices.iter().find_map(|d| d.end_requested()) {
            say(&mut svc.devices, &format!("{why}: stopping the guest"));
            break End::asked(why);
        }
        match svc.control.as_deref_mut().and_then(Control::take) {
            Some(Request::Kill) => {
                say(&mut svc.devices, "colinux kill: ending the guest");
                break End::killed();
            }
            Some(Request::Stop) => {
                say(
                    &mut svc.devices,
                    "colinux stop: pressing the guest's power button",
                );
                arg.flags |= abi::COOPERATIVE_RUN_POWER_BUTTON;
                if let Some(f) = svc.on_state.as_deref_mut() {
                    f(State::Stopping);
                }
            }
            None => {}
        }
        // Console input from the first device that has some.
        let source = svc
            .devices
            .iter()
            .position(|d| !d.console_input().is_empty());
        let pending = source.map(|i| svc.devices[i].console_input());
        arg.input = pending.map_or(0, |p| p.as_ptr() as u64);
        arg.input_size = pending.map_or(0, |p| u32::try_from(p.len()).unwrap_or(u32::MAX));
        drv.run(arg)?;
        arg.flags = 0;
        stats.count(arg);
        let taken = arg.input_size as usize;
        if let Some(i) = source {
            svc.devices[i].console_taken(taken);
        }
        arg.entry = 0;
        arg.stack = 0;
        arg.boot = 0;
        arg.status = abi::COOPERATIVE_STATUS_OK;
        match arg.exit_reason {
            abi::COOPERATIVE_RUN_EXIT_INTERRUPTED => {}
            abi::COOPERATIVE_RUN_EXIT_YIELD => wait(svc, &mut lists, Duration::ZERO)?,
            abi::COOPERATIVE_RUN_EXIT_IDLE => {
                let left = source.is_some() && taken > 0;
                // Input the ring could not take yet goes in at once.
                if !left {
                    let timeout = match (kind, arg.timeout_ns) {
                        (Kind::Linux, 0) => IDLE_WITHOUT_TIMER,
                        (Kind::Payload, ns) => Duration::from_nanos(ns.clamp(1, 1_000_000_000)),
                        (Kind::Linux, ns) => Duration::from_nanos(ns),
                    };
                    wait(svc, &mut lists, timeout)?;
                }
            }
            abi::COOPERATIVE_RUN_EXIT_FAULT => {
                let what = if has_error_code(arg.vector) {
                    "error code"
                } else {
                    "EIP"
                };
                let fault = format!(
                    "guest fault: vector {}, {what} {:#x}, CR2 {:#x}",
                    arg.vector, arg.fault_eip, arg.fault_address
                );
                match kind {
                    Kind::Linux => say(&mut svc.devices, &fault),
                    Kind::Payload => println!(
                        "guest fault: vector {}, eip/error {:#x}, cr2 {:#x}; {} idle round trips, {} host interrupts forwarded",
                        arg.vector, arg.fault_eip, arg.fault_address, stats.idle_round_trips, stats.interrupts
                    ),
                }
                break End::fault(fault);
            }
            abi::COOPERATIVE_RUN_EXIT_OPERATION => match (arg.operation, kind) {
                (abi::COOPERATIVE_OP_MESSAGE_TO_MONITOR, Kind::Linux) => {
                    let module = u32::try_from(arg.params[0]).unwrap_or(u32::MAX);
                    let mut taken = false;
                    for d in svc.devices.iter_mut() {
                        if d.message(module, text_of(arg))? {
                            taken = true;
                            break;
                        }
                    }
                    if !taken {
                        let what = format!("message to module {}", arg.params[0]);
                        if unsupported.insert(what.clone()) {
                            tracing::warn!("guest {what}: not supported, answered UNSUPPORTED");
                        }
                        arg.status = abi::COOPERATIVE_STATUS_UNSUPPORTED;
                    }
                }
                (abi::COOPERATIVE_OP_DEBUG_LINE, Kind::Linux) => {
                    for d in svc.devices.iter_mut() {
                        d.debug_line(line_of(arg))?;
                    }
                }
                (abi::COOPERATIVE_OP_DEBUG_LINE, Kind::Payload) => {
                    println!("guest: {}", payload_text(arg));
                }
                (abi::COOPERATIVE_OP_START, Kind::Linux) => {
                    if arg.params[0] != u64::from(abi::COOPERATIVE_ABI_VERSION) {
                        tracing::warn!(
                            "the guest was built for ABI version {}, the daemon's is {}",
                            arg.params[0],
                            abi::COOPERATIVE_ABI_VERSION
                        );
                        arg.status = abi::COOPERATIVE_STATUS_INVALID;
                    }
                }
                (abi::COOPERATIVE_OP_TERMINATE, Kind::Linux) => {
                    let mut end = End::terminated(arg.params[0]);
                    let text = String::from_utf8_lossy(line_of(arg)).into_owned();
                    say(
                        &mut svc.devices,
                        &if text.is_empty() {
                            format!("guest {}", end.why)
                        } else {
                            format!("guest {}: {text}", end.why)
                        },
                    );
                    // The guest's words matter when it ended badly (the
                    // panic message); a power-off's "power off" adds nothing.
                    if end.code != 0 && !text.is_empty() {
                        end.why = format!("{}: {text}", end.why);
                    }
                    break end;
                }
                (abi::COOPERATIVE_OP_TERMINATE, Kind::Payload) => {
                    let reason = arg.params[0];
                    println!(
                        "guest terminated: reason {reason} ({}) after {:.1} s; {} idle round trips served by the host, {} host interrupts forwarded",
                        payload_text(arg),
                        stats.elapsed().as_secs_f64(),
                        stats.idle_round_trips,
                        stats.interrupts
                    );
                    let why = format!("terminated: reason {reason} ({})", payload_text(arg));
                    break End {
                        why,
                        code: if reason == u64::from(abi::COOPERATIVE_TERM_END) {
                            0
                        } else {
                            4
                        },
                    };
                }
                (op, _) => {
                    // A device's (COOPERATIVE_OP_VIRTIO), or unsupported.
                    let served = svc
                        .devices
                        .iter_mut()
                        .find_map(|d| d.operation(op, &arg.params));
                    arg.status = served.unwrap_or_else(|| {
                        let what = format!("operation {op}");
                        if unsupported.insert(what.clone()) {
                            tracing::warn!("guest {what}: not supported, answered UNSUPPORTED");
                        }
                        abi::COOPERATIVE_STATUS_UNSUPPORTED
                    });
                }
            },
            other => bail!("RUN returned an unknown exit reason {other}"),
        }
    };
    if kind == Kind::Linux {
        tracing::info!("{stats}");
    }
    Ok(code)
}

/// What the RUN calls of one run did, for the log.
#[derive(Debug, Default)]
struct Stats {
    started: Option<Instant>,
    runs: u64,
    yields: u64,
    idles: u64,
    idle_round_trips: u64,
    halt_polls: u64,
    interrupts: u64,
    input: u64,
}

impl Stats {
    fn count(&mut self, arg: &abi::cooperative_ioctl_run) {
        self.started.get_or_insert_with(Instant::now);
        self.runs += 1;
        self.yields += u64::from(arg.exit_reason == abi::COOPERATIVE_RUN_EXIT_YIELD);
        self.idles += u64::from(arg.exit_reason == abi::COOPERATIVE_RUN_EXIT_IDLE);
        self.idle_round_trips += arg.idle_round_trips;
        self.halt_polls += arg.halt_polls;
        self.interrupts += arg.interrupts;
        self.input += u64::from(arg.input_size);
    }

    fn elapsed(&self) -> Duration {
        self.started.map(|s| s.elapsed()).unwrap_or_default()
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "guest ran {:.1} s: {} RUN calls, {} yields, {} idle exits, {} idles served by the driver ({} by halt polling), {} host interrupts forwarded, {} input bytes",
            self.started.map_or(0.0, |t| t.elapsed().as_secs_f64()),
            self.runs,
            self.yields,
            self.idles,
            self.idle_round_trips,
            self.halt_polls,
            self.interrupts,
            self.input
        )
    }
}
