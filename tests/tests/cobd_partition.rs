//! cobd on host block devices that are not whole image files, in the test
//! host:
//!
//! - a raw partition of a partitioned host disk (`cobd1=/dev/vdb2`): the
//!   Debian guest writes its last sector, cannot write past it, formats,
//!   mounts and fills it; on the build machine afterwards the partition
//!   table and the neighbouring partitions are byte for byte what they
//!   were (the one before holds random bytes, the one after an ext4 file
//!   system the host had mounted read-only), and the unit holds a clean ext4 with
//!   the guest's file; a partition the host has mounted is refused by
//!   `colinux run` (its exclusive claim fails);
//! - a failing disk (QEMU's blkdebug: reads of one sector fail with EIO in
//!   the test host): the guest (the busybox initramfs) gets an I/O error
//!   for that sector and goes on reading the others; the daemon's log
//!   names the unit and the byte offset; nothing hangs.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use colinux_images::rootfs::{self, RootfsOptions};
use colinux_testrig::diskimage::{self, Ext4Image, PartitionedImage};
use colinux_testrig::session::{self, Root, Session};
use colinux_testrig::testhost::Disk;
use colinux_tests::ext4::{cat, fsck};
use colinux_tests::guest::{context, run_one, scenario, serial, step_text};

/// `len` bytes of `path` from `offset`.
fn bytes_at(path: &Path, offset: u64, len: u64) -> Vec<u8> {
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut v = vec![0u8; len as usize];
    f.read_exact(&mut v).unwrap();
    v
}

