//! Port prediction: where will a peer's NAT put its *next* mapping?
//!
//! P2PD (spec §3.4) tries only its first guess. Here every predictable delta kind yields an
//! ordered list of up to `n` candidates, most likely first:
//!
//! * `equal` — the external port is the local port the peer will use.
//! * `preserving` — local port + the offset (modulo 2^16, as the classifier reports it).
//! * `independent` — last external + d, + 2d, …: each later guess covers one more mapping
//!   the NAT handed out (to the peer or to anyone behind it) since the last observation.
//! * `dependent` — last external + (next local − last local)·d, then + d per extra
//!   mapping allocated meanwhile.
//! * `random` — nothing to predict ([`PredictError::Unpredictable`]): use
//!   [`super::birthday`] or a relay.
//!
//! All arithmetic wraps inside the NAT's port range, as real allocators do.

use crate::nat::{Delta, DeltaKind};

/// The external ports a NAT allocates from (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// The lowest port.
    pub lo: u16,
    /// The highest port.
    pub hi: u16,
}

impl Default for PortRange {
    /// The non-privileged ports, 1024–65535 (what most NATs use).
    fn default() -> Self {
        PortRange {
            lo: 1024,
            hi: 65535,
        }
    }
}

impl PortRange {
    /// How many ports the range holds (0 when `lo > hi`).
    pub fn size(self) -> u32 {
        if self.lo > self.hi {
            0
        } else {
            u32::from(self.hi - self.lo) + 1
        }
    }

    /// Whether `port` is inside.
    pub fn contains(self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }

    /// `base + step` (step may be negative), wrapping inside the range. A base below the
    /// range counts from `lo`, as allocators do.
    pub fn step(self, base: u16, step: i64) -> Option<u16> {
        let size = i64::from(self.size());
        if size == 0 {
            return None;
        }
        let off = i64::from(base.max(self.lo) - self.lo).min(size - 1);
        let p = (off + step).rem_euclid(size);
        u16::try_from(i64::from(self.lo) + p).ok()
    }
}

/// What a peer advertises about its NAT's mapping behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappingFacts {
    /// The external port of the last mapping observed (from STUN).
    pub last_external: u16,
    /// The local port that mapping was created from.
    pub last_local: u16,
    /// The local port the peer will punch from.
    pub next_local: u16,
    /// The delta the classifier reported.
    pub delta: Delta,
}

/// Why no prediction could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PredictError {
    /// Random allocation: nothing to predict.
    #[error("the NAT allocates ports at random")]
    Unpredictable,
    /// A step of zero for a kind that needs a step.
    #[error("delta kind {0} with a zero step")]
    ZeroStep(DeltaKind),
    /// The port range is empty.
    #[error("empty port range")]
    EmptyRange,
}

