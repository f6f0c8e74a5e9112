//! virtiofsd, the vhost-user back end of a share, started and supervised
//! by the daemon.
//!
//! virtiofsd (the Rust one, crates.io `virtiofsd`) serves one shared
//! directory over one vhost-user connection. The daemon makes a listening
//! Unix socket in a private directory, connects to it itself (the
//! connection waits in the backlog), removes the socket's name and then
//! starts virtiofsd with the listening socket (`--fd`): nobody else can
//! ever connect to it, and no socket file is left anywhere.
//!
//! virtiofsd runs in the foreground as the daemon's child: its log lines
//! go to the daemon's log (`cofsN: virtiofsd: …`), its exit is reported,
//! and it ends when
//! the daemon closes the connection (also when the daemon is killed: the
//! kernel closes it; `PR_SET_PDEATHSIG` too).

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::helper::{Helper, Kind};

/// The environment variable naming the virtiofsd program (else
/// `virtiofsd` in `PATH`, else Debian's `/usr/libexec/virtiofsd`).
pub const VIRTIOFSD_ENV: &str = "COLINUX_VIRTIOFSD";
/// Where Debian's `virtiofsd` package (Debian 13 on) installs it.
pub const LIBEXEC: &str = "/usr/libexec/virtiofsd";

/// The virtiofsd program: `$COLINUX_VIRTIOFSD`, else `virtiofsd` in
/// `PATH`, else [`LIBEXEC`].
pub fn program() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(VIRTIOFSD_ENV) {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join("virtiofsd"))
        .chain(std::iter::once(PathBuf::from(LIBEXEC)))
        .find(|p| p.is_file())
        .context(
            "shared directories (cofs) need virtiofsd, which is not in PATH nor at /usr/libexec \
             (install it: `cargo install virtiofsd`, or Debian's virtiofsd package; \
             or set COLINUX_VIRTIOFSD)",
        )
}

/// How virtiofsd serves a share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The host directory.
    pub dir: PathBuf,
    /// The guest may not change anything in it.
    pub read_only: bool,
    /// The host user and group the guest's root stands for, both ways
    /// (`--translate-uid/gid=map:0:UID:1`): set when virtiofsd runs as
    /// root and the share belongs to someone else, so that root in the
    /// guest does not create host root's files there (nor set-uid-root
    /// programs).
    pub guest_root_as: Option<(u32, u32)>,
    /// The cache mode.
    pub cache: Cache,
}

/// Who the guest's root is on a share in `dir` when virtiofsd runs with
/// effective uid `euid`: the directory's owner when we are root and it is
/// not.
pub fn guest_root_as(dir: &Path, euid: u32) -> Result<Option<(u32, u32)>> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).with_context(|| dir.display().to_string())?;
    Ok((euid == 0 && meta.uid() != 0).then(|| (meta.uid(), meta.gid())))
}

/// A share's cache mode: what the guest may keep of it, so what the two
/// sides see of each other's changes, and when. docs/config.md says what
/// each promises; docs/ARCHITECTURE.md ("cofs") why there are two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Cache {
    /// virtiofsd's `never` (the default): the guest keeps no data, no
    /// attributes and no directory entries of the share in its caches
    /// (FUSE direct I/O, zero timeouts), so a change on either side is
    /// seen by the other side's next system call, at the price of a host
    /// round trip per operation. Direct I/O files cannot be mapped
    /// `MAP_SHARED` by a 6.1 guest (its FUSE answers `ENODEV`; 6.6 and
    /// later accept it when the server allows it: `--allow-mmap`);
    /// `MAP_PRIVATE` works.
    #[default]
    Never,
    /// virtiofsd's `auto`: file data go through the guest's page cache
    /// (so `MAP_SHARED` works), dropped at every `open()`
    /// (close-to-open); attributes and names are kept for at most one
    /// second; a write is sent to the host at once (no write-back cache),
    /// a write through a shared mapping at `msync()` or when the guest
    /// writes its dirty pages back.
    Auto,
}

