//! A guest's configuration: a TOML file, a coLinux-style `@file` of
//! `name=value` words, `name=value` words on the command line, or all of
//! these in order, later settings overriding earlier ones.
//!
//! TOML (one guest per file; `docs/config.md` has an annotated example):
//!
//! ```toml
//! name = "web"
//! kernel = "/usr/lib/colinux/vmlinux-6.1"
//! initrd = "/usr/lib/colinux/initrd.cpio"
//! memory = 256                 # MiB
//! cmdline = ["root=/dev/cobd0", "ro"]
//! [console]
//! socket = "/run/colinux/web/console.sock"
//! ```
//!
//! coLinux words (`colinux run name=web kernel=… mem=256`, or one or more
//! per line in an `@file`, `#` starting a comment): `name=`, `kernel=`,
//! `initrd=`, `mem=`, `cocon=` (the console socket), `cobdN=`, `ethN=`,
//! `cofsN=`. Any other word (e.g. `root=/dev/cobd0 ro`) is appended to the
//! guest's kernel command line, as coLinux did. Every error names where the
//! setting came from: the file and line, or the command-line word.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use colinux_devices::block::DiskConfig;
use colinux_devices::fs::FsConfig;
use colinux_devices::net::{derived_mac, BackendConfig, NetConfig, NetSpec};
use serde::Deserialize;

/// Where a setting came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A line of a file.
    File { path: PathBuf, line: usize },
    /// The `n`th (1-based) word of the command line.
    Word(usize),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Word(n) => write!(f, "command-line word {n}"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set<T> {
    pub value: T,
    pub origin: Origin,
}

/// The device kinds whose keys coLinux had (`cobdN=`, `ethN=`, `cofsN=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeviceKind {
    /// `cobdN=`: a block device.
    Cobd,
    /// `ethN=`: a network interface.
    Eth,
    /// `cofsN=`: a shared host directory.
    Cofs,
}

impl DeviceKind {
    fn key(self) -> &'static str {
        match self {
            DeviceKind::Cobd => "cobd",
            DeviceKind::Eth => "eth",
            DeviceKind::Cofs => "cofs",
        }
    }

    /// The highest unit number coLinux allowed.
    fn max_unit(self) -> u32 {
        match self {
            DeviceKind::Cobd => 31,
            DeviceKind::Eth | DeviceKind::Cofs => 15,
        }
    }
}

/// A guest's settings as given, before defaults ([`Settings::resolve`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub name: Option<Set<String>>,
    pub kernel: Option<Set<PathBuf>>,
    pub initrd: Option<Set<PathBuf>>,
    /// Guest RAM in MiB.
    pub memory: Option<Set<u64>>,
    /// Kernel command-line words, in order.
    pub cmdline: Vec<Set<String>>,
    /// The console socket.
    pub console_socket: Option<Set<PathBuf>>,
    /// Device settings by kind and unit, as written.
    pub devices: BTreeMap<(DeviceKind, u32), Set<String>>,
    /// The file the settings came from first, for the default name.
    pub file: Option<PathBuf>,
}

/// The TOML form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlGuest {
    name: Option<String>,
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    memory: Option<u64>,
    cmdline: Option<Cmdline>,
    console: Option<TomlConsole>,
    /// `[cobd.N]` tables.
    cobd: Option<BTreeMap<String, TomlDisk>>,
    /// `[eth.N]` tables.
    eth: Option<BTreeMap<String, TomlEth>>,
    /// `[cofs.N]` tables.
    cofs: Option<BTreeMap<String, TomlShare>>,
}

/// A `[cofs.N]` table: a shared host directory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlShare {
    path: PathBuf,
    #[serde(default)]
    readonly: bool,
    /// `never` (the default) or `auto`: `cache=` of `cofsN=`.
    #[serde(default)]
    cache: Option<String>,
}

/// An `[eth.N]` table: the `ethN=` value's parts by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlEth {
    /// `slirp` or `tuntap`.
    kind: String,
    mac: Option<String>,
    /// The TAP's name (`tuntap`).
    tap: Option<String>,
    /// Port forwards (`slirp`): `tcp:HOSTPORT:GUESTPORT`, `udp:…`.
    #[serde(default)]
    forward: Vec<String>,
}

