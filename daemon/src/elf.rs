//! Reading the guest `vmlinux`: a 32-bit little-endian i386 ELF executable.
//!
//! Only what the host needs: the loadable segments (copied into guest RAM
//! at their physical addresses) and a few symbols. Every offset and size
//! read from the file is checked against the file's length before use, so
//! a truncated or hostile file gives an error naming what is wrong.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

/// Symbols the host needs from the guest kernel, and why.
pub const REQUIRED_SYMBOLS: &[(&str, &str)] = &[
    ("_text", "start of the kernel image"),
    ("_end", "end of the kernel image (bss included)"),
    ("startup_32", "the 32-bit entry point"),
];

/// One `PT_LOAD` segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical load address (`p_paddr`).
    pub paddr: u64,
    /// Virtual address (`p_vaddr`).
    pub vaddr: u64,
    /// Offset of the data in the file.
    pub offset: usize,
    /// Bytes present in the file.
    pub filesz: usize,
    /// Bytes in memory (the rest is zeroed).
    pub memsz: u64,
}

/// A validated guest kernel image.
#[derive(Debug)]
pub struct GuestImage {
    pub data: Vec<u8>,
    pub entry: u32,
    pub segments: Vec<Segment>,
    pub symbols: BTreeMap<String, u32>,
}

