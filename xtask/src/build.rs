//! `cargo xtask build-kernel`: fetch → apply → config → build the i386 guest.
//!
//! The build runs out of tree (`make O=` in the cache) so that it survives
//! new clones and stays incremental. Two stamps in the build directory make a
//! second run with unchanged inputs near-instant: the config stamp (base
//! target, fragments, tree commit) skips the configuration step, and the
//! build stamp (tree commit, `.config`, compiler) skips `make` entirely.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::fetch::{fetch_kernel, FetchOptions};
use crate::manifest::Manifest;
use colinux_series::apply::{apply_series, check_base, ApplyOptions};

use crate::manifest::series_base;

/// What `build-kernel` does.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub version: String,
    pub fetch: FetchOptions,
    /// The series to apply ([`crate::manifest::series_for`] picks the one for a
    /// version); its base ([`series_base`]) must be `version` unless `force`.
    pub series_dir: PathBuf,
    pub configs_dir: PathBuf,
    /// The base configuration target (`tinyconfig`, `defconfig`, …).
    pub base_config: String,
    pub force: bool,
    pub jobs: usize,
    /// The `make O=` directory [default: the cache's build dir for the version].
    pub build_dir: Option<PathBuf>,
}

impl BuildOptions {
    /// The repository's own guest build of `version`: its series
    /// ([`crate::manifest::series_for`]), `tinyconfig` + `kernel-configs/`, the
    /// usual sources, every CPU, the cache's build directory.
    pub fn guest(manifest: &Manifest, version: &str) -> Result<BuildOptions> {
        let root = colinux_buildenv::paths::repo_root();
        Ok(BuildOptions {
            version: version.to_string(),
            fetch: FetchOptions::default(),
            series_dir: crate::manifest::series_for(manifest, &root, version)?,
            configs_dir: root.join("kernel-configs"),
            base_config: "tinyconfig".into(),
            force: false,
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            build_dir: None,
        })
    }
}

/// What came out.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    pub vmlinux: PathBuf,
    pub bzimage: PathBuf,
    pub config: PathBuf,
    /// False when the build stamp said everything was up to date.
    pub rebuilt: bool,
}

/// Run the whole pipeline.
pub fn build_kernel(manifest: &Manifest, opts: &BuildOptions) -> Result<BuildOutput> {
    colinux_buildenv::sysdeps::ensure(
        "building the i386 guest kernel",
        colinux_buildenv::sysdeps::KERNEL_BUILD,
    )?;
    let tree = fetch_kernel(manifest, &opts.version, &opts.fetch)?;
    let accepted = manifest.accepted_hashes(&opts.version)?;
    let base = series_base(manifest, &opts.series_dir);
    check_base(&tree, &base, &accepted, opts.force)?;
    let report = apply_series(
        &tree,
        &ApplyOptions {
            series_dir: opts.series_dir.clone(),
            force: opts.force,
            max_fuzz: 2,
        },
    )?;
    print!("{}", report.render());
    if !report.ok() {
        anyhow::bail!("the patch series does not apply to linux {}", opts.version);
    }
    let head = report.head.to_string();
    let build = match &opts.build_dir {
        Some(d) => d.clone(),
        None => colinux_buildenv::paths::kernel_build_dir(&opts.version)?,
    };
    std::fs::create_dir_all(&build)
        .with_context(|| format!("cannot create {}", build.display()))?;
    let _lock = colinux_buildenv::paths::lock_path("build", &build)?;

    configure(&tree.path, &build, &head, opts)?;

    let dotconfig = std::fs::read(build.join(".config")).context("reading .config")?;
    let compiler = compiler_id()?;
    let build_stamp = digest(&[head.as_bytes(), &dotconfig, compiler.as_bytes()]);
    let stamp_path = build.join(".colinux-build-stamp");
    let vmlinux_built = build.join("vmlinux");
    let bz_built = build.join("arch/x86/boot/bzImage");
    let up_to_date = std::fs::read_to_string(&stamp_path).ok().as_deref()
        == Some(build_stamp.as_str())
        && vmlinux_built.exists()
        && bz_built.exists();
    if up_to_date {
        tracing::info!("linux {} is up to date ({})", opts.version, build.display());
    } else {
        let _ = std::fs::remove_file(&stamp_path);
        make(
            &tree.path,
            &build,
            opts.jobs,
            &["vmlinux", "bzImage"],
            "building",
        )?;
        std::fs::write(&stamp_path, &build_stamp).context("writing the build stamp")?;
    }

    let out = colinux_buildenv::paths::guest_output_dir(&opts.version);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let result = BuildOutput {
        vmlinux: out.join("vmlinux"),
        bzimage: out.join("bzImage"),
        config: out.join("config"),
        rebuilt: !up_to_date,
    };
    copy_if_changed(&vmlinux_built, &result.vmlinux)?;
    copy_if_changed(&bz_built, &result.bzimage)?;
    copy_if_changed(&build.join(".config"), &result.config)?;
    Ok(result)
}

