//! `cargo xtask run`: the main job. Build everything, boot the test host
//! (Debian's stock kernel in QEMU), load the driver, and hand the guest
//! kernel to the daemon, showing the host's console.
//!
//! Today the daemon creates a guest, loads the Linux guest kernel into its
//! RAM and destroys it (Linux cannot boot cooperatively before issue 5),
//! then runs the 32-bit test payload through the passage for real.

use std::time::Duration;

use anyhow::Result;

use crate::build::{build_kernel, BuildOptions};
use crate::manifest::Manifest;
use crate::testhost::{self, Scenario};

/// Options of `cargo xtask run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub build: BuildOptions,
    /// Guest RAM in MiB.
    pub mem: u64,
    /// Stay in an interactive shell in the test host afterwards.
    pub shell: bool,
}

/// The scenario `run` executes in the test host.
pub fn script(mem: u64) -> String {
    format!(
        r#"set -e
echo "== colinux: loading the host driver"
insmod /root/colinux.ko
ls -l /dev/colinux
echo "== colinux: the daemon creates a {mem} MiB guest and loads the guest kernel"
/root/colinux-daemon --kernel /root/vmlinux --mem {mem}
echo "== colinux: what the driver logged"
dmesg | grep colinux: | tail -n 5
echo "== colinux: Linux cannot boot cooperatively yet (issue 5); running the 32-bit test payload through the passage"
/root/colinux-daemon --kernel /root/payload.elf --mem 64 --run
rmmod colinux
"#
    )
}

/// Build the guest kernel, the driver and the daemon, and run them in the
/// test host.
pub fn run(manifest: &Manifest, opts: &RunOptions) -> Result<()> {
    let guest = build_kernel(manifest, &opts.build)?;
    let module = crate::driver_build::build_driver(None)?;
    let daemon = crate::userland::build_static("colinux-daemon", "colinux-daemon")?;
    let payload = crate::payload::build_payload()?;
    let s = Scenario::new("run", script(opts.mem))
        .file(module, "/root/colinux.ko", 0o644)
        .file(daemon, "/root/colinux-daemon", 0o755)
        .file(guest.vmlinux.clone(), "/root/vmlinux", 0o644)
        .file(payload, "/root/payload.elf", 0o644)
        .timeout(Duration::from_secs(180));
    if opts.shell {
        return testhost::shell(&s);
    }
    let out = testhost::run(&s)?;
    print!("{}", out.console);
    if !out.passed {
        anyhow::bail!(
            "the run failed: {} (log: {})",
            out.reason,
            out.log.display()
        );
    }
    println!(
        "colinux: done in {:.1}s; full console log: {}",
        out.duration.as_secs_f64(),
        out.log.display()
    );
    Ok(())
}