impl TomlEth {
    /// The `ethN=` value it stands for.
    fn value(&self) -> String {
        let mut v = vec![self.kind.clone()];
        v.extend(self.tap.iter().cloned());
        v.extend(self.mac.iter().cloned());
        v.extend(self.forward.iter().cloned());
        v.join(",")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlDisk {
    path: PathBuf,
    #[serde(default)]
    readonly: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Cmdline {
    Words(Vec<String>),
    Line(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlConsole {
    socket: Option<PathBuf>,
}

/// The line (1-based) of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// The line on which `key = ` is set at the top level or in `[table]`.
fn key_line(text: &str, table: Option<&str>, key: &str) -> usize {
    let mut current: Option<&str> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            current = Some(name.trim());
            continue;
        }
        let key_here = t
            .split_once('=')
            .map(|(k, _)| k.trim() == key)
            .unwrap_or(false);
        if key_here && current == table {
            return i + 1;
        }
    }
    0
}

impl Settings {
    /// Apply a TOML file's settings.
    pub fn apply_toml(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the guest configuration {}", path.display()))?;
        self.apply_toml_text(&text, path)
    }

    /// Apply the settings of `text`, a TOML file's contents as read from
    /// `path` (which errors name and relative paths are relative to).
    pub fn apply_toml_text(&mut self, text: &str, path: &Path) -> Result<()> {
        let parsed: TomlGuest = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
            anyhow::anyhow!("{}:{line}: {}", path.display(), e.message())
        })?;
        let at = |table: Option<&str>, key: &str| Origin::File {
            path: path.to_path_buf(),
            line: key_line(text, table, key),
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        // Relative paths in a file are relative to the file.
        let rel = |p: PathBuf| if p.is_relative() { dir.join(p) } else { p };
        if let Some(v) = parsed.name {
            self.set_name(v, at(None, "name"))?;
        }
        if let Some(v) = parsed.kernel {
            self.kernel = Some(Set {
                value: rel(v),
                origin: at(None, "kernel"),
            });
        }
        if let Some(v) = parsed.initrd {
            self.initrd = Some(Set {
                value: rel(v),
                origin: at(None, "initrd"),
            });
        }
        if let Some(v) = parsed.memory {
            self.memory = Some(Set {
                value: v,
                origin: at(None, "memory"),
            });
        }
        if let Some(c) = parsed.cmdline {
            let words = match c {
                Cmdline::Words(w) => w,
                Cmdline::Line(l) => l.split_whitespace().map(str::to_string).collect(),
            };
            let origin = at(None, "cmdline");
            self.cmdline.extend(words.into_iter().map(|value| Set {
                value,
                origin: origin.clone(),
            }));
        }
        for (unit, disk) in parsed.cobd.unwrap_or_default() {
            let origin = Origin::File {
                path: path.to_path_buf(),
                line: key_line(text, Some(&format!("cobd.{unit}")), "path"),
            };
            let n: u32 = unit
                .parse()
                .ok()
                .filter(|n| *n <= DeviceKind::Cobd.max_unit())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{origin}: [cobd.{unit}]: the unit is a number from 0 to {}",
                        DeviceKind::Cobd.max_unit()
                    )
                })?;
            let value = disk_value(&rel(disk.path), disk.readonly);
            self.devices
                .insert((DeviceKind::Cobd, n), Set { value, origin });
        }
        for (unit, eth) in parsed.eth.unwrap_or_default() {
            let origin = Origin::File {
                path: path.to_path_buf(),
                line: key_line(text, Some(&format!("eth.{unit}")), "kind"),
            };
            let n: u32 = unit
                .parse()
                .ok()
                .filter(|n| *n <= DeviceKind::Eth.max_unit())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{origin}: [eth.{unit}]: the interface is a number from 0 to {}",
                        DeviceKind::Eth.max_unit()
                    )
                })?;
            if eth.tap.is_some() && eth.kind != "tuntap" {
                bail!("{origin}: [eth.{unit}]: tap = is for kind = \"tuntap\"");
            }
            if !eth.forward.is_empty() && eth.kind != "slirp" {
                bail!("{origin}: [eth.{unit}]: forward = is for kind = \"slirp\"");
            }
            self.devices.insert(
                (DeviceKind::Eth, n),
                Set {
                    value: eth.value(),
                    origin,
                },
            );
        }
        for (unit, share) in parsed.cofs.unwrap_or_default() {
            let origin = Origin::File {
                path: path.to_path_buf(),
                line: key_line(text, Some(&format!("cofs.{unit}")), "path"),
            };
            let n: u32 = unit
                .parse()
                .ok()
                .filter(|n| *n <= DeviceKind::Cofs.max_unit())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{origin}: [cofs.{unit}]: the share is a number from 0 to {}",
                        DeviceKind::Cofs.max_unit()
                    )
                })?;
            let mut value = disk_value(&rel(share.path), share.readonly);
            if let Some(mode) = &share.cache {
                value.push_str(&format!(",cache={mode}"));
            }
            self.devices
                .insert((DeviceKind::Cofs, n), Set { value, origin });
        }
        if let Some(socket) = parsed.console.and_then(|c| c.socket) {
            self.console_socket = Some(Set {
                value: rel(socket),
                origin: at(Some("console"), "socket"),
            });
        }
        self.file.get_or_insert_with(|| path.to_path_buf());
        Ok(())
    }

    /// Apply a coLinux-style `@file`: `name=value` words, several per line
    /// allowed, `#` to the end of the line a comment, `"…"` quoting a word
    /// with spaces.
    pub fn apply_colinux_file(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the guest configuration {}", path.display()))?;
        self.apply_colinux_text(&text, path)
    }

    /// [`Settings::apply_colinux_file`] of `text`, the contents of `path`.
    pub fn apply_colinux_text(&mut self, text: &str, path: &Path) -> Result<()> {
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        for (i, line) in text.lines().enumerate() {
            let origin = Origin::File {
                path: path.to_path_buf(),
                line: i + 1,
            };
            for word in split_words(line).map_err(|e| anyhow::anyhow!("{origin}: {e}"))? {
                self.apply_word(&word, origin.clone(), Some(&dir))?;
            }
        }
        self.file.get_or_insert_with(|| path.to_path_buf());
        Ok(())
    }

    /// Apply one `name=value` word (or a kernel command-line word).
    /// Relative paths are taken relative to `base` when given.
    pub fn apply_word(&mut self, word: &str, origin: Origin, base: Option<&Path>) -> Result<()> {
        let path = |v: &str| {
            let p = PathBuf::from(v);
            match base {
                Some(b) if p.is_relative() => b.join(p),
                _ => p,
            }
        };
        let Some((key, value)) = word.split_once('=') else {
            self.cmdline.push(Set {
                value: word.to_string(),
                origin,
            });
            return Ok(());
        };
        let empty = || -> Result<()> {
            if value.is_empty() {
                bail!("{origin}: {key}= needs a value");
            }
            Ok(())
        };
        match key {
            "name" => {
                empty()?;
                self.set_name(value.to_string(), origin)?;
            }
            "kernel" => {
                empty()?;
                self.kernel = Some(Set {
                    value: path(value),
                    origin,
                });
            }
            "initrd" => {
                empty()?;
                self.initrd = Some(Set {
                    value: path(value),
                    origin,
                });
            }
            "mem" => {
                let mib = value
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{origin}: mem={value}: not a number of MiB"))?;
                self.memory = Some(Set { value: mib, origin });
            }
            "cocon" => {
                empty()?;
                self.console_socket = Some(Set {
                    value: path(value),
                    origin,
                });
            }
            _ => {
                if let Some((kind, unit)) = device_key(key) {
                    if unit > kind.max_unit() {
                        bail!(
                            "{origin}: {key}: {}N takes N from 0 to {}",
                            kind.key(),
                            kind.max_unit()
                        );
                    }
                    empty()?;
                    let value = match kind {
                        // Relative paths are relative to the @file.
                        DeviceKind::Cobd | DeviceKind::Cofs => {
                            let (p, ro) = split_disk_value(value);
                            disk_value(&path(p), ro)
                        }
                        _ => value.to_string(),
                    };
                    if kind == DeviceKind::Cofs {
                        // Later settings override earlier ones of another
                        // source; one source naming a share twice is a
                        // mistake (which directory did it mean?).
                        if let Some(before) = self.devices.get(&(kind, unit)) {
                            if same_source(&before.origin, &origin) {
                                bail!(
                                    "{origin}: {key}={value}: the share {key} is already set (at {})",
                                    before.origin
                                );
                            }
                        }
                    }
                    self.devices.insert((kind, unit), Set { value, origin });
                } else {
                    // Unknown keys go to the guest's kernel, as in coLinux.
                    self.cmdline.push(Set {
                        value: word.to_string(),
                        origin,
                    });
                }
            }
        }
        Ok(())
    }

    fn set_name(&mut self, value: String, origin: Origin) -> Result<()> {
        check_name(&value).map_err(|e| anyhow::anyhow!("{origin}: name={value}: {e}"))?;
        self.name = Some(Set { value, origin });
        Ok(())
    }
}

