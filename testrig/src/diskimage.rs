//! Disk images for the test host's disks ([`crate::testhost::Disk`]), made on
//! the build machine without root, loop devices or mounts:
//!
//! - [`Ext4Image`]: an ext4 file system with given files inside
//!   (`mke2fs -t ext4 -d DIR`), as a whole image file or written into a
//!   partition of another image (`-E offset=`).
//! - [`PartitionedImage`]: a raw disk with an MBR (DOS) partition table and
//!   up to four primary partitions (`sfdisk` on the file), each aligned to
//!   1 MiB; [`PartitionedImage::create`] says where each one starts.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use colinux_testrig::diskimage::{self, Ext4Image, PartitionedImage};
//! use colinux_testrig::testhost::Scenario;
//!
//! let dir = diskimage::scratch_dir("my-test")?; // target/test-host/disks/my-test/
//! let fs = dir.join("fs.img");
//! Ext4Image::new(32).label("data").file("etc/hello", "hi\n").create(&fs)?;
//! let raw = dir.join("raw.img");
//! let parts = PartitionedImage::new(64).partition(16).partition(16).rest().create(&raw)?;
//! // An ext4 file system in the second partition.
//! Ext4Image::new(16).create_in(&raw, parts[1].start)?;
//! let s = Scenario::new("my-test", "mount /dev/vda /mnt && cat /mnt/etc/hello")
//!     .disk(&fs)   // /dev/vda, /dev/disk/by-id/virtio-disk0
//!     .disk(&raw); // /dev/vdb (vdb1, vdb2, vdb3)
//! # Ok(())
//! # }
//! ```
//!
//! The images are sparse files: a 1 GiB image with a few files uses a few
//! MiB of the build machine's disk.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use colinux_buildenv::sysdeps;

use crate::testhost;

/// The Debian packages the images need: `mke2fs` and `sfdisk`.
pub const TOOLS: &[&str] = &["e2fsprogs", "fdisk"];

/// Sector size of the images' partition tables.
pub const SECTOR: u64 = 512;
/// Where partitions are aligned: 1 MiB, in sectors (as fdisk does).
const ALIGN: u64 = 2048;
const MIB: u64 = 1 << 20;

