//! Mapping lifetime (RFC 5780 §4.6): how long a NAT keeps an idle UDP mapping.
//!
//! One *target* socket per delay opens a mapping to the server at the start. When its
//! delay has passed, a separate *trigger* socket asks the server (with RESPONSE-PORT) to
//! answer on the target's external port: the answer arrives only if the target's mapping
//! is still alive. Every delay is tested on its own mapping, all in parallel, so the
//! search takes as long as the longest delay, not their sum, and no test refreshes the
//! mapping another test depends on.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::probe::{ProbeId, ProbeOutcome, ProbeSpec, Prober, Schedule};
use crate::rng::Rng;
use crate::stun::ResponseSource;
use crate::time::Timeout;
use crate::transmit::Transmit;

/// What to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct LifetimeConfig {
    /// The STUN server (it must honour RESPONSE-PORT: any RFC 5780 server does).
    pub server: SocketAddr,
    /// Idle times to test, one target socket each.
    pub delays: Vec<Duration>,
    /// Measured round trip to the server (from classification), to size waits.
    pub rtt: Duration,
    /// Attempts per test; all must go unanswered before a mapping counts as expired.
    pub attempts: u32,
}

impl LifetimeConfig {
    /// Delays from 2 s up to `max`, roughly doubling: 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300.
    pub fn default_delays(max: Duration) -> Vec<Duration> {
        [2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300]
            .into_iter()
            .map(Duration::from_secs)
            .filter(|d| *d <= max)
            .collect()
    }
}

/// The sockets the driver bound: one trigger, one target per delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifetimeSockets {
    /// Sends the RESPONSE-PORT requests.
    pub trigger: SocketAddr,
    /// One per delay, in the same order.
    pub targets: Vec<SocketAddr>,
}

/// The measured bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingLifetime {
    /// The mapping survived this long idle (the longest delay that got an answer).
    pub at_least: Option<Duration>,
    /// The mapping was gone after this long (the shortest delay that got none).
    pub less_than: Option<Duration>,
    /// Each delay and whether its mapping was alive (`None`: the opening probe failed).
    pub tests: Vec<(Duration, Option<bool>)>,
    /// Why the bounds are partial, in words.
    pub notes: Vec<String>,
}

#[derive(Debug)]
enum Target {
    Opening(ProbeId),
    Waiting {
        external_port: u16,
        test_at: Instant,
    },
    Testing(ProbeId),
    Done(Option<bool>),
}

/// The lifetime probe, sans-IO.
#[derive(Debug)]
pub struct LifetimeProbe {
    config: LifetimeConfig,
    sockets: LifetimeSockets,
    prober: Prober,
    targets: Vec<Target>,
    result: Option<MappingLifetime>,
    emitted: bool,
}

/// The driver's sockets do not match the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the lifetime probe needs one target socket per delay: {delays} delays, {targets} targets")]
pub struct LifetimeSocketsMismatch {
    delays: usize,
    targets: usize,
}

impl LifetimeProbe {
    /// Opens every target's mapping at `now`.
    pub fn new(
        now: Instant,
        config: LifetimeConfig,
        sockets: LifetimeSockets,
        rng: Rng,
    ) -> Result<Self, LifetimeSocketsMismatch> {
        if config.delays.len() != sockets.targets.len() {
            return Err(LifetimeSocketsMismatch {
                delays: config.delays.len(),
                targets: sockets.targets.len(),
            });
        }
        let mut prober = Prober::new(rng);
        let opening = Self::schedule(&config, 8);
        let targets = sockets
            .targets
            .iter()
            .map(
                |&t| match prober.add(now, ProbeSpec::plain(t, config.server), opening) {
                    Some(id) => Target::Opening(id),
                    None => Target::Done(None),
                },
            )
            .collect();
        Ok(LifetimeProbe {
            config,
            sockets,
            prober,
            targets,
            result: None,
            emitted: false,
        })
    }