/// A guest's configuration with every default filled in and every value
/// checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestConfig {
    pub name: String,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// Guest RAM in MiB.
    pub memory: u64,
    /// Kernel command-line words (`root=/dev/cobdN` mapped to the guest
    /// kernel's name for that disk).
    pub cmdline: Vec<String>,
    /// The console socket.
    pub console_socket: PathBuf,
    /// The cobd units, by unit number.
    pub disks: Vec<DiskConfig>,
    /// The conet interfaces, by interface number.
    pub nets: Vec<NetConfig>,
    /// The cofs shares, by share number.
    pub shares: Vec<FsConfig>,
}

/// What the defaults depend on.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// The host's RAM in MiB.
    pub host_memory: u64,
    /// The most a guest may have, in MiB.
    pub max_memory: u64,
    /// The least a guest may have, in MiB.
    pub min_memory: u64,
    /// Where each guest's directory is (`/run/colinux`).
    pub run_dir: PathBuf,
}

/// The name a guest gets when none is given and no file names it.
pub const DEFAULT_NAME: &str = "colinux";

impl Settings {
    /// Fill in the defaults and check every value: the name (given, else
    /// the first file's name without its extension, else
    /// [`DEFAULT_NAME`]), the kernel (required, a readable file), the
    /// initrd, memory (default a quarter of the host's RAM, clamped to
    /// what a guest supports), the console socket (default
    /// `<run_dir>/<name>/console.sock`).
    pub fn resolve(self, d: &Defaults) -> Result<GuestConfig> {
        let name = match self.name {
            Some(n) => n.value,
            None => {
                let stem = self
                    .file
                    .as_deref()
                    .and_then(|f| f.file_stem())
                    .and_then(|s| s.to_str());
                match stem {
                    Some(stem) => {
                        check_name(stem).map_err(|e| {
                            anyhow::anyhow!(
                                "the guest is named after its file {:?}, which is no guest name ({e}); set name=",
                                stem
                            )
                        })?;
                        stem.to_string()
                    }
                    None => DEFAULT_NAME.to_string(),
                }
            }
        };
        let kernel = self.kernel.context(
            "no guest kernel given: set kernel= (on the command line or in the configuration)",
        )?;
        check_file(&kernel, "kernel")?;
        if let Some(initrd) = &self.initrd {
            check_file(initrd, "initrd")?;
        }
        let memory = match self.memory {
            Some(m) => {
                if m.value < d.min_memory || m.value > d.max_memory {
                    bail!(
                        "{}: mem={}: a guest has {} to {} MiB of RAM",
                        m.origin,
                        m.value,
                        d.min_memory,
                        d.max_memory
                    );
                }
                m.value
            }
            None => (d.host_memory / 4).clamp(d.min_memory, d.max_memory),
        };
        let mut disks = Vec::new();
        let mut nets = Vec::new();
        let mut shares = Vec::new();
        for ((kind, unit), set) in self.devices {
            if kind == DeviceKind::Eth {
                nets.push(net_config(&name, unit, &set, &nets)?);
                continue;
            }
            if kind == DeviceKind::Cofs {
                shares.push(FsConfig::parse(unit, &set.value).map_err(|e| {
                    anyhow::anyhow!("{}: cofs{unit}={}: {e:#}", set.origin, set.value)
                })?);
                continue;
            }
            let (p, read_only) = split_disk_value(&set.value);
            let meta = std::fs::metadata(p)
                .map_err(|e| anyhow::anyhow!("{}: cobd{unit}={p}: {e}", set.origin))?;
            {
                use std::os::unix::fs::FileTypeExt;
                if !meta.is_file() && !meta.file_type().is_block_device() {
                    bail!(
                        "{}: cobd{unit}={p}: neither an image file nor a block device",
                        set.origin
                    );
                }
            }
            disks.push(DiskConfig {
                unit,
                path: PathBuf::from(p),
                read_only,
            });
        }
        let console_socket = self
            .console_socket
            .map(|s| s.value)
            .unwrap_or_else(|| d.run_dir.join(&name).join("console.sock"));
        Ok(GuestConfig {
            name,
            kernel: kernel.value,
            initrd: self.initrd.map(|i| i.value),
            memory,
            cmdline: self
                .cmdline
                .into_iter()
                .map(|c| map_root(&c, &disks))
                .collect::<Result<_>>()?,
            console_socket,
            disks,
            nets,
            shares,
        })
    }
}

