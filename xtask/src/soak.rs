//! `cargo xtask soak …`: the long reliability runs. CI runs each one short
//! (a few cycles, inside `cargo xtask test`); a soak runs the same test
//! with many cycles and writes its figures into `docs/RELIABILITY.md`.
//!
//! The test owns the scenario and its checks; a soak only sets the cycle
//! count, asks the test for its figures (`COLINUX_SOAK_REPORT`: a file
//! the test writes a Markdown table into) and records them when it passed.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// One soak: which test runs, and the variable that sets its cycles.
struct Soak {
    name: &'static str,
    test_file: &'static str,
    test: &'static str,
    cycles_var: &'static str,
    what: &'static str,
}

const COBD: Soak = Soak {
    name: "soak cobd",
    test_file: "cobd",
    test: "synced_data_survives_sigkill_of_the_daemon",
    cycles_var: "COLINUX_COBD_CYCLES",
    what: "The Debian guest boots from cobd0 (a disk of the test host) with a data disk cobd1 \
           (an image file on the test host's ext4); each cycle it checks the data disk \
           (mounted to replay its journal, then `e2fsck -fn`) and every file earlier cycles \
           synced, writes and `sync`s one file on each disk, and its process is killed with \
           SIGKILL. A last boot checks everything and stops with `colinux stop`; the root \
           image must then pass `e2fsck -fn` on the build machine.",
};

const BOOT: Soak = Soak {
    name: "soak boot",
    test_file: "boot",
    test: "boots_in_a_row",
    cycles_var: "COLINUX_BOOT_CYCLES",
    what: "One test host boots the initramfs guest (`colinux run`, 6.1) to its shell, \
           runs `uname -m` and powers it off, again and again; each boot must reach the \
           guest's init and end with the daemon's exit 0, and the host's free memory after \
           the last must be within 16 MiB of before the second. The first boot has no \
           figures: its memory is the baseline, and it is timed with the session around it.",
};

/// `cargo xtask soak cobd --cycles N`.
pub fn soak_cobd(cycles: u32) -> Result<String> {
    run(&COBD, cycles)
}

/// `cargo xtask soak boot --cycles N`.
pub fn soak_boot(cycles: u32) -> Result<String> {
    if cycles < 2 {
        bail!("--cycles must be at least 2 for soak boot");
    }
    run(&BOOT, cycles)
}

fn run(soak: &Soak, cycles: u32) -> Result<String> {
    if cycles == 0 {
        bail!("--cycles must be at least 1");
    }
    let root = colinux_buildenv::paths::repo_root();
    let dir = root.join("target/soak");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let report: PathBuf = dir.join(format!("{}.md", soak.test_file));
    let _ = std::fs::remove_file(&report);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    tracing::info!(
        "{}: {cycles} cycles of tests/tests/{}.rs::{} (this takes a while; the test host's log is in target/test-host/)",
        soak.name,
        soak.test_file,
        soak.test
    );
    let started = Instant::now();
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "test",
            "-p",
            "colinux-tests",
            "--test",
            soak.test_file,
            "--",
        ])
        .args(["--include-ignored", "--exact", soak.test, "--nocapture"])
        .env(soak.cycles_var, cycles.to_string())
        .env("COLINUX_SOAK_REPORT", &report)
        .status()
        .context("cannot run cargo test")?;
    let took = started.elapsed();
    let table = std::fs::read_to_string(&report).unwrap_or_default();
    if !status.success() {
        bail!(
            "{} failed after {:.0} s ({status}); docs/RELIABILITY.md is unchanged. Figures so far:\n{table}",
            soak.name,
            took.as_secs_f64()
        );
    }
    if table.is_empty() {
        bail!(
            "{}: the test passed but wrote no figures to {}",
            soak.name,
            report.display()
        );
    }
    let text = format!(
        "## {}\n\n`cargo xtask soak {} --cycles {cycles}`: {cycles} cycles in {:.0} min \
         (run of {}, QEMU TCG test host on {} CPUs; times are emulated and only comparable \
         between runs on the same machine). {}\n\n{table}\n",
        soak.name,
        soak.test_file,
        took.as_secs_f64() / 60.0,
        today(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        soak.what,
    );
    crate::docs::write_section("RELIABILITY.md", soak.name, &text)?;
    Ok(text)
}

fn today() -> String {
    Command::new("date")
        .args(["-u", "+%F"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
