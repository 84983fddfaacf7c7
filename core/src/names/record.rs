//! The signed record: a name, the node address it points to, its owner's key and the
//! write's timestamp, signed by the owner. A deletion is the same without an address.

use super::name::Name;
use crate::addr::NodeAddr;
use crate::identity::{Identity, KeyError, PublicKey, SIGNATURE_LEN};

/// Domain separation: a name signature can never be mistaken for any other p2pd signature.
const SIGNING_CONTEXT: &[u8] = b"p2pd name v1\0";

/// A write to a name, signed by its owner: a record (`addr: Some`) or a deletion
/// (`addr: None`).
///
/// The signature covers the operation, the name, the timestamp, the owner key and the
/// address, so a server (or anyone on the path) can neither alter a record nor move it to
/// another name; readers verify it themselves with [`SignedWrite::verify`]. The request
/// id and the server's cookie are outside the signature: they only match answers and
/// prove the sender's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedWrite {
    /// The name written.
    pub name: Name,
    /// The node address it points to; `None` deletes the name.
    pub addr: Option<NodeAddr>,
    /// The owner: the key that signed, and the only key that may write the name later.
    pub owner: PublicKey,
    /// Milliseconds since the Unix epoch, by the owner's clock. Every write to a name
    /// must carry a larger one than the last: older writes (replays) are refused.
    pub timestamp_ms: u64,
    /// ed25519 over [`SignedWrite::signed_bytes`].
    pub signature: [u8; SIGNATURE_LEN],
}

/// Why a write is not acceptable, before any stored state is consulted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The signature does not verify under the owner key.
    #[error("the write's signature does not verify under its owner key")]
    BadSignature,
    /// A record's address belongs to another key.
    #[error(
        "the node address belongs to node {addr_node}, but the write is signed by {owner_node}: a node can only name its own address"
    )]
    KeyMismatch {
        /// The address's node id.
        addr_node: String,
        /// The signer's node id.
        owner_node: String,
    },
}

impl SignedWrite {
    /// Signs a record (`addr: Some`) or a deletion (`addr: None`) of `name` with `identity`
    /// at `timestamp_ms`.
    pub fn sign(
        identity: &Identity,
        name: Name,
        addr: Option<NodeAddr>,
        timestamp_ms: u64,
    ) -> Self {
        let owner = identity.public();
        let bytes = signed_bytes(&name, addr.as_ref(), &owner, timestamp_ms);
        SignedWrite {
            signature: identity.sign(&bytes),
            name,
            addr,
            owner,
            timestamp_ms,
        }
    }

    /// Whether this deletes the name.
    pub fn is_delete(&self) -> bool {
        self.addr.is_none()
    }

    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed_bytes(
            &self.name,
            self.addr.as_ref(),
            &self.owner,
            self.timestamp_ms,
        )
    }

    /// Checks the signature, and that a record's address carries the owner's own key (a
    /// node names itself: nobody can point a name at someone else's node, and whoever
    /// connects by name reaches the key that owns the name).
    pub fn verify(&self) -> Result<(), RecordError> {
        if let Some(addr) = &self.addr {
            if *addr.key() != self.owner {
                return Err(RecordError::KeyMismatch {
                    addr_node: addr.node_id().to_string(),
                    owner_node: self.owner.node_id().to_string(),
                });
            }
        }
        self.owner
            .verify(&self.signed_bytes(), &self.signature)
            .map_err(|_: KeyError| RecordError::BadSignature)
    }
}

fn signed_bytes(name: &Name, addr: Option<&NodeAddr>, owner: &PublicKey, ts: u64) -> Vec<u8> {
    let addr_text = addr.map(|a| a.to_string()).unwrap_or_default();
    let mut out = Vec::with_capacity(SIGNING_CONTEXT.len() + 110 + addr_text.len());
    out.extend_from_slice(SIGNING_CONTEXT);
    out.push(if addr.is_some() { 1 } else { 2 });
    out.push(name.as_str().len() as u8);
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&owner.to_bytes());
    out.extend_from_slice(&(addr_text.len() as u16).to_be_bytes());
    out.extend_from_slice(addr_text.as_bytes());
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::addr::{Interface, Route};
    use crate::nat::{Delta, DeltaKind, NatType};
    use crate::rng::Rng;

    /// A valid address for `identity` (test helper shared by the names tests).
    pub(crate) fn addr_of(identity: &Identity, port: u16) -> NodeAddr {
        let route = Route {
            external: "203.0.113.7".parse().unwrap(),
            internal: "10.0.0.7".parse().unwrap(),
            port,
            nat: NatType::FullCone,
            delta: Delta {
                kind: DeltaKind::Equal,
                value: 0,
            },
        };
        NodeAddr::new(
            identity.public(),
            vec![],
            vec![Interface {
                v4: Some(route),
                v6: None,
            }],
        )
        .unwrap()
    }

    #[test]
    fn sign_verify_and_tamper() {
        let mut rng = Rng::seed_from_u64(1);
        let id = Identity::generate(&mut rng);
        let name = Name::parse("alice").unwrap();
        let w = SignedWrite::sign(&id, name.clone(), Some(addr_of(&id, 1000)), 5);
        w.verify().unwrap();
        let mut t = w.clone();
        t.timestamp_ms = 6;
        assert_eq!(t.verify(), Err(RecordError::BadSignature));
        let mut t = w.clone();
        t.name = Name::parse("alicf").unwrap();
        assert_eq!(t.verify(), Err(RecordError::BadSignature));
        let mut t = w.clone();
        t.addr = None; // a record's signature does not make a deletion
        assert_eq!(t.verify(), Err(RecordError::BadSignature));
        let other = Identity::generate(&mut rng);
        let stolen = SignedWrite::sign(&other, name, Some(addr_of(&id, 1000)), 7);
        assert!(matches!(
            stolen.verify(),
            Err(RecordError::KeyMismatch { .. })
        ));
    }
}
