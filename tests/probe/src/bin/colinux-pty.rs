//! `colinux-pty`: run a command on a new pseudo-terminal and drive it from a
//! script, as a user at a terminal would — for testing `colinux run` in the
//! foreground inside the QEMU test host, whose busybox has no `script` or
//! `expect`.
//!
//! ```text
//! colinux-pty [--timeout S] STEPS -- COMMAND [ARG…]
//! ```
//!
//! The command gets the terminal's slave side as stdin, stdout and stderr,
//! in its own session with the terminal as its controlling terminal (so a
//! ctrl-C typed in cooked mode would be SIGINT to it). The terminal starts
//! in the usual cooked mode with echo. Everything the command writes is
//! copied to our stdout. STEPS is a file of lines:
//!
//! - `expect TEXT` — wait (up to the timeout) until TEXT appears in the
//!   output after what earlier steps matched;
//! - `send TEXT` — type TEXT (escapes: `\r`, `\n`, `\\`, `\xNN`);
//! - `until SECONDS TEXT SEND…` — type SEND every second until TEXT appears,
//!   for at most SECONDS;
//! - `sleep MS`.
//!
//! Then it waits for the command to exit and reports on stderr, one fact a
//! line: `colinux-pty: step N failed: …`, `colinux-pty: exit STATUS`
//! (128+N for signal N) and `colinux-pty: terminal restored yes|no` (the
//! terminal's settings after the command exited against those before it
//! started). Exit status: 0 when every step passed and the command exited,
//! 1 otherwise.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
enum Step {
    Expect(Vec<u8>),
    Send(Vec<u8>),
    Until(Duration, Vec<u8>, Vec<u8>),
    Sleep(Duration),
}

fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex = s.get(i + 2..i + 4).ok_or(format!("short \\x in {s:?}"))?;
                out.push(u8::from_str_radix(hex, 16).map_err(|e| format!("\\x{hex}: {e}"))?);
                i += 2;
            }
            _ => return Err(format!("unknown escape in {s:?}")),
        }
        i += 2;
    }
    Ok(out)
}

fn parse_steps(text: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("steps line {}: {e}", n + 1);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        let step = match verb {
            "expect" => Step::Expect(unescape(rest).map_err(at)?),
            "send" => Step::Send(unescape(rest).map_err(at)?),
            "sleep" => Step::Sleep(Duration::from_millis(
                rest.trim().parse().map_err(|e| at(format!("sleep: {e}")))?,
            )),
            "until" => {
                let mut w = rest.splitn(3, ' ');
                let (Some(secs), Some(text), Some(send)) = (w.next(), w.next(), w.next()) else {
                    return Err(at("until SECONDS TEXT SEND".into()));
                };
                Step::Until(
                    Duration::from_secs(secs.parse().map_err(|e| at(format!("until: {e}")))?),
                    unescape(text).map_err(at)?,
                    unescape(send).map_err(at)?,
                )
            }
            _ => return Err(at(format!("unknown step {verb:?}"))),
        };
        steps.push(step);
    }
    Ok(steps)
}

/// The terminal, both sides.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

fn open_pty() -> std::io::Result<Pty> {
    let (mut m, mut s) = (-1, -1);
    // SAFETY: openpty writes two descriptors; the name, termios and window
    // size arguments may be null.
    if unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just opened and are ours alone.
    Ok(unsafe {
        Pty {
            master: OwnedFd::from_raw_fd(m),
            slave: OwnedFd::from_raw_fd(s),
        }
    })
}

fn termios(fd: i32) -> std::io::Result<libc::termios> {
    // SAFETY: termios is plain data, overwritten by tcgetattr.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a valid termios to write; `fd` is open.
    if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(t)
}

fn same_settings(a: &libc::termios, b: &libc::termios) -> bool {
    a.c_iflag == b.c_iflag
        && a.c_oflag == b.c_oflag
        && a.c_cflag == b.c_cflag
        && a.c_lflag == b.c_lflag
        && a.c_cc[libc::VMIN] == b.c_cc[libc::VMIN]
        && a.c_cc[libc::VTIME] == b.c_cc[libc::VTIME]
}

/// The output seen so far and where the next `expect` starts.
struct Screen {
    seen: Vec<u8>,
    from: usize,
}

impl Screen {
    /// Read what the command wrote, for up to `wait`; false at the end.
    fn pump(&mut self, master: i32, wait: Duration) -> bool {
        let mut p = libc::pollfd {
            fd: master,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, ms) } <= 0 {
            return true;
        }
        let mut buf = [0u8; 4096];
        // SAFETY: reads into a buffer of its length.
        let n = unsafe { libc::read(master, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return false;
        }
        let got = &buf[..n as usize];
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(got).and_then(|()| out.flush());
        self.seen.extend_from_slice(got);
        true
    }

    fn take(&mut self, text: &[u8]) -> bool {
        let hay = &self.seen[self.from..];
        match hay.windows(text.len().max(1)).position(|w| w == text) {
            Some(at) => {
                self.from += at + text.len();
                true
            }
            None => false,
        }
    }
}

fn send(master: i32, data: &[u8]) -> bool {
    // SAFETY: writes from a buffer of its length.
    let n = unsafe { libc::write(master, data.as_ptr().cast(), data.len()) };
    n == data.len() as isize
}

