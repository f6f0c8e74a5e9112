//! The ext2/3/4 superblock: enough of it to recognise a file system and say
//! what it is (kind, size, label).
//!
//! The superblock starts 1024 bytes into the file system; its magic number
//! 0xEF53 is the little-endian `u16` at offset 56 in it (byte 1080 of the
//! file system). Field offsets are those of the kernel's
//! `struct ext4_super_block` (`fs/ext4/ext4.h`).

use std::io::{Read, Seek, SeekFrom};

/// Where the superblock starts, from the start of the file system.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
/// The magic number, at byte [`MAGIC_OFFSET`] of the file system.
pub const MAGIC: u16 = 0xEF53;
/// The byte of the file system where [`MAGIC`] is (1024 + 56).
pub const MAGIC_OFFSET: u64 = SUPERBLOCK_OFFSET + 56;

const COMPAT_HAS_JOURNAL: u32 = 0x4;
const INCOMPAT_EXTENTS: u32 = 0x40;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_FLEX_BG: u32 = 0x200;

/// Which of the three a file system is, by its features (as `blkid` says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtKind {
    Ext2,
    Ext3,
    Ext4,
}

impl std::fmt::Display for ExtKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExtKind::Ext2 => "ext2",
            ExtKind::Ext3 => "ext3",
            ExtKind::Ext4 => "ext4",
        })
    }
}

/// What a superblock says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtSuperblock {
    pub kind: ExtKind,
    /// Bytes per block (1024 << `s_log_block_size`).
    pub block_size: u64,
    /// Blocks in the file system.
    pub blocks: u64,
    /// The volume label (empty when none).
    pub label: String,
}

impl ExtSuperblock {
    /// The file system's size in bytes.
    pub fn size(&self) -> u64 {
        self.blocks.saturating_mul(self.block_size)
    }

    /// "ext4, 512 MiB, label colinux-root".
    pub fn describe(&self) -> String {
        let label = if self.label.is_empty() {
            "no label".to_string()
        } else {
            format!("label {}", self.label)
        };
        format!(
            "{}, {}, {label}",
            self.kind,
            crate::size::human(self.size())
        )
    }
}

/// Parse the 1024 bytes of a superblock; `None` when the magic is not
/// there or the block size is absurd.
pub fn parse(sb: &[u8]) -> Option<ExtSuperblock> {
    let u16_at = |o: usize| sb.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        sb.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if u16_at(56)? != MAGIC {
        return None;
    }
    let log_block = u32_at(24)?;
    // 1 KiB to 64 KiB blocks are what ext4 allows.
    if log_block > 6 {
        return None;
    }
    let (compat, incompat) = (u32_at(92)?, u32_at(96)?);
    let mut blocks = u64::from(u32_at(4)?);
    if incompat & INCOMPAT_64BIT != 0 {
        blocks |= u64::from(u32_at(0x150)?) << 32;
    }
    let kind = if incompat & (INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG) != 0 {
        ExtKind::Ext4
    } else if compat & COMPAT_HAS_JOURNAL != 0 {
        ExtKind::Ext3
    } else {
        ExtKind::Ext2
    };
    let name = sb.get(120..136)?;
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Some(ExtSuperblock {
        kind,
        block_size: 1024u64 << log_block,
        blocks,
        label: String::from_utf8_lossy(&name[..end]).into_owned(),
    })
}

/// The superblock of a file system starting at byte `offset` of `r`, if
/// there is one (a file too short to hold one has none).
pub fn probe<R: Read + Seek>(r: &mut R, offset: u64) -> std::io::Result<Option<ExtSuperblock>> {
    r.seek(SeekFrom::Start(offset + SUPERBLOCK_OFFSET))?;
    let mut sb = vec![0u8; 1024];
    let mut got = 0;
    while got < sb.len() {
        match r.read(&mut sb[got..])? {
            0 => return Ok(None),
            n => got += n,
        }
    }
    Ok(parse(&sb))
}

/// A minimal superblock for tests: magic, block size, block count, label
/// and the features that make it `kind`.
#[cfg(test)]
pub(crate) fn fake_superblock(kind: ExtKind, block_size: u64, blocks: u32, label: &str) -> Vec<u8> {
    let mut sb = vec![0u8; 1024];
    sb[4..8].copy_from_slice(&blocks.to_le_bytes());
    let log = (block_size / 1024).trailing_zeros();
    sb[24..28].copy_from_slice(&log.to_le_bytes());
    sb[56..58].copy_from_slice(&MAGIC.to_le_bytes());
    let (compat, incompat) = match kind {
        ExtKind::Ext2 => (0u32, 0u32),
        ExtKind::Ext3 => (COMPAT_HAS_JOURNAL, 0),
        ExtKind::Ext4 => (COMPAT_HAS_JOURNAL, INCOMPAT_EXTENTS | INCOMPAT_FLEX_BG),
    };
    sb[92..96].copy_from_slice(&compat.to_le_bytes());
    sb[96..100].copy_from_slice(&incompat.to_le_bytes());
    sb[120..120 + label.len()].copy_from_slice(label.as_bytes());
    sb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_three_kinds_and_reads_size_and_label() {
        for kind in [ExtKind::Ext2, ExtKind::Ext3, ExtKind::Ext4] {
            let sb = fake_superblock(kind, 4096, 1000, "root");
            let got = parse(&sb).expect("a superblock");
            assert_eq!(got.kind, kind);
            assert_eq!(got.block_size, 4096);
            assert_eq!(got.size(), 4096 * 1000);
            assert_eq!(got.label, "root");
        }
        let sb = fake_superblock(ExtKind::Ext4, 1024, 64, "");
        assert_eq!(
            parse(&sb).map(|s| s.describe()),
            Some("ext4, 64 KiB, no label".to_string())
        );
    }

    #[test]
    fn no_magic_no_superblock() {
        let mut sb = fake_superblock(ExtKind::Ext4, 4096, 10, "x");
        sb[56] = 0;
        assert_eq!(parse(&sb), None);
        let mut sb = fake_superblock(ExtKind::Ext4, 4096, 10, "x");
        sb[24] = 30; // a block size of 1 TiB
        assert_eq!(parse(&sb), None);
        assert_eq!(parse(&[0u8; 10]), None);
    }

    #[test]
    fn probe_reads_at_an_offset_and_tolerates_short_files() {
        let mut disk = vec![0u8; 4096];
        disk.extend(vec![0u8; 1024]);
        disk.extend(fake_superblock(ExtKind::Ext3, 1024, 4, "p1"));
        let mut c = std::io::Cursor::new(&disk);
        assert_eq!(
            probe(&mut c, 4096).unwrap().map(|s| s.label),
            Some("p1".into())
        );
        assert_eq!(probe(&mut c, 0).unwrap(), None);
        let mut short = std::io::Cursor::new(vec![0u8; 1500]);
        assert_eq!(probe(&mut short, 0).unwrap(), None);
    }
}
