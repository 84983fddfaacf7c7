//! ChannelData: the 4-byte-header framing of relayed data on a bound channel
//! (RFC 8656 §12.4).

use super::attributes::ChannelNumber;

/// Header length.
pub const CHANNEL_DATA_HEADER: usize = 4;

/// Why bytes are not a ChannelData message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChannelDataError {
    /// Fewer than 4 bytes.
    #[error("ChannelData needs a 4-byte header; got {0} bytes")]
    TooShort(usize),
    /// The first two bits are not 01, or the number is outside 0x4000..=0x4FFF.
    #[error("channel number {0:#06x} is outside 0x4000..=0x4FFF: not ChannelData")]
    BadChannel(u16),
    /// The length field runs past the bytes given.
    #[error("ChannelData length {declared} exceeds the {available} bytes that follow the header")]
    Truncated {
        /// The length field.
        declared: usize,
        /// Bytes after the header.
        available: usize,
    },
    /// Over a stream, more than 3 padding bytes (or bytes of the next message) follow.
    #[error("{0} bytes follow the ChannelData payload and its padding")]
    Trailing(usize),
    /// The payload does not fit the 16-bit length field, or the output buffer is too small.
    #[error("ChannelData payload of {len} bytes does not fit (limit {limit})")]
    TooLong {
        /// Payload length.
        len: usize,
        /// The limit that was hit.
        limit: usize,
    },
}

/// A ChannelData message borrowing its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    channel: ChannelNumber,
    data: &'a [u8],
}

impl<'a> ChannelData<'a> {
    /// Parses one ChannelData message that fills `buf` (one UDP datagram, or one frame cut
    /// with [`channel_data_len`]). Up to 3 bytes of padding after the payload are allowed
    /// (required over streams, optional over UDP), nothing more.
    pub fn parse(buf: &'a [u8]) -> Result<Self, ChannelDataError> {
        Self::parse_with(buf, ChannelNumber::new)
    }

    /// [`parse`](Self::parse) accepting RFC 5766's channel range 0x4000..=0x7FFF, as a
    /// server must for older clients (see [`ChannelNumber::new_rfc5766`]).
    pub fn parse_rfc5766(buf: &'a [u8]) -> Result<Self, ChannelDataError> {
        Self::parse_with(buf, ChannelNumber::new_rfc5766)
    }

    #[inline(always)]
    fn parse_with(
        buf: &'a [u8],
        number_ok: fn(u16) -> Option<ChannelNumber>,
    ) -> Result<Self, ChannelDataError> {
        let header: &[u8; 4] = buf
            .first_chunk()
            .ok_or(ChannelDataError::TooShort(buf.len()))?;
        let number = u16::from_be_bytes([header[0], header[1]]);
        let channel = number_ok(number).ok_or(ChannelDataError::BadChannel(number))?;
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let rest = &buf[CHANNEL_DATA_HEADER..];
        let data = rest.get(..len).ok_or(ChannelDataError::Truncated {
            declared: len,
            available: rest.len(),
        })?;
        let trailing = rest.len() - len;
        if trailing > 3 {
            return Err(ChannelDataError::Trailing(trailing));
        }
        Ok(ChannelData { channel, data })
    }

    /// The channel.
    pub fn channel(&self) -> ChannelNumber {
        self.channel
    }

    /// The payload.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Writes a ChannelData message into `out` and returns its length: header, payload,
    /// and zero padding to 4 bytes when `pad` (streams must pad; UDP need not).
    pub fn emit(
        channel: ChannelNumber,
        data: &[u8],
        pad: bool,
        out: &mut [u8],
    ) -> Result<usize, ChannelDataError> {
        let len = u16::try_from(data.len()).map_err(|_| ChannelDataError::TooLong {
            len: data.len(),
            limit: usize::from(u16::MAX),
        })?;
        let body = CHANNEL_DATA_HEADER + data.len();
        let total = if pad { (body + 3) & !3 } else { body };
        let limit = out.len().saturating_sub(CHANNEL_DATA_HEADER);
        let out = out.get_mut(..total).ok_or(ChannelDataError::TooLong {
            len: data.len(),
            limit,
        })?;
        out[..2].copy_from_slice(&channel.value().to_be_bytes());
        out[2..4].copy_from_slice(&len.to_be_bytes());
        out[CHANNEL_DATA_HEADER..body].copy_from_slice(data);
        out[body..].fill(0);
        Ok(total)
    }
}

/// The length of the padded ChannelData frame at the start of a stream buffer, or `None`
/// while fewer than 4 bytes have arrived or when the bytes are not ChannelData. Over TCP
/// a TURN stream interleaves STUN messages (first two bits 00) and ChannelData (01);
/// see [`crate::stun::message_len`] for the former.
pub fn channel_data_len(buf: &[u8]) -> Option<usize> {
    let header: &[u8; 4] = buf.first_chunk()?;
    ChannelNumber::new(u16::from_be_bytes([header[0], header[1]]))?;
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    Some((CHANNEL_DATA_HEADER + len + 3) & !3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_parse_round_trip_padded_and_not() {
        let ch = ChannelNumber::new(0x4abc).unwrap();
        let mut buf = [0xEEu8; 64];
        for (data, pad, total) in [
            (&b"abcde"[..], true, 12),
            (&b"abcde"[..], false, 9),
            (&b""[..], true, 4),
        ] {
            let n = ChannelData::emit(ch, data, pad, &mut buf).unwrap();
            assert_eq!(n, total);
            let m = ChannelData::parse(&buf[..n]).unwrap();
            assert_eq!((m.channel(), m.data()), (ch, data));
            if pad {
                assert_eq!(channel_data_len(&buf[..n]), Some(n));
            }
        }
    }

    #[test]
    fn malformed_is_refused() {
        assert_eq!(
            ChannelData::parse(&[0x40]),
            Err(ChannelDataError::TooShort(1))
        );
        assert_eq!(
            ChannelData::parse(&[0x00, 0x01, 0, 0]),
            Err(ChannelDataError::BadChannel(1))
        );
        assert_eq!(
            ChannelData::parse(&[0x50, 0x00, 0, 0]),
            Err(ChannelDataError::BadChannel(0x5000))
        );
        assert!(matches!(
            ChannelData::parse(&[0x40, 0, 0, 8, 1, 2]),
            Err(ChannelDataError::Truncated { .. })
        ));
        assert_eq!(
            ChannelData::parse(&[0x40, 0, 0, 0, 0, 0, 0, 0]),
            Err(ChannelDataError::Trailing(4))
        );
        assert_eq!(channel_data_len(&[0x00, 0x01, 0, 4]), None);
        let ch = ChannelNumber::new(0x4000).unwrap();
        assert!(ChannelData::emit(ch, &[0; 70_000], false, &mut [0; 80_000]).is_err());
        assert!(ChannelData::emit(ch, &[0; 10], true, &mut [0; 8]).is_err());
    }
}
