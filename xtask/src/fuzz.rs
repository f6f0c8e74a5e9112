//! `cargo xtask fuzz [TARGET…] [--seconds N] [--record]`: coverage-guided
//! fuzzing of what a hostile guest kernel or a broken file hands the host
//! (the targets in `fuzz/fuzz_targets/`).
//!
//! The engine is libFuzzer (`libfuzzer-sys`), built on the stable
//! toolchain with LLVM's coverage instrumentation (`-C
//! passes=sancov-module`, the flags cargo-fuzz passes with
//! `--sanitizer=none`) for the host target, so the instrumentation skips
//! build scripts and proc macros; its own target directory
//! (`target/fuzz/`). Why not cargo-fuzz itself: it is one more tool to
//! install and it defaults to nightly-only sanitizers; the build is one
//! `cargo build` with these flags.
//!
//! Each target runs for `--seconds` on its corpus: the committed seeds
//! (`fuzz/seeds/<target>/`, which include every input that once found a
//! bug: each run replays them first) and what earlier runs found
//! (`<cache>/fuzz/corpus/<target>/`, kept outside the clone). A crash, a
//! hang (`-timeout`) or runaway memory (`-rss_limit_mb`) fails the run and
//! names the input libFuzzer saved and the command that replays it.
//! `--runs N` is the deterministic form CI uses (`cargo xtask test`): N
//! inputs per target from a fixed random seed, mutating the committed seeds
//! alone, so a CI failure is the change's and replays anywhere. `--record`
//! writes the run's figures into docs/RELIABILITY.md.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use colinux_buildenv::paths;

/// The fuzz targets: (name, what a finding there would mean).
pub const TARGETS: &[(&str, &str)] = &[
    (
        "virtio_blk",
        "a guest kernel's virtio-blk queue (rings, chains, requests, buffers in 64 KiB of guest RAM) served by cobd's back end against an image file; the image's size must not change",
    ),
    (
        "config",
        "a guest configuration file (TOML or coLinux `@file`); errors must name the file",
    ),
    (
        "patch",
        "a patch of the series, parsed and applied in memory forwards and in reverse, exactly and with fuzz",
    ),
    (
        "elf",
        "a guest image (vmlinux, payload) as the daemon parses it; segments must lie inside the file",
    ),
];

/// The compiler flags of an instrumented build (those cargo-fuzz uses
/// with `--sanitizer=none`), debug assertions and overflow checks on.
const RUSTFLAGS: &str = "--cfg fuzzing \
     -Cpasses=sancov-module \
     -Cllvm-args=-sanitizer-coverage-level=4 \
     -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
     -Cllvm-args=-sanitizer-coverage-pc-table \
     -Cllvm-args=-sanitizer-coverage-trace-compares \
     -Cdebug-assertions \
     -Coverflow-checks";

/// The host target the instrumented build is for (explicit, so that the
/// flags do not reach build scripts and proc macros).
const HOST_TARGET: &str = "x86_64-unknown-linux-gnu";

/// What `cargo xtask fuzz` is asked to do.
#[derive(Debug, Clone)]
pub struct FuzzOptions {
    /// Target names; empty = all of [`TARGETS`].
    pub targets: Vec<String>,
    /// How long each target runs.
    pub seconds: u64,
    /// Instead of a time: this many inputs per target from a fixed random
    /// seed, mutating the committed seeds only (not the cache's corpus),
    /// so that a run finds the same as any other run of the same tree. CI
    /// runs this way: a failure there is the change's, not luck's.
    pub runs: Option<u64>,
    /// Write the figures into docs/RELIABILITY.md when every target passed.
    pub record: bool,
}

/// How one target's run went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub target: String,
    /// Inputs run.
    pub execs: u64,
    /// Coverage points (libFuzzer's `cov:`) and features (`ft:`) reached.
    pub cov: u64,
    pub ft: u64,
    /// Inputs in the corpus at the end.
    pub corpus: u64,
}

