//! The console socket (`cocon=`, by default `/run/colinux/NAME/console.sock`): console clients
//! (`colinux console NAME`) attach to a running guest's console,
//! late or again, and detach without stopping it.
//!
//! - The daemon listens on a Unix stream socket created with mode 0600 (only
//!   the daemon's user may attach). An existing socket nobody listens on (a
//!   daemon that was killed) is replaced; a live one, or a file that is not
//!   a socket, is refused. The socket is removed when the daemon exits.
//! - The daemon keeps a [`Shadow`] of the last 64 KiB of console output. A
//!   client that connects is first sent the shadow (from a line start),
//!   then the live output. Bytes a client sends are console input for the
//!   guest, after the daemon's own stdin input.
//! - One client at a time: a new connection takes the console over; the
//!   client it replaces is told so and disconnected (like `screen -d -r`),
//!   so a forgotten or stuck client never locks the console.
//! - Nothing a client does stops the guest or stalls it: every socket is
//!   non-blocking and polled with stdin in the daemon's wait (IDLE and
//!   YIELD exits; no threads). Output a client does not read is queued up
//!   to 256 KiB; a client further behind is disconnected (it may attach
//!   again and gets the shadow), rather than output being lost silently
//!   in the middle of its screen.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::shadow::{self, Shadow};

/// Output queued for a client beyond this many bytes disconnects it.
pub const CLIENT_QUEUE_MAX: usize = 256 * 1024;

/// One attached console client.
#[derive(Debug)]
struct Client {
    stream: UnixStream,
    /// Output not written to it yet.
    queue: VecDeque<u8>,
    /// Its number, counting connections from 1 (for the daemon's messages).
    number: u64,
}

/// Why a client is let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gone {
    Closed,
    Behind,
    Error,
}

/// The console socket, its shadow of the output and the attached client.
#[derive(Debug)]
pub struct ConsoleServer {
    path: PathBuf,
    /// The socket file's device and inode, to remove only our own.
    id: (u64, u64),
    listener: UnixListener,
    shadow: Shadow,
    client: Option<Client>,
    queue_max: usize,
    connections: u64,
    /// Say on stderr when clients attach and detach.
    verbose: bool,
}

/// Send without raising SIGPIPE on a socket the peer closed.
fn send(stream: &UnixStream, data: &[u8]) -> std::io::Result<usize> {
    // SAFETY: `data` is valid for reads of its length; the descriptor is
    // open for as long as `stream` lives.
    let n = unsafe {
        libc::send(
            stream.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl Client {
    /// Write what the socket takes now. `Err` when the client is gone.
    fn flush(&mut self) -> std::result::Result<(), Gone> {
        while !self.queue.is_empty() {
            let (a, _) = self.queue.as_slices();
            match send(&self.stream, a) {
                Ok(0) => return Err(Gone::Closed),
                Ok(n) => {
                    self.queue.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e)
                    if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) =>
                {
                    return Err(Gone::Closed)
                }
                Err(_) => return Err(Gone::Error),
            }
        }
        Ok(())
    }
}

/// Make `path` free for a new socket: nothing there, or a stale socket no
/// daemon listens on any more (removed). Refuses anything else.
fn clear_stale(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot look at {}", path.display()));
        }
    };
    if !meta.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket; not replacing it (choose another --console-socket)",
            path.display()
        );
    }
    match UnixStream::connect(path) {
        Ok(_) => bail!(
            "{} is the console socket of a running daemon; choose another --console-socket",
            path.display()
        ),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            tracing::info!("{}: removing a stale console socket", path.display());
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove the stale socket {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "{} is a socket that cannot be checked for a running daemon",
                path.display()
            )
        }),
    }
}

impl ConsoleServer {
    /// Listen on `path` with a shadow of the default size.
    pub fn bind(path: &Path) -> Result<ConsoleServer> {
        ConsoleServer::with_limits(path, shadow::DEFAULT_CAPACITY, CLIENT_QUEUE_MAX)
    }

