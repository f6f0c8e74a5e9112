//! The test host's `/init`: a busybox shell script generated per run.
//!
//! It mounts the usual file systems, prints a start marker, runs
//! `/scenario.sh` (in its own session, killed with its whole process group
//! when its time is up), then always checks the kernel log for problems and
//! prints the markers the rig parses, and powers off.
//!
//! Every marker line starts with `COLINUX-TESTHOST[<nonce>]: `, where the
//! nonce is fresh per run, so nothing else on the console (the kernel echoing
//! its command line, a scenario printing this file) can be mistaken for one:
//! - `SETUP-FAIL <what>` — a module did not load or a disk did not appear:
//!   the script does not run;
//! - `START <uname -r>` — the scenario starts now;
//! - `TIMEOUT <secs>` — the scenario was killed after `<secs>` seconds;
//! - `EXIT <status>` — the scenario's exit status;
//! - `KLOG: <line>` — a kernel log line that looks like a problem;
//! - `KLOG CLEAN` / `KLOG DIRTY <count>` / `KLOG SKIPPED`;
//! - `DMESG BEGIN` … `DMESG END` — on failure, the whole kernel log;
//! - `RESULT PASS` / `RESULT FAIL <status>` — the last line before power-off.

use crate::hostkernel::modules::{Load, LoadPlan};

/// Extended regular expressions (`grep -E`) for kernel log lines that mean
/// something went wrong in the host kernel.
pub const KLOG_PROBLEMS: &[&str] = &[
    "BUG:",
    "kernel BUG",
    "WARNING:",
    "Oops",
    "general protection fault",
    "Call Trace",
    "soft lockup",
    "hard LOCKUP",
    "rcu.*stall",
    "hung_task",
    "blocked for more than",
    "[Kk]ernel panic",
    "UBSAN:",
    "KASAN:",
    "list_(add|del) corruption",
    "refcount_t:",
    "Unable to handle",
    "double fault",
];

/// What the generated `/init` does.
#[derive(Debug)]
pub struct InitOptions<'a> {
    /// The per-run marker nonce (hex).
    pub nonce: &'a str,
    /// When the watchdog kills the scenario, in seconds since the Unix
    /// epoch (the host's clock follows the build machine's through QEMU's
    /// RTC, to the second).
    pub deadline_unix: u64,
    /// Check the kernel log after the scenario.
    pub check_klog: bool,
    /// `grep -E` patterns of problem lines that are expected.
    pub klog_ignore: &'a [String],
    /// Run an interactive shell on the console after the scenario.
    pub interactive: bool,
    /// Load these modules (found under `/lib/modules/<release>/` in the
    /// host) before the scenario.
    pub modules: Option<&'a LoadPlan>,
    /// The serials of the scenario's disks, in order (`vda`, `vdb`, …):
    /// the init waits for them and links `/dev/disk/by-id/virtio-<serial>`.
    pub disks: &'a [String],
}

/// The kernel's name of the `index`th virtio disk: `vda`, `vdb`, …,
/// `vdz`, `vdaa`, … (as `virtio_blk` names them).
pub fn disk_name(index: usize) -> String {
    // Linux's sd_format_disk_name: bijective base 26.
    let mut letters = Vec::new();
    let mut n = index + 1;
    while n > 0 {
        n -= 1;
        letters.push(b'a' + (n % 26) as u8);
        n /= 26;
    }
    letters.reverse();
    format!("vd{}", String::from_utf8_lossy(&letters))
}

/// The shell that loads `plan` (modules under `/lib/modules/$(uname -r)/`):
/// each step with `insmod`, a module already in `/sys/module` skipped; a
/// step that fails prints `$M SETUP-FAIL …` naming the module and what
/// insmod said, and sets `setup_failed=1`.
fn load_modules(plan: &LoadPlan) -> String {
    let mut out = String::from(
        r#"moddir=/lib/modules/$(uname -r)
modmsg=
colinux_insmod() {
    [ -d "/sys/module/$1" ] && return 0
    if modmsg=$(insmod "$moddir/$2" 2>&1); then return 0; fi
    modmsg="insmod $moddir/$2: $modmsg"
    return 1
}
colinux_modfail() {
    echo "$M SETUP-FAIL the kernel module $1 did not load: $(echo $modmsg)"
    setup_failed=1
}
read t0 _ < /proc/uptime
"#,
    );
    let q = |s: &str| format!("'{}'", quote_in_single(s));
    for step in &plan.steps {
        match step {
            Load::Module(m) => out.push_str(&format!(
                "colinux_insmod {} {} || colinux_modfail {}
",
                q(&m.name),
                q(&m.path),
                q(&m.name)
            )),
            Load::AnyOf { alias, chains } => {
                let tries: Vec<String> = chains
                    .iter()
                    .map(|c| {
                        let loads: Vec<String> = c
                            .iter()
                            .map(|m| format!("colinux_insmod {} {}", q(&m.name), q(&m.path)))
                            .collect();
                        format!("{{ {}; }}", loads.join(" && "))
                    })
                    .collect();
                let names: Vec<&str> = chains
                    .iter()
                    .filter_map(|c| c.last().map(|m| m.name.as_str()))
                    .collect();
                out.push_str(&format!(
                    "{} || colinux_modfail {}
",
                    tries.join(" || "),
                    q(&format!("{alias} (none of {} loaded)", names.join(", ")))
                ));
            }
        }
    }
    out.push_str(&format!(
        r#"read t1 _ < /proc/uptime
echo "colinux-testhost: loaded {} module(s) in $(awk -v a="$t0" -v b="$t1" 'BEGIN {{ printf "%.2f", b - a }}')s"
"#,
        plan.files().len()
    ));
    out
}

