//! [`Signaler`]: signaling over MQTT — listen on this node's topic on a few brokers, send
//! sealed messages to peers through up to two of theirs, deduplicate what arrives.
//!
//! It owns one [`MqttClient`] per connection and speaks for all of them to its driver:
//! [`SignalEvent::Open`] / [`SignalEvent::Close`] ask for TCP streams by [`ConnId`], and
//! stream events come back through `handle_connected` / `handle_input` / `handle_closed`.
//!
//! * **Listening.** `listen_on` connections (2 by default) each subscribe to
//!   `p2pd/1/<node id>` ([`topic_for`]). Each has the whole broker list as candidates,
//!   starting at a different entry; when its broker dies it reconnects with backoff and,
//!   after repeated failures, moves to a broker no other listening connection uses.
//!   [`SignalEvent::Listening`] reports the working set whenever it changes, so the node's
//!   address can be refreshed — the user notices nothing.
//! * **Sending.** A message is sealed once ([`super::seal`]) and published (QoS 1) through
//!   up to `relay_count` of the peer's brokers: brokers this node is already connected to
//!   first, then new short-lived connections, which close after `send_idle`. A broker that
//!   cannot be reached is replaced by the peer's next one.
//! * **Receiving.** Messages on the node's topic are opened ([`super::open`]) and
//!   deduplicated ([`Dedupe`]); anything not addressed to this node, tampered with, badly
//!   signed, expired or seen before is dropped ([`SignalEvent::Dropped`] says why).
//!
//! Expiries are wall-clock time (they cross machines); core reads no clock, so the caller
//! gives one reading (`Instant`, Unix ms) at construction and may refresh it with
//! [`Signaler::set_wall_clock`]; wall time is extrapolated from `Instant`s after that.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::dedupe::Dedupe;
use super::envelope::{Message, MessageId, seal};
use super::error::SignalError;
use crate::addr::{Broker, NodeAddr};
use crate::identity::{Identity, NodeId};
use crate::mqtt::{ClientConfig, MqttClient, MqttEvent, QoS, State};
use crate::rng::Rng;
use crate::time::Timeout;

/// The topic a node listens on.
pub fn topic_for(id: &NodeId) -> String {
    format!("p2pd/1/{id}")
}

/// A connection's handle, chosen by the signaler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// How a [`Signaler`] behaves. [`SignalerConfig::new`] gives defaults.
#[derive(Debug, Clone)]
pub struct SignalerConfig {
    /// Brokers to listen on, in order of preference.
    pub brokers: Vec<Broker>,
    /// How many to listen on at once.
    pub listen_on: usize,
    /// Through how many of a peer's brokers each message goes.
    pub relay_count: usize,
    /// A sent message's lifetime.
    pub ttl: Duration,
    /// The longest lifetime accepted from a sender (bounds the replay cache's work).
    pub max_ttl: Duration,
    /// Ids remembered for deduplication.
    pub dedupe_capacity: usize,
    /// Close a connection opened only to send after this long unused.
    pub send_idle: Duration,
    /// Messages waiting for a connection, at most.
    pub max_pending: usize,
    /// Settings for every MQTT connection (its `client_id`, `brokers` and
    /// `subscriptions` are filled in per connection).
    pub mqtt: ClientConfig,
}

impl SignalerConfig {
    /// Defaults: listen on 2 brokers, relay through 2, 30 s messages, 120 s at most
    /// (P2PD's MQTT message expiry, spec §4).
    pub fn new(brokers: Vec<Broker>) -> Self {
        SignalerConfig {
            brokers,
            listen_on: 2,
            relay_count: 2,
            ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(120),
            dedupe_capacity: 4096,
            send_idle: Duration::from_secs(60),
            max_pending: 256,
            mqtt: ClientConfig::new(String::new(), Vec::new()),
        }
    }
}

/// What the signaler reports or asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalEvent {
    /// Driver: open a TCP stream to `broker` for `conn`.
    Open {
        /// The connection.
        conn: ConnId,
        /// Where to.
        broker: Broker,
    },
    /// Driver: close `conn`'s stream.
    Close(ConnId),
    /// The brokers this node currently receives on changed (put them in its address).
    Listening(Vec<Broker>),
    /// A message for this node, opened, verified and new.
    Received(Message),
    /// A message was handed to a broker.
    Sent {
        /// The message.
        id: MessageId,
        /// The broker.
        via: Broker,
    },
    /// A message reached no broker before it expired or ran out of brokers.
    Undeliverable {
        /// The message.
        id: MessageId,
        /// Why.
        reason: String,
    },
    /// A received message was dropped.
    Dropped(SignalError),
    /// A connection failed and will be retried (for logs).
    ConnectionLost {
        /// The broker.
        broker: Broker,
        /// Why.
        reason: String,
    },
}

