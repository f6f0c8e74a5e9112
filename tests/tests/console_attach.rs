//! Late attach to a running guest's console over the daemon's console
//! socket, in the QEMU test host with the real guest:
//!
//! - `colinux run name=guest0 … cocon=SOCK` boots the guest in the
//!   background of the script (stdin a fifo, stdout a file); the socket
//!   exists, mode 0600;
//! - once the guest's shell answers, `colinux console guest0` attaches
//!   (stdin a pipe): it is shown the boot log from before it attached (the
//!   daemon's shadow: "Linux version"), types `echo attached-$((6*7))` and
//!   sees `attached-42`, then detaches with ctrl-] (0x1d) and exits 0;
//! - the guest runs on: a second attach types a command and `poweroff`,
//!   sees both, and exits 0 when the daemon closes the console; the daemon
//!   exits 0 and removes its socket; the host kernel log stays clean.
//!
//! The socket server itself (shadow replay, takeover, slow clients, stale
//! sockets) is unit-tested without QEMU in `devices/src/cocon/server.rs` and
//! `daemon/src/attach.rs`.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use colinux_testrig::guest_initrd::INIT_MARKER;
use colinux_testrig::session::{self, SHELL_READY};
use colinux_tests::{captured, run_with_context};
use xtask::build::BuildOptions;
use xtask::run::GuestParts;

/// What the boot needs, as `boot.rs` builds it.
fn parts() -> GuestParts {
    let manifest = xtask::manifest::Manifest::load_default().unwrap();
    let build = BuildOptions::guest(&manifest, &manifest.series.base).unwrap();
    GuestParts::build(&manifest, &build, &Default::default()).unwrap()
}

/// The socket in the test host.
const SOCK: &str = "/run/colinux/guest0.sock";

/// The test-host script. Everything it learns is printed as
/// `console-attach: KEY VALUE` lines and the captured files with a prefix
/// each (`daemon-out| `, `daemon-err| `, `attach1| `, `attach1-err| `, …).
fn script() -> String {
    format!(
        r#"
C={colinux}
SOCK={SOCK}
fail() {{ echo "console-attach: FAILED $*"; dump; exit 1; }}
dump() {{
    for f in daemon-out daemon-err attach1 attach1-err attach2 attach2-err; do
        [ -f /tmp/$f ] || continue
        tr -d '\r' < /tmp/$f | while IFS= read -r l || [ -n "$l" ]; do printf '%s| %s\n' "$f" "$l"; l=; done
    done
}}
# wait_for FILE PATTERN SECONDS
wait_for() {{
    n=0
    until grep -qF -- "$2" "$1" 2>/dev/null; do
        n=$((n + 1))
        [ $n -le $(($3 * 10)) ] || return 1
        kill -0 $DPID 2>/dev/null || {{ sleep 0.5; grep -qF -- "$2" "$1" && return 0; return 2; }}
        sleep 0.1
    done
}}
insmod {module}
mkfifo /tmp/daemon-in
$C run name=guest0 kernel={vmlinux} initrd={initrd} mem=128 cocon=$SOCK \
    < /tmp/daemon-in > /tmp/daemon-out 2> /tmp/daemon-err &
DPID=$!
# The daemon's own stdin: held open here for the whole session.
exec 3> /tmp/daemon-in
wait_for /tmp/daemon-out '{init_marker}' 180 || fail "no init marker from the guest"
echo "console-attach: socket-mode $(stat -c '%F %a' $SOCK)"
# The guest's shell reads its console once it answers (typed on the
# daemon's own stdin, which is merged with the clients' input).
tries=0
until grep -qF '{shell_ready}' /tmp/daemon-out; do
    echo "echo colinux-run: shell-''ready" >&3
    tries=$((tries + 1))
    [ $tries -le 60 ] || fail "the guest's shell did not answer"
    sleep 1
done
echo "console-attach: boot log before attaching: $(wc -c < /tmp/daemon-out) bytes"

# First client: attaches late, types, detaches with ctrl-].
rc1=0
{{
    sleep 1
    echo 'echo attached-$((6*7))'
    wait_for /tmp/daemon-out attached-42 60 || true
    sleep 1
    printf '\035'
}} | timeout 90 $C console guest0 > /tmp/attach1 2> /tmp/attach1-err || rc1=$?
echo "console-attach: attach1 status $rc1"
sleep 2
if kill -0 $DPID 2>/dev/null; then
    echo "console-attach: daemon running after detach"
fi

# Second client: the guest runs on; it powers the guest off.
rc2=0
{{
    sleep 1
    echo 'echo again-$((7*6))'
    wait_for /tmp/daemon-out again-42 60 || true
    echo 'poweroff'
}} | timeout 90 $C console guest0 > /tmp/attach2 2> /tmp/attach2-err || rc2=$?
echo "console-attach: attach2 status $rc2"
drc=0
wait $DPID || drc=$?
exec 3>&-
echo "console-attach: daemon status $drc"
[ -e $SOCK ] && echo "console-attach: socket left behind" || echo "console-attach: socket removed"
dump
rmmod colinux
echo "console-attach: done"
"#,
        colinux = session::HOST_COLINUX,
        module = session::HOST_MODULE,
        vmlinux = session::HOST_VMLINUX,
        initrd = session::HOST_INITRD,
        init_marker = INIT_MARKER,
        shell_ready = SHELL_READY,
    )
}

