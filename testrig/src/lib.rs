//! The test rig: Debian's stock x86_64 kernel booted in QEMU as the *test
//! host*, and everything that runs in it — the colinux driver, the daemon,
//! the i386 guest with its initramfs, the 32-bit test payload and the test
//! programs. `tests/` and `cargo xtask run`/`bench` drive it.
//!
//! Code map:
//! - [`testhost`]: a [`testhost::Scenario`] (a script plus files) run in the
//!   test host, with markers, a kernel-log check and QEMU monitor actions;
//!   [`testhost::init`] is its `/init`.
//! - [`hostkernel`]: Debian's `linux-image-amd64`, fetched into the cache,
//!   the matching headers, and the modules the test host loads
//!   ([`hostkernel::modules`]: virtio, ext4, resolved from `depmod`'s files).
//! - [`hostpasst`]: passt (conet's user-mode NAT) and its libraries for the
//!   test host.
//! - [`diskimage`]: ext4 and partitioned images for the test host's disks,
//!   made without root.
//! - [`initramfs`]: the busybox root both initramfs images share, written by
//!   [`cpio`] (newc writer and reader).
//! - [`guest_initrd`]: the guest's initramfs (Debian's i386 busybox,
//!   `/init`, the test programs when asked).
//! - [`session`]: scripts that boot the guest in the test host and drive its
//!   console, and the parser of their output.
//! - [`programs`] (`tests/guest-bench/`), [`payload`] (`tests/payload/`) and
//!   [`userland`] (static musl builds of the daemon and probe): what runs
//!   in the guest and the host besides the kernels.

pub mod cpio;
pub mod diskimage;
pub mod elf;
pub mod guest_initrd;
pub mod hostkernel;
pub mod hostpasst;
pub mod hostvirtiofsd;
pub mod initramfs;
pub mod payload;
pub mod programs;
pub mod sandboxed;
pub mod session;
pub mod testhost;
pub mod userland;
