//! Binding probes multiplexed over many local sockets, each retried with a fresh
//! transaction ID per attempt so that every response yields an exact round trip.
//!
//! RFC 8489 retransmits one transaction identically, so after a retransmission nobody can
//! tell which send a response answers (Karn's problem) and the round trip is lost. A
//! classifier needs round trips to size its waits, so here each attempt is its own
//! transaction: a response names the attempt it answers.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::rng::Rng;
use crate::stun::{
    ChangeRequest, ChangedAddress, Class, Message, MessageBuilder, MessageType, Method,
    OtherAddress, ResponseOrigin, ResponsePort, ResponseSource, TransactionId,
};
use crate::time::Timeout;
use crate::transmit::{Transmit, Transport};

/// Identifies a probe within a [`Prober`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProbeId(pub usize);

/// When a probe's attempts go out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Gap before the second attempt.
    pub first_gap: Duration,
    /// Each gap is the previous one times this (1.0 = evenly spaced).
    pub backoff: f64,
    /// No gap grows beyond this.
    pub max_gap: Duration,
    /// Attempts in all.
    pub attempts: u32,
    /// After the last attempt, how long to wait for a response before giving up.
    pub final_wait: Duration,
}

impl Schedule {
    /// The instant of the last attempt plus the final wait, from `start`.
    pub fn total(&self) -> Duration {
        let mut t = Duration::ZERO;
        let mut gap = self.first_gap;
        for _ in 1..self.attempts.max(1) {
            t += gap;
            gap = gap.mul_f64(self.backoff).min(self.max_gap);
        }
        t + self.final_wait
    }
}

/// What a probe asks and where the answer must come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSpec {
    /// The local socket it is sent from.
    pub local: SocketAddr,
    /// The server address it is sent to.
    pub server: SocketAddr,
    /// RFC 5780 CHANGE-REQUEST flags.
    pub change: ChangeRequest,
    /// The only acceptable source of the response.
    pub expect: ResponseSource,
    /// RFC 5780 RESPONSE-PORT: ask for the answer on this port of our external IP.
    pub response_port: Option<u16>,
    /// The local socket the answer must arrive on, when not `local` (RESPONSE-PORT tests
    /// aim the answer at another socket's mapping).
    pub receive_on: Option<SocketAddr>,
}

impl ProbeSpec {
    /// A plain Binding request from `local` to `server`, answered by `server` itself.
    pub fn plain(local: SocketAddr, server: SocketAddr) -> Self {
        ProbeSpec {
            local,
            server,
            change: ChangeRequest::default(),
            expect: ResponseSource::Destination,
            response_port: None,
            receive_on: None,
        }
    }
}

/// A response to a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeAnswer {
    /// XOR-MAPPED-ADDRESS (or MAPPED-ADDRESS).
    pub mapped: SocketAddr,
    /// Where the response came from.
    pub source: SocketAddr,
    /// OTHER-ADDRESS, or RFC 3489 CHANGED-ADDRESS.
    pub other: Option<SocketAddr>,
    /// RESPONSE-ORIGIN.
    pub origin: Option<SocketAddr>,
    /// Exact round trip of the attempt that was answered.
    pub rtt: Duration,
    /// Which attempt (1-based) was answered.
    pub attempt: u32,
    /// When it arrived.
    pub at: Instant,
}

/// A probe's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// Still sending or waiting.
    Pending,
    /// Answered.
    Answered(ProbeAnswer),
    /// Every attempt went unanswered.
    Unanswered {
        /// Attempts sent.
        attempts: u32,
    },
    /// Stopped by the owner before an outcome.
    Cancelled,
}

#[derive(Debug)]
struct Probe {
    spec: ProbeSpec,
    schedule: Schedule,
    sent: Vec<Instant>,
    next: Instant,
    gap: Duration,
    outcome: ProbeOutcome,
}

/// Many probes at once, sans-IO.
#[derive(Debug)]
pub struct Prober {
    probes: Vec<Probe>,
    by_txid: HashMap<TransactionId, (usize, u32)>,
    queue: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    current: Option<(SocketAddr, SocketAddr, Vec<u8>)>,
    rng: Rng,
    requests_sent: u32,
}

/// Largest number of probes one prober holds; more is a caller bug, refused.
pub const MAX_PROBES: usize = 256;

impl Prober {
    /// An empty prober drawing transaction IDs from `rng`.
    pub fn new(rng: Rng) -> Self {
        Prober {
            probes: Vec::new(),
            by_txid: HashMap::new(),
            queue: VecDeque::new(),
            current: None,
            rng,
            requests_sent: 0,
        }
    }