/// A fresh, empty directory for a test's images:
/// `target/test-host/disks/<name>/` (emptied if it was there).
pub fn scratch_dir(name: &str) -> Result<PathBuf> {
    let safe = testhost::file_name_chars(name);
    if safe.is_empty() || safe.starts_with('.') {
        bail!("{name:?} cannot name a directory of disk images");
    }
    let dir = testhost::output_dir().join("disks").join(safe);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot empty {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// An ext4 file system image, made with `mke2fs -t ext4 -d` (Debian's
/// default ext4 features: journal, extents, `metadata_csum`, 64bit, …; the
/// root directory owned by root; files keep the modes given).
#[derive(Debug, Clone)]
pub struct Ext4Image {
    size_mib: u64,
    label: Option<String>,
    features: Option<String>,
    files: Vec<(String, Vec<u8>, u32)>,
    from_dir: Option<PathBuf>,
}

impl Ext4Image {
    /// An empty file system of `size_mib` MiB.
    pub fn new(size_mib: u64) -> Self {
        Ext4Image {
            size_mib,
            label: None,
            features: None,
            files: Vec::new(),
            from_dir: None,
        }
    }

    /// The volume label (`mke2fs -L`, at most 16 bytes).
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Features to add or (with `^`) remove, as `mke2fs -O` takes them,
    /// e.g. `^metadata_csum`.
    pub fn features(mut self, features: impl Into<String>) -> Self {
        self.features = Some(features.into());
        self
    }

    /// A file at `path` (relative to the file system's root; parent
    /// directories are made) with `contents`, mode 0644.
    pub fn file(self, path: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        self.file_mode(path, contents, 0o644)
    }

    /// A file with the given permission bits.
    pub fn file_mode(
        mut self,
        path: impl Into<String>,
        contents: impl Into<Vec<u8>>,
        mode: u32,
    ) -> Self {
        self.files.push((path.into(), contents.into(), mode));
        self
    }

    /// Copy the tree under `dir` into the file system's root (with the
    /// files given by [`Ext4Image::file`] added over it).
    pub fn from_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.from_dir = Some(dir.into());
        self
    }

    /// Write the file system as the whole of the image file `out` (created
    /// or replaced; sparse).
    pub fn create(&self, out: &Path) -> Result<()> {
        if out.exists() {
            std::fs::remove_file(out)
                .with_context(|| format!("cannot replace {}", out.display()))?;
        }
        let f = std::fs::File::create(out)
            .with_context(|| format!("cannot create {}", out.display()))?;
        f.set_len(self.size_mib * MIB)
            .with_context(|| format!("cannot size {}", out.display()))?;
        drop(f);
        self.mke2fs(out, None)
    }

    /// Write the file system into the existing image `image` at byte
    /// `offset` (e.g. a partition's [`Partition::start`]), `size_mib` MiB
    /// long; the rest of the image is left as it is.
    pub fn create_in(&self, image: &Path, offset: u64) -> Result<()> {
        let len = std::fs::metadata(image)
            .with_context(|| format!("cannot read {}", image.display()))?
            .len();
        if !offset.is_multiple_of(4096) || offset + self.size_mib * MIB > len {
            bail!(
                "{}: an ext4 file system of {} MiB at byte {offset} does not fit in its {len} \
                 bytes (or the offset is not 4 KiB aligned)",
                image.display(),
                self.size_mib
            );
        }
        self.mke2fs(image, Some(offset))
    }

    fn mke2fs(&self, image: &Path, offset: Option<u64>) -> Result<()> {
        sysdeps::ensure("making ext4 disk images", TOOLS)?;
        if self.size_mib < 2 {
            bail!("an ext4 image needs at least 2 MiB");
        }
        if let Some(l) = &self.label {
            if l.len() > 16 {
                bail!("the ext4 label {l:?} is longer than 16 bytes");
            }
        }
        let stage = tempfile::Builder::new()
            .prefix("colinux-ext4-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let root = stage.path().join("root");
        std::fs::create_dir(&root).with_context(|| format!("cannot create {}", root.display()))?;
        if let Some(dir) = &self.from_dir {
            copy_tree(dir, &root)
                .with_context(|| format!("cannot copy {} for the image", dir.display()))?;
        }
        for (path, data, mode) in &self.files {
            let rel = Path::new(path.trim_start_matches('/'));
            if rel.as_os_str().is_empty()
                || rel
                    .components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                bail!("{path:?}: not a path inside the file system");
            }
            let dst = root.join(rel);
            if let Some(p) = dst.parent() {
                std::fs::create_dir_all(p)
                    .with_context(|| format!("cannot create {}", p.display()))?;
            }
            std::fs::write(&dst, data)
                .with_context(|| format!("cannot write {}", dst.display()))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(*mode))
                .with_context(|| format!("cannot set the mode of {}", dst.display()))?;
        }
        let mut ext = String::from("root_owner=0:0");
        if let Some(o) = offset {
            ext.push_str(&format!(",offset={o}"));
        }
        let mut cmd = Command::new("mke2fs");
        cmd.args(["-t", "ext4", "-F", "-q", "-b", "4096", "-E", &ext, "-d"])
            .arg(&root);
        if let Some(l) = &self.label {
            cmd.args(["-L", l]);
        }
        if let Some(f) = &self.features {
            cmd.args(["-O", f]);
        }
        cmd.arg(image).arg(format!("{}k", self.size_mib * 1024));
        run(&mut cmd, None).with_context(|| format!("cannot make ext4 in {}", image.display()))
    }
}

/// Copy the regular files, directories and symbolic links under `from`
/// into `to`.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let ty = entry.file_type()?;
        if ty.is_dir() {
            std::fs::create_dir(&dst)
                .with_context(|| format!("cannot create {}", dst.display()))?;
            copy_tree(&src, &dst)?;
        } else if ty.is_symlink() {
            let target = std::fs::read_link(&src)?;
            std::os::unix::fs::symlink(&target, &dst)
                .with_context(|| format!("cannot create {}", dst.display()))?;
        } else if ty.is_file() {
            std::fs::copy(&src, &dst).with_context(|| format!("cannot copy {}", src.display()))?;
        } else {
            bail!("{}: not a file, directory or symbolic link", src.display());
        }
    }
    Ok(())
}

/// A raw disk image with an MBR partition table.
#[derive(Debug, Clone)]
pub struct PartitionedImage {
    size_mib: u64,
    /// Size in MiB (`None`: the rest of the disk) and MBR type.
    parts: Vec<(Option<u64>, u8)>,
}

/// Where a partition of a [`PartitionedImage`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// 1 for the first (`/dev/vdb1` when the image is the second disk).
    pub number: u32,
    /// Its first byte in the image.
    pub start: u64,
    /// Its length in bytes.
    pub size: u64,
    /// The MBR partition type (0x83 Linux).
    pub kind: u8,
}

impl Partition {
    /// Its first sector (of [`SECTOR`] bytes).
    pub fn start_sector(&self) -> u64 {
        self.start / SECTOR
    }

    /// Its length in sectors (what `/sys/block/vdX/vdXN/size` says).
    pub fn sectors(&self) -> u64 {
        self.size / SECTOR
    }
}

impl PartitionedImage {
    /// A disk of `size_mib` MiB, no partitions yet.
    pub fn new(size_mib: u64) -> Self {
        PartitionedImage {
            size_mib,
            parts: Vec::new(),
        }
    }

