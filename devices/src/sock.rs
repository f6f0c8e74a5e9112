//! Unix sockets only their owner may use.

use std::os::unix::net::UnixListener;
use std::path::Path;

/// Listen on `path`, created mode 0600 with no window in which it has a
/// wider mode: the umask is changed around the bind only, so the caller
/// must not create files on other threads meanwhile (the runtime is
/// single-threaded where it binds).
pub fn bind_private(path: &Path) -> std::io::Result<UnixListener> {
    // SAFETY: umask only swaps the process's file mode mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe {
        libc::umask(old);
    }
    bound
}