/// The shell that waits (10 s at most) for the disks with `serials`, checks
/// their order and links them under `/dev/disk/by-id/`.
fn attach_disks(serials: &[String]) -> String {
    let mut out = String::from(
        r#"colinux_disk() {
    n=0
    while [ ! -e "/sys/block/$1/serial" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
    if [ ! -e "/sys/block/$1/serial" ]; then
        echo "$M SETUP-FAIL disk $1 (serial $2) did not appear within 10s (block devices: $(ls /sys/block | tr '
' ' '))"
        setup_failed=1
        return
    fi
    ser=$(cat "/sys/block/$1/serial")
    if [ "$ser" != "$2" ]; then
        echo "$M SETUP-FAIL disk $1 has the serial '$ser', expected '$2' (disk order)"
        setup_failed=1
    fi
    mkdir -p /dev/disk/by-id
    ln -sf "../../$1" "/dev/disk/by-id/virtio-$2"
    for p in /sys/block/$1/$1*; do
        [ -e "$p/partition" ] || continue
        ln -sf "../../${p##*/}" "/dev/disk/by-id/virtio-$2-part$(cat "$p/partition")"
    done
    echo "colinux-testhost: disk /dev/$1: serial $2, $(cat /sys/block/$1/size) sectors$([ "$(cat /sys/block/$1/ro)" = 1 ] && echo ', read-only')"
}
"#,
    );
    for (i, serial) in serials.iter().enumerate() {
        out.push_str(&format!(
            "colinux_disk {} '{}'
",
            disk_name(i),
            quote_in_single(serial)
        ));
    }
    out
}

/// The marker prefix for `nonce`.
pub fn marker(nonce: &str) -> String {
    format!("COLINUX-TESTHOST[{nonce}]:")
}

/// The `/init` script.
pub fn script(o: &InitOptions<'_>) -> String {
    let mut setup = String::from("setup_failed=0\n");
    if let Some(plan) = o.modules {
        setup.push_str(&load_modules(plan));
    }
    if !o.disks.is_empty() {
        setup.push_str("[ $setup_failed = 0 ] && {\n");
        setup.push_str(&attach_disks(o.disks));
        setup.push_str("}\n");
    }
    let problems = KLOG_PROBLEMS.join("|");
    let ignore = if o.klog_ignore.is_empty() {
        String::new()
    } else {
        o.klog_ignore.join("|")
    };
    let run_scenario = if o.interactive {
        // Foreground, on the console, then a shell with job control.
        r#"/bin/sh /scenario.sh
rc=$?
echo "$M EXIT $rc (scenario); starting a shell: exit it (or Ctrl-D) to power off, Ctrl-A X quits QEMU"
setsid cttyhack /bin/sh -l
"#
        .to_string()
    } else {
        r#"# The clock comes from QEMU's RTC, which follows the build machine's.
budget=$((DEADLINE - $(date +%s)))
[ "$budget" -lt 1 ] && budget=1
# Its own session and process group, so the watchdog kills all of it.
setsid /bin/sh /scenario.sh </dev/null &
pid=$!
(
    sleep "$budget"
    if kill -0 "$pid" 2>/dev/null; then
        : > /run/colinux-timeout
        echo "$M TIMEOUT $budget"
        kill -KILL "-$pid" "$pid" 2>/dev/null
    fi
) &
watchdog=$!
wait "$pid"
rc=$?
kill "$watchdog" 2>/dev/null
"#
        .to_string()
    };
    format!(
        r#"#!/bin/sh
# colinux test host init (generated by colinux_testrig::testhost; do not edit)
export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root TERM=vt100
M='{marker}'
DEADLINE={deadline}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
hostname colinux-testhost
cd /root
# From here on every kernel message goes to the console, in order with the
# scenario's output.
dmesg -n 8
{setup}
# The rig's own tests stall a boot here, as a hung emulator would.
grep -qw colinux_testhost.stall /proc/cmdline && exec sleep 100000
if [ $setup_failed = 0 ]; then
echo "$M START $(uname -r)"
{run_scenario}
else
rc=125
fi
# Only emergencies on the console while the markers are printed.
dmesg -n 1
echo "$M EXIT $rc"
klog=clean
if [ {check_klog} = 1 ]; then
    dmesg > /run/klog
    grep -E '{problems}' /run/klog > /run/klog-problems
    if [ -n '{ignore}' ]; then
        grep -v -E '{ignore}' /run/klog-problems > /run/klog-kept
        mv /run/klog-kept /run/klog-problems
    fi
    if [ -s /run/klog-problems ]; then
        klog=dirty
        while IFS= read -r line; do echo "$M KLOG: $line"; done < /run/klog-problems
        echo "$M KLOG DIRTY $(wc -l < /run/klog-problems)"
    else
        echo "$M KLOG CLEAN"
    fi
else
    echo "$M KLOG SKIPPED"
fi
if [ "$rc" = 0 ] && [ "$klog" = clean ]; then
    echo "$M RESULT PASS"
else
    # The whole kernel log (boot included: the console showed only errors
    # until the scenario started), for the post-mortem.
    echo "$M DMESG BEGIN"
    dmesg
    echo "$M DMESG END"
    echo "$M RESULT FAIL $rc"
fi
sync
poweroff -f
echo o > /proc/sysrq-trigger
sleep 1000
"#,
        marker = marker(o.nonce),
        deadline = o.deadline_unix,
        check_klog = u8::from(o.check_klog),
        problems = quote_in_single(&problems),
        ignore = quote_in_single(&ignore),
    )
}

