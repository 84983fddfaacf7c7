//! The negotiator's protocol on a perfect in-memory network: every strategy that needs no
//! STUN or TURN server connects two nodes, both ends agree on one path, the handshake
//! authenticates it, and bytes cross it both ways. (NATs, loss and servers are the
//! simulator's job: `sim/tests/matrix.rs`.)

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use p2pd_core::addr::{Interface, MappedPort, NodeAddr, Route};
use p2pd_core::identity::Identity;
use p2pd_core::nat::{Delta, DeltaKind, NatType};
use p2pd_core::negotiate::{
    Action, NegotiationEvent, Negotiator, NegotiatorConfig, Pipe, Strategy, TcpEvent, TcpId,
    Timeouts, route_signal, route_tcp,
};
use p2pd_core::rng::Rng;

const LATENCY: Duration = Duration::from_millis(10);
const PORT: u16 = 4000;

fn addr(id: &Identity, ip: &str, nat: NatType) -> NodeAddr {
    let ip: IpAddr = ip.parse().unwrap();
    let route = Route {
        external: ip,
        internal: ip,
        port: PORT,
        nat,
        delta: Delta {
            kind: DeltaKind::Equal,
            value: 0,
        },
    };
    NodeAddr::new(
        id.public(),
        Vec::new(),
        vec![Interface {
            v4: Some(route),
            v6: None,
        }],
    )
    .unwrap()
}

#[derive(Debug)]
enum Item {
    Signal(usize, Vec<u8>),
    Udp(SocketAddr, SocketAddr, Vec<u8>),
    Tcp(usize, TcpId, TcpIn),
}

#[derive(Debug)]
enum TcpIn {
    Connected(SocketAddr, SocketAddr),
    Data(Vec<u8>),
    Closed,
}

/// One node: its negotiator (until connected), then its pipe.
struct Node {
    cfg: NegotiatorConfig,
    ip: IpAddr,
    neg: Option<Negotiator>,
    connected: Option<(Strategy, Pipe)>,
    received: Vec<u8>,
    failed: Option<String>,
    log: Vec<String>,
}

struct World {
    now: Instant,
    queue: BTreeMap<(Instant, u64), Item>,
    seq: u64,
    nodes: [Node; 2],
    /// (node, id) → (peer node, peer id) for established TCP connections.
    links: BTreeMap<(usize, TcpId), (usize, TcpId)>,
    /// Pending simultaneous-open connects: (node, id, local, remote).
    pending: Vec<(usize, TcpId, SocketAddr, SocketAddr)>,
    accepted: u64,
    /// Accepted connections whose preamble has not arrived yet: (node, id, local, remote, buf).
    unrouted: Vec<(usize, TcpId, SocketAddr, SocketAddr, Vec<u8>)>,
}

impl World {
    fn push(&mut self, at: Instant, item: Item) {
        self.seq += 1;
        self.queue.insert((at, self.seq), item);
    }

