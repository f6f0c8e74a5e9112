//! `cargo xtask image import`: what users have, turned into a cobd image —
//! a raw file that holds one file system, which the host serves to the
//! guest as a whole disk (`cobd0=PATH`).
//!
//! What comes in, recognised by its content ([`detect`]), not its name:
//! - a raw disk with an MBR partition table (primary and logical
//!   partitions; QEMU-installed disks whose first partition starts at
//!   sector 63, as the coLinux wiki's `dd … skip=63` recipe describes, are
//!   just that) or a GPT (a protective MBR's type 0xEE entry). One
//!   partition is copied: `--partition N`, else the only Linux one
//!   ([`choose`]); with none or several, the error lists them all;
//! - a qcow2 (or VMDK, VDI, VHDX) image: `qemu-img convert -O raw` into a
//!   temporary file beside the output first, then as above;
//! - a raw ext2/3/4 file system (the superblock's magic 0xEF53 at byte
//!   1080): already a cobd image. It is copied only if an output is named;
//!   otherwise nothing is written and the source is the answer.
//!
//! Partition tables are read with `mbrman` and `gptman`. The copy skips
//! all-zero 4 KiB blocks (the output is sparse) and reports progress; the
//! result is written to a temporary file renamed into place, and checked
//! for an ext superblock (a warning when there is none, or when the file
//! system claims to be larger than its partition).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::ext::{self, ExtSuperblock};
use crate::progress::Progress;
use crate::size::human;

/// The sector size MBR partition tables count in.
pub const MBR_SECTOR: u64 = 512;

/// What to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The disk image.
    pub source: PathBuf,
    /// The partition to copy (1-based, as Linux numbers them).
    pub partition: Option<u32>,
    /// Where the cobd image goes ([`default_output`] when `None`).
    pub output: Option<PathBuf>,
    /// Replace an existing output.
    pub force: bool,
}

/// A disk image's format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// An image format qemu-img reads (`qcow2`, `vmdk`, `vdi`, `vhdx`).
    Qemu(&'static str),
    /// A raw ext2/3/4 file system.
    RawFs(ExtSuperblock),
    /// A raw disk with an MBR partition table.
    Mbr,
    /// A raw disk with a GUID partition table.
    Gpt,
}

/// Which table a partition is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Mbr,
    Gpt,
}

/// One partition of a disk image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Its number, as Linux numbers it (MBR: 1-4 primary, 5… logical; GPT:
    /// the entry's index from 1).
    pub number: u32,
    pub table: Table,
    /// Its type, in words ("Linux filesystem", "EFI system", "0x07").
    pub kind: String,
    /// A Linux file system partition by its type.
    pub linux: bool,
    /// An MBR extended partition (a container of logical ones).
    pub extended: bool,
    /// Its first sector and its length in sectors.
    pub first_sector: u64,
    pub sectors: u64,
    pub sector_size: u64,
    /// The ext file system in it, if any.
    pub fs: Option<ExtSuperblock>,
}

impl Partition {
    /// Its first byte in the disk image.
    pub fn offset(&self) -> u64 {
        self.first_sector.saturating_mul(self.sector_size)
    }
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.sectors.saturating_mul(self.sector_size)
    }
    /// True for a partition of no sectors.
    pub fn is_empty(&self) -> bool {
        self.sectors == 0
    }
    /// One line for listings.
    pub fn describe(&self) -> String {
        let fs = match (&self.fs, self.extended) {
            (_, true) => "holds the logical partitions".to_string(),
            (Some(sb), _) => sb.describe(),
            (None, _) => "no ext2/3/4 file system".to_string(),
        };
        format!(
            "partition {}: {} ({}), sectors {}-{} ({}), {fs}",
            self.number,
            self.kind,
            match self.table {
                Table::Mbr => "MBR",
                Table::Gpt => "GPT",
            },
            self.first_sector,
            (self.first_sector + self.sectors).saturating_sub(1),
            human(self.len()),
        )
    }
}

