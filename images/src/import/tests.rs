//! Disk images built in memory (partition tables written with `mbrman` and
//! `gptman`, fake ext superblocks), imported from temporary files.

use std::io::Cursor;

use super::*;
use crate::ext::{fake_superblock, ExtKind};

const S: u64 = 512;

/// A file system's worth of recognisable bytes: a superblock at 1024, a
/// pattern in some blocks, zeros (holes) in the others.
fn fs_image(sectors: u64, label: &str) -> Vec<u8> {
    let len = (sectors * S) as usize;
    let mut fs = vec![0u8; len];
    let sb = fake_superblock(ExtKind::Ext4, 1024, (len / 1024) as u32, label);
    fs[1024..2048].copy_from_slice(&sb);
    for block in (3..len / 4096).step_by(3) {
        let at = block * 4096;
        for (i, b) in fs[at..at + 4096].iter_mut().enumerate() {
            *b = (i % 251) as u8 ^ (block as u8);
        }
    }
    let last = len - 1;
    fs[last] = 0x5a;
    fs
}

fn place(disk: &mut [u8], first_sector: u64, data: &[u8]) {
    let at = (first_sector * S) as usize;
    disk[at..at + data.len()].copy_from_slice(data);
}

fn mbr_entry(sys: u8, starting_lba: u32, sectors: u32) -> mbrman::MBRPartitionEntry {
    mbrman::MBRPartitionEntry {
        boot: mbrman::BOOT_INACTIVE,
        first_chs: mbrman::CHS::empty(),
        sys,
        last_chs: mbrman::CHS::empty(),
        starting_lba,
        sectors,
    }
}

/// A disk with an MBR whose partitions are `(type, first sector, sectors)`.
fn mbr_disk(total_sectors: u64, parts: &[(u8, u32, u32)]) -> Vec<u8> {
    let mut cur = Cursor::new(vec![0u8; (total_sectors * S) as usize]);
    let mut mbr = mbrman::MBR::new_from(&mut cur, S as u32, [0x12, 0x34, 0x56, 0x78]).unwrap();
    for (i, &(sys, start, sectors)) in parts.iter().enumerate() {
        mbr[i + 1] = mbr_entry(sys, start, sectors);
    }
    mbr.write_into(&mut cur).unwrap();
    cur.into_inner()
}

/// A disk with a GPT whose partitions are `(type GUID bytes, first, last)`.
fn gpt_disk(total_sectors: u64, parts: &[([u8; 16], u64, u64)]) -> Vec<u8> {
    let mut cur = Cursor::new(vec![0u8; (total_sectors * S) as usize]);
    let mut gpt = gptman::GPT::new_from(&mut cur, S, [0xab; 16]).unwrap();
    for (i, &(ty, first, last)) in parts.iter().enumerate() {
        gpt[i as u32 + 1] = gptman::GPTPartitionEntry {
            partition_type_guid: ty,
            unique_partition_guid: [i as u8 + 1; 16],
            starting_lba: first,
            ending_lba: last,
            attribute_bits: 0,
            partition_name: format!("part{}", i + 1).as_str().into(),
        };
    }
    gpt.write_into(&mut cur).unwrap();
    gptman::GPT::write_protective_mbr_into(&mut cur, S).unwrap();
    cur.into_inner()
}

/// The on-disk bytes of a GUID written as text.
fn guid_bytes(text: &str) -> [u8; 16] {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let mut b = [0u8; 16];
    for (i, out) in b.iter_mut().enumerate() {
        *out = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

fn linux_guid() -> [u8; 16] {
    guid_bytes(GPT_LINUX_FS)
}

fn esp_guid() -> [u8; 16] {
    guid_bytes("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        p
    }
    fn import(&self, src: &Path, partition: Option<u32>) -> Result<Imported> {
        import(&ImportOptions {
            source: src.to_path_buf(),
            partition,
            output: Some(self.dir.path().join("out.img")),
            force: true,
        })
    }
    fn output(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("out.img")).unwrap()
    }
}

/// Equal bytes, or a failure that says where they differ (not both dumps).
fn same(got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    if let Some(at) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("the bytes differ first at offset {at}");
    }
}

