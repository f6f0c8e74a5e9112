//! A broken guest image (vmlinux or payload): parsed as the daemon parses
//! it before handing segments to the driver. A panic is a finding; every
//! segment of an image that parses must lie inside the file.
#![no_main]

use colinux_daemon::elf::GuestImage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(image) = GuestImage::parse(data.to_vec()) else {
        return;
    };
    for s in &image.segments {
        let bytes = image.segment_data(s);
        assert!(bytes.len() <= data.len(), "a segment larger than the file");
    }
    let _ = image.physical_end();
});
