//! conet in the test host: the Debian root file system of `cargo xtask
//! rootfs` boots from cobd0 with two network interfaces, Linux's own
//! virtio-net driver over the cooperative virtio transport and the
//! daemon's virtio-net back ends:
//!
//! - eth0 on the user-mode NAT (passt, running in the test host beside the
//!   daemon): the guest gets its address by DHCP (systemd-networkd),
//!   resolves a made-up name through the DNS server on the test host's
//!   loopback (dnsmasq; passt forwards the guest's queries to the host's
//!   resolver), fetches a file by that name over HTTP from a server on the
//!   test host's loopback (passt maps the gateway's address to it), and a
//!   client on the test host reaches a server in the guest through a
//!   `tcp:` forward;
//! - eth1 on a persistent TAP whose host side has an address: the guest
//!   pings it and moves a large file each way, checked by SHA-256 on both
//!   sides;
//! - both interfaces at once: while the guest floods the TAP (a flood ping
//!   and a TCP blast to a discard listener), a file comes over the NAT and
//!   the guest's console still answers;
//! - X through the host: real X clients in the guest (`xsetroot`,
//!   `xrandr` of Debian's x11-xserver-utils) on an X server of the test
//!   host (Xvfb) over the NAT: the colour `xsetroot` paints is in Xvfb's
//!   frame buffer, xrandr shows the server's screen;
//! - passt killed while the guest runs: the daemon reports it (its log)
//!   and the guest's eth0 loses its carrier (the link status);
//! - bad `ethN=` values are refused before a guest starts (malformed, a
//!   TAP that does not exist, a device that is not a TAP, a TAP another
//!   guest has attached, a host port in use);
//! - a daemon killed with SIGKILL in the middle of two transfers (one over
//!   the NAT, one over a TAP it created; an initramfs guest, which boots
//!   quickly) leaves no passt process and no TAP it created behind, and
//!   the user's persistent TAP stays.
//!
//! The test host has no network card: a `dummy0` interface with an
//! address and a default route stands for the host's network (passt takes
//! its addresses from the interface of the default route).

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use colinux_devices::net::derived_mac;
use colinux_testrig::diskimage;
use colinux_testrig::guest_initrd::INIT_MARKER;
use colinux_testrig::session::{self, Root, Session, GUEST_NAME};
use colinux_tests::guest::{
    context, parts_with_programs, root_image, run_one, scenario_with, serial, step_text,
};