/// Whether two settings come from the same source: one file, or the
/// command line.
fn same_source(a: &Origin, b: &Origin) -> bool {
    match (a, b) {
        (Origin::File { path: p, .. }, Origin::File { path: q, .. }) => p == q,
        (Origin::Word(_), Origin::Word(_)) => true,
        _ => false,
    }
}

/// Interface `unit` of guest `guest` from its `ethN=` value, checked
/// against the interfaces before it (a host port forwarded or a TAP used
/// twice).
fn net_config(
    guest: &str,
    unit: u32,
    set: &Set<String>,
    before: &[NetConfig],
) -> Result<NetConfig> {
    let fail = |e: anyhow::Error| anyhow::anyhow!("{}: eth{unit}={}: {e:#}", set.origin, set.value);
    let spec = NetSpec::parse(&set.value).map_err(fail)?;
    let mac = spec.mac.unwrap_or_else(|| derived_mac(guest, unit));
    for b in before {
        match (&b.backend, &spec.backend) {
            (BackendConfig::Slirp { forwards: a }, BackendConfig::Slirp { forwards: f }) => {
                if let Some(f) = f
                    .iter()
                    .find(|f| a.iter().any(|o| o.proto == f.proto && o.host == f.host))
                {
                    return Err(fail(anyhow::anyhow!(
                        "{} host port {} is forwarded to eth{} already",
                        f.proto,
                        f.host,
                        b.unit
                    )));
                }
            }
            (BackendConfig::Tap { name: Some(a) }, BackendConfig::Tap { name: Some(n) })
                if a == n =>
            {
                return Err(fail(anyhow::anyhow!("TAP {n} is eth{}'s already", b.unit)));
            }
            _ => {}
        }
        if b.mac == mac {
            return Err(fail(anyhow::anyhow!(
                "eth{} has the MAC address {mac}",
                b.unit
            )));
        }
    }
    Ok(NetConfig {
        unit,
        mac,
        backend: spec.backend,
    })
}

/// `PATH[,ro|,rw]` of a `cobdN=` value: the path and whether read-only.
fn split_disk_value(value: &str) -> (&str, bool) {
    match value.rsplit_once(',') {
        Some((p, "ro")) => (p, true),
        Some((p, "rw")) => (p, false),
        _ => (value, false),
    }
}

/// The `cobdN=` value of a disk.
fn disk_value(path: &Path, read_only: bool) -> String {
    let p = path.display();
    if read_only {
        format!("{p},ro")
    } else {
        p.to_string()
    }
}

/// The guest kernel's name of the `index`th disk (virtio-blk's, which
/// numbers disks in the order they are found: vda … vdz, vdaa …).
pub fn guest_disk_name(index: usize) -> String {
    let mut letters = Vec::new();
    let mut n = index + 1;
    while n > 0 {
        n -= 1;
        letters.push(b'a' + (n % 26) as u8);
        n /= 26;
    }
    letters.reverse();
    format!("vd{}", String::from_utf8_lossy(&letters))
}

