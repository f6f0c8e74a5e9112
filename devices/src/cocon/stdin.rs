//! The guest console's input side: the daemon's stdin.
//!
//! When stdin is a terminal it is put in raw mode (no line editing, no echo,
//! no signal characters: every byte, ctrl-C included, goes to the guest) for
//! as long as a [`Console`] lives; dropping it restores the saved settings,
//! also when the daemon stops on an error, a signal or ctrl-] (0x1d, which
//! detaches: the daemon stops the guest and exits). Output processing is
//! left on, so the guest's lines and the daemon's messages stay readable.
//! Any other stdin is read as a stream until its end; the guest keeps
//! running after it.
//!
//! Console clients on the daemon's console socket (`server.rs`) add their
//! input after stdin's ([`Console::push_input`]); the run loop polls stdin
//! and their sockets together.

use std::os::fd::RawFd;

use anyhow::{Context, Result};

/// The byte that detaches the daemon from a terminal: ctrl-].
pub const DETACH: u8 = 0x1d;

/// Input read but not yet taken by the guest is held up to this many bytes;
/// beyond it stdin is not read until the guest catches up.
const PENDING_MAX: usize = 64 * 1024;

/// The terminal settings to restore, while raw mode is on.
pub struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    /// Raw mode on `fd` if it is a terminal (restored when dropped); None
    /// for pipes and files.
    pub fn if_tty(fd: RawFd) -> Result<Option<RawMode>> {
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(fd) } == 1 {
            RawMode::enable(fd).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn enable(fd: RawFd) -> Result<RawMode> {
        // SAFETY: termios is plain data; an all-zero value is valid and is
        // overwritten by tcgetattr before use.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `saved` is a valid termios to write to; `fd` is open.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(std::io::Error::last_os_error())
                .context("cannot read the terminal settings of stdin");
        }
        let mut raw = saved;
        raw.c_iflag &= !(libc::IGNBRK
            | libc::BRKINT
            | libc::PARMRK
            | libc::ISTRIP
            | libc::INLCR
            | libc::IGNCR
            | libc::ICRNL
            | libc::IXON);
        raw.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::ISIG | libc::IEXTEN);
        raw.c_cflag &= !(libc::CSIZE | libc::PARENB);
        raw.c_cflag |= libc::CS8;
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        // SAFETY: `raw` is a valid termios derived from the current one.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            return Err(std::io::Error::last_os_error())
                .context("cannot put the terminal on stdin in raw mode");
        }
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores settings tcgetattr returned for this open fd.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
        }
    }
}

impl std::fmt::Debug for RawMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawMode").field("fd", &self.fd).finish()
    }
}

/// Console input: stdin, read as it comes, held until the guest takes it.
#[derive(Debug)]
pub struct Console {
    fd: RawFd,
    raw: Option<RawMode>,
    eof: bool,
    detached: bool,
    pending: Vec<u8>,
}

impl Console {
    /// Stdin as the guest's console input (raw mode if it is a terminal).
    pub fn stdin() -> Result<Console> {
        let fd = libc::STDIN_FILENO;
        let raw = RawMode::if_tty(fd)?;
        Ok(Console {
            fd,
            raw,
            eof: false,
            detached: false,
            pending: Vec::new(),
        })
    }

    /// Give the terminal its settings back (raw mode off); stdin is not
    /// read any more.
    pub fn release_terminal(&mut self) {
        self.raw = None;
        self.eof = true;
    }

    /// Whether stdin is a terminal in raw mode.
    pub fn is_tty(&self) -> bool {
        self.raw.is_some()
    }

    /// Whether the user typed ctrl-] on the terminal.
    pub fn detached(&self) -> bool {
        self.detached
    }

    /// Input waiting for the guest.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// The guest took the first `n` bytes of [`Console::pending`].
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.pending.len());
        self.pending.drain(..n);
    }

    /// What to poll stdin for: `None` while it is not read (at its end,
    /// detached, or with [`Console::pending`] full).
    pub fn poll_fd(&self) -> Option<libc::pollfd> {
        let reading = !self.eof && !self.detached && self.pending.len() < PENDING_MAX;
        reading.then_some(libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        })
    }

    /// Stdin's poll result `revents` (from the entry [`Console::poll_fd`]
    /// gave): read what is there.
    pub fn ready(&mut self, revents: libc::c_short) -> Result<()> {
        if revents & libc::POLLNVAL != 0 {
            self.eof = true;
            return Ok(());
        }
        if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0 {
            return Ok(());
        }
        self.read_some()
    }

    /// How many more input bytes may be held for the guest.
    pub fn room(&self) -> usize {
        PENDING_MAX.saturating_sub(self.pending.len())
    }

    /// Input from elsewhere (a console client), after what stdin gave.
    pub fn push_input(&mut self, data: &[u8]) {
        self.pending.extend_from_slice(data);
    }

    fn read_some(&mut self) -> Result<()> {
        let mut buf = [0u8; 4096];
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            return match err.kind() {
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock => Ok(()),
                _ => {
                    tracing::warn!("stdin: {err}; not reading it any more");
                    self.eof = true;
                    Ok(())
                }
            };
        }
        let got = buf.get(..n as usize).unwrap_or_default();
        if got.is_empty() {
            self.eof = true;
            return Ok(());
        }
        if self.is_tty() {
            if let Some(at) = got.iter().position(|&b| b == DETACH) {
                self.pending
                    .extend_from_slice(got.get(..at).unwrap_or_default());
                self.detached = true;
                return Ok(());
            }
        }
        self.pending.extend_from_slice(got);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn lflag(fd: RawFd) -> libc::tcflag_t {
        // SAFETY: termios is plain data; tcgetattr fills it for an open fd.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `t` is valid for writes; `fd` is an open terminal.
        assert_eq!(unsafe { libc::tcgetattr(fd, &mut t) }, 0);
        t.c_lflag
    }

    #[test]
    fn raw_mode_is_undone_when_the_guard_drops() {
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: the out pointers are valid; name, termios and winsize may
        // be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        let before = lflag(slave);
        assert_ne!(before & libc::ICANON, 0);
        {
            let _raw = RawMode::enable(slave).unwrap();
            let now = lflag(slave);
            assert_eq!(now & (libc::ICANON | libc::ECHO | libc::ISIG), 0);
        }
        assert_eq!(lflag(slave), before);
        // SAFETY: both descriptors came from openpty and are closed once.
        unsafe {
            libc::close(master);
            libc::close(slave);
        }
    }
}
