//! The `colinux` command in the test host: several named guests at once.
//!
//! Three guests are started detached — from a TOML file, from a coLinux
//! `@file` and from `name=value` words — and listed; each one's console is
//! attached in turn, runs a command and is detached from; bad input is
//! refused with a clear error before anything is allocated; one guest's
//! process is moved between the host's CPUs while its guest computes; then one guest
//! is stopped cleanly with `colinux stop` (its power button: it runs its
//! own shutdown), one ended with `colinux kill`, one by SIGKILL of its
//! process and a fourth with `colinux stop --force`; a fifth runs in the
//! foreground on a terminal (a pseudo-terminal driven by `colinux-pty`):
//! raw mode passes ctrl-C to the guest, ctrl-] ends it with status 0 and
//! the terminal's settings come back; and the host's memory comes back.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use colinux_testrig::session::{HOST_COLINUX, HOST_INITRD, HOST_MODULE, HOST_VMLINUX};
use colinux_tests::guest::{parts, serial};
use colinux_tests::{captured, run_with_context, SHELL_HELPERS};

/// Where the terminal driver (`tests/probe/src/bin/colinux-pty.rs`) is in
/// the test host.
const HOST_PTY: &str = "/root/colinux-pty";

/// What the script learns is printed as `runtime: KEY VALUE` lines.
fn script() -> String {
    format!(
        r#"
C={colinux}
R=/run/colinux
fail() {{ echo "runtime: FAILED $*"; dump; exit 1; }}
dump() {{
    for f in $R/*/*.log /tmp/attach-*; do
        [ -f "$f" ] || continue
        tr -d '\r' < "$f" | tail -n 40 | sed "s|^|$f\| |"
    done
}}
# wait_for FILE PATTERN SECONDS
wait_for() {{
    n=0
    until grep -qF -- "$2" "$1" 2>/dev/null; do
        n=$((n + 1)); [ $n -le $(($3 * 10)) ] || return 1
        sleep 0.1
    done
}}
# typed GUEST LINE MARKER OUT SECONDS: attach to GUEST's console, type LINE,
# stay attached until MARKER is in the output (at most SECONDS), detach.
typed() {{
    {{
        echo "$2"
        n=0
        until grep -qF -- "$3" "$4" 2>/dev/null; do
            n=$((n + 1)); [ $n -le $(($5 * 10)) ] || break
            sleep 0.1
        done
        printf '\035'
    }} | timeout $(($5 + 30)) $C console $1 > "$4" 2>&1
}}
# refused WANT COMMAND…: the command fails and says WANT.
refused() {{
    want="$1"; shift
    if "$@" > /tmp/err 2>&1; then fail "accepted: $*"; fi
    grep -qF -- "$want" /tmp/err || {{ cat /tmp/err; fail "not the expected error for: $*"; }}
    echo "runtime: refused $(tr '\n' ' ' < /tmp/err)"
}}
insmod {module}
before=$(free_kb)
mkdir -p /etc/colinux
cat > /etc/colinux/web.toml <<'EOF'
# The web guest: named after this file.
kernel = "{vmlinux}"
initrd = "{initrd}"
memory = 64
EOF
cat > /etc/colinux/db.conf <<'EOF'
# A coLinux-style configuration
name=db
kernel={vmlinux} initrd={initrd}   # two on a line
mem=64
EOF
$C run --detach /etc/colinux/web.toml || fail "web did not start"
$C run --detach @/etc/colinux/db.conf || fail "db did not start"
# cache has a disk (cobd0, an image file): the other refusals below use it.
dd if=/dev/zero of=/tmp/disk.img bs=1M count=8 2>/dev/null
$C run --detach name=cache kernel={vmlinux} initrd={initrd} mem=64 cobd0=/tmp/disk.img || fail "cache did not start"
$C list > /tmp/list || fail "list failed"
echo "runtime: modes $(stat -c '%a' $R/web $R/web/control.sock $R/web/console.sock | tr '\n' ' ')"
sed 's/^/list| /' /tmp/list

# Bad input: each refused, nothing allocated.
refused "a guest named web is already running" $C run --detach /etc/colinux/web.toml
printf 'kernel = "{vmlinux}"\nmemroy = 64\n' > /tmp/bad.toml
refused "/tmp/bad.toml:2: unknown field \`memroy\`" $C run /tmp/bad.toml
refused "command-line word 3: mem=lots: not a number of MiB" $C run name=x kernel={vmlinux} mem=lots
refused "command-line word 2: kernel=/nope: No such file" $C run name=x kernel=/nope
refused "mem=4000: a guest has 16 to" $C run name=x kernel={vmlinux} mem=4000
refused "no guest named nothere is running" $C console nothere
# Disks: in use, missing, not a raw image, a unit out of range.
refused "/tmp/disk.img is in use by another guest" $C run name=x kernel={vmlinux} cobd0=/tmp/disk.img
refused "command-line word 3: cobd0=/nope.img: No such file" $C run name=x kernel={vmlinux} cobd0=/nope.img
printf 'QFI\373\0\0\0\3' > /tmp/q.img; dd if=/dev/zero bs=1k count=4 >> /tmp/q.img 2>/dev/null
refused "/tmp/q.img is a qcow2 image" $C run name=x kernel={vmlinux} cobd1=/tmp/q.img
refused "cobdN takes N from 0 to 31" $C run name=x kernel={vmlinux} cobd32=/tmp/disk.img
echo "runtime: guests created by the driver after the bad input: $(dmesg | grep -c 'colinux: guest .*: created')"

# Each console in turn: wait for the shell, run a command, detach.
for g in web db cache; do
    wait_for $R/$g/console.log 'colinux-guest: init started' 300 || fail "$g did not boot"
    n=0
    until grep -qF "ready-$g-42" $R/$g/console.log; do
        {{ echo "echo ready-$g-\$((6*7))"; sleep 2; printf '\035'; }} | timeout 60 $C console $g > /tmp/attach-$g 2>&1
        n=$((n + 1)); [ $n -le 40 ] || fail "the shell of $g did not answer"
    done
    rc=0
    typed $g "echo ran-in-\$(uname -m)-$g-\$((6*7))" "ran-in-i686-$g-42" /tmp/attach-$g 60 || rc=$?
    grep -qF "ran-in-i686-$g-42" /tmp/attach-$g || fail "the command typed on $g's console did not run"
    echo "runtime: console $g ok, status $rc"
done
# A running guest moves between host CPUs: web's process is pinned to CPU 0
# and 1 in turn while its guest computes; every running thread sampled is
# on the CPU it was pinned to, and the guest's result comes out.
pid=$(sed -n 's/^pid = //p' $R/web/state)
typed web 'end=$(($(date +%s) + 10)); while [ $(date +%s) -lt $end ]; do :; done; echo moved-$((6*7))' \
    moved-42 /tmp/attach-move 120 &
attach=$!
wait_for /tmp/attach-move 'while [' 60 || fail "web's console did not take the line"
on0=0; on1=0; off=0
for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
    cpu=$((i % 2))
    taskset -a -p -c $cpu $pid > /dev/null || fail "taskset of web's process"
    sleep 0.5
    for st in /proc/$pid/task/*/stat; do
        set -- $(sed 's/^.*) //' "$st" 2>/dev/null)
        [ "$1" = R ] || continue
        shift 36
        if [ "$1" != $cpu ]; then off=$((off + 1)); elif [ $cpu = 0 ]; then on0=$((on0 + 1)); else on1=$((on1 + 1)); fi
    done
done
taskset -a -p -c 0,1 $pid > /dev/null
wait $attach
grep -qF moved-42 /tmp/attach-move || fail "web's computation did not finish across the moves"
echo "runtime: web moved between CPUs: running on 0 $on0 on 1 $on1 elsewhere $off"
$C list > /tmp/list2
echo "runtime: listed $(grep -c running /tmp/list2) running after the consoles"

# Three ways to end a guest: its own shutdown, kill, SIGKILL.
rc=0; $C stop web --timeout 120 > /tmp/stop 2>&1 || rc=$?
echo "runtime: stop web status $rc: $(cat /tmp/stop)"
tr -d '\r' < $R/web/console.log | grep -F -e 'power button' -e 'going down' -e 'poweroff' | sed 's/^/web-shutdown| /'
$C kill db > /tmp/kill 2>&1 || fail "kill db failed: $(cat /tmp/kill)"
echo "runtime: kill db: $(cat /tmp/kill)"
pid=$(sed -n 's/^pid = //p' $R/cache/state)
kill -9 $pid
n=0; while kill -0 $pid 2>/dev/null; do n=$((n + 1)); [ $n -le 100 ] || fail "cache's process survived SIGKILL"; sleep 0.1; done
# --force ends a fourth at once.
$C run --detach name=extra kernel={vmlinux} initrd={initrd} mem=64 || fail "extra did not start"
rc=0; $C stop --force extra > /tmp/stop 2>&1 || rc=$?
echo "runtime: stop --force extra status $rc: $(cat /tmp/stop)"
# In the foreground on a terminal: raw mode (a ctrl-C goes to the guest),
# ctrl-] ends the guest, the terminal's settings come back.
cat > /tmp/pty-steps <<'EOF'
expect console on this terminal; ctrl-] ends the guest
expect colinux-guest: init started
until 180 fg-ready-42 echo fg-ready-$((6*7))\r
send sleep 120\r
sleep 2000
send \x03
until 30 fg-after-43 echo fg-after-$((6*7+1))\r
send \x1d
EOF
rc=0
timeout 400 {pty} --timeout 60 /tmp/pty-steps -- $C run name=fg kernel={vmlinux} initrd={initrd} mem=64 \
    > /tmp/pty-out 2> /tmp/pty-err < /dev/null || rc=$?
echo "runtime: foreground on a terminal status $rc"
sed 's/^/pty-err| /' /tmp/pty-err
tr -d '\r' < /tmp/pty-out | tail -n 20 | sed 's/^/pty-out| /'
$C list > /tmp/list3
echo "runtime: listed $(($(wc -l < /tmp/list3) - 1)) after the ends"
$C list --all | sed 's/^/list-all| /'
refused "no guest named db is running" $C kill db
# The disk images live in the test host's tmpfs: not guest memory.
rm -f /tmp/disk.img /tmp/q.img
after=$(free_kb)
diff=$((before - after)); [ $diff -ge 0 ] || diff=$((-diff))
echo "runtime: memory before $before after $after difference $diff kB"
[ $diff -le $((8 * 1024)) ] || fail "the guests' memory did not come back"
rmmod colinux
echo "runtime: done"
"#,
        colinux = HOST_COLINUX,
        pty = HOST_PTY,
        module = HOST_MODULE,
        vmlinux = HOST_VMLINUX,
        initrd = HOST_INITRD,
    )
}

fn facts<'a>(console: &'a str, key: &str) -> Vec<&'a str> {
    let p = format!("runtime: {key}");
    console
        .lines()
        .filter_map(|l| l.find(&p).map(|at| l[at + p.len()..].trim()))
        .collect()
}

