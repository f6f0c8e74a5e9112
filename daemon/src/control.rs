//! The control socket of a running guest (`<guest dir>/control.sock`, mode
//! 0600): how `colinux stop` and `colinux kill` reach the guest's process.
//!
//! A client connects, sends one command line (`stop` or `kill`) and reads
//! one answer line: `ok`, or `error: <why>`. The guest's process polls the
//! socket in its run loop (no thread); a request is acted on by the run
//! loop at its next turn ([`Control::take`]). A client that sends nothing
//! within [`CLIENT_TIMEOUT`] is dropped, so it cannot stall the guest.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// How long the guest's process waits for a client's command.
pub const CLIENT_TIMEOUT: Duration = Duration::from_millis(200);

/// What a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A clean shutdown: the guest is asked to power off.
    Stop,
    /// End the guest at once.
    Kill,
}

/// The listening side, in the guest's process.
#[derive(Debug)]
pub struct Control {
    listener: UnixListener,
    path: PathBuf,
    requested: Option<Request>,
    /// Whether the guest can be asked to power off (else `stop` is refused).
    can_stop: bool,
}

impl Control {
    /// Listen on `path` (an old socket there is replaced: the caller holds
    /// the guest's claim).
    pub fn bind(path: &Path, can_stop: bool) -> Result<Control> {
        let _ = std::fs::remove_file(path);
        let listener = colinux_devices::sock::bind_private(path)
            .with_context(|| format!("cannot listen on the control socket {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make {} mode 0600", path.display()))?;
        listener
            .set_nonblocking(true)
            .context("cannot make the control socket non-blocking")?;
        Ok(Control {
            listener,
            path: path.to_path_buf(),
            requested: None,
            can_stop,
        })
    }

    /// What to poll.
    pub fn poll_fd(&self) -> libc::pollfd {
        libc::pollfd {
            fd: self.listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }
    }

    /// The listener's poll result: serve the clients waiting.
    pub fn ready(&mut self, revents: libc::c_short) {
        if revents & libc::POLLIN == 0 {
            return;
        }
        while let Ok((stream, _)) = self.listener.accept() {
            if let Err(e) = self.serve(stream) {
                tracing::warn!("control client: {e:#}");
            }
        }
    }

    fn serve(&mut self, stream: UnixStream) -> Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
        let mut line = String::new();
        BufReader::new(&stream)
            .take(256)
            .read_line(&mut line)
            .context("reading a command")?;
        let answer = match line.trim() {
            "kill" => {
                self.requested = Some(Request::Kill);
                "ok".to_string()
            }
            "stop" if self.can_stop => {
                if self.requested.is_none() {
                    self.requested = Some(Request::Stop);
                }
                "ok".to_string()
            }
            "stop" => "error: this guest cannot be asked to power off".to_string(),
            other => format!("error: unknown command {other:?} (stop, kill)"),
        };
        (&stream)
            .write_all(format!("{answer}\n").as_bytes())
            .context("answering")?;
        Ok(())
    }

    /// The request to act on, once.
    pub fn take(&mut self) -> Option<Request> {
        self.requested.take()
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Send `command` to the guest whose control socket is `path`; `Ok` when
/// it answered `ok`.
pub fn request(path: &Path, command: &str) -> Result<()> {
    let stream = UnixStream::connect(path)
        .with_context(|| format!("cannot reach the guest's control socket {}", path.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    (&stream)
        .write_all(format!("{command}\n").as_bytes())
        .context("sending the command")?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .context("reading the guest's answer")?;
    match line.trim() {
        "ok" => Ok(()),
        "" => bail!("the guest's process closed the control socket without an answer"),
        other => bail!("{}", other.strip_prefix("error: ").unwrap_or(other)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Serve one round in a thread-free way: the client thread connects,
    /// the test polls the listener.
    fn round(c: &mut Control, command: &'static str) -> Result<()> {
        let path = c.path.clone();
        let client = std::thread::spawn(move || request(&path, command));
        let mut fds = [c.poll_fd()];
        // SAFETY: `fds` is a valid array of one pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, 5000) };
        assert_eq!(n, 1);
        c.ready(fds[0].revents);
        client.join().unwrap()
    }

    #[test]
    fn commands_are_answered_and_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let mut c = Control::bind(&path, false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let e = round(&mut c, "stop").unwrap_err().to_string();
        assert_eq!(e, "this guest cannot be asked to power off");
        assert_eq!(c.take(), None);
        let e = round(&mut c, "reboot").unwrap_err().to_string();
        assert!(e.starts_with("unknown command \"reboot\""), "{e}");
        round(&mut c, "kill").unwrap();
        assert_eq!(c.take(), Some(Request::Kill));
        assert_eq!(c.take(), None);
        c.can_stop = true;
        round(&mut c, "stop").unwrap();
        assert_eq!(c.take(), Some(Request::Stop));
        drop(c);
        assert!(!path.exists());
        assert!(request(&path, "kill").is_err());
    }
}