    fn node_of_ip(&self, ip: IpAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.ip == ip)
    }

    fn drain(&mut self, i: usize) {
        let now = self.now;
        loop {
            let mut progress = false;
            let mut actions = Vec::new();
            let mut sends = Vec::new();
            let mut events = Vec::new();
            if let Some(n) = self.nodes[i].neg.as_mut() {
                while let Some(a) = n.poll_action() {
                    actions.push(a);
                }
                while let Some(t) = n.poll_transmit() {
                    sends.push((t.source, t.destination, t.contents.to_vec()));
                }
                while let Some(e) = n.poll_event() {
                    events.push(e);
                }
            }
            if let Some((_, Pipe::Datagram(p))) = self.nodes[i].connected.as_mut() {
                while let Some(t) = p.poll_transmit() {
                    sends.push((t.source, t.destination, t.contents.to_vec()));
                }
                let mut buf = [0u8; 4096];
                loop {
                    let k = p.read(now, &mut buf);
                    if k == 0 {
                        break;
                    }
                    self.nodes[i].received.extend_from_slice(&buf[..k]);
                }
                while p.poll_event().is_some() {}
            }
            progress |= !actions.is_empty() || !sends.is_empty() || !events.is_empty();
            for (s, d, b) in sends {
                self.push(now + LATENCY, Item::Udp(s, d, b));
            }
            for a in actions {
                self.action(i, a);
            }
            for e in events {
                self.event(i, e);
            }
            if !progress {
                break;
            }
        }
    }

    fn action(&mut self, i: usize, a: Action) {
        let now = self.now;
        let other = 1 - i;
        match a {
            Action::Signal(b) => self.push(now + LATENCY * 3, Item::Signal(other, b)),
            Action::BindUdp { req, ip, count } => {
                let base = 20000 + (self.seq as u16 % 1000) * 20;
                let socks = (0..count).map(|k| SocketAddr::new(ip, base + k)).collect();
                if let Some(n) = self.nodes[i].neg.as_mut() {
                    n.handle_bound(now, req, Ok(socks));
                }
            }
            Action::ReleaseUdp(_) => {}
            Action::TcpConnect { id, local, remote } => {
                let Some(j) = self.node_of_ip(remote.ip()) else {
                    self.push(now + LATENCY, Item::Tcp(i, id, TcpIn::Closed));
                    return;
                };
                match local {
                    None => {
                        if remote.port() != PORT {
                            self.push(now + LATENCY * 2, Item::Tcp(i, id, TcpIn::Closed));
                            return;
                        }
                        self.accepted += 1;
                        let acc = TcpId::accepted(self.accepted);
                        let mine = SocketAddr::new(self.nodes[i].ip, 30000 + id.0 as u16);
                        self.links.insert((i, id), (j, acc));
                        self.links.insert((j, acc), (i, id));
                        self.push(
                            now + LATENCY * 2,
                            Item::Tcp(i, id, TcpIn::Connected(mine, remote)),
                        );
                        self.unrouted.push((j, acc, remote, mine, Vec::new()));
                    }
                    Some(l) => {
                        // Simultaneous open: pair with the peer's matching connect.
                        if let Some(k) = self
                            .pending
                            .iter()
                            .position(|p| p.0 == j && p.2 == remote && p.3 == l)
                        {
                            let (_, pid, _, _) = self.pending.remove(k);
                            self.links.insert((i, id), (j, pid));
                            self.links.insert((j, pid), (i, id));
                            self.push(now + LATENCY, Item::Tcp(i, id, TcpIn::Connected(l, remote)));
                            self.push(
                                now + LATENCY,
                                Item::Tcp(j, pid, TcpIn::Connected(remote, l)),
                            );
                        } else {
                            self.pending.push((i, id, l, remote));
                        }
                    }
                }
            }
            Action::TcpSend { id, bytes } => {
                if let Some(&(j, pid)) = self.links.get(&(i, id)) {
                    self.push(now + LATENCY, Item::Tcp(j, pid, TcpIn::Data(bytes)));
                }
            }
            Action::TcpClose(id) => {
                if let Some((j, pid)) = self.links.remove(&(i, id)) {
                    self.links.remove(&(j, pid));
                    self.push(now + LATENCY, Item::Tcp(j, pid, TcpIn::Closed));
                }
            }
        }
    }

    fn event(&mut self, i: usize, e: NegotiationEvent) {
        let node = &mut self.nodes[i];
        match e {
            NegotiationEvent::Connected { strategy, pipe, .. } => {
                node.log.push(format!("connected {strategy}"));
                if let Pipe::Tcp { leftover, .. } = &pipe {
                    node.received.extend_from_slice(leftover);
                }
                node.connected = Some((strategy, pipe));
            }
            NegotiationEvent::Failed { reason } => node.failed = Some(reason),
            other => node.log.push(format!("{other:?}")),
        }
    }

    fn deliver(&mut self, item: Item) {
        let now = self.now;
        match item {
            Item::Signal(j, b) => {
                if self.nodes[j].neg.is_none() && self.nodes[j].connected.is_none() {
                    let (_, offer) = route_signal(&b).expect("routable");
                    assert!(offer, "the first message is the offer");
                    let from = self.nodes[1 - j].cfg.identity.public();
                    let cfg = self.nodes[j].cfg.clone();
                    let n = Negotiator::accept(now, cfg, &from, &b, Rng::seed_from_u64(2))
                        .expect("accept");
                    self.nodes[j].neg = Some(n);
                } else if let Some(n) = self.nodes[j].neg.as_mut() {
                    n.handle_signal(now, &b);
                }
                self.drain(j);
            }
            Item::Udp(s, d, b) => {
                let Some(j) = self.node_of_ip(d.ip()) else {
                    return;
                };
                if let Some(n) = self.nodes[j].neg.as_mut() {
                    n.handle_udp(now, s, d, &b);
                }
                if let Some((_, Pipe::Datagram(p))) = self.nodes[j].connected.as_mut() {
                    p.handle_udp(now, s, d, &b);
                }
                self.drain(j);
            }
            Item::Tcp(j, id, ev) => {
                if let Some(k) = self.unrouted.iter().position(|u| u.0 == j && u.1 == id) {
                    // The driver's job: read the preamble, then hand the connection over.
                    let TcpIn::Data(b) = ev else { return };
                    self.unrouted[k].4.extend_from_slice(&b);
                    let buf = self.unrouted[k].4.clone();
                    if route_tcp(&buf).expect("preamble").is_none() {
                        return;
                    }
                    let (_, _, local, remote, buf) = self.unrouted.remove(k);
                    if let Some(n) = self.nodes[j].neg.as_mut() {
                        n.handle_tcp(now, TcpEvent::Accepted { id, local, remote });
                        n.handle_tcp(now, TcpEvent::Data { id, bytes: &buf });
                    }
                    self.drain(j);
                    return;
                }
                if let Some((_, Pipe::Tcp { id: pid, .. })) = self.nodes[j].connected.as_ref()
                    && *pid == id
                {
                    if let TcpIn::Data(b) = ev {
                        self.nodes[j].received.extend_from_slice(&b);
                    }
                    return;
                }
                if let Some(n) = self.nodes[j].neg.as_mut() {
                    match &ev {
                        TcpIn::Connected(l, r) => n.handle_tcp(
                            now,
                            TcpEvent::Connected {
                                id,
                                local: *l,
                                remote: *r,
                            },
                        ),
                        TcpIn::Data(b) => n.handle_tcp(now, TcpEvent::Data { id, bytes: b }),
                        TcpIn::Closed => n.handle_tcp(
                            now,
                            TcpEvent::Closed {
                                id,
                                reason: "closed",
                            },
                        ),
                    }
                }
                self.drain(j);
            }
        }
    }

    fn next_timer(&self) -> Option<(Instant, usize)> {
        let mut best: Option<(Instant, usize)> = None;
        for (i, n) in self.nodes.iter().enumerate() {
            let t = n
                .neg
                .as_ref()
                .and_then(|n| n.poll_timeout())
                .map(|t| t.at)
                .into_iter()
                .chain(match &n.connected {
                    Some((_, Pipe::Datagram(p))) => p.poll_timeout().map(|t| t.at),
                    _ => None,
                });
            for at in t {
                if best.is_none_or(|b| at < b.0) {
                    best = Some((at, i));
                }
            }
        }
        best
    }

    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&World) -> bool) {
        let end = self.now + limit;
        for _ in 0..1_000_000 {
            if done(self) {
                return;
            }
            let next_item = self.queue.keys().next().copied();
            let timer = self.next_timer();
            let item_first = match (next_item, timer) {
                (Some((at, _)), Some(t)) => at <= t.0,
                (Some(_), None) => true,
                _ => false,
            };
            match (next_item, timer) {
                (Some((at, seq)), _) if item_first => {
                    if at > end {
                        return;
                    }
                    self.now = self.now.max(at);
                    let item = self.queue.remove(&(at, seq)).unwrap();
                    self.deliver(item);
                }
                (_, Some((at, i))) => {
                    if at > end {
                        return;
                    }
                    self.now = self.now.max(at);
                    let now = self.now;
                    if let Some(n) = self.nodes[i].neg.as_mut() {
                        n.handle_timeout(now);
                    }
                    if let Some((_, Pipe::Datagram(p))) = self.nodes[i].connected.as_mut() {
                        p.handle_timeout(now);
                    }
                    self.drain(i);
                }
                _ => return,
            }
        }
        panic!("the event loop did not settle");
    }

    fn write(&mut self, i: usize, bytes: &[u8]) {
        let now = self.now;
        match self.nodes[i].connected.as_mut() {
            Some((_, Pipe::Tcp { id, .. })) => {
                let id = *id;
                self.action(
                    i,
                    Action::TcpSend {
                        id,
                        bytes: bytes.to_vec(),
                    },
                );
            }
            Some((_, Pipe::Datagram(p))) => {
                assert_eq!(p.write(now, bytes), bytes.len());
                self.drain(i);
            }
            None => panic!("not connected"),
        }
    }
}