/// `root=/dev/cobdN` names the guest kernel's disk for unit N (the guest
/// finds the disks in unit order); other words pass unchanged.
fn map_root(word: &Set<String>, disks: &[DiskConfig]) -> Result<String> {
    let Some(unit) = word
        .value
        .strip_prefix("root=/dev/cobd")
        .and_then(|n| n.parse::<u32>().ok())
    else {
        return Ok(word.value.clone());
    };
    match disks.iter().position(|d| d.unit == unit) {
        Some(i) => Ok(format!("root=/dev/{}", guest_disk_name(i))),
        None => bail!(
            "{}: {}: there is no cobd{unit}= disk",
            word.origin,
            word.value
        ),
    }
}

/// `set` must name a readable regular file.
fn check_file(set: &Set<PathBuf>, key: &str) -> Result<()> {
    let p = &set.value;
    let meta = std::fs::metadata(p)
        .map_err(|e| anyhow::anyhow!("{}: {key}={}: {e}", set.origin, p.display()))?;
    if !meta.is_file() {
        bail!("{}: {key}={}: not a file", set.origin, p.display());
    }
    std::fs::File::open(p)
        .map_err(|e| anyhow::anyhow!("{}: {key}={}: {e}", set.origin, p.display()))?;
    Ok(())
}

/// `cobd3` → (Cobd, 3); `eth0` → (Eth, 0); anything else → None.
fn device_key(key: &str) -> Option<(DeviceKind, u32)> {
    for kind in [DeviceKind::Cobd, DeviceKind::Eth, DeviceKind::Cofs] {
        if let Some(n) = key.strip_prefix(kind.key()) {
            if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && n.len() <= 3 {
                return n.parse().ok().map(|n| (kind, n));
            }
        }
    }
    None
}

/// A guest name: 1 to 32 of `[A-Za-z0-9_.-]`, not starting with `.` or
/// `-` (it names a directory under the run directory and a systemd unit
/// instance).
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 32 {
        bail!("a guest name has 1 to 32 characters");
    }
    if name.starts_with('.') || name.starts_with('-') {
        bail!("a guest name does not start with '.' or '-'");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        bail!("{c:?} is not allowed in a guest name (letters, digits, '_', '.', '-')");
    }
    Ok(())
}