/// Make `.config`: base target, fragments, olddefconfig, survival check.
fn configure(src: &Path, build: &Path, head: &str, opts: &BuildOptions) -> Result<()> {
    let frags = crate::kconfig::fragments(&opts.configs_dir)?;
    // Parse (and so validate) the fragments before anything else.
    let requests = crate::kconfig::merge_requests(&frags)?;
    let mut parts: Vec<Vec<u8>> = vec![
        opts.base_config.as_bytes().to_vec(),
        head.as_bytes().to_vec(),
    ];
    for f in &frags {
        parts.push(f.display().to_string().into_bytes());
        parts.push(std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?);
    }
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let stamp = digest(&refs);
    let stamp_path = build.join(".colinux-config-stamp");
    let dotconfig = build.join(".config");
    if dotconfig.exists()
        && std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str())
    {
        tracing::info!("configuration unchanged");
        return Ok(());
    }
    let _ = std::fs::remove_file(&stamp_path);
    let previous = std::fs::read(&dotconfig).ok();
    tracing::info!(
        "configuring: {} + {}",
        opts.base_config,
        frags
            .iter()
            .filter_map(|f| f.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" + ")
    );
    make(src, build, 1, &[&opts.base_config], "configuring")?;
    let base = std::fs::read_to_string(&dotconfig).context("reading the base .config")?;
    std::fs::write(&dotconfig, crate::kconfig::apply_requests(&base, &requests))
        .context("writing .config")?;
    make(src, build, 1, &["olddefconfig"], "configuring")?;
    let final_text = std::fs::read_to_string(&dotconfig).context("reading the final .config")?;
    let bad = crate::kconfig::check_survived(&final_text, &requests);
    if !bad.is_empty() {
        anyhow::bail!(
            "{} requested option(s) did not survive into the final .config ({}):\n  {}",
            bad.len(),
            dotconfig.display(),
            bad.join("\n  ")
        );
    }
    // Keep the old file (and its timestamp) when nothing changed, so make
    // does not rebuild for nothing.
    if previous.as_deref() == Some(final_text.as_bytes()) {
        tracing::debug!(".config unchanged");
    }
    std::fs::write(&stamp_path, &stamp).context("writing the config stamp")?;
    Ok(())
}

/// Run kernel `make` with a progress display; the full output goes to
/// `build.log` in the build directory and its tail is shown on failure.
pub fn make(src: &Path, build: &Path, jobs: usize, targets: &[&str], what: &str) -> Result<()> {
    let log_path = build.join("build.log");
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let (reader, writer) = std::io::pipe().context("cannot create a pipe")?;
    let mut cmd = Command::new("make");
    cmd.arg("-C")
        .arg(src)
        .arg(format!("O={}", build.display()))
        .arg("ARCH=i386")
        .arg(format!("-j{}", jobs.max(1)))
        .args(targets)
        .stdin(Stdio::null())
        .stdout(writer.try_clone().context("pipe")?)
        .stderr(writer);
    tracing::debug!("running {cmd:?}");
    let mut child = cmd.spawn().context("cannot run make")?;
    drop(cmd);
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last = Instant::now();
    let mut steps = 0usize;
    let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    for line in BufReader::new(reader).lines() {
        let line = line.unwrap_or_default();
        let _ = writeln!(log, "{line}");
        let is_step = line.starts_with("  ")
            && line.split_whitespace().next().is_some_and(|w| {
                w.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                    && w.len() <= 12
            });
        if is_step {
            steps += 1;
        }
        tail.push_back(line.clone());
        if tail.len() > 40 {
            tail.pop_front();
        }
        if tty {
            if is_step {
                let shown: String = line.trim().chars().take(70).collect();
                eprint!(
                    "\r\x1b[K{what} [{steps:>5} steps, {:>4}s] {shown}",
                    started.elapsed().as_secs()
                );
            }
        } else if last.elapsed() > Duration::from_secs(20) {
            last = Instant::now();
            tracing::info!(
                "{what}: {steps} steps in {}s, at: {}",
                started.elapsed().as_secs(),
                line.trim()
            );
        }
    }
    if tty {
        eprint!("\r\x1b[K");
    }
    let status = child.wait().context("waiting for make")?;
    if !status.success() {
        anyhow::bail!(
            "make {} failed ({status}); last lines (full log: {}):\n{}",
            targets.join(" "),
            log_path.display(),
            tail.into_iter().collect::<Vec<_>>().join("\n")
        );
    }
    tracing::info!(
        "{what}: make {} done, {steps} steps in {:.1}s",
        targets.join(" "),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn compiler_id() -> Result<String> {
    let out = Command::new("gcc")
        .arg("--version")
        .output()
        .context("cannot run gcc")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string())
}

fn digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

fn copy_if_changed(from: &Path, to: &Path) -> Result<()> {
    let new = std::fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    if std::fs::read(to).ok().as_deref() == Some(new.as_slice()) {
        return Ok(());
    }
    std::fs::write(to, new).with_context(|| format!("cannot write {}", to.display()))
}