fn world(strategies: &[Strategy], a_nat: NatType, b_nat: NatType) -> World {
    let mut rng = Rng::seed_from_u64(7);
    let ids = [Identity::generate(&mut rng), Identity::generate(&mut rng)];
    let ips = ["192.0.2.1", "192.0.2.2"];
    let nats = [a_nat, b_nat];
    let nodes = [0, 1].map(|i| {
        let ours = addr(&ids[i], ips[i], nats[i]);
        Node {
            cfg: NegotiatorConfig {
                identity: ids[i].clone(),
                ours,
                listen: vec![SocketAddr::new(ips[i].parse().unwrap(), PORT)],
                strategies: strategies.to_vec(),
                stun: Vec::new(),
                turn: Vec::new(),
                timeouts: Timeouts::default(),
            },
            ip: ips[i].parse().unwrap(),
            neg: None,
            connected: None,
            received: Vec::new(),
            failed: None,
            log: Vec::new(),
        }
    });
    World {
        now: Instant::now(),
        queue: BTreeMap::new(),
        seq: 0,
        nodes,
        links: BTreeMap::new(),
        pending: Vec::new(),
        accepted: 0,
        unrouted: Vec::new(),
    }
}

fn connect(strategies: &[Strategy], a_nat: NatType, b_nat: NatType) -> (World, Strategy) {
    let mut w = world(strategies, a_nat, b_nat);
    let peer = w.nodes[1].cfg.ours.clone();
    let n = Negotiator::connect(w.now, w.nodes[0].cfg.clone(), peer, Rng::seed_from_u64(1))
        .expect("connect");
    w.nodes[0].neg = Some(n);
    w.drain(0);
    w.run_until(Duration::from_secs(60), |w| {
        w.nodes.iter().all(|n| n.connected.is_some()) || w.nodes[0].failed.is_some()
    });
    let [a, b] = &w.nodes;
    assert!(
        a.connected.is_some() && b.connected.is_some(),
        "not connected: a {:?} {:?} / b {:?} {:?}",
        a.failed,
        a.log,
        b.failed,
        b.log
    );
    let sa = a.connected.as_ref().unwrap().0;
    let sb = b.connected.as_ref().unwrap().0;
    assert_eq!(sa, sb, "both ends agree on the strategy");
    w.nodes[0].neg = None;
    w.nodes[1].neg = None;
    // Bytes both ways.
    let big: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    w.write(0, &big);
    w.write(1, b"pong");
    w.run_until(Duration::from_secs(30), |w| {
        w.nodes[1].received.len() >= big.len() && w.nodes[0].received.len() >= 4
    });
    assert_eq!(w.nodes[1].received, big);
    assert_eq!(w.nodes[0].received, b"pong");
    (w, sa)
}

