//! A p2pd node on a simulated host: core's [`Negotiator`] driven exactly as a runtime drives
//! it — UDP sockets, TCP connections (the simulator's [`TcpStack`]) and signaling through a
//! broker — then the resulting pipe carrying application bytes both ways.
//!
//! Signaling goes through a [`SimBroker`] on the public side over a simulated TCP
//! connection, as MQTT does: each node registers its key; a frame to a key is forwarded to
//! that node's connection with the sender's key in front. (The sealed envelope and MQTT
//! itself are tested on their own; here the broker stands for their latency and
//! reliability, and the negotiator's messages are the real ones.)

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use p2pd_core::addr::NodeAddr;
use p2pd_core::identity::{PUBLIC_KEY_LEN, PublicKey};
use p2pd_core::negotiate::{
    Action, NegotiationEvent, Negotiator, NegotiatorConfig, Pipe, Progress, ROUTE_LEN, Strategy,
    TcpEvent, TcpId as CoreTcpId, route_signal, route_tcp,
};
use p2pd_core::rng::Rng;

use crate::endpoint::{Datagram, Endpoint};
use crate::stream::{EMPTY_HASH, fnv1a};
use crate::tcp::{TcpEvent as SimTcpEvent, TcpId as SimTcpId, TcpStack};

/// Largest signaling frame accepted (a node address fits many times over).
const MAX_FRAME: usize = 16 * 1024;
/// First port a node hands out for its own sockets.
const FIRST_PORT: u16 = 20_000;
/// How long an accepted connection may wait for its attempt to be known.
const UNROUTED_FOR: Duration = Duration::from_secs(10);
/// Received application bytes kept for [`SimNode::take_received`], at most; more are
/// counted and hashed but not kept until the application takes some.
pub const MAX_CAPTURE: usize = 1024 * 1024;
/// Log lines and progress steps kept per node, at most.
const MAX_LOG: usize = 256;

/// Which side of the connection a node is.
#[derive(Debug, Clone)]
pub enum NodeRole {
    /// Connects to this address once [`SimNode::begin`] is called.
    Initiator {
        /// The peer.
        peer: Box<NodeAddr>,
    },
    /// Waits for an offer.
    Responder,
}

/// What a node learned.
#[derive(Debug, Clone, Default)]
pub struct NodeReport {
    /// The strategy that connected, and when.
    pub connected: Option<(Strategy, Instant)>,
    /// Why the attempt failed, if it did.
    pub failed: Option<String>,
    /// The negotiation's events, as text, with their instants.
    pub log: Vec<(Instant, String)>,
    /// The negotiation's events as data (strategies skipped, tried, failed, the winner),
    /// with their instants.
    pub progress: Vec<(Instant, Progress)>,
    /// Application bytes received and their FNV-1a hash.
    pub received: u64,
    /// Hash of what was received.
    pub hash: u64,
}

/// A node: see the module docs.
#[derive(Debug)]
pub struct SimNode {
    cfg: NegotiatorConfig,
    role: NodeRole,
    ip: IpAddr,
    broker: SocketAddr,
    rng: Rng,
    tcp: TcpStack,
    next_port: u16,
    broker_conn: Option<SimTcpId>,
    broker_rx: Vec<u8>,
    pending_frames: Vec<Vec<u8>>,
    registered: bool,
    started: bool,
    start_at: Instant,
    begin_at: Option<Instant>,
    neg: Option<Negotiator>,
    to_sim: BTreeMap<CoreTcpId, SimTcpId>,
    to_core: BTreeMap<SimTcpId, CoreTcpId>,
    unrouted: Vec<(SimTcpId, SocketAddr, SocketAddr, Vec<u8>, Instant)>,
    accepted: u64,
    tx_backlog: BTreeMap<SimTcpId, VecDeque<u8>>,
    out: VecDeque<Datagram>,
    pipe: Option<Pipe>,
    /// Bytes the application writes once connected, and how many went.
    app: Vec<u8>,
    app_written: usize,
    /// Received application bytes kept for the application, when it asked for them.
    capture: Option<Vec<u8>>,
    /// The latest instant the network gave us.
    now: Instant,
    /// The report.
    pub report: NodeReport,
}