    /// Listen on `path`, keeping `shadow_size` bytes of output and queueing
    /// up to `queue_max` bytes for a client.
    pub fn with_limits(path: &Path, shadow_size: usize, queue_max: usize) -> Result<ConsoleServer> {
        clear_stale(path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .with_context(|| {
                        format!(
                            "cannot create the directory {} for the console socket",
                            dir.display()
                        )
                    })?;
            }
        }
        let listener = crate::sock::bind_private(path)
            .with_context(|| format!("cannot listen on the console socket {}", path.display()))?;
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot look at the new socket {}", path.display()))?;
        let server = ConsoleServer {
            path: path.to_path_buf(),
            id: (meta.dev(), meta.ino()),
            listener,
            shadow: Shadow::new(shadow_size),
            client: None,
            queue_max,
            connections: 0,
            verbose: true,
        };
        // From here on, dropping `server` removes the socket.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make {} mode 0600", path.display()))?;
        server
            .listener
            .set_nonblocking(true)
            .with_context(|| format!("cannot make {} non-blocking", path.display()))?;
        Ok(server)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a client is attached.
    #[cfg(test)]
    fn attached(&self) -> bool {
        self.client.is_some()
    }

    /// Not saying on stderr when clients come and go (tests).
    #[cfg(test)]
    fn quiet(mut self) -> ConsoleServer {
        self.verbose = false;
        self
    }

    fn say(&self, msg: std::fmt::Arguments<'_>) {
        if self.verbose {
            eprintln!("colinux: {msg}");
        }
    }

    /// Console output: kept in the shadow and sent to the client.
    pub fn output(&mut self, data: &[u8]) {
        self.shadow.push(data);
        self.send_client(data);
    }

    /// A line from the daemon for the client only (not kept in the shadow),
    /// e.g. why the guest stopped.
    pub fn notice(&mut self, line: &str) {
        self.send_client(format!("\r\n[colinux: {line}]\r\n").as_bytes());
    }

    fn send_client(&mut self, data: &[u8]) {
        let Some(c) = self.client.as_mut() else {
            return;
        };
        c.queue.extend(data);
        let r = c.flush();
        self.settle(r);
    }

    /// Let the client go if `r` says so, or if it fell too far behind.
    fn settle(&mut self, r: std::result::Result<(), Gone>) {
        let behind = self
            .client
            .as_ref()
            .is_some_and(|c| c.queue.len() > self.queue_max);
        let why = match r {
            Err(g) => g,
            Ok(()) if behind => Gone::Behind,
            Ok(()) => return,
        };
        if let Some(c) = self.client.take() {
            match why {
                Gone::Closed => self.say(format_args!("console client {} detached", c.number)),
                Gone::Behind => self.say(format_args!(
                    "console client {} fell more than {} KiB behind the output; disconnected it (it may attach again)",
                    c.number,
                    self.queue_max >> 10
                )),
                Gone::Error => self.say(format_args!(
                    "console client {}: socket error; disconnected it",
                    c.number
                )),
            }
        }
    }

