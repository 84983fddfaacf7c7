//! [`Negotiator`]: one connection attempt between two nodes, sans-IO.
//!
//! The initiator sends an `Offer` over signaling and, at the same moment, starts the direct
//! strategy (TCP connects need no answer, and it connects to every candidate address — LAN
//! and external, IPv6 and IPv4 — at once), so a reachable peer costs no signaling round
//! trip. Once the responder's `Answer` is in and direct is out of the way, the remaining
//! strategies of the [plan](super::plan) run one after another, each with its own deadline:
//! strategies never race each other, so which one wins is the plan's choice, not luck. A
//! strategy that fails or times out is aborted on both sides (its sockets and connections
//! released) and the next one starts. The relay's allocation is the slowest step of all, so
//! it is requested in the background as soon as a slower strategy starts and the plan shows
//! a relay may be needed.
//!
//! # Who wins
//!
//! Several paths may come up (a direct connect racing a punch, two simultaneous-open
//! SYNs). Both ends must pick the same one, so the responder never picks: it writes its
//! signed HELLO on every path that comes up, and the initiator *commits* to the first path
//! on which a valid responder HELLO arrives by answering with its own HELLO there, and only
//! there. The responder completes on the path where the initiator's HELLO arrives. Every
//! TCP path starts with a [routing preamble](super::handshake::route_preamble) from both
//! ends, so an accepting driver can tell which attempt a connection belongs to.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::handshake::{self, HELLO_LEN, ROUTE_LEN, Role};
use super::io::{Action, TcpEvent, TcpId};
use super::message::{AttemptId, Body, NegotiationMessage, PunchFacts, PunchKind};
use super::pipe::{DatagramPipe, Path, Pipe};
use super::plan::{self, Side};
use super::strategy::Strategy;
use crate::addr::{NodeAddr, Route};
use crate::identity::{Identity, PublicKey};
use crate::nat::probe::{ProbeId, ProbeOutcome, ProbeSpec, Prober, Schedule};
use crate::nat::{DeltaKind, NatType};
use crate::punch::{
    BirthdayPlan, MappingFacts, PortRange, PunchConfig, UdpPunch, UdpPunchEvent, predict_ports,
};
use crate::rng::Rng;
use crate::stream::{Config as StreamConfig, Connection};
use crate::time::Timeout;
use crate::transmit::{DatagramQueue, Transmit};
use crate::turn::{TurnClient, TurnClientConfig, TurnClientEvent};

/// Port guesses per predicted mapping.
const GUESSES: usize = 8;

/// The birthday plan: 384 mappings on the random-port side, 1 500 probes from the
/// stable side, both at 100 packets/s. Expected hits `K·M/R` ≈ 8.9 over 1024–65535, so
/// a miss is ≈ 0.01 % without loss, and still ≈ 0.07 % when each hit's first probe
/// crosses two 10 %-lossy uplinks (the random side keeps probing on the hit path).
fn birthday() -> BirthdayPlan {
    BirthdayPlan {
        sockets: 384,
        probes: 1500,
        ..BirthdayPlan::default()
    }
}
/// Most direct-connect candidates tried at once.
const MAX_CANDIDATES: usize = 8;
/// Between rounds of fresh connects for direct and reverse.
const REDIAL: Duration = Duration::from_secs(1);
/// Rounds of fresh connects after the first.
const REDIALS: u32 = 7;
/// Most bytes buffered on a TCP path before its handshake completes.
const MAX_TCP_BUFFER: usize = ROUTE_LEN + HELLO_LEN + 64 * 1024;
/// Most queued datagrams and actions.
const MAX_QUEUE: usize = 4096;

/// A TURN server and its long-term credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnSpec {
    /// Where it listens.
    pub server: SocketAddr,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// How long each step may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// For the responder's `Answer` to the `Offer`.
    pub answer: Duration,
    /// For the direct strategy.
    pub direct: Duration,
    /// For the reverse strategy.
    pub reverse: Duration,
    /// For a TCP punch, from its start.
    pub tcp_punch: Duration,
    /// For a UDP punch, from its start (birthday probing takes about 15 s).
    pub udp_punch: Duration,
    /// For the relay, from its start.
    pub relay: Duration,
    /// For a STUN observation before punching.
    pub stun: Duration,
    /// Added to both punch starts: time to open sockets.
    pub margin: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            answer: Duration::from_secs(20),
            direct: Duration::from_secs(16),
            reverse: Duration::from_secs(16),
            tcp_punch: Duration::from_secs(24),
            udp_punch: Duration::from_secs(30),
            relay: Duration::from_secs(20),
            stun: Duration::from_secs(3),
            margin: Duration::from_millis(30),
        }
    }
}

impl Timeouts {
    fn of(&self, s: Strategy) -> Duration {
        match s {
            Strategy::Direct => self.direct,
            Strategy::Reverse => self.reverse,
            Strategy::TcpPunch => self.tcp_punch,
            Strategy::UdpPunch => self.udp_punch,
            Strategy::Relay => self.relay,
        }
    }

    fn total(&self) -> Duration {
        self.answer
            + self.direct
            + self.reverse
            + self.tcp_punch
            + self.udp_punch
            + self.relay
            + 2 * self.stun
    }
}

/// What a negotiator needs to know about its own node.
#[derive(Debug, Clone)]
pub struct NegotiatorConfig {
    /// Our long-term key: signs the HELLO.
    pub identity: Identity,
    /// Our current node address.
    pub ours: NodeAddr,
    /// Our TCP listen sockets (bound with address and port reuse): one per route, the
    /// route's internal address and port. TCP punches leave from them.
    pub listen: Vec<SocketAddr>,
    /// The strategies we allow, in any order (the plan orders them).
    pub strategies: Vec<Strategy>,
    /// STUN servers, for fresh mappings before a UDP punch.
    pub stun: Vec<SocketAddr>,
    /// TURN servers, for the relay.
    pub turn: Vec<TurnSpec>,
    /// Step deadlines.
    pub timeouts: Timeouts,
}

/// Why a responder could not be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiateError {
    /// The bytes were not an Offer.
    #[error("not a connection offer: {0}")]
    NotAnOffer(String),
    /// The Offer's address was unusable.
    #[error("the offer carries a bad node address: {0}")]
    BadAddress(String),
    /// The Offer's address is not the sender's.
    #[error("the offer's node address belongs to another key than its sender's")]
    KeyMismatch,
    /// No address family in common.
    #[error("we share no address family (IPv4/IPv6) with the peer")]
    NoCommonFamily,
}

/// What a negotiation reports.
#[derive(Debug)]
pub enum NegotiationEvent {
    /// A strategy will not run, and why.
    Skipped {
        /// The strategy.
        strategy: Strategy,
        /// Why.
        reason: String,
    },
    /// A strategy started.
    Trying {
        /// The strategy.
        strategy: Strategy,
        /// What it does.
        detail: String,
    },
    /// A strategy failed; the next one starts.
    StrategyFailed {
        /// The strategy.
        strategy: Strategy,
        /// Why.
        reason: String,
    },
    /// The connection is up and authenticated.
    Connected {
        /// The strategy that won.
        strategy: Strategy,
        /// The byte stream.
        pipe: Pipe,
        /// Our end.
        local: SocketAddr,
        /// The peer's end.
        remote: SocketAddr,
    },
    /// Nothing worked.
    Failed {
        /// Why.
        reason: String,
    },
}

/// A TCP connection of this attempt.
#[derive(Debug)]
struct TcpPath {
    strategy: Strategy,
    up: Option<(SocketAddr, SocketAddr)>,
    buf: Vec<u8>,
}

