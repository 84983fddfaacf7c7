//! Links, determinism, accounting, timers and topology building.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{PRIMARY, Probe, addr, binding, probe, socket, stun_config};
use p2pd_core::nat::{DeltaKind, NatType};
use p2pd_core::stun::ChangeRequest;
use p2pd_sim::{
    Attachment, DropReason, HostConfig, HostId, InterfaceConfig, LinkConfig, Network, RouterConfig,
    RouterId, SimError, Stats, Stop, TraceKind,
};

/// A sender with `link` and a receiver on a perfect link, both public; the sender sends `n`
/// numbered datagrams at once. Returns the numbers in arrival order and the stats.
fn blast(seed: u64, link: LinkConfig, n: u32) -> (Vec<u32>, Stats) {
    let mut net = Network::new(seed);
    let tx = net
        .add_host(HostConfig::internet().with_link(link))
        .unwrap();
    let rx = net.add_host(HostConfig::internet()).unwrap();
    probe(&mut net, tx);
    probe(&mut net, rx);
    let from = socket(&mut net, tx);
    let to = socket(&mut net, rx);
    net.with_endpoint::<Probe, _>(tx, |p, _| {
        for i in 0..n {
            p.send(from, to, &i.to_be_bytes());
        }
    });
    assert_eq!(net.run_for(Duration::from_secs(5), 100_000), Stop::Idle);
    let got = net.endpoint::<Probe>(rx).unwrap().received.iter();
    let order = got
        .map(|r| u32::from_be_bytes(r.bytes[..4].try_into().unwrap()))
        .collect();
    (order, *net.stats())
}

fn inversions(v: &[u32]) -> usize {
    v.windows(2).filter(|w| w[1] < w[0]).count()
}

#[test]
fn loss_drops_about_the_configured_share() {
    let link = LinkConfig {
        loss: 0.3,
        ..LinkConfig::default()
    };
    let (got, stats) = blast(20, link, 1000);
    let lost = stats.dropped.get(DropReason::Loss);
    assert!((240..=360).contains(&lost), "lost {lost}");
    assert_eq!(got.len() as u64, 1000 - lost);
    assert_eq!(inversions(&got), 0);
}

#[test]
fn duplication_delivers_about_the_configured_share_twice() {
    let link = LinkConfig {
        duplicate: 0.2,
        ..LinkConfig::default()
    };
    let (got, stats) = blast(21, link, 1000);
    assert!((150..=250).contains(&stats.duplicated), "{stats}");
    assert_eq!(got.len() as u64, 1000 + stats.duplicated);
}

#[test]
fn jitter_alone_keeps_order_and_reordering_breaks_it() {
    let jitter = LinkConfig {
        jitter: Duration::from_millis(20),
        ..LinkConfig::default()
    };
    let (got, stats) = blast(22, jitter, 500);
    assert_eq!(got.len(), 500);
    assert_eq!(inversions(&got), 0);
    assert_eq!(stats.held_back, 0);

    let reorder = LinkConfig {
        reorder: 0.1,
        ..jitter
    };
    let (got, stats) = blast(22, reorder, 500);
    assert_eq!(got.len(), 500);
    assert!((25..=75).contains(&stats.held_back), "{stats}");
    assert!(inversions(&got) > 0);
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..500).collect::<Vec<_>>(),
        "nothing lost or invented"
    );
}

/// Several NAT types (one stacked), lossy jittery links, probes and keepalives.
fn busy(seed: u64) -> (Network, Vec<HostId>) {
    let mut net = Network::new(seed);
    net.record_trace(100_000);
    let rough = LinkConfig {
        latency: Duration::from_millis(8),
        jitter: Duration::from_millis(4),
        loss: 0.1,
        duplicate: 0.05,
        reorder: 0.05,
    };
    net.add_stun_server_with_link(stun_config(), rough).unwrap();
    let mut routers: Vec<RouterId> = [
        (NatType::FullCone, DeltaKind::Equal),
        (NatType::RestrictedCone, DeltaKind::Preserving),
        (NatType::PortRestrictedCone, DeltaKind::Random),
        (NatType::Symmetric, DeltaKind::Independent),
        (NatType::SymmetricUdpFirewall, DeltaKind::Equal),
    ]
    .into_iter()
    .map(|(t, k)| {
        net.add_router(RouterConfig::for_type(t, k, 2).with_link(rough))
            .unwrap()
    })
    .collect();
    let cgnat = RouterConfig::for_type(NatType::Symmetric, DeltaKind::Dependent, 4)
        .behind(Attachment::Behind(routers[0]));
    routers.push(net.add_router(cgnat).unwrap());
    let mut hosts = Vec::new();
    for (i, &r) in routers.iter().enumerate() {
        let h = net
            .add_host(HostConfig::behind(r).with_link(rough))
            .unwrap();
        hosts.push(h);
        probe(&mut net, h);
        let ip = net.host_ip(h).unwrap();
        let base = net.free_port_range(h, ip, 8).unwrap();
        net.with_endpoint::<Probe, _>(h, |p, now| {
            for k in 0..8u16 {
                let change = ChangeRequest {
                    change_ip: k % 3 == 1,
                    change_port: k % 2 == 1,
                };
                let server = if k % 4 < 2 {
                    PRIMARY
                } else {
                    common::ALTERNATE
                };
                p.request(SocketAddr::new(ip, base + k), addr(server), change);
            }
            p.tick(
                now,
                Duration::from_millis(250 + 50 * i as u64),
                SocketAddr::new(ip, base),
                addr(PRIMARY),
            );
        });
    }
    net.run_for(Duration::from_secs(10), 1_000_000);
    (net, hosts)
}

