//! The QEMU test host (`colinux_testrig::testhost`): Debian's stock x86_64 kernel
//! booted under TCG with our initramfs. Proves the rig and the host it gives
//! the driver: SMP, SMEP/SMAP/NX, the expected kernel release; and that the
//! rig reports failures, timeouts and kernel warnings as failures.
//!
//! Each test boots the host once (a few seconds under TCG). The logs stay in
//! `target/test-host/<scenario>.log`.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use colinux_testrig::hostkernel;
use colinux_testrig::testhost::{self, Scenario};

#[test]
#[ignore = "boots Debian's kernel in QEMU; run by `cargo xtask test`"]
fn smoke_host_is_smp_with_smep_smap_nx_and_the_expected_kernel() {
    let kernel = hostkernel::ensure().unwrap();
    assert!(kernel.build_dir.join("Makefile").is_file());
    let script = format!(
        r#"set -e
online=$(cat /sys/devices/system/cpu/online)
echo "online CPUs: $online"
[ "$online" = 0-1 ]
[ "$(grep -c ^processor /proc/cpuinfo)" = 2 ]
flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
for f in smep smap nx; do
    case "$flags" in *" $f "*) echo "cpu flag $f: yes" ;; *) echo "cpu flag $f: MISSING"; exit 1 ;; esac
done
release=$(uname -r)
echo "release: $release"
[ "$release" = '{}' ]
echo smoke-ok
"#,
        kernel.release
    );
    let s = Scenario::new("smoke", script).timeout(Duration::from_secs(120));
    let out = testhost::run(&s).unwrap();
    assert!(out.passed, "{}\nlog: {}", out.reason, out.log.display());
    assert!(out.kernel_log_clean);
    assert_eq!(out.exit_status, Some(0));
    assert!(out.console.contains("smoke-ok"));
    assert!(out.log.is_file(), "the log is kept on pass");
    assert!(std::fs::read_to_string(&out.log)
        .unwrap()
        .contains("smoke-ok"));
}

#[test]
#[ignore = "boots Debian's kernel in QEMU; run by `cargo xtask test`"]
fn failing_script_is_a_failed_outcome_with_its_log() {
    let s = Scenario::new("exit-1", "echo about to fail\nexit 1\n");
    let out = testhost::run(&s).unwrap();
    assert!(!out.passed);
    assert!(!out.timed_out);
    assert_eq!(out.exit_status, Some(1));
    assert!(out.kernel_log_clean, "{}", out.reason);
    assert!(out.reason.contains("status 1"), "{}", out.reason);
    let log = std::fs::read_to_string(&out.log).unwrap();
    assert!(log.contains("about to fail"), "{log}");
}

#[test]
#[ignore = "boots Debian's kernel in QEMU; run by `cargo xtask test`"]
fn hanging_script_times_out_promptly() {
    let limit = Duration::from_secs(20);
    let s = Scenario::new("timeout", "echo sleeping\nsleep 1000\n").timeout(limit);
    let started = Instant::now();
    let out = testhost::run(&s).unwrap();
    let took = started.elapsed();
    assert!(!out.passed);
    assert!(out.timed_out, "{}", out.reason);
    assert!(out.reason.contains("timed out"), "{}", out.reason);
    assert!(
        took < limit + Duration::from_secs(3),
        "took {took:?} for a {limit:?} limit"
    );
}

#[test]
#[ignore = "boots Debian's kernel in QEMU; run by `cargo xtask test`"]
fn kernel_warning_makes_the_log_dirty() {
    let s = Scenario::new(
        "klog-warning",
        "echo 'WARNING: colinux rig self-test' > /dev/kmsg\nexit 0\n",
    );
    let out = testhost::run(&s).unwrap();
    assert!(!out.passed, "{}", out.reason);
    assert_eq!(out.exit_status, Some(0));
    assert!(!out.kernel_log_clean);
    assert!(
        out.klog_problems
            .iter()
            .any(|l| l.contains("WARNING: colinux rig self-test")),
        "{:?}",
        out.klog_problems
    );

    // The same with the line declared expected passes.
    let mut s = s;
    s.name = "klog-warning-ignored".into();
    s.klog_ignore = vec!["colinux rig self-test".into()];
    let out = testhost::run(&s).unwrap();
    assert!(out.passed, "{}", out.reason);
}

/// A boot that never reaches the scenario (a hung emulator: CI once saw
/// QEMU print nothing for 300 s) is killed at the boot limit and tried once
/// more, instead of eating the scenario's whole time limit.
#[test]
#[ignore = "boots Debian's kernel in QEMU; run by `cargo xtask test`"]
fn a_boot_stuck_before_the_scenario_is_tried_once_more() {
    let mut s = Scenario::new("stuck-once", "echo second-boot-ran\n")
        .timeout(Duration::from_secs(240))
        .boot_limit(Duration::from_secs(45));
    s.stall_boots = 1;
    let started = Instant::now();
    let out = testhost::run(&s).unwrap();
    assert!(out.passed, "{}\nlog: {}", out.reason, out.log.display());
    assert!(out.console.contains("second-boot-ran"));
    let log = std::fs::read_to_string(&out.log).unwrap();
    assert!(
        log.contains("did not start the scenario within 45s: QEMU killed, booting once more"),
        "the log does not say the first boot was retried:\n{log}"
    );
    assert!(started.elapsed() < Duration::from_secs(240));

    // Stuck twice: an error that says so, long before the scenario's limit.
    s.name = "stuck-twice".to_string();
    s.stall_boots = 2;
    let started = Instant::now();
    let err = testhost::run(&s).unwrap_err().to_string();
    assert!(
        err.contains("did not start the scenario within 45s") && err.contains("twice"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(200), "{err}");
}