#[test]
#[ignore = "boots three Linux guests in the test host; run by `cargo xtask test`"]
fn three_named_guests_run_list_attach_and_end() {
    let _one = serial();
    let pty = colinux_testrig::userland::build_static("colinux-probe", "colinux-pty").unwrap();
    let s = parts()
        .scenario("runtime", format!("{SHELL_HELPERS}\n{}", script()))
        .file(pty, HOST_PTY, 0o755)
        .timeout(Duration::from_secs(1200));
    let (out, ctx) = run_with_context(&s, 80);
    let c = &out.console;
    assert!(
        facts(c, "FAILED").is_empty(),
        "{:?}{ctx}",
        facts(c, "FAILED")
    );
    assert!(out.passed, "{ctx}");
    // All three listed, running, with their memory and console sockets.
    let list: Vec<&str> = captured(c, "list");
    assert!(list[0].starts_with("NAME"), "{list:?}{ctx}");
    for g in ["web", "db", "cache"] {
        let row = list
            .iter()
            .find(|r| r.split_whitespace().next() == Some(g))
            .unwrap_or_else(|| panic!("{g} is not listed: {list:?}{ctx}"));
        assert!(
            row.contains("running") && row.contains("64 MiB"),
            "{row}{ctx}"
        );
        assert!(
            row.ends_with(&format!("/run/colinux/{g}/console.sock")),
            "{row}{ctx}"
        );
        assert!(
            !facts(c, &format!("console {g} ok")).is_empty(),
            "{g}'s console{ctx}"
        );
    }
    assert_eq!(facts(c, "refused").len(), 11, "{ctx}");
    assert_eq!(
        facts(c, "modes"),
        ["700 600 600"],
        "the guest's directory and sockets are its owner's alone{ctx}"
    );
    assert_eq!(
        facts(c, "guests created by the driver after the bad input:"),
        ["3"],
        "bad input must be refused before the driver allocates anything{ctx}"
    );
    assert_eq!(
        facts(c, "listed"),
        ["3 running after the consoles", "0 after the ends"],
        "{ctx}"
    );
    // The guest ran on both CPUs, moved while running, and went on.
    let moved = facts(c, "web moved between CPUs: running on");
    let n: Vec<u32> = moved
        .first()
        .map(|l| {
            l.split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        n.len() == 5 && n[1] > 0 && n[3] > 0 && n[4] == 0,
        "web's running threads must be seen on both CPUs and only where pinned: {moved:?}{ctx}"
    );
    // The clean stop: the guest ran its own shutdown and powered off.
    assert_eq!(
        facts(c, "stop web status"),
        ["0: guest web shut down: powered off"],
        "{ctx}"
    );
    let shutdown: Vec<&str> = captured(c, "web-shutdown");
    assert!(
        shutdown
            .iter()
            .any(|l| l.contains("the host pressed the power button")),
        "the guest kernel did not see the power button: {shutdown:?}{ctx}"
    );
    assert!(
        shutdown.iter().any(|l| l.contains("going down")),
        "the guest's init did not run its shutdown: {shutdown:?}{ctx}"
    );
    assert_eq!(
        facts(c, "kill db:"),
        ["guest db ended: ended by colinux kill"],
        "{ctx}"
    );
    // How each ended stays on record.
    let all: Vec<&str> = captured(c, "list-all");
    let row = |g: &str| {
        all.iter()
            .find(|r| r.split_whitespace().next() == Some(g))
            .copied()
            .unwrap_or_default()
    };
    assert!(
        row("web").contains("powered off (exit status 0)"),
        "{all:?}{ctx}"
    );
    assert!(
        row("db").contains("ended by colinux kill (exit status 137)"),
        "{all:?}{ctx}"
    );
    assert!(row("cache").contains("dead"), "{all:?}{ctx}");
    assert!(
        row("extra").contains("ended by colinux kill"),
        "{all:?}{ctx}"
    );
    // The foreground guest on a terminal.
    let pty_err = captured(c, "pty-err").join("\n");
    let pty_out = captured(c, "pty-out").join("\n");
    assert_eq!(
        facts(c, "foreground on a terminal status"),
        ["0"],
        "{pty_err}\n{pty_out}{ctx}"
    );
    assert!(
        pty_out.contains("fg-after-43"),
        "ctrl-C typed on the terminal must reach the guest (raw mode), not end `colinux run`: {pty_out}{ctx}"
    );
    assert!(
        pty_out.contains("colinux: ctrl-] on the terminal: stopping the guest"),
        "{pty_out}{ctx}"
    );
    assert!(
        pty_err.contains("colinux-pty: exit 0")
            && pty_err.contains("colinux-pty: terminal restored yes"),
        "ctrl-] must end the guest with status 0 and restore the terminal: {pty_err}{ctx}"
    );
    let stop = facts(c, "stop --force extra status");
    assert!(
        stop.first().is_some_and(|s| s.starts_with("2:")),
        "{stop:?}{ctx}"
    );
    assert!(!facts(c, "done").is_empty(), "{ctx}");
}

/// The shipped systemd template unit parses (`systemd-analyze verify`),
/// with `/usr/bin/colinux` pointed at the built command.
#[test]
fn the_systemd_unit_verifies() {
    colinux_buildenv::sysdeps::ensure("verifying the systemd unit", &["systemd"]).unwrap();
    let root = colinux_buildenv::paths::repo_root();
    let unit = std::fs::read_to_string(root.join("daemon/systemd/colinux@.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/colinux run /etc/colinux/%i.toml"));
    assert!(unit.contains("ExecStop=/usr/bin/colinux stop %i"));
    let colinux = colinux_testrig::userland::build_static("colinux-daemon", "colinux").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("colinux@web.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/colinux", &colinux.display().to_string()),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
}
