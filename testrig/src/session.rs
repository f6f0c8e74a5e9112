//! Guest sessions in the test host: the scripts that load the driver, boot
//! the guest with the daemon and drive its shell through the console, and
//! the parser of what they print.

use crate::guest_initrd::INIT_MARKER;

/// Where the guest kernel is in the test host.
pub const HOST_VMLINUX: &str = "/root/vmlinux";
/// Where the guest initramfs is in the test host.
pub const HOST_INITRD: &str = "/root/initrd.cpio";
/// Where the low-level developer tool (test payloads, held guests, kernel
/// checks) is in the test host.
pub const HOST_DAEMON: &str = "/root/colinux-daemon";
/// Where the `colinux` command is in the test host.
pub const HOST_COLINUX: &str = "/root/colinux";
/// Where the driver is in the test host.
pub const HOST_MODULE: &str = "/root/colinux.ko";
/// The prefix of each guest console line on the host's console.
pub const GUEST_PREFIX: &str = "guest| ";
/// The name sessions give their guest (`colinux run name=guest …`).
pub const GUEST_NAME: &str = "guest";
/// The prefix of each line `colinux run` wrote to stderr, shown after a
/// session.
pub const DAEMON_PREFIX: &str = "colinux| ";
/// The line a session ends with: `colinux-run: daemon exited with status N`.
pub const EXIT_LINE: &str = "colinux-run: daemon exited with status ";
/// The guest's answer once its shell reads commands.
pub const SHELL_READY: &str = "colinux-run: shell-ready";

