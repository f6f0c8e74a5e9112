//! Log messages built without `core::fmt`.
//!
//! `core::fmt` formats through `dyn Write` (indirect calls, which a
//! retpoline kernel wants to avoid, see `driver/README.md`) and is large; the
//! core's messages only need text and numbers.

/// A log message in a fixed buffer; text beyond its capacity is dropped.
#[derive(Debug)]
pub struct Msg {
    buf: [u8; Msg::CAPACITY],
    len: usize,
}

impl Default for Msg {
    fn default() -> Self {
        Msg::new()
    }
}

impl Msg {
    /// Bytes a message holds (the kernel stack is small).
    pub const CAPACITY: usize = 200;

    /// An empty message.
    pub const fn new() -> Msg {
        Msg {
            buf: [0; Msg::CAPACITY],
            len: 0,
        }
    }

    /// The text so far.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    fn byte(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    /// Append text.
    pub fn s(mut self, text: &str) -> Msg {
        for &b in text.as_bytes() {
            self.byte(b);
        }
        self
    }

    /// Append a number in decimal.
    pub fn u(mut self, mut n: u64) -> Msg {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            if let Some(d) = digits.get_mut(i) {
                *d = b'0' + (n % 10) as u8;
            }
            n /= 10;
            if n == 0 || i == 0 {
                break;
            }
        }
        for &d in digits.get(i..).unwrap_or(&[]) {
            self.byte(d);
        }
        self
    }

    /// Append a number in hexadecimal, with `0x`.
    pub fn x(mut self, n: u64) -> Msg {
        self = self.s("0x");
        let mut started = false;
        for shift in (0..16).rev() {
            let nibble = ((n >> (shift * 4)) & 0xf) as u8;
            if nibble != 0 || started || shift == 0 {
                started = true;
                self.byte(if nibble < 10 {
                    b'0' + nibble
                } else {
                    b'a' + nibble - 10
                });
            }
        }
        self
    }

    /// Append a size in bytes as MiB when it is a whole number of MiB, else
    /// in bytes.
    pub fn bytes(self, n: u64) -> Msg {
        if n != 0 && n.is_multiple_of(1 << 20) {
            self.u(n >> 20).s(" MiB")
        } else {
            self.u(n).s(" bytes")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: Msg) -> String {
        String::from_utf8(m.as_bytes().to_vec()).expect("ASCII")
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(text(Msg::new().u(0)), "0");
        assert_eq!(text(Msg::new().u(u64::MAX)), "18446744073709551615");
        assert_eq!(text(Msg::new().s("n=").u(4096)), "n=4096");
        assert_eq!(text(Msg::new().x(0)), "0x0");
        assert_eq!(text(Msg::new().x(0x1f000)), "0x1f000");
        assert_eq!(text(Msg::new().x(u64::MAX)), "0xffffffffffffffff");
        assert_eq!(text(Msg::new().bytes(256 << 20)), "256 MiB");
        assert_eq!(text(Msg::new().bytes(4097)), "4097 bytes");
    }

    #[test]
    fn truncates_instead_of_overflowing() {
        let mut m = Msg::new();
        for _ in 0..100 {
            m = m.s("abcdef").u(123456);
        }
        assert_eq!(m.as_bytes().len(), Msg::CAPACITY);
    }
}
