//! Where a conet interface's frames go on the host: the [`Backend`]
//! trait, and the stream framing of QEMU's socket protocol that passt
//! speaks ([`Stream`]).
//!
//! Frames cross the trait as the guest's virtio-net sees them: a
//! `struct virtio_net_hdr_v1` ([`HDR_LEN`] bytes, the header of a
//! VERSION_1 device) followed by the Ethernet frame. A back end that does
//! not understand the header (passt) strips it on the way out and puts an
//! empty one in front of what it receives.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};

/// Bytes of `struct virtio_net_hdr_v1` (flags, gso_type, hdr_len,
/// gso_size, csum_start, csum_offset, num_buffers).
pub const HDR_LEN: usize = 12;
/// The largest Ethernet frame either direction carries (a 64 KiB GSO
/// frame and its link header).
pub const MAX_FRAME: usize = 65535 + 14 + 4;
/// How much a stream back end buffers towards its peer before it stops
/// taking frames from the guest.
pub const STREAM_HIGH_WATER: usize = 256 << 10;

/// The virtio-net header a frame from a back end without one gets: no
/// offload, one buffer.
pub fn plain_header() -> [u8; HDR_LEN] {
    let mut h = [0u8; HDR_LEN];
    h[10..12].copy_from_slice(&1u16.to_le_bytes());
    h
}

/// A host end of an interface. Non-blocking: nothing here waits.
pub trait Backend: Send + std::fmt::Debug {
    /// For logs: `passt`, `TAP colinux0`.
    fn describe(&self) -> String;
    /// The descriptor to wait on.
    fn fd(&self) -> RawFd;
    /// Whether the back end takes a frame now (a stream with too much
    /// queued does not: the guest's transmit ring waits).
    fn can_send(&self) -> bool;
    /// Send one frame (header + Ethernet frame). A frame the back end
    /// cannot take right now is dropped, as a busy link would.
    fn send(&mut self, frame: &[u8]) -> std::io::Result<()>;
    /// Push queued bytes out; whether some are still queued (wait for
    /// the descriptor to be writable).
    fn flush(&mut self) -> std::io::Result<bool>;
    /// The next frame (header + Ethernet frame) into `out`; `false` when
    /// none is there now. An error ends the back end (its peer is gone).
    fn recv(&mut self, out: &mut Vec<u8>) -> std::io::Result<bool>;
}

/// QEMU's stream protocol over a connected socket: each frame is a 4-byte
/// big-endian length and the Ethernet frame, no virtio-net header.
#[derive(Debug)]
pub struct Stream<S> {
    sock: S,
    what: String,
    /// Bytes read and not yet taken as frames.
    input: Vec<u8>,
    /// Bytes to write, from `out_at` on.
    output: Vec<u8>,
    out_at: usize,
}

impl<S: Read + Write + AsRawFd + Send + std::fmt::Debug> Stream<S> {
    /// The protocol on `sock`, which must be non-blocking.
    pub fn new(sock: S, what: impl Into<String>) -> Self {
        Stream {
            sock,
            what: what.into(),
            input: Vec::new(),
            output: Vec::new(),
            out_at: 0,
        }
    }

    fn queued(&self) -> usize {
        self.output.len() - self.out_at
    }

    /// A whole frame at the start of `input`: its length.
    fn frame_in_input(&self) -> std::io::Result<Option<usize>> {
        let Some(len) = self.input.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > MAX_FRAME {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                format!("{}: a frame of {len} bytes", self.what),
            ));
        }
        Ok((self.input.len() >= 4 + len).then_some(len))
    }
}

impl<S: Read + Write + AsRawFd + Send + std::fmt::Debug> Backend for Stream<S> {
    fn describe(&self) -> String {
        self.what.clone()
    }

    fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    fn can_send(&self) -> bool {
        self.queued() < STREAM_HIGH_WATER
    }

    fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        let Some(eth) = frame.get(HDR_LEN..) else {
            return Ok(());
        };
        if self.out_at > 0 && self.out_at == self.output.len() {
            self.output.clear();
            self.out_at = 0;
        }
        self.output
            .extend_from_slice(&(eth.len() as u32).to_be_bytes());
        self.output.extend_from_slice(eth);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<bool> {
        while self.out_at < self.output.len() {
            match self.sock.write(&self.output[self.out_at..]) {
                Ok(0) => {
                    return Err(std::io::Error::new(
                        ErrorKind::WriteZero,
                        format!("{} takes no more bytes", self.what),
                    ))
                }
                Ok(n) => self.out_at += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.out_at == self.output.len() {
            self.output.clear();
            self.out_at = 0;
        } else if self.out_at > STREAM_HIGH_WATER {
            self.output.drain(..self.out_at);
            self.out_at = 0;
        }
        Ok(self.queued() > 0)
    }

    fn recv(&mut self, out: &mut Vec<u8>) -> std::io::Result<bool> {
        loop {
            if let Some(len) = self.frame_in_input()? {
                out.clear();
                out.extend_from_slice(&plain_header());
                out.extend_from_slice(&self.input[4..4 + len]);
                self.input.drain(..4 + len);
                return Ok(true);
            }
            let mut buf = [0u8; 64 << 10];
            match self.sock.read(&mut buf) {
                Ok(0) => {
                    return Err(std::io::Error::new(
                        ErrorKind::UnexpectedEof,
                        format!("{} closed the connection", self.what),
                    ))
                }
                Ok(n) => self.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}
