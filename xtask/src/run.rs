//! `cargo xtask run`: the main job. Build everything, boot the test host
//! (Debian's stock kernel in QEMU), load the driver and boot the i386 Linux
//! guest with the daemon, showing the host's console.
//!
//! Files in the test host: `/root/colinux.ko`, `/root/colinux` (the
//! command), `/root/colinux-daemon` (the developers' tool, for payloads),
//! `/root/vmlinux` (the guest kernel from `build-kernel`) and
//! `/root/initrd.cpio` (from [`colinux_testrig::guest_initrd`]). The guest
//! runs in the foreground as `colinux run name=guest kernel=/root/vmlinux
//! initrd=/root/initrd.cpio mem=<MiB>`: the guest's console is its
//! stdin/stdout; it exits 0 when the guest powers off, 2 when it panics, 3
//! when it faults.
//!
//! Non-interactive sessions ([`GUEST_HELPERS`]) connect the daemon to two
//! fifos: a *feeder* waits for the guest's shell and types commands into
//! it, one by one, each followed by a marker it waits for; a *stamper*
//! writes every console line, with the test host's uptime, to a log and to
//! the host console as `guest| <line>` ([`GUEST_PREFIX`]). `--shell` puts the
//! guest's console on the terminal instead; `--payload` runs the 32-bit test
//! payload through the passage (the job before Linux booted).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::build::{build_kernel, BuildOptions};
use crate::manifest::Manifest;
use colinux_testrig::guest_initrd::InitrdOptions;
use colinux_testrig::session::{
    interactive_script, payload_script, script, Root, HOST_COLINUX, HOST_DAEMON, HOST_INITRD,
    HOST_MODULE, HOST_VMLINUX,
};
use colinux_testrig::testhost::{self, Scenario};

/// Options of `cargo xtask run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub build: BuildOptions,
    /// Guest RAM in MiB.
    pub mem: u64,
    /// The guest's console on the terminal, then a shell in the test host.
    pub shell: bool,
    /// Run the test payload instead of booting Linux.
    pub payload: bool,
    /// Boot this root file system image (cobd0, a disk of the test host;
    /// the guest writes to it) instead of the initramfs.
    pub image: Option<PathBuf>,
}

/// What booting a guest in the test host takes, built (each step is
/// incremental): the module for the test host's kernel, the static daemon,
/// the guest kernel and its initramfs (with the test programs or not).
#[derive(Debug, Clone)]
pub struct GuestParts {
    pub module: PathBuf,
    pub daemon: PathBuf,
    /// The `colinux` command.
    pub colinux: PathBuf,
    pub vmlinux: PathBuf,
    pub initrd: PathBuf,
}

impl GuestParts {
    pub fn build(
        manifest: &Manifest,
        build: &BuildOptions,
        initrd: &InitrdOptions,
    ) -> Result<GuestParts> {
        let guest = build_kernel(manifest, build)?;
        Ok(GuestParts {
            module: crate::driver_build::build_driver(None)?,
            daemon: colinux_testrig::userland::build_static("colinux-daemon", "colinux-daemon")?,
            colinux: colinux_testrig::userland::build_static("colinux-daemon", "colinux")?,
            vmlinux: guest.vmlinux,
            initrd: colinux_testrig::guest_initrd::build(initrd)?,
        })
    }

    /// A test-host scenario with the files at [`HOST_MODULE`],
    /// [`HOST_DAEMON`], [`HOST_COLINUX`], [`HOST_VMLINUX`] and
    /// [`HOST_INITRD`].
    pub fn scenario(&self, name: &str, script: String) -> Scenario {
        Scenario::new(name, script)
            .file(self.module.clone(), HOST_MODULE, 0o644)
            .file(self.daemon.clone(), HOST_DAEMON, 0o755)
            .file(self.colinux.clone(), HOST_COLINUX, 0o755)
            .file(self.vmlinux.clone(), HOST_VMLINUX, 0o644)
            .file(self.initrd.clone(), HOST_INITRD, 0o644)
    }
}

/// Build the guest kernel, its initramfs, the driver and the daemon, and
/// boot the guest in the test host.
pub fn run(manifest: &Manifest, opts: &RunOptions) -> Result<()> {
    let guest = build_kernel(manifest, &opts.build)?;
    let module = crate::driver_build::build_driver(None)?;
    let daemon = colinux_testrig::userland::build_static("colinux-daemon", "colinux-daemon")?;
    let colinux = colinux_testrig::userland::build_static("colinux-daemon", "colinux")?;
    let mut s = if opts.payload {
        let payload = colinux_testrig::payload::build_payload()?;
        Scenario::new("run-payload", payload_script(opts.mem)).file(
            payload,
            "/root/payload.elf",
            0o644,
        )
    } else {
        let root = if opts.image.is_some() {
            Root::Disk
        } else {
            Root::Initrd
        };
        let script = if opts.shell {
            interactive_script(root, opts.mem)
        } else {
            script(root, opts.mem)
        };
        match &opts.image {
            Some(image) => Scenario::new("run-image", script).disk(image),
            None => {
                let initrd = colinux_testrig::guest_initrd::build(&InitrdOptions::default())?;
                Scenario::new("run", script).file(initrd, HOST_INITRD, 0o644)
            }
        }
    };
    s = s
        .file(module, HOST_MODULE, 0o644)
        .file(daemon, HOST_DAEMON, 0o755)
        .file(colinux, HOST_COLINUX, 0o755)
        .file(guest.vmlinux.clone(), HOST_VMLINUX, 0o644)
        .timeout(Duration::from_secs(if opts.image.is_some() {
            900
        } else {
            300
        }));
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
