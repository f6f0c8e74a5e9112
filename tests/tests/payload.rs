//! The first real guest: a 32-bit test payload (tests/payload/) loaded by
//! the daemon into guest RAM and run with the RUN ioctl through the
//! passage, in Debian's stock kernel in the QEMU test host.
//!
//! - 100 000 IDLE round trips guest -> host -> guest, counted by both;
//! - exceptions the guest takes and fixes itself (a page fault, a divide
//!   error) without the host;
//! - a 30 s busy guest with interrupts on while a host process counts its
//!   own progress and the host timer keeps ticking; its checksum reported;
//! - the daemon killed in the middle: memory back, module unloadable.
//!
//! Each on both vCPUs. The rig fails any run whose host log shows a BUG,
//! WARNING, Oops, lockup or RCU stall.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;
use std::time::Duration;

use colinux_testrig::testhost::Scenario;
use colinux_tests::{run_passing, SHELL_HELPERS};

fn scenario(name: &str, script: &str) -> Scenario {
    static PARTS: OnceLock<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> =
        OnceLock::new();
    let (module, daemon, payload) = PARTS.get_or_init(|| {
        (
            xtask::driver_build::build_driver(None).unwrap(),
            colinux_testrig::userland::build_static("colinux-daemon", "colinux-daemon").unwrap(),
            colinux_testrig::payload::build_payload().unwrap(),
        )
    });
    Scenario::new(
        name,
        format!("set -e\n{SHELL_HELPERS}\ninsmod /root/colinux.ko\n{script}\nrmmod colinux\n"),
    )
    .file(module.clone(), "/root/colinux.ko", 0o644)
    .file(daemon.clone(), "/root/colinux-daemon", 0o755)
    .file(payload.clone(), "/root/payload.elf", 0o644)
    .timeout(Duration::from_secs(300))
}

#[test]
#[ignore = "boots the test host and runs the payload guest; run by `cargo xtask test`"]
fn round_trips_counted_on_both_sides_on_each_cpu() {
    let out = run_passing(&scenario(
        "payload-roundtrips",
        r#"
for cpu in 0 1; do
    taskset -c $cpu /root/colinux-daemon --kernel /root/payload.elf --mem 64 --run --entry payload_roundtrips > /tmp/out 2>&1 || { cat /tmp/out; exit 1; }
    cat /tmp/out
    grep -q '^guest: payload: roundtrips 100000$' /tmp/out
    grep -q 'reason 0 (roundtrips done).* 100000 idle round trips served by the host' /tmp/out
done
echo roundtrips-ok
"#,
    ));
    assert!(out.console.contains("roundtrips-ok"));
}

#[test]
#[ignore = "boots the test host and runs the payload guest; run by `cargo xtask test`"]
fn guest_handles_its_own_exceptions_on_each_cpu() {
    let out = run_passing(&scenario(
        "payload-exceptions",
        r#"
for cpu in 0 1; do
    taskset -c $cpu /root/colinux-daemon --kernel /root/payload.elf --mem 64 --run --entry payload_exceptions > /tmp/out 2>&1 || { cat /tmp/out; exit 1; }
    cat /tmp/out
    grep -q '^guest: payload: exceptions ok pf=1 de=1 read=42 quotient=25$' /tmp/out
    grep -q 'guest terminated: reason 0' /tmp/out
done
echo exceptions-ok
"#,
    ));
    assert!(out.console.contains("exceptions-ok"));
}

#[test]
#[ignore = "boots the test host and runs the payload guest; run by `cargo xtask test`"]
fn busy_guest_30_seconds_on_each_cpu_with_the_host_responsive() {
    let out = run_passing(&scenario(
        "payload-busy",
        r#"
start_host_counter
for cpu in 0 1; do
    before=$(progress)
    ticks_before=$(timer_count)
    start=$(date +%s)
    taskset -c $cpu /root/colinux-daemon --kernel /root/payload.elf --mem 64 --run --entry payload_busy > /tmp/out 2>&1 || { cat /tmp/out; exit 1; }
    end=$(date +%s)
    ticks_after=$(timer_count)
    after=$(progress)
    cat /tmp/out
    echo "cpu $cpu: $((end - start)) s; host counter $before -> $after; timer interrupts $ticks_before -> $ticks_after"
    grep -q '^guest: payload: busy 30 s checksum 0x' /tmp/out
    [ $((end - start)) -ge 29 ] || { echo "the guest did not run 30 s"; exit 1; }
    [ $((after - before)) -gt 1000 ] || { echo "the host process stalled"; exit 1; }
    [ $((ticks_after - ticks_before)) -ge 7000 ] || { echo "timer interrupts did not keep coming"; exit 1; }
done
kill $COUNTER
echo busy-ok
"#,
    ));
    assert!(out.console.contains("busy-ok"));
}

#[test]
#[ignore = "boots the test host and runs the payload guest; run by `cargo xtask test`"]
fn daemon_killed_mid_run_leaves_nothing_behind() {
    let out = run_passing(&scenario(
        "payload-killed",
        r#"
before=$(free_kb)
for cpu in 0 1; do
    taskset -c $cpu /root/colinux-daemon --kernel /root/payload.elf --mem 128 --run --entry payload_busy > /tmp/out 2>&1 &
    D=$!
    sleep 3
    kill -0 $D 2>/dev/null || { echo "cpu $cpu: the daemon ended before it was killed:"; cat /tmp/out; exit 1; }
    kill -9 $D
    wait $D || true
    echo "cpu $cpu: killed; it had printed: $(tr '\n' ' ' < /tmp/out)"
done
# Freed pages can take a moment to reach the free lists: look a few times.
n=0
while :; do
    after=$(free_kb)
    diff=$((before - after)); [ $diff -ge 0 ] || diff=$((-diff))
    echo "MemFree kB: before=$before after=$after (difference $diff)"
    [ $diff -gt $((4 * 1024)) ] || break
    n=$((n + 1)); [ $n -lt 10 ] || { echo "memory was not returned"; grep -E 'MemFree|Slab|VmallocUsed|PageTables|KernelStack' /proc/meminfo; exit 1; }
    sleep 1
done
lsmod | grep '^colinux ' || true
echo killed-ok
"#,
    ));
    assert!(out.console.contains("killed-ok"));
}

