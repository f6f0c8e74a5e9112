//! A helper program a device's back end starts and supervises (passt for
//! conet, virtiofsd for cofs): started with one descriptor of ours kept
//! open across exec and `PR_SET_PDEATHSIG`, its stderr logged line by line
//! (the last lines kept for error messages), its exit reported the moment
//! it happens unless the daemon ended it, and stopped — politely, then
//! with SIGKILL — when the device goes.

use std::io::{BufRead, BufReader};
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How long a helper may take to end after its connection closed, before
/// SIGKILL (and as long again after it).
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Lines of a helper's output kept for error messages.
const KEEP_LINES: usize = 20;

/// What a helper is, for its messages.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// The program's name (`passt`).
    pub what: &'static str,
    /// What its unexpected exit means for the guest.
    pub down: &'static str,
    /// Whether a line of its output is worth the daemon's log.
    pub interesting: fn(&str) -> bool,
}

/// A running helper.
#[derive(Debug)]
pub struct Helper {
    /// The device it serves (`eth0`, `cofs1`).
    owner: String,
    kind: Kind,
    pid: u32,
    /// Its exit status once reaped (only with this lock held).
    state: Arc<Mutex<Option<ExitStatus>>>,
    /// Set before the daemon ends it itself (its exit is then no news).
    stopping: Arc<AtomicBool>,
    lines: Arc<Mutex<Vec<String>>>,
    waiter: Option<JoinHandle<()>>,
    logger: Option<JoinHandle<()>>,
}

impl Helper {
    /// Start `cmd` (its program is `program`) for `owner`, keeping `keep`
    /// open across exec; stdin and stdout are null, stderr is logged.
    pub fn spawn(
        owner: &str,
        kind: Kind,
        program: &Path,
        mut cmd: Command,
        keep: RawFd,
    ) -> Result<Helper> {
        let what = kind.what;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: between fork and exec the closure only makes two system
        // calls on plain integers (async-signal-safe): `keep` stays open
        // across exec, and the helper is told to end with the daemon's
        // thread that started it.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(keep, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("{owner}: cannot start {}", program.display()))?;
        let pid = child.id();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let logger = child.stderr.take().map(|err| {
            let (lines, owner) = (lines.clone(), owner.to_string());
            std::thread::Builder::new()
                .name(format!("{owner}-{what}-log"))
                .spawn(move || {
                    for line in BufReader::new(err).lines() {
                        let Ok(line) = line else { break };
                        let line = line.trim_end().to_string();
                        if !(kind.interesting)(&line) {
                            continue;
                        }
                        tracing::info!("{owner}: {what}: {line}");
                        if let Ok(mut l) = lines.lock() {
                            if l.len() == KEEP_LINES {
                                l.remove(0);
                            }
                            l.push(line);
                        }
                    }
                })
        });
        let logger = match logger {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e).with_context(|| format!("cannot start a thread for {what}'s log"));
            }
            None => None,
        };
        let state = Arc::new(Mutex::new(None));
        let stopping = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (state, stopping, owner, lines) = (
                state.clone(),
                stopping.clone(),
                owner.to_string(),
                lines.clone(),
            );
            std::thread::Builder::new()
                .name(format!("{owner}-{what}"))
                .spawn(move || supervise(child, &owner, kind, &state, &stopping, &lines))
                .with_context(|| format!("cannot start a thread to watch {what}"))?
        };
        Ok(Helper {
            owner: owner.to_string(),
            kind,
            pid,
            state,
            stopping,
            lines,
            waiter: Some(waiter),
            logger,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// How it ended, if it has.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.state.lock().ok().and_then(|s| *s)
    }

    /// Its last lines of output, for an error message (`: a / b`, or
    /// nothing).
    pub fn last_words(&self) -> String {
        let lines = self.lines.lock().map(|l| l.clone()).unwrap_or_default();
        if lines.is_empty() {
            String::new()
        } else {
            format!(": {}", lines.join(" / "))
        }
    }

    /// End it (its connection should be closed first: it then exits by
    /// itself); wait for it.
    pub fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let until = Instant::now() + STOP_GRACE;
        let mut signalled = false;
        while self.exit_status().is_none() {
            if Instant::now() >= until && !signalled {
                self.signal(libc::SIGKILL);
                signalled = true;
            }
            if Instant::now() >= until + STOP_GRACE {
                tracing::error!(
                    "{}: {} (pid {}) does not end",
                    self.owner,
                    self.kind.what,
                    self.pid
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(w) = self.waiter.take() {
            let _ = w.join();
        }
        if let Some(l) = self.logger.take() {
            let _ = l.join();
        }
    }

    fn signal(&self, sig: i32) {
        // The child is reaped only with the state's lock held, after the
        // status is set: while it is unset, the pid is still the helper's.
        if let Ok(s) = self.state.lock() {
            if s.is_none() {
                if let Ok(pid) = libc::pid_t::try_from(self.pid) {
                    // SAFETY: kill with plain integers, on our own child
                    // not yet reaped.
                    unsafe { libc::kill(pid, sig) };
                }
            }
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if self.waiter.is_some() {
            self.stop();
        }
    }
}

/// The supervisor thread: wait for the helper to exit (without reaping
/// it), then reap it with the state locked and report the exit.
fn supervise(
    mut child: Child,
    owner: &str,
    kind: Kind,
    state: &Mutex<Option<ExitStatus>>,
    stopping: &AtomicBool,
    lines: &Mutex<Vec<String>>,
) {
    let what = kind.what;
    let pid: libc::id_t = child.id();
    loop {
        // SAFETY: an all-zero siginfo_t is a valid value for waitid to
        // fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own child with a valid siginfo pointer;
        // WNOWAIT leaves it unreaped.
        let rc =
            unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 {
            break;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break;
        }
    }
    let Ok(mut s) = state.lock() else { return };
    let status = match child.wait() {
        Ok(status) => status,
        Err(e) => {
            tracing::error!("{owner}: cannot wait for {what}: {e}");
            return;
        }
    };
    *s = Some(status);
    drop(s);
    if !stopping.load(Ordering::SeqCst) {
        // Give the log thread a moment for its last lines.
        std::thread::sleep(Duration::from_millis(50));
        let words = lines.lock().map(|l| l.join(" / ")).unwrap_or_default();
        tracing::error!(
            "{owner}: {what} exited ({status}): {}{}",
            kind.down,
            if words.is_empty() {
                String::new()
            } else {
                format!(" ({what} said: {words})")
            }
        );
    } else {
        tracing::debug!("{owner}: {what} ended ({status})");
    }
}
