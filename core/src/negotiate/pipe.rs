//! What a successful negotiation yields: a reliable, ordered byte stream to the peer,
//! whatever the strategy.
//!
//! TCP strategies (direct, reverse, TCP punch) end with a kernel TCP connection the driver
//! already holds ([`Pipe::Tcp`]). UDP strategies (UDP punch, relay) end with a
//! [`DatagramPipe`]: p2pd's reliable stream ([`crate::stream::Connection`]) over the punched
//! UDP path or through a TURN allocation, a sans-IO machine the driver keeps running with the
//! sockets it names.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::io::{Action, TcpEvent, TcpId};
use crate::stream::{Connection, Event as StreamEvent};
use crate::time::Timeout;
use crate::transmit::{DatagramQueue, Transmit};
use crate::turn::{TurnClient, TurnClientEvent};

/// Largest datagram a [`DatagramPipe`] sends.
const MAX_DATAGRAM: usize = 2048;
/// Most transmits or actions queued before the pipe stops producing more.
const MAX_QUEUE: usize = 256;

/// The connection a negotiation produced.
#[derive(Debug)]
pub enum Pipe {
    /// A TCP connection the driver holds; `leftover` is what the peer sent right after its
    /// handshake (the application's first bytes), to be read before anything else.
    Tcp {
        /// The connection.
        id: TcpId,
        /// Bytes received after the handshake.
        leftover: Vec<u8>,
    },
    /// A reliable stream over UDP (punched path or relay).
    Datagram(Box<DatagramPipe>),
}

/// The way a [`DatagramPipe`]'s datagrams travel.
#[derive(Debug)]
pub(crate) enum Path {
    /// Straight between two UDP sockets (a punched path, or to the peer's relayed address).
    Udp {
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// Through our own TURN allocation, to `peer` (learned from the first valid datagram
    /// when the peer did not announce a relayed address of its own). `tcp` is the control
    /// connection when the allocation runs over TCP.
    Relay {
        turn: Box<TurnClient>,
        peer: Option<SocketAddr>,
        peer_ip: IpAddr,
        tcp: Option<TcpId>,
    },
}

/// p2pd's reliable stream over a UDP path or a TURN relay, sans-IO.
///
/// Drive it like any machine: `handle_udp` / `handle_tcp` / `handle_timeout` in;
/// `poll_transmit`, `poll_action` (TCP to the TURN server) and `poll_timeout` out. Read and
/// write the stream with [`read`](Self::read) / [`write`](Self::write);
/// [`poll_event`](Self::poll_event) says when it is readable, writable, finished or failed.
#[derive(Debug)]
pub struct DatagramPipe {
    conn: Connection,
    path: Path,
    out: DatagramQueue,
    actions: VecDeque<Action>,
    events: VecDeque<StreamEvent>,
    relay_failed: bool,
    /// Openers still to send, and when the next is due (see [`OPENER`]).
    opener: Option<(u32, Instant)>,
    /// Other local sockets the path may move to while the handshake runs (see
    /// [`handle_udp`](Self::handle_udp)).
    roam: Vec<SocketAddr>,
}

/// What the side without an allocation sends to the peer's relayed address until the peer
/// answers: the peer's TURN client learns our address from it (and the TURN server, once
/// the peer's permission is in, relays it). Neither side's stream would speak first
/// otherwise: the responder's HELLO waits for our address, our HELLO for the responder's.
pub(crate) const OPENER: &[u8] = b"P2PO";
/// Openers sent at most, one per [`OPENER_INTERVAL`].
const OPENERS: u32 = 50;
const OPENER_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

impl DatagramPipe {
    pub(crate) fn new(conn: Connection, path: Path) -> Self {
        DatagramPipe {
            conn,
            path,
            out: DatagramQueue::new(MAX_QUEUE),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            relay_failed: false,
            opener: None,
            roam: Vec::new(),
        }
    }

