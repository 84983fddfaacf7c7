//! The sans-IO UDP hole-punch machine.
//!
//! From `start`, it sends one small authenticated probe per `interval`, cycling over every
//! (local socket, candidate remote) pair — candidates come from [`super::predict`] or
//! [`super::birthday`]. A valid probe from the peer is answered with an ACK on the same
//! path, and from then on probes go only to that path. The first valid ACK proves the path
//! works both ways: [`UdpPunchEvent::Punched`]; after that the machine still answers the
//! peer's probes, so a lost last ACK does not leave the peer stranded. After `max_packets` probes and a `linger`
//! for late answers, [`UdpPunchEvent::Failed`].
//!
//! A packet is `"P2PH" | kind (1) | attempt id (8) | MAC (16)`, the MAC a truncated
//! HMAC-SHA256 under the caller's key over the first 13 bytes: stray or forged datagrams,
//! and those of another attempt, are ignored.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::time::Timeout;
use crate::transmit::{Transmit, Transport};

const MAGIC: &[u8; 4] = b"P2PH";
const KIND_PROBE: u8 = 0;
const KIND_ACK: u8 = 1;
const MAC_LEN: usize = 16;
/// The size of every punch packet.
pub const PACKET_LEN: usize = 4 + 1 + 8 + MAC_LEN;
/// At most this many transmits wait to be drained; extra ACKs are dropped.
const MAX_QUEUE: usize = 64;
/// The most (local, remote) pairs a machine cycles over.
pub const MAX_PAIRS: usize = 65536;

/// What the caller gives the machine.
#[derive(Debug, Clone)]
pub struct PunchConfig {
    /// The shared key (from the signaling channel) that authenticates punch packets.
    pub key: [u8; 32],
    /// The attempt id both sides agreed on.
    pub attempt: u64,
    /// The local sockets to punch from.
    pub locals: Vec<SocketAddr>,
    /// The remote endpoints to try, best first.
    pub candidates: Vec<SocketAddr>,
    /// When to send the first probe.
    pub start: Instant,
    /// The gap between probes (the packet-rate budget).
    pub interval: Duration,
    /// The most probes to send.
    pub max_packets: u32,
    /// How long to wait for answers after the last probe.
    pub linger: Duration,
}

/// Why a configuration is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PunchError {
    /// No local socket or no candidate.
    #[error("nothing to punch: no local socket or no candidate")]
    NoPairs,
    /// More than [`MAX_PAIRS`] pairs.
    #[error("too many (local, candidate) pairs")]
    TooManyPairs,
    /// A zero interval or zero packet budget.
    #[error("zero interval or zero packet budget")]
    NoBudget,
    /// The MAC refused the key (HMAC takes any length, so this does not happen).
    #[error("the punch key was refused")]
    Key,
}

/// Why a punch failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PunchFailure {
    /// The packet budget ran out without a two-way path.
    BudgetExhausted {
        /// Probes sent.
        sent: u32,
    },
}

/// What the machine reports (once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpPunchEvent {
    /// Both directions work between `local` and `remote`.
    Punched {
        /// Our socket.
        local: SocketAddr,
        /// The peer's address as seen from here.
        remote: SocketAddr,
    },
    /// No path.
    Failed(PunchFailure),
}

/// The punch machine.
#[derive(Debug)]
pub struct UdpPunch {
    mac_key: Hmac<Sha256>,
    attempt: u64,
    locals: Vec<SocketAddr>,
    candidates: Vec<SocketAddr>,
    next_at: Instant,
    interval: Duration,
    max_packets: u32,
    linger: Duration,
    sent: u32,
    cursor: usize,
    focus: Option<(SocketAddr, SocketAddr)>,
    queue: VecDeque<(SocketAddr, SocketAddr, [u8; PACKET_LEN])>,
    current: Option<(SocketAddr, SocketAddr, [u8; PACKET_LEN])>,
    events: VecDeque<UdpPunchEvent>,
    done: bool,
    punched: bool,
}

