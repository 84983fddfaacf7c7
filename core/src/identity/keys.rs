//! The key pair: [`Identity`] (secret) and [`PublicKey`].

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::node_id::NodeId;
use crate::rng::Rng;

/// Bytes in a public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Bytes in the secret seed an identity is stored as.
pub const SECRET_LEN: usize = 32;
/// Bytes in a signature.
pub const SIGNATURE_LEN: usize = 64;

/// Why bytes are not a usable key or signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The bytes are not a point on the curve, or a weak (small-order) one.
    #[error("not a valid ed25519 public key: the bytes are not a usable curve point")]
    BadPublicKey,
    /// The signature does not verify under the key.
    #[error("bad signature: the data was not signed by this key, or was altered")]
    BadSignature,
}

/// A node's secret key. `Debug` never prints the secret.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
}

impl Identity {
    /// A fresh identity drawn from `rng` (seed the `Rng` from the OS for real keys).
    pub fn generate(rng: &mut Rng) -> Self {
        let mut seed = [0u8; SECRET_LEN];
        rng.fill(&mut seed);
        Self::from_secret(seed)
    }

    /// The identity stored as `seed` (what [`secret`](Self::secret) returned).
    pub fn from_secret(seed: [u8; SECRET_LEN]) -> Self {
        Identity {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The 32-byte seed to store. Keep it secret: it is the node.
    pub fn secret(&self) -> [u8; SECRET_LEN] {
        self.signing.to_bytes()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }

    /// The node id (derived from the public key).
    pub fn node_id(&self) -> NodeId {
        self.public().node_id()
    }

    /// An ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.signing.sign(message).to_bytes()
    }

    /// The X25519 secret scalar bytes of this key pair (RFC 7748 clamping is applied by
    /// the multiplication). Used to open messages encrypted to [`PublicKey::x25519`].
    pub(crate) fn x25519_secret(&self) -> [u8; 32] {
        self.signing.to_scalar_bytes()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

/// A node's public key: what an address carries and what verifies its signatures.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// The key in `bytes`; refuses points off the curve and weak (small-order) keys,
    /// which would let anyone forge signatures or force a known shared secret.
    pub fn from_bytes(bytes: &[u8; PUBLIC_KEY_LEN]) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::BadPublicKey)?;
        if key.is_weak() {
            return Err(KeyError::BadPublicKey);
        }
        Ok(PublicKey(key))
    }

    /// The 32 bytes (RFC 8032 encoding).
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.0.to_bytes()
    }

    /// The node id this key names.
    pub fn node_id(&self) -> NodeId {
        NodeId::of(self)
    }

    /// Checks an ed25519 signature strictly (RFC 8032 §5.1.7 plus the checks that stop
    /// signature malleability).
    pub fn verify(&self, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> Result<(), KeyError> {
        let sig = Signature::from_bytes(signature);
        self.0
            .verify_strict(message, &sig)
            .map_err(|_| KeyError::BadSignature)
    }

    /// The key's X25519 (Montgomery) form, to encrypt to (RFC 7748).
    pub(crate) fn x25519(&self) -> [u8; 32] {
        self.0.to_montgomery().to_bytes()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.node_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_store() {
        let mut rng = Rng::seed_from_u64(1);
        let id = Identity::generate(&mut rng);
        let sig = id.sign(b"hello");
        id.public().verify(b"hello", &sig).unwrap();
        assert_eq!(
            id.public().verify(b"hellO", &sig),
            Err(KeyError::BadSignature)
        );
        let again = Identity::from_secret(id.secret());
        assert_eq!(again.public(), id.public());
        let other = Identity::generate(&mut rng);
        assert_ne!(other.node_id(), id.node_id());
        assert_eq!(
            other.public().verify(b"hello", &sig),
            Err(KeyError::BadSignature)
        );
        assert!(!format!("{id:?}").contains(&format!("{:?}", id.secret())));
    }

    #[test]
    fn public_key_bytes() {
        let id = Identity::generate(&mut Rng::seed_from_u64(2));
        let pk = id.public();
        assert_eq!(PublicKey::from_bytes(&pk.to_bytes()), Ok(pk));
        // The identity point is small-order: refused.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        assert_eq!(PublicKey::from_bytes(&weak), Err(KeyError::BadPublicKey));
    }

    #[test]
    fn x25519_forms_agree() {
        use curve25519_dalek::MontgomeryPoint;
        let id = Identity::generate(&mut Rng::seed_from_u64(3));
        let derived = MontgomeryPoint::mul_base_clamped(id.x25519_secret()).to_bytes();
        assert_eq!(derived, id.public().x25519());
    }
}
