//! Integration tests live in `tests/tests/`; this library holds what the
//! test-host scenarios share.

pub mod guest;

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
