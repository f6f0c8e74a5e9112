//! One Debian binary package, built from files we already have (the
//! release's inputs are built by cargo and Kbuild, not by a Debian source
//! package): a staging tree with `DEBIAN/control`, `md5sums`, `conffiles`
//! and the maintainer scripts, `/usr/share/doc/<package>/copyright` and
//! `changelog.Debian.gz`, packed by Debian's own `dpkg-deb` with root
//! ownership.
//!
//! Why not cargo-deb: two of the three packages are not Rust programs (a
//! DKMS source tree, guest kernels), and the control data is a few lines;
//! `dpkg-deb` does the packing, `lintian` checks the result.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use md5::{Digest, Md5};

/// Who the packages say maintains them.
pub const MAINTAINER: &str =
    "colinux maintainers <maintainers@users.noreply.r-seed-9c3945f3.example>";
/// The project's home.
pub const HOMEPAGE: &str = "https://github.com/colinux/colinux";

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub enum Source {
    Bytes(Vec<u8>),
    File(PathBuf),
}

/// A file of the package: its absolute path on the installed system.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: String,
    pub source: Source,
    pub mode: u32,
}

/// A maintainer script (`postinst`, `prerm`, `postrm`, `preinst`).
pub type Scripts = BTreeMap<&'static str, String>;

/// A binary package to build.
#[derive(Debug, Clone, Default)]
pub struct Package {
    pub name: String,
    /// The Debian version, `<upstream>-<revision>`.
    pub version: String,
    pub arch: String,
    pub section: String,
    pub depends: Vec<String>,
    pub recommends: Vec<String>,
    /// The one-line summary, then the extended description (paragraphs).
    pub summary: String,
    pub description: String,
    pub files: Vec<Entry>,
    /// Files under `/etc` that are the administrator's once installed.
    pub conffiles: Vec<String>,
    pub scripts: Scripts,
    /// lintian overrides, each with the comment that justifies it
    /// (installed as `/usr/share/lintian/overrides/<package>`).
    pub overrides: Vec<Override>,
}

/// A lintian tag that does not apply, and why.
#[derive(Debug, Clone)]
pub struct Override {
    pub tag: &'static str,
    /// The file pattern it is about (lintian's `[context]`), if any.
    pub context: &'static str,
    pub why: &'static str,
}

/// Every package: these are not uploads to Debian, so no bug is closed.
pub const NOT_AN_UPLOAD: Override = Override {
    tag: "initial-upload-closes-no-bugs",
    context: "",
    why: "Built by colinux's release tooling for direct installation, not uploaded to \
          Debian: there is no ITP bug to close.",
};

impl Package {
    /// Add a file.
    pub fn file(&mut self, path: &str, source: Source, mode: u32) -> &mut Self {
        self.files.push(Entry {
            path: path.to_string(),
            source,
            mode,
        });
        self
    }

    /// `<name>_<version>_<arch>.deb`.
    pub fn file_name(&self) -> String {
        format!("{}_{}_{}.deb", self.name, self.version, self.arch)
    }

