//! The connection matrix: every pair of NAT configurations through the real negotiator.
//!
//! The 35 configurations collapse to the 23 a node can tell apart (its address carries
//! what the classifier observes, [`NatCase::observable`]): open internet and the UDP
//! firewall translate nothing, so their five delta kinds are one each, and a UDP-blocked
//! network shows no delta at all. For each ordered pair, two nodes behind the two boxes —
//! a STUN server, a TURN server (UDP and TCP) and a signaling broker on the public side —
//! run [`Negotiator`](p2pd_core::negotiate::Negotiator)s through [`SimNode`]s; the
//! outcome is compared with the oracle ([`p2pd_core::negotiate::expected`]), and the
//! resulting pipe must carry bytes both ways intact.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use p2pd_core::addr::{Interface, NodeAddr, Route};
use p2pd_core::identity::Identity;
use p2pd_core::nat::{Delta, DeltaKind, NatType};
use p2pd_core::negotiate::{NegotiatorConfig, Side, Strategy, Timeouts, TurnSpec, expected};
use p2pd_core::rng::Rng;
use p2pd_core::stun::ServerConfig;
use p2pd_core::turn::TurnServerConfig;

use crate::classify::NatCase;
use crate::error::SimError;
use crate::host::{HostConfig, InterfaceConfig};
use crate::link::LinkConfig;
use crate::nat::RouterConfig;
use crate::network::{Attachment, HostId, Network, Stop};
use crate::node::{NodeRole, SimBroker, SimNode};
use crate::stream::{EMPTY_HASH, fnv1a};

/// The port every node listens on.
pub const LISTEN_PORT: u16 = 4000;
/// Application bytes each side sends once connected.
pub const APP_BYTES: usize = 16 * 1024;
/// One-way latency of each NAT's uplink.
pub const UPLINK_LATENCY: Duration = Duration::from_millis(20);
/// The longest a pair may take, in virtual time.
const PAIR_LIMIT: Duration = Duration::from_secs(200);
/// Events one pair may run (bounds the wall time of a pathological run).
const PAIR_EVENTS: u64 = 3_000_000;

const STUN: &str = "203.0.113.1:3478";
const TURN: &str = "203.0.113.2:3478";
const BROKER: &str = "203.0.113.3:1883";

/// The configurations a node can tell apart (see the module docs), step 7.
pub fn configurations() -> Vec<NatCase> {
    let mut out: Vec<NatCase> = Vec::new();
    for c in NatCase::all() {
        if !out.iter().any(|o| o.observable() == c.observable()) {
            out.push(c);
        }
    }
    out
}

/// One pair's outcome.
#[derive(Debug, Clone)]
pub struct PairOutcome {
    /// The initiator's configuration.
    pub a: NatCase,
    /// The responder's configuration.
    pub b: NatCase,
    /// Whether both ends connected on the same strategy and the bytes crossed intact.
    pub connected: bool,
    /// The strategy that connected (the initiator's view).
    pub strategy: Option<Strategy>,
    /// Virtual milliseconds from the initiator's start to its connection.
    pub virtual_ms: Option<u64>,
    /// What the oracle says must connect.
    pub expected: Option<Strategy>,
    /// Why it did not connect (the initiator's failure, or what went wrong after).
    pub error: Option<String>,
    /// The initiator's negotiation log.
    pub log: Vec<String>,
    /// The responder's.
    pub peer_log: Vec<String>,
}

fn side_of(case: &NatCase) -> (NatType, Delta) {
    let (nat, d) = case.observable();
    let delta = match d {
        Some((kind, v)) => Delta {
            kind,
            value: v.unwrap_or(0),
        },
        // UDP blocked: no observation at all.
        None => Delta {
            kind: DeltaKind::Random,
            value: 0,
        },
    };
    (nat, delta)
}

fn app_bytes(seed: u64) -> Vec<u8> {
    let mut rng = Rng::seed_from_u64(seed);
    let mut b = vec![0u8; APP_BYTES];
    rng.fill(&mut b);
    b
}

/// A pair scenario, built and live: the network (STUN, TURN over UDP and TCP, a
/// signaling broker, two routers with a [`SimNode`] behind each) that [`run_pair`] runs
/// to completion, for a driver that wants to run it step by step — show each step, send
/// application bytes over the pipe ([`SimNode::write`]) and read what arrives.
#[derive(Debug)]
pub struct PairNet {
    /// The network.
    pub net: Network,
    /// The initiator's host (index 0) and the responder's (index 1).
    pub hosts: [HostId; 2],
    /// Their node addresses.
    pub addrs: [NodeAddr; 2],
    /// What the oracle says must connect.
    pub expected: Option<Strategy>,
    /// The STUN server.
    pub stun: SocketAddr,
    /// The TURN server.
    pub turn: SocketAddr,
    /// The signaling broker.
    pub broker: SocketAddr,
}

