//! The passage (issue 4, first step): the world switch between the x86_64
//! host kernel and a 32-bit PAE guest, in Debian's stock kernel in the QEMU
//! test host (`-cpu max`: 5-level paging, SMEP, SMAP, NX; 2 vCPUs).
//!
//! `insmod colinux.ko passage_selftest=N` switches N times into a tiny
//! 32-bit guest built into the passage page, which counts and calls back;
//! the driver checks the count after every round trip and logs the cost.
//! Done on each vCPU, with a host process counting its own progress
//! meanwhile; the rig fails the run on any BUG/WARNING/Oops in the host log.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use colinux_testrig::testhost::{self, Scenario};
use colinux_tests::SHELL_HELPERS;

#[test]
#[ignore = "boots the test host with the driver; run by `cargo xtask test`"]
fn hundred_thousand_round_trips_on_each_cpu() {
    let module = xtask::driver_build::build_driver(None).unwrap();
    let script = r#"set -e
# A host process that must keep running while the switches happen.
start_host_counter
for cpu in 0 1; do
    before=$(progress)
    taskset -c $cpu insmod /root/colinux.ko passage_selftest=100000
    after=$(progress)
    dmesg | grep 'passage self-test' | tail -n 1
    rmmod colinux
    echo "cpu $cpu: host counter went from $before to $after"
    [ "$after" -gt "$before" ] || { echo "the host process stalled"; exit 1; }
done
kill $COUNTER
[ "$(dmesg | grep -c 'passage self-test: 100000 round trips')" = 2 ]
echo passage-ok
"#;
    let s = Scenario::new("passage-selftest", format!("{SHELL_HELPERS}{script}"))
        .file(module, "/root/colinux.ko", 0o644)
        .timeout(Duration::from_secs(300));
    let out = testhost::run(&s).unwrap();
    assert!(out.passed, "{}\nlog: {}", out.reason, out.log.display());
    assert!(out.console.contains("passage-ok"));
}

#[test]
#[ignore = "boots the test host with the driver; run by `cargo xtask test`"]
fn busy_guest_for_30_seconds_keeps_the_host_responsive_on_each_cpu() {
    let module = xtask::driver_build::build_driver(None).unwrap();
    let script = r#"set -e
start_host_counter
for cpu in 0 1; do
    before=$(progress)
    ticks_before=$(timer_count)
    start=$(date +%s)
    taskset -c $cpu insmod /root/colinux.ko passage_busy=30
    end=$(date +%s)
    ticks_after=$(timer_count)
    after=$(progress)
    dmesg | grep 'passage busy test' | tail -n 1
    rmmod colinux
    echo "cpu $cpu: $((end - start)) s; host counter $before -> $after; timer interrupts $ticks_before -> $ticks_after"
    [ $((end - start)) -ge 29 ] || { echo "the busy guest did not run 30 s"; exit 1; }
    [ $((after - before)) -gt 1000 ] || { echo "the host process stalled"; exit 1; }
    # HZ=250 on both CPUs: at least 30 s worth of ticks must have come.
    [ $((ticks_after - ticks_before)) -ge 7000 ] || { echo "timer interrupts did not keep coming"; exit 1; }
done
kill $COUNTER
[ "$(dmesg | grep -c 'passage busy test: 30 s')" = 2 ]
echo busy-ok
"#;
    let s = Scenario::new("passage-busy", format!("{SHELL_HELPERS}{script}"))
        .file(module, "/root/colinux.ko", 0o644)
        .timeout(Duration::from_secs(300));
    let out = testhost::run(&s).unwrap();
    assert!(out.passed, "{}\nlog: {}", out.reason, out.log.display());
    assert!(out.console.contains("busy-ok"));
}

#[test]
#[ignore = "boots the test host with the driver; run by `cargo xtask test`"]
fn faulting_and_state_changing_guests_leave_the_host_intact() {
    let module = xtask::driver_build::build_driver(None).unwrap();
    let script = r#"set -e
for cpu in 0 1; do
    taskset -c $cpu insmod /root/colinux.ko passage_faults=1
    rmmod colinux
done
dmesg | grep 'passage fault test'
[ "$(dmesg | grep -c 'invalid opcode: exit reason 3, vector 6,')" = 2 ]
[ "$(dmesg | grep -c 'page fault: exit reason 3, vector 14, eip 0x2, cr2 0x10')" = 2 ]
[ "$(dmesg | grep -c 'general protection: exit reason 3, vector 13,')" = 2 ]
# A guest that changed SYSENTER MSRs, PAT, FPU control and XCR0: the host
# saw the guest's values right after the switch and its own after restore.
dmesg | grep 'passage state test'
[ "$(dmesg | grep -c 'passage state test: exit 1; SYSENTER_CS host .*, guest 0x73, .*XCR0 host .*, guest 0x3, ')" = 2 ]
# An NMI taken while the switch-time IDT is loaded is recorded and replayed
# to the host's NMI handler (which calls a synthetic NMI "unknown").
dmesg | grep 'passage NMI test'
[ "$(dmesg | grep -c 'passage NMI test: exit 1, NMI recorded during the switch: 1, replayed')" = 2 ]
# The passage still works afterwards.
insmod /root/colinux.ko passage_selftest=1000
rmmod colinux
echo faults-ok
"#;
    let s = Scenario::new("passage-faults", script)
        .file(module, "/root/colinux.ko", 0o644)
        .timeout(Duration::from_secs(180));
    let out = testhost::run(&s).unwrap();
    assert!(out.passed, "{}\nlog: {}", out.reason, out.log.display());
    assert!(out.console.contains("faults-ok"));
}