/// Split a line of an `@file` into words (`#` starts a comment, `"…"`
/// quotes).
fn split_words(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '#' if !quoted => break,
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("a quote (\") is not closed".into());
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use colinux_devices::fs::Cache;

    fn defaults() -> Defaults {
        Defaults {
            host_memory: 2048,
            max_memory: 832,
            min_memory: 16,
            run_dir: PathBuf::from("/run/colinux"),
        }
    }

    /// The example the `colinux` package installs as
    /// /etc/colinux/example.toml parses and says what its comments say.
    #[test]
    fn the_packaged_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/example.toml");
        let mut s = Settings::default();
        s.apply_toml(&path).unwrap();
        assert_eq!(s.name.as_ref().unwrap().value, "example");
        assert_eq!(
            s.kernel.as_ref().unwrap().value,
            PathBuf::from("/usr/lib/colinux/vmlinux-6.1")
        );
        assert_eq!(s.memory.as_ref().unwrap().value, 256);
        let cmdline: Vec<&str> = s.cmdline.iter().map(|w| w.value.as_str()).collect();
        assert_eq!(cmdline, ["root=/dev/cobd0", "ro"]);
        assert!(s.devices[&(DeviceKind::Cobd, 0)]
            .value
            .starts_with("/var/lib/colinux/"));
        assert!(s.devices[&(DeviceKind::Eth, 0)].value.starts_with("slirp"));
    }

    #[test]
    fn defaults_fill_in_and_values_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("vmlinux");
        std::fs::write(&k, b"x").unwrap();
        let mut s = Settings::default();
        words(&mut s, &[&format!("kernel={}", k.display())]).unwrap();
        let c = s.clone().resolve(&defaults()).unwrap();
        assert_eq!(c.name, DEFAULT_NAME);
        assert_eq!(c.memory, 512);
        assert_eq!(
            c.console_socket,
            PathBuf::from("/run/colinux/colinux/console.sock")
        );
        let big = Defaults {
            host_memory: 64 << 10,
            ..defaults()
        };
        assert_eq!(s.clone().resolve(&big).unwrap().memory, 832);
        // The file names the guest.
        let mut f = s.clone();
        f.file = Some(dir.path().join("web.toml"));
        assert_eq!(f.resolve(&defaults()).unwrap().name, "web");

        let mut m = s.clone();
        m.apply_word("mem=4000", Origin::Word(2), None).unwrap();
        let e = m.resolve(&defaults()).unwrap_err().to_string();
        assert_eq!(
            e,
            "command-line word 2: mem=4000: a guest has 16 to 832 MiB of RAM"
        );

        let e = Settings::default()
            .resolve(&defaults())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("no guest kernel given"), "{e}");
        let mut m = Settings::default();
        m.apply_word("kernel=/nonexistent/vmlinux", Origin::Word(1), None)
            .unwrap();
        let e = m.resolve(&defaults()).unwrap_err().to_string();
        assert!(
            e.starts_with("command-line word 1: kernel=/nonexistent/vmlinux: No such file"),
            "{e}"
        );
        let mut m = s.clone();
        m.apply_word("cofs0=/nonexistent/share", Origin::Word(2), None)
            .unwrap();
        let e = format!("{:#}", m.resolve(&defaults()).unwrap_err());
        assert!(
            e.starts_with(
                "command-line word 2: cofs0=/nonexistent/share: /nonexistent/share: No such file"
            ),
            "{e}"
        );
        let mut m = s.clone();
        let f = dir.path().join("plain-file");
        std::fs::write(&f, "x").unwrap();
        m.apply_word(&format!("cofs1={},ro", f.display()), Origin::Word(3), None)
            .unwrap();
        let e = format!("{:#}", m.resolve(&defaults()).unwrap_err());
        assert!(e.contains("is not a directory"), "{e}");
        let mut m = s.clone();
        let d = dir.path().display();
        m.apply_word(&format!("cofs2={d}"), Origin::Word(3), None)
            .unwrap();
        let e = m
            .apply_word(&format!("cofs2={d},ro"), Origin::Word(4), None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!("command-line word 4: cofs2={d},ro: the share cofs2 is already set (at command-line word 3)")
        );
        let mut m = s.clone();
        m.apply_word("eth0=slirp,tcp:22", Origin::Word(2), None)
            .unwrap();
        m.apply_word("eth1=slirp,tcp:22:2222", Origin::Word(3), None)
            .unwrap();
        let e = m.resolve(&defaults()).unwrap_err().to_string();
        assert!(
            e.contains(
                "command-line word 3: eth1=slirp,tcp:22:2222: tcp host port 22 is forwarded to eth0 already"
            ),
            "{e}"
        );
        let mut m = s.clone();
        m.apply_word("eth2=slirp,tcp:99999:22", Origin::Word(4), None)
            .unwrap();
        let e = m.resolve(&defaults()).unwrap_err().to_string();
        assert!(
            e.starts_with("command-line word 4: eth2=slirp,tcp:99999:22: tcp:99999:22: \"99999\" is not a port"),
            "{e}"
        );
        let mut m = s.clone();
        m.apply_word("cobd0=/nonexistent.img", Origin::Word(2), None)
            .unwrap();
        let e = m.resolve(&defaults()).unwrap_err().to_string();
        assert!(
            e.starts_with("command-line word 2: cobd0=/nonexistent.img: No such file"),
            "{e}"
        );
        let mut m = s.clone();
        let d = dir.path().display();
        m.apply_word(&format!("cobd1={d}"), Origin::Word(3), None)
            .unwrap();
        let e = m.resolve(&defaults()).unwrap_err().to_string();
        assert!(
            e.contains("neither an image file nor a block device"),
            "{e}"
        );
    }

    #[test]
    fn disks_are_configured_and_root_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = write(&dir, "vmlinux", "x");
        let a = write(&dir, "a.img", "x");
        write(&dir, "b.img", "x");
        let conf = write(
            &dir,
            "g.conf",
            &format!(
                "kernel={}\ncobd0=a.img cobd5=b.img,ro root=/dev/cobd5 ro\n",
                kernel.display()
            ),
        );
        let mut s = Settings::default();
        s.apply_colinux_file(&conf).unwrap();
        let c = s.clone().resolve(&defaults()).unwrap();
        assert_eq!(
            c.disks,
            [
                DiskConfig {
                    unit: 0,
                    path: a.clone(),
                    read_only: false
                },
                DiskConfig {
                    unit: 5,
                    path: dir.path().join("b.img"),
                    read_only: true
                }
            ]
        );
        // cobd5 is the second disk the guest finds.
        assert_eq!(c.cmdline, ["root=/dev/vdb", "ro"]);
        // A root on a disk that is not there.
        let mut bad = s.clone();
        bad.apply_word("root=/dev/cobd2", Origin::Word(1), None)
            .unwrap();
        let e = bad.resolve(&defaults()).unwrap_err().to_string();
        assert_eq!(
            e,
            "command-line word 1: root=/dev/cobd2: there is no cobd2= disk"
        );

        // TOML: [cobd.N] tables, paths relative to the file.
        let toml = write(
            &dir,
            "t.toml",
            &format!(
                "kernel = \"{}\"\ncmdline = \"root=/dev/cobd0\"\n[cobd.0]\npath = \"a.img\"\nreadonly = true\n",
                kernel.display()
            ),
        );
        let mut t = Settings::default();
        t.apply_toml(&toml).unwrap();
        let c = t.resolve(&defaults()).unwrap();
        assert_eq!(c.disks.len(), 1);
        assert!(c.disks[0].read_only && c.disks[0].path == a);
        assert_eq!(c.cmdline, ["root=/dev/vda"]);
        let bad = write(&dir, "u.toml", "[cobd.40]\npath = \"a.img\"\n");
        let e = Settings::default()
            .apply_toml(&bad)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("u.toml:2: [cobd.40]: the unit is a number from 0 to 31"),
            "{e}"
        );
        let bad = write(&dir, "v.toml", "[cobd.0]\npath = \"a.img\"\nsize = 3\n");
        let e = Settings::default()
            .apply_toml(&bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("v.toml:3: unknown field `size`"), "{e}");
    }

    #[test]
    fn interfaces_are_configured_by_word_and_by_toml() {
        use colinux_devices::net::{Forward, Mac, Proto};
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("vmlinux");
        std::fs::write(&k, b"x").unwrap();
        let mut s = Settings::default();
        s.apply_word(&format!("kernel={}", k.display()), Origin::Word(1), None)
            .unwrap();
        s.apply_word("name=web", Origin::Word(2), None).unwrap();
        s.apply_word("eth0=slirp,tcp:8080:80", Origin::Word(3), None)
            .unwrap();
        s.apply_word("eth1=tuntap,tap7,02:00:00:00:00:07", Origin::Word(4), None)
            .unwrap();
        let c = s.clone().resolve(&defaults()).unwrap();
        assert_eq!(
            c.nets,
            [
                NetConfig {
                    unit: 0,
                    mac: derived_mac("web", 0),
                    backend: BackendConfig::Slirp {
                        forwards: vec![Forward {
                            proto: Proto::Tcp,
                            host: 8080,
                            guest: 80
                        }]
                    }
                },
                NetConfig {
                    unit: 1,
                    mac: Mac([2, 0, 0, 0, 0, 7]),
                    backend: BackendConfig::Tap {
                        name: Some("tap7".into())
                    }
                },
            ]
        );
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let t = write(
            "g.toml",
            "kernel = \"vmlinux\"\n[eth.0]\nkind = \"slirp\"\nforward = [\"tcp:2222:22\", \"udp:5353:53\"]\n[eth.3]\nkind = \"tuntap\"\ntap = \"tap0\"\nmac = \"02:00:00:00:00:03\"\n",
        );
        let mut m = Settings::default();
        m.apply_toml(&t).unwrap();
        let c = m.resolve(&defaults()).unwrap();
        assert_eq!(c.nets.len(), 2);
        assert_eq!(c.nets[0].mac, derived_mac("g", 0));
        assert_eq!(
            c.nets[0].backend,
            BackendConfig::Slirp {
                forwards: vec![
                    Forward {
                        proto: Proto::Tcp,
                        host: 2222,
                        guest: 22
                    },
                    Forward {
                        proto: Proto::Udp,
                        host: 5353,
                        guest: 53
                    }
                ]
            }
        );
        assert_eq!(c.nets[1].unit, 3);
        assert_eq!(c.nets[1].mac, Mac([2, 0, 0, 0, 0, 3]));
        let bad = write("b.toml", "kernel = \"vmlinux\"\n[eth.1]\nkind = \"ppp\"\n");
        let mut m = Settings::default();
        m.apply_toml(&bad).unwrap();
        let e = m.resolve(&defaults()).unwrap_err().to_string();
        assert!(
            e.contains("b.toml:3: eth1=ppp: \"ppp\" is not a network kind"),
            "{e}"
        );
        let bad = write(
            "c.toml",
            "kernel = \"vmlinux\"\n[eth.1]\nkind = \"slirp\"\ntap = \"x\"\n",
        );
        let e = Settings::default()
            .apply_toml(&bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tap = is for kind = \"tuntap\""), "{e}");
        // Two interfaces on one TAP.
        let mut m = s.clone();
        m.apply_word("eth2=tuntap,tap7", Origin::Word(5), None)
            .unwrap();
        let e = m.resolve(&defaults()).unwrap_err().to_string();
        assert!(e.contains("TAP tap7 is eth1's already"), "{e}");
    }

    #[test]
    fn guest_disk_names_follow_virtio_blk() {
        let n: Vec<String> = [0, 1, 25, 26, 27, 31]
            .iter()
            .map(|&i| guest_disk_name(i))
            .collect();
        assert_eq!(n, ["vda", "vdb", "vdz", "vdaa", "vdab", "vdaf"]);
    }

    #[test]
    fn shares_are_configured_from_words_files_and_toml() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir, "vmlinux", "x");
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::create_dir(dir.path().join("docs")).unwrap();
        let canon = |n: &str| std::fs::canonicalize(dir.path().join(n)).unwrap();
        // TOML: [cofs.N], paths relative to the file.
        let t = write(
            &dir,
            "g.toml",
            "kernel = \"vmlinux\"\n[cofs.0]\npath = \"src\"\n[cofs.4]\npath = \"docs\"\nreadonly = true\ncache = \"auto\"\n",
        );
        let mut m = Settings::default();
        m.apply_toml(&t).unwrap();
        let c = m.clone().resolve(&defaults()).unwrap();
        assert_eq!(
            c.shares,
            vec![
                FsConfig {
                    unit: 0,
                    dir: canon("src"),
                    read_only: false,
                    cache: Cache::Never,
                },
                FsConfig {
                    unit: 4,
                    dir: canon("docs"),
                    read_only: true,
                    cache: Cache::Auto,
                }
            ]
        );
        // The command line overrides the file's share.
        m.apply_word(
            &format!("cofs0={},ro", dir.path().join("docs").display()),
            Origin::Word(1),
            None,
        )
        .unwrap();
        let c = m.resolve(&defaults()).unwrap();
        assert_eq!(c.shares[0].dir, canon("docs"));
        assert!(c.shares[0].read_only);
        // An @file: relative to it; one file naming a share twice is refused.
        let f = write(&dir, "g.conf", "kernel=vmlinux cofs1=src\n");
        let mut m = Settings::default();
        m.apply_colinux_file(&f).unwrap();
        let c = m.resolve(&defaults()).unwrap();
        assert_eq!(c.shares[0].dir, canon("src"));
        let f = write(&dir, "h.conf", "kernel=vmlinux cofs1=src\ncofs1=docs\n");
        let e = Settings::default()
            .apply_colinux_file(&f)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("h.conf:2: cofs1=")
                && e.contains("the share cofs1 is already set (at ")
                && e.contains("h.conf:1)"),
            "{e}"
        );
        // TOML: the unit's range.
        let bad = write(&dir, "u.toml", "[cofs.16]\npath = \"src\"\n");
        let e = Settings::default()
            .apply_toml(&bad)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("u.toml:2: [cofs.16]: the share is a number from 0 to 15"),
            "{e}"
        );
    }

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// What `setting` (the only one in the settings) was set from.
    fn from<T>(setting: &Option<Set<T>>) -> &Origin {
        &setting.as_ref().unwrap().origin
    }

    fn at(path: &Path, line: usize) -> Origin {
        Origin::File {
            path: path.to_path_buf(),
            line,
        }
    }

    fn words(s: &mut Settings, w: &[&str]) -> Result<()> {
        for (i, w) in w.iter().enumerate() {
            s.apply_word(w, Origin::Word(i + 1), None)?;
        }
        Ok(())
    }

    #[test]
    fn colinux_words_set_keys_and_the_rest_goes_to_the_kernel() {
        let mut s = Settings::default();
        words(
            &mut s,
            &[
                "name=web",
                "kernel=/k",
                "mem=256",
                "root=/dev/cobd0",
                "ro",
                "cobd0=/img",
                "mem=128",
            ],
        )
        .unwrap();
        assert_eq!(s.name.as_ref().unwrap().value, "web");
        assert_eq!(s.kernel.as_ref().unwrap().value, PathBuf::from("/k"));
        // Later words override earlier ones.
        assert_eq!(s.memory.as_ref().unwrap().value, 128);
        assert_eq!(s.memory.as_ref().unwrap().origin, Origin::Word(7));
        let cmd: Vec<_> = s.cmdline.iter().map(|c| c.value.as_str()).collect();
        assert_eq!(cmd, ["root=/dev/cobd0", "ro"]);
        assert_eq!(s.devices[&(DeviceKind::Cobd, 0)].value, "/img");
    }

    #[test]
    fn bad_words_name_the_word() {
        let e = words(&mut Settings::default(), &["kernel=/k", "mem=lots"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "command-line word 2: mem=lots: not a number of MiB"
        );
        let e = words(&mut Settings::default(), &["name=a/b"]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("command-line word 1: name=a/b: '/'"),
            "{e}"
        );
        let e = words(&mut Settings::default(), &["cobd32=/x"]).unwrap_err();
        assert!(e.to_string().contains("cobdN takes N from 0 to 31"), "{e}");
        let e = words(&mut Settings::default(), &["kernel="]).unwrap_err();
        assert!(e.to_string().contains("kernel= needs a value"), "{e}");
        // Not device keys: cmdline words.
        let mut s = Settings::default();
        words(&mut s, &["ethtool=1", "cobd=2"]).unwrap();
        assert_eq!(s.cmdline.len(), 2);
        assert!(s.devices.is_empty());
    }

    #[test]
    fn colinux_files_have_lines_comments_and_quotes() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            "web.conf",
            "# a coLinux config\nkernel=vmlinux  initrd=\"my initrd.cpio\"\nmem=64 # small\n\nroot=/dev/cobd0 ro\nmem=x\n",
        );
        let mut s = Settings::default();
        let e = s.apply_colinux_file(&p).unwrap_err().to_string();
        assert_eq!(e, format!("{}:6: mem=x: not a number of MiB", p.display()));
        assert_eq!(s.kernel.as_ref().unwrap().value, dir.path().join("vmlinux"));
        assert_eq!(
            s.initrd.as_ref().unwrap().value,
            dir.path().join("my initrd.cpio")
        );
        assert_eq!(from(&s.memory), &at(&p, 3));
        assert_eq!(s.cmdline.len(), 2);
        assert!(split_words("a \"b").is_err());
    }

    #[test]
    fn toml_files_and_their_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            "db.toml",
            "name = \"db\"\nkernel = \"/boot/vmlinux\"\nmemory = 128\ncmdline = \"root=/dev/cobd0 ro\"\n[console]\nsocket = \"c.sock\"\n",
        );
        let mut s = Settings::default();
        s.apply_toml(&p).unwrap();
        assert_eq!(s.name.as_ref().unwrap().value, "db");
        assert_eq!(s.memory.as_ref().unwrap().value, 128);
        assert_eq!(from(&s.memory), &at(&p, 3));
        assert_eq!(s.cmdline.len(), 2);
        assert_eq!(
            s.console_socket.as_ref().unwrap().value,
            dir.path().join("c.sock")
        );
        std::fs::write(&p, "name = \"db\"\n\nmemroy = 128\n").unwrap();
        let e = Settings::default().apply_toml(&p).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}:3: unknown field `memroy`", p.display())),
            "{e}"
        );
        std::fs::write(&p, "memory = \"lots\"\n").unwrap();
        let e = Settings::default().apply_toml(&p).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:1: ", p.display())), "{e}");
        std::fs::write(&p, "name = \"a b\"\n").unwrap();
        let e = Settings::default().apply_toml(&p).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}:1: name=a b:", p.display())),
            "{e}"
        );
    }
}
