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

/// `cargo xtask bench passage`: the cost of one passage round trip
/// (host -> 32-bit guest -> host, the driver's built-in self-test guest)
/// in TSC cycles, and as a ratio to a `getppid()` system call measured in
/// the same test host, on the same vCPU.
pub fn bench_passage(rounds: u64) -> Result<String> {
    use crate::testhost::{self, Scenario};
    let module = crate::driver_build::build_driver(None)?;
    let probe = crate::userland::build_static("colinux-probe", "colinux-probe")?;
    let script = format!(
        "set -e\n\
         for i in 1 2 3; do\n\
         taskset -c 0 insmod /root/colinux.ko passage_selftest={rounds}\n\
         rmmod colinux\n\
         taskset -c 0 /root/colinux-probe getppid {rounds}\n\
         done\n\
         dmesg | grep 'passage self-test'\n"
    );
    let s = Scenario::new("bench-passage", script)
        .file(module, "/root/colinux.ko", 0o644)
        .file(probe, "/root/colinux-probe", 0o755)
        .timeout(std::time::Duration::from_secs(600));
    let out = testhost::run(&s)?;
    if !out.passed {
        anyhow::bail!(
            "the benchmark run failed: {} (log: {})",
            out.reason,
            out.log.display()
        );
    }
    let numbers = |marker: &str| -> Vec<u64> {
        // The kernel's lines reach the console twice (printk and the dmesg
        // in the script); their timestamps tell the runs apart.
        let lines: std::collections::BTreeSet<&str> = out
            .console
            .lines()
            .filter(|l| l.contains(marker) && !l.contains("KLOG"))
            .map(str::trim)
            .collect();
        let v: Vec<u64> = lines
            .into_iter()
            .filter_map(|l| {
                let before = l.split(" TSC cycles each").next()?;
                before.rsplit(' ').next()?.trim().parse().ok()
            })
            .collect();
        v
    };
    let mut passage = numbers("passage self-test:");
    let mut getppid = numbers("getppid:");
    if passage.is_empty() || getppid.is_empty() {
        anyhow::bail!(
            "no measurements in the console (log: {})",
            out.log.display()
        );
    }
    passage.sort_unstable();
    getppid.sort_unstable();
    let (mp, mg) = (passage[passage.len() / 2], getppid[getppid.len() / 2]);
    let release = crate::hostkernel::ensure()?.release;
    let text = format!(
        "## bench passage\n\n\
         `cargo xtask bench passage` — in the QEMU test host (Debian {release}, `-cpu max`, TCG), \
         pinned to vCPU 0, three runs each: {rounds} passage round trips (host → 32-bit PAE guest → host, the \
         driver's built-in self-test guest: save the host state, leave long mode through the identity-mapped \
         passage page, enter the guest, and back) against {rounds} `getppid()` system calls from a static program.\n\n\
         | what | median TSC cycles | runs |\n|---|---|---|\n\
         | passage round trip | {mp} | {} |\n\
         | getppid() | {mg} | {} |\n\n\
         Ratio round trip / getppid: {:.1}. These are TCG numbers: QEMU emulates every instruction, and each \
         CR0/CR3/CR4 write of the switch flushes its software TLB, so the switch is far more expensive there \
         than a system call, which TCG runs as ordinary code. On hardware both costs, and so the ratio, will differ: \
         this project has no hardware measurement yet.\n",
        passage.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
        getppid.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
        mp as f64 / mg.max(1) as f64
    );
    write_section("bench passage", &text)?;
    Ok(text)
}

/// What one tool did with one patch in `bench rebase`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Moved {
    /// Applied as it is (ours: every hunk at its line; git cannot tell this
    /// apart from a merge, so git only reports `Applied`).
    Clean,
    /// Merged (ours: 3-way merge without conflict; git: picked).
    Applied,
    /// Conflict, skipped.
    Conflict(Vec<String>),
    /// Dropped: already upstream, or empty after the merge.
    Dropped,
}

fn run_git(dir: &Path, args: &[&str]) -> Result<std::process::Output> {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=colinux bench",
            "-c",
            "user.email=bench@colinux.invalid",
            "-c",
            "rerere.enabled=false",
            "-c",
            "core.editor=true",
        ])
        .args(args)
        .env("GIT_EDITOR", "true")
        .output()
        .with_context(|| format!("cannot run git {}", args.join(" ")))
}

