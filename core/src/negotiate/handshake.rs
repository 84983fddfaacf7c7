//! The HELLO both ends exchange first on every new connection, whatever the strategy, so a
//! stray or hostile connection is never taken for the peer.
//!
//! ```text
//! "P2PD" | version (1) = 1 | role (1) | attempt id (8) | initiator key (32) | responder key (32)
//!        | ed25519 signature (64) by the sender's key over "p2pd hello v1" | the 78 bytes before
//! ```
//!
//! The signature binds the attempt id (random, shared only over the sealed signaling
//! channel), both long-term keys and the sender's role: a HELLO from another attempt, for
//! another pair of nodes, signed by anyone but the expected peer, or reflected back at its
//! sender (wrong role) is refused. On TCP a [`route_preamble`] comes first, so the accepting
//! driver can find the attempt a connection belongs to ([`route_tcp`]).

use super::message::AttemptId;
use crate::identity::{Identity, PUBLIC_KEY_LEN, PublicKey, SIGNATURE_LEN};

const MAGIC: &[u8; 4] = b"P2PD";
const VERSION: u8 = 1;
const CONTEXT: &[u8] = b"p2pd hello v1";
const SIGNED_LEN: usize = 4 + 1 + 1 + 8 + 2 * PUBLIC_KEY_LEN;
/// The length of a HELLO.
pub const HELLO_LEN: usize = SIGNED_LEN + SIGNATURE_LEN;

/// Which side of the negotiation (not of the TCP connect) a HELLO comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The node that called connect.
    Initiator,
    /// The node that accepted the Offer.
    Responder,
}

impl Role {
    /// The other side.
    pub fn peer(self) -> Role {
        match self {
            Role::Initiator => Role::Responder,
            Role::Responder => Role::Initiator,
        }
    }

    fn code(self) -> u8 {
        match self {
            Role::Initiator => 0,
            Role::Responder => 1,
        }
    }
}

/// Why a HELLO was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Not a p2pd HELLO at all.
    #[error("the connection did not start with a p2pd handshake: not a p2pd peer")]
    NotHello,
    /// A HELLO of another version.
    #[error("handshake version {0}: upgrade p2pd to talk to this peer")]
    Version(u8),
    /// Another attempt, another pair of keys or the wrong role.
    #[error("handshake for another connection attempt or another pair of nodes")]
    Mismatch,
    /// The signature does not verify with the expected peer's key.
    #[error("handshake signature invalid: the other end is not the expected peer")]
    BadSignature,
}

/// The HELLO `identity` sends as `role` in `attempt` between `initiator` and `responder`.
pub fn hello(
    identity: &Identity,
    role: Role,
    attempt: AttemptId,
    initiator: &PublicKey,
    responder: &PublicKey,
) -> [u8; HELLO_LEN] {
    let mut out = [0u8; HELLO_LEN];
    out[..4].copy_from_slice(MAGIC);
    out[4] = VERSION;
    out[5] = role.code();
    out[6..14].copy_from_slice(&attempt.0.to_be_bytes());
    out[14..14 + PUBLIC_KEY_LEN].copy_from_slice(&initiator.to_bytes());
    out[14 + PUBLIC_KEY_LEN..SIGNED_LEN].copy_from_slice(&responder.to_bytes());
    let sig = identity.sign(&signed(&out[..SIGNED_LEN]));
    out[SIGNED_LEN..].copy_from_slice(&sig);
    out
}

fn signed(head: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + head.len());
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(head);
    m
}

/// Checks a HELLO that must come from `sender` (the peer, whose key is one of
/// `initiator`/`responder` per its role) for `attempt`.
pub fn verify(
    bytes: &[u8; HELLO_LEN],
    sender: Role,
    attempt: AttemptId,
    initiator: &PublicKey,
    responder: &PublicKey,
) -> Result<(), HandshakeError> {
    if &bytes[..4] != MAGIC {
        return Err(HandshakeError::NotHello);
    }
    if bytes[4] != VERSION {
        return Err(HandshakeError::Version(bytes[4]));
    }
    let expected = hello_head(sender, attempt, initiator, responder);
    if bytes[..SIGNED_LEN] != expected[..] {
        return Err(HandshakeError::Mismatch);
    }
    let key = match sender {
        Role::Initiator => initiator,
        Role::Responder => responder,
    };
    let mut sig = [0u8; SIGNATURE_LEN];
    sig.copy_from_slice(&bytes[SIGNED_LEN..]);
    key.verify(&signed(&bytes[..SIGNED_LEN]), &sig)
        .map_err(|_| HandshakeError::BadSignature)
}