/// MiB moved each way over the TAP: 16 in CI, `COLINUX_CONET_MIB=100`
/// for the issue's figure.
fn transfer_mib() -> u32 {
    std::env::var("COLINUX_CONET_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}

/// The guest's and the host's side of the TAP.
const TAP: &str = "cotap0";
const TAP_HOST: &str = "192.168.77.1";
const TAP_GUEST: &str = "192.168.77.2";
/// The forward: host port → the guest's server.
const FWD_HOST: u16 = 18080;
const FWD_GUEST: u16 = 8080;
/// The made-up name the test host's DNS server knows: the gateway's
/// address (the host, through passt).
const NAME: &str = "files.conet.test";
/// The colour the guest's `xsetroot` paints the host's X screen with.
const X_COLOUR: &str = "#123456";
/// Seconds the guest floods the TAP.
const FLOOD_SECS: u32 = 25;

fn steps(mib: u32) -> Vec<String> {
    vec![
        // 1: systemd up; the interfaces, their MACs; eth0's address by
        // DHCP (networkd), waited for.
        "systemctl is-system-running --wait >/dev/null; ip -o link | grep -o 'eth[0-9]*' | sort -u | tr '\\n' ' '; echo; cat /sys/class/net/eth0/address; for i in $(seq 120); do ip -4 -o addr show eth0 | grep -q 'inet ' && break; sleep 1; done; ip -4 -o addr show eth0 | grep -o 'inet [0-9./]*'; ip route | grep default".to_string(),
        // 2: DNS through passt to the test host's resolver (the name is
        // made up: only the test host's dnsmasq knows it), then HTTP by
        // that name from the test host's loopback through the NAT.
        format!("resolvectl dns eth0 2>&1 | tail -1; getent hosts {NAME} | sed 's/^/resolved-/'; /usr/lib/apt/apt-helper download-file http://{NAME}:8000/hello.txt /tmp/hello.txt >/tmp/dl.log 2>&1; echo dl-status-$?; cat /tmp/hello.txt; tail -2 /tmp/dl.log"),
        // 3: a server in the guest; the host connects through the forward
        // once it sees guest-server-up (printed once the server listens:
        // perl starts slowly in the emulated guest), and the server ends
        // after one client (or after 120 s without one).
        format!("perl -MIO::Socket::INET -e '$| = 1; alarm 120; $s = IO::Socket::INET->new(LocalPort => {FWD_GUEST}, Listen => 5, ReuseAddr => 1) or die \"listen: $!\"; print \"guest-server-\", \"up\\n\"; $c = $s->accept; print $c \"hello-from-the-guest-\", 6*7, \"\\n\"; close $c; print \"guest-served-\", \"a-client\\n\"' & wait; echo server-status-$?"),
        // 4: eth1 on the TAP: an address, the host's side answers ping.
        format!("ip addr add {TAP_GUEST}/24 dev eth1 && ip link set eth1 up; ping -c 3 -W 5 {TAP_HOST} | grep -E 'packets transmitted|bytes from' | tail -2"),
        // 5: guest → host: random bytes, their checksum here, sent to the
        // host's listener (bash's /dev/tcp).
        format!("head -c {mib}M /dev/urandom > /tmp/up.bin && sha256sum /tmp/up.bin | cut -d' ' -f1 | sed 's/^/up-sum-/'; cat /tmp/up.bin > /dev/tcp/{TAP_HOST}/9000; echo up-status-$?"),
        // 6: host → guest: the host's file over HTTP on the TAP.
        format!("/usr/lib/apt/apt-helper download-file http://{TAP_HOST}:8000/down.bin /tmp/down.bin >/tmp/dl2.log 2>&1; echo down-status-$?; sha256sum /tmp/down.bin | cut -d' ' -f1 | sed 's/^/down-sum-/'; rm -f /tmp/up.bin /tmp/down.bin"),
        // 7: the guest floods the TAP for FLOOD_SECS: a flood ping and a
        // TCP blast to the host's discard listener, in the background.
        format!("ping -f -q -w {FLOOD_SECS} {TAP_HOST} > /tmp/flood.txt 2>&1 & timeout {FLOOD_SECS} cat /dev/zero > /dev/tcp/{TAP_HOST}/9009 & sleep 3; echo flooding-$(pgrep -c -x ping)"),
        // 8: meanwhile, the console answers and a file comes over the NAT
        // (both interfaces at once).
        format!("echo console-answers-$((6*7)); echo still-flooding-$(pgrep -c -x ping); /usr/lib/apt/apt-helper download-file http://{NAME}:8000/hello.txt /tmp/hello2.txt >/tmp/dl3.log 2>&1; echo nat-status-$?; cat /tmp/hello2.txt"),
        // 9: the flood's end.
        "wait; grep -E 'packets transmitted' /tmp/flood.txt | sed 's/^/flood: /'".to_string(),
        // 10: X through the host, by the name, over the NAT: real X
        // clients of the guest (x11-xserver-utils) on the test host's X
        // server (Xvfb): xsetroot paints the root window, whose pixels the
        // host reads from Xvfb's frame buffer; xrandr reads the screen's
        // size from the server.
        format!("export DISPLAY={NAME}:0; xsetroot -solid '{X_COLOUR}' > /tmp/x.txt 2>&1; echo xsetroot-status-$?; xrandr >> /tmp/x.txt 2>&1; echo xrandr-status-$?; grep -E '^Screen 0|rror|annot' /tmp/x.txt | sed 's/^/x: /'"),
        // 11: the host kills passt once it sees the marker; eth0 loses its
        // carrier.
        "echo kill-passt-$((2*3)); for i in $(seq 120); do [ \"$(cat /sys/class/net/eth0/carrier 2>/dev/null)\" = 0 ] && break; sleep 1; done; echo eth0-carrier-$(cat /sys/class/net/eth0/carrier 2>/dev/null); ip -o link show eth0 | grep -o 'NO-CARRIER'".to_string(),
        // 12: (for the log) where the boot's time went.
        "systemd-analyze 2>&1 | head -1; systemd-analyze blame 2>&1 | head -6; journalctl -b -o short-monotonic --no-pager -u systemd-resolved -u systemd-networkd 2>&1 | head -12".to_string(),
    ]
}

/// What step `n` printed (see [`step_text`]).
fn step(sess: &Session, n: usize, ctx: &str) -> String {
    step_text(sess, n, ctx)
}

/// The value after `prefix` on the first line of `text` that has it.
fn after<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.find(prefix).map(|at| l[at + prefix.len()..].trim()))
}