/// A reliable stream over UDP of this attempt, before its handshake completes.
#[derive(Debug)]
struct StreamPath {
    strategy: Strategy,
    pipe: DatagramPipe,
    got: Vec<u8>,
    hello_sent: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PunchPhase {
    /// Waiting for sockets (UDP) .
    Binding,
    /// Asking STUN for our mapping (UDP).
    Observing,
    /// Initiator: Init sent, waiting for Ready. Responder: Ready sent, waiting for Sync.
    Exchanging,
    /// Start time known.
    Scheduled,
    /// Punching.
    Running,
}

#[derive(Debug)]
struct PunchState {
    phase: PunchPhase,
    bind_req: u32,
    sockets: Vec<SocketAddr>,
    /// The STUN observation: a fresh transaction every 200 ms (not RFC 8489's doubling
    /// retransmissions), so a lossy path costs one interval per loss, not a doubling.
    stun: Option<(Prober, ProbeId)>,
    facts: Option<PunchFacts>,
    peer: Option<PunchFacts>,
    /// Initiator: when Init left. Responder: when Init arrived.
    mark: Instant,
    start_at: Option<Instant>,
    punch: Option<UdpPunch>,
}

#[derive(Debug)]
enum RelayMine {
    /// Waiting for a UDP socket (for TURN or plain).
    Binding { req: u32 },
    /// Waiting for the TCP connection to the TURN server.
    Connecting { id: TcpId },
    /// Allocating (or allocated) on our TURN server.
    Turn {
        turn: Box<TurnClient>,
        tcp: Option<TcpId>,
        relayed: Option<SocketAddr>,
    },
    /// A plain UDP socket: the peer allocated.
    Plain { socket: SocketAddr },
}

#[derive(Debug)]
struct RelayState {
    mine: Option<RelayMine>,
    spec: Option<TurnSpec>,
    sent: bool,
    peer: Option<(Option<SocketAddr>, IpAddr)>,
    built: bool,
}

/// One connection attempt. See the module docs.
#[derive(Debug)]
pub struct Negotiator {
    cfg: NegotiatorConfig,
    role: Role,
    attempt: AttemptId,
    peer: NodeAddr,
    rng: Rng,
    ours_route: Route,
    us: Side,
    them: Side,
    same_lan: bool,
    order: Vec<Strategy>,
    /// Initiator: index of the running strategy in `order` (direct aside).
    stage: usize,
    stage_deadline: Option<Instant>,
    answered: Option<Vec<Strategy>>,
    answer_deadline: Instant,
    overall_deadline: Instant,
    direct_deadline: Option<Instant>,
    /// Fresh connects for direct (initiator) or reverse (responder), so that one lost SYN
    /// costs a second, not the kernel's doubling backoff: (strategy, next round, rounds left).
    redial: Option<(Strategy, Instant, u32)>,
    direct_running: bool,
    committed: bool,
    done: bool,
    next_id: u64,
    next_req: u32,
    tcp: BTreeMap<TcpId, TcpPath>,
    tcp_punch: Option<PunchState>,
    udp_punch: Option<PunchState>,
    relay: Option<RelayState>,
    streams: Vec<StreamPath>,
    sockets: Vec<SocketAddr>,
    actions: VecDeque<Action>,
    events: VecDeque<NegotiationEvent>,
    out: DatagramQueue,
}

/// The route pair both sides use for punching and the relay: IPv6 when both have it,
/// else IPv4.
fn primary(ours: &NodeAddr, theirs: &NodeAddr) -> Option<(Route, Route)> {
    for v6 in [true, false] {
        let pick = |a: &NodeAddr| {
            a.interfaces()
                .iter()
                .find_map(|i| if v6 { i.v6 } else { i.v4 })
        };
        if let (Some(a), Some(b)) = (pick(ours), pick(theirs)) {
            return Some((a, b));
        }
    }
    None
}

/// Whether two addresses share a LAN: an external address in common.
fn share_lan(ours: &NodeAddr, theirs: &NodeAddr) -> bool {
    routes(ours).any(|a| routes(theirs).any(|b| a.external == b.external))
}

fn routes(a: &NodeAddr) -> impl Iterator<Item = Route> + '_ {
    a.interfaces()
        .iter()
        .flat_map(|i| i.v6.into_iter().chain(i.v4))
}

/// Where to TCP connect to reach `target` from `from`: its internal address on a shared
/// LAN, its external address when it is on the open internet.
fn connect_candidates(from: &NodeAddr, target: &NodeAddr) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for r in routes(target) {
        let same_family = |x: &Route| x.external.is_ipv4() == r.external.is_ipv4();
        let mut mine = routes(from).filter(same_family).peekable();
        if mine.peek().is_none() {
            continue;
        }
        let mine: Vec<Route> = mine.collect();
        if mine.iter().any(|m| m.external == r.external) {
            out.push(SocketAddr::new(r.internal, r.port));
        }
        if r.nat == NatType::OpenInternet {
            out.push(SocketAddr::new(r.external, r.port));
        }
    }
    out.dedup();
    out.truncate(MAX_CANDIDATES);
    out
}

fn side(route: &Route, has_turn: bool) -> Side {
    Side {
        nat: route.nat,
        delta: route.delta,
        has_turn,
    }
}

fn stream_id(attempt: AttemptId) -> u32 {
    (attempt.0 as u32) ^ ((attempt.0 >> 32) as u32)
}

/// The port a TCP connection from `port` gets on the NAT described by `facts`.
fn tcp_port(facts: &PunchFacts) -> u16 {
    match facts.nat {
        NatType::OpenInternet | NatType::SymmetricUdpFirewall => facts.punch_port,
        _ => match facts.delta.kind {
            DeltaKind::Preserving => {
                (i32::from(facts.punch_port) + facts.delta.value).rem_euclid(65536) as u16
            }
            _ => facts.punch_port,
        },
    }
}

fn random_symmetric(f: &PunchFacts) -> bool {
    f.nat == NatType::Symmetric && f.delta.kind == DeltaKind::Random
}

impl Negotiator {
    fn base(
        now: Instant,
        cfg: NegotiatorConfig,
        role: Role,
        attempt: AttemptId,
        peer: NodeAddr,
        rng: Rng,
    ) -> Result<Self, NegotiateError> {
        let (ours_route, peer_route) =
            primary(&cfg.ours, &peer).ok_or(NegotiateError::NoCommonFamily)?;
        let same_lan = share_lan(&cfg.ours, &peer);
        let has_turn = !cfg.turn.is_empty();
        let us = side(&ours_route, has_turn);
        // The peer's TURN servers are not in its address; assume it has one (the relay
        // fails cleanly, with the peer's Abort, if neither side does).
        let them = side(&peer_route, true);
        let overall_deadline = now + cfg.timeouts.total();
        Ok(Negotiator {
            answer_deadline: now + cfg.timeouts.answer,
            cfg,
            role,
            attempt,
            peer,
            rng,
            ours_route,
            us,
            them,
            same_lan,
            order: Vec::new(),
            stage: 0,
            stage_deadline: None,
            answered: None,
            overall_deadline,
            direct_deadline: None,
            redial: None,
            direct_running: false,
            committed: false,
            done: false,
            next_id: 1,
            next_req: 1,
            tcp: BTreeMap::new(),
            tcp_punch: None,
            udp_punch: None,
            relay: None,
            streams: Vec::new(),
            sockets: Vec::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            out: DatagramQueue::new(MAX_QUEUE),
        })
    }

    /// Starts an attempt to connect to `peer` (the initiator side).
    pub fn connect(
        now: Instant,
        cfg: NegotiatorConfig,
        peer: NodeAddr,
        mut rng: Rng,
    ) -> Result<Self, NegotiateError> {
        let attempt = AttemptId(rng.next_u64());
        let mut n = Self::base(now, cfg, Role::Initiator, attempt, peer, rng)?;
        let p = plan::plan(&n.us, &n.them, &n.cfg.strategies, n.same_lan);
        for (s, why) in p.skipped {
            n.events.push_back(NegotiationEvent::Skipped {
                strategy: s,
                reason: why,
            });
        }
        n.order = p.order;
        let offer = Body::Offer {
            strategies: n.order.clone(),
            addr: n.cfg.ours.to_string(),
        };
        n.signal(offer);
        if n.order.first() == Some(&Strategy::Direct) {
            n.stage = 1;
            n.start_direct(now);
        }
        n.advance(now);
        Ok(n)
    }

