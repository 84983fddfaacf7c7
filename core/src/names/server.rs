//! The name server's logic, over any [`NameStore`].
//!
//! Per request, in order (cheap checks first, so a flood costs little):
//!
//! 1. Not a name message: dropped silently.
//! 2. No valid cookie for the source IP: answered with one ([`super::cookie`]), nothing else.
//! 3. Rate limit per [`Holder`]: a resolve costs 1 token, a write [`ServerConfig::write_cost`].
//! 4. Parse; a malformed request is refused with [`Refusal::Malformed`].
//! 5. Resolve: the live, unexpired record, or not found.
//! 6. Write: the signature must verify and a record must point at the signer's own
//!    address; the timestamp must be within [`ServerConfig::max_skew`] of the server's
//!    clock; a live name may only be written by its owner; every write must carry a
//!    timestamp larger than the stored one (a replay is refused, an identical
//!    retransmission is acknowledged again without change); a new or moved name must
//!    fit its holder's limit (20 per IPv4 address, 5 per IPv6 /64 by default) and the
//!    server's total. The write is stored durably, then acknowledged.
//!
//! Deletions are kept as tombstones until they expire, so an old record cannot be
//! replayed over a deletion; after expiry, the freshness window refuses any write that
//! old. Names not written for [`ServerConfig::expiry`] (7 days) expire: they read as not
//! found at once and [`NameServer::sweep`] removes them.
//!
//! The server's own memory is bounded: the rate table is fixed-size and at most
//! [`MAX_QUEUED`] replies wait to be sent (and as many events are kept).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::cookie::CookieJar;
use super::rate::{RateConfig, RateLimiter};
use super::store::{Holder, NameStore, StoreError, StoredName};
use super::wire::{Refusal, Request, RequestBody, Response, ResponseBody};
use crate::rng::Rng;
use crate::time::Timeout;
use crate::transmit::{Transmit, Transport};

/// Replies waiting to be sent, at most; more are dropped (the client retransmits).
pub const MAX_QUEUED: usize = 64;

/// Server limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// Live names one IPv4 address may hold (default 20).
    pub per_ipv4: u64,
    /// Live names one IPv6 /64 may hold (default 5).
    pub per_ipv6_64: u64,
    /// Names not written for this long expire (default 7 days).
    pub expiry: Duration,
    /// Writes whose timestamp is further than this from the server's clock are refused
    /// (default 1 hour). Must stay well below `expiry`: see the module docs.
    pub max_skew: Duration,
    /// Entries (live and tombstones) the server stores at most (default 1 000 000).
    pub max_names: u64,
    /// Rate limits per holder.
    pub rate: RateConfig,
    /// Tokens a write costs (a resolve costs 1; default 5: writes reach the disk).
    pub write_cost: u32,
    /// How often to sweep expired names (default 1 hour).
    pub sweep_every: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            per_ipv4: 20,
            per_ipv6_64: 5,
            expiry: Duration::from_secs(7 * 24 * 3600),
            max_skew: Duration::from_secs(3600),
            max_names: 1_000_000,
            rate: RateConfig::default(),
            write_cost: 5,
            sweep_every: Duration::from_secs(3600),
        }
    }
}

/// What the server did with one request (for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// A write was stored.
    Stored {
        /// The name.
        name: String,
        /// Whether it was a deletion.
        deleted: bool,
    },
    /// A request was refused.
    Refused(Refusal),
    /// The store failed.
    StoreFailed(StoreError),
}

/// The name server. See the module docs.
#[derive(Debug)]
pub struct NameServer {
    config: ServerConfig,
    cookies: CookieJar,
    rate: RateLimiter,
    local: SocketAddr,
    /// Answers of the batch being handled: held until the store is flushed.
    pending: Vec<(SocketAddr, u64, ResponseBody)>,
    /// Whether the batch changed the store (or acknowledged a change).
    dirty: bool,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    sending: Option<(SocketAddr, Vec<u8>)>,
    events: VecDeque<ServerEvent>,
    next_sweep: Instant,
}

