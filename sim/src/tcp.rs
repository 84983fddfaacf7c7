//! TCP for simulated hosts: connection establishment as the kernel does it, on top of the
//! simulator's NATs, with p2pd's reliable stream carrying the bytes.
//!
//! What is modelled faithfully, because NAT traversal depends on it:
//!
//! * the three-way handshake, SYN retransmissions (1 s, then doubling; six SYNs, then the
//!   connect times out, about Linux's `tcp_syn_retries` ≈ 1 min scaled down to 63 s);
//! * **simultaneous open** (RFC 9293 §3.5): a SYN arriving for a socket that is itself
//!   connecting to exactly that address makes both ends send SYN-ACK and both establish —
//!   what TCP hole punching relies on;
//! * listening sockets accept SYNs for any peer, connects may share a listening socket's
//!   address (address reuse), and a host answers a SYN for which it has no socket with RST
//!   (connection refused) while a NAT or firewall drops unsolicited segments silently;
//! * NATs map and filter TCP flows in their own table, like UDP's (see `network.rs`).
//!
//! What is not: sequence numbers, windows and TCP's own retransmission. Once a connection is
//! established its bytes travel inside DATA segments as packets of
//! [`p2pd_core::stream::Connection`] — p2pd's reliable stream (SACK, RACK, NewReno, flow
//! control), so data is reliable, ordered and congestion-controlled over lossy links, as
//! over a kernel TCP connection, without a second implementation of all of that.
//!
//! Segment: `kind (1) | payload` — SYN, SYN-ACK, ACK, RST, or DATA with a stream packet.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use p2pd_core::stream::{Config as StreamConfig, Connection, Event as StreamEvent};

use crate::endpoint::Datagram;

const SYN: u8 = 1;
const SYN_ACK: u8 = 2;
const ACK: u8 = 3;
const RST: u8 = 4;
const DATA: u8 = 5;

/// First SYN retransmission timeout (RFC 6298 §2.1, Linux's initial RTO).
const SYN_RTO: Duration = Duration::from_secs(1);
/// SYNs (or SYN-ACKs) sent before giving up.
const SYN_TRIES: u32 = 6;
/// Most connections (of every state) one stack holds.
const MAX_CONNECTIONS: usize = 1024;
/// Most queued segments.
const MAX_OUT: usize = 8192;
/// Most queued events.
const MAX_EVENTS: usize = 4096;
/// The stream connection id every simulated TCP connection uses (the 4-tuple tells them
/// apart).
const STREAM_ID: u32 = 0x7c9;

/// A connection's handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TcpId(pub u64);

/// Why a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpFailure {
    /// The peer host answered RST to the SYN: nothing listens there.
    Refused,
    /// No answer to any SYN.
    TimedOut,
    /// The peer reset an established connection.
    Reset,
    /// The stream gave up (the peer went silent).
    Broken,
}

/// What a [`TcpStack`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpEvent {
    /// A connect finished.
    Connected {
        /// The connection.
        id: TcpId,
        /// Our end.
        local: SocketAddr,
        /// Their end.
        remote: SocketAddr,
    },
    /// A listening socket accepted a connection.
    Accepted {
        /// The connection.
        id: TcpId,
        /// The listening address.
        listener: SocketAddr,
        /// Our end (the listening address).
        local: SocketAddr,
        /// Their end.
        remote: SocketAddr,
    },
    /// Bytes (or the end of the peer's stream) can be read.
    Readable(TcpId),
    /// Room in the send buffer after a short write.
    Writable(TcpId),
    /// Both directions finished.
    Closed {
        /// The connection.
        id: TcpId,
    },
    /// The connection failed; the id is gone.
    Failed {
        /// The connection.
        id: TcpId,
        /// Why.
        reason: TcpFailure,
    },
}

#[derive(Debug)]
enum State {
    /// Our SYN is out.
    SynSent {
        tries: u32,
        next: Instant,
    },
    /// We sent SYN-ACK (to a SYN for a listener, or in a simultaneous open).
    SynReceived {
        tries: u32,
        next: Instant,
        passive: bool,
    },
    Established(Box<Connection>),
}

#[derive(Debug)]
struct Conn {
    local: SocketAddr,
    remote: SocketAddr,
    state: State,
    listener: Option<SocketAddr>,
}

/// The TCP stack of one simulated host (or of one endpoint on it). Sans-IO: segments in
/// through [`handle_input`](Self::handle_input), out through
/// [`poll_transmit`](Self::poll_transmit); timers through
/// [`poll_timeout`](Self::poll_timeout) / [`handle_timeout`](Self::handle_timeout).
#[derive(Debug)]
pub struct TcpStack {
    listeners: Vec<SocketAddr>,
    conns: BTreeMap<TcpId, Conn>,
    next_id: u64,
    out: VecDeque<Datagram>,
    events: VecDeque<TcpEvent>,
    stream: StreamConfig,
}

impl Default for TcpStack {
    fn default() -> Self {
        Self::new()
    }
}

