//! The i386 Linux guest booted cooperatively by the daemon in Debian's
//! stock kernel in the QEMU test host, with the initramfs from
//! `colinux_testrig::guest_initrd` (static i386 busybox).
//!
//! - the boot log and `/init`'s marker appear on the daemon's stdout; typed
//!   commands run (`uname -a` says i586/i686, `/proc/meminfo` shows the
//!   guest's RAM, `/proc/interrupts` a ticking timer); `poweroff` makes the
//!   daemon exit 0;
//! - `sleep 2` lasts 2 s ± 5% by the guest's clock and by the host's;
//! - a guest panic (`echo c > /proc/sysrq-trigger`) makes the daemon exit 2,
//!   saying "panic", and leaves the host's kernel log clean;
//! - boots in a row in one host session (5; `cargo xtask soak boot` 20), memory returned, the module
//!   unloadable;
//! - halt polling: a guest idling while its disk is read is resumed by RUN
//!   watching for the block worker's line, and reads the right data.
//!
//! The sessions are driven by `colinux_testrig::session`'s shell helpers: a feeder types
//! into the guest's console once it is up, each command followed by a
//! marker it waits for. The rig fails any run whose host log shows a BUG,
//! WARNING, Oops, lockup or RCU stall. The tests run one at a time (the
//! timing test needs the machine's CPUs).

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use colinux_testrig::guest_initrd::INIT_MARKER;
use colinux_testrig::session::{self, Session, SHELL_READY};
use colinux_tests::guest::{
    context, parts_6_12, run_one, scenario, scenario_with, serial, step_output, MEM,
};

#[test]
#[ignore = "boots the Linux guest in the test host; run by `cargo xtask test`"]
fn guest_boots_runs_typed_commands_and_powers_off() {
    let _serial = serial();
    let s = scenario(
        "boot-commands",
        session::session_script(
            MEM,
            &[
                "uname -a",
                "cat /proc/meminfo | head -3",
                "cat /proc/interrupts",
            ],
            "poweroff",
            "rmmod colinux\necho boot-commands-done",
        ),
        Duration::from_secs(420),
    );
    let (out, sess) = run_one(&s);
    let ctx = context(&out, &sess);
    let guest = sess.guest.join("\n");

    assert!(
        guest.contains("Linux version"),
        "the guest's boot log (a \"Linux version\" line) did not reach the daemon's stdout{ctx}"
    );
    assert!(
        sess.guest.iter().any(|l| l.trim() == INIT_MARKER),
        "the guest's /init never printed {INIT_MARKER:?}{ctx}"
    );
    assert!(
        guest.contains(SHELL_READY),
        "the guest's shell never answered a typed command{ctx}"
    );

    let uname =
        step_output(&sess, 1).unwrap_or_else(|| panic!("the typed `uname -a` did not finish{ctx}"));
    assert!(
        uname
            .iter()
            .any(|l| l.starts_with("Linux ")
                && l.split_whitespace().any(|w| w == "i686" || w == "i586")),
        "`uname -a` printed no i586/i686 Linux line: {uname:?}{ctx}"
    );

    let meminfo = step_output(&sess, 2)
        .unwrap_or_else(|| panic!("the typed `cat /proc/meminfo | head -3` did not finish{ctx}"));
    let total_kb: u64 = meminfo
        .iter()
        .find_map(|l| l.trim().strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MemTotal line in /proc/meminfo: {meminfo:?}{ctx}"));
    assert!(
        (MEM * 1024 / 2..=MEM * 1024).contains(&total_kb),
        "the guest's MemTotal is {total_kb} kB, not within ({} kB, {} kB] for a {MEM} MiB guest{ctx}",
        MEM * 1024 / 2,
        MEM * 1024
    );
    assert_eq!(
        meminfo.iter().filter(|l| l.contains("kB")).count(),
        3,
        "`head -3` of /proc/meminfo should give 3 lines: {meminfo:?}{ctx}"
    );

    let interrupts = step_output(&sess, 3)
        .unwrap_or_else(|| panic!("the typed `cat /proc/interrupts` did not finish{ctx}"));
    let timer_ticks: Vec<u64> = interrupts
        .iter()
        .filter(|l| l.to_ascii_lowercase().contains("timer"))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.next().filter(|f| f.ends_with(':'))?;
            w.next()?.parse().ok()
        })
        .collect();
    assert!(
        timer_ticks.iter().any(|&n| n > 0),
        "/proc/interrupts has no timer line with a count above 0: {interrupts:?}{ctx}"
    );

    assert_eq!(
        sess.status,
        Some(0),
        "`poweroff` should make the daemon exit 0{ctx}"
    );
    assert!(
        sess.daemon_stderr
            .iter()
            .any(|l| l.contains("colinux: guest powered off")),
        "the daemon did not say \"colinux: guest powered off\" on stderr{ctx}"
    );
    assert!(
        out.passed && out.console.contains("boot-commands-done"),
        "the test host run failed (the session must complete, rmmod must work, the host log stay clean){ctx}"
    );
}

