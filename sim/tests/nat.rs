//! NAT boxes and firewalls, observed the way a classifier would: through core's RFC 5780
//! STUN server.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::{ALTERNATE, PRIMARY, Probe, addr, binding, probe, socket, stun_config};
use p2pd_core::nat::{DeltaKind, FilteringBehaviour as F, MappingBehaviour as M, NatType};
use p2pd_core::stun::ChangeRequest;
use p2pd_sim::{
    Attachment, DropReason, HostConfig, HostId, Network, PortAllocation, RouterConfig, RouterId,
};

const NONE: ChangeRequest = ChangeRequest {
    change_ip: false,
    change_port: false,
};
const PORT: ChangeRequest = ChangeRequest {
    change_ip: false,
    change_port: true,
};
const BOTH: ChangeRequest = ChangeRequest {
    change_ip: true,
    change_port: true,
};

/// A network with the RFC 5780 server and one probing host behind a router built from `cfg`.
fn setup(seed: u64, cfg: RouterConfig) -> (Network, RouterId, HostId) {
    let mut net = Network::new(seed);
    net.add_stun_server(stun_config()).unwrap();
    let r = net.add_router(cfg).unwrap();
    let h = net.add_host(HostConfig::behind(r)).unwrap();
    probe(&mut net, h);
    (net, r, h)
}

fn nat(m: M, f: F, a: PortAllocation) -> RouterConfig {
    RouterConfig::nat(m, f, a)
}

#[test]
fn endpoint_independent_mapping_keeps_the_port_for_every_destination() {
    let (mut net, r, h) = setup(
        1,
        nat(
            M::EndpointIndependent,
            F::EndpointIndependent,
            PortAllocation::Random,
        ),
    );
    let local = socket(&mut net, h);
    let a = binding(&mut net, h, local, addr(PRIMARY), NONE).unwrap();
    let b = binding(&mut net, h, local, addr(ALTERNATE), NONE).unwrap();
    assert_eq!(a, b);
    assert_eq!(Some(a.ip()), net.router_public_ip(r));
    assert_ne!(a.ip(), local.ip());
}

#[test]
fn address_dependent_mapping_changes_with_the_ip_only() {
    let (mut net, _, h) = setup(
        2,
        nat(
            M::AddressDependent,
            F::AddressAndPortDependent,
            PortAllocation::Random,
        ),
    );
    let local = socket(&mut net, h);
    let p1 = binding(&mut net, h, local, addr(PRIMARY), NONE).unwrap();
    let p2 = binding(&mut net, h, local, addr("203.0.113.1:3479"), NONE).unwrap();
    let a1 = binding(&mut net, h, local, addr(ALTERNATE), NONE).unwrap();
    assert_eq!(p1, p2, "same IP, other port: same mapping");
    assert_ne!(p1, a1, "other IP: new mapping");
}

#[test]
fn address_and_port_dependent_mapping_changes_with_the_port() {
    let (mut net, r, h) = setup(
        3,
        nat(
            M::AddressAndPortDependent,
            F::AddressAndPortDependent,
            PortAllocation::Random,
        ),
    );
    let local = socket(&mut net, h);
    let p1 = binding(&mut net, h, local, addr(PRIMARY), NONE).unwrap();
    let p2 = binding(&mut net, h, local, addr("203.0.113.1:3479"), NONE).unwrap();
    assert_ne!(p1, p2);
    assert_eq!(p1.ip(), p2.ip());
    assert_eq!(net.router_mappings(r), 2);
}

/// Asks for a response from the other IP and port (`BOTH`) and from the other port only
/// (`PORT`); returns whether each arrived.
fn filtering(seed: u64, f: F) -> (bool, bool, Network) {
    let (mut net, _, h) = setup(
        seed,
        nat(M::EndpointIndependent, f, PortAllocation::Preserving),
    );
    let local = socket(&mut net, h);
    assert!(binding(&mut net, h, local, addr(PRIMARY), NONE).is_some());
    let both = binding(&mut net, h, local, addr(PRIMARY), BOTH).is_some();
    let port = binding(&mut net, h, local, addr(PRIMARY), PORT).is_some();
    (both, port, net)
}

#[test]
fn endpoint_independent_filtering_admits_the_alternate_address() {
    let (both, port, net) = filtering(4, F::EndpointIndependent);
    assert!(both && port);
    assert_eq!(net.stats().dropped.get(DropReason::Filtered), 0);
}

#[test]
fn address_dependent_filtering_admits_only_known_ips() {
    let (both, port, net) = filtering(5, F::AddressDependent);
    assert!(!both, "a response from the other IP must be filtered");
    assert!(port, "a response from the same IP, other port, must pass");
    assert_eq!(net.stats().dropped.get(DropReason::Filtered), 1);
}

