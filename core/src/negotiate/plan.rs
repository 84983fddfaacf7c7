//! The oracle: which strategies can work between two nodes, given what each one's address
//! says about its NAT, and in what order to try them.
//!
//! The rules, strategy by strategy (initiator `I`, responder `R`):
//!
//! * **direct** — `I` connects to `R`'s listen port. Works when `R` is reachable from
//!   outside (open internet), when `R`'s gateway forwards a port to it (a mapped port in
//!   its address: PCP, NAT-PMP or UPnP IGD; `I` connects to `R`'s external address and
//!   that port), or both sit on one LAN (the local path, to `R`'s internal address). A
//!   NAT or firewall drops unsolicited connections otherwise.
//! * **reverse** — `R` connects to `I`: works when `I` is on the open internet or has a
//!   mapped port; `R` may be behind anything that lets outbound TCP out (UDP-blocked
//!   networks too).
//! * **tcp_punch** — both open from their listen ports at once; each must know the port
//!   the other's NAT gives that connection *without* observing it (p2pd makes no TCP STUN
//!   observations): no NAT, or a port-keeping allocation (`equal`, `preserving`) on both
//!   sides. A UDP-blocked side has no classification to predict from.
//! * **udp_punch** — [`crate::punch::udp_punch_possible`]: prediction for predictable
//!   symmetric NATs, birthday probing for a random one facing a stable mapping, never
//!   random × symmetric or anything with a UDP-blocked side.
//! * **relay** — TURN: works when at least one side has a TURN server and every
//!   UDP-blocked side has one of its own (it reaches it over TCP).

use super::strategy::Strategy;
use crate::nat::{Delta, DeltaKind, NatType};
use crate::punch::udp_punch_possible;

/// What the oracle needs of one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side {
    /// Its NAT type.
    pub nat: NatType,
    /// Its NAT's port allocation.
    pub delta: Delta,
    /// Whether it has a TURN server configured.
    pub has_turn: bool,
    /// Whether its address carries a port its gateway forwards to its listen port (on a
    /// family the other side has), so that it takes unsolicited TCP connections there.
    pub mapped: bool,
}

/// The strategies to run, in order, and the ones skipped with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// What to try, best first.
    pub order: Vec<Strategy>,
    /// What not to try, and why (for logs).
    pub skipped: Vec<(Strategy, String)>,
}

fn tcp_predictable(s: &Side) -> bool {
    match s.nat {
        NatType::OpenInternet | NatType::SymmetricUdpFirewall => true,
        NatType::Blocked => false,
        _ => matches!(s.delta.kind, DeltaKind::Equal | DeltaKind::Preserving),
    }
}

/// Whether `strategy` can work between `i` and `r`; `Err` says why not.
pub fn possible(strategy: Strategy, i: &Side, r: &Side, same_lan: bool) -> Result<(), String> {
    match strategy {
        Strategy::Direct => {
            if same_lan || r.nat == NatType::OpenInternet || r.mapped {
                Ok(())
            } else {
                Err(format!(
                    "the peer is behind a {} that drops unsolicited connections, and its gateway forwards no port to it",
                    r.nat
                ))
            }
        }
        Strategy::Reverse => {
            if i.nat == NatType::OpenInternet || i.mapped {
                Ok(())
            } else {
                Err(format!(
                    "we are behind a {} and our gateway forwards no port to us: the peer cannot connect to us",
                    i.nat
                ))
            }
        }
        Strategy::TcpPunch => match (tcp_predictable(i), tcp_predictable(r)) {
            (true, true) => Ok(()),
            (false, _) => Err(format!(
                "our NAT ({} / {}) gives TCP connections ports we cannot predict",
                i.nat, i.delta.kind
            )),
            (_, false) => Err(format!(
                "the peer's NAT ({} / {}) gives TCP connections ports we cannot predict",
                r.nat, r.delta.kind
            )),
        },
        Strategy::UdpPunch => {
            if udp_punch_possible((i.nat, i.delta.kind), (r.nat, r.delta.kind)) {
                Ok(())
            } else {
                Err(format!(
                    "no UDP path can be punched between {} / {} and {} / {}",
                    i.nat, i.delta.kind, r.nat, r.delta.kind
                ))
            }
        }
        Strategy::Relay => {
            if !i.has_turn && !r.has_turn {
                Err("neither side has a TURN server (--turn USER:PASS@HOST:PORT)".into())
            } else if (i.nat == NatType::Blocked && !i.has_turn)
                || (r.nat == NatType::Blocked && !r.has_turn)
            {
                Err("a UDP-blocked side needs a TURN server of its own".into())
            } else {
                Ok(())
            }
        }
    }
}

