//! Port-allocation ("delta") analysis: from (local port, mapped port) samples, which of
//! P2PD's five kinds a NAT uses, and its value.
//!
//! Two sets of samples are taken. Probes from *random* local ports tell `equal`
//! (mapped = local), `preserving` (mapped = local + k) and `independent` (each new mapping
//! = previous + d, whatever the local port) apart from the rest; probes from *consecutive*
//! local ports, sent in order, reveal `dependent` (+d only when the local port is +1).
//! The analysis does not trust the order in which responses arrive: losses and retries
//! reorder them, so it looks at sorted mapped ports and at pairs of neighbouring local
//! ports instead. Anything without enough support is `Uncertain`, never a guess.

use std::collections::HashMap;

use super::behaviour::{Delta, DeltaKind};

/// One probe's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSample {
    /// The local port the probe left from.
    pub local: u16,
    /// The external port the server saw.
    pub mapped: u16,
}

/// How many samples must agree before a pattern counts. Chance agreement of three among
/// random 16-bit ports is below 1 in 10^6 for the sample counts used here.
pub const MIN_SUPPORT: usize = 3;
/// Largest step taken for a sequential allocator; larger regular gaps are not believed.
pub const MAX_STEP: i32 = 4096;

/// The verdict, or why there is none.
pub type DeltaVerdict = Result<Delta, &'static str>;

/// The most common value and how often it occurs (ties go to the smallest magnitude, so
/// the answer does not depend on sample order).
fn mode<I: IntoIterator<Item = i32>>(values: I) -> Option<(i32, usize)> {
    let mut counts: HashMap<i32, usize> = HashMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    counts.into_iter().max_by(|a, b| {
        a.1.cmp(&b.1)
            .then(b.0.abs().cmp(&a.0.abs()))
            .then(b.0.cmp(&a.0))
    })
}

fn signed_diff(a: u16, b: u16) -> i32 {
    i32::from(a.wrapping_sub(b) as i16)
}

