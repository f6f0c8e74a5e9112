//! Host back ends of the guest's virtual devices, and the one trait the
//! runtime's run loop serves them through ([`Device`]).
//!
//! The run loop (in the runtime, `colinux_daemon`) runs the guest on its
//! thread; whenever the guest gives the CPU back (it idles, its time slice
//! ends, it has an operation for the host) the loop waits on every device's
//! descriptors at once ([`poll`]) and lets each serve what is ready.
//! Devices never block the loop: their descriptors are non-blocking and
//! what cannot be done now waits for the next turn.
//!
//! - [`cocon`]: the console — the terminal (stdin/stdout), the console
//!   socket that `colinux console` attaches to, and the shadow of recent
//!   output it replays.
//! - [`virtio`]: the cooperative virtio transport (the virtio table in
//!   guest RAM, the guest's requests) and the trait its back ends
//!   implement ([`virtio::VirtioDevice`]); they run on their own threads.
//! - [`block`]: cobd, the block devices (virtio-blk).
//! - [`net`]: conet, the network interfaces (virtio-net: user-mode NAT by
//!   passt, or a TAP device).
//! - [`fs`]: cofs, shared host directories (virtio-fs, served by
//!   virtiofsd over vhost-user).

pub mod block;
pub mod cocon;
pub mod fs;
pub mod helper;
pub mod net;
pub mod poll;
pub mod sock;
pub mod sparse;
pub mod virtio;

/// A device back end the run loop serves.
pub trait Device: std::fmt::Debug {
    /// A short name, for logs.
    fn name(&self) -> &'static str;

    /// Add the descriptors to wait on this turn.
    fn poll_fds(&self, fds: &mut Vec<libc::pollfd>);

    /// Serve what the wait found: `fds` are the entries [`Device::poll_fds`]
    /// added, in order, with their results.
    fn ready(&mut self, fds: &[libc::pollfd]) -> anyhow::Result<()>;

    /// A message from the guest to module `module` (a
    /// `COOPERATIVE_MODULE_*`): `Ok(true)` when this device took it.
    fn message(&mut self, _module: u32, _data: &[u8]) -> anyhow::Result<bool> {
        Ok(false)
    }

    /// A guest operation the run loop does not serve itself (e.g.
    /// `COOPERATIVE_OP_VIRTIO`): `Some(status)` when this device served it.
    fn operation(&mut self, _op: u32, _params: &[u64]) -> Option<u32> {
        None
    }

    /// A debug line the guest wrote (before its console exists).
    fn debug_line(&mut self, _line: &[u8]) -> anyhow::Result<()> {
        Ok(())
    }

    /// Input waiting for the guest's console ring (the console's alone).
    fn console_input(&self) -> &[u8] {
        &[]
    }

    /// The guest took the first `n` bytes of [`Device::console_input`].
    fn console_taken(&mut self, _n: usize) {}

    /// Why the device's user wants the guest ended (ctrl-] on the
    /// console's terminal), if they do.
    fn end_requested(&self) -> Option<&'static str> {
        None
    }

    /// A line from the runtime for the device's user (the console shows
    /// it to an attached client).
    fn notice(&mut self, _line: &str) {}

    /// The guest has ended: give the terminal back, flush what is queued
    /// (within a time limit).
    fn finish(&mut self) {}
}
