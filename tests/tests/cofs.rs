//! cofs in the test host: the Debian root file system of `cargo xtask
//! rootfs` boots from cobd0 with two shared host directories, Linux's own
//! virtiofs over the cooperative virtio transport and virtiofsd (built
//! from crates.io, copied into the test host) as the daemon's vhost-user
//! back end:
//!
//! - cofs0 (read-write) is mounted with `mount -t virtiofs cofs0`; files
//!   and directories the guest creates, renames, appends to and deletes
//!   are seen by the test host at once, and the other way round (the
//!   shared directory itself carries the hand-over: each side waits for
//!   the other's marker file); 8 MiB of random bytes written by the guest
//!   (`fsync`ed) have the same SHA-256 on the host;
//! - the read-write share belongs to user 1000 of the test host: a file
//!   the guest's root creates there is 1000's on the host, root's in the
//!   guest;
//! - cofs1 is read-only (`,ro`): readable, every write refused (EROFS);
//! - a symlink and a hard link the guest makes are what the host sees,
//!   a host symlink works in the guest; a 5 GiB sparse file written past
//!   4 GiB by the i386 guest has its size and last byte on the host; the
//!   guest's /usr/share/doc/[a-f]* (about 130 files), tarred and
//!   unpacked into the share, is the
//!   same tree in the guest (`diff -r --no-dereference`: symlinks as links) and, file by file (MD5 list), on
//!   the host;
//! - mmap (`tests/guest-bench/mmapio.c`, run from cofs1): on cofs0
//!   (cache `never`) a private mapping reads the file and a shared one is
//!   refused with ENODEV (the 6.1 guest's FUSE for direct I/O files); on
//!   cofs2 (`,cache=auto`) a shared mapping reads what the host wrote,
//!   bytes written through one and `msync`ed are on the host, and the
//!   host's rewrite is seen by the next mapping;
//! - git in cofs0: init, commit, branch, merge, repack, clone,
//!   `git fsck --full` clean in the guest, and the test host's git (copied
//!   in from the build machine) finds the same repository clean, at the
//!   same HEAD, with the clone's branches;
//! - virtiofsd killed mid-use: the guest's next operations on the share
//!   fail with an I/O error instead of hanging, the other share goes on,
//!   and the daemon's log says virtiofsd exited;
//! - bad `cofsN=` values are refused before a guest starts (a missing
//!   directory, a file, one share set twice), no virtiofsd left behind;
//! - no virtiofsd is left after `poweroff`, nor after the daemon is killed
//!   with SIGKILL.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use colinux_testrig::diskimage;
use colinux_testrig::session::{self, Root, Session};
use colinux_tests::guest::{context, root_image, run_one, scenario, serial, step_text};

/// The shares in the test host.
const RW: &str = "/tmp/share";
const RO: &str = "/tmp/roshare";
/// A read-write share with `cache=auto` (shared mappings work there).
const AUTO: &str = "/tmp/autoshare";
/// The mapped-file tool (tests/guest-bench/mmapio.c) in the test host; the
/// host copies it into the read-only share, the guest runs it from there.
const MMAPIO: &str = "/root/mmapio";

/// Wait (in the guest) until `file` exists, at most 120 s.
fn wait_for(file: &str) -> String {
    format!("for i in $(seq 600); do [ -e {file} ] && break; sleep 0.2; done")
}

