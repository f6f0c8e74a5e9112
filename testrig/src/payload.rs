//! The test payload: a tiny 32-bit guest that is not Linux
//! (`tests/payload/`, see its README), built with the host's `gcc -m32`
//! against the ABI header that the patch series defines.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use colinux_buildenv::{paths, sysdeps};

/// The payload's sources, relative to the repository root.
pub const SOURCE_DIR: &str = "tests/payload";

/// The guest virtual address of guest-physical 0.
pub const VA_OFFSET: u64 = 0xc000_0000;

/// Where the payload is built: `<target>/payload`.
pub fn build_dir() -> PathBuf {
    paths::target_dir().join("payload")
}

/// Write `contents` to `path` unless it already holds exactly that.
fn write_if_changed(path: &Path, contents: &[u8]) -> Result<()> {
    if std::fs::read(path).ok().as_deref() == Some(contents) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    // Write a sibling and rename it, so that a concurrent build never
    // reads a half-written file.
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

/// Build the test payload (every call: it is tiny) and return the path of
/// `payload.elf`.
pub fn build_payload() -> Result<PathBuf> {
    sysdeps::ensure("building the test payload", &["gcc", "gcc-multilib"])?;
    let root = paths::repo_root();
    let src = root.join(SOURCE_DIR);
    let out_dir = build_dir();
    let include = out_dir.join("include");

    let header = colinux_series::apply::abi_header(&root.join("linux-patches"))
        .context("extracting the ABI header from linux-patches/")?;
    write_if_changed(
        &include.join("linux").join("cooperative.h"),
        header.as_bytes(),
    )?;

    let elf = out_dir.join("payload.elf");
    let tmp = out_dir.join(format!("payload.elf.tmp.{}", std::process::id()));
    tracing::info!("building the test payload {}", elf.display());
    crate::programs::gcc_freestanding(
        "the test payload",
        &[
            "-mno-sse".into(),
            "-mno-mmx".into(),
            format!("-Wl,-T,{}", src.join("payload.ld").display()).into(),
            format!("-I{}", include.display()).into(),
            src.join("start.S").into_os_string(),
            src.join("payload.c").into_os_string(),
        ],
        &tmp,
    )?;
    std::fs::rename(&tmp, &elf)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), elf.display()))?;
    Ok(elf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::process::Command;

    use super::*;

    fn run(cmd: &str, elf: &Path, args: &[&str]) -> String {
        let out = Command::new(cmd).args(args).arg(elf).output().unwrap();
        assert!(out.status.success(), "{cmd} failed: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn payload_builds_as_i386_exec() {
        let elf = build_payload().unwrap();
        let bytes = std::fs::read(&elf).unwrap();
        assert_eq!(&bytes[..4], b"\x7fELF");
        assert_eq!(bytes[4], 1, "EI_CLASS: ELFCLASS32");
        assert_eq!(bytes[5], 1, "EI_DATA: little-endian");
        assert_eq!(u16::from_le_bytes([bytes[16], bytes[17]]), 2, "ET_EXEC");
        assert_eq!(u16::from_le_bytes([bytes[18], bytes[19]]), 3, "EM_386");

        let nm = run("nm", &elf, &[]);
        for sym in [
            "_text",
            "_end",
            "startup_32",
            "payload_roundtrips",
            "payload_exceptions",
            "payload_busy",
            "payload_busy3",
            "payload_spin",
            "payload_int_f8",
        ] {
            assert!(
                nm.lines().any(|l| l.split_whitespace().nth(2) == Some(sym)),
                "no symbol {sym} in:\n{nm}"
            );
        }

        let phdrs = run("readelf", &elf, &["-lW"]);
        let mut loads = 0;
        for line in phdrs.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.first() != Some(&"LOAD") {
                continue;
            }
            let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
            let (virt, phys) = (hex(f[2]), hex(f[3]));
            assert_eq!(phys, virt - VA_OFFSET, "PT_LOAD: {line}");
            loads += 1;
        }
        assert!(loads > 0, "no PT_LOAD in:\n{phdrs}");
    }
}