fn err_text<T: std::fmt::Debug>(r: Result<T>) -> String {
    format!("{:#}", r.expect_err("an error"))
}

#[test]
fn an_mbr_partition_at_sector_63_is_copied_exactly_and_sparsely() {
    // What a QEMU install of an old distribution leaves: one partition at
    // the classic 63-sector offset (the coLinux wiki's `dd skip=63`).
    let fs = fs_image(2000, "qemu-root");
    let mut disk = mbr_disk(4096, &[(0x83, 63, 2000), (0x82, 2063, 1000)]);
    place(&mut disk, 63, &fs);
    let fx = Fixture::new();
    let src = fx.file("qemu.raw", &disk);
    let done = fx.import(&src, None).unwrap();
    let Imported::Written {
        partition,
        fs: found,
        size,
        written,
        format,
        ..
    } = &done
    else {
        panic!("{done:?}")
    };
    assert_eq!(*format, Format::Mbr);
    let p = partition.as_ref().unwrap();
    assert_eq!((p.number, p.first_sector, p.sectors), (1, 63, 2000));
    assert_eq!(found.as_ref().map(|f| f.label.as_str()), Some("qemu-root"));
    assert_eq!(*size, 2000 * S);
    assert!(
        *written < *size,
        "zero blocks are holes: {written} of {size}"
    );
    same(&fx.output(), &fs);
    let meta = std::fs::metadata(fx.dir.path().join("out.img")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert!(meta.blocks() * 512 < meta.len(), "the output is sparse");
    assert!(done
        .summary()
        .contains("partition 1: Linux (0x83) (MBR), sectors 63-2062"));
}

#[test]
fn logical_partitions_are_numbered_from_5() {
    let total = 8192u64;
    let mut cur = Cursor::new(vec![0u8; (total * S) as usize]);
    let mut mbr = mbrman::MBR::new_from(&mut cur, S as u32, [1, 2, 3, 4]).unwrap();
    mbr[1] = mbr_entry(0x0c, 2048, 1024);
    mbr[2] = mbr_entry(0x05, 4096, 4096);
    mbr.align = 1;
    let logical = mbr.push(0x83, 4096 + 63, 1024).unwrap();
    let (first, sectors) = (logical.partition.starting_lba, logical.partition.sectors);
    mbr.write_into(&mut cur).unwrap();
    let mut disk = cur.into_inner();
    let fs = fs_image(u64::from(sectors), "logical");
    place(&mut disk, u64::from(first), &fs);
    let fx = Fixture::new();
    let src = fx.file("logical.raw", &disk);
    let done = fx.import(&src, None).unwrap();
    let Imported::Written { partition, .. } = &done else {
        panic!("{done:?}")
    };
    let p = partition.as_ref().unwrap();
    assert_eq!((p.number, p.first_sector), (5, u64::from(first)), "{p:?}");
    same(&fx.output(), &fs);
    let e = err_text(fx.import(&src, Some(2)));
    assert!(e.contains("extended partition"), "{e}");
}

#[test]
fn gpt_picks_the_linux_partition_beside_an_esp() {
    let fs = fs_image(4096, "gpt-root");
    let mut disk = gpt_disk(
        8192,
        &[(esp_guid(), 2048, 3071), (linux_guid(), 3072, 3072 + 4095)],
    );
    place(&mut disk, 3072, &fs);
    let fx = Fixture::new();
    let src = fx.file("gpt.raw", &disk);
    let done = fx.import(&src, None).unwrap();
    let Imported::Written {
        partition, format, ..
    } = &done
    else {
        panic!("{done:?}")
    };
    assert_eq!(*format, Format::Gpt);
    let p = partition.as_ref().unwrap();
    assert_eq!(p.number, 2);
    assert_eq!(p.kind, "Linux filesystem \"part2\"");
    same(&fx.output(), &fs);
    // The ESP on request, with a warning that it holds no ext file system.
    let done = fx.import(&src, Some(1)).unwrap();
    let Imported::Written { fs, size, .. } = &done else {
        panic!("{done:?}")
    };
    assert_eq!((fs.clone(), *size), (None, 1024 * S));
}

#[test]
fn two_linux_partitions_need_a_choice() {
    let mut disk = mbr_disk(4096, &[(0x83, 2048, 1000), (0x83, 3048, 1000)]);
    place(&mut disk, 3048, &fs_image(1000, "second"));
    let fx = Fixture::new();
    let src = fx.file("two.raw", &disk);
    let e = err_text(fx.import(&src, None));
    assert!(
        e.contains("has 2 Linux partitions; choose one with --partition N"),
        "{e}"
    );
    assert!(
        e.contains("partition 1: Linux (0x83) (MBR), sectors 2048-3047"),
        "{e}"
    );
    assert!(e.contains("no ext2/3/4 file system"), "{e}");
    assert!(
        e.contains("partition 2: Linux (0x83) (MBR), sectors 3048-4047"),
        "{e}"
    );
    assert!(e.contains("ext4, 500 KiB, label second"), "{e}");
    let done = fx.import(&src, Some(2)).unwrap();
    assert!(matches!(done, Imported::Written { partition: Some(ref p), .. } if p.number == 2));
    let e = err_text(fx.import(&src, Some(3)));
    assert!(e.contains("has no partition 3"), "{e}");
    // No Linux partition at all.
    let disk = mbr_disk(4096, &[(0x07, 2048, 1000)]);
    let src = fx.file("ntfs.raw", &disk);
    let e = err_text(fx.import(&src, None));
    assert!(e.contains("has no Linux partition"), "{e}");
    assert!(e.contains("NTFS/exFAT (0x07)"), "{e}");
}

#[test]
fn a_partition_beyond_the_end_of_the_file_is_refused() {
    let disk = mbr_disk(4096, &[(0x83, 2048, 4000)]);
    let fx = Fixture::new();
    let src = fx.file("short.raw", &disk);
    let e = err_text(fx.import(&src, None));
    assert!(
        e.contains("beyond the end of the file (2097152 bytes)"),
        "{e}"
    );
    assert!(!fx.dir.path().join("out.img").exists());
}

#[test]
fn corrupt_tables_are_named() {
    let fx = Fixture::new();
    // An MBR entry with a boot flag that is neither 0x00 nor 0x80.
    let mut disk = mbr_disk(4096, &[(0x83, 2048, 1000)]);
    disk[446] = 0x42;
    let src = fx.file("badmbr.raw", &disk);
    let e = err_text(fx.import(&src, None));
    assert!(e.contains("corrupt MBR partition table"), "{e}");
    // A GPT whose primary and backup headers are both damaged.
    let mut disk = gpt_disk(4096, &[(linux_guid(), 2048, 3000)]);
    disk[512 + 20] ^= 0xff; // primary header CRC
    let backup = disk.len() - 512;
    disk[backup + 20] ^= 0xff;
    let src = fx.file("badgpt.raw", &disk);
    let e = err_text(fx.import(&src, None));
    assert!(e.contains("corrupt GPT partition table"), "{e}");
    // Only the primary damaged: the backup is used.
    let mut disk = gpt_disk(4096, &[(linux_guid(), 2048, 3000)]);
    disk[512 + 20] ^= 0xff;
    let src = fx.file("halfgpt.raw", &disk);
    assert!(fx.import(&src, None).is_ok());
}

#[test]
fn unknown_and_tiny_files_are_refused() {
    let fx = Fixture::new();
    let noise: Vec<u8> = (0..65536u32).map(|i| (i * 7 + 3) as u8).collect();
    let src = fx.file("noise.bin", &noise);
    let e = err_text(fx.import(&src, None));
    assert!(e.contains("not a disk image colinux knows"), "{e}");
    let src = fx.file("tiny.bin", b"hello");
    let e = err_text(fx.import(&src, None));
    assert!(e.contains("only 5 bytes long"), "{e}");
    let e = err_text(fx.import(fx.dir.path(), None));
    assert!(e.contains("is a directory"), "{e}");
    let e = err_text(fx.import(&fx.dir.path().join("absent.img"), None));
    assert!(e.contains("cannot open"), "{e}");
}

#[test]
fn a_raw_file_system_is_already_usable() {
    let fx = Fixture::new();
    let fs = fs_image(1024, "plain");
    let src = fx.file("plain.img", &fs);
    let done = import(&ImportOptions {
        source: src.clone(),
        ..Default::default()
    })
    .unwrap();
    assert!(matches!(&done, Imported::AlreadyUsable { fs, .. } if fs.label == "plain"));
    assert_eq!(done.image(), src);
    assert!(done.summary().contains("already a cobd image"));
    assert!(!default_output(&src).exists(), "nothing written");
    // With an output it is copied; a partition number makes no sense.
    assert!(matches!(
        fx.import(&src, None).unwrap(),
        Imported::Written { .. }
    ));
    same(&fx.output(), &fs);
    let e = err_text(fx.import(&src, Some(1)));
    assert!(e.contains("--partition does not apply"), "{e}");
}

#[test]
fn an_existing_output_is_kept_without_force() {
    let fx = Fixture::new();
    let mut disk = mbr_disk(4096, &[(0x83, 2048, 1000)]);
    place(&mut disk, 2048, &fs_image(1000, "x"));
    let src = fx.file("d.raw", &disk);
    let out = default_output(&src);
    assert_eq!(out, fx.dir.path().join("d.cobd.img"));
    std::fs::write(&out, "precious").unwrap();
    let opts = ImportOptions {
        source: src.clone(),
        ..Default::default()
    };
    let e = err_text(import(&opts));
    assert!(e.contains("exists; pass --force"), "{e}");
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    let e = err_text(import(&ImportOptions {
        output: Some(src.clone()),
        force: true,
        ..opts.clone()
    }));
    assert!(e.contains("is the source itself"), "{e}");
    import(&ImportOptions {
        force: true,
        ..opts
    })
    .unwrap();
    assert_eq!(std::fs::read(&out).unwrap().len(), 1000 * 512);
}

fn qemu_img(args: &[&str]) {
    colinux_buildenv::sysdeps::ensure(
        "the qcow2 import test",
        colinux_buildenv::sysdeps::IMAGE_CONVERT,
    )
    .expect("qemu-utils");
    let out = Command::new("qemu-img").args(args).output().unwrap();
    assert!(out.status.success(), "qemu-img {args:?}: {out:?}");
}

#[test]
fn qcow2_images_are_converted_first() {
    let fx = Fixture::new();
    let fs = fs_image(2000, "from-qcow2");
    let mut disk = mbr_disk(4096, &[(0x83, 63, 2000)]);
    place(&mut disk, 63, &fs);
    let raw = fx.file("disk.raw", &disk);
    let qcow = fx.dir.path().join("disk.qcow2");
    let q = qcow.to_str().unwrap();
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        raw.to_str().unwrap(),
        q,
    ]);
    let done = fx.import(&qcow, None).unwrap();
    let Imported::Written { format, .. } = &done else {
        panic!("{done:?}")
    };
    assert_eq!(*format, Format::Qemu("qcow2"));
    same(&fx.output(), &fs);
    assert!(done.summary().contains("qcow2 image, partition 1"));
    // A qcow2 of a raw file system.
    let plain = fx.file("plain.raw", &fs);
    let pq = fx.dir.path().join("plain.qcow2");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        plain.to_str().unwrap(),
        pq.to_str().unwrap(),
    ]);
    fx.import(&pq, None).unwrap();
    same(&fx.output(), &fs);
    // An empty qcow2 holds nothing colinux knows.
    let empty = fx.dir.path().join("empty.qcow2");
    qemu_img(&["create", "-f", "qcow2", empty.to_str().unwrap(), "1M"]);
    let e = err_text(fx.import(&empty, None));
    assert!(e.contains("converted to raw"), "{e}");
    assert!(e.contains("not a disk image colinux knows"), "{e}");
    // No temporary file is left beside the output.
    let left: Vec<_> = std::fs::read_dir(fx.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".colinux"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn zero_detection_and_guids() {
    assert!(is_zero(&[0u8; 4096]));
    let mut b = [0u8; 4096];
    b[4095] = 1;
    assert!(!is_zero(&b));
    assert!(!is_zero(&b[4000..]));
    assert_eq!(guid_string(&guid_bytes(GPT_LINUX_FS)), GPT_LINUX_FS);
}
