//! System packages the xtask needs, installed on demand.
//!
//! Each task names the Debian packages it needs. Missing ones are installed
//! with `apt-get` when we run as root; otherwise the error prints the exact
//! command to run. On a system without `dpkg-query` we only check commands.

use std::process::Command;

use anyhow::{Context, Result};

/// Packages to build an i386 kernel out of tree on an x86_64 Debian host.
pub const KERNEL_BUILD: &[&str] = &[
    "make",
    "gcc",
    "gcc-multilib",
    "bc",
    "bison",
    "flex",
    "libelf-dev",
    "libssl-dev",
    "cpio",
    "xz-utils",
    "perl",
];

/// Packages to fetch Debian source packages.
pub const DEBIAN_SOURCE: &[&str] = &["apt", "debian-archive-keyring"];

/// Packages the patch-series tests and benchmarks use as their oracle.
pub const QUILT_ORACLE: &[&str] = &["quilt", "patch", "diffutils"];

/// Packages the QEMU test host needs (`colinux_testrig::testhost`): QEMU, and a static
/// busybox for its initramfs. The host kernel's own packages are resolved at
/// run time (`colinux_testrig::hostkernel`); `dpkg-deb` and `apt-get` come with dpkg/apt.
pub const TEST_HOST: &[&str] = &["qemu-system-x86", "busybox-static", "apt", "dpkg"];

/// Packages the test host's network needs: passt, conet's user-mode NAT,
/// copied with its libraries into the test host
/// (`colinux_testrig::hostpasst`).
pub const TEST_HOST_NET: &[&str] = &["passt"];

/// Packages to build virtiofsd, cofs's back end, from crates.io
/// (`colinux_testrig::hostvirtiofsd`; Debian 12 has no virtiofsd
/// package): the libraries it links.
pub const VIRTIOFSD_BUILD: &[&str] = &["libcap-ng-dev", "libseccomp-dev", "pkg-config"];

/// Packages of the DNS server on the test host's loopback that conet's
/// test resolves a name through: dnsmasq, copied with its libraries into
/// the test host (`colinux_testrig::hostpasst`).
pub const TEST_HOST_DNS: &[&str] = &["dnsmasq-base"];

/// Packages of the X server on the test host that the guest's X clients
/// display on (conet's test): Xvfb, the keymap compiler it runs and the
/// keyboard data, copied into the test host (`colinux_testrig::hostpasst`).
pub const TEST_HOST_X: &[&str] = &["xvfb", "x11-xkb-utils", "xkb-data"];

/// Packages for git in the test host (`colinux_testrig::hostpasst::git_files`):
/// the cofs test checks there a repository the guest made in a share.
pub const TEST_HOST_GIT: &[&str] = &["git"];

/// Packages to download the guest's busybox (`colinux_testrig::guest_initrd`):
/// apt (through a private configuration) and Debian's archive keys.
pub const GUEST_INITRD: &[&str] = &["apt", "debian-archive-keyring"];

/// Make sure every package in `packages` is installed.
pub fn ensure(what: &str, packages: &[&str]) -> Result<()> {
    if which("dpkg-query").is_none() {
        tracing::warn!(
            "not a Debian-like system (no dpkg-query); cannot check the packages for {what}: {}",
            packages.join(" ")
        );
        return Ok(());
    }
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let cmd = format!(
        "apt-get update && apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    if !is_root() {
        anyhow::bail!(
            "{what} needs these system packages, which are missing: {}\nrun as root:\n    sudo sh -c '{cmd}'",
            missing.join(" ")
        );
    }
    tracing::info!(
        "installing system packages for {what}: {}",
        missing.join(" ")
    );
    run_apt(&["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(missing.iter().copied());
    // apt-get occasionally fails half-way (a mirror hiccup); one retry with
    // --fix-broken covers it.
    if run_apt(&args).is_err() {
        tracing::warn!("apt-get install failed once; retrying");
        args.insert(1, "--fix-broken");
        run_apt(&args)?;
    }
    let still: Vec<&str> = missing.iter().copied().filter(|p| !installed(p)).collect();
    if !still.is_empty() {
        anyhow::bail!("apt-get did not install: {}", still.join(" "));
    }
    Ok(())
}

/// How long apt-get waits for another apt or dpkg (unattended-upgrades, a
/// second build) to let go of its locks before it gives up.
const APT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

fn run_apt(args: &[&str]) -> Result<()> {
    let started = std::time::Instant::now();
    loop {
        // dpkg's frontend lock is waited for by apt itself; the package
        // lists' lock (apt-get update) is not, hence the loop.
        let out = Command::new("apt-get")
            .arg(format!("-oDPkg::Lock::Timeout={}", APT_LOCK_WAIT.as_secs()))
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(std::process::Stdio::inherit())
            .output()
            .context("cannot run apt-get")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprint!("{stderr}");
        if out.status.success() {
            return Ok(());
        }
        if is_lock_busy(&stderr) && started.elapsed() < APT_LOCK_WAIT {
            tracing::info!("apt-get: another apt or dpkg holds its lock; waiting");
            std::thread::sleep(std::time::Duration::from_secs(5));
            continue;
        }
        anyhow::bail!("apt-get {} failed ({})", args.join(" "), out.status);
    }
}

/// Whether apt-get failed because another process held one of its locks.
fn is_lock_busy(stderr: &str) -> bool {
    stderr.contains("Could not get lock")
        || stderr.contains("Unable to acquire the dpkg frontend lock")
        || stderr.contains("Unable to lock directory")
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}", package])
        .output()
        .map(|o| o.status.success() && o.stdout.starts_with(b"ii"))
        .unwrap_or(false)
}

/// True when running as root (uid 0).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// The path of `cmd` on `$PATH`.
pub fn which(cmd: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
}

/// Packages `cargo xtask codegen` needs: libclang for bindgen, the uapi
/// headers the ABI header includes.
pub const CODEGEN: &[&str] = &["libclang-dev", "linux-libc-dev"];

/// Packages to build the host driver (`cargo xtask build-driver`): make and
/// gcc for Kbuild, binutils to combine and check the Rust core's object,
/// kmod for `modinfo`. The kernel headers come from `colinux_testrig::hostkernel`.
pub const DRIVER_BUILD: &[&str] = &["make", "gcc", "binutils", "kmod"];

/// Packages to build the guest's root file system (`colinux_images::rootfs`):
/// debootstrap and Debian's archive keys for the bootstrap, e2fsprogs for
/// `mke2fs -d` (and `debugfs`/`e2fsck`, which the tests check the image with).
pub const ROOTFS: &[&str] = &["debootstrap", "debian-archive-keyring", "e2fsprogs"];

/// Packages `cargo xtask image import` needs for images that are not raw
/// (`qemu-img convert`; `colinux_images::import`).
pub const IMAGE_CONVERT: &[&str] = &["qemu-utils"];

#[cfg(test)]
mod tests {
    use super::is_lock_busy;

    #[test]
    fn apt_lock_messages_are_told_from_other_failures() {
        // What apt 2.6 (Debian 12) prints when another apt holds a lock.
        assert!(is_lock_busy(
            "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 19793 (apt-get)\n\
             E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another process using it?"
        ));
        assert!(is_lock_busy(
            "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 7 (apt-get)\n\
             E: Unable to lock directory /var/lib/apt/lists/"
        ));
        assert!(!is_lock_busy("E: Unable to locate package no-such-package"));
        assert!(!is_lock_busy(""));
    }
}