impl NameServer {
    /// A server answering on `local`, with secrets drawn from `rng`.
    pub fn new(config: ServerConfig, local: SocketAddr, rng: &mut Rng, now: Instant) -> Self {
        NameServer {
            cookies: CookieJar::new(rng),
            rate: RateLimiter::new(config.rate, rng),
            config,
            local,
            pending: Vec::new(),
            dirty: false,
            out: VecDeque::new(),
            sending: None,
            events: VecDeque::new(),
            next_sweep: now + config.sweep_every,
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// A datagram from `source` arrived at `now` (monotonic, for rate limits) and
    /// `unix_ms` (wall clock, for timestamps and expiry). Its answer is ready to send once
    /// this returns: a write is flushed to the store first.
    pub fn handle_input<S: NameStore>(
        &mut self,
        now: Instant,
        unix_ms: u64,
        source: SocketAddr,
        bytes: &[u8],
        store: &mut S,
    ) {
        self.handle_one(now, unix_ms, source, bytes, store);
        self.commit(store);
    }

    /// Several datagrams that arrived together: handled in order, then the store is
    /// flushed once (group commit: one disk sync for the whole batch), then the answers
    /// become ready to send. No acknowledgement leaves before its write is durable.
    pub fn handle_batch<'a, S: NameStore>(
        &mut self,
        now: Instant,
        unix_ms: u64,
        datagrams: impl IntoIterator<Item = (SocketAddr, &'a [u8])>,
        store: &mut S,
    ) {
        for (source, bytes) in datagrams {
            self.handle_one(now, unix_ms, source, bytes, store);
        }
        self.commit(store);
    }

    /// Flushes the store if the batch wrote, then releases the batch's answers; if the
    /// flush fails, every acknowledgement of the batch becomes a storage refusal.
    fn commit<S: NameStore>(&mut self, store: &mut S) {
        if std::mem::take(&mut self.dirty) {
            if let Err(e) = store.flush() {
                self.event(ServerEvent::StoreFailed(e));
                for (_, _, body) in &mut self.pending {
                    if matches!(body, ResponseBody::Accepted { .. }) {
                        *body = ResponseBody::Refused(Refusal::Storage);
                    }
                }
            }
        }
        for (to, id, body) in self.pending.drain(..) {
            self.out.push_back((to, Response { id, body }.to_bytes()));
        }
    }

    fn handle_one<S: NameStore>(
        &mut self,
        now: Instant,
        unix_ms: u64,
        source: SocketAddr,
        bytes: &[u8],
        store: &mut S,
    ) {
        let Ok((id, cookie)) = Request::parse_header(bytes) else {
            return;
        };
        let ip = source.ip();
        if !cookie.is_some_and(|c| self.cookies.check(unix_ms, ip, &c)) {
            let c = self.cookies.issue(unix_ms, ip);
            self.reply(source, id, ResponseBody::Cookie(c));
            return;
        }
        let holder = Holder::of(ip);
        let body = match Request::parse(bytes) {
            Err(_) => {
                if let Err(wait) = self.rate.take(now, &holder, 1) {
                    return self.refuse(source, id, rate_limited(wait));
                }
                self.refuse(source, id, Refusal::Malformed);
                return;
            }
            Ok(req) => req.body,
        };
        let cost = match body {
            RequestBody::Resolve(_) => 1,
            RequestBody::Write(_) => self.config.write_cost,
        };
        if let Err(wait) = self.rate.take(now, &holder, cost) {
            return self.refuse(source, id, rate_limited(wait));
        }
        let answer = match body {
            RequestBody::Resolve(name) => match store.get(&name) {
                Ok(Some(e)) if e.is_live() && !self.expired(&e, unix_ms) => {
                    ResponseBody::Found(Box::new(e.write))
                }
                Ok(_) => ResponseBody::NotFound,
                Err(e) => {
                    self.event(ServerEvent::StoreFailed(e));
                    ResponseBody::Refused(Refusal::Storage)
                }
            },
            RequestBody::Write(w) => match self.write(unix_ms, holder, *w, store) {
                Ok(body) => body,
                Err(e) => {
                    self.event(ServerEvent::StoreFailed(e));
                    ResponseBody::Refused(Refusal::Storage)
                }
            },
        };
        if let ResponseBody::Refused(r) = answer {
            self.event(ServerEvent::Refused(r));
        }
        self.reply(source, id, answer);
    }

    fn expired(&self, e: &StoredName, unix_ms: u64) -> bool {
        let expiry = self.config.expiry.as_millis().min(u128::from(u64::MAX)) as u64;
        unix_ms.saturating_sub(e.written_at_ms) >= expiry
    }

    fn write<S: NameStore>(
        &mut self,
        unix_ms: u64,
        holder: Holder,
        w: super::record::SignedWrite,
        store: &mut S,
    ) -> Result<ResponseBody, StoreError> {
        let refused = |r| Ok(ResponseBody::Refused(r));
        if w.verify().is_err() {
            return refused(Refusal::BadSignature);
        }
        let skew = self.config.max_skew.as_millis().min(u128::from(u64::MAX)) as u64;
        if w.timestamp_ms.abs_diff(unix_ms) > skew {
            return refused(Refusal::ClockSkew { server_ms: unix_ms });
        }
        let existing = store.get(&w.name)?.filter(|e| !self.expired(e, unix_ms));
        if let Some(e) = &existing {
            if e.is_live() && e.write.owner != w.owner {
                return refused(Refusal::NotOwner);
            }
            if w.timestamp_ms == e.write.timestamp_ms && w == e.write {
                // A retransmission of the write already stored: acknowledge again, after
                // a flush (the first copy's may have failed).
                self.dirty = true;
                return Ok(ResponseBody::Accepted {
                    timestamp_ms: w.timestamp_ms,
                });
            }
            if w.timestamp_ms <= e.write.timestamp_ms {
                return refused(Refusal::Stale {
                    stored_ms: e.write.timestamp_ms,
                });
            }
        }
        let live_here = existing
            .as_ref()
            .is_some_and(|e| e.is_live() && e.holder == holder);
        let name = w.name.to_string();
        let deleted = w.is_delete();
        let entry = if deleted {
            match existing {
                Some(e) if e.is_live() => StoredName {
                    write: w,
                    holder: e.holder,
                    written_at_ms: unix_ms,
                },
                // Nothing live to delete.
                _ => return Ok(ResponseBody::NotFound),
            }
        } else {
            if !live_here {
                let limit = match holder {
                    Holder::V4(_) => self.config.per_ipv4,
                    Holder::V6(_) => self.config.per_ipv6_64,
                };
                if store.held_by(&holder)? >= limit {
                    return refused(Refusal::AddressLimit { limit });
                }
            }
            if existing.is_none() && store.len()? >= self.config.max_names {
                return refused(Refusal::Full);
            }
            StoredName {
                write: w,
                holder,
                written_at_ms: unix_ms,
            }
        };
        let ts = entry.write.timestamp_ms;
        self.dirty = true;
        store.put(entry)?;
        self.event(ServerEvent::Stored { name, deleted });
        Ok(ResponseBody::Accepted { timestamp_ms: ts })
    }

    fn event(&mut self, e: ServerEvent) {
        if self.events.len() >= MAX_QUEUED {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    fn refuse(&mut self, to: SocketAddr, id: u64, r: Refusal) {
        self.event(ServerEvent::Refused(r));
        self.reply(to, id, ResponseBody::Refused(r));
    }

    fn reply(&mut self, to: SocketAddr, id: u64, body: ResponseBody) {
        if self.out.len() + self.pending.len() < MAX_QUEUED {
            self.pending.push((to, id, body));
        }
    }

    /// Removes up to `limit` expired entries; returns how many. Call it when
    /// [`poll_timeout`](Self::poll_timeout) says so (and it can be called any time). A
    /// full batch asks for another sweep at once, so a large backlog is cleared in
    /// bounded steps between requests.
    pub fn sweep<S: NameStore>(
        &mut self,
        now: Instant,
        unix_ms: u64,
        store: &mut S,
        limit: usize,
    ) -> Result<usize, StoreError> {
        self.next_sweep = now + self.config.sweep_every;
        let expiry = self.config.expiry.as_millis().min(u128::from(u64::MAX)) as u64;
        let before = unix_ms.saturating_sub(expiry).saturating_add(1);
        let names = store.written_before(before, limit)?;
        store.remove_many(&names)?;
        store.flush()?;
        if limit > 0 && names.len() == limit {
            // More may be left: sweep again soon, between requests.
            self.next_sweep = now;
        }
        Ok(names.len())
    }

    /// When to call [`sweep`](Self::sweep) next.
    pub fn poll_timeout(&self) -> Option<Timeout> {
        Some(Timeout::new(self.next_sweep, "sweep expired names"))
    }

    /// The next reply to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        self.sending = self.out.pop_front();
        let (to, bytes) = self.sending.as_ref()?;
        Some(Transmit {
            transport: Transport::Udp,
            source: self.local,
            destination: *to,
            contents: bytes,
        })
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Bytes of per-client state (the rate table; fixed).
    pub fn memory(&self) -> usize {
        self.rate.memory()
    }
}

fn rate_limited(wait: Duration) -> Refusal {
    Refusal::RateLimited {
        retry_ms: wait.as_millis().min(u128::from(u64::MAX)) as u64,
    }
}
