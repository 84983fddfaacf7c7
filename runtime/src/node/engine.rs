//! The node's one background task: it owns every socket and every running
//! [`Negotiator`], and drives them (see the driver loop in
//! `p2pd_core::negotiate`): signaling in and out, accepted TCP connections routed by
//! their HELLO, TCP connects (ordinary and simultaneous-open retries), fresh UDP sockets,
//! datagrams, timers. A won negotiation becomes a [`Connection`]: a TCP stream is handed
//! over; a datagram pipe gets its own task, and the engine keeps forwarding the
//! datagrams of the pipe's sockets to it.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use p2pd_core::addr::NodeAddr;
use p2pd_core::identity::{Identity, PublicKey};
use p2pd_core::negotiate::message::{Body, NegotiationMessage};
use p2pd_core::negotiate::{
    Action, AttemptId, NegotiationEvent, Negotiator, NegotiatorConfig, Pipe, Progress, ROUTE_LEN,
    SIGNAL_KIND, Strategy, TcpEvent, TcpId, Timeouts, TurnSpec, route_signal, route_tcp,
};
use p2pd_core::rng::Rng;
use p2pd_core::signal::SignalEvent;

use super::config::ConnectError;
use super::connection::{Connection, ConnectionInfo, Shared};
use super::pipe_task::{self, Inbound, PipeTcp};
use super::start::Listening;
use crate::mqtt::SignalingHandle;
use crate::net::{any_local_for, bind_udp, connect_tcp, connect_tcp_until};
use crate::runtime::{AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, Runtime};
use crate::socket_set::is_transient;
use crate::timer::until;

/// Largest datagram read (TURN data indications carry a whole stream packet).
const UDP_BUF: usize = 65_536;
/// Bytes read from a TCP connection per wake-up.
const TCP_CHUNK: usize = 16 * 1024;
/// How long an accepted connection may take to send its routing preamble.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a routed connection waits for its attempt's Offer (signals and SYNs race).
const ORPHAN_TIMEOUT: Duration = Duration::from_secs(10);
/// Accepted connections waiting for their HELLO or their attempt, at most.
const MAX_INCOMING: usize = 64;
/// Responders running at once, at most (each costs sockets).
const MAX_RESPONDERS: usize = 16;
/// An ordinary TCP connect gives up after this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A simultaneous-open connect retries until the negotiator closes it, or this long.
const PUNCH_CONNECT_LIMIT: Duration = Duration::from_secs(30);
/// Pause between simultaneous-open retries, at most.
const PUNCH_RETRY: Duration = Duration::from_millis(200);
/// Fresh UDP sockets one request may ask for, at most.
const MAX_BIND: u16 = 512;
/// Datagrams queued for a pipe's task before more are dropped (the stream retransmits).
const PIPE_QUEUE: usize = 1024;
/// Bytes queued for one TCP connection before it counts as broken.
const MAX_TCP_OUT: usize = 1024 * 1024;
/// How long accepting pauses after an accept error.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// The longest the engine waits for the signaler to take a message.
const SIGNAL_SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Log lines kept per attempt for the error message.
const MAX_LOG: usize = 32;

/// A request from a [`super::Node`] handle.
pub(crate) enum Command<R: Runtime> {
    /// Connect to `peer` with `strategies`.
    Connect {
        peer: NodeAddr,
        strategies: Vec<Strategy>,
        reply: async_channel::Sender<Result<Connection<R>, ConnectError>>,
        /// Where to report the negotiation's steps (dropped when full).
        progress: Option<async_channel::Sender<Progress>>,
    },
}

/// What the engine needs besides its sockets.
pub(crate) struct EngineSetup<R: Runtime> {
    pub(crate) rt: R,
    pub(crate) identity: Identity,
    pub(crate) ours: NodeAddr,
    pub(crate) listening: Vec<Listening<R>>,
    pub(crate) stun: Vec<SocketAddr>,
    pub(crate) turn: Vec<TurnSpec>,
    pub(crate) accept: bool,
    pub(crate) signaling: SignalingHandle,
    pub(crate) commands: async_channel::Receiver<Command<R>>,
    pub(crate) keepalive: async_channel::Receiver<()>,
    /// Weak: the engine alone must not keep itself alive.
    pub(crate) keepalive_tx: async_channel::WeakSender<()>,
    pub(crate) incoming: async_channel::Sender<Connection<R>>,
    pub(crate) rng: Rng,
    pub(crate) connect_limit: Duration,
    /// Where the engine publishes address changes.
    pub(crate) watch: Arc<super::watch::AddrWatch>,
}

type Connecting<S> = Pin<Box<dyn Future<Output = io::Result<S>> + Send>>;

enum TcpState<R: Runtime> {
    Connecting(Connecting<R::TcpStream>),
    Open { stream: R::TcpStream, out: Vec<u8> },
}

struct Tcp<R: Runtime> {
    attempt: AttemptId,
    state: TcpState<R>,
}

