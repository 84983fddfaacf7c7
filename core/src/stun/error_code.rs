//! ERROR-CODE (RFC 8489 §14.8) and UNKNOWN-ATTRIBUTES (RFC 8489 §14.13).

use super::attr::{AttrType, Attribute, bad};
use super::error::StunError;
use super::header::HeaderContext;

/// ERROR-CODE: a 300–699 status code with a UTF-8 reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode<'a> {
    code: u16,
    reason: &'a str,
}

impl<'a> ErrorCode<'a> {
    /// 300 Try Alternate.
    pub const TRY_ALTERNATE: u16 = 300;
    /// 400 Bad Request.
    pub const BAD_REQUEST: u16 = 400;
    /// 401 Unauthenticated.
    pub const UNAUTHENTICATED: u16 = 401;
    /// 403 Forbidden.
    pub const FORBIDDEN: u16 = 403;
    /// 420 Unknown Attribute.
    pub const UNKNOWN_ATTRIBUTE: u16 = 420;
    /// 437 Allocation Mismatch (TURN).
    pub const ALLOCATION_MISMATCH: u16 = 437;
    /// 438 Stale Nonce.
    pub const STALE_NONCE: u16 = 438;
    /// 440 Address Family not Supported (TURN).
    pub const ADDRESS_FAMILY_NOT_SUPPORTED: u16 = 440;
    /// 441 Wrong Credentials (TURN).
    pub const WRONG_CREDENTIALS: u16 = 441;
    /// 442 Unsupported Transport Protocol (TURN).
    pub const UNSUPPORTED_TRANSPORT: u16 = 442;
    /// 486 Allocation Quota Reached (TURN).
    pub const ALLOCATION_QUOTA_REACHED: u16 = 486;
    /// 500 Server Error.
    pub const SERVER_ERROR: u16 = 500;
    /// 508 Insufficient Capacity (TURN).
    pub const INSUFFICIENT_CAPACITY: u16 = 508;

    /// The longest reason phrase accepted, in bytes.
    pub const MAX_REASON_LEN: usize = 763;

    /// An error code with its reason phrase; `code` must be within 300..=699.
    pub fn new(code: u16, reason: &'a str) -> Result<Self, StunError> {
        if !(300..=699).contains(&code) {
            return Err(bad::<ErrorCode>("code outside 300..=699"));
        }
        if reason.len() > Self::MAX_REASON_LEN {
            return Err(StunError::ValueTooLong {
                typ: AttrType::ERROR_CODE,
                len: reason.len(),
                max: Self::MAX_REASON_LEN,
            });
        }
        Ok(ErrorCode { code, reason })
    }

    /// The numeric code, e.g. 401.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The reason phrase.
    pub fn reason(&self) -> &'a str {
        self.reason
    }
}

impl<'a> Attribute<'a> for ErrorCode<'a> {
    const TYPE: AttrType = AttrType::ERROR_CODE;

    fn decode(value: &'a [u8], _ctx: &HeaderContext) -> Result<Self, StunError> {
        let (&[_, _, class, number], rest) = value
            .split_first_chunk::<4>()
            .ok_or_else(|| bad::<Self>("shorter than 4 bytes"))?;
        let class = u16::from(class & 0x07);
        let number = u16::from(number);
        if number > 99 {
            return Err(bad::<Self>("number above 99"));
        }
        let reason =
            std::str::from_utf8(rest).map_err(|_| bad::<Self>("reason phrase is not UTF-8"))?;
        ErrorCode::new(class * 100 + number, reason)
    }

    fn encoded_len(&self) -> usize {
        4 + self.reason.len()
    }

    fn encode(&self, out: &mut [u8], _ctx: &HeaderContext) {
        out[0] = 0;
        out[1] = 0;
        out[2] = (self.code / 100) as u8;
        out[3] = (self.code % 100) as u8;
        out[4..].copy_from_slice(self.reason.as_bytes());
    }
}

