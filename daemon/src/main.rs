//! `colinux-daemon`: configures and runs one guest and serves its devices.
//!
//! The daemon needs the host driver (issue 3) before it can do anything; for
//! now it only parses its command line and says so.

use clap::Parser;

/// Run one cooperative Linux guest beside the host kernel.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The guest kernel (an i386 `vmlinux` built by `cargo xtask build-kernel`).
    #[arg(long)]
    kernel: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::bail!(
        "colinux-daemon cannot run a guest yet (kernel: {:?}): the host driver arrives with issue 3",
        cli.kernel
    )
}
