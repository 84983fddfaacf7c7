//! The NAT classifier: RFC 5780 mapping and filtering tests plus P2PD's port-allocation
//! test, run concurrently where that cannot corrupt a result, with waits sized from the
//! round trip it measures.
//!
//! Sockets (all bound by the driver, see [`ClassifierSockets`]):
//! * the *mapping* socket sends test I to every server at once (first RFC 5780 server to
//!   answer is used), then tests II and III to the server's other IP and port;
//! * the *filtering* socket only ever talks to the server's primary address, so the
//!   mapping tests' traffic to the other address cannot open its filter: it asks for
//!   answers from the other IP and port (EIF test) and the other port (ADF test), and
//!   sends one plain request to prove its path works;
//! * the *delta* sockets send one probe each to the primary address: consecutive local
//!   ports first, in order, then random ones.
//!
//! Waiting for an answer that may never come (a filtered response) is the slow part. Each
//! such test sends several attempts spaced half a round trip apart and waits one RTO
//! after the last, so a negative verdict costs about 6.5 measured round trips after test
//! I, plus a small margin; a single lost packet cannot fake it, since every attempt would
//! have to be lost. The RTT comes from test I exactly (every attempt has its own
//! transaction ID: see [`super::probe`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::behaviour::{Delta, FilteringBehaviour, MappingBehaviour, NatType};
use super::delta::{self, PortSample};
use super::probe::{ProbeAnswer, ProbeId, ProbeOutcome, ProbeSpec, Prober, Schedule};
use crate::rng::Rng;
use crate::stun::{
    ChangeRequest, Class, Message, MessageBuilder, MessageType, ResponseSource, RtoEstimator,
    TransactionId,
};
use crate::time::Timeout;
use crate::transmit::{Transmit, Transport};

/// Tunables. The defaults suit the Internet; the simulator and tests shorten nothing but
/// may lengthen `blocked_after` for very slow links.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierConfig {
    /// STUN servers to try, in order of preference (those of the other address family are
    /// ignored). RFC 5780 servers are needed for filtering and full mapping tests.
    pub servers: Vec<SocketAddr>,
    /// Gap before the second attempt of test I, before any round trip is known.
    pub initial_rto: Duration,
    /// Largest gap between attempts.
    pub max_rto: Duration,
    /// With no answer from any server by then, UDP is `blocked`. Must exceed the worst
    /// round trip to be classified.
    pub blocked_after: Duration,
    /// Attempts of a test whose answer may legitimately never come (filtering, hairpin).
    pub negative_attempts: u32,
    /// Extra wait after the last attempt of such a test, for jitter.
    pub negative_margin: Duration,
    /// Also test whether the NAT hairpins (opt-in: one more socket round).
    pub test_hairpinning: bool,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        ClassifierConfig {
            servers: Vec::new(),
            initial_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(1),
            blocked_after: Duration::from_secs(5),
            negative_attempts: 8,
            negative_margin: Duration::from_millis(50),
            test_hairpinning: false,
        }
    }
}

/// The local sockets the driver bound for the classifier, all on one interface address
/// and one address family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifierSockets {
    /// Mapping tests (its IP must be the interface's, not unspecified).
    pub mapping: SocketAddr,
    /// Filtering tests.
    pub filtering: SocketAddr,
    /// Delta probes from random local ports.
    pub delta_random: Vec<SocketAddr>,
    /// Delta probes from consecutive local ports, in increasing order.
    pub delta_consecutive: Vec<SocketAddr>,
}

/// The classifier cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    /// No server of the sockets' address family.
    #[error("no STUN server of the {0} family is configured: add one with --stun")]
    NoServers(&'static str),
    /// The mapping socket's IP is unspecified, so "no translation" cannot be detected.
    #[error("the mapping socket must be bound to the interface's address, not {0}")]
    UnspecifiedLocal(SocketAddr),
    /// Sockets of different families or addresses.
    #[error("all classifier sockets must share one interface address; {0} does not")]
    MixedSockets(SocketAddr),
}