    /// Answers an `Offer` from `from` (the responder side).
    pub fn accept(
        now: Instant,
        cfg: NegotiatorConfig,
        from: &PublicKey,
        offer: &[u8],
        rng: Rng,
    ) -> Result<Self, NegotiateError> {
        let m = NegotiationMessage::parse(offer)
            .map_err(|e| NegotiateError::NotAnOffer(e.to_string()))?;
        let Body::Offer { strategies, addr } = m.body else {
            return Err(NegotiateError::NotAnOffer("another message type".into()));
        };
        let peer = NodeAddr::parse(&addr).map_err(|e| NegotiateError::BadAddress(e.to_string()))?;
        if peer.key() != from {
            return Err(NegotiateError::KeyMismatch);
        }
        let mut n = Self::base(now, cfg, Role::Responder, m.attempt, peer, rng)?;
        // Our view of the plan, with the initiator as `I`.
        let enabled: Vec<Strategy> = strategies
            .into_iter()
            .filter(|s| n.cfg.strategies.contains(s))
            .collect();
        let p = plan::plan(&n.them, &n.us, &enabled, n.same_lan);
        n.order = p.order.clone();
        n.signal(Body::Answer {
            strategies: p.order,
        });
        Ok(n)
    }

    /// The attempt's id.
    pub fn attempt(&self) -> AttemptId {
        self.attempt
    }

    /// The peer's key.
    pub fn peer(&self) -> &PublicKey {
        self.peer.key()
    }

