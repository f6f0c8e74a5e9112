//! Disks in the test host (`Scenario::disk`, `colinux_testrig::diskimage`):
//! images made on the build machine without root, attached as virtio disks,
//! used by the stock kernel (its virtio and ext4 modules, loaded by the
//! host's init) — and what the host wrote found in the image files after
//! QEMU exits. This is what a cobd unit on a host file system or a raw host
//! partition stands on.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use colinux_testrig::diskimage::{self, Ext4Image, PartitionedImage};
use colinux_testrig::testhost::{self, Disk, Scenario};

const HELLO: &str = "hello from the build machine";
const WRITTEN: &str = "written in the test host";
const RAW_MARK: &str = "COLINUX-RAW-PARTITION-2";

#[test]
#[ignore = "boots Debian's kernel in QEMU; run by `cargo xtask test`"]
fn ext4_and_partitioned_disks_work_and_writes_reach_the_images() {
    let dir = diskimage::scratch_dir("test-host-disks").unwrap();
    let fs = dir.join("fs.img");
    Ext4Image::new(64)
        .label("colinux-fs")
        .file("hello.txt", format!("{HELLO}\n"))
        .create(&fs)
        .unwrap();
    let raw = dir.join("raw.img");
    let parts = PartitionedImage::new(48)
        .partition(8)
        .partition(16)
        .rest()
        .create(&raw)
        .unwrap();
    let raw_before = std::fs::read(&raw).unwrap();
    let ro = dir.join("ro.img");
    let ro_data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(&ro, &ro_data).unwrap();

    let mut checks = String::new();
    for p in &parts {
        checks.push_str(&format!(
            "check_part {} {} {}\n",
            p.number,
            p.start_sector(),
            p.sectors()
        ));
    }
    let script = format!(
        r#"set -e
check_part() {{
    p=/sys/block/vdb/vdb$1
    [ -e "$p" ] || {{ echo "no partition vdb$1 in /sys/block/vdb"; exit 1; }}
    echo "vdb$1: start $(cat $p/start) size $(cat $p/size)"
    [ "$(cat $p/start)" = "$2" ] && [ "$(cat $p/size)" = "$3" ]
    [ -b /dev/vdb$1 ]
}}
ls -l /dev/disk/by-id/
[ "$(readlink /dev/disk/by-id/virtio-disk0)" = ../../vda ]
[ "$(readlink /dev/disk/by-id/virtio-disk1-part2)" = ../../vdb2 ]
[ "$(readlink /dev/disk/by-id/virtio-ro)" = ../../vdc ]

# ext4 on vda, read-write.
mkdir -p /mnt/fs
mount -t ext4 /dev/vda /mnt/fs
grep -qx '{HELLO}' /mnt/fs/hello.txt
echo '{WRITTEN}' > /mnt/fs/written.txt
sync
umount /mnt/fs
mount -t ext4 -o ro /dev/vda /mnt/fs
grep -qx '{WRITTEN}' /mnt/fs/written.txt
umount /mnt/fs
echo ext4-ok

# The partitions of vdb, where the build machine put them.
{checks}[ ! -e /sys/block/vdb/vdb4 ]
printf '%s' '{RAW_MARK}' | dd of=/dev/vdb2 bs=512 seek=1 conv=notrunc 2>/dev/null
sync
[ "$(dd if=/dev/vdb2 bs=512 skip=1 count=1 2>/dev/null | head -c {mark_len})" = '{RAW_MARK}' ]
echo partitions-ok

# vdc is read-only.
[ "$(cat /sys/block/vdc/ro)" = 1 ]
[ "$(blockdev --getro /dev/vdc)" = 1 ]
if dd if=/dev/zero of=/dev/vdc bs=512 count=1 conv=notrunc 2>/dev/null; then
    echo "a write to the read-only vdc succeeded"; exit 1
fi
echo read-only-ok
"#,
        mark_len = RAW_MARK.len()
    );
    let s = Scenario::new("disks", script)
        .disk(&fs)
        .disk(&raw)
        .disk_with(Disk::new(&ro, "ro").read_only())
        .timeout(Duration::from_secs(180));
    let out = testhost::run(&s).unwrap();
    assert!(out.passed, "{}\nlog: {}", out.reason, out.log.display());
    for word in ["ext4-ok", "partitions-ok", "read-only-ok"] {
        assert!(
            out.console.contains(word),
            "no {word} in {}",
            out.log.display()
        );
    }
    eprintln!(
        "boot to the script {:.1}s (modules and disks included), whole run {:.1}s",
        out.boot_time.unwrap_or_default().as_secs_f64(),
        out.duration.as_secs_f64()
    );

    // The ext4 image: clean, with the host's file in it.
    let (code, report) = colinux_tests::ext4::fsck(&fs);
    assert_eq!(code, 0, "e2fsck -fn {}: {report}", fs.display());
    assert_eq!(
        colinux_tests::ext4::cat(&fs, "/written.txt"),
        format!("{WRITTEN}\n")
    );

    // The raw image: the mark in partition 2's second sector, nothing else
    // changed (the table and the other partitions included).
    let raw_after = std::fs::read(&raw).unwrap();
    assert_eq!(raw_after.len(), raw_before.len());
    let at = usize::try_from(parts[1].start).unwrap() + 512;
    assert_eq!(&raw_after[at..at + RAW_MARK.len()], RAW_MARK.as_bytes());
    let mut expected = raw_before;
    expected[at..at + RAW_MARK.len()].copy_from_slice(RAW_MARK.as_bytes());
    assert!(
        raw_after == expected,
        "bytes other than the mark changed in {}",
        raw.display()
    );

    // The read-only image is untouched.
    assert!(std::fs::read(&ro).unwrap() == ro_data);
}

/// Refused before anything boots.
#[test]
fn a_missing_disk_image_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such.img");
    let s = Scenario::new("disk-missing", "true").disk(&missing);
    let e = format!("{:#}", testhost::run(&s).unwrap_err());
    assert!(e.contains("disk 0") && e.contains("no-such.img"), "{e}");
}
