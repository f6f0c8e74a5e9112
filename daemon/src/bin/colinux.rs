//! `colinux`: run named cooperative Linux guests, list them, attach to
//! their consoles, stop them. A thin command line over the
//! `colinux_daemon` library.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use colinux_daemon::config::{Origin, Settings};
use colinux_daemon::lifecycle::State;
use colinux_daemon::{attach, control, launch, registry};

/// Run cooperative Linux guests beside the host kernel.
///
/// Each guest is its own process with its own RAM, console and devices,
/// named and listed under the run directory (/run/colinux for root,
/// $COLINUX_RUN_DIR to choose another). Starting a guest needs root: a
/// cooperative guest kernel runs in ring 0 beside the host's, so /dev/colinux
/// is root's alone.
#[derive(Debug, Parser)]
#[command(name = "colinux", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a guest from a TOML file, a coLinux `@file`, or NAME=VALUE
    /// words.
    ///
    /// Settings are read in order, later ones overriding earlier ones: an
    /// optional TOML configuration first (docs/config.md), then `@FILE`s
    /// (coLinux syntax: NAME=VALUE words, `#` comments) and words. Keys:
    /// name=, kernel=, initrd=, mem= (MiB), cocon= (the console socket),
    /// cobdN=PATH[,ro] (disks: image files or host block devices), ethN=,
    /// cofsN=DIR[,ro] (shared host directories: `mount -t virtiofs cofsN`
    /// in the guest; needs virtiofsd). Other words (e.g. `root=/dev/cobd0 ro`)
    /// are appended to the guest's kernel command line; root=/dev/cobdN is
    /// mapped to the guest's name for that disk. Defaults: the name from the configuration file (else
    /// "colinux"), a quarter of the host's RAM, the console socket
    /// /run/colinux/NAME/console.sock.
    ///
    /// In the foreground the guest's console is this terminal (ctrl-] ends
    /// the guest). With --detach the guest runs in the background and `run`
    /// returns once it is started, or says why it could not start.
    ///
    /// Exit status (foreground): 0 when the guest powers off, halts or
    /// reboots; 2 when it panics or ends otherwise; 3 when it faults; 137
    /// when `colinux kill` ended it; 128+N on signal N; 1 on errors. With
    /// --detach: 0 started, 1 not started.
    #[command(verbatim_doc_comment)]
    Run {
        /// Run in the background
        #[arg(long, short)]
        detach: bool,
        /// The host driver's device
        #[arg(long, default_value = "/dev/colinux")]
        device: PathBuf,
        /// [CONFIG.toml] [@FILE…] [NAME=VALUE…]
        #[arg(value_name = "SETTING")]
        settings: Vec<String>,
    },
    /// List the running guests: name, state, memory, uptime, console
    /// socket.
    List {
        /// Also the guests that ended (and how) or died, whose records are
        /// still in the run directory
        #[arg(long, short)]
        all: bool,
    },
    /// Attach this terminal to a guest's console.
    ///
    /// Shows the recent console output, then the live output, and sends
    /// what is typed to the guest. Ctrl-] detaches; the guest keeps
    /// running.
    Console {
        /// The guest's name
        name: String,
    },
    /// Stop a guest cleanly: it is asked to power off, as by its power
    /// button, and runs its own shutdown.
    ///
    /// After --timeout seconds, or at once with --force, the guest is ended
    /// as by `colinux kill`. Exit status: 0 when the guest shut itself
    /// down, 2 when it had to be ended, 1 on errors.
    Stop {
        /// The guest's name
        name: String,
        /// Seconds to wait for the guest's own shutdown
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// End the guest at once
        #[arg(long)]
        force: bool,
    },
    /// End a guest now, without its shutdown.
    Kill {
        /// The guest's name
        name: String,
    },
    /// Write the man page or a shell's completions to stdout (for
    /// packaging), from the same definitions as this help.
    #[command(hide = true)]
    Generate {
        /// `man`, or a shell: bash, zsh, fish, elvish, powershell
        what: String,
    },
}

/// Set in a detached guest's process: the descriptor to say `started` (or
/// the error) on.
const NOTIFY_ENV: &str = "COLINUX_NOTIFY_FD";

