//! The xtask's command line: log lines are plain text when they do not go
//! to a terminal (CI logs, files, pipes); `rebase --keep-going` exists and
//! refuses to run without `--output` (it leaves conflicted patches out).

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

#[test]
fn rebase_keep_going_needs_an_output_directory() {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["rebase", "--onto", "6.12.100", "--keep-going"])
        .output()
        .expect("run the xtask");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted without --output: {stderr}");
    assert!(
        stderr.contains("--output"),
        "the refusal does not name --output: {stderr}"
    );
    let help = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["rebase", "--help"])
        .output()
        .expect("run the xtask");
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("--keep-going"),
        "`rebase --help` does not show --keep-going"
    );
}
