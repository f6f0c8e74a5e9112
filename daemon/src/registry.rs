//! The running guests: one directory each under the run directory.
//!
//! The run directory is `$COLINUX_RUN_DIR` if set, else `/run/colinux` for
//! root and `$XDG_RUNTIME_DIR/colinux` for other users. A guest named NAME
//! owns `<run dir>/NAME/` (mode 0700, its user's) while it lives:
//!
//! - `lock` — an exclusive `flock` the guest's process holds for its whole
//!   life. Taking it is how a name is claimed ("a guest named NAME is
//!   already running" when it is held); the kernel drops it when the process
//!   ends however it ends, SIGKILL included, so a directory whose lock is
//!   free is a leftover, cleaned by the next claim and never listed.
//! - `state` — the guest's [`Record`] (TOML), rewritten (to a temporary
//!   name, then renamed) at every change of state.
//! - `control.sock` — commands (`stop`, `kill`) for the guest's process.
//! - `console.sock` — the console (unless configured elsewhere).
//! - `daemon.log`, `console.log` — a detached guest's process output and
//!   console output.
//!
//! When the guest's process ends its sockets go; its last record (how it
//! ended) and its logs stay until the name is claimed again
//! ([`list_all`] shows them).

use std::fs::File;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

pub use crate::lifecycle::State;

/// The run directory (see the module documentation).
pub fn run_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("COLINUX_RUN_DIR") {
        return Ok(PathBuf::from(d));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(PathBuf::from("/run/colinux"));
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => Ok(PathBuf::from(d).join("colinux")),
        None => bail!(
            "no run directory for guests: not root, and neither COLINUX_RUN_DIR nor XDG_RUNTIME_DIR is set"
        ),
    }
}

/// What `state` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    /// The guest's process.
    pub pid: u32,
    /// Guest RAM in MiB.
    pub memory: u64,
    /// When it was started (seconds since the epoch).
    pub started: u64,
    pub state: State,
    pub kernel: PathBuf,
    pub console_socket: PathBuf,
}

/// A claimed guest directory: the lock is held until this is dropped, and
/// the directory is removed then.
#[derive(Debug)]
pub struct Claim {
    dir: PathBuf,
    _lock: File,
}

/// The directory of guest `name`.
pub fn guest_dir(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join(name)
}

/// Claim the name `name` under `run_dir`: create its directory and take its
/// lock, or fail saying the guest runs (with its pid when known). Files a
/// dead guest left behind are removed.
pub fn claim(run_dir: &Path, name: &str) -> Result<Claim> {
    crate::config::check_name(name)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(run_dir)
        .with_context(|| format!("cannot create the run directory {}", run_dir.display()))?;
    let dir = guest_dir(run_dir, name);
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
    }
    let lock_path = dir.join("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = read_record(&dir)
                .map(|r| format!(" (pid {})", r.pid))
                .unwrap_or_default();
            bail!("a guest named {name} is already running{pid}");
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()))
        }
    }
    // Ours now: whatever else is here is a dead guest's.
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        if entry.file_name() != "lock" {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(Claim { dir, _lock: lock })
}

impl Claim {
    /// The guest's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write the guest's record.
    pub fn write(&self, record: &Record) -> Result<()> {
        let text = toml::to_string(record).context("cannot serialise the guest's state")?;
        let tmp = self.dir.join("state.tmp");
        let path = self.dir.join("state");
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // The sockets go; the last state record (how the guest ended) and
        // the logs stay, for `colinux list --all` and whoever looks, until
        // the name is claimed again. The lock file stays too: a claim
        // racing with this one waits on it, then cleans the directory.
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.ends_with(".sock") || name.ends_with(".tmp") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

fn read_record(dir: &Path) -> Result<Record> {
    let path = dir.join("state");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{}: not a guest state", path.display()))
}

/// Whether the guest of `dir` lives (its lock is held).
fn alive(dir: &Path) -> bool {
    let Ok(f) = File::open(dir.join("lock")) else {
        return false;
    };
    match f.try_lock_shared() {
        Ok(()) => false,
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(_)) => false,
    }
}

/// The live guest named `name`.
pub fn find(run_dir: &Path, name: &str) -> Result<Record> {
    crate::config::check_name(name)?;
    let dir = guest_dir(run_dir, name);
    if !alive(&dir) {
        bail!(
            "no guest named {name} is running (run directory {})",
            run_dir.display()
        );
    }
    read_record(&dir)
}

/// The live guests, by name.
pub fn list(run_dir: &Path) -> Result<Vec<Record>> {
    Ok(list_all(run_dir)?
        .into_iter()
        .filter_map(|(r, alive)| alive.then_some(r))
        .collect())
}

/// Every guest with a record, live or not (`true`: live), by name.
pub fn list_all(run_dir: &Path) -> Result<Vec<(Record, bool)>> {
    let entries = match std::fs::read_dir(run_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", run_dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        if dir.is_dir() {
            match read_record(&dir) {
                Ok(r) => out.push((r, alive(&dir))),
                // Claimed but not written yet, or not a guest's.
                Err(e) => tracing::debug!("{e:#}"),
            }
        }
    }
    out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(name: &str) -> Record {
        Record {
            name: name.into(),
            pid: std::process::id(),
            memory: 64,
            started: 1,
            state: State::Running,
            kernel: "/k".into(),
            console_socket: "/c".into(),
        }
    }

    #[test]
    fn a_name_is_claimed_once_and_freed_with_its_claim() {
        let run = tempfile::tempdir().unwrap();
        let a = claim(run.path(), "web").unwrap();
        a.write(&record("web")).unwrap();
        let e = claim(run.path(), "web").unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "a guest named web is already running (pid {})",
                std::process::id()
            )
        );
        assert_eq!(list(run.path()).unwrap(), vec![record("web")]);
        assert_eq!(find(run.path(), "web").unwrap().name, "web");
        let b = claim(run.path(), "db").unwrap();
        // Claimed, no state yet: not listed.
        assert_eq!(list(run.path()).unwrap().len(), 1);
        drop(b);
        drop(a);
        assert!(list(run.path()).unwrap().is_empty());
        // The last record stays, not live; the sockets go.
        assert_eq!(list_all(run.path()).unwrap(), vec![(record("web"), false)]);
        let e = find(run.path(), "web").unwrap_err().to_string();
        assert!(e.starts_with("no guest named web is running"), "{e}");
        assert!(claim(run.path(), "../x").is_err());
    }

    #[test]
    fn a_dead_guests_leftovers_are_not_listed_and_are_cleaned() {
        let run = tempfile::tempdir().unwrap();
        let dir = run.path().join("old");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("lock"), b"").unwrap();
        std::fs::write(dir.join("state"), toml::to_string(&record("old")).unwrap()).unwrap();
        std::fs::write(dir.join("control.sock"), b"").unwrap();
        assert!(list(run.path()).unwrap().is_empty());
        let c = claim(run.path(), "old").unwrap();
        assert!(!dir.join("state").exists() && !dir.join("control.sock").exists());
        drop(c);
    }
}
