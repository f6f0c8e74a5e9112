//! A malformed guest configuration: a TOML file or a coLinux `@file`.
//!
//! The first byte picks the syntax; the rest is the file's text. Parsing
//! must end in settings or an error naming file and line, never a panic;
//! an error must name the file.
#![no_main]

use std::path::Path;

use colinux_daemon::config::Settings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let path = Path::new("/etc/colinux/fuzz.conf");
    let mut s = Settings::default();
    let r = if kind & 1 == 0 {
        s.apply_toml_text(text, path)
    } else {
        s.apply_colinux_text(text, path)
    };
    if let Err(e) = r {
        let msg = format!("{e:#}");
        assert!(
            msg.contains("/etc/colinux/fuzz.conf"),
            "an error that does not name the file: {msg}"
        );
    }
});