    /// The peer's address (the responder learned it from the Offer).
    pub fn peer_addr(&self) -> &NodeAddr {
        &self.peer
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the attempt ended (connected or failed).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Gives up: everything opened is closed, the peer is told.
    pub fn cancel(&mut self, now: Instant) {
        if !self.done {
            self.fail_all(now, "cancelled".into(), true);
        }
    }

    fn signal(&mut self, body: Body) {
        let m = NegotiationMessage {
            attempt: self.attempt,
            body,
        };
        self.actions.push_back(Action::Signal(m.emit()));
    }

    fn tcp_id(&mut self) -> TcpId {
        let id = TcpId(self.next_id & !(1 << 63));
        self.next_id += 1;
        id
    }

    fn req(&mut self) -> u32 {
        let r = self.next_req;
        self.next_req = self.next_req.wrapping_add(1);
        r
    }

    fn hello(&self) -> [u8; HELLO_LEN] {
        let (ini, resp) = self.keys();
        handshake::hello(&self.cfg.identity, self.role, self.attempt, &ini, &resp)
    }

    fn keys(&self) -> (PublicKey, PublicKey) {
        let me = self.cfg.identity.public();
        let them = *self.peer.key();
        match self.role {
            Role::Initiator => (me, them),
            Role::Responder => (them, me),
        }
    }

    fn verify(&self, bytes: &[u8]) -> bool {
        let Ok(h) = <&[u8; HELLO_LEN]>::try_from(bytes) else {
            return false;
        };
        let (ini, resp) = self.keys();
        handshake::verify(h, self.role.peer(), self.attempt, &ini, &resp).is_ok()
    }

    // ---- strategy starts -------------------------------------------------------------

    fn start_direct(&mut self, now: Instant) {
        let cands = connect_candidates(&self.cfg.ours, &self.peer);
        if cands.is_empty() {
            self.strategy_failed(now, Strategy::Direct, "no address to connect to".into());
            return;
        }
        self.events.push_back(NegotiationEvent::Trying {
            strategy: Strategy::Direct,
            detail: format!("TCP connect to {}", list(&cands)),
        });
        self.dial(now, Strategy::Direct, &cands);
        self.direct_running = true;
        self.direct_deadline = Some(now + self.cfg.timeouts.direct);
    }

    /// TCP connects of `strategy` to every candidate, repeated every [`REDIAL`] for
    /// [`REDIALS`] rounds while the strategy runs.
    fn dial(&mut self, now: Instant, strategy: Strategy, cands: &[SocketAddr]) {
        for remote in cands {
            let id = self.tcp_id();
            self.open_tcp(id, strategy, None, *remote);
        }
        let left = match self.redial {
            Some((s, _, left)) if s == strategy => left.saturating_sub(1),
            _ => REDIALS,
        };
        self.redial = (left > 0).then_some((strategy, now + REDIAL, left));
    }

    fn redial_due(&mut self, now: Instant) {
        let Some((strategy, at, _)) = self.redial else {
            return;
        };
        if now < at {
            return;
        }
        let running = match strategy {
            Strategy::Direct => self.direct_running,
            _ => true,
        };
        if !running || self.committed {
            self.redial = None;
            return;
        }
        let cands = connect_candidates(&self.cfg.ours, &self.peer);
        self.dial(now, strategy, &cands);
    }

    fn open_tcp(
        &mut self,
        id: TcpId,
        strategy: Strategy,
        local: Option<SocketAddr>,
        remote: SocketAddr,
    ) {
        self.tcp.insert(
            id,
            TcpPath {
                strategy,
                up: None,
                buf: Vec::new(),
            },
        );
        self.actions
            .push_back(Action::TcpConnect { id, local, remote });
    }

    /// Initiator: start the strategies after direct, in order, once the peer answered.
    fn advance(&mut self, now: Instant) {
        // Direct runs alongside the Offer/Answer exchange, not alongside other strategies:
        // two strategies racing could make the winner depend on luck rather than on the
        // plan.
        if self.done
            || self.role != Role::Initiator
            || self.stage_deadline.is_some()
            || self.direct_running
        {
            return;
        }
        if self.stage >= self.order.len() {
            if !self.direct_running && !self.committed {
                self.fail_all(now, "every strategy failed".into(), true);
            }
            return;
        }
        let Some(agreed) = self.answered.clone() else {
            return;
        };
        let s = self.order[self.stage];
        self.stage += 1;
        if !agreed.contains(&s) {
            self.events.push_back(NegotiationEvent::Skipped {
                strategy: s,
                reason: "the peer does not allow it".into(),
            });
            return self.advance(now);
        }
        self.stage_deadline = Some(now + self.cfg.timeouts.of(s));
        // Warm the relay up while slower strategies run: its allocation takes a few
        // round trips to the TURN server, time a failed punch would otherwise add. It
        // goes first, so that its mapping is made before the punch observes ours: on a
        // NAT that numbers mappings in sequence, a mapping made between the observation
        // and the punch would make the peer's first guess wrong.
        if s != Strategy::Relay && self.order[self.stage..].contains(&Strategy::Relay) {
            self.prepare_relay(now);
        }
        match s {
            Strategy::Direct => {
                self.stage_deadline = None;
                self.start_direct(now);
            }
            Strategy::Reverse => {
                self.events.push_back(NegotiationEvent::Trying {
                    strategy: s,
                    detail: "asking the peer to connect to us".into(),
                });
                self.signal(Body::Reverse);
            }
            Strategy::TcpPunch => self.start_tcp_punch(now),
            Strategy::UdpPunch => self.start_udp_punch(now),
            Strategy::Relay => self.start_relay(now),
        }
    }

    fn my_facts(&self, punch_port: u16, observed: Option<(u16, u16)>) -> PunchFacts {
        PunchFacts {
            nat: self.ours_route.nat,
            delta: self.ours_route.delta,
            external_ip: self.ours_route.external,
            observed,
            punch_port,
        }
    }

    fn listen_socket(&self) -> Option<SocketAddr> {
        let r = &self.ours_route;
        self.cfg
            .listen
            .iter()
            .find(|l| l.ip() == r.internal)
            .or_else(|| {
                self.cfg
                    .listen
                    .iter()
                    .find(|l| l.is_ipv4() == r.internal.is_ipv4())
            })
            .copied()
    }

    fn start_tcp_punch(&mut self, now: Instant) {
        let Some(listen) = self.listen_socket() else {
            self.strategy_failed(now, Strategy::TcpPunch, "no TCP listen socket".into());
            return;
        };
        let facts = self.my_facts(listen.port(), None);
        self.events.push_back(NegotiationEvent::Trying {
            strategy: Strategy::TcpPunch,
            detail: format!("simultaneous open from {listen}"),
        });
        if self.role == Role::Initiator {
            self.signal(Body::PunchInit {
                kind: PunchKind::Tcp,
                facts,
            });
        }
        self.tcp_punch = Some(PunchState {
            phase: PunchPhase::Exchanging,
            bind_req: 0,
            sockets: vec![listen],
            stun: None,
            facts: Some(facts),
            peer: None,
            mark: now,
            start_at: None,
            punch: None,
        });
    }

    /// How many UDP sockets our side of a punch needs: K for the random-port side of a
    /// birthday punch, else two (observe, then punch from a fresh one).
    fn udp_socket_count(&self) -> u16 {
        let me = (self.us.nat, self.us.delta.kind);
        let birthday_random =
            me == (NatType::Symmetric, DeltaKind::Random) && self.them.nat.has_stable_mapping();
        if birthday_random {
            birthday().sockets
        } else {
            2
        }
    }

    fn start_udp_punch(&mut self, now: Instant) {
        let req = self.req();
        let count = self.udp_socket_count();
        self.actions.push_back(Action::BindUdp {
            req,
            ip: self.ours_route.internal,
            count,
        });
        self.events.push_back(NegotiationEvent::Trying {
            strategy: Strategy::UdpPunch,
            detail: format!("UDP hole punching from {count} socket(s)"),
        });
        self.udp_punch = Some(PunchState {
            phase: PunchPhase::Binding,
            bind_req: req,
            sockets: Vec::new(),
            stun: None,
            facts: None,
            peer: None,
            mark: now,
            start_at: None,
            punch: None,
        });
    }

    fn prepare_relay(&mut self, now: Instant) {
        if self.relay.is_some() {
            return;
        }
        let fam = self.ours_route.internal.is_ipv4();
        let spec = self
            .cfg
            .turn
            .iter()
            .find(|t| t.server.is_ipv4() == fam)
            .cloned();
        let mine = match &spec {
            Some(t) if self.us.nat == NatType::Blocked => {
                let id = self.tcp_id();
                self.open_tcp(id, Strategy::Relay, None, t.server);
                RelayMine::Connecting { id }
            }
            _ => {
                let req = self.req();
                self.actions.push_back(Action::BindUdp {
                    req,
                    ip: self.ours_route.internal,
                    count: 1,
                });
                RelayMine::Binding { req }
            }
        };
        let _ = now;
        self.relay = Some(RelayState {
            mine: Some(mine),
            spec,
            sent: false,
            peer: None,
            built: false,
        });
    }

    fn start_relay(&mut self, now: Instant) {
        self.prepare_relay(now);
        let detail = match self.relay.as_ref().and_then(|r| r.spec.as_ref()) {
            Some(t) => format!("TURN relay via {}", t.server),
            None => "through the peer's TURN relay".into(),
        };
        self.events.push_back(NegotiationEvent::Trying {
            strategy: Strategy::Relay,
            detail,
        });
        if let Some(r) = self.relay.as_mut() {
            // Our Relay message goes out once the allocation (or socket) is ready.
            r.sent = false;
        }
        self.pump(now);
    }

    // ---- inputs -----------------------------------------------------------------------

    /// A negotiation message from the peer (already opened and verified by signaling).
    pub fn handle_signal(&mut self, now: Instant, body: &[u8]) {
        if self.done {
            return;
        }
        let Ok(m) = NegotiationMessage::parse(body) else {
            return;
        };
        if m.attempt != self.attempt {
            return;
        }
        match (self.role, m.body) {
            (Role::Initiator, Body::Answer { strategies }) if self.answered.is_none() => {
                self.answered = Some(strategies);
                self.advance(now);
            }
            (Role::Responder, Body::Reverse) if self.order.contains(&Strategy::Reverse) => {
                let cands = connect_candidates(&self.cfg.ours, &self.peer);
                self.events.push_back(NegotiationEvent::Trying {
                    strategy: Strategy::Reverse,
                    detail: format!("TCP connect to {}", list(&cands)),
                });
                self.dial(now, Strategy::Reverse, &cands);
            }
            (Role::Responder, Body::PunchInit { kind, facts }) => {
                self.responder_punch(now, kind, facts)
            }
            (
                Role::Initiator,
                Body::PunchReady {
                    kind,
                    facts,
                    held_ms,
                },
            ) => self.initiator_ready(now, kind, facts, held_ms),
            (Role::Responder, Body::Sync { kind, delay_ms }) => {
                let st = match kind {
                    PunchKind::Tcp => self.tcp_punch.as_mut(),
                    PunchKind::Udp => self.udp_punch.as_mut(),
                };
                if let Some(st) = st
                    && st.phase == PunchPhase::Exchanging
                {
                    st.phase = PunchPhase::Scheduled;
                    st.start_at = Some(now + Duration::from_millis(u64::from(delay_ms)));
                }
            }
            (_, Body::Relay { relayed, source_ip }) => {
                if self.role == Role::Responder && self.relay.is_none() {
                    if !self.order.contains(&Strategy::Relay) {
                        return;
                    }
                    self.start_relay(now);
                }
                if let Some(r) = self.relay.as_mut() {
                    r.peer = Some((relayed, source_ip));
                }
            }
            (_, Body::Abort { strategy, reason }) => match strategy {
                None => self.fail_all(now, format!("the peer gave up: {reason}"), false),
                Some(s) => self.drop_strategy(now, s),
            },
            _ => {}
        }
        self.pump(now);
    }

    fn responder_punch(&mut self, now: Instant, kind: PunchKind, facts: PunchFacts) {
        if !self.order.contains(&kind.strategy()) {
            self.signal(Body::Abort {
                strategy: Some(kind.strategy()),
                reason: "not in the agreed plan".into(),
            });
            return;
        }
        match kind {
            PunchKind::Tcp => {
                self.start_tcp_punch(now);
                if let Some(st) = self.tcp_punch.as_mut() {
                    st.peer = Some(facts);
                    if let Some(mine) = st.facts {
                        self.signal(Body::PunchReady {
                            kind,
                            facts: mine,
                            held_ms: 0,
                        });
                    }
                }
            }
            PunchKind::Udp => {
                self.start_udp_punch(now);
                if let Some(st) = self.udp_punch.as_mut() {
                    st.peer = Some(facts);
                    st.mark = now;
                }
            }
        }
    }

    fn initiator_ready(&mut self, now: Instant, kind: PunchKind, facts: PunchFacts, held: u32) {
        let margin = self.cfg.timeouts.margin;
        let st = match kind {
            PunchKind::Tcp => self.tcp_punch.as_mut(),
            PunchKind::Udp => self.udp_punch.as_mut(),
        };
        let Some(st) = st else { return };
        if st.phase != PunchPhase::Exchanging {
            return;
        }
        let rtt = now
            .saturating_duration_since(st.mark)
            .saturating_sub(Duration::from_millis(u64::from(held)));
        st.peer = Some(facts);
        st.phase = PunchPhase::Scheduled;
        st.start_at = Some(now + rtt / 2 + margin);
        let delay_ms = u16::try_from(margin.as_millis()).unwrap_or(u16::MAX);
        self.signal(Body::Sync { kind, delay_ms });
    }

    /// Sockets bound for a [`Action::BindUdp`] request (or why not).
    pub fn handle_bound(
        &mut self,
        now: Instant,
        req: u32,
        result: Result<Vec<SocketAddr>, String>,
    ) {
        let mine = |s: &Option<PunchState>| s.as_ref().is_some_and(|s| s.bind_req == req);
        let relay_req = matches!(
            self.relay.as_ref().and_then(|r| r.mine.as_ref()),
            Some(RelayMine::Binding { req: r }) if *r == req
        );
        let sockets = match result {
            Ok(s) if !s.is_empty() => s,
            Ok(_) | Err(_) => {
                if mine(&self.udp_punch) {
                    self.strategy_failed(now, Strategy::UdpPunch, "cannot bind UDP sockets".into());
                } else if relay_req {
                    self.strategy_failed(now, Strategy::Relay, "cannot bind a UDP socket".into());
                }
                return;
            }
        };
        if self.done || !(mine(&self.udp_punch) || relay_req) {
            self.actions.push_back(Action::ReleaseUdp(sockets));
            return;
        }
        self.sockets.extend(&sockets);
        if mine(&self.udp_punch) {
            self.udp_bound(now, sockets);
        } else if let Some(r) = self.relay.as_mut() {
            let socket = sockets[0];
            if sockets.len() > 1 {
                self.actions
                    .push_back(Action::ReleaseUdp(sockets[1..].to_vec()));
            }
            r.mine = Some(match &r.spec {
                Some(t) => {
                    let mut turn = TurnClient::new(
                        TurnClientConfig::udp(t.server, socket, &t.username, &t.password),
                        self.rng.fork(),
                    );
                    let _ = turn.allocate(now);
                    RelayMine::Turn {
                        turn: Box::new(turn),
                        tcp: None,
                        relayed: None,
                    }
                }
                None => RelayMine::Plain { socket },
            });
        }
        self.pump(now);
    }

    fn udp_bound(&mut self, now: Instant, sockets: Vec<SocketAddr>) {
        let stun_server = self
            .cfg
            .stun
            .iter()
            .find(|s| s.is_ipv4() == sockets[0].is_ipv4())
            .copied();
        let birthday_random = sockets.len() > 2;
        let timeout = self.cfg.timeouts.stun;
        let Some(st) = self.udp_punch.as_mut() else {
            return;
        };
        st.sockets = sockets;
        let observe = match stun_server {
            Some(server) if !birthday_random => {
                let mut prober = Prober::new(self.rng.fork());
                let schedule = Schedule {
                    first_gap: Duration::from_millis(200),
                    backoff: 1.0,
                    max_gap: Duration::from_millis(200),
                    attempts: (timeout.as_millis() / 200).clamp(1, 50) as u32,
                    final_wait: Duration::from_millis(500),
                };
                prober
                    .add(now, ProbeSpec::plain(st.sockets[0], server), schedule)
                    .map(|id| (prober, id))
            }
            _ => None,
        };
        match observe {
            Some(tx) => {
                st.stun = Some(tx);
                st.phase = PunchPhase::Observing;
            }
            None => self.udp_observed(now, None),
        }
    }

    /// Our UDP facts are known: tell the peer (Init or Ready).
    fn udp_observed(&mut self, now: Instant, observed: Option<(u16, u16)>) {
        let Some(st) = self.udp_punch.as_ref() else {
            return;
        };
        let stable = self.us.nat.has_stable_mapping();
        let punch_port = if stable || st.sockets.len() < 2 {
            st.sockets[0].port()
        } else {
            st.sockets[1].port()
        };
        let facts = self.my_facts(punch_port, observed);
        let role = self.role;
        let held = now.saturating_duration_since(st.mark);
        if let Some(st) = self.udp_punch.as_mut() {
            st.facts = Some(facts);
            st.phase = PunchPhase::Exchanging;
            st.stun = None;
            if role == Role::Initiator {
                st.mark = now;
            }
        }
        match role {
            Role::Initiator => self.signal(Body::PunchInit {
                kind: PunchKind::Udp,
                facts,
            }),
            Role::Responder => self.signal(Body::PunchReady {
                kind: PunchKind::Udp,
                facts,
                held_ms: u32::try_from(held.as_millis()).unwrap_or(u32::MAX),
            }),
        }
    }

    /// A datagram on one of the sockets this negotiator asked for.
    pub fn handle_udp(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        if self.done {
            return;
        }
        if let Some(st) = self.udp_punch.as_mut()
            && st.sockets.contains(&destination)
        {
            if let Some((prober, _)) = st.stun.as_mut() {
                prober.handle_input(now, source, destination, bytes);
            }
            if bytes.starts_with(b"P2PH") {
                if let Some(p) = st.punch.as_mut() {
                    p.handle_input(now, source, destination, bytes);
                }
            }
        }
        if let Some(RelayMine::Turn {
            turn, tcp: None, ..
        }) = self.relay.as_mut().and_then(|r| r.mine.as_mut())
            && turn.config().local == destination
        {
            turn.handle_input(now, source, destination, bytes);
        }
        for s in &mut self.streams {
            if s.pipe.accepts(destination) {
                s.pipe.handle_udp(now, source, destination, bytes);
            }
        }
        self.pump(now);
    }

    /// Something happened on a TCP connection of this attempt.
    pub fn handle_tcp(&mut self, now: Instant, event: TcpEvent<'_>) {
        if self.done {
            if let TcpEvent::Accepted { id, .. } = event {
                self.actions.push_back(Action::TcpClose(id));
            }
            return;
        }
        // The TURN control connection.
        let relay_tcp = match self.relay.as_ref().and_then(|r| r.mine.as_ref()) {
            Some(RelayMine::Connecting { id }) => Some(*id),
            Some(RelayMine::Turn { tcp: Some(id), .. }) => Some(*id),
            _ => None,
        };
        let ev_id = match &event {
            TcpEvent::Connected { id, .. }
            | TcpEvent::Accepted { id, .. }
            | TcpEvent::Data { id, .. }
            | TcpEvent::Closed { id, .. } => *id,
        };
        if relay_tcp == Some(ev_id) {
            self.relay_tcp(now, event);
            self.pump(now);
            return;
        }
        if let Some(s) = self
            .streams
            .iter_mut()
            .find(|s| s.pipe.tcp() == Some(ev_id))
        {
            s.pipe.handle_tcp(now, event);
            self.pump(now);
            return;
        }
        match event {
            TcpEvent::Connected { id, local, remote } => {
                let preamble = handshake::route_preamble(self.attempt);
                let hello = (self.role == Role::Responder).then(|| self.hello());
                let Some(p) = self.tcp.get_mut(&id) else {
                    self.actions.push_back(Action::TcpClose(id));
                    return;
                };
                p.up = Some((local, remote));
                let mut bytes = preamble.to_vec();
                if let Some(h) = hello {
                    bytes.extend_from_slice(&h);
                }
                self.actions.push_back(Action::TcpSend { id, bytes });
            }
            TcpEvent::Accepted { id, local, remote } => {
                // Direct (we are the responder) or reverse (we are the initiator).
                let strategy = match self.role {
                    Role::Responder => Strategy::Direct,
                    Role::Initiator => Strategy::Reverse,
                };
                let wanted = match self.role {
                    Role::Responder => self.order.contains(&Strategy::Direct),
                    Role::Initiator => {
                        self.stage > 0 && self.order.get(self.stage - 1) == Some(&Strategy::Reverse)
                    }
                };
                if !wanted || self.tcp.len() >= 64 {
                    self.actions.push_back(Action::TcpClose(id));
                    return;
                }
                self.tcp.insert(
                    id,
                    TcpPath {
                        strategy,
                        up: Some((local, remote)),
                        buf: Vec::new(),
                    },
                );
                let mut bytes = handshake::route_preamble(self.attempt).to_vec();
                if self.role == Role::Responder {
                    bytes.extend_from_slice(&self.hello());
                }
                self.actions.push_back(Action::TcpSend { id, bytes });
            }
            TcpEvent::Data { id, bytes } => {
                let Some(p) = self.tcp.get_mut(&id) else {
                    return;
                };
                if p.buf.len() + bytes.len() > MAX_TCP_BUFFER {
                    self.close_tcp(id);
                    return;
                }
                p.buf.extend_from_slice(bytes);
                self.tcp_progress(now, id);
            }
            TcpEvent::Closed { id, .. } => {
                if let Some(p) = self.tcp.remove(&id) {
                    self.tcp_path_gone(now, p.strategy);
                }
            }
        }
        self.pump(now);
    }

    fn close_tcp(&mut self, id: TcpId) {
        if self.tcp.remove(&id).is_some() {
            self.actions.push_back(Action::TcpClose(id));
        }
    }

    /// A TCP path of `strategy` closed: the strategy fails when it has none left and
    /// cannot open more.
    fn tcp_path_gone(&mut self, now: Instant, strategy: Strategy) {
        if self.tcp.values().any(|p| p.strategy == strategy)
            || self.redial.is_some_and(|(s, _, _)| s == strategy)
        {
            return;
        }
        match strategy {
            Strategy::Direct if self.role == Role::Initiator && self.direct_running => {
                self.strategy_failed(now, strategy, "no candidate address answered".into())
            }
            _ => {}
        }
    }

    fn tcp_progress(&mut self, now: Instant, id: TcpId) {
        let Some(p) = self.tcp.get(&id) else { return };
        if p.buf.len() < ROUTE_LEN {
            return;
        }
        if handshake::route_tcp(&p.buf[..ROUTE_LEN]) != Ok(Some(self.attempt)) {
            self.close_tcp(id);
            return;
        }
        if p.buf.len() < ROUTE_LEN + HELLO_LEN {
            return;
        }
        let ok = self.verify(&p.buf[ROUTE_LEN..ROUTE_LEN + HELLO_LEN]);
        if !ok {
            self.close_tcp(id);
            return;
        }
        if self.role == Role::Initiator {
            if self.committed {
                self.close_tcp(id);
                return;
            }
            self.committed = true;
            let hello = self.hello().to_vec();
            self.actions.push_back(Action::TcpSend { id, bytes: hello });
        }
        let Some(p) = self.tcp.remove(&id) else {
            return;
        };
        let (local, remote) = p.up.unwrap_or((self.ours_socket(), self.ours_socket()));
        let leftover = p.buf[ROUTE_LEN + HELLO_LEN..].to_vec();
        self.finish(now, p.strategy, Pipe::Tcp { id, leftover }, local, remote);
    }

    fn ours_socket(&self) -> SocketAddr {
        SocketAddr::new(self.ours_route.internal, self.ours_route.port)
    }

    fn relay_tcp(&mut self, now: Instant, event: TcpEvent<'_>) {
        let Some(r) = self.relay.as_mut() else { return };
        match (r.mine.take(), event) {
            (Some(RelayMine::Connecting { id }), TcpEvent::Connected { local, .. }) => {
                self.tcp.remove(&id);
                let Some(t) = r.spec.clone() else { return };
                let mut turn = TurnClient::new(
                    TurnClientConfig::tcp(t.server, local, &t.username, &t.password),
                    self.rng.fork(),
                );
                let _ = turn.allocate(now);
                r.mine = Some(RelayMine::Turn {
                    turn: Box::new(turn),
                    tcp: Some(id),
                    relayed: None,
                });
            }
            (
                Some(RelayMine::Turn {
                    mut turn,
                    tcp: Some(id),
                    relayed,
                }),
                ev,
            ) => {
                match ev {
                    TcpEvent::Data { bytes, .. } => {
                        let (server, local) = (turn.config().server, turn.config().local);
                        turn.handle_input(now, server, local, bytes);
                    }
                    TcpEvent::Closed { .. } => turn.handle_connection_closed(now),
                    _ => {}
                }
                r.mine = Some(RelayMine::Turn {
                    turn,
                    tcp: Some(id),
                    relayed,
                });
            }
            (Some(RelayMine::Connecting { id }), TcpEvent::Closed { reason, .. }) => {
                self.tcp.remove(&id);
                let why = format!("cannot reach the TURN server over TCP: {reason}");
                self.relay_failed(now, why);
            }
            (other, _) => r.mine = other,
        }
    }

    fn relay_failed(&mut self, now: Instant, why: String) {
        match self.role {
            Role::Initiator => {
                let running =
                    self.stage > 0 && self.order.get(self.stage - 1) == Some(&Strategy::Relay);
                if running {
                    self.strategy_failed(now, Strategy::Relay, why);
                } else {
                    // Only warming up: forget it; start_relay tries again.
                    self.drop_strategy(now, Strategy::Relay);
                }
            }
            Role::Responder => {
                self.drop_strategy(now, Strategy::Relay);
                self.signal(Body::Abort {
                    strategy: Some(Strategy::Relay),
                    reason: why,
                });
            }
        }
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.done {
            return;
        }
        if now >= self.overall_deadline {
            self.fail_all(now, "the attempt took too long".into(), true);
            return;
        }
        if let Some(d) = self.direct_deadline
            && now >= d
            && self.direct_running
        {
            self.strategy_failed(now, Strategy::Direct, "no answer in time".into());
        }
        if self.role == Role::Initiator
            && self.answered.is_none()
            && now >= self.answer_deadline
            && !self.direct_running
        {
            self.fail_all(
                    now,
                    "the peer did not answer over signaling: is it listening, and are its brokers reachable?".into(),
                    true,
                );
            return;
        }
        if let Some(d) = self.stage_deadline
            && now >= d
            && self.stage > 0
        {
            let s = self.order[self.stage - 1];
            self.strategy_failed(now, s, "timed out".into());
        }
        for st in [self.tcp_punch.as_mut(), self.udp_punch.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Some((prober, _)) = st.stun.as_mut() {
                prober.handle_timeout(now);
            }
            if let Some(p) = st.punch.as_mut() {
                p.handle_timeout(now);
            }
        }
        if let Some(RelayMine::Turn { turn, .. }) =
            self.relay.as_mut().and_then(|r| r.mine.as_mut())
        {
            turn.handle_timeout(now);
        }
        for s in &mut self.streams {
            s.pipe.handle_timeout(now);
        }
        self.redial_due(now);
        self.start_due_punches(now);
        self.pump(now);
    }

    fn start_due_punches(&mut self, now: Instant) {
        // TCP: connect from the listen socket to the predicted port.
        if let Some(st) = self.tcp_punch.as_mut()
            && st.phase == PunchPhase::Scheduled
            && st.start_at.is_some_and(|t| now >= t)
            && let Some(peer) = st.peer
        {
            st.phase = PunchPhase::Running;
            let local = st.sockets[0];
            let remote = SocketAddr::new(peer.external_ip, tcp_port(&peer));
            let id = self.tcp_id();
            self.open_tcp(id, Strategy::TcpPunch, Some(local), remote);
        }
        // UDP: the punch machine.
        let (us, attempt) = (self.us, self.attempt);
        let key = self.punch_key();
        if let Some(st) = self.udp_punch.as_mut()
            && st.phase == PunchPhase::Scheduled
            && st.start_at.is_some_and(|t| now >= t)
            && let (Some(peer), Some(mine)) = (st.peer, st.facts)
        {
            st.phase = PunchPhase::Running;
            let cfg = udp_punch_config(
                &us,
                &mine,
                &peer,
                &st.sockets,
                now,
                attempt,
                key,
                &mut self.rng,
            );
            match cfg.and_then(|c| UdpPunch::new(c).map_err(|e| e.to_string())) {
                Ok(p) => st.punch = Some(p),
                Err(why) => {
                    let why = format!("cannot punch: {why}");
                    self.strategy_failed(now, Strategy::UdpPunch, why);
                }
            }
        }
    }

    /// The key punch packets are authenticated with: derived from both keys and the
    /// attempt id (shared only over sealed signaling).
    fn punch_key(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let (ini, resp) = self.keys();
        let mut h = Sha256::new();
        h.update(b"p2pd punch key v1");
        h.update(self.attempt.0.to_be_bytes());
        h.update(ini.to_bytes());
        h.update(resp.to_bytes());
        h.finalize().into()
    }

    // ---- outputs ----------------------------------------------------------------------

    /// The next UDP datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        self.out.poll()
    }

