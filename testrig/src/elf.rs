//! What the rig checks of the programs it puts into the guest: ELF32 i386
//! static executables (the guest has no libraries).

use anyhow::{bail, Context, Result};

/// Require an ELF32 little-endian i386 executable without a program
/// interpreter or dynamic section (static). The error says what it is
/// instead.
pub fn check_i386_static(data: &[u8]) -> Result<()> {
    if data.get(..4) != Some(b"\x7fELF".as_slice()) {
        bail!(
            "not an ELF file (it starts with {:02x?})",
            &data[..data.len().min(4)]
        );
    }
    let class = data.get(4).copied().unwrap_or(0);
    let endian = data.get(5).copied().unwrap_or(0);
    if class != 1 {
        bail!(
            "not a 32-bit ELF (class {class}: {})",
            if class == 2 { "64-bit" } else { "unknown" }
        );
    }
    if endian != 1 {
        bail!("not a little-endian ELF (data encoding {endian})");
    }
    let u16_at = |o: usize| -> Result<u16> {
        data.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .with_context(|| format!("truncated ELF header (offset {o})"))
    };
    let u32_at = |o: usize| -> Result<u32> {
        data.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .with_context(|| format!("truncated ELF (offset {o})"))
    };
    let (e_type, machine) = (u16_at(16)?, u16_at(18)?);
    if machine != 3 {
        bail!(
            "not an i386 ELF (e_machine {machine}{})",
            match machine {
                62 => ": x86_64",
                40 => ": ARM",
                183 => ": AArch64",
                _ => "",
            }
        );
    }
    if e_type != 2 {
        bail!(
            "not an executable (e_type {e_type}{})",
            match e_type {
                1 => ": relocatable object",
                3 => ": shared object or PIE",
                4 => ": core dump",
                _ => "",
            }
        );
    }
    let phoff = u32_at(28)? as usize;
    let phentsize = u16_at(42)? as usize;
    let phnum = u16_at(44)? as usize;
    if phnum == 0 || phentsize < 32 {
        bail!("no program headers ({phnum} of size {phentsize})");
    }
    for i in 0..phnum {
        let p_type = u32_at(phoff + i * phentsize)?;
        match p_type {
            3 => bail!("dynamically linked (it has a PT_INTERP program header)"),
            2 => bail!("dynamically linked (it has a PT_DYNAMIC program header)"),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// The smallest ELF header + one program header that passes or fails
    /// the check, as wanted.
    pub(crate) fn elf(class: u8, machine: u16, e_type: u16, p_type: u32) -> Vec<u8> {
        let mut d = vec![0u8; 52 + 32];
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = class;
        d[5] = 1;
        d[6] = 1;
        d[16..18].copy_from_slice(&e_type.to_le_bytes());
        d[18..20].copy_from_slice(&machine.to_le_bytes());
        d[28..32].copy_from_slice(&52u32.to_le_bytes());
        d[42..44].copy_from_slice(&32u16.to_le_bytes());
        d[44..46].copy_from_slice(&1u16.to_le_bytes());
        d[52..56].copy_from_slice(&p_type.to_le_bytes());
        d
    }

    #[test]
    fn elf_check_accepts_static_i386_and_names_what_is_wrong() {
        check_i386_static(&elf(1, 3, 2, 1)).unwrap();
        let err = |d: &[u8]| format!("{:#}", check_i386_static(d).unwrap_err());
        assert!(err(b"#!/bin/sh\necho hi\n").contains("not an ELF"));
        assert!(err(&elf(2, 62, 2, 1)).contains("64-bit"));
        assert!(err(&elf(1, 40, 2, 1)).contains("not an i386 ELF"));
        assert!(err(&elf(1, 3, 3, 1)).contains("shared object or PIE"));
        assert!(err(&elf(1, 3, 2, 3)).contains("PT_INTERP"));
        assert!(err(&elf(1, 3, 2, 2)).contains("PT_DYNAMIC"));
        assert!(err(&elf(1, 3, 2, 1)[..40]).contains("truncated"));
        // This very test binary is an x86_64 (or other 64-bit) program.
        if let Ok(me) = std::env::current_exe().and_then(std::fs::read) {
            assert!(check_i386_static(&me).is_err());
        }
    }
}
