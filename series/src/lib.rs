//! The guest patch series on git: a quilt series put onto a kernel tree as
//! one commit per patch ([`apply`]), patch files written back from commits
//! ([`refresh`]), and the series moved to a new release ([`rebase`]). The
//! patches themselves are parsed and applied by [`colinux_patch`], in memory;
//! this crate is the git side ([`tree`], [`gitapply`]).
//!
//! Code map:
//! - [`tree`]: a kernel tree as a git repository (the `vanilla` tag, the
//!   series branch, scratch clones, export).
//! - [`gitapply`]: one patch applied to a git tree without a work tree.
//! - [`apply`]: a whole series onto a tree (`cargo xtask apply`).
//! - [`refresh`]: patch files and `series` from the commits after `vanilla`.
//! - [`rebase`]: the series onto a new release — the run and its saved state
//!   ([`rebase`] itself), the 3-way merge ([`rebase::merge`]), recorded
//!   resolutions ([`rebase::resolution`]) and files that moved
//!   ([`rebase::rename`]).
//! - [`base`]: the series' base release as `kernels.toml` records it.

pub mod apply;
pub mod base;
pub mod gitapply;
pub mod rebase;
pub mod refresh;
pub mod tree;

/// Run `f` and log how long it took at debug level
/// (`RUST_LOG=colinux_series=debug`): the phases of a rebase, for profiling.
pub(crate) fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let out = f();
    tracing::debug!("{what}: {:.3}s", started.elapsed().as_secs_f64());
    out
}
