//! Attribute types and the trait every typed attribute implements.

use std::fmt;

use super::error::StunError;
use super::header::HeaderContext;

/// A STUN attribute type (RFC 8489 §18.3 and the registries of RFC 5780, RFC 3489,
/// RFC 8656, RFC 6062 and RFC 8445).
///
/// Types below 0x8000 are comprehension-required: a receiver that does not understand one
/// must reject the request with 420 (RFC 8489 §14).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttrType(pub u16);

macro_rules! attr_types {
    ($($name:ident = $val:expr, $text:expr;)*) => {
        impl AttrType {
            $(
                #[doc = concat!("`", $text, "`.")]
                pub const $name: AttrType = AttrType($val);
            )*

            /// The registered name of this type, if p2pd knows it.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($val => Some($text),)*
                    _ => None,
                }
            }
        }
    };
}

attr_types! {
    MAPPED_ADDRESS = 0x0001, "MAPPED-ADDRESS";
    RESPONSE_ADDRESS = 0x0002, "RESPONSE-ADDRESS";
    CHANGE_REQUEST = 0x0003, "CHANGE-REQUEST";
    SOURCE_ADDRESS = 0x0004, "SOURCE-ADDRESS";
    CHANGED_ADDRESS = 0x0005, "CHANGED-ADDRESS";
    USERNAME = 0x0006, "USERNAME";
    PASSWORD = 0x0007, "PASSWORD";
    MESSAGE_INTEGRITY = 0x0008, "MESSAGE-INTEGRITY";
    ERROR_CODE = 0x0009, "ERROR-CODE";
    UNKNOWN_ATTRIBUTES = 0x000A, "UNKNOWN-ATTRIBUTES";
    REFLECTED_FROM = 0x000B, "REFLECTED-FROM";
    CHANNEL_NUMBER = 0x000C, "CHANNEL-NUMBER";
    LIFETIME = 0x000D, "LIFETIME";
    XOR_PEER_ADDRESS = 0x0012, "XOR-PEER-ADDRESS";
    DATA = 0x0013, "DATA";
    REALM = 0x0014, "REALM";
    NONCE = 0x0015, "NONCE";
    XOR_RELAYED_ADDRESS = 0x0016, "XOR-RELAYED-ADDRESS";
    REQUESTED_ADDRESS_FAMILY = 0x0017, "REQUESTED-ADDRESS-FAMILY";
    EVEN_PORT = 0x0018, "EVEN-PORT";
    REQUESTED_TRANSPORT = 0x0019, "REQUESTED-TRANSPORT";
    DONT_FRAGMENT = 0x001A, "DONT-FRAGMENT";
    MESSAGE_INTEGRITY_SHA256 = 0x001C, "MESSAGE-INTEGRITY-SHA256";
    PASSWORD_ALGORITHM = 0x001D, "PASSWORD-ALGORITHM";
    USERHASH = 0x001E, "USERHASH";
    XOR_MAPPED_ADDRESS = 0x0020, "XOR-MAPPED-ADDRESS";
    RESERVATION_TOKEN = 0x0022, "RESERVATION-TOKEN";
    PRIORITY = 0x0024, "PRIORITY";
    USE_CANDIDATE = 0x0025, "USE-CANDIDATE";
    PADDING = 0x0026, "PADDING";
    RESPONSE_PORT = 0x0027, "RESPONSE-PORT";
    CONNECTION_ID = 0x002A, "CONNECTION-ID";
    ADDITIONAL_ADDRESS_FAMILY = 0x8000, "ADDITIONAL-ADDRESS-FAMILY";
    ADDRESS_ERROR_CODE = 0x8001, "ADDRESS-ERROR-CODE";
    PASSWORD_ALGORITHMS = 0x8002, "PASSWORD-ALGORITHMS";
    ALTERNATE_DOMAIN = 0x8003, "ALTERNATE-DOMAIN";
    ICMP = 0x8004, "ICMP";
    SOFTWARE = 0x8022, "SOFTWARE";
    ALTERNATE_SERVER = 0x8023, "ALTERNATE-SERVER";
    CACHE_TIMEOUT = 0x8027, "CACHE-TIMEOUT";
    FINGERPRINT = 0x8028, "FINGERPRINT";
    ICE_CONTROLLED = 0x8029, "ICE-CONTROLLED";
    ICE_CONTROLLING = 0x802A, "ICE-CONTROLLING";
    RESPONSE_ORIGIN = 0x802B, "RESPONSE-ORIGIN";
    OTHER_ADDRESS = 0x802C, "OTHER-ADDRESS";
}

