//! Password algorithm negotiation and the anonymous USERHASH (RFC 8489 §14.4–14.6, §18.5).

use sha2::{Digest, Sha256};

use super::attr::{AttrType, Attribute, bad, be16};
use super::error::StunError;
use super::header::HeaderContext;

/// A password algorithm: how the long-term key is derived (RFC 8489 §18.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PasswordAlgorithmKind {
    /// key = MD5(username ":" realm ":" password), the RFC 5389 default.
    Md5,
    /// key = SHA-256(username ":" realm ":" password).
    Sha256,
    /// A value p2pd does not know.
    Unknown(u16),
}

impl PasswordAlgorithmKind {
    /// The registry number.
    pub fn to_u16(self) -> u16 {
        match self {
            PasswordAlgorithmKind::Md5 => 1,
            PasswordAlgorithmKind::Sha256 => 2,
            PasswordAlgorithmKind::Unknown(v) => v,
        }
    }

    /// From the registry number.
    pub fn from_u16(v: u16) -> Self {
        match v {
            1 => PasswordAlgorithmKind::Md5,
            2 => PasswordAlgorithmKind::Sha256,
            v => PasswordAlgorithmKind::Unknown(v),
        }
    }
}

/// PASSWORD-ALGORITHM: the algorithm the client chose (RFC 8489 §14.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PasswordAlgorithm<'a> {
    /// The algorithm.
    pub kind: PasswordAlgorithmKind,
    /// Its parameters (empty for MD5 and SHA-256).
    pub params: &'a [u8],
}

impl<'a> PasswordAlgorithm<'a> {
    /// An algorithm without parameters.
    pub fn new(kind: PasswordAlgorithmKind) -> Self {
        PasswordAlgorithm { kind, params: &[] }
    }

    /// Parses one entry at the start of `b`; returns it and the bytes it took (padded).
    fn parse_entry(b: &'a [u8]) -> Option<(Self, usize)> {
        let kind = PasswordAlgorithmKind::from_u16(be16(b, 0)?);
        let len = usize::from(be16(b, 2)?);
        let params = b.get(4..4 + len)?;
        Some((PasswordAlgorithm { kind, params }, 4 + ((len + 3) & !3)))
    }

    fn entry_len(&self) -> usize {
        4 + ((self.params.len() + 3) & !3)
    }

    fn write_entry(&self, out: &mut [u8]) {
        out[0..2].copy_from_slice(&self.kind.to_u16().to_be_bytes());
        out[2..4].copy_from_slice(&(self.params.len() as u16).to_be_bytes());
        out[4..4 + self.params.len()].copy_from_slice(self.params);
        out[4 + self.params.len()..].fill(0);
    }
}

impl<'a> Attribute<'a> for PasswordAlgorithm<'a> {
    const TYPE: AttrType = AttrType::PASSWORD_ALGORITHM;

    fn decode(value: &'a [u8], _ctx: &HeaderContext) -> Result<Self, StunError> {
        match PasswordAlgorithm::parse_entry(value) {
            Some((a, used)) if used >= value.len() => Ok(a),
            Some(_) => Err(bad::<Self>("trailing bytes after the algorithm")),
            None => Err(bad::<Self>("truncated")),
        }
    }

    fn encoded_len(&self) -> usize {
        4 + self.params.len()
    }

    fn encode(&self, out: &mut [u8], _ctx: &HeaderContext) {
        out[0..2].copy_from_slice(&self.kind.to_u16().to_be_bytes());
        out[2..4].copy_from_slice(&(self.params.len() as u16).to_be_bytes());
        out[4..].copy_from_slice(self.params);
    }
}

/// PASSWORD-ALGORITHMS: the algorithms a server offers, in its order of preference
/// (RFC 8489 §14.11).
///
/// Two values are equal when they offer the same algorithms in the same order, whether
/// decoded or built.
#[derive(Debug, Clone, Copy)]
pub struct PasswordAlgorithms<'a>(Repr<'a>);

impl PartialEq for PasswordAlgorithms<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for PasswordAlgorithms<'_> {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repr<'a> {
    Wire(&'a [u8]),
    List(&'a [PasswordAlgorithm<'a>]),
}

