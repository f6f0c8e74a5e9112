//! The colinux runtime: everything behind the `colinux` command (and the
//! developer tool `colinux-daemon`: test payloads, held guests, kernel checks), as a library with thin binaries.
//!
//! - [`config`]: a guest's configuration (TOML, coLinux `@file` and
//!   `name=value` words), defaults and checks.
//! - [`registry`]: the running guests, one directory each under the run
//!   directory (`/run/colinux/NAME/`): a lock held for the guest's life, its
//!   state, its sockets.
//! - [`elf`]: the guest kernel image; [`driver`]: the host driver's ioctls.
//! - [`linux`]: booting a Linux guest; [`runloop`]: the one loop that
//!   runs a guest and serves its devices (`colinux_devices`: the console
//!   and its socket), the control socket ([`control`]) and the stopping
//!   [`signals`]; [`attach`]: a console client.

/// Log through `tracing` to stderr (`RUST_LOG` filters; `info` by
/// default), colours only on a terminal.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

pub mod attach;
pub mod config;
pub mod control;
pub mod driver;
pub mod elf;
pub mod launch;
pub mod lifecycle;
pub mod linux;
pub mod registry;
pub mod runloop;
pub mod signals;
