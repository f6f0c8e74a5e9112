//! Benchmarks; results go to `docs/BENCHMARKS.md`.
//!
//! `bench apply` times the in-process series application against
//! `quilt push -a` on the same kernel tree and the same real series (Debian's
//! kernel patches followed by Debian's PREEMPT_RT series), side by side in
//! one run, and checks that both produce the same tree.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::fetch::{fetch_kernel, FetchOptions};
use crate::manifest::Manifest;
use crate::series::{apply_series, ApplyOptions};

/// A quilt series made of Debian's `patches/series` followed by
/// `patches-rt/series` (as `rt/…`), in a directory of its own in the cache.
/// Returns the directory and the number of patches.
pub fn debian_combined_series(manifest: &Manifest, version: &str) -> Result<(PathBuf, usize)> {
    let debian = crate::fetch::debian_packaging(manifest, version)?;
    let dir = debian.parent().unwrap_or(&debian).join("combined-series");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut series = String::from(
        "# Debian's kernel series, then its PREEMPT_RT series (made by cargo xtask)\n",
    );
    let mut count = 0;
    for (sub, link) in [("patches", "main"), ("patches-rt", "rt")] {
        let src = debian.join(sub);
        let list = src.join("series");
        if !list.exists() {
            continue;
        }
        std::os::unix::fs::symlink(&src, dir.join(link))
            .with_context(|| format!("cannot link {}", src.display()))?;
        let text = std::fs::read_to_string(&list)
            .with_context(|| format!("cannot read {}", list.display()))?;
        for line in text.lines() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            series.push_str(&format!("{link}/{t}\n"));
            count += 1;
        }
    }
    std::fs::write(dir.join("series"), series).context("writing the combined series")?;
    Ok((dir, count))
}

/// Run `quilt push -a` for `series` in `tree_dir`; returns seconds.
pub fn quilt_push_all(tree_dir: &Path, series: &Path) -> Result<f64> {
    let started = Instant::now();
    let out = Command::new("quilt")
        .args(["push", "-a", "-q", "--fuzz=2"])
        .current_dir(tree_dir)
        .env("QUILT_PATCHES", series)
        .env("QUILT_PC", ".pc")
        .env("QUILTRC", "/dev/null")
        .output()
        .context("cannot run quilt")?;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        anyhow::bail!(
            "quilt push -a failed in {}:\n{}{}",
            tree_dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(secs)
}

fn quilt_pop_all(tree_dir: &Path, series: &Path) -> Result<()> {
    let out = Command::new("quilt")
        .args(["pop", "-a", "-q"])
        .current_dir(tree_dir)
        .env("QUILT_PATCHES", series)
        .env("QUILTRC", "/dev/null")
        .output()
        .context("cannot run quilt")?;
    if !out.status.success() {
        anyhow::bail!(
            "quilt pop -a failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// `cargo xtask bench apply`.
pub fn bench_apply(manifest: &Manifest, version: &str, runs: usize) -> Result<String> {
    crate::sysdeps::ensure("the quilt benchmark", crate::sysdeps::QUILT_ORACLE)?;
    let tree = fetch_kernel(
        manifest,
        version,
        &FetchOptions {
            tarball: None,
            sources: vec![],
        },
    )?;
    let (series, count) = debian_combined_series(manifest, version)?;
    let scratch = crate::paths::cache_dir()?.join("scratch");
    tracing::info!("preparing two scratch trees of linux {version}");
    let ours = tree.scratch_clone(&scratch.join("bench-ours"))?;
    let theirs = tree.scratch_clone(&scratch.join("bench-quilt"))?;
    let (mut t_ours, mut t_quilt) = (Vec::new(), Vec::new());
    for run in 1..=runs.max(1) {
        ours.reset_to_vanilla()?;
        let started = Instant::now();
        let report = apply_series(
            &ours,
            &ApplyOptions {
                series_dir: series.clone(),
                force: true,
                max_fuzz: 2,
            },
        )?;
        let secs = started.elapsed().as_secs_f64();
        if !report.ok() {
            anyhow::bail!("in-process apply failed:\n{}", report.render());
        }
        t_ours.push(secs);
        if run > 1 {
            quilt_pop_all(&theirs.path, &series)?;
        }
        let q = quilt_push_all(&theirs.path, &series)?;
        t_quilt.push(q);
        tracing::info!("run {run}: in-process {secs:.2}s, quilt {q:.2}s");
    }
    let diffs = crate::tree::compare_dirs(&ours.path, &theirs.path, &[".git", ".pc"], 10)?;
    if !diffs.is_empty() {
        anyhow::bail!("the two trees differ:\n  {}", diffs.join("\n  "));
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mo, mq) = (med(&mut t_ours), med(&mut t_quilt));
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let text = format!(
        "## bench apply\n\n\
         `cargo xtask bench apply --version {version} --runs {runs}` — Debian's kernel series plus its PREEMPT_RT \
         series for linux {version} ({count} patches, not written by this project), applied to the vanilla tree. \
         In-process: parse, apply (GNU-patch placement, fuzz 2), one git commit per patch, check out the result. \
         quilt: `quilt push -a -q --fuzz=2` (GNU patch). Both resulting trees were compared file by file: identical.\n\n\
         | tool | median (s) | runs (s) |\n|---|---|---|\n\
         | cargo xtask apply (in-process) | {mo:.2} | {} |\n\
         | quilt push -a | {mq:.2} | {} |\n\n\
         Ratio in-process / quilt: {:.2} (target: ≤ 1.0). Machine: {} CPUs, {cpu}.\n",
        fmt(&t_ours),
        fmt(&t_quilt),
        mo / mq,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    );
    write_section("bench apply", &text)?;
    Ok(text)
}

/// Replace (or append) the `## name` section of docs/BENCHMARKS.md.
pub fn write_section(name: &str, text: &str) -> Result<()> {
    let path = crate::paths::repo_root().join("docs/BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        "# Benchmarks\n\nWritten by `cargo xtask bench …`; each section is replaced by its command.\n".to_string()
    });
    let header = format!("## {name}\n");
    let new = match old.find(&header) {
        Some(start) => {
            let rest = &old[start + header.len()..];
            let end = rest
                .find("\n## ")
                .map(|i| start + header.len() + i + 1)
                .unwrap_or(old.len());
            format!("{}{}{}", &old[..start], text, &old[end..])
        }
        None => format!(
            "{}\n{}",
            old.trim_end_matches('\n').to_string() + "\n",
            text
        ),
    };
    std::fs::write(&path, new).with_context(|| format!("cannot write {}", path.display()))
}