impl<'a> PasswordAlgorithms<'a> {
    /// The attribute from a list.
    pub fn new(list: &'a [PasswordAlgorithm<'a>]) -> Result<Self, StunError> {
        let len: usize = list.iter().map(PasswordAlgorithm::entry_len).sum();
        if len > 1024 || list.iter().any(|a| a.params.len() > 256) {
            return Err(StunError::ValueTooLong {
                typ: AttrType::PASSWORD_ALGORITHMS,
                len,
                max: 1024,
            });
        }
        Ok(PasswordAlgorithms(Repr::List(list)))
    }

    /// The offered algorithms.
    pub fn iter(&self) -> impl Iterator<Item = PasswordAlgorithm<'a>> + 'a {
        let (mut wire, list): (&'a [u8], &'a [PasswordAlgorithm<'a>]) = match self.0 {
            Repr::Wire(w) => (w, &[]),
            Repr::List(l) => (&[], l),
        };
        std::iter::from_fn(move || {
            let (a, used) = PasswordAlgorithm::parse_entry(wire)?;
            wire = wire.get(used..).unwrap_or(&[]);
            Some(a)
        })
        .chain(list.iter().copied())
    }
}

impl<'a> Attribute<'a> for PasswordAlgorithms<'a> {
    const TYPE: AttrType = AttrType::PASSWORD_ALGORITHMS;

    fn decode(value: &'a [u8], _ctx: &HeaderContext) -> Result<Self, StunError> {
        let mut rest = value;
        while !rest.is_empty() {
            let (_, used) = PasswordAlgorithm::parse_entry(rest)
                .ok_or_else(|| bad::<Self>("truncated algorithm entry"))?;
            rest = rest.get(used..).unwrap_or(&[]);
        }
        Ok(PasswordAlgorithms(Repr::Wire(value)))
    }

    fn encoded_len(&self) -> usize {
        match self.0 {
            Repr::Wire(w) => w.len(),
            Repr::List(l) => l.iter().map(PasswordAlgorithm::entry_len).sum(),
        }
    }

    fn encode(&self, out: &mut [u8], _ctx: &HeaderContext) {
        match self.0 {
            Repr::Wire(w) => out.copy_from_slice(w),
            Repr::List(l) => {
                let mut at = 0;
                for a in l {
                    let n = a.entry_len();
                    a.write_entry(&mut out[at..at + n]);
                    at += n;
                }
            }
        }
    }
}

/// USERHASH: SHA-256(username ":" realm), sent instead of USERNAME for anonymity
/// (RFC 8489 §14.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserHash(pub [u8; 32]);

impl UserHash {
    /// Computes the hash of a username in a realm.
    pub fn compute(username: &str, realm: &str) -> Self {
        let mut h = Sha256::new();
        h.update(username.as_bytes());
        h.update(b":");
        h.update(realm.as_bytes());
        UserHash(h.finalize().into())
    }
}

impl<'a> Attribute<'a> for UserHash {
    const TYPE: AttrType = AttrType::USERHASH;

    fn decode(value: &'a [u8], _ctx: &HeaderContext) -> Result<Self, StunError> {
        value
            .try_into()
            .map(UserHash)
            .map_err(|_| bad::<Self>("must be 32 bytes"))
    }

    fn encoded_len(&self) -> usize {
        32
    }

    fn encode(&self, out: &mut [u8], _ctx: &HeaderContext) {
        out.copy_from_slice(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::header::{MAGIC_COOKIE, TransactionId};

    #[test]
    fn password_algorithms_equality_ignores_representation() {
        let ctx = HeaderContext {
            cookie: MAGIC_COOKIE,
            transaction_id: TransactionId::new([0; 12]),
        };
        let list = [
            PasswordAlgorithm::new(PasswordAlgorithmKind::Sha256),
            PasswordAlgorithm {
                kind: PasswordAlgorithmKind::Unknown(9),
                params: &[1, 2, 3],
            },
        ];
        let built = PasswordAlgorithms::new(&list).unwrap();
        let mut buf = vec![0; built.encoded_len()];
        built.encode(&mut buf, &ctx);
        let decoded = PasswordAlgorithms::decode(&buf, &ctx).unwrap();
        assert_eq!(decoded, built);
        assert_eq!(
            PasswordAlgorithms::decode(&[], &ctx).unwrap(),
            PasswordAlgorithms::new(&[]).unwrap()
        );
        assert_ne!(decoded, PasswordAlgorithms::new(&list[..1]).unwrap());
    }
}