/// The lines of one captured file from the host console.
fn fact(console: &str, key: &str) -> Option<String> {
    let p = format!("console-attach: {key}");
    console
        .lines()
        .find_map(|l| l.find(&p).map(|at| l[at + p.len()..].trim().to_string()))
}

#[test]
#[ignore = "boots the Linux guest in the test host; run by `cargo xtask test`"]
fn a_late_client_sees_the_boot_log_types_detaches_and_the_guest_runs_on() {
    let p = parts();
    let s = p
        .scenario("console-attach", script())
        .timeout(Duration::from_secs(420));
    let (out, ctx) = run_with_context(&s, 60);
    let c = &out.console;
    assert!(
        fact(c, "FAILED").is_none(),
        "the session failed: {:?}{ctx}",
        fact(c, "FAILED")
    );
    assert_eq!(
        fact(c, "socket-mode").as_deref(),
        Some("socket 600"),
        "the console socket should be a socket with mode 0600{ctx}"
    );

    let a1 = captured(c, "attach1");
    let a1_err = captured(c, "attach1-err").join("\n");
    let a1_text = a1.join("\n");
    assert!(
        a1_text.contains("Linux version"),
        "the first client was not shown the boot log from before it attached (the shadow){ctx}"
    );
    assert!(
        a1.iter().any(|l| l.trim() == "attached-42"),
        "the first client did not see the answer to its `echo attached-$((6*7))`{ctx}"
    );
    assert_eq!(
        fact(c, "attach1 status").as_deref(),
        Some("0"),
        "`colinux console` should exit 0 on ctrl-]{ctx}"
    );
    assert!(
        a1_err.contains("detached from") && a1_err.contains("keeps running"),
        "the first client did not say it detached: {a1_err:?}{ctx}"
    );
    assert!(
        fact(c, "daemon running after detach").is_some(),
        "the daemon stopped when the client detached{ctx}"
    );

    let a2 = captured(c, "attach2");
    let a2_text = a2.join("\n");
    assert!(
        a2.iter().any(|l| l.trim() == "attached-42") && a2.iter().any(|l| l.trim() == "again-42"),
        "the second client should see the first client's session (shadow) and its own command{ctx}"
    );
    assert!(
        a2_text.contains("colinux: guest powered off"),
        "the second client was not told the guest powered off{ctx}"
    );
    assert_eq!(
        fact(c, "attach2 status").as_deref(),
        Some("0"),
        "`colinux console` should exit 0 when the daemon closes the console{ctx}"
    );
    assert_eq!(
        fact(c, "daemon status").as_deref(),
        Some("0"),
        "the daemon should exit 0 after `poweroff`{ctx}"
    );
    assert!(
        fact(c, "socket removed").is_some(),
        "the daemon left its socket behind{ctx}"
    );
    let daemon_err = captured(c, "daemon-err").join("\n");
    assert!(
        daemon_err.contains("console client 1 attached")
            && daemon_err.contains("console client 1 detached")
            && daemon_err.contains("console client 2 attached"),
        "the daemon did not log the clients coming and going: {daemon_err:?}{ctx}"
    );
    assert!(
        out.passed && c.contains("console-attach: done"),
        "the test host run failed (the module must unload, the host log stay clean){ctx}"
    );
}