/// `s` for use inside a single-quoted shell word.
fn quote_in_single(s: &str) -> String {
    s.replace('\'', r"'\''")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostkernel::modules::ModuleFile;

    fn m(name: &str, path: &str) -> ModuleFile {
        ModuleFile {
            name: name.into(),
            path: path.into(),
        }
    }

    #[test]
    fn names_disks_like_virtio_blk() {
        assert_eq!(disk_name(0), "vda");
        assert_eq!(disk_name(1), "vdb");
        assert_eq!(disk_name(25), "vdz");
        assert_eq!(disk_name(26), "vdaa");
        assert_eq!(disk_name(27), "vdab");
        assert_eq!(disk_name(26 + 26 * 26), "vdaaa");
    }

    #[test]
    fn loads_modules_in_plan_order_and_waits_for_disks() {
        let plan = LoadPlan {
            roots: vec!["ext4".into()],
            steps: vec![
                Load::AnyOf {
                    alias: "crypto-crc32c".into(),
                    chains: vec![
                        vec![m("crc32c_intel", "kernel/a/crc32c-intel.ko")],
                        vec![m("crc32c_generic", "kernel/b/crc32c_generic.ko")],
                    ],
                },
                Load::Module(m("jbd2", "kernel/fs/jbd2/jbd2.ko")),
                Load::Module(m("ext4", "kernel/fs/ext4/ext4.ko")),
            ],
        };
        let disks = ["disk0".to_string(), "data".to_string()];
        let text = script(&InitOptions {
            nonce: "n",
            deadline_unix: 1,
            check_klog: true,
            klog_ignore: &[],
            interactive: false,
            modules: Some(&plan),
            disks: &disks,
        });
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("no {needle:?} in:\n{text}"))
        };
        assert!(
            at(
                "{ colinux_insmod 'crc32c_intel' 'kernel/a/crc32c-intel.ko'; } || \
                { colinux_insmod 'crc32c_generic' 'kernel/b/crc32c_generic.ko'; } || \
                colinux_modfail 'crypto-crc32c (none of crc32c_intel, crc32c_generic loaded)'"
            ) < at("colinux_insmod 'jbd2' 'kernel/fs/jbd2/jbd2.ko' || colinux_modfail 'jbd2'")
        );
        assert!(at("colinux_modfail 'jbd2'") < at("colinux_modfail 'ext4'"));
        assert!(at("colinux_modfail 'ext4'") < at("colinux_disk vda 'disk0'"));
        assert!(at("colinux_disk vda 'disk0'") < at("colinux_disk vdb 'data'"));
        assert!(at("colinux_disk vdb 'data'") < at("START $(uname -r)"));

        // Without disks or modules: nothing of it.
        let text = script(&InitOptions {
            nonce: "n",
            deadline_unix: 1,
            check_klog: true,
            klog_ignore: &[],
            interactive: false,
            modules: None,
            disks: &[],
        });
        assert!(!text.contains("colinux_insmod '"));
        assert!(!text.contains("colinux_disk vd"));
    }
}