    /// Lets the path move to any of `sockets` (see [`handle_udp`](Self::handle_udp)).
    pub(crate) fn set_roaming(&mut self, sockets: Vec<SocketAddr>) {
        self.roam = sockets;
    }

    /// Fixes the path where it is.
    pub(crate) fn stop_roaming(&mut self) {
        self.roam.clear();
    }

    /// Whether a datagram to `local` belongs to this pipe.
    pub fn accepts(&self, local: SocketAddr) -> bool {
        self.sockets().contains(&local) || self.roam.contains(&local)
    }

    /// Sends [`OPENER`]s to the remote until it answers (see there).
    pub(crate) fn open_first(&mut self, now: Instant) {
        self.opener = Some((OPENERS, now));
        self.handle_timeout(now);
    }

    /// The UDP sockets this pipe sends from (the driver must keep them open).
    pub fn sockets(&self) -> Vec<SocketAddr> {
        match &self.path {
            Path::Udp { local, .. } => vec![*local],
            Path::Relay { turn, tcp, .. } => match tcp {
                Some(_) => Vec::new(),
                None => vec![turn.config().local],
            },
        }
    }

    /// The TCP connection to the TURN server, if the relay runs over TCP.
    pub fn tcp(&self) -> Option<TcpId> {
        match &self.path {
            Path::Relay { tcp, .. } => *tcp,
            Path::Udp { .. } => None,
        }
    }

    /// Our end of the path (the UDP socket, or the relayed address).
    pub fn local_addr(&self) -> SocketAddr {
        match &self.path {
            Path::Udp { local, .. } => *local,
            Path::Relay { turn, .. } => turn.relayed().unwrap_or(turn.config().local),
        }
    }

