//! The xtask's log lines are plain text when they do not go to a terminal
//! (CI logs, files, pipes): no colour escapes.

use std::process::Command;

#[test]
fn log_lines_carry_no_colour_escapes_into_a_pipe() {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["codegen", "--check"])
        .output()
        .expect("run the xtask");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`xtask codegen --check` failed: {stderr}"
    );
    assert!(
        stderr.contains("up to date"),
        "no log line from `xtask codegen --check`: {stderr:?}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "colour escapes in log lines written to a pipe: {stderr:?}"
    );
}
