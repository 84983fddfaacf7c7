//! Why a signaling message was refused.

use crate::identity::NodeId;

/// Why a message could not be sealed, or why a received one was dropped. Receivers drop
/// silently on the wire; these say why in logs and tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    /// Shorter than the envelope's fixed part.
    #[error("signaling message of {0} bytes is too short to be one")]
    TooShort(usize),
    /// A format version this node does not read.
    #[error("signaling message format version {0} is unknown: the sender runs a newer p2pd")]
    UnknownVersion(u8),
    /// Addressed to another node.
    #[error("signaling message addressed to node {0}, not to this node")]
    NotForUs(NodeId),
    /// Decryption failed: altered in transit, or encrypted to another key.
    #[error(
        "signaling message could not be decrypted: altered in transit or encrypted to another key"
    )]
    Undecryptable,
    /// The decrypted contents are malformed.
    #[error("signaling message is malformed: {0}")]
    Malformed(&'static str),
    /// The sender's key is not a valid ed25519 key.
    #[error("signaling message names an invalid sender key")]
    BadSenderKey,
    /// The signature does not verify.
    #[error("signaling message signature does not verify: forged or altered")]
    BadSignature,
    /// Its expiry has passed.
    #[error("signaling message expired {ago_ms} ms ago (check this host's clock if this repeats)")]
    Expired {
        /// How long ago.
        ago_ms: u64,
    },
    /// Its expiry is further away than any sender may set.
    #[error(
        "signaling message expires in {in_ms} ms, beyond the {max_ms} ms allowed (is the sender's clock wrong?)"
    )]
    ExpiryTooFar {
        /// How far away.
        in_ms: u64,
        /// The limit.
        max_ms: u64,
    },
    /// Already received (through another broker, or replayed).
    #[error("signaling message already received")]
    Duplicate,
    /// Older than the oldest id the bounded replay cache still remembers.
    #[error(
        "signaling message is older than the replay cache remembers: dropped as a possible replay"
    )]
    PossibleReplay,
    /// The body is larger than a message may carry.
    #[error("signaling body of {len} bytes exceeds the {max}-byte limit")]
    BodyTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}