/// Up to `n` candidate external ports for the peer's next mapping, most likely first,
/// without duplicates.
pub fn predict_ports(
    facts: &MappingFacts,
    n: usize,
    range: PortRange,
) -> Result<Vec<u16>, PredictError> {
    if range.size() == 0 {
        return Err(PredictError::EmptyRange);
    }
    let d = i64::from(facts.delta.value);
    let mut out: Vec<u16> = Vec::with_capacity(n.min(range.size() as usize));
    let push = |p: Option<u16>, out: &mut Vec<u16>| {
        if let Some(p) = p {
            if out.len() < n && !out.contains(&p) {
                out.push(p);
            }
        }
    };
    match facts.delta.kind {
        DeltaKind::Random => return Err(PredictError::Unpredictable),
        DeltaKind::Equal => push(Some(facts.next_local), &mut out),
        DeltaKind::Preserving => {
            let p = (i64::from(facts.next_local) + d).rem_euclid(65536);
            push(u16::try_from(p).ok(), &mut out);
        }
        DeltaKind::Independent => {
            if d == 0 {
                return Err(PredictError::ZeroStep(DeltaKind::Independent));
            }
            for k in 1..=n as i64 {
                push(range.step(facts.last_external, k * d), &mut out);
            }
        }
        DeltaKind::Dependent => {
            if d == 0 {
                return Err(PredictError::ZeroStep(DeltaKind::Dependent));
            }
            let dl = i64::from(facts.next_local) - i64::from(facts.last_local);
            for k in 0..n as i64 {
                push(range.step(facts.last_external, (dl + k) * d), &mut out);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(
        kind: DeltaKind,
        value: i32,
        last_ext: u16,
        last_local: u16,
        next: u16,
    ) -> MappingFacts {
        MappingFacts {
            last_external: last_ext,
            last_local,
            next_local: next,
            delta: Delta { kind, value },
        }
    }

    #[test]
    fn p2pd_vectors_first_guess() {
        let r = PortRange::default();
        // equal: the local port itself.
        assert_eq!(
            predict_ports(&facts(DeltaKind::Equal, 0, 40000, 40000, 50000), 3, r),
            Ok(vec![50000])
        );
        // preserving with offset 1000.
        assert_eq!(
            predict_ports(
                &facts(DeltaKind::Preserving, 1000, 41000, 40000, 50000),
                3,
                r
            ),
            Ok(vec![51000])
        );
        // independent step 2: 40002, 40004, 40006.
        assert_eq!(
            predict_ports(&facts(DeltaKind::Independent, 2, 40000, 1234, 5555), 3, r),
            Ok(vec![40002, 40004, 40006])
        );
        // dependent step 3, local moves by 1: +3, then +6 if one mapping slipped in.
        assert_eq!(
            predict_ports(&facts(DeltaKind::Dependent, 3, 40000, 5000, 5001), 2, r),
            Ok(vec![40003, 40006])
        );
        // dependent, local moves by 4: 4·3 = 12.
        assert_eq!(
            predict_ports(&facts(DeltaKind::Dependent, 3, 40000, 5000, 5004), 1, r),
            Ok(vec![40012])
        );
    }

    #[test]
    fn wraps_inside_the_range() {
        let r = PortRange::default();
        assert_eq!(
            predict_ports(&facts(DeltaKind::Independent, 1, 65534, 1, 1), 3, r),
            Ok(vec![65535, 1024, 1025])
        );
        assert_eq!(
            predict_ports(&facts(DeltaKind::Independent, -1, 1025, 1, 1), 3, r),
            Ok(vec![1024, 65535, 65534])
        );
        // Preserving wraps modulo 2^16 (the classifier's offset is modulo 2^16).
        assert_eq!(
            predict_ports(&facts(DeltaKind::Preserving, 65535, 0, 0, 5000), 1, r),
            Ok(vec![4999])
        );
        // A tiny range dedups guesses that wrap onto each other.
        let tiny = PortRange { lo: 100, hi: 101 };
        assert_eq!(
            predict_ports(&facts(DeltaKind::Independent, 1, 100, 1, 1), 5, tiny),
            Ok(vec![101, 100])
        );
    }

    #[test]
    fn errors() {
        let r = PortRange::default();
        assert_eq!(
            predict_ports(&facts(DeltaKind::Random, 0, 1, 1, 1), 3, r),
            Err(PredictError::Unpredictable)
        );
        assert_eq!(
            predict_ports(&facts(DeltaKind::Independent, 0, 1, 1, 1), 3, r),
            Err(PredictError::ZeroStep(DeltaKind::Independent))
        );
        assert_eq!(
            predict_ports(
                &facts(DeltaKind::Equal, 0, 1, 1, 1),
                3,
                PortRange { lo: 5, hi: 4 }
            ),
            Err(PredictError::EmptyRange)
        );
        assert_eq!(
            predict_ports(&facts(DeltaKind::Independent, 7, 40000, 1, 1), 0, r),
            Ok(vec![])
        );
    }
}
