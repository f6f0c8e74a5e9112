//! Warnings a guest can cause by the million, logged sparsely.
//!
//! A guest kernel that keeps breaking a rule (a refused transport request,
//! a malformed virtio-blk chain, a request on a failing disk) must not fill
//! the host's journal: the first [`FIRST`] occurrences of each kind are
//! logged one by one, then one in [`FIRST`] with the running count.

use std::sync::atomic::{AtomicU64, Ordering};

/// Occurrences logged one by one (then one in this many).
pub const FIRST: u64 = 100;

/// A counter of one kind of warning; shareable between threads.
#[derive(Debug)]
pub struct Sparse {
    /// What is counted, for the line past [`FIRST`]: "requests refused".
    kind: &'static str,
    count: AtomicU64,
}

impl Sparse {
    /// A counter of `kind` at zero.
    pub const fn new(kind: &'static str) -> Sparse {
        Sparse {
            kind,
            count: AtomicU64::new(0),
        }
    }

    /// Count one occurrence; `Some(count)` when this one is to be logged.
    pub fn note(&self) -> Option<u64> {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        (n <= FIRST || n.is_multiple_of(FIRST)).then_some(n)
    }

    /// How many occurrences so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Log `what` as a warning if this occurrence is to be logged; past
    /// [`FIRST`] the line says how many there were.
    pub fn warn(&self, what: std::fmt::Arguments<'_>) {
        match self.note() {
            Some(n) if n > FIRST => tracing::warn!("{what} ({n} {} so far)", self.kind),
            Some(_) => tracing::warn!("{what}"),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_ones_then_one_in_a_hundred_are_logged() {
        let s = Sparse::new("tests");
        let logged: Vec<u64> = (0..1000).filter_map(|_| s.note()).collect();
        assert_eq!(logged.len(), 100 + 9);
        assert_eq!(&logged[..3], &[1, 2, 3]);
        assert_eq!(
            &logged[99..],
            &[100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]
        );
        assert_eq!(s.count(), 1000);
    }

    /// The log lines themselves, captured from this thread's subscriber.
    #[test]
    fn a_flood_of_warnings_leaves_few_log_lines_with_the_count() {
        #[derive(Clone, Default)]
        struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let sink = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        let s = Sparse::new("chains refused");
        tracing::subscriber::with_default(subscriber, || {
            for k in 0..10_000 {
                s.warn(format_args!("chain {k} refused"));
            }
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 100 + 99, "{text}");
        assert!(text.contains("chain 99 refused\n"));
        assert!(text.contains("chain 9999 refused (10000 chains refused so far)"));
    }
}
