//! Integration tests live in `tests/tests/`; this library holds what the
//! test-host scenarios share.

pub mod ext4;
pub mod guest;

/// The lines a test-host script printed with `PREFIX| ` in front (a
/// captured file, a listing), without the prefix.
pub fn captured<'a>(console: &'a str, prefix: &str) -> Vec<&'a str> {
    let p = format!("{prefix}| ");
    console
        .lines()
        .filter_map(|l| l.find(&p).map(|at| &l[at + p.len()..]))
        .collect()
}

/// What a failed assertion about a test-host run shows: its outcome, its
/// log and the last `lines` lines of the host console.
pub fn host_context(out: &colinux_testrig::testhost::Outcome, lines: usize) -> String {
    let tail: Vec<&str> = out.console.lines().rev().take(lines).collect();
    format!(
        "\n--- test host: {} (log: {})\n--- host console, last lines:\n{}\n",
        out.reason,
        out.log.display(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}

/// Run `s` in the test host (pass or fail); the outcome and the context
/// to show with a failed assertion ([`host_context`], `lines` lines).
pub fn run_with_context(
    s: &colinux_testrig::testhost::Scenario,
    lines: usize,
) -> (colinux_testrig::testhost::Outcome, String) {
    let out = colinux_testrig::testhost::run(s).expect("the test host runs");
    let ctx = host_context(&out, lines);
    (out, ctx)
}

/// Run `s` in the test host and require it to pass (its script exited 0
/// and the host kernel log is clean); the outcome.
pub fn run_passing(s: &colinux_testrig::testhost::Scenario) -> colinux_testrig::testhost::Outcome {
    let out = colinux_testrig::testhost::run(s).expect("the test host runs");
    assert!(
        out.passed,
        "scenario {} failed: {}{}",
        s.name,
        out.reason,
        host_context(&out, 40)
    );
    out
}

/// `linux-patches/` moved from the series base onto `v2` by the rebase
/// engine, in a temporary directory of the cache: the rebased series in
/// `out/`, the work tree in `work/`.
pub fn rebase_linux_patches(v2: &str) -> (tempfile::TempDir, colinux_series::rebase::RebaseRun) {
    let manifest = xtask::manifest::Manifest::load_default().expect("kernels.toml");
    let fetch = xtask::fetch::FetchOptions::default();
    let v1 = xtask::fetch::fetch_kernel(&manifest, &manifest.series.base, &fetch).expect("v1");
    let v2 = xtask::fetch::fetch_kernel(&manifest, v2, &fetch).expect("v2");
    let cache = colinux_buildenv::paths::cache_dir().expect("cache");
    let tmp = tempfile::tempdir_in(cache).expect("tempdir");
    let run = colinux_series::rebase::start(&colinux_series::rebase::RebaseOptions {
        series_dir: colinux_buildenv::paths::repo_root().join("linux-patches"),
        out_dir: tmp.path().join("out"),
        v1_tree: v1.path.clone(),
        v2_tree: v2.path.clone(),
        work_dir: tmp.path().join("work"),
        manifest: None,
    })
    .expect("rebase");
    (tmp, run)
}

/// Shell functions for test-host scenarios (busybox sh), prepended to
/// their scripts:
/// - `free_kb`: free memory in kB — MemFree plus the pages parked on the
///   per-CPU free lists (/proc/zoneinfo "count:"), which MemFree does not
///   include and which a large free fills up;
/// - `start_host_counter`: a host process that counts its own progress in
///   /tmp/progress (its pid in `$COUNTER`), started and seen counting;
/// - `progress`: its current count;
/// - `timer_count`: local timer interrupts so far, both CPUs.
pub const SHELL_HELPERS: &str = r#"
free_kb() {
    sync; echo 3 > /proc/sys/vm/drop_caches
    mem=$(awk '/^MemFree:/ {print $2}' /proc/meminfo)
    pcp=$(awk '$1 == "count:" {s += $2} END {print s * 4}' /proc/zoneinfo)
    echo $((mem + pcp))
}
start_host_counter() {
    ( i=0; while true; do i=$((i + 1)); echo $i > /tmp/progress; done ) &
    COUNTER=$!
    until [ -s /tmp/progress ]; do sleep 0.1; done
}
progress() {
    p=$(cat /tmp/progress)
    while [ -z "$p" ]; do p=$(cat /tmp/progress); done
    echo $p
}
timer_count() { awk '/^ *LOC:/ {print $2 + $3}' /proc/interrupts; }
"#;