impl UdpPunch {
    /// A machine for `config`.
    pub fn new(config: PunchConfig) -> Result<Self, PunchError> {
        let pairs = config.locals.len().saturating_mul(config.candidates.len());
        if pairs == 0 {
            return Err(PunchError::NoPairs);
        }
        if pairs > MAX_PAIRS {
            return Err(PunchError::TooManyPairs);
        }
        if config.interval.is_zero() || config.max_packets == 0 {
            return Err(PunchError::NoBudget);
        }
        // HMAC accepts keys of any length; a 32-byte key cannot be refused.
        let mac_key =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&config.key).map_err(|_| PunchError::Key)?;
        Ok(UdpPunch {
            mac_key,
            attempt: config.attempt,
            locals: config.locals,
            candidates: config.candidates,
            next_at: config.start,
            interval: config.interval,
            max_packets: config.max_packets,
            linger: config.linger,
            sent: 0,
            cursor: 0,
            focus: None,
            queue: VecDeque::new(),
            current: None,
            events: VecDeque::new(),
            done: false,
            punched: false,
        })
    }

    /// Probes sent so far.
    pub fn probes_sent(&self) -> u32 {
        self.sent
    }

    /// Whether the machine has reported its outcome.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn tag(&self, head: &[u8]) -> [u8; MAC_LEN] {
        let mut m = self.mac_key.clone();
        m.update(head);
        let full = m.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    fn packet(&self, kind: u8) -> [u8; PACKET_LEN] {
        let mut p = [0u8; PACKET_LEN];
        p[..4].copy_from_slice(MAGIC);
        p[4] = kind;
        p[5..13].copy_from_slice(&self.attempt.to_be_bytes());
        let tag = self.tag(&p[..13]);
        p[13..].copy_from_slice(&tag);
        p
    }

    /// The kind of a valid packet of this attempt, or `None`.
    fn parse(&self, bytes: &[u8]) -> Option<u8> {
        if bytes.len() != PACKET_LEN || &bytes[..4] != MAGIC {
            return None;
        }
        let kind = bytes[4];
        if kind != KIND_PROBE && kind != KIND_ACK {
            return None;
        }
        if bytes[5..13] != self.attempt.to_be_bytes() {
            return None;
        }
        let tag = self.tag(&bytes[..13]);
        if bool::from(tag.ct_eq(&bytes[13..])) {
            Some(kind)
        } else {
            None
        }
    }

    fn finish(&mut self, event: UdpPunchEvent) {
        if !self.done {
            self.done = true;
            self.punched = matches!(event, UdpPunchEvent::Punched { .. });
            self.events.push_back(event);
        }
    }

    /// A datagram from `source` arrived on our socket `destination`.
    pub fn handle_input(
        &mut self,
        _now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        if !self.locals.contains(&destination) || (self.done && !self.punched) {
            return;
        }
        let kind = self.parse(bytes);
        if self.done {
            // Punched: keep answering probes, in case our last ACK was lost and the peer is
            // still waiting for one.
            if kind == Some(KIND_PROBE) && self.queue.len() < MAX_QUEUE {
                let ack = self.packet(KIND_ACK);
                self.queue.push_back((destination, source, ack));
            }
            return;
        }
        match kind {
            Some(KIND_PROBE) => {
                if self.queue.len() < MAX_QUEUE {
                    let ack = self.packet(KIND_ACK);
                    self.queue.push_back((destination, source, ack));
                }
                self.focus.get_or_insert((destination, source));
            }
            Some(KIND_ACK) => {
                // Our probe reached the peer and its answer reached us: both ways work.
                // Answer once more so the peer, if it only saw our ACK-less probes, learns it.
                if self.queue.len() < MAX_QUEUE {
                    let ack = self.packet(KIND_ACK);
                    self.queue.push_back((destination, source, ack));
                }
                self.finish(UdpPunchEvent::Punched {
                    local: destination,
                    remote: source,
                });
            }
            _ => {}
        }
    }

    /// Time passed: send the probes that are due, or give up.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.done {
            return;
        }
        // Catch up on due probes, but never more than the queue holds.
        while self.sent < self.max_packets && self.next_at <= now && self.queue.len() < MAX_QUEUE {
            let (local, remote) = match self.focus {
                Some(pair) => pair,
                None => {
                    let n = self.candidates.len();
                    let i = self.cursor % (self.locals.len() * n);
                    self.cursor = self.cursor.wrapping_add(1);
                    (self.locals[i / n], self.candidates[i % n])
                }
            };
            let probe = self.packet(KIND_PROBE);
            self.queue.push_back((local, remote, probe));
            self.sent += 1;
            self.next_at += self.interval;
        }
        if self.sent >= self.max_packets && now >= self.give_up_at() {
            self.finish(UdpPunchEvent::Failed(PunchFailure::BudgetExhausted {
                sent: self.sent,
            }));
        }
    }

    fn give_up_at(&self) -> Instant {
        // `next_at` is one interval past the last probe once the budget is spent.
        self.next_at + self.linger
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        self.current = self.queue.pop_front();
        self.current.as_ref().map(|(src, dst, bytes)| Transmit {
            transport: Transport::Udp,
            source: *src,
            destination: *dst,
            contents: &bytes[..],
        })
    }

    /// When to wake next.
    pub fn poll_timeout(&self) -> Option<Timeout> {
        if self.done {
            return None;
        }
        if self.sent < self.max_packets {
            Some(Timeout::new(self.next_at, "punch probe"))
        } else {
            Some(Timeout::new(self.give_up_at(), "punch gives up"))
        }
    }

    /// The outcome, once.
    pub fn poll_event(&mut self) -> Option<UdpPunchEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn config(t0: Instant, local: &str, remote: &[&str]) -> PunchConfig {
        PunchConfig {
            key: [7; 32],
            attempt: 42,
            locals: vec![addr(local)],
            candidates: remote.iter().map(|r| addr(r)).collect(),
            start: t0,
            interval: Duration::from_millis(10),
            max_packets: 5,
            linger: Duration::from_millis(100),
        }
    }

    fn drain(m: &mut UdpPunch) -> Vec<(SocketAddr, SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(t) = m.poll_transmit() {
            out.push((t.source, t.destination, t.contents.to_vec()));
        }
        out
    }

    #[test]
    fn two_machines_punch_directly() {
        let t0 = Instant::now();
        let mut a =
            UdpPunch::new(config(t0, "10.0.0.1:1000", &["9.9.9.9:1", "9.9.9.9:2000"])).expect("a");
        let mut b = UdpPunch::new(config(t0, "9.9.9.9:2000", &["10.0.0.1:1000"])).expect("b");
        let mut now = t0;
        for _ in 0..10 {
            a.handle_timeout(now);
            b.handle_timeout(now);
            for (s, d, p) in drain(&mut a) {
                if d == addr("9.9.9.9:2000") {
                    b.handle_input(now, s, d, &p);
                }
            }
            for (s, d, p) in drain(&mut b) {
                a.handle_input(now, s, d, &p);
            }
            now += Duration::from_millis(10);
        }
        let want_a = UdpPunchEvent::Punched {
            local: addr("10.0.0.1:1000"),
            remote: addr("9.9.9.9:2000"),
        };
        assert_eq!(a.poll_event(), Some(want_a));
        assert!(matches!(
            b.poll_event(),
            Some(UdpPunchEvent::Punched { .. })
        ));
        assert_eq!(a.poll_event(), None);
        assert_eq!(a.poll_timeout(), None);
        // Done, it still answers a probe (the peer may have lost our last ACK).
        drain(&mut a);
        let probe = b.packet(KIND_PROBE);
        a.handle_input(now, addr("9.9.9.9:2000"), addr("10.0.0.1:1000"), &probe);
        let answers = drain(&mut a);
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].2, a.packet(KIND_ACK).to_vec());
    }

    #[test]
    fn forged_or_foreign_packets_are_ignored_and_budget_ends_in_failure() {
        let t0 = Instant::now();
        let mut a = UdpPunch::new(config(t0, "10.0.0.1:1000", &["9.9.9.9:2000"])).expect("a");
        let other = UdpPunch::new(PunchConfig {
            attempt: 43,
            ..config(t0, "9.9.9.9:2000", &["10.0.0.1:1000"])
        })
        .expect("other");
        let mut wrong_key = config(t0, "9.9.9.9:2000", &["10.0.0.1:1000"]);
        wrong_key.key = [8; 32];
        let wrong_key = UdpPunch::new(wrong_key).expect("wrong key");
        let src = addr("9.9.9.9:2000");
        let dst = addr("10.0.0.1:1000");
        let mut tampered = a.packet(KIND_ACK);
        tampered[PACKET_LEN - 1] ^= 1;
        for bad in [
            &other.packet(KIND_ACK)[..],
            &wrong_key.packet(KIND_ACK)[..],
            &tampered[..],
            &a.packet(KIND_ACK)[..PACKET_LEN - 1],
            b"",
        ] {
            a.handle_input(t0, src, dst, bad);
        }
        // A valid ACK on a socket that is not ours is ignored too.
        a.handle_input(t0, src, addr("10.0.0.1:1001"), &a.packet(KIND_ACK));
        assert_eq!(a.poll_event(), None);
        let mut now = t0;
        let mut probes = 0;
        while a.poll_event().is_none() {
            let Some(t) = a.poll_timeout() else { break };
            now = now.max(t.at);
            a.handle_timeout(now);
            probes += drain(&mut a).len();
            assert!(now < t0 + Duration::from_secs(1), "never gave up");
        }
        assert_eq!(probes, 5);
        assert!(a.is_done());
        assert_eq!(a.probes_sent(), 5);
    }

    #[test]
    fn rejects_empty_configs() {
        let t0 = Instant::now();
        assert_eq!(
            UdpPunch::new(config(t0, "10.0.0.1:1", &[])).err(),
            Some(PunchError::NoPairs)
        );
        let mut c = config(t0, "10.0.0.1:1", &["1.1.1.1:1"]);
        c.max_packets = 0;
        assert_eq!(UdpPunch::new(c).err(), Some(PunchError::NoBudget));
    }
}