/// Why [`Signaler::send`] refused a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The peer's address lists no broker.
    #[error("peer {0} lists no signaling broker in its address: it cannot be signaled")]
    NoBrokers(NodeId),
    /// Too many messages wait for connections.
    #[error("{0} signaling messages are waiting for brokers: try again later")]
    Backlog(usize),
    /// The message could not be sealed.
    #[error(transparent)]
    Seal(#[from] SignalError),
}

#[derive(Debug)]
enum Role {
    Listen,
    Send { last_used: Instant },
}

#[derive(Debug)]
struct Conn {
    id: ConnId,
    client: MqttClient,
    role: Role,
}

#[derive(Debug)]
struct Pending {
    id: MessageId,
    topic: String,
    bytes: Vec<u8>,
    expires: Instant,
    candidates: VecDeque<Broker>,
    waiting: Vec<Broker>,
    sent: Vec<Broker>,
    wanted: usize,
}

/// The signaling machine. See the module documentation.
#[derive(Debug)]
pub struct Signaler {
    identity: Identity,
    topic: String,
    config: SignalerConfig,
    rng: Rng,
    wall: (Instant, u64),
    conns: Vec<Conn>,
    next_conn: u64,
    dedupe: Dedupe,
    pending: Vec<Pending>,
    listening: Vec<Broker>,
    transmits: VecDeque<(ConnId, Vec<u8>)>,
    events: VecDeque<SignalEvent>,
}

impl Signaler {
    /// A signaler for `identity` that starts listening at once. `unix_ms` is the wall
    /// clock at `now`.
    pub fn new(
        identity: Identity,
        config: SignalerConfig,
        rng: Rng,
        now: Instant,
        unix_ms: u64,
    ) -> Self {
        let topic = topic_for(&identity.node_id());
        let mut s = Signaler {
            identity,
            topic,
            dedupe: Dedupe::new(config.dedupe_capacity),
            config,
            rng,
            wall: (now, unix_ms),
            conns: Vec::new(),
            next_conn: 0,
            pending: Vec::new(),
            listening: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        let n = s.config.listen_on.min(s.config.brokers.len());
        for k in 0..n {
            let mut order = s.config.brokers.clone();
            order.rotate_left(k);
            s.add_conn(now, order, Role::Listen);
        }
        s.settle(now);
        s
    }

    /// This node's topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The brokers this node currently receives on.
    pub fn listening(&self) -> &[Broker] {
        &self.listening
    }

    /// Re-anchors wall-clock time: `unix_ms` at `now`.
    pub fn set_wall_clock(&mut self, now: Instant, unix_ms: u64) {
        self.wall = (now, unix_ms);
    }

    fn wall_ms(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.wall.0).as_millis();
        self.wall
            .1
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }

    fn add_conn(&mut self, now: Instant, brokers: Vec<Broker>, role: Role) -> ConnId {
        let mut config = self.config.mqtt.clone();
        config.client_id = format!("p2pd-{:016x}", self.rng.next_u64());
        config.brokers = brokers;
        config.subscriptions = match role {
            Role::Listen => vec![self.topic.clone()],
            Role::Send { .. } => Vec::new(),
        };
        if let Role::Send { .. } = role {
            // A send-only connection tries its one broker once: the message moves on to
            // the peer's next broker instead of waiting for backoff.
            config.switch_after = 1;
        }
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        let client = MqttClient::new(config, self.rng.fork(), now);
        self.conns.push(Conn { id, client, role });
        id
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.iter_mut().find(|c| c.id == id)
    }