    /// Add what to poll for to `fds`: the listening socket, then the client
    /// (input only while `want_input`; output while some is queued).
    pub fn poll_fds(&self, fds: &mut Vec<libc::pollfd>, want_input: bool) {
        fds.push(libc::pollfd {
            fd: self.listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        if let Some(c) = &self.client {
            let mut events = 0;
            if want_input {
                events |= libc::POLLIN;
            }
            if !c.queue.is_empty() {
                events |= libc::POLLOUT;
            }
            fds.push(libc::pollfd {
                fd: c.stream.as_raw_fd(),
                events,
                revents: 0,
            });
        }
    }

    /// Serve what poll found on the entries [`ConsoleServer::poll_fds`]
    /// added (`fds`, in the same order, nothing changed in between):
    /// accept a connection, send queued output, and return the client's
    /// input, at most `room` bytes.
    pub fn ready(&mut self, fds: &[libc::pollfd], room: usize) -> Vec<u8> {
        let mut input = Vec::new();
        if let Some(c) = fds.get(1).filter(|_| self.client.is_some()) {
            let revents = c.revents;
            if revents & libc::POLLOUT != 0 {
                let r = self.client.as_mut().map_or(Ok(()), Client::flush);
                self.settle(r);
            }
            if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                let r = self.read_client(&mut input, room, revents);
                self.settle(r);
            }
        }
        if fds.first().is_some_and(|l| l.revents & libc::POLLIN != 0) {
            self.accept();
        }
        input
    }

    fn read_client(
        &mut self,
        input: &mut Vec<u8>,
        room: usize,
        revents: libc::c_short,
    ) -> std::result::Result<(), Gone> {
        let Some(c) = self.client.as_mut() else {
            return Ok(());
        };
        if room == 0 {
            // Input waits until the guest takes some; a hang-up with no
            // data left is seen now.
            if revents & libc::POLLERR != 0 {
                return Err(Gone::Error);
            }
            if revents & libc::POLLIN == 0 {
                return Err(Gone::Closed);
            }
            return Ok(());
        }
        let mut buf = [0u8; 4096];
        let want = room.min(buf.len());
        let Some(buf) = buf.get_mut(..want) else {
            return Ok(());
        };
        match (&c.stream).read(buf) {
            Ok(0) => Err(Gone::Closed),
            Ok(n) => {
                input.extend_from_slice(buf.get(..n).unwrap_or_default());
                Ok(())
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => Ok(()),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Err(Gone::Closed),
            Err(_) => Err(Gone::Error),
        }
    }

    /// Take every waiting connection; the last one keeps the console.
    fn accept(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    // E.g. out of descriptors: the guest runs on.
                    self.say(format_args!(
                        "cannot accept a console client on {}: {e}",
                        self.path.display()
                    ));
                    return;
                }
            };
            if let Err(e) = stream.set_nonblocking(true) {
                self.say(format_args!(
                    "console client refused: cannot make its socket non-blocking: {e}"
                ));
                continue;
            }
            self.connections += 1;
            let number = self.connections;
            if let Some(mut old) = self.client.take() {
                old.queue.extend(
                    format!(
                        "\r\n[colinux: console client {number} attached; detaching this one]\r\n"
                    )
                    .as_bytes(),
                );
                // Best effort: it is disconnected either way.
                let _ = old.flush();
                self.say(format_args!(
                    "console client {number} took the console over from client {}",
                    old.number
                ));
            } else {
                self.say(format_args!("console client {number} attached"));
            }
            let mut client = Client {
                stream,
                queue: VecDeque::from(self.shadow.replay()),
                number,
            };
            let r = client.flush();
            self.client = Some(client);
            self.settle(r);
        }
    }

    /// Before the daemon exits: send the client what is queued, waiting up
    /// to `limit`, then disconnect it (its `console` command then exits).
    pub fn finish(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while let Some(c) = self.client.as_mut() {
            if c.queue.is_empty() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut fds = [libc::pollfd {
                fd: c.stream.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            }];
            if crate::poll::poll(&mut fds, left).is_err() {
                break;
            }
            let r = c.flush();
            if r.is_err() {
                self.client = None;
            }
        }
        self.client = None;
    }
}

