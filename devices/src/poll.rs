//! Waiting on several descriptors at once, as the run loop does for its
//! devices: `ppoll` with a time-out, interrupted by the signals that stop a
//! guest.

use std::time::Duration;

/// Wait up to `timeout` (`None`: for ever) for the events in `fds`;
/// `false` when a signal interrupted the wait (the caller looks at
/// [`stop_signal`]). With no descriptors this only sleeps.
pub fn poll(
    fds: &mut [libc::pollfd],
    timeout: impl Into<Option<Duration>>,
) -> std::io::Result<bool> {
    let ts = timeout.into().map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i32::MAX as u64) as _,
        tv_nsec: t.subsec_nanos() as _,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `fds` is a valid array of `fds.len()` pollfds; `ts_ptr` is
    // null or points to `ts`, which outlives the call.
    let rc = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            ts_ptr,
            std::ptr::null(),
        )
    };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(err);
    }
    Ok(true)
}
