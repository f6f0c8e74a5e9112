//! The release installed as a user installs it (`cargo xtask package`,
//! docs in README "Run it on your own machine"):
//!
//! 1. the release is made: three packages that lintian passes without
//!    errors, the compressed root image, the tarball, `SHA256SUMS` that
//!    `sha256sum -c` accepts;
//! 2. in a Debian 12 amd64 chroot with `dkms` and the stock kernel headers
//!    (bootstrapped once, cached; a scratch copy per run), `apt-get install
//!    ./colinux*.deb` builds colinux.ko through DKMS against those headers;
//!    headers of a second kernel installed afterwards get the module built
//!    for that kernel too (DKMS's header hook); DKMS asked to build for a
//!    kernel without headers says to install them;
//! 3. the test host (the same stock kernel) loads that DKMS-built module,
//!    and the installed `colinux` boots the installed guest kernel on the
//!    released image (decompressed) to a login;
//! 4. `apt-get purge` removes module (for both kernels), files and units:
//!    with the later kernel purged too, the chroot's file list is what it
//!    was before the install.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use colinux_testrig::session::{self, Root, GUEST_NAME};
use colinux_tests::guest::{context, parts, run_one, scenario_with, serial, step_text};

/// The chroot's packages besides minbase: what the install instructions
/// ask a user to have (dkms) and what `colinux` recommends (passt)...
fn chroot_packages() -> Vec<String> {
    ["dkms", "passt"].iter().map(|s| s.to_string()).collect()
}

/// ... and, from the updates and security archives, the stock kernel
/// headers (the metapackage, and the test host's release, which is the
/// one the metapackage names); kept for later, the headers of a second
/// kernel, installed after our packages (Debian's cloud flavour of the
/// same release: a small download).
fn chroot_packages_for(release: &str) -> colinux_images::chroot::Packages {
    colinux_images::chroot::Packages {
        base: chroot_packages(),
        updates: vec![
            "linux-headers-amd64".into(),
            format!("linux-headers-{release}"),
        ],
        later: vec![format!("linux-headers-{}", later_release(release))],
    }
}

/// The kernel installed after the packages: `6.1.0-N-amd64` →
/// `6.1.0-N-cloud-amd64`.
fn later_release(release: &str) -> String {
    format!("{}-cloud-amd64", release.trim_end_matches("-amd64"))
}

/// Run `args` inside `root` (chroot), returning status, stdout+stderr.
fn in_chroot(root: &Path, args: &[&str]) -> (bool, String) {
    let o = Command::new("chroot")
        .arg(root)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C.UTF-8")
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), text)
}

/// `/proc` mounted in the chroot while this lives (dkms and apt read it).
struct ProcMount(PathBuf);

impl ProcMount {
    fn new(root: &Path) -> ProcMount {
        let p = root.join("proc");
        let st = Command::new("mount")
            .args(["-t", "proc", "proc"])
            .arg(&p)
            .status()
            .unwrap();
        assert!(st.success(), "mount proc in {}", root.display());
        ProcMount(p)
    }
}