/// What [`import`] did.
#[derive(Debug, Clone)]
pub enum Imported {
    /// A cobd image was written.
    Written {
        output: PathBuf,
        /// The source's format.
        format: Format,
        /// The partition copied (`None` for a raw file system).
        partition: Option<Partition>,
        /// The file system found in the result.
        fs: Option<ExtSuperblock>,
        /// The image's size and the bytes actually written (the rest are
        /// holes).
        size: u64,
        written: u64,
    },
    /// The source is a raw ext file system already: usable as it is.
    AlreadyUsable { source: PathBuf, fs: ExtSuperblock },
}

impl Imported {
    /// The cobd image (the source itself when it was usable as it is).
    pub fn image(&self) -> &Path {
        match self {
            Imported::Written { output, .. } => output,
            Imported::AlreadyUsable { source, .. } => source,
        }
    }

    /// A sentence about what happened.
    pub fn summary(&self) -> String {
        match self {
            Imported::Written {
                output,
                format,
                partition,
                fs,
                size,
                written,
            } => {
                let from = match (format, partition) {
                    (Format::Qemu(f), Some(p)) => format!("{f} image, {}", p.describe()),
                    (_, Some(p)) => p.describe(),
                    (Format::Qemu(f), None) => format!("{f} image of a raw file system"),
                    _ => "raw file system".to_string(),
                };
                // A partition's description already names its file system.
                let holds = match (fs, partition) {
                    (None, _) => "; no ext2/3/4 file system in it".to_string(),
                    (Some(_), Some(_)) => String::new(),
                    (Some(f), None) => format!("; {}", f.describe()),
                };
                format!(
                    "{}: cobd image of {} ({} written, the rest sparse) from the {from}{holds}",
                    output.display(),
                    human(*size),
                    human(*written),
                )
            }
            Imported::AlreadyUsable { source, fs } => format!(
                "{} is a raw file system ({}): already a cobd image, use it as it is \
                 (cobd0={}); nothing was written (give --output to copy it)",
                source.display(),
                fs.describe(),
                source.display()
            ),
        }
    }
}

/// `<dir of SRC>/<SRC's name without its extension>.cobd.img`.
pub fn default_output(source: &Path) -> PathBuf {
    let stem = source
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "disk".into());
    source.with_file_name(format!("{stem}.cobd.img"))
}