fn run(timeout: Duration, steps: &[Step], command: &[String]) -> Result<Report, String> {
    let pty = open_pty().map_err(|e| format!("openpty: {e}"))?;
    let before = termios(pty.slave.as_raw_fd()).map_err(|e| format!("tcgetattr: {e}"))?;
    let slave = || {
        pty.slave
            .try_clone()
            .map(Stdio::from)
            .map_err(|e| format!("dup: {e}"))
    };
    let (program, args) = command.split_first().ok_or("no command given")?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(slave()?)
        .stdout(slave()?)
        .stderr(slave()?);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let master = pty.master.as_raw_fd();
    let mut screen = Screen {
        seen: Vec::new(),
        from: 0,
    };
    let mut ok = true;
    for (n, step) in steps.iter().enumerate() {
        let passed = match step {
            Step::Expect(text) => {
                let end = Instant::now() + timeout;
                loop {
                    if screen.take(text) {
                        break true;
                    }
                    if Instant::now() > end || !screen.pump(master, Duration::from_millis(100)) {
                        break false;
                    }
                }
            }
            Step::Send(data) => send(master, data),
            Step::Until(limit, text, data) => {
                let end = Instant::now() + *limit;
                let mut next = Instant::now();
                loop {
                    if screen.take(text) {
                        break true;
                    }
                    if Instant::now() > end {
                        break false;
                    }
                    if Instant::now() >= next {
                        send(master, data);
                        next = Instant::now() + Duration::from_secs(1);
                    }
                    screen.pump(master, Duration::from_millis(100));
                }
            }
            Step::Sleep(d) => {
                let end = Instant::now() + *d;
                while Instant::now() < end {
                    screen.pump(master, Duration::from_millis(50));
                }
                true
            }
        };
        if !passed {
            eprintln!("colinux-pty: step {} failed: {step:?}", n + 1);
            ok = false;
            let _ = child.kill();
            break;
        }
    }
    let end = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() > end => {
                eprintln!("colinux-pty: the command did not exit within {timeout:?}");
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => {
                screen.pump(master, Duration::from_millis(100));
            }
            Err(e) => return Err(format!("wait: {e}")),
        }
    };
    // What it wrote last.
    let drain_end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < drain_end && screen.pump(master, Duration::from_millis(200)) {}
    let after = termios(pty.slave.as_raw_fd()).map_err(|e| format!("tcgetattr: {e}"))?;
    Ok(Report {
        steps_passed: ok,
        exit: status.map(|s| s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))),
        restored: same_settings(&before, &after),
    })
}

/// What happened.
#[derive(Debug, PartialEq, Eq)]
struct Report {
    steps_passed: bool,
    /// The command's exit status (128+N for signal N); None: it was killed
    /// after the timeout.
    exit: Option<i32>,
    /// The terminal's settings were as before the command.
    restored: bool,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut timeout = Duration::from_secs(120);
    let mut rest = args.as_slice();
    if let [flag, secs, tail @ ..] = rest {
        if flag == "--timeout" {
            match secs.parse() {
                Ok(s) => timeout = Duration::from_secs(s),
                Err(e) => {
                    eprintln!("colinux-pty: --timeout {secs}: {e}");
                    return ExitCode::FAILURE;
                }
            }
            rest = tail;
        }
    }
    let (Some(steps_file), Some("--")) = (rest.first(), rest.get(1).map(String::as_str)) else {
        eprintln!("usage: colinux-pty [--timeout S] STEPS -- COMMAND [ARG…]");
        return ExitCode::FAILURE;
    };
    let steps = match std::fs::read_to_string(steps_file)
        .map_err(|e| format!("{steps_file}: {e}"))
        .and_then(|t| parse_steps(&t))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("colinux-pty: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(timeout, &steps, &rest[2..]) {
        Ok(r) => {
            if let Some(code) = r.exit {
                eprintln!("colinux-pty: exit {code}");
            }
            let word = if r.restored { "yes" } else { "no" };
            eprintln!("colinux-pty: terminal restored {word}");
            if r.steps_passed && r.exit.is_some() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("colinux-pty: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn steps_parse_with_escapes() {
        let s = parse_steps("# c\nexpect a b\nsend x\\r\\x1d\nuntil 5 ok echo ok\\r\nsleep 10\n")
            .unwrap();
        assert!(matches!(&s[0], Step::Expect(t) if t == b"a b"));
        assert!(matches!(&s[1], Step::Send(t) if t == b"x\r\x1d"));
        assert!(
            matches!(&s[2], Step::Until(d, t, x) if *d == Duration::from_secs(5) && t == b"ok" && x == b"echo ok\r")
        );
        assert!(parse_steps("frob\n").is_err());
        assert!(parse_steps("send \\q\n").is_err());
    }

    #[test]
    fn a_shell_on_the_pty_is_driven_and_raw_mode_left_on_is_reported() {
        // A shell that answers, then leaves the terminal raw.
        let steps =
            parse_steps("until 10 answer-42 echo answer-$((6*7))\\r\nsend stty raw; exit 3\\r\n")
                .unwrap();
        let r = run(Duration::from_secs(20), &steps, &["/bin/sh".to_string()]).unwrap();
        assert_eq!(
            r,
            Report {
                steps_passed: true,
                exit: Some(3),
                restored: false
            }
        );
        let steps =
            parse_steps("until 10 answer-42 echo answer-$((6*7))\\r\nsend exit 0\\r\n").unwrap();
        let r = run(Duration::from_secs(20), &steps, &["/bin/sh".to_string()]).unwrap();
        assert_eq!((r.exit, r.restored), (Some(0), true));
        let steps = parse_steps("expect never-printed\n").unwrap();
        let r = run(Duration::from_secs(1), &steps, &["/bin/cat".to_string()]).unwrap();
        assert!(!r.steps_passed);
    }
}