    /// The next request for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<NegotiationEvent> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout), and why.
    pub fn poll_timeout(&self) -> Option<Timeout> {
        if self.done {
            return None;
        }
        let mut best = Timeout {
            at: self.overall_deadline,
            reason: "attempt deadline",
        };
        let mut consider = |t: Option<Timeout>| {
            if let Some(t) = t
                && t.at < best.at
            {
                best = t;
            }
        };
        consider(self.redial.map(|(_, at, _)| Timeout {
            at,
            reason: "fresh connects",
        }));
        if self.direct_running {
            consider(self.direct_deadline.map(|at| Timeout {
                at,
                reason: "direct deadline",
            }));
        }
        if self.role == Role::Initiator && self.answered.is_none() {
            consider(Some(Timeout {
                at: self.answer_deadline,
                reason: "answer deadline",
            }));
        }
        consider(self.stage_deadline.map(|at| Timeout {
            at,
            reason: "strategy deadline",
        }));
        for st in [self.tcp_punch.as_ref(), self.udp_punch.as_ref()]
            .into_iter()
            .flatten()
        {
            if st.phase == PunchPhase::Scheduled {
                consider(st.start_at.map(|at| Timeout {
                    at,
                    reason: "punch start",
                }));
            }
            consider(st.stun.as_ref().and_then(|(p, _)| p.poll_timeout()));
            consider(st.punch.as_ref().and_then(|p| p.poll_timeout()));
        }
        if let Some(RelayMine::Turn { turn, .. }) =
            self.relay.as_ref().and_then(|r| r.mine.as_ref())
        {
            consider(turn.poll_timeout());
        }
        for s in &self.streams {
            consider(s.pipe.poll_timeout());
        }
        Some(best)
    }