/// The plan for `enabled` strategies between initiator `i` and responder `r`.
pub fn plan(i: &Side, r: &Side, enabled: &[Strategy], same_lan: bool) -> Plan {
    let mut order = Vec::new();
    let mut skipped = Vec::new();
    for s in Strategy::ALL {
        if !enabled.contains(&s) {
            skipped.push((s, "not enabled".to_string()));
            continue;
        }
        match possible(s, i, r, same_lan) {
            Ok(()) => order.push(s),
            Err(why) => skipped.push((s, why)),
        }
    }
    Plan { order, skipped }
}

/// The strategy that must succeed between `i` and `r` with every strategy enabled: the
/// first possible one. `None` when nothing can work.
pub fn expected(i: &Side, r: &Side, same_lan: bool) -> Option<Strategy> {
    plan(i, r, &Strategy::ALL, same_lan).order.first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(nat: NatType, kind: DeltaKind) -> Side {
        Side {
            nat,
            delta: Delta { kind, value: 0 },
            has_turn: true,
            mapped: false,
        }
    }

    #[test]
    fn the_first_possible_strategy_is_expected() {
        use DeltaKind as D;
        use NatType as N;
        let open = side(N::OpenInternet, D::Equal);
        let cone = side(N::FullCone, D::Equal);
        let cone_random = side(N::PortRestrictedCone, D::Random);
        let sym_random = side(N::Symmetric, D::Random);
        let sym_indep = side(N::Symmetric, D::Independent);
        let blocked = side(N::Blocked, D::Random);
        assert_eq!(expected(&cone, &open, false), Some(Strategy::Direct));
        assert_eq!(expected(&open, &cone, false), Some(Strategy::Reverse));
        assert_eq!(expected(&cone, &cone, false), Some(Strategy::TcpPunch));
        assert_eq!(expected(&cone, &cone, true), Some(Strategy::Direct));
        assert_eq!(
            expected(&cone_random, &sym_random, false),
            Some(Strategy::UdpPunch)
        );
        assert_eq!(
            expected(&sym_indep, &sym_indep, false),
            Some(Strategy::UdpPunch)
        );
        assert_eq!(
            expected(&sym_random, &sym_indep, false),
            Some(Strategy::Relay)
        );
        assert_eq!(expected(&blocked, &open, false), Some(Strategy::Direct));
        assert_eq!(expected(&open, &blocked, false), Some(Strategy::Reverse));
        assert_eq!(expected(&blocked, &cone, false), Some(Strategy::Relay));
        let no_turn = Side {
            has_turn: false,
            ..blocked
        };
        assert_eq!(expected(&no_turn, &cone, false), None);
    }

    #[test]
    fn a_mapped_port_makes_a_side_reachable() {
        let sym = side(NatType::Symmetric, DeltaKind::Random);
        let mapped = Side {
            mapped: true,
            ..sym
        };
        assert_eq!(expected(&sym, &mapped, false), Some(Strategy::Direct));
        assert_eq!(expected(&mapped, &sym, false), Some(Strategy::Reverse));
        assert!(possible(Strategy::Direct, &mapped, &sym, false).is_err());
        assert!(possible(Strategy::Reverse, &sym, &mapped, false).is_err());
        // Blocked UDP does not matter to a TCP connection to a forwarded port.
        let blocked = side(NatType::Blocked, DeltaKind::Random);
        assert_eq!(expected(&blocked, &mapped, false), Some(Strategy::Direct));
    }

    #[test]
    fn skipped_strategies_say_why() {
        let p = plan(
            &side(NatType::Symmetric, DeltaKind::Random),
            &side(NatType::Symmetric, DeltaKind::Random),
            &[Strategy::Direct, Strategy::UdpPunch, Strategy::Relay],
            false,
        );
        assert_eq!(p.order, vec![Strategy::Relay]);
        assert_eq!(p.skipped.len(), 4);
        assert!(
            p.skipped
                .iter()
                .any(|(s, why)| *s == Strategy::TcpPunch && why == "not enabled")
        );
        assert!(
            p.skipped
                .iter()
                .any(|(s, why)| *s == Strategy::UdpPunch && why.contains("no UDP path"))
        );
    }
}
