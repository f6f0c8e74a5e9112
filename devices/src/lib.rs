//! Host back ends of the colinux virtual devices: cobd (block), conet
//! (network), cocon (console). They arrive with the issues that need them.
