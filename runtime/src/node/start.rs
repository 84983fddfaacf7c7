//! Start-up: the routes of each interface with the NAT in front of them, a TCP listener
//! and a UDP socket on one port per route, and the node address that describes them.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use p2pd_core::addr::{Interface as AddrInterface, MAX_INTERFACES, Route as AddrRoute};
use p2pd_core::nat::{
    Classification, ClassifierConfig, Delta, DeltaKind, MappingBehaviour, NatType,
};
use p2pd_core::rng::Rng;

use super::config::NodeError;
use crate::interfaces::{self, Family};
use crate::net::{bind_udp, listen_tcp};
use crate::routes::{RouteConfig, RouteError, discover};
use crate::runtime::{AsyncTcpListener, Runtime};

/// Attempts at finding a port free for TCP and UDP on every route.
const PORT_TRIES: usize = 16;

/// One route of the node: where it listens and what peers are told about it.
#[derive(Debug)]
pub(crate) struct Listening<R: Runtime> {
    /// The interface's name (for logs).
    pub(crate) interface: String,
    /// The interface's position in the node address.
    pub(crate) index: usize,
    /// The local address (interface IP, listen port).
    pub(crate) local: SocketAddr,
    /// The TCP listener (address and port reuse: punches share its port).
    pub(crate) tcp: R::TcpListener,
    /// The UDP socket on the same port.
    pub(crate) udp: Arc<R::UdpSocket>,
    /// What the address says about this route.
    pub(crate) route: AddrRoute,
}

/// A route found, before its sockets are bound.
struct Candidate {
    interface: String,
    index: usize,
    family: Family,
    route: AddrRoute,
}

/// A listen port to try first when the caller leaves the choice to the node (known
/// before binding, so that the gateway can be asked to map it meanwhile).
pub(crate) fn random_port(rng: &mut Rng) -> u16 {
    // A random start avoids the kernel handing two nodes on one host ports that then
    // collide for UDP.
    20_000 + rng.below(40_000) as u16
}

/// Finds the routes and NATs of the chosen interfaces and binds a listener and a UDP
/// socket per route on one port (`port`; when it is taken and not `fixed`, another free
/// one). Returns them with the address's interfaces, in the address's order.
pub(crate) async fn discover_and_bind<R: Runtime>(
    rt: &R,
    chosen: Vec<interfaces::Interface>,
    stun: &[SocketAddr],
    port: u16,
    fixed: bool,
    rng: &mut Rng,
) -> Result<(Vec<Listening<R>>, Vec<AddrInterface>), NodeError> {
    let config = RouteConfig {
        classify: Some(ClassifierConfig::default()),
        ..RouteConfig::new(stun.to_vec())
    };
    let found = discover(rt, chosen, &config, rng).await;
    let mut candidates = Vec::new();
    let mut problems = Vec::new();
    let mut index = 0;
    for r in &found {
        problems.extend(
            r.errors
                .iter()
                .map(|e| format!("{}: {e}", r.interface.name)),
        );
        let mut any = false;
        for family in Family::ALL {
            let Some(route) = r.routes.iter().find(|x| x.family == family) else {
                continue;
            };
            let (nat, delta) = verdict(
                r.nat
                    .iter()
                    .find(|n| n.family == family)
                    .and_then(|n| n.result.as_ref().ok()),
            );
            candidates.push(Candidate {
                interface: r.interface.name.clone(),
                index,
                family,
                route: AddrRoute {
                    external: route.external,
                    internal: route.local[0],
                    port: 0,
                    nat,
                    delta,
                },
            });
            any = true;
        }
        if any {
            index += 1;
            if index == MAX_INTERFACES {
                break;
            }
        }
    }
    // A host whose UDP is blocked learns no route by STUN at all; it can still connect
    // over TCP (relay over TCP to the TURN server, or to a public peer). When no family
    // got a route, advertise the default interface as `blocked`, so peers plan
    // accordingly. (Not when one family works: an IPv6 without internet next to a
    // working IPv4 must not be advertised, or it would be preferred.)
    let none_found = candidates.is_empty();
    for family in Family::ALL {
        if !none_found || candidates.iter().any(|c| c.family == family) {
            continue;
        }
        let stun_failed = |r: &&crate::routes::InterfaceRoutes| {
            r.errors.iter().find_map(|e| match e {
                RouteError::Stun { local, .. } if Family::of(*local) == family => Some(*local),
                _ => None,
            })
        };
        let blocked = found
            .iter()
            .filter(|r| r.interface.default_for.contains(&family))
            .chain(found.iter())
            .find_map(|r| stun_failed(&r).map(|ip| (r, ip)));
        if let Some((r, ip)) = blocked {
            candidates.push(Candidate {
                interface: r.interface.name.clone(),
                index,
                family,
                route: AddrRoute {
                    // Unknown: the internal address stands in (it matches no peer's).
                    external: ip,
                    internal: ip,
                    port: 0,
                    nat: NatType::Blocked,
                    delta: Delta {
                        kind: DeltaKind::Random,
                        value: 0,
                    },
                },
            });
            index += 1;
        }
    }
    if candidates.is_empty() {
        let why = if problems.is_empty() {
            "no interface has an address a STUN server could be reached from".to_string()
        } else {
            problems.join("; ")
        };
        return Err(NodeError::NoRoute(why));
    }
    let bound = bind_all(rt, &candidates, port, fixed, rng).map_err(NodeError::Bind)?;
    let mut ifaces = vec![AddrInterface::default(); index];
    for (c, l) in candidates.iter().zip(&bound) {
        let slot = &mut ifaces[l.index];
        match c.family {
            Family::Ipv4 => slot.v4 = Some(l.route),
            Family::Ipv6 => slot.v6 = Some(l.route),
        }
    }
    Ok((bound, ifaces))
}

