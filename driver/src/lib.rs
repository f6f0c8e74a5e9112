//! The `no_std` Rust core of the colinux host driver.
//!
//! It is linked into the Linux kernel module built from `driver/` by Kbuild,
//! next to a thin C shim that owns every access to kernel structures. The
//! core's logic (guest memory, ELF loading, passage, messages) arrives with
//! issue 3; until then the crate only fixes its `no_std` shape.
#![cfg_attr(not(test), no_std)]
