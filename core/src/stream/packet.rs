//! The stream's wire format: one datagram = one packet, a fixed header, up to
//! [`MAX_SACK_BLOCKS`] SACK blocks, then payload bytes.
//!
//! ```text
//!  0       1       2               6               10              14              18  19
//! +-------+-------+---------------+---------------+---------------+---------------+---+----
//! |version| flags | connection id |      seq      |      ack      |    window     | n | n × (start, end), payload
//! +-------+-------+---------------+---------------+---------------+---------------+---+----
//! ```
//!
//! All integers are big-endian. `seq`, `ack` and the SACK edges are the low 32 bits of
//! 64-bit byte offsets ([`unwrap`] recovers them); `window` counts bytes beyond `ack` the
//! receiver will buffer (RFC 9293 §3.8.6's receive window, never shrunk by the sender of
//! it). `flags`: [`FIN`] (the stream ends after this packet's payload; the FIN takes one
//! sequence number, as in TCP) and [`PING`] (answer with an ACK at once: keepalives, window
//! probes). Every packet carries the cumulative ACK, so there is no separate ACK type.
//!
//! The header carries no length and no checksum: the datagram's length is the packet's, and
//! integrity is the job of the path (UDP's checksum) or of the encryption layer that will
//! carry these packets inside its own AEAD frames — the packet is a plain byte string with
//! no alignment or size assumptions, so it nests in any such frame.

use thiserror::Error;

/// The only version this code speaks; packets with another are ignored.
pub const VERSION: u8 = 1;
/// Bytes before the SACK blocks.
pub const HEADER_LEN: usize = 19;
/// Bytes per SACK block (two 32-bit edges).
pub const SACK_BLOCK_LEN: usize = 8;
/// At most this many SACK blocks per packet (RFC 2018 §3 fits 3–4 in TCP's option space;
/// four here, so a full packet's header has a fixed upper size).
pub const MAX_SACK_BLOCKS: usize = 4;
/// The largest header: fixed part plus every SACK block. Payload room is the datagram size
/// minus this, so a segment keeps its size when retransmitted with different SACKs.
pub const MAX_HEADER_LEN: usize = HEADER_LEN + MAX_SACK_BLOCKS * SACK_BLOCK_LEN;

/// The stream ends after this packet's payload.
pub const FIN: u8 = 0x01;
/// The sender wants an ACK at once.
pub const PING: u8 = 0x02;
const KNOWN_FLAGS: u8 = FIN | PING;

/// Why bytes are not a packet (or a packet does not fit a buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PacketError {
    /// Shorter than the header and the SACK blocks it announces.
    #[error("packet truncated: {0} bytes")]
    Truncated(usize),
    /// A version this code does not speak.
    #[error("unknown version {0}")]
    Version(u8),
    /// Flag bits this version does not define.
    #[error("unknown flags {0:#04x}")]
    Flags(u8),
    /// More SACK blocks than [`MAX_SACK_BLOCKS`].
    #[error("{0} SACK blocks, at most 4 allowed")]
    TooManySacks(u8),
    /// The output buffer is too small for the packet.
    #[error("buffer of {have} bytes, packet needs {need}")]
    BufferTooSmall {
        /// Bytes available.
        have: usize,
        /// Bytes needed.
        need: usize,
    },
}

/// A parsed packet borrowing the datagram: the header is validated once by
/// [`parse`](Self::parse), so the accessors cannot fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    buf: &'a [u8],
    sacks: usize,
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        x.copy_from_slice(s);
    }
    u32::from_be_bytes(x)
}

impl<'a> Packet<'a> {
    /// Checks version, flags and length; borrows `buf`.
    pub fn parse(buf: &'a [u8]) -> Result<Self, PacketError> {
        if buf.len() < HEADER_LEN {
            return Err(PacketError::Truncated(buf.len()));
        }
        if buf[0] != VERSION {
            return Err(PacketError::Version(buf[0]));
        }
        if buf[1] & !KNOWN_FLAGS != 0 {
            return Err(PacketError::Flags(buf[1]));
        }
        let n = buf[18];
        if usize::from(n) > MAX_SACK_BLOCKS {
            return Err(PacketError::TooManySacks(n));
        }
        let sacks = usize::from(n);
        if buf.len() < HEADER_LEN + sacks * SACK_BLOCK_LEN {
            return Err(PacketError::Truncated(buf.len()));
        }
        Ok(Packet { buf, sacks })
    }

