//! What a name server keeps per name, and the storage it keeps it in ([`NameStore`]).
//!
//! The server logic ([`super::server`]) is written against the trait; the daemon backs it
//! with an embedded database, tests and the simulator with [`MemoryStore`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::name::Name;
use super::record::SignedWrite;
use super::wire::WireError;

/// Who holds a name, for the per-address limits: the writer's IPv4 address, or the /64
/// of its IPv6 address (one IPv6 host usually owns a whole /64, so counting /128s would
/// be no limit at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Holder {
    /// An IPv4 address.
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6([u8; 8]),
}

impl Holder {
    /// The holder for a request from `ip` (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Holder::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Holder::V4(v4.octets()),
                None => {
                    let mut p = [0u8; 8];
                    p.copy_from_slice(&v6.octets()[..8]);
                    Holder::V6(p)
                }
            },
        }
    }

    /// A compact key: tag `4` + 4 bytes or tag `6` + 8 bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Holder::V4(a) => [&[4u8][..], a].concat(),
            Holder::V6(p) => [&[6u8][..], p].concat(),
        }
    }

    fn parse(bytes: &[u8]) -> Option<(Self, &[u8])> {
        match bytes.split_first()? {
            (4, rest) if rest.len() >= 4 => {
                let mut a = [0u8; 4];
                a.copy_from_slice(&rest[..4]);
                Some((Holder::V4(a), &rest[4..]))
            }
            (6, rest) if rest.len() >= 8 => {
                let mut p = [0u8; 8];
                p.copy_from_slice(&rest[..8]);
                Some((Holder::V6(p), &rest[8..]))
            }
            _ => None,
        }
    }
}

/// One name as stored: the last accepted write (a record, or a deletion kept as a
/// tombstone so an old write cannot be replayed over it), who wrote it and when, by the
/// server's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredName {
    /// The last accepted write, signature included.
    pub write: SignedWrite,
    /// The writer's address (a tombstone keeps the last holder but counts for nobody).
    pub holder: Holder,
    /// When the server accepted it (ms since the Unix epoch, server clock): the name
    /// expires a fixed time after this unless written again.
    pub written_at_ms: u64,
}

impl StoredName {
    /// Whether this is a live record (not a deletion).
    pub fn is_live(&self) -> bool {
        !self.write.is_delete()
    }

    /// The value bytes a database keeps: holder, write time, then the write in its wire
    /// form (a put or delete request body preceded by a flag byte).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.holder.to_bytes();
        out.extend_from_slice(&self.written_at_ms.to_be_bytes());
        out.push(u8::from(self.is_live()));
        let req = super::wire::Request {
            id: 0,
            cookie: None,
            body: super::wire::RequestBody::Write(Box::new(self.write.clone())),
        }
        .to_bytes();
        out.extend_from_slice(&req);
        out
    }

    /// Parses [`StoredName::to_bytes`]. The signature is not checked again here (that
    /// costs more than the database lookup): the server checked it before storing, and
    /// every reader checks it on receipt, so a damaged or edited database still cannot
    /// make a client accept a record its owner never signed.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StoreError> {
        let bad = |why: &str| StoreError(format!("stored name is damaged: {why}"));
        let (holder, rest) = Holder::parse(bytes).ok_or_else(|| bad("holder"))?;
        if rest.len() < 9 {
            return Err(bad("truncated"));
        }
        let mut t = [0u8; 8];
        t.copy_from_slice(&rest[..8]);
        let live = rest[8] == 1;
        let req =
            super::wire::Request::parse(&rest[9..]).map_err(|e: WireError| bad(&e.to_string()))?;
        let super::wire::RequestBody::Write(write) = req.body else {
            return Err(bad("not a write"));
        };
        if write.is_delete() == live {
            return Err(bad("live flag disagrees with the write"));
        }
        Ok(StoredName {
            write: *write,
            holder,
            written_at_ms: u64::from_be_bytes(t),
        })
    }
}

/// A storage failure, with the backend's explanation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("name store: {0}")]
pub struct StoreError(pub String);

