//! A STUN message parsed in place: a typed view over the caller's buffer (RFC 8489 §5, §14).

use std::net::SocketAddr;

use super::address::{MappedAddress, XorMappedAddress};
use super::attr::{AttrType, Attribute, RawAttribute, be16};
use super::error::StunError;
use super::fingerprint::fingerprint;
use super::header::{HEADER_LEN, HeaderContext, MAGIC_COOKIE, MessageType, TransactionId};
use super::integrity::{self, INTEGRITY_LEN, IntegrityKey};

/// The total length of the STUN message at the start of `buf`, read from its header, or
/// `None` while fewer than 20 bytes have arrived or when the bytes cannot start a STUN
/// message. Framing over TCP (RFC 8489 §6.2.2) uses it.
pub fn message_len(buf: &[u8]) -> Option<usize> {
    let first = *buf.first()?;
    let len = usize::from(be16(buf, 2)?);
    (first & 0xC0 == 0 && len % 4 == 0 && buf.len() >= HEADER_LEN).then_some(HEADER_LEN + len)
}

/// A parsed STUN message, borrowing its bytes.
///
/// [`Message::parse`] checks the header and walks every attribute once, so all later
/// accessors work on a structure already known to be sound; nothing is copied or
/// allocated. Attributes that follow MESSAGE-INTEGRITY (other than
/// MESSAGE-INTEGRITY-SHA256 and FINGERPRINT) are unauthenticated and, as RFC 8489 §14.5
/// requires, invisible through this view.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    buf: &'a [u8],
    typ: MessageType,
    ctx: HeaderContext,
    /// End of the attributes a receiver may use (the first integrity attribute, or the end).
    trusted_end: usize,
    integrity: Option<usize>,
    integrity_sha256: Option<usize>,
    fingerprint: Option<usize>,
}

impl std::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Message");
        d.field("type", &self.typ)
            .field("transaction_id", &self.ctx.transaction_id);
        if self.is_rfc3489() {
            d.field("cookie", &format_args!("{:#010x}", self.ctx.cookie));
        }
        d.field(
            "attributes",
            &self.attributes().map(|a| a.typ).collect::<Vec<_>>(),
        )
        .field("integrity", &self.integrity.is_some())
        .field("integrity_sha256", &self.integrity_sha256.is_some())
        .field("fingerprint", &self.fingerprint.is_some())
        .finish()
    }
}

impl<'a> Message<'a> {
    /// Parses exactly one STUN message: `buf` must hold the whole message and nothing more
    /// (one UDP datagram, or one frame cut with [`message_len`]).
    ///
    /// Messages whose cookie is not the magic cookie are accepted as RFC 3489 messages.
    pub fn parse(buf: &'a [u8]) -> Result<Self, StunError> {
        let header: &[u8; HEADER_LEN] = buf
            .first_chunk()
            .ok_or(StunError::TooShort { len: buf.len() })?;
        let typ = MessageType::from_u16(u16::from_be_bytes([header[0], header[1]]))
            .ok_or(StunError::NotStun)?;
        let declared = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if declared % 4 != 0 {
            return Err(StunError::UnalignedLength(declared));
        }
        if declared != buf.len() - HEADER_LEN {
            return Err(StunError::LengthMismatch {
                declared,
                actual: buf.len() - HEADER_LEN,
            });
        }
        let cookie = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let mut id = [0u8; 12];
        id.copy_from_slice(&header[8..20]);
        let mut msg = Message {
            buf,
            typ,
            ctx: HeaderContext {
                cookie,
                transaction_id: TransactionId::new(id),
            },
            trusted_end: buf.len(),
            integrity: None,
            integrity_sha256: None,
            fingerprint: None,
        };
        msg.walk()?;
        Ok(msg)
    }

    /// Checks every attribute's bounds and the placement rules of the integrity and
    /// fingerprint attributes, recording where they are.
    fn walk(&mut self) -> Result<(), StunError> {
        let mut at = HEADER_LEN;
        let mut sealed = false; // an integrity attribute has been seen
        while at < self.buf.len() {
            if self.fingerprint.is_some() {
                return Err(StunError::FingerprintNotLast);
            }
            let typ = AttrType(be16(self.buf, at).unwrap_or(0));
            let len = usize::from(
                be16(self.buf, at + 2).ok_or(StunError::TruncatedAttribute { typ, offset: at })?,
            );
            let next = at + 4 + ((len + 3) & !3);
            if next > self.buf.len() {
                return Err(StunError::TruncatedAttribute { typ, offset: at });
            }
            let bad = |reason| StunError::BadAttribute { typ, reason };
            match typ {
                AttrType::MESSAGE_INTEGRITY if !sealed => {
                    if len != INTEGRITY_LEN {
                        return Err(bad("must be 20 bytes"));
                    }
                    self.integrity = Some(at);
                    self.trusted_end = at;
                    sealed = true;
                }
                AttrType::MESSAGE_INTEGRITY_SHA256 if self.integrity_sha256.is_none() => {
                    if !(16..=32).contains(&len) || len % 4 != 0 {
                        return Err(bad("must be 16 to 32 bytes, a multiple of 4"));
                    }
                    self.integrity_sha256 = Some(at);
                    if !sealed {
                        self.trusted_end = at;
                    }
                    sealed = true;
                }
                AttrType::FINGERPRINT => {
                    if len != 4 {
                        return Err(bad("must be 4 bytes"));
                    }
                    self.fingerprint = Some(at);
                    if !sealed {
                        self.trusted_end = at;
                    }
                }
                _ => {}
            }
            at = next;
        }
        Ok(())
    }

    /// The message type.
    pub fn message_type(&self) -> MessageType {
        self.typ
    }

