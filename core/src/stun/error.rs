//! Everything that can go wrong parsing, building or authenticating a STUN message.

use super::attr::AttrType;

/// A STUN failure. Parse errors describe what was wrong with the bytes so that a log line
/// is enough to tell a truncated packet from a non-STUN one or a forged one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    /// Fewer bytes than a STUN header.
    #[error("not a STUN message: {len} bytes is shorter than the 20-byte header")]
    TooShort {
        /// How many bytes there were.
        len: usize,
    },
    /// One of the two top bits is set, so this is ChannelData or another protocol.
    #[error(
        "not a STUN message: the first two bits must be zero (ChannelData or another protocol?)"
    )]
    NotStun,
    /// The header's length field is not a multiple of 4 (RFC 8489 §5).
    #[error("not a STUN message: length {0} is not a multiple of 4")]
    UnalignedLength(usize),
    /// The header's length does not match the bytes given.
    #[error("STUN length field says {declared} bytes of attributes but {actual} follow the header")]
    LengthMismatch {
        /// The length field.
        declared: usize,
        /// The bytes after the header.
        actual: usize,
    },
    /// An attribute runs past the end of the message.
    #[error("attribute {typ:?} at offset {offset} runs past the end of the message")]
    TruncatedAttribute {
        /// The attribute's type.
        typ: AttrType,
        /// Its offset in the message.
        offset: usize,
    },
    /// An attribute's value does not have the form its type requires.
    #[error("malformed {typ:?} attribute: {reason}")]
    BadAttribute {
        /// The attribute's type.
        typ: AttrType,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Something follows FINGERPRINT, which must be last (RFC 8489 §14.7).
    #[error("FINGERPRINT is not the last attribute")]
    FingerprintNotLast,
    /// The message has no FINGERPRINT to check.
    #[error("the message carries no FINGERPRINT")]
    NoFingerprint,
    /// The FINGERPRINT does not match: corrupted, or not STUN at all.
    #[error("FINGERPRINT mismatch: the message was corrupted or is not STUN")]
    FingerprintMismatch,
    /// The message carries no MESSAGE-INTEGRITY (or -SHA256) to check.
    #[error("the message carries no MESSAGE-INTEGRITY attribute of the requested kind")]
    NoIntegrity,
    /// The HMAC does not match: wrong credentials, or a forged or altered message.
    #[error("MESSAGE-INTEGRITY mismatch: wrong credentials, or the message was altered")]
    IntegrityMismatch,
    /// The caller's buffer is too small for the message being built.
    #[error("buffer too small: the message needs {needed} bytes but the buffer holds {available}")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The message would exceed the 16-bit length field.
    #[error("message too long: STUN messages carry at most 65535 bytes of attributes")]
    MessageTooLong,
    /// An attribute was added after MESSAGE-INTEGRITY or FINGERPRINT, where receivers ignore it.
    #[error("{typ:?} cannot follow MESSAGE-INTEGRITY or FINGERPRINT: add it before them")]
    AttributeAfterIntegrity {
        /// The attribute's type.
        typ: AttrType,
    },
    /// A text or list value is longer than its attribute allows.
    #[error("{typ:?} value of {len} bytes exceeds its limit of {max}")]
    ValueTooLong {
        /// The attribute's type.
        typ: AttrType,
        /// The value's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A username, realm or password could not be prepared (RFC 4013 SASLprep prohibits a
    /// character in it).
    #[error(
        "credential string rejected by SASLprep (RFC 4013): remove control or prohibited characters"
    )]
    BadCredentials,
}