#[test]
fn same_seed_same_trace_other_seed_other_trace() {
    let (a, _) = busy(42);
    let (b, _) = busy(42);
    assert_eq!(a.trace_hash(), b.trace_hash());
    assert_eq!(a.stats(), b.stats());
    assert_eq!(a.trace(), b.trace());
    assert!(a.stats().dropped.get(DropReason::Loss) > 0, "{}", a.stats());
    assert!(a.stats().translated > 0);
    let (c, _) = busy(43);
    assert_ne!(a.trace_hash(), c.trace_hash());
    assert_ne!(a.trace(), c.trace());
}

#[test]
fn every_datagram_is_delivered_or_dropped() {
    let (mut net, hosts) = busy(44);
    // Stop the keepalives and let everything in flight land.
    for &h in &hosts {
        net.with_endpoint::<Probe, _>(h, |p, _| p.stop_tick());
    }
    assert_eq!(net.run_for(Duration::from_secs(2), 100_000), Stop::Idle);
    assert_eq!(net.pending_events(), 0);
    let s = net.stats();
    assert_eq!(
        s.sent + s.duplicated,
        s.delivered + s.dropped.total(),
        "{s}"
    );
    let trace = net.trace();
    let delivered = trace
        .iter()
        .filter(|e| matches!(e.kind, TraceKind::Delivered(_)))
        .count();
    assert_eq!(delivered as u64, s.delivered);
    assert!(trace[0].to_string().contains("sent"), "{}", trace[0]);
}

#[test]
fn timers_fire_on_virtual_time() {
    let mut net = Network::new(23);
    let server = net.add_stun_server(stun_config()).unwrap();
    let h = net.add_host(HostConfig::internet()).unwrap();
    probe(&mut net, h);
    let from = socket(&mut net, h);
    let start = net.now();
    net.with_endpoint::<Probe, _>(h, |p, now| {
        p.tick(now, Duration::from_millis(100), from, addr(PRIMARY))
    });
    let wall = Instant::now();
    assert_eq!(net.run_for(Duration::from_secs(1), 1_000), Stop::Deadline);
    assert!(
        wall.elapsed() < Duration::from_millis(500),
        "virtual time must not sleep"
    );
    assert_eq!(net.now() - start, Duration::from_secs(1));
    assert_eq!(net.stats().timeouts, 10);
    // "tick" is not STUN: core's server drops each one and counts it. The tenth, sent at
    // exactly 1 s, is still on the wire (two 5 ms links).
    assert_eq!(net.stun_server(server).unwrap().stats().dropped, 9);
    net.run_for(Duration::from_millis(10), 1_000);
    assert_eq!(net.stun_server(server).unwrap().stats().dropped, 10);
}

#[test]
fn run_stops_on_predicate_and_event_budget() {
    let mut net = Network::new(24);
    net.add_stun_server(stun_config()).unwrap();
    let h = net.add_host(HostConfig::internet()).unwrap();
    probe(&mut net, h);
    let from = socket(&mut net, h);
    net.with_endpoint::<Probe, _>(h, |p, now| {
        p.tick(now, Duration::from_millis(10), from, addr(PRIMARY))
    });
    let far = net.now() + Duration::from_secs(3600);
    assert_eq!(net.run_until(far, 50), Stop::MaxEvents);
    assert_eq!(net.stats().events, 50);
    let stop = net.run_until_with(far, 1_000_000, |n| n.stats().timeouts >= 100);
    assert_eq!(stop, Stop::Done);
    assert_eq!(net.stats().timeouts, 100);
}

