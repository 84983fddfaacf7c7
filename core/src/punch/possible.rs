//! The oracle: can two hosts punch a direct UDP path, given each side's NAT type and delta
//! kind (as the classifier reports them), with this module's prediction and birthday tools?
//!
//! The reasoning, pair by pair:
//!
//! * A **blocked** side (no UDP at all) never punches.
//! * Two sides with a **stable mapping** (open internet, UDP firewall, the three cones):
//!   each learns its own external address from STUN on the punching socket and it is the
//!   one every peer sees; both send to each other at once, which opens every filter
//!   (address or address-and-port) on both sides. Always possible.
//! * A **symmetric NAT with a predictable delta** (equal, preserving, independent,
//!   dependent) facing any non-blocked side: its next mapping is predicted
//!   ([`super::predict`]). Both sides send in candidate order, so the i-th mapping one side
//!   creates is aimed at the i-th guess of the other; with the first guess right (true
//!   delta facts, no competing traffic meanwhile), the first pair matches. Possible, even
//!   symmetric × symmetric.
//! * A **random-port symmetric NAT** facing a stable-mapping side: birthday punching
//!   ([`super::birthday`]) — the symmetric side opens K mappings all aimed at the peer's
//!   one stable address; the peer sprays M random ports. Possible with the documented
//!   probability (≈ 98 % for 256 sockets and 1 000 probes at 100 packets/s). Without
//!   birthday, port-restricted × symmetric-random fails: the peer cannot guess the port.
//! * A random-port symmetric NAT facing **another symmetric NAT**: the other side cannot
//!   spray from one stable mapping (each destination gets a new port) and the random side's
//!   mappings cannot be predicted: impossible; use a relay.

use crate::nat::{DeltaKind, NatType};

/// Whether a direct UDP path can be punched between `a` and `b` with prediction (several
/// guesses) and birthday probing available. See the module docs for the reasoning.
pub fn udp_punch_possible(a: (NatType, DeltaKind), b: (NatType, DeltaKind)) -> bool {
    if a.0 == NatType::Blocked || b.0 == NatType::Blocked {
        return false;
    }
    let random_symmetric =
        |s: (NatType, DeltaKind)| s.0 == NatType::Symmetric && s.1 == DeltaKind::Random;
    match (random_symmetric(a), random_symmetric(b)) {
        (false, false) => true,
        (true, true) => false,
        (true, false) => b.0.has_stable_mapping(),
        (false, true) => a.0.has_stable_mapping(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        use DeltaKind as D;
        use NatType as N;
        assert!(udp_punch_possible(
            (N::PortRestrictedCone, D::Equal),
            (N::PortRestrictedCone, D::Random)
        ));
        assert!(udp_punch_possible(
            (N::Symmetric, D::Independent),
            (N::Symmetric, D::Dependent)
        ));
        assert!(udp_punch_possible(
            (N::Symmetric, D::Random),
            (N::FullCone, D::Equal)
        ));
        assert!(udp_punch_possible(
            (N::RestrictedCone, D::Equal),
            (N::Symmetric, D::Random)
        ));
        assert!(udp_punch_possible(
            (N::Symmetric, D::Random),
            (N::PortRestrictedCone, D::Random)
        ));
        assert!(!udp_punch_possible(
            (N::Symmetric, D::Random),
            (N::Symmetric, D::Random)
        ));
        assert!(!udp_punch_possible(
            (N::Symmetric, D::Random),
            (N::Symmetric, D::Equal)
        ));
        assert!(!udp_punch_possible(
            (N::Blocked, D::Equal),
            (N::OpenInternet, D::Equal)
        ));
        // Symmetric in its arguments.
        for a in NatType::ALL {
            for da in DeltaKind::ALL {
                for b in NatType::ALL {
                    for db in DeltaKind::ALL {
                        assert_eq!(
                            udp_punch_possible((a, da), (b, db)),
                            udp_punch_possible((b, db), (a, da))
                        );
                    }
                }
            }
        }
    }
}