#[test]
fn address_and_port_dependent_filtering_admits_only_known_ports() {
    let (both, port, net) = filtering(6, F::AddressAndPortDependent);
    assert!(!both && !port);
    assert_eq!(net.stats().dropped.get(DropReason::Filtered), 2);
}

/// External ports for requests from each of `locals` to a different server port each
/// (so a destination-dependent NAT makes a new mapping every time).
fn external_ports(seed: u64, cfg: RouterConfig, locals: &[u16]) -> Vec<u16> {
    let (mut net, _, h) = setup(seed, cfg);
    let ip = net.host_ip(h).unwrap();
    let servers = [PRIMARY, "203.0.113.1:3479", ALTERNATE, "203.0.113.2:3478"];
    locals
        .iter()
        .enumerate()
        .map(|(i, &port)| {
            let local = SocketAddr::new(ip, port);
            binding(&mut net, h, local, addr(servers[i % 4]), NONE)
                .unwrap()
                .port()
        })
        .collect()
}

#[test]
fn preserving_allocation_keeps_the_local_port() {
    let cfg = RouterConfig::for_type(NatType::PortRestrictedCone, DeltaKind::Equal, 0);
    assert_eq!(
        external_ports(7, cfg, &[40000, 40001, 51234]),
        [40000, 40001, 51234]
    );
}

#[test]
fn offset_allocation_adds_k() {
    let cfg = RouterConfig::for_type(NatType::RestrictedCone, DeltaKind::Preserving, 1000);
    assert_eq!(
        external_ports(8, cfg, &[40000, 40005, 40100]),
        [41000, 41005, 41100]
    );
}

#[test]
fn sequential_allocation_steps_by_d_whatever_the_local_port() {
    let cfg = RouterConfig::for_type(NatType::Symmetric, DeltaKind::Independent, 7);
    let ports = external_ports(9, cfg, &[40000, 40000, 51000, 33333, 40001]);
    for w in ports.windows(2) {
        assert_eq!(w[1], w[0] + 7, "{ports:?}");
    }
}

#[test]
fn dependent_allocation_steps_only_when_the_local_port_does() {
    let cfg = RouterConfig::for_type(NatType::Symmetric, DeltaKind::Dependent, 5);
    let ports = external_ports(10, cfg, &[40000, 40001, 40002, 45000, 45001]);
    assert_eq!(ports[1], ports[0] + 5, "{ports:?}");
    assert_eq!(ports[2], ports[1] + 5, "{ports:?}");
    assert_ne!(ports[3], ports[2] + 5, "{ports:?}");
    assert_eq!(ports[4], ports[3] + 5, "{ports:?}");
}

#[test]
fn random_allocation_stays_in_range_and_never_collides() {
    let cfg = RouterConfig {
        port_range: 40000..=40099,
        ..RouterConfig::for_type(NatType::Symmetric, DeltaKind::Random, 0)
    };
    let locals: Vec<u16> = (0..60).map(|i| 50000 + i).collect();
    let ports = external_ports(11, cfg, &locals);
    assert!(
        ports.iter().all(|p| (40000..=40099).contains(p)),
        "{ports:?}"
    );
    let mut sorted = ports.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), ports.len(), "a port was handed out twice");
    let steps: Vec<i32> = ports
        .windows(2)
        .map(|w| i32::from(w[1]) - i32::from(w[0]))
        .collect();
    assert!(
        steps.windows(2).any(|s| s[0] != s[1]),
        "not random: {ports:?}"
    );
}

#[test]
fn mapping_expires_after_the_idle_timeout_and_keepalives_hold_it() {
    let cfg = RouterConfig {
        mapping_timeout: Duration::from_secs(30),
        ..nat(
            M::EndpointIndependent,
            F::AddressAndPortDependent,
            PortAllocation::Random,
        )
    };
    let (mut net, _, h) = setup(12, cfg);
    let local = socket(&mut net, h);
    let first = binding(&mut net, h, local, addr(PRIMARY), NONE).unwrap();
    net.run_for(Duration::from_secs(20), 100);
    let refreshed = binding(&mut net, h, local, addr(PRIMARY), NONE).unwrap();
    assert_eq!(first, refreshed, "used within the timeout: same mapping");
    net.run_for(Duration::from_secs(31), 100);
    let after = binding(&mut net, h, local, addr(PRIMARY), NONE).unwrap();
    assert_ne!(first, after, "idle past the timeout: new mapping");

    // A keepalive every 10 s holds the mapping over two minutes.
    net.with_endpoint::<Probe, _>(h, |p, now| {
        p.tick(now, Duration::from_secs(10), local, addr(PRIMARY));
    })
    .unwrap();
    net.run_for(Duration::from_secs(120), 1_000);
    assert_eq!(
        binding(&mut net, h, local, addr(PRIMARY), NONE).unwrap(),
        after
    );
    assert!(net.stats().timeouts >= 12, "{}", net.stats());
}

