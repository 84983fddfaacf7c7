//! Reassembly: received segments, in order or not, become the bytes the application reads.

use std::collections::{BTreeMap, VecDeque};

/// What one [`RecvBuffer::insert`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inserted {
    /// Bytes that became readable (in order) because of this segment.
    pub readable: usize,
    /// Bytes of the segment that were new (stored in order or out of order).
    pub new: usize,
    /// Part of the segment landed beyond a gap (RFC 5681 §4.2: ACK at once).
    pub out_of_order: bool,
}

/// Bytes readable in order plus segments held beyond a gap, all inside the receive window.
///
/// The window's right edge is `next + capacity - readable`: out-of-order bytes only ever
/// fill space below it, so memory is bounded by `capacity` bytes plus at most
/// `max_segments` out-of-order pieces (a peer sending one-byte segments cannot make it keep
/// a million tiny allocations). The edge never moves left: bytes becoming readable advance
/// `next` by the same amount, and only the application reading moves it right.
#[derive(Debug, Clone)]
pub struct RecvBuffer {
    readable: VecDeque<u8>,
    ooo: BTreeMap<u64, Vec<u8>>,
    ooo_bytes: usize,
    next: u64,
    capacity: usize,
    max_segments: usize,
    latest: Option<u64>,
}

impl RecvBuffer {
    /// An empty buffer expecting offset 0, holding at most `capacity` bytes in at most
    /// `max_segments` out-of-order pieces.
    pub fn new(capacity: usize, max_segments: usize) -> Self {
        RecvBuffer {
            readable: VecDeque::new(),
            ooo: BTreeMap::new(),
            ooo_bytes: 0,
            next: 0,
            capacity,
            max_segments,
            latest: None,
        }
    }

    /// The next in-order offset expected (everything before it has arrived).
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Bytes the application can read now.
    pub fn readable(&self) -> usize {
        self.readable.len()
    }

    /// Bytes held beyond a gap.
    pub fn out_of_order(&self) -> usize {
        self.ooo_bytes
    }

    /// One past the highest offset held (in order or not).
    pub fn highest_end(&self) -> u64 {
        self.ooo
            .last_key_value()
            .map_or(self.next, |(&k, v)| k + v.len() as u64)
    }

    /// Out-of-order pieces held.
    pub fn pieces(&self) -> usize {
        self.ooo.len()
    }

    /// The most out-of-order pieces ever held.
    pub fn max_pieces(&self) -> usize {
        self.max_segments
    }

    /// The receive window: bytes beyond [`next`](Self::next) this buffer will accept.
    pub fn window(&self) -> u64 {
        self.capacity.saturating_sub(self.readable.len()) as u64
    }

    /// One past the last offset accepted.
    pub fn window_end(&self) -> u64 {
        self.next + self.window()
    }

    /// Stores the segment at offset `seq`, keeping only bytes that are new and inside the
    /// window (duplicates and overlaps are trimmed, never trusted twice).
    pub fn insert(&mut self, seq: u64, bytes: &[u8]) -> Inserted {
        let mut out = Inserted::default();
        let end = seq
            .saturating_add(bytes.len() as u64)
            .min(self.window_end());
        let start = seq.max(self.next);
        if start >= end {
            return out;
        }
        let slice = |from: u64, to: u64| &bytes[(from - seq) as usize..(to - seq) as usize];
        if start == self.next {
            // In order: take bytes up to the first held piece, let the held pieces follow,
            // and repeat past them (a segment may span several holes).
            while self.next < end {
                let from = self.next;
                let cut = self
                    .ooo
                    .first_key_value()
                    .map_or(end, |(&k, _)| k.clamp(from, end));
                self.readable.extend(slice(from, cut));
                out.new += (cut - from) as usize;
                out.readable += (cut - from) as usize;
                self.next = cut;
                out.readable += self.drain_contiguous();
            }
            return out;
        }
        out.out_of_order = true;
        self.latest = Some(start);
        // Fill only the gaps between pieces already held.
        let mut cursor = start;
        let mut gaps: Vec<(u64, u64)> = Vec::new();
        let first = self
            .ooo
            .range(..=start)
            .next_back()
            .map(|(&k, _)| k)
            .unwrap_or(start);
        for (&k, v) in self.ooo.range(first..end) {
            let kend = k + v.len() as u64;
            if k > cursor {
                gaps.push((cursor, k));
            }
            cursor = cursor.max(kend);
            if cursor >= end {
                break;
            }
        }
        if cursor < end {
            gaps.push((cursor, end));
        }
        for (a, b) in gaps {
            if self.ooo.len() >= self.max_segments {
                break;
            }
            self.ooo.insert(a, slice(a, b).to_vec());
            self.ooo_bytes += (b - a) as usize;
            out.new += (b - a) as usize;
        }
        out
    }

