//! What the tests that boot the Linux guest in the test host share: the
//! built parts, one boot at a time, scenarios, and reading a session back.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use colinux_testrig::guest_initrd::InitrdOptions;
use colinux_testrig::session::{self, Session, SHELL_READY};
use colinux_testrig::testhost::{self, Outcome, Scenario};
use xtask::build::BuildOptions;
use xtask::run::GuestParts;

use crate::SHELL_HELPERS;

/// Build everything once per test binary: the module against the test
/// host's kernel, the static daemon, the guest kernel (incremental: about a
/// second when nothing changed) and the guest initramfs.
pub fn parts() -> &'static GuestParts {
    static PARTS: OnceLock<GuestParts> = OnceLock::new();
    PARTS.get_or_init(|| {
        let manifest = xtask::manifest::Manifest::load_default().unwrap();
        build_parts(&manifest.series.base)
    })
}

/// The 6.12 LTS guest, from the series `rebase` made of `linux-patches/`.
pub fn parts_6_12() -> &'static GuestParts {
    static PARTS: OnceLock<GuestParts> = OnceLock::new();
    PARTS.get_or_init(|| build_parts("6.12.100"))
}

/// [`parts`] with the test programs of `tests/guest-bench/` in the guest's
/// initramfs (`/bin/hostile`, …).
pub fn parts_with_programs() -> &'static GuestParts {
    static PARTS: OnceLock<GuestParts> = OnceLock::new();
    PARTS.get_or_init(|| {
        let manifest = xtask::manifest::Manifest::load_default().unwrap();
        build_parts_with(&manifest.series.base, true)
    })
}

pub fn build_parts(version: &str) -> GuestParts {
    build_parts_with(version, false)
}

fn build_parts_with(version: &str, test_programs: bool) -> GuestParts {
    let manifest = xtask::manifest::Manifest::load_default().unwrap();
    let build = BuildOptions::guest(&manifest, version).unwrap();
    GuestParts::build(&manifest, &build, &InitrdOptions { test_programs }).unwrap()
}

/// One boot test at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn scenario(name: &str, script: String, timeout: Duration) -> Scenario {
    scenario_with(parts(), name, script, timeout)
}

pub fn scenario_with(p: &GuestParts, name: &str, script: String, timeout: Duration) -> Scenario {
    p.scenario(name, format!("{SHELL_HELPERS}\n{script}"))
        .timeout(timeout)
}

/// Run `s`; the one session it holds (the outcome is not checked here).
pub fn run_one(s: &Scenario) -> (Outcome, Session) {
    let out = testhost::run(s).unwrap();
    let sessions = session::sessions(&out.console);
    let one = sessions.into_iter().next().unwrap_or_default();
    (out, one)
}

/// The context a failure message shows: the rig's verdict, the guest's
/// console, the daemon's stderr and the host console's last lines.
pub fn context(out: &Outcome, s: &Session) -> String {
    let tail: Vec<&str> = out.console.lines().rev().take(40).collect();
    format!(
        "\n--- test host: {} (log: {})\n--- daemon exit status: {:?}\n--- guest console ({} lines):\n{}\n--- daemon stderr:\n{}\n--- host console, last lines:\n{}\n",
        out.reason,
        out.log.display(),
        s.status,
        s.guest.len(),
        s.guest.join("\n"),
        s.daemon_stderr.join("\n"),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}

/// The guest's output for typed step `n` (1-based): the lines between the
/// marker of the step before (the shell's first answer for step 1) and its
/// own marker. `None` if the step never finished.
pub fn step_output(s: &Session, n: usize) -> Option<&[String]> {
    let start_marker = if n == 1 {
        SHELL_READY.to_string()
    } else {
        format!("colinux-run: step-{}-done", n - 1)
    };
    let end_marker = format!("colinux-run: step-{n}-done");
    let start = s.guest.iter().position(|l| l.contains(&start_marker))?;
    let end = start
        + s.guest[start..]
            .iter()
            .position(|l| l.contains(&end_marker))?;
    Some(&s.guest[start + 1..end])
}

/// The guest RAM the tests give (MiB).
pub const MEM: u64 = 128;

/// What step `n` printed, as one text: without the typed line's echo and
/// bash's bracketed-paste switches. Panics (with `ctx`) if the step never
/// finished.
pub fn step_text(s: &Session, n: usize, ctx: &str) -> String {
    step_output(s, n)
        .unwrap_or_else(|| panic!("step {n} never finished{ctx}"))
        .iter()
        .filter(|l| !l.contains("colinux-run: step-''"))
        .map(|l| l.replace("\u{1b}[?2004l", "").replace("\u{1b}[?2004h", ""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The guest's Debian root image, built (cached) by `cargo xtask rootfs`,
/// copied sparsely into `dir` (the guest writes to its copy).
pub fn root_image(dir: &std::path::Path) -> std::path::PathBuf {
    let built = colinux_images::rootfs::build(&colinux_images::rootfs::RootfsOptions::default())
        .expect("the root image builds");
    let copy = dir.join("root.img");
    let st = std::process::Command::new("cp")
        .arg("--sparse=always")
        .arg(&built.image)
        .arg(&copy)
        .status()
        .expect("cp runs");
    assert!(st.success(), "copying {}", built.image.display());
    copy
}
