//! The "newc" cpio format (`070701`), which is what the Linux kernel unpacks
//! as an initramfs: a [`Writer`] (uncompressed; no root needed to create
//! device nodes or root-owned files: everything is owned by root) and a
//! reader that lists an archive ([`list_newc`]).

use std::collections::BTreeSet;
use std::io::{self, Write};

use anyhow::{bail, Context, Result};

/// `S_IFDIR`, `S_IFREG`, `S_IFLNK`, `S_IFCHR` from `<sys/stat.h>`.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// Writes a newc archive entry by entry. Parent directories are created
/// (mode 0755) the first time a path under them is written; call
/// [`Writer::finish`] to write the trailer.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    written: u64,
    ino: u32,
    dirs: BTreeSet<String>,
}

impl<W: Write> Writer<W> {
    /// A writer onto `out`.
    pub fn new(out: W) -> Self {
        Writer {
            out,
            written: 0,
            ino: 0,
            dirs: BTreeSet::new(),
        }
    }

    /// A directory (and its parents).
    pub fn dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        let path = normalize(path)?;
        if path.is_empty() || self.dirs.contains(&path) {
            return Ok(());
        }
        self.parents(&path)?;
        self.dirs.insert(path.clone());
        self.entry(&path, S_IFDIR | (mode & 0o7777), 2, (0, 0), &[])
    }

    /// A regular file with `data`.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        let path = normalize(path)?;
        self.parents(&path)?;
        self.entry(&path, S_IFREG | (mode & 0o7777), 1, (0, 0), data)
    }

    /// A symbolic link at `path` pointing to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let path = normalize(path)?;
        self.parents(&path)?;
        self.entry(&path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// A character device node.
    pub fn char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> io::Result<()> {
        let path = normalize(path)?;
        self.parents(&path)?;
        self.entry(&path, S_IFCHR | (mode & 0o7777), 1, (major, minor), &[])
    }

    /// Write the trailer and return the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn parents(&mut self, path: &str) -> io::Result<()> {
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent, 0o755)?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> io::Result<()> {
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::other(format!("{name}: larger than 4 GiB")))?;
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            nlink,
            0,
            size,
            0,
            0,
            rdev.0,
            rdev.1,
            // The name's length includes its NUL.
            name.len() as u32 + 1,
            0,
        ];
        let mut header = String::with_capacity(110);
        header.push_str("070701");
        for f in fields {
            header.push_str(&format!("{f:08x}"));
        }
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0; 3][..n])
    }
}

/// `/a/b/c` → `a/b/c`; refuses empty components, `.` and `..`.
fn normalize(path: &str) -> io::Result<String> {
    let trimmed = path.trim_start_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a clean path for the initramfs: {path:?}"),
        ));
    }
    Ok(trimmed.to_string())
}

/// One entry of a newc archive, as [`list_newc`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpioEntry {
    /// The path without a leading `/`.
    pub name: String,
    /// The full mode (type and permission bits).
    pub mode: u32,
    /// The data size (the target's length for a symlink).
    pub size: u32,
    /// `(major, minor)` of a device node.
    pub rdev: (u32, u32),
    /// A symlink's target.
    pub link: Option<String>,
}

impl CpioEntry {
    /// `ls -l`-style: type and permissions, size or device, name, target.
    pub fn render(&self) -> String {
        let kind = match self.mode & 0o170000 {
            0o040000 => 'd',
            0o120000 => 'l',
            0o020000 => 'c',
            0o060000 => 'b',
            _ => '-',
        };
        let size = if kind == 'c' || kind == 'b' {
            format!("{}, {}", self.rdev.0, self.rdev.1)
        } else {
            self.size.to_string()
        };
        let link = self
            .link
            .as_ref()
            .map(|l| format!(" -> {l}"))
            .unwrap_or_default();
        format!(
            "{kind} {:04o} {size:>9} /{}{link}",
            self.mode & 0o7777,
            self.name
        )
    }
}

/// Read the entries of an uncompressed newc (`070701`) archive.
pub fn list_newc(data: &[u8]) -> Result<Vec<CpioEntry>> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let align = |n: usize| n.div_ceil(4) * 4;
    loop {
        let header = data
            .get(pos..pos + 110)
            .with_context(|| format!("truncated cpio header at offset {pos}"))?;
        if &header[..6] != b"070701" {
            bail!("not a newc cpio header at offset {pos}");
        }
        let field = |i: usize| -> Result<u32> {
            let s = std::str::from_utf8(&header[6 + i * 8..14 + i * 8])
                .ok()
                .and_then(|s| u32::from_str_radix(s, 16).ok());
            s.with_context(|| format!("bad cpio header field {i} at offset {pos}"))
        };
        let (mode, size, rmaj, rmin, namesize) = (
            field(1)?,
            field(6)?,
            field(9)?,
            field(10)?,
            field(11)? as usize,
        );
        let name_bytes = data
            .get(pos + 110..pos + 110 + namesize)
            .with_context(|| format!("truncated cpio name at offset {pos}"))?;
        let name = String::from_utf8_lossy(name_bytes.strip_suffix(&[0]).unwrap_or(name_bytes))
            .into_owned();
        let data_at = align(pos + 110 + namesize);
        let body = data
            .get(data_at..data_at + size as usize)
            .with_context(|| format!("truncated cpio data of {name:?}"))?;
        pos = align(data_at + size as usize);
        if name == "TRAILER!!!" {
            return Ok(out);
        }
        let link =
            (mode & 0o170000 == 0o120000).then(|| String::from_utf8_lossy(body).into_owned());
        out.push(CpioEntry {
            name,
            mode,
            size,
            rdev: (rmaj, rmin),
            link,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_newc_with_parents_and_padding() {
        let mut w = Writer::new(Vec::new());
        w.file("/a/b/f", 0o644, b"hello").unwrap();
        w.symlink("/a/l", "b/f").unwrap();
        w.char_dev("/dev/console", 0o600, 5, 1).unwrap();
        let out = w.finish().unwrap();
        assert_eq!(out.len() % 4, 0);
        let text = String::from_utf8_lossy(&out);
        // Parents come first, then the file.
        let a = text.find("a\0").unwrap();
        let ab = text.find("a/b\0").unwrap();
        let f = text.find("a/b/f\0").unwrap();
        assert!(a < ab && ab < f);
        assert!(text.contains("hello"));
        assert!(text.ends_with("TRAILER!!!\0\0\0\0") || text.contains("TRAILER!!!\0"));
        // First header: directory "a", mode 040755, nlink 2, name size 2.
        assert!(out.starts_with(b"07070100000001000041ed"));
        assert!(normalize("/a/../b").is_err());
        assert!(normalize("/a//b").is_err());
    }
}
