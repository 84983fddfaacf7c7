//! Credentials and the MESSAGE-INTEGRITY / MESSAGE-INTEGRITY-SHA256 HMACs
//! (RFC 8489 §9, §14.5, §14.6).

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::StunError;
use super::password::PasswordAlgorithmKind;

/// Length of the MESSAGE-INTEGRITY value (HMAC-SHA1).
pub const INTEGRITY_LEN: usize = 20;
/// Length of a full MESSAGE-INTEGRITY-SHA256 value (it may be truncated to 16..=32 bytes).
pub const INTEGRITY_SHA256_LEN: usize = 32;

/// A key for the STUN HMACs, with both HMAC states keyed once up front.
///
/// Keying an HMAC costs two hash blocks; doing it here, not per message, is what keeps
/// integrity checks close to the cost of the bare hash over the message.
#[derive(Clone)]
pub struct IntegrityKey {
    sha1: Hmac<Sha1>,
    sha256: Hmac<Sha256>,
}

impl std::fmt::Debug for IntegrityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IntegrityKey(..)")
    }
}

fn prep(s: &str) -> Result<std::borrow::Cow<'_, str>, StunError> {
    stringprep::saslprep(s).map_err(|_| StunError::BadCredentials)
}

impl IntegrityKey {
    /// A key from raw bytes (already derived).
    pub fn from_bytes(key: &[u8]) -> Self {
        // HMAC accepts keys of any length; these constructors cannot fail.
        let sha1 = <Hmac<Sha1> as KeyInit>::new_from_slice(key);
        let sha256 = <Hmac<Sha256> as KeyInit>::new_from_slice(key);
        match (sha1, sha256) {
            (Ok(sha1), Ok(sha256)) => IntegrityKey { sha1, sha256 },
            // Unreachable for HMAC; keep a defined result rather than a panic.
            _ => Self::from_bytes(&[]),
        }
    }

    /// A short-term credential key: the password, prepared with SASLprep (RFC 8489 §9.1.1;
    /// SASLprep is RFC 5389's profile and gives the same result as OpaqueString for the
    /// characters either allows).
    pub fn short_term(password: &str) -> Result<Self, StunError> {
        Ok(Self::from_bytes(prep(password)?.as_bytes()))
    }

    /// A long-term credential key: `H(username ":" realm ":" password)` with the realm and
    /// password prepared with SASLprep and `H` chosen by the password algorithm
    /// (RFC 8489 §9.2.2). An unknown algorithm falls back to MD5, the RFC 5389 default.
    pub fn long_term(
        username: &str,
        realm: &str,
        password: &str,
        algorithm: PasswordAlgorithmKind,
    ) -> Result<Self, StunError> {
        let realm = prep(realm)?;
        let password = prep(password)?;
        let parts: [&[u8]; 5] = [
            username.as_bytes(),
            b":",
            realm.as_bytes(),
            b":",
            password.as_bytes(),
        ];
        Ok(match algorithm {
            PasswordAlgorithmKind::Sha256 => {
                let mut h = Sha256::new();
                parts.iter().for_each(|p| h.update(p));
                Self::from_bytes(&h.finalize())
            }
            _ => {
                let mut h = Md5::new();
                parts.iter().for_each(|p| h.update(p));
                Self::from_bytes(&h.finalize())
            }
        })
    }

    /// HMAC-SHA1 over the concatenation of `parts`.
    pub(crate) fn sha1(&self, parts: &[&[u8]]) -> [u8; INTEGRITY_LEN] {
        let mut mac = self.sha1.clone();
        parts.iter().for_each(|p| mac.update(p));
        mac.finalize().into_bytes().into()
    }

    /// HMAC-SHA256 over the concatenation of `parts`.
    pub(crate) fn sha256(&self, parts: &[&[u8]]) -> [u8; INTEGRITY_SHA256_LEN] {
        let mut mac = self.sha256.clone();
        parts.iter().for_each(|p| mac.update(p));
        mac.finalize().into_bytes().into()
    }
}

/// Compares a received MAC against the expected one (truncated to the received length)
/// in constant time.
pub(crate) fn check(expected: &[u8], received: &[u8]) -> Result<(), StunError> {
    match expected.get(..received.len()) {
        Some(e) if bool::from(e.ct_eq(received)) => Ok(()),
        _ => Err(StunError::IntegrityMismatch),
    }
}