#[test]
fn inbound_to_an_expired_mapping_is_dropped() {
    let cfg = RouterConfig {
        mapping_timeout: Duration::from_secs(30),
        ..nat(
            M::EndpointIndependent,
            F::EndpointIndependent,
            PortAllocation::Preserving,
        )
    };
    let (mut net, _, h) = setup(13, cfg);
    let outside = net.add_host(HostConfig::internet()).unwrap();
    probe(&mut net, outside);
    let local = socket(&mut net, h);
    let mapped = binding(&mut net, h, local, addr(PRIMARY), NONE).unwrap();
    let from = socket(&mut net, outside);
    net.with_endpoint::<Probe, _>(outside, |p, _| p.send(from, mapped, b"hi"));
    net.run_for(Duration::from_secs(40), 100);
    assert_eq!(
        net.endpoint::<Probe>(h).unwrap().received.len(),
        2,
        "full cone admits anyone"
    );
    net.with_endpoint::<Probe, _>(outside, |p, _| p.send(from, mapped, b"late"));
    net.run_for(Duration::from_secs(1), 100);
    assert_eq!(net.endpoint::<Probe>(h).unwrap().received.len(), 2);
    assert_eq!(net.stats().dropped.get(DropReason::NoMapping), 1);
}

/// Two hosts behind one NAT; B learns its mapping, A sends to it. Returns what B received
/// from A.
fn hairpin(hairpinning: bool) -> (Vec<SocketAddr>, Network, SocketAddr) {
    let cfg = RouterConfig {
        hairpinning,
        ..RouterConfig::for_type(NatType::FullCone, DeltaKind::Equal, 0)
    };
    let (mut net, r, a) = setup(14, cfg);
    let b = net.add_host(HostConfig::behind(r)).unwrap();
    probe(&mut net, b);
    let b_local = socket(&mut net, b);
    let b_mapped = binding(&mut net, b, b_local, addr(PRIMARY), NONE).unwrap();
    let a_local = socket(&mut net, a);
    let a_mapped = binding(&mut net, a, a_local, addr(PRIMARY), NONE).unwrap();
    net.with_endpoint::<Probe, _>(a, |p, _| p.send(a_local, b_mapped, b"hairpin"));
    net.run_for(Duration::from_secs(1), 100);
    let from: Vec<SocketAddr> = net
        .endpoint::<Probe>(b)
        .unwrap()
        .received
        .iter()
        .filter(|r| r.bytes == b"hairpin")
        .map(|r| r.from)
        .collect();
    (from, net, a_mapped)
}

#[test]
fn hairpinning_reaches_the_mapped_host_from_the_external_address() {
    let (from, net, a_mapped) = hairpin(true);
    assert_eq!(from, [a_mapped], "{}", net.stats());
}

#[test]
fn without_hairpinning_the_datagram_dies_at_the_nat() {
    let (from, net, _) = hairpin(false);
    assert!(from.is_empty());
    assert_eq!(net.stats().dropped.get(DropReason::HairpinDisabled), 1);
}

#[test]
fn stacked_nat_maps_to_the_outer_address() {
    let mut net = Network::new(15);
    net.add_stun_server(stun_config()).unwrap();
    let outer = net
        .add_router(RouterConfig::for_type(
            NatType::FullCone,
            DeltaKind::Random,
            0,
        ))
        .unwrap();
    let inner = net
        .add_router(
            RouterConfig::for_type(NatType::PortRestrictedCone, DeltaKind::Equal, 0)
                .behind(Attachment::Behind(outer)),
        )
        .unwrap();
    let h = net.add_host(HostConfig::behind(inner)).unwrap();
    probe(&mut net, h);
    let local = socket(&mut net, h);
    let mapped = binding(&mut net, h, local, addr(PRIMARY), NONE).unwrap();
    assert_eq!(Some(mapped.ip()), net.router_public_ip(outer));
    let inner_ip = net.router_public_ip(inner).unwrap();
    assert_ne!(inner_ip, mapped.ip());
    assert!(
        matches!(inner_ip, IpAddr::V4(v) if v.octets()[0] == 10),
        "{inner_ip}"
    );
    assert_eq!(net.stats().translated, 4, "two NATs each way");
    // The outer NAT filters nothing; the inner one still filters by address and port.
    assert!(binding(&mut net, h, local, addr(PRIMARY), BOTH).is_none());
    assert_eq!(net.stats().dropped.get(DropReason::Filtered), 1);
}

