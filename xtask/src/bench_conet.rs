//! `cargo xtask bench conet`: TCP throughput and round trips between the
//! Debian guest and the QEMU test host, over a TAP and over the user-mode
//! NAT (passt), against the same over the test host's loopback, all timed
//! by the test host's clock.

use anyhow::{Context, Result};

use crate::bench::write_section;
use crate::manifest::Manifest;

/// What `cargo xtask bench conet` does.
#[derive(Debug, Clone)]
pub struct ConetBenchOptions {
    /// MiB each throughput transfer moves.
    pub mib: u32,
    /// Runs of each transfer (the table shows the median).
    pub runs: u32,
    /// Round trips of each request/response run.
    pub round_trips: u32,
    /// Pings of each ping run.
    pub pings: u32,
    /// Guest RAM (MiB).
    pub mem: u64,
    /// Only render the table from this test-host console log of an
    /// earlier run (`target/test-host/bench-conet.log`).
    pub from_log: Option<std::path::PathBuf>,
}

impl Default for ConetBenchOptions {
    fn default() -> Self {
        ConetBenchOptions {
            mib: 32,
            runs: 3,
            round_trips: 200,
            pings: 20,
            mem: 256,
            from_log: None,
        }
    }
}

/// Console prefix of the script's reports.
const PREFIX: &str = "colinux-bench-conet| ";
/// Where the test host has `netio`.
const HOST_NETIO: &str = "/root/netio";
/// The TAP and its two sides.
const TAP: &str = "cotap0";
const TAP_HOST: &str = "192.168.77.1";
const TAP_GUEST: &str = "192.168.77.2";
/// Host ports the guest sends to (guest → host: over the TAP, over the
/// NAT, where passt maps the gateway's address to the host's loopback).
const G2H_TAP: u16 = 9200;
const G2H_NAT: u16 = 9201;
/// Guest ports: the receiver and the echo server; the NAT reaches them
/// through forwards from these host ports.
const GUEST_RECV: u16 = 5001;
const GUEST_ECHO: u16 = 5002;
const FWD_RECV: u16 = 15001;
const FWD_ECHO: u16 = 15002;

