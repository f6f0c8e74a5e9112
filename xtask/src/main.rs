//! `cargo xtask`: colinux's build orchestrator. Run `cargo xtask --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use colinux_buildenv::paths;
use tracing_subscriber::EnvFilter;
use xtask::fetch::{FetchOptions, SourceKind};
use xtask::manifest::Manifest;

/// colinux build orchestrator: fetch vanilla Linux, apply the cooperative
/// patch series, build the i386 guest kernel, run tests and benchmarks.
///
/// Downloads, kernel trees and build directories are cached outside the
/// clone ($COLINUX_CACHE, else ~/.cache/colinux). Logs: RUST_LOG=debug.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Args)]
struct FetchArgs {
    /// Kernel version, as pinned in kernels.toml [default: the series base]
    #[arg(long)]
    version: Option<String>,
    /// A local source archive (kernel.org's linux-V.tar.xz or Debian's
    /// orig.tar.xz); its sha256 must match kernels.toml
    #[arg(long)]
    tarball: Option<PathBuf>,
    /// Sources to try, in order [default: tarball,kernel-org,debian, or
    /// $COLINUX_KERNEL_SOURCES]
    #[arg(long, value_delimiter = ',')]
    source: Vec<SourceKind>,
}

impl FetchArgs {
    fn options(&self) -> FetchOptions {
        FetchOptions {
            tarball: self.tarball.clone(),
            sources: self.source.clone(),
        }
    }
    fn version(&self, m: &Manifest) -> String {
        self.version
            .clone()
            .unwrap_or_else(|| m.series.base.clone())
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// The main job: build the guest kernel, its initramfs, the host driver
    /// and the daemon, boot the test host (Debian's stock x86_64 kernel in
    /// QEMU), load the driver and boot the Linux guest with the daemon;
    /// a scripted session types a few commands into the guest's shell and
    /// powers it off. Shows the host's console.
    Run {
        #[command(flatten)]
        fetch: FetchArgs,
        /// Guest RAM in MiB
        #[arg(long, default_value_t = 128)]
        mem: u64,
        /// Interactive: the guest's console on this terminal (type into the
        /// guest's shell; `poweroff` ends it), then a shell in the test host
        #[arg(long)]
        shell: bool,
        /// Run the 32-bit test payload through the passage instead of
        /// booting Linux (the job before the guest booted)
        #[arg(long, conflicts_with = "image")]
        payload: bool,
        /// Boot this root file system image instead of the initramfs: it is
        /// the test host's disk /dev/vda and the guest's cobd0 (root=), and
        /// the guest writes to it. Without --shell the image must log root
        /// in on the console by itself, as those of `cargo xtask rootfs` do
        /// (see docs/rootfs.md)
        #[arg(long, value_name = "IMAGE")]
        image: Option<std::path::PathBuf>,
    },
    /// Build the guest's initramfs (Debian's static i386 busybox, /init) in
    /// the cache and print its path; busybox is downloaded once.
    BuildInitrd {
        /// Print the archive's contents too
        #[arg(long)]
        list: bool,
        /// Download busybox again even if the cached one is fine
        #[arg(long)]
        refresh: bool,
        /// Add the test programs of tests/guest-bench/ as /bin/<name>
        #[arg(long)]
        test_programs: bool,
    },
    /// Download (or take a local archive of) a pinned Linux release, verify
    /// its sha256, unpack it once into the cache and record it as a git
    /// repository with a `vanilla` commit.
    FetchKernel(FetchArgs),
    /// Apply a quilt series to a kernel tree (in-process, one git commit per
    /// patch) and report each patch: clean, moved (offset/fuzz), already
    /// applied, or failed with the hunk that did not match.
    Apply {
        /// The series directory (holding `series`) [default: linux-patches/]
        #[arg(long)]
        series: Option<PathBuf>,
        /// The kernel tree [default: the cached tree of the series base]
        #[arg(long)]
        tree: Option<PathBuf>,
        /// Apply even if the tree is not the pinned vanilla base
        #[arg(long)]
        force: bool,
        /// Largest fuzz accepted, as quilt push --fuzz
        #[arg(long, default_value_t = 2)]
        fuzz: usize,
    },
    /// Fetch, apply, configure (base + kernel-configs/*.config) and build the
    /// i386 guest kernel. Leaves vmlinux, bzImage and config in
    /// target/guest/linux-<version>/.
    BuildKernel {
        #[command(flatten)]
        fetch: FetchArgs,
        /// The base configuration target
        #[arg(long, default_value = "tinyconfig")]
        base_config: String,
        /// Apply the series even to a version it is not based on
        #[arg(long)]
        force: bool,
        /// Parallel make jobs [default: number of CPUs]
        #[arg(long, short)]
        jobs: Option<usize>,
    },
    /// Generate the Rust ABI bindings (abi/src/generated.rs) from the ABI
    /// header defined by the patch series, with bindgen, for both the i386
    /// guest and the x86_64 host (their layouts must be identical).
    Codegen {
        /// Fail if the committed bindings are stale instead of writing them
        #[arg(long)]
        check: bool,
    },
    /// Build the host driver colinux.ko (C shim + no_std Rust core) with
    /// Kbuild against Debian's stock kernel headers (installed on demand).
    /// Leaves target/driver/<kernel release>/colinux.ko.
    BuildDriver {
        /// A kernel build directory to build against instead, e.g.
        /// /usr/src/linux-headers-<release> or /lib/modules/<release>/build
        #[arg(long)]
        kernel_build_dir: Option<PathBuf>,
    },
    /// Boot Debian's stock x86_64 kernel in QEMU (TCG) with a busybox
    /// initramfs: run a scenario script as root in it, or get a shell. This
    /// is the host the colinux driver is tested on.
    TestHost {
        #[command(subcommand)]
        which: xtask::testhost_cli::TestHostCmd,
    },
    /// Move the patch series from its base ([series] base in kernels.toml)
    /// onto another pinned release: a 3-way merge per patch in a work tree of
    /// the new release, a report per patch (clean, merged, conflict, already
    /// upstream, now empty), recorded conflict resolutions replayed, and the
    /// series rewritten for the new release. See docs/porting.md.
    Rebase(RebaseArgs),
    /// Regenerate the patch files from the commits of a worked-on kernel tree
    /// (after its `vanilla` tag; each commit's `Patch:` trailer names its
    /// file, commits without one become new patches), like `quilt refresh`.
    Refresh {
        /// The kernel tree [default: the cached tree of the series base]
        #[arg(long)]
        tree: Option<PathBuf>,
        /// The series directory [default: linux-patches/]
        #[arg(long)]
        series: Option<PathBuf>,
        /// Write the patches here instead of into the series directory
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Run the benchmarks and write the results to docs/BENCHMARKS.md.
    Bench {
        #[command(subcommand)]
        which: BenchCmd,
    },
    /// Run a long reliability test (many cycles of what CI runs a few of)
    /// and write its figures to docs/RELIABILITY.md.
    Soak {
        #[command(subcommand)]
        which: SoakCmd,
    },
    /// Fuzz what a hostile guest kernel or a broken file hands the host:
    /// cobd's virtqueue back end, the config parsers, the patch engine, the
    /// guest image parser (libFuzzer with coverage, stable toolchain). The
    /// corpus is kept in the cache; `fuzz/seeds/` (inputs that once found a
    /// bug) is replayed first. A finding fails the run and names the input
    /// and how to replay it. CI runs each target for a few seconds.
    Fuzz {
        /// Targets to run [default: all]: virtio_blk, config, patch, elf
        targets: Vec<String>,
        /// Seconds per target
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Deterministic instead: N inputs per target from a fixed random
        /// seed, mutating the committed seeds only (what CI runs)
        #[arg(long, conflicts_with = "record")]
        runs: Option<u64>,
        /// Write the figures into docs/RELIABILITY.md (section "fuzz")
        #[arg(long)]
        record: bool,
    },
    /// Build the guest's root file system: Debian (bookworm) for i386 with
    /// systemd, as an ext4 image labelled colinux-root (debootstrap once into
    /// the cache, then mke2fs -d; no loop mounts). Root is logged in on the
    /// console (hvc0) automatically. Needs root. Prints the image's path
    /// last. See docs/rootfs.md.
    Rootfs {
        /// Where the image goes [default: <cache>/rootfs/colinux-root-<suite>-i386.img]
        #[arg(long)]
        output: Option<PathBuf>,
        /// The image's size (sparse), e.g. 2G, 4096M
        #[arg(long, default_value = "2G", value_parser = parse_size)]
        size: u64,
        /// The Debian release
        #[arg(long, default_value = colinux_images::rootfs::DEFAULT_SUITE)]
        suite: String,
        /// The Debian mirror [default: the system's Debian archive from
        /// /etc/apt, else http://deb.debian.org/debian]
        #[arg(long)]
        mirror: Option<String>,
        /// Write the image even if it is up to date, or if a guest has
        /// changed it since it was built (its changes are lost)
        #[arg(long)]
        force: bool,
    },
    /// Make a release in target/release-pkg (or --out): Debian packages
    /// colinux-dkms (the driver as DKMS sources with the prebuilt Rust
    /// core), colinux (the command, systemd unit, udev rule, example
    /// config, man page, completions) and colinux-guest (the guest kernels
    /// of every LTS line with a patch series), the root file system image
    /// compressed with xz, a tarball for hosts without dpkg and SHA256SUMS;
    /// then lintian on each package (errors fail). Needs root for the image.
    Package {
        /// The release directory [default: target/release-pkg]
        #[arg(long)]
        out: Option<PathBuf>,
        /// Leave the root file system image out
        #[arg(long)]
        no_image: bool,
        /// Do not run lintian
        #[arg(long)]
        no_lintian: bool,
    },
    /// Disk images for cobd units.
    Image {
        #[command(subcommand)]
        which: ImageCmd,
    },
    /// Run every check CI runs: formatting, clippy, unit and integration
    /// tests (including quilt-oracle tests on Debian's real kernel series),
    /// and a real guest kernel build.
    Test {
        /// Skip the guest kernel build
        #[arg(long)]
        no_kernel: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SoakCmd {
    /// cobd: boot the Debian guest from cobd0 with a data disk, write and
    /// sync, SIGKILL its process, boot again and check both disks — N
    /// times (CI runs 1). One to three minutes per cycle under TCG.
    Cobd {
        /// Kill-and-boot cycles
        #[arg(long, default_value_t = 20)]
        cycles: u32,
    },
    /// boot: the initramfs guest booted to its shell and powered off N times
    /// in a row in one test host, memory checked after (CI runs 5).
    Boot {
        /// Boots in a row (at least 2)
        #[arg(long, default_value_t = 20)]
        cycles: u32,
    },
}

#[derive(Debug, Subcommand)]
enum ImageCmd {
    /// Turn a disk image into a cobd image (a raw file holding one file
    /// system): a raw disk with an MBR or GPT partition table (one partition
    /// is copied: the only Linux one, or --partition N; QEMU-installed disks
    /// whose partition starts at sector 63 included), a qcow2, VMDK, VDI or
    /// VHDX image (converted with qemu-img first), or a raw ext2/3/4 file
    /// system (already usable as it is). Copies sparsely. Prints the image's
    /// path last.
    Import {
        /// The disk image to import
        src: PathBuf,
        /// The partition to copy (1-4 primary, 5… logical for MBR; the
        /// entry number for GPT) [default: the only Linux partition]
        #[arg(long)]
        partition: Option<u32>,
        /// Where the cobd image goes [default: SRC's name with .cobd.img,
        /// beside it]
        #[arg(long)]
        output: Option<PathBuf>,
        /// Replace the output if it exists
        #[arg(long)]
        force: bool,
    },
}

fn parse_size(text: &str) -> Result<u64, String> {
    colinux_images::size::parse(text).map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
enum BenchCmd {
    /// Time a passage round trip (host -> 32-bit guest -> host) in TSC
    /// cycles in the QEMU test host, against a getppid() system call.
    Passage {
        /// Round trips (and getppid calls) per run
        #[arg(long, default_value_t = 100_000)]
        rounds: u64,
    },
    /// Boot the Linux guest in the QEMU test host several times: time to
    /// /init, host CPU of an idle guest, and a CPU-bound and a syscall-heavy
    /// i386 program in the guest against the same binaries natively.
    Boot {
        #[command(flatten)]
        fetch: FetchArgs,
        /// Guest boots timed
        #[arg(long, default_value_t = 5)]
        boots: usize,
        /// Runs of each program, in the guest and natively
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// cpuloop's work: millions of loop iterations
        #[arg(long, default_value_t = xtask::bench::BootBenchOptions::default().cpu_millions)]
        cpu_millions: u64,
        /// ppidloop's work: getppid() calls
        #[arg(long, default_value_t = xtask::bench::BootBenchOptions::default().syscalls)]
        syscalls: u64,
    },
    /// Direct I/O on a cobd disk in the Debian guest against the same on
    /// the same disk in the QEMU test host (sequential 1 MiB, random 4 KiB
    /// reads and writes; ratios guest / host), and the Debian guest's time
    /// from `colinux run` to its login prompt. Writes docs/BENCHMARKS.md.
    Cobd {
        #[command(flatten)]
        fetch: FetchArgs,
        /// MiB per sequential phase
        #[arg(long, default_value_t = xtask::bench::CobdBenchOptions::default().seq_mib)]
        seq_mib: u32,
        /// 4 KiB operations per random phase
        #[arg(long, default_value_t = xtask::bench::CobdBenchOptions::default().rand_ops)]
        rand_ops: u32,
        /// Processes of the parallel random-read phase
        #[arg(long, default_value_t = xtask::bench::CobdBenchOptions::default().jobs)]
        jobs: u32,
    },
    /// TCP throughput (guest → host, host → guest) and round trips, and
    /// pings, between the Debian guest and the QEMU test host over a TAP
    /// and over the user-mode NAT (passt), against the same over the test
    /// host's loopback (ratios). Writes docs/BENCHMARKS.md.
    Conet {
        #[command(flatten)]
        fetch: FetchArgs,
        /// MiB per transfer
        #[arg(long, default_value_t = xtask::bench_conet::ConetBenchOptions::default().mib)]
        mib: u32,
        /// Runs of each measurement (the table shows the median)
        #[arg(long, default_value_t = xtask::bench_conet::ConetBenchOptions::default().runs)]
        runs: u32,
        /// Only write the table from the test-host log of an earlier run
        /// (target/test-host/bench-conet.log)
        #[arg(long)]
        from_log: Option<PathBuf>,
    },
    /// A shared directory (cofs, virtio-fs) in the Debian guest against
    /// the same directory natively in the QEMU test host, and a cobd disk
    /// for contrast: sequential write/read, create/stat/unlink of many
    /// files, unpacking the kernel source tarball (each tree compared by
    /// SHA-256 lists). Writes docs/BENCHMARKS.md.
    Cofs {
        #[command(flatten)]
        fetch: FetchArgs,
        /// MiB of the sequential file
        #[arg(long, default_value_t = xtask::bench_cofs::CofsBenchOptions::default().seq_mib)]
        seq_mib: u32,
        /// Small files of the metadata workload
        #[arg(long, default_value_t = xtask::bench_cofs::CofsBenchOptions::default().files)]
        files: u32,
        /// Unpack only this directory of the kernel tree (e.g. fs); the
        /// whole tree (~1.3 GB, ~80 000 files: hours under TCG) by default
        #[arg(long, default_value = "")]
        subtree: String,
        /// Load the host driver with this `halt_poll_ns` (its default,
        /// 200000 ns, when not given; 0 turns halt polling off)
        #[arg(long)]
        halt_poll_ns: Option<u32>,
        /// The share's cache mode (`never`, the default, or `auto`)
        #[arg(long, default_value = "never", value_parser = colinux_devices::fs::Cache::parse)]
        cache: colinux_devices::fs::Cache,
    },
    /// Time applying a large real series (Debian's kernel patches plus its
    /// PREEMPT_RT series) in-process against `quilt push -a`, side by side.
    Apply {
        /// Kernel version whose Debian series is used
        #[arg(long, default_value = "6.1.176")]
        version: String,
        /// Repetitions of each tool
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Move Debian's real kernel series (its main series, ~165 patches) from
    /// one release to another with the rebase engine (not stopping at
    /// conflicts) and with `git rebase` (skipping each conflict), and compare
    /// outcomes per patch, resulting trees and times.
    Rebase {
        /// The release whose Debian series is moved
        #[arg(long, default_value = "6.1.176")]
        from: String,
        /// The release to move it onto
        #[arg(long, default_value = "6.12.100")]
        onto: String,
    },
    /// Time the maintainer's flow: the rebase engine stopping at each
    /// conflict and going on with --skip, against `git rebase` with --skip
    /// on the same commits (Debian's series), each cold and warm.
    RebaseFlow {
        /// The release whose Debian series is moved
        #[arg(long, default_value = "6.1.4")]
        from: String,
        /// The release to move it onto
        #[arg(long, default_value = "6.1.176")]
        onto: String,
        /// Warm runs of each tool
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,bindgen=error")),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        // Colour only for a terminal: logs and CI output stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    // libgit2 re-hashes every object it reads to check its id; git does not
    // (fsck does). The repositories are the cache's own, and the hashing was
    // about a sixth of a rebase's time.
    git2::opts::strict_hash_verification(false);
    let manifest = Manifest::load_default()?;
    // Before anything builds for the driver's or the test host's targets.
    // Moving the series builds nothing, and a maintainer runs it once per
    // conflict: the two rustup queries would be a tenth of a --skip.
    // Building images needs no Rust target either (and runs as root, where
    // rustup may not be set up).
    if !matches!(
        cli.cmd,
        Cmd::Rebase(_) | Cmd::Rootfs { .. } | Cmd::Image { .. }
    ) {
        xtask::toolchain::ensure()?;
    }
    match cli.cmd {
        Cmd::FetchKernel(args) => {
            let version = args.version(&manifest);
            let tree = xtask::fetch::fetch_kernel(&manifest, &version, &args.options())?;
            println!("linux {version} ({}): {}", tree.source, tree.path.display());
        }
        Cmd::Apply {
            series,
            tree,
            force,
            fuzz,
        } => {
            let series = series.unwrap_or_else(|| paths::repo_root().join("linux-patches"));
            let tree_path = match tree {
                Some(t) => t,
                None => {
                    let version = manifest.series.base.clone();
                    xtask::fetch::fetch_kernel(&manifest, &version, &FetchOptions::default())?.path
                }
            };
            let tree = colinux_series::tree::KernelTree::open(&tree_path)?;
            let accepted = manifest.accepted_hashes(&tree.version).unwrap_or_default();
            let base = xtask::manifest::series_base(&manifest, &series);
            colinux_series::apply::check_base(&tree, &base, &accepted, force)?;
            let report = colinux_series::apply::apply_series(
                &tree,
                &colinux_series::apply::ApplyOptions {
                    series_dir: series,
                    force,
                    max_fuzz: fuzz,
                },
            )?;
            print!("{}", report.render());
            if !report.ok() {
                anyhow::bail!(
                    "the series did not apply completely; {} is at the last patch that applied",
                    tree.path.display()
                );
            }
            println!(
                "{}: {} patches applied{}",
                tree.path.display(),
                report.patches.len(),
                if report.unchanged {
                    " (already up to date)"
                } else {
                    ""
                }
            );
        }
        Cmd::BuildKernel {
            fetch,
            base_config,
            force,
            jobs,
        } => {
            let version = fetch.version(&manifest);
            let opts =
                kernel_build_options(&manifest, &fetch, version.clone(), base_config, force, jobs)?;
            let out = xtask::build::build_kernel(&manifest, &opts)?;
            println!(
                "guest kernel linux {version}{}:\n  {}\n  {}\n  {}",
                if out.rebuilt { "" } else { " (up to date)" },
                out.vmlinux.display(),
                out.bzimage.display(),
                out.config.display()
            );
        }
        Cmd::Bench {
            which: BenchCmd::Apply { version, runs },
        } => {
            let text = xtask::bench::bench_apply(&manifest, &version, runs)?;
            println!("{text}");
        }
        Cmd::Bench {
            which: BenchCmd::Rebase { from, onto },
        } => {
            let text = xtask::bench::bench_rebase(&manifest, &from, &onto)?;
            println!("{text}");
        }
        Cmd::Bench {
            which: BenchCmd::RebaseFlow { from, onto, runs },
        } => {
            let text = xtask::bench::bench_rebase_flow(&manifest, &from, &onto, runs)?;
            println!("{text}");
        }
        Cmd::Bench {
            which:
                BenchCmd::Boot {
                    fetch,
                    boots,
                    runs,
                    cpu_millions,
                    syscalls,
                },
        } => {
            let version = fetch.version(&manifest);
            let build =
                kernel_build_options(&manifest, &fetch, version, "tinyconfig".into(), false, None)?;
            let opts = xtask::bench::BootBenchOptions {
                boots,
                runs,
                cpu_millions,
                syscalls,
                ..Default::default()
            };
            let text = xtask::bench::bench_boot(&manifest, &build, &opts)?;
            println!("{text}");
        }
        Cmd::Bench {
            which:
                BenchCmd::Cobd {
                    fetch,
                    seq_mib,
                    rand_ops,
                    jobs,
                },
        } => {
            let version = fetch.version(&manifest);
            let build =
                kernel_build_options(&manifest, &fetch, version, "tinyconfig".into(), false, None)?;
            let opts = xtask::bench::CobdBenchOptions {
                seq_mib,
                rand_ops,
                jobs,
                ..Default::default()
            };
            let text = xtask::bench::bench_cobd(&manifest, &build, &opts)?;
            println!("{text}");
        }
        Cmd::Bench {
            which:
                BenchCmd::Conet {
                    fetch,
                    mib,
                    runs,
                    from_log,
                },
        } => {
            let version = fetch.version(&manifest);
            let build =
                kernel_build_options(&manifest, &fetch, version, "tinyconfig".into(), false, None)?;
            let opts = xtask::bench_conet::ConetBenchOptions {
                mib,
                runs,
                from_log,
                ..Default::default()
            };
            let text = xtask::bench_conet::bench_conet(&manifest, &build, &opts)?;
            println!("{text}");
        }
        Cmd::Bench {
            which:
                BenchCmd::Cofs {
                    fetch,
                    seq_mib,
                    files,
                    subtree,
                    halt_poll_ns,
                    cache,
                },
        } => {
            let version = fetch.version(&manifest);
            let build = kernel_build_options(
                &manifest,
                &fetch,
                version.clone(),
                "tinyconfig".into(),
                false,
                None,
            )?;
            let opts = xtask::bench_cofs::CofsBenchOptions {
                seq_mib,
                files,
                subtree,
                halt_poll_ns,
                cache,
                ..Default::default()
            };
            let text = xtask::bench_cofs::bench_cofs(
                &manifest,
                &build,
                &fetch.options(),
                &version,
                &opts,
            )?;
            println!("{text}");
        }
        Cmd::Bench {
            which: BenchCmd::Passage { rounds },
        } => {
            let text = xtask::bench::bench_passage(rounds)?;
            println!("{text}");
        }
        Cmd::Codegen { check } => xtask::codegen::codegen(check)?,
        Cmd::Run {
            fetch,
            mem,
            shell,
            payload,
            image,
        } => {
            let version = fetch.version(&manifest);
            let build =
                kernel_build_options(&manifest, &fetch, version, "tinyconfig".into(), false, None)?;
            xtask::run::run(
                &manifest,
                &xtask::run::RunOptions {
                    build,
                    mem,
                    shell,
                    payload,
                    image,
                },
            )?;
        }
        Cmd::BuildInitrd {
            list,
            refresh,
            test_programs,
        } => {
            if refresh {
                colinux_testrig::guest_initrd::busybox(true)?;
            }
            let path = colinux_testrig::guest_initrd::build(
                &colinux_testrig::guest_initrd::InitrdOptions { test_programs },
            )?;
            if list {
                let data = std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                for e in colinux_testrig::cpio::list_newc(&data)
                    .with_context(|| format!("cannot list {}", path.display()))?
                {
                    println!("{}", e.render());
                }
            }
            println!("{}", path.display());
        }
        Cmd::BuildDriver { kernel_build_dir } => {
            let ko = xtask::driver_build::build_driver(kernel_build_dir.as_deref())?;
            println!("{}", ko.display());
        }
        Cmd::TestHost { which } => xtask::testhost_cli::main(which)?,
        Cmd::Package {
            out,
            no_image,
            no_lintian,
        } => {
            let r = xtask::package::package(
                &manifest,
                &xtask::package::PackageOptions {
                    out,
                    no_image,
                    lintian: !no_lintian,
                },
            )?;
            for f in r.debs.iter().chain([&r.tarball]).chain(r.rootfs.iter()) {
                println!("{}", f.display());
            }
            println!("{}", r.sums.display());
        }
        Cmd::Rootfs {
            output,
            size,
            suite,
            mirror,
            force,
        } => {
            if !colinux_buildenv::sysdeps::is_root() {
                anyhow::bail!(
                    "cargo xtask rootfs needs root (debootstrap makes files owned by other users \
                     and device nodes; mke2fs -d must read them all). Run:\n    {}",
                    xtask::images::rerun_as_root()?
                );
            }
            let out = colinux_images::rootfs::build(&colinux_images::rootfs::RootfsOptions {
                suite,
                mirror,
                size,
                output,
                force,
                ..Default::default()
            })?;
            xtask::images::report_rootfs(&out);
            println!("{}", out.image.display());
        }
        Cmd::Image {
            which:
                ImageCmd::Import {
                    src,
                    partition,
                    output,
                    force,
                },
        } => {
            let done = colinux_images::import::import(&colinux_images::import::ImportOptions {
                source: src,
                partition,
                output,
                force,
            })?;
            eprintln!("{}", done.summary());
            println!("{}", done.image().display());
        }
        Cmd::Soak {
            which: SoakCmd::Cobd { cycles },
        } => {
            let text = xtask::soak::soak_cobd(cycles)?;
            println!("{text}");
        }
        Cmd::Soak {
            which: SoakCmd::Boot { cycles },
        } => {
            let text = xtask::soak::soak_boot(cycles)?;
            println!("{text}");
        }
        Cmd::Fuzz {
            targets,
            seconds,
            runs,
            record,
        } => {
            xtask::fuzz::fuzz(&xtask::fuzz::FuzzOptions {
                targets,
                seconds,
                runs,
                record,
            })?;
        }
        Cmd::Test { no_kernel } => run_tests(no_kernel)?,
        Cmd::Rebase(args) => rebase(&manifest, args)?,
        Cmd::Refresh {
            tree,
            series,
            output,
        } => {
            let series = series.unwrap_or_else(|| paths::repo_root().join("linux-patches"));
            let tree = match tree {
                Some(t) => t,
                None => paths::kernel_tree(&manifest.series.base)?,
            };
            let tree = colinux_series::tree::KernelTree::open(&tree)?;
            let report = colinux_series::refresh::refresh(
                &tree,
                &colinux_series::refresh::RefreshOptions {
                    series_dir: series.clone(),
                    out_dir: output.clone(),
                },
            )?;
            println!(
                "{} refreshed from {}:",
                output.unwrap_or(series).display(),
                tree.path.display()
            );
            print!("{}", report.render());
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["onto", "cont", "skip", "abort"])))]
struct RebaseArgs {
    /// The pinned release to move the series onto
    #[arg(long)]
    onto: Option<String>,
    /// Go on after resolving a conflict (records the resolution)
    #[arg(long = "continue")]
    cont: bool,
    /// Drop the conflicted patch and go on
    #[arg(long)]
    skip: bool,
    /// Forget the rebase; the repository is left unchanged
    #[arg(long)]
    abort: bool,
    /// The series to move [default: linux-patches/]
    #[arg(long)]
    series: Option<PathBuf>,
    /// Write the rebased series here (and leave the series and kernels.toml
    /// alone) instead of rewriting the series in place
    #[arg(long)]
    output: Option<PathBuf>,
    /// The work tree [default: <cache>/rebase/<version>]
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Do not stop at conflicts: report each conflicted patch, leave it out
    /// of the rebased series and go on (a survey of a whole series; needs
    /// --output, so that no patch is lost from the series)
    #[arg(long, requires = "output", requires = "onto")]
    keep_going: bool,
}

fn rebase(manifest: &Manifest, args: RebaseArgs) -> Result<()> {
    let root = paths::cache_dir()?.join("rebase");
    let run = if let Some(v2) = &args.onto {
        manifest.pin(v2)?;
        let v1 = manifest.series.base.clone();
        let series = args
            .series
            .clone()
            .unwrap_or_else(|| paths::repo_root().join("linux-patches"));
        let in_place = args.output.is_none();
        let out_dir = args.output.clone().unwrap_or_else(|| series.clone());
        let fetch = FetchOptions::default();
        let v1_tree = xtask::fetch::fetch_kernel(manifest, &v1, &fetch)?;
        let v2_tree = xtask::fetch::fetch_kernel(manifest, v2, &fetch)?;
        let opts = colinux_series::rebase::RebaseOptions {
            series_dir: series,
            out_dir,
            v1_tree: v1_tree.path,
            v2_tree: v2_tree.path,
            work_dir: args.work_dir.clone().unwrap_or_else(|| root.join(v2)),
            manifest: in_place.then(|| manifest.path.clone()),
        };
        if args.keep_going {
            colinux_series::rebase::start_keep_going(&opts)?
        } else {
            colinux_series::rebase::start(&opts)?
        }
    } else {
        let work = match args.work_dir.clone() {
            Some(w) => w,
            None => {
                let found = colinux_series::rebase::find_in_progress(&root);
                match found.as_slice() {
                    [one] => one.clone(),
                    [] => anyhow::bail!("no rebase is in progress (under {})", root.display()),
                    _ => anyhow::bail!(
                        "several rebases are in progress; choose one with --work-dir: {}",
                        found
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
            }
        };
        if args.abort {
            colinux_series::rebase::abort(&work)?;
            println!("rebase aborted; {} is back at vanilla", work.display());
            return Ok(());
        } else if args.skip {
            colinux_series::rebase::skip(&work)?
        } else {
            colinux_series::rebase::continue_rebase(&work)?
        }
    };
    print!("{}", run.render());
    if !run.finished() {
        anyhow::bail!("the rebase stopped at a conflict");
    }
    Ok(())
}

fn kernel_build_options(
    manifest: &Manifest,
    fetch: &FetchArgs,
    version: String,
    base_config: String,
    force: bool,
    jobs: Option<usize>,
) -> Result<xtask::build::BuildOptions> {
    // linux-patches/ for the series base, linux-patches-<V>/ for another line;
    // --force applies linux-patches/ to a version that has no series of its own.
    let series_dir = match xtask::manifest::series_for(manifest, &paths::repo_root(), &version) {
        Ok(dir) => dir,
        Err(_) if force => paths::repo_root().join("linux-patches"),
        Err(e) => return Err(e),
    };
    Ok(xtask::build::BuildOptions {
        version,
        fetch: fetch.options(),
        series_dir,
        configs_dir: paths::repo_root().join("kernel-configs"),
        base_config,
        force,
        jobs: jobs.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }),
        build_dir: None,
    })
}

/// Everything CI runs (see .ci/run and the README).
fn run_tests(no_kernel: bool) -> Result<()> {
    colinux_buildenv::sysdeps::ensure(
        "the tests' oracles",
        colinux_buildenv::sysdeps::QUILT_ORACLE,
    )?;
    colinux_buildenv::sysdeps::ensure(
        "building the i386 guest kernel",
        colinux_buildenv::sysdeps::KERNEL_BUILD,
    )?;
    let sh = xshell::Shell::new()?;
    sh.change_dir(paths::repo_root());
    let step = |name: &str| tracing::info!("=== {name}");
    step("cargo fmt --check");
    xshell::cmd!(sh, "cargo fmt --all -- --check")
        .run()
        .context("formatting differs: run `cargo fmt --all`")?;
    step("cargo clippy");
    xshell::cmd!(sh, "cargo clippy --workspace --all-targets -- -D warnings")
        .run()
        .context("clippy found problems")?;
    step("cargo test");
    xshell::cmd!(sh, "cargo test --workspace -- --include-ignored")
        .run()
        .context("tests failed")?;
    step("cargo xtask fuzz --runs 50000 (deterministic; the long run: cargo xtask fuzz)");
    xtask::fuzz::fuzz(&xtask::fuzz::FuzzOptions {
        targets: Vec::new(),
        seconds: 10,
        runs: Some(50_000),
        record: false,
    })?;
    if !no_kernel {
        step("cargo xtask build-kernel (twice: the second must be a no-op)");
        xshell::cmd!(sh, "cargo xtask build-kernel")
            .run()
            .context("the guest kernel build failed")?;
        let started = std::time::Instant::now();
        let out = xshell::cmd!(sh, "cargo xtask build-kernel")
            .read()
            .context("the second guest kernel build failed")?;
        if !out.contains("(up to date)") {
            anyhow::bail!("the second build-kernel run was not a no-op:\n{out}");
        }
        tracing::info!(
            "second build-kernel run: up to date in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
