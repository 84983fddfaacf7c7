//! Keeping a node's names registered: before they expire and whenever its address
//! changes.
//!
//! The [`Registrar`] holds the node's identity, its current address, the servers and
//! the names to keep. Each name is written to every server on start, again every
//! [`RegistrarConfig::refresh`] (1 day by default, well inside the servers' 7-day
//! expiry), and at once after [`Registrar::set_address`]. When no server accepts, it
//! retries with backoff (from [`RegistrarConfig::retry_min`], doubling, to
//! [`RegistrarConfig::retry_max`]). Timestamps are the wall clock in milliseconds, but
//! always above the last one used or reported by a server as stored (a `Stale` answer
//! moves the next write past it), so a clock step backwards cannot wedge a name.
//!
//! Wall-clock time enters as an anchor pair (`Instant`, Unix ms) so the machine stays
//! sans-IO and runs on virtual time; the driver re-anchors with
//! [`Registrar::set_wall_clock`] when it likes. Each write is a [`NameClient`], drained
//! by the registrar (parents drain their children).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::client::{ClientConfig, Finished, NameClient, Operation, Outcome, Target};
use super::name::Name;
use super::record::SignedWrite;
use super::wire::Refusal;
use crate::addr::NodeAddr;
use crate::identity::Identity;
use crate::rng::Rng;
use crate::time::Timeout;
use crate::transmit::Transmit;

/// Names one registrar keeps at most (a server allows 20 per IPv4 address anyway).
pub const MAX_NAMES: usize = 64;

/// Refresh and retry periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// Re-register after a success this long ago (default 1 day).
    pub refresh: Duration,
    /// First retry after a round no server accepted (default 30 s).
    pub retry_min: Duration,
    /// Longest retry interval (default 1 hour).
    pub retry_max: Duration,
    /// Retransmission per request.
    pub client: ClientConfig,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            refresh: Duration::from_secs(24 * 3600),
            retry_min: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            client: ClientConfig::default(),
        }
    }
}

/// What the registrar reports after each round for a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrarEvent {
    /// A round finished: at least one server accepted.
    Registered {
        /// The name.
        name: Name,
        /// The servers that accepted.
        accepted: Vec<SocketAddr>,
        /// Every server's answer.
        result: Finished,
    },
    /// A round finished and no server accepted; retrying after `retry_in`.
    Failed {
        /// The name.
        name: Name,
        /// Every server's answer.
        result: Finished,
        /// When the next attempt is.
        retry_in: Duration,
    },
}

/// Why a name cannot be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrarError {
    /// Already [`MAX_NAMES`] names.
    #[error("a node keeps at most {MAX_NAMES} names")]
    TooMany,
}

#[derive(Debug)]
struct NameState {
    due: Instant,
    last_ts: u64,
    failures: u32,
    job: Option<NameClient>,
}

/// The registrar. See the module docs.
#[derive(Debug)]
pub struct Registrar {
    identity: Identity,
    addr: NodeAddr,
    targets: Vec<Target>,
    config: RegistrarConfig,
    names: BTreeMap<Name, NameState>,
    wall: (Instant, u64),
    rng: Rng,
    events: VecDeque<RegistrarEvent>,
}

impl Registrar {
    /// A registrar for `identity` at `addr`, writing to `targets`. `unix_ms` is the wall
    /// clock at `now`.
    pub fn new(
        identity: Identity,
        addr: NodeAddr,
        targets: Vec<Target>,
        config: RegistrarConfig,
        rng: Rng,
        now: Instant,
        unix_ms: u64,
    ) -> Self {
        Registrar {
            identity,
            addr,
            targets,
            config,
            names: BTreeMap::new(),
            wall: (now, unix_ms),
            rng,
            events: VecDeque::new(),
        }
    }

    /// Keep `name` registered, starting now.
    pub fn add(&mut self, now: Instant, name: Name) -> Result<(), RegistrarError> {
        if !self.names.contains_key(&name) && self.names.len() >= MAX_NAMES {
            return Err(RegistrarError::TooMany);
        }
        self.names.entry(name).or_insert(NameState {
            due: now,
            last_ts: 0,
            failures: 0,
            job: None,
        });
        self.handle_timeout(now);
        Ok(())
    }

    /// Stop keeping `name` (it stays on the servers until it expires).
    pub fn remove(&mut self, name: &Name) {
        self.names.remove(name);
    }