/// The test host's side, before the guest boots: the stand-in network, the
/// TAP, the HTTP server, the bad values, the watchers that act while the
/// guest runs.
fn host_setup(mib: u32) -> String {
    let c = session::HOST_COLINUX;
    let v = session::HOST_VMLINUX;
    let wrapper = colinux_testrig::hostpasst::wrapper_setup();
    format!(
        r#"
ip link set lo up
export RUST_LOG=colinux_devices::net=debug,info
# passt through its wrapper (see colinux_testrig::hostpasst).
{wrapper}# DNS: the test host's resolver is dnsmasq on its loopback, which knows
# one made-up name; passt tells the guest the gateway is its DNS server
# and forwards its queries there.
echo "nameserver 127.0.0.1" > /etc/resolv.conf
/usr/sbin/dnsmasq --conf-file=/dev/null --no-resolv --no-hosts --listen-address=127.0.0.1 --bind-interfaces --user=root --group=root --address=/{NAME}/10.0.2.2 --log-queries --log-facility=/tmp/dnsmasq.log --pid-file=/tmp/dnsmasq.pid
ip link set dummy0 up
ip addr add 10.0.2.15/24 dev dummy0
ip route add default via 10.0.2.2 dev dummy0
tunctl -t {TAP} >/dev/null
ip addr add {TAP_HOST}/24 dev {TAP}
ip link set {TAP} up
mkdir -p /tmp/www
echo hello-from-the-host-$((6*7)) > /tmp/www/hello.txt
dd if=/dev/urandom of=/tmp/www/down.bin bs=1048576 count={mib} 2>/dev/null
echo "conet: down-sum-host-$(sha256sum /tmp/www/down.bin | cut -d' ' -f1)"
httpd -p 8000 -h /tmp/www
# The X server the guest's X client displays on, on TCP port 6000.
mkdir -p /var/lib/xkb /tmp/.X11-unix
# Its frame buffer is a file (XWD format: a header, then the pixels,
# 32 bits each, the bottom-right one last), which the host reads.
# -noreset: as a desktop's X server with its window manager connected,
# the screen keeps what a client painted after that client leaves (a
# server left by its last client would reset and repaint its root).
mkdir -p /tmp/xfb
/usr/bin/Xvfb :0 -listen tcp -ac -noreset -screen 0 1024x768x24 -fbdir /tmp/xfb > /tmp/xvfb.log 2>&1 &
# Bad values: each refused before a guest starts.
bad() {{
    n=$1; shift
    rc=0
    {c} run name=bad kernel={v} mem=64 "$@" > /tmp/bad.out 2>&1 || rc=$?
    echo "conet: bad-$n-rc=$rc $(grep -i error /tmp/bad.out | tail -1)"
}}
bad malformed eth0=slirp,tcp:99999:22
bad missing eth0=tuntap,nosuchtap
bad nottap eth0=tuntap,dummy0
bad port eth0=slirp,tcp:8000:80
pidof passt passt.avx2 >/dev/null && echo "conet: passt-left-after-bad"
# Guest → host over the TAP: one connection, its bytes to a file.
nc -l -p 9000 > /tmp/up.bin &
# The discard listener the guest's blast goes to (its byte count).
( nc -l -p 9009 | wc -c > /tmp/blast.count ) &
# While the guest runs (its server is up), its TAP is busy.
(
    n=0
    while ! grep -qF guest-server-up /tmp/guest.log 2>/dev/null; do
        n=$((n + 1)); [ $n -lt 3000 ] || exit 0; sleep 0.2
    done
    bad busy eth0=tuntap,{TAP}
) &
# passt killed while the guest runs, when the guest says so.
(
    n=0
    while ! grep -qF kill-passt-6 /tmp/guest.log 2>/dev/null; do
        n=$((n + 1)); [ $n -lt 6000 ] || exit 0; sleep 0.2
    done
    kill -9 $(pidof passt passt.avx2) && echo "conet: passt-killed"
) &
# The forward: once the guest's server is up, connect to it.
(
    n=0
    while ! grep -qF guest-server-up /tmp/guest.log 2>/dev/null; do
        n=$((n + 1)); [ $n -lt 3000 ] || exit 0; sleep 0.2
    done
    sleep 1
    echo "conet: fwd-$(nc -w 20 127.0.0.1 {FWD_HOST} </dev/null)"
) &
"#
    )
}

