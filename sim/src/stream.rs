//! Core's reliable stream ([`p2pd_core::stream::Connection`]) on a simulated host.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use p2pd_core::stream::{Connection, Event};

use crate::endpoint::{Datagram, Endpoint};

/// `Readable`/`Writable` events kept per endpoint (`PeerFinished`, `Closed` and `Failed`
/// come at most once each and are always kept).
const MAX_EVENTS: usize = 4096;

/// One stream connection on a host, sending from `local` to a fixed `peer` address (a
/// punched path: the peer's public mapping), with a tiny application on top: it writes the
/// bytes given to [`send`](Self::send) as fast as the connection takes them, optionally
/// half-closes after them, and reads everything that arrives into a running 64-bit hash
/// (FNV-1a) and a count, so tests can check multi-megabyte transfers without keeping them.
///
/// Datagrams from any other address, or to another local address, are ignored the way a
/// connected UDP socket ignores them.
#[derive(Debug)]
pub struct StreamEndpoint {
    conn: Connection,
    local: SocketAddr,
    peer: SocketAddr,
    outgoing: Vec<u8>,
    written: usize,
    finish: bool,
    received: u64,
    hash: u64,
    events: Vec<(Instant, Event)>,
    out: VecDeque<Datagram>,
    buf: Vec<u8>,
    ignored: u64,
    vanished: bool,
}

/// FNV-1a's 64-bit offset basis: the hash of nothing.
pub const EMPTY_HASH: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a over `bytes`, continuing from `hash` (start with [`EMPTY_HASH`]).
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

impl StreamEndpoint {
    /// Runs `conn` from `local` to `peer`; anything it wants to send at `now` (the
    /// network's current time) goes out when the endpoint is attached.
    pub fn new(conn: Connection, local: SocketAddr, peer: SocketAddr, now: Instant) -> Self {
        let mut e = StreamEndpoint {
            conn,
            local,
            peer,
            outgoing: Vec::new(),
            written: 0,
            finish: false,
            received: 0,
            hash: EMPTY_HASH,
            events: Vec::new(),
            out: VecDeque::new(),
            buf: vec![0u8; 65_536],
            ignored: 0,
            vanished: false,
        };
        e.pump(now);
        e
    }

    /// Queues `bytes` for writing; with `finish`, half-closes once they are all written.
    pub fn send(&mut self, bytes: &[u8], finish: bool, now: Instant) {
        self.outgoing.extend_from_slice(bytes);
        self.finish |= finish;
        self.pump(now);
    }

    /// The connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Bytes read so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// FNV-1a of the bytes read so far.
    pub fn received_hash(&self) -> u64 {
        self.hash
    }

    /// Whether every queued byte was handed to the connection.
    pub fn all_written(&self) -> bool {
        self.written == self.outgoing.len()
    }

    /// The connection's events with the virtual instant each was seen at.
    pub fn events(&self) -> &[(Instant, Event)] {
        &self.events
    }

    /// The first time `event` was seen.
    pub fn event_time(&self, event: Event) -> Option<Instant> {
        self.events
            .iter()
            .find(|(_, e)| *e == event)
            .map(|(t, _)| *t)
    }

    /// Datagrams ignored (wrong address or rejected by the connection).
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// The host crashes: from now on it neither sends, receives nor wakes.
    pub fn vanish(&mut self) {
        self.vanished = true;
        self.out.clear();
    }

    /// Writes what fits, reads what arrived, collects events and transmits.
    fn pump(&mut self, now: Instant) {
        if self.vanished {
            return;
        }
        loop {
            let mut progress = false;
            if self.written < self.outgoing.len() {
                let n = self.conn.write(&self.outgoing[self.written..]);
                self.written += n;
                progress |= n > 0;
            }
            if self.finish && self.all_written() && self.conn.writable() > 0 {
                self.conn.shutdown_write();
            }
            loop {
                let n = self.conn.read(&mut self.buf);
                if n == 0 {
                    break;
                }
                self.received += n as u64;
                self.hash = fnv1a(self.hash, &self.buf[..n]);
            }
            while let Some(e) = self.conn.poll_event() {
                // Readable and Writable repeat all transfer long; the others come once each,
                // so they are always kept.
                let repeats = matches!(e, Event::Readable | Event::Writable);
                if !repeats || self.events.len() < MAX_EVENTS {
                    self.events.push((now, e));
                }
            }
            let mut dgram = [0u8; 2048];
            while let Some(n) = self.conn.poll_transmit(now, &mut dgram) {
                self.out
                    .push_back(Datagram::new(self.local, self.peer, dgram[..n].to_vec()));
                progress = true;
            }
            if !progress {
                break;
            }
        }
    }
}

impl Endpoint for StreamEndpoint {
    fn handle_input(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        if self.vanished {
            return;
        }
        if source != self.peer || destination != self.local {
            self.ignored += 1;
            return;
        }
        if self.conn.handle_input(now, bytes).is_err() {
            self.ignored += 1;
        }
        self.pump(now);
    }

    fn poll_transmit(&mut self) -> Option<Datagram> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.vanished {
            return None;
        }
        self.conn.poll_timeout().map(|t| t.at)
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.vanished {
            return;
        }
        self.conn.handle_timeout(now);
        self.pump(now);
    }
}