/// Durable storage for a name server.
///
/// **Contract:** when [`flush`](NameStore::flush) returns `Ok`, every change made before
/// it is on stable storage (it survives a crash or power loss); reads see changes at once.
/// The server acknowledges a write only after a flush that followed it. A backend whose
/// `put` and `remove` are durable on their own may keep the default `flush`.
pub trait NameStore {
    /// The entry for `name`, if any (live or tombstone, expired or not).
    fn get(&self, name: &Name) -> Result<Option<StoredName>, StoreError>;
    /// How many live names `holder` holds.
    fn held_by(&self, holder: &Holder) -> Result<u64, StoreError>;
    /// How many entries (live and tombstones) are stored.
    fn len(&self) -> Result<u64, StoreError>;
    /// Whether nothing is stored.
    fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }
    /// Stores `entry` under its name, replacing what was there (durable after `flush`).
    fn put(&mut self, entry: StoredName) -> Result<(), StoreError>;
    /// Removes `name` (durable after `flush`).
    fn remove(&mut self, name: &Name) -> Result<(), StoreError>;
    /// Removes every one of `names` (a backend may do it in one transaction).
    fn remove_many(&mut self, names: &[Name]) -> Result<(), StoreError> {
        names.iter().try_for_each(|n| self.remove(n))
    }
    /// Makes every earlier change durable (see the trait's contract).
    fn flush(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Up to `limit` names whose entries were written before `before_ms`.
    fn written_before(&self, before_ms: u64, limit: usize) -> Result<Vec<Name>, StoreError>;
}

/// A [`NameStore`] in memory, for tests and the simulator (not durable).
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    names: BTreeMap<Name, StoredName>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl NameStore for MemoryStore {
    fn get(&self, name: &Name) -> Result<Option<StoredName>, StoreError> {
        Ok(self.names.get(name).cloned())
    }
    fn held_by(&self, holder: &Holder) -> Result<u64, StoreError> {
        Ok(self
            .names
            .values()
            .filter(|e| e.is_live() && e.holder == *holder)
            .count() as u64)
    }
    fn len(&self) -> Result<u64, StoreError> {
        Ok(self.names.len() as u64)
    }
    fn put(&mut self, entry: StoredName) -> Result<(), StoreError> {
        self.names.insert(entry.write.name.clone(), entry);
        Ok(())
    }
    fn remove(&mut self, name: &Name) -> Result<(), StoreError> {
        self.names.remove(name);
        Ok(())
    }
    fn written_before(&self, before_ms: u64, limit: usize) -> Result<Vec<Name>, StoreError> {
        Ok(self
            .names
            .values()
            .filter(|e| e.written_at_ms < before_ms)
            .take(limit)
            .map(|e| e.write.name.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::names::record::tests::addr_of;
    use crate::rng::Rng;

    #[test]
    fn holders() {
        assert_eq!(
            Holder::of("192.0.2.1".parse().unwrap()),
            Holder::V4([192, 0, 2, 1])
        );
        assert_eq!(
            Holder::of("::ffff:192.0.2.1".parse().unwrap()),
            Holder::V4([192, 0, 2, 1])
        );
        assert_eq!(
            Holder::of("2001:db8:1:2:aaaa::1".parse().unwrap()),
            Holder::of("2001:db8:1:2:bbbb::9".parse().unwrap())
        );
        assert_ne!(
            Holder::of("2001:db8:1:2::1".parse().unwrap()),
            Holder::of("2001:db8:1:3::1".parse().unwrap())
        );
    }

    #[test]
    fn stored_name_round_trip_and_damage() {
        let id = Identity::generate(&mut Rng::seed_from_u64(5));
        let name = Name::parse("erin").unwrap();
        for write in [
            SignedWrite::sign(&id, name.clone(), Some(addr_of(&id, 9)), 3),
            SignedWrite::sign(&id, name.clone(), None, 4),
        ] {
            let e = StoredName {
                write,
                holder: Holder::V6([1; 8]),
                written_at_ms: 99,
            };
            let bytes = e.to_bytes();
            assert_eq!(StoredName::from_bytes(&bytes), Ok(e));
            for n in 0..bytes.len() {
                assert!(StoredName::from_bytes(&bytes[..n]).is_err());
            }
            let mut flipped = bytes.clone();
            let last = flipped.len() - 1;
            flipped[last] ^= 1;
            let damaged = StoredName::from_bytes(&flipped).unwrap();
            assert!(damaged.write.verify().is_err());
            flipped[17] ^= 1; // the live flag (after a 9-byte holder and the time)
            assert!(StoredName::from_bytes(&flipped).is_err());
        }
    }
}