impl TcpStack {
    /// An empty stack. It draws no randomness: sequence numbers are not modelled.
    pub fn new() -> Self {
        TcpStack {
            listeners: Vec::new(),
            conns: BTreeMap::new(),
            next_id: 1,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stream: StreamConfig {
                connection_id: STREAM_ID,
                // Kernel TCP keeps an idle connection for hours; the stream's 30 s
                // silence limit would cut a quiet signaling connection.
                idle_timeout: Duration::from_secs(3600),
                keepalive_interval: Duration::from_secs(25),
                ..StreamConfig::default()
            },
        }
    }

    /// Accepts connections to `local`.
    pub fn listen(&mut self, local: SocketAddr) {
        if !self.listeners.contains(&local) {
            self.listeners.push(local);
        }
    }

    /// Connects from `local` (which may be a listening address: address reuse) to
    /// `remote`. The outcome is a [`TcpEvent::Connected`] or [`TcpEvent::Failed`].
    pub fn connect(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr) -> TcpId {
        let id = self.id();
        if self.conns.len() >= MAX_CONNECTIONS || self.find(local, remote).is_some() {
            self.event(TcpEvent::Failed {
                id,
                reason: TcpFailure::Refused,
            });
            return id;
        }
        self.conns.insert(
            id,
            Conn {
                local,
                remote,
                state: State::SynSent {
                    tries: 1,
                    next: now + SYN_RTO,
                },
                listener: None,
            },
        );
        self.send(local, remote, SYN, &[]);
        id
    }

    /// Writes what fits in the send buffer; returns how much.
    pub fn write(&mut self, now: Instant, id: TcpId, bytes: &[u8]) -> usize {
        let n = match self.conns.get_mut(&id).map(|c| &mut c.state) {
            Some(State::Established(conn)) => conn.write(bytes),
            _ => 0,
        };
        self.pump(now, id);
        n
    }

    /// Reads what arrived; 0 when nothing is there (see
    /// [`is_peer_finished`](Self::is_peer_finished) for the end of the stream).
    pub fn read(&mut self, now: Instant, id: TcpId, out: &mut [u8]) -> usize {
        let n = match self.conns.get_mut(&id).map(|c| &mut c.state) {
            Some(State::Established(conn)) => conn.read(out),
            _ => 0,
        };
        if n > 0 {
            self.pump(now, id);
        }
        n
    }

    /// Whether the peer finished its side and everything was read.
    pub fn is_peer_finished(&self, id: TcpId) -> bool {
        matches!(
            self.conns.get(&id).map(|c| &c.state),
            Some(State::Established(conn)) if conn.is_peer_finished()
        )
    }

    /// Half-closes: the peer reads the end of the stream after what was written.
    pub fn shutdown_write(&mut self, now: Instant, id: TcpId) {
        if let Some(State::Established(conn)) = self.conns.get_mut(&id).map(|c| &mut c.state) {
            conn.shutdown_write();
        }
        self.pump(now, id);
    }

    /// Drops the connection at once and tells the peer (RST).
    pub fn abort(&mut self, id: TcpId) {
        if let Some(c) = self.conns.remove(&id) {
            self.send(c.local, c.remote, RST, &[]);
        }
    }

    /// A segment arrived.
    pub fn handle_input(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        let Some((&kind, payload)) = bytes.split_first() else {
            return;
        };
        let found = self.find(destination, source);
        match (kind, found) {
            (SYN, Some(id)) => {
                let Some(c) = self.conns.get_mut(&id) else {
                    return;
                };
                match &c.state {
                    // Simultaneous open: both sides answer SYN-ACK.
                    State::SynSent { .. } => {
                        c.state = State::SynReceived {
                            tries: 1,
                            next: now + SYN_RTO,
                            passive: false,
                        };
                        self.send(destination, source, SYN_ACK, &[]);
                    }
                    State::SynReceived { .. } => self.send(destination, source, SYN_ACK, &[]),
                    // A retransmitted SYN after we established: our SYN-ACK was lost.
                    State::Established(_) => self.send(destination, source, SYN_ACK, &[]),
                }
            }
            (SYN, None) => {
                if self.listeners.contains(&destination) && self.conns.len() < MAX_CONNECTIONS {
                    let id = self.id();
                    self.conns.insert(
                        id,
                        Conn {
                            local: destination,
                            remote: source,
                            state: State::SynReceived {
                                tries: 1,
                                next: now + SYN_RTO,
                                passive: true,
                            },
                            listener: Some(destination),
                        },
                    );
                    self.send(destination, source, SYN_ACK, &[]);
                } else {
                    self.send(destination, source, RST, &[]);
                }
            }
            (SYN_ACK, Some(id)) => {
                let established = matches!(
                    self.conns.get(&id).map(|c| &c.state),
                    Some(State::Established(_))
                );
                if !established {
                    self.establish(now, id);
                }
                self.send(destination, source, ACK, &[]);
            }
            (ACK, Some(id)) => {
                if matches!(
                    self.conns.get(&id).map(|c| &c.state),
                    Some(State::SynReceived { .. })
                ) {
                    self.establish(now, id);
                }
            }
            (DATA, Some(id)) => {
                if matches!(
                    self.conns.get(&id).map(|c| &c.state),
                    Some(State::SynReceived { .. })
                ) {
                    // Data implies the handshake completed (its ACK was lost).
                    self.establish(now, id);
                }
                if let Some(State::Established(conn)) =
                    self.conns.get_mut(&id).map(|c| &mut c.state)
                {
                    let _ = conn.handle_input(now, payload);
                }
                self.pump(now, id);
            }
            (RST, Some(id)) => {
                if let Some(c) = self.conns.remove(&id) {
                    let reason = match c.state {
                        State::SynSent { .. } => TcpFailure::Refused,
                        _ => TcpFailure::Reset,
                    };
                    self.event(TcpEvent::Failed { id, reason });
                }
            }
            (RST, None) => {}
            // A segment for no connection: the host resets it.
            (_, None) => self.send(destination, source, RST, &[]),
            _ => {}
        }
    }