impl AttrType {
    /// Whether a receiver that does not understand this type must fail the transaction.
    pub const fn is_comprehension_required(self) -> bool {
        self.0 < 0x8000
    }

    /// Whether this is one of the attributes a STUN Binding agent (client or RFC 5780
    /// server) of p2pd understands.
    pub fn is_binding_attribute(self) -> bool {
        matches!(
            self,
            AttrType::MAPPED_ADDRESS
                | AttrType::RESPONSE_ADDRESS
                | AttrType::CHANGE_REQUEST
                | AttrType::SOURCE_ADDRESS
                | AttrType::CHANGED_ADDRESS
                | AttrType::USERNAME
                | AttrType::MESSAGE_INTEGRITY
                | AttrType::ERROR_CODE
                | AttrType::UNKNOWN_ATTRIBUTES
                | AttrType::REALM
                | AttrType::NONCE
                | AttrType::MESSAGE_INTEGRITY_SHA256
                | AttrType::PASSWORD_ALGORITHM
                | AttrType::USERHASH
                | AttrType::XOR_MAPPED_ADDRESS
                | AttrType::PADDING
                | AttrType::RESPONSE_PORT
                | AttrType::PRIORITY
                | AttrType::USE_CANDIDATE
        )
    }
}

impl fmt::Debug for AttrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "AttrType({:#06x})", self.0),
        }
    }
}

/// One attribute as it sits in a message: its type and its value (without padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAttribute<'a> {
    /// The type.
    pub typ: AttrType,
    /// The value, unpadded, borrowed from the message buffer.
    pub value: &'a [u8],
}

/// A typed attribute: a parse/emit pair over its wire value (smoltcp's `wire` style).
///
/// `decode` borrows from the message buffer and never allocates; `encode` writes exactly
/// `encoded_len()` bytes into the slice the builder hands it. Constructors of types with
/// limits (text lengths, error codes) check them, so `encode` cannot fail.
pub trait Attribute<'a>: Sized {
    /// The attribute type this codec handles.
    const TYPE: AttrType;

    /// Parses the unpadded value. `ctx` supplies the cookie and transaction ID for XOR-ed
    /// attributes.
    fn decode(value: &'a [u8], ctx: &HeaderContext) -> Result<Self, StunError>;

    /// The unpadded length of the encoded value.
    fn encoded_len(&self) -> usize;

    /// Writes the value into `out`, which is exactly `encoded_len()` bytes long.
    fn encode(&self, out: &mut [u8], ctx: &HeaderContext);
}

/// A malformed-attribute error for type `A`.
pub(crate) fn bad<'a, A: Attribute<'a>>(reason: &'static str) -> StunError {
    StunError::BadAttribute {
        typ: A::TYPE,
        reason,
    }
}

/// Reads a big-endian u16 at `at`, if the slice is long enough.
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
    match b.get(at..at + 2) {
        Some(&[x, y]) => Some(u16::from_be_bytes([x, y])),
        _ => None,
    }
}

/// Reads a big-endian u32 at `at`, if the slice is long enough.
#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> Option<u32> {
    match b.get(at..at + 4) {
        Some(&[w, x, y, z]) => Some(u32::from_be_bytes([w, x, y, z])),
        _ => None,
    }
}
