//! Birthday-paradox punching for a random-port symmetric NAT facing an
//! endpoint-independent-mapping one.
//!
//! The side behind the symmetric NAT opens `K` local sockets and sends one packet from
//! each to the peer's (stable) mapped address: its NAT creates `K` mappings on random
//! ports, each open to exactly that peer address. The EIM side sprays `M` probes from its
//! one socket to distinct random ports of the symmetric side's external IP. With `R` ports
//! in the range, a probe lands on one of the `K` open mappings with probability `K/R`, so
//! the chance that at least one of `M` probes hits is `1 − (1 − K/R)^M` (a little better
//! in truth, as the probed ports are distinct). With K = 256, R = 64 512, M = 1 000 at
//! 100 packets/s (10 s), that is ≈ 98 %.
//!
//! Any filtering on the EIM side works: it sent to the symmetric side's IP (address
//! filtering passes) and to the very port that hit (port filtering passes for the reply).

use std::time::{Duration, Instant};

use crate::rng::Rng;

use super::predict::PortRange;

/// The numbers of one birthday attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BirthdayPlan {
    /// Sockets (mappings) the symmetric side opens: `K`.
    pub sockets: u16,
    /// Probes the EIM side sends: `M`.
    pub probes: u32,
    /// The symmetric NAT's port range (`R` ports).
    pub range: PortRange,
    /// The packet-rate budget of either side, packets per second.
    pub rate: u32,
}

/// Why a plan is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BirthdayError {
    /// A zero socket count, probe count or rate, or an empty range.
    #[error("a birthday plan needs sockets, probes, a rate and a non-empty range")]
    Empty,
    /// More sockets or probes than the range has ports.
    #[error("more sockets or probes than ports in the range")]
    TooMany,
}

impl Default for BirthdayPlan {
    /// 256 sockets, 1 000 probes at 100 packets/s over 1024–65535.
    fn default() -> Self {
        BirthdayPlan {
            sockets: 256,
            probes: 1000,
            range: PortRange::default(),
            rate: 100,
        }
    }
}

impl BirthdayPlan {
    /// Checks the numbers.
    pub fn validate(&self) -> Result<(), BirthdayError> {
        if self.sockets == 0 || self.probes == 0 || self.rate == 0 || self.range.size() == 0 {
            return Err(BirthdayError::Empty);
        }
        if u32::from(self.sockets) > self.range.size() || self.probes > self.range.size() {
            return Err(BirthdayError::TooMany);
        }
        Ok(())
    }

    /// `1 − (1 − K/R)^M`: the chance at least one probe hits an open mapping.
    pub fn success_probability(&self) -> f64 {
        let r = f64::from(self.range.size().max(1));
        let k = f64::from(self.sockets).min(r);
        1.0 - (1.0 - k / r).powf(f64::from(self.probes))
    }

    /// The gap between two packets under the rate budget.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(1) / self.rate.max(1)
    }

    /// How long the spray takes: `M / rate`.
    pub fn duration(&self) -> Duration {
        self.interval() * self.probes
    }

    /// The instant of probe `i` when the spray starts at `start`.
    pub fn send_at(&self, start: Instant, i: u32) -> Instant {
        start + self.interval() * i
    }

    /// `M` distinct random ports of the range to spray, in order (a partial Fisher–Yates
    /// over the range, drawn from `rng`).
    pub fn targets(&self, rng: &mut Rng) -> Result<Vec<u16>, BirthdayError> {
        self.validate()?;
        let size = self.range.size();
        let m = self.probes;
        // Sparse Fisher–Yates: a swap map instead of a 64k-entry array.
        let mut swapped: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        let mut out = Vec::with_capacity(m as usize);
        for i in 0..m {
            let j = i + rng.below(u64::from(size - i)) as u32;
            let vj = *swapped.get(&j).unwrap_or(&j);
            let vi = *swapped.get(&i).unwrap_or(&i);
            swapped.insert(j, vi);
            let port = u32::from(self.range.lo) + vj;
            out.push(u16::try_from(port).map_err(|_| BirthdayError::TooMany)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probability_matches_the_formula() {
        let p = BirthdayPlan::default();
        let expect = 1.0 - (1.0 - 256.0 / 64512.0_f64).powi(1000);
        assert!((p.success_probability() - expect).abs() < 1e-12);
        assert!(p.success_probability() > 0.98 && p.success_probability() < 0.99);
        let half = BirthdayPlan { probes: 175, ..p };
        assert!((half.success_probability() - 0.5).abs() < 0.01);
        assert_eq!(p.interval(), Duration::from_millis(10));
        assert_eq!(p.duration(), Duration::from_secs(10));
    }

    #[test]
    fn targets_are_distinct_in_range_and_seeded() {
        let p = BirthdayPlan {
            probes: 256,
            ..BirthdayPlan::default()
        };
        let a = p.targets(&mut Rng::seed_from_u64(1)).expect("targets");
        let b = p.targets(&mut Rng::seed_from_u64(1)).expect("targets");
        let c = p.targets(&mut Rng::seed_from_u64(2)).expect("targets");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 256);
        let set: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(set.len(), 256);
        assert!(a.iter().all(|&x| x >= 1024));
        // The whole of a tiny range, each port once.
        let tiny = BirthdayPlan {
            sockets: 1,
            probes: 4,
            range: PortRange { lo: 10, hi: 13 },
            rate: 1,
        };
        let mut all = tiny.targets(&mut Rng::seed_from_u64(3)).expect("targets");
        all.sort_unstable();
        assert_eq!(all, vec![10, 11, 12, 13]);
    }

    #[test]
    fn rejects_bad_plans() {
        let p = BirthdayPlan::default();
        assert_eq!(
            BirthdayPlan { rate: 0, ..p }.validate(),
            Err(BirthdayError::Empty)
        );
        let tiny = BirthdayPlan {
            range: PortRange { lo: 1, hi: 10 },
            ..p
        };
        assert_eq!(tiny.validate(), Err(BirthdayError::TooMany));
    }
}