fn steps() -> Vec<String> {
    vec![
        // 1: both shares mounted; the host's files there.
        "systemctl is-system-running --wait >/dev/null; mkdir -p /mnt/rw /mnt/ro /mnt/auto && mount -t virtiofs cofs0 /mnt/rw && mount -t virtiofs cofs1 /mnt/ro && mount -t virtiofs cofs2 /mnt/auto; echo mount-rc-$?; grep virtiofs /proc/mounts; cat /mnt/rw/from-host.txt /mnt/ro/ro.txt".to_string(),
        // 2: the guest's changes; the host checks them and answers with
        // its own (host-ready); the guest looks.
        format!(
            "cd /mnt/rw && echo guest-line > g.txt && mkdir gdir && echo a > gdir/f && mv gdir/f gdir/f2 && echo guest-more >> g.txt && touch g-del && rm g-del && touch root-made && touch g-ready; echo guest-ops-rc-$?; stat -c guest-sees-owner-%u:%g root-made; {}; cat h.txt; ls -1 . | tr '\\n' ' '; echo; ls -1 hdir; [ -e from-host.txt ] && echo renamed-still-there || echo renamed-gone; cd /",
            wait_for("/mnt/rw/host-ready")
        ),
        // 3: 8 MiB written and fsynced by the guest; the host checks the
        // checksum (big-ready → host-sum).
        "head -c 8M /dev/urandom > /tmp/big && dd if=/tmp/big of=/mnt/rw/big bs=1M conv=fsync 2>/dev/null; echo dd-rc-$?; sha256sum /tmp/big | cut -d' ' -f1 | sed 's/^/big-sum-/'; cmp /tmp/big /mnt/rw/big && echo big-reads-back; touch /mnt/rw/big-ready".to_string(),
        // 4: the read-only share refuses writes.
        "echo x > /mnt/ro/new; echo ro-create-rc-$?; rm /mnt/ro/ro.txt; echo ro-rm-rc-$?; echo x >> /mnt/ro/ro.txt; echo ro-append-rc-$?; cat /mnt/ro/ro.txt".to_string(),
        // 5: links, a file past 4 GiB (sparse) on the i386 guest, a
        // tarball unpacked into the share and compared file by file; the
        // host checks them (links-ready → host-links-ready) and adds a
        // symlink of its own.
        format!(
            "cd /mnt/rw && ln -s g.txt sym && ln g.txt hard && stat -c links-%h g.txt && truncate -s 5G huge && printf Z | dd of=huge bs=1 seek=5368709120 conv=notrunc 2>/dev/null && stat -c huge-size-%s huge && tail -c 1 huge | sed 's/^/huge-last-/'; echo; mkdir -p /tmp/src/doc && cp -a /usr/share/doc/[a-f]* /tmp/src/doc/ && tar -C /tmp/src -cf /tmp/doc.tar doc && mkdir unpacked && tar -C unpacked -xf /tmp/doc.tar; echo untar-rc-$?; diff -r --no-dereference /tmp/src/doc unpacked/doc && echo tree-same; (cd /tmp/src && find doc -type f | LC_ALL=C sort | xargs md5sum | md5sum | sed 's/ .*//; s/^/tree-sum-/'); touch links-ready; {}; cat hsym; cd /",
            wait_for("/mnt/rw/host-links-ready")
        ),
        // 6: mmap. The tool runs from cofs1 (exec maps it MAP_PRIVATE).
        // cache=never (cofs0): a private mapping reads the file, a shared
        // one is refused (ENODEV, the 6.1 guest's FUSE for direct I/O
        // files). cache=auto (cofs2): a shared mapping reads what the host
        // wrote; bytes written through one and msync'ed are on the host
        // (map-ready → host-map-ready); the host's rewrite of a file is
        // seen by the next mapping.
        format!(
            "M=/mnt/ro/mmapio; $M read /mnt/rw/h.txt private | head -1 | sed 's/^/never-private-/'; $M read /mnt/rw/h.txt shared; echo never-shared-rc-$?; $M read /mnt/auto/host-map.txt shared | sed 's/^/auto-shared-/'; head -c 4096 /dev/zero | tr '\\0' . > /mnt/auto/guest-map.bin && $M write /mnt/auto/guest-map.bin 100 written-through-a-mapping; touch /mnt/auto/map-ready; {}; $M read /mnt/auto/host-map.txt shared | sed 's/^/auto-again-/'",
            wait_for("/mnt/auto/host-map-ready")
        ),
        // 7: git in the share: a repository made, committed, branched,
        // merged, repacked (pack files are read through mmap), cloned,
        // and `git fsck --full` clean; the host checks the same
        // repository with its own git (git-ready).
        "cd /mnt/rw && git config --global user.email guest@colinux && git config --global user.name guest && git config --global init.defaultBranch main && git init -q repo && cd repo && cp -a /usr/share/doc/[a-b]* . && git add -A && git commit -qm first && git checkout -qb topic && echo topic > topic.txt && git add topic.txt && git commit -qm topic && git checkout -q main && echo main > main.txt && git add main.txt && git commit -qm main && git merge -q --no-edit topic && git repack -adq && git fsck --full && cd .. && git clone -q repo clone && git -C clone fsck --full && git -C clone checkout -q -b from-clone && echo git-rc-$?; git -C repo rev-parse HEAD | sed 's/^/git-head-/'; git -C clone rev-list --count HEAD | sed 's/^/git-commits-/'; git -C repo count-objects -v | grep -E '^(count|in-pack)'; touch git-ready; cd /".to_string(),
        // 8: virtiofsd of cofs0 killed (the host does it on kill-me): the
        // guest's operations fail, and do not hang (SIGKILL after 90 s
        // would give 137); cofs1 goes on.
        format!(
            "touch /mnt/rw/kill-me; {}; for i in $(seq 120); do stat /mnt/rw >/dev/null 2>&1 || break; sleep 1; done; timeout -s KILL 90 cat /mnt/rw/g.txt; echo after-kill-cat-rc-$?; timeout -s KILL 90 touch /mnt/rw/new; echo after-kill-touch-rc-$?; cat /mnt/ro/ro.txt",
            "sleep 1"
        ),
    ]
}