impl SimNode {
    /// A node with `cfg` (its `listen` sockets are listened on) on host address `ip`,
    /// signaling through `broker`, created at `now`. Once connected it writes `app`.
    pub fn new(
        cfg: NegotiatorConfig,
        role: NodeRole,
        ip: IpAddr,
        broker: SocketAddr,
        app: Vec<u8>,
        seed: u64,
        now: Instant,
    ) -> Self {
        let mut tcp = TcpStack::new();
        for l in &cfg.listen {
            tcp.listen(*l);
        }
        SimNode {
            cfg,
            role,
            ip,
            broker,
            rng: Rng::seed_from_u64(seed ^ 0x5eed),
            tcp,
            next_port: FIRST_PORT,
            broker_conn: None,
            broker_rx: Vec::new(),
            pending_frames: Vec::new(),
            registered: false,
            started: false,
            start_at: now,
            begin_at: None,
            neg: None,
            to_sim: BTreeMap::new(),
            to_core: BTreeMap::new(),
            unrouted: Vec::new(),
            accepted: 0,
            tx_backlog: BTreeMap::new(),
            out: VecDeque::new(),
            pipe: None,
            app,
            app_written: 0,
            capture: None,
            now,
            report: NodeReport {
                hash: EMPTY_HASH,
                ..NodeReport::default()
            },
        }
    }

    /// Keeps received application bytes (up to [`MAX_CAPTURE`] not yet taken) for
    /// [`take_received`](Self::take_received), as an application reading its socket.
    pub fn with_capture(mut self) -> Self {
        self.capture = Some(Vec::new());
        self
    }

    /// Queues application bytes to send on the connection (sent once it is up, after
    /// what was given at creation). Call it through
    /// [`Network::with_endpoint`](crate::network::Network::with_endpoint) so what it
    /// sends leaves at once.
    pub fn write(&mut self, now: Instant, bytes: &[u8]) {
        self.now = now;
        self.app.extend_from_slice(bytes);
        self.pump(now);
    }

