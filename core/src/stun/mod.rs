//! STUN (RFC 8489, with RFC 5389 and RFC 3489 compatibility and the RFC 5780 NAT behaviour
//! discovery attributes): wire format, credentials, a client transaction and a server.
//!
//! The wire layer follows a parse/emit pair per attribute: [`Message::parse`] borrows the
//! bytes and checks the structure once; [`MessageBuilder`] writes into a buffer the caller
//! owns. The state machines on top ([`transaction`], [`server`]) never touch sockets or
//! clocks.

mod address;
mod attr;
mod builder;
mod error;
mod error_code;
mod fingerprint;
mod header;
mod integrity;
mod message;
mod nat_behaviour;
mod password;
mod rto;
mod server;
mod text;
mod transaction;

pub use address::{
    AlternateServer, ChangedAddress, MappedAddress, OtherAddress, ResponseOrigin, SourceAddress,
    XorMappedAddress, XorPeerAddress, XorRelayedAddress,
};
pub use attr::{AttrType, Attribute, RawAttribute};
pub use builder::MessageBuilder;
pub use error::StunError;
pub use error_code::{ErrorCode, UnknownAttributes};
pub use fingerprint::{FINGERPRINT_XOR, fingerprint};
pub use header::{
    Class, HEADER_LEN, HeaderContext, MAGIC_COOKIE, MessageType, Method, TransactionId,
};
pub use integrity::{INTEGRITY_LEN, INTEGRITY_SHA256_LEN, IntegrityKey};
pub use message::{Attributes, Message, message_len};
pub use nat_behaviour::{ChangeRequest, Padding, ResponsePort};
pub use password::{PasswordAlgorithm, PasswordAlgorithmKind, PasswordAlgorithms, UserHash};
pub use rto::RtoEstimator;
pub use server::{Dropped, ServerConfig, ServerConfigError, ServerStats, StunServer};
pub use text::{Nonce, Realm, Software, Username};
pub use transaction::{
    ClientTransaction, Ignored, NotARequest, ResponseSource, TransactionConfig, TransactionEvent,
};
