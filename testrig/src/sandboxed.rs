//! Helpers that sandbox themselves (passt, virtiofsd) in the test host.
//!
//! Both `pivot_root()` into a new root as part of their sandbox, which
//! fails (EINVAL) while the root is the initramfs itself (rootfs), as it is
//! in the test host. The daemon runs such a helper through a wrapper (the
//! program named by the helper's environment variable, e.g.
//! `$COLINUX_PASST`) that gives it a mount namespace whose root is a bind
//! mount of `/`; on a real host the wrapper is not needed.

/// Test-host shell lines that write the wrapper `/tmp/<name>-wrap` of
/// `program` (`/usr/bin/<name>`) and export `env` pointing at it.
pub fn wrapper_setup(program: &str, env: &str) -> String {
    let name = program.rsplit('/').next().unwrap_or(program);
    format!(
        r#"cat > /tmp/{name}-wrap <<'WRAP_END'
#!/bin/sh
exec unshare -m sh -c 'mkdir -p /tmp/{name}-root && mount -o rbind / /tmp/{name}-root && cd /tmp/{name}-root && mount -o move . / && exec chroot . {program} "$@"' {name} "$@"
WRAP_END
chmod +x /tmp/{name}-wrap
export {env}=/tmp/{name}-wrap
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrapper_runs_the_program_chrooted_and_is_exported() {
        let s = wrapper_setup("/usr/bin/virtiofsd", "COLINUX_VIRTIOFSD");
        assert!(s.starts_with("cat > /tmp/virtiofsd-wrap <<'WRAP_END'\n"));
        assert!(s.contains("exec chroot . /usr/bin/virtiofsd \"$@\"' virtiofsd \"$@\"\n"));
        assert!(s.ends_with("export COLINUX_VIRTIOFSD=/tmp/virtiofsd-wrap\n"));
    }
}