/// One test as it ran: what was asked, and what came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRecord {
    /// Which test (`test_i`, `mapping_ii`, `mapping_iii`, `filtering_control`,
    /// `filtering_eif`, `filtering_adf`, `delta`, `hairpin`).
    pub name: &'static str,
    /// Local socket.
    pub local: SocketAddr,
    /// Server address it went to.
    pub server: SocketAddr,
    /// The only address an answer was accepted from.
    pub expected_from: Option<SocketAddr>,
    /// Mapped address in the answer, if answered.
    pub mapped: Option<SocketAddr>,
    /// Attempts sent.
    pub attempts: u32,
    /// Round trip of the answered attempt.
    pub rtt: Option<Duration>,
}

/// The verdict and the facts behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// The NAT type; `None` when the tests could not decide (see `notes`).
    pub nat_type: Option<NatType>,
    /// Whether addresses are translated at all.
    pub translated: Option<bool>,
    /// Mapping behaviour (RFC 4787); `None` when untranslated or undecided.
    pub mapping: Option<MappingBehaviour>,
    /// Filtering behaviour (RFC 4787).
    pub filtering: Option<FilteringBehaviour>,
    /// Port allocation; `None` when nothing can be observed or the evidence is too thin.
    pub delta: Option<Delta>,
    /// The mapping socket's external address (test I).
    pub external: Option<SocketAddr>,
    /// The mapping socket's local address.
    pub local: SocketAddr,
    /// The RFC 5780 (or, failing that, plain) server whose answers were used.
    pub server: Option<SocketAddr>,
    /// Its OTHER-ADDRESS.
    pub other_address: Option<SocketAddr>,
    /// Servers that did not answer test I in time.
    pub unreachable: Vec<SocketAddr>,
    /// Whether the NAT hairpins (only when asked for).
    pub hairpinning: Option<bool>,
    /// Every test as it ran.
    pub tests: Vec<TestRecord>,
    /// Smoothed round trip to the server.
    pub rtt: Option<Duration>,
    /// From start to verdict.
    pub elapsed: Duration,
    /// Requests sent in all.
    pub requests: u32,
    /// Why something is unknown, in words.
    pub notes: Vec<String>,
}

impl Classification {
    /// The verdict's duration in measured round trips.
    pub fn round_trips(&self) -> Option<f64> {
        self.rtt
            .filter(|r| !r.is_zero())
            .map(|r| self.elapsed.as_secs_f64() / r.as_secs_f64())
    }
}

#[derive(Debug, Clone, Copy)]
struct Chosen {
    server: SocketAddr,
    other: Option<SocketAddr>,
    test_i: ProbeAnswer,
}

#[derive(Debug, Default)]
struct Phase2 {
    mapping_ii: Option<ProbeId>,
    mapping_iii: Option<ProbeId>,
    control: Option<ProbeId>,
    eif: Option<ProbeId>,
    adf: Option<ProbeId>,
    delta_consecutive: Vec<ProbeId>,
    delta_random: Vec<ProbeId>,
}

#[derive(Debug)]
struct Hairpin {
    txids: Vec<TransactionId>,
    next: Instant,
    sent: u32,
    result: Option<bool>,
}

/// The classifier, sans-IO. Create it, then drive it like every core machine; it emits
/// one [`Classification`] from `poll_event` and then stays idle.
#[derive(Debug)]
pub struct Classifier {
    config: ClassifierConfig,
    sockets: ClassifierSockets,
    servers: Vec<SocketAddr>,
    prober: Prober,
    rng: Rng,
    start: Instant,
    test_i: Vec<(SocketAddr, ProbeId)>,
    test_i_cutoff: Option<Instant>,
    chosen: Option<Chosen>,
    rto: RtoEstimator,
    phase2: Option<Phase2>,
    hairpin: Option<Hairpin>,
    hairpin_out: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    hairpin_current: Option<(SocketAddr, SocketAddr, Vec<u8>)>,
    done: Option<Classification>,
    emitted: bool,
}