fn main() -> ExitCode {
    colinux_daemon::init_logging();
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("colinux: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<i32> {
    match command {
        Command::Run {
            detach,
            device,
            settings,
        } => run(&registry::run_dir()?, &settings, device, detach),
        Command::List { all } => list(&registry::run_dir()?, all),
        Command::Console { name } => {
            let r = registry::find(&registry::run_dir()?, &name)?;
            attach::attach(&r.console_socket)
        }
        Command::Stop {
            name,
            timeout,
            force,
        } => stop(&registry::run_dir()?, &name, timeout, force),
        Command::Kill { name } => kill(&registry::run_dir()?, &name),
        Command::Generate { what } => {
            generate(&what)?;
            Ok(0)
        }
    }
}

/// `colinux generate WHAT`.
fn generate(what: &str) -> Result<()> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    if what == "man" {
        return clap_mangen::Man::new(cmd)
            .render(&mut out)
            .context("writing the man page");
    }
    let shell: clap_complete::Shell = what.parse().map_err(|_| {
        anyhow::anyhow!("{what:?}: not `man` or a shell (bash, zsh, fish, elvish, powershell)")
    })?;
    clap_complete::generate(shell, &mut cmd, "colinux", &mut out);
    Ok(())
}

/// The settings words in order, into [`Settings`].
fn settings(words: &[String]) -> Result<Settings> {
    let mut s = Settings::default();
    for (i, w) in words.iter().enumerate() {
        if let Some(file) = w.strip_prefix('@') {
            s.apply_colinux_file(Path::new(file))?;
        } else if i == 0 && !w.contains('=') {
            s.apply_toml(Path::new(w))?;
        } else {
            s.apply_word(w, Origin::Word(i + 1), None)?;
        }
    }
    Ok(s)
}

fn run(run_dir: &Path, words: &[String], device: PathBuf, detach: bool) -> Result<i32> {
    // In a detached guest's process: report to the parent.
    let notify = match std::env::var(NOTIFY_ENV) {
        Ok(fd) => {
            let fd: i32 = fd.parse().context("bad COLINUX_NOTIFY_FD")?;
            // SAFETY: the parent passed this descriptor open for us alone.
            Some(unsafe { std::fs::File::from_raw_fd(fd) })
        }
        Err(_) => None,
    };
    let config = settings(words).and_then(|s| s.resolve(&launch::defaults(run_dir)?));
    let config = match (config, notify) {
        (Ok(c), notify) if !detach => {
            return launch_here(run_dir, c, device, notify);
        }
        (Ok(c), _) => c,
        (Err(e), Some(mut n)) => {
            use std::io::Write;
            let _ = writeln!(n, "error: {e:#}");
            return Err(e);
        }
        (Err(e), None) => return Err(e),
    };
    // --detach: the same command again, in its own session, reporting on a
    // socket pair; we wait for its word.
    if let Ok(r) = registry::find(run_dir, &config.name) {
        bail!(
            "a guest named {} is already running (pid {})",
            r.name,
            r.pid
        );
    }
    let (mut ours, theirs) =
        std::os::unix::net::UnixStream::pair().context("cannot make a socket pair")?;
    let exe = std::env::current_exe().context("cannot find the colinux executable")?;
    let theirs_fd = theirs.as_raw_fd();
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("run")
        .arg("--device")
        .arg(&device)
        .args(words)
        .env(NOTIFY_ENV, "3")
        .env("COLINUX_RUN_DIR", run_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe calls: setsid
    // and dup2 of a descriptor this process keeps open until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::dup2(theirs_fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the guest's process")?;
    drop(theirs);
    ours.set_read_timeout(Some(Duration::from_secs(300)))?;
    let mut line = String::new();
    BufReader::new(&mut ours)
        .read_line(&mut line)
        .context("waiting for the guest's process")?;
    match line.trim() {
        "started" => {
            println!(
                "guest {} started (pid {}); console: colinux console {}",
                config.name,
                child.id(),
                config.name
            );
            Ok(0)
        }
        other => {
            let status = child.wait().ok();
            let why = other.strip_prefix("error: ").unwrap_or(other);
            if why.is_empty() {
                let log = registry::guest_dir(run_dir, &config.name).join("daemon.log");
                bail!(
                    "the guest's process ended ({}) before the guest started; see {}",
                    status.map(|s| s.to_string()).unwrap_or_default(),
                    log.display()
                );
            }
            bail!("{why}")
        }
    }
}

/// Run the guest in this process (the foreground, or a detached child).
fn launch_here(
    run_dir: &Path,
    config: colinux_daemon::config::GuestConfig,
    device: PathBuf,
    mut notify: Option<std::fs::File>,
) -> Result<i32> {
    let detached = notify.is_some();
    let result = launch::run(launch::Launch {
        config,
        device,
        run_dir: run_dir.to_path_buf(),
        notify: notify.as_ref().and_then(|f| f.try_clone().ok()),
        detached,
    });
    if let (Err(e), Some(n)) = (&result, notify.as_mut()) {
        use std::io::Write;
        let _ = writeln!(n, "error: {e:#}");
    }
    Ok(result?.code)
}

fn list(run_dir: &Path, all: bool) -> Result<i32> {
    let guests = registry::list_all(run_dir)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    println!(
        "{:<16} {:<9} {:>8} {:>10}  CONSOLE",
        "NAME", "STATE", "MEMORY", "UPTIME"
    );
    for (g, alive) in guests {
        if !alive && !all {
            continue;
        }
        let up = now.saturating_sub(g.started);
        let (state, rest) = match (&g.state, alive) {
            (_, true) => (g.state.word(), g.console_socket.display().to_string()),
            (State::Ended(end), false) => {
                ("ended", format!("{} (exit status {})", end.why, end.code))
            }
            (_, false) => (
                "dead",
                "its process ended without recording how".to_string(),
            ),
        };
        let uptime = if alive {
            format!("{}:{:02}:{:02}", up / 3600, up / 60 % 60, up % 60)
        } else {
            "-".to_string()
        };
        println!(
            "{:<16} {:<9} {:>5} MiB {:>10}  {rest}",
            g.name, state, g.memory, uptime
        );
    }
    Ok(0)
}

/// How guest `name` ended, from its last record.
fn how_it_ended(run_dir: &Path, name: &str) -> String {
    let last = registry::list_all(run_dir)
        .unwrap_or_default()
        .into_iter()
        .find(|(r, _)| r.name == name);
    match last.map(|(r, _)| r.state) {
        Some(State::Ended(end)) => end.why,
        _ => "its process ended without recording how".into(),
    }
}

/// Wait until the guest named `name` is gone; false on time-out.
fn wait_gone(run_dir: &Path, name: &str, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if registry::find(run_dir, name).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    registry::find(run_dir, name).is_err()
}

/// End guest `name` now; 0.
fn kill(run_dir: &Path, name: &str) -> Result<i32> {
    let r = registry::find(run_dir, name)?;
    let sock = registry::guest_dir(run_dir, name).join("control.sock");
    if let Err(e) = control::request(&sock, "kill") {
        tracing::warn!("{e:#}; sending SIGKILL to pid {}", r.pid);
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(r.pid as i32, libc::SIGKILL);
        }
    }
    if !wait_gone(run_dir, name, Duration::from_secs(10)) {
        // SAFETY: as above.
        unsafe {
            libc::kill(r.pid as i32, libc::SIGKILL);
        }
        if !wait_gone(run_dir, name, Duration::from_secs(10)) {
            bail!("guest {name} (pid {}) does not end", r.pid);
        }
    }
    println!("guest {name} ended: {}", how_it_ended(run_dir, name));
    Ok(0)
}