/// Shell functions (busybox ash, in the test host) that boot the guest and
/// drive its shell:
///
/// `guest_boot LOG STEPS FINAL [settings…]` boots the guest in the
/// foreground with `colinux run name=guest kernel=… initrd=…
/// mem=$GUEST_MEM settings…` (`$GUEST_MEM` MiB, default 128); once it printed the init marker, types
/// `echo` commands until the shell answers [`SHELL_READY`], then each line
/// of the file STEPS followed by `; echo colinux-run: step-N-done` (waiting
/// for that), then FINAL (e.g. `poweroff`), and waits for the daemon to
/// exit. Sets `$GUEST_RC` (the daemon's status) and `$GUEST_FEED_RC` (0 when
/// everything was typed and the daemon exited in time). LOG gets each
/// console line as `<host uptime> <line>`, `LOG.err` the daemon's stderr.
/// Prints each console line as `guest| …` unless `GUEST_ECHO=0`, then
/// the stderr of `colinux run` as `colinux| …` and [`EXIT_LINE`]. Limits
/// (seconds): `GUEST_WAIT` for the init marker (180), `GUEST_STEP_WAIT` per
/// step (60), `GUEST_END_WAIT` for the daemon after FINAL (60); on expiry
/// the daemon is killed. `GUEST_INIT_MARKER` (the line saying the guest's
/// userland started) and `GUEST_INITRD` (empty: none, e.g. for a guest that
/// boots from a disk) may be set before calling it.
///
/// `guest_stamp_of PATTERN` prints the host uptime at which the first
/// console line containing PATTERN (fixed string) arrived.
///
/// Markers typed into the guest are written as `colinux-run: step-''N-done`
/// so that the terminal's echo of the typed line never matches the output.
pub const GUEST_HELPERS: &str = r#"
GUEST_MEM=${GUEST_MEM:-128}
GUEST_ECHO=${GUEST_ECHO:-1}
GUEST_WAIT=${GUEST_WAIT:-180}
GUEST_STEP_WAIT=${GUEST_STEP_WAIT:-60}
GUEST_END_WAIT=${GUEST_END_WAIT:-60}
GUEST_INIT_MARKER='@INIT_MARKER@'
GUEST_INITRD=${GUEST_INITRD-@HOST_INITRD@}
GUEST_CR=$(printf '\r')
guest_stamp() {
    while IFS= read -r l || [ -n "$l" ]; do
        read up _ < /proc/uptime
        l=${l%"$GUEST_CR"}
        printf '%s %s\n' "$up" "$l" >> "$1"
        if [ "$GUEST_ECHO" = 1 ]; then printf '@GUEST_PREFIX@%s\n' "$l"; fi
        l=
    done
}
guest_stop() {
    kill "$GUEST_PID" 2>/dev/null || return 0
    n=0
    while kill -0 "$GUEST_PID" 2>/dev/null && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
    kill -9 "$GUEST_PID" 2>/dev/null || true
}
# guest_nap: sleep a tenth of a second while $n (tenths waited so far) is
# below 20, then half a second, and count it in $n. Each look costs a fork
# and an exec, which under emulation take CPU time the guest and its devices
# need: long waits look less often.
guest_nap() {
    if [ "$n" -lt 20 ]; then sleep 0.1; n=$((n + 1)); else sleep 0.5; n=$((n + 5)); fi
}
# guest_wait_for PATTERN SECONDS: 0 when the console showed PATTERN, 1 on
# time-out, 2 when the daemon is gone.
guest_wait_for() {
    n=0
    while ! grep -qF -- "$1" "$GUEST_LOG"; do
        if ! kill -0 "$GUEST_PID" 2>/dev/null; then
            # Let the stamper catch up with the daemon's last lines.
            sleep 0.5
            grep -qF -- "$1" "$GUEST_LOG" && return 0
            return 2
        fi
        [ $n -le $(($2 * 10)) ] || return 1
        guest_nap
    done
}
guest_fail() {
    echo "colinux-run: $*" >&2
    guest_stop
    exit 1
}
# guest_expect PATTERN SECONDS WHAT: wait for PATTERN or fail saying WHAT
# did not come.
guest_expect() {
    guest_rc=0
    guest_wait_for "$1" "$2" || guest_rc=$?
    case $guest_rc in
    0) return 0 ;;
    2) guest_fail "the daemon exited before $3" ;;
    *) guest_fail "no $3 within $2 s" ;;
    esac
}
# The feeder: stdout is the guest's console input.
guest_feed() {
    guest_expect "$GUEST_INIT_MARKER" "$GUEST_WAIT" "the guest printed '$GUEST_INIT_MARKER'"
    # Lines typed before the shell reads may be lost: ask until it answers.
    tries=0
    while :; do
        echo "echo colinux-run: shell-''ready"
        guest_rc=0
        guest_wait_for "@SHELL_READY@" 3 || guest_rc=$?
        [ $guest_rc != 0 ] || break
        [ $guest_rc != 2 ] || guest_fail "the daemon exited before the guest's shell answered"
        tries=$((tries + 1))
        [ $tries -lt 20 ] || guest_fail "the guest's shell did not answer within 60 s"
    done
    i=0
    while IFS= read -r cmd || [ -n "$cmd" ]; do
        [ -n "$cmd" ] || continue
        i=$((i + 1))
        printf '%s; echo colinux-run: step-'"''"'%s-done\n' "$cmd" "$i"
        guest_expect "colinux-run: step-$i-done" "$GUEST_STEP_WAIT" "the end of step $i ($cmd)"
        cmd=
    done < "$1"
    printf '%s\n' "$2"
    # Keep the input open until the daemon exits.
    n=0
    while kill -0 "$GUEST_PID" 2>/dev/null; do
        [ $n -le $((GUEST_END_WAIT * 10)) ] ||
            guest_fail "the daemon did not exit within $GUEST_END_WAIT s after '$2'"
        guest_nap
    done
}
guest_boot() {
    GUEST_LOG=$1
    guest_steps=$2
    guest_final=$3
    shift 3
    rm -f "$GUEST_LOG" "$GUEST_LOG.err" /tmp/guest-in /tmp/guest-out
    : > "$GUEST_LOG"
    mkfifo /tmp/guest-in /tmp/guest-out
    guest_stamp "$GUEST_LOG" < /tmp/guest-out &
    guest_stamp_pid=$!
    # GUEST_TASKSET, if set, pins the daemon (and so the guest) to those CPUs.
    ${GUEST_TASKSET:+taskset "$GUEST_TASKSET"} \
    @HOST_COLINUX@ run name=@GUEST_NAME@ kernel=@HOST_VMLINUX@ ${GUEST_INITRD:+"initrd=$GUEST_INITRD"} "mem=$GUEST_MEM" "$@" \
        < /tmp/guest-in > /tmp/guest-out 2> "$GUEST_LOG.err" &
    GUEST_PID=$!
    guest_feed "$guest_steps" "$guest_final" > /tmp/guest-in &
    guest_feed_pid=$!
    GUEST_RC=0
    wait "$GUEST_PID" || GUEST_RC=$?
    GUEST_FEED_RC=0
    wait "$guest_feed_pid" || GUEST_FEED_RC=$?
    wait "$guest_stamp_pid" || true
    rm -f /tmp/guest-in /tmp/guest-out
    while IFS= read -r l || [ -n "$l" ]; do printf '@DAEMON_PREFIX@%s\n' "$l"; l=; done < "$GUEST_LOG.err"
    echo "@EXIT_LINE@$GUEST_RC"
}
guest_stamp_of() {
    awk -v p="$1" 'index($0, p) { print $1; exit }' "$GUEST_LOG"
}
"#;