    /// Moves what the sub-machines produced into the queues and reacts to their events.
    fn pump(&mut self, now: Instant) {
        if self.done {
            return;
        }
        self.pump_stun(now);
        self.pump_punch(now);
        self.pump_relay(now);
        self.pump_streams(now);
        if !self.done {
            self.advance(now);
        }
    }

    fn pump_stun(&mut self, now: Instant) {
        let Some((prober, id)) = self.udp_punch.as_mut().and_then(|s| s.stun.as_mut()) else {
            return;
        };
        let mut sends = Vec::new();
        while let Some(t) = prober.poll_transmit() {
            sends.push((t.source, t.destination, t.contents.to_vec()));
        }
        let result = match prober.outcome(*id) {
            ProbeOutcome::Pending => None,
            ProbeOutcome::Answered(a) => Some(Some((a.mapped.port(), a.mapped.port()))),
            _ => Some(None),
        };
        let local_port = prober.spec(*id).map(|s| s.local.port());
        for s in sends {
            self.out.push(s.0, s.1, s.2);
        }
        if let Some(observed) = result {
            let observed = observed.and_then(|(_, ext)| local_port.map(|l| (l, ext)));
            self.udp_observed(now, observed);
        }
    }

    fn pump_punch(&mut self, now: Instant) {
        let Some(st) = self.udp_punch.as_mut() else {
            return;
        };
        let Some(p) = st.punch.as_mut() else { return };
        let mut sends = Vec::new();
        while let Some(t) = p.poll_transmit() {
            sends.push((t.source, t.destination, t.contents.to_vec()));
        }
        let mut outcome = None;
        while let Some(e) = p.poll_event() {
            outcome = Some(e);
        }
        for s in sends {
            self.out.push(s.0, s.1, s.2);
        }
        match outcome {
            Some(UdpPunchEvent::Punched { local, remote }) => {
                let roam = self
                    .udp_punch
                    .as_ref()
                    .map(|st| st.sockets.clone())
                    .unwrap_or_default();
                let mut pipe = self.new_stream(now, Path::Udp { local, remote });
                if let Some(p) = pipe.as_mut() {
                    p.set_roaming(roam);
                }
                self.add_stream(now, Strategy::UdpPunch, pipe);
            }
            Some(UdpPunchEvent::Failed(f)) => {
                let already = self
                    .streams
                    .iter()
                    .any(|s| s.strategy == Strategy::UdpPunch);
                if !already {
                    self.strategy_failed(now, Strategy::UdpPunch, format!("{f:?}"));
                }
            }
            None => {}
        }
    }