struct Incoming<R: Runtime> {
    n: u64,
    stream: R::TcpStream,
    local: SocketAddr,
    remote: SocketAddr,
    first: Vec<u8>,
    attempt: Option<AttemptId>,
    deadline: Instant,
}

enum UdpOwner {
    /// One of the node's listen sockets.
    Listen,
    /// Bound for an attempt.
    Attempt(AttemptId),
    /// Taken over by a datagram pipe.
    Pipe(async_channel::Sender<Inbound>),
}

struct Udp<R: Runtime> {
    addr: SocketAddr,
    socket: Arc<R::UdpSocket>,
    owner: UdpOwner,
}

struct Negotiation<R: Runtime> {
    neg: Negotiator,
    peer: NodeAddr,
    reply: Option<async_channel::Sender<Result<Connection<R>, ConnectError>>>,
    progress: Option<async_channel::Sender<Progress>>,
    log: Vec<String>,
    deadline: Instant,
}

enum Wake<R: Runtime> {
    Command(Option<Command<R>>),
    KeepaliveClosed,
    Signal(Option<SignalEvent>),
    Accepted(usize, io::Result<(R::TcpStream, SocketAddr)>),
    IncomingData(usize, usize),
    IncomingClosed(usize),
    Connected(TcpId, io::Result<R::TcpStream>),
    TcpData(TcpId, usize),
    TcpWrote(TcpId, usize),
    TcpClosed(TcpId, String),
    Udp(usize, usize, SocketAddr),
    UdpFailed(usize),
    Timer,
}

/// The engine's state.
pub(crate) struct Engine<R: Runtime> {
    rt: R,
    identity: Identity,
    ours: NodeAddr,
    listen: Vec<SocketAddr>,
    listeners: Vec<R::TcpListener>,
    stun: Vec<SocketAddr>,
    turn: Vec<TurnSpec>,
    accept: bool,
    signaling: SignalingHandle,
    incoming_tx: async_channel::Sender<Connection<R>>,
    keepalive_tx: async_channel::WeakSender<()>,
    rng: Rng,
    udp: Vec<Udp<R>>,
    /// Pipes that use a listen socket: (local, remote) → their task.
    shared_routes: Vec<(SocketAddr, SocketAddr, async_channel::Sender<Inbound>)>,
    tcp: HashMap<TcpId, Tcp<R>>,
    incoming: Vec<Incoming<R>>,
    accepted: u64,
    negotiations: HashMap<AttemptId, Negotiation<R>>,
    next_udp: usize,
    connect_limit: Duration,
    /// After an accept error (out of file descriptors), accepting pauses until then
    /// rather than spinning on a listener that fails at once.
    accept_paused: Option<Instant>,
    watch: Arc<super::watch::AddrWatch>,
}

/// Runs the engine until the node handle and every connection are gone.
pub(crate) async fn run<R: Runtime>(setup: EngineSetup<R>) {
    let EngineSetup {
        rt,
        identity,
        ours,
        listening,
        stun,
        turn,
        accept,
        signaling,
        commands,
        keepalive,
        keepalive_tx,
        incoming,
        rng,
        connect_limit,
        watch,
    } = setup;
    let mut udp = Vec::new();
    let mut listeners = Vec::new();
    let mut listen = Vec::new();
    for l in listening {
        listen.push(l.local);
        udp.push(Udp {
            addr: l.local,
            socket: l.udp,
            owner: UdpOwner::Listen,
        });
        listeners.push(l.tcp);
    }
    let mut e = Engine {
        rt,
        identity,
        ours,
        listen,
        listeners,
        stun,
        turn,
        accept,
        signaling,
        incoming_tx: incoming,
        keepalive_tx,
        rng,
        udp,
        shared_routes: Vec::new(),
        tcp: HashMap::new(),
        incoming: Vec::new(),
        accepted: 0,
        negotiations: HashMap::new(),
        next_udp: 0,
        connect_limit,
        accept_paused: None,
        watch,
    };
    e.run(commands, keepalive).await;
}