/// Deterministic bytes that no file system writes.
fn pattern(len: u64, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// What step `n` printed (see [`step_text`]).
fn step(sess: &Session, n: usize, ctx: &str) -> String {
    step_text(sess, n, ctx)
}

const PARTITION_STEPS: &[&str] = &[
    // 1: the unit's size, its last sector written, one past it refused.
    "n=$(blockdev --getsz /dev/cobd1); echo sectors-$n; dd if=/dev/zero of=/dev/cobd1 bs=512 count=1 seek=$((n - 1)) oflag=direct 2>/dev/null; echo last-$?; dd if=/dev/zero of=/dev/cobd1 bs=512 count=1 seek=$n oflag=direct 2>&1 | grep -q 'No space left' && echo past-refused",
    // 2: formatted, mounted, filled, checked after a remount.
    "mkfs.ext4 -q -F -L part /dev/cobd1 && mount /dev/cobd1 /mnt && dd if=/dev/urandom of=/mnt/blob bs=1M count=8 2>/dev/null && (cd /mnt && sha256sum blob > blob.sum) && echo from-the-guest-42 > /mnt/hello && sync && umount /mnt && mount /dev/cobd1 /mnt && (cd /mnt && sha256sum -c blob.sum) && umount /mnt && echo partition-$((6*7))",
];

#[test]
#[ignore = "boots the Debian image in the test host with a partitioned host disk; run by `cargo xtask test`"]
fn a_raw_host_partition_is_a_unit_and_its_neighbours_stay_untouched() {
    let _serial = serial();
    let dir = diskimage::scratch_dir("cobd-partition").unwrap();
    let built = rootfs::build(&RootfsOptions::default()).unwrap();
    let root = dir.join("root.img");
    let st = Command::new("cp")
        .arg("--sparse=always")
        .arg(&built.image)
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
    // vdb: 1 = 8 MiB of random bytes, 2 = the unit (32 MiB), 3 = an ext4
    // file system the host mounts.
    let disk = dir.join("parts.img");
    let parts = PartitionedImage::new(64)
        .partition(8)
        .partition(32)
        .rest()
        .create(&disk)
        .unwrap();
    assert_eq!(parts.len(), 3);
    let before_p1 = pattern(parts[0].size, 0x5eed);
    {
        let mut f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
        f.seek(SeekFrom::Start(parts[0].start)).unwrap();
        f.write_all(&before_p1).unwrap();
        // The unit starts with other random bytes (the guest overwrites them).
        f.seek(SeekFrom::Start(parts[1].start)).unwrap();
        f.write_all(&pattern(parts[1].size, 7)).unwrap();
    }
    Ext4Image::new(parts[2].size >> 20)
        .label("hostpart")
        .file("host.txt", "the host's own\n")
        .create_in(&disk, parts[2].start)
        .unwrap();
    let table = bytes_at(&disk, 0, parts[0].start);
    let before_p3 = bytes_at(&disk, parts[2].start, parts[2].size);

    let refusal = format!(
        "mkdir -p /hostpart && mount -t ext4 -o ro,noload /dev/vdb3 /hostpart\n\
         if {c} run name=busy kernel={k} cobd1=/dev/vdb3 > /tmp/busy 2>&1; then echo 'partition: FAILED a mounted partition was accepted'; exit 1; fi\n\
         sed 's/^/partition: refused: /' /tmp/busy\n\
         umount /hostpart\n\
         GUEST_STEP_WAIT=300\nGUEST_END_WAIT=300\nguest_boot ",
        c = session::HOST_COLINUX,
        k = session::HOST_VMLINUX,
    );
    let script = session::session_script_with(
        Root::Disk,
        256,
        PARTITION_STEPS,
        "poweroff",
        "rmmod colinux\necho cobd-partition-done",
        "cobd1=/dev/vdb2",
    )
    .replacen("guest_boot ", &refusal, 1);
    let s = scenario("cobd-partition", script, Duration::from_secs(1200))
        .disk(&root)
        .disk(&disk);
    let (out, sess) = run_one(&s);
    let ctx = context(&out, &sess);
    assert!(
        out.console
            .lines()
            .any(|l| l.contains("partition: refused: ")
                && l.contains("/dev/vdb3 is in use by the host")),
        "the mounted partition was not refused as in use{ctx}"
    );
    let sectors = parts[1].size / 512;
    let edge = step(&sess, 1, &ctx);
    assert!(
        edge.contains(&format!("sectors-{sectors}")) && edge.contains("last-0"),
        "the unit's size or its last sector: {edge}{ctx}"
    );
    assert!(
        edge.contains("past-refused"),
        "a write past the unit's end must fail: {edge}{ctx}"
    );
    assert!(
        step(&sess, 2, &ctx).contains("partition-42"),
        "format, mount, fill on the partition{ctx}"
    );
    assert_eq!(sess.status, Some(0), "poweroff{ctx}");
    assert!(
        out.passed && out.console.contains("cobd-partition-done"),
        "{ctx}"
    );

    // The neighbours, byte for byte.
    assert!(
        bytes_at(&disk, 0, parts[0].start) == table,
        "the partition table and the gap before partition 1 changed"
    );
    assert!(
        bytes_at(&disk, parts[0].start, parts[0].size) == before_p1,
        "partition 1 (before the unit) changed"
    );
    assert!(
        bytes_at(&disk, parts[2].start, parts[2].size) == before_p3,
        "partition 3 (after the unit) changed"
    );
    // The unit: a clean ext4 holding the guest's file.
    let unit = dir.join("unit.img");
    std::fs::write(&unit, bytes_at(&disk, parts[1].start, parts[1].size)).unwrap();
    let (code, report) = fsck(&unit);
    assert_eq!(code, 0, "e2fsck -fn of the unit:\n{report}");
    assert_eq!(cat(&unit, "/hello").trim(), "from-the-guest-42");
}

const FAILING_STEPS: &[&str] = &[
    // 1: the first MiB reads.
    "dd if=/dev/vda of=/dev/null bs=4096 count=256 2>/dev/null; echo first-$?",
    // 2: the 4 KiB block holding sector 8192 (4 MiB) fails.
    "dd if=/dev/vda of=/dev/null bs=4096 skip=1024 count=1; echo bad-$?",
    // 3: and the disk goes on: the last MiB reads.
    "dd if=/dev/vda of=/dev/null bs=4096 skip=3840 count=256 2>/dev/null; echo after-$?",
];

#[test]
#[ignore = "boots the guest in the test host on a disk whose reads fail; run by `cargo xtask test`"]
fn a_disk_whose_reads_fail_gives_the_guest_io_errors_and_the_log_the_offset() {
    let _serial = serial();
    let dir = diskimage::scratch_dir("cobd-failing").unwrap();
    let image = dir.join("failing.img");
    std::fs::write(&image, pattern(16 << 20, 3)).unwrap();
    let script = session::session_script_with(
        Root::Initrd,
        128,
        FAILING_STEPS,
        "poweroff",
        "rmmod colinux\necho cobd-failing-done",
        "cobd0=/dev/vda",
    );
    let s = scenario("cobd-failing", script, Duration::from_secs(600))
        .disk_with(Disk::new(&image, "failing").read_error_at(8192));
    let (out, sess) = run_one(&s);
    let ctx = context(&out, &sess);
    assert!(
        step(&sess, 1, &ctx).contains("first-0"),
        "the good start of the disk{ctx}"
    );
    let bad = step(&sess, 2, &ctx);
    assert!(
        bad.contains("Input/output error") && !bad.contains("bad-0"),
        "the failing sector must be an I/O error in the guest: {bad}{ctx}"
    );
    assert!(
        step(&sess, 3, &ctx).contains("after-0"),
        "the disk must go on after the error{ctx}"
    );
    let log = sess.daemon_stderr.join("\n");
    let offset_ok = log.lines().any(|l| {
        l.contains("cobd0: request failed: reading")
            && l.contains("os error 5")
            && l.split("byte offset ")
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|o| o <= 8192 * 512 && o + (1 << 20) > 8192 * 512)
    });
    assert!(
        offset_ok,
        "the daemon must log cobd0's failed read with its offset near 4 MiB: {log}{ctx}"
    );
    assert!(
        out.passed && out.console.contains("cobd-failing-done"),
        "{ctx}"
    );
}
