#![allow(clippy::unwrap_used)]

use super::*;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::desc::RawDescriptor;
use vm_memory::GuestMemoryMmap;

#[test]
fn a_share_is_an_existing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let c = FsConfig::parse(3, d).unwrap();
    assert_eq!(c.unit, 3);
    assert!(!c.read_only);
    assert_eq!(c.tag(), "cofs3");
    assert_eq!(c.dir, std::fs::canonicalize(dir.path()).unwrap());
    let ro = FsConfig::parse(0, &format!("{d},ro")).unwrap();
    assert!(ro.read_only);
    assert_eq!(ro.value(), format!("{},ro", ro.dir.display()));
    assert!(!FsConfig::parse(0, &format!("{d},rw")).unwrap().read_only);

    let missing = dir.path().join("nope");
    let e = FsConfig::parse(0, missing.to_str().unwrap()).unwrap_err();
    assert!(format!("{e:#}").contains("No such file"), "{e:#}");
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let e = FsConfig::parse(0, file.to_str().unwrap()).unwrap_err();
    assert!(e.to_string().contains("is not a directory"), "{e:#}");
    let e = FsConfig::parse(0, &format!("{d},rx")).unwrap_err();
    assert!(e.to_string().contains("\"rx\" is not an option"), "{e:#}");
    assert!(FsConfig::parse(0, "").is_err());
}

#[test]
fn a_share_has_a_cache_mode_never_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert_eq!(FsConfig::parse(0, d).unwrap().cache, Cache::Never);
    let auto = FsConfig::parse(0, &format!("{d},cache=auto")).unwrap();
    assert_eq!(auto.cache, Cache::Auto);
    assert!(!auto.read_only);
    assert_eq!(auto.value(), format!("{},cache=auto", auto.dir.display()));
    // Both options, in either order; the value round-trips.
    for v in [format!("{d},ro,cache=auto"), format!("{d},cache=auto,ro")] {
        let c = FsConfig::parse(1, &v).unwrap();
        assert!(c.read_only && c.cache == Cache::Auto, "{v}: {c:?}");
        assert_eq!(FsConfig::parse(1, &c.value()).unwrap(), c);
    }
    assert_eq!(
        FsConfig::parse(0, &format!("{d},cache=never"))
            .unwrap()
            .value(),
        std::fs::canonicalize(d).unwrap().display().to_string()
    );
    let e = FsConfig::parse(0, &format!("{d},cache=always")).unwrap_err();
    assert!(
        e.to_string().contains("\"always\" is not a cache mode"),
        "{e:#}"
    );
    let e = FsConfig::parse(0, &format!("{d},ro,rw")).unwrap_err();
    assert!(e.to_string().contains("ro/rw given twice"), "{e:#}");
    let e = FsConfig::parse(0, &format!("{d},cache=auto,cache=never")).unwrap_err();
    assert!(e.to_string().contains("cache= given twice"), "{e:#}");
    // A directory whose name has a comma is still a directory.
    let comma = dir.path().join("a,b");
    std::fs::create_dir(&comma).unwrap();
    let c = FsConfig::parse(0, &format!("{},ro", comma.display())).unwrap();
    assert!(c.read_only && c.dir.ends_with("a,b"), "{c:?}");
}

#[test]
fn the_config_space_is_the_tag_then_one_request_queue() {
    let c = config_space("cofs12");
    assert_eq!(c.len(), 40);
    assert_eq!(&c[..6], b"cofs12");
    assert!(c[6..36].iter().all(|b| *b == 0));
    assert_eq!(u32::from_le_bytes(c[36..40].try_into().unwrap()), 1);
}

