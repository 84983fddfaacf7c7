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
    /// Offsets of the first usable XOR-MAPPED-ADDRESS and MAPPED-ADDRESS (0 when absent),
    /// found during the walk so that [`Message::get`] of the reflexive address, the one
    /// lookup every Binding response needs, does not walk the attributes again.
    xor_mapped: u32,
    mapped: u32,
}

/// What [`walk`] finds: where the special attributes are.
struct Layout {
    trusted_end: usize,
    integrity: Option<usize>,
    integrity_sha256: Option<usize>,
    fingerprint: Option<usize>,
    xor_mapped: u32,
    mapped: u32,
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
    #[inline(always)]
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
        let [.., i0, i1, i2, i3, i4, i5, i6, i7, i8, i9, i10, i11] = *header;
        let id = [i0, i1, i2, i3, i4, i5, i6, i7, i8, i9, i10, i11];
        // Built once from locals: a Message filled in field by field through `&mut self`
        // made every caller's copy of it stall on store forwarding.
        let layout = walk(buf)?;
        Ok(Message {
            buf,
            typ,
            ctx: HeaderContext {
                cookie,
                transaction_id: TransactionId::new(id),
            },
            trusted_end: layout.trusted_end,
            integrity: layout.integrity,
            integrity_sha256: layout.integrity_sha256,
            fingerprint: layout.fingerprint,
            xor_mapped: layout.xor_mapped,
            mapped: layout.mapped,
        })
    }

    /// The message type.
    #[inline]
    pub fn message_type(&self) -> MessageType {
        self.typ
    }

    /// The transaction ID.
    #[inline]
    pub fn transaction_id(&self) -> TransactionId {
        self.ctx.transaction_id
    }

    /// Cookie and transaction ID, as attribute codecs need them.
    #[inline]
    pub fn context(&self) -> &HeaderContext {
        &self.ctx
    }

    /// Whether this is a classic RFC 3489 message (no magic cookie).
    #[inline]
    pub fn is_rfc3489(&self) -> bool {
        self.ctx.cookie != MAGIC_COOKIE
    }

    /// The whole message.
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The attributes a receiver may act on, in order: everything before
    /// MESSAGE-INTEGRITY (or the end), never the integrity or fingerprint attributes.
    #[inline]
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            buf: self.buf.get(..self.trusted_end).unwrap_or(&[]),
            at: HEADER_LEN,
        }
    }

    /// The first attribute of type `A`, decoded; `Ok(None)` when absent.
    #[inline(always)]
    pub fn get<A: Attribute<'a>>(&self) -> Result<Option<A>, StunError> {
        // The walk located the reflexive address types; `A::TYPE` is a constant, so this
        // choice is made at compile time.
        let known = match A::TYPE {
            AttrType::XOR_MAPPED_ADDRESS => Some(self.xor_mapped),
            AttrType::MAPPED_ADDRESS => Some(self.mapped),
            _ => None,
        };
        let raw = match known {
            Some(0) => None,
            Some(at) => self.raw_at(at as usize),
            None => self.attributes().find(|a| a.typ == A::TYPE),
        };
        match raw {
            Some(raw) => A::decode(raw.value, &self.ctx).map(Some),
            None => Ok(None),
        }
    }

    /// The attribute at `at`, an offset the walk has checked.
    #[inline(always)]
    fn raw_at(&self, at: usize) -> Option<RawAttribute<'a>> {
        Attributes { buf: self.buf, at }.next()
    }

    /// Whether an attribute of this type is present.
    pub fn has(&self, typ: AttrType) -> bool {
        self.attributes().any(|a| a.typ == typ)
    }

    /// The reflexive address: XOR-MAPPED-ADDRESS, or MAPPED-ADDRESS from an RFC 3489
    /// server that sends only that.
    #[inline]
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
    #[inline]
    pub fn has_integrity(&self) -> bool {
        self.integrity.is_some()
    }

    /// Whether the message carries MESSAGE-INTEGRITY-SHA256.
    #[inline]
    pub fn has_integrity_sha256(&self) -> bool {
        self.integrity_sha256.is_some()
    }

    /// Whether the message carries FINGERPRINT.
    #[inline]
    pub fn has_fingerprint(&self) -> bool {
        self.fingerprint.is_some()
    }

    /// The header with its length field set as if the message ended after the
    /// attribute at `at` of `len` bytes, as the HMAC and CRC computations require.
    #[inline]
    fn header_ending_at(&self, end: usize) -> [u8; 4] {
        let len = ((end - HEADER_LEN) as u16).to_be_bytes();
        [self.buf[0], self.buf[1], len[0], len[1]]
    }

    /// Verifies MESSAGE-INTEGRITY (HMAC-SHA1) with `key` (RFC 8489 §14.5).
    #[inline]
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
    #[inline]
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