/// What the address says about a route's NAT. Where the classifier could not decide
/// (plain STUN servers cannot test filtering), the most restrictive type consistent with
/// what it did see: a punch the peer cannot make is never advertised, the relay stays.
fn verdict(c: Option<&Classification>) -> (NatType, Delta) {
    let random = Delta {
        kind: DeltaKind::Random,
        value: 0,
    };
    let Some(c) = c else {
        return (NatType::Symmetric, random);
    };
    let nat = c.nat_type.unwrap_or(match (c.translated, c.mapping) {
        (Some(false), _) => NatType::SymmetricUdpFirewall,
        (_, Some(MappingBehaviour::EndpointIndependent)) => NatType::PortRestrictedCone,
        _ => NatType::Symmetric,
    });
    (nat, c.delta.unwrap_or(random))
}

/// Binds every candidate's TCP listener and UDP socket on one port: `port` first, then
/// (unless `fixed`) random ones.
fn bind_all<R: Runtime>(
    rt: &R,
    candidates: &[Candidate],
    port: u16,
    fixed: bool,
    rng: &mut Rng,
) -> io::Result<Vec<Listening<R>>> {
    let mut last = io::Error::other("no attempt");
    for attempt in 0..if fixed { 1 } else { PORT_TRIES } {
        let try_port = if attempt == 0 { port } else { random_port(rng) };
        match bind_on(rt, candidates, try_port) {
            Ok(v) => return Ok(v),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn bind_on<R: Runtime>(
    rt: &R,
    candidates: &[Candidate],
    port: u16,
) -> io::Result<Vec<Listening<R>>> {
    let mut out = Vec::new();
    for c in candidates {
        let local = SocketAddr::new(c.route.internal, port);
        let tcp = listen_tcp(rt, local, true)?;
        let local = tcp.local_addr()?;
        // No reuse for UDP: a second socket on the port would take some of its datagrams.
        let udp = bind_udp(rt, local, false)?;
        out.push(Listening {
            interface: c.interface.clone(),
            index: c.index,
            local,
            tcp,
            udp: Arc::new(udp),
            route: AddrRoute {
                port: local.port(),
                ..c.route
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn undecided(translated: Option<bool>, mapping: Option<MappingBehaviour>) -> Classification {
        Classification {
            nat_type: None,
            translated,
            mapping,
            filtering: None,
            delta: None,
            external: None,
            local: "192.0.2.1:1".parse().unwrap(),
            server: None,
            other_address: None,
            unreachable: Vec::new(),
            hairpinning: None,
            tests: Vec::new(),
            rtt: None,
            elapsed: std::time::Duration::ZERO,
            requests: 0,
            notes: Vec::new(),
        }
    }

    #[test]
    fn undecided_verdicts_are_the_most_restrictive_consistent_ones() {
        assert_eq!(verdict(None).0, NatType::Symmetric);
        assert_eq!(verdict(None).1.kind, DeltaKind::Random);
        let c = undecided(Some(false), None);
        assert_eq!(verdict(Some(&c)).0, NatType::SymmetricUdpFirewall);
        let c = undecided(Some(true), Some(MappingBehaviour::EndpointIndependent));
        assert_eq!(verdict(Some(&c)).0, NatType::PortRestrictedCone);
        let c = undecided(Some(true), Some(MappingBehaviour::AddressDependent));
        assert_eq!(verdict(Some(&c)).0, NatType::Symmetric);
        let mut c = undecided(Some(true), None);
        c.nat_type = Some(NatType::FullCone);
        c.delta = Some(Delta {
            kind: DeltaKind::Equal,
            value: 0,
        });
        assert_eq!(verdict(Some(&c)), (NatType::FullCone, c.delta.unwrap()));
    }
}
