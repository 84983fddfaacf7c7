//! Request rate limits per client address, in bounded memory.
//!
//! A token bucket per [`Holder`] (IPv4 address or IPv6 /64), kept in a fixed table of
//! slots indexed by a keyed hash of the holder. The table never grows: holders that hash
//! to the same slot share a bucket, which can only make the limit stricter for them,
//! never let anyone exceed it. The hash key is secret, so an attacker cannot aim
//! collisions at a chosen victim.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::store::Holder;
use crate::rng::Rng;

/// Token-bucket limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateConfig {
    /// Tokens a full bucket holds (the burst allowed).
    pub burst: u32,
    /// Tokens added per second.
    pub per_second: u32,
    /// Slots in the table (memory: 24 bytes each).
    pub slots: usize,
}

impl Default for RateConfig {
    /// A burst of 20, 2 per second, 4096 slots (96 KiB).
    fn default() -> Self {
        RateConfig {
            burst: 20,
            per_second: 2,
            slots: 4096,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Thousandths of a token.
    milli: u64,
    last: Option<Instant>,
}

/// The limiter. See the module docs.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    config: RateConfig,
    key: [u8; 16],
    slots: Vec<Slot>,
}

impl RateLimiter {
    /// A limiter whose hash key comes from `rng`.
    pub fn new(config: RateConfig, rng: &mut Rng) -> Self {
        let mut key = [0u8; 16];
        rng.fill(&mut key);
        let config = RateConfig {
            slots: config.slots.clamp(1, 1 << 20),
            ..config
        };
        RateLimiter {
            slots: vec![
                Slot {
                    milli: 0,
                    last: None
                };
                config.slots
            ],
            config,
            key,
        }
    }

    fn index(&self, holder: &Holder) -> usize {
        let d = Sha256::new()
            .chain_update(self.key)
            .chain_update(holder.to_bytes())
            .finalize();
        let mut x = [0u8; 8];
        x.copy_from_slice(&d[..8]);
        (u64::from_be_bytes(x) % self.slots.len() as u64) as usize
    }

    /// Takes `cost` tokens from `holder`'s bucket at `now`; `Err(wait)` says how long
    /// until they would be there.
    pub fn take(&mut self, now: Instant, holder: &Holder, cost: u32) -> Result<(), Duration> {
        let cap = u64::from(self.config.burst) * 1000;
        let rate = u64::from(self.config.per_second);
        let i = self.index(holder);
        let slot = &mut self.slots[i];
        let refill = match slot.last {
            None => cap,
            Some(last) => {
                let ms = now
                    .saturating_duration_since(last)
                    .as_millis()
                    .min(u128::from(u32::MAX)) as u64;
                ms.saturating_mul(rate)
            }
        };
        slot.milli = slot.milli.saturating_add(refill).min(cap);
        slot.last = Some(now);
        let need = u64::from(cost) * 1000;
        if slot.milli >= need {
            slot.milli -= need;
            Ok(())
        } else if rate == 0 {
            Err(Duration::from_secs(3600))
        } else {
            Err(Duration::from_millis((need - slot.milli).div_ceil(rate)))
        }
    }

    /// Bytes of memory the table uses (fixed at construction).
    pub fn memory(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let mut r = RateLimiter::new(
            RateConfig {
                burst: 3,
                per_second: 1,
                slots: 8,
            },
            &mut Rng::seed_from_u64(1),
        );
        let t = Instant::now();
        let h = Holder::V4([192, 0, 2, 1]);
        for _ in 0..3 {
            r.take(t, &h, 1).unwrap();
        }
        assert_eq!(r.take(t, &h, 1), Err(Duration::from_secs(1)));
        r.take(t + Duration::from_secs(1), &h, 1).unwrap();
        assert!(r.take(t + Duration::from_secs(1), &h, 1).is_err());
        // Many holders: the table stays the same size.
        let before = r.memory();
        for i in 0..10_000u32 {
            let _ = r.take(t, &Holder::V4(i.to_be_bytes()), 1);
        }
        assert_eq!(r.memory(), before);
    }
}
