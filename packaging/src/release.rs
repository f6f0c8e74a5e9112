//! The release: what `cargo xtask package` writes to its output directory.
//!
//! - `colinux-dkms_<v>_amd64.deb`: `/usr/src/colinux-<v>/` — the driver's
//!   Kbuild directory (C shim, the prebuilt `no_std` Rust core as
//!   `colinux_core.o_shipped`, the ABI headers) and a `dkms.conf`; its
//!   maintainer scripts are DKMS's own (`common.postinst` builds and
//!   installs the module for every kernel with headers; `dkms remove` on
//!   removal), and DKMS's kernel hook rebuilds it for kernels installed
//!   later. amd64, not all: the core object is x86-64 code.
//! - `colinux_<v>_amd64.deb`: the `colinux` command (static), the systemd
//!   template unit, an example config under `/etc/colinux/`, the udev rule
//!   for `/dev/colinux` (root only), a modules-load.d entry, the man page
//!   and shell completions.
//! - `colinux-guest_<v>_amd64.deb`: the guest kernels of both LTS lines,
//!   `/usr/lib/colinux/vmlinux-<line>` (`kernel=` in a guest's config).
//! - `colinux-root-<suite>-i386.img.xz`: the Debian root file system image.
//! - `colinux-<v>-x86_64.tar.gz`: the same files as the packages, for hosts
//!   without dpkg (its `INSTALL` says how to place them).
//! - `SHA256SUMS` over all of the above (`sha256sum -c` format).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::deb::{Override, Package, Scripts, Source, NOT_AN_UPLOAD};

/// What the release is made of (built beforehand by the xtask).
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The upstream version (the workspace's).
    pub version: String,
    /// The `colinux` command (a static binary).
    pub colinux: PathBuf,
    /// The driver's Kbuild directory, ready to build (shim, core object,
    /// headers).
    pub kbuild: PathBuf,
    /// Guest kernels: (LTS line, e.g. `6.1`, vmlinux).
    pub guest_kernels: Vec<(String, PathBuf)>,
    /// The root file system image (raw), compressed into the release.
    pub rootfs: Option<PathBuf>,
    /// Where compressed images are kept by the raw image's SHA-256 (xz of
    /// a root image takes minutes; the same image is compressed once).
    pub image_cache: Option<PathBuf>,
    /// `daemon/systemd/colinux@.service`.
    pub unit: PathBuf,
    /// The example config for `/etc/colinux/example.toml`.
    pub example_config: String,
    /// `colinux generate man` / `bash` / `zsh` / `fish`.
    pub man: Vec<u8>,
    pub bash: Vec<u8>,
    pub zsh: Vec<u8>,
    pub fish: Vec<u8>,
    /// The release's date, RFC 2822 (the last commit's, for reproducible
    /// output).
    pub date: String,
}

/// What [`make`] wrote.
#[derive(Debug, Clone)]
pub struct Release {
    pub dir: PathBuf,
    pub debs: Vec<PathBuf>,
    pub tarball: PathBuf,
    pub rootfs: Option<PathBuf>,
    pub sums: PathBuf,
}

/// The Debian revision of our packages.
pub const REVISION: &str = "1";
/// The module's name in DKMS and the kernel.
pub const MODULE: &str = "colinux";