/// [`GUEST_HELPERS`] with its placeholders filled in.
pub fn guest_helpers() -> String {
    GUEST_HELPERS
        .replace("@INIT_MARKER@", INIT_MARKER)
        .replace("@GUEST_PREFIX@", GUEST_PREFIX)
        .replace("@DAEMON_PREFIX@", DAEMON_PREFIX)
        .replace("@EXIT_LINE@", EXIT_LINE)
        .replace("@SHELL_READY@", SHELL_READY)
        .replace("@HOST_COLINUX@", HOST_COLINUX)
        .replace("@GUEST_NAME@", GUEST_NAME)
        .replace("@HOST_VMLINUX@", HOST_VMLINUX)
        .replace("@HOST_INITRD@", HOST_INITRD)
}

/// The commands the main job types into the guest's shell.
pub const MAIN_STEPS: &[&str] = &[
    "uname -a",
    "cat /proc/meminfo | head -3",
    "cat /proc/interrupts",
];

/// The test host's first disk (`Scenario::disk`), where a guest booting
/// from a disk finds its root image.
pub const ROOT_DISK: &str = "/dev/vda";
/// The settings that boot the guest from [`ROOT_DISK`] as cobd0.
pub const ROOT_DISK_SETTINGS: &str = "cobd0=/dev/vda root=/dev/cobd0 ro";
/// The console line of the root images' autologin (`cargo xtask rootfs`):
/// the guest's userland is up.
pub const AUTOLOGIN_MARKER: &str = "(automatic login)";

/// Where a session's guest gets its root file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Root {
    /// The guest initramfs (busybox).
    #[default]
    Initrd,
    /// [`ROOT_DISK`], an image that logs root in on the console by itself
    /// (the images of `cargo xtask rootfs`); no initramfs.
    Disk,
}

impl Root {
    /// Shell lines that set the session helpers up for this root.
    fn setup(self) -> String {
        match self {
            Root::Initrd => String::new(),
            Root::Disk => {
                format!("GUEST_INITRD=\nGUEST_INIT_MARKER='{AUTOLOGIN_MARKER}'\nGUEST_WAIT=900\n")
            }
        }
    }

    /// The `colinux run` settings for this root.
    pub fn settings(self) -> String {
        match self {
            Root::Initrd => format!("initrd={HOST_INITRD}"),
            Root::Disk => ROOT_DISK_SETTINGS.to_string(),
        }
    }
}

/// A test-host script that loads the driver, boots the guest once with
/// `mem` MiB, types `steps` and then `last`, prints what happened and exits
/// 0 (whatever the daemon's status: callers check [`EXIT_LINE`]; see
/// [`session_status`]). `after` runs after the session (with `$GUEST_RC`,
/// `$GUEST_FEED_RC` and `guest_stamp_of`).
pub fn session_script(mem: u64, steps: &[&str], last: &str, after: &str) -> String {
    session_script_with(Root::Initrd, mem, steps, last, after, "")
}

/// [`session_script`] with the guest's root from `root` and more
/// `colinux run` settings (`cobd1=…`, kernel command-line words).
pub fn session_script_with(
    root: Root,
    mem: u64,
    steps: &[&str],
    last: &str,
    after: &str,
    settings: &str,
) -> String {
    let mut steps_text = String::new();
    for s in steps {
        steps_text.push_str(s);
        steps_text.push('\n');
    }
    format!(
        r#"set -e
{helpers}
GUEST_MEM={mem}
echo "== colinux: loading the host driver"
insmod {HOST_MODULE}
cat > /tmp/steps <<'COLINUX_STEPS_END'
{steps_text}COLINUX_STEPS_END
{setup}echo "== colinux: booting the guest: {HOST_COLINUX} run name={GUEST_NAME} kernel={HOST_VMLINUX} {root_settings} mem={mem} {settings}"
guest_boot /tmp/guest.log /tmp/steps '{last}' {disk_settings} {settings}
echo "== colinux: typing finished with status $GUEST_FEED_RC"
{after}
"#,
        helpers = guest_helpers(),
        last = last.replace('\'', r"'\''"),
        setup = root.setup(),
        root_settings = root.settings(),
        disk_settings = if root == Root::Disk {
            ROOT_DISK_SETTINGS
        } else {
            ""
        },
    )
}

/// The main job's script: one boot, [`MAIN_STEPS`], `poweroff`; fails
/// unless the daemon exited 0 and the module unloads.
pub fn script(root: Root, mem: u64) -> String {
    session_script_with(
        root,
        mem,
        MAIN_STEPS,
        "poweroff",
        r#"[ "$GUEST_FEED_RC" = 0 ] || { echo "== colinux: the session did not complete (see above)"; exit 1; }
[ "$GUEST_RC" = 0 ] || { echo "== colinux: the daemon exited with status $GUEST_RC (0 = powered off, 2 = panic, 3 = fault)"; exit 1; }
echo "== colinux: the guest powered off; unloading the driver"
rmmod colinux
"#,
        "",
    )
}

