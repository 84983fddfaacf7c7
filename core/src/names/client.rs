//! The name client: one operation (resolve, put or delete) against one or more servers.
//!
//! Writes go to every server and the client reports, per server, whether it accepted
//! the write. Reads go to every server at once and finish with the first verified
//! record (reads from any), or when every server has answered or given up.
//!
//! Retransmission as STUN does it (RFC 8489 §6.2.1): the request is repeated after
//! [`ClientConfig::initial_rto`], doubling each time, [`ClientConfig::attempts`] times in
//! all; then the server counts as silent. A cookie answer makes the client repeat the
//! request with the cookie at once (at most [`MAX_COOKIE_ROUNDS`] times per server).
//! Answers from anyone but the server asked, or with another request id, are ignored.
//! A record is only believed after its owner's signature verifies and its name matches
//! the question, so a server cannot forge or swap records (it can only withhold them).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::name::Name;
use super::record::SignedWrite;
use super::wire::{Cookie, Refusal, Request, RequestBody, Response, ResponseBody};
use crate::rng::Rng;
use crate::time::Timeout;
use crate::transmit::{Transmit, Transport};

/// Cookie answers accepted per server before giving up on it.
pub const MAX_COOKIE_ROUNDS: u32 = 3;

/// A server and the local address to reach it from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    /// The name server.
    pub server: SocketAddr,
    /// The local socket address requests leave from.
    pub local: SocketAddr,
}

/// Retransmission settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// First retransmission timeout (default 250 ms).
    pub initial_rto: Duration,
    /// Requests per server before it counts as silent (default 5: 250 ms … 4 s, about
    /// 7.75 s in all).
    pub attempts: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            initial_rto: Duration::from_millis(250),
            attempts: 5,
        }
    }
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Look a name up.
    Resolve(Name),
    /// Store a signed write (put or delete). Boxed: a write is 20 times a name.
    Write(Box<SignedWrite>),
}

/// How one server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The write was stored; the name's timestamp there is this.
    Accepted {
        /// The stored timestamp.
        timestamp_ms: u64,
    },
    /// The server holds this verified record.
    Found(Box<SignedWrite>),
    /// The server holds no record for the name.
    NotFound,
    /// The server refused.
    Refused(Refusal),
    /// The server answered something that does not fit (a bad record, a write answer to
    /// a read, endless cookies): it is ignored from then on.
    Invalid(String),
    /// No answer after every retransmission.
    NoAnswer,
}

/// One server's part of the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The server.
    pub server: SocketAddr,
    /// What it did; `None` when the operation finished before it answered (a read that
    /// another server answered first).
    pub outcome: Option<Outcome>,
}

/// What the client reports: once, when finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Per server, in the order given.
    pub reports: Vec<Report>,
}

impl Finished {
    /// The verified record a read found, if any.
    pub fn record(&self) -> Option<&SignedWrite> {
        self.reports.iter().find_map(|r| match &r.outcome {
            Some(Outcome::Found(w)) => Some(&**w),
            _ => None,
        })
    }

    /// The servers that accepted a write.
    pub fn accepted(&self) -> Vec<SocketAddr> {
        self.reports
            .iter()
            .filter(|r| matches!(r.outcome, Some(Outcome::Accepted { .. })))
            .map(|r| r.server)
            .collect()
    }
}

#[derive(Debug)]
struct PerServer {
    target: Target,
    id: u64,
    cookie: Option<Cookie>,
    sent: u32,
    cookie_rounds: u32,
    next_send: Option<Instant>,
    outcome: Option<Outcome>,
}

/// The client state machine. See the module docs.
#[derive(Debug)]
pub struct NameClient {
    op: Operation,
    config: ClientConfig,
    servers: Vec<PerServer>,
    out: VecDeque<(Target, Vec<u8>)>,
    sending: Option<(Target, Vec<u8>)>,
    finished: Option<Finished>,
    reported: bool,
}

impl NameClient {
    /// Starts `op` against `targets` at `now`; request ids come from `rng`.
    pub fn new(
        op: Operation,
        targets: &[Target],
        config: ClientConfig,
        rng: &mut Rng,
        now: Instant,
    ) -> Self {
        let servers = targets
            .iter()
            .map(|t| PerServer {
                target: *t,
                id: rng.next_u64(),
                cookie: None,
                sent: 0,
                cookie_rounds: 0,
                next_send: Some(now),
                outcome: None,
            })
            .collect();
        let mut c = NameClient {
            op,
            config: ClientConfig {
                attempts: config.attempts.max(1),
                ..config
            },
            servers,
            out: VecDeque::new(),
            sending: None,
            finished: None,
            reported: false,
        };
        c.handle_timeout(now);
        c
    }

    /// The operation.
    pub fn operation(&self) -> &Operation {
        &self.op
    }