/// Parse `colinux-tN <fields…>` from the guest's console.
fn timing_fields(s: &Session, tag: &str) -> Option<Vec<f64>> {
    let prefix = format!("colinux-{tag} ");
    s.guest.iter().find_map(|l| {
        let rest = l.trim().strip_prefix(&prefix)?;
        rest.split_whitespace()
            .map(|w| w.parse().ok())
            .collect::<Option<Vec<f64>>>()
    })
}

#[test]
#[ignore = "boots the Linux guest in the test host; run by `cargo xtask test`"]
fn sleep_2_seconds_lasts_2_seconds_on_guest_and_host_clocks() {
    let _serial = serial();
    // The guest reads its uptime (10 ms resolution) and its date (1 s) just
    // before and after `sleep 2`; the host stamps the arrival of the two
    // marker lines with its own uptime.
    let typed = r#"d0=$(date +%s); read u0 _ < /proc/uptime; echo "colinux-t""0 $u0 $d0"; sleep 2; read u1 _ < /proc/uptime; echo "colinux-t""1 $u1"; echo "colinux-t""2 $(date +%s)""#;
    let s = scenario(
        "boot-sleep-timing",
        session::session_script(
            MEM,
            &[typed],
            "poweroff",
            r#"echo "colinux-timing: host $(guest_stamp_of 'colinux-t0 ') $(guest_stamp_of 'colinux-t1 ')""#,
        ),
        Duration::from_secs(420),
    );
    let (out, sess) = run_one(&s);
    let ctx = context(&out, &sess);
    assert!(out.passed, "the test host run failed{ctx}");
    let t0 = timing_fields(&sess, "t0")
        .filter(|f| f.len() == 2)
        .unwrap_or_else(|| panic!("no `colinux-t0 <uptime> <date>` line from the guest{ctx}"));
    let t1 = timing_fields(&sess, "t1")
        .filter(|f| f.len() == 1)
        .unwrap_or_else(|| panic!("no `colinux-t1 <uptime>` line from the guest{ctx}"));
    let t2 = timing_fields(&sess, "t2")
        .filter(|f| f.len() == 1)
        .unwrap_or_else(|| panic!("no `colinux-t2 <date>` line from the guest{ctx}"));
    let host: Vec<f64> = out
        .console
        .lines()
        .find_map(|l| l.trim().strip_prefix("colinux-timing: host "))
        .map(|r| {
            r.split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect()
        })
        .filter(|v: &Vec<f64>| v.len() == 2)
        .unwrap_or_else(|| panic!("the host did not stamp both marker lines{ctx}"));

    let guest_uptime = t1[0] - t0[0];
    let guest_date = t2[0] - t0[1];
    let host_elapsed = host[1] - host[0];
    let summary = format!(
        "guest uptime {:.2} -> {:.2} ({guest_uptime:.2} s), guest date {} -> {} ({guest_date} s), \
         host uptime {:.2} -> {:.2} ({host_elapsed:.2} s)",
        t0[0], t1[0], t0[1], t2[0], host[0], host[1]
    );
    eprintln!("sleep 2: {summary}");
    assert!(
        (1.9..=2.1).contains(&guest_uptime),
        "by the guest's /proc/uptime, `sleep 2` took {guest_uptime:.2} s, not 2 s ± 5%: {summary}{ctx}"
    );
    assert!(
        (2.0..=3.0).contains(&guest_date),
        "by the guest's `date +%s` (1 s resolution), `sleep 2` took {guest_date} s, not 2 or 3: {summary}{ctx}"
    );
    assert!(
        (1.9..=2.1).contains(&host_elapsed),
        "by the host's clock, `sleep 2` in the guest took {host_elapsed:.2} s, not 2 s ± 5%: {summary}{ctx}"
    );
    assert_eq!(
        sess.status,
        Some(0),
        "`poweroff` should make the daemon exit 0{ctx}"
    );
}

