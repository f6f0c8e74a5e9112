//! Disk images for the colinux guest.
//!
//! - [`chroot`]: amd64 Debian chroots standing for a user's host, where
//!   the release packages are installed in tests.
//! - [`rootfs`]: the guest's root file system, Debian for i386 with
//!   systemd, bootstrapped once into the cache and written as an ext4 image
//!   with `mke2fs -d` (`cargo xtask rootfs`).
//! - [`import`]: what users have (a raw disk with an MBR or GPT partition
//!   table, a qcow2 image, a raw file system) turned into a cobd image, a
//!   raw file holding one file system (`cargo xtask image import`).
//! - [`ext`]: the ext2/3/4 superblock, to recognise and describe a file
//!   system; [`size`]: sizes as people write them; [`progress`]: progress
//!   of long steps through `tracing`; [`mounts`]: mounts left inside a tree
//!   before it is deleted.

pub mod chroot;
pub mod ext;
pub mod import;
pub mod mounts;
pub mod progress;
pub mod rootfs;
pub mod size;