impl Classifier {
    /// Starts classifying at `now`; test I goes out at once.
    pub fn new(
        now: Instant,
        config: ClassifierConfig,
        sockets: ClassifierSockets,
        mut rng: Rng,
    ) -> Result<Self, ClassifyError> {
        let family_v4 = sockets.mapping.is_ipv4();
        if sockets.mapping.ip().is_unspecified() {
            return Err(ClassifyError::UnspecifiedLocal(sockets.mapping));
        }
        for s in std::iter::once(&sockets.filtering)
            .chain(&sockets.delta_random)
            .chain(&sockets.delta_consecutive)
        {
            if s.is_ipv4() != family_v4 {
                return Err(ClassifyError::MixedSockets(*s));
            }
        }
        let servers: Vec<SocketAddr> = config
            .servers
            .iter()
            .copied()
            .filter(|s| s.is_ipv4() == family_v4)
            .take(8)
            .collect();
        if servers.is_empty() {
            return Err(ClassifyError::NoServers(if family_v4 {
                "IPv4"
            } else {
                "IPv6"
            }));
        }
        let mut prober = Prober::new(rng.fork());
        let schedule = test_i_schedule(&config);
        let mut test_i = Vec::new();
        for &server in &servers {
            let spec = ProbeSpec::plain(sockets.mapping, server);
            if let Some(id) = prober.add(now, spec, schedule) {
                test_i.push((server, id));
            }
        }
        let rto = RtoEstimator::new(config.initial_rto, Duration::from_millis(1), config.max_rto);
        Ok(Classifier {
            config,
            sockets,
            servers,
            prober,
            rng,
            start: now,
            test_i,
            test_i_cutoff: None,
            chosen: None,
            rto,
            phase2: None,
            hairpin: None,
            hairpin_out: Vec::new(),
            hairpin_current: None,
            done: None,
            emitted: false,
        })
    }

    /// Whether the verdict is ready (or already taken).
    pub fn is_done(&self) -> bool {
        self.done.is_some() || self.emitted
    }

    /// Offers a received packet. Returns whether the classifier used it.
    pub fn handle_input(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) -> bool {
        if self.is_done() {
            return false;
        }
        let used = self
            .prober
            .handle_input(now, source, destination, bytes)
            .is_some()
            || self.hairpin_input(destination, bytes);
        if used {
            self.step(now);
        }
        used
    }