/// A guest kernel executing `int $0xf8` comes back through the passage as
/// if the host's REBOOT_VECTOR had arrived; the host must not run that
/// handler (it would stop the CPU) since its APIC never delivered it. The
/// guest ends on its next instruction, an invalid opcode, and the CPU it ran
/// on still runs host tasks.
#[test]
#[ignore = "boots the test host and runs the payload guest; run by `cargo xtask test`"]
fn a_guest_raising_a_host_vector_itself_does_not_run_its_handler() {
    let out = run_passing(&scenario(
        "payload-int-f8",
        r#"
for cpu in 0 1; do
    rc=0
    taskset -c $cpu /root/colinux-daemon --kernel /root/payload.elf --mem 64 --run --entry payload_int_f8 > /tmp/out 2>&1 || rc=$?
    cat /tmp/out
    [ $rc = 3 ] || { echo "int-f8: daemon status $rc, want 3 (guest fault)"; exit 1; }
    grep -q 'vector 6' /tmp/out || { echo "int-f8: the guest did not end on its ud2"; exit 1; }
    # Run something on that CPU: it must still be the host's.
    n=0
    ( taskset -c $cpu sh -c 'echo int-f8: cpu '$cpu' alive' ) &
    P=$!
    while kill -0 $P 2>/dev/null; do
        n=$((n + 1))
        [ $n -le 100 ] || { echo "int-f8: cpu $cpu runs no host task any more"; exit 1; }
        sleep 0.1
    done
done
echo int-f8-ok
"#,
    ));
    assert!(out.console.contains("int-f8-ok"));
}

/// A guest kernel that spins with interrupts off never leaves the guest
/// world by itself (no host interrupt gets in): the driver's run watchdog
/// must get it out with NMIs, so the host's CPU keeps serving its own
/// interrupts (no lockup reports) and a SIGKILL ends the daemon. A kill that
/// does not end it within 20 s counts as a hang.
#[test]
#[ignore = "boots the test host and runs the payload guest; run by `cargo xtask test`"]
fn a_guest_spinning_with_interrupts_off_can_be_killed() {
    let out = run_passing(&scenario(
        "payload-spin",
        r#"
before=$(free_kb)
for cpu in 0 1; do
    taskset -c $cpu /root/colinux-daemon --kernel /root/payload.elf --mem 64 --run --entry payload_spin > /tmp/out 2>&1 &
    D=$!
    sleep 3
    kill -0 $D || { echo "the spinning guest's daemon died by itself"; cat /tmp/out; exit 1; }
    kill -9 $D
    n=0
    while kill -0 $D 2>/dev/null; do
        n=$((n + 1))
        [ $n -le 200 ] || { echo "spin: the daemon on cpu $cpu did not die within 20 s of SIGKILL"; exit 1; }
        sleep 0.1
    done
    wait $D || true
    echo "spin: daemon on cpu $cpu killed"
done
dmesg | grep 'kicked out of the guest world' | tail -2
dmesg | grep -q 'kicked out of the guest world'
after=$(free_kb)
diff=$((before - after)); [ $diff -ge 0 ] || diff=$((-diff))
echo "MemFree kB: before=$before after=$after (difference $diff)"
[ $diff -le $((4 * 1024)) ] || { echo "memory was not returned"; exit 1; }
echo spin-ok
"#,
    ));
    assert!(out.console.contains("spin-ok"));
}

#[test]
#[ignore = "boots the test host and runs the payload guest; run by `cargo xtask test`"]
fn nmi_sent_to_the_cpu_running_the_guest_reaches_the_host() {
    // SysRq-l makes CPU 1 send an NMI to CPU 0, which runs the guest: the
    // NMI lands in the guest's IDT, comes back through the passage, and the
    // host's NMI handler must print CPU 0's backtrace, from the passage's
    // forwarding stub; the guest must finish undisturbed. An NMI can also
    // land on the host side of a switch (the host then takes it directly),
    // so up to four are sent: one must come through the guest.
    let mut s = scenario(
        "payload-nmi",
        r#"
taskset -c 0 /root/colinux-daemon --kernel /root/payload.elf --mem 64 --run --entry payload_busy3 > /tmp/out 2>&1 &
D=$!
sleep 1
for i in 1 2 3 4; do
    taskset -c 1 sh -c 'echo l > /proc/sysrq-trigger'
    dmesg | grep -A3 'NMI backtrace for cpu 0' | grep -q 'RIP: 0010:colinux_passage_int_table' && break
    sleep 0.3
done
wait $D
cat /tmp/out
grep -q '^guest: payload: busy 3 s checksum' /tmp/out
dmesg | grep -A3 'NMI backtrace for cpu 0'
dmesg | grep -A3 'NMI backtrace for cpu 0' | grep -q 'RIP: 0010:colinux_passage_int_table'
echo nmi-ok
"#,
    );
    // The backtrace the NMI handler prints is what this test asks for.
    s.klog_ignore = vec!["Call Trace".into(), "NMI handler .* took too long".into()];
    let out = run_passing(&s);
    assert!(out.console.contains("nmi-ok"));
}
