//! The name server's durable store: [`NameStore`] on redb, an embedded, crash-safe
//! (copy-on-write B-tree, checksummed commits) key-value database in one file.
//!
//! Every `put`/`remove` is its own transaction, committed with `Durability::None` (no
//! disk sync yet); [`NameStore::flush`] commits an empty transaction with
//! `Durability::Immediate`, which returns only after everything committed before it is
//! fsynced (redb persists non-durable commits with the next durable one, and after a
//! crash reopens at the last durable commit). The server flushes after each batch of
//! requests and releases acknowledgements only after the flush returned (group commit:
//! one sync for many writes). So an acknowledged record survives the process being
//! killed and the machine losing power; an unacknowledged one may or may not be there,
//! which the client's retransmission makes harmless.
//!
//! Tables: `names` (name → [`StoredName::to_bytes`]), `holders` (holder key → number of
//! live names) and `by_time` (write time ‖ name, for the expiry sweep), updated in the
//! same transaction so counts and index never drift from the records.

use std::fmt::Display;
use std::path::Path;

use p2pd_core::names::{Holder, Name, NameStore, StoreError, StoredName};
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};

const NAMES: TableDefinition<&str, &[u8]> = TableDefinition::new("names");
const HOLDERS: TableDefinition<&[u8], u64> = TableDefinition::new("holders");
const BY_TIME: TableDefinition<&[u8], ()> = TableDefinition::new("by_time");

fn time_key(written_at_ms: u64, name: &Name) -> Vec<u8> {
    [&written_at_ms.to_be_bytes()[..], name.as_str().as_bytes()].concat()
}

fn se(e: impl Display) -> StoreError {
    StoreError(e.to_string())
}

/// A [`NameStore`] in a redb file.
pub struct RedbStore {
    db: Database,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedbStore")
    }
}

impl RedbStore {
    /// Opens (or creates) the database at `path`; redb recovers from an interrupted
    /// commit on open.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
        }
        let db = Database::create(path)
            .map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))?;
        let mut tx = db.begin_write().map_err(se)?;
        tx.set_durability(Durability::Immediate);
        tx.open_table(NAMES).map_err(se)?;
        tx.open_table(HOLDERS).map_err(se)?;
        tx.open_table(BY_TIME).map_err(se)?;
        tx.commit().map_err(se)?;
        Ok(RedbStore { db })
    }

    /// Writes `entry` (or removes `name` when `entry` is `None`) and keeps the holder
    /// counts in step, in one durable transaction.
    fn change(&mut self, name: &Name, entry: Option<&StoredName>) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(se)?;
        tx.set_durability(Durability::None);
        Self::change_in(&tx, name, entry)?;
        tx.commit().map_err(se)
    }

    fn change_in(
        tx: &redb::WriteTransaction,
        name: &Name,
        entry: Option<&StoredName>,
    ) -> Result<(), StoreError> {
        {
            let mut names = tx.open_table(NAMES).map_err(se)?;
            let mut holders = tx.open_table(HOLDERS).map_err(se)?;
            let mut by_time = tx.open_table(BY_TIME).map_err(se)?;
            let old = match names.get(name.as_str()).map_err(se)? {
                Some(v) => Some(StoredName::from_bytes(v.value())?),
                None => None,
            };
            if let Some(old) = &old {
                by_time
                    .remove(time_key(old.written_at_ms, name).as_slice())
                    .map_err(se)?;
            }
            if let Some(old) = old.filter(StoredName::is_live) {
                let key = old.holder.to_bytes();
                let n = holders
                    .get(key.as_slice())
                    .map_err(se)?
                    .map_or(0, |v| v.value());
                if n <= 1 {
                    holders.remove(key.as_slice()).map_err(se)?;
                } else {
                    holders.insert(key.as_slice(), n - 1).map_err(se)?;
                }
            }
            match entry {
                Some(e) => {
                    names
                        .insert(name.as_str(), e.to_bytes().as_slice())
                        .map_err(se)?;
                    by_time
                        .insert(time_key(e.written_at_ms, name).as_slice(), ())
                        .map_err(se)?;
                    if e.is_live() {
                        let key = e.holder.to_bytes();
                        let n = holders
                            .get(key.as_slice())
                            .map_err(se)?
                            .map_or(0, |v| v.value());
                        holders.insert(key.as_slice(), n + 1).map_err(se)?;
                    }
                }
                None => {
                    names.remove(name.as_str()).map_err(se)?;
                }
            }
        }
        Ok(())
    }
}

impl NameStore for RedbStore {
    fn get(&self, name: &Name) -> Result<Option<StoredName>, StoreError> {
        let tx = self.db.begin_read().map_err(se)?;
        let names = tx.open_table(NAMES).map_err(se)?;
        match names.get(name.as_str()).map_err(se)? {
            Some(v) => StoredName::from_bytes(v.value()).map(Some),
            None => Ok(None),
        }
    }

