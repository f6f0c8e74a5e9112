//! Files out of Debian packages (`.deb`: an `ar` archive whose `data.tar*`
//! member holds the files), read in-process where the compression allows.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The data member `member` (e.g. `bin/busybox`) of a Debian package:
/// in-process for `data.tar.xz` and `data.tar`, through `dpkg-deb
/// --fsys-tarfile` for other compressions. `deb` names the file in errors.
pub fn extract_from_deb(deb_data: &[u8], deb: &Path, member: &str) -> Result<Vec<u8>> {
    let members =
        ar_members(deb_data).with_context(|| format!("{}: not a Debian package", deb.display()))?;
    let (name, data) = members
        .iter()
        .find(|(n, _)| n.starts_with("data.tar"))
        .with_context(|| format!("{}: no data.tar member", deb.display()))?;
    let found = match name.as_str() {
        "data.tar.xz" => tar_member(xz2::read::XzDecoder::new(*data), member),
        "data.tar" => tar_member(*data, member),
        other => {
            tracing::debug!("{}: {other}: extracting with dpkg-deb", deb.display());
            let out = Command::new("dpkg-deb")
                .arg("--fsys-tarfile")
                .arg(deb)
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("cannot run dpkg-deb for {} ({other})", deb.display()))?;
            if !out.status.success() {
                bail!(
                    "dpkg-deb --fsys-tarfile {} failed: {}",
                    deb.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            tar_member(out.stdout.as_slice(), member)
        }
    }
    .with_context(|| format!("cannot read {name} in {}", deb.display()))?;
    found.with_context(|| format!("{} has no {member}", deb.display()))
}

/// The members of an `ar` archive (Debian packages are `ar` archives).
fn ar_members(data: &[u8]) -> Result<Vec<(String, &[u8])>> {
    let mut rest = data
        .strip_prefix(b"!<arch>\n".as_slice())
        .context("no ar magic")?;
    let mut out = Vec::new();
    while rest.len() >= 60 {
        let (header, after) = rest.split_at(60);
        let name = String::from_utf8_lossy(&header[..16])
            .trim_end()
            .trim_end_matches('/')
            .to_string();
        let size: usize = std::str::from_utf8(&header[48..58])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .with_context(|| format!("ar member {name:?}: bad size field"))?;
        let body = after
            .get(..size)
            .with_context(|| format!("ar member {name:?}: truncated ({size} bytes announced)"))?;
        out.push((name, body));
        // Members are 2-byte aligned.
        rest = after.get(size + size % 2..).unwrap_or_default();
    }
    Ok(out)
}

fn tar_member(reader: impl Read, member: &str) -> Result<Option<Vec<u8>>> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        if path.trim_start_matches("./") == member {
            if entry.header().entry_type() != tar::EntryType::Regular {
                bail!("{member} is not a regular file in the package");
            }
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            return Ok(Some(data));
        }
    }
    Ok(None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_ar_members() {
        let mut ar = b"!<arch>\n".to_vec();
        for (name, body) in [("debian-binary", b"2.0\n".as_slice()), ("data.tar", b"abc")] {
            ar.extend(
                format!(
                    "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                    name,
                    0,
                    0,
                    0,
                    100644,
                    body.len()
                )
                .as_bytes(),
            );
            ar.extend(body);
            if body.len() % 2 == 1 {
                ar.push(b'\n');
            }
        }
        let m = ar_members(&ar).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0], ("debian-binary".to_string(), b"2.0\n".as_slice()));
        assert_eq!(m[1].1, b"abc");
        assert!(ar_members(b"garbage").is_err());
        let err = extract_from_deb(b"nope", Path::new("x.deb"), "bin/busybox").unwrap_err();
        assert!(format!("{err:#}").contains("x.deb: not a Debian package"));
    }
}