    /// Build the package into `out_dir`, with `copyright` and a changelog
    /// entry dated `date` (RFC 2822). Returns the `.deb`'s path.
    pub fn build(&self, out_dir: &Path, copyright: &str, date: &str) -> Result<PathBuf> {
        let staging = tempfile::Builder::new()
            .prefix(&format!(".{}-", self.name))
            .tempdir_in(out_dir)
            .with_context(|| format!("cannot make a directory in {}", out_dir.display()))?;
        let root = staging.path().join("root");
        let mut files = self.files.clone();
        let doc = format!("/usr/share/doc/{}", self.name);
        files.push(Entry {
            path: format!("{doc}/copyright"),
            source: Source::Bytes(copyright.as_bytes().to_vec()),
            mode: 0o644,
        });
        files.push(Entry {
            path: format!("{doc}/changelog.Debian.gz"),
            source: Source::Bytes(gzip(self.changelog(date).as_bytes())?),
            mode: 0o644,
        });
        if !self.overrides.is_empty() {
            files.push(Entry {
                path: format!("/usr/share/lintian/overrides/{}", self.name),
                source: Source::Bytes(self.overrides_text().into_bytes()),
                mode: 0o644,
            });
        }
        let mut sums = String::new();
        let mut bytes = 0u64;
        let mut seen = std::collections::BTreeSet::new();
        for e in &files {
            let rel = relative(&e.path)?;
            if !seen.insert(rel.clone()) {
                bail!("{}: {} is listed twice", self.name, e.path);
            }
            let data = match &e.source {
                Source::Bytes(b) => b.clone(),
                Source::File(p) => std::fs::read(p)
                    .with_context(|| format!("{}: cannot read {}", self.name, p.display()))?,
            };
            let dest = root.join(&rel);
            if let Some(dir) = dest.parent() {
                make_dirs(&root, dir)?;
            }
            std::fs::write(&dest, &data)
                .with_context(|| format!("cannot write {}", dest.display()))?;
            set_mode(&dest, e.mode)?;
            bytes += data.len() as u64;
            if !rel.starts_with("etc/") {
                sums.push_str(&format!("{}  {rel}\n", hex::encode(Md5::digest(&data))));
            }
        }
        for c in &self.conffiles {
            if !files.iter().any(|e| &e.path == c) || !c.starts_with("/etc/") {
                bail!(
                    "{}: conffile {c} is not a file of the package under /etc",
                    self.name
                );
            }
        }
        let debian = root.join("DEBIAN");
        make_dirs(&root, &debian)?;
        let write = |name: &str, text: &str, mode: u32| -> Result<()> {
            let p = debian.join(name);
            std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
            set_mode(&p, mode)
        };
        write("control", &self.control(bytes.div_ceil(1024)), 0o644)?;
        write("md5sums", &sums, 0o644)?;
        if !self.conffiles.is_empty() {
            write("conffiles", &(self.conffiles.join("\n") + "\n"), 0o644)?;
        }
        for (name, text) in &self.scripts {
            if !["preinst", "postinst", "prerm", "postrm"].contains(name) {
                bail!("{}: {name} is not a maintainer script", self.name);
            }
            write(name, text, 0o755)?;
        }
        let out = out_dir.join(self.file_name());
        let o = Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&root)
            .arg(&out)
            .output()
            .context("cannot run dpkg-deb (package dpkg)")?;
        if !o.status.success() {
            bail!(
                "dpkg-deb could not build {}: {}",
                out.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        tracing::info!("built {}", out.display());
        Ok(out)
    }

    /// The lintian overrides file.
    pub fn overrides_text(&self) -> String {
        let mut t = String::new();
        for o in &self.overrides {
            for line in extended(o.why).lines() {
                t.push_str(&format!("#{line}\n"));
            }
            if o.context.is_empty() {
                t.push_str(&format!("{}: {}\n", self.name, o.tag));
            } else {
                t.push_str(&format!("{}: {} [{}]\n", self.name, o.tag, o.context));
            }
        }
        t
    }

    /// `DEBIAN/control`.
    pub fn control(&self, installed_kib: u64) -> String {
        let mut c = format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: {MAINTAINER}\n\
             Installed-Size: {installed_kib}\n",
            self.name, self.version, self.arch
        );
        if !self.depends.is_empty() {
            c.push_str(&format!("Depends: {}\n", self.depends.join(", ")));
        }
        if !self.recommends.is_empty() {
            c.push_str(&format!("Recommends: {}\n", self.recommends.join(", ")));
        }
        c.push_str(&format!(
            "Section: {}\nPriority: optional\nHomepage: {HOMEPAGE}\nDescription: {}\n",
            self.section, self.summary
        ));
        c.push_str(&extended(&self.description));
        c
    }

    /// The package's `changelog.Debian` (one entry).
    pub fn changelog(&self, date: &str) -> String {
        format!(
            "{} ({}) unstable; urgency=medium\n\n  * Release {} of colinux, built by \
             `cargo xtask package`.\n\n -- {MAINTAINER}  {date}\n",
            self.name,
            self.version,
            self.version.split('-').next().unwrap_or(&self.version)
        )
    }
}

/// A description's extended part as control fields want it: each line
/// indented by one space, paragraphs separated by ` .`, lines wrapped.
pub fn extended(text: &str) -> String {
    let mut out = String::new();
    for (i, para) in text.split("\n\n").enumerate() {
        if i > 0 {
            out.push_str(" .\n");
        }
        let mut line = String::new();
        for w in para.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + w.len() > 78 {
                out.push_str(&format!(" {line}\n"));
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(w);
        }
        if !line.is_empty() {
            out.push_str(&format!(" {line}\n"));
        }
    }
    out
}

/// gzip as Debian wants it: best compression, no name, time 0.
pub fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(3)
        .write(Vec::new(), flate2::Compression::best());
    enc.write_all(data).context("gzip")?;
    enc.finish().context("gzip")
}

/// `/usr/bin/x` → `usr/bin/x`; anything but a plain absolute path is an
/// error.
fn relative(path: &str) -> Result<String> {
    let p = Path::new(path);
    let ok = p.is_absolute()
        && path
            .split('/')
            .skip(1)
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && p.components()
            .skip(1)
            .all(|c| matches!(c, Component::Normal(_)));
    if !ok {
        bail!("not a plain absolute path for a package file: {path:?}");
    }
    Ok(path.trim_start_matches('/').to_string())
}

/// Create `dir` and its parents below `root`, each 0755.
fn make_dirs(root: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut d = dir;
    while d.starts_with(root) {
        set_mode(d, 0o755)?;
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    Ok(())
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_indented_and_paragraphs_dotted() {
        let t = extended("one two\n\nthree");
        assert_eq!(t, " one two\n .\n three\n");
        let long = "word ".repeat(40);
        assert!(extended(&long)
            .lines()
            .all(|l| l.len() <= 80 && l.starts_with(' ')));
    }

    #[test]
    fn paths_must_be_plain_and_absolute() {
        assert_eq!(relative("/usr/bin/colinux").unwrap(), "usr/bin/colinux");
        for bad in ["usr/bin/x", "/usr/../etc/x", "/", "/usr/./x"] {
            assert!(relative(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn gzip_is_reproducible_and_marks_best_compression() {
        let a = gzip(b"hello").unwrap();
        assert_eq!(a, gzip(b"hello").unwrap());
        // Header: magic, method, flags 0 (no name), mtime 0, XFL 2.
        assert_eq!(&a[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3]);
    }
}
