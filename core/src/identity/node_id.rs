//! The node id: a short, stable name for a public key.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use super::keys::PublicKey;

/// Bytes in a node id.
pub const NODE_ID_LEN: usize = 16;

/// The first 16 bytes of SHA-256("p2pd node id v1" ‖ public key), shown as 32 lowercase
/// hex digits. It names a node (its MQTT topic, logs, the REST API); it never stands in
/// for the key: messages are verified against the full key the address carries, and a
/// key is accepted for an id only if it hashes to it. 128 bits keep second preimages out
/// of reach.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId([u8; NODE_ID_LEN]);

/// Why text is not a node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdError {
    /// Wrong length or a non-hex character.
    #[error("'{0}' is not a node id: expected 32 hex digits")]
    Malformed(String),
}

impl NodeId {
    /// The id of `key`.
    pub fn of(key: &PublicKey) -> Self {
        let digest = Sha256::new()
            .chain_update(b"p2pd node id v1")
            .chain_update(key.to_bytes())
            .finalize();
        let mut id = [0u8; NODE_ID_LEN];
        id.copy_from_slice(&digest[..NODE_ID_LEN]);
        NodeId(id)
    }

    /// The id from its bytes.
    pub const fn from_bytes(bytes: [u8; NODE_ID_LEN]) -> Self {
        NodeId(bytes)
    }

    /// The bytes.
    pub const fn to_bytes(&self) -> [u8; NODE_ID_LEN] {
        self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl FromStr for NodeId {
    type Err = NodeIdError;

    fn from_str(s: &str) -> Result<Self, NodeIdError> {
        let bad = || NodeIdError::Malformed(s.chars().take(64).collect());
        if s.len() != NODE_ID_LEN * 2 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut id = [0u8; NODE_ID_LEN];
        for (i, out) in id.iter_mut().enumerate() {
            *out = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(NodeId(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::rng::Rng;

    #[test]
    fn text_round_trip() {
        let id = Identity::generate(&mut Rng::seed_from_u64(7)).node_id();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<NodeId>(), Ok(id));
        assert!("xyz".parse::<NodeId>().is_err());
        assert!("+1".repeat(16).parse::<NodeId>().is_err());
        assert!("é".repeat(16).parse::<NodeId>().is_err());
    }
}