    /// Seals `body` (of `kind`) to `peer` and sends it through up to `relay_count` of its
    /// brokers; returns the message id that later events name.
    pub fn send(
        &mut self,
        now: Instant,
        peer: &NodeAddr,
        kind: u8,
        body: &[u8],
    ) -> Result<MessageId, SendError> {
        if peer.brokers().is_empty() {
            return Err(SendError::NoBrokers(peer.node_id()));
        }
        if self.pending.len() >= self.config.max_pending {
            return Err(SendError::Backlog(self.pending.len()));
        }
        let id = MessageId::random(&mut self.rng);
        let ttl_ms = u64::try_from(self.config.ttl.as_millis()).unwrap_or(u64::MAX);
        let expiry = self.wall_ms(now).saturating_add(ttl_ms);
        let bytes = seal(
            &self.identity,
            peer.key(),
            id,
            expiry,
            kind,
            body,
            &mut self.rng,
        )?;
        let ready = |b: &Broker| {
            self.conns
                .iter()
                .any(|c| c.client.is_ready() && c.client.broker() == Some(b))
        };
        let mut candidates: Vec<Broker> = peer.brokers().to_vec();
        candidates.sort_by_key(|b| !ready(b));
        self.pending.push(Pending {
            id,
            topic: topic_for(&peer.node_id()),
            bytes,
            expires: now + self.config.ttl,
            wanted: self.config.relay_count.clamp(1, candidates.len()),
            candidates: candidates.into(),
            waiting: Vec::new(),
            sent: Vec::new(),
        });
        self.settle(now);
        Ok(id)
    }

    /// `conn`'s stream is up.
    pub fn handle_connected(&mut self, now: Instant, conn: ConnId) {
        if let Some(c) = self.conn_mut(conn) {
            c.client.handle_connected(now);
        }
        self.settle(now);
    }