    /// The received application bytes kept since the last call (see
    /// [`with_capture`](Self::with_capture)).
    pub fn take_received(&mut self) -> Vec<u8> {
        self.capture
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The received application bytes kept and not taken yet.
    pub fn pending_received(&self) -> &[u8] {
        self.capture.as_deref().unwrap_or_default()
    }

    /// Application bytes arrived.
    fn on_app_bytes(&mut self, bytes: &[u8]) {
        self.report.received += bytes.len() as u64;
        self.report.hash = fnv1a(self.report.hash, bytes);
        if let Some(c) = self.capture.as_mut() {
            let room = MAX_CAPTURE.saturating_sub(c.len());
            c.extend_from_slice(&bytes[..room.min(bytes.len())]);
        }
    }

    /// The strategies an initiator offers (in order of preference); effective if set
    /// before [`begin`](Self::begin).
    pub fn set_strategies(&mut self, strategies: Vec<Strategy>) {
        self.cfg.strategies = strategies;
    }

    /// Whether the node's broker connection is up (it can be signaled).
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// An initiator starts connecting at `at` (once registered with the broker).
    pub fn begin(&mut self, at: Instant) {
        self.begin_at = Some(at);
    }

    fn port(&mut self) -> SocketAddr {
        let p = self.next_port;
        self.next_port = self.next_port.wrapping_add(1).max(FIRST_PORT);
        SocketAddr::new(self.ip, p)
    }

    fn log(&mut self, now: Instant, text: String) {
        if self.report.log.len() < MAX_LOG {
            self.report.log.push((now, text));
        }
    }

    /// Writes to a sim TCP connection, keeping what does not fit for later.
    fn tcp_write(&mut self, id: SimTcpId, bytes: &[u8]) {
        let backlog = self.tcp_backlog_flush(id);
        if backlog {
            self.tx_backlog.entry(id).or_default().extend(bytes);
            return;
        }
        let n = self.tcp.write(self.now, id, bytes);
        if n < bytes.len() {
            self.tx_backlog.entry(id).or_default().extend(&bytes[n..]);
        }
    }

    /// Flushes a connection's backlog; true if some is still left.
    fn tcp_backlog_flush(&mut self, id: SimTcpId) -> bool {
        let Some(q) = self.tx_backlog.get_mut(&id) else {
            return false;
        };
        while !q.is_empty() {
            let (a, _) = q.as_slices();
            let n = self.tcp.write(self.now, id, a);
            if n == 0 {
                break;
            }
            q.drain(..n);
        }
        let left = !q.is_empty();
        if !left {
            self.tx_backlog.remove(&id);
        }
        left
    }

    fn frame_to_broker(&mut self, to: &PublicKey, body: &[u8]) {
        let mut f = Vec::with_capacity(4 + PUBLIC_KEY_LEN + body.len());
        f.extend_from_slice(&((PUBLIC_KEY_LEN + body.len()) as u32).to_be_bytes());
        f.extend_from_slice(&to.to_bytes());
        f.extend_from_slice(body);
        match (self.broker_conn, self.registered) {
            (Some(id), true) => self.tcp_write(id, &f),
            _ => self.pending_frames.push(f),
        }
    }

    fn start(&mut self, now: Instant) {
        if !self.started {
            self.started = true;
            let local = self.port();
            let id = self.tcp.connect(now, local, self.broker);
            self.broker_conn = Some(id);
        }
        if let NodeRole::Initiator { peer } = &self.role
            && self.neg.is_none()
            && self.report.connected.is_none()
            && self.report.failed.is_none()
            && self.registered
            && self.begin_at.is_some_and(|t| now >= t)
        {
            let peer = (**peer).clone();
            match Negotiator::connect(now, self.cfg.clone(), peer, self.rng.fork()) {
                Ok(n) => self.neg = Some(n),
                Err(e) => self.report.failed = Some(e.to_string()),
            }
        }
    }

    fn on_signal_frame(&mut self, now: Instant, frame: &[u8]) {
        if frame.len() < PUBLIC_KEY_LEN {
            return;
        }
        let mut k = [0u8; PUBLIC_KEY_LEN];
        k.copy_from_slice(&frame[..PUBLIC_KEY_LEN]);
        let Ok(from) = PublicKey::from_bytes(&k) else {
            return;
        };
        let body = &frame[PUBLIC_KEY_LEN..];
        match self.neg.as_mut() {
            Some(n) => {
                if n.peer() == &from {
                    n.handle_signal(now, body);
                }
            }
            None => {
                let is_offer = route_signal(body).is_some_and(|(_, offer)| offer);
                if is_offer
                    && matches!(self.role, NodeRole::Responder)
                    && self.report.connected.is_none()
                {
                    match Negotiator::accept(now, self.cfg.clone(), &from, body, self.rng.fork()) {
                        Ok(n) => {
                            self.neg = Some(n);
                            self.route_parked(now);
                        }
                        Err(e) => self.log(now, format!("offer refused: {e}")),
                    }
                }
            }
        }
    }

    /// Hands parked accepted connections to the negotiator whose attempt they name.
    fn route_parked(&mut self, now: Instant) {
        let Some(attempt) = self.neg.as_ref().map(|n| n.attempt()) else {
            return;
        };
        let mut keep = Vec::new();
        for (sid, local, remote, buf, since) in std::mem::take(&mut self.unrouted) {
            match route_tcp(&buf) {
                Ok(Some(a)) if a == attempt => {
                    self.accepted += 1;
                    let cid = CoreTcpId::accepted(self.accepted);
                    self.to_sim.insert(cid, sid);
                    self.to_core.insert(sid, cid);
                    if let Some(n) = self.neg.as_mut() {
                        n.handle_tcp(
                            now,
                            TcpEvent::Accepted {
                                id: cid,
                                local,
                                remote,
                            },
                        );
                        n.handle_tcp(
                            now,
                            TcpEvent::Data {
                                id: cid,
                                bytes: &buf,
                            },
                        );
                    }
                }
                Ok(None) if now < since + UNROUTED_FOR => {
                    keep.push((sid, local, remote, buf, since))
                }
                Ok(Some(_)) if now < since + UNROUTED_FOR => {
                    keep.push((sid, local, remote, buf, since))
                }
                _ => self.tcp.abort(sid),
            }
        }
        self.unrouted = keep;
    }

    fn core_tcp_event(&mut self, now: Instant, ev: TcpEvent<'_>) {
        let pipe_tcp = match &self.pipe {
            Some(Pipe::Datagram(p)) => p.tcp(),
            _ => None,
        };
        let id = match &ev {
            TcpEvent::Connected { id, .. }
            | TcpEvent::Accepted { id, .. }
            | TcpEvent::Data { id, .. }
            | TcpEvent::Closed { id, .. } => *id,
        };
        if pipe_tcp == Some(id) {
            if let Some(Pipe::Datagram(p)) = self.pipe.as_mut() {
                p.handle_tcp(now, ev);
            }
        } else if let Some(n) = self.neg.as_mut() {
            n.handle_tcp(now, ev);
            self.drain_negotiator(now);
        }
    }

    /// Everything the sim TCP stack reported.
    fn tcp_events(&mut self, now: Instant) {
        for _ in 0..10_000 {
            let Some(ev) = self.tcp.poll_event() else {
                break;
            };
            match ev {
                SimTcpEvent::Connected { id, local, remote } => {
                    if Some(id) == self.broker_conn {
                        let key = self.cfg.identity.public().to_bytes();
                        let mut f = (PUBLIC_KEY_LEN as u32).to_be_bytes().to_vec();
                        f.extend_from_slice(&key);
                        // Registered once the broker acknowledges (an empty frame), as
                        // an MQTT SUBACK confirms a subscription.
                        self.tcp.write(now, id, &f);
                    } else if let Some(&cid) = self.to_core.get(&id) {
                        self.core_tcp_event(
                            now,
                            TcpEvent::Connected {
                                id: cid,
                                local,
                                remote,
                            },
                        );
                    }
                }
                SimTcpEvent::Accepted {
                    id, local, remote, ..
                } => {
                    if self.unrouted.len() < 64 {
                        self.unrouted.push((id, local, remote, Vec::new(), now));
                    } else {
                        self.tcp.abort(id);
                    }
                }
                SimTcpEvent::Readable(id) => self.tcp_readable(now, id),
                SimTcpEvent::Writable(id) => {
                    self.tcp_backlog_flush(id);
                }
                SimTcpEvent::Closed { id } | SimTcpEvent::Failed { id, .. } => {
                    self.tx_backlog.remove(&id);
                    self.unrouted.retain(|u| u.0 != id);
                    if let Some(cid) = self.to_core.remove(&id) {
                        self.to_sim.remove(&cid);
                        self.core_tcp_event(
                            now,
                            TcpEvent::Closed {
                                id: cid,
                                reason: "closed",
                            },
                        );
                    }
                    if Some(id) == self.broker_conn {
                        self.broker_conn = None;
                        self.registered = false;
                    }
                }
            }
        }
    }

    fn tcp_readable(&mut self, now: Instant, id: SimTcpId) {
        let mut buf = [0u8; 16 * 1024];
        for _ in 0..1024 {
            let n = self.tcp.read(now, id, &mut buf);
            if n == 0 {
                break;
            }
            let bytes = &buf[..n];
            if Some(id) == self.broker_conn {
                self.broker_rx.extend_from_slice(bytes);
                while self.broker_rx.len() >= 4 {
                    let len = u32::from_be_bytes([
                        self.broker_rx[0],
                        self.broker_rx[1],
                        self.broker_rx[2],
                        self.broker_rx[3],
                    ]) as usize;
                    if len > MAX_FRAME {
                        self.broker_rx.clear();
                        break;
                    }
                    if self.broker_rx.len() < 4 + len {
                        break;
                    }
                    let frame: Vec<u8> = self.broker_rx.drain(..4 + len).skip(4).collect();
                    if frame.is_empty() {
                        self.registered = true;
                        for f in std::mem::take(&mut self.pending_frames) {
                            self.tcp_write(id, &f);
                        }
                    } else {
                        self.on_signal_frame(now, &frame);
                    }
                }
            } else if let Some(k) = self.unrouted.iter().position(|u| u.0 == id) {
                let u = &mut self.unrouted[k];
                let want = ROUTE_LEN.saturating_sub(u.3.len());
                u.3.extend_from_slice(&bytes[..want.min(bytes.len())]);
                let rest = bytes[want.min(bytes.len())..].to_vec();
                if u.3.len() >= ROUTE_LEN {
                    self.route_parked(now);
                    if !rest.is_empty()
                        && let Some(&cid) = self.to_core.get(&id)
                    {
                        self.core_tcp_event(
                            now,
                            TcpEvent::Data {
                                id: cid,
                                bytes: &rest,
                            },
                        );
                    }
                }
            } else if let Some(&cid) = self.to_core.get(&id) {
                let is_pipe = matches!(&self.pipe, Some(Pipe::Tcp { id: p, .. }) if *p == cid);
                if is_pipe {
                    self.on_app_bytes(bytes);
                } else {
                    self.core_tcp_event(now, TcpEvent::Data { id: cid, bytes });
                }
            }
        }
    }

    fn apply(&mut self, now: Instant, a: Action) {
        match a {
            Action::Signal(body) => {
                if let Some(peer) = self.neg.as_ref().map(|n| *n.peer()) {
                    self.frame_to_broker(&peer, &body);
                }
            }
            Action::BindUdp { req, ip, count } => {
                let socks = (0..count)
                    .map(|_| {
                        let s = self.port();
                        SocketAddr::new(ip, s.port())
                    })
                    .collect();
                if let Some(n) = self.neg.as_mut() {
                    n.handle_bound(now, req, Ok(socks));
                }
            }
            Action::ReleaseUdp(_) => {}
            Action::TcpConnect { id, local, remote } => {
                let local = local.unwrap_or_else(|| self.port());
                let sid = self.tcp.connect(now, local, remote);
                self.to_sim.insert(id, sid);
                self.to_core.insert(sid, id);
            }
            Action::TcpSend { id, bytes } => {
                if let Some(&sid) = self.to_sim.get(&id) {
                    self.tcp_write(sid, &bytes);
                }
            }
            Action::TcpClose(id) => {
                if let Some(sid) = self.to_sim.remove(&id) {
                    self.to_core.remove(&sid);
                    self.tcp.abort(sid);
                }
            }
        }
    }

    fn on_event(&mut self, now: Instant, e: NegotiationEvent) {
        if self.report.progress.len() < MAX_LOG {
            self.report.progress.push((now, Progress::from(&e)));
        }
        match e {
            NegotiationEvent::Connected {
                strategy,
                pipe,
                local,
                remote,
            } => {
                self.log(now, format!("connected: {strategy} {local} -> {remote}"));
                self.report.connected = Some((strategy, now));
                if let Pipe::Tcp { leftover, .. } = &pipe {
                    let leftover = leftover.clone();
                    self.on_app_bytes(&leftover);
                }
                self.pipe = Some(pipe);
            }
            NegotiationEvent::Failed { reason } => {
                self.log(now, format!("failed: {reason}"));
                self.report.failed = Some(reason);
            }
            NegotiationEvent::Skipped { strategy, reason } => {
                self.log(now, format!("skipped {strategy}: {reason}"))
            }
            NegotiationEvent::Trying { strategy, detail } => {
                self.log(now, format!("trying {strategy}: {detail}"))
            }
            NegotiationEvent::StrategyFailed { strategy, reason } => {
                self.log(now, format!("{strategy} failed: {reason}"))
            }
        }
    }

    /// Drains the negotiator, the pipe and the TCP stack until nothing moves.
    fn pump(&mut self, now: Instant) {
        for _ in 0..1000 {
            self.start(now);
            self.tcp_events(now);
            let mut progress = self.drain_negotiator(now);
            progress |= self.pump_app(now);
            self.tcp_events(now);
            if !progress {
                break;
            }
        }
    }

    /// Carries out what the negotiator asked for and takes its events (the pipe, once
    /// connected). Called after every input to it, as a runtime driver does: bytes that
    /// arrive after the handshake must find the pipe, not a finished negotiator.
    fn drain_negotiator(&mut self, now: Instant) -> bool {
        let mut actions = Vec::new();
        let mut events = Vec::new();
        if let Some(n) = self.neg.as_mut() {
            while let Some(a) = n.poll_action() {
                actions.push(a);
            }
            while let Some(t) = n.poll_transmit() {
                if let Some(d) = Datagram::from_transmit(&t) {
                    self.out.push_back(d);
                }
            }
            while let Some(e) = n.poll_event() {
                events.push(e);
            }
        }
        let progress = !actions.is_empty() || !events.is_empty();
        for a in actions {
            self.apply(now, a);
        }
        for e in events {
            self.on_event(now, e);
        }
        if self.neg.as_ref().is_some_and(|n| n.is_done()) {
            // Its last actions were drained above.
            self.neg = None;
        }
        progress
    }

    /// Moves application bytes through the pipe.
    fn pump_app(&mut self, now: Instant) -> bool {
        let mut progress = false;
        let mut arrived = Vec::new();
        match self.pipe.as_mut() {
            Some(Pipe::Tcp { id, .. }) => {
                let id = *id;
                if self.app_written < self.app.len()
                    && let Some(&sid) = self.to_sim.get(&id)
                    && !self.tcp_backlog_flush(sid)
                {
                    let n = self.tcp.write(now, sid, &self.app[self.app_written..]);
                    self.app_written += n;
                    progress |= n > 0;
                }
            }
            Some(Pipe::Datagram(p)) => {
                if self.app_written < self.app.len() {
                    let n = p.write(now, &self.app[self.app_written..]);
                    self.app_written += n;
                    progress |= n > 0;
                }
                let mut buf = [0u8; 16 * 1024];
                loop {
                    let n = p.read(now, &mut buf);
                    if n == 0 {
                        break;
                    }
                    progress = true;
                    arrived.extend_from_slice(&buf[..n]);
                }
                while p.poll_event().is_some() {}
                while let Some(t) = p.poll_transmit() {
                    if let Some(d) = Datagram::from_transmit(&t) {
                        self.out.push_back(d);
                        progress = true;
                    }
                }
                let mut acts = Vec::new();
                while let Some(a) = p.poll_action() {
                    acts.push(a);
                }
                for a in acts {
                    progress = true;
                    if let Action::TcpSend { id, bytes } = a
                        && let Some(&sid) = self.to_sim.get(&id)
                    {
                        self.tcp_write(sid, &bytes);
                    }
                }
            }
            None => {}
        }
        if !arrived.is_empty() {
            self.on_app_bytes(&arrived);
        }
        progress
    }
}

impl Endpoint for SimNode {
    fn handle_input(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        self.now = now;
        if let Some(n) = self.neg.as_mut() {
            n.handle_udp(now, source, destination, bytes);
        }
        if let Some(Pipe::Datagram(p)) = self.pipe.as_mut() {
            p.handle_udp(now, source, destination, bytes);
        }
        self.pump(now);
    }

