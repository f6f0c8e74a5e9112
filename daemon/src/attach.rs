//! `colinux console NAME`: attach this terminal to the console of a
//! running guest (its console socket, `cocon=` in its configuration).
//!
//! The daemon first sends the recent console output (its shadow), then the
//! live output; what is typed goes to the guest. On a terminal, stdin is in
//! raw mode while attached (every key, ctrl-C included, goes to the guest).
//! Ctrl-] (0x1d) detaches, from a terminal or any other stdin: the command
//! exits 0 and the guest keeps running. It also exits 0 when the daemon
//! closes the console (the guest stopped, or another client took over).
//! At the end of stdin (not a terminal) it stops reading it but shows the
//! output until the daemon closes the console.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{Context, Result};

use colinux_devices::cocon::{RawMode, DETACH};

use crate::signals;

/// How an attachment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Ctrl-] was typed.
    Detached,
    /// The daemon closed the console.
    Closed,
    /// A stopping signal came (its number).
    Signal(i32),
}

/// Attach stdin and stdout to the console socket at `path`; returns the
/// process's exit code.
pub fn attach(path: &Path) -> Result<i32> {
    let stream = UnixStream::connect(path).map_err(|e| {
        let why = match e.kind() {
            ErrorKind::NotFound => "no such socket: is the daemon running with --console-socket?",
            ErrorKind::ConnectionRefused => "no daemon listens on it any more",
            ErrorKind::PermissionDenied => "permission denied (the socket is its owner's only)",
            _ => "",
        };
        anyhow::Error::new(e).context(format!(
            "cannot attach to the console socket {}{}{}",
            path.display(),
            if why.is_empty() { "" } else { ": " },
            why
        ))
    })?;
    signals::catch_stop_signals()?;
    let fd = libc::STDIN_FILENO;
    let raw = RawMode::if_tty(fd)?;
    let tty = raw.is_some();
    let nl = if tty { "\r\n" } else { "\n" };
    eprint!(
        "colinux: attached to the guest console at {}; ctrl-] detaches{nl}",
        path.display()
    );
    let mut out = std::io::stdout().lock();
    let end = relay(&stream, fd, &mut out);
    drop(raw); // the terminal's settings back before the last words
    match end? {
        End::Detached => {
            eprintln!(
                "{}colinux: detached from {}; the guest keeps running",
                if tty { "\n" } else { "" },
                path.display()
            );
            Ok(0)
        }
        End::Closed => {
            eprintln!(
                "colinux: the daemon closed the console at {}",
                path.display()
            );
            Ok(0)
        }
        End::Signal(sig) => {
            eprintln!("colinux: signal {sig}: detached; the guest keeps running");
            Ok(128 + sig)
        }
    }
}