impl Drop for ConsoleServer {
    fn drop(&mut self) {
        // Only our own socket: another daemon may have replaced it since.
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_socket() && (m.dev(), m.ino()) == self.id);
        if ours {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!(
                    "cannot remove the console socket {}: {e}",
                    self.path.display()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write;

    /// One round of the daemon's wait: poll for up to `timeout`, serve.
    fn pump(s: &mut ConsoleServer, timeout: Duration) -> Vec<u8> {
        let mut fds = Vec::new();
        s.poll_fds(&mut fds, true);
        crate::poll::poll(&mut fds, timeout).unwrap();
        s.ready(&fds, 4096)
    }

    /// Pump until `cond` holds (or fail after 5 s).
    fn pump_until(s: &mut ConsoleServer, mut cond: impl FnMut(&mut ConsoleServer, &[u8]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let input = pump(s, Duration::from_millis(20));
            if cond(s, &input) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out pumping the server");
        }
    }

    /// Read from `c` until `want` was seen (or fail after 5 s).
    fn read_until(c: &mut UnixStream, got: &mut Vec<u8>, want: &[u8]) {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        while !got.windows(want.len()).any(|w| w == want) {
            let mut buf = [0u8; 4096];
            let n = c.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "closed before {:?}; got {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn late_client_gets_the_shadow_then_live_output_and_its_input_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/guest.sock");
        let mut s = ConsoleServer::bind(&path).unwrap().quiet();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);

        // Output before anyone attached: only the shadow keeps it.
        s.output(b"Linux version 6.1.176\r\n");
        s.output(b"colinux-guest: init started\r\n");
        pump(&mut s, Duration::ZERO);

        let mut c = UnixStream::connect(&path).unwrap();
        pump_until(&mut s, |s, _| s.attached());
        let mut got = Vec::new();
        read_until(&mut c, &mut got, b"init started\r\n");
        assert!(got.starts_with(b"Linux version 6.1.176\r\n"), "{got:?}");

        s.output(b"# ");
        read_until(&mut c, &mut got, b"init started\r\n# ");

        c.write_all(b"echo hi\r").unwrap();
        let mut input = Vec::new();
        pump_until(&mut s, |_, i| {
            input.extend_from_slice(i);
            input == b"echo hi\r"
        });

        // The client goes: the server notices, the guest side goes on.
        drop(c);
        pump_until(&mut s, |s, _| !s.attached());
        s.output(b"hi\r\n");

        // A new client sees everything, including what came meanwhile.
        let mut c2 = UnixStream::connect(&path).unwrap();
        pump_until(&mut s, |s, _| s.attached());
        let mut got2 = Vec::new();
        read_until(&mut c2, &mut got2, b"# hi\r\n");
        assert!(got2.starts_with(b"Linux version"), "{got2:?}");

        s.notice("guest powered off");
        s.finish(Duration::from_secs(1));
        assert!(!s.attached());
        read_until(&mut c2, &mut got2, b"guest powered off]");
        let mut rest = Vec::new();
        c2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c2.read_to_end(&mut rest).unwrap();

        drop(s);
        assert!(!path.exists(), "the socket was not removed");
    }

    #[test]
    fn a_new_client_takes_the_console_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.sock");
        let mut s = ConsoleServer::bind(&path).unwrap().quiet();
        s.output(b"boot\n");
        let mut a = UnixStream::connect(&path).unwrap();
        pump_until(&mut s, |s, _| s.attached());
        let mut b = UnixStream::connect(&path).unwrap();
        pump_until(&mut s, |s, _| s.connections == 2);

        let mut got_a = Vec::new();
        read_until(&mut a, &mut got_a, b"detaching this one]");
        let mut rest = Vec::new();
        a.read_to_end(&mut rest).unwrap(); // closed by the server
        let mut got_b = Vec::new();
        read_until(&mut b, &mut got_b, b"boot\n");

        // Only the new client's input counts.
        b.write_all(b"x").unwrap();
        let mut input = Vec::new();
        pump_until(&mut s, |_, i| {
            input.extend_from_slice(i);
            !input.is_empty()
        });
        assert_eq!(input, b"x");
    }

    #[test]
    fn a_client_that_does_not_read_is_dropped_not_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.sock");
        let mut s = ConsoleServer::with_limits(&path, 1024, 64 * 1024)
            .unwrap()
            .quiet();
        let _lazy = UnixStream::connect(&path).unwrap();
        pump_until(&mut s, |s, _| s.attached());
        // Far more than the socket buffers and the queue hold; each call
        // returns at once.
        let line = [b'x'; 1000];
        let start = Instant::now();
        for _ in 0..10_000 {
            s.output(&line);
            if !s.attached() {
                break;
            }
        }
        assert!(!s.attached(), "a client that never reads is still attached");
        assert!(start.elapsed() < Duration::from_secs(5));
        // The shadow still has the newest output for the next client.
        assert_eq!(s.shadow.len(), 1024);
    }

    #[test]
    fn refuses_a_file_and_a_live_socket_and_replaces_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, b"keep me").unwrap();
        let err = format!("{:#}", ConsoleServer::bind(&file).unwrap_err());
        assert!(err.contains("not a socket"), "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");

        let path = dir.path().join("g.sock");
        let s = ConsoleServer::bind(&path).unwrap().quiet();
        let err = format!("{:#}", ConsoleServer::bind(&path).unwrap_err());
        assert!(err.contains("running daemon"), "{err}");
        drop(s);
        assert!(!path.exists());

        // A socket left by a killed daemon: nobody listens on it.
        let stale = UnixListener::bind(&path).unwrap();
        drop(stale);
        assert!(path.exists());
        let s = ConsoleServer::bind(&path).unwrap().quiet();
        drop(s);
        assert!(!path.exists());
    }
}