    /// The names kept.
    pub fn names(&self) -> impl Iterator<Item = &Name> {
        self.names.keys()
    }

    /// The node's address changed: re-register every name now (a round in flight is
    /// abandoned for one with the new address).
    pub fn set_address(&mut self, now: Instant, addr: NodeAddr) {
        if addr == self.addr {
            return;
        }
        self.addr = addr;
        for st in self.names.values_mut() {
            st.job = None;
            st.due = now;
            st.failures = 0;
        }
        self.handle_timeout(now);
    }

    /// Re-anchors the wall clock: `unix_ms` is the time at `now`.
    pub fn set_wall_clock(&mut self, now: Instant, unix_ms: u64) {
        self.wall = (now, unix_ms);
    }

    fn unix_ms(&self, now: Instant) -> u64 {
        let (at, ms) = self.wall;
        if now >= at {
            ms.saturating_add(now.duration_since(at).as_millis().min(u128::from(u64::MAX)) as u64)
        } else {
            ms.saturating_sub(at.duration_since(now).as_millis().min(u128::from(u64::MAX)) as u64)
        }
    }

    /// A datagram arrived (it is offered to every round in flight; each takes only its own).
    pub fn handle_input(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        for st in self.names.values_mut() {
            if let Some(job) = &mut st.job {
                job.handle_input(now, source, destination, bytes);
            }
        }
        self.collect(now);
    }

    /// Time passed: start due rounds, retransmit, collect finished rounds.
    pub fn handle_timeout(&mut self, now: Instant) {
        let wall = self.unix_ms(now);
        for (name, st) in self.names.iter_mut() {
            if let Some(job) = &mut st.job {
                job.handle_timeout(now);
            } else if st.due <= now {
                let ts = wall.max(st.last_ts.saturating_add(1));
                st.last_ts = ts;
                let w =
                    SignedWrite::sign(&self.identity, name.clone(), Some(self.addr.clone()), ts);
                st.job = Some(NameClient::new(
                    Operation::Write(Box::new(w)),
                    &self.targets,
                    self.config.client,
                    &mut self.rng,
                    now,
                ));
            }
        }
        self.collect(now);
    }

    fn collect(&mut self, now: Instant) {
        for (name, st) in self.names.iter_mut() {
            let Some(result) = st.job.as_ref().and_then(|j| j.result().cloned()) else {
                continue;
            };
            // Keep the job until its last transmits are drained? They are only
            // retransmissions of a finished request: dropping them is harmless.
            st.job = None;
            for r in &result.reports {
                if let Some(Outcome::Refused(Refusal::Stale { stored_ms })) = r.outcome {
                    st.last_ts = st.last_ts.max(stored_ms);
                }
            }
            let accepted = result.accepted();
            if accepted.is_empty() {
                let stale = result
                    .reports
                    .iter()
                    .any(|r| matches!(r.outcome, Some(Outcome::Refused(Refusal::Stale { .. }))));
                let retry_in = if stale && st.failures == 0 {
                    // A newer timestamp is known now: try again at once.
                    Duration::ZERO
                } else {
                    self.config
                        .retry_min
                        .saturating_mul(1u32 << st.failures.min(16))
                        .min(self.config.retry_max)
                };
                st.failures = st.failures.saturating_add(1);
                st.due = now + retry_in;
                push(
                    &mut self.events,
                    RegistrarEvent::Failed {
                        name: name.clone(),
                        result,
                        retry_in,
                    },
                );
            } else {
                st.failures = 0;
                st.due = now + self.config.refresh;
                push(
                    &mut self.events,
                    RegistrarEvent::Registered {
                        name: name.clone(),
                        accepted,
                        result,
                    },
                );
            }
        }
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Timeout> {
        self.names
            .values()
            .map(|st| match &st.job {
                Some(job) => job.poll_timeout(),
                None => Some(Timeout::new(st.due, "re-register name")),
            })
            .fold(None, Timeout::earliest)
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        for st in self.names.values_mut() {
            if let Some(job) = &mut st.job {
                if let Some(t) = job.poll_transmit() {
                    return Some(t);
                }
            }
        }
        None
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<RegistrarEvent> {
        self.events.pop_front()
    }
}

fn push(events: &mut VecDeque<RegistrarEvent>, e: RegistrarEvent) {
    if events.len() >= 2 * MAX_NAMES {
        events.pop_front();
    }
    events.push_back(e);
}
