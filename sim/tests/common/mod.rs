//! A tiny test endpoint: sends STUN Binding requests (and raw datagrams) from chosen local
//! addresses, records what comes back.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use p2pd_core::rng::Rng;
use p2pd_core::stun::{
    ChangeRequest, Class, Message, MessageBuilder, MessageType, TransactionId, XorMappedAddress,
};
use p2pd_sim::{Datagram, Endpoint, HostId, Network};

pub const PRIMARY: &str = "203.0.113.1:3478";
pub const ALTERNATE: &str = "203.0.113.2:3479";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The RFC 5780 server every test uses.
pub fn stun_config() -> p2pd_core::stun::ServerConfig {
    p2pd_core::stun::ServerConfig {
        primary: addr(PRIMARY),
        alternate: Some(addr(ALTERNATE)),
        software: None,
    }
}

/// A datagram that reached the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
    /// XOR-MAPPED-ADDRESS when it was a Binding success response.
    pub mapped: Option<SocketAddr>,
}

#[derive(Debug)]
pub struct Probe {
    rng: Rng,
    out: VecDeque<Datagram>,
    pub received: Vec<Received>,
    /// A datagram sent every `period` from `from` to `to` on timeouts (keepalive), if set.
    pub ticker: Option<(Duration, SocketAddr, SocketAddr)>,
    next_tick: Option<Instant>,
}

impl Probe {
    pub fn new(seed: u64) -> Self {
        Probe {
            rng: Rng::seed_from_u64(seed),
            out: VecDeque::new(),
            received: Vec::new(),
            ticker: None,
            next_tick: None,
        }
    }

    /// Queues a Binding request from `local` to `server`.
    pub fn request(&mut self, local: SocketAddr, server: SocketAddr, change: ChangeRequest) {
        let mut buf = [0u8; 64];
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::BINDING_REQUEST,
            TransactionId::random(&mut self.rng),
        )
        .unwrap();
        if change != ChangeRequest::default() {
            b.add(&change).unwrap();
        }
        b.add_fingerprint().unwrap();
        let bytes = b.finish().to_vec();
        self.out.push_back(Datagram::new(local, server, bytes));
    }

    /// Queues raw bytes.
    pub fn send(&mut self, local: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        self.out.push_back(Datagram::new(local, to, bytes.to_vec()));
    }

    /// Starts a keepalive every `period`.
    pub fn tick(&mut self, now: Instant, period: Duration, from: SocketAddr, to: SocketAddr) {
        self.ticker = Some((period, from, to));
        self.next_tick = Some(now + period);
    }

    /// Stops the keepalive.
    pub fn stop_tick(&mut self) {
        self.ticker = None;
        self.next_tick = None;
    }

    pub fn mapped(&self) -> Vec<SocketAddr> {
        self.received.iter().filter_map(|r| r.mapped).collect()
    }
}

impl Endpoint for Probe {
    fn handle_input(&mut self, _now: Instant, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        let mapped = Message::parse(bytes).ok().and_then(|m| {
            (m.message_type().class == Class::Success)
                .then(|| m.get::<XorMappedAddress>().ok().flatten().map(|x| x.0))
                .flatten()
        });
        self.received.push(Received {
            from,
            to,
            bytes: bytes.to_vec(),
            mapped,
        });
    }

    fn poll_transmit(&mut self) -> Option<Datagram> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next_tick
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let (Some((period, from, to)), Some(at)) = (self.ticker, self.next_tick) {
            if now >= at {
                self.out
                    .push_back(Datagram::new(from, to, b"tick".to_vec()));
                self.next_tick = Some(at + period);
            }
        }
    }
}

/// Attaches a fresh probe to `host`.
pub fn probe(net: &mut Network, host: HostId) {
    net.attach(host, Probe::new(host.index() as u64)).unwrap();
}

/// Sends one Binding request from `local` to `server` and runs the network for a second;
/// returns the mapped address of the response, if one arrived.
pub fn binding(
    net: &mut Network,
    host: HostId,
    local: SocketAddr,
    server: SocketAddr,
    change: ChangeRequest,
) -> Option<SocketAddr> {
    let before = net.endpoint::<Probe>(host).unwrap().received.len();
    net.with_endpoint::<Probe, _>(host, |p, _| p.request(local, server, change))
        .unwrap();
    net.run_for(Duration::from_secs(1), 10_000);
    let p = net.endpoint::<Probe>(host).unwrap();
    p.received[before..].iter().find_map(|r| r.mapped)
}

/// A socket address on `host`'s first interface with a fresh port.
pub fn socket(net: &mut Network, host: HostId) -> SocketAddr {
    let ip = net.host_ip(host).unwrap();
    SocketAddr::new(ip, net.free_port(host, ip).unwrap())
}

/// The benchmark scenario: ten hosts, each behind its own NAT or firewall (all seven types),
/// each sending five Binding requests the way a classifier would — about a hundred
/// datagrams in all. Returns the network after it ran to idle.
pub fn hundred_packets(seed: u64) -> Network {
    use p2pd_core::nat::{DeltaKind, NatType};
    use p2pd_sim::{HostConfig, RouterConfig, Stop};

    let kinds = [
        (NatType::OpenInternet, DeltaKind::Equal),
        (NatType::SymmetricUdpFirewall, DeltaKind::Equal),
        (NatType::FullCone, DeltaKind::Equal),
        (NatType::RestrictedCone, DeltaKind::Preserving),
        (NatType::PortRestrictedCone, DeltaKind::Random),
        (NatType::Symmetric, DeltaKind::Independent),
        (NatType::Symmetric, DeltaKind::Dependent),
        (NatType::Symmetric, DeltaKind::Random),
        (NatType::PortRestrictedCone, DeltaKind::Equal),
        (NatType::Blocked, DeltaKind::Equal),
    ];
    let probes = [
        (PRIMARY, false, false),
        (ALTERNATE, false, false),
        (PRIMARY, true, true),
        (PRIMARY, false, true),
        ("203.0.113.1:3479", false, false),
    ];
    let mut net = Network::new(seed);
    net.add_stun_server(stun_config()).unwrap();
    for (t, k) in kinds {
        let r = net.add_router(RouterConfig::for_type(t, k, 2)).unwrap();
        let h = net.add_host(HostConfig::behind(r)).unwrap();
        let mut p = Probe::new(seed);
        let ip = net.host_ip(h).unwrap();
        let base = net.free_port_range(h, ip, probes.len() as u16).unwrap();
        for (i, (server, change_ip, change_port)) in probes.into_iter().enumerate() {
            let change = p2pd_core::stun::ChangeRequest {
                change_ip,
                change_port,
            };
            p.request(SocketAddr::new(ip, base + i as u16), addr(server), change);
        }
        net.attach(h, p).unwrap();
    }
    let deadline = net.now() + Duration::from_secs(10);
    assert_eq!(net.run_until(deadline, 100_000), Stop::Idle);
    net
}