    /// The transaction ID.
    pub fn transaction_id(&self) -> TransactionId {
        self.ctx.transaction_id
    }

    /// Cookie and transaction ID, as attribute codecs need them.
    pub fn context(&self) -> &HeaderContext {
        &self.ctx
    }

    /// Whether this is a classic RFC 3489 message (no magic cookie).
    pub fn is_rfc3489(&self) -> bool {
        self.ctx.cookie != MAGIC_COOKIE
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The attributes a receiver may act on, in order: everything before
    /// MESSAGE-INTEGRITY (or the end), never the integrity or fingerprint attributes.
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            buf: self.buf.get(..self.trusted_end).unwrap_or(&[]),
            at: HEADER_LEN,
        }
    }

    /// The first attribute of type `A`, decoded; `Ok(None)` when absent.
    pub fn get<A: Attribute<'a>>(&self) -> Result<Option<A>, StunError> {
        match self.attributes().find(|a| a.typ == A::TYPE) {
            Some(raw) => A::decode(raw.value, &self.ctx).map(Some),
            None => Ok(None),
        }
    }

    /// Whether an attribute of this type is present.
    pub fn has(&self, typ: AttrType) -> bool {
        self.attributes().any(|a| a.typ == typ)
    }

    /// The reflexive address: XOR-MAPPED-ADDRESS, or MAPPED-ADDRESS from an RFC 3489
    /// server that sends only that.
    pub fn mapped_address(&self) -> Result<Option<SocketAddr>, StunError> {
        if let Some(XorMappedAddress(a)) = self.get()? {
            return Ok(Some(a));
        }
        Ok(self.get::<MappedAddress>()?.map(|m| m.0))
    }

    /// Comprehension-required attribute types that `understood` does not accept: a server
    /// answers a request carrying any with 420 and UNKNOWN-ATTRIBUTES (RFC 8489 §6.3.1).
    pub fn unknown_required(
        &self,
        understood: fn(AttrType) -> bool,
    ) -> impl Iterator<Item = AttrType> + 'a {
        self.attributes()
            .map(|a| a.typ)
            .filter(move |t| t.is_comprehension_required() && !understood(*t))
    }

    /// Whether the message carries MESSAGE-INTEGRITY.
    pub fn has_integrity(&self) -> bool {
        self.integrity.is_some()
    }

    /// Whether the message carries MESSAGE-INTEGRITY-SHA256.
    pub fn has_integrity_sha256(&self) -> bool {
        self.integrity_sha256.is_some()
    }

    /// Whether the message carries FINGERPRINT.
    pub fn has_fingerprint(&self) -> bool {
        self.fingerprint.is_some()
    }

    /// The header with its length field set as if the message ended after the
    /// attribute at `at` of `len` bytes, as the HMAC and CRC computations require.
    fn header_ending_at(&self, end: usize) -> [u8; 4] {
        let len = ((end - HEADER_LEN) as u16).to_be_bytes();
        [self.buf[0], self.buf[1], len[0], len[1]]
    }

    /// Verifies MESSAGE-INTEGRITY (HMAC-SHA1) with `key` (RFC 8489 §14.5).
    pub fn verify_integrity(&self, key: &IntegrityKey) -> Result<(), StunError> {
        let at = self.integrity.ok_or(StunError::NoIntegrity)?;
        let head = self.header_ending_at(at + 4 + INTEGRITY_LEN);
        let mac = key.sha1(&[&head, &self.buf[4..at]]);
        integrity::check(&mac, &self.buf[at + 4..at + 4 + INTEGRITY_LEN])
    }

    /// Verifies MESSAGE-INTEGRITY-SHA256 with `key` (RFC 8489 §14.6), accepting the
    /// truncations the RFC allows.
    pub fn verify_integrity_sha256(&self, key: &IntegrityKey) -> Result<(), StunError> {
        let at = self.integrity_sha256.ok_or(StunError::NoIntegrity)?;
        let len = usize::from(be16(self.buf, at + 2).unwrap_or(0));
        let head = self.header_ending_at(at + 4 + len);
        let mac = key.sha256(&[&head, &self.buf[4..at]]);
        integrity::check(&mac, &self.buf[at + 4..at + 4 + len])
    }

    /// Verifies whichever integrity attributes are present: SHA-256 if the message has
    /// it, otherwise SHA-1. Fails when neither is present.
    pub fn verify_any_integrity(&self, key: &IntegrityKey) -> Result<(), StunError> {
        if self.integrity_sha256.is_some() {
            self.verify_integrity_sha256(key)
        } else {
            self.verify_integrity(key)
        }
    }

    /// Verifies FINGERPRINT (RFC 8489 §14.7).
    pub fn verify_fingerprint(&self) -> Result<(), StunError> {
        let at = self.fingerprint.ok_or(StunError::NoFingerprint)?;
        // FINGERPRINT is last, so the header's length already ends after it.
        let expected = fingerprint(&self.buf[..at]);
        let got = super::attr::be32(self.buf, at + 4).ok_or(StunError::NoFingerprint)?;
        if expected == got {
            Ok(())
        } else {
            Err(StunError::FingerprintMismatch)
        }
    }
}

/// Iterator over a message's usable attributes; see [`Message::attributes`].
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = RawAttribute<'a>;

    fn next(&mut self) -> Option<RawAttribute<'a>> {
        let typ = AttrType(be16(self.buf, self.at)?);
        let len = usize::from(be16(self.buf, self.at + 2)?);
        let value = self.buf.get(self.at + 4..self.at + 4 + len)?;
        self.at += 4 + ((len + 3) & !3);
        Some(RawAttribute { typ, value })
    }
}
