//! The guest's root file system (`cargo xtask rootfs`): the real image,
//! built from the cached debootstrapped tree (debootstrapped first if the
//! cache has none), checked from the outside with `debugfs` and `e2fsck`:
//! ownership kept, systemd as init, the console autologin, the cobd udev
//! rule, the fstab by label; then the cache at work (a second build is a
//! no-op, a changed image is not replaced without `force`).

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use colinux_images::rootfs::{self, RootfsOptions};

/// `debugfs -R REQUEST IMAGE`'s output (it prints errors on stderr and
/// exits 0 anyway, so both are returned together).
fn debugfs(image: &Path, request: &str) -> String {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(request)
        .arg(image)
        .output()
        .expect("debugfs (e2fsprogs)");
    assert!(out.status.success(), "debugfs -R {request:?}: {out:?}");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn cat(image: &Path, path: &str) -> String {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(image)
        .output()
        .unwrap();
    assert!(out.status.success(), "debugfs cat {path}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "debootstraps Debian for i386 into the cache the first time (a few minutes) and needs root; run by `cargo xtask test`"]
fn the_root_image_is_debian_with_systemd_and_the_colinux_configuration() {
    assert!(
        colinux_buildenv::sysdeps::is_root(),
        "this test builds the root file system, which needs root"
    );
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("colinux-root.img");
    let opts = RootfsOptions {
        output: Some(image.clone()),
        ..Default::default()
    };
    let first = rootfs::build(&opts).unwrap();
    assert!(first.written);
    assert_eq!(first.image, image);
    assert_eq!(
        std::fs::metadata(&image).unwrap().len(),
        rootfs::DEFAULT_SIZE
    );
    assert!(
        first.allocated < 600 << 20,
        "the image is sparse and lean: {} bytes allocated",
        first.allocated
    );

    // A clean ext4 file system with our label.
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(&image)
        .output()
        .unwrap();
    assert!(fsck.status.success(), "e2fsck -fn: {fsck:?}");
    let stats = debugfs(&image, "stats");
    assert!(
        stats.contains("Filesystem volume name:   colinux-root"),
        "{stats}"
    );
    assert!(stats.contains("extent"), "ext4 features: {stats}");

    // Ownership and modes came from a tree made as root.
    let passwd = debugfs(&image, "stat /usr/bin/passwd");
    assert!(passwd.contains("User:     0   Group:     0"), "{passwd}");
    assert!(passwd.contains("Mode:  04755"), "setuid kept: {passwd}");
    let shadow = debugfs(&image, "stat /etc/shadow");
    assert!(shadow.contains("Mode:  0640"), "{shadow}");
    assert!(shadow.contains("Group:    42"), "group shadow: {shadow}");
    assert!(cat(&image, "/etc/shadow").starts_with("root:*:"));
    // Device nodes were copied (systemd mounts devtmpfs over them anyway).
    let console = debugfs(&image, "stat /dev/console");
    assert!(console.contains("Type: character special"), "{console}");

    // Debian's init is systemd.
    let init = debugfs(&image, "stat /usr/sbin/init");
    assert!(init.contains("Type: symlink"), "{init}");
    assert!(init.contains("/lib/systemd/systemd"), "{init}");
    let systemd = debugfs(&image, "stat /usr/lib/systemd/systemd");
    assert!(systemd.contains("Type: regular"), "{systemd}");
    assert!(debugfs(&image, "stat /sbin").contains("Type: symlink"));

    // The configuration.
    assert_eq!(cat(&image, "/etc/hostname"), "colinux\n");
    assert!(cat(&image, "/etc/fstab").contains("\nLABEL=colinux-root / ext4 defaults 0 1\n"));
    let autologin = cat(&image, &format!("/{}", rootfs::AUTOLOGIN_PATH));
    assert_eq!(autologin, rootfs::AUTOLOGIN_DROPIN);
    assert!(autologin.contains("agetty --autologin root"));
    let wants = debugfs(
        &image,
        "stat /etc/systemd/system/getty.target.wants/serial-getty@hvc0.service",
    );
    assert!(
        wants.contains("/lib/systemd/system/serial-getty@.service"),
        "{wants}"
    );
    assert_eq!(
        cat(&image, &format!("/{}", rootfs::COBD_RULE_PATH)),
        rootfs::COBD_RULE
    );
    assert_eq!(cat(&image, "/etc/machine-id"), "");
    assert!(cat(&image, "/etc/apt/sources.list").contains(" bookworm main\n"));
    // The packages' archives and lists are not in the image.
    let archives = debugfs(&image, "ls -p /var/cache/apt/archives");
    assert!(!archives.contains(".deb"), "{archives}");
    assert!(!cat(&image, "/var/lib/dpkg/status").is_empty());
    assert!(cat(&image, "/var/lib/dpkg/status").contains("Package: systemd-sysv\n"));

    // Unchanged inputs: nothing to do.
    let started = Instant::now();
    let again = rootfs::build(&opts).unwrap();
    assert!(!again.written && !again.bootstrapped, "{again:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // Forced: the image again from the cached tree, in seconds.
    let started = Instant::now();
    let forced = rootfs::build(&RootfsOptions {
        force: true,
        ..opts.clone()
    })
    .unwrap();
    assert!(forced.written && !forced.bootstrapped, "{forced:?}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(120), "rebuilding took {took:?}");
    // A guest wrote to it: it is not replaced without force.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"guest data", 100 << 20).unwrap();
    drop(f);
    let err = rootfs::build(&opts).unwrap_err();
    assert!(format!("{err:#}").contains("pass --force"), "{err:#}");
}