/// The test host's side, before the guest boots: the shares, the bad
/// values, the watcher that acts while the guest runs.
fn host_setup() -> String {
    let c = session::HOST_COLINUX;
    let v = session::HOST_VMLINUX;
    let wrapper = colinux_testrig::hostvirtiofsd::wrapper_setup();
    format!(
        r#"
export RUST_LOG=colinux_devices::fs=debug,info
# virtiofsd through its wrapper (see colinux_testrig::sandboxed).
{wrapper}mkdir -p {RW} {RO} {AUTO}
cp {MMAPIO} {RO}/mmapio
echo host-mapped-v1 > {AUTO}/host-map.txt
# The read-write share belongs to a user: root in the guest is that user
# there, not host root.
chown 1000:1000 {RW}
echo hello-from-the-host > {RW}/from-host.txt
echo host-doomed > {RW}/host-del
echo read-only-42 > {RO}/ro.txt
touch /tmp/a-file
# Bad values: each refused before a guest starts.
bad() {{
    n=$1; shift
    rc=0
    {c} run name=bad kernel={v} mem=64 "$@" > /tmp/bad.out 2>&1 || rc=$?
    echo "cofs: bad-$n-rc=$rc $(grep -i error /tmp/bad.out | tail -1)"
}}
bad missing cofs0=/tmp/no-such-dir
bad file cofs0=/tmp/a-file
bad twice cofs0={RW} cofs0={RO},ro
pidof virtiofsd >/dev/null && echo "cofs: virtiofsd-left-after-bad"
# The watcher: checks the guest's changes, makes its own, checks the big
# file, kills virtiofsd of cofs0 when asked.
(
    w() {{ n=0; while [ ! -e "$1" ]; do n=$((n + 1)); [ $n -lt 6000 ] || return 1; sleep 0.2; done; }}
    w {RW}/g-ready || exit 0
    echo "cofs: host-sees-g.txt=$(cat {RW}/g.txt | tr '\n' '+')"
    [ -e {RW}/gdir/f2 ] && [ ! -e {RW}/gdir/f ] && echo "cofs: host-sees-rename"
    [ ! -e {RW}/g-del ] && echo "cofs: host-sees-delete"
    echo "cofs: host-owner-of-root-made=$(stat -c %u:%g {RW}/root-made)"
    echo host-line > {RW}/h.txt
    echo host-more >> {RW}/h.txt
    mv {RW}/from-host.txt {RW}/renamed-by-host.txt
    rm {RW}/host-del
    mkdir {RW}/hdir && echo b > {RW}/hdir/made-by-host
    touch {RW}/host-ready
    w {RW}/big-ready || exit 0
    echo "cofs: host-big-sum-$(sha256sum {RW}/big | cut -d' ' -f1)"
    w {RW}/links-ready || exit 0
    echo "cofs: host-readlink-$(readlink {RW}/sym)"
    echo "cofs: host-links-$(stat -c %h {RW}/g.txt)"
    echo "cofs: host-huge-size-$(stat -c %s {RW}/huge)-last-$(tail -c 1 {RW}/huge)"
    echo "cofs: host-tree-sum-$(cd {RW}/unpacked && find doc -type f | sort | xargs md5sum | md5sum | sed 's/ .*//')"
    ln -s h.txt {RW}/hsym
    touch {RW}/host-links-ready
    w {AUTO}/map-ready || exit 0
    echo "cofs: host-sees-mapped-$(dd if={AUTO}/guest-map.bin bs=1 skip=100 count=25 2>/dev/null)-size-$(stat -c %s {AUTO}/guest-map.bin)"
    echo host-mapped-v2 > {AUTO}/host-map.txt
    touch {AUTO}/host-map-ready
    w {RW}/git-ready || exit 0
    # The repository is user 1000's: git wants to be told it may read it.
    export HOME=/tmp/git-home
    mkdir -p $HOME && git config --global --add safe.directory '*'
    git -C {RW}/repo fsck --full >/tmp/fsck.out 2>&1 && git -C {RW}/clone fsck --full >>/tmp/fsck.out 2>&1 && echo "cofs: host-git-fsck-clean"
    sed 's/^/cofs: host-fsck: /' /tmp/fsck.out | head -5
    echo "cofs: host-git-head-$(git -C {RW}/repo rev-parse HEAD)"
    echo "cofs: host-git-branches-$(git -C {RW}/clone branch --list | tr -d ' *' | sort | tr '\n' +)"
    w {RW}/kill-me || exit 0
    for p in $(pidof virtiofsd); do
        grep -q 'shared-dir={RW}' /proc/$p/cmdline 2>/dev/null && kill -9 $p && echo "cofs: killed-virtiofsd-$p"
    done
) &
"#
    )
}