    /// The next segment to send.
    pub fn poll_transmit(&mut self) -> Option<Datagram> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<TcpEvent> {
        self.events.pop_front()
    }

    /// The earliest timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns
            .values()
            .filter_map(|c| match &c.state {
                State::SynSent { next, .. } | State::SynReceived { next, .. } => Some(*next),
                State::Established(conn) => conn.poll_timeout().map(|t| t.at),
            })
            .min()
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ids: Vec<TcpId> = self.conns.keys().copied().collect();
        for id in ids {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            let (local, remote) = (c.local, c.remote);
            match &mut c.state {
                State::SynSent { tries, next } | State::SynReceived { tries, next, .. } => {
                    if now < *next {
                        continue;
                    }
                    if *tries >= SYN_TRIES {
                        self.conns.remove(&id);
                        self.event(TcpEvent::Failed {
                            id,
                            reason: TcpFailure::TimedOut,
                        });
                        continue;
                    }
                    let backoff = SYN_RTO * (1 << *tries);
                    *tries += 1;
                    *next = now + backoff;
                    let kind = match c.state {
                        State::SynSent { .. } => SYN,
                        _ => SYN_ACK,
                    };
                    self.send(local, remote, kind, &[]);
                }
                State::Established(conn) => {
                    conn.handle_timeout(now);
                    self.pump(now, id);
                }
            }
        }
    }

    fn id(&mut self) -> TcpId {
        let id = TcpId(self.next_id);
        self.next_id += 1;
        id
    }

    fn find(&self, local: SocketAddr, remote: SocketAddr) -> Option<TcpId> {
        self.conns
            .iter()
            .find(|(_, c)| c.local == local && c.remote == remote)
            .map(|(id, _)| *id)
    }

    fn event(&mut self, e: TcpEvent) {
        let repeat = matches!(e, TcpEvent::Readable(_) | TcpEvent::Writable(_));
        if repeat && self.events.contains(&e) {
            return;
        }
        if self.events.len() < MAX_EVENTS || !repeat {
            self.events.push_back(e);
        }
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, kind: u8, payload: &[u8]) {
        if self.out.len() >= MAX_OUT {
            return;
        }
        let mut b = Vec::with_capacity(1 + payload.len());
        b.push(kind);
        b.extend_from_slice(payload);
        self.out.push_back(Datagram::tcp(from, to, b));
    }

    fn establish(&mut self, now: Instant, id: TcpId) {
        let Ok(conn) = Connection::new(self.stream.clone(), now) else {
            return;
        };
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let passive = matches!(c.state, State::SynReceived { passive: true, .. });
        c.state = State::Established(Box::new(conn));
        let (local, remote) = (c.local, c.remote);
        match (passive, c.listener) {
            (true, Some(listener)) => self.event(TcpEvent::Accepted {
                id,
                listener,
                local,
                remote,
            }),
            _ => self.event(TcpEvent::Connected { id, local, remote }),
        }
        self.pump(now, id);
    }

    /// Moves a connection's stream packets out and its events up.
    fn pump(&mut self, now: Instant, id: TcpId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let (local, remote) = (c.local, c.remote);
        let State::Established(conn) = &mut c.state else {
            return;
        };
        let mut buf = [0u8; 2048];
        let mut segs = Vec::new();
        while let Some(n) = conn.poll_transmit(now, &mut buf) {
            segs.push(buf[..n].to_vec());
        }
        let mut evs = Vec::new();
        while let Some(e) = conn.poll_event() {
            evs.push(e);
        }
        let failed = conn.is_failed();
        for s in segs {
            self.send(local, remote, DATA, &s);
        }
        for e in evs {
            match e {
                StreamEvent::Readable | StreamEvent::PeerFinished => {
                    self.event(TcpEvent::Readable(id))
                }
                StreamEvent::Writable => self.event(TcpEvent::Writable(id)),
                // Kept until aborted: unread bytes may remain.
                StreamEvent::Closed => self.event(TcpEvent::Closed { id }),
                StreamEvent::Failed { .. } => {}
            }
        }
        if failed {
            self.conns.remove(&id);
            self.event(TcpEvent::Failed {
                id,
                reason: TcpFailure::Broken,
            });
        }
    }
}