/// `--shell`: the guest's console on the terminal (the scenario runs in the
/// foreground on the host's console).
pub fn interactive_script(root: Root, mem: u64) -> String {
    let settings = root.settings();
    format!(
        r#"echo "== colinux: loading the host driver"
insmod {HOST_MODULE}
echo "== colinux: booting the guest; its console follows (type into its shell; 'poweroff' ends it, Ctrl-A X quits QEMU)"
# The guest's terminal does the echo and the line editing.
stty raw -echo 2>/dev/null
rc=0
{HOST_COLINUX} run name={GUEST_NAME} kernel={HOST_VMLINUX} {settings} mem={mem} || rc=$?
stty sane 2>/dev/null
echo "== colinux: colinux run exited with status $rc (0 = powered off, 2 = panic, 3 = fault)"
"#
    )
}

/// `--payload`: the 32-bit test payload through the passage.
pub fn payload_script(mem: u64) -> String {
    format!(
        r#"set -e
echo "== colinux: loading the host driver"
insmod {HOST_MODULE}
ls -l /dev/colinux
echo "== colinux: the daemon creates a {mem} MiB guest and loads the guest kernel"
{HOST_DAEMON} --kernel {HOST_VMLINUX} --mem {mem}
echo "== colinux: running the 32-bit test payload through the passage"
{HOST_DAEMON} --kernel /root/payload.elf --mem 64 --run
rmmod colinux
"#
    )
}

/// What one session printed: the guest's console lines, the daemon's
/// stderr and its exit status, from the host console text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Session {
    /// The guest's console, one line each ([`GUEST_PREFIX`] removed).
    pub guest: Vec<String>,
    /// The daemon's stderr ([`DAEMON_PREFIX`] removed).
    pub daemon_stderr: Vec<String>,
    /// The daemon's exit status, if the session ended.
    pub status: Option<i32>,
}

/// The sessions in `console` (the test host's console), in order.
pub fn sessions(console: &str) -> Vec<Session> {
    let mut out = Vec::new();
    let mut cur = Session::default();
    let mut any = false;
    for line in console.lines() {
        if let Some(at) = line.find(GUEST_PREFIX) {
            cur.guest.push(line[at + GUEST_PREFIX.len()..].to_string());
            any = true;
        } else if let Some(at) = line.find(DAEMON_PREFIX) {
            cur.daemon_stderr
                .push(line[at + DAEMON_PREFIX.len()..].to_string());
            any = true;
        } else if let Some(at) = line.find(EXIT_LINE) {
            cur.status = line[at + EXIT_LINE.len()..].trim().parse().ok();
            out.push(std::mem::take(&mut cur));
            any = false;
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// The daemon's exit status of the first session in `console`.
pub fn session_status(console: &str) -> Option<i32> {
    sessions(console).first().and_then(|s| s.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_have_no_placeholders_left() {
        let h = guest_helpers();
        for p in [
            "@INIT_MARKER@",
            "@GUEST_PREFIX@",
            "@DAEMON_PREFIX@",
            "@EXIT_LINE@",
            "@SHELL_READY@",
            "@HOST_COLINUX@",
            "@GUEST_NAME@",
            "@HOST_VMLINUX@",
            "@HOST_INITRD@",
        ] {
            assert!(GUEST_HELPERS.contains(p), "{p} is not used");
        }
        let left = h.replace("\"$@\"", "");
        assert!(!left.contains('@'), "{h}");
        assert!(h.contains(INIT_MARKER));
        let s = script(Root::Initrd, 128);
        assert!(s.contains(
            "/root/colinux run name=guest kernel=/root/vmlinux ${GUEST_INITRD:+\"initrd=$GUEST_INITRD\"} \"mem=$GUEST_MEM\""
        ));
        assert!(s.contains("GUEST_MEM=128"));
        assert!(s.contains("cat /proc/interrupts\nCOLINUX_STEPS_END"));
        assert!(s.contains("guest_boot /tmp/guest.log /tmp/steps 'poweroff'"));
        let s = session_script(64, &[], "echo c > /proc/sysrq-trigger", "");
        assert!(s.contains("'echo c > /proc/sysrq-trigger'"));
    }

    #[test]
    fn splits_sessions_from_the_console() {
        let console = "\
[ 1.0] host line
guest| Linux version 6.1.176 (i386)
guest| colinux-guest: init started
colinux| colinux: guest powered off
colinux-run: daemon exited with status 0
guest| second
colinux-run: daemon exited with status 2
guest| unfinished
";
        let s = sessions(console);
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[0].guest,
            [
                "Linux version 6.1.176 (i386)",
                "colinux-guest: init started"
            ]
        );
        assert_eq!(s[0].daemon_stderr, ["colinux: guest powered off"]);
        assert_eq!(s[0].status, Some(0));
        assert_eq!(s[1].status, Some(2));
        assert_eq!(s[2].status, None);
        assert_eq!(session_status(console), Some(0));
    }
}