fn u16_at(d: &[u8], off: usize) -> Result<u16> {
    let b = d
        .get(off..off + 2)
        .with_context(|| format!("truncated ELF: needs 2 bytes at offset {off}"))?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(d: &[u8], off: usize) -> Result<u32> {
    let b = d
        .get(off..off + 4)
        .with_context(|| format!("truncated ELF: needs 4 bytes at offset {off}"))?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn range(d: &[u8], off: u32, len: u64, what: &str) -> Result<std::ops::Range<usize>> {
    let start = off as usize;
    let end = (off as u64)
        .checked_add(len)
        .filter(|&e| e <= d.len() as u64)
        .with_context(|| {
            format!(
                "{what} (offset {off:#x}, {len} bytes) lies beyond the end of the file ({} bytes): truncated ELF?",
                d.len()
            )
        })?;
    Ok(start..end as usize)
}

impl GuestImage {
    /// Parse and validate `data` (the whole file).
    pub fn parse(data: Vec<u8>) -> Result<GuestImage> {
        let d = &data;
        if d.len() < 52 || &d[..4] != b"\x7fELF" {
            bail!("not an ELF file");
        }
        if d[4] != 1 {
            bail!(
                "not a 32-bit ELF (EI_CLASS {}): the guest kernel must be i386",
                d[4]
            );
        }
        if d[5] != 1 {
            bail!("not a little-endian ELF");
        }
        let e_type = u16_at(d, 16)?;
        let machine = u16_at(d, 18)?;
        if machine != 3 {
            bail!("ELF machine {machine} is not i386 (3): build the guest with ARCH=i386");
        }
        if e_type != 2 {
            bail!("ELF type {e_type} is not an executable (ET_EXEC): pass vmlinux, not a module or object");
        }
        let entry = u32_at(d, 24)?;
        let phoff = u32_at(d, 28)?;
        let shoff = u32_at(d, 32)?;
        let phentsize = u16_at(d, 42)? as u64;
        let phnum = u16_at(d, 44)? as u64;
        let shentsize = u16_at(d, 46)? as u64;
        let shnum = u16_at(d, 48)? as u64;
        if phentsize != 32 || (shnum > 0 && shentsize != 40) {
            bail!("unexpected ELF header entry sizes (ph {phentsize}, sh {shentsize})");
        }
        let ph = range(d, phoff, phentsize * phnum, "the program header table")?;
        let mut segments = Vec::new();
        for i in 0..phnum as usize {
            let p = ph.start + i * 32;
            if u32_at(d, p)? != 1 {
                continue; // not PT_LOAD
            }
            let offset = u32_at(d, p + 4)?;
            let vaddr = u32_at(d, p + 8)?;
            let paddr = u32_at(d, p + 12)?;
            let filesz = u32_at(d, p + 16)?;
            let memsz = u32_at(d, p + 20)?;
            if filesz > memsz {
                bail!("segment {i}: file size {filesz} exceeds memory size {memsz}");
            }
            let r = range(d, offset, filesz as u64, &format!("segment {i}"))?;
            segments.push(Segment {
                paddr: paddr as u64,
                vaddr: vaddr as u64,
                offset: r.start,
                filesz: filesz as usize,
                memsz: memsz as u64,
            });
        }
        if segments.is_empty() {
            bail!("the ELF has no loadable segment");
        }
        let symbols = if shnum == 0 {
            BTreeMap::new()
        } else {
            read_symbols(d, shoff, shnum)?
        };
        let missing: Vec<String> = REQUIRED_SYMBOLS
            .iter()
            .filter(|(s, _)| !symbols.contains_key(*s))
            .map(|(s, why)| format!("{s} ({why})"))
            .collect();
        if !missing.is_empty() {
            bail!(
                "the kernel lacks symbols the host needs: {} (a stripped vmlinux, or not a colinux guest kernel?)",
                missing.join(", ")
            );
        }
        Ok(GuestImage {
            data,
            entry,
            segments,
            symbols,
        })
    }

    /// The bytes of a segment present in the file.
    pub fn segment_data(&self, s: &Segment) -> &[u8] {
        &self.data[s.offset..s.offset + s.filesz]
    }

    /// Highest guest-physical address any segment reaches.
    pub fn physical_end(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.paddr + s.memsz)
            .max()
            .unwrap_or(0)
    }
}

fn read_symbols(d: &[u8], shoff: u32, shnum: u64) -> Result<BTreeMap<String, u32>> {
    let sh = range(d, shoff, 40 * shnum, "the section header table")?;
    let section = |i: usize| -> Result<(u32, u32, u32, u32, u32)> {
        let p = sh.start + i * 40;
        // sh_type, sh_offset, sh_size, sh_link, sh_entsize
        Ok((
            u32_at(d, p + 4)?,
            u32_at(d, p + 16)?,
            u32_at(d, p + 20)?,
            u32_at(d, p + 24)?,
            u32_at(d, p + 36)?,
        ))
    };
    let mut out = BTreeMap::new();
    for i in 0..shnum as usize {
        let (kind, off, size, link, entsize) = section(i)?;
        if kind != 2 {
            continue; // not SHT_SYMTAB
        }
        if entsize != 16 {
            bail!("symbol table entry size {entsize} is not 16");
        }
        if link as u64 >= shnum {
            bail!("symbol table links to section {link}, which does not exist");
        }
        let syms = range(d, off, size as u64, "the symbol table")?;
        let (_, stroff, strsize, _, _) = section(link as usize)?;
        let strs = range(d, stroff, strsize as u64, "the string table")?;
        let strtab = &d[strs];
        for s in syms.step_by(16) {
            if s + 16 > d.len() {
                break;
            }
            let name = u32_at(d, s)? as usize;
            let value = u32_at(d, s + 4)?;
            let Some(rest) = strtab.get(name..) else {
                bail!("symbol name offset {name} beyond the string table");
            };
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            if end > 0 {
                out.insert(String::from_utf8_lossy(&rest[..end]).into_owned(), value);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid i386 ELF with one segment and the required symbols.
    pub fn tiny_elf() -> Vec<u8> {
        let mut d = vec![0u8; 52];
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = 1;
        d[5] = 1;
        d[6] = 1;
        d[16..18].copy_from_slice(&2u16.to_le_bytes());
        d[18..20].copy_from_slice(&3u16.to_le_bytes());
        d[24..28].copy_from_slice(&0x100000u32.to_le_bytes());
        d[28..32].copy_from_slice(&52u32.to_le_bytes()); // phoff
        d[42..44].copy_from_slice(&32u16.to_le_bytes());
        d[44..46].copy_from_slice(&1u16.to_le_bytes());
        d[46..48].copy_from_slice(&40u16.to_le_bytes());
        // Program header at 52: PT_LOAD of 4 bytes at offset 84, paddr 1 MiB, memsz 16.
        let mut ph = [0u8; 32];
        ph[0..4].copy_from_slice(&1u32.to_le_bytes());
        ph[4..8].copy_from_slice(&84u32.to_le_bytes());
        ph[8..12].copy_from_slice(&0xc010_0000u32.to_le_bytes());
        ph[12..16].copy_from_slice(&0x10_0000u32.to_le_bytes());
        ph[16..20].copy_from_slice(&4u32.to_le_bytes());
        ph[20..24].copy_from_slice(&16u32.to_le_bytes());
        d.extend_from_slice(&ph);
        d.extend_from_slice(b"CODE"); // offset 84
                                      // String table at 88.
        let strtab = b"\0_text\0_end\0startup_32\0";
        let stroff = d.len() as u32;
        d.extend_from_slice(strtab);
        while !d.len().is_multiple_of(4) {
            d.push(0);
        }
        // Symbol table.
        let symoff = d.len() as u32;
        d.extend_from_slice(&[0u8; 16]);
        for (name, value) in [(1u32, 0xc010_0000u32), (7, 0xc010_0010), (12, 0xc010_0000)] {
            let mut s = [0u8; 16];
            s[0..4].copy_from_slice(&name.to_le_bytes());
            s[4..8].copy_from_slice(&value.to_le_bytes());
            d.extend_from_slice(&s);
        }
        // Section headers: null, strtab, symtab.
        let shoff = d.len() as u32;
        d.extend_from_slice(&[0u8; 40]);
        let mut st = [0u8; 40];
        st[4..8].copy_from_slice(&3u32.to_le_bytes());
        st[16..20].copy_from_slice(&stroff.to_le_bytes());
        st[20..24].copy_from_slice(&(strtab.len() as u32).to_le_bytes());
        d.extend_from_slice(&st);
        let mut sy = [0u8; 40];
        sy[4..8].copy_from_slice(&2u32.to_le_bytes());
        sy[16..20].copy_from_slice(&symoff.to_le_bytes());
        sy[20..24].copy_from_slice(&64u32.to_le_bytes());
        sy[24..28].copy_from_slice(&1u32.to_le_bytes());
        sy[36..40].copy_from_slice(&16u32.to_le_bytes());
        d.extend_from_slice(&sy);
        d[32..36].copy_from_slice(&shoff.to_le_bytes());
        d[48..50].copy_from_slice(&3u16.to_le_bytes());
        d
    }

    #[test]
    fn parses_a_valid_image() {
        let img = GuestImage::parse(tiny_elf()).expect("valid");
        assert_eq!(img.segments.len(), 1);
        assert_eq!(img.segment_data(&img.segments[0]), b"CODE");
        assert_eq!(img.physical_end(), 0x10_0010);
        assert_eq!(img.symbols["_end"], 0xc010_0010);
    }

    #[test]
    fn rejects_bad_images_with_a_reason() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"hello".to_vec(), "not an ELF"),
            (
                {
                    let mut d = tiny_elf();
                    d[4] = 2;
                    d
                },
                "not a 32-bit ELF",
            ),
            (
                {
                    let mut d = tiny_elf();
                    d[18] = 62;
                    d
                },
                "not i386",
            ),
            (
                {
                    let mut d = tiny_elf();
                    d[16] = 1;
                    d
                },
                "not an executable",
            ),
            (
                {
                    let mut d = tiny_elf();
                    d.truncate(70);
                    d
                },
                "truncated",
            ),
            (
                {
                    let mut d = tiny_elf();
                    d[52 + 16] = 99;
                    d
                },
                "exceeds memory size",
            ),
            (
                {
                    let mut d = tiny_elf();
                    d[52 + 4] = 0xff;
                    d[52 + 5] = 0xff;
                    d
                },
                "beyond the end",
            ),
            (
                {
                    let mut d = tiny_elf();
                    let p = d.windows(10).position(|w| w == b"startup_32").unwrap();
                    d[p] = b'X';
                    d
                },
                "startup_32",
            ),
        ];
        for (data, want) in cases {
            let e = GuestImage::parse(data).expect_err(want);
            assert!(
                format!("{e:#}").contains(want),
                "wanted {want:?}, got {e:#}"
            );
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let full = tiny_elf();
        for n in 0..full.len() {
            assert!(
                GuestImage::parse(full[..n].to_vec()).is_err(),
                "prefix of {n} bytes"
            );
        }
    }
}