/// UNKNOWN-ATTRIBUTES: the comprehension-required types a 420 response refused.
///
/// Two values are equal when they list the same types, whether decoded or built.
#[derive(Debug, Clone, Copy)]
pub struct UnknownAttributes<'a>(Repr<'a>);

impl PartialEq for UnknownAttributes<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for UnknownAttributes<'_> {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repr<'a> {
    Wire(&'a [u8]),
    List(&'a [AttrType]),
}

impl<'a> UnknownAttributes<'a> {
    /// At most this many types are listed, so a response stays small.
    pub const MAX_TYPES: usize = 32;

    /// The attribute from a list of types.
    pub fn new(types: &'a [AttrType]) -> Result<Self, StunError> {
        if types.len() > Self::MAX_TYPES {
            return Err(StunError::ValueTooLong {
                typ: AttrType::UNKNOWN_ATTRIBUTES,
                len: types.len() * 2,
                max: Self::MAX_TYPES * 2,
            });
        }
        Ok(UnknownAttributes(Repr::List(types)))
    }

    /// The listed types.
    pub fn iter(&self) -> impl Iterator<Item = AttrType> + 'a {
        let (wire, list): (&'a [u8], &'a [AttrType]) = match self.0 {
            Repr::Wire(w) => (w, &[]),
            Repr::List(l) => (&[], l),
        };
        wire.chunks_exact(2)
            .map(|c| AttrType(u16::from_be_bytes([c[0], c[1]])))
            .chain(list.iter().copied())
    }
}

impl<'a> Attribute<'a> for UnknownAttributes<'a> {
    const TYPE: AttrType = AttrType::UNKNOWN_ATTRIBUTES;

    fn decode(value: &'a [u8], _ctx: &HeaderContext) -> Result<Self, StunError> {
        if value.len() % 2 != 0 {
            return Err(bad::<Self>("odd length"));
        }
        Ok(UnknownAttributes(Repr::Wire(value)))
    }

    fn encoded_len(&self) -> usize {
        match self.0 {
            Repr::Wire(w) => w.len(),
            Repr::List(l) => l.len() * 2,
        }
    }

    fn encode(&self, out: &mut [u8], _ctx: &HeaderContext) {
        for (chunk, t) in out.chunks_exact_mut(2).zip(self.iter()) {
            chunk.copy_from_slice(&t.0.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::header::{MAGIC_COOKIE, TransactionId};

    #[test]
    fn error_code_round_trip_and_limits() {
        let ctx = HeaderContext {
            cookie: MAGIC_COOKIE,
            transaction_id: TransactionId::new([0; 12]),
        };
        let e = ErrorCode::new(438, "Stale Nonce").unwrap();
        let mut buf = vec![0; e.encoded_len()];
        e.encode(&mut buf, &ctx);
        assert_eq!(&buf[..4], &[0, 0, 4, 38]);
        assert_eq!(ErrorCode::decode(&buf, &ctx).unwrap(), e);
        assert!(ErrorCode::new(200, "").is_err());
        assert!(ErrorCode::decode(&[0, 0, 4, 100], &ctx).is_err());
        assert!(ErrorCode::decode(&[0, 0, 2, 0], &ctx).is_err());
    }

    #[test]
    fn unknown_attributes_equality_ignores_representation() {
        let ctx = HeaderContext {
            cookie: MAGIC_COOKIE,
            transaction_id: TransactionId::new([0; 12]),
        };
        let types = [AttrType(0x0031), AttrType::USERNAME];
        let built = UnknownAttributes::new(&types).unwrap();
        let mut buf = vec![0; built.encoded_len()];
        built.encode(&mut buf, &ctx);
        let decoded = UnknownAttributes::decode(&buf, &ctx).unwrap();
        assert_eq!(decoded, built);
        assert_eq!(
            UnknownAttributes::decode(&[], &ctx).unwrap(),
            UnknownAttributes::new(&[]).unwrap()
        );
        assert_ne!(decoded, UnknownAttributes::new(&types[..1]).unwrap());
    }
}
