//! cocon, the guest's console: what the guest writes goes to the
//! terminal (stdout) and to the client attached on the console socket
//! ([`server`], with the [`shadow`] of recent output for clients that come
//! late); what is typed on the terminal ([`stdin`]) or by the client goes
//! into the guest's input ring.

pub mod log;
pub mod server;
pub mod shadow;
pub mod stdin;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

pub use log::ConsoleLog;
pub use server::ConsoleServer;
pub use stdin::{Console, RawMode, DETACH};

use crate::Device;

/// The guest module number of console output (`COOPERATIVE_MODULE_CONSOLE`).
pub const MODULE: u32 = colinux_abi::COOPERATIVE_MODULE_CONSOLE;

/// How long output queued for a client may take to drain at the end.
const CLIENT_FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// The console device: the terminal (or, for a detached guest, its
/// console log) and, optionally, the console socket.
#[derive(Debug)]
pub struct Cocon {
    stdin: Console,
    server: Option<ConsoleServer>,
    log: Option<ConsoleLog>,
}

impl Cocon {
    /// The console on this process's stdin and stdout (a terminal is put in
    /// raw mode until [`Device::finish`]), and on `server`'s socket.
    pub fn new(server: Option<ConsoleServer>) -> Result<Cocon> {
        Ok(Cocon {
            stdin: Console::stdin()?,
            server,
            log: None,
        })
    }

    /// Output goes to `log` instead of stdout (a detached guest).
    pub fn with_log(mut self, log: ConsoleLog) -> Cocon {
        self.log = Some(log);
        self
    }

    /// Whether stdin is a terminal.
    pub fn is_tty(&self) -> bool {
        self.stdin.is_tty()
    }

    /// The console socket, if there is one.
    pub fn socket(&self) -> Option<&Path> {
        self.server.as_ref().map(ConsoleServer::path)
    }

    fn output(&mut self, data: &[u8], what: &str) -> Result<()> {
        if let Some(log) = &mut self.log {
            return log.write(data);
        }
        let mut out = std::io::stdout().lock();
        out.write_all(data)
            .and_then(|()| out.flush())
            .with_context(|| format!("writing the guest's {what} to stdout"))
    }
}

impl Device for Cocon {
    fn name(&self) -> &'static str {
        "cocon"
    }

    fn poll_fds(&self, fds: &mut Vec<libc::pollfd>) {
        fds.extend(self.stdin.poll_fd());
        if let Some(s) = &self.server {
            s.poll_fds(fds, self.stdin.room() > 0);
        }
    }

    fn ready(&mut self, fds: &[libc::pollfd]) -> Result<()> {
        // The same entries poll_fds added: stdin's first, if it was polled.
        let mut rest = fds;
        if self.stdin.poll_fd().is_some() {
            if let Some((p, after)) = fds.split_first() {
                self.stdin.ready(p.revents)?;
                rest = after;
            }
        }
        if let Some(s) = &mut self.server {
            let input = s.ready(rest, self.stdin.room());
            self.stdin.push_input(&input);
        }
        Ok(())
    }

    fn message(&mut self, module: u32, data: &[u8]) -> Result<bool> {
        if module != MODULE {
            return Ok(false);
        }
        self.output(data, "console")?;
        if let Some(s) = &mut self.server {
            s.output(data);
        }
        Ok(true)
    }

    fn debug_line(&mut self, line: &[u8]) -> Result<()> {
        self.output(line, "debug output")?;
        self.output(b"\n", "debug output")?;
        if let Some(s) = &mut self.server {
            s.output(line);
            s.output(b"\r\n");
        }
        Ok(())
    }

    fn console_input(&self) -> &[u8] {
        self.stdin.pending()
    }

    fn console_taken(&mut self, n: usize) {
        self.stdin.consume(n);
    }

    fn end_requested(&self) -> Option<&'static str> {
        self.stdin.detached().then_some("ctrl-] on the terminal")
    }

    fn notice(&mut self, line: &str) {
        if let Some(s) = &mut self.server {
            s.notice(line);
        }
    }

    fn finish(&mut self) {
        // The terminal's settings back before anything more is printed.
        self.stdin.release_terminal();
        if let Some(s) = &mut self.server {
            s.finish(CLIENT_FLUSH_LIMIT);
        }
    }
}