fn hello_head(
    role: Role,
    attempt: AttemptId,
    initiator: &PublicKey,
    responder: &PublicKey,
) -> [u8; SIGNED_LEN] {
    let mut out = [0u8; SIGNED_LEN];
    out[..4].copy_from_slice(MAGIC);
    out[4] = VERSION;
    out[5] = role.code();
    out[6..14].copy_from_slice(&attempt.0.to_be_bytes());
    out[14..14 + PUBLIC_KEY_LEN].copy_from_slice(&initiator.to_bytes());
    out[14 + PUBLIC_KEY_LEN..].copy_from_slice(&responder.to_bytes());
    out
}

const ROUTE_MAGIC: &[u8; 4] = b"P2PR";
/// The length of the routing preamble every TCP path starts with.
pub const ROUTE_LEN: usize = 14;

/// The preamble both ends write first on every TCP connection of `attempt`: it lets the
/// accepting driver find the negotiator the connection belongs to before anyone speaks
/// the (signed) HELLO. It proves nothing; the HELLO does.
///
/// ```text
/// "P2PR" | version (1) = 1 | reserved (1) = 0 | attempt id (8)
/// ```
pub fn route_preamble(attempt: AttemptId) -> [u8; ROUTE_LEN] {
    let mut out = [0u8; ROUTE_LEN];
    out[..4].copy_from_slice(ROUTE_MAGIC);
    out[4] = VERSION;
    out[6..].copy_from_slice(&attempt.0.to_be_bytes());
    out
}

/// For a driver routing an accepted TCP connection: the attempt named by its first bytes
/// (the preamble). `Ok(None)` means more bytes are needed (read at most [`ROUTE_LEN`]);
/// an error means the connection is not a p2pd path and should be closed.
pub fn route_tcp(first: &[u8]) -> Result<Option<AttemptId>, HandshakeError> {
    let n = first.len().min(4);
    if first[..n] != ROUTE_MAGIC[..n] {
        return Err(HandshakeError::NotHello);
    }
    if first.len() > 4 && first[4] != VERSION {
        return Err(HandshakeError::Version(first[4]));
    }
    if first.len() > 5 && first[5] != 0 {
        return Err(HandshakeError::NotHello);
    }
    if first.len() < ROUTE_LEN {
        return Ok(None);
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&first[6..ROUTE_LEN]);
    Ok(Some(AttemptId(u64::from_be_bytes(a))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn hello_verifies_only_for_its_attempt_keys_and_role() {
        let mut rng = Rng::seed_from_u64(1);
        let a = Identity::generate(&mut rng);
        let b = Identity::generate(&mut rng);
        let m = Identity::generate(&mut rng);
        let (ka, kb, km) = (a.public(), b.public(), m.public());
        let t = AttemptId(77);
        let h = hello(&a, Role::Initiator, t, &ka, &kb);
        assert_eq!(verify(&h, Role::Initiator, t, &ka, &kb), Ok(()));
        let r = route_preamble(t);
        assert_eq!(route_tcp(&r), Ok(Some(t)));
        assert_eq!(route_tcp(&r[..3]), Ok(None));
        assert_eq!(route_tcp(&h), Err(HandshakeError::NotHello));
        assert_eq!(route_tcp(b"GET / HTTP/1.1"), Err(HandshakeError::NotHello));
        // Another attempt, another pair, reflected role.
        assert_eq!(
            verify(&h, Role::Initiator, AttemptId(78), &ka, &kb),
            Err(HandshakeError::Mismatch)
        );
        assert_eq!(
            verify(&h, Role::Initiator, t, &ka, &km),
            Err(HandshakeError::Mismatch)
        );
        assert_eq!(
            verify(&h, Role::Responder, t, &ka, &kb),
            Err(HandshakeError::Mismatch)
        );
        // A HELLO signed by a third key claiming to be a.
        let forged = hello(&m, Role::Initiator, t, &ka, &kb);
        assert_eq!(
            verify(&forged, Role::Initiator, t, &ka, &kb),
            Err(HandshakeError::BadSignature)
        );
        // Every bit matters.
        for i in 0..HELLO_LEN * 8 {
            let mut x = h;
            x[i / 8] ^= 1 << (i % 8);
            assert!(verify(&x, Role::Initiator, t, &ka, &kb).is_err(), "bit {i}");
        }
    }
}