    /// Adds a probe whose first attempt goes out at `now`. `None` if the prober is full.
    pub fn add(&mut self, now: Instant, spec: ProbeSpec, schedule: Schedule) -> Option<ProbeId> {
        if self.probes.len() >= MAX_PROBES {
            return None;
        }
        self.probes.push(Probe {
            spec,
            schedule,
            sent: Vec::new(),
            next: now,
            gap: schedule.first_gap,
            outcome: ProbeOutcome::Pending,
        });
        let id = ProbeId(self.probes.len() - 1);
        self.handle_timeout(now);
        Some(id)
    }

    /// A probe's current outcome.
    pub fn outcome(&self, id: ProbeId) -> ProbeOutcome {
        self.probes
            .get(id.0)
            .map_or(ProbeOutcome::Cancelled, |p| p.outcome)
    }

    /// A probe's spec.
    pub fn spec(&self, id: ProbeId) -> Option<&ProbeSpec> {
        self.probes.get(id.0).map(|p| &p.spec)
    }

    /// How many attempts a probe has sent.
    pub fn attempts(&self, id: ProbeId) -> u32 {
        self.probes.get(id.0).map_or(0, |p| p.sent.len() as u32)
    }

    /// Stops a pending probe.
    pub fn cancel(&mut self, id: ProbeId) {
        if let Some(p) = self.probes.get_mut(id.0) {
            if p.outcome == ProbeOutcome::Pending {
                p.outcome = ProbeOutcome::Cancelled;
            }
        }
    }

    /// Whether no probe is pending.
    pub fn is_idle(&self) -> bool {
        self.probes
            .iter()
            .all(|p| p.outcome != ProbeOutcome::Pending)
    }

    /// Requests sent so far, all probes together.
    pub fn requests_sent(&self) -> u32 {
        self.requests_sent
    }

    /// Sends due attempts and gives up on probes whose time is over.
    pub fn handle_timeout(&mut self, now: Instant) {
        for i in 0..self.probes.len() {
            let p = &mut self.probes[i];
            if p.outcome != ProbeOutcome::Pending || now < p.next {
                continue;
            }
            let n = p.sent.len() as u32;
            if n >= p.schedule.attempts.max(1) {
                p.outcome = ProbeOutcome::Unanswered { attempts: n };
                continue;
            }
            let txid = TransactionId::random(&mut self.rng);
            let mut buf = [0u8; 64];
            let Ok(mut b) = MessageBuilder::new(&mut buf, MessageType::BINDING_REQUEST, txid)
            else {
                continue;
            };
            let change = p.spec.change;
            if (change.change_ip || change.change_port) && b.add(&change).is_err() {
                continue;
            }
            if let Some(port) = p.spec.response_port {
                if b.add(&ResponsePort(port)).is_err() {
                    continue;
                }
            }
            if b.add_fingerprint().is_err() {
                continue;
            }
            let bytes = b.finish().to_vec();
            self.queue.push_back((p.spec.local, p.spec.server, bytes));
            self.requests_sent += 1;
            p.sent.push(now);
            self.by_txid.insert(txid, (i, n + 1));
            if n + 1 >= p.schedule.attempts.max(1) {
                p.next = now + p.schedule.final_wait;
            } else {
                p.next = now + p.gap;
                p.gap = p.gap.mul_f64(p.schedule.backoff).min(p.schedule.max_gap);
            }
        }
    }

    /// The earliest pending attempt or give-up.
    pub fn poll_timeout(&self) -> Option<Timeout> {
        self.probes
            .iter()
            .filter(|p| p.outcome == ProbeOutcome::Pending)
            .map(|p| p.next)
            .min()
            .map(|at| Timeout::new(at, "nat probe: attempt or give-up"))
    }