    fn new_stream(&self, now: Instant, path: Path) -> Option<DatagramPipe> {
        let cfg = StreamConfig {
            connection_id: stream_id(self.attempt),
            // QUIC's initial RTT (RFC 9002 §6.2.2), not RFC 6298's 1 s: the first
            // packets of a relayed stream may reach the peer's allocation a moment before
            // its permission is installed and be dropped, and waiting a whole second to
            // resend them was the relay's largest setup cost in the lab.
            initial_rto: Duration::from_millis(333),
            ..StreamConfig::default()
        };
        Connection::new(cfg, now)
            .ok()
            .map(|conn| DatagramPipe::new(conn, path))
    }

    fn add_stream(&mut self, now: Instant, strategy: Strategy, pipe: Option<DatagramPipe>) {
        let Some(mut pipe) = pipe else {
            self.strategy_failed(now, strategy, "bad stream configuration".into());
            return;
        };
        let mut hello_sent = false;
        if self.role == Role::Responder {
            let h = self.hello();
            pipe.write(now, &h);
            hello_sent = true;
        }
        self.streams.push(StreamPath {
            strategy,
            pipe,
            got: Vec::new(),
            hello_sent,
        });
    }

    fn pump_relay(&mut self, now: Instant) {
        let Some(r) = self.relay.as_mut() else { return };
        let mut failure = None;
        let mut msg = None;
        match r.mine.as_mut() {
            Some(RelayMine::Turn { turn, tcp, relayed }) => {
                while let Some(t) = turn.poll_transmit() {
                    match tcp {
                        Some(id) => self.actions.push_back(Action::TcpSend {
                            id: *id,
                            bytes: t.contents.to_vec(),
                        }),
                        None => {
                            self.out.push_transmit(&t);
                        }
                    }
                }
                while let Some(e) = turn.poll_event() {
                    match e {
                        TurnClientEvent::Allocated { relayed: a, .. } => *relayed = Some(a),
                        TurnClientEvent::Error(e) if relayed.is_none() => {
                            failure = Some(format!("TURN allocation refused: {e}"));
                        }
                        TurnClientEvent::ServerUnreachable { server, .. } => {
                            failure = Some(format!("TURN server {server} does not answer"));
                        }
                        TurnClientEvent::Expired => failure = Some("TURN allocation lost".into()),
                        _ => {}
                    }
                }
                if let Some(a) = relayed {
                    msg = Some((Some(*a), a.ip()));
                }
            }
            Some(RelayMine::Plain { .. }) => msg = Some((None, self.ours_route.external)),
            _ => {}
        }
        if let Some(why) = failure {
            self.relay_failed(now, why);
            return;
        }
        // Our Relay message goes out when the relay strategy runs (initiator) or was
        // asked for (responder).
        let running = match self.role {
            Role::Initiator => {
                self.stage > 0 && self.order.get(self.stage - 1) == Some(&Strategy::Relay)
            }
            Role::Responder => true,
        };
        let Some(r) = self.relay.as_mut() else { return };
        if let Some((relayed, source_ip)) = msg
            && running
            && !r.sent
        {
            r.sent = true;
            self.signal(Body::Relay { relayed, source_ip });
        }
        let Some(r) = self.relay.as_mut() else { return };
        if r.sent
            && !r.built
            && let Some((peer_relayed, peer_ip)) = r.peer
        {
            let path = match r.mine.take() {
                Some(RelayMine::Turn {
                    mut turn,
                    tcp,
                    relayed: Some(_),
                }) => {
                    let _ = turn.create_permission(now, peer_ip);
                    Some(Path::Relay {
                        turn,
                        peer: peer_relayed,
                        peer_ip,
                        tcp,
                    })
                }
                Some(RelayMine::Plain { socket }) => peer_relayed.map(|remote| Path::Udp {
                    local: socket,
                    remote,
                }),
                other => {
                    r.mine = other;
                    return;
                }
            };
            r.built = true;
            match path {
                Some(path) => {
                    let plain = matches!(path, Path::Udp { .. });
                    let mut pipe = self.new_stream(now, path);
                    if plain && let Some(p) = pipe.as_mut() {
                        p.open_first(now);
                    }
                    self.add_stream(now, Strategy::Relay, pipe);
                    self.pump_streams(now);
                }
                None => self.relay_failed(now, "neither side has a TURN relay".into()),
            }
        }
    }

    fn pump_streams(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.streams.len() {
            let s = &mut self.streams[i];
            // Read the peer's HELLO (exactly HELLO_LEN bytes; the rest stays in the stream).
            while s.got.len() < HELLO_LEN {
                let mut b = [0u8; HELLO_LEN];
                let want = HELLO_LEN - s.got.len();
                let n = s.pipe.read(now, &mut b[..want]);
                if n == 0 {
                    break;
                }
                s.got.extend_from_slice(&b[..n]);
            }
            while let Some(t) = s.pipe.poll_transmit() {
                self.out.push_transmit(&t);
            }
            while let Some(a) = s.pipe.poll_action() {
                self.actions.push_back(a);
            }
            let failed = s.pipe.is_closed();
            let complete = s.got.len() == HELLO_LEN;
            if failed {
                let s = self.streams.remove(i);
                self.stream_failed(now, s.strategy);
                continue;
            }
            if complete {
                let got = std::mem::take(&mut self.streams[i].got);
                if !self.verify(&got) {
                    let s = self.streams.remove(i);
                    self.stream_failed(now, s.strategy);
                    continue;
                }
                if self.role == Role::Initiator {
                    if self.committed {
                        self.streams.remove(i);
                        continue;
                    }
                    self.committed = true;
                    let h = self.hello();
                    let s = &mut self.streams[i];
                    s.pipe.write(now, &h);
                    s.hello_sent = true;
                    while let Some(t) = s.pipe.poll_transmit() {
                        self.out.push_transmit(&t);
                    }
                    while let Some(a) = self.streams[i].pipe.poll_action() {
                        self.actions.push_back(a);
                    }
                }
                let mut s = self.streams.remove(i);
                s.pipe.stop_roaming();
                let local = s.pipe.local_addr();
                let remote = s.pipe.remote_addr().unwrap_or(local);
                self.finish(
                    now,
                    s.strategy,
                    Pipe::Datagram(Box::new(s.pipe)),
                    local,
                    remote,
                );
                return;
            }
            i += 1;
        }
    }