/// After the session: nothing left behind; then a guest whose daemon is
/// killed.
fn host_after() -> String {
    let c = session::HOST_COLINUX;
    let v = session::HOST_VMLINUX;
    format!(
        r#"
pidof virtiofsd >/dev/null && echo "cofs: virtiofsd-left-after-poweroff" || echo "cofs: no-virtiofsd-after-poweroff"
ls {RW} | tr '\n' ' ' | sed 's/^/cofs: host-ls-after: /'; echo
# SIGKILL: a guest with a share.
{c} run name=killed kernel={v} mem=64 {root} cofs0={RW} </dev/null >/tmp/killed.out 2>&1 &
kpid=$!
n=0
while ! pidof virtiofsd >/dev/null; do
    n=$((n + 1)); [ $n -lt 600 ] || break; sleep 0.1
done
pidof virtiofsd >/dev/null && echo "cofs: virtiofsd-while-running"
sleep 2
kill -9 $kpid
# (set -e: the killed daemon's status 137 must not end the script)
wait $kpid 2>/dev/null || true
n=0
while pidof virtiofsd >/dev/null; do
    n=$((n + 1)); [ $n -lt 100 ] || break; sleep 0.1
done
pidof virtiofsd >/dev/null && echo "cofs: virtiofsd-left-after-kill" || echo "cofs: no-virtiofsd-after-kill"
sed 's/^/cofs: killed-log: /' /tmp/killed.out | tail -20
rmmod colinux && echo "cofs: module-unloaded"
echo cofs-done
"#,
        root = session::ROOT_DISK_SETTINGS,
    )
}

