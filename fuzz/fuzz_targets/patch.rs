//! A malformed patch of the series (`apply`, `rebase`, `refresh` read
//! them): parsed, then applied to a small tree in memory forwards and in
//! reverse, exactly and with fuzz. A panic (overflow checks are on), a hang
//! or runaway memory is a finding; errors are the expected answer.
//!
//! (Applying forwards then in reverse does not always give the tree back,
//! in GNU patch either: a file created by a hunk whose old name is not
//! `/dev/null` stays, empty or not. Placement results are compared with
//! GNU patch by the crate's own tests, not here.)
#![no_main]

use colinux_patch::{apply_in_memory, parse_patch, MemTree};
use libfuzzer_sys::fuzz_target;

fn tree() -> MemTree {
    let mut t = MemTree::new();
    let lines: String = (1..=40).map(|i| format!("line {i}\n")).collect();
    t.insert("a/file.c".into(), (lines.clone().into_bytes(), 0o100644));
    t.insert("file.c".into(), (lines.into_bytes(), 0o100644));
    t.insert(
        "dir/run.sh".into(),
        (b"#!/bin/sh\necho hi\n".to_vec(), 0o100755),
    );
    t
}

fuzz_target!(|data: &[u8]| {
    let Ok(patch) = parse_patch(data, "fuzz.patch") else {
        return;
    };
    for strip in [0, 1] {
        for fuzz in [0, 2] {
            let mut t = tree();
            if apply_in_memory(&mut t, &patch, strip, false, fuzz).is_ok() {
                let _ = apply_in_memory(&mut t, &patch, strip, true, fuzz);
            }
        }
    }
});
