//! The passage against hostile input and hostile moments, with the real
//! i386 Linux guest in Debian's stock kernel in the QEMU test host (see
//! docs/SECURITY.md for what each protects):
//!
//! - a guest *user* executing `sysenter` or `syscall`, or holding a segment
//!   of its own (with a base) in DS while host interrupts enter the passage,
//!   gets a signal or runs on; guest and host survive;
//! - machine checks injected by QEMU on the CPU that runs a booting and a
//!   busy guest reach the host's own #MC handler, again and again;
//! - VMX turned on while a guest runs (simulated: the test host's CPU has
//!   none) makes the next switch refuse, with the reason, and a later guest
//!   runs once it is off;
//! - guest RAM beyond what the i386 guest maps, or beyond the host-wide
//!   limit, is refused with the reason; a guest of the largest size boots;
//! - a locked-down host kernel refuses /dev/colinux, saying why.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use colinux_testrig::session::{
    self, Session, HOST_COLINUX, HOST_DAEMON, HOST_INITRD, HOST_VMLINUX,
};
use colinux_tests::guest::{
    context, parts_with_programs, run_one, scenario, scenario_with, serial, step_output, MEM,
};

/// The exit status the shell reports for the hostile program (the line
/// `hostile-rc=N` of step `n`).
fn hostile_rc(s: &Session, n: usize) -> Option<i32> {
    step_output(s, n)?
        .iter()
        .find_map(|l| l.trim().strip_prefix("hostile-rc=")?.parse().ok())
}

#[test]
#[ignore = "boots the Linux guest in the test host; run by `cargo xtask test`"]
fn guest_users_sysenter_syscall_and_own_segments_do_not_reach_ring_0() {
    let _serial = serial();
    let steps = [
        "/bin/hostile sysenter; echo hostile-rc=$?",
        "/bin/hostile syscall; echo hostile-rc=$?",
        "/bin/hostile segment; echo hostile-rc=$?",
        "uname -m",
    ];
    let s = scenario_with(
        parts_with_programs(),
        "hostile-user",
        session::session_script(
            MEM,
            &steps,
            "poweroff",
            "rmmod colinux\necho hostile-user-done",
        ),
        Duration::from_secs(600),
    );
    let (out, sess) = run_one(&s);
    let ctx = context(&out, &sess);
    assert_eq!(
        hostile_rc(&sess, 1),
        Some(128 + 11),
        "a guest user's sysenter must end in SIGSEGV (#GP: SYSENTER_CS is 0 in the guest world){ctx}"
    );
    assert_eq!(
        hostile_rc(&sess, 2),
        Some(128 + 4),
        "a guest user's syscall must end in SIGILL (#UD: EFER.SCE is clear in the guest world){ctx}"
    );
    let segment = step_output(&sess, 3).unwrap_or_else(|| panic!("step 3 never finished{ctx}"));
    assert!(
        segment
            .iter()
            .any(|l| l.contains("hostile segment: survived, ds kept"))
            && hostile_rc(&sess, 3) == Some(0),
        "a guest user holding its own segment in DS/ES while interrupts enter the passage must run on with DS/ES kept: {segment:?}{ctx}"
    );
    assert!(
        step_output(&sess, 4).is_some_and(|l| l.iter().any(|l| l.trim() == "i686")),
        "the guest's shell did not answer after the hostile programs{ctx}"
    );
    assert_eq!(
        sess.status,
        Some(0),
        "`poweroff` should make the daemon exit 0{ctx}"
    );
    assert!(
        out.passed && out.console.contains("hostile-user-done"),
        "the test host run failed (host log, module unload){ctx}"
    );
}

/// What QEMU's `mce` injects: a machine check on CPU 1 (where the guest is
/// pinned), bank 1, an uncorrected, signaled memory-scrubbing error
/// (VAL|UC|EN|S, MCACOD 0xc0, no PCC, no AR, no address; Linux's handler
/// looks only at signaled banks), with MCG_STATUS = MCIP|RIPV:
/// Linux's Intel grading calls it "action optional", logs it and goes on
/// (its AMD grading panics on any uncorrected error in kernel context, so
/// this test host claims to be Intel). `-b` broadcasts it, as Intel
/// machine checks are (the other CPU gets one too), so the handlers'
/// rendezvous completes. Without CR4.MCE on the CPU QEMU resets the
/// machine instead.
const MCE_COMMAND: &str = "mce -b 1 1 0xb1000000000000c0 0x5 0 0";
/// The test host's CPU for it.
const MCE_CPU: &str = "max,vendor=GenuineIntel";
/// How many machine checks the scenario injects, 4 a second.
const MCE_COUNT: u32 = 40;