#[test]
fn direct_to_an_open_peer() {
    let (_, s) = connect(&Strategy::ALL, NatType::FullCone, NatType::OpenInternet);
    assert_eq!(s, Strategy::Direct);
}

#[test]
fn reverse_to_an_open_initiator() {
    let (_, s) = connect(&Strategy::ALL, NatType::OpenInternet, NatType::FullCone);
    assert_eq!(s, Strategy::Reverse);
}

#[test]
fn tcp_punch_between_cones() {
    let (_, s) = connect(
        &Strategy::ALL,
        NatType::FullCone,
        NatType::PortRestrictedCone,
    );
    assert_eq!(s, Strategy::TcpPunch);
}

#[test]
fn udp_punch_when_asked() {
    let (_, s) = connect(
        &[Strategy::UdpPunch],
        NatType::FullCone,
        NatType::RestrictedCone,
    );
    assert_eq!(s, Strategy::UdpPunch);
}

#[test]
fn fallback_after_a_failing_strategy() {
    // Direct is planned (the peer claims to be open) but its port answers nothing
    // here, so the negotiator falls back; reverse is impossible, TCP punch connects.
    let mut w = world(&Strategy::ALL, NatType::FullCone, NatType::OpenInternet);
    // Make direct fail: the peer's listen port refuses.
    w.nodes[1].cfg.listen = vec!["192.0.2.2:4001".parse().unwrap()];
    let peer = {
        let id = w.nodes[1].cfg.identity.clone();
        let mut a = addr(&id, "192.0.2.2", NatType::OpenInternet);
        // Advertise another port than the test network accepts for direct connects.
        let r = a.interfaces()[0].v4.unwrap();
        a = NodeAddr::new(
            id.public(),
            Vec::new(),
            vec![Interface {
                v4: Some(Route { port: 4001, ..r }),
                v6: None,
            }],
        )
        .unwrap();
        a
    };
    w.nodes[1].cfg.ours = peer.clone();
    let n = Negotiator::connect(w.now, w.nodes[0].cfg.clone(), peer, Rng::seed_from_u64(1))
        .expect("connect");
    w.nodes[0].neg = Some(n);
    w.drain(0);
    w.run_until(Duration::from_secs(60), |w| {
        w.nodes.iter().all(|n| n.connected.is_some()) || w.nodes[0].failed.is_some()
    });
    let log = w.nodes[0].log.join("\n");
    assert!(log.contains("StrategyFailed { strategy: Direct"), "{log}");
    assert_eq!(
        w.nodes[0].connected.as_ref().map(|c| c.0),
        Some(Strategy::TcpPunch),
        "{log}"
    );
}