    fn schedule(config: &LifetimeConfig, attempts: u32) -> Schedule {
        let rtt = config.rtt.max(Duration::from_millis(1));
        Schedule {
            first_gap: rtt,
            backoff: 1.0,
            max_gap: rtt,
            attempts: attempts.max(1),
            final_wait: rtt * 3 + Duration::from_millis(50),
        }
    }

    /// Offers a received packet; whether it was ours.
    pub fn handle_input(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) -> bool {
        let used = self
            .prober
            .handle_input(now, source, destination, bytes)
            .is_some();
        if used {
            self.step(now);
        }
        used
    }

    /// Advances timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.prober.handle_timeout(now);
        self.step(now);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        self.prober.poll_transmit()
    }

    /// When to call `handle_timeout` next.
    pub fn poll_timeout(&self) -> Option<Timeout> {
        if self.result.is_some() || self.emitted {
            return None;
        }
        let next_test = self
            .targets
            .iter()
            .filter_map(|t| match t {
                Target::Waiting { test_at, .. } => Some(*test_at),
                _ => None,
            })
            .min()
            .map(|at| Timeout::new(at, "lifetime: test an idle mapping"));
        Timeout::earliest(self.prober.poll_timeout(), next_test)
    }

    /// The measurement, once.
    pub fn poll_event(&mut self) -> Option<MappingLifetime> {
        let r = self.result.take()?;
        self.emitted = true;
        Some(r)
    }

    fn step(&mut self, now: Instant) {
        let testing = Self::schedule(&self.config, self.config.attempts);
        for (i, t) in self.targets.iter_mut().enumerate() {
            match *t {
                Target::Opening(id) => match self.prober.outcome(id) {
                    ProbeOutcome::Answered(a) => {
                        // The mapping was last refreshed by the answered attempt's send.
                        let sent = a.at.checked_sub(a.rtt).unwrap_or(a.at);
                        *t = Target::Waiting {
                            external_port: a.mapped.port(),
                            test_at: sent + self.config.delays[i],
                        };
                    }
                    ProbeOutcome::Pending => {}
                    _ => *t = Target::Done(None),
                },
                Target::Waiting {
                    external_port,
                    test_at,
                } if now >= test_at => {
                    let spec = ProbeSpec {
                        response_port: Some(external_port),
                        receive_on: Some(self.sockets.targets[i]),
                        expect: ResponseSource::Destination,
                        ..ProbeSpec::plain(self.sockets.trigger, self.config.server)
                    };
                    *t = match self.prober.add(now, spec, testing) {
                        Some(id) => Target::Testing(id),
                        None => Target::Done(None),
                    };
                }
                Target::Testing(id) => match self.prober.outcome(id) {
                    ProbeOutcome::Answered(_) => *t = Target::Done(Some(true)),
                    ProbeOutcome::Pending => {}
                    _ => *t = Target::Done(Some(false)),
                },
                _ => {}
            }
        }
        if self.result.is_none()
            && !self.emitted
            && self.targets.iter().all(|t| matches!(t, Target::Done(_)))
        {
            self.result = Some(self.summarise());
        }
    }

    fn summarise(&self) -> MappingLifetime {
        let tests: Vec<(Duration, Option<bool>)> = self
            .config
            .delays
            .iter()
            .zip(&self.targets)
            .map(|(d, t)| (*d, if let Target::Done(r) = t { *r } else { None }))
            .collect();
        let at_least = tests
            .iter()
            .filter(|(_, r)| *r == Some(true))
            .map(|(d, _)| *d)
            .max();
        let less_than = tests
            .iter()
            .filter(|(_, r)| *r == Some(false))
            .map(|(d, _)| *d)
            .min();
        let mut notes = Vec::new();
        if let (Some(a), Some(l)) = (at_least, less_than) {
            if a >= l {
                notes.push(format!(
                    "inconsistent: alive after {a:?} but gone after {l:?} (a NAT that expires mappings unevenly, or losses)"
                ));
            }
        }
        if tests.iter().any(|(_, r)| r.is_none()) {
            notes.push("some target mappings could not be opened".into());
        }
        MappingLifetime {
            at_least,
            less_than,
            tests,
            notes,
        }
    }
}
