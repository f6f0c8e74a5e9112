//! The test programs that run in the guest (and natively in the test host,
//! for comparison): `tests/guest-bench/*.c`, freestanding i386 binaries built
//! with the host's gcc.

use std::path::PathBuf;
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

/// gcc flags of the guest benchmark programs: freestanding i386, static,
/// no libc, no libgcc.
const GUEST_BENCH_CFLAGS: &[&str] = &[
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

/// Build the guest benchmark programs ([`GUEST_BENCH_PROGRAMS`], tiny:
/// every call) into `<target>/guest-bench/`; returns `(name, path)` each.
/// The same binaries run in the guest and natively in the test host (an
/// x86_64 kernel with IA32 emulation).
pub fn build_guest_bench() -> Result<Vec<(String, PathBuf)>> {
    sysdeps::ensure(
        "building the guest benchmark programs",
        &["gcc", "gcc-multilib"],
    )?;
    let src = paths::repo_root().join(GUEST_BENCH_DIR);
    let out_dir = paths::target_dir().join("guest-bench");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let mut out = Vec::new();
    for name in GUEST_BENCH_PROGRAMS {
        let exe = out_dir.join(name);
        let tmp = out_dir.join(format!("{name}.tmp.{}", std::process::id()));
        tracing::debug!("building {}", exe.display());
        let output = Command::new("gcc")
            .args(GUEST_BENCH_CFLAGS)
            .arg(src.join(format!("{name}.c")))
            .arg("-o")
            .arg(&tmp)
            .output()
            .context("cannot run gcc (is it installed?)")?;
        if !output.status.success() {
            let _ = std::fs::remove_file(&tmp);
            anyhow::bail!(
                "gcc failed to build {} ({}):\n{}",
                src.join(format!("{name}.c")).display(),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let data = std::fs::read(&tmp).with_context(|| format!("cannot read {}", tmp.display()))?;
        crate::elf::check_i386_static(&data)
            .with_context(|| format!("{} as built", tmp.display()))?;
        if std::fs::read(&exe).ok().as_deref() == Some(data.as_slice()) {
            let _ = std::fs::remove_file(&tmp);
        } else {
            std::fs::rename(&tmp, &exe)
                .with_context(|| format!("cannot rename {} to {}", tmp.display(), exe.display()))?;
        }
        out.push((name.to_string(), exe));
    }
    Ok(out)
}