#[test]
#[ignore = "boots the Linux guest in the test host; run by `cargo xtask test`"]
fn guest_panic_makes_the_daemon_exit_2_and_the_host_log_stays_clean() {
    let _serial = serial();
    let s = scenario(
        "boot-panic",
        session::session_script(
            MEM,
            &[],
            "echo c > /proc/sysrq-trigger",
            "rmmod colinux\necho boot-panic-done",
        ),
        Duration::from_secs(420),
    );
    let (out, sess) = run_one(&s);
    let ctx = context(&out, &sess);
    assert!(
        sess.guest.iter().any(|l| l.contains(SHELL_READY)),
        "the guest's shell never came up, so the panic was never triggered{ctx}"
    );
    assert_eq!(
        sess.status,
        Some(2),
        "a guest panic (sysrq c) should make the daemon exit 2{ctx}"
    );
    assert!(
        sess.daemon_stderr
            .iter()
            .any(|l| l.to_ascii_lowercase().contains("panic")),
        "the daemon's stderr does not mention the panic{ctx}"
    );
    assert!(
        out.kernel_log_clean,
        "the host kernel log is not clean after a guest panic: {:?}{ctx}",
        out.klog_problems
    );
    assert!(
        out.passed && out.console.contains("boot-panic-done"),
        "the test host run failed (the module must unload after the guest's panic){ctx}"
    );
}