impl Cache {
    /// The name in `cache=` and virtiofsd's `--cache=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Cache::Never => "never",
            Cache::Auto => "auto",
        }
    }

    /// `never` or `auto`.
    pub fn parse(s: &str) -> Result<Cache> {
        match s {
            "never" => Ok(Cache::Never),
            "auto" => Ok(Cache::Auto),
            _ => bail!("{s:?} is not a cache mode of a share (never or auto)"),
        }
    }
}

impl std::fmt::Display for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// virtiofsd's arguments besides `--fd`.
pub fn arguments(o: &Options) -> Vec<String> {
    let mut args = vec![
        format!("--shared-dir={}", o.dir.display()),
        format!("--cache={}", o.cache),
        // With --cache=never, lets a guest whose FUSE knows
        // FUSE_DIRECT_IO_ALLOW_MMAP (Linux 6.6 and later: the 6.12 line)
        // map a shared file MAP_SHARED. The 6.1 guest does not offer it:
        // there only `cache=auto` shares allow shared mappings.
        "--allow-mmap".to_string(),
        // One request at a time, answered in the order the guest posted
        // them: if virtiofsd dies, the requests it had not answered are
        // exactly those past the used ring's index, and the device answers
        // them with errors (see `super`). Requests of one guest thread are
        // sequential anyway.
        "--thread-pool-size=0".to_string(),
        "--log-level=info".to_string(),
    ];
    if o.read_only {
        args.push("--readonly".to_string());
    }
    if let Some((uid, gid)) = o.guest_root_as {
        args.push(format!("--translate-uid=map:0:{uid}:1"));
        args.push(format!("--translate-gid=map:0:{gid}:1"));
    }
    args
}

/// A running virtiofsd.
#[derive(Debug)]
pub struct Virtiofsd {
    name: String,
    helper: Helper,
}

/// virtiofsd as a supervised helper.
const VIRTIOFSD: Kind = Kind {
    what: "virtiofsd",
    down: "once its connection hangs up, the share answers the guest with I/O errors",
    interesting: |line| !line.is_empty(),
};

/// A listening socket nobody else can reach and our end of a connection
/// waiting in its backlog.
fn private_socket(name: &str) -> Result<(UnixListener, UnixStream)> {
    let dir = tempfile::Builder::new()
        .prefix("colinux-cofs-")
        .tempdir()
        .context("cannot make a private directory for the vhost-user socket")?;
    let path = dir.path().join(format!("{name}.sock"));
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    let ours = UnixStream::connect(&path)
        .with_context(|| format!("cannot connect to {}", path.display()))?;
    // The name goes with the directory: the connection stays.
    drop(dir);
    Ok((listener, ours))
}

impl Virtiofsd {
    /// Start `program` for share `name` with `options`; our end of its
    /// vhost-user connection.
    pub fn start(name: &str, program: &Path, options: &Options) -> Result<(Virtiofsd, UnixStream)> {
        let (listener, ours) = private_socket(name)?;
        let fd: RawFd = listener.as_raw_fd();
        let mut cmd = Command::new(program);
        cmd.arg(format!("--fd={fd}")).args(arguments(options));
        let helper = Helper::spawn(name, VIRTIOFSD, program, cmd, fd)?;
        drop(listener);
        let pid = helper.pid();
        tracing::info!(
            "{name}: {} shared by {} (pid {pid}), cache={}",
            options.dir.display(),
            program.display(),
            options.cache
        );
        Ok((
            Virtiofsd {
                name: name.to_string(),
                helper,
            },
            ours,
        ))
    }

    /// virtiofsd's process id.
    pub fn pid(&self) -> u32 {
        self.helper.pid()
    }

    /// How virtiofsd ended, if it has.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.helper.exit_status()
    }

    /// An error with virtiofsd's last words if it has exited.
    pub fn check_alive(&self) -> Result<()> {
        if let Some(status) = self.exit_status() {
            // Let the log thread catch up with its last lines.
            std::thread::sleep(Duration::from_millis(50));
            bail!(
                "{}: virtiofsd exited ({status}){}",
                self.name,
                self.last_words()
            );
        }
        Ok(())
    }

    /// Its last lines of output, for an error message.
    pub fn last_words(&self) -> String {
        self.helper.last_words()
    }

    /// End virtiofsd (its connection should be closed first: it then
    /// exits by itself); wait for it.
    pub fn stop(&mut self) {
        self.helper.stop();
    }
}