impl PairNet {
    /// Builds the scenario for `a` connecting to `b`: each node, once connected, first
    /// writes its entry of `apps`; with `capture`, both keep what they receive for
    /// [`SimNode::take_received`]. Nothing has run yet.
    pub fn build(
        a: NatCase,
        b: NatCase,
        seed: u64,
        loss: f64,
        apps: [Vec<u8>; 2],
        capture: bool,
    ) -> Result<PairNet, SimError> {
        let mut net = Network::new(seed);
        let stun: SocketAddr = STUN.parse().expect("constant");
        let turn: SocketAddr = TURN.parse().expect("constant");
        let broker: SocketAddr = BROKER.parse().expect("constant");
        net.add_stun_server(ServerConfig {
            primary: stun,
            alternate: None,
            software: None,
        })?;
        let users = vec![("p2pd".to_string(), "secret".to_string())];
        net.add_turn_server(TurnServerConfig::new(turn, "p2pd.sim", users), seed ^ 0x7e)?;
        let bhost = net.add_host(
            HostConfig::default()
                .with_interface(InterfaceConfig::new(Attachment::Internet).with_ip(broker.ip())),
        )?;
        net.attach(bhost, SimBroker::new(broker))?;

        let link = LinkConfig {
            loss,
            ..LinkConfig::with_latency(UPLINK_LATENCY)
        };
        let mut rng = Rng::seed_from_u64(seed ^ 0x1d);
        let mut nodes = Vec::new();
        for case in [a, b] {
            let router = net.add_router(
                RouterConfig::for_type(case.nat_type, case.delta, case.step).with_link(link),
            )?;
            let host = net.add_host(HostConfig::behind(router))?;
            let ip = net.host_ip(host).ok_or(SimError::UnknownHost(host))?;
            let (nat, delta) = side_of(&case);
            // A UDP-blocked node never learns its external address; it advertises its own.
            let external = match nat {
                NatType::Blocked => ip,
                _ => net.router_public_ip(router).unwrap_or(ip),
            };
            let identity = Identity::generate(&mut rng);
            let route = Route {
                external,
                internal: ip,
                port: LISTEN_PORT,
                nat,
                delta,
            };
            let addr = NodeAddr::new(
                identity.public(),
                Vec::new(),
                vec![Interface {
                    v4: Some(route),
                    v6: None,
                }],
            )?;
            let cfg = NegotiatorConfig {
                identity,
                ours: addr,
                listen: vec![SocketAddr::new(ip, LISTEN_PORT)],
                strategies: Strategy::ALL.to_vec(),
                stun: vec![stun],
                turn: vec![TurnSpec {
                    server: turn,
                    username: "p2pd".into(),
                    password: "secret".into(),
                }],
                timeouts: Timeouts::default(),
            };
            nodes.push((host, ip, cfg));
        }
        let peer = nodes[1].2.ours.clone();
        let sides: Vec<Side> = nodes
            .iter()
            .map(|(_, _, cfg)| {
                let r = cfg.ours.interfaces()[0].v4.expect("built above");
                Side {
                    nat: r.nat,
                    delta: r.delta,
                    has_turn: true,
                    mapped: false,
                }
            })
            .collect();
        let expect = expected(&sides[0], &sides[1], false);
        let now = net.now();
        for ((i, (host, ip, cfg)), app) in nodes.iter().enumerate().zip(apps) {
            let role = if i == 0 {
                NodeRole::Initiator {
                    peer: Box::new(peer.clone()),
                }
            } else {
                NodeRole::Responder
            };
            let node = SimNode::new(
                cfg.clone(),
                role,
                *ip,
                broker,
                app,
                seed ^ (i as u64 + 1),
                now,
            );
            let node = if capture { node.with_capture() } else { node };
            net.attach(*host, node)?;
        }
        Ok(PairNet {
            net,
            hosts: [nodes[0].0, nodes[1].0],
            addrs: [nodes[0].2.ours.clone(), peer],
            expected: expect,
            stun,
            turn,
            broker,
        })
    }

    /// The node on side `i` (0 initiator, 1 responder).
    pub fn node(&self, i: usize) -> Option<&SimNode> {
        self.net.endpoint::<SimNode>(*self.hosts.get(i)?)
    }

