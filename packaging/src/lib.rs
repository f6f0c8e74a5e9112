//! The release of colinux (`cargo xtask package`): Debian packages for a
//! user's own amd64 Debian/Ubuntu host — the driver as DKMS sources, the
//! `colinux` command, the guest kernels — the root file system image, a
//! tarball for hosts without dpkg and `SHA256SUMS`.
//!
//! - [`deb`]: one binary package from files, packed by `dpkg-deb`;
//! - [`release`]: what goes in which package, the tarball, the checksums;
//! - [`lintian`]: Debian's checker on the result.
//!
//! Versions come from one place, the workspace's `version`; the Debian
//! revision is [`release::REVISION`].

pub mod deb;
pub mod lintian;
pub mod release;