    /// The peer's end as we send to it.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        match &self.path {
            Path::Udp { remote, .. } => Some(*remote),
            Path::Relay { peer, .. } => *peer,
        }
    }

    /// The stream itself (statistics, RTT).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Writes what fits; returns how much.
    pub fn write(&mut self, now: Instant, bytes: &[u8]) -> usize {
        let n = self.conn.write(bytes);
        self.pump(now);
        n
    }

    /// Reads what arrived; returns how much.
    pub fn read(&mut self, now: Instant, out: &mut [u8]) -> usize {
        let n = self.conn.read(out);
        self.pump(now);
        n
    }

    /// No more writes: the peer reads end of stream after what was written.
    pub fn shutdown_write(&mut self, now: Instant) {
        self.conn.shutdown_write();
        self.pump(now);
    }

    /// Whether the stream is done both ways (or failed).
    pub fn is_closed(&self) -> bool {
        self.conn.is_closed() || self.conn.is_failed() || self.relay_failed
    }

    /// Whether the peer finished writing and everything it wrote was read.
    pub fn is_peer_finished(&self) -> bool {
        self.conn.is_peer_finished()
    }

    /// Whether all written bytes were acknowledged.
    pub fn is_flushed(&self) -> bool {
        self.conn.is_flushed()
    }

    /// The next stream event.
    pub fn poll_event(&mut self) -> Option<StreamEvent> {
        self.events.pop_front()
    }

    /// A datagram arrived on one of [`sockets`](Self::sockets).
    pub fn handle_udp(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        match &mut self.path {
            // The path follows the peer's valid packets within its IP: a NAT that
            // rebinds the peer's port, or — while punching — the other end settling on
            // another of the mappings that worked (a birthday punch can hit several),
            // must not strand the stream.
            Path::Udp { local, remote } => {
                let ours = destination == *local || self.roam.contains(&destination);
                if ours && source.ip() == remote.ip() && self.conn.handle_input(now, bytes).is_ok()
                {
                    self.opener = None;
                    *local = destination;
                    *remote = source;
                }
            }
            Path::Relay { turn, .. } => turn.handle_input(now, source, destination, bytes),
        }
        self.pump(now);
    }

    /// Something happened on the TURN control connection.
    pub fn handle_tcp(&mut self, now: Instant, event: TcpEvent<'_>) {
        if let Path::Relay {
            turn,
            tcp: Some(id),
            ..
        } = &mut self.path
        {
            match event {
                TcpEvent::Data { id: i, bytes } if i == *id => {
                    let server = turn.config().server;
                    let local = turn.config().local;
                    turn.handle_input(now, server, local, bytes);
                }
                TcpEvent::Closed { id: i, .. } if i == *id => turn.handle_connection_closed(now),
                _ => {}
            }
        }
        self.pump(now);
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let (Some((left, at)), Path::Udp { local, remote }) = (self.opener, &self.path)
            && now >= at
        {
            self.out.push(*local, *remote, OPENER.to_vec());
            self.opener = (left > 1).then(|| (left - 1, now + OPENER_INTERVAL));
        }
        self.conn.handle_timeout(now);
        if let Path::Relay { turn, .. } = &mut self.path {
            turn.handle_timeout(now);
        }
        self.pump(now);
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Timeout> {
        let opener = self.opener.map(|(_, at)| Timeout {
            at,
            reason: "relay opener",
        });
        let turn = match &self.path {
            Path::Relay { turn, .. } => turn.poll_timeout(),
            Path::Udp { .. } => None,
        };
        Timeout::earliest(Timeout::earliest(self.conn.poll_timeout(), opener), turn)
    }

    /// The next UDP datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        self.out.poll()
    }

    /// The next request for the driver (bytes for the TURN server's TCP connection).
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Ends the pipe: releases the TURN allocation (its Refresh goes out on the next
    /// polls) and stops the stream.
    pub fn close(&mut self, now: Instant) {
        if let Path::Relay { turn, .. } = &mut self.path {
            turn.close(now);
        }
        self.pump(now);
    }

    /// Moves everything the stream and the TURN client want to send into the queues,
    /// and the TURN client's data into the stream, until nothing moves.
    pub(crate) fn pump(&mut self, now: Instant) {
        let mut buf = [0u8; MAX_DATAGRAM];
        for _ in 0..64 {
            let mut progress = false;
            // Stream datagrams out.
            while self.out.len() + self.actions.len() < MAX_QUEUE {
                let Some(n) = self.conn.poll_transmit(now, &mut buf) else {
                    break;
                };
                progress = true;
                match &mut self.path {
                    Path::Udp { local, remote } => {
                        self.out.push(*local, *remote, buf[..n].to_vec());
                    }
                    Path::Relay { turn, peer, .. } => {
                        if let Some(p) = *peer {
                            // A full queue drops the datagram: the stream retransmits it.
                            let _ = turn.send_to(now, p, &buf[..n]);
                        }
                    }
                }
            }
            // The TURN client's traffic and data.
            if let Path::Relay {
                turn,
                peer,
                peer_ip,
                tcp,
            } = &mut self.path
            {
                while self.out.len() + self.actions.len() < MAX_QUEUE {
                    let Some(t) = turn.poll_transmit() else {
                        break;
                    };
                    progress = true;
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
                    progress = true;
                    match e {
                        TurnClientEvent::Data { peer: from, bytes } => {
                            if from.ip() != *peer_ip {
                                continue;
                            }
                            if peer.is_none() {
                                *peer = Some(from);
                            }
                            if *peer == Some(from) {
                                let _ = self.conn.handle_input(now, &bytes);
                            }
                        }
                        TurnClientEvent::Expired | TurnClientEvent::ServerUnreachable { .. } => {
                            self.relay_failed = true;
                        }
                        _ => {}
                    }
                }
            }
            while let Some(e) = self.conn.poll_event() {
                // Readable / Writable repeat; one queued copy says it all.
                if !self.events.contains(&e) {
                    self.events.push_back(e);
                }
            }
            if !progress {
                break;
            }
        }
    }
}