/// After the session: what the host received, and nothing left behind;
/// then a guest whose daemon is killed.
fn host_after() -> String {
    format!(
        r#"
# When things happened (the test host's uptime), for the log.
echo "conet: timeline: first console line $(head -1 /tmp/guest.log | cut -d' ' -f1), login $(guest_stamp_of '(automatic login)')"
for i in 1 2 3 4 5 6 7 8 9 10 11; do echo "conet: timeline: step $i done at $(guest_stamp_of "colinux-run: step-$i-done")"; done
echo "conet: up-sum-host-$(sha256sum /tmp/up.bin | cut -d' ' -f1)"
echo "conet: blast-bytes-$(cat /tmp/blast.count 2>/dev/null)"
echo "conet: dns-queries-$(grep -c 'query\[A\] {NAME}' /tmp/dnsmasq.log)"
sed 's/^/conet: xvfb: /' /tmp/xvfb.log | tail -5
# The bottom-right pixel of the X screen, its bytes in file order.
echo "conet: x-pixel-$(tail -c 4 /tmp/xfb/Xvfb_screen0 | od -An -tx1 | tr -d ' \n')"
pidof passt passt.avx2 >/dev/null && echo "conet: passt-left-after-poweroff" || echo "conet: no-passt-after-poweroff"
[ -e /sys/class/net/{TAP} ] && echo "conet: persistent-tap-stays"
# SIGKILL mid-transfer: an initramfs guest (quick to boot) with passt,
# the user's TAP and a TAP of its own streams zeros to the host over the
# NAT and over its TAP; the daemon is killed while both flow.
cat > /tmp/ksteps <<'KSTEPS_END'
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2 && ip link set eth2 up && ip addr add 192.168.78.2/24 dev eth2 && echo k-net-up
netio send 10.0.2.2 9002 100000 & netio send 192.168.78.1 9001 100000 & echo k-transfers-started
KSTEPS_END
nc -l -p 9001 > /tmp/sink-tap &
tpid=$!
nc -l -p 9002 > /tmp/sink-nat &
npid=$!
(
    n=0
    while [ ! -e /sys/class/net/colinux0 ]; do
        n=$((n + 1)); [ $n -lt 3000 ] || exit 0; sleep 0.1
    done
    ip addr add 192.168.78.1/24 dev colinux0
) &
(
    GUEST_INITRD={initrd}
    GUEST_INIT_MARKER='{marker}'
    GUEST_MEM=64
    GUEST_WAIT=600
    # (the feeder would stop the daemon itself after this long: the kill
    # below must come first)
    GUEST_END_WAIT=3000
    guest_boot /tmp/killed.log /tmp/ksteps 'sleep 600' eth0=slirp eth1=tuntap,{TAP} eth2=tuntap
) | sed 's/^/killed-/' &
kbg=$!
size() {{ s=$(stat -c %s "$1" 2>/dev/null) || s=0; echo "$s"; }}
uptime_s() {{ cut -d. -f1 /proc/uptime; }}
until=$(($(uptime_s) + 900))
while [ "$(size /tmp/sink-tap)" -lt 1048576 ] || [ "$(size /tmp/sink-nat)" -lt 1048576 ]; do
    [ "$(uptime_s)" -lt "$until" ] || break
    sleep 1
done
[ -e /sys/class/net/colinux0 ] && echo "conet: created-tap-while-running"
pidof passt passt.avx2 >/dev/null && echo "conet: passt-while-running"
echo "conet: killed-mid-transfer tap=$(size /tmp/sink-tap) nat=$(size /tmp/sink-nat)"
kpid=$(pidof colinux) && kill -9 $kpid || echo "conet: no-daemon-to-kill"
# (set -e: the killed daemon's status 137 must not end the script)
wait $kbg 2>/dev/null || true
n=0
while pidof passt passt.avx2 >/dev/null || [ -e /sys/class/net/colinux0 ]; do
    n=$((n + 1)); [ $n -lt 100 ] || break; sleep 0.1
done
pidof passt passt.avx2 >/dev/null && echo "conet: passt-left-after-kill" || echo "conet: no-passt-after-kill"
[ -e /sys/class/net/colinux0 ] && echo "conet: created-tap-left-after-kill" || echo "conet: no-created-tap-after-kill"
[ -e /sys/class/net/{TAP} ] && echo "conet: persistent-tap-stays-after-kill"
kill $tpid $npid 2>/dev/null || true
rmmod colinux
echo conet-done
"#,
        initrd = session::HOST_INITRD,
        marker = INIT_MARKER,
    )
}