    /// Moves held pieces that now continue the in-order bytes into the readable part.
    fn drain_contiguous(&mut self) -> usize {
        let mut moved = 0;
        while let Some(entry) = self.ooo.first_entry() {
            let k = *entry.key();
            if k > self.next {
                break;
            }
            let v = entry.remove();
            self.ooo_bytes -= v.len();
            let vend = k + v.len() as u64;
            if vend > self.next {
                let from = (self.next - k) as usize;
                self.readable.extend(&v[from..]);
                moved += v.len() - from;
                self.next = vend;
            }
        }
        moved
    }

    /// Copies readable bytes into `out`, removing them; returns how many.
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.readable.len());
        let (a, b) = self.readable.as_slices();
        let k = n.min(a.len());
        out[..k].copy_from_slice(&a[..k]);
        out[k..n].copy_from_slice(&b[..n - k]);
        self.readable.drain(..n);
        n
    }

    /// Up to `max` SACK blocks `(start, end)` describing the held pieces, merged where
    /// contiguous; the block holding the most recently received piece comes first (RFC 2018
    /// §4), the others in ascending order.
    pub fn sack_blocks(&self, max: usize) -> Vec<(u64, u64)> {
        let mut blocks: Vec<(u64, u64)> = Vec::new();
        for (&k, v) in &self.ooo {
            let e = k + v.len() as u64;
            match blocks.last_mut() {
                Some(last) if last.1 == k => last.1 = e,
                _ => blocks.push((k, e)),
            }
        }
        if let Some(latest) = self.latest
            && let Some(i) = blocks.iter().position(|b| b.0 <= latest && latest < b.1)
        {
            let b = blocks.remove(i);
            blocks.insert(0, b);
        }
        blocks.truncate(max);
        blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(b: &mut RecvBuffer) -> Vec<u8> {
        let mut out = vec![0u8; b.readable()];
        let n = b.read(&mut out);
        out.truncate(n);
        out
    }

    #[test]
    fn reassembles_overlaps_and_duplicates() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut b = RecvBuffer::new(1000, 64);
        // Out of order, overlapping, duplicated.
        let r = b.insert(50, &data[50..70]);
        assert_eq!((r.readable, r.new, r.out_of_order), (0, 20, true));
        assert_eq!(b.insert(60, &data[60..80]).new, 10, "overlap trimmed");
        assert_eq!(b.insert(55, &data[55..65]).new, 0, "duplicate");
        assert_eq!(b.insert(20, &data[20..30]).new, 10);
        assert_eq!(b.out_of_order(), 40);
        assert_eq!(
            b.sack_blocks(4),
            vec![(20, 30), (50, 80)],
            "latest first, merged"
        );
        // A piece spanning a held one fills only the gaps.
        assert_eq!(b.insert(10, &data[10..60]).new, 30);
        assert_eq!(b.readable(), 0);
        let r = b.insert(0, &data[0..15]);
        assert_eq!((r.new, r.readable), (10, 80));
        assert_eq!(b.next(), 80);
        assert_eq!(b.out_of_order(), 0);
        assert!(b.sack_blocks(4).is_empty());
        assert_eq!(b.insert(0, &data[..80]).new, 0, "old duplicate");
        b.insert(80, &data[80..]);
        assert_eq!(read_all(&mut b), data);
    }

    #[test]
    fn window_bounds_everything() {
        let mut b = RecvBuffer::new(10, 2);
        assert_eq!(b.insert(0, &[1; 30]).new, 10, "trimmed to the window");
        assert_eq!(b.window(), 0);
        assert_eq!(b.insert(10, &[1; 5]).new, 0);
        let mut out = [0u8; 4];
        assert_eq!(b.read(&mut out), 4);
        assert_eq!((b.window(), b.window_end()), (4, 14));
        // At most two out-of-order pieces are kept.
        assert_eq!(b.insert(11, &[2]).new, 1);
        assert_eq!(b.insert(13, &[2]).new, 1);
        assert_eq!(b.insert(12, &[2]).new, 0, "piece cap");
        assert_eq!(b.insert(10, &[3]).readable, 2);
        assert_eq!(b.next(), 12);
    }
}
