//! `cargo xtask test-host …`: run an ad-hoc scenario, or boot the test host
//! with an interactive shell.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use colinux_testrig::testhost::{self, Disk, GuestFile, Scenario};

/// The `test-host` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TestHostCmd {
    /// Boot the test host and run a scenario script as root in it. Passes
    /// when the script exits 0 and the host kernel log has no warnings,
    /// oopses, lockups, … afterwards; exits non-zero otherwise. The console
    /// is kept in target/test-host/<name>.log.
    ///
    /// Inside: busybox (every applet), /proc, /sys, /dev (devtmpfs),
    /// /sys/kernel/debug, tmpfs /tmp; no network; the disks given with
    /// --disk (then the stock kernel's virtio and ext4 modules are loaded
    /// first). Programs you add must be static x86_64 binaries.
    Run {
        /// The /bin/sh (busybox ash) script to run
        #[arg(long)]
        script: PathBuf,
        /// Copy a file into the host: SRC:DEST (DEST absolute); mode 0755
        /// if SRC is executable, else 0644. Repeatable
        #[arg(long = "file", value_name = "SRC:DEST")]
        files: Vec<String>,
        #[command(flatten)]
        machine: MachineArgs,
        /// Limit for the whole run, boot included, in seconds
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// The scenario's name (names the log) [default: the script's file
        /// stem]
        #[arg(long)]
        name: Option<String>,
        /// Do not fail on kernel log problems
        #[arg(long)]
        no_klog_check: bool,
    },
    /// Boot the test host with an interactive busybox shell on this
    /// terminal (for debugging by hand). Exit the shell to power off;
    /// Ctrl-A X quits QEMU, Ctrl-A C toggles the QEMU monitor.
    Shell {
        /// A script to run first (e.g. insmod), on the console
        #[arg(long)]
        script: Option<PathBuf>,
        /// Copy a file into the host: SRC:DEST; repeatable
        #[arg(long = "file", value_name = "SRC:DEST")]
        files: Vec<String>,
        #[command(flatten)]
        machine: MachineArgs,
    },
}

/// The virtual machine's shape.
#[derive(Debug, clap::Args)]
pub struct MachineArgs {
    /// Attach a raw image file or block device as the next virtio disk:
    /// PATH[,ro]. The first is /dev/vda (also
    /// /dev/disk/by-id/virtio-disk0), the second /dev/vdb, …; QEMU's
    /// cache=unsafe. Repeatable
    #[arg(long = "disk", value_name = "PATH[,ro]")]
    disks: Vec<String>,
    /// Virtual CPUs
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// Memory in MiB
    #[arg(long, default_value_t = 2048)]
    memory: u32,
    /// Extra kernel command line (e.g. nokaslr)
    #[arg(long, default_value = "")]
    append: String,
}

/// Run a `test-host` subcommand; an error when the scenario fails.
pub fn main(cmd: TestHostCmd) -> Result<()> {
    match cmd {
        TestHostCmd::Run {
            script,
            files,
            machine,
            timeout,
            name,
            no_klog_check,
        } => {
            let text = std::fs::read_to_string(&script)
                .with_context(|| format!("cannot read {}", script.display()))?;
            let name = name.unwrap_or_else(|| {
                script
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "adhoc".to_string())
            });
            let mut s = scenario(name, text, &files, machine)?;
            s.timeout = Duration::from_secs(timeout);
            s.check_klog = !no_klog_check;
            let out = testhost::run(&s)?;
            println!(
                "{} ({:.1}s): {}\nlog: {}",
                if out.passed { "PASS" } else { "FAIL" },
                out.duration.as_secs_f64(),
                out.reason,
                out.log.display()
            );
            if !out.passed {
                bail!("scenario {:?} failed", s.name);
            }
            Ok(())
        }
        TestHostCmd::Shell {
            script,
            files,
            machine,
        } => {
            let text = match script {
                Some(p) => std::fs::read_to_string(&p)
                    .with_context(|| format!("cannot read {}", p.display()))?,
                None => String::new(),
            };
            let s = scenario("shell".to_string(), text, &files, machine)?;
            testhost::shell(&s)
        }
    }
}

fn scenario(name: String, script: String, files: &[String], m: MachineArgs) -> Result<Scenario> {
    let mut s = Scenario::new(name, script);
    s.files = files
        .iter()
        .map(|f| GuestFile::parse(f))
        .collect::<Result<_>>()?;
    s.cpus = m.cpus;
    s.memory_mb = m.memory;
    s.append = m.append;
    s.disks = m
        .disks
        .iter()
        .enumerate()
        .map(|(i, d)| Disk::parse(d, i))
        .collect::<Result<_>>()?;
    Ok(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: TestHostCmd,
    }

    #[test]
    fn disks_from_the_command_line() {
        let cli = Cli::try_parse_from([
            "test-host",
            "run",
            "--script",
            "s.sh",
            "--disk",
            "/t/fs.img",
            "--disk",
            "/dev/sdz1,ro",
        ])
        .unwrap();
        let TestHostCmd::Run { machine, .. } = cli.cmd else {
            panic!("not run: {cli:?}");
        };
        let s = scenario("x".into(), String::new(), &[], machine).unwrap();
        assert_eq!(
            s.disks,
            [
                Disk::new("/t/fs.img", "disk0"),
                Disk::new("/dev/sdz1", "disk1").read_only()
            ]
        );
    }
}
