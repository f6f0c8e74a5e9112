//! `cargo xtask codegen`: Rust bindings for the two ABI headers, with bindgen.
//!
//! The guest <-> host ABI, `include/uapi/linux/cooperative.h`, is defined by
//! the guest patch series; the driver <-> daemon ioctls, [`IOCTL_HEADER`],
//! by the driver (one place owns each). Codegen rebuilds the guest header
//! from the series (every patch that touches it, in order, through the same
//! patch engine `apply` uses), runs bindgen on both headers twice — for
//! x86_64 (the host) and for i386 (the guest) — requires both outputs to be
//! identical (so the layout is the same on both sides), and writes the
//! result to `abi/src/generated.rs`, which is committed. `--check` fails
//! when that file is stale; CI runs it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::patch;

/// Path of the ABI header inside a kernel tree.
pub const HEADER: &str = "include/uapi/linux/cooperative.h";

/// The driver's ioctl header, in the repository (included as
/// `<colinux/ioctl.h>`).
pub const IOCTL_HEADER: &str = "driver/include/colinux/ioctl.h";

/// Lay out, in `dir`, the headers bindgen and C checks compile:
/// `linux/cooperative.h` (from the series), `colinux/ioctl.h` (the
/// driver's) and `colinux_abi.h`, which includes both. Returns the latter.
pub fn write_headers(dir: &Path) -> Result<PathBuf> {
    let series = crate::paths::repo_root().join("linux-patches");
    let header = header_from_series(&series)?;
    let ioctl_src = crate::paths::repo_root().join(IOCTL_HEADER);
    let ioctl = std::fs::read_to_string(&ioctl_src)
        .with_context(|| format!("cannot read {}", ioctl_src.display()))?;
    for (path, text) in [
        ("linux/cooperative.h", header.as_str()),
        ("colinux/ioctl.h", ioctl.as_str()),
        (
            "colinux_abi.h",
            "#include <linux/cooperative.h>\n#include <colinux/ioctl.h>\n",
        ),
    ] {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok(dir.join("colinux_abi.h"))
}

/// Where the generated bindings live.
pub fn output_path() -> PathBuf {
    crate::paths::repo_root().join("abi/src/generated.rs")
}

/// The header as the series defines it: every patch of `series_dir` that
/// touches it, applied in order onto nothing.
pub fn header_from_series(series_dir: &Path) -> Result<String> {
    let mut tree: BTreeMap<String, (Vec<u8>, u32)> = BTreeMap::new();
    let mut touched = false;
    for loaded in crate::series::load_series(series_dir)? {
        let (e, mut p) = (loaded.entry, loaded.parsed);
        let path = series_dir.join(&e.name);
        p.files.retain(|f| {
            [&f.old_path, &f.new_path].iter().any(|n| {
                n.as_deref()
                    .is_some_and(|n| strip(n, e.strip).as_deref() == Some(HEADER))
            })
        });
        if p.files.is_empty() {
            continue;
        }
        touched = true;
        let applied = patch::apply::apply(&tree, &p, e.strip, e.reverse, 0)
            .map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
        for ch in applied.changes {
            match ch {
                patch::apply::Change::Write {
                    path,
                    content,
                    mode,
                } => {
                    tree.insert(path, (content, mode));
                }
                patch::apply::Change::Delete { path } => {
                    tree.remove(&path);
                }
            }
        }
    }
    if !touched {
        anyhow::bail!(
            "no patch in {} creates {HEADER}",
            series_dir.join("series").display()
        );
    }
    let (content, _) = tree
        .remove(HEADER)
        .ok_or_else(|| anyhow::anyhow!("the series deletes {HEADER}"))?;
    String::from_utf8(content).context("the ABI header is not UTF-8")
}

fn strip(name: &str, n: u32) -> Option<String> {
    let mut parts = name.split('/');
    for _ in 0..n {
        parts.next()?;
    }
    let rest: Vec<&str> = parts.collect();
    (!rest.is_empty()).then(|| rest.join("/"))
}

/// Run bindgen on `header_dir/colinux_abi.h` (see [`write_headers`]) for
/// one clang target.
fn bindgen_for(header_dir: &Path, target: &str) -> Result<String> {
    let header = header_dir.join("colinux_abi.h");
    let bindings = bindgen::Builder::default()
        .header(header.display().to_string())
        .clang_arg(format!("--target={target}"))
        .clang_arg(format!("-I{}", header_dir.display()))
        // The uapi <asm/types.h> is the same for i386 and x86_64.
        .clang_arg("-idirafter/usr/include/x86_64-linux-gnu")
        .clang_arg("-std=c11")
        .allowlist_item("(COOPERATIVE|cooperative)_.*")
        .use_core()
        .derive_default(true)
        .derive_eq(true)
        .layout_tests(true)
        .generate_comments(true)
        .prepend_enum_name(false)
        .generate()
        .map_err(|e| anyhow::anyhow!("bindgen failed for {target}: {e}"))?;
    Ok(bindings.to_string())
}

/// Generate the bindings text (with its header comment).
pub fn generate() -> Result<String> {
    crate::sysdeps::ensure("generating the ABI bindings", crate::sysdeps::CODEGEN)?;
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    write_headers(dir.path())?;
    let host = bindgen_for(dir.path(), "x86_64-unknown-linux-gnu")?;
    let guest = bindgen_for(dir.path(), "i386-unknown-linux-gnu")?;
    // bindgen spells out `#[repr(align(8))]` for i386, where Rust aligns
    // u64 to 4 bytes; x86_64 needs no attribute for the same layout. Every
    // size, offset and alignment is otherwise the same text (bindgen's layout
    // assertions included), which is what is compared.
    let normalize = |s: &str| s.replace("#[repr(align(8))]\n", "");
    if normalize(&host) != normalize(&guest) {
        let diff = diffy::create_patch(&guest, &host);
        anyhow::bail!(
            "the ABI headers lay out differently for i386 (guest) and x86_64 (host):\n{diff}"
        );
    }
    Ok(format!(
        "// @generated by `cargo xtask codegen` from {HEADER}\n\
         // as defined by linux-patches/ and from {IOCTL_HEADER}, for the i386 guest\n\
         // (the x86_64 host's layout is identical).\n\
         // Do not edit: change the headers and rerun `cargo xtask codegen`.\n\n{guest}"
    ))
}

/// Write the bindings, or with `check` fail if the committed ones differ.
pub fn codegen(check: bool) -> Result<()> {
    let text = generate()?;
    let out = output_path();
    let old = std::fs::read_to_string(&out).unwrap_or_default();
    if check {
        if old != text {
            anyhow::bail!(
                "{} is stale: the ABI header in linux-patches/ or {IOCTL_HEADER} changed. Run `cargo xtask codegen` and commit the result.",
                out.display()
            );
        }
        tracing::info!("{} is up to date", out.display());
        return Ok(());
    }
    if old == text {
        tracing::info!("{} is up to date", out.display());
    } else {
        std::fs::write(&out, text).with_context(|| format!("cannot write {}", out.display()))?;
        tracing::info!("wrote {}", out.display());
    }
    Ok(())
}
