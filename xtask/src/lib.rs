//! `cargo xtask`: the command line and the glue over the project's crates,
//! as a library so that `tests/` can drive it.
//!
//! The real work lives in crates of its own (see `docs/ARCHITECTURE.md`):
//! `colinux-patch` (the patch engine), `colinux-series` (the series on git:
//! apply, refresh, rebase), `colinux-testrig` (the QEMU test host and what
//! runs in it) and `colinux-buildenv` (paths, cache locks, system packages,
//! Debian's archive). What stays here:
//! - [`manifest`]: `kernels.toml`, the pinned kernel versions and sources,
//!   and which series builds which version.
//! - [`fetch`]: download/verify/unpack a release (kernel.org or Debian).
//! - [`kconfig`]: merging config fragments; [`build`]: the guest kernel.
//! - [`driver_build`]: the host module against the test host's headers.
//! - [`codegen`]: Rust bindings of the ABI headers.
//! - [`toolchain`]: the Rust targets and components `rust-toolchain.toml`
//!   names.
//! - [`images`]: the glue of `rootfs` and `image import` (the work is in
//!   `colinux-images`).
//! - [`run`]: the main job; [`bench`] (and [`bench_conet`], [`bench_cofs`]): the
//!   benchmarks behind `docs/BENCHMARKS.md`; [`soak`]: the long reliability runs behind
//!   `docs/RELIABILITY.md` ([`docs`] writes their sections);
//!   [`testhost_cli`]: `cargo xtask test-host`.

pub mod bench;
pub mod bench_cofs;
pub mod bench_conet;
pub mod build;
pub mod codegen;
pub mod docs;
pub mod driver_build;
pub mod fetch;
pub mod fuzz;
pub mod images;
pub mod kconfig;
pub mod manifest;
pub mod package;
pub mod run;
pub mod soak;
pub mod testhost_cli;
pub mod toolchain;
