//! The driver's interfaces for device back ends (issue 13) in a real stock
//! host kernel (Debian's, in the QEMU test host), with the 32-bit test
//! payload's `payload_virtio` entry and `colinux-probe virtio`
//! (`tests/probe/src/virtio.rs`):
//!
//! - mmap of guest RAM: the loaded payload seen through it, refused before
//!   CREATE / for MAP_PRIVATE / outside RAM, get_user_pages on it
//!   (vmsplice, process_vm_readv) and an O_DIRECT read from a block device
//!   (a virtio disk of the test host: QEMU writes into the mapped pages)
//!   into it; its pages outliving DESTROY, SIGBUS for pages never touched;
//! - IOEVENTFD: 1000 queue notifications served by the driver while one RUN
//!   never returns (another thread counts them on the eventfd);
//!   notifications of unbound queues and other requests reach the daemon;
//! - IRQFD: written by another thread while the guest spins with interrupts
//!   on, the guest sees its line (and ends saying so); poll() on the file;
//! - hostile input: non-eventfds, descriptors not open, indices and lines
//!   out of range, reserved fields, unknown flags, double binds, the
//!   binding limit; eventfds closed while bound; a daemon killed while it
//!   holds bindings, a mapping and a guest spinning in RUN, with a thread
//!   writing an IRQFD in a loop. The module unloads after each; the rig
//!   fails any run whose kernel log shows a BUG, WARNING, Oops or lockup.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use colinux_testrig::testhost::Scenario;
use colinux_tests::{run_passing, SHELL_HELPERS};

struct Parts {
    module: PathBuf,
    probe: PathBuf,
    payload: PathBuf,
}

fn parts() -> &'static Parts {
    static PARTS: OnceLock<Parts> = OnceLock::new();
    PARTS.get_or_init(|| Parts {
        module: xtask::driver_build::build_driver(None).unwrap(),
        probe: colinux_testrig::userland::build_static("colinux-probe", "colinux-probe").unwrap(),
        payload: colinux_testrig::payload::build_payload().unwrap(),
    })
}

fn scenario(name: &str, script: &str) -> Scenario {
    let p = parts();
    let file = |s: &Path, d: &str, m| (s.to_path_buf(), d.to_string(), m);
    let mut sc = Scenario::new(
        name,
        format!("set -e\n{SHELL_HELPERS}\ninsmod /root/colinux.ko\n{script}\nrmmod colinux\n"),
    )
    .timeout(Duration::from_secs(420));
    for (s, d, m) in [
        file(&p.module, "/root/colinux.ko", 0o644),
        file(&p.probe, "/root/colinux-probe", 0o755),
        file(&p.payload, "/root/payload.elf", 0o644),
    ] {
        sc = sc.file(s, d, m);
    }
    sc
}

#[test]
#[ignore = "boots the test host with the driver and the payload; run by `cargo xtask test`"]
fn back_end_interfaces_mmap_ioeventfd_irqfd_poll_on_each_cpu() {
    // The disk the O_DIRECT read comes from: 1 MiB of varied bytes.
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("odirect.img");
    let mut f = std::fs::File::create(&image).unwrap();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..(1 << 20) / 8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        f.write_all(&x.to_le_bytes()).unwrap();
    }
    drop(f);
    let out = run_passing(&scenario("driver-virtio", SCRIPT).disk(&image));
    assert!(out.console.contains("virtio-ok"), "{}", out.log.display());
    assert!(out.kernel_log_clean);
}

const SCRIPT: &str = r#"
[ -b /dev/vda ] || { echo "no virtio disk in the test host"; exit 1; }
before=$(free_kb)
# The guest on one CPU, the thread that raises its line on the other. The
# guest must see its line every time. Whether the line finds the guest in
# the guest world (its CPU gets an IPI: the driver logs it) or between two
# switches (RUN takes it before the next one) is a race the guest cannot
# tell; the IPI must be seen within 5 runs on each CPU.
kicks() { dmesg | grep -c "the guest.s CPU was interrupted [1-9][0-9]* times" || true; }
for cpu in 0 1; do
    seen=0
    for attempt in 1 2 3 4 5; do
        k=$(kicks)
        /root/colinux-probe virtio /root/payload.elf /dev/vda $cpu > /tmp/out 2>&1 || { cat /tmp/out; exit 1; }
        cat /tmp/out
        grep -q "^ok: the guest saw its line" /tmp/out
        grep -q "^ok: O_DIRECT read" /tmp/out
        if [ "$(kicks)" -gt "$k" ]; then seen=1; echo "guest on cpu $cpu: IPI in run $attempt"; break; fi
        echo "guest on cpu $cpu: run $attempt took its line between two switches"
    done
    [ $seen = 1 ] || { echo "no IPI in 5 runs with the guest on cpu $cpu"; exit 1; }
done
# Everything on one CPU: the line is raised while the guest is out of the
# guest world, and taken when RUN next enters it.
taskset -c 1 /root/colinux-probe virtio /root/payload.elf > /tmp/out 2>&1 || { cat /tmp/out; exit 1; }
cat /tmp/out
grep -q "^ok: the guest saw its line" /tmp/out
after=$(free_kb)
diff=$((before - after)); [ $diff -ge 0 ] || diff=$((-diff))
echo "MemFree kB: before=$before after=$after (difference $diff)"
[ $diff -le $((4 * 1024)) ] || { echo "memory was not returned"; exit 1; }
dmesg | grep -i 'colinux' | grep -i 'refused' | tail -n 40
# Random ioctls, IOEVENTFD and IRQFD among them.
/root/colinux-probe fuzz 3000 4242
echo virtio-ok
"#;

#[test]
#[ignore = "boots the test host with the driver and the payload; run by `cargo xtask test`"]
fn daemon_killed_with_bindings_mapping_and_a_spinning_guest() {
    let out = run_passing(&scenario(
        "driver-virtio-killed",
        r#"
before=$(free_kb)
for round in 1 2 3; do
    /root/colinux-probe virtio-hold /root/payload.elf > /tmp/hold.out 2>&1 &
    P=$!
    i=0
    until grep -q '^holding' /tmp/hold.out; do
        i=$((i + 1)); [ $i -lt 600 ] || { cat /tmp/hold.out; echo "the probe never held"; exit 1; }
        kill -0 $P 2>/dev/null || { cat /tmp/hold.out; echo "the probe died"; exit 1; }
        sleep 0.1
    done
    sleep 1
    kill -9 $P
    wait $P || true
    cat /tmp/hold.out
done
after=$(free_kb)
diff=$((before - after)); [ $diff -ge 0 ] || diff=$((-diff))
echo "MemFree kB: before=$before after=$after (difference $diff, 3 x 2 x 64 MiB were held)"
[ $diff -le $((4 * 1024)) ] || { echo "memory was not returned"; exit 1; }
echo killed-ok
"#,
    ));
    assert!(out.console.contains("killed-ok"), "{}", out.log.display());
    assert!(out.kernel_log_clean);
}
