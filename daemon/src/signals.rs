//! The signals that stop a guest's process: SIGINT, SIGTERM, SIGHUP and
//! SIGQUIT interrupt RUN and the run loop's wait; the loop then ends the
//! guest (and the terminal's settings come back).

use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, Result};

/// The last stopping signal received (0: none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig, Ordering::SeqCst);
}

/// Catch SIGINT, SIGTERM, SIGHUP and SIGQUIT: they interrupt RUN (which
/// returns EXIT_INTERRUPTED) and a wait, and [`stop_signal`] reports them,
/// so that the daemon stops the guest and restores the terminal.
pub fn catch_stop_signals() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: sigaction is plain data; zeroed is a valid empty value.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = 0; // no SA_RESTART: waits return EINTR
                         // SAFETY: `sa.sa_mask` is a valid sigset_t to initialise.
        unsafe {
            libc::sigemptyset(&mut sa.sa_mask);
        }
        // SAFETY: `on_signal` only stores to an atomic (async-signal-safe);
        // `sa` is fully initialised.
        if unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot catch signal {sig}"));
        }
    }
    Ok(())
}

/// The stopping signal caught, if any.
pub fn stop_signal() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}