    /// Runs until both nodes reach the broker, as listening nodes have long done in real
    /// life (at most [`PAIR_LIMIT`] of virtual time).
    pub fn register(&mut self) -> Result<(), SimError> {
        let hosts = self.hosts;
        let registered = |net: &Network| {
            hosts.iter().all(|h| {
                net.endpoint::<SimNode>(*h)
                    .is_some_and(SimNode::is_registered)
            })
        };
        self.net
            .run_until_with(self.net.now() + PAIR_LIMIT, PAIR_EVENTS, registered);
        if registered(&self.net) {
            Ok(())
        } else {
            Err(SimError::Config(
                "the nodes never reached the broker".into(),
            ))
        }
    }

    /// The initiator starts connecting now; returns the instant.
    pub fn begin(&mut self) -> Instant {
        let start = self.net.now();
        self.net
            .with_endpoint::<SimNode, _>(self.hosts[0], |n, now| n.begin(now));
        start
    }

    /// Runs until `done` holds, at most `limit` of virtual time and [`PAIR_EVENTS`]
    /// events; true if `done` held.
    pub fn run_until(&mut self, limit: Duration, done: impl FnMut(&Network) -> bool) -> bool {
        let deadline = self.net.now() + limit;
        self.net.run_until_with(deadline, PAIR_EVENTS, done) == Stop::Done
    }
}

/// Runs one ordered pair: `a` connects to `b`.
pub fn run_pair(a: NatCase, b: NatCase, seed: u64, loss: f64) -> Result<PairOutcome, SimError> {
    let apps = [app_bytes(seed ^ 0xa), app_bytes(seed ^ 0xb)];
    let mut pair = PairNet::build(a, b, seed, loss, apps.clone(), false)?;
    pair.register()?;
    let start = pair.begin();
    let hosts = pair.hosts;
    let expect = pair.expected;
    let mut net = pair.net;
    let want = [fnv1a(EMPTY_HASH, &apps[1]), fnv1a(EMPTY_HASH, &apps[0])];
    net.run_until_with(start + PAIR_LIMIT, PAIR_EVENTS, |net| {
        let r: Vec<_> = hosts
            .iter()
            .filter_map(|h| net.endpoint::<SimNode>(*h).map(|n| &n.report))
            .collect();
        r.len() == 2 && (r[0].failed.is_some() || r.iter().all(|r| r.received >= APP_BYTES as u64))
    });
    let ra = net
        .endpoint::<SimNode>(hosts[0])
        .map(|n| n.report.clone())
        .unwrap_or_default();
    let rb = net
        .endpoint::<SimNode>(hosts[1])
        .map(|n| n.report.clone())
        .unwrap_or_default();
    let strategy = ra.connected.map(|c| c.0);
    let mut error = ra.failed.clone();
    if error.is_none() {
        if ra.connected.is_none() || rb.connected.is_none() {
            error = Some("a side never connected".into());
        } else if rb.connected.map(|c| c.0) != strategy {
            error = Some("the two ends chose different strategies".into());
        } else if ra.hash != want[0] || rb.hash != want[1] {
            error = Some(format!(
                "bytes did not cross intact ({} and {} of {APP_BYTES} received)",
                ra.received, rb.received
            ));
        }
    }
    Ok(PairOutcome {
        a,
        b,
        connected: error.is_none(),
        strategy,
        virtual_ms: ra
            .connected
            .map(|(_, at)| at.saturating_duration_since(start).as_millis() as u64),
        expected: expect,
        error,
        log: ra.log.iter().map(|(_, l)| l.clone()).collect(),
        peer_log: rb.log.iter().map(|(_, l)| l.clone()).collect(),
    })
}

/// Runs every ordered pair of [`configurations`] on `threads` threads (each pair is its
/// own seeded network, so the result does not depend on the thread count).
pub fn run_matrix(seed: u64, loss: f64, threads: usize) -> Result<Vec<PairOutcome>, SimError> {
    let configs = configurations();
    let n = configs.len();
    let mut pairs: Vec<(usize, NatCase, NatCase, u64)> = Vec::with_capacity(n * n);
    for (i, a) in configs.iter().enumerate() {
        for (j, b) in configs.iter().enumerate() {
            let s = seed ^ ((i as u64) << 32) ^ ((j as u64) << 16);
            pairs.push((i * n + j, *a, *b, s));
        }
    }
    let threads = threads.clamp(1, 64);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::with_capacity(pairs.len()));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&(idx, a, b, s)) = pairs.get(k) else {
                        break;
                    };
                    let r = run_pair(a, b, s, loss);
                    if let Ok(mut v) = results.lock() {
                        v.push((idx, r));
                    }
                }
            });
        }
    });
    let mut v = results.into_inner().unwrap_or_default();
    v.sort_by_key(|(i, _)| *i);
    v.into_iter().map(|(_, r)| r).collect()
}
