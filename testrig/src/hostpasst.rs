//! passt in the test host: the user-mode NAT of conet runs there beside
//! the daemon.
//!
//! The test host's userland is the build machine's own (busybox from its
//! `busybox-static`, like Debian 12 amd64 both): passt is Debian's `passt`
//! package installed on the build machine ([`sysdeps::TEST_HOST_NET`]),
//! and the files it needs are copied into the test host's initramfs at
//! the same paths — `/usr/bin/passt`, `passt.avx2` (which `passt` runs on
//! CPUs with AVX2) and the shared libraries `ldd` names, with the ELF
//! interpreter.
//!
//! Other programs of the build machine go into the test host the same way
//! ([`program_files`]): dnsmasq ([`dnsmasq_files`]), the DNS server on the
//! test host's loopback that passt forwards the guest's queries to, and
//! Xvfb ([`xvfb_files`]), the X server the guest's X clients display on,
//! and git ([`git_files`]), which checks a repository the guest made in a
//! shared directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use colinux_buildenv::sysdeps;

/// Where passt is, on the build machine and in the test host.
pub const PASST: &str = "/usr/bin/passt";

/// Test-host shell lines that make passt usable there and point the
/// daemon at it (`$COLINUX_PASST`): see [`crate::sandboxed`].
pub fn wrapper_setup() -> String {
    crate::sandboxed::wrapper_setup(PASST, "COLINUX_PASST")
}

/// Where dnsmasq is, on the build machine and in the test host.
pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// A file for the test host: (source on the build machine, path in the
/// test host, mode).
pub type HostFile = (PathBuf, String, u32);

/// The files passt needs in the test host.
pub fn files() -> Result<Vec<HostFile>> {
    sysdeps::ensure(
        "the user-mode network (passt) in the test host",
        sysdeps::TEST_HOST_NET,
    )?;
    program_files(&[PASST], &["/usr/bin/passt.avx2"])
}

/// Where git is, on the build machine (Debian's `git` package) and in
/// the test host.
pub const GIT: &str = "/usr/bin/git";

/// The files git needs in the test host: the program and its libraries.
/// Its built-in commands (`fsck`, `rev-parse`, `log`) are all there;
/// commands in `/usr/lib/git-core` and templates are not copied.
pub fn git_files() -> Result<Vec<HostFile>> {
    sysdeps::ensure("git in the test host", sysdeps::TEST_HOST_GIT)?;
    program_files(&[GIT], &[])
}

/// Where Xvfb and the keymap compiler it runs are, and the keyboard data
/// it reads, on the build machine and in the test host.
pub const XVFB: &str = "/usr/bin/Xvfb";
pub const XKBCOMP: &str = "/usr/bin/xkbcomp";
pub const XKB_DATA: &str = "/usr/share/X11/xkb";

/// The files Xvfb (an X server without a screen, for the guest's X
/// clients) needs in the test host: Xvfb, xkbcomp, their libraries and
/// the XKB data. The test host must also have `/var/lib/xkb` (compiled
/// keymaps go there) before Xvfb starts.
pub fn xvfb_files() -> Result<Vec<HostFile>> {
    sysdeps::ensure("the X server (Xvfb) in the test host", sysdeps::TEST_HOST_X)?;
    let mut out = program_files(&[XVFB, XKBCOMP], &[])?;
    let mut stack = vec![PathBuf::from(XKB_DATA)];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("cannot read {}", dir.display()))?;
            let path = e.path();
            // Symbolic links are followed: the test host gets a copy.
            if path.is_dir() {
                stack.push(path);
            } else if path.is_file() {
                let dest = path.display().to_string();
                out.push((path, dest, 0o644));
            }
        }
    }
    Ok(out)
}

/// The files dnsmasq needs in the test host.
pub fn dnsmasq_files() -> Result<Vec<HostFile>> {
    sysdeps::ensure(
        "the DNS server (dnsmasq) in the test host",
        sysdeps::TEST_HOST_DNS,
    )?;
    program_files(&[DNSMASQ], &[])
}

/// `programs` (which must be there) and `optional` ones (taken when they
/// are), each with the shared libraries it loads, at their own paths.
pub fn program_files(programs: &[&str], optional: &[&str]) -> Result<Vec<HostFile>> {
    let mut out: Vec<HostFile> = Vec::new();
    let mut add = |p: &Path, mode: u32| {
        let dest = p.display().to_string();
        if !out.iter().any(|(_, d, _)| *d == dest) {
            out.push((p.to_path_buf(), dest, mode));
        }
    };
    let all = programs.iter().map(|p| (p, true));
    for (prog, needed) in all.chain(optional.iter().map(|p| (p, false))) {
        let p = Path::new(prog);
        if !p.is_file() {
            if needed {
                bail!("{prog} is not installed on this machine");
            }
            continue;
        }
        add(p, 0o755);
        for lib in shared_libraries(p)? {
            add(&lib, 0o755);
        }
    }
    Ok(out)
}

/// The shared libraries and ELF interpreter `program` loads, from `ldd`.
pub(crate) fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .context("cannot run ldd")?;
    if !out.status.success() {
        bail!(
            "ldd {} failed: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_ldd(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("ldd {}", program.display()))
}

/// The absolute paths in `ldd` output (`libc.so.6 => /lib/…/libc.so.6
/// (0x…)`, `/lib64/ld-linux-x86-64.so.2 (0x…)`); the vDSO has none.
fn parse_ldd(text: &str) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("not found") {
            bail!("a library is missing: {line}");
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ldd_output_names_the_libraries_and_the_interpreter() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f03)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f04)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
    }
}