/// The DEP-5 copyright file of every package.
pub fn copyright() -> String {
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
     Upstream-Name: colinux\n\
     Source: https://github.com/colinux/colinux\n\
     \n\
     Files: *\n\
     Copyright: 2026 colinux maintainers\n\
     License: GPL-2\n\
     \x20This program is free software; you can redistribute it and/or modify it\n\
     \x20under the terms of the GNU General Public License version 2 as published\n\
     \x20by the Free Software Foundation.\n\
     \x20.\n\
     \x20On Debian systems, the complete text of the GNU General Public License\n\
     \x20version 2 can be found in `/usr/share/common-licenses/GPL-2'.\n"
        .to_string()
}

/// `dkms.conf` for the module sources of `version`.
pub fn dkms_conf(version: &str) -> String {
    format!(
        "# DKMS builds colinux.ko from these sources for each kernel with headers.\n\
         PACKAGE_NAME=\"{MODULE}\"\n\
         PACKAGE_VERSION=\"{version}\"\n\
         BUILT_MODULE_NAME[0]=\"{MODULE}\"\n\
         DEST_MODULE_LOCATION[0]=\"/updates/dkms\"\n\
         MAKE[0]=\"make -C ${{kernel_source_dir}} M=${{dkms_tree}}/${{PACKAGE_NAME}}/${{PACKAGE_VERSION}}/build modules\"\n\
         CLEAN=\"make -C ${{kernel_source_dir}} M=${{dkms_tree}}/${{PACKAGE_NAME}}/${{PACKAGE_VERSION}}/build clean\"\n\
         # The passage is x86-64 only.\n\
         BUILD_EXCLUSIVE_ARCH=\"x86_64\"\n\
         AUTOINSTALL=\"yes\"\n"
    )
}

fn dkms_scripts(version: &str) -> Scripts {
    let mut s = Scripts::new();
    s.insert(
        "postinst",
        format!(
            "#!/bin/sh\n\
             # Build and install colinux.ko for the installed kernels that have\n\
             # headers (DKMS's own helper, as dh_dkms uses it).\n\
             set -e\n\
             if [ \"$1\" = configure ]; then\n\
             \t/usr/lib/dkms/common.postinst {MODULE} {version} \"\" \"\" \"$2\"\n\
             fi\n"
        ),
    );
    s.insert(
        "prerm",
        format!(
            "#!/bin/sh\n\
             # Remove the module from every kernel DKMS built it for.\n\
             set -e\n\
             case \"$1\" in\n\
             remove|upgrade|deconfigure)\n\
             \tif [ -n \"$(dkms status -m {MODULE} -v {version})\" ]; then\n\
             \t\tdkms remove -m {MODULE} -v {version} --all\n\
             \tfi\n\
             \t;;\n\
             esac\n"
        ),
    );
    s
}

fn colinux_scripts() -> Scripts {
    let mut s = Scripts::new();
    let reload = "if [ -d /run/udev ] && command -v udevadm >/dev/null; then\n\
                  \tudevadm control --reload-rules || true\n\
                  fi\n\
                  if [ -d /run/systemd/system ]; then\n\
                  \tsystemctl --system daemon-reload >/dev/null || true\n\
                  fi\n";
    s.insert(
        "postinst",
        format!(
            "#!/bin/sh\n\
             # New udev rule and unit: tell udev and systemd. The module is\n\
             # loaded at the next boot (modules-load.d), or by `modprobe colinux`.\n\
             set -e\n\
             if [ \"$1\" = configure ]; then\n{reload}fi\n"
        ),
    );
    s.insert(
        "postrm",
        format!(
            "#!/bin/sh\n\
             # The unit and the udev rule are gone: tell systemd and udev.\n\
             set -e\n\
             if [ \"$1\" = remove ] || [ \"$1\" = purge ]; then\n{reload}fi\n\
             if [ \"$1\" = purge ]; then\n\
             \trmdir /etc/colinux 2>/dev/null || true\n\
             fi\n"
        ),
    );
    s
}

/// The three packages of `inputs`.
pub fn packages(inputs: &Inputs) -> Result<Vec<Package>> {
    let v = &inputs.version;
    let version = format!("{v}-{REVISION}");

    let mut dkms = Package {
        name: "colinux-dkms".into(),
        version: version.clone(),
        arch: "amd64".into(),
        section: "kernel".into(),
        depends: vec!["dkms (>= 2.8)".into()],
        summary: "Cooperative Linux host driver (DKMS source)".into(),
        description: "The host kernel module of colinux, which runs a Linux guest \
            kernel beside the host's kernel on the same CPU, as DKMS sources: the C \
            shim, the prebuilt Rust core (which depends only on colinux's own ABI) \
            and the ABI headers. DKMS builds it for every installed kernel that has \
            its headers, and again for kernels installed later.\n\n\
            Loading it lets root start a guest kernel that runs in ring 0: only \
            root can open /dev/colinux."
            .into(),
        scripts: dkms_scripts(v),
        overrides: vec![
            NOT_AN_UPLOAD,
            Override {
                tag: "unstripped-binary-or-object",
                context: "usr/src/colinux-*/colinux_core.o_shipped",
                why: "The Rust core is a relocatable object that Kbuild links into \
                      colinux.ko on the user's machine: its symbol table is how the \
                      shim's calls reach it. Debug information is already removed \
                      (cargo xtask build-driver, objcopy).",
            },
        ],
        ..Package::default()
    };
    let src = format!("/usr/src/{MODULE}-{v}");
    dkms.file(
        &format!("{src}/dkms.conf"),
        Source::Bytes(dkms_conf(v).into_bytes()),
        0o644,
    );
    for rel in tree_files(&inputs.kbuild)? {
        let name = rel.to_string_lossy();
        // Build products of an earlier in-place build are not sources.
        if is_build_product(&name) {
            continue;
        }
        dkms.file(
            &format!("{src}/{name}"),
            Source::File(inputs.kbuild.join(&rel)),
            0o644,
        );
    }

    let mut cli = Package {
        name: "colinux".into(),
        version: version.clone(),
        arch: "amd64".into(),
        section: "admin".into(),
        depends: vec![format!("colinux-dkms (= {version})")],
        recommends: vec![format!("colinux-guest (= {version})"), "passt".into()],
        summary: "Cooperative Linux: run a Linux kernel beside the host's".into(),
        description: "colinux runs a patched Linux guest kernel beside the host's \
            kernel on the same CPU, without a hypervisor: each kernel hands the CPU \
            to the other when it chooses. The guest gets virtual disks (cobd), \
            network (conet, through passt or a TAP) and a console (cocon) from the \
            host.\n\n\
            This package has the colinux command (run, list, console, stop, kill), \
            the systemd template unit colinux@NAME.service, an example guest \
            configuration and the udev rule that keeps /dev/colinux root-only."
            .into(),
        conffiles: vec!["/etc/colinux/example.toml".into()],
        scripts: colinux_scripts(),
        overrides: vec![
            NOT_AN_UPLOAD,
            Override {
                tag: "shared-library-lacks-prerequisites",
                context: "usr/bin/colinux",
                why: "colinux is a static position-independent executable (musl): it has \
                      no interpreter and needs no shared library, which lintian takes for \
                      a shared library without dependencies.",
            },
        ],
        ..Package::default()
    };
    cli.file(
        "/usr/bin/colinux",
        Source::File(inputs.colinux.clone()),
        0o755,
    )
    .file(
        "/lib/systemd/system/colinux@.service",
        Source::File(inputs.unit.clone()),
        0o644,
    )
    .file(
        "/etc/colinux/example.toml",
        Source::Bytes(inputs.example_config.clone().into_bytes()),
        0o644,
    )
    .file(
        "/lib/udev/rules.d/60-colinux.rules",
        Source::Bytes(UDEV_RULE.as_bytes().to_vec()),
        0o644,
    )
    .file(
        "/usr/lib/modules-load.d/colinux.conf",
        Source::Bytes(b"# Load the colinux host driver at boot.\ncolinux\n".to_vec()),
        0o644,
    )
    .file(
        "/usr/share/man/man1/colinux.1.gz",
        Source::Bytes(crate::deb::gzip(&inputs.man)?),
        0o644,
    )
    .file(
        "/usr/share/bash-completion/completions/colinux",
        Source::Bytes(inputs.bash.clone()),
        0o644,
    )
    .file(
        "/usr/share/zsh/vendor-completions/_colinux",
        Source::Bytes(inputs.zsh.clone()),
        0o644,
    )
    .file(
        "/usr/share/fish/vendor_completions.d/colinux.fish",
        Source::Bytes(inputs.fish.clone()),
        0o644,
    );

    let mut guest = Package {
        name: "colinux-guest".into(),
        version,
        arch: "amd64".into(),
        section: "kernel".into(),
        summary: "Cooperative Linux guest kernels".into(),
        description: format!(
            "The i386 Linux kernels that run as colinux guests, built from \
             colinux's patch series on the long-term releases {}. Name one in a \
             guest's configuration: kernel = \"/usr/lib/colinux/vmlinux-LINE\".\n\n\
             They are 32-bit x86 kernels: the host (amd64) loads them into the \
             guest's memory; they are never run as the host's kernel.",
            inputs
                .guest_kernels
                .iter()
                .map(|(l, _)| l.as_str())
                .collect::<Vec<_>>()
                .join(" and ")
        ),
        overrides: vec![
            NOT_AN_UPLOAD,
            Override {
                tag: "binary-from-other-architecture",
                context: "usr/lib/colinux/*",
                why: "The guest kernels are i386 ELF files by design: the amd64 host \
                      loads them into a guest's memory, where colinux runs them beside \
                      its own kernel; nothing on the host executes them as programs.",
            },
            Override {
                tag: "statically-linked-binary",
                context: "usr/lib/colinux/*",
                why: "A kernel image is statically linked.",
            },
            Override {
                tag: "unstripped-binary-or-object",
                context: "usr/lib/colinux/*",
                why: "The guest kernel keeps its symbols: the guest's oops reports and \
                      colinux's fault reports name functions with them.",
            },
        ],
        ..Package::default()
    };
    if inputs.guest_kernels.is_empty() {
        bail!("no guest kernel to package");
    }
    for (line, vmlinux) in &inputs.guest_kernels {
        guest.file(
            &format!("/usr/lib/colinux/vmlinux-{line}"),
            Source::File(vmlinux.clone()),
            0o644,
        );
    }
    Ok(vec![dkms, cli, guest])
}

/// `/dev/colinux` is root's alone: a guest runs in ring 0 (docs/SECURITY.md).
pub const UDEV_RULE: &str = "# /dev/colinux starts guests that run in ring 0: root only.\n\
KERNEL==\"colinux\", SUBSYSTEM==\"misc\", OWNER=\"root\", GROUP=\"root\", MODE=\"0600\"\n";

fn is_build_product(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    let shipped = base == "colinux_core.o_shipped";
    !shipped
        && (base.ends_with(".o")
            || base.ends_with(".ko")
            || base.ends_with(".mod")
            || base.ends_with(".mod.c")
            || base.ends_with(".cmd")
            || base == "Module.symvers"
            || base == "modules.order"
            || base.starts_with(".tmp"))
}

/// The regular files under `dir`, relative, sorted.
fn tree_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        for e in
            std::fs::read_dir(&here).with_context(|| format!("cannot list {}", here.display()))?
        {
            let e = e.with_context(|| format!("cannot list {}", here.display()))?;
            let t = e.file_type().context("file type")?;
            let r = rel.join(e.file_name());
            if t.is_dir() {
                stack.push(r);
            } else if t.is_file() {
                out.push(r);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Write the release into `dir`: the packages, the compressed image, the
/// tarball and `SHA256SUMS`.
pub fn make(inputs: &Inputs, dir: &Path) -> Result<Release> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let copyright = copyright();
    let pkgs = packages(inputs)?;
    let mut debs = Vec::new();
    for p in &pkgs {
        debs.push(p.build(dir, &copyright, &inputs.date)?);
    }
    let tarball = dir.join(format!("colinux-{}-x86_64.tar.gz", inputs.version));
    write_tarball(&pkgs, &tarball, &inputs.version)?;
    let rootfs = match &inputs.rootfs {
        Some(img) => Some(compress_image(img, dir, inputs.image_cache.as_deref())?),
        None => None,
    };
    let mut files: Vec<PathBuf> = debs.clone();
    files.push(tarball.clone());
    files.extend(rootfs.clone());
    let sums = dir.join("SHA256SUMS");
    let mut text = String::new();
    for f in &files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        text.push_str(&format!("{}  {name}\n", sha256_file(f)?));
    }
    std::fs::write(&sums, text).with_context(|| format!("cannot write {}", sums.display()))?;
    Ok(Release {
        dir: dir.to_path_buf(),
        debs,
        tarball,
        rootfs,
        sums,
    })
}

/// The SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex::encode(h.finalize()))
}

/// The packages' files under `colinux-<v>/` in a tar.gz, with an INSTALL.
fn write_tarball(pkgs: &[Package], out: &Path, version: &str) -> Result<()> {
    let top = format!("colinux-{version}");
    let f =
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut add = |path: &str, data: &[u8], mode: u32| -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, format!("{top}{path}"), data)
            .with_context(|| format!("cannot add {path} to {}", out.display()))
    };
    add("/INSTALL", install_text(version).as_bytes(), 0o644)?;
    for p in pkgs {
        for e in &p.files {
            let data = match &e.source {
                Source::Bytes(b) => b.clone(),
                Source::File(f) => {
                    std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?
                }
            };
            add(&e.path, &data, e.mode)?;
        }
    }
    let gz = tar
        .into_inner()
        .with_context(|| format!("cannot finish {}", out.display()))?;
    let mut f = gz
        .finish()
        .with_context(|| format!("cannot finish {}", out.display()))?;
    f.flush()
        .with_context(|| format!("cannot write {}", out.display()))
}

fn install_text(version: &str) -> String {
    format!(
        "colinux {version} for hosts without dpkg\n\
         ========================================\n\n\
         The files are laid out as they are installed (usr/, lib/, etc/). As root:\n\n\
         \x20 cp -r usr lib etc /            # or copy them one by one\n\
         \x20 dkms install {MODULE}/{version}    # builds colinux.ko for the running kernel\n\
         \x20 udevadm control --reload-rules && modprobe {MODULE}\n\
         \x20 systemctl daemon-reload\n\n\
         Then see `man colinux` and /etc/colinux/example.toml. To remove: `dkms remove\n\
         {MODULE}/{version} --all` and delete the same files.\n"
    )
}

/// `xz -T0 -6` of the image into `dir`, through `cache` (by the raw
/// image's SHA-256) when there is one.
fn compress_image(img: &Path, dir: &Path, cache: Option<&Path>) -> Result<PathBuf> {
    let name = img
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .context("image without a name")?;
    let out = dir.join(format!("{name}.xz"));
    let sum = sha256_file(img)?;
    let cached = match cache {
        Some(c) => {
            std::fs::create_dir_all(c).with_context(|| format!("cannot create {}", c.display()))?;
            c.join(format!("{sum}.xz"))
        }
        None => out.clone(),
    };
    if !cached.is_file() {
        tracing::info!("compressing {} (xz, a few minutes)", img.display());
        let tmp = cached.with_extension("xz.tmp");
        let outf = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let st = std::process::Command::new("xz")
            .args(["-T0", "-6", "-c"])
            .arg(img)
            .stdout(outf)
            .status()
            .context("cannot run xz (package xz-utils)")?;
        if !st.success() {
            bail!("xz failed on {}", img.display());
        }
        std::fs::rename(&tmp, &cached)
            .with_context(|| format!("cannot write {}", cached.display()))?;
    } else {
        tracing::info!("{} compressed before: {}", img.display(), cached.display());
    }
    if let Some(c) = cache {
        // One image at a time: older compressions are for images gone.
        for e in std::fs::read_dir(c).with_context(|| format!("cannot list {}", c.display()))? {
            let p = e
                .with_context(|| format!("cannot list {}", c.display()))?
                .path();
            if p != cached && p.extension().is_some_and(|x| x == "xz") {
                std::fs::remove_file(&p)
                    .with_context(|| format!("cannot remove {}", p.display()))?;
            }
        }
    }
    if cached != out {
        let st = std::process::Command::new("cp")
            .args(["--reflink=auto", "-f"])
            .arg(&cached)
            .arg(&out)
            .status()
            .context("cannot run cp")?;
        if !st.success() {
            bail!("cannot copy {} to {}", cached.display(), out.display());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_products_are_left_out_of_the_dkms_sources() {
        for keep in [
            "colinux_shim.c",
            "colinux_core.o_shipped",
            "Kbuild",
            "include/linux/cooperative.h",
        ] {
            assert!(!is_build_product(keep), "{keep}");
        }
        for drop in [
            ".colinux_core.o.cmd",
            "colinux.ko",
            "colinux_shim.o",
            ".colinux_shim.o.cmd",
            "colinux.mod.c",
            "Module.symvers",
        ] {
            assert!(is_build_product(drop), "{drop}");
        }
    }

    #[test]
    fn dkms_conf_names_module_version_and_build_dir() {
        let c = dkms_conf("1.2.3");
        assert!(c.contains("PACKAGE_VERSION=\"1.2.3\""));
        assert!(c.contains("BUILT_MODULE_NAME[0]=\"colinux\""));
        assert!(c.contains("M=${dkms_tree}/${PACKAGE_NAME}/${PACKAGE_VERSION}/build modules"));
    }
}
