//! Building a STUN message into a caller-provided buffer (RFC 8489 §5, §14).

use super::attr::{AttrType, Attribute};
use super::error::StunError;
use super::fingerprint::fingerprint;
use super::header::{HEADER_LEN, HeaderContext, MAGIC_COOKIE, MessageType, TransactionId};
use super::integrity::{INTEGRITY_LEN, INTEGRITY_SHA256_LEN, IntegrityKey};

/// What may still be added: the RFC fixes the order of the trailing attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Attributes,
    AfterIntegrity,
    AfterIntegritySha256,
    AfterFingerprint,
}

/// Writes one STUN message into a borrowed buffer, keeping the header's length field
/// current after every attribute, so that integrity and fingerprint can be computed in
/// place. Nothing is allocated.
///
/// ```
/// use p2pd_core::stun::{MessageBuilder, MessageType, TransactionId, XorMappedAddress};
/// let mut buf = [0u8; 128];
/// let mut b = MessageBuilder::new(&mut buf, MessageType::BINDING_SUCCESS, TransactionId::new([7; 12]))?;
/// b.add(&XorMappedAddress("192.0.2.1:4444".parse().unwrap()))?;
/// b.add_fingerprint()?;
/// let len = b.finish().len();
/// assert_eq!(len, 20 + 12 + 8);
/// # Ok::<(), p2pd_core::stun::StunError>(())
/// ```
#[derive(Debug)]
pub struct MessageBuilder<'b> {
    buf: &'b mut [u8],
    len: usize,
    ctx: HeaderContext,
    stage: Stage,
    padding: u8,
}

impl<'b> MessageBuilder<'b> {
    /// Starts an RFC 8489 message (magic cookie) of type `typ`.
    #[inline]
    pub fn new(
        buf: &'b mut [u8],
        typ: MessageType,
        transaction_id: TransactionId,
    ) -> Result<Self, StunError> {
        Self::with_cookie(buf, typ, MAGIC_COOKIE, transaction_id)
    }

    /// Starts a message whose cookie field is `cookie`: [`MAGIC_COOKIE`] normally, or the
    /// first 32 bits of an RFC 3489 request's 128-bit transaction ID when answering one.
    #[inline]
    pub fn with_cookie(
        buf: &'b mut [u8],
        typ: MessageType,
        cookie: u32,
        transaction_id: TransactionId,
    ) -> Result<Self, StunError> {
        let available = buf.len();
        let header = buf.get_mut(..HEADER_LEN).ok_or(StunError::BufferTooSmall {
            needed: HEADER_LEN,
            available,
        })?;
        header[0..2].copy_from_slice(&typ.to_u16().to_be_bytes());
        header[2..4].fill(0);
        header[4..8].copy_from_slice(&cookie.to_be_bytes());
        header[8..20].copy_from_slice(transaction_id.as_bytes());
        Ok(MessageBuilder {
            buf,
            len: HEADER_LEN,
            ctx: HeaderContext {
                cookie,
                transaction_id,
            },
            stage: Stage::Attributes,
            padding: 0,
        })
    }

    /// Sets the byte that pads attribute values to 4-byte boundaries (zero by default).
    /// Receivers must ignore padding (RFC 8489 §14); RFC 5769's test vectors pad with
    /// spaces, and reproducing them byte for byte needs this.
    pub fn set_padding_byte(&mut self, byte: u8) -> &mut Self {
        self.padding = byte;
        self
    }

    /// Reserves an attribute of `value_len` bytes (plus zero padding), advances the
    /// length field, and returns the value slice to fill.
    #[inline]
    fn reserve(&mut self, typ: AttrType, value_len: usize) -> Result<&mut [u8], StunError> {
        let padded = (value_len + 3) & !3;
        let end = self.len + 4 + padded;
        if value_len > usize::from(u16::MAX) || end - HEADER_LEN > usize::from(u16::MAX) {
            return Err(StunError::MessageTooLong);
        }
        if end > self.buf.len() {
            return Err(StunError::BufferTooSmall {
                needed: end,
                available: self.buf.len(),
            });
        }
        let start = self.len;
        let [t0, t1] = typ.0.to_be_bytes();
        let [l0, l1] = (value_len as u16).to_be_bytes();
        self.buf[start..start + 4].copy_from_slice(&[t0, t1, l0, l1]);
        if padded != value_len {
            // Pad the whole last word with one fixed-size store (a `fill` of 1 to 3 bytes
            // is a call to memset); the value, written after this, overwrites its head.
            self.buf[end - 4..end].copy_from_slice(&[self.padding; 4]);
        }
        self.buf[2..4].copy_from_slice(&((end - HEADER_LEN) as u16).to_be_bytes());
        self.len = end;
        Ok(&mut self.buf[start + 4..start + 4 + value_len])
    }

