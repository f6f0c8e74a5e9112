//! A hostile guest against cobd, over the cooperative virtio transport, in
//! the test host: the test payload's `payload_cobd_hostile` entry
//! (`tests/payload/`) drives cobd0 itself — a virtio table the daemon
//! (`colinux-daemon --run --cobd 0=IMAGE`) wrote after the payload, the
//! driver's IOEVENTFD/IRQFD, the daemon's transport and virtio-blk back
//! end — and breaks every rule in turn: buffers outside guest RAM, above
//! 4 GiB and inside the virtio table, 4 GiB segments, sectors beyond the
//! disk (I/O errors); descriptor loops, next indices outside the queue,
//! chains over 4 GiB, a chain of 64 in a queue of 16, an indirect table
//! outside RAM, a head outside the queue, the available index 1000 ahead
//! (the device needs a reset, says so with a config interrupt, and works
//! again after one); rings outside RAM or in the table and bad queue sizes
//! at activation; status writes out of order; config writes out of range;
//! notifications of queues and devices that do not exist; floods of
//! notifications. The payload checks every answer itself and ends with
//! BUG on anything unexpected; the daemon's log names the device and what
//! was wrong. Then a second guest runs the same on the other CPU with the
//! same disk (its lock was released), the module unloads, and the rig
//! fails the run on any BUG, WARNING, Oops or lockup in the host's log.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use colinux_testrig::testhost::Scenario;
use colinux_tests::{run_passing, SHELL_HELPERS};

/// The daemon's reactions the test looks for in its log (stderr), each a
/// text it must contain.
const REACTIONS: &[&str] = &[
    // Request-level errors: IOERR, the device goes on.
    "cobd0: request failed",
    "a segment of 4294966784 bytes",
    "beyond the disk",
    // Broken rings: the device stops and needs a reset.
    "cobd0: the device stopped, it needs a reset",
    "broken after 16 descriptors",
    "next 500",
    "longer than the queue of 16",
    "descriptor 0 is outside guest RAM",
    "descriptor head 200 outside the queue of 16",
    "the available ring",
    // Activation, status, config, requests.
    "its rings are not inside guest RAM",
    "size 15 (at most 256, a power of two)",
    "is not 16-byte aligned",
    "DRIVER_OK before FEATURES_OK",
    "clears bits of 0x3 without a reset",
    "status wider than 32 bits",
    "driver features 0x1000000000000000 refused",
    "config is read-only",
    "config write of 8 bytes at 250",
    "config write of 100 bytes at 0",
    "NOTIFY of queue 5: no such queue",
    "device 9: no such device",
    "unknown request 7",
    // The flood of refused requests is logged in part.
    "requests refused so far",
];

#[test]
#[ignore = "boots the test host and runs the hostile payload against cobd; run by `cargo xtask test`"]
fn a_hostile_guest_gets_errors_and_the_daemon_and_host_survive() {
    let module = xtask::driver_build::build_driver(None).unwrap();
    let daemon =
        colinux_testrig::userland::build_static("colinux-daemon", "colinux-daemon").unwrap();
    let payload = colinux_testrig::payload::build_payload().unwrap();
    // The disk: 8 GiB, sparse, in the test host's own file system; sector 0
    // starts with the marker the payload reads back.
    let script = format!(
        r#"
set -e
{SHELL_HELPERS}
insmod /root/colinux.ko
printf 'cobd hostile disk' > /tmp/cobd.img
truncate -s 8G /tmp/cobd.img
before=$(free_kb)
for cpu in 0 1; do
    rc=0
    start=$(date +%s)
    taskset -c $cpu /root/colinux-daemon --kernel /root/payload.elf --mem 64 --run \
        --entry payload_cobd_hostile --cobd 0=/tmp/cobd.img > /tmp/out 2>&1 || rc=$?
    end=$(date +%s)
    sed "s/^/cobd-hostile: cpu $cpu: /" /tmp/out
    echo "cobd-hostile: cpu $cpu: daemon status $rc after $((end - start)) s"
    [ $rc = 0 ] || {{ echo "cobd-hostile: FAILED on cpu $cpu"; exit 1; }}
done
dmesg | grep -c 'VIRTIO NOTIFY refused' | sed 's/^/cobd-hostile: host log lines about refused NOTIFYs: /'
rmmod colinux
after=$(free_kb)
diff=$((before - after)); [ $diff -ge 0 ] || diff=$((-diff))
echo "cobd-hostile: MemFree kB before=$before after=$after (difference $diff)"
[ $diff -le $((4 * 1024)) ] || {{ echo "cobd-hostile: FAILED memory was not returned"; exit 1; }}
echo cobd-hostile-ok
"#
    );
    let s = Scenario::new("cobd-hostile", script)
        .file(module, "/root/colinux.ko", 0o644)
        .file(daemon, "/root/colinux-daemon", 0o755)
        .file(payload, "/root/payload.elf", 0o644)
        .timeout(Duration::from_secs(600));
    let out = run_passing(&s);
    let c = &out.console;
    assert!(c.contains("cobd-hostile-ok"), "{c}");
    for cpu in 0..2 {
        let prefix = format!("cobd-hostile: cpu {cpu}: ");
        let lines: Vec<&str> = c
            .lines()
            .filter_map(|l| l.split_once(&prefix).map(|x| x.1))
            .collect();
        let log = lines.join("\n");
        assert!(
            log.contains("guest terminated: reason 0 (cobd hostile done)"),
            "cpu {cpu}: the payload did not finish: {log}"
        );
        // Every case answered as it must (the payload's own lines).
        for case in [
            "good read: read ok",
            "buffer in the virtio table: IOERR",
            "read of 4 GiB: IOERR",
            "descriptor loop: NEEDS_RESET",
            "available index 1000 ahead: NEEDS_RESET",
            "descriptor table in the virtio table: INVALID, NEEDS_RESET",
            "config write at 2^64-1: INVALID",
            "NOTIFY of device 64: INVALID",
            "flood: 20000 NOTIFY OK",
            "after the flood: read ok",
        ] {
            assert!(
                log.contains(&format!("guest: cobd-hostile: {case}")),
                "cpu {cpu}: {case:?} missing: {log}"
            );
        }
        for r in REACTIONS {
            assert!(
                log.contains(r),
                "cpu {cpu}: the daemon did not log {r:?}: {log}"
            );
        }
    }
}