    /// Whether the client has finished.
    pub fn is_finished(&self) -> bool {
        self.finished.is_some()
    }

    /// The result, once finished.
    pub fn result(&self) -> Option<&Finished> {
        self.finished.as_ref()
    }

    fn request(&self, s: &PerServer) -> Vec<u8> {
        let body = match &self.op {
            Operation::Resolve(n) => RequestBody::Resolve(n.clone()),
            Operation::Write(w) => RequestBody::Write(w.clone()),
        };
        Request {
            id: s.id,
            cookie: s.cookie,
            body,
        }
        .to_bytes()
    }

    /// A datagram from `source` arrived on local address `destination`.
    pub fn handle_input(
        &mut self,
        now: Instant,
        source: SocketAddr,
        _destination: SocketAddr,
        bytes: &[u8],
    ) {
        if self.finished.is_some() {
            return;
        }
        let Ok(resp) = Response::parse(bytes) else {
            return;
        };
        let Some(i) = self
            .servers
            .iter()
            .position(|s| s.target.server == source && s.id == resp.id && s.outcome.is_none())
        else {
            return;
        };
        let outcome = match (resp.body, &self.op) {
            (ResponseBody::Cookie(c), _) => {
                let s = &mut self.servers[i];
                if s.cookie_rounds >= MAX_COOKIE_ROUNDS {
                    Outcome::Invalid("the server keeps asking for a new cookie".into())
                } else {
                    s.cookie_rounds += 1;
                    s.cookie = Some(c);
                    let bytes = self.request(&self.servers[i]);
                    let s = &mut self.servers[i];
                    self.out.push_back((s.target, bytes));
                    // The cookie round does not use up an attempt.
                    s.next_send = Some(now + self.config.initial_rto);
                    return;
                }
            }
            (ResponseBody::Accepted { timestamp_ms }, Operation::Write(_)) => {
                Outcome::Accepted { timestamp_ms }
            }
            (ResponseBody::Found(w), Operation::Resolve(name)) => {
                if w.name != *name {
                    Outcome::Invalid(format!(
                        "the server answered with the record of '{}'",
                        w.name
                    ))
                } else {
                    match w.verify() {
                        Ok(()) => Outcome::Found(w),
                        Err(e) => {
                            Outcome::Invalid(format!("the server's record is not genuine: {e}"))
                        }
                    }
                }
            }
            (ResponseBody::NotFound, _) => Outcome::NotFound,
            (ResponseBody::Refused(r), _) => Outcome::Refused(r),
            (body, _) => {
                Outcome::Invalid(format!("an answer that does not fit the request: {body:?}"))
            }
        };
        let s = &mut self.servers[i];
        s.outcome = Some(outcome);
        s.next_send = None;
        self.check_finished();
    }

    fn check_finished(&mut self) {
        if self.finished.is_some() {
            return;
        }
        let found = self
            .servers
            .iter()
            .any(|s| matches!(s.outcome, Some(Outcome::Found(_))));
        let all = self.servers.iter().all(|s| s.outcome.is_some());
        if found || all {
            for s in &mut self.servers {
                s.next_send = None;
            }
            self.finished = Some(Finished {
                reports: self
                    .servers
                    .iter()
                    .map(|s| Report {
                        server: s.target.server,
                        outcome: s.outcome.clone(),
                    })
                    .collect(),
            });
        }
    }

    /// Time passed: (re)send what is due; servers out of attempts count as silent.
    pub fn handle_timeout(&mut self, now: Instant) {
        for i in 0..self.servers.len() {
            let s = &self.servers[i];
            if s.outcome.is_some() || s.next_send.is_none_or(|t| t > now) {
                continue;
            }
            if s.sent >= self.config.attempts {
                let s = &mut self.servers[i];
                s.outcome = Some(Outcome::NoAnswer);
                s.next_send = None;
                continue;
            }
            let bytes = self.request(s);
            let rto = self
                .config
                .initial_rto
                .saturating_mul(1u32 << self.servers[i].sent.min(16));
            let s = &mut self.servers[i];
            s.sent += 1;
            s.next_send = Some(now + rto);
            self.out.push_back((s.target, bytes));
        }
        self.check_finished();
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Timeout> {
        self.servers
            .iter()
            .filter_map(|s| s.next_send)
            .min()
            .map(|at| Timeout::new(at, "name request retransmission"))
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        self.sending = self.out.pop_front();
        let (t, bytes) = self.sending.as_ref()?;
        Some(Transmit {
            transport: Transport::Udp,
            source: t.local,
            destination: t.server,
            contents: bytes,
        })
    }

    /// The result, once (after that, `None`).
    pub fn poll_event(&mut self) -> Option<Finished> {
        if self.reported {
            return None;
        }
        let f = self.finished.clone()?;
        self.reported = true;
        Some(f)
    }
}