/// The value after `prefix` on the first line of `text` that has it.
fn after<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.find(prefix).map(|at| l[at + prefix.len()..].trim()))
}

fn step(sess: &Session, n: usize, ctx: &str) -> String {
    step_text(sess, n, ctx)
}

/// On the build machine: the daemon's side of a share alone — virtiofsd
/// started, greeted over vhost-user (SET_OWNER, features, protocol
/// features), the config space the guest will read, and virtiofsd gone
/// (reaped) once the device is dropped.
#[test]
#[ignore = "builds virtiofsd (cached); run by `cargo xtask test`"]
fn virtiofsd_is_started_greeted_and_ended() {
    use colinux_devices::fs::{config_space, Fs, FsConfig};
    use colinux_devices::virtio::VirtioDevice;
    let program = colinux_testrig::hostvirtiofsd::program().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = FsConfig::parse(7, dir.path().to_str().unwrap()).unwrap();
    let fs = Fs::open_with(cfg, &program).unwrap();
    let pid = fs.virtiofsd_pid();
    assert!(std::path::Path::new(&format!("/proc/{pid}/exe")).exists());
    assert_eq!(fs.config(), config_space("cofs7"));
    assert_eq!(
        fs.queue_max_sizes().len(),
        2,
        "hiprio and one request queue"
    );
    drop(fs);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/exe")).exists(),
        "virtiofsd (pid {pid}) outlived its device"
    );
}