    /// Advances timers to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_done() {
            return;
        }
        self.prober.handle_timeout(now);
        self.hairpin_timeout(now);
        self.step(now);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        if let Some(next) = self.hairpin_out.pop() {
            let (source, destination, bytes) = self.hairpin_current.insert(next);
            return Some(Transmit {
                transport: Transport::Udp,
                source: *source,
                destination: *destination,
                contents: bytes,
            });
        }
        self.prober.poll_transmit()
    }

    /// When to call `handle_timeout` next.
    pub fn poll_timeout(&self) -> Option<Timeout> {
        if self.is_done() {
            return None;
        }
        let cutoff = self
            .test_i_cutoff
            .filter(|_| self.chosen.is_none())
            .map(|at| Timeout::new(at, "nat: stop waiting for slower servers"));
        let hairpin = self
            .hairpin
            .as_ref()
            .filter(|h| h.result.is_none())
            .map(|h| Timeout::new(h.next, "nat: hairpin attempt or verdict"));
        Timeout::earliest(
            Timeout::earliest(self.prober.poll_timeout(), cutoff),
            hairpin,
        )
    }

    /// The classification, once.
    pub fn poll_event(&mut self) -> Option<Classification> {
        let c = self.done.take()?;
        self.emitted = true;
        Some(c)
    }

    fn answer(&self, id: Option<ProbeId>) -> Option<ProbeAnswer> {
        match self.prober.outcome(id?) {
            ProbeOutcome::Answered(a) => Some(a),
            _ => None,
        }
    }

    fn resolved(&self, id: Option<ProbeId>) -> bool {
        id.is_none_or(|id| self.prober.outcome(id) != ProbeOutcome::Pending)
    }

    /// Moves the test plan forward after any input or timeout.
    fn step(&mut self, now: Instant) {
        if self.chosen.is_none() {
            self.choose_server(now);
        }
        if self.chosen.is_some() && self.phase2.is_none() {
            self.launch_phase2(now);
        }
        if let Some(p) = &self.phase2 {
            // Early answers make other tests moot.
            let (ii, iii, eif, adf) = (p.mapping_ii, p.mapping_iii, p.eif, p.adf);
            if let (Some(c), Some(a2)) = (self.chosen, self.answer(ii)) {
                if a2.mapped == c.test_i.mapped {
                    if let Some(id) = iii {
                        self.prober.cancel(id);
                    }
                }
            }
            if self.answer(eif).is_some() {
                if let Some(id) = adf {
                    self.prober.cancel(id);
                }
            }
        }
        let finished = match (&self.chosen, &self.phase2) {
            (None, _) => self.test_i.iter().all(|(_, id)| self.resolved(Some(*id))),
            (Some(_), Some(_)) => {
                self.prober.is_idle() && self.hairpin.as_ref().is_none_or(|h| h.result.is_some())
            }
            (Some(_), None) => false,
        };
        if finished {
            self.done = Some(self.verdict(now));
        }
    }

    fn choose_server(&mut self, now: Instant) {
        let answered: Vec<(SocketAddr, ProbeAnswer)> = self
            .test_i
            .iter()
            .filter_map(|(s, id)| self.answer(Some(*id)).map(|a| (*s, a)))
            .collect();
        let Some(first) = answered.iter().min_by_key(|(_, a)| a.at) else {
            return;
        };
        // Once anyone answered, the others get a few round trips more, not `blocked_after`.
        let wait = self.negative_wait(first.1.rtt);
        let cutoff = *self.test_i_cutoff.get_or_insert(first.1.at + wait);
        let rfc5780 = self
            .test_i
            .iter()
            .filter_map(|(s, id)| self.answer(Some(*id)).map(|a| (*s, a)))
            .find(|(_, a)| {
                a.other
                    .is_some_and(|o| o.ip() != a.source.ip() && o.port() != a.source.port())
            });
        let all_resolved = self.test_i.iter().all(|(_, id)| self.resolved(Some(*id)));
        let pick = match rfc5780 {
            Some(p) => Some(p),
            None if all_resolved || now >= cutoff => answered.first().copied(),
            None => None,
        };
        if let Some((server, a)) = pick {
            for (_, id) in &self.test_i {
                self.prober.cancel(*id);
            }
            self.rto.sample(a.rtt);
            for (_, b) in &answered {
                if b.rtt != a.rtt {
                    self.rto.sample(b.rtt);
                }
            }
            self.chosen = Some(Chosen {
                server,
                other: rfc5780.and(a.other),
                test_i: a,
            });
        }
    }

    /// How long a test whose answer may never come waits in all: attempts half an RTT
    /// apart, then one RTO and the margin.
    fn negative_wait(&self, rtt: Duration) -> Duration {
        self.negative_schedule(rtt).total()
    }

    fn negative_schedule(&self, rtt: Duration) -> Schedule {
        let rto = self.rto.rto().max(rtt * 2);
        Schedule {
            first_gap: (rtt / 2).max(Duration::from_micros(500)),
            backoff: 1.0,
            max_gap: self.config.max_rto,
            attempts: self.config.negative_attempts.max(1),
            final_wait: rto + self.config.negative_margin,
        }
    }

    fn positive_schedule(&self) -> Schedule {
        let rto = self.rto.rto();
        Schedule {
            first_gap: rto,
            backoff: 1.5,
            max_gap: self.config.max_rto,
            attempts: 8,
            final_wait: rto * 2 + self.config.negative_margin,
        }
    }

    fn launch_phase2(&mut self, now: Instant) {
        let Some(c) = self.chosen else { return };
        let mut p = Phase2::default();
        let translated = c.test_i.mapped != self.sockets.mapping;
        let srtt = self.rto.srtt().unwrap_or(c.test_i.rtt);
        let positive = self.positive_schedule();
        let negative = self.negative_schedule(srtt);
        let server = c.server;
        let spec = |local, server, change, expect| ProbeSpec {
            change,
            expect,
            ..ProbeSpec::plain(local, server)
        };
        let plain = ChangeRequest::default();
        if let Some(other) = c.other {
            let other_ip_same_port = SocketAddr::new(other.ip(), server.port());
            let same_ip_other_port = SocketAddr::new(server.ip(), other.port());
            if translated {
                p.mapping_ii = self.prober.add(
                    now,
                    spec(
                        self.sockets.mapping,
                        other_ip_same_port,
                        plain,
                        ResponseSource::Destination,
                    ),
                    positive,
                );
                p.mapping_iii = self.prober.add(
                    now,
                    spec(
                        self.sockets.mapping,
                        other,
                        plain,
                        ResponseSource::Destination,
                    ),
                    positive,
                );
            }
            let f = self.sockets.filtering;
            p.control = self.prober.add(
                now,
                spec(f, server, plain, ResponseSource::Destination),
                positive,
            );
            p.eif = self.prober.add(
                now,
                spec(
                    f,
                    server,
                    ChangeRequest {
                        change_ip: true,
                        change_port: true,
                    },
                    ResponseSource::Exact(other),
                ),
                negative,
            );
            p.adf = self.prober.add(
                now,
                spec(
                    f,
                    server,
                    ChangeRequest {
                        change_ip: false,
                        change_port: true,
                    },
                    ResponseSource::Exact(same_ip_other_port),
                ),
                negative,
            );
        } else if translated {
            // Plain servers only: a second server on another IP still tells whether the
            // mapping depends on the destination.
            if let Some(&second) = self.servers.iter().find(|s| s.ip() != server.ip()) {
                p.mapping_ii = self.prober.add(
                    now,
                    spec(
                        self.sockets.mapping,
                        second,
                        plain,
                        ResponseSource::Destination,
                    ),
                    positive,
                );
            }
        }
        if translated {
            // Consecutive ports first and in order, so a dependent allocator sees them
            // back to back; then the random ones.
            for &local in &self.sockets.delta_consecutive {
                if let Some(id) = self.prober.add(
                    now,
                    spec(local, server, plain, ResponseSource::Destination),
                    positive,
                ) {
                    p.delta_consecutive.push(id);
                }
            }
            for &local in &self.sockets.delta_random {
                if let Some(id) = self.prober.add(
                    now,
                    spec(local, server, plain, ResponseSource::Destination),
                    positive,
                ) {
                    p.delta_random.push(id);
                }
            }
            if self.config.test_hairpinning {
                self.hairpin = Some(Hairpin {
                    txids: Vec::new(),
                    next: now,
                    sent: 0,
                    result: None,
                });
                self.hairpin_timeout(now);
            }
        }
        self.phase2 = Some(p);
    }

    /// Sends hairpin attempts (a Binding request from the mapping socket to its own
    /// external address) and decides after the negative wait.
    fn hairpin_timeout(&mut self, now: Instant) {
        let Some(c) = self.chosen else { return };
        let srtt = self.rto.srtt().unwrap_or(c.test_i.rtt);
        let schedule = self.negative_schedule(srtt);
        let Some(h) = self.hairpin.as_mut() else {
            return;
        };
        if h.result.is_some() || now < h.next {
            return;
        }
        if h.sent >= schedule.attempts {
            h.result = Some(false);
            return;
        }
        let txid = TransactionId::random(&mut self.rng);
        let mut buf = [0u8; 32];
        if let Ok(b) = MessageBuilder::new(&mut buf, MessageType::BINDING_REQUEST, txid) {
            self.hairpin_out
                .push((self.sockets.mapping, c.test_i.mapped, b.finish().to_vec()));
            h.txids.push(txid);
        }
        h.sent += 1;
        h.next = if h.sent >= schedule.attempts {
            now + schedule.final_wait
        } else {
            now + schedule.first_gap
        };
    }

    fn hairpin_input(&mut self, destination: SocketAddr, bytes: &[u8]) -> bool {
        let Some(h) = self.hairpin.as_mut() else {
            return false;
        };
        if h.result.is_some() || destination.port() != self.sockets.mapping.port() {
            return false;
        }
        let Ok(msg) = Message::parse(bytes) else {
            return false;
        };
        if msg.message_type().class == Class::Request && h.txids.contains(&msg.transaction_id()) {
            h.result = Some(true);
            return true;
        }
        false
    }

    fn record(&self, name: &'static str, id: Option<ProbeId>) -> Option<TestRecord> {
        let id = id?;
        let spec = self.prober.spec(id)?;
        let a = self.answer(Some(id));
        Some(TestRecord {
            name,
            local: spec.local,
            server: spec.server,
            expected_from: match spec.expect {
                ResponseSource::Destination => Some(spec.server),
                ResponseSource::Exact(x) => Some(x),
                ResponseSource::Ip(_) => None,
            },
            mapped: a.map(|a| a.mapped),
            attempts: self.prober.attempts(id),
            rtt: a.map(|a| a.rtt),
        })
    }

    fn verdict(&self, now: Instant) -> Classification {
        let mut notes = Vec::new();
        let mut tests: Vec<TestRecord> = self
            .test_i
            .iter()
            .filter_map(|(_, id)| self.record("test_i", Some(*id)))
            .collect();
        let unreachable: Vec<SocketAddr> = self
            .test_i
            .iter()
            .filter(|(_, id)| self.answer(Some(*id)).is_none())
            .map(|(s, _)| *s)
            .collect();
        let mut c = Classification {
            nat_type: None,
            translated: None,
            mapping: None,
            filtering: None,
            delta: None,
            external: None,
            local: self.sockets.mapping,
            server: None,
            other_address: None,
            unreachable,
            hairpinning: self.hairpin.as_ref().and_then(|h| h.result),
            tests: Vec::new(),
            rtt: self.rto.srtt(),
            elapsed: now.saturating_duration_since(self.start),
            requests: self.prober.requests_sent(),
            notes: Vec::new(),
        };
        let Some(chosen) = self.chosen else {
            c.nat_type = Some(NatType::Blocked);
            notes.push(format!(
                "no STUN server answered over UDP within {:.1?}",
                c.elapsed
            ));
            c.tests = tests;
            c.notes = notes;
            return c;
        };
        c.server = Some(chosen.server);
        c.other_address = chosen.other;
        c.external = Some(chosen.test_i.mapped);
        let translated = chosen.test_i.mapped != self.sockets.mapping;
        c.translated = Some(translated);
        let p = self.phase2.as_ref();
        let id = |f: fn(&Phase2) -> Option<ProbeId>| p.and_then(f);
        for (name, probe) in [
            ("mapping_ii", id(|p| p.mapping_ii)),
            ("mapping_iii", id(|p| p.mapping_iii)),
            ("filtering_control", id(|p| p.control)),
            ("filtering_eif", id(|p| p.eif)),
            ("filtering_adf", id(|p| p.adf)),
        ] {
            tests.extend(self.record(name, probe));
        }
        if let Some(p) = p {
            for &d in p.delta_consecutive.iter().chain(&p.delta_random) {
                tests.extend(self.record("delta", Some(d)));
            }
        }

        // Mapping.
        c.mapping = if !translated {
            None
        } else {
            match (
                self.answer(id(|p| p.mapping_ii)),
                self.answer(id(|p| p.mapping_iii)),
            ) {
                (Some(ii), _) if ii.mapped == chosen.test_i.mapped => {
                    Some(MappingBehaviour::EndpointIndependent)
                }
                (Some(ii), Some(iii)) if iii.mapped == ii.mapped => {
                    Some(MappingBehaviour::AddressDependent)
                }
                (Some(_), Some(_)) => Some(MappingBehaviour::AddressAndPortDependent),
                (Some(_), None) if chosen.other.is_none() => {
                    // Two plain servers on different IPs gave different mappings:
                    // destination-dependent, though IP-only vs IP-and-port is unknown.
                    notes.push("only plain STUN servers answered: address- vs port-dependent mapping cannot be told apart".into());
                    Some(MappingBehaviour::AddressAndPortDependent)
                }
                _ => {
                    notes.push(
                        "the mapping tests to the server's other address went unanswered".into(),
                    );
                    None
                }
            }
        };

        // Filtering: negatives count only if the filtering socket's own path works.
        c.filtering = if chosen.other.is_none() {
            notes.push(format!(
                "{} is not an RFC 5780 server (no OTHER-ADDRESS): filtering cannot be tested",
                chosen.server
            ));
            None
        } else if self.answer(id(|p| p.eif)).is_some() {
            Some(FilteringBehaviour::EndpointIndependent)
        } else if self.answer(id(|p| p.adf)).is_some() {
            // The ADF answer itself proves the filtering socket's path works, so the
            // missing EIF answer was filtered, not lost.
            Some(FilteringBehaviour::AddressDependent)
        } else if self.answer(id(|p| p.control)).is_some() {
            Some(FilteringBehaviour::AddressAndPortDependent)
        } else {
            notes.push(
                "the filtering socket's control request went unanswered: no filtering verdict"
                    .into(),
            );
            None
        };

        c.nat_type = match (translated, c.mapping, c.filtering) {
            (false, _, Some(f)) => Some(NatType::from_behaviour(
                false,
                MappingBehaviour::EndpointIndependent,
                f,
            )),
            (true, Some(m @ MappingBehaviour::EndpointIndependent), Some(f)) => {
                Some(NatType::from_behaviour(true, m, f))
            }
            // Destination-dependent mapping is symmetric whatever the filtering.
            (
                true,
                Some(
                    MappingBehaviour::AddressDependent | MappingBehaviour::AddressAndPortDependent,
                ),
                _,
            ) => Some(NatType::Symmetric),
            _ => None,
        };

        // Delta.
        c.delta = if !translated {
            Some(Delta {
                kind: super::behaviour::DeltaKind::Equal,
                value: 0,
            })
        } else {
            let samples = |ids: &[ProbeId]| -> Vec<PortSample> {
                ids.iter()
                    .filter_map(|&i| {
                        let a = self.answer(Some(i))?;
                        Some(PortSample {
                            local: self.prober.spec(i)?.local.port(),
                            mapped: a.mapped.port(),
                        })
                    })
                    .collect()
            };
            let (consecutive, random) = p.map_or((vec![], vec![]), |p| {
                (samples(&p.delta_consecutive), samples(&p.delta_random))
            });
            match delta::analyse(&random, &consecutive) {
                Ok(d) => Some(d),
                Err(why) => {
                    notes.push(format!("port allocation: {why}"));
                    None
                }
            }
        };
        if let Some(h) = &self.hairpin {
            tests.push(TestRecord {
                name: "hairpin",
                local: self.sockets.mapping,
                server: chosen.test_i.mapped,
                expected_from: None,
                mapped: None,
                attempts: h.sent,
                rtt: None,
            });
        }
        c.tests = tests;
        c.notes = notes;
        c
    }
}