    fn stream_failed(&mut self, now: Instant, strategy: Strategy) {
        if self.role == Role::Initiator {
            self.strategy_failed(now, strategy, "the path broke during the handshake".into());
        }
    }

    // ---- endings ----------------------------------------------------------------------

    /// Releases what `strategy` holds, without events.
    fn drop_strategy(&mut self, _now: Instant, strategy: Strategy) {
        if self.redial.is_some_and(|(s, _, _)| s == strategy) {
            self.redial = None;
        }
        let ids: Vec<TcpId> = self
            .tcp
            .iter()
            .filter(|(_, p)| p.strategy == strategy)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.close_tcp(id);
        }
        let mut release = Vec::new();
        match strategy {
            Strategy::TcpPunch => self.tcp_punch = None,
            Strategy::UdpPunch => {
                if let Some(st) = self.udp_punch.take() {
                    release.extend(st.sockets);
                }
            }
            Strategy::Relay => {
                if let Some(r) = self.relay.take() {
                    match r.mine {
                        Some(RelayMine::Turn { turn, tcp, .. }) => {
                            if let Some(id) = tcp {
                                self.actions.push_back(Action::TcpClose(id));
                            } else {
                                release.push(turn.config().local);
                            }
                        }
                        Some(RelayMine::Plain { socket }) => release.push(socket),
                        Some(RelayMine::Connecting { id }) => {
                            self.actions.push_back(Action::TcpClose(id))
                        }
                        _ => {}
                    }
                }
            }
            Strategy::Direct => self.direct_running = false,
            Strategy::Reverse => {}
        }
        let mut kept = Vec::new();
        for s in std::mem::take(&mut self.streams) {
            if s.strategy == strategy {
                release.extend(s.pipe.sockets());
                if let Some(id) = s.pipe.tcp() {
                    self.actions.push_back(Action::TcpClose(id));
                }
            } else {
                kept.push(s);
            }
        }
        self.streams = kept;
        if !release.is_empty() {
            self.sockets.retain(|s| !release.contains(s));
            self.actions.push_back(Action::ReleaseUdp(release));
        }
    }

    /// Initiator: `strategy` failed; tell the peer and move on.
    fn strategy_failed(&mut self, now: Instant, strategy: Strategy, reason: String) {
        if self.done {
            return;
        }
        self.drop_strategy(now, strategy);
        self.events.push_back(NegotiationEvent::StrategyFailed {
            strategy,
            reason: reason.clone(),
        });
        if self.role == Role::Initiator {
            self.signal(Body::Abort {
                strategy: Some(strategy),
                reason,
            });
            let running = self.stage > 0 && self.order.get(self.stage - 1) == Some(&strategy);
            if running {
                self.stage_deadline = None;
            }
            self.advance(now);
        }
    }

    fn fail_all(&mut self, now: Instant, reason: String, tell: bool) {
        for s in Strategy::ALL {
            self.drop_strategy(now, s);
        }
        if tell {
            self.signal(Body::Abort {
                strategy: None,
                reason: reason.clone(),
            });
        }
        self.done = true;
        self.events.push_back(NegotiationEvent::Failed { reason });
    }

    fn finish(
        &mut self,
        now: Instant,
        strategy: Strategy,
        pipe: Pipe,
        local: SocketAddr,
        remote: SocketAddr,
    ) {
        // Everything else goes: other TCP paths, other sockets, other streams.
        let keep_tcp = match &pipe {
            Pipe::Tcp { id, .. } => Some(*id),
            Pipe::Datagram(p) => p.tcp(),
        };
        let keep_udp = match &pipe {
            Pipe::Tcp { .. } => Vec::new(),
            Pipe::Datagram(p) => p.sockets(),
        };
        for s in Strategy::ALL {
            self.drop_strategy(now, s);
        }
        self.actions.retain(|a| match a {
            Action::TcpClose(id) => Some(*id) != keep_tcp,
            Action::ReleaseUdp(_) => true,
            _ => true,
        });
        for a in &mut self.actions {
            if let Action::ReleaseUdp(v) = a {
                v.retain(|s| !keep_udp.contains(s));
            }
        }
        self.actions
            .retain(|a| !matches!(a, Action::ReleaseUdp(v) if v.is_empty()));
        self.done = true;
        self.events.push_back(NegotiationEvent::Connected {
            strategy,
            pipe,
            local,
            remote,
        });
    }
}

#[allow(clippy::too_many_arguments)]
fn udp_punch_config(
    us: &Side,
    mine: &PunchFacts,
    peer: &PunchFacts,
    sockets: &[SocketAddr],
    now: Instant,
    attempt: AttemptId,
    key: [u8; 32],
    rng: &mut Rng,
) -> Result<PunchConfig, String> {
    let plan = birthday();
    let local_punch = sockets
        .iter()
        .find(|s| s.port() == mine.punch_port)
        .copied()
        .ok_or("the punch socket is gone")?;
    let base = PunchConfig {
        key,
        attempt: attempt.0,
        locals: vec![local_punch],
        candidates: Vec::new(),
        start: now,
        interval: Duration::from_millis(20),
        // 5 s of probes: both starts may drift apart by a lost signaling segment's
        // retransmission (about 1 s) and the windows must still overlap.
        max_packets: 250,
        linger: Duration::from_secs(2),
    };
    let me_random = us.nat == NatType::Symmetric && us.delta.kind == DeltaKind::Random;
    if me_random && peer.nat.has_stable_mapping() {
        // Birthday, our side: K mappings all aimed at the peer's one stable address,
        // probed again for as long as the peer sprays, so a hit is followed up on its
        // path (and the mappings stay fresh).
        let target = peer_stable(peer);
        return Ok(PunchConfig {
            locals: sockets.to_vec(),
            candidates: vec![target],
            interval: plan.interval(),
            max_packets: plan.probes.max(sockets.len() as u32),
            linger: Duration::from_secs(2),
            ..base
        });
    }
    if random_symmetric(peer) && mine.nat.has_stable_mapping() {
        // Birthday, the peer's side: spray its IP's random ports from our stable mapping.
        let targets = plan.targets(rng).map_err(|e| e.to_string())?;
        return Ok(PunchConfig {
            candidates: targets
                .into_iter()
                .map(|p| SocketAddr::new(peer.external_ip, p))
                .collect(),
            interval: plan.interval(),
            max_packets: plan.probes,
            linger: Duration::from_secs(1),
            ..base
        });
    }
    let candidates = if peer.nat.has_stable_mapping() {
        vec![peer_stable(peer)]
    } else {
        let facts = match peer.observed {
            Some((last_local, last_external)) => MappingFacts {
                last_external,
                last_local,
                next_local: peer.punch_port,
                delta: peer.delta,
            },
            None => MappingFacts {
                last_external: peer.punch_port,
                last_local: peer.punch_port,
                next_local: peer.punch_port,
                delta: peer.delta,
            },
        };
        predict_ports(&facts, GUESSES, PortRange::default())
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|p| SocketAddr::new(peer.external_ip, p))
            .collect()
    };
    Ok(PunchConfig { candidates, ..base })
}

/// The peer's stable external endpoint: observed, or its punch port kept.
fn peer_stable(peer: &PunchFacts) -> SocketAddr {
    match peer.observed {
        Some((_, ext)) => SocketAddr::new(peer.external_ip, ext),
        None => SocketAddr::new(peer.external_ip, tcp_port(peer)),
    }
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