#[test]
#[ignore = "boots the Linux guest in the test host; run by `cargo xtask test`"]
fn machine_checks_during_guest_boot_and_work_reach_the_hosts_handler() {
    let _serial = serial();
    // Busy for 15 s of guest time, while the host injects.
    let busy =
        r#"t=$(($(date +%s) + 15)); while [ $(date +%s) -lt $t ]; do :; done; echo busy-done"#;
    let script = session::session_script(
        MEM,
        &[busy],
        "poweroff",
        r#"kill $INJECTOR 2>/dev/null || true
echo "colinux-mce: host logged $(dmesg | grep -c 'Hardware Error') hardware-error lines"
dmesg | grep -m 5 'Hardware Error' || true
rmmod colinux
echo mce-done"#,
    );
    // From before the guest boots until into its work: one injection
    // request each 0.25 s, which the rig turns into QEMU's `mce`.
    let injector = format!(
        r#"( i=0; while [ $i -lt {MCE_COUNT} ]; do i=$((i + 1)); echo "colinux-inject-mce $i"; sleep 0.25; done ) &
INJECTOR=$!
GUEST_TASKSET=2
GUEST_STEP_WAIT=300
"#
    );
    let script = script.replacen("GUEST_MEM=", &format!("{injector}GUEST_MEM="), 1);
    let mut s = scenario("mce-injection", script, Duration::from_secs(600))
        .on_console("colinux-inject-mce", MCE_COMMAND);
    s.cpu_model = MCE_CPU.to_string();
    let (out, sess) = run_one(&s);
    let ctx = context(&out, &sess);
    let injected = out
        .console
        .lines()
        .filter(|l| l.contains("colinux-inject-mce"))
        .count();
    let logged: u32 = out
        .console
        .lines()
        .find_map(|l| {
            l.split_once("colinux-mce: host logged ")?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("the host never reported its machine-check log{ctx}"));
    assert!(
        injected >= MCE_COUNT as usize / 2,
        "only {injected} machine checks were asked for{ctx}"
    );
    assert!(
        logged > 0,
        "the host's #MC handler logged no machine check of {injected} injected{ctx}"
    );
    // Taken in the guest world: the host's handler ran from the passage's
    // forwarding of vector 18.
    let forwarded = out
        .console
        .lines()
        .filter(|l| l.contains("[Hardware Error]: RIP") && l.contains("colinux_passage_int_table"))
        .count();
    assert!(
        forwarded > 0,
        "no machine check reached the host's handler from the guest world (none with its RIP in colinux_passage_int_table){ctx}"
    );
    assert_eq!(
        sess.status,
        Some(0),
        "the guest must live through the machine checks and power off (exit 0){ctx}"
    );
    assert!(
        out.passed && out.console.contains("mce-done"),
        "the test host must keep running through {injected} machine checks{ctx}"
    );
}

#[test]
#[ignore = "boots the Linux guest in the test host; run by `cargo xtask test`"]
fn vmx_turned_on_while_a_guest_runs_stops_it_with_the_reason_and_the_host_limits_guest_ram() {
    let _serial = serial();
    let param = "/sys/module/colinux/parameters/test_vmx_on";
    // While the guest computes in its first step, the host (a) tries a
    // second guest that the host-wide limit cannot hold, then (b) turns
    // "VMX" on: the guest's next switch is refused.
    let after = format!(
        r#"kill $WATCHER 2>/dev/null || true
echo "colinux-vmx: first guest status $GUEST_RC"
sed 's/^/colinux-vmx-daemon| /' /tmp/guest.log.err
echo 0 > {param}
echo "colinux-vmx: booting again with VMX off"
printf 'uname -m\n' > /tmp/steps2
guest_boot /tmp/guest2.log /tmp/steps2 poweroff
echo "colinux-vmx: second guest status $GUEST_RC"
rc=0; {HOST_COLINUX} run name=big kernel={HOST_VMLINUX} initrd={HOST_INITRD} mem=1500 > /tmp/big.out 2>&1 < /dev/null || rc=$?
echo "colinux-big: status $rc"
sed 's/^/colinux-big: /' /tmp/big.out
rmmod colinux
echo vmx-done"#
    );
    let script = session::session_script(
        600,
        &["echo vmx-''now; while :; do :; done"],
        "poweroff",
        &after,
    );
    let watcher = format!(
        r#"( until grep -q vmx-now /tmp/guest.log 2>/dev/null; do sleep 0.2; done
  rc=0; {HOST_DAEMON} --kernel {HOST_VMLINUX} --mem 600 > /tmp/limit.out 2>&1 || rc=$?
  echo "colinux-limit: status $rc"
  sed 's/^/colinux-limit: /' /tmp/limit.out
  dmesg | grep -m 1 'host-wide limit' | sed 's/^/colinux-limit-klog: /'
  echo 1 > {param} ) &
WATCHER=$!
"#
    );
    let script = script.replacen("GUEST_MEM=", &format!("{watcher}GUEST_MEM="), 1);
    let s = scenario("vmx-refusal", script, Duration::from_secs(600));
    let (out, sess) = run_one(&s);
    let ctx = context(&out, &sess);
    let line = |prefix: &str| {
        out.console
            .lines()
            .filter_map(|l| l.split_once(prefix).map(|(_, r)| r.to_string()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let limit = line("colinux-limit: ");
    assert!(
        limit.contains("status 1") && !line("colinux-limit-klog: ").is_empty(),
        "a second 600 MiB guest beside the first must be refused by the host-wide limit (limit: {limit:?}){ctx}"
    );
    let first = line("colinux-vmx: first guest status ");
    assert!(
        first.trim() != "0" && !first.is_empty(),
        "the guest must be stopped once VMX is on (status {first:?}){ctx}"
    );
    let daemon = line("colinux-vmx-daemon| ");
    assert!(
        daemon.contains("VMX"),
        "the daemon must say that VMX stopped the guest: {daemon:?}{ctx}"
    );
    assert_eq!(
        line("colinux-vmx: second guest status ").trim(),
        "0",
        "with VMX off again a new guest must boot and power off{ctx}"
    );
    let big = line("colinux-big: ");
    assert!(
        big.contains("status 1") && big.contains("mem=1500: a guest has 16 to "),
        "a 1500 MiB Linux guest must be refused before anything is allocated: {big:?}{ctx}"
    );
    assert!(
        out.passed && out.console.contains("vmx-done"),
        "the test host run failed{ctx}"
    );
}

#[test]
#[ignore = "boots the Linux guest in the test host; run by `cargo xtask test`"]
fn the_largest_linux_guest_boots() {
    let _serial = serial();
    let max_mib = u64::from(colinux_abi::COOPERATIVE_MAX_LINUX_MEMORY_SIZE) >> 20;
    let s = scenario(
        "largest-guest",
        session::session_script(
            max_mib,
            &["head -1 /proc/meminfo"],
            "poweroff",
            "rmmod colinux\necho largest-done",
        ),
        Duration::from_secs(600),
    );
    let (out, sess) = run_one(&s);
    let ctx = context(&out, &sess);
    let total_kb: u64 = step_output(&sess, 1)
        .and_then(|l| {
            l.iter()
                .find_map(|l| l.trim().strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or_else(|| panic!("no MemTotal from the {max_mib} MiB guest{ctx}"));
    assert!(
        total_kb > max_mib * 1024 * 3 / 4,
        "the {max_mib} MiB guest sees only {total_kb} kB{ctx}"
    );
    assert_eq!(sess.status, Some(0), "`poweroff` should exit 0{ctx}");
    assert!(
        out.passed && out.console.contains("largest-done"),
        "the test host run failed{ctx}"
    );
}

#[test]
#[ignore = "boots the test host; run by `cargo xtask test`"]
fn a_locked_down_host_refuses_dev_colinux_and_says_why() {
    let _serial = serial();
    let script = format!(
        r#"grep -q securityfs /proc/mounts || mount -t securityfs securityfs /sys/kernel/security
echo "colinux-lockdown: modes $(cat /sys/kernel/security/lockdown)"
insmod /root/colinux.ko
echo integrity > /sys/kernel/security/lockdown
echo "colinux-lockdown: now $(cat /sys/kernel/security/lockdown)"
rc=0; {HOST_DAEMON} --kernel {HOST_VMLINUX} --mem 64 > /tmp/daemon.out 2>&1 || rc=$?
echo "colinux-lockdown: daemon status $rc"
sed 's/^/colinux-lockdown: daemon /' /tmp/daemon.out
dmesg | grep -m 1 'colinux refused' | sed 's/^/colinux-lockdown-klog: /'
echo lockdown-done
"#
    );
    let s = scenario("lockdown", script, Duration::from_secs(300));
    let (out, sess) = run_one(&s);
    let ctx = context(&out, &sess);
    let daemon: Vec<&str> = out
        .console
        .lines()
        .filter_map(|l| l.split_once("colinux-lockdown: daemon ").map(|x| x.1))
        .collect();
    let daemon = daemon.join("\n");
    assert!(
        out.console
            .lines()
            .any(|l| l.contains("colinux-lockdown: now") && l.contains("[integrity]")),
        "the test host's kernel did not lock down (is the lockdown LSM active?){ctx}"
    );
    assert!(
        daemon.contains("status 1") && daemon.contains("Operation not permitted"),
        "the daemon must fail to open /dev/colinux under lockdown: {daemon:?}{ctx}"
    );
    assert!(
        out.console.contains("colinux-lockdown-klog: "),
        "the driver must log why it refused (lockdown){ctx}"
    );
    assert!(
        out.passed && out.console.contains("lockdown-done"),
        "the test host run failed{ctx}"
    );
}