#[test]
fn nothing_possible_fails_cleanly() {
    let mut w = world(&[Strategy::Relay], NatType::Symmetric, NatType::Symmetric);
    let peer = w.nodes[1].cfg.ours.clone();
    let n = Negotiator::connect(w.now, w.nodes[0].cfg.clone(), peer, Rng::seed_from_u64(1))
        .expect("connect");
    w.nodes[0].neg = Some(n);
    w.drain(0);
    w.run_until(Duration::from_secs(120), |w| w.nodes[0].failed.is_some());
    let why = w.nodes[0].failed.clone().expect("failed");
    assert!(why.contains("every strategy failed"), "{why}");
    assert!(
        w.nodes[0].log.iter().any(|l| l.contains("TURN")),
        "{:?}",
        w.nodes[0].log
    );
}

/// Gives node `i` of `w` a mapped port: its (in this network, unNATed) listen port
/// stands for the port its gateway forwards.
fn with_mapped_port(w: &mut World, i: usize) {
    let ours = w.nodes[i]
        .cfg
        .ours
        .clone()
        .with_mapped_ports(vec![MappedPort {
            interface: 0,
            v6: false,
            port: PORT,
        }])
        .unwrap();
    w.nodes[i].cfg.ours = ours;
}

fn connect_mapped(mapped: usize) -> Strategy {
    let mut w = world(&Strategy::ALL, NatType::Symmetric, NatType::Symmetric);
    for n in &mut w.nodes {
        let ours = n.cfg.ours.clone();
        let r = ours.interfaces()[0].v4.unwrap();
        n.cfg.ours = NodeAddr::new(
            ours.key().to_owned(),
            Vec::new(),
            vec![Interface {
                v4: Some(Route {
                    delta: Delta {
                        kind: DeltaKind::Random,
                        value: 0,
                    },
                    ..r
                }),
                v6: None,
            }],
        )
        .unwrap();
    }
    with_mapped_port(&mut w, mapped);
    let peer = w.nodes[1].cfg.ours.clone();
    let n = Negotiator::connect(w.now, w.nodes[0].cfg.clone(), peer, Rng::seed_from_u64(1))
        .expect("connect");
    w.nodes[0].neg = Some(n);
    w.drain(0);
    w.run_until(Duration::from_secs(60), |w| {
        w.nodes.iter().all(|n| n.connected.is_some()) || w.nodes[0].failed.is_some()
    });
    let [a, b] = &w.nodes;
    let (Some(sa), Some(sb)) = (&a.connected, &b.connected) else {
        panic!("not connected: {:?} {:?} / {:?}", a.failed, a.log, b.log);
    };
    assert_eq!(sa.0, sb.0, "both ends agree on the strategy");
    sa.0
}

#[test]
fn direct_to_a_peer_whose_gateway_forwards_a_port() {
    // Symmetric random × symmetric random, no TURN: only the mapped port connects.
    assert_eq!(connect_mapped(1), Strategy::Direct);
}

#[test]
fn reverse_to_an_initiator_whose_gateway_forwards_a_port() {
    assert_eq!(connect_mapped(0), Strategy::Reverse);
}
