//! Glue for `cargo xtask rootfs` and `cargo xtask image import` (the work is
//! in `colinux-images`): what to tell a user who is not root, and the
//! summary lines.

use anyhow::{Context, Result};

/// The exact command that runs this same `cargo xtask` invocation as root:
/// the built xtask binary itself (so that root needs no Rust toolchain and
/// writes nothing into `target/`), with the same cache directory.
pub fn rerun_as_root() -> Result<String> {
    let exe = std::env::current_exe().context("cannot find the running xtask binary")?;
    let cache = colinux_buildenv::paths::cache_dir()?;
    let mut words = vec![
        "sudo".to_string(),
        "env".to_string(),
        format!("COLINUX_CACHE={}", cache.display()),
    ];
    if let Ok(filter) = std::env::var("RUST_LOG") {
        words.push(format!("RUST_LOG={filter}"));
    }
    words.push(exe.display().to_string());
    words.extend(std::env::args().skip(1));
    Ok(words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" "))
}

/// `word` as one word for a POSIX shell.
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// What `rootfs` did, on stderr (stdout carries only the path).
pub fn report_rootfs(out: &colinux_images::rootfs::Rootfs) {
    use colinux_images::size::human;
    eprintln!(
        "root file system: {} ({}; {}, {} on disk){}",
        out.image.display(),
        if out.written { "written" } else { "up to date" },
        human(out.size),
        human(out.allocated),
        if out.bootstrapped {
            "; debootstrapped into the cache"
        } else {
            ""
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(shell_quote("--size=2G"), "--size=2G");
        assert_eq!(shell_quote("/a b"), "'/a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
