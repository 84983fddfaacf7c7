//! A node's long-term identity: an ed25519 key pair and the node id derived from it.
//!
//! The secret never leaves [`Identity`] except as the 32-byte seed its owner stores (key
//! files are the runtime's business: core touches no filesystem). Signatures are
//! ed25519 (RFC 8032), verified strictly (no malleable or small-order keys). The same key
//! pair, converted to its Montgomery form, receives signaling messages by X25519: see
//! [`crate::signal`] for why that is sound.

mod keys;
mod node_id;

pub use keys::{Identity, KeyError, PUBLIC_KEY_LEN, PublicKey, SECRET_LEN, SIGNATURE_LEN};
pub use node_id::{NODE_ID_LEN, NodeId, NodeIdError};
