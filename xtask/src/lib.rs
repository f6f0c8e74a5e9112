//! colinux's build orchestrator, as a library so that `tests/` can drive it.
//!
//! See `docs/ARCHITECTURE.md` for the map; `main.rs` is only the CLI.

pub mod patch;
