//! A bounded cache of message ids seen, each kept until its message expires.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use super::envelope::MessageId;
use super::error::SignalError;

/// Drops duplicates and replays with bounded memory.
///
/// Ids are kept until their message's expiry (after which the envelope itself is refused as
/// expired, so forgetting is safe). When the cache is full the entry expiring first is
/// evicted and its expiry becomes a floor: any later message expiring at or before the
/// floor is refused as a possible replay, because the cache can no longer tell. Memory is
/// `capacity` entries, whatever a flood sends.
#[derive(Debug, Clone)]
pub struct Dedupe {
    capacity: usize,
    seen: HashSet<MessageId>,
    by_expiry: BinaryHeap<Reverse<(u64, MessageId)>>,
    floor: u64,
}

impl Dedupe {
    /// A cache of at most `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> Self {
        Dedupe {
            capacity: capacity.max(1),
            seen: HashSet::new(),
            by_expiry: BinaryHeap::new(),
            floor: 0,
        }
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Records `id` (expiring at `expiry_ms`) as seen at `now_ms`; errors if it was seen
    /// before or cannot be told apart from a replay.
    pub fn insert(
        &mut self,
        id: MessageId,
        expiry_ms: u64,
        now_ms: u64,
    ) -> Result<(), SignalError> {
        while let Some(Reverse((exp, old))) = self.by_expiry.peek().copied() {
            if exp > now_ms {
                break;
            }
            self.by_expiry.pop();
            self.seen.remove(&old);
        }
        if self.seen.contains(&id) {
            return Err(SignalError::Duplicate);
        }
        if expiry_ms <= self.floor {
            return Err(SignalError::PossibleReplay);
        }
        if self.seen.len() >= self.capacity
            && let Some(Reverse((exp, old))) = self.by_expiry.pop()
        {
            self.seen.remove(&old);
            self.floor = self.floor.max(exp);
            if expiry_ms <= self.floor {
                return Err(SignalError::PossibleReplay);
            }
        }
        self.seen.insert(id);
        self.by_expiry.push(Reverse((expiry_ms, id)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> MessageId {
        MessageId([n; 16])
    }

    #[test]
    fn duplicates_and_expiry() {
        let mut d = Dedupe::new(10);
        d.insert(id(1), 100, 0).unwrap();
        assert_eq!(d.insert(id(1), 100, 50), Err(SignalError::Duplicate));
        // After expiry the id is forgotten (the envelope check refuses it by then).
        d.insert(id(2), 300, 150).unwrap();
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn full_cache_evicts_earliest_and_refuses_older() {
        let mut d = Dedupe::new(3);
        for n in 1..=3 {
            d.insert(id(n), 100 * u64::from(n), 0).unwrap();
        }
        d.insert(id(4), 400, 0).unwrap(); // evicts id 1 (expiry 100)
        assert_eq!(d.len(), 3);
        assert_eq!(d.insert(id(1), 100, 0), Err(SignalError::PossibleReplay));
        assert_eq!(d.insert(id(9), 50, 0), Err(SignalError::PossibleReplay));
        assert_eq!(d.insert(id(3), 300, 0), Err(SignalError::Duplicate));
        for n in 10..200 {
            let _ = d.insert(id(n), 1000 + u64::from(n), 0);
            assert!(d.len() <= 3);
        }
    }
}