/// The test-host script: the loopback figures, then the Debian guest
/// (`/dev/vda`, with `netio` on `/dev/vdb` as its cobd1) on the NAT (eth0)
/// and the TAP (eth1); the test host drives each measurement when the
/// guest's step says it is ready.
pub fn conet_bench_script(o: &ConetBenchOptions) -> String {
    let (mib, runs, rr, pings) = (o.mib, o.runs, o.round_trips, o.pings);
    let n = HOST_NETIO;
    let two = 2 * runs;
    // Guest steps; `''` keeps the typed line's echo from matching.
    let steps = [
        format!(
            "mount -o ro /dev/cobd1 /mnt && ip addr add {TAP_GUEST}/24 dev eth1 && ip link set eth1 up; \
             for i in $(seq 120); do ip -4 -o addr show eth0 | grep -q 'inet ' && break; sleep 1; done; \
             ip -4 -o addr show | grep -o 'eth[0-9] *inet [0-9./]*'; ping -c 2 -W 5 {TAP_HOST} | tail -1"
        ),
        // Guest → host, over the TAP, then over the NAT.
        format!("for i in $(seq {runs}); do /mnt/netio send {TAP_HOST} {G2H_TAP} {mib}; sleep 1; done"),
        format!("GW=$(ip route | awk '/^default/ {{print $3; exit}}'); for i in $(seq {runs}); do /mnt/netio send $GW {G2H_NAT} {mib}; sleep 1; done"),
        // Host → guest: the guest's receiver takes the TAP's and the NAT's
        // connections, alternately.
        format!("/mnt/netio recv {GUEST_RECV} {two} > /tmp/recv.txt & sleep 2; echo go-''h2g; wait; tail -1 /tmp/recv.txt"),
        // Round trips from the host to the guest's echo server; the host's
        // pings.
        format!("/mnt/netio echo {GUEST_ECHO} {two} > /tmp/echo.txt & sleep 2; echo go-''rr; wait; tail -1 /tmp/echo.txt"),
        // The guest's pings of the gateway over the NAT (its own clock).
        format!("GW=$(ip route | awk '/^default/ {{print $3; exit}}'); ping -c {pings} -i 0.2 $GW | grep -E 'transmitted|rtt' | sed 's/^/natping: /'"),
        "umount /mnt".to_string(),
    ];
    let script = r#"set -e
@HELPERS@
GUEST_MEM=@MEM@
GUEST_INITRD=
GUEST_INIT_MARKER='@AUTOLOGIN@'
GUEST_WAIT=900
GUEST_STEP_WAIT=900
GUEST_END_WAIT=300
P='@PREFIX@'
N=@NETIO@
ip link set lo up
@WRAPPER@
ip link set dummy0 up
ip addr add 10.0.2.15/24 dev dummy0
ip route add default via 10.0.2.2 dev dummy0
tunctl -t @TAP@ >/dev/null
ip addr add @TAP_HOST@/24 dev @TAP@
ip link set @TAP@ up
echo "== bench conet: the test host's loopback"
for i in $(seq @RUNS@); do
    $N recv 9100 > /tmp/loop-recv.txt &
    sleep 0.5
    echo "${P}loop-h2g $($N send 127.0.0.1 9100 @MIB@)"
    wait
    echo "${P}loop-g2h $(cat /tmp/loop-recv.txt)"
    $N echo 9101 > /dev/null &
    sleep 0.5
    echo "${P}loop-rr $($N rr 127.0.0.1 9101 @RR@)"
    wait
done
echo "${P}ping-loop $(ping -c @PINGS@ 127.0.0.1 | tail -1)"
echo "== bench conet: loading the host driver"
insmod @MODULE@
cat > /tmp/bench-steps <<'COLINUX_STEPS_END'
@STEPS@COLINUX_STEPS_END
# Guest → host: the host's receivers (one connection per run).
$N recv @G2H_TAP@ @RUNS@ | sed "s/^/${P}tap-g2h /" &
$N recv @G2H_NAT@ @RUNS@ | sed "s/^/${P}nat-g2h /" &
# Host → guest and round trips, when the guest says go.
(
    wait_for() {
        n=0
        while ! grep -qF "$1" /tmp/guest.log 2>/dev/null; do
            n=$((n + 1)); [ $n -lt 9000 ] || exit 0; sleep 0.2
        done
    }
    wait_for go-h2g
    for i in $(seq @RUNS@); do
        echo "${P}tap-h2g $($N send @TAP_GUEST@ @GUEST_RECV@ @MIB@)"
        sleep 1
        echo "${P}nat-h2g $($N send 127.0.0.1 @FWD_RECV@ @MIB@)"
        sleep 1
    done
    wait_for go-rr
    for i in $(seq @RUNS@); do
        echo "${P}tap-rr $($N rr @TAP_GUEST@ @GUEST_ECHO@ @RR@)"
        sleep 1
        echo "${P}nat-rr $($N rr 127.0.0.1 @FWD_ECHO@ @RR@)"
        sleep 1
    done
    echo "${P}ping-tap $(ping -c @PINGS@ @TAP_GUEST@ | tail -1)"
) &
echo "== bench conet: booting the Debian guest"
guest_boot /tmp/guest.log /tmp/bench-steps poweroff @ROOT@ cobd1=/dev/vdb,ro eth0=slirp,tcp:@FWD_RECV@:@GUEST_RECV@,tcp:@FWD_ECHO@:@GUEST_ECHO@ eth1=tuntap,@TAP@
grep -F 'natping: ' /tmp/guest.log | grep -v sed | sed "s/^[^ ]* /${P}/" || true
[ "$GUEST_FEED_RC" = 0 ] && [ "$GUEST_RC" = 0 ] || { echo "== bench conet: the guest session failed"; exit 1; }
rmmod colinux
"#;
    let mut steps_text = String::new();
    for s in &steps {
        steps_text.push_str(s);
        steps_text.push('\n');
    }
    script
        .replace("@HELPERS@", &colinux_testrig::session::guest_helpers())
        .replace("@MEM@", &o.mem.to_string())
        .replace("@AUTOLOGIN@", colinux_testrig::session::AUTOLOGIN_MARKER)
        .replace("@PREFIX@", PREFIX)
        .replace("@NETIO@", n)
        .replace("@WRAPPER@", &colinux_testrig::hostpasst::wrapper_setup())
        .replace("@TAP_HOST@", TAP_HOST)
        .replace("@TAP_GUEST@", TAP_GUEST)
        .replace("@TAP@", TAP)
        .replace("@RUNS@", &runs.to_string())
        .replace("@MIB@", &mib.to_string())
        .replace("@RR@", &rr.to_string())
        .replace("@PINGS@", &pings.to_string())
        .replace("@MODULE@", colinux_testrig::session::HOST_MODULE)
        .replace("@STEPS@", &steps_text)
        .replace("@G2H_TAP@", &G2H_TAP.to_string())
        .replace("@G2H_NAT@", &G2H_NAT.to_string())
        .replace("@GUEST_RECV@", &GUEST_RECV.to_string())
        .replace("@GUEST_ECHO@", &GUEST_ECHO.to_string())
        .replace("@FWD_RECV@", &FWD_RECV.to_string())
        .replace("@FWD_ECHO@", &FWD_ECHO.to_string())
        .replace("@ROOT@", colinux_testrig::session::ROOT_DISK_SETTINGS)
}