    fn handle_tcp(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        self.now = now;
        self.tcp.handle_input(now, source, destination, bytes);
        self.pump(now);
    }

    fn poll_transmit(&mut self) -> Option<Datagram> {
        self.out.pop_front().or_else(|| self.tcp.poll_transmit())
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Vec<Instant> = Vec::new();
        if !self.started {
            t.push(self.start_at);
        }
        if let (NodeRole::Initiator { .. }, Some(at)) = (&self.role, self.begin_at)
            && self.neg.is_none()
            && self.registered
            && self.report.connected.is_none()
            && self.report.failed.is_none()
        {
            t.push(at);
        }
        t.extend(
            self.neg
                .as_ref()
                .and_then(|n| n.poll_timeout())
                .map(|t| t.at),
        );
        if let Some(Pipe::Datagram(p)) = &self.pipe {
            t.extend(p.poll_timeout().map(|t| t.at));
        }
        t.extend(self.tcp.poll_timeout());
        t.into_iter().min()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if let Some(n) = self.neg.as_mut() {
            n.handle_timeout(now);
        }
        if let Some(Pipe::Datagram(p)) = self.pipe.as_mut() {
            p.handle_timeout(now);
        }
        self.tcp.handle_timeout(now);
        self.route_parked(now);
        self.pump(now);
    }
}

/// The signaling broker: forwards frames between registered nodes over simulated TCP.
#[derive(Debug)]
pub struct SimBroker {
    tcp: TcpStack,
    now: Option<Instant>,
    rx: BTreeMap<SimTcpId, Vec<u8>>,
    keys: BTreeMap<SimTcpId, [u8; PUBLIC_KEY_LEN]>,
}

impl SimBroker {
    /// A broker listening on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        let mut tcp = TcpStack::new();
        tcp.listen(addr);
        SimBroker {
            tcp,
            now: None,
            rx: BTreeMap::new(),
            keys: BTreeMap::new(),
        }
    }