#[test]
#[ignore = "builds the Debian root image (cached) and boots it in the test host; run by `cargo xtask test`"]
fn debian_guest_networks_over_passt_and_a_tap() {
    let _serial = serial();
    let dir = diskimage::scratch_dir("conet").unwrap();
    let root = root_image(&dir);
    let mib = transfer_mib();
    let steps = steps(mib);
    let step_refs: Vec<&str> = steps.iter().map(String::as_str).collect();
    let script = session::session_script_with(
        Root::Disk,
        256,
        &step_refs,
        "poweroff",
        &host_after(),
        &format!("eth0=slirp,tcp:{FWD_HOST}:{FWD_GUEST} eth1=tuntap,{TAP}"),
    )
    .replacen(
        "guest_boot ",
        &format!(
            "{}\nGUEST_STEP_WAIT=600\nGUEST_END_WAIT=300\nguest_boot ",
            host_setup(mib)
        ),
        1,
    );
    // The initramfs with the test programs: the killed guest streams with
    // netio.
    let s = scenario_with(
        parts_with_programs(),
        "conet",
        script,
        Duration::from_secs(3600),
    )
    .disk(&root)
    .with_passt()
    .unwrap()
    .with_dnsmasq()
    .unwrap()
    .with_xvfb()
    .unwrap();
    let (out, sess) = run_one(&s);
    let ctx = context(&out, &sess);
    let host = |what: &str| after(&out.console, &format!("conet: {what}"));
    let has = |what: &str| out.console.contains(&format!("conet: {what}"));

    // Bad values, before any guest.
    for (name, want) in [
        ("malformed", "is not a port"),
        ("missing", "there is no network interface nosuchtap"),
        ("nottap", "dummy0 is not a TAP device"),
        ("port", "host tcp port 8000 is already in use"),
        ("busy", "TAP cotap0 is busy"),
    ] {
        let line = host(&format!("bad-{name}-rc=")).unwrap_or_default();
        assert!(
            !line.starts_with('0') && line.contains(want),
            "{name}: {line:?} should be a failure saying {want:?}{ctx}"
        );
    }
    assert!(!has("passt-left-after-bad"), "{ctx}");

    // eth0: DHCP on the NAT, with the derived MAC.
    let s1 = step(&sess, 1, &ctx);
    assert!(
        s1.contains("eth0 eth1"),
        "two interfaces at once, eth0 on the NAT and eth1 on the TAP: {s1}{ctx}"
    );
    assert!(
        s1.contains(&derived_mac(GUEST_NAME, 0).to_string()),
        "eth0's MAC: {s1}{ctx}"
    );
    assert!(
        s1.contains("inet 10.0.2.15/24"),
        "eth0's address by DHCP from passt (the host's): {s1}{ctx}"
    );
    assert!(s1.contains("default via 10.0.2.2"), "the route: {s1}{ctx}");
    // DNS through passt to the host's resolver, then HTTP by that name
    // from the host's loopback.
    let s2 = step(&sess, 2, &ctx);
    assert!(
        s2.lines()
            .any(|l| l.trim().starts_with("resolved-10.0.2.2") && l.contains(NAME)),
        "{NAME} resolved by the test host's DNS server: {s2}{ctx}"
    );
    let queries: u32 = host("dns-queries-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_default();
    assert!(
        queries > 0,
        "dnsmasq on the host's loopback saw no query for {NAME}{ctx}"
    );
    assert!(
        s2.contains("dl-status-0") && s2.lines().any(|l| l.trim() == "hello-from-the-host-42"),
        "the HTTP fetch through the NAT: {s2}{ctx}"
    );
    // The forward.
    let s3 = step(&sess, 3, &ctx);
    assert!(s3.contains("guest-served-a-client"), "{s3}{ctx}");
    assert_eq!(
        host("fwd-"),
        Some("hello-from-the-guest-42"),
        "the host's client through tcp:{FWD_HOST}:{FWD_GUEST}{ctx}"
    );
    // eth1: the TAP.
    let s4 = step(&sess, 4, &ctx);
    assert!(
        s4.contains("3 packets transmitted, 3 received"),
        "ping over the TAP: {s4}{ctx}"
    );
    let s5 = step(&sess, 5, &ctx);
    let up_guest = after(&s5, "up-sum-").unwrap_or_default().to_string();
    assert!(s5.contains("up-status-0"), "{s5}{ctx}");
    assert_eq!(up_guest.len(), 64, "{s5}{ctx}");
    assert_eq!(
        host("up-sum-host-"),
        Some(up_guest.as_str()),
        "{mib} MiB guest → host over the TAP{ctx}"
    );
    let s6 = step(&sess, 6, &ctx);
    assert!(s6.contains("down-status-0"), "{s6}{ctx}");
    let down_host = host("down-sum-host-").unwrap_or_default();
    assert_eq!(down_host.len(), 64, "{ctx}");
    assert_eq!(
        after(&s6, "down-sum-"),
        Some(down_host),
        "{mib} MiB host → guest over the TAP{ctx}"
    );
    // Both interfaces at once: the guest floods the TAP while a file comes
    // over the NAT and its console answers.
    let s7 = step(&sess, 7, &ctx);
    assert!(s7.contains("flooding-1"), "the flood ping runs: {s7}{ctx}");
    let s8 = step(&sess, 8, &ctx);
    assert!(
        s8.contains("console-answers-42"),
        "the console during the flood: {s8}{ctx}"
    );
    assert!(
        s8.contains("nat-status-0") && s8.lines().any(|l| l.trim() == "hello-from-the-host-42"),
        "the NAT during the TAP's flood: {s8}{ctx}"
    );
    assert!(
        s8.contains("still-flooding-1"),
        "the flood was still on when the console answered and the NAT's transfer began: {s8}{ctx}"
    );
    let s9 = step(&sess, 9, &ctx);
    assert!(s9.contains("flood: "), "the flood's summary: {s9}{ctx}");
    let blast: u64 = host("blast-bytes-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_default();
    // (how much depends on the emulation's speed: under TCG, beside the
    // flood ping, about a MiB)
    assert!(
        blast >= 64 << 10,
        "the TCP blast reached the host: {blast} bytes{ctx}"
    );
    // X: clients in the guest on the test host's X server. xrandr reads
    // the screen from the server; xsetroot's colour is in the server's
    // frame buffer (a pixel of 32 bits, little-endian: blue, green, red,
    // unused).
    let s10 = step(&sess, 10, &ctx);
    assert!(
        s10.contains("xsetroot-status-0") && s10.contains("xrandr-status-0"),
        "X clients in the guest on the host's Xvfb: {s10}{ctx}"
    );
    assert!(
        s10.contains("x: Screen 0:") && s10.contains("current 1024 x 768"),
        "xrandr in the guest shows the host's X screen: {s10}{ctx}"
    );
    let pixel = host("x-pixel-").unwrap_or_default();
    let rgb = u32::from_str_radix(X_COLOUR.trim_start_matches('#'), 16).unwrap();
    let want: String = rgb.to_le_bytes()[..3]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        pixel.len() == 8 && pixel.starts_with(&want),
        "the host's X screen shows the guest's {X_COLOUR}: pixel {pixel:?}, want {want}..{ctx}"
    );
    // passt killed: reported by the daemon, and the guest's link is down.
    let s11 = step(&sess, 11, &ctx);
    assert!(has("passt-killed"), "{ctx}");
    assert!(
        s11.contains("eth0-carrier-0") && s11.contains("NO-CARRIER"),
        "eth0 lost its carrier when passt died: {s11}{ctx}"
    );
    assert!(
        sess.daemon_stderr
            .iter()
            .any(|l| l.contains("eth0: passt exited") && l.contains("network is down")),
        "the daemon reports passt's death{ctx}"
    );
    assert_eq!(
        sess.status,
        Some(0),
        "`poweroff` ends colinux run with 0{ctx}"
    );
    assert!(has("no-passt-after-poweroff"), "{ctx}");
    assert!(has("persistent-tap-stays"), "{ctx}");

    // SIGKILL mid-transfer.
    assert!(
        has("created-tap-while-running") && has("passt-while-running"),
        "the killed guest's devices were never there{ctx}"
    );
    let mid = host("killed-mid-transfer ").unwrap_or_default();
    let bytes = |what: &str| -> u64 {
        after(mid, &format!("{what}="))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    };
    assert!(
        bytes("tap") >= 1 << 20 && bytes("nat") >= 1 << 20,
        "the daemon was killed while both transfers flowed: {mid:?}{ctx}"
    );
    assert!(
        has("no-passt-after-kill"),
        "passt outlived the killed daemon{ctx}"
    );
    assert!(
        has("no-created-tap-after-kill"),
        "the TAP the daemon made outlived it{ctx}"
    );
    assert!(has("persistent-tap-stays-after-kill"), "{ctx}");
    assert!(
        out.passed && out.console.contains("conet-done"),
        "the test host run failed{ctx}"
    );
}