/// Boots in a row: 5 in CI, `COLINUX_BOOT_CYCLES` (`cargo xtask soak boot
/// --cycles 20` for the long run, with its figures in docs/RELIABILITY.md).
fn boot_cycles() -> u32 {
    std::env::var("COLINUX_BOOT_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 2)
        .unwrap_or(5)
}

#[test]
#[ignore = "boots the Linux guest in the test host; run by `cargo xtask test`"]
fn boots_in_a_row() {
    let _serial = serial();
    let n = boot_cycles();
    let after = format!(
        r#"
# The first boot is done (and shown); the others quietly unless one fails.
[ "$GUEST_RC" = 0 ] && [ "$GUEST_FEED_RC" = 0 ] || {{ echo "colinux-boots: boot 1 failed"; exit 1; }}
echo "colinux-boots: boot 1 ok"
before=$(free_kb)
GUEST_ECHO=0
i=1
while [ $i -lt {n} ]; do
    i=$((i + 1))
    read t0 _ < /proc/uptime
    guest_boot /tmp/guest.log /tmp/steps poweroff
    read t1 _ < /proc/uptime
    if [ "$GUEST_RC" != 0 ] || [ "$GUEST_FEED_RC" != 0 ] || ! grep -qF "$GUEST_INIT_MARKER" /tmp/guest.log; then
        echo "colinux-boots: boot $i FAILED (daemon status $GUEST_RC, session status $GUEST_FEED_RC); its console:"
        sed 's/^[^ ]* /guest| /' /tmp/guest.log
        exit 1
    fi
    echo "colinux-boots: boot $i ok ($t0 -> $t1) MemFree $(free_kb) kB"
done
after=$(free_kb)
diff=$((before - after)); [ $diff -ge 0 ] || diff=$((-diff))
echo "colinux-boots: MemFree kB before=$before after=$after (difference $diff)"
[ $diff -le $((16 * 1024)) ] || {{ echo "colinux-boots: memory was not returned"; exit 1; }}
rmmod colinux
echo colinux-boots: done
"#
    );
    let s = scenario(
        "boot-many-times",
        session::session_script(MEM, &["uname -m"], "poweroff", &after),
        Duration::from_secs(120 + 60 * u64::from(n)),
    );
    let (out, sess) = run_one(&s);
    let ctx = context(&out, &sess);
    let ok: Vec<&str> = out
        .console
        .lines()
        .filter_map(|l| l.split_once("colinux-boots: boot ").map(|x| x.1))
        .filter(|l| l.contains(" ok"))
        .collect();
    if let Ok(path) = std::env::var("COLINUX_SOAK_REPORT") {
        std::fs::write(&path, boots_report(&ok)).unwrap();
    }
    assert_eq!(
        ok.len(),
        n as usize,
        "{} of {n} boots went through (boot -> shell -> poweroff -> daemon exit 0){ctx}",
        ok.len()
    );
    assert!(
        out.passed && out.console.contains("colinux-boots: done"),
        "the test host run failed after {n} boots (memory returned? module unloadable?){ctx}"
    );
}

/// The soak's table: one row per boot after the first ("2 ok (t0 -> t1)
/// MemFree K kB").
fn boots_report(ok: &[&str]) -> String {
    let mut t =
        String::from("| boot | boot to poweroff (s) | host MemFree after (kB) |\n|---|---|---|\n");
    for l in ok {
        let mut words = l.split_whitespace();
        let boot = words.next().unwrap_or("?");
        let secs = l
            .split_once('(')
            .and_then(|(_, r)| r.split_once(')'))
            .and_then(|(span, _)| span.split_once(" -> "))
            .and_then(|(a, b)| Some(b.parse::<f64>().ok()? - a.parse::<f64>().ok()?))
            .map_or_else(|| "-".to_string(), |d| format!("{d:.1}"));
        let mem = l
            .split_once("MemFree ")
            .and_then(|(_, r)| r.split_whitespace().next())
            .unwrap_or("-");
        t.push_str(&format!("| {boot} | {secs} | {mem} |\n"));
    }
    t
}

/// The floating-point program both sides run: busybox awk (i386; it has
/// no math library) sums 1/(3i+1), printing the double with all its digits.
const FPU_AWK: &str = r#"awk 'BEGIN { s = 0; for (i = 1; i <= 200000; i++) s += 1 / (3 * i + 1); printf "fpusum:%.17g:\n", s }'"#;

/// The value of a line `fpusum:<number>:` (not the echo of the command).
fn fpu_sum(line: &str) -> Option<String> {
    let v = line.trim().strip_prefix("fpusum:")?.strip_suffix(':')?;
    v.parse::<f64>().ok()?;
    Some(v.to_string())
}

/// The guest's x87/SSE registers survive the host's own FPU use between
/// switches: with the daemon pinned to the CPU of a host process that
/// computes with SSE all the time, a floating-point program in the guest
/// gives exactly what the same i386 binary gives natively in the host.
#[test]
#[ignore = "boots the Linux guest in the test host; run by `cargo xtask test`"]
fn guest_fpu_state_survives_the_hosts_fpu_use() {
    let _serial = serial();
    let busybox = colinux_testrig::guest_initrd::busybox(false).unwrap().path;
    let steps = [FPU_AWK, FPU_AWK];
    let script =
        session::session_script(MEM, &steps, "poweroff", "rmmod colinux\necho boot-fpu-done");
    let native = format!(
        r#"echo "native: $(/root/busybox-i386 {FPU_AWK})"
busybox taskset 1 busybox awk 'BEGIN {{ x = 1; for (;;) x = x * 1.0000001 + 0.5 }}' &
HOG=$!
GUEST_TASKSET=1
"#
    );
    let script = script.replacen("GUEST_MEM=", &format!("{native}GUEST_MEM="), 1);
    let s = scenario(
        "boot-fpu",
        format!("{script}\nkill $HOG\n"),
        Duration::from_secs(600),
    )
    .file(busybox, "/root/busybox-i386", 0o755);
    let (out, sess) = run_one(&s);
    let ctx = context(&out, &sess);
    let native = out
        .console
        .lines()
        .find_map(|l| fpu_sum(l.split_once("native: ")?.1))
        .unwrap_or_else(|| panic!("the native run printed no sum{ctx}"));
    for n in 1..=steps.len() {
        let lines = step_output(&sess, n)
            .unwrap_or_else(|| panic!("step {n} (the awk sum) never finished{ctx}"));
        let guest = lines
            .iter()
            .find_map(|l| fpu_sum(l))
            .unwrap_or_else(|| panic!("step {n} printed no sum{ctx}"));
        assert_eq!(
            guest, native,
            "run {n}: the guest's floating-point result differs from the native one{ctx}"
        );
    }
    assert_eq!(
        sess.status,
        Some(0),
        "`poweroff` should make the daemon exit 0{ctx}"
    );
    assert!(
        out.passed && out.console.contains("boot-fpu-done"),
        "the test host run failed{ctx}"
    );
}

/// A guest computing flat out on a host CPU leaves that CPU to the host's
/// own tasks: a host counter and a sampler pinned to the same CPU keep
/// running (no gap of 2 s or more between samples, the counter advancing
/// in each), and the host's log stays free of lockup and RCU-stall reports.
#[test]
#[ignore = "boots the Linux guest in the test host; run by `cargo xtask test`"]
fn host_stays_responsive_during_a_busy_guest() {
    let _serial = serial();
    let busy = r#"awk 'BEGIN { for (i = 0; i < 1500000; i++) s += i % 7; print "busy-done", s }'"#;
    let script = session::session_script(
        MEM,
        &[busy],
        "poweroff",
        "kill $SAMPLER $COUNTER\necho samples; cat /tmp/samples; echo samples-end\nrmmod colinux\necho boot-busy-done",
    );
    let setup = r#"start_host_counter
busybox taskset -p 1 $COUNTER > /dev/null
( while true; do echo "$(cut -d' ' -f1 /proc/uptime) $(progress)" >> /tmp/samples; sleep 1; done ) &
SAMPLER=$!
busybox taskset -p 1 $SAMPLER > /dev/null
GUEST_TASKSET=1
GUEST_STEP_WAIT=300
"#;
    let script = script.replacen("GUEST_MEM=", &format!("{setup}GUEST_MEM="), 1);
    let s = scenario("boot-busy", script, Duration::from_secs(600));
    let (out, sess) = run_one(&s);
    let ctx = context(&out, &sess);
    let lines =
        step_output(&sess, 1).unwrap_or_else(|| panic!("the busy loop never finished{ctx}"));
    assert!(
        lines.iter().any(|l| l.trim().starts_with("busy-done")),
        "the busy loop printed no result{ctx}"
    );
    let samples: Vec<(f64, u64)> = out
        .console
        .lines()
        .skip_while(|l| l.trim() != "samples")
        .skip(1)
        .take_while(|l| l.trim() != "samples-end")
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
        .collect();
    assert!(
        samples.len() >= 10,
        "too few host samples while the guest ran: {samples:?}{ctx}"
    );
    for w in samples.windows(2) {
        let ((t0, c0), (t1, c1)) = (w[0], w[1]);
        assert!(
            t1 - t0 < 2.0,
            "the host sampler on the guest's CPU stalled for {:.1} s ({samples:?}){ctx}",
            t1 - t0
        );
        assert!(
            c1 > c0,
            "the host counter on the guest's CPU made no progress ({samples:?}){ctx}"
        );
    }
    assert!(
        out.kernel_log_clean,
        "the host kernel log is not clean: {:?}{ctx}",
        out.klog_problems
    );
    assert_eq!(
        sess.status,
        Some(0),
        "`poweroff` should make the daemon exit 0{ctx}"
    );
    assert!(
        out.passed && out.console.contains("boot-busy-done"),
        "the test host run failed{ctx}"
    );
}

/// The guest's idle count of halt polling, from the daemon's summary:
/// `... idles served by the driver (N by halt polling) ...`.
fn halt_polls(console: &str) -> Option<u64> {
    console.lines().find_map(|l| {
        let (_, rest) = l.split_once("idles served by the driver (")?;
        rest.split_once(" by halt polling)")?.0.parse().ok()
    })
}

/// Halt polling (the driver's `halt_poll_ns`, here 5 ms): a guest that
/// idles while its disk request is served by the daemon's block worker is
/// resumed by RUN watching for the worker's line (the daemon's summary
/// counts those idles), and what it reads is the disk's content. Under
/// TCG a window this wide is what catches the worker's answers; the
/// default (200 µs, KVM's) is sized for hardware (docs/ARCHITECTURE.md).
#[test]
#[ignore = "boots the Linux guest in the test host; run by `cargo xtask test`"]
fn an_idle_guest_waiting_for_its_disk_is_resumed_by_halt_polling() {
    let _serial = serial();
    // The marker is split so that the command's echo does not match it.
    let read =
        r#"dd if=/dev/vda bs=4096 iflag=direct 2>/dev/null | md5sum | sed "s/^/guest-""md5-/""#;
    let script = session::session_script_with(
        session::Root::Initrd,
        MEM,
        &[read],
        "poweroff",
        "md5sum /tmp/disk.img | sed 's/^/host-md5-/'\nrmmod colinux\necho boot-poll-done",
        "cobd0=/tmp/disk.img",
    );
    let insmod = format!("insmod {}\n", session::HOST_MODULE);
    assert!(
        script.contains(&insmod),
        "the session script loads the module elsewhere"
    );
    let script = script.replacen(
        &insmod,
        &format!(
            "dd if=/dev/urandom of=/tmp/disk.img bs=64k count=16 2>/dev/null\ninsmod {} halt_poll_ns=5000000\n",
            session::HOST_MODULE
        ),
        1,
    );
    let (out, sess) = run_one(&scenario(
        "boot-halt-poll",
        script,
        Duration::from_secs(420),
    ));
    let ctx = context(&out, &sess);
    assert!(
        out.passed && out.console.contains("boot-poll-done"),
        "the test host run failed{ctx}"
    );
    let md5 = |prefix: &str| {
        out.console
            .lines()
            .find_map(|l| {
                l.split_once(prefix)
                    .map(|(_, r)| r.split_whitespace().next().map(str::to_string))
            })
            .flatten()
    };
    let (guest, host) = (md5("guest-md5-"), md5("host-md5-"));
    assert!(
        guest.is_some() && guest == host,
        "the guest read {guest:?} from its disk, the host's file is {host:?}{ctx}"
    );
    let polls = halt_polls(&out.console)
        .unwrap_or_else(|| panic!("no daemon summary with a halt polling count{ctx}"));
    eprintln!("halt polling served {polls} idles");
    assert!(
        polls > 0,
        "no idle of the guest was resumed by halt polling while it read its disk{ctx}"
    );
    assert_eq!(
        sess.status,
        Some(0),
        "`poweroff` should make the daemon exit 0{ctx}"
    );
}

/// The 6.12 LTS guest, whose series is what `cargo xtask rebase --onto
/// 6.12.100` made of the 6.1 one, boots the same way: shell, typed
/// command, timed sleep, `poweroff` with exit 0; and its virtio drivers
/// work over the transport there too: a host folder shared as `cofs0`
/// (virtiofs through virtiofsd) is read and written from the guest.
#[test]
#[ignore = "builds and boots the 6.12 guest in the test host; run by `cargo xtask test`"]
fn the_6_12_guest_boots_and_powers_off() {
    let _serial = serial();
    let share = "/tmp/share-6-12";
    let host_setup = format!(
        "{}mkdir -p {share}\necho hello-6-12-from-the-host > {share}/from-host\n",
        colinux_testrig::hostvirtiofsd::wrapper_setup()
    );
    let after = format!(
        "echo \"boot-6-12: the guest wrote: $(cat {share}/from-guest)\"\nrmmod colinux\necho boot-6-12-done"
    );
    let script = session::session_script_with(
        session::Root::Initrd,
        MEM,
        &[
            "uname -r",
            "time sleep 1",
            "mkdir -p /mnt && mount -t virtiofs cofs0 /mnt && cat /mnt/from-host && echo written-by-$(uname -r | cut -d. -f1,2) > /mnt/from-guest && umount /mnt && echo share-ok",
        ],
        "poweroff",
        &after,
        &format!("cofs0={share}"),
    );
    let s = scenario_with(
        parts_6_12(),
        "boot-6-12",
        format!("{host_setup}{script}"),
        Duration::from_secs(420),
    )
    .with_virtiofsd()
    .unwrap();
    let (out, sess) = run_one(&s);
    let ctx = context(&out, &sess);
    let release = step_output(&sess, 1).unwrap_or_else(|| panic!("`uname -r` never finished{ctx}"));
    assert!(
        release.iter().any(|l| l.trim().starts_with("6.12.100")),
        "`uname -r` does not show the 6.12.100 guest{ctx}"
    );
    let timed =
        step_output(&sess, 2).unwrap_or_else(|| panic!("`time sleep 1` never finished{ctx}"));
    assert!(
        timed
            .iter()
            .any(|l| l.trim().starts_with("real") && l.contains("0m 1.0")),
        "`sleep 1` in the 6.12 guest did not take about 1 s{ctx}"
    );
    let shared =
        step_output(&sess, 3).unwrap_or_else(|| panic!("the share step never finished{ctx}"));
    assert!(
        shared
            .iter()
            .any(|l| l.contains("hello-6-12-from-the-host"))
            && shared.iter().any(|l| l.trim() == "share-ok"),
        "the 6.12 guest did not read the host's file in cofs0: {shared:?}{ctx}"
    );
    assert!(
        out.console
            .contains("boot-6-12: the guest wrote: written-by-6.12"),
        "the host does not see the file the 6.12 guest wrote{ctx}"
    );
    assert_eq!(
        sess.status,
        Some(0),
        "`poweroff` should make the daemon exit 0{ctx}"
    );
    assert!(
        out.passed && out.console.contains("boot-6-12-done"),
        "the test host run failed{ctx}"
    );
}

/// `halt` and `reboot` in the guest end it too, each with its own reason
/// on the daemon's stderr and exit status 0.
#[test]
#[ignore = "boots the Linux guest in the test host; run by `cargo xtask test`"]
fn halt_and_reboot_end_the_guest_with_their_reasons() {
    let _serial = serial();
    for (command, reason) in [("halt", "guest halted"), ("reboot", "guest rebooted")] {
        let s = scenario(
            &format!("boot-{command}"),
            session::session_script(
                MEM,
                &[],
                command,
                &format!("rmmod colinux\necho boot-{command}-done"),
            ),
            Duration::from_secs(420),
        );
        let (out, sess) = run_one(&s);
        let ctx = context(&out, &sess);
        assert_eq!(
            sess.status,
            Some(0),
            "`{command}` should make the daemon exit 0{ctx}"
        );
        assert!(
            sess.daemon_stderr.iter().any(|l| l.contains(reason)),
            "the daemon did not report \"{reason}\" after `{command}`{ctx}"
        );
        assert!(
            out.passed && out.console.contains(&format!("boot-{command}-done")),
            "the test host run failed{ctx}"
        );
    }
}
