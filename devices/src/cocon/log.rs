//! The console log of a detached guest: what its console printed, in
//! `console.log` in the guest's run directory, bounded in size.
//!
//! A guest that prints without end must not fill the host's `/run` (a
//! tmpfs: host memory). The log is capped at a size; when a write would
//! pass it, the file is renamed to `console.log.1` (replacing the older
//! one) and a new one started, so at most twice the cap is kept and the
//! most recent output is always there. (tracing-appender rotates by time,
//! not size; the two renames here are all a size cap needs.)

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The default cap of one console log file: 1 MiB.
pub const LIMIT: u64 = 1 << 20;

/// A size-capped log file with one older generation beside it.
#[derive(Debug)]
pub struct ConsoleLog {
    path: PathBuf,
    file: File,
    size: u64,
    limit: u64,
}

fn open_log(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

impl ConsoleLog {
    /// Append to `path` (created mode 0600), rotating at `limit` bytes.
    pub fn open(path: &Path, limit: u64) -> Result<ConsoleLog> {
        let file = open_log(path)?;
        let size = file
            .metadata()
            .with_context(|| format!("cannot stat {}", path.display()))?
            .len();
        Ok(ConsoleLog {
            path: path.to_path_buf(),
            file,
            size,
            limit: limit.max(1),
        })
    }

    /// Where the older generation goes.
    pub fn rotated_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".1");
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> Result<()> {
        let old = self.rotated_path();
        std::fs::rename(&self.path, &old).with_context(|| {
            format!("cannot rotate {} to {}", self.path.display(), old.display())
        })?;
        self.file = open_log(&self.path)?;
        self.size = 0;
        Ok(())
    }

    /// Append `data`, rotating first when it would pass the cap. A write
    /// larger than the cap keeps only its last `limit` bytes.
    pub fn write(&mut self, mut data: &[u8]) -> Result<()> {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        if data.len() > limit {
            data = &data[data.len() - limit..];
        }
        if self.size > 0 && self.size + data.len() as u64 > self.limit {
            self.rotate()?;
        }
        self.file
            .write_all(data)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.size += data.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_log_stays_bounded_and_keeps_the_latest_output() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut log = ConsoleLog::open(&path, 1000).unwrap();
        let mut all = Vec::new();
        for i in 0..500u32 {
            let line = format!("line {i}\r\n");
            all.extend_from_slice(line.as_bytes());
            log.write(line.as_bytes()).unwrap();
        }
        let now = std::fs::read(&path).unwrap();
        let old = std::fs::read(log.rotated_path()).unwrap();
        assert!(
            now.len() <= 1000 && old.len() <= 1000,
            "{} {}",
            now.len(),
            old.len()
        );
        // The two generations are the end of the stream, in order.
        let kept = [old.as_slice(), now.as_slice()].concat();
        assert!(all.ends_with(&kept));
        assert!(kept.len() > 1000);
        assert!(String::from_utf8(now).unwrap().ends_with("line 499\r\n"));
    }

    #[test]
    fn reopening_continues_the_count_and_a_huge_write_keeps_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        ConsoleLog::open(&path, 100)
            .unwrap()
            .write(&[b'a'; 90])
            .unwrap();
        let mut log = ConsoleLog::open(&path, 100).unwrap();
        log.write(&[b'b'; 20]).unwrap();
        assert_eq!(std::fs::read(log.rotated_path()).unwrap(), [b'a'; 90]);
        assert_eq!(std::fs::read(&path).unwrap(), [b'b'; 20]);
        let mut big = vec![b'c'; 300];
        big[299] = b'z';
        log.write(&big).unwrap();
        let now = std::fs::read(&path).unwrap();
        assert_eq!(now.len(), 100);
        assert_eq!(now.last(), Some(&b'z'));
    }
}