    /// Add a Linux (0x83) partition of `size_mib` MiB.
    pub fn partition(self, size_mib: u64) -> Self {
        self.partition_typed(Some(size_mib), 0x83)
    }

    /// Add a Linux partition over the rest of the disk (the last one).
    pub fn rest(self) -> Self {
        self.partition_typed(None, 0x83)
    }

    /// Add a partition of `size_mib` MiB (`None`: the rest) and MBR type
    /// `kind` (e.g. 0x82 swap, 0x0c FAT32).
    pub fn partition_typed(mut self, size_mib: Option<u64>, kind: u8) -> Self {
        self.parts.push((size_mib, kind));
        self
    }

    /// Where the partitions go: each at the next MiB boundary, the first at
    /// 1 MiB.
    pub fn layout(&self) -> Result<Vec<Partition>> {
        if self.parts.is_empty() || self.parts.len() > 4 {
            bail!(
                "{} partitions: an MBR image here has 1 to 4 (primary) partitions",
                self.parts.len()
            );
        }
        let total = self.size_mib * MIB / SECTOR;
        let mut next = ALIGN;
        let mut out = Vec::new();
        for (i, (size, kind)) in self.parts.iter().enumerate() {
            let sectors = match size {
                Some(0) => bail!("partition {}: size 0", i + 1),
                Some(mib) => mib * MIB / SECTOR,
                None if i + 1 == self.parts.len() => total.saturating_sub(next),
                None => bail!(
                    "partition {}: only the last partition can take the rest",
                    i + 1
                ),
            };
            if sectors == 0 || next + sectors > total {
                bail!(
                    "partition {} ({} sectors at sector {next}) does not fit on a {} MiB disk",
                    i + 1,
                    sectors,
                    self.size_mib
                );
            }
            out.push(Partition {
                number: u32::try_from(i + 1).unwrap_or(u32::MAX),
                start: next * SECTOR,
                size: sectors * SECTOR,
                kind: *kind,
            });
            next += sectors.div_ceil(ALIGN) * ALIGN;
        }
        Ok(out)
    }

    /// The `sfdisk` script for [`PartitionedImage::layout`].
    fn script(parts: &[Partition]) -> String {
        let mut s = String::from("label: dos\nlabel-id: 0x434f4c58\nunit: sectors\n\n");
        for p in parts {
            s.push_str(&format!(
                "start={}, size={}, type={:x}\n",
                p.start_sector(),
                p.sectors(),
                p.kind
            ));
        }
        s
    }

    /// Write the image `out` (created or replaced; sparse, all zeros but
    /// the table) and return its partitions, as `sfdisk -d` reads them
    /// back.
    pub fn create(&self, out: &Path) -> Result<Vec<Partition>> {
        sysdeps::ensure("making partitioned disk images", TOOLS)?;
        let parts = self.layout()?;
        if out.exists() {
            std::fs::remove_file(out)
                .with_context(|| format!("cannot replace {}", out.display()))?;
        }
        let f = std::fs::File::create(out)
            .with_context(|| format!("cannot create {}", out.display()))?;
        f.set_len(self.size_mib * MIB)
            .with_context(|| format!("cannot size {}", out.display()))?;
        drop(f);
        let script = Self::script(&parts);
        run(
            Command::new("sfdisk")
                .args(["--no-reread", "--no-tell-kernel", "-q", "-w", "never"])
                .arg(out),
            Some(&script),
        )
        .with_context(|| format!("sfdisk could not partition {}", out.display()))?;
        let dump = Command::new("sfdisk")
            .arg("-d")
            .arg(out)
            .stdin(Stdio::null())
            .output()
            .context("cannot run sfdisk -d")?;
        if !dump.status.success() {
            bail!(
                "sfdisk -d {} failed: {}",
                out.display(),
                String::from_utf8_lossy(&dump.stderr).trim()
            );
        }
        let read = parse_dump(&String::from_utf8_lossy(&dump.stdout))?;
        if read != parts {
            bail!(
                "{}: sfdisk made {read:?}, not the asked-for {parts:?}",
                out.display()
            );
        }
        Ok(read)
    }
}

/// The partitions in `sfdisk -d` output
/// (`/path/img1 : start=        2048, size=       16384, type=83`).
pub fn parse_dump(text: &str) -> Result<Vec<Partition>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((dev, fields)) = line.split_once(" : ") else {
            continue;
        };
        let number: u32 = dev
            .trim()
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("no partition number in {line:?}"))?;
        let (mut start, mut size, mut kind) = (None, None, None);
        for f in fields.split(',') {
            let Some((k, v)) = f.split_once('=') else {
                continue;
            };
            let v = v.trim();
            match k.trim() {
                "start" => start = v.parse::<u64>().ok(),
                "size" => size = v.parse::<u64>().ok(),
                "type" => kind = u8::from_str_radix(v, 16).ok(),
                _ => {}
            }
        }
        match (start, size, kind) {
            (Some(start), Some(size), Some(kind)) => out.push(Partition {
                number,
                start: start * SECTOR,
                size: size * SECTOR,
                kind,
            }),
            _ => bail!("cannot read the partition line {line:?}"),
        }
    }
    Ok(out)
}