    fn pump(&mut self) {
        for _ in 0..10_000 {
            let Some(ev) = self.tcp.poll_event() else {
                break;
            };
            match ev {
                SimTcpEvent::Accepted { id, .. } => {
                    if self.rx.len() < 1024 {
                        self.rx.insert(id, Vec::new());
                    } else {
                        self.tcp.abort(id);
                    }
                }
                SimTcpEvent::Readable(id) => {
                    let mut buf = [0u8; 16 * 1024];
                    while let Some(now) = self.now {
                        let n = self.tcp.read(now, id, &mut buf);
                        if n == 0 {
                            break;
                        }
                        if let Some(rx) = self.rx.get_mut(&id) {
                            rx.extend_from_slice(&buf[..n]);
                        }
                    }
                    self.frames(id);
                }
                SimTcpEvent::Closed { id } | SimTcpEvent::Failed { id, .. } => {
                    self.rx.remove(&id);
                    self.keys.remove(&id);
                }
                _ => {}
            }
        }
    }

    fn frames(&mut self, id: SimTcpId) {
        loop {
            let Some(rx) = self.rx.get_mut(&id) else {
                return;
            };
            if rx.len() < 4 {
                return;
            }
            let len = u32::from_be_bytes([rx[0], rx[1], rx[2], rx[3]]) as usize;
            if !(PUBLIC_KEY_LEN..=MAX_FRAME).contains(&len) {
                self.tcp.abort(id);
                self.rx.remove(&id);
                return;
            }
            if rx.len() < 4 + len {
                return;
            }
            let frame: Vec<u8> = rx.drain(..4 + len).skip(4).collect();
            let mut key = [0u8; PUBLIC_KEY_LEN];
            key.copy_from_slice(&frame[..PUBLIC_KEY_LEN]);
            let Some(from) = self.keys.get(&id).copied() else {
                // The first frame registers the connection's key; an empty frame acks it.
                self.keys.insert(id, key);
                if let Some(now) = self.now {
                    self.tcp.write(now, id, &0u32.to_be_bytes());
                }
                continue;
            };
            let Some((&to, _)) = self.keys.iter().find(|(_, k)| **k == key) else {
                continue;
            };
            let mut f = (len as u32).to_be_bytes().to_vec();
            f.extend_from_slice(&from);
            f.extend_from_slice(&frame[PUBLIC_KEY_LEN..]);
            if let Some(now) = self.now {
                self.tcp.write(now, to, &f);
            }
        }
    }
}

impl Endpoint for SimBroker {
    fn handle_input(&mut self, _: Instant, _: SocketAddr, _: SocketAddr, _: &[u8]) {}

    fn handle_tcp(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        self.now = Some(now);
        self.tcp.handle_input(now, source, destination, bytes);
        self.pump();
    }

    fn poll_transmit(&mut self) -> Option<Datagram> {
        self.tcp.poll_transmit()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.tcp.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = Some(now);
        self.tcp.handle_timeout(now);
        self.pump();
    }
}