impl<R: Runtime> Engine<R> {
    async fn run(
        &mut self,
        commands: async_channel::Receiver<Command<R>>,
        keepalive: async_channel::Receiver<()>,
    ) {
        let mut udp_buf = vec![0u8; UDP_BUF];
        let mut tcp_buf = vec![0u8; TCP_CHUNK];
        let mut commands_open = true;
        let mut keepalive_open = true;
        let mut signaling_open = true;
        loop {
            if !commands_open && !keepalive_open {
                return;
            }
            let deadline = self.next_deadline();
            let mut sleep = deadline.map(|d| Box::pin(self.rt.sleep_until(d)));
            let accept_now = self.accept_paused.is_none_or(|t| self.rt.now() >= t);
            let wake = {
                let mut cmd = pin!(commands.recv());
                let mut keep = pin!(keepalive.recv());
                let signaling = &self.signaling;
                let mut sig = pin!(signaling.next_event());
                let listeners = &self.listeners;
                let incoming = &mut self.incoming;
                let tcp = &mut self.tcp;
                let udp = &self.udp;
                let next_udp = &mut self.next_udp;
                let udp_buf = &mut udp_buf;
                let tcp_buf = &mut tcp_buf;
                poll_fn(|cx| {
                    if commands_open && let Poll::Ready(c) = cmd.as_mut().poll(cx) {
                        return Poll::Ready(Wake::Command(c.ok()));
                    }
                    if keepalive_open && keep.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Wake::KeepaliveClosed);
                    }
                    if signaling_open && let Poll::Ready(ev) = sig.as_mut().poll(cx) {
                        return Poll::Ready(Wake::Signal(ev));
                    }
                    if incoming.len() < MAX_INCOMING && accept_now {
                        for (i, l) in listeners.iter().enumerate() {
                            if let Poll::Ready(r) = l.poll_accept(cx) {
                                return Poll::Ready(Wake::Accepted(i, r));
                            }
                        }
                    }
                    for (i, inc) in incoming.iter_mut().enumerate() {
                        if inc.attempt.is_some() {
                            continue;
                        }
                        let want = ROUTE_LEN.saturating_sub(inc.first.len()).max(1);
                        let want = want.min(tcp_buf.len());
                        match inc.stream.poll_read(cx, &mut tcp_buf[..want]) {
                            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                                return Poll::Ready(Wake::IncomingClosed(i));
                            }
                            Poll::Ready(Ok(n)) => return Poll::Ready(Wake::IncomingData(i, n)),
                            Poll::Pending => {}
                        }
                    }
                    for (id, t) in tcp.iter_mut() {
                        match &mut t.state {
                            TcpState::Connecting(fut) => {
                                if let Poll::Ready(r) = fut.as_mut().poll(cx) {
                                    return Poll::Ready(Wake::Connected(*id, r));
                                }
                            }
                            TcpState::Open { stream, out } => {
                                if !out.is_empty() {
                                    match stream.poll_write(cx, out) {
                                        Poll::Ready(Ok(n)) if n > 0 => {
                                            return Poll::Ready(Wake::TcpWrote(*id, n));
                                        }
                                        Poll::Ready(Ok(_)) => {
                                            return Poll::Ready(Wake::TcpClosed(
                                                *id,
                                                "write returned 0".into(),
                                            ));
                                        }
                                        Poll::Ready(Err(e)) => {
                                            return Poll::Ready(Wake::TcpClosed(
                                                *id,
                                                e.to_string(),
                                            ));
                                        }
                                        Poll::Pending => {}
                                    }
                                }
                                match stream.poll_read(cx, tcp_buf) {
                                    Poll::Ready(Ok(0)) => {
                                        return Poll::Ready(Wake::TcpClosed(
                                            *id,
                                            "closed by the peer".into(),
                                        ));
                                    }
                                    Poll::Ready(Ok(n)) => {
                                        return Poll::Ready(Wake::TcpData(*id, n));
                                    }
                                    Poll::Ready(Err(e)) => {
                                        return Poll::Ready(Wake::TcpClosed(*id, e.to_string()));
                                    }
                                    Poll::Pending => {}
                                }
                            }
                        }
                    }
                    let count = udp.len();
                    for k in 0..count {
                        let i = (*next_udp + k) % count;
                        // A bounded number of transient errors per socket per poll;
                        // past it the socket is not registered, so ask to be polled again.
                        let mut errors = 0;
                        loop {
                            if errors == 64 {
                                cx.waker().wake_by_ref();
                                break;
                            }
                            match udp[i].socket.poll_recv_from(cx, udp_buf) {
                                Poll::Ready(Ok((n, from))) => {
                                    *next_udp = (i + 1) % count;
                                    return Poll::Ready(Wake::Udp(i, n, from));
                                }
                                Poll::Ready(Err(e)) if is_transient(&e) => errors += 1,
                                Poll::Ready(Err(_)) => return Poll::Ready(Wake::UdpFailed(i)),
                                Poll::Pending => break,
                            }
                        }
                    }
                    if let Some(s) = sleep.as_mut()
                        && s.as_mut().poll(cx).is_ready()
                    {
                        return Poll::Ready(Wake::Timer);
                    }
                    Poll::Pending
                })
                .await
            };
            let now = self.rt.now();
            match wake {
                Wake::Command(None) => commands_open = false,
                Wake::Command(Some(c)) => self.command(now, c).await,
                Wake::KeepaliveClosed => keepalive_open = false,
                Wake::Signal(None) => {
                    // Signaling stopped for good: nothing new can be negotiated, but
                    // connections keep running.
                    tracing::warn!("signaling stopped");
                    signaling_open = false;
                }
                Wake::Signal(Some(ev)) => self.signal_event(now, ev).await,
                Wake::Accepted(i, r) => self.accepted(now, i, r),
                Wake::IncomingData(i, n) => {
                    let bytes = tcp_buf[..n].to_vec();
                    self.incoming_data(now, i, &bytes).await;
                }
                Wake::IncomingClosed(i) => {
                    self.incoming.swap_remove(i);
                }
                Wake::Connected(id, r) => self.tcp_connected(now, id, r).await,
                Wake::TcpData(id, n) => {
                    let bytes = tcp_buf[..n].to_vec();
                    if let Some(a) = self.tcp.get(&id).map(|t| t.attempt) {
                        self.feed(a, now, |neg, now| {
                            neg.handle_tcp(now, TcpEvent::Data { id, bytes: &bytes })
                        })
                        .await;
                    }
                }
                Wake::TcpWrote(id, n) => {
                    if let Some(Tcp {
                        state: TcpState::Open { out, .. },
                        ..
                    }) = self.tcp.get_mut(&id)
                    {
                        out.drain(..n.min(out.len()));
                    }
                }
                Wake::TcpClosed(id, reason) => self.tcp_closed(now, id, &reason).await,
                Wake::Udp(i, n, from) => {
                    let bytes = udp_buf[..n].to_vec();
                    self.datagram(now, i, from, bytes).await;
                }
                Wake::UdpFailed(i) => {
                    let u = self.udp.swap_remove(i);
                    tracing::warn!("UDP socket {} failed; closed", u.addr);
                    self.next_udp = 0;
                }
                Wake::Timer => {}
            }
            self.timers(now).await;
        }
    }

    /// The earliest deadline of anything the engine runs.
    fn next_deadline(&self) -> Option<Instant> {
        let negs = self.negotiations.values().flat_map(|n| {
            [n.neg.poll_timeout().map(|t| t.at), Some(n.deadline)]
                .into_iter()
                .flatten()
        });
        let inc = self.incoming.iter().map(|i| i.deadline);
        negs.chain(inc).chain(self.accept_paused).min()
    }

    /// Expires what is due.
    async fn timers(&mut self, now: Instant) {
        if self.accept_paused.is_some_and(|t| t <= now) {
            self.accept_paused = None;
        }
        self.incoming.retain(|i| i.deadline > now);
        let due: Vec<AttemptId> = self
            .negotiations
            .iter()
            .filter(|(_, n)| n.neg.poll_timeout().is_some_and(|t| t.at <= now) || n.deadline <= now)
            .map(|(a, _)| *a)
            .collect();
        for a in due {
            let over = self.negotiations.get(&a).is_some_and(|n| n.deadline <= now);
            if over {
                // The caller hears of the time limit, not of the cancellation it causes.
                if let Some(n) = self.negotiations.get_mut(&a)
                    && let Some(reply) = n.reply.take()
                {
                    let log = std::mem::take(&mut n.log);
                    let _ = reply.try_send(Err(ConnectError::Timeout {
                        waited: self.connect_limit,
                        log,
                    }));
                }
                self.feed(a, now, |neg, now| neg.cancel(now)).await;
                self.finish_negotiation(a, None);
            } else {
                self.feed(a, now, |neg, now| neg.handle_timeout(now)).await;
            }
        }
    }

    async fn command(&mut self, now: Instant, c: Command<R>) {
        match c {
            Command::Connect {
                peer,
                strategies,
                reply,
                progress,
            } => {
                if peer.key() == &self.identity.public() {
                    let _ = reply.try_send(Err(ConnectError::Ourselves));
                    return;
                }
                let config = self.negotiator_config(strategies);
                let neg = match Negotiator::connect(now, config, peer.clone(), self.rng.fork()) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = reply.try_send(Err(ConnectError::Failed {
                            reason: e.to_string(),
                            log: Vec::new(),
                        }));
                        return;
                    }
                };
                let attempt = neg.attempt();
                tracing::info!("attempt {attempt}: connecting to {}", peer.node_id());
                self.negotiations.insert(
                    attempt,
                    Negotiation {
                        neg,
                        peer,
                        reply: Some(reply),
                        progress,
                        log: Vec::new(),
                        deadline: now + self.connect_limit,
                    },
                );
                self.drain(attempt, now).await;
            }
        }
    }

    fn negotiator_config(&self, strategies: Vec<Strategy>) -> NegotiatorConfig {
        NegotiatorConfig {
            identity: self.identity.clone(),
            ours: self.ours.clone(),
            listen: self.listen.clone(),
            strategies,
            stun: self.stun.clone(),
            turn: self.turn.clone(),
            timeouts: Timeouts::default(),
        }
    }

    /// Signaling listens on other brokers now: the node's address follows (new
    /// negotiations advertise it; [`super::Node::addr_changes`] subscribers hear of it).
    /// An empty set (every broker down for now) keeps the last address: the signaler is
    /// reconnecting, and an address without brokers could not be reached at all.
    fn brokers_changed(&mut self, brokers: Vec<p2pd_core::addr::Broker>) {
        if brokers.is_empty() || brokers == self.ours.brokers() {
            return;
        }
        // Everything but the brokers stays, the gateway's mapped port included.
        let addr = NodeAddr::new(*self.ours.key(), brokers, self.ours.interfaces().to_vec())
            .and_then(|a| a.with_mapped_ports(self.ours.mapped_ports().to_vec()));
        match addr {
            Ok(addr) => {
                tracing::info!("signaling brokers changed; node address now {addr}");
                self.ours = addr.clone();
                self.watch.publish(addr);
            }
            Err(e) => tracing::warn!("signaling brokers changed, but no address fits them: {e}"),
        }
    }

    async fn signal_event(&mut self, now: Instant, ev: SignalEvent) {
        let m = match ev {
            SignalEvent::Received(m) => m,
            SignalEvent::Dropped(e) => {
                tracing::debug!("signaling message dropped: {e}");
                return;
            }
            SignalEvent::Undeliverable { reason, .. } => {
                tracing::warn!("signaling message undeliverable: {reason}");
                return;
            }
            SignalEvent::ConnectionLost { broker, reason } => {
                tracing::info!("signaling broker {broker} lost: {reason}");
                return;
            }
            SignalEvent::Listening(brokers) => {
                self.brokers_changed(brokers);
                return;
            }
            _ => return,
        };
        if m.kind != SIGNAL_KIND {
            return;
        }
        let Some((attempt, is_offer)) = route_signal(&m.body) else {
            tracing::debug!("undecodable negotiation message from {}", m.from.node_id());
            return;
        };
        if let Some(n) = self.negotiations.get(&attempt) {
            // The envelope proves the sender; the attempt must be with that sender.
            if n.neg.peer() != &m.from {
                tracing::warn!(
                    "attempt {attempt}: message from {} who is not the peer; dropped",
                    m.from.node_id()
                );
                return;
            }
            let body = m.body;
            self.feed(attempt, now, |neg, now| neg.handle_signal(now, &body))
                .await;
            return;
        }
        if !is_offer {
            tracing::debug!("message for unknown attempt {attempt}; dropped");
            return;
        }
        if !self.accept {
            tracing::info!(
                "offer from {} refused: this node does not accept",
                m.from.node_id()
            );
            return;
        }
        let responders = self
            .negotiations
            .values()
            .filter(|n| n.reply.is_none())
            .count();
        if responders >= MAX_RESPONDERS {
            tracing::warn!(
                "offer from {} refused: {responders} responders running",
                m.from.node_id()
            );
            return;
        }
        let Some(peer) = offer_addr(&m.body, &m.from) else {
            tracing::warn!(
                "offer from {} carries no valid address of its sender",
                m.from.node_id()
            );
            return;
        };
        let config = self.negotiator_config(Strategy::ALL.to_vec());
        match Negotiator::accept(now, config, &m.from, &m.body, self.rng.fork()) {
            Ok(neg) => {
                tracing::info!("attempt {attempt}: offer from {}", m.from.node_id());
                self.negotiations.insert(
                    attempt,
                    Negotiation {
                        neg,
                        peer,
                        reply: None,
                        progress: None,
                        log: Vec::new(),
                        deadline: now + self.connect_limit,
                    },
                );
                self.drain(attempt, now).await;
                // Connections that arrived before the offer.
                let waiting: Vec<usize> = (0..self.incoming.len())
                    .rev()
                    .filter(|i| self.incoming[*i].attempt == Some(attempt))
                    .collect();
                for i in waiting {
                    let inc = self.incoming.swap_remove(i);
                    self.hand_incoming(now, attempt, inc).await;
                }
            }
            Err(e) => tracing::warn!("offer from {} refused: {e}", m.from.node_id()),
        }
    }

    fn accepted(&mut self, now: Instant, i: usize, r: io::Result<(R::TcpStream, SocketAddr)>) {
        self.accept_paused = None;
        let (stream, remote) = match r {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accepting on listener {i}: {e}; pausing accepts briefly");
                self.accept_paused = Some(now + ACCEPT_PAUSE);
                return;
            }
        };
        let Ok(local) = stream.local_addr() else {
            return;
        };
        let n = self.accepted;
        self.accepted += 1;
        self.incoming.push(Incoming {
            n,
            stream,
            local,
            remote,
            first: Vec::new(),
            attempt: None,
            deadline: now + HELLO_TIMEOUT,
        });
    }

    async fn incoming_data(&mut self, now: Instant, i: usize, bytes: &[u8]) {
        let Some(inc) = self.incoming.get_mut(i) else {
            return;
        };
        inc.first.extend_from_slice(bytes);
        match route_tcp(&inc.first) {
            Err(e) => {
                tracing::debug!(
                    "connection from {} is not a p2pd handshake: {e}",
                    inc.remote
                );
                self.incoming.swap_remove(i);
            }
            Ok(None) => {
                if inc.first.len() >= ROUTE_LEN {
                    self.incoming.swap_remove(i);
                }
            }
            Ok(Some(attempt)) => {
                if self.negotiations.contains_key(&attempt) {
                    let inc = self.incoming.swap_remove(i);
                    self.hand_incoming(now, attempt, inc).await;
                } else {
                    inc.attempt = Some(attempt);
                    inc.deadline = now + ORPHAN_TIMEOUT;
                }
            }
        }
    }

    /// Gives an accepted, routed connection to its negotiator.
    async fn hand_incoming(&mut self, now: Instant, attempt: AttemptId, inc: Incoming<R>) {
        let id = TcpId::accepted(inc.n);
        self.tcp.insert(
            id,
            Tcp {
                attempt,
                state: TcpState::Open {
                    stream: inc.stream,
                    out: Vec::new(),
                },
            },
        );
        let (local, remote, first) = (inc.local, inc.remote, inc.first);
        self.feed(attempt, now, |neg, now| {
            neg.handle_tcp(now, TcpEvent::Accepted { id, local, remote });
            neg.handle_tcp(now, TcpEvent::Data { id, bytes: &first });
        })
        .await;
    }

    async fn tcp_connected(&mut self, now: Instant, id: TcpId, r: io::Result<R::TcpStream>) {
        let Some(t) = self.tcp.get_mut(&id) else {
            return;
        };
        let attempt = t.attempt;
        let addrs = r.and_then(|s| Ok((s.local_addr()?, s.peer_addr()?, s)));
        match addrs {
            Ok((local, remote, stream)) => {
                t.state = TcpState::Open {
                    stream,
                    out: Vec::new(),
                };
                self.feed(attempt, now, |neg, now| {
                    neg.handle_tcp(now, TcpEvent::Connected { id, local, remote })
                })
                .await;
            }
            Err(e) => {
                self.tcp.remove(&id);
                let reason = e.to_string();
                self.feed(attempt, now, |neg, now| {
                    neg.handle_tcp(
                        now,
                        TcpEvent::Closed {
                            id,
                            reason: &reason,
                        },
                    )
                })
                .await;
            }
        }
    }

    async fn tcp_closed(&mut self, now: Instant, id: TcpId, reason: &str) {
        if let Some(t) = self.tcp.remove(&id) {
            self.feed(t.attempt, now, |neg, now| {
                neg.handle_tcp(now, TcpEvent::Closed { id, reason })
            })
            .await;
        }
    }

    async fn datagram(&mut self, now: Instant, i: usize, from: SocketAddr, bytes: Vec<u8>) {
        let Some(u) = self.udp.get(i) else {
            return;
        };
        let local = u.addr;
        match &u.owner {
            UdpOwner::Pipe(tx) => {
                if let Err(async_channel::TrySendError::Closed(_)) =
                    tx.try_send((from, local, bytes))
                {
                    // The pipe ended: its socket goes with it.
                    self.udp.swap_remove(i);
                    self.next_udp = 0;
                }
            }
            UdpOwner::Attempt(a) => {
                let a = *a;
                self.feed(a, now, |neg, now| neg.handle_udp(now, from, local, &bytes))
                    .await;
            }
            UdpOwner::Listen => {
                if let Some(pos) = self
                    .shared_routes
                    .iter()
                    .position(|(l, r, _)| *l == local && *r == from)
                {
                    if let Err(async_channel::TrySendError::Closed(_)) =
                        self.shared_routes[pos].2.try_send((from, local, bytes))
                    {
                        self.shared_routes.swap_remove(pos);
                    }
                    return;
                }
                // Every running negotiation may be punching from the listen socket;
                // each ignores what is not its own.
                let attempts: Vec<AttemptId> = self.negotiations.keys().copied().collect();
                for a in attempts {
                    self.feed(a, now, |neg, now| neg.handle_udp(now, from, local, &bytes))
                        .await;
                }
            }
        }
    }

    /// Calls `f` on attempt `a`'s negotiator, then runs what it asks for.
    async fn feed(&mut self, a: AttemptId, now: Instant, f: impl FnOnce(&mut Negotiator, Instant)) {
        let Some(n) = self.negotiations.get_mut(&a) else {
            return;
        };
        f(&mut n.neg, now);
        self.drain(a, now).await;
    }

    /// Drains attempt `a`'s actions, datagrams and events until none is left.
    async fn drain(&mut self, a: AttemptId, now: Instant) {
        // Bounded: a negotiator that kept producing forever would be a bug, not a reason
        // to hang the node.
        for _ in 0..10_000 {
            let Some(n) = self.negotiations.get_mut(&a) else {
                return;
            };
            if let Some(action) = n.neg.poll_action() {
                self.action(a, now, action).await;
                continue;
            }
            if let Some(t) = n.neg.poll_transmit() {
                let (source, destination, bytes) = (t.source, t.destination, t.contents.to_vec());
                if let Some(u) = self.udp.iter().find(|u| u.addr == source) {
                    // A send error is a lost datagram: the negotiator's retries cover it.
                    let _ = u.socket.send_to(&bytes, destination).await;
                }
                continue;
            }
            if let Some(ev) = n.neg.poll_event() {
                self.event(a, now, ev).await;
                continue;
            }
            if n.neg.is_done() {
                self.finish_negotiation(a, None);
            }
            return;
        }
        tracing::error!("attempt {a}: the negotiator did not stop producing; cancelled");
        if let Some(n) = self.negotiations.get_mut(&a) {
            n.neg.cancel(now);
        }
        self.finish_negotiation(a, None);
    }

    async fn action(&mut self, a: AttemptId, now: Instant, action: Action) {
        match action {
            Action::Signal(bytes) => {
                let Some(peer) = self.negotiations.get(&a).map(|n| n.peer.clone()) else {
                    return;
                };
                // Bounded: a signaler stuck on a full event queue (which this task
                // drains) must not deadlock the two.
                let sent = until(
                    &self.rt,
                    now + SIGNAL_SEND_TIMEOUT,
                    self.signaling.send(&peer, SIGNAL_KIND, &bytes),
                )
                .await;
                let err = match sent {
                    Some(Ok(_)) => None,
                    Some(Err(e)) => Some(e.to_string()),
                    None => Some("the signaler did not take the message in time".into()),
                };
                if let Some(e) = err {
                    tracing::warn!("attempt {a}: signaling: {e}");
                    self.log(a, format!("signaling: {e}"));
                }
            }
            Action::BindUdp { req, ip, count } => {
                let result = self.bind_fresh(a, ip, count);
                // The caller's drain loop runs what this leads to.
                if let Some(n) = self.negotiations.get_mut(&a) {
                    n.neg.handle_bound(now, req, result);
                }
            }
            Action::ReleaseUdp(addrs) => {
                self.udp.retain(|u| {
                    !(addrs.contains(&u.addr) && matches!(u.owner, UdpOwner::Attempt(x) if x == a))
                });
                self.next_udp = 0;
            }
            Action::TcpConnect { id, local, remote } => {
                let rt = self.rt.clone();
                let fut: Connecting<R::TcpStream> = match local {
                    Some(local) => {
                        let mut rng = self.rng.fork();
                        let deadline = now + PUNCH_CONNECT_LIMIT;
                        Box::pin(async move {
                            connect_tcp_until(&rt, local, remote, deadline, PUNCH_RETRY, &mut rng)
                                .await
                        })
                    }
                    None => Box::pin(async move {
                        match until(
                            &rt,
                            rt.now() + CONNECT_TIMEOUT,
                            connect_tcp(&rt, any_local_for(remote), remote, false),
                        )
                        .await
                        {
                            Some(r) => r,
                            None => Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!(
                                    "TCP connect to {remote}: no answer in {CONNECT_TIMEOUT:?}"
                                ),
                            )),
                        }
                    }),
                };
                self.tcp.insert(
                    id,
                    Tcp {
                        attempt: a,
                        state: TcpState::Connecting(fut),
                    },
                );
            }
            Action::TcpSend { id, bytes } => {
                let broken = match self.tcp.get_mut(&id) {
                    Some(Tcp {
                        state: TcpState::Open { out, .. },
                        ..
                    }) => {
                        out.extend_from_slice(&bytes);
                        out.len() > MAX_TCP_OUT
                    }
                    _ => false,
                };
                if broken {
                    self.tcp.remove(&id);
                    if let Some(n) = self.negotiations.get_mut(&a) {
                        let reason = "the peer stopped reading";
                        n.neg.handle_tcp(now, TcpEvent::Closed { id, reason });
                    }
                }
            }
            Action::TcpClose(id) => {
                self.tcp.remove(&id);
            }
        }
    }

    fn bind_fresh(
        &mut self,
        a: AttemptId,
        ip: IpAddr,
        count: u16,
    ) -> Result<Vec<SocketAddr>, String> {
        let mut out = Vec::new();
        for _ in 0..count.min(MAX_BIND) {
            let s = bind_udp(&self.rt, SocketAddr::new(ip, 0), false).map_err(|e| e.to_string());
            let s = match s {
                Ok(s) => s,
                Err(e) => {
                    // Give back what was bound: the request failed as a whole.
                    self.udp.retain(|u| !out.contains(&u.addr));
                    return Err(e);
                }
            };
            let addr = match s.local_addr() {
                Ok(a) => a,
                Err(e) => {
                    self.udp.retain(|u| !out.contains(&u.addr));
                    return Err(e.to_string());
                }
            };
            out.push(addr);
            self.udp.push(Udp {
                addr,
                socket: Arc::new(s),
                owner: UdpOwner::Attempt(a),
            });
        }
        Ok(out)
    }

    fn log(&mut self, a: AttemptId, line: String) {
        if let Some(n) = self.negotiations.get_mut(&a)
            && n.log.len() < MAX_LOG
        {
            n.log.push(line);
        }
    }

    async fn event(&mut self, a: AttemptId, now: Instant, ev: NegotiationEvent) {
        if let Some(tx) = self.negotiations.get(&a).and_then(|n| n.progress.as_ref()) {
            let _ = tx.try_send(Progress::from(&ev));
        }
        match ev {
            NegotiationEvent::Skipped { strategy, reason } => {
                tracing::info!("attempt {a}: {strategy} skipped: {reason}");
                self.log(a, format!("{strategy} skipped: {reason}"));
            }
            NegotiationEvent::Trying { strategy, detail } => {
                tracing::info!("attempt {a}: trying {strategy}: {detail}");
            }
            NegotiationEvent::StrategyFailed { strategy, reason } => {
                tracing::info!("attempt {a}: {strategy} failed: {reason}");
                self.log(a, format!("{strategy} failed: {reason}"));
            }
            NegotiationEvent::Failed { reason } => {
                tracing::info!("attempt {a}: failed: {reason}");
                self.finish_negotiation(a, Some(reason));
            }
            NegotiationEvent::Connected {
                strategy,
                pipe,
                local,
                remote,
            } => {
                tracing::info!("attempt {a}: connected by {strategy} ({local} -> {remote})");
                let Some(peer) = self.negotiations.get(&a).map(|n| *n.neg.peer()) else {
                    return;
                };
                let info = ConnectionInfo {
                    strategy,
                    local,
                    remote,
                    peer,
                };
                let conn = self.make_connection(a, now, info, pipe);
                // The negotiator closes the losers now.
                self.deliver(a, conn);
            }
        }
    }

    /// Turns a won pipe into a [`Connection`].
    fn make_connection(
        &mut self,
        a: AttemptId,
        _now: Instant,
        info: ConnectionInfo,
        pipe: Pipe,
    ) -> Option<Connection<R>> {
        match pipe {
            Pipe::Tcp { id, leftover } => {
                let t = self.tcp.remove(&id)?;
                match t.state {
                    TcpState::Open { stream, out } => {
                        Some(Connection::tcp(info, stream, leftover, out))
                    }
                    TcpState::Connecting(_) => {
                        self.log(
                            a,
                            format!("connection {id:?} named by the negotiator is not open"),
                        );
                        None
                    }
                }
            }
            Pipe::Datagram(pipe) => {
                let (tx, rx) = async_channel::bounded(PIPE_QUEUE);
                let mut sockets = Vec::new();
                for addr in pipe.sockets() {
                    let Some(u) = self.udp.iter_mut().find(|u| u.addr == addr) else {
                        continue;
                    };
                    sockets.push((addr, u.socket.clone()));
                    match u.owner {
                        UdpOwner::Listen => {
                            if let Some(remote) = pipe.remote_addr() {
                                self.shared_routes.push((addr, remote, tx.clone()));
                            }
                        }
                        _ => u.owner = UdpOwner::Pipe(tx.clone()),
                    }
                }
                let tcp = match pipe.tcp() {
                    Some(id) => match self.tcp.remove(&id) {
                        Some(Tcp {
                            state: TcpState::Open { stream, out },
                            ..
                        }) => Some(PipeTcp { id, stream, out }),
                        _ => None,
                    },
                    None => None,
                };
                drop(tx);
                let shared = Arc::new(Mutex::new(Shared::new(*pipe)));
                let (ktx, krx) = async_channel::bounded(1);
                let rt = self.rt.clone();
                let keep = self.keepalive_tx.upgrade();
                let task_shared = shared.clone();
                self.rt.spawn(async move {
                    pipe_task::run(rt, task_shared, krx, rx, sockets, tcp).await;
                    // The engine may stop once no pipe needs it.
                    drop(keep);
                });
                Some(Connection::datagram(self.rt.clone(), info, shared, ktx))
            }
        }
    }

    /// Hands a connection to whoever waits for it.
    fn deliver(&mut self, a: AttemptId, conn: Option<Connection<R>>) {
        let Some(n) = self.negotiations.get_mut(&a) else {
            return;
        };
        let Some(conn) = conn else {
            let log = std::mem::take(&mut n.log);
            if let Some(reply) = n.reply.take() {
                let _ = reply.try_send(Err(ConnectError::Failed {
                    reason: "the winning connection was lost by the driver".into(),
                    log,
                }));
            }
            return;
        };
        match n.reply.take() {
            Some(reply) => {
                let _ = reply.try_send(Ok(conn));
            }
            None => {
                if self.incoming_tx.try_send(conn).is_err() {
                    tracing::warn!("attempt {a}: connection dropped: nobody accepts");
                }
            }
        }
    }

    /// Removes a finished negotiation and everything it still holds; a waiting caller
    /// gets `reason` (or a time-out) if it got nothing yet.
    fn finish_negotiation(&mut self, a: AttemptId, reason: Option<String>) {
        let Some(mut n) = self.negotiations.remove(&a) else {
            return;
        };
        if let Some(reply) = n.reply.take() {
            let log = std::mem::take(&mut n.log);
            let err = match reason {
                Some(reason) => ConnectError::Failed { reason, log },
                None => ConnectError::Timeout {
                    waited: self.connect_limit,
                    log,
                },
            };
            let _ = reply.try_send(Err(err));
        }
        self.tcp.retain(|_, t| t.attempt != a);
        self.udp
            .retain(|u| !matches!(u.owner, UdpOwner::Attempt(x) if x == a));
        self.next_udp = 0;
    }
}

/// The sender's address from an Offer, if it is valid and belongs to `from`.
fn offer_addr(body: &[u8], from: &PublicKey) -> Option<NodeAddr> {
    let msg = NegotiationMessage::parse(body).ok()?;
    let Body::Offer { addr, .. } = msg.body else {
        return None;
    };
    let addr = NodeAddr::parse(&addr).ok()?;
    (addr.key() == from).then_some(addr)
}
