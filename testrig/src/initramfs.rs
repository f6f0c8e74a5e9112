//! The one way this project lays out an initramfs: a busybox root file
//! system. Both the test host's initramfs ([`crate::testhost`], x86_64
//! busybox) and the guest's ([`crate::guest_initrd`], i386 busybox) are a
//! [`BusyboxRoot`] written through [`crate::cpio::Writer`]; they differ only
//! in their directories, applet links, `/init` and extra files.

use std::io::{self, Write};

use crate::cpio;

/// A busybox root file system, as an initramfs.
#[derive(Debug)]
pub struct BusyboxRoot<'a> {
    /// Directories and their modes (parents of other paths are made 0755).
    pub dirs: &'a [(&'a str, u32)],
    /// The static busybox executable, installed as `/bin/busybox`.
    pub busybox: &'a [u8],
    /// Symbolic links to busybox (one per applet): `(path, target)`.
    pub links: Vec<(String, String)>,
    /// The `/init` script.
    pub init: &'a str,
    /// More files, in order: `(path, mode, contents)`.
    pub files: Vec<(String, u32, &'a [u8])>,
}

impl BusyboxRoot<'_> {
    /// Write the archive: the directories, `/dev/console` (5,1) and
    /// `/dev/null` (1,3), busybox and its links, `/etc/passwd` and
    /// `/etc/group` with root and nobody, `/init`, then the files.
    pub fn write<W: Write>(&self, out: W) -> io::Result<W> {
        let mut w = cpio::Writer::new(out);
        for (d, mode) in self.dirs {
            w.dir(d, *mode)?;
        }
        w.char_dev("/dev/console", 0o600, 5, 1)?;
        w.char_dev("/dev/null", 0o666, 1, 3)?;
        w.file("/bin/busybox", 0o755, self.busybox)?;
        for (path, target) in &self.links {
            w.symlink(path, target)?;
        }
        // nobody: what daemons started as root drop to (passt does).
        w.file(
            "/etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )?;
        w.file("/etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")?;
        w.file("/init", 0o755, self.init.as_bytes())?;
        for (path, mode, data) in &self.files {
            w.file(path, *mode, data)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot add {path}: {e}")))?;
        }
        w.finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_common_layout_then_the_files() {
        let root = BusyboxRoot {
            dirs: &[("/tmp", 0o1777), ("/proc", 0o555)],
            busybox: b"\x7fELF busybox",
            links: vec![("/bin/sh".into(), "busybox".into())],
            init: "#!/bin/sh\n",
            files: vec![("/etc/hostname".into(), 0o644, b"h\n".as_slice())],
        };
        let data = root.write(Vec::new()).unwrap();
        let entries = cpio::list_newc(&data).unwrap();
        let find = |n: &str| entries.iter().find(|e| e.name == n).unwrap();
        assert_eq!(find("tmp").mode, 0o041777);
        assert_eq!(find("proc").mode, 0o040555);
        assert_eq!(find("dev/console").rdev, (5, 1));
        assert_eq!(find("dev/null").rdev, (1, 3));
        assert_eq!(find("bin/sh").link.as_deref(), Some("busybox"));
        assert_eq!(find("init").mode, 0o100755);
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(pos("init") < pos("etc/hostname"));
        assert!(pos("etc/passwd") < pos("init"));
    }
}