    #[inline]
    fn open_for(&self, typ: AttrType) -> Result<(), StunError> {
        if self.stage == Stage::Attributes {
            Ok(())
        } else {
            Err(StunError::AttributeAfterIntegrity { typ })
        }
    }

    /// Appends a typed attribute.
    #[inline]
    pub fn add<'x, A: Attribute<'x>>(&mut self, attr: &A) -> Result<&mut Self, StunError> {
        self.open_for(A::TYPE)?;
        let ctx = self.ctx;
        attr.encode(self.reserve(A::TYPE, attr.encoded_len())?, &ctx);
        Ok(self)
    }

    /// Appends an attribute from its type and raw value (for types without a codec).
    #[inline]
    pub fn add_raw(&mut self, typ: AttrType, value: &[u8]) -> Result<&mut Self, StunError> {
        self.open_for(typ)?;
        self.reserve(typ, value.len())?.copy_from_slice(value);
        Ok(self)
    }

    /// Appends MESSAGE-INTEGRITY: HMAC-SHA1 over everything so far (RFC 8489 §14.5).
    #[inline]
    pub fn add_integrity(&mut self, key: &IntegrityKey) -> Result<&mut Self, StunError> {
        self.open_for(AttrType::MESSAGE_INTEGRITY)?;
        let at = self.len;
        self.reserve(AttrType::MESSAGE_INTEGRITY, INTEGRITY_LEN)?;
        let mac = key.sha1(&[&self.buf[..at]]);
        self.buf[at + 4..at + 4 + INTEGRITY_LEN].copy_from_slice(&mac);
        self.stage = Stage::AfterIntegrity;
        Ok(self)
    }

    /// Appends MESSAGE-INTEGRITY-SHA256, untruncated (RFC 8489 §14.6). It may follow
    /// MESSAGE-INTEGRITY.
    pub fn add_integrity_sha256(&mut self, key: &IntegrityKey) -> Result<&mut Self, StunError> {
        if self.stage > Stage::AfterIntegrity {
            return Err(StunError::AttributeAfterIntegrity {
                typ: AttrType::MESSAGE_INTEGRITY_SHA256,
            });
        }
        let at = self.len;
        self.reserve(AttrType::MESSAGE_INTEGRITY_SHA256, INTEGRITY_SHA256_LEN)?;
        let mac = key.sha256(&[&self.buf[..at]]);
        self.buf[at + 4..at + 4 + INTEGRITY_SHA256_LEN].copy_from_slice(&mac);
        self.stage = Stage::AfterIntegritySha256;
        Ok(self)
    }

    /// Appends FINGERPRINT, which must be last (RFC 8489 §14.7).
    #[inline]
    pub fn add_fingerprint(&mut self) -> Result<&mut Self, StunError> {
        if self.stage == Stage::AfterFingerprint {
            return Err(StunError::AttributeAfterIntegrity {
                typ: AttrType::FINGERPRINT,
            });
        }
        let at = self.len;
        self.reserve(AttrType::FINGERPRINT, 4)?;
        let crc = fingerprint(&self.buf[..at]);
        self.buf[at + 4..at + 8].copy_from_slice(&crc.to_be_bytes());
        self.stage = Stage::AfterFingerprint;
        Ok(self)
    }

    /// Bytes written so far.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether only the header has been written.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == HEADER_LEN
    }

    /// Ends the message and returns its bytes.
    #[inline]
    pub fn finish(self) -> &'b [u8] {
        let MessageBuilder { buf, len, .. } = self;
        &buf[..len]
    }
}
