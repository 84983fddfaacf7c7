//! MQTT's primitive encodings (3.1.1 §1.5, §2.2): the fixed header's variable-length
//! "remaining length", big-endian u16s, and length-prefixed UTF-8 strings and binaries.

use super::error::MqttError;

/// The largest remaining length the 4-byte encoding holds (§2.2.3).
pub const MAX_REMAINING_LEN: usize = 268_435_455;
/// A maximum packet size that fits every signaling message with room to spare.
pub const DEFAULT_MAX_PACKET: usize = 64 * 1024;

/// How long the first packet in `buf` is (fixed header included), `Ok(None)` if more
/// bytes are needed to tell or to complete it. Errors on a malformed length or a packet
/// over `max`: the stream cannot be resynchronised, so the caller closes it.
pub fn frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, MqttError> {
    let mut len: usize = 0;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let total = 2 + i + len;
            if total > max {
                return Err(MqttError::TooLarge { len: total, max });
            }
            return Ok((buf.len() >= total).then_some(total));
        }
    }
    Err(MqttError::BadRemainingLength)
}

/// Appends a remaining-length field.
pub(crate) fn put_remaining_len(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
}

/// A cursor over one packet's body whose errors name the packet and field.
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
    pub(crate) packet: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], packet: &'static str) -> Self {
        Reader {
            buf,
            pos: 0,
            packet,
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], MqttError> {
        if self.remaining() < n {
            return Err(MqttError::Truncated {
                packet: self.packet,
                field,
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, MqttError> {
        Ok(self.bytes(1, field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, MqttError> {
        let b = self.bytes(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn binary(&mut self, field: &'static str) -> Result<&'a [u8], MqttError> {
        let n = usize::from(self.u16(field)?);
        self.bytes(n, field)
    }

    /// A UTF-8 string without U+0000 (§1.5.3).
    pub(crate) fn string(&mut self, field: &'static str) -> Result<&'a str, MqttError> {
        let raw = self.binary(field)?;
        let s = std::str::from_utf8(raw).map_err(|_| MqttError::Malformed {
            packet: self.packet,
            problem: "a string is not UTF-8",
        })?;
        if s.contains('\0') {
            return Err(MqttError::Malformed {
                packet: self.packet,
                problem: "a string contains U+0000",
            });
        }
        Ok(s)
    }

    pub(crate) fn finish(&self) -> Result<(), MqttError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(MqttError::TrailingBytes {
                packet: self.packet,
                extra,
            }),
        }
    }
}

/// Appends a u16-length-prefixed field.
pub(crate) fn put_binary(out: &mut Vec<u8>, what: &'static str, b: &[u8]) -> Result<(), MqttError> {
    let len = u16::try_from(b.len()).map_err(|_| MqttError::FieldTooLong { what, len: b.len() })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_length_boundaries() {
        // §2.2.3 table: 0, 127, 128, 16383, 16384, 2097151, 2097152, 268435455.
        for (len, n) in [
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (2_097_151, 3),
            (2_097_152, 4),
            (MAX_REMAINING_LEN, 4),
        ] {
            let mut out = vec![0x30];
            put_remaining_len(&mut out, len);
            assert_eq!(out.len(), 1 + n, "{len}");
            // Complete when all bytes are there, pending until then.
            assert_eq!(
                frame_len(&out, usize::MAX),
                Ok(if len == 0 { Some(2) } else { None })
            );
            let total = 1 + n + len;
            if len < 100_000 {
                out.resize(total, 0);
                assert_eq!(frame_len(&out, usize::MAX), Ok(Some(total)));
            }
        }
        assert_eq!(
            frame_len(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], usize::MAX),
            Err(MqttError::BadRemainingLength)
        );
        assert_eq!(frame_len(&[0x30, 0xff], 100), Ok(None));
        assert_eq!(
            frame_len(&[0x30, 0xff, 0x01], 100),
            Err(MqttError::TooLarge { len: 258, max: 100 })
        );
        assert_eq!(frame_len(&[0x30], 100), Ok(None));
    }
}