/// `cargo xtask fuzz`.
pub fn fuzz(opts: &FuzzOptions) -> Result<Vec<Stats>> {
    let targets: Vec<&str> = if opts.targets.is_empty() {
        TARGETS.iter().map(|(n, _)| *n).collect()
    } else {
        for t in &opts.targets {
            if !TARGETS.iter().any(|(n, _)| n == t) {
                bail!(
                    "no fuzz target {t:?}; the targets are: {}",
                    TARGETS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        opts.targets.iter().map(String::as_str).collect()
    };
    if opts.seconds == 0 {
        bail!("--seconds must be at least 1");
    }
    let bins = build()?;
    let mut all = Vec::new();
    let started = Instant::now();
    for t in &targets {
        all.push(run_one(&bins, t, opts.seconds, opts.runs)?);
    }
    if opts.record {
        let text = report(&all, opts.seconds, started.elapsed().as_secs());
        crate::docs::write_section("RELIABILITY.md", "fuzz", &text)?;
        println!("{text}");
    }
    Ok(all)
}

/// The instrumented build; the directory of its binaries.
fn build() -> Result<PathBuf> {
    let root = paths::repo_root();
    let target_dir = paths::target_dir().join("fuzz");
    tracing::info!("building the fuzz targets with coverage instrumentation (target/fuzz/)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "-p", "colinux-fuzz", "--bins"])
        .args(["--target", HOST_TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTFLAGS", RUSTFLAGS)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .context("cannot run cargo build for the fuzz targets")?;
    if !st.success() {
        bail!("building the fuzz targets failed ({st})");
    }
    Ok(target_dir.join(HOST_TARGET).join("release"))
}

fn run_one(bins: &Path, target: &str, seconds: u64, runs: Option<u64>) -> Result<Stats> {
    let root = paths::repo_root();
    let seeds = root.join("fuzz/seeds").join(target);
    // A deterministic run starts from the seeds alone: its corpus is new.
    let scratch;
    let corpus = match runs {
        Some(_) => {
            scratch = tempfile::tempdir_in(paths::target_dir())
                .context("cannot make a scratch corpus directory")?;
            scratch.path().to_path_buf()
        }
        None => paths::cache_dir()?.join("fuzz/corpus").join(target),
    };
    let artifacts = paths::target_dir().join("fuzz/artifacts").join(target);
    for d in [&corpus, &artifacts] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let bin = bins.join(target);
    let mut cmd = Command::new(&bin);
    match runs {
        Some(n) => {
            tracing::info!("fuzzing {target}: {n} inputs from seed 1 (deterministic)");
            cmd.arg(format!("-runs={n}")).arg("-seed=1");
        }
        None => {
            tracing::info!(
                "fuzzing {target} for {seconds} s (corpus {})",
                corpus.display()
            );
            cmd.arg(format!("-max_total_time={seconds}"));
        }
    }
    cmd.arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(&corpus);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        let input = crash_input(&log);
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "fuzz target {target} found a problem ({}): the input is {}; replay it with\n  {} {}\n\
             (a fixed bug's input goes into fuzz/seeds/{target}/ so every run replays it)\n--- libFuzzer's last lines:\n{}",
            out.status,
            input.as_deref().unwrap_or("(not saved)"),
            bin.display(),
            input.as_deref().unwrap_or("<input>"),
            tail.join("\n")
        );
    }
    let mut stats = parse_stats(&log);
    stats.target = target.to_string();
    stats.corpus = std::fs::read_dir(&corpus)
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    tracing::info!(
        "{target}: {} inputs, cov {} ft {}, corpus {}",
        stats.execs,
        stats.cov,
        stats.ft,
        stats.corpus
    );
    Ok(stats)
}

/// The path libFuzzer names in "Test unit written to PATH".
fn crash_input(log: &str) -> Option<String> {
    log.lines().find_map(|l| {
        l.split_once("Test unit written to ")
            .map(|(_, p)| p.trim().to_string())
    })
}

/// Figures from libFuzzer's output: the last status line's `cov:`/`ft:`
/// and the final `stat::number_of_executed_units`.
fn parse_stats(log: &str) -> Stats {
    let mut s = Stats::default();
    for l in log.lines() {
        if let Some(v) = l.strip_prefix("stat::number_of_executed_units:") {
            s.execs = v.trim().parse().unwrap_or(0);
        }
        let words: Vec<&str> = l.split_whitespace().collect();
        for w in words.windows(2) {
            match w[0] {
                "cov:" => s.cov = w[1].parse().unwrap_or(s.cov),
                "ft:" => s.ft = w[1].parse().unwrap_or(s.ft),
                _ => {}
            }
        }
    }
    s
}

fn report(all: &[Stats], seconds: u64, took: u64) -> String {
    let mut t = format!(
        "## fuzz\n\n`cargo xtask fuzz --seconds {seconds} --record`: every target {seconds} s \
         ({} min in all, {} CPUs, load average at the end {}), no crash, hang or leak found. \
         Inputs run depend on the machine and its load. The corpus grows between runs (kept in \
         the cache); the committed seeds in `fuzz/seeds/` are replayed first.\n\n\
         | target | what it feeds | inputs run | coverage (cov / ft) | corpus |\n|---|---|---|---|---|\n",
        took.div_ceil(60),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_string))
            .unwrap_or_else(|| "unknown".into()),
    );
    for s in all {
        let what = TARGETS
            .iter()
            .find(|(n, _)| *n == s.target)
            .map(|(_, w)| *w)
            .unwrap_or("");
        t.push_str(&format!(
            "| `{}` | {what} | {} | {} / {} | {} |\n",
            s.target, s.execs, s.cov, s.ft, s.corpus
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libfuzzers_figures_and_crash_input_are_read() {
        let log = "INFO: Seed: 1\n#2\tINITED cov: 12 ft: 13 corp: 1/1b exec/s: 0 rss: 30Mb\n\
                   #4096\tpulse  cov: 40 ft: 77 corp: 9/100b lim: 4 exec/s: 2048 rss: 31Mb\n\
                   Done 5000 runs in 2 second(s)\nstat::number_of_executed_units: 5000\n\
                   stat::peak_rss_mb: 31\n";
        let s = parse_stats(log);
        assert_eq!((s.execs, s.cov, s.ft), (5000, 40, 77));
        assert_eq!(crash_input(log), None);
        let crash = "==1== ERROR: libFuzzer: deadly signal\n\
                     artifact_prefix='/t/a/'; Test unit written to /t/a/crash-66d2\nBase64: Rlo=\n";
        assert_eq!(crash_input(crash).as_deref(), Some("/t/a/crash-66d2"));
    }
}