#[test]
fn firewall_does_not_translate_but_filters_unsolicited_inbound() {
    let (mut net, r, h) = setup(
        16,
        RouterConfig::for_type(NatType::SymmetricUdpFirewall, DeltaKind::Random, 9),
    );
    assert_eq!(net.router_public_ip(r), None);
    let local = socket(&mut net, h);
    assert_eq!(
        binding(&mut net, h, local, addr(PRIMARY), NONE),
        Some(local)
    );
    assert!(binding(&mut net, h, local, addr(PRIMARY), PORT).is_none());
    let outside = net.add_host(HostConfig::internet()).unwrap();
    probe(&mut net, outside);
    let from = socket(&mut net, outside);
    net.with_endpoint::<Probe, _>(outside, |p, _| p.send(from, local, b"unsolicited"));
    net.run_for(Duration::from_secs(1), 100);
    assert_eq!(net.stats().dropped.get(DropReason::Filtered), 2);
    assert_eq!(net.stats().translated, 0);
    // Once the inside host has sent to it, the outside host gets through.
    net.with_endpoint::<Probe, _>(h, |p, _| p.send(local, from, b"hello"));
    net.with_endpoint::<Probe, _>(outside, |p, _| p.send(from, local, b"reply"));
    net.run_for(Duration::from_secs(1), 100);
    assert!(
        net.endpoint::<Probe>(h)
            .unwrap()
            .received
            .iter()
            .any(|r| r.bytes == b"reply")
    );
}

#[test]
fn open_internet_firewall_lets_everything_in() {
    let (mut net, _, h) = setup(
        17,
        RouterConfig::for_type(NatType::OpenInternet, DeltaKind::Equal, 0),
    );
    let local = socket(&mut net, h);
    assert_eq!(
        binding(&mut net, h, local, addr(PRIMARY), BOTH),
        Some(local)
    );
    let unused = SocketAddr::new(local.ip(), local.port() + 1);
    let outside = net.add_host(HostConfig::internet()).unwrap();
    probe(&mut net, outside);
    let from = socket(&mut net, outside);
    net.with_endpoint::<Probe, _>(outside, |p, _| p.send(from, unused, b"x"));
    net.run_for(Duration::from_secs(1), 100);
    assert!(
        net.endpoint::<Probe>(h)
            .unwrap()
            .received
            .iter()
            .any(|r| r.to == unused)
    );
}

#[test]
fn blocked_udp_gets_no_response() {
    let (mut net, _, h) = setup(
        18,
        RouterConfig::for_type(NatType::Blocked, DeltaKind::Equal, 0),
    );
    let local = socket(&mut net, h);
    assert_eq!(binding(&mut net, h, local, addr(PRIMARY), NONE), None);
    assert_eq!(net.stats().dropped.get(DropReason::BlockedUdp), 1);
    assert_eq!(net.stats().delivered, 0);
}

#[test]
fn every_type_and_delta_behaves_as_named() {
    for t in NatType::ALL {
        for k in DeltaKind::ALL {
            let cfg = RouterConfig::for_type(t, k, 3);
            assert_eq!(cfg.nat_type(), t);
            let (mut net, _, h) = setup(19, cfg);
            let local = socket(&mut net, h);
            let a = binding(&mut net, h, local, addr(PRIMARY), NONE);
            let b = binding(&mut net, h, local, addr(ALTERNATE), NONE);
            // Filtering, on a socket that has talked to the primary address only.
            let fresh = socket(&mut net, h);
            binding(&mut net, h, fresh, addr(PRIMARY), NONE);
            let both = binding(&mut net, h, fresh, addr(PRIMARY), BOTH);
            match t {
                NatType::Blocked => assert!(a.is_none() && b.is_none()),
                _ => {
                    let (a, b) = (a.unwrap(), b.unwrap());
                    assert_eq!(a == b, t.has_stable_mapping(), "{t} {k}");
                    let firewall =
                        matches!(t, NatType::OpenInternet | NatType::SymmetricUdpFirewall);
                    assert_eq!(a == local, firewall, "{t} {k}: {a} vs {local}");
                    let eif = matches!(t, NatType::OpenInternet | NatType::FullCone);
                    assert_eq!(both.is_some(), eif, "{t} {k}");
                }
            }
        }
    }
}