#[test]
#[ignore = "builds the Debian root image (cached) and virtiofsd (cached), boots the guest in the test host; run by `cargo xtask test`"]
fn debian_guest_shares_host_directories_over_virtiofs() {
    let _serial = serial();
    let dir = diskimage::scratch_dir("cofs").unwrap();
    let root = root_image(&dir);
    let steps = steps();
    let step_refs: Vec<&str> = steps.iter().map(String::as_str).collect();
    let script = session::session_script_with(
        Root::Disk,
        256,
        &step_refs,
        "poweroff",
        &host_after(),
        &format!("cofs0={RW} cofs1={RO},ro cofs2={AUTO},cache=auto"),
    )
    .replacen(
        "guest_boot ",
        &format!(
            "{}\nGUEST_STEP_WAIT=600\nGUEST_END_WAIT=300\nguest_boot ",
            host_setup()
        ),
        1,
    );
    let mmapio =
        colinux_testrig::programs::build_guest_program(colinux_testrig::programs::MMAPIO).unwrap();
    let s = scenario("cofs", script, Duration::from_secs(3600))
        .disk(&root)
        .file(mmapio, MMAPIO, 0o755)
        .with_virtiofsd()
        .unwrap()
        .with_git()
        .unwrap();
    let (out, sess) = run_one(&s);
    let ctx = context(&out, &sess);
    let host = |what: &str| after(&out.console, &format!("cofs: {what}"));
    let has = |what: &str| out.console.contains(&format!("cofs: {what}"));

    // Bad values, before any guest.
    for (name, want) in [
        ("missing", "/tmp/no-such-dir: No such file or directory"),
        ("file", "/tmp/a-file is not a directory"),
        ("twice", "the share cofs0 is already set"),
    ] {
        let line = host(&format!("bad-{name}-rc=")).unwrap_or_default();
        assert!(
            !line.starts_with('0') && line.contains(want),
            "{name}: {line:?} should be a failure saying {want:?}{ctx}"
        );
    }
    assert!(!has("virtiofsd-left-after-bad"), "{ctx}");

    // Mounted, the host's files readable.
    let s1 = step(&sess, 1, &ctx);
    assert!(s1.contains("mount-rc-0"), "mounting the shares: {s1}{ctx}");
    assert!(
        s1.contains("cofs0 /mnt/rw virtiofs") && s1.contains("cofs1 /mnt/ro virtiofs"),
        "{s1}{ctx}"
    );
    assert!(
        s1.contains("hello-from-the-host") && s1.contains("read-only-42"),
        "{s1}{ctx}"
    );
    // Guest → host, then host → guest.
    let s2 = step(&sess, 2, &ctx);
    assert!(s2.contains("guest-ops-rc-0"), "{s2}{ctx}");
    assert_eq!(
        host("host-sees-g.txt="),
        Some("guest-line+guest-more+"),
        "the guest's file and its append, seen by the host{ctx}"
    );
    assert!(has("host-sees-rename"), "the guest's rename{ctx}");
    assert!(has("host-sees-delete"), "the guest's delete{ctx}");
    assert_eq!(
        host("host-owner-of-root-made="),
        Some("1000:1000"),
        "a file the guest's root made on a share of user 1000 is that user's on the host{ctx}"
    );
    assert!(
        s2.contains("guest-sees-owner-0:0"),
        "…and root's in the guest: {s2}{ctx}"
    );
    assert!(
        s2.contains("host-line\nhost-more"),
        "the host's file and its append, seen by the guest: {s2}{ctx}"
    );
    assert!(
        s2.contains("renamed-by-host.txt")
            && !s2.contains("host-del ")
            && s2.contains("made-by-host"),
        "the host's rename, delete and new directory, seen by the guest: {s2}{ctx}"
    );
    assert!(s2.contains("renamed-gone"), "{s2}{ctx}");
    // 8 MiB, fsynced, same bytes on the host.
    let s3 = step(&sess, 3, &ctx);
    assert!(
        s3.contains("dd-rc-0") && s3.contains("big-reads-back"),
        "{s3}{ctx}"
    );
    let guest_sum = after(&s3, "big-sum-").unwrap_or_default();
    assert_eq!(guest_sum.len(), 64, "{s3}{ctx}");
    assert_eq!(host("host-big-sum-"), Some(guest_sum), "{ctx}");
    // The read-only share.
    let s4 = step(&sess, 4, &ctx);
    for op in ["create", "rm", "append"] {
        let rc = after(&s4, &format!("ro-{op}-rc-")).unwrap_or_default();
        assert!(
            !rc.is_empty() && rc != "0",
            "{op} on the read-only share: {s4}{ctx}"
        );
    }
    assert!(
        s4.contains("Read-only file system"),
        "the refusal is EROFS: {s4}{ctx}"
    );
    assert!(s4.contains("read-only-42"), "{s4}{ctx}");
    // Links, > 4 GiB, a tarball compared file by file.
    let s5 = step(&sess, 5, &ctx);
    assert!(
        s5.contains("links-2"),
        "a hard link in the guest: {s5}{ctx}"
    );
    assert_eq!(host("host-readlink-"), Some("g.txt"), "{ctx}");
    assert_eq!(host("host-links-"), Some("2"), "{ctx}");
    assert!(
        s5.contains("huge-size-5368709121") && s5.contains("huge-last-Z"),
        "a 5 GiB file on the i386 guest: {s5}{ctx}"
    );
    assert_eq!(host("host-huge-size-"), Some("5368709121-last-Z"), "{ctx}");
    assert!(
        s5.contains("untar-rc-0") && s5.contains("tree-same"),
        "the unpacked tree, compared in the guest: {s5}{ctx}"
    );
    let tree = after(&s5, "tree-sum-").unwrap_or_default();
    assert_eq!(tree.len(), 32, "{s5}{ctx}");
    assert_eq!(
        host("host-tree-sum-"),
        Some(tree),
        "the unpacked tree, file by file on the host{ctx}"
    );
    assert!(
        s5.contains("host-line"),
        "the host's symlink, followed in the guest: {s5}{ctx}"
    );
    // mmap: private on a cache=never share, shared on a cache=auto one.
    let s6 = step(&sess, 6, &ctx);
    assert!(
        s6.contains("never-private-host-line"),
        "a private mapping of a cache=never file: {s6}{ctx}"
    );
    assert!(
        s6.contains("mmapio-err-mmap-19") && s6.contains("never-shared-rc-1"),
        "a shared mapping of a cache=never file is refused with ENODEV (19) by the 6.1 guest: {s6}{ctx}"
    );
    assert!(
        s6.contains("auto-shared-host-mapped-v1"),
        "the host's file through a shared mapping (cache=auto): {s6}{ctx}"
    );
    assert!(
        s6.contains("mmapio-write-ok"),
        "a write through a shared mapping, msync'ed: {s6}{ctx}"
    );
    assert_eq!(
        host("host-sees-mapped-"),
        Some("written-through-a-mapping-size-4096"),
        "the bytes written through the guest's mapping, on the host{ctx}"
    );
    assert!(
        s6.contains("auto-again-host-mapped-v2"),
        "the host's rewrite, seen by the next mapping (close-to-open): {s6}{ctx}"
    );
    // git in the share, checked by the guest's git and the host's.
    let s7 = step(&sess, 7, &ctx);
    assert!(s7.contains("git-rc-0"), "git in the share: {s7}{ctx}");
    assert!(
        s7.contains("git-commits-4"),
        "first, topic, main and the merge, in the clone: {s7}{ctx}"
    );
    assert!(
        s7.contains("count: 0") && !s7.contains("in-pack: 0"),
        "repacked: every object in a pack: {s7}{ctx}"
    );
    let head = after(&s7, "git-head-").unwrap_or_default();
    assert_eq!(head.len(), 40, "{s7}{ctx}");
    assert!(has("host-git-fsck-clean"), "git fsck on the host{ctx}");
    assert_eq!(host("host-git-head-"), Some(head), "{ctx}");
    assert_eq!(
        host("host-git-branches-"),
        Some("from-clone+main+"),
        "the clone's branches, seen by the host{ctx}"
    );
    // virtiofsd killed: errors, not a hang; the other share still works.
    assert!(has("killed-virtiofsd-"), "virtiofsd was not killed{ctx}");
    let s5 = step(&sess, 8, &ctx);
    for op in ["cat", "touch"] {
        let rc = after(&s5, &format!("after-kill-{op}-rc-")).unwrap_or_default();
        assert!(
            rc == "1",
            "{op} on the share whose virtiofsd is gone should fail (1), not hang (137) or succeed: {rc:?} {s5}{ctx}"
        );
    }
    assert!(
        s5.contains("Input/output error"),
        "the failure is EIO: {s5}{ctx}"
    );
    assert!(s5.contains("read-only-42"), "cofs1 goes on: {s5}{ctx}");
    assert!(
        sess.daemon_stderr
            .iter()
            .any(|l| l.contains("cofs0: virtiofsd exited")),
        "the daemon reports virtiofsd's exit{ctx}"
    );

    assert_eq!(
        sess.status,
        Some(0),
        "`poweroff` ends colinux run with 0{ctx}"
    );
    assert!(has("no-virtiofsd-after-poweroff"), "{ctx}");
    assert!(
        has("virtiofsd-while-running"),
        "the killed guest's virtiofsd was never there{ctx}"
    );
    assert!(
        has("no-virtiofsd-after-kill"),
        "virtiofsd outlived the killed daemon{ctx}"
    );
    assert!(has("module-unloaded"), "{ctx}");
    assert!(
        out.passed && out.console.contains("cofs-done"),
        "the test host run failed{ctx}"
    );
}