    /// The flag byte ([`FIN`], [`PING`]).
    pub fn flags(&self) -> u8 {
        self.buf[1]
    }

    /// Whether [`FIN`] is set.
    pub fn fin(&self) -> bool {
        self.flags() & FIN != 0
    }

    /// Whether [`PING`] is set.
    pub fn ping(&self) -> bool {
        self.flags() & PING != 0
    }

    /// The connection this packet belongs to.
    pub fn connection_id(&self) -> u32 {
        be32(self.buf, 2)
    }

    /// Low 32 bits of the first payload byte's offset.
    pub fn seq(&self) -> u32 {
        be32(self.buf, 6)
    }

    /// Low 32 bits of the next byte the sender expects.
    pub fn ack(&self) -> u32 {
        be32(self.buf, 10)
    }

    /// Bytes beyond `ack` the sender of this packet will accept.
    pub fn window(&self) -> u32 {
        be32(self.buf, 14)
    }

    /// The SACK blocks: `(start, end)` of bytes received beyond the cumulative ACK, low 32
    /// bits, end exclusive (RFC 2018 §3).
    pub fn sacks(&self) -> impl Iterator<Item = (u32, u32)> + 'a {
        let buf = self.buf;
        (0..self.sacks).map(move |i| {
            let at = HEADER_LEN + i * SACK_BLOCK_LEN;
            (be32(buf, at), be32(buf, at + 4))
        })
    }

    /// The payload.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN + self.sacks * SACK_BLOCK_LEN..]
    }

    /// The packet's fields as a [`Repr`].
    pub fn repr(&self) -> Repr {
        let mut sacks = SackBlocks::default();
        for s in self.sacks() {
            sacks.push(s);
        }
        Repr {
            flags: self.flags(),
            connection_id: self.connection_id(),
            seq: self.seq(),
            ack: self.ack(),
            window: self.window(),
            sacks,
        }
    }
}

/// Up to [`MAX_SACK_BLOCKS`] SACK blocks, without allocating.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SackBlocks {
    blocks: [(u32, u32); MAX_SACK_BLOCKS],
    len: usize,
}

