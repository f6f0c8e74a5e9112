//! The Rust toolchain's targets and components, as `rust-toolchain.toml`
//! names them.
//!
//! rustup installs a toolchain file's targets and components only when it
//! installs the toolchain itself: on a machine where the pinned toolchain was
//! already there without them, building the driver core fails with "can't
//! find crate for `core`" (`x86_64-unknown-none`). [`ensure`] adds what is
//! missing with rustup, as [`colinux_buildenv::sysdeps::ensure`] does for Debian
//! packages, or says the exact command when it cannot.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use colinux_buildenv::paths;

/// What `rust-toolchain.toml` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Wanted {
    pub channel: String,
    pub targets: Vec<String>,
    pub components: Vec<String>,
}

#[derive(serde::Deserialize)]
struct File {
    toolchain: Section,
}

#[derive(serde::Deserialize)]
struct Section {
    channel: String,
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    components: Vec<String>,
}

/// Parse a `rust-toolchain.toml`.
pub fn parse(text: &str, path: &Path) -> Result<Wanted> {
    let f: File = toml::from_str(text)
        .with_context(|| format!("{}: not a toolchain file", path.display()))?;
    Ok(Wanted {
        channel: f.toolchain.channel,
        targets: f.toolchain.targets,
        components: f.toolchain.components,
    })
}

/// The repository's `rust-toolchain.toml`.
pub fn wanted() -> Result<Wanted> {
    let path = paths::repo_root().join("rust-toolchain.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text, &path)
}

/// What of `wanted` is not in rustup's lists of installed targets and
/// components (`rustup target list --installed`, `rustup component list
/// --installed`: one name a line; components carry their host target as a
/// suffix, `clippy-x86_64-unknown-linux-gnu`, except target-independent
/// ones such as `rust-src`).
pub fn missing(wanted: &Wanted, targets: &str, components: &str) -> (Vec<String>, Vec<String>) {
    let have_targets: Vec<&str> = targets.lines().map(str::trim).collect();
    let have_components: Vec<&str> = components.lines().map(str::trim).collect();
    let targets = wanted
        .targets
        .iter()
        .filter(|t| !have_targets.contains(&t.as_str()))
        .cloned()
        .collect();
    let components = wanted
        .components
        .iter()
        .filter(|c| {
            !have_components.iter().any(|h| {
                *h == c.as_str()
                    || h.strip_prefix(c.as_str())
                        .is_some_and(|rest| rest.starts_with('-') && rest.contains("-unknown-"))
            })
        })
        .cloned()
        .collect();
    (targets, components)
}

fn rustup(args: &[&str]) -> Result<String> {
    let out = Command::new("rustup")
        .args(args)
        .output()
        .with_context(|| format!("cannot run rustup {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "rustup {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Make sure the pinned toolchain has the targets and components
/// `rust-toolchain.toml` names: add the missing ones with rustup, or fail
/// with the command that would.
pub fn ensure() -> Result<()> {
    let w = wanted()?;
    if colinux_buildenv::sysdeps::which("rustup").is_none() {
        tracing::debug!("no rustup: cannot check the toolchain's targets and components");
        return Ok(());
    }
    let ch = w.channel.as_str();
    let targets = rustup(&["target", "list", "--installed", "--toolchain", ch])?;
    let components = rustup(&["component", "list", "--installed", "--toolchain", ch])?;
    let (targets, components) = missing(&w, &targets, &components);
    for (kind, names) in [("target", &targets), ("component", &components)] {
        if names.is_empty() {
            continue;
        }
        tracing::info!(
            "adding the Rust {kind}s rust-toolchain.toml names to toolchain {ch}: {}",
            names.join(" ")
        );
        let mut args = vec![kind, "add", "--toolchain", ch];
        args.extend(names.iter().map(String::as_str));
        rustup(&args).with_context(|| {
            format!(
                "cannot add the Rust {kind}s {}; run:\n    rustup {}",
                names.join(" "),
                args.join(" ")
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w() -> Wanted {
        parse(
            r#"
[toolchain]
channel = "1.95.0"
components = ["rustfmt", "clippy", "rust-src"]
targets = ["x86_64-unknown-none", "x86_64-unknown-linux-musl"]
profile = "minimal"
"#,
            Path::new("rust-toolchain.toml"),
        )
        .expect("a toolchain file")
    }

    #[test]
    fn the_repositorys_toolchain_file_parses() {
        let w = wanted().expect("rust-toolchain.toml");
        assert!(
            w.targets.iter().any(|t| t == "x86_64-unknown-none"),
            "{w:?}"
        );
    }

    #[test]
    fn finds_what_is_missing() {
        let installed_targets = "x86_64-unknown-linux-gnu\nx86_64-unknown-linux-musl\n";
        let installed_components =
            "cargo-x86_64-unknown-linux-gnu\nclippy-x86_64-unknown-linux-gnu\nrust-src\nrust-std-x86_64-unknown-linux-gnu\nrustc-x86_64-unknown-linux-gnu\n";
        let (t, c) = missing(&w(), installed_targets, installed_components);
        assert_eq!(t, vec!["x86_64-unknown-none".to_string()]);
        assert_eq!(c, vec!["rustfmt".to_string()]);
    }

    #[test]
    fn nothing_missing_when_all_are_there() {
        let (t, c) = missing(
            &w(),
            "x86_64-unknown-none\nx86_64-unknown-linux-musl\nx86_64-unknown-linux-gnu\n",
            "rustfmt-x86_64-unknown-linux-gnu\nclippy-x86_64-unknown-linux-gnu\nrust-src\n",
        );
        assert!(t.is_empty() && c.is_empty(), "{t:?} {c:?}");
    }

    #[test]
    fn a_broken_toolchain_file_is_an_error_naming_it() {
        let err = parse("[toolchain]\n", Path::new("x/rust-toolchain.toml"))
            .expect_err("no channel")
            .to_string();
        assert!(err.contains("x/rust-toolchain.toml"), "{err}");
    }
}
