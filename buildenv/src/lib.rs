//! What every colinux tool needs from the machine it runs on: where things
//! live ([`paths`]: the repository, the cache outside it, locks on cached
//! things), the system packages a task needs ([`sysdeps`]), and Debian's
//! archive without touching the system's apt state ([`apt`], [`deb`]).

pub mod apt;
pub mod deb;
pub mod paths;
pub mod sysdeps;
