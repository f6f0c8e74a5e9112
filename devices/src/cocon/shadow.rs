//! The console shadow: the last bytes the guest wrote to its console, kept
//! so that a console client attaching late (`colinux console`) first
//! sees the screen as it was.
//!
//! A fixed-size ring: writing past its capacity drops the oldest bytes.
//! The replay starts at a line boundary once anything was dropped, so a
//! client never starts in the middle of a line (or of an escape sequence
//! on that line).

/// The shadow's size by default: 64 KiB, a few hundred lines.
pub const DEFAULT_CAPACITY: usize = 64 * 1024;

/// The last `capacity` bytes of console output.
#[derive(Debug, Clone)]
pub struct Shadow {
    buf: Vec<u8>,
    /// Where the next byte goes (once the ring is full: the oldest byte).
    head: usize,
    /// Bytes held (at most `buf.len()`).
    len: usize,
    /// Whether bytes were ever dropped.
    wrapped: bool,
}

impl Shadow {
    /// A shadow of the last `capacity` bytes (at least 1).
    pub fn new(capacity: usize) -> Shadow {
        Shadow {
            buf: vec![0; capacity.max(1)],
            head: 0,
            len: 0,
            wrapped: false,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append `data`, dropping the oldest bytes beyond the capacity.
    pub fn push(&mut self, data: &[u8]) {
        let cap = self.buf.len();
        if data.is_empty() {
            return;
        }
        // Only the last `cap` bytes of `data` can survive.
        let data = data.get(data.len().saturating_sub(cap)..).unwrap_or(data);
        let first = data.len().min(cap - self.head);
        let (a, b) = data.split_at(first);
        if let Some(dst) = self.buf.get_mut(self.head..self.head + a.len()) {
            dst.copy_from_slice(a);
        }
        if let Some(dst) = self.buf.get_mut(..b.len()) {
            dst.copy_from_slice(b);
        }
        self.head = (self.head + data.len()) % cap;
        let total = self.len + data.len();
        self.wrapped |= total > cap;
        self.len = total.min(cap);
    }

    /// The bytes held, oldest first, as two slices.
    pub fn as_slices(&self) -> (&[u8], &[u8]) {
        let cap = self.buf.len();
        let start = (self.head + cap - self.len) % cap;
        if start + self.len <= cap {
            (
                self.buf.get(start..start + self.len).unwrap_or_default(),
                &[],
            )
        } else {
            (
                self.buf.get(start..).unwrap_or_default(),
                self.buf.get(..self.head).unwrap_or_default(),
            )
        }
    }

    /// The bytes held, oldest first.
    pub fn contents(&self) -> Vec<u8> {
        let (a, b) = self.as_slices();
        let mut v = Vec::with_capacity(a.len() + b.len());
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        v
    }

    /// What a client attaching now is shown: the contents, from the first
    /// line start once older output was dropped (all of it if it holds no
    /// newline).
    pub fn replay(&self) -> Vec<u8> {
        let v = self.contents();
        if !self.wrapped {
            return v;
        }
        match v.iter().position(|&b| b == b'\n') {
            Some(nl) if nl + 1 < v.len() => v.get(nl + 1..).unwrap_or_default().to_vec(),
            _ => v,
        }
    }
}

impl Default for Shadow {
    fn default() -> Shadow {
        Shadow::new(DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::VecDeque;

    #[test]
    fn holds_everything_below_capacity() {
        let mut s = Shadow::new(16);
        assert!(s.is_empty());
        assert_eq!(s.replay(), b"");
        s.push(b"hello ");
        s.push(b"");
        s.push(b"world");
        assert_eq!(s.len(), 11);
        assert_eq!(s.contents(), b"hello world");
        assert_eq!(s.replay(), b"hello world");
    }

    #[test]
    fn wraps_around_keeping_the_newest_bytes() {
        let mut s = Shadow::new(8);
        s.push(b"abcdef");
        s.push(b"ghij"); // wraps: the ring is "ij" + "cdefgh"
        assert_eq!(s.len(), 8);
        assert_eq!(s.contents(), b"cdefghij");
        let (a, b) = s.as_slices();
        assert_eq!((a, b), (&b"cdefgh"[..], &b"ij"[..]));
        s.push(b"klmnopqr"); // exactly the capacity
        assert_eq!(s.contents(), b"klmnopqr");
        s.push(b"0123456789abcdefXYZ"); // more than the capacity at once
        assert_eq!(s.contents(), b"bcdefXYZ");
    }

    #[test]
    fn exactly_full_is_not_wrapped() {
        let mut s = Shadow::new(4);
        s.push(b"ab\nc");
        assert_eq!(s.replay(), b"ab\nc");
        s.push(b"d");
        // One byte dropped: the replay starts after the first newline.
        assert_eq!(s.contents(), b"b\ncd");
        assert_eq!(s.replay(), b"cd");
    }

    #[test]
    fn replay_starts_at_a_line_after_wrapping() {
        let mut s = Shadow::new(32);
        for i in 0..10 {
            s.push(format!("line {i} of the boot log\r\n").as_bytes());
        }
        let r = s.replay();
        assert!(
            r.starts_with(b"line 9"),
            "{:?}",
            String::from_utf8_lossy(&r)
        );
        assert!(r.ends_with(b"\r\n"));
        // No newline at all: everything held is shown.
        let mut s = Shadow::new(4);
        s.push(b"abcdefg");
        assert_eq!(s.replay(), b"defg");
        // Only a trailing newline: shown as it is.
        let mut s = Shadow::new(4);
        s.push(b"abcdef\n");
        assert_eq!(s.replay(), b"def\n");
    }

    #[test]
    fn matches_a_simple_model_for_any_write_sizes() {
        // A small deterministic generator: no dependency needed.
        let mut x: u32 = 12345;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for cap in [1usize, 2, 7, 64, 100] {
            let mut s = Shadow::new(cap);
            let mut model: VecDeque<u8> = VecDeque::new();
            let mut byte = 0u8;
            for _ in 0..500 {
                let n = (next() % (2 * cap as u32 + 3)) as usize;
                let chunk: Vec<u8> = (0..n)
                    .map(|_| {
                        byte = byte.wrapping_add(1);
                        byte
                    })
                    .collect();
                s.push(&chunk);
                model.extend(&chunk);
                while model.len() > cap {
                    model.pop_front();
                }
                assert_eq!(s.contents(), model.iter().copied().collect::<Vec<_>>());
                assert_eq!(s.len(), model.len());
            }
        }
    }
}