#[test]
fn bad_source_no_route_and_no_endpoint_are_counted() {
    let mut net = Network::new(25);
    let nat = net.add_router(RouterConfig::default()).unwrap();
    let h = net.add_host(HostConfig::behind(nat)).unwrap();
    let silent = net.add_host(HostConfig::internet()).unwrap();
    probe(&mut net, h);
    let local = socket(&mut net, h);
    let silent_addr = SocketAddr::new(net.host_ip(silent).unwrap(), 9);
    net.with_endpoint::<Probe, _>(h, |p, _| {
        p.send(addr("192.0.2.7:1000"), addr(PRIMARY), b"spoofed");
        p.send(SocketAddr::new(local.ip(), 0), addr(PRIMARY), b"port zero");
        p.send(local, addr("192.0.2.99:53"), b"nowhere");
        p.send(local, silent_addr, b"nobody home");
    });
    net.run_for(Duration::from_secs(1), 100);
    let d = net.stats().dropped;
    assert_eq!(d.get(DropReason::BadSource), 2);
    assert_eq!(d.get(DropReason::NoRoute), 1);
    assert_eq!(d.get(DropReason::NoEndpoint), 1);
    assert_eq!(d.total(), 4);
}

#[test]
fn multihomed_host_sends_from_each_interface() {
    let mut net = Network::new(26);
    net.add_stun_server(stun_config()).unwrap();
    let nat = net.add_router(RouterConfig::default()).unwrap();
    let public: IpAddr = "198.51.100.10".parse().unwrap();
    let h = net
        .add_host(
            HostConfig::behind(nat)
                .with_interface(InterfaceConfig::new(Attachment::Internet).with_ip(public)),
        )
        .unwrap();
    probe(&mut net, h);
    let ips = net.host_ips(h);
    assert_eq!(ips.len(), 2);
    assert_eq!(ips[1], public);
    let lan = SocketAddr::new(ips[0], net.free_port(h, ips[0]).unwrap());
    let wan = SocketAddr::new(public, net.free_port(h, public).unwrap());
    let via_nat = binding(&mut net, h, lan, addr(PRIMARY), ChangeRequest::default()).unwrap();
    let direct = binding(&mut net, h, wan, addr(PRIMARY), ChangeRequest::default()).unwrap();
    assert_eq!(Some(via_nat.ip()), net.router_public_ip(nat));
    assert_eq!(direct, wan);
}

#[test]
fn free_ports_are_ephemeral_distinct_and_consecutive_when_asked() {
    let mut net = Network::new(27);
    let h = net.add_host(HostConfig::internet()).unwrap();
    let ip = net.host_ip(h).unwrap();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let p = net.free_port(h, ip).unwrap();
        assert!(p >= 49152);
        assert!(seen.insert(p), "port {p} handed out twice");
    }
    let start = net.free_port_range(h, ip, 16).unwrap();
    for p in start..start + 16 {
        assert!(seen.insert(p), "port {p} of the range was taken");
    }
    let other: IpAddr = "192.0.2.1".parse().unwrap();
    assert_eq!(
        net.free_port(h, other),
        Err(SimError::NotHostAddress { host: h, ip: other })
    );
    assert_eq!(net.free_port_range(h, ip, 0), Err(SimError::NoFreePort(0)));
}

#[test]
fn building_mistakes_are_errors() {
    let mut net = Network::new(28);
    let ip: IpAddr = "198.51.100.1".parse().unwrap();
    let iface = InterfaceConfig::new(Attachment::Internet).with_ip(ip);
    net.add_host(HostConfig::default().with_interface(iface.clone()))
        .unwrap();
    assert_eq!(
        net.add_host(HostConfig::default().with_interface(iface)),
        Err(SimError::AddressInUse(ip))
    );
    assert_eq!(
        net.add_host(HostConfig::default()),
        Err(SimError::NoInterfaces)
    );
    let ghost = {
        let mut other = Network::new(0);
        other.add_router(RouterConfig::default()).unwrap();
        other.add_router(RouterConfig::default()).unwrap()
    };
    assert_eq!(
        net.add_host(HostConfig::behind(ghost)),
        Err(SimError::UnknownRouter(ghost))
    );
    let h = net.add_host(HostConfig::internet()).unwrap();
    probe(&mut net, h);
    assert_eq!(net.attach(h, Probe::new(0)), Err(SimError::HostBusy(h)));
    let mut bad = stun_config();
    bad.alternate = Some(addr("203.0.113.2:3478"));
    assert!(matches!(
        net.add_stun_server(bad),
        Err(SimError::StunConfig(_))
    ));
    // A failed host leaves no address behind: the primary's IP is still free.
    assert!(net.add_stun_server(stun_config()).is_ok());
}

#[test]
fn a_boxed_endpoint_runs_too() {
    let mut net = Network::new(29);
    net.add_stun_server(stun_config()).unwrap();
    let h = net.add_host(HostConfig::internet()).unwrap();
    let from = SocketAddr::new(net.host_ip(h).unwrap(), 5000);
    let mut p = Probe::new(1);
    p.request(from, addr(PRIMARY), ChangeRequest::default());
    let boxed: Box<dyn p2pd_sim::Endpoint> = Box::new(p);
    net.attach(h, boxed).unwrap();
    net.run_for(Duration::from_secs(1), 100);
    assert_eq!(net.stats().delivered, 2);
    assert!(net.endpoint::<Box<dyn p2pd_sim::Endpoint>>(h).is_some());
}