/// Classifies port allocation from probes sent from random local ports (`random`) and
/// from consecutive local ports in order (`consecutive`).
pub fn analyse(random: &[PortSample], consecutive: &[PortSample]) -> DeltaVerdict {
    if random.len() < MIN_SUPPORT {
        return Err("too few probes from random local ports were answered");
    }
    // equal / preserving: one offset between local and mapped for (nearly) all samples.
    if let Some((offset, count)) = mode(
        random
            .iter()
            .map(|s| i32::from(s.mapped.wrapping_sub(s.local))),
    ) {
        if count >= MIN_SUPPORT && count * 10 >= random.len() * 7 {
            return Ok(if offset == 0 {
                Delta {
                    kind: DeltaKind::Equal,
                    value: 0,
                }
            } else {
                Delta {
                    kind: DeltaKind::Preserving,
                    value: offset,
                }
            });
        }
    }
    // independent: the mapped ports form a progression with step d, whatever the locals.
    let mut mapped: Vec<u16> = random.iter().map(|s| s.mapped).collect();
    mapped.sort_unstable();
    mapped.dedup();
    let gaps: Vec<i32> = mapped.windows(2).map(|w| signed_diff(w[1], w[0])).collect();
    if let Some((step, count)) = mode(gaps.iter().copied()) {
        if step > 0 && step <= MAX_STEP && count >= MIN_SUPPORT && count * 2 >= gaps.len() {
            return Ok(Delta {
                kind: DeltaKind::Independent,
                value: step,
            });
        }
    }
    // dependent: neighbouring local ports get mapped ports d apart.
    let mut seq = consecutive.to_vec();
    seq.sort_unstable_by_key(|s| s.local);
    let steps: Vec<i32> = seq
        .windows(2)
        .filter(|w| w[1].local == w[0].local.wrapping_add(1))
        .map(|w| signed_diff(w[1].mapped, w[0].mapped))
        .collect();
    if let Some((step, count)) = mode(steps.iter().copied()) {
        // Three equal steps among a dozen random pairs happen by chance with
        // probability ~C(11,3)/65536² ≈ 4·10⁻⁸: agreement, not a majority, is the evidence.
        if step != 0 && step.abs() <= MAX_STEP && count >= MIN_SUPPORT {
            return Ok(Delta {
                kind: DeltaKind::Dependent,
                value: step,
            });
        }
    }
    // random: enough neighbouring pairs, and not even two of them agree. A dependent
    // allocator whose chain was broken by lost probes still repeats its step in the
    // pairs that survived, so it lands here as uncertain, never as random.
    let repeated = mode(steps.iter().copied()).is_some_and(|(_, n)| n >= 2);
    if random.len() >= 5 && steps.len() >= 4 && !repeated {
        Ok(Delta {
            kind: DeltaKind::Random,
            value: 0,
        })
    } else if repeated {
        Err("a step repeats between neighbouring local ports, but too rarely to be sure")
    } else {
        Err("too few probes were answered to rule out a pattern")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pairs: &[(u16, u16)]) -> Vec<PortSample> {
        pairs
            .iter()
            .map(|&(local, mapped)| PortSample { local, mapped })
            .collect()
    }

    const RANDOMISH: [(u16, u16); 8] = [
        (4000, 31337),
        (10000, 6012),
        (10200, 48021),
        (10400, 1999),
        (11000, 57005),
        (23000, 40404),
        (30001, 12121),
        (40000, 22222),
    ];

    // P2PD's own test vectors (tests/test_nat.py), then the cases it cannot tell apart.
    #[test]
    fn preserving() {
        let r = s(&[
            (4000, 50000),
            (10000, 56000),
            (10200, 56200),
            (10400, 56400),
            (11000, 57000),
        ]);
        assert_eq!(
            analyse(&r, &[]),
            Ok(Delta {
                kind: DeltaKind::Preserving,
                value: 46000
            })
        );
    }

    #[test]
    fn equal() {
        let r = s(&[(4567, 4567), (48234, 48234), (5000, 5000), (6001, 6001)]);
        assert_eq!(analyse(&r, &[]).unwrap().kind, DeltaKind::Equal);
    }

    #[test]
    fn independent_even_when_responses_arrive_out_of_order() {
        let r = s(&[
            (9000, 50030),
            (4000, 50000),
            (777, 50020),
            (30000, 50010),
            (1234, 50050),
        ]);
        assert_eq!(
            analyse(&r, &[]),
            Ok(Delta {
                kind: DeltaKind::Independent,
                value: 10
            })
        );
    }

    #[test]
    fn dependent_needs_random_evidence_first() {
        let c = s(&[
            (4560, 50000),
            (4561, 50020),
            (4562, 50040),
            (4563, 50060),
            (4564, 50080),
        ]);
        assert_eq!(
            analyse(&s(&RANDOMISH), &c),
            Ok(Delta {
                kind: DeltaKind::Dependent,
                value: 20
            })
        );
        // With too little evidence from random ports, no verdict.
        assert!(analyse(&s(&RANDOMISH[..2]), &c).is_err());
    }

    #[test]
    fn dependent_survives_a_broken_chain() {
        // Probe 4563 was lost and retried later: it got a random port.
        let c = s(&[
            (4560, 100),
            (4561, 120),
            (4562, 140),
            (4563, 9999),
            (4564, 180),
            (4565, 200),
            (4566, 220),
        ]);
        assert_eq!(
            analyse(&s(&RANDOMISH), &c).unwrap(),
            Delta {
                kind: DeltaKind::Dependent,
                value: 20
            }
        );
    }

    #[test]
    fn random_when_enough_evidence() {
        let c = s(&[
            (5000, 111),
            (5001, 40000),
            (5002, 2222),
            (5003, 60000),
            (5004, 7),
        ]);
        assert_eq!(analyse(&s(&RANDOMISH), &c).unwrap().kind, DeltaKind::Random);
        assert!(analyse(&s(&RANDOMISH), &c[..2]).is_err());
    }

    #[test]
    fn uncertain_with_too_few_samples() {
        assert!(analyse(&s(&[(1, 1), (2, 2)]), &[]).is_err());
    }
}