/// Run `cmd` (with `stdin` text, if any); an error with its output unless
/// it succeeds.
fn run(cmd: &mut Command, stdin: Option<&str>) -> Result<()> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    tracing::debug!(
        "{program} {}",
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .with_context(|| format!("cannot write to {program}"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("cannot wait for {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_aligned_partitions() {
        let p = PartitionedImage::new(64)
            .partition(8)
            .partition_typed(Some(3), 0x82)
            .rest()
            .layout()
            .unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!((p[0].start_sector(), p[0].sectors()), (2048, 16384));
        assert_eq!(
            (p[1].start_sector(), p[1].sectors(), p[1].kind),
            (18432, 6144, 0x82)
        );
        // 3 MiB rounds up to the next MiB boundary: 18432 + 6144 = 24576.
        assert_eq!(p[2].start_sector(), 24576);
        assert_eq!(p[2].start_sector() + p[2].sectors(), 64 * 2048);
        let s = PartitionedImage::script(&p);
        assert!(s.starts_with("label: dos\n"), "{s}");
        assert!(s.contains("start=18432, size=6144, type=82\n"), "{s}");

        assert!(PartitionedImage::new(8).layout().is_err());
        assert!(PartitionedImage::new(8).partition(8).layout().is_err());
        assert!(PartitionedImage::new(8)
            .rest()
            .partition(1)
            .layout()
            .is_err());
        let five = (0..5).fold(PartitionedImage::new(64), |d, _| d.partition(1));
        assert!(five.layout().is_err());
    }

    #[test]
    fn reads_sfdisk_dumps() {
        let dump = "label: dos\nlabel-id: 0x434f4c58\ndevice: /t/raw.img\nunit: sectors\n\
                    sector-size: 512\n\n\
                    /t/raw.img1 : start=        2048, size=       16384, type=83\n\
                    /t/raw.img2 : start=       18432, size=        6144, type=82\n";
        let p = parse_dump(dump).unwrap();
        assert_eq!(
            p,
            [
                Partition {
                    number: 1,
                    start: 2048 * 512,
                    size: 16384 * 512,
                    kind: 0x83
                },
                Partition {
                    number: 2,
                    start: 18432 * 512,
                    size: 6144 * 512,
                    kind: 0x82
                }
            ]
        );
        assert!(parse_dump("/t/x1 : start=oops, size=1, type=83\n").is_err());
    }

    /// Needs mke2fs and sfdisk (installed by the rig when run as root).
    #[test]
    fn makes_images_without_root_tools() {
        // Not a skip: without the tools (as root they are installed) the
        // test fails, saying what to install.
        sysdeps::ensure("making disk images", TOOLS).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw.img");
        let parts = PartitionedImage::new(32)
            .partition(8)
            .rest()
            .create(&raw)
            .unwrap();
        assert_eq!(parts.len(), 2);
        let data = std::fs::read(&raw).unwrap();
        assert_eq!(&data[510..512], &[0x55, 0xaa]);
        // An ext4 file system in partition 2 leaves partition 1 and the
        // table alone.
        Ext4Image::new(8)
            .file("a/b.txt", "hello\n")
            .create_in(&raw, parts[1].start)
            .unwrap();
        let after = std::fs::read(&raw).unwrap();
        assert_eq!(after.len(), data.len());
        assert_eq!(
            &after[..parts[1].start as usize],
            &data[..parts[1].start as usize]
        );
        // The ext4 magic at 1080 in the partition.
        let magic = parts[1].start as usize + 1080;
        assert_eq!(&after[magic..magic + 2], &[0x53, 0xef]);

        let fs = dir.path().join("fs.img");
        Ext4Image::new(16)
            .label("t")
            .file("x/y", b"z".to_vec())
            .create(&fs)
            .unwrap();
        assert_eq!(std::fs::metadata(&fs).unwrap().len(), 16 << 20);
        let cat = Command::new("debugfs")
            .args(["-R", "cat /x/y"])
            .arg(&fs)
            .output()
            .unwrap();
        assert_eq!(cat.stdout, b"z");
        let fsck = Command::new("e2fsck").arg("-fn").arg(&fs).output().unwrap();
        assert!(fsck.status.success(), "{fsck:?}");
        assert!(Ext4Image::new(8).file("../x", "").create(&fs).is_err());
        assert!(Ext4Image::new(64).create_in(&raw, parts[1].start).is_err());
    }
}