#[test]
fn virtiofsd_gets_the_share_and_the_cache_mode() {
    let a = virtiofsd::arguments(&virtiofsd::Options {
        dir: "/srv/share".into(),
        read_only: true,
        guest_root_as: Some((1000, 100)),
        cache: Cache::Never,
    });
    assert!(a.contains(&"--translate-uid=map:0:1000:1".to_string()));
    assert!(a.contains(&"--translate-gid=map:0:100:1".to_string()));
    assert!(a.contains(&"--shared-dir=/srv/share".to_string()));
    assert!(a.contains(&"--cache=never".to_string()));
    assert!(a.contains(&"--readonly".to_string()));
    assert!(a.contains(&"--thread-pool-size=0".to_string()));
    let rw = virtiofsd::arguments(&virtiofsd::Options {
        dir: "/srv/share".into(),
        read_only: false,
        guest_root_as: None,
        cache: Cache::Auto,
    });
    assert!(!rw.contains(&"--readonly".to_string()));
    assert!(rw.contains(&"--cache=auto".to_string()));
    assert!(!rw.contains(&"--cache=never".to_string()));
    assert!(!rw.iter().any(|a| a.starts_with("--translate")));
}

#[test]
fn the_guests_root_is_the_shares_owner_only_for_a_root_daemon() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let m = std::fs::metadata(dir.path()).unwrap();
    // Not root: nothing to map.
    assert_eq!(virtiofsd::guest_root_as(dir.path(), 1000).unwrap(), None);
    // Root, and the share is root's: nothing either; else its owner.
    let got = virtiofsd::guest_root_as(dir.path(), 0).unwrap();
    if m.uid() == 0 {
        assert_eq!(got, None);
    } else {
        assert_eq!(got, Some((m.uid(), m.gid())));
    }
    assert!(virtiofsd::guest_root_as(&dir.path().join("gone"), 0).is_err());
    // As root here: a share given to someone else.
    if std::os::unix::fs::chown(dir.path(), Some(1234), Some(5678)).is_ok() {
        assert_eq!(
            virtiofsd::guest_root_as(dir.path(), 0).unwrap(),
            Some((1234, 5678))
        );
    }
}

fn desc(addr: u64, len: u32, write: bool) -> Descriptor {
    let flags = if write {
        virtio_bindings::virtio_ring::VRING_DESC_F_WRITE as u16
    } else {
        0
    };
    Descriptor::from(RawDescriptor::from(
        virtio_queue::desc::split::Descriptor::new(addr, len, flags, 0),
    ))
}

#[test]
fn a_request_is_answered_with_eio_and_its_unique() {
    let mem: GuestRam = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    // fuse_in_header: len, opcode, unique.
    let mut req = [0u8; 40];
    req[0..4].copy_from_slice(&40u32.to_le_bytes());
    req[4..8].copy_from_slice(&1u32.to_le_bytes());
    req[8..16].copy_from_slice(&0x1234_5678_9abc_def0u64.to_le_bytes());
    mem.write_slice(&req, GuestAddress(0x1000)).unwrap();
    let descs = [desc(0x1000, 40, false), desc(0x2000, 256, true)];
    assert_eq!(fail_request(&mem, &descs), 16);
    let mut out = [0u8; 16];
    mem.read_slice(&mut out, GuestAddress(0x2000)).unwrap();
    assert_eq!(u32::from_le_bytes(out[0..4].try_into().unwrap()), 16);
    assert_eq!(
        i32::from_le_bytes(out[4..8].try_into().unwrap()),
        -libc::EIO
    );
    assert_eq!(
        u64::from_le_bytes(out[8..16].try_into().unwrap()),
        0x1234_5678_9abc_def0
    );
    // FORGET: no reply buffer, nothing written.
    assert_eq!(fail_request(&mem, &[desc(0x1000, 40, false)]), 0);
    // A reply buffer too small for the header.
    assert_eq!(
        fail_request(&mem, &[desc(0x1000, 40, false), desc(0x3000, 8, true)]),
        0
    );
    // A request outside guest RAM.
    assert_eq!(
        fail_request(&mem, &[desc(0x20000, 40, false), desc(0x3000, 64, true)]),
        0
    );
}