    fn held_by(&self, holder: &Holder) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(se)?;
        let holders = tx.open_table(HOLDERS).map_err(se)?;
        Ok(holders
            .get(holder.to_bytes().as_slice())
            .map_err(se)?
            .map_or(0, |v| v.value()))
    }

    fn len(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(se)?;
        tx.open_table(NAMES).map_err(se)?.len().map_err(se)
    }

    fn put(&mut self, entry: StoredName) -> Result<(), StoreError> {
        let name = entry.write.name.clone();
        self.change(&name, Some(&entry))
    }

    fn remove(&mut self, name: &Name) -> Result<(), StoreError> {
        self.change(name, None)
    }

    fn remove_many(&mut self, names: &[Name]) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(se)?;
        tx.set_durability(Durability::None);
        for n in names {
            Self::change_in(&tx, n, None)?;
        }
        tx.commit().map_err(se)
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(se)?;
        tx.set_durability(Durability::Immediate);
        tx.commit().map_err(se)
    }

    fn written_before(&self, before_ms: u64, limit: usize) -> Result<Vec<Name>, StoreError> {
        let tx = self.db.begin_read().map_err(se)?;
        let by_time = tx.open_table(BY_TIME).map_err(se)?;
        let end = before_ms.to_be_bytes();
        let mut out = Vec::new();
        // Oldest first, at most `limit`: the sweep's cost is bounded whatever the table size.
        for item in by_time.range(..&end[..]).map_err(se)?.take(limit) {
            let (k, _) = item.map_err(se)?;
            let key = k.value();
            let name = std::str::from_utf8(key.get(8..).unwrap_or_default())
                .ok()
                .and_then(|t| Name::parse(t).ok())
                .ok_or_else(|| StoreError("damaged expiry index entry".into()))?;
            out.push(name);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pd_core::addr::{Interface, NodeAddr, Route};
    use p2pd_core::identity::Identity;
    use p2pd_core::names::SignedWrite;
    use p2pd_core::nat::{Delta, DeltaKind, NatType};
    use p2pd_core::rng::Rng;

    pub(super) fn addr(id: &Identity) -> NodeAddr {
        let r = Route {
            external: "203.0.113.1".parse().unwrap(),
            internal: "10.0.0.1".parse().unwrap(),
            port: 1,
            nat: NatType::OpenInternet,
            delta: Delta {
                kind: DeltaKind::Equal,
                value: 0,
            },
        };
        NodeAddr::new(
            id.public(),
            vec![],
            vec![Interface {
                v4: Some(r),
                v6: None,
            }],
        )
        .unwrap()
    }

    #[test]
    fn counts_follow_records_and_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("p2pd-redb-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("names.redb");
        let id = Identity::generate(&mut Rng::seed_from_u64(1));
        let h1 = Holder::V4([192, 0, 2, 1]);
        let h2 = Holder::V4([192, 0, 2, 2]);
        let n = Name::parse("alice").unwrap();
        let live = |h, ts| StoredName {
            write: SignedWrite::sign(&id, n.clone(), Some(addr(&id)), ts),
            holder: h,
            written_at_ms: ts,
        };
        {
            let mut s = RedbStore::open(&path).unwrap();
            s.put(live(h1, 1)).unwrap();
            assert_eq!(s.held_by(&h1).unwrap(), 1);
            s.put(live(h2, 2)).unwrap(); // moved to another address
            assert_eq!((s.held_by(&h1).unwrap(), s.held_by(&h2).unwrap()), (0, 1));
            s.flush().unwrap();
        }
        let mut s = RedbStore::open(&path).unwrap();
        assert_eq!(s.get(&n).unwrap(), Some(live(h2, 2)));
        let tomb = StoredName {
            write: SignedWrite::sign(&id, n.clone(), None, 3),
            holder: h2,
            written_at_ms: 3,
        };
        s.put(tomb).unwrap();
        assert_eq!((s.held_by(&h2).unwrap(), s.len().unwrap()), (0, 1));
        assert_eq!(s.written_before(4, 10).unwrap(), vec![n.clone()]);
        assert!(s.written_before(3, 10).unwrap().is_empty());
        s.remove_many(std::slice::from_ref(&n)).unwrap();
        assert!(s.is_empty().unwrap());
        assert!(s.written_before(u64::MAX, 10).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod bench {
    use super::*;
    use p2pd_core::identity::Identity;
    use p2pd_core::names::SignedWrite;
    use p2pd_core::rng::Rng;

    /// `cargo test -p p2pd --release name_store::bench -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn durable_put_latency() {
        let dir = std::env::temp_dir().join(format!("p2pd-redb-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = RedbStore::open(&dir.join("b.redb")).unwrap();
        let id = Identity::generate(&mut Rng::seed_from_u64(1));
        let addr = super::tests::addr(&id);
        let n = 256u64;
        let entry = |i: u64| StoredName {
            write: SignedWrite::sign(
                &id,
                Name::parse(&format!("bench-{}", i % 50)).unwrap(),
                Some(addr.clone()),
                i,
            ),
            holder: Holder::V4([127, 0, 0, 1]),
            written_at_ms: i,
        };
        let entries: Vec<StoredName> = (0..2 * n).map(entry).collect();
        let mut entries = entries.into_iter();
        let t = std::time::Instant::now();
        for _ in 0..n {
            s.put(entries.next().unwrap()).unwrap();
            s.flush().unwrap();
        }
        let e = t.elapsed();
        eprintln!(
            "{n} puts, each flushed: {e:?}, {:.2} ms per durable write",
            e.as_secs_f64() * 1000.0 / n as f64
        );
        let t = std::time::Instant::now();
        for i in n..2 * n {
            s.put(entries.next().unwrap()).unwrap();
            if i % 64 == 63 {
                s.flush().unwrap();
            }
        }
        let e = t.elapsed();
        eprintln!(
            "{n} puts, flushed every 64: {e:?}, {:.2} ms per durable write",
            e.as_secs_f64() * 1000.0 / n as f64
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