    /// The next request to send, in the order they became due.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        let Some(next) = self.queue.pop_front() else {
            self.current = None;
            return None;
        };
        let (source, destination, bytes) = self.current.insert(next);
        Some(Transmit {
            transport: Transport::Udp,
            source: *source,
            destination: *destination,
            contents: bytes,
        })
    }

    /// Offers a received packet; returns the probe it answered, if any. Anything that is
    /// not a well-formed response to one of our attempts, from the expected source, on the
    /// probe's own socket, is ignored.
    pub fn handle_input(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) -> Option<ProbeId> {
        let msg = Message::parse(bytes).ok()?;
        let typ = msg.message_type();
        if typ.method != Method::BINDING || typ.class != Class::Success {
            return None;
        }
        let &(i, attempt) = self.by_txid.get(&msg.transaction_id())?;
        let p = self.probes.get_mut(i)?;
        if p.outcome != ProbeOutcome::Pending {
            return None;
        }
        let source_ok = match p.spec.expect {
            ResponseSource::Destination => source == p.spec.server,
            ResponseSource::Exact(a) => source == a,
            ResponseSource::Ip(ip) => source.ip() == ip,
        };
        let on = p.spec.receive_on.unwrap_or(p.spec.local);
        let local_ok = on.port() == destination.port()
            && (on.ip().is_unspecified() || on.ip() == destination.ip());
        if !source_ok || !local_ok {
            return None;
        }
        if msg.has_fingerprint() && msg.verify_fingerprint().is_err() {
            return None;
        }
        let mapped = msg.mapped_address().ok().flatten()?;
        let other = match msg.get::<OtherAddress>() {
            Ok(Some(o)) => Some(o.0),
            _ => msg.get::<ChangedAddress>().ok().flatten().map(|c| c.0),
        };
        let origin = msg.get::<ResponseOrigin>().ok().flatten().map(|o| o.0);
        let sent_at = *p.sent.get(attempt as usize - 1)?;
        p.outcome = ProbeOutcome::Answered(ProbeAnswer {
            mapped,
            source,
            other,
            origin,
            rtt: now.saturating_duration_since(sent_at),
            attempt,
            at: now,
        });
        Some(ProbeId(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        Schedule {
            first_gap: Duration::from_millis(100),
            backoff: 2.0,
            max_gap: Duration::from_millis(300),
            attempts: 4,
            final_wait: Duration::from_millis(500),
        }
    }

    #[test]
    fn schedule_total_matches_the_attempt_times() {
        // Attempts at 0, 100, 300, 600; give up at 1100.
        assert_eq!(schedule().total(), Duration::from_millis(1100));
    }

    #[test]
    fn fresh_txid_per_attempt_gives_exact_rtt_of_the_answered_attempt() {
        let start = Instant::now();
        let mut p = Prober::new(Rng::seed_from_u64(7));
        let local: SocketAddr = "10.0.0.2:4000".parse().unwrap();
        let server: SocketAddr = "192.0.2.1:3478".parse().unwrap();
        let id = p
            .add(start, ProbeSpec::plain(local, server), schedule())
            .unwrap();
        let first = p.poll_transmit().unwrap().contents.to_vec();
        assert!(p.poll_transmit().is_none());
        let t1 = start + Duration::from_millis(100);
        p.handle_timeout(t1);
        let second = p.poll_transmit().unwrap().contents.to_vec();
        assert_ne!(
            first[8..20],
            second[8..20],
            "each attempt has its own transaction ID"
        );

        // Answer the FIRST attempt at 150 ms: RTT 150 ms, attempt 1.
        let txid = Message::parse(&first).unwrap().transaction_id();
        let mut buf = [0u8; 64];
        let mut b = MessageBuilder::new(&mut buf, MessageType::BINDING_SUCCESS, txid).unwrap();
        b.add(&crate::stun::XorMappedAddress(
            "198.51.100.2:4000".parse().unwrap(),
        ))
        .unwrap();
        let resp = b.finish().to_vec();
        let at = start + Duration::from_millis(150);
        assert_eq!(
            p.handle_input(at, "192.0.2.9:3478".parse().unwrap(), local, &resp),
            None
        );
        assert_eq!(p.handle_input(at, server, local, &resp), Some(id));
        match p.outcome(id) {
            ProbeOutcome::Answered(a) => {
                assert_eq!(a.rtt, Duration::from_millis(150));
                assert_eq!(a.attempt, 1);
            }
            o => panic!("{o:?}"),
        }
        assert!(p.is_idle());
        assert_eq!(p.poll_timeout(), None);
    }

    #[test]
    fn unanswered_after_schedule() {
        let start = Instant::now();
        let mut p = Prober::new(Rng::seed_from_u64(1));
        let id = p
            .add(
                start,
                ProbeSpec::plain(
                    "10.0.0.2:4000".parse().unwrap(),
                    "192.0.2.1:3478".parse().unwrap(),
                ),
                schedule(),
            )
            .unwrap();
        let mut sends = 0;
        for _ in 0..20 {
            while p.poll_transmit().is_some() {
                sends += 1;
            }
            let Some(t) = p.poll_timeout() else { break };
            p.handle_timeout(t.at);
        }
        assert_eq!(sends, 4);
        assert_eq!(p.outcome(id), ProbeOutcome::Unanswered { attempts: 4 });
    }
}