/// Checks every attribute's bounds and the placement rules of the integrity and
/// fingerprint attributes of a message whose header has been checked (its length is a
/// multiple of 4 and matches `buf`), recording where they are.
#[inline(always)]
fn walk(buf: &[u8]) -> Result<Layout, StunError> {
    let mut l = Layout {
        trusted_end: buf.len(),
        integrity: None,
        integrity_sha256: None,
        fingerprint: None,
        xor_mapped: 0,
        mapped: 0,
    };
    let mut at = HEADER_LEN;
    let mut sealed = false; // an integrity attribute has been seen
    while at < buf.len() {
        if l.fingerprint.is_some() {
            return Err(StunError::FingerprintNotLast);
        }
        let Some(&[t0, t1, l0, l1]) = buf.get(at..at + 4) else {
            let typ = AttrType(be16(buf, at).unwrap_or(0));
            return Err(StunError::TruncatedAttribute { typ, offset: at });
        };
        let typ = AttrType(u16::from_be_bytes([t0, t1]));
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        let next = at + 4 + ((len + 3) & !3);
        if next > buf.len() {
            return Err(StunError::TruncatedAttribute { typ, offset: at });
        }
        let bad = |reason| StunError::BadAttribute { typ, reason };
        match typ {
            // `at` < 65556 (the header's length field is 16 bits), so it fits in a u32.
            AttrType::XOR_MAPPED_ADDRESS if !sealed && l.xor_mapped == 0 => {
                l.xor_mapped = at as u32;
            }
            AttrType::MAPPED_ADDRESS if !sealed && l.mapped == 0 => l.mapped = at as u32,
            AttrType::MESSAGE_INTEGRITY if !sealed => {
                if len != INTEGRITY_LEN {
                    return Err(bad("must be 20 bytes"));
                }
                l.integrity = Some(at);
                l.trusted_end = at;
                sealed = true;
            }
            AttrType::MESSAGE_INTEGRITY_SHA256 if l.integrity_sha256.is_none() => {
                if !(16..=32).contains(&len) || len % 4 != 0 {
                    return Err(bad("must be 16 to 32 bytes, a multiple of 4"));
                }
                l.integrity_sha256 = Some(at);
                if !sealed {
                    l.trusted_end = at;
                }
                sealed = true;
            }
            AttrType::FINGERPRINT => {
                if len != 4 {
                    return Err(bad("must be 4 bytes"));
                }
                l.fingerprint = Some(at);
                if !sealed {
                    l.trusted_end = at;
                }
            }
            _ => {}
        }
        at = next;
    }
    Ok(l)
}

/// Iterator over a message's usable attributes; see [`Message::attributes`].
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = RawAttribute<'a>;

    #[inline(always)]
    fn next(&mut self) -> Option<RawAttribute<'a>> {
        let typ = AttrType(be16(self.buf, self.at)?);
        let len = usize::from(be16(self.buf, self.at + 2)?);
        let value = self.buf.get(self.at + 4..self.at + 4 + len)?;
        self.at += 4 + ((len + 3) & !3);
        Some(RawAttribute { typ, value })
    }
}