fn git_ok(dir: &Path, args: &[&str]) -> Result<String> {
    let out = run_git(dir, args)?;
    if !out.status.success() {
        anyhow::bail!(
            "git {} failed in {}:\n{}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `Patch: <file>` trailer of a commit message (set by apply and rebase).
fn patch_trailer(msg: &str) -> Option<String> {
    msg.lines()
        .rev()
        .find_map(|l| l.strip_prefix("Patch: "))
        .map(|s| s.trim().to_string())
}

/// `(blob, mode)` of `path` in `tree`, None when absent.
fn entry(tree: &git2::Tree<'_>, path: &str) -> Option<(git2::Oid, i32)> {
    tree.get_path(Path::new(path))
        .ok()
        .map(|e| (e.id(), e.filemode()))
}

/// `cargo xtask bench rebase`: move Debian's kernel series (its main
/// `patches/series`, not written by this project) from `v1` to `v2` with the
/// rebase engine (keep-going) and with `git rebase`, and compare.
pub fn bench_rebase(manifest: &Manifest, v1: &str, v2: &str) -> Result<String> {
    use std::collections::{BTreeMap, BTreeSet};
    let fetch = FetchOptions {
        tarball: None,
        sources: vec![],
    };
    let t1 = fetch_kernel(manifest, v1, &fetch)?;
    let t2 = fetch_kernel(manifest, v2, &fetch)?;
    let series = crate::fetch::debian_packaging(manifest, v1)?.join("patches");
    let scratch = crate::paths::cache_dir()?.join("scratch");

    // 1. The series as commits on v1 (xtask apply, one commit per patch).
    tracing::info!("applying Debian's {v1} series to a scratch clone of linux {v1}");
    let applied = t1.scratch_clone(&scratch.join("bench-rebase-v1"))?;
    let started = Instant::now();
    let report = apply_series(
        &applied,
        &ApplyOptions {
            series_dir: series.clone(),
            force: true,
            max_fuzz: 2,
        },
    )?;
    let t_apply = started.elapsed().as_secs_f64();
    if !report.ok() {
        anyhow::bail!(
            "Debian's series does not apply to {v1}:\n{}",
            report.render()
        );
    }
    let names: Vec<String> = report.patches.iter().map(|p| p.name.clone()).collect();
    // Files each patch touches (on v1).
    let v1_repo = applied.repo()?;
    let mut touched: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &report.patches {
        let Some(c) = p.commit else { continue };
        let c = v1_repo.find_commit(c)?;
        let diff =
            v1_repo.diff_tree_to_tree(Some(&c.parent(0)?.tree()?), Some(&c.tree()?), None)?;
        let mut files = BTreeSet::new();
        for d in diff.deltas() {
            for f in [d.old_file().path(), d.new_file().path()]
                .into_iter()
                .flatten()
            {
                files.insert(f.to_string_lossy().into_owned());
            }
        }
        touched.insert(p.name.clone(), files.into_iter().collect());
    }

    // 2. Our engine, non-interactive.
    let ours_work = scratch.join("bench-rebase-ours");
    let ours_out = scratch.join("bench-rebase-ours-series");
    for d in [&ours_work, &ours_out] {
        if d.exists() {
            std::fs::remove_dir_all(d).with_context(|| format!("cannot remove {}", d.display()))?;
        }
    }
    tracing::info!("rebase engine (keep-going): {v1} -> {v2}");
    let started = Instant::now();
    let run = crate::rebase::start_keep_going(&crate::rebase::RebaseOptions {
        series_dir: series.clone(),
        out_dir: ours_out.clone(),
        v1_tree: t1.path.clone(),
        v2_tree: t2.path.clone(),
        work_dir: ours_work.clone(),
        manifest: None,
    })?;
    let t_ours = started.elapsed().as_secs_f64();
    let mut ours: BTreeMap<String, Moved> = BTreeMap::new();
    for (name, o) in &run.patches {
        use crate::rebase::Outcome as O;
        let m = match o {
            O::Clean => Moved::Clean,
            O::Merged { .. } | O::Replayed { .. } | O::Resolved { .. } => Moved::Applied,
            O::Conflict { files } => {
                Moved::Conflict(files.iter().map(|(f, _)| f.clone()).collect())
            }
            O::AlreadyUpstream { .. } | O::Empty { .. } | O::Skipped => Moved::Dropped,
        };
        ours.insert(name.clone(), m);
    }

    // 3. git rebase of the same commits, in a scratch clone of v2 that also
    //    reaches v1's objects and the applied commits.
    let git_dir = scratch.join("bench-rebase-git");
    tracing::info!("git rebase: preparing {}", git_dir.display());
    let started = Instant::now();
    let g = t2.scratch_clone(&git_dir)?;
    let alternates = git_dir.join(".git/objects/info/alternates");
    let mut alt = std::fs::read_to_string(&alternates).unwrap_or_default();
    for r in [t1.repo()?, v1_repo] {
        alt.push_str(&format!("{}\n", r.path().join("objects").display()));
    }
    std::fs::write(&alternates, alt)
        .with_context(|| format!("cannot write {}", alternates.display()))?;
    let (v1_vanilla, v2_vanilla) = (t1.vanilla()?.to_string(), g.vanilla()?.to_string());
    git_ok(
        &git_dir,
        &["branch", "-f", "debian", &report.head.to_string()],
    )?;
    let t_git_setup = started.elapsed().as_secs_f64();
    let mut git: BTreeMap<String, Moved> = BTreeMap::new();
    let mut stops = 0usize;
    tracing::info!("git rebase --onto {v2} {v1} debian (skipping each conflict)");
    let started = Instant::now();
    let mut out = run_git(
        &git_dir,
        &["rebase", "--onto", &v2_vanilla, &v1_vanilla, "debian"],
    )?;
    while !out.status.success() {
        stops += 1;
        let stopped =
            git_ok(&git_dir, &["log", "-1", "--format=%B", "REBASE_HEAD"]).with_context(|| {
                format!(
                    "git rebase failed without stopping at a commit:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        let name = patch_trailer(&stopped).unwrap_or_else(|| format!("(stop {stops})"));
        let files: Vec<String> = git_ok(&git_dir, &["diff", "--name-only", "--diff-filter=U"])?
            .lines()
            .map(str::to_string)
            .collect();
        git.insert(name, Moved::Conflict(files));
        out = run_git(&git_dir, &["rebase", "--skip"])?;
    }
    let t_git = started.elapsed().as_secs_f64();
    let git_repo = g.repo()?;
    let git_head = git_repo
        .revparse_single("refs/heads/debian")?
        .peel_to_commit()?;
    {
        let mut walk = git_repo.revwalk()?;
        walk.push(git_head.id())?;
        walk.hide(g.vanilla()?)?;
        for c in walk {
            let c = git_repo.find_commit(c?)?;
            if let Some(n) = patch_trailer(&String::from_utf8_lossy(c.message_bytes())) {
                git.insert(n, Moved::Applied);
            }
        }
    }
    for n in &names {
        git.entry(n.clone()).or_insert(Moved::Dropped);
    }

    // 4. Compare.
    let count =
        |m: &BTreeMap<String, Moved>, f: fn(&Moved) -> bool| m.values().filter(|v| f(v)).count();
    let is_conflict = |m: &Moved| matches!(m, Moved::Conflict(_));
    let is_applied = |m: &Moved| matches!(m, Moved::Clean | Moved::Applied);
    let both: Vec<&String> = names
        .iter()
        .filter(|n| ours.get(*n).is_some_and(is_applied) && git.get(*n).is_some_and(is_applied))
        .collect();
    let mut disagree = Vec::new();
    for n in &names {
        let (o, g) = (ours.get(n), git.get(n));
        let kind = |m: Option<&Moved>| match m {
            Some(Moved::Clean | Moved::Applied) => "applied",
            Some(Moved::Conflict(_)) => "conflict",
            Some(Moved::Dropped) => "dropped",
            None => "?",
        };
        if kind(o) != kind(g) {
            disagree.push(format!("`{n}`: engine {}, git {}", kind(o), kind(g)));
        }
    }
    // Files touched by patches both applied; "unaffected" ones are touched by
    // no patch that either tool left out with a conflict.
    let conflicted_files: BTreeSet<&String> = names
        .iter()
        .filter(|n| ours.get(*n).is_some_and(is_conflict) || git.get(*n).is_some_and(is_conflict))
        .flat_map(|n| touched.get(n).into_iter().flatten())
        .collect();
    let files: BTreeSet<&String> = both
        .iter()
        .flat_map(|n| touched.get(*n).into_iter().flatten())
        .collect();
    let ours_repo = git2::Repository::open(&ours_work)?;
    let ours_tree = ours_repo.find_commit(run.head)?.tree()?;
    let git_tree = git_head.tree()?;
    let (mut same, mut differ, mut differ_unaffected) = (0usize, Vec::new(), Vec::new());
    let mut unaffected = 0usize;
    for f in &files {
        let clean = !conflicted_files.contains(f);
        if clean {
            unaffected += 1;
        }
        if entry(&ours_tree, f) == entry(&git_tree, f) {
            same += 1;
        } else {
            differ.push((*f).clone());
            if clean {
                differ_unaffected.push((*f).clone());
            }
        }
    }
    let conflicts_of = |m: &BTreeMap<String, Moved>| {
        names
            .iter()
            .filter_map(|n| match m.get(n) {
                Some(Moved::Conflict(f)) => Some(format!("`{n}` ({})", f.join(", "))),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join("; ")
        }
    };
    let text = format!(
        "## bench rebase\n\n\
         `cargo xtask bench rebase` — Debian's kernel series for linux {v1} (`debian/patches/series`, {n} patches, \
         not written by this project; PREEMPT_RT not included) moved from {v1} to {v2} by both tools, on the same commits.\n\n\
         - Setup (not in either time): `cargo xtask apply` puts the series on a scratch clone of {v1}, one commit per patch \
         ({t_apply:.1}s).\n\
         - Rebase engine: `rebase::start_keep_going` (what `cargo xtask rebase --onto {v2}` does, but a conflicted patch is \
         recorded as a conflict and left out instead of stopping): makes its work tree (scratch clone of {v2}), re-applies \
         the series to {v1} in memory, then a 3-way merge per patch of the files it touches, and writes the rebased series \
         files. Time: all of that.\n\
         - git: `git rebase --onto <{v2} vanilla> <{v1} vanilla> debian` (git {gitv}, default merge backend `ort`, rerere off) in a \
         scratch clone of {v2} whose object store also reaches the {v1} commits; at each stop the conflicted files are \
         recorded and `git rebase --skip` is run. Commits that become empty are dropped by git's default (`--empty=drop`). \
         Time: the rebase and its skips; making its work tree (scratch clone of {v2}, checked out) took \
         {t_git_setup:.1}s more, which the engine's time includes for its own work tree.\n\n\
         | | rebase engine | git rebase |\n|---|---|---|\n\
         | applied as is (clean) | {oc} | (git does not say) |\n\
         | applied, 3-way merged | {om} | {ga} (all picked) |\n\
         | conflict (left out) | {ox} | {gx} |\n\
         | dropped (already upstream / now empty) | {od} | {gd} |\n\
         | time (s) | {t_ours:.1} | {t_git:.1} |\n\n\
         Outcome differs for {nd} patch(es): {dis}.\n\n\
         Both tools conflict on {nxx} patches. Files moved between the releases are followed by both: git by its \
         rename detection, the engine by looking for a new file of the same name sharing at least half the lines \
         (before the engine did, 3 patches touching `arch/arm/boot/dts/` → `arch/arm/boot/dts/marvell/` and \
         `drivers/net/ethernet/microsoft/mana/*.h` → `include/net/mana/` conflicted in the engine only).\n\n\
         Resulting trees, files touched by the {nb} patches both tools applied: {nf} files, {same} identical, {ndf} different \
         ({du} of the {unaffected} files that no patch left out by either tool touches differ){dl}.\n\n\
         Machine: {cpus} CPUs.\n",
        n = names.len(),
        gitv = git_ok(&git_dir, &["--version"])?.trim().trim_start_matches("git version "),
        oc = count(&ours, |m| matches!(m, Moved::Clean)),
        om = count(&ours, |m| matches!(m, Moved::Applied)),
        ox = count(&ours, |m| matches!(m, Moved::Conflict(_))),
        od = count(&ours, |m| matches!(m, Moved::Dropped)),
        ga = count(&git, |m| matches!(m, Moved::Applied)),
        gx = count(&git, |m| matches!(m, Moved::Conflict(_))),
        gd = count(&git, |m| matches!(m, Moved::Dropped)),
        nd = disagree.len(),
        dis = list(&disagree),
        nxx = names
            .iter()
            .filter(|n| ours.get(*n).is_some_and(is_conflict) && git.get(*n).is_some_and(is_conflict))
            .count(),
        nb = both.len(),
        nf = files.len(),
        ndf = differ.len(),
        du = differ_unaffected.len(),
        dl = if differ.is_empty() {
            String::new()
        } else {
            format!(": {}", differ.iter().take(20).cloned().collect::<Vec<_>>().join(", "))
        },
        cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    );
    tracing::info!("engine conflicts: {}", list(&conflicts_of(&ours)));
    tracing::info!("git conflicts: {}", list(&conflicts_of(&git)));
    write_section("bench rebase", &text)?;
    Ok(text)
}
