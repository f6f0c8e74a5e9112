//! The ABI seen from C and from Rust must agree: gcc compiles the guest
//! ABI header taken from the patch series and the driver's ioctl header for
//! i386 (the guest) and x86_64 (the host) and prints every structure's size
//! and alignment and the ioctl numbers; the Rust bindings must give the same
//! values. The ioctl type must not be one the kernel has registered.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::mem::{align_of, size_of};

use colinux_abi as abi;

const PROBE: &str = r#"
#include <stdio.h>
#include <colinux_abi.h>
#define S(t) printf("size " #t " %zu\nalign " #t " %zu\n", sizeof(struct t), _Alignof(struct t))
int main(void)
{
	S(cooperative_message);
	S(cooperative_boot_params);
	S(cooperative_vcpu_state);
	S(cooperative_shared_state);
	S(cooperative_ioctl_create);
	S(cooperative_ioctl_load);
	S(cooperative_ioctl_info);
	S(cooperative_ioctl_run);
	S(cooperative_ioctl_ioeventfd);
	S(cooperative_ioctl_irqfd);
	S(cooperative_virtio_queue);
	S(cooperative_virtio_device);
	printf("ioctl CREATE %u\n", (unsigned)COOPERATIVE_IOCTL_CREATE);
	printf("ioctl LOAD %u\n", (unsigned)COOPERATIVE_IOCTL_LOAD);
	printf("ioctl INFO %u\n", (unsigned)COOPERATIVE_IOCTL_INFO);
	printf("ioctl DESTROY %u\n", (unsigned)COOPERATIVE_IOCTL_DESTROY);
	printf("ioctl RUN %u\n", (unsigned)COOPERATIVE_IOCTL_RUN);
	printf("ioctl IOEVENTFD %u\n", (unsigned)COOPERATIVE_IOCTL_IOEVENTFD);
	printf("ioctl IRQFD %u\n", (unsigned)COOPERATIVE_IOCTL_IRQFD);
	return 0;
}
"#;

fn c_values(bits: u32) -> BTreeMap<String, u64> {
    let dir = tempfile::tempdir().unwrap();
    xtask::codegen::write_headers(dir.path()).unwrap();
    std::fs::write(dir.path().join("probe.c"), PROBE).unwrap();
    let exe = dir.path().join("probe");
    let out = std::process::Command::new("gcc")
        .arg(format!("-m{bits}"))
        .args(["-std=c11", "-Wall", "-Wextra", "-Wpadded", "-Werror", "-I"])
        .arg(dir.path())
        .arg(dir.path().join("probe.c"))
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gcc -m{bits}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(&exe).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

fn rust_values() -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    macro_rules! s {
        ($t:ident) => {
            m.insert(
                concat!("size ", stringify!($t)).to_string(),
                size_of::<abi::$t>() as u64,
            );
            m.insert(
                concat!("align ", stringify!($t)).to_string(),
                align_of::<abi::$t>() as u64,
            );
        };
    }
    s!(cooperative_message);
    s!(cooperative_boot_params);
    s!(cooperative_vcpu_state);
    s!(cooperative_shared_state);
    s!(cooperative_ioctl_create);
    s!(cooperative_ioctl_load);
    s!(cooperative_ioctl_info);
    s!(cooperative_ioctl_run);
    s!(cooperative_ioctl_ioeventfd);
    s!(cooperative_ioctl_irqfd);
    s!(cooperative_virtio_queue);
    s!(cooperative_virtio_device);
    m.insert("ioctl CREATE".into(), abi::ioctl::CREATE.into());
    m.insert("ioctl LOAD".into(), abi::ioctl::LOAD.into());
    m.insert("ioctl INFO".into(), abi::ioctl::INFO.into());
    m.insert("ioctl DESTROY".into(), abi::ioctl::DESTROY.into());
    m.insert("ioctl RUN".into(), abi::ioctl::RUN.into());
    m.insert("ioctl IOEVENTFD".into(), abi::ioctl::IOEVENTFD.into());
    m.insert("ioctl IRQFD".into(), abi::ioctl::IRQFD.into());
    m
}

#[test]
fn c_i386_c_x86_64_and_rust_agree() {
    let rust = rust_values();
    let c32 = c_values(32);
    let c64 = c_values(64);
    assert_eq!(c32, c64, "i386 and x86_64 lay the ABI out differently");
    assert_eq!(rust, c64, "the Rust bindings disagree with C");
}

#[test]
fn committed_bindings_are_fresh() {
    // The same check CI runs (`cargo xtask codegen --check`), as a test.
    let fresh = xtask::codegen::generate().unwrap();
    let committed = std::fs::read_to_string(xtask::codegen::output_path()).unwrap();
    assert!(
        fresh == committed,
        "abi/src/generated.rs is stale: run `cargo xtask codegen`"
    );
}

/// The ioctl type is free in the kernel's registry of ioctl numbers
/// (Documentation/userspace-api/ioctl/ioctl-number.rst) of the kernel trees
/// the tests have fetched, so that no other driver's tool can reach our
/// ioctls by mistake (the old type, 0xC0, is usb/iowarrior's).
#[test]
fn the_ioctl_type_is_not_registered_in_the_kernel() {
    let manifest = xtask::manifest::Manifest::load_default().unwrap();
    let ty = format!("0x{:02X}", abi::COOPERATIVE_IOCTL_TYPE);
    // The series base's tree (fetched if absent: the boot tests need it
    // anyway), and the 6.12 one where a test has fetched it.
    let base = xtask::fetch::fetch_kernel(
        &manifest,
        &manifest.series.base,
        &xtask::fetch::FetchOptions::default(),
    )
    .unwrap();
    let mut checked = 0;
    for tree in [
        base.path,
        colinux_buildenv::paths::kernel_tree("6.12.100").unwrap(),
    ] {
        let rst = tree.join("Documentation/userspace-api/ioctl/ioctl-number.rst");
        let Ok(text) = std::fs::read_to_string(&rst) else {
            continue;
        };
        checked += 1;
        let taken: Vec<&str> = text
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(ty.as_str()))
            .collect();
        assert!(
            taken.is_empty(),
            "ioctl type {ty} is registered in {}: {taken:?}",
            rst.display()
        );
    }
    assert!(checked > 0, "no kernel tree to check the ioctl registry in");
}