/// Copy `sock` to `out` and `input` to `sock` until ctrl-] comes on
/// `input`, the daemon closes `sock`, or a stopping signal comes.
pub fn relay(sock: &UnixStream, input: RawFd, out: &mut impl Write) -> Result<End> {
    let mut input_open = true;
    let mut buf = [0u8; 4096];
    loop {
        if let Some(sig) = signals::stop_signal() {
            return Ok(End::Signal(sig));
        }
        let mut fds = vec![libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if input_open {
            fds.push(libc::pollfd {
                fd: input,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if !colinux_devices::poll::poll(&mut fds, None)
            .context("waiting for the console or stdin")?
        {
            continue; // a signal: looked at above
        }
        let ready = |i: usize| {
            fds.get(i).is_some_and(|p| {
                p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
            })
        };
        if ready(0) {
            match (&*sock).read(&mut buf) {
                Ok(0) => return Ok(End::Closed),
                Ok(n) => {
                    out.write_all(buf.get(..n).unwrap_or_default())
                        .and_then(|()| out.flush())
                        .context("writing the guest console to stdout")?;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(End::Closed),
                Err(e) => return Err(e).context("reading the console socket"),
            }
        }
        if input_open && ready(1) {
            // SAFETY: `buf` is valid for writes of its length; `input` is
            // an open descriptor the caller owns.
            let n = unsafe { libc::read(input, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                match err.kind() {
                    ErrorKind::Interrupted | ErrorKind::WouldBlock => {}
                    _ => {
                        tracing::warn!("stdin: {err}; not reading it any more");
                        input_open = false;
                    }
                }
                continue;
            }
            let got = buf.get(..n as usize).unwrap_or_default();
            if got.is_empty() {
                input_open = false;
                continue;
            }
            let (typed, detach) = match got.iter().position(|&b| b == DETACH) {
                Some(at) => (got.get(..at).unwrap_or_default(), true),
                None => (got, false),
            };
            match (&*sock).write_all(typed) {
                Ok(()) => {}
                Err(e)
                    if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) =>
                {
                    return Ok(End::Closed)
                }
                Err(e) => return Err(e).context("sending input to the console socket"),
            }
            if detach {
                return Ok(End::Detached);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use colinux_devices::cocon::ConsoleServer;
    use std::time::{Duration, Instant};

    #[test]
    fn ctrl_bracket_detaches_after_sending_what_came_before_it() {
        let (client, mut daemon) = UnixStream::pair().unwrap();
        let (input, mut typist) = UnixStream::pair().unwrap();
        typist.write_all(b"ls\r\x1dnot sent").unwrap();
        let mut out = Vec::new();
        let end = relay(&client, input.as_raw_fd(), &mut out).unwrap();
        assert_eq!(end, End::Detached);
        drop(client);
        let mut sent = Vec::new();
        daemon.read_to_end(&mut sent).unwrap();
        assert_eq!(sent, b"ls\r");
    }

    #[test]
    fn shows_output_until_the_daemon_closes_even_after_the_end_of_stdin() {
        let (client, mut daemon) = UnixStream::pair().unwrap();
        let (input, typist) = UnixStream::pair().unwrap();
        drop(typist); // stdin at its end at once
        daemon.write_all(b"reboot: Power down\r\n").unwrap();
        drop(daemon);
        let mut out = Vec::new();
        let end = relay(&client, input.as_raw_fd(), &mut out).unwrap();
        assert_eq!(end, End::Closed);
        assert_eq!(out, b"reboot: Power down\r\n");
    }

    /// The client against the real server, driven like the daemon's run
    /// loop drives it, with fake guest output.
    #[test]
    fn attach_late_type_detach_and_attach_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guest.sock");
        let mut server = ConsoleServer::bind(&path).unwrap();
        server.output(b"Linux version 6.1.176 (fake)\r\n");
        server.output(b"colinux-guest: init started\r\n/ # ");

        let run_client = |typed: &'static [u8]| {
            let path = path.clone();
            std::thread::spawn(move || {
                let sock = UnixStream::connect(&path).unwrap();
                let (input, mut typist) = UnixStream::pair().unwrap();
                let typer = std::thread::spawn(move || {
                    for chunk in typed.split_inclusive(|&b| b == b'\r') {
                        std::thread::sleep(Duration::from_millis(300));
                        typist.write_all(chunk).unwrap();
                    }
                    std::thread::sleep(Duration::from_secs(10));
                });
                let mut out = Vec::new();
                let end = relay(&sock, input.as_raw_fd(), &mut out).unwrap();
                drop(typer);
                (end, out)
            })
        };

        // The fake guest: echoes what it is sent, answers `echo`.
        let guest = |server: &mut ConsoleServer, until: &dyn Fn() -> bool| {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut line = Vec::new();
            while !until() {
                assert!(Instant::now() < deadline, "timed out");
                let mut fds = Vec::new();
                server.poll_fds(&mut fds, true);
                colinux_devices::poll::poll(&mut fds, Duration::from_millis(20)).unwrap();
                for b in server.ready(&fds, 4096) {
                    if b == b'\r' {
                        let l = String::from_utf8_lossy(&line).into_owned();
                        server.output(b"\r\n");
                        if let Some(rest) = l.strip_prefix("echo ") {
                            server.output(format!("{rest}\r\n/ # ").as_bytes());
                        }
                        line.clear();
                    } else {
                        line.push(b);
                        server.output(&[b]);
                    }
                }
            }
        };

        let first = run_client(b"echo attached-42\r\x1d");
        guest(&mut server, &|| first.is_finished());
        let (end, out) = first.join().unwrap();
        let out = String::from_utf8_lossy(&out).into_owned();
        assert_eq!(end, End::Detached);
        assert!(out.starts_with("Linux version"), "{out}");
        assert!(out.contains("\r\nattached-42\r\n"), "{out}");

        // Detached: the guest runs on, and a second client sees it all.
        let second = run_client(b"echo again\r");
        let start = Instant::now();
        guest(&mut server, &|| start.elapsed() > Duration::from_secs(2));
        server.notice("guest powered off");
        server.finish(Duration::from_secs(1));
        let (end, out) = second.join().unwrap();
        let out = String::from_utf8_lossy(&out).into_owned();
        assert_eq!(end, End::Closed);
        assert!(
            out.contains("attached-42") && out.contains("\r\nagain\r\n"),
            "{out}"
        );
        assert!(out.ends_with("[colinux: guest powered off]\r\n"), "{out}");
    }
}