/// Recognise a disk image by its first bytes.
pub fn detect(file: &mut File, path: &Path) -> Result<Format> {
    let mut head = vec![0u8; 4096];
    let mut got = 0;
    file.seek(SeekFrom::Start(0))
        .with_context(|| format!("cannot read {}", path.display()))?;
    while got < head.len() {
        let n = file
            .read(&mut head[got..])
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    head.truncate(got);
    if head.starts_with(b"QFI\xfb") {
        return Ok(Format::Qemu("qcow2"));
    }
    if head.starts_with(b"KDMV") || head.starts_with(b"# Disk DescriptorFile") {
        return Ok(Format::Qemu("vmdk"));
    }
    if head.get(0x40..0x44) == Some(&0xbeda_107fu32.to_le_bytes()[..]) {
        return Ok(Format::Qemu("vdi"));
    }
    if head.starts_with(b"vhdxfile") {
        return Ok(Format::Qemu("vhdx"));
    }
    let sb = head
        .get(ext::SUPERBLOCK_OFFSET as usize..ext::SUPERBLOCK_OFFSET as usize + 1024)
        .and_then(ext::parse);
    if let Some(sb) = sb {
        return Ok(Format::RawFs(sb));
    }
    if head.get(510..512) == Some(&[0x55, 0xaa][..]) {
        // A protective (or hybrid) MBR has a type 0xEE entry: the real table
        // is the GPT.
        let protective = (0..4).any(|i| head[446 + 16 * i + 4] == 0xee);
        return Ok(if protective { Format::Gpt } else { Format::Mbr });
    }
    if got < 512 {
        bail!(
            "{} is not a disk image: it is only {got} bytes long",
            path.display()
        );
    }
    bail!(
        "{} is not a disk image colinux knows: no MBR or GPT partition table, no ext2/3/4 \
         superblock (magic 0xEF53 at byte 1080), and not qcow2, VMDK, VDI or VHDX",
        path.display()
    )
}

/// The partitions of a raw disk image of `len` bytes (used entries only),
/// each checked to lie within the file.
pub fn partitions(
    file: &mut File,
    path: &Path,
    format: &Format,
    len: u64,
) -> Result<Vec<Partition>> {
    let mut parts = match format {
        Format::Mbr => mbr_partitions(file, path)?,
        Format::Gpt => gpt_partitions(file, path)?,
        other => bail!("{} is not a partitioned disk ({other:?})", path.display()),
    };
    for p in &mut parts {
        let end = p.offset().saturating_add(p.len());
        if end > len {
            bail!(
                "{} of {} ends at byte {end}, beyond the end of the file ({len} bytes): \
                 the image is truncated or its partition table is wrong",
                p.describe(),
                path.display()
            );
        }
        if !p.extended {
            p.fs = ext::probe(file, p.offset())
                .with_context(|| format!("cannot read {}", path.display()))?
                .filter(|_| p.len() > ext::MAGIC_OFFSET);
        }
    }
    Ok(parts)
}

fn mbr_partitions(file: &mut File, path: &Path) -> Result<Vec<Partition>> {
    let mbr = mbrman::MBR::read_from(file, MBR_SECTOR as u32).map_err(|e| {
        anyhow::anyhow!(
            "{}: corrupt MBR partition table ({e}); if it is a disk image, check it with \
             `fdisk -l {}`",
            path.display(),
            path.display()
        )
    })?;
    let mut out = Vec::new();
    for (i, e) in mbr.iter() {
        if !e.is_used() {
            continue;
        }
        let number = u32::try_from(i).unwrap_or(u32::MAX);
        out.push(Partition {
            number,
            table: Table::Mbr,
            kind: mbr_type_name(e.sys),
            linux: e.sys == 0x83,
            extended: e.is_extended(),
            first_sector: u64::from(e.starting_lba),
            sectors: u64::from(e.sectors),
            sector_size: MBR_SECTOR,
            fs: None,
        });
    }
    if out.is_empty() {
        bail!(
            "{}: the MBR partition table has no partitions",
            path.display()
        );
    }
    Ok(out)
}

fn mbr_type_name(sys: u8) -> String {
    let name = match sys {
        0x83 => "Linux",
        0x82 => "Linux swap",
        0x8e => "Linux LVM",
        0xfd => "Linux RAID",
        0x05 | 0x0f | 0x85 => "Extended",
        0x07 => "NTFS/exFAT",
        0x0b | 0x0c => "FAT32",
        0x04 | 0x06 | 0x0e => "FAT16",
        0xef => "EFI system",
        0xee => "GPT protective",
        _ => "",
    };
    if name.is_empty() {
        format!("type 0x{sys:02x}")
    } else {
        format!("{name} (0x{sys:02x})")
    }
}

/// Largest partition entry count we read (the usual is 128); a header that
/// claims more is corrupt, and reading it would allocate for all of them.
const MAX_GPT_ENTRIES: u32 = 16384;

fn gpt_partitions(file: &mut File, path: &Path) -> Result<Vec<Partition>> {
    for sector in [512u64, 4096] {
        let mut h = [0u8; 92];
        if file.read_exact_at(&mut h, sector).is_ok() && &h[..8] == b"EFI PART" {
            let entries = u32::from_le_bytes([h[80], h[81], h[82], h[83]]);
            if entries > MAX_GPT_ENTRIES {
                bail!(
                    "{}: corrupt GPT: its header claims {entries} partition entries",
                    path.display()
                );
            }
        }
    }
    let gpt = gptman::GPT::find_from(file).map_err(|e| {
        anyhow::anyhow!(
            "{}: corrupt GPT partition table ({e}); check it with `sgdisk -v {}`",
            path.display(),
            path.display()
        )
    })?;
    if !gpt.header.is_primary() {
        tracing::warn!(
            "{}: the primary GPT is damaged; using the backup at the end of the disk",
            path.display()
        );
    }
    let mut out = Vec::new();
    for (i, e) in gpt.iter() {
        if !e.is_used() {
            continue;
        }
        if e.ending_lba < e.starting_lba {
            bail!(
                "{}: corrupt GPT: partition {i} ends (sector {}) before it starts (sector {})",
                path.display(),
                e.ending_lba,
                e.starting_lba
            );
        }
        let guid = guid_string(&e.partition_type_guid);
        let (kind, linux) = gpt_type_name(&guid);
        let name = e.partition_name.as_str().trim().to_string();
        out.push(Partition {
            number: i,
            table: Table::Gpt,
            kind: if name.is_empty() {
                kind
            } else {
                format!("{kind} \"{name}\"")
            },
            linux,
            extended: false,
            first_sector: e.starting_lba,
            sectors: e.ending_lba - e.starting_lba + 1,
            sector_size: gpt.sector_size,
            fs: None,
        });
    }
    if out.is_empty() {
        bail!("{}: the GPT has no partitions", path.display());
    }
    Ok(out)
}

/// A GUID as text, from its on-disk bytes (the first three fields are
/// little-endian).
pub fn guid_string(b: &[u8; 16]) -> String {
    format!(
        "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
        b[14], b[15]
    )
}

/// The GPT Linux file-system data type.
pub const GPT_LINUX_FS: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

fn gpt_type_name(guid: &str) -> (String, bool) {
    let (name, linux) = match guid {
        GPT_LINUX_FS => ("Linux filesystem", true),
        "44479540-F297-41B2-9AF7-D131D5F0458A" => ("Linux root (x86)", true),
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709" => ("Linux root (x86-64)", true),
        "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F" => ("Linux swap", false),
        "E6D6D379-F507-44C2-A23C-238F2A3DF928" => ("Linux LVM", false),
        "A19D880F-05FC-4D3B-A006-743F0F84911E" => ("Linux RAID", false),
        "933AC7E1-2EB4-4F13-B844-0E14E2AEF915" => ("Linux home", false),
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" => ("EFI system", false),
        "21686148-6449-6E6F-744E-656564454649" => ("BIOS boot", false),
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" => ("Microsoft basic data", false),
        _ => ("", false),
    };
    if name.is_empty() {
        (format!("type {guid}"), false)
    } else {
        (name.to_string(), linux)
    }
}

/// The partition to copy: `requested`, else the only Linux one.
pub fn choose<'a>(
    parts: &'a [Partition],
    requested: Option<u32>,
    path: &Path,
) -> Result<&'a Partition> {
    let listing = || {
        parts
            .iter()
            .map(|p| format!("  {}", p.describe()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    if let Some(n) = requested {
        let Some(p) = parts.iter().find(|p| p.number == n) else {
            bail!(
                "{} has no partition {n}; its partitions:\n{}",
                path.display(),
                listing()
            );
        };
        if p.extended {
            bail!(
                "partition {n} of {} is an extended partition, a container of the logical \
                 partitions (5 and up); choose one of those:\n{}",
                path.display(),
                listing()
            );
        }
        return Ok(p);
    }
    let linux: Vec<&Partition> = parts.iter().filter(|p| p.linux).collect();
    match linux.as_slice() {
        [one] => Ok(one),
        [] => bail!(
            "{} has no Linux partition; choose one with --partition N:\n{}",
            path.display(),
            listing()
        ),
        _ => bail!(
            "{} has {} Linux partitions; choose one with --partition N:\n{}",
            path.display(),
            linux.len(),
            listing()
        ),
    }
}

/// Import `opts.source` (see the module's documentation).
pub fn import(opts: &ImportOptions) -> Result<Imported> {
    let source = &opts.source;
    let mut file =
        File::open(source).with_context(|| format!("cannot open {}", source.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot stat {}", source.display()))?;
    if meta.is_dir() {
        bail!("{} is a directory, not a disk image", source.display());
    }
    let format = detect(&mut file, source)?;
    tracing::info!("{}: {}", source.display(), format_name(&format));
    if let (Format::RawFs(fs), None) = (&format, &opts.output) {
        return Ok(Imported::AlreadyUsable {
            source: source.clone(),
            fs: fs.clone(),
        });
    }
    let output = opts
        .output
        .clone()
        .unwrap_or_else(|| default_output(source));
    if same_file(source, &output) {
        bail!(
            "the output {} is the source itself; choose another --output",
            output.display()
        );
    }
    if output.exists() && !opts.force {
        bail!(
            "{} exists; pass --force to replace it, or choose another --output",
            output.display()
        );
    }
    let parent = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    // A qemu image becomes a raw one beside the output first.
    let converted;
    let (mut raw, raw_path, raw_format) = if let Format::Qemu(fmt) = format {
        converted = convert_to_raw(source, fmt, &parent)?;
        let mut f = File::open(converted.path())
            .with_context(|| format!("cannot open {}", converted.path().display()))?;
        let inner = detect(&mut f, converted.path())
            .with_context(|| format!("the {fmt} image {} converted to raw", source.display()))?;
        if let Format::Qemu(again) = inner {
            bail!(
                "the {fmt} image {} holds a {again} image; convert it yourself first",
                source.display()
            );
        }
        (f, converted.path().to_path_buf(), inner)
    } else {
        (file, source.clone(), format.clone())
    };
    let raw_len = raw
        .metadata()
        .with_context(|| format!("cannot stat {}", raw_path.display()))?
        .len();
    let (offset, len, partition) = match &raw_format {
        Format::RawFs(_) => (0, raw_len, None),
        Format::Mbr | Format::Gpt => {
            let parts = partitions(&mut raw, source, &raw_format, raw_len)?;
            let p = choose(&parts, opts.partition, source)?.clone();
            tracing::info!("copying {}", p.describe());
            (p.offset(), p.len(), Some(p))
        }
        Format::Qemu(_) => bail!("{}: the converted image is still not raw", source.display()),
    };
    if partition.is_none() && opts.partition.is_some() {
        bail!(
            "{} holds a file system, not a partitioned disk: --partition does not apply",
            source.display()
        );
    }
    let tmp = tempfile::Builder::new()
        .prefix(".colinux-import-")
        .suffix(".tmp")
        .tempfile_in(&parent)
        .with_context(|| format!("cannot create a temporary file in {}", parent.display()))?;
    let written = copy_sparse(&raw, offset, len, tmp.as_file(), &output)
        .with_context(|| format!("copying {} to {}", source.display(), tmp.path().display()))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    let fs = ext::probe(&mut tmp.as_file(), 0)
        .with_context(|| format!("cannot read {}", tmp.path().display()))?;
    match &fs {
        Some(sb) if sb.size() > len => tracing::warn!(
            "the {} file system claims {} but its partition holds only {}: it is cut short \
             (e2fsck will complain)",
            sb.kind,
            human(sb.size()),
            human(len)
        ),
        Some(sb) => tracing::info!("the cobd image holds an {}", sb.describe()),
        None => tracing::warn!(
            "the copied data holds no ext2/3/4 file system: the guest cannot mount it as its root \
             (another file system, or the wrong partition?)"
        ),
    }
    tmp.persist(&output)
        .with_context(|| format!("cannot move the cobd image to {}", output.display()))?;
    Ok(Imported::Written {
        output,
        format,
        partition,
        fs,
        size: len,
        written,
    })
}

fn format_name(f: &Format) -> String {
    match f {
        Format::Qemu(q) => format!("{q} image"),
        Format::RawFs(sb) => format!("raw file system ({})", sb.describe()),
        Format::Mbr => "raw disk with an MBR partition table".into(),
        Format::Gpt => "raw disk with a GPT".into(),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// The block the copy looks at for zeros (and the holes' granularity).
const BLOCK: usize = 4096;
/// Bytes read at once.
const CHUNK: usize = 1 << 20;

/// Copy `len` bytes at `offset` of `src` to the start of `dst` (a new,
/// empty file), leaving all-zero 4 KiB blocks as holes. Returns the bytes
/// written.
pub fn copy_sparse(src: &File, offset: u64, len: u64, dst: &File, name: &Path) -> Result<u64> {
    let mut progress = Progress::start(format!("writing {} ({})", name.display(), human(len)));
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    let mut written = 0u64;
    while done < len {
        let n = usize::try_from((len - done).min(CHUNK as u64)).unwrap_or(CHUNK);
        src.read_exact_at(&mut buf[..n], offset + done)
            .with_context(|| format!("cannot read {n} bytes at byte {}", offset + done))?;
        // Runs of non-zero blocks are written with one call each.
        let mut i = 0;
        while i < n {
            let end = (i + BLOCK).min(n);
            if is_zero(&buf[i..end]) {
                i = end;
                continue;
            }
            let start = i;
            let mut stop = end;
            while stop < n {
                let next = (stop + BLOCK).min(n);
                if is_zero(&buf[stop..next]) {
                    break;
                }
                stop = next;
            }
            dst.write_all_at(&buf[start..stop], done + start as u64)
                .with_context(|| format!("cannot write at byte {}", done + start as u64))?;
            written += (stop - start) as u64;
            i = stop;
        }
        done += n as u64;
        progress.tick(|| crate::progress::fraction(done, len));
    }
    dst.set_len(len).context("cannot set the image's length")?;
    progress.done(&format!(
        "{} copied, {} of it data",
        human(len),
        human(written)
    ));
    Ok(written)
}

fn is_zero(b: &[u8]) -> bool {
    let words = b.chunks_exact(16);
    let tail = words.remainder();
    words
        .map(|w| u128::from_ne_bytes(w.try_into().unwrap_or([1; 16])))
        .all(|w| w == 0)
        && tail.iter().all(|&x| x == 0)
}

/// `qemu-img convert -O raw` of `source` into a temporary file in `dir`,
/// with progress.
fn convert_to_raw(source: &Path, fmt: &str, dir: &Path) -> Result<tempfile::NamedTempFile> {
    colinux_buildenv::sysdeps::ensure(
        &format!("converting a {fmt} image"),
        colinux_buildenv::sysdeps::IMAGE_CONVERT,
    )?;
    let tmp = tempfile::Builder::new()
        .prefix(".colinux-raw-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let mut progress = Progress::start(format!("qemu-img convert {} to raw", source.display()));
    let mut child = Command::new("qemu-img")
        .args(["convert", "-p", "-f", fmt, "-O", "raw"])
        .arg(source)
        .arg(tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run qemu-img (qemu-utils)")?;
    // `-p` prints "    (12.34/100%)\r" on stdout.
    if let Some(mut out) = child.stdout.take() {
        let mut buf = [0u8; 256];
        let mut line = Vec::new();
        loop {
            let n = out
                .read(&mut buf)
                .context("cannot read qemu-img's output")?;
            if n == 0 {
                break;
            }
            for &c in &buf[..n] {
                if c == b'\r' || c == b'\n' {
                    let text = String::from_utf8_lossy(&line).trim().to_string();
                    if !text.is_empty() {
                        progress.tick(|| text.trim_matches(['(', ')']).to_string());
                    }
                    line.clear();
                } else {
                    line.push(c);
                }
            }
        }
    }
    let out = child.wait_with_output().context("waiting for qemu-img")?;
    if !out.status.success() {
        bail!(
            "qemu-img convert -f {fmt} -O raw {} failed ({}): {}",
            source.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    progress.done("converted");
    Ok(tmp)
}

#[cfg(test)]
mod tests;