fn test_i_schedule(config: &ClassifierConfig) -> Schedule {
    // Gaps double from the initial RTO up to the cap; attempts continue until
    // `blocked_after`, the last one leaving a full max-RTO wait for its answer.
    let mut attempts = 1;
    let mut t = Duration::ZERO;
    let mut gap = config.initial_rto;
    while t + gap + config.max_rto <= config.blocked_after && attempts < 32 {
        t += gap;
        attempts += 1;
        gap = (gap * 2).min(config.max_rto);
    }
    Schedule {
        first_gap: config.initial_rto,
        backoff: 2.0,
        max_gap: config.max_rto,
        attempts,
        final_wait: config.blocked_after.saturating_sub(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_i_gives_up_exactly_at_blocked_after() {
        for secs in [1, 2, 5, 10] {
            let cfg = ClassifierConfig {
                blocked_after: Duration::from_secs(secs),
                ..ClassifierConfig::default()
            };
            assert_eq!(test_i_schedule(&cfg).total(), cfg.blocked_after);
        }
    }

    #[test]
    fn refuses_unusable_sockets_and_servers() {
        let now = Instant::now();
        let sockets = ClassifierSockets {
            mapping: "10.0.0.2:4000".parse().unwrap(),
            filtering: "10.0.0.2:4001".parse().unwrap(),
            delta_random: vec![],
            delta_consecutive: vec![],
        };
        let v6_only = ClassifierConfig {
            servers: vec!["[2001:db8::1]:3478".parse().unwrap()],
            ..ClassifierConfig::default()
        };
        assert_eq!(
            Classifier::new(now, v6_only, sockets.clone(), Rng::seed_from_u64(0)).err(),
            Some(ClassifyError::NoServers("IPv4"))
        );
        let cfg = ClassifierConfig {
            servers: vec!["192.0.2.1:3478".parse().unwrap()],
            ..ClassifierConfig::default()
        };
        let unspecified = ClassifierSockets {
            mapping: "0.0.0.0:4000".parse().unwrap(),
            ..sockets
        };
        assert!(matches!(
            Classifier::new(now, cfg, unspecified, Rng::seed_from_u64(0)),
            Err(ClassifyError::UnspecifiedLocal(_))
        ));
    }
}
