//! Sizes as people write them (`2G`, `512MiB`, `1048576`) and as we print
//! them. Suffixes are binary (K = 1024), as for `mke2fs` and `qemu-img`.

use anyhow::{bail, Result};

/// Parse a size: a number of bytes, or a number followed by `K`, `M`, `G`
/// or `T` (optionally `KiB`, `KB`, …; all binary). Case does not matter.
pub fn parse(text: &str) -> Result<u64> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits);
    if num.is_empty() {
        bail!("not a size: {text:?} (write e.g. 2G, 512M or a number of bytes)");
    }
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => bail!("not a size: {text:?} (unknown unit {other:?}; use K, M, G or T)"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("not a size: {text:?} (the number is too large)"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| anyhow::anyhow!("not a size: {text:?} (too large)"))
}

/// "1.5 GiB", "300 MiB", "12 KiB", "100 bytes".
pub fn human(bytes: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (name, shift) in UNITS {
        let unit = 1u64 << shift;
        if bytes >= unit {
            let whole = bytes / unit;
            let tenths = (bytes % unit) * 10 / unit;
            return if tenths == 0 || whole >= 100 {
                format!("{whole} {name}")
            } else {
                format!("{whole}.{tenths} {name}")
            };
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("2G").unwrap(), 2 << 30);
        assert_eq!(parse("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse("64k").unwrap(), 64 << 10);
        assert_eq!(parse(" 1T ").unwrap(), 1 << 40);
        assert_eq!(parse("4096").unwrap(), 4096);
        for bad in [
            "",
            "G",
            "2X",
            "-1G",
            "1.5G",
            "99999999999999999999",
            "20000000000T",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse("2X")
            .unwrap_err()
            .to_string()
            .contains("unknown unit"));
    }

    #[test]
    fn prints_sizes() {
        assert_eq!(human(2 << 30), "2 GiB");
        assert_eq!(human(3 << 29), "1.5 GiB");
        assert_eq!(human(300 << 20), "300 MiB");
        assert_eq!(human(100), "100 bytes");
    }
}
