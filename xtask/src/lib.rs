//! colinux's build orchestrator, as a library so that `tests/` can drive it.
//!
//! Code map (see `docs/ARCHITECTURE.md` for the whole project):
//! - [`manifest`]: `kernels.toml`, the pinned kernel versions and sources.
//! - [`fetch`]: download/verify/unpack a release; [`debian`]: Debian sources.
//! - [`tree`]: kernel trees as git repositories (vanilla commit + series).
//! - [`patch`]: quilt series files and GNU-patch-compatible application.
//! - [`series`]: applying a series onto a tree, one commit per patch.
//! - [`rebase`]: moving the series to a new release; [`refresh`]: patch files from commits.
//! - [`guest_initrd`]: the guest's initramfs (i386 busybox, `/init`).
//! - [`kconfig`]: merging config fragments; [`build`]: the kernel build.
//! - [`sysdeps`]: installing the system packages a task needs; [`toolchain`]:
//!   the Rust targets and components `rust-toolchain.toml` names.
//! - [`bench`]: the benchmarks behind `docs/BENCHMARKS.md`.

pub mod bench;
pub mod build;
pub mod codegen;
pub mod debian;
pub mod driver_build;
pub mod fetch;
pub mod guest_initrd;
pub mod hostkernel;
pub mod kconfig;
pub mod manifest;
pub mod patch;
pub mod paths;
pub mod payload;
pub mod rebase;
pub mod refresh;
pub mod run;
pub mod series;
pub mod sysdeps;
pub mod testhost;
pub mod toolchain;
pub mod tree;
pub mod userland;