/// One `netio` line.
#[derive(Debug, Clone, PartialEq)]
pub struct NetioRun {
    pub mode: String,
    pub bytes: u64,
    pub count: u64,
    pub secs: f64,
    pub err: u64,
}

impl NetioRun {
    /// `netio mode=… bytes=… n=… s=… err=…` anywhere in `line`.
    pub fn parse(line: &str) -> Option<NetioRun> {
        let at = line.find("netio mode=")?;
        let mut kv = std::collections::HashMap::new();
        for w in line[at + "netio ".len()..].split_whitespace() {
            if let Some((k, v)) = w.split_once('=') {
                kv.insert(k, v);
            }
        }
        let num = |k: &str| kv.get(k)?.parse::<u64>().ok();
        Some(NetioRun {
            mode: kv.get("mode")?.to_string(),
            bytes: num("bytes")?,
            count: num("n")?,
            secs: kv.get("s")?.parse().ok()?,
            err: num("err")?,
        })
    }

    /// MB/s (10^6 bytes).
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.secs.max(1e-9) / 1e6
    }

    /// Microseconds per round trip.
    pub fn us_per_round_trip(&self) -> f64 {
        self.secs * 1e6 / (self.count.max(1) as f64)
    }
}

/// Everything `bench conet` measured: for each label (`loop-g2h`,
/// `tap-h2g`, …) its runs in order; the pings' average (ms) per label.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConetBench {
    pub runs: std::collections::BTreeMap<String, Vec<NetioRun>>,
    pub pings: std::collections::BTreeMap<String, f64>,
    /// Ping summaries (`20 packets transmitted, 0 received, …`) where
    /// there was no average.
    pub ping_summaries: std::collections::BTreeMap<String, String>,
}

/// The average of a ping summary (`round-trip min/avg/max = 0.1/0.2/0.3
/// ms` of busybox, `rtt min/avg/max/mdev = 0.1/0.2/0.3/0.0 ms` of
/// iputils).
fn ping_avg(text: &str) -> Option<f64> {
    let (_, nums) = text.split_once(" = ")?;
    nums.split('/').nth(1)?.trim().parse().ok()
}