impl Drop for ProcMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Every path in the chroot but those dpkg, apt and the test itself keep
/// changing (their state, caches and logs; the release copied in).
fn file_list(root: &Path) -> BTreeSet<String> {
    let o = Command::new("find")
        .arg(root)
        .args(["-xdev", "-mindepth", "1"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let skip = [
        "/proc",
        "/tmp",
        "/var/lib/dpkg",
        "/var/lib/apt",
        "/var/cache",
        "/var/log",
        "/root",
        "/run",
    ];
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(root.to_str().unwrap()))
        .filter(|p| {
            !skip
                .iter()
                .any(|s| p == s || p.starts_with(&format!("{s}/")))
        })
        .map(str::to_string)
        .collect()
}

#[test]
#[ignore = "builds the release, bootstraps a chroot (cached) and boots the test host; run with --include-ignored"]
fn release_installs_builds_the_module_boots_and_purges_clean() {
    let _serial = serial();
    let manifest = xtask::manifest::Manifest::load_default().unwrap();
    let work = tempfile::tempdir_in(colinux_buildenv::paths::target_dir()).unwrap();

    // 1. The release.
    let out = work.path().join("release");
    let rel = xtask::package::package(
        &manifest,
        &xtask::package::PackageOptions {
            out: Some(out.clone()),
            no_image: false,
            lintian: true,
        },
    )
    .unwrap();
    let names: Vec<String> = rel
        .debs
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for p in ["colinux-dkms_", "colinux_", "colinux-guest_"] {
        assert!(names.iter().any(|n| n.starts_with(p)), "{p}* in {names:?}");
    }
    let sums = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&out)
        .output()
        .unwrap();
    let sums_text = String::from_utf8_lossy(&sums.stdout);
    assert!(sums.status.success(), "sha256sum -c:\n{sums_text}");
    assert_eq!(sums_text.matches(": OK").count(), 5, "{sums_text}");

    // 2. The chroot: install, DKMS builds for the stock headers.
    let host = colinux_testrig::hostkernel::ensure().unwrap();
    let release = host.release.clone();
    let cached =
        colinux_images::chroot::ensure("bookworm", &chroot_packages_for(&release)).unwrap();
    let root = work.path().join("chroot");
    colinux_images::chroot::copy(&cached, &root).unwrap();
    let _proc = ProcMount::new(&root);
    let before = file_list(&root);
    let inside = root.join("tmp/release");
    std::fs::create_dir_all(&inside).unwrap();
    let mut debs = Vec::new();
    for d in &rel.debs {
        let name = d.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::copy(d, inside.join(&name)).unwrap();
        debs.push(format!("/tmp/release/{name}"));
    }
    let mut args = vec!["apt-get", "install", "-y"];
    args.extend(debs.iter().map(String::as_str));
    let (ok, log) = in_chroot(&root, &args);
    assert!(ok, "apt-get install in the chroot:\n{log}");
    let version = env!("CARGO_PKG_VERSION");
    let ko = root.join(format!("lib/modules/{release}/updates/dkms/colinux.ko"));
    assert!(
        ko.is_file(),
        "DKMS did not install {} (apt's output:\n{log})",
        ko.display()
    );
    let (ok, status) = in_chroot(&root, &["dkms", "status", "-m", "colinux"]);
    assert!(
        ok && status.contains(&format!("colinux/{version}, {release}, x86_64: installed")),
        "dkms status:\n{status}"
    );
    let (ok, modinfo) = in_chroot(
        &root,
        &[
            "modinfo",
            "-F",
            "vermagic",
            &format!("/lib/modules/{release}/updates/dkms/colinux.ko"),
        ],
    );
    assert!(
        ok && modinfo.starts_with(&format!("{release} ")),
        "vermagic: {modinfo}"
    );
    // A kernel installed after the packages: its headers' postinst hook
    // has DKMS build the module for it too.
    let later = later_release(&release);
    let later_debs: Vec<String> = std::fs::read_dir(root.join(colinux_images::chroot::LATER_DIR))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.ends_with(".deb")
                .then(|| format!("/{}/{name}", colinux_images::chroot::LATER_DIR))
        })
        .collect();
    assert!(
        later_debs
            .iter()
            .any(|d| d.contains(&format!("linux-headers-{later}_"))),
        "the chroot keeps no headers of {later}: {later_debs:?}"
    );
    let mut args = vec!["apt-get", "install", "-y"];
    args.extend(later_debs.iter().map(String::as_str));
    let (ok, log) = in_chroot(&root, &args);
    assert!(
        ok,
        "installing the headers of {later} after colinux:\n{log}"
    );
    let later_ko = root.join(format!("lib/modules/{later}/updates/dkms/colinux.ko"));
    assert!(
        later_ko.is_file(),
        "DKMS did not build the module for {later}, installed after colinux-dkms (apt's output:\n{log})"
    );
    let (_, status) = in_chroot(&root, &["dkms", "status", "-m", "colinux"]);
    assert!(
        status.contains(&format!("colinux/{version}, {later}, x86_64: installed")),
        "dkms status:\n{status}"
    );
    // A kernel without headers: DKMS says what to install.
    let (ok, nohdr) = in_chroot(
        &root,
        &[
            "dkms",
            "build",
            "-m",
            "colinux",
            "-v",
            version,
            "-k",
            "6.1.0-99-amd64",
        ],
    );
    assert!(!ok, "a DKMS build without headers succeeded:\n{nohdr}");
    assert!(
        nohdr.contains("Please install the linux-headers-6.1.0-99-amd64 package"),
        "DKMS's message does not name the headers:\n{nohdr}"
    );
    for f in [
        "usr/bin/colinux",
        "lib/systemd/system/colinux@.service",
        "etc/colinux/example.toml",
        "lib/udev/rules.d/60-colinux.rules",
        "usr/lib/colinux/vmlinux-6.1",
        "usr/lib/colinux/vmlinux-6.12",
        "usr/share/man/man1/colinux.1.gz",
    ] {
        assert!(root.join(f).is_file(), "/{f} not installed");
    }

    // 3. The test host loads the DKMS-built module; the installed colinux
    // boots the installed guest kernel on the released image.
    let image = work.path().join("root.img");
    let xz = rel.rootfs.clone().expect("the release has the image");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "xz -dc '{}' | dd of='{}' bs=1M conv=sparse status=none",
            xz.display(),
            image.display()
        ))
        .status()
        .unwrap();
    assert!(st.success(), "decompressing {}", xz.display());
    let mut installed = parts().clone();
    installed.module = ko.clone();
    installed.colinux = root.join("usr/bin/colinux");
    installed.vmlinux = root.join("usr/lib/colinux/vmlinux-6.1");
    let steps = ["systemctl is-system-running --wait; uname -r; cat /proc/cmdline"];
    let script = session::session_script_with(
        Root::Disk,
        colinux_tests::guest::MEM,
        &steps,
        "poweroff",
        r#"echo "== packaging: the daemon exited with $GUEST_RC"
modinfo -F vermagic /root/colinux.ko 2>/dev/null || true
grep -c colinux /proc/modules || true
"#,
        "",
    );
    let s = scenario_with(&installed, "packaging", script, Duration::from_secs(1800)).disk(&image);
    let (outcome, sess) = run_one(&s);
    let ctx = context(&outcome, &sess);
    assert!(outcome.passed, "the test host run failed{ctx}");
    let text = step_text(&sess, 1, &ctx);
    assert!(
        text.contains("running") || text.contains("degraded"),
        "systemd state{ctx}"
    );
    assert!(
        text.contains("6.1.176"),
        "the guest kernel is not the packaged 6.1 one{ctx}"
    );
    assert_eq!(
        sess.status,
        Some(0),
        "the guest did not power off cleanly{ctx}"
    );
    assert!(
        sess.guest
            .iter()
            .any(|l| l.contains(session::AUTOLOGIN_MARKER)),
        "no login on the console{ctx}"
    );
    let _ = GUEST_NAME;

    // 4. Purge: nothing left.
    let (ok, log) = in_chroot(
        &root,
        &[
            "apt-get",
            "purge",
            "-y",
            "colinux",
            "colinux-dkms",
            "colinux-guest",
        ],
    );
    assert!(ok, "apt-get purge:\n{log}");
    assert!(
        !later_ko.exists(),
        "the module built for {later}, the kernel installed later, outlived the purge"
    );
    // The later kernel goes too, so the list can be compared.
    let (ok, log) = in_chroot(
        &root,
        &["apt-get", "purge", "-y", &format!("linux-headers-{later}")],
    );
    assert!(ok, "apt-get purge of the later kernel's headers:\n{log}");
    let after = file_list(&root);
    // depmod's indexes of the kernel DKMS built for: the chroot has that
    // kernel's headers but not its image, so DKMS's depmod made them; on a
    // real host they belong to the kernel's package and are rewritten,
    // not added. They must not name the module any more.
    // The same holds for the later kernel, whose module directory was
    // made by its headers' package and is left holding only those indexes.
    let depmod_index = |p: &&String| {
        [&release, &later].iter().any(|r| {
            p.starts_with(&format!("/usr/lib/modules/{r}/modules."))
                || p.starts_with(&format!("/lib/modules/{r}/modules."))
        }) || p.as_str() == format!("/usr/lib/modules/{later}")
            || p.as_str() == format!("/lib/modules/{later}")
    };
    for p in after.iter().filter(depmod_index) {
        let path = root.join(p.trim_start_matches('/'));
        if path.is_dir() {
            continue; // the later kernel's module directory: its files are checked
        }
        let text = std::fs::read(&path).unwrap();
        assert!(
            !String::from_utf8_lossy(&text).contains("colinux"),
            "{p} still names colinux after the purge"
        );
    }
    let left: Vec<&String> = after
        .difference(&before)
        .filter(|p| !depmod_index(p))
        .collect();
    let lost: Vec<&String> = before.difference(&after).collect();
    assert!(
        left.is_empty() && lost.is_empty(),
        "after purge, left behind: {left:#?}\nmissing: {lost:#?}"
    );
    assert!(!root.join(format!("usr/src/colinux-{version}")).exists());
    assert!(!root.join("var/lib/dkms/colinux").exists());
}