fn stop(run_dir: &Path, name: &str, timeout: u64, force: bool) -> Result<i32> {
    registry::find(run_dir, name)?;
    if !force {
        let sock = registry::guest_dir(run_dir, name).join("control.sock");
        control::request(&sock, "stop").with_context(|| {
            format!("cannot ask guest {name} to stop (`colinux stop --force {name}` ends it)")
        })?;
        if wait_gone(run_dir, name, Duration::from_secs(timeout)) {
            println!("guest {name} shut down: {}", how_it_ended(run_dir, name));
            return Ok(0);
        }
        eprintln!("colinux: guest {name} did not shut down within {timeout} s; ending it");
    }
    kill(run_dir, name)?;
    Ok(2)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn man_page_and_completions_come_from_the_cli() {
        let mut man = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut man)
            .unwrap();
        let man = String::from_utf8(man).unwrap();
        assert!(man.contains(".TH colinux") && man.contains("Run cooperative Linux guests"));
        let mut bash = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "colinux",
            &mut bash,
        );
        let bash = String::from_utf8(bash).unwrap();
        assert!(bash.contains("console") && bash.contains("--detach"));
        assert!(generate("tcsh").is_err());
    }

    #[test]
    fn settings_take_a_toml_file_first_then_words() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("web.toml");
        std::fs::write(&toml, "memory = 64\n").unwrap();
        let conf = dir.path().join("old.conf");
        std::fs::write(&conf, "mem=96\n").unwrap();
        let words = [
            toml.display().to_string(),
            format!("@{}", conf.display()),
            "ro".into(),
        ];
        let s = settings(&words).unwrap();
        assert_eq!(s.memory.unwrap().value, 96);
        assert_eq!(s.cmdline[0].value, "ro");
        assert_eq!(s.file.as_deref(), Some(toml.as_path()));
        // A bare word that is not first is a kernel word, not a file.
        let s = settings(&["mem=8".into(), "quiet".into()]).unwrap();
        assert_eq!(s.cmdline[0].value, "quiet");
    }
}