/// Read the `bench conet` script's console.
pub fn parse_conet_bench(console: &str) -> ConetBench {
    let mut out = ConetBench::default();
    for line in console.lines() {
        let Some(at) = line.find(PREFIX) else {
            continue;
        };
        let rest = &line[at + PREFIX.len()..];
        let Some((label, data)) = rest.split_once(' ') else {
            continue;
        };
        if let Some(kind) = label.strip_prefix("ping-") {
            if let Some(avg) = ping_avg(data) {
                out.pings.insert(kind.to_string(), avg);
            }
        } else if label == "natping:" {
            if let Some(avg) = ping_avg(data) {
                out.pings.insert("nat".to_string(), avg);
            } else if data.contains("transmitted") {
                out.ping_summaries
                    .insert("nat".to_string(), data.trim().to_string());
            }
        } else if let Some(r) = NetioRun::parse(data) {
            out.runs.entry(label.to_string()).or_default().push(r);
        }
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// `cargo xtask bench conet`.
pub fn bench_conet(
    manifest: &Manifest,
    build: &crate::build::BuildOptions,
    o: &ConetBenchOptions,
) -> Result<String> {
    let (console, log) = match &o.from_log {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
            path.clone(),
        ),
        None => run_bench(manifest, build, o)?,
    };
    render(&console, &log, o)
}

/// Run the benchmark in the test host: its console and log's path.
fn run_bench(
    manifest: &Manifest,
    build: &crate::build::BuildOptions,
    o: &ConetBenchOptions,
) -> Result<(String, std::path::PathBuf)> {
    use crate::bench::{run_in_test_host, scratch_root_image, tools_image};
    use colinux_testrig::diskimage;
    let parts = crate::run::GuestParts::build(
        manifest,
        build,
        &colinux_testrig::guest_initrd::InitrdOptions::default(),
    )?;
    let netio = colinux_testrig::programs::build_guest_program(colinux_testrig::programs::NETIO)?;
    let dir = diskimage::scratch_dir("bench-conet")?;
    let root = scratch_root_image(&dir)?;
    let tools = tools_image(&dir, &[("netio", &netio)])?;
    let s = parts
        .scenario("bench-conet", conet_bench_script(o))
        .file(netio, HOST_NETIO, 0o755)
        .disk(&root)
        .disk(&tools)
        .with_passt()?
        .timeout(std::time::Duration::from_secs(3600));
    tracing::info!(
        "bench conet: {} MiB × {} each way over the loopback, a TAP and the NAT (QEMU TCG; takes minutes)",
        o.mib,
        o.runs
    );
    run_in_test_host(&s)
}

/// The section of docs/BENCHMARKS.md from the script's console.
fn render(console: &str, log: &std::path::Path, o: &ConetBenchOptions) -> Result<String> {
    let r = parse_conet_bench(console);
    let labels = [
        "loop-g2h", "loop-h2g", "loop-rr", "tap-g2h", "tap-h2g", "tap-rr", "nat-g2h", "nat-h2g",
        "nat-rr",
    ];
    for l in labels {
        let got = r.runs.get(l).map(Vec::len).unwrap_or(0);
        if got != o.runs as usize {
            anyhow::bail!(
                "{got} measurements of {l}, {} expected (log: {})",
                o.runs,
                log.display()
            );
        }
        if let Some(bad) = r.runs[l].iter().find(|x| x.err != 0) {
            anyhow::bail!(
                "{l}: netio {} failed with errno {} (log: {})",
                bad.mode,
                bad.err,
                log.display()
            );
        }
    }
    // A transfer cut short (the connection reset) still has a rate; the
    // table says so.
    let want_bytes = u64::from(o.mib) << 20;
    let short = |l: &str| -> Vec<String> {
        r.runs[l]
            .iter()
            .filter(|x| x.bytes != want_bytes)
            .map(|x| {
                format!(
                    "{:.1} MiB in {:.1} s",
                    x.bytes as f64 / f64::from(1u32 << 20),
                    x.secs
                )
            })
            .collect()
    };
    let rate = |l: &str| median(r.runs[l].iter().map(NetioRun::mb_per_s).collect());
    let rtt = |l: &str| median(r.runs[l].iter().map(NetioRun::us_per_round_trip).collect());
    let runs_of = |l: &str, f: fn(&NetioRun) -> f64, digits: usize| {
        r.runs[l]
            .iter()
            .map(|x| format!("{:.*}", digits, f(x)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut rows = String::new();
    for (path, name) in [
        ("tap", "TAP (eth1)"),
        ("nat", "user-mode NAT, passt (eth0)"),
    ] {
        for (dir, what) in [("g2h", "guest → host"), ("h2g", "host → guest")] {
            let l = format!("{path}-{dir}");
            let base = format!("loop-{dir}");
            let ratio = rate(&l) / rate(&base);
            let target = if path == "tap" {
                " (target ≥ 0.5)"
            } else {
                ""
            };
            tracing::info!(
                "{l}: {:.1} MB/s, loopback {:.1} MB/s, ratio {ratio:.2}",
                rate(&l),
                rate(&base)
            );
            let cut = short(&l);
            let note = if cut.is_empty() {
                String::new()
            } else {
                format!(
                    " — cut short (connection reset): {}; the rate is of what moved",
                    cut.join(", ")
                )
            };
            rows.push_str(&format!(
                "| {what} over the {name} | {:.1} ({}){note} | {:.1} ({}) | **{ratio:.2}**{target} |\n",
                rate(&l),
                runs_of(&l, NetioRun::mb_per_s, 1),
                rate(&base),
                runs_of(&base, NetioRun::mb_per_s, 1),
            ));
        }
    }
    let mut lat = String::new();
    for (path, name) in [("tap", "TAP"), ("nat", "user-mode NAT (a forwarded port)")] {
        let l = format!("{path}-rr");
        lat.push_str(&format!(
            "| TCP round trip, 1 byte each way, host → guest over the {name} | {:.0} µs ({}) | {:.0} µs ({}) | {:.1} |\n",
            rtt(&l),
            runs_of(&l, NetioRun::us_per_round_trip, 0),
            rtt("loop-rr"),
            runs_of("loop-rr", NetioRun::us_per_round_trip, 0),
            rtt(&l) / rtt("loop-rr"),
        ));
    }
    let ping = |k: &str| r.pings.get(k).copied();
    let fmt_ms = |v: Option<f64>| v.map(|v| format!("{v:.3} ms")).unwrap_or("not seen".into());
    let ping_ratio = match (ping("tap"), ping("loop")) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.1}", a / b),
        _ => "–".into(),
    };
    lat.push_str(&format!(
        "| ping, host → guest over the TAP (busybox `ping -c {p}`, average) | {} | {} | {ping_ratio} |\n\
         | ping, guest → gateway over the user-mode NAT (iputils `ping -c {p} -i 0.2` in the guest, average; the guest's clock) | {} | {} | – |\n",
        fmt_ms(ping("tap")),
        fmt_ms(ping("loop")),
        match (ping("nat"), r.ping_summaries.get("nat")) {
            (None, Some(summary)) => format!("no average: {summary}"),
            (v, _) => fmt_ms(v),
        },
        fmt_ms(ping("loop")),
        p = o.pings,
    ));
    let release = colinux_testrig::hostkernel::ensure()?.release;
    let text = format!(
        "## bench conet\n\n\
         `cargo xtask bench conet` — measured **in the QEMU test host** (Debian {release}, TCG, 2 vCPUs). \
         TCG emulates every instruction of the test host, of the daemon, of passt and of the guest, so the absolute \
         figures say nothing about hardware; only the ratios to the test host's loopback, measured in the same run, \
         mean something. The build machine is shared (other builds and test hosts ran beside this one): single \
         runs vary by tens of percent, hence the medians of {runs}.\n\n\
         **Set-up.** The Debian guest of `cargo xtask rootfs` boots with `colinux run … mem={mem} {root} \
         cobd1=/dev/vdb,ro eth0=slirp,tcp:{FWD_RECV}:{GUEST_RECV},tcp:{FWD_ECHO}:{GUEST_ECHO} eth1=tuntap,{TAP}`: \
         eth0 on passt (its address by DHCP; the gateway's address is the test host's loopback), eth1 on a \
         persistent TAP whose host side is {TAP_HOST}/24 (the guest's {TAP_GUEST}). The loopback figures are the \
         same transfers between two processes of the test host over 127.0.0.1.\n\n\
         **Tool.** `tests/guest-bench/netio.c`, one freestanding static i386 binary run natively in the test host \
         (IA32 emulation) and in the guest (from the read-only cobd1): `send` connects, writes {mib} MiB in 128 KiB \
         writes, shuts its side and waits for the receiver to close; `recv` reads to the end and closes; `rr` writes \
         one byte and reads it back from `echo` ({rr} times, `TCP_NODELAY`). Every figure is timed on the test \
         host's `CLOCK_MONOTONIC` (the guest's clock is not trusted under TCG): guest → host by the host's \
         receiver (accept to end of stream), host → guest by the host's sender (connect to the receiver's close), \
         round trips by the host's `rr`. Guest → host over the NAT goes to the gateway's address (passt connects to \
         the host's loopback); host → guest over the NAT goes to the forwarded port on 127.0.0.1. iperf3 is not in \
         the Debian image, and adding it would rebuild the root file system for every test.\n\n\
         | transfer ({mib} MiB) | MB/s, median (runs) | loopback MB/s, median (runs) | ratio to loopback |\n\
         |---|---|---|---|\n\
         {rows}\n\
         | latency | median (runs) | loopback | ratio |\n\
         |---|---|---|---|\n\
         {lat}\n\
         **Reading.** The ratios above are this run's; the target is 0.5 over the TAP, both ways. Each \
         batch of frames costs the guest a \
         virtio kick or an interrupt, i.e. world switches, which TCG makes very expensive (`bench passage`: \
         a passage round trip costs about 190 `getppid()` calls there), while the loopback never leaves the \
         test host's kernel; the receive path also takes one frame per `read()` of the TAP (no receive \
         offloads, no mergeable buffers), which is why host → guest trails guest → host. The user-mode NAT \
         adds passt's own copies and its socket round trips. This table says how the paths compare with each other under \
         emulation; the ratio on hardware, where a world switch does not flush a software TLB and costs \
         far less next to the rest, is still to be measured.\n",
        runs = o.runs,
        mem = o.mem,
        mib = o.mib,
        rr = o.round_trips,
        root = colinux_testrig::session::ROOT_DISK_SETTINGS,
    );
    write_section("bench conet", &text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_console() {
        let console = "\
[ 1.0] colinux-bench-conet| loop-h2g netio mode=send bytes=33554432 n=32 s=0.500000000 err=0
colinux-bench-conet| loop-g2h netio mode=recv bytes=33554432 n=0 s=0.250000000 err=0
colinux-bench-conet| tap-rr netio mode=rr bytes=200 n=200 s=0.100000000 err=0
colinux-bench-conet| ping-loop round-trip min/avg/max = 0.050/0.080/0.200 ms
colinux-bench-conet| natping: rtt min/avg/max/mdev = 1.000/2.500/4.000/0.500 ms
colinux-bench-conet| junk
noise netio mode=send bytes=1 n=1 s=1 err=0
";
        let r = parse_conet_bench(console);
        assert_eq!(r.runs.len(), 3);
        let h2g = &r.runs["loop-h2g"][0];
        assert_eq!(h2g.bytes, 32 << 20);
        assert!((h2g.mb_per_s() - 67.108864).abs() < 1e-6);
        assert!((r.runs["loop-g2h"][0].secs - 0.25).abs() < 1e-9);
        assert!((r.runs["tap-rr"][0].us_per_round_trip() - 500.0).abs() < 1e-6);
        assert_eq!(r.pings.get("loop"), Some(&0.080));
        assert_eq!(r.pings.get("nat"), Some(&2.5));
    }

    #[test]
    fn the_script_names_every_port_and_has_no_placeholder_left() {
        let s = conet_bench_script(&ConetBenchOptions::default());
        let placeholder = s.split('@').skip(1).any(|w| {
            w.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && w.chars()
                    .take_while(|c| *c != '@')
                    .all(|c| c.is_ascii_uppercase() || c == '_')
        });
        assert!(!placeholder, "{s}");
        for p in [G2H_TAP, G2H_NAT, GUEST_RECV, GUEST_ECHO, FWD_RECV, FWD_ECHO] {
            assert!(s.contains(&p.to_string()), "port {p}");
        }
        assert!(s.contains("eth0=slirp,tcp:15001:5001,tcp:15002:5002 eth1=tuntap,cotap0"));
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