    /// Bytes arrived on `conn`.
    pub fn handle_input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        if let Some(c) = self.conn_mut(conn) {
            c.client.handle_input(now, bytes);
        }
        self.settle(now);
    }

    /// `conn`'s stream closed or could not be opened.
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        if let Some(c) = self.conn_mut(conn) {
            c.client.handle_closed(now);
        }
        self.settle(now);
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        for c in &mut self.conns {
            c.client.handle_timeout(now);
        }
        // Idle send-only connections close.
        let idle = self.config.send_idle;
        let in_use: Vec<Broker> = self
            .pending
            .iter()
            .flat_map(|p| p.waiting.iter().cloned())
            .collect();
        for c in &mut self.conns {
            if let Role::Send { last_used } = c.role
                && now >= last_used + idle
                && c.client.broker().is_none_or(|b| !in_use.contains(b))
            {
                c.client.disconnect(now);
            }
        }
        self.settle(now);
    }

    /// The next bytes to write, and on which connection.
    pub fn poll_transmit(&mut self) -> Option<(ConnId, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SignalEvent> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next, and why.
    pub fn poll_timeout(&self) -> Option<Timeout> {
        let mut t = None;
        for c in &self.conns {
            t = Timeout::earliest(t, c.client.poll_timeout());
            if let Role::Send { last_used } = c.role {
                t = Timeout::earliest(
                    t,
                    Some(Timeout::new(
                        last_used + self.config.send_idle,
                        "signal idle close",
                    )),
                );
            }
        }
        for p in &self.pending {
            t = Timeout::earliest(t, Some(Timeout::new(p.expires, "signal message expiry")));
        }
        t
    }

    /// Drains the clients and moves pending messages until nothing changes.
    fn settle(&mut self, now: Instant) {
        for _ in 0..8 {
            let progressed = self.drain_clients(now) | self.pump(now);
            if !progressed {
                break;
            }
        }
        let listening: Vec<Broker> = self
            .conns
            .iter()
            .filter(|c| matches!(c.role, Role::Listen) && c.client.is_ready())
            .filter_map(|c| c.client.broker().cloned())
            .collect();
        if listening != self.listening {
            self.listening = listening.clone();
            self.events.push_back(SignalEvent::Listening(listening));
        }
    }

    fn drain_clients(&mut self, now: Instant) -> bool {
        let mut progressed = false;
        let mut i = 0;
        while i < self.conns.len() {
            let id = self.conns[i].id;
            while let Some(bytes) = self.conns[i].client.poll_transmit() {
                self.transmits.push_back((id, bytes));
            }
            while let Some(e) = self.conns[i].client.poll_event() {
                progressed = true;
                self.on_client_event(now, i, e);
            }
            if self.conns[i].client.state() == State::Stopped {
                self.conns.remove(i);
            } else {
                i += 1;
            }
        }
        progressed
    }

    fn on_client_event(&mut self, now: Instant, i: usize, e: MqttEvent) {
        let id = self.conns[i].id;
        match e {
            MqttEvent::Open(broker) => self
                .events
                .push_back(SignalEvent::Open { conn: id, broker }),
            MqttEvent::Close => self.events.push_back(SignalEvent::Close(id)),
            MqttEvent::Message { topic, payload } => {
                if topic != self.topic {
                    return;
                }
                let max_ttl = u64::try_from(self.config.max_ttl.as_millis()).unwrap_or(u64::MAX);
                let now_ms = self.wall_ms(now);
                let result = super::envelope::open(&self.identity, &payload, now_ms, max_ttl)
                    .and_then(|m| self.dedupe.insert(m.id, m.expiry_ms, now_ms).map(|()| m));
                self.events.push_back(match result {
                    Ok(m) => SignalEvent::Received(m),
                    Err(e) => SignalEvent::Dropped(e),
                });
            }
            MqttEvent::Disconnected { broker, reason, .. } => {
                self.events
                    .push_back(SignalEvent::ConnectionLost { broker, reason });
                match self.conns[i].role {
                    Role::Send { .. } => self.conns[i].client.disconnect(now),
                    Role::Listen => self.avoid_shared_broker(now, i),
                }
            }
            MqttEvent::Connected(_)
            | MqttEvent::Subscribed { .. }
            | MqttEvent::Delivered(_)
            | MqttEvent::Pong(_) => {}
        }
    }

    /// A listening connection about to retry a broker another one already uses gets a
    /// candidate list without the brokers in use.
    fn avoid_shared_broker(&mut self, now: Instant, i: usize) {
        let others: Vec<Broker> = self
            .conns
            .iter()
            .enumerate()
            .filter(|(j, c)| *j != i && matches!(c.role, Role::Listen))
            .filter_map(|(_, c)| c.client.broker().cloned())
            .collect();
        let next = self.conns[i].client.broker().cloned();
        if next.as_ref().is_some_and(|b| others.contains(b)) {
            let free: Vec<Broker> = self
                .config
                .brokers
                .iter()
                .filter(|b| !others.contains(b))
                .cloned()
                .collect();
            if !free.is_empty() {
                self.conns[i].client.set_brokers(now, free);
            }
        }
    }

    /// Moves every pending message forward; true if anything happened.
    fn pump(&mut self, now: Instant) -> bool {
        let mut progressed = false;
        let mut pending = std::mem::take(&mut self.pending);
        pending.retain_mut(|p| {
            // Publish on connections that became ready; forget ones that died.
            let mut still = Vec::new();
            for b in std::mem::take(&mut p.waiting) {
                let conn = self
                    .conns
                    .iter_mut()
                    .find(|c| c.client.broker() == Some(&b) && c.client.state() != State::Stopped);
                match conn {
                    Some(c) if c.client.is_ready() => {
                        progressed = true;
                        if c.client
                            .publish(now, &p.topic, &p.bytes, QoS::AtLeastOnce)
                            .is_ok()
                        {
                            if let Role::Send { last_used } = &mut c.role {
                                *last_used = now;
                            }
                            self.events.push_back(SignalEvent::Sent {
                                id: p.id,
                                via: b.clone(),
                            });
                            p.sent.push(b);
                        }
                    }
                    Some(c)
                        if matches!(c.role, Role::Send { .. })
                            || matches!(
                                c.client.state(),
                                State::Opening(_) | State::Connecting(_)
                            ) =>
                    {
                        still.push(b)
                    }
                    // A listening connection in backoff, or none: try another broker.
                    _ => progressed = true,
                }
            }
            p.waiting = still;
            while p.sent.len() + p.waiting.len() < p.wanted {
                let Some(b) = p.candidates.pop_front() else {
                    break;
                };
                progressed = true;
                let exists = self
                    .conns
                    .iter()
                    .any(|c| c.client.broker() == Some(&b) && c.client.state() != State::Stopped);
                if !exists {
                    self.add_conn(now, vec![b.clone()], Role::Send { last_used: now });
                }
                p.waiting.push(b);
            }
            let done =
                p.sent.len() >= p.wanted || (p.waiting.is_empty() && p.candidates.is_empty());
            let expired = now >= p.expires;
            if (done || expired) && p.sent.is_empty() {
                let reason = if expired {
                    "it expired before any of the peer's brokers could be reached"
                } else {
                    "none of the peer's brokers could be reached"
                };
                self.events.push_back(SignalEvent::Undeliverable {
                    id: p.id,
                    reason: reason.into(),
                });
            }
            !(done || expired)
        });
        // Messages added meanwhile (none today) are kept.
        pending.append(&mut self.pending);
        self.pending = pending;
        progressed
    }
}
