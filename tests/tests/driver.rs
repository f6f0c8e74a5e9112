//! The host driver in a real stock host kernel (Debian's, in the QEMU test
//! host), driven by the real daemon with the real guest `vmlinux`.
//!
//! - lifecycle: insmod; the daemon creates a 256 MiB guest and loads the
//!   guest kernel; the driver reports what it mapped; destroy; the host's
//!   free memory returns to where it was; rmmod succeeds.
//! - killed: the daemon is SIGKILLed while it holds a guest; memory comes
//!   back and the module unloads.
//! - hostile: only root may open the device; every malformed ioctl gets its
//!   error code; RUN and every ioctl after it (a tiny guest that calls the
//!   passage and faults: INFO's RUNNING and DEAD, LOAD refused, ESRCH);
//!   thousands of random ioctls; truncated and non-i386 kernels
//!   are refused with a clear message. The rig fails any run whose host
//!   kernel log shows a BUG, WARNING, Oops or lockup.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use colinux_testrig::testhost::Scenario;
use colinux_tests::{run_passing, SHELL_HELPERS};

struct Parts {
    module: PathBuf,
    daemon: PathBuf,
    probe: PathBuf,
    vmlinux: PathBuf,
}

/// Build everything once per test binary: the module against the test
/// host's kernel, the static daemon and probe, the guest kernel.
fn parts() -> &'static Parts {
    static PARTS: OnceLock<Parts> = OnceLock::new();
    PARTS.get_or_init(|| {
        let module = xtask::driver_build::build_driver(None).unwrap();
        let daemon =
            colinux_testrig::userland::build_static("colinux-daemon", "colinux-daemon").unwrap();
        let probe =
            colinux_testrig::userland::build_static("colinux-probe", "colinux-probe").unwrap();
        let vmlinux = colinux_buildenv::paths::guest_output_dir("6.1.176").join("vmlinux");
        if !vmlinux.exists() {
            let manifest = xtask::manifest::Manifest::load_default().unwrap();
            let build = xtask::build::BuildOptions::guest(&manifest, "6.1.176").unwrap();
            xtask::build::build_kernel(&manifest, &build).unwrap();
        }
        Parts {
            module,
            daemon,
            probe,
            vmlinux,
        }
    })
}

fn scenario(name: &str, script: &str) -> Scenario {
    let p = parts();
    Scenario::new(name, format!("{SHELL_HELPERS}{COMMON}\n{script}"))
        .file(p.module.clone(), "/root/colinux.ko", 0o644)
        .file(p.daemon.clone(), "/root/colinux-daemon", 0o755)
        .file(p.probe.clone(), "/root/colinux-probe", 0o755)
        .file(p.vmlinux.clone(), "/root/vmlinux", 0o644)
        .timeout(Duration::from_secs(240))
}

/// Shell helpers shared by the scenarios.
const COMMON: &str = r#"set -e
# Run the daemon in the background holding its guest; wait until it holds.
hold_guest() {
    /root/colinux-daemon --kernel /root/vmlinux --mem "$1" --hold "$2" > /tmp/daemon.out 2>&1 &
    DAEMON=$!
    i=0
    until grep -q '^holding' /tmp/daemon.out; do
        i=$((i + 1)); [ $i -lt 600 ] || { cat /tmp/daemon.out; echo "daemon never held its guest"; exit 1; }
        kill -0 $DAEMON 2>/dev/null || { cat /tmp/daemon.out; echo "daemon died"; exit 1; }
        sleep 0.1
    done
    cat /tmp/daemon.out
}
"#;

#[test]
#[ignore = "boots the test host with the driver; run by `cargo xtask test`"]
fn lifecycle_create_load_destroy_returns_memory() {
    let out = run_passing(&scenario(
        "driver-lifecycle",
        r#"
insmod /root/colinux.ko
ls -l /dev/colinux
[ "$(stat -c %a /dev/colinux)" = 600 ]
before=$(free_kb)
# Three rounds: a leak of the guest's RAM would add up to 768 MiB.
for round in 1 2 3; do
    hold_guest 256 2
    during=$(free_kb)
    wait $DAEMON
    cat /tmp/daemon.out
    grep -q 'guest .* destroyed' /tmp/daemon.out
    after=$(free_kb)
    echo "round $round: MemFree kB: before=$before during=$during after=$after"
    # The guest's 256 MiB came out of the host's free memory ...
    [ $((before - during)) -ge $((250 * 1024)) ] || { echo "guest RAM was not taken from the host"; exit 1; }
done
# ... and went back (allowing 4 MiB of allocator noise).
diff=$((before - after)); [ $diff -ge 0 ] || diff=$((-diff))
echo "MemFree difference after 3 rounds: $diff kB"
[ $diff -le $((4 * 1024)) ] || { echo "memory did not come back"; exit 1; }
dmesg | grep -i colinux | tail -n 20
rmmod colinux
[ ! -e /dev/colinux ]
echo lifecycle-ok
"#,
    ));
    assert!(out.console.contains("lifecycle-ok"));
    // The daemon and the driver both reported the mapping of the real kernel.
    assert!(
        out.console.contains("65536 host pages"),
        "{}",
        out.log.display()
    );
    assert!(
        out.console.contains("loaded 2 segments"),
        "{}",
        out.log.display()
    );
}

#[test]
#[ignore = "boots the test host with the driver; run by `cargo xtask test`"]
fn daemon_killed_mid_way_leaves_nothing_behind() {
    let out = run_passing(&scenario(
        "driver-killed",
        r#"
insmod /root/colinux.ko
before=$(free_kb)
for round in 1 2 3; do
    hold_guest 192 600
    kill -9 $DAEMON
    wait $DAEMON || true
done
after=$(free_kb)
diff=$((before - after)); [ $diff -ge 0 ] || diff=$((-diff))
echo "MemFree kB: before=$before after=$after (difference $diff, 3 x 192 MiB were held)"
[ $diff -le $((4 * 1024)) ] || { echo "memory was not returned"; exit 1; }
rmmod colinux
echo killed-ok
"#,
    ));
    assert!(out.console.contains("killed-ok"));
}

#[test]
#[ignore = "boots the test host with the driver; run by `cargo xtask test`"]
fn hostile_input_gets_errors_not_oopses() {
    let out = run_passing(&scenario(
        "driver-hostile",
        r#"
insmod /root/colinux.ko
/root/colinux-probe unprivileged
/root/colinux-probe malformed
/root/colinux-probe run
/root/colinux-probe fuzz 4000 12345
/root/colinux-probe fuzz 2000 987654321
# Bad kernels are refused by the daemon with a reason.
head -c 100000 /root/vmlinux > /tmp/truncated
if /root/colinux-daemon --kernel /tmp/truncated > /tmp/out 2>&1; then echo "truncated kernel accepted"; exit 1; fi
cat /tmp/out; grep -q 'truncated ELF' /tmp/out
if /root/colinux-daemon --kernel /bin/busybox > /tmp/out 2>&1; then echo "x86_64 ELF accepted"; exit 1; fi
cat /tmp/out; grep -q 'not a 32-bit ELF' /tmp/out
if /root/colinux-daemon --kernel /root/vmlinux --mem 100000 > /tmp/out 2>&1; then echo "absurd mem accepted"; exit 1; fi
cat /tmp/out; grep -q 'outside' /tmp/out
# The module is still healthy afterwards.
/root/colinux-daemon --kernel /root/vmlinux --mem 64
rmmod colinux
echo hostile-ok
"#,
    ));
    assert!(out.console.contains("hostile-ok"));
    assert!(out.kernel_log_clean);
}
