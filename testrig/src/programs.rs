//! The test programs that run in the guest (and natively in the test host,
//! for comparison): `tests/guest-bench/*.c`, freestanding i386 binaries built
//! with the host's gcc.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use colinux_buildenv::{paths, sysdeps};

/// The guest benchmark programs' sources, relative to the repository root.
pub const GUEST_BENCH_DIR: &str = "tests/guest-bench";

/// The guest benchmark programs (`<GUEST_BENCH_DIR>/<name>.c`), installed as
/// `/bin/<name>` in the guest's initramfs and `/root/<name>` in the test
/// host; `hostile` is not a benchmark but what the boot tests run as a
/// hostile guest user (sysenter, syscall, a user segment in DS).
pub const GUEST_BENCH_PROGRAMS: &[&str] = &["cpuloop", "ppidloop", "hostile"];

/// The programs of the guest initramfs "with test programs": those of
/// [`GUEST_BENCH_PROGRAMS`] and [`NETIO`] (a TCP client and server the
/// busybox guest lacks: conet's test streams with it).
pub const GUEST_INITRD_PROGRAMS: &[&str] = &["cpuloop", "ppidloop", "hostile", NETIO];

/// gcc flags of every freestanding i386 program the rig builds (these and
/// the test payload): static, no libc, no libgcc, no FPU or vector
/// registers in generated code.
pub const FREESTANDING_I386_CFLAGS: &[&str] = &[
    "-m32",
    "-march=i686",
    "-ffreestanding",
    "-fno-pic",
    "-fno-pie",
    "-no-pie",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-mgeneral-regs-only",
    "-O2",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-nostdlib",
    "-static",
    "-Wl,--build-id=none",
    "-Wl,-z,noexecstack",
];

/// Compile `args` (sources and extra flags, after
/// [`FREESTANDING_I386_CFLAGS`]) with gcc into `out`; `what` names the
/// program in errors (gcc's own messages included).
pub fn gcc_freestanding(what: &str, args: &[std::ffi::OsString], out: &Path) -> Result<()> {
    let output = Command::new("gcc")
        .args(FREESTANDING_I386_CFLAGS)
        .args(args)
        .arg("-o")
        .arg(out)
        .output()
        .context("cannot run gcc (is it installed?)")?;
    if !output.status.success() {
        let _ = std::fs::remove_file(out);
        anyhow::bail!(
            "gcc failed to build {what} ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The disk benchmark of `cargo xtask bench cobd`
/// (`<GUEST_BENCH_DIR>/diskio.c`): not in the initramfs, the Debian guest
/// gets it on a disk.
pub const DISKIO: &str = "diskio";

/// The mapped-file tool of the cofs test
/// (`<GUEST_BENCH_DIR>/mmapio.c`): the Debian guest runs it from a share.
pub const MMAPIO: &str = "mmapio";

/// The metadata workload of `cargo xtask bench cofs`
/// (`<GUEST_BENCH_DIR>/fsmeta.c`): create, stat and unlink many files.
pub const FSMETA: &str = "fsmeta";

/// The TCP benchmark of `cargo xtask bench conet`
/// (`<GUEST_BENCH_DIR>/netio.c`): like [`DISKIO`], on a disk for the
/// Debian guest.
pub const NETIO: &str = "netio";

/// Build the guest benchmark programs ([`GUEST_BENCH_PROGRAMS`], tiny:
/// every call) into `<target>/guest-bench/`; returns `(name, path)` each.
/// The same binaries run in the guest and natively in the test host (an
/// x86_64 kernel with IA32 emulation).
pub fn build_guest_bench() -> Result<Vec<(String, PathBuf)>> {
    GUEST_BENCH_PROGRAMS
        .iter()
        .map(|name| Ok((name.to_string(), build_guest_program(name)?)))
        .collect()
}

/// Build `<GUEST_BENCH_DIR>/<name>.c` into `<target>/guest-bench/<name>`
/// (rewritten only when it changed); its path.
pub fn build_guest_program(name: &str) -> Result<PathBuf> {
    sysdeps::ensure(
        "building the guest benchmark programs",
        &["gcc", "gcc-multilib"],
    )?;
    let src = paths::repo_root().join(GUEST_BENCH_DIR);
    let out_dir = paths::target_dir().join("guest-bench");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let exe = out_dir.join(name);
    let tmp = out_dir.join(format!("{name}.tmp.{}", std::process::id()));
    tracing::debug!("building {}", exe.display());
    let source = src.join(format!("{name}.c"));
    gcc_freestanding(
        &source.display().to_string(),
        &[source.clone().into_os_string()],
        &tmp,
    )?;
    let data = std::fs::read(&tmp).with_context(|| format!("cannot read {}", tmp.display()))?;
    crate::elf::check_i386_static(&data).with_context(|| format!("{} as built", tmp.display()))?;
    if std::fs::read(&exe).ok().as_deref() == Some(data.as_slice()) {
        let _ = std::fs::remove_file(&tmp);
    } else {
        std::fs::rename(&tmp, &exe)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), exe.display()))?;
    }
    Ok(exe)
}
