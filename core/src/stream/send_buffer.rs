//! Bytes the application wrote that the peer has not acknowledged yet.

use std::collections::VecDeque;

/// A bounded FIFO of stream bytes addressed by their 64-bit stream offset: bytes enter at
/// the end ([`write`](Self::write)), are read by offset for (re)transmission
/// ([`copy`](Self::copy)), and leave from the front once cumulatively acknowledged
/// ([`ack`](Self::ack)). Its capacity is the most the application can have unacknowledged.
#[derive(Debug, Clone)]
pub struct SendBuffer {
    data: VecDeque<u8>,
    base: u64,
    capacity: usize,
}

impl SendBuffer {
    /// An empty buffer holding at most `capacity` bytes, starting at offset 0.
    pub fn new(capacity: usize) -> Self {
        SendBuffer {
            data: VecDeque::new(),
            base: 0,
            capacity,
        }
    }

    /// Appends as much of `bytes` as fits; returns how many were taken.
    pub fn write(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.free());
        self.data.extend(&bytes[..n]);
        n
    }

    /// Room left.
    pub fn free(&self) -> usize {
        self.capacity.saturating_sub(self.data.len())
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Offset of the first byte held.
    pub fn start(&self) -> u64 {
        self.base
    }

    /// Offset one past the last byte held (the next byte written gets this offset).
    pub fn end(&self) -> u64 {
        self.base + self.data.len() as u64
    }

    /// Drops every byte before offset `upto` (clamped to what is held).
    pub fn ack(&mut self, upto: u64) {
        let upto = upto.min(self.end());
        if upto > self.base {
            // upto - base ≤ data.len(), so it fits in usize.
            let n = (upto - self.base) as usize;
            self.data.drain(..n);
            self.base = upto;
        }
    }

    /// Copies the bytes starting at offset `from` into `out` (as many as are held and fit);
    /// returns how many. Offsets before [`start`](Self::start) copy nothing.
    pub fn copy(&self, from: u64, out: &mut [u8]) -> usize {
        if from < self.base || from >= self.end() {
            return 0;
        }
        let skip = (from - self.base) as usize;
        let n = out.len().min(self.data.len() - skip);
        let (a, b) = self.data.as_slices();
        let mut done = 0;
        if skip < a.len() {
            let k = n.min(a.len() - skip);
            out[..k].copy_from_slice(&a[skip..skip + k]);
            done = k;
        }
        if done < n {
            let at = skip + done - a.len();
            out[done..n].copy_from_slice(&b[at..at + (n - done)]);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_write_copy_ack() {
        let mut b = SendBuffer::new(10);
        assert_eq!(b.write(b"hello world"), 10);
        assert_eq!(b.write(b"x"), 0);
        let mut out = [0u8; 4];
        assert_eq!(b.copy(3, &mut out), 4);
        assert_eq!(&out, b"lo w");
        b.ack(6);
        assert_eq!((b.start(), b.end(), b.free()), (6, 10, 6));
        assert_eq!(b.copy(3, &mut out), 0, "acknowledged bytes are gone");
        assert_eq!(b.write(b"123456"), 6);
        // Wraps inside the deque: copy across both halves.
        let mut all = [0u8; 16];
        assert_eq!(b.copy(6, &mut all), 10);
        assert_eq!(&all[..10], b"worl123456");
        b.ack(100);
        assert_eq!((b.start(), b.len()), (16, 0));
    }
}