impl SackBlocks {
    /// Appends a block; false (and nothing changes) when full.
    pub fn push(&mut self, block: (u32, u32)) -> bool {
        match self.blocks.get_mut(self.len) {
            Some(slot) => {
                *slot = block;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// The blocks.
    pub fn as_slice(&self) -> &[(u32, u32)] {
        &self.blocks[..self.len]
    }

    /// How many blocks.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A packet's header fields, to emit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Repr {
    /// [`FIN`] | [`PING`].
    pub flags: u8,
    /// The connection.
    pub connection_id: u32,
    /// Low 32 bits of the first payload byte's offset.
    pub seq: u32,
    /// Low 32 bits of the cumulative ACK.
    pub ack: u32,
    /// Receive window beyond `ack`.
    pub window: u32,
    /// SACK blocks.
    pub sacks: SackBlocks,
}

impl Repr {
    /// Header length with these SACK blocks.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.sacks.len() * SACK_BLOCK_LEN
    }

    /// Writes the header and `payload` into `out`; returns the packet's length.
    pub fn emit(&self, payload: &[u8], out: &mut [u8]) -> Result<usize, PacketError> {
        let head = self.header_len();
        let need = head + payload.len();
        if out.len() < need {
            return Err(PacketError::BufferTooSmall {
                have: out.len(),
                need,
            });
        }
        self.emit_header(out)?;
        out[head..need].copy_from_slice(payload);
        Ok(need)
    }

    /// Writes only the header into `out` (the payload goes at `out[header_len()..]`);
    /// returns the header's length.
    pub fn emit_header(&self, out: &mut [u8]) -> Result<usize, PacketError> {
        let head = self.header_len();
        if out.len() < head {
            return Err(PacketError::BufferTooSmall {
                have: out.len(),
                need: head,
            });
        }
        out[0] = VERSION;
        out[1] = self.flags & KNOWN_FLAGS;
        out[2..6].copy_from_slice(&self.connection_id.to_be_bytes());
        out[6..10].copy_from_slice(&self.seq.to_be_bytes());
        out[10..14].copy_from_slice(&self.ack.to_be_bytes());
        out[14..18].copy_from_slice(&self.window.to_be_bytes());
        // At most MAX_SACK_BLOCKS (4), so the cast is exact.
        out[18] = self.sacks.len() as u8;
        for (i, (s, e)) in self.sacks.as_slice().iter().enumerate() {
            let at = HEADER_LEN + i * SACK_BLOCK_LEN;
            out[at..at + 4].copy_from_slice(&s.to_be_bytes());
            out[at + 4..at + 8].copy_from_slice(&e.to_be_bytes());
        }
        Ok(head)
    }
}

/// The 64-bit offset whose low 32 bits are `wire` and which lies closest to `expected`
/// (within ±2³¹). Offsets below zero are impossible, so near the start the answer is the
/// smallest candidate ≥ 0. Both ends keep every window far below 2³¹ bytes, so a genuine
/// offset is always the closest one.
pub fn unwrap(expected: u64, wire: u32) -> u64 {
    const SPAN: u64 = 1 << 32;
    const HALF: u64 = 1 << 31;
    let candidate = (expected & !(SPAN - 1)) | u64::from(wire);
    if candidate + HALF <= expected && candidate.checked_add(SPAN).is_some() {
        candidate + SPAN
    } else if candidate > expected.saturating_add(HALF) && candidate >= SPAN {
        candidate - SPAN
    } else {
        candidate
    }
}

/// The low 32 bits of an offset, as sent.
pub fn truncate(offset: u64) -> u32 {
    offset as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut sacks = SackBlocks::default();
        assert!(sacks.push((10, 20)));
        assert!(sacks.push((30, 45)));
        let repr = Repr {
            flags: FIN | PING,
            connection_id: 0xdead_beef,
            seq: 0xffff_fff0,
            ack: 7,
            window: 65_536,
            sacks,
        };
        let mut out = [0u8; 64];
        let n = repr.emit(b"hello", &mut out).unwrap();
        assert_eq!(n, HEADER_LEN + 16 + 5);
        let p = Packet::parse(&out[..n]).unwrap();
        assert_eq!(p.repr(), repr);
        assert_eq!(p.payload(), b"hello");
        assert!(p.fin() && p.ping());
        assert_eq!(p.sacks().collect::<Vec<_>>(), vec![(10, 20), (30, 45)]);
        assert_eq!(
            repr.emit(b"hello", &mut out[..n - 1]),
            Err(PacketError::BufferTooSmall {
                have: n - 1,
                need: n
            })
        );
    }

    #[test]
    fn rejects_malformed() {
        let mut out = [0u8; 64];
        let n = Repr::default().emit(&[], &mut out).unwrap();
        assert!(Packet::parse(&out[..n]).is_ok());
        assert_eq!(
            Packet::parse(&out[..n - 1]),
            Err(PacketError::Truncated(n - 1))
        );
        let mut bad = out;
        bad[0] = 2;
        assert_eq!(Packet::parse(&bad[..n]), Err(PacketError::Version(2)));
        let mut bad = out;
        bad[1] = 0x80;
        assert_eq!(Packet::parse(&bad[..n]), Err(PacketError::Flags(0x80)));
        let mut bad = out;
        bad[18] = 5;
        assert_eq!(Packet::parse(&bad[..n]), Err(PacketError::TooManySacks(5)));
        bad[18] = 2;
        assert_eq!(
            Packet::parse(&bad[..n + 8]),
            Err(PacketError::Truncated(n + 8))
        );
        assert!(Packet::parse(&bad[..n + 16]).is_ok());
        let mut full = SackBlocks::default();
        for i in 0..4 {
            assert!(full.push((i, i + 1)));
        }
        assert!(!full.push((9, 10)));
    }

    #[test]
    fn sequence_unwrapping() {
        const SPAN: u64 = 1 << 32;
        for base in [0u64, 5, SPAN - 3, SPAN, 3 * SPAN + 17, u64::MAX - SPAN] {
            for delta in [-1_000_000i64, -1, 0, 1, 1_000_000, (1 << 31) - 1] {
                let Some(real) = base.checked_add_signed(delta) else {
                    continue;
                };
                assert_eq!(
                    unwrap(base, truncate(real)),
                    real,
                    "base {base} delta {delta}"
                );
            }
        }
        // Near zero, a "negative" offset is impossible: the answer stays ≥ 0.
        assert_eq!(unwrap(0, u32::MAX), u64::from(u32::MAX));
        assert_eq!(unwrap(SPAN + 10, u32::MAX), SPAN - 1);
        assert_eq!(unwrap(SPAN - 10, 5), SPAN + 5);
    }
}
