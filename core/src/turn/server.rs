//! A TURN server (RFC 8656), sans-IO: allocations, permissions, channels, lifetimes,
//! long-term credentials with expiring nonces, per-user quotas and per-client rate limits.
//!
//! # Driving it
//!
//! * Datagrams that arrive on the listen address (from clients) or on a relayed address
//!   (from peers) go to [`TurnServer::handle_input`]; the server tells them apart by the
//!   destination address. Over TCP, the driver cuts the client's byte stream into frames
//!   with [`stream_frame_len`] and hands each to [`TurnServer::handle_stream_frame`]; a
//!   closed connection goes to [`TurnServer::handle_stream_closed`] (RFC 8656 §3.1: the
//!   allocation of a TCP 5-tuple dies with the connection).
//! * [`TurnServer::poll_transmit`] names the source of every transmit: the listen address
//!   (to a client; over TCP, the client's connection) or a relayed address (to a peer).
//! * Relayed addresses are sockets only the driver can open. When an Allocate request
//!   passes every check the server picks a port from its configured range and emits
//!   [`TurnServerEvent::BindRelay`]; the driver binds a UDP socket there and reports with
//!   [`TurnServer::relay_bound`]. Only then is the success response sent (on failure the
//!   server tries another port, then answers 508). [`TurnServerEvent::ReleaseRelay`] tells the
//!   driver to close a socket when its allocation ends.
//! * [`TurnServer::poll_timeout`] / [`TurnServer::handle_timeout`] expire allocations
//!   (RFC 8656 §7), permissions (§9, 300 s), channels (§12, 600 s), port reservations and
//!   idle rate-limit buckets, all by the `now` the caller passes.
//!
//! Every table is bounded ([`TurnLimits`]); a full table refuses (486, 508) or drops,
//! never grows.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::attributes::{AdditionalAddressFamily, AddressFamily};
use super::attributes::{
    ChannelNumber, Data, EvenPort, Lifetime, RequestedAddressFamily, RequestedTransport,
    ReservationToken, TransportProtocol,
};
use super::channel_data::{CHANNEL_DATA_HEADER, ChannelData};
use crate::rng::Rng;
use crate::stun::{
    AttrType, Class, ErrorCode, HeaderContext, IntegrityKey, Message, MessageBuilder, MessageType,
    Method, Nonce, PasswordAlgorithm, PasswordAlgorithmKind, PasswordAlgorithms, Realm, Software,
    StunError, TransactionId, UnknownAttributes, UserHash, Username, XorMappedAddress,
    XorPeerAddress, XorRelayedAddress, message_len,
};
use crate::time::Timeout;
use crate::transmit::{Transmit, Transport};

/// Allocation lifetime when the client asks for none (RFC 8656 §3.2: 10 minutes).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);
/// The longest allocation lifetime granted (RFC 8656 §7.2 suggests 1 hour).
pub const MAX_LIFETIME: Duration = Duration::from_secs(3600);
/// Permission lifetime (RFC 8656 §9: 300 s, not configurable by the client).
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// Channel binding lifetime (RFC 8656 §12: 10 minutes).
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// How long a port reserved by EVEN-PORT's R bit is held (RFC 8656 §7.2 suggests 30 s).
pub const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);
/// How long the server waits for [`TurnServer::relay_bound`] before giving up on a port.
pub const BIND_TIMEOUT: Duration = Duration::from_secs(5);

/// 443 Peer Address Family Mismatch (RFC 8656 §19).
const PEER_ADDRESS_FAMILY_MISMATCH: u16 = 443;
/// RFC 8489 §9.2.1: nonces starting with this cookie carry a security feature set; the
/// four characters after it are base64 of the 24 feature bits, here only bit 0
/// (password algorithms), so clients that know RFC 8489 negotiate PASSWORD-ALGORITHM.
const NONCE_COOKIE: &str = "obMatJos2gAAA";
/// Largest STUN response the server writes.
const MAX_RESPONSE: usize = 1500;
/// Transmits waiting for `poll_transmit`; past this the driver is not draining, and new
/// ones are dropped rather than queued without bound.
const MAX_QUEUE: usize = 256;
/// Events waiting for `poll_event` beyond those the tables imply. Every BindRelay is a
/// pending allocation and every ReleaseRelay an allocation that ended, so up to twice the
/// allocation limit are always kept (dropping a ReleaseRelay would leak the driver's
/// socket); this is the slack for answers to binds nobody asked for.
const MAX_EVENTS: usize = 256;
/// Ports tried for one allocation before answering 508.
const BIND_ATTEMPTS: u8 = 3;

/// Bounds on everything the server keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnLimits {
    /// Allocations on the whole server (508 past it).
    pub max_allocations: usize,
    /// Allocations one user may hold at once (486 past it, RFC 8656 §7.2).
    pub allocations_per_user: usize,
    /// Permissions per allocation (508 past it).
    pub permissions_per_allocation: usize,
    /// Channels per allocation (508 past it).
    pub channels_per_allocation: usize,
    /// Requests per second a client address may send, sustained (token bucket rate).
    pub requests_per_second: u32,
    /// Requests a client may send in a burst (token bucket size).
    pub request_burst: u32,
    /// Client addresses tracked by the rate limiter; requests from further new clients
    /// are dropped while it is full of active ones.
    pub max_clients: usize,
    /// How long a nonce stays valid (then 438 Stale Nonce).
    pub nonce_lifetime: Duration,
}

impl Default for TurnLimits {
    fn default() -> Self {
        TurnLimits {
            max_allocations: 1024,
            allocations_per_user: 16,
            permissions_per_allocation: 64,
            channels_per_allocation: 64,
            requests_per_second: 50,
            request_burst: 100,
            max_clients: 4096,
            nonce_lifetime: Duration::from_secs(3600),
        }
    }
}

/// What the server serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnServerConfig {
    /// The address clients reach the server at (UDP, and TCP if the driver listens).
    pub listen: SocketAddr,
    /// The IP relayed addresses are on.
    pub relay_ip: IpAddr,
    /// The relay port range, inclusive.
    pub relay_ports: (u16, u16),
    /// The long-term credential realm.
    pub realm: String,
    /// Users and their passwords.
    pub users: Vec<(String, String)>,
    /// A SOFTWARE value to add to responses.
    pub software: Option<String>,
    /// Table bounds and rates.
    pub limits: TurnLimits,
}

impl TurnServerConfig {
    /// A configuration with the default limits and the IANA dynamic port range for relays.
    pub fn new(listen: SocketAddr, realm: &str, users: Vec<(String, String)>) -> Self {
        TurnServerConfig {
            listen,
            relay_ip: listen.ip(),
            relay_ports: (49152, 65535),
            realm: realm.to_owned(),
            users,
            software: None,
            limits: TurnLimits::default(),
        }
    }
}

/// A configuration the server cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnConfigError {
    /// No users: nobody could allocate.
    #[error("no users configured: give at least one --user NAME:PASS")]
    NoUsers,
    /// A user name or password that long-term credentials cannot use.
    #[error(
        "user '{0}': the name must be 1 to 512 bytes without ':' and name and password must pass SASLprep (no control characters)"
    )]
    BadUser(String),
    /// The realm is empty, too long or fails SASLprep.
    #[error("realm '{0}' is unusable: it must be 1 to 763 bytes of printable text")]
    BadRealm(String),
    /// The relay port range is empty.
    #[error("relay port range {0}-{1} is empty: give the low port first")]
    EmptyPortRange(u16, u16),
    /// The relay IP is unspecified.
    #[error("relay IP {0} is unspecified: give the address peers reach this host at (--relay-ip)")]
    UnspecifiedRelay(IpAddr),
    /// A limit is zero.
    #[error("limit {0} must be at least 1")]
    ZeroLimit(&'static str),
    /// The SOFTWARE value is too long.
    #[error("SOFTWARE value too long: {0}")]
    Software(StunError),
}

/// What the driver must do for the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnServerEvent {
    /// Bind a UDP socket at `relay` and report with [`TurnServer::relay_bound`].
    BindRelay {
        /// The relayed transport address to bind.
        relay: SocketAddr,
    },
    /// The allocation at `relay` ended: close its socket.
    ReleaseRelay {
        /// The relayed transport address to close.
        relay: SocketAddr,
    },
}

/// Counters for operators and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TurnServerStats {
    /// Allocations created.
    pub allocations: u64,
    /// Allocations that ended (expired, refreshed to 0, or their TCP connection closed).
    pub deleted: u64,
    /// Success responses sent.
    pub successes: u64,
    /// Error responses sent (including 401 challenges).
    pub errors: u64,
    /// Datagrams relayed client → peer.
    pub relayed_to_peers: u64,
    /// Datagrams relayed peer → client.
    pub relayed_to_clients: u64,
    /// Packets dropped because no permission covered the peer (RFC 8656 §10, §11).
    pub no_permission: u64,
    /// Requests dropped by the rate limiter.
    pub rate_limited: u64,
    /// Other packets dropped: malformed, unexpected, no allocation, full queue.
    pub dropped: u64,
}

/// How a client reaches the server: its transport and address (with the server's listen
/// address, the 5-tuple of RFC 8656 §2).
type ClientKey = (Transport, SocketAddr);

#[derive(Debug)]
struct Outgoing {
    transport: Transport,
    source: SocketAddr,
    destination: SocketAddr,
    bytes: Vec<u8>,
}

#[derive(Debug)]
struct Channel {
    peer: SocketAddr,
    expires: Instant,
}

#[derive(Debug)]
struct Allocation {
    user: String,
    relay: SocketAddr,
    expires: Instant,
    /// The Allocate transaction, so a retransmission gets the success again (§7.2).
    transaction: TransactionId,
    permissions: HashMap<IpAddr, Instant>,
    channels: HashMap<ChannelNumber, Channel>,
    peer_channels: HashMap<SocketAddr, ChannelNumber>,
    reservation: Option<[u8; 8]>,
    /// See [`Pending::refused_v6`].
    refused_v6: bool,
}

/// Who authenticated a request, and how to sign the answer.
#[derive(Debug, Clone)]
struct Auth {
    user: String,
    key: IntegrityKey,
    sha256: bool,
}

/// An Allocate waiting for the driver to bind its relay socket.
#[derive(Debug)]
struct Pending {
    client: ClientKey,
    auth: Auth,
    ctx: HeaderContext,
    lifetime: Duration,
    even: bool,
    reserve: bool,
    /// The reservation this allocation consumes (its port is the one being bound).
    token: Option<[u8; 8]>,
    /// An IPv6 relay was asked for too (ADDITIONAL-ADDRESS-FAMILY), which this server,
    /// with one relay IP, answers with ADDRESS-ERROR-CODE 440 (RFC 8656 §7.2).
    refused_v6: bool,
    attempts: u8,
    deadline: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens in thousandths.
    milli: u64,
    last: Instant,
}

#[derive(Debug, Clone)]
struct UserKeys {
    md5: IntegrityKey,
    sha256: IntegrityKey,
}

/// Why a request is answered with an error.
#[derive(Debug, Clone)]
enum Refusal {
    /// An error code and reason.
    Code(u16, &'static str),
    /// 420 with these types.
    Unknown(Vec<AttrType>),
    /// 401 or 438 with a fresh nonce and the realm (unsigned).
    Challenge(u16, &'static str),
}

/// The TURN server. See the [module documentation](self) for how to drive it.
#[derive(Debug)]
pub struct TurnServer {
    config: TurnServerConfig,
    users: HashMap<String, UserKeys>,
    user_hashes: HashMap<[u8; 32], String>,
    nonce_key: IntegrityKey,
    epoch: Instant,
    rng: Rng,
    allocations: HashMap<ClientKey, Allocation>,
    by_relay: HashMap<SocketAddr, ClientKey>,
    pending: HashMap<SocketAddr, Pending>,
    ports: HashSet<u16>,
    reservations: HashMap<[u8; 8], (u16, Instant)>,
    buckets: HashMap<SocketAddr, Bucket>,
    queue: VecDeque<Outgoing>,
    sent: Option<Outgoing>,
    spare: Vec<Vec<u8>>,
    events: VecDeque<TurnServerEvent>,
    next_wake: Option<Instant>,
    /// The latest `now` seen, for nonces made while answering.
    last_now: Instant,
    stats: TurnServerStats,
}

impl TurnServer {
    /// A server for `config`, starting at `now`, drawing nonce keys, ports and
    /// transaction IDs from `rng`.
    pub fn new(
        config: TurnServerConfig,
        mut rng: Rng,
        now: Instant,
    ) -> Result<Self, TurnConfigError> {
        if config.users.is_empty() {
            return Err(TurnConfigError::NoUsers);
        }
        if config.realm.is_empty() || Realm::new(&config.realm).is_err() {
            return Err(TurnConfigError::BadRealm(config.realm.clone()));
        }
        let (lo, hi) = config.relay_ports;
        if lo > hi || hi == 0 {
            return Err(TurnConfigError::EmptyPortRange(lo, hi));
        }
        if config.relay_ip.is_unspecified() {
            return Err(TurnConfigError::UnspecifiedRelay(config.relay_ip));
        }
        let l = &config.limits;
        for (v, name) in [
            (l.max_allocations, "max_allocations"),
            (l.allocations_per_user, "allocations_per_user"),
            (l.permissions_per_allocation, "permissions_per_allocation"),
            (l.channels_per_allocation, "channels_per_allocation"),
            (l.request_burst as usize, "request_burst"),
            (l.requests_per_second as usize, "requests_per_second"),
            (l.max_clients, "max_clients"),
        ] {
            if v == 0 {
                return Err(TurnConfigError::ZeroLimit(name));
            }
        }
        if let Some(s) = &config.software {
            Software::new(s).map_err(TurnConfigError::Software)?;
        }
        let mut users = HashMap::new();
        let mut user_hashes = HashMap::new();
        for (name, pass) in &config.users {
            let bad = || TurnConfigError::BadUser(name.clone());
            if name.is_empty() || name.contains(':') || Username::new(name).is_err() {
                return Err(bad());
            }
            let md5 =
                IntegrityKey::long_term(name, &config.realm, pass, PasswordAlgorithmKind::Md5)
                    .map_err(|_| bad())?;
            let sha256 =
                IntegrityKey::long_term(name, &config.realm, pass, PasswordAlgorithmKind::Sha256)
                    .map_err(|_| bad())?;
            users.insert(name.clone(), UserKeys { md5, sha256 });
            user_hashes.insert(UserHash::compute(name, &config.realm).0, name.clone());
        }
        let mut secret = [0u8; 32];
        rng.fill(&mut secret);
        Ok(TurnServer {
            config,
            users,
            user_hashes,
            nonce_key: IntegrityKey::from_bytes(&secret),
            epoch: now,
            rng,
            allocations: HashMap::new(),
            by_relay: HashMap::new(),
            pending: HashMap::new(),
            ports: HashSet::new(),
            reservations: HashMap::new(),
            buckets: HashMap::new(),
            queue: VecDeque::new(),
            sent: None,
            spare: Vec::new(),
            events: VecDeque::new(),
            next_wake: None,
            last_now: now,
            stats: TurnServerStats::default(),
        })
    }

    /// The listen address.
    pub fn listen_address(&self) -> SocketAddr {
        self.config.listen
    }

    /// The counters so far.
    pub fn stats(&self) -> TurnServerStats {
        self.stats
    }

    /// Live allocations.
    pub fn allocation_count(&self) -> usize {
        self.allocations.len()
    }

    /// The relayed address of the allocation of `client` over `transport`, if any.
    pub fn relayed_address(&self, transport: Transport, client: SocketAddr) -> Option<SocketAddr> {
        self.allocations.get(&(transport, client)).map(|a| a.relay)
    }

    // ----- input -------------------------------------------------------------------

    /// A UDP datagram from `source` arrived on the server's address `destination`: the
    /// listen address (a client's STUN message or ChannelData) or a relayed address (a
    /// peer's datagram, relayed to the client if a permission allows, RFC 8656 §11.3).
    pub fn handle_input(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        if destination == self.config.listen {
            self.on_client(now, (Transport::Udp, source), bytes);
        } else if let Some(&client) = self.by_relay.get(&destination) {
            self.on_peer(client, source, bytes);
        } else {
            self.stats.dropped += 1;
        }
    }

    /// One frame (a STUN message or a padded ChannelData message, cut with
    /// [`stream_frame_len`]) from the TCP connection of `client` to the listen address.
    pub fn handle_stream_frame(&mut self, now: Instant, client: SocketAddr, frame: &[u8]) {
        self.on_client(now, (Transport::Tcp, client), frame);
    }

    /// The TCP connection of `client` closed: its allocation ends (RFC 8656 §3.1).
    pub fn handle_stream_closed(&mut self, _now: Instant, client: SocketAddr) {
        self.delete_allocation((Transport::Tcp, client));
    }

    /// The driver's answer to [`TurnServerEvent::BindRelay`]: whether a socket is now bound at
    /// `relay`. On success the allocation exists and its success response is queued; on
    /// failure another port is tried, and after a few, the client gets 508.
    pub fn relay_bound(&mut self, now: Instant, relay: SocketAddr, ok: bool) {
        let Some(p) = self.pending.remove(&relay) else {
            // Not asked for (or given up on): the driver should close it again.
            if ok {
                self.push_event(TurnServerEvent::ReleaseRelay { relay });
            }
            return;
        };
        if !ok {
            self.ports.remove(&relay.port());
            if p.attempts < BIND_ATTEMPTS && p.token.is_none() {
                self.start_bind(now, p);
            } else {
                self.release_reservation_of(&p);
                self.respond_error(
                    p.client,
                    &p.ctx,
                    Method::ALLOCATE,
                    Some(&p.auth),
                    &Refusal::Code(
                        ErrorCode::INSUFFICIENT_CAPACITY,
                        "No relay port could be bound",
                    ),
                );
            }
            return;
        }
        if self.allocations.contains_key(&p.client) {
            // The client got another allocation meanwhile (cannot happen through the
            // checks above, but never keep two).
            self.ports.remove(&relay.port());
            self.push_event(TurnServerEvent::ReleaseRelay { relay });
            return;
        }
        let mut reservation = None;
        if p.reserve {
            let next = relay.port().wrapping_add(1);
            if next != 0 && next <= self.config.relay_ports.1 && self.ports.insert(next) {
                let mut token = [0u8; 8];
                self.rng.fill(&mut token);
                let expires = now + RESERVATION_LIFETIME;
                self.reservations.insert(token, (next, expires));
                self.wake_at(expires);
                reservation = Some(token);
            }
        }
        let expires = now + p.lifetime;
        self.allocations.insert(
            p.client,
            Allocation {
                user: p.auth.user.clone(),
                relay,
                expires,
                transaction: p.ctx.transaction_id,
                permissions: HashMap::new(),
                channels: HashMap::new(),
                peer_channels: HashMap::new(),
                reservation,
                refused_v6: p.refused_v6,
            },
        );
        self.by_relay.insert(relay, p.client);
        self.wake_at(expires);
        self.stats.allocations += 1;
        let extra = (reservation, p.refused_v6);
        self.send_allocate_success(p.client, &p.ctx, &p.auth, relay, p.lifetime, extra);
    }

    fn on_client(&mut self, now: Instant, client: ClientKey, bytes: &[u8]) {
        self.last_now = self.last_now.max(now);
        match bytes.first().map(|b| b >> 6) {
            Some(0) => {}
            Some(1) => return self.channel_data_from_client(client, bytes),
            _ => {
                self.stats.dropped += 1;
                return;
            }
        }
        let Ok(msg) = Message::parse(bytes) else {
            self.stats.dropped += 1;
            return;
        };
        if msg.is_rfc3489() || (msg.has_fingerprint() && msg.verify_fingerprint().is_err()) {
            self.stats.dropped += 1;
            return;
        }
        match msg.message_type().class {
            Class::Request => self.request(now, client, &msg),
            Class::Indication if msg.message_type().method == Method::SEND => {
                self.send_indication(client, &msg)
            }
            _ => self.stats.dropped += 1,
        }
    }

    /// ChannelData from a client: relayed to the channel's peer (RFC 8656 §12.5).
    fn channel_data_from_client(&mut self, client: ClientKey, bytes: &[u8]) {
        let Ok(cd) = ChannelData::parse_rfc5766(bytes) else {
            self.stats.dropped += 1;
            return;
        };
        let Some(alloc) = self.allocations.get(&client) else {
            self.stats.dropped += 1;
            return;
        };
        let Some(ch) = alloc.channels.get(&cd.channel()) else {
            self.stats.dropped += 1;
            return;
        };
        let (relay, peer) = (alloc.relay, ch.peer);
        // A channel implies a permission (§12.2), refreshed with it; check anyway, so an
        // expired permission also stops the channel's traffic.
        if !alloc.permissions.contains_key(&peer.ip()) {
            self.stats.no_permission += 1;
            return;
        }
        self.stats.relayed_to_peers += 1;
        self.enqueue_copy(Transport::Udp, relay, peer, cd.data());
    }

    /// A Send indication: its DATA goes to XOR-PEER-ADDRESS if a permission covers it,
    /// otherwise it is dropped (RFC 8656 §11.2).
    fn send_indication(&mut self, client: ClientKey, msg: &Message<'_>) {
        let (Ok(Some(XorPeerAddress(peer))), Ok(Some(Data(data)))) =
            (msg.get::<XorPeerAddress>(), msg.get::<Data>())
        else {
            self.stats.dropped += 1;
            return;
        };
        let Some(alloc) = self.allocations.get(&client) else {
            self.stats.dropped += 1;
            return;
        };
        if !alloc.permissions.contains_key(&peer.ip()) {
            self.stats.no_permission += 1;
            return;
        }
        let relay = alloc.relay;
        self.stats.relayed_to_peers += 1;
        self.enqueue_copy(Transport::Udp, relay, peer, data);
    }

    /// A datagram from a peer on a relayed address: to the client as ChannelData if a
    /// channel is bound to the peer, else as a Data indication; dropped without a
    /// permission for the peer's IP (RFC 8656 §11.3).
    fn on_peer(&mut self, client: ClientKey, peer: SocketAddr, bytes: &[u8]) {
        let Some(alloc) = self.allocations.get(&client) else {
            self.stats.dropped += 1;
            return;
        };
        if !alloc.permissions.contains_key(&peer.ip()) {
            self.stats.no_permission += 1;
            return;
        }
        let channel = alloc.peer_channels.get(&peer).copied();
        let (transport, addr) = client;
        if self.queue.len() >= MAX_QUEUE {
            self.stats.dropped += 1;
            return;
        }
        let mut buf = self.buffer(bytes.len() + 64);
        let len = match channel {
            Some(ch) => ChannelData::emit(ch, bytes, transport == Transport::Tcp, &mut buf).ok(),
            None => {
                let id = TransactionId::random(&mut self.rng);
                MessageBuilder::new(
                    &mut buf,
                    MessageType::new(Method::DATA, Class::Indication),
                    id,
                )
                .and_then(|mut b| {
                    b.add(&XorPeerAddress(peer))?.add(&Data(bytes))?;
                    Ok(b.finish().len())
                })
                .ok()
            }
        };
        let Some(len) = len else {
            // Larger than a STUN message can carry.
            self.stats.dropped += 1;
            return;
        };
        buf.truncate(len);
        self.stats.relayed_to_clients += 1;
        self.queue.push_back(Outgoing {
            transport,
            source: self.config.listen,
            destination: addr,
            bytes: buf,
        });
    }

    // ----- requests ----------------------------------------------------------------

    fn request(&mut self, now: Instant, client: ClientKey, msg: &Message<'_>) {
        if !self.take_token(now, client.1) {
            self.stats.rate_limited += 1;
            return;
        }
        let method = msg.message_type().method;
        let ctx = *msg.context();
        if method == Method::BINDING {
            // A TURN server is a STUN server too (RFC 8656 §4); no credentials needed.
            return self.respond_success(client, &ctx, method, None, |b| {
                b.add(&XorMappedAddress(client.1))?;
                Ok(())
            });
        }
        if ![
            Method::ALLOCATE,
            Method::REFRESH,
            Method::CREATE_PERMISSION,
            Method::CHANNEL_BIND,
        ]
        .contains(&method)
        {
            return self.respond_error(
                client,
                &ctx,
                method,
                None,
                &Refusal::Code(
                    ErrorCode::BAD_REQUEST,
                    "Method not supported by this server",
                ),
            );
        }
        let unknown: Vec<AttrType> = msg
            .unknown_required(AttrType::is_turn_attribute)
            .take(UnknownAttributes::MAX_TYPES)
            .collect();
        if !unknown.is_empty() {
            return self.respond_error(client, &ctx, method, None, &Refusal::Unknown(unknown));
        }
        let auth = match self.authenticate(now, msg) {
            Ok(a) => a,
            Err(r) => return self.respond_error(client, &ctx, method, None, &r),
        };
        let result = match method {
            Method::ALLOCATE => self.allocate(now, client, msg, &auth),
            Method::REFRESH => self.refresh(now, client, msg, &auth),
            Method::CREATE_PERMISSION => self.create_permission(now, client, msg, &auth),
            _ => self.channel_bind(now, client, msg, &auth),
        };
        if let Err(r) = result {
            self.respond_error(client, &ctx, method, Some(&auth), &r);
        }
    }

    /// Long-term credentials (RFC 8489 §9.2.4): a request without MESSAGE-INTEGRITY is
    /// challenged with 401, REALM, NONCE and PASSWORD-ALGORITHMS; an expired nonce gets
    /// 438; a wrong key or unknown user gets 401.
    fn authenticate(&self, now: Instant, msg: &Message<'_>) -> Result<Auth, Refusal> {
        if !msg.has_integrity() && !msg.has_integrity_sha256() {
            return Err(Refusal::Challenge(
                ErrorCode::UNAUTHENTICATED,
                "Unauthenticated",
            ));
        }
        let bad = |reason| Refusal::Code(ErrorCode::BAD_REQUEST, reason);
        let user = match (msg.get::<Username>(), msg.get::<UserHash>()) {
            (Ok(Some(u)), _) => u.as_str().to_owned(),
            (_, Ok(Some(h))) => match self.user_hashes.get(&h.0) {
                Some(u) => u.clone(),
                None => {
                    return Err(Refusal::Challenge(
                        ErrorCode::UNAUTHENTICATED,
                        "Unknown user",
                    ));
                }
            },
            _ => return Err(bad("USERNAME or USERHASH missing or malformed")),
        };
        let realm = msg
            .get::<Realm>()
            .ok()
            .flatten()
            .ok_or_else(|| bad("REALM missing or malformed"))?;
        let nonce = msg
            .get::<Nonce>()
            .ok()
            .flatten()
            .ok_or_else(|| bad("NONCE missing or malformed"))?;
        if realm.as_str() != self.config.realm {
            return Err(Refusal::Challenge(
                ErrorCode::UNAUTHENTICATED,
                "Wrong realm",
            ));
        }
        match self.check_nonce(now, nonce.as_str()) {
            NonceCheck::Valid => {}
            NonceCheck::Stale => {
                return Err(Refusal::Challenge(ErrorCode::STALE_NONCE, "Stale Nonce"));
            }
            NonceCheck::Forged => {
                return Err(Refusal::Challenge(
                    ErrorCode::UNAUTHENTICATED,
                    "Unknown nonce",
                ));
            }
        }
        // RFC 8489 §9.2.4: PASSWORD-ALGORITHMS, when echoed, must be what we offered;
        // PASSWORD-ALGORITHM picks the key; neither means MD5.
        let offered = offered_algorithms();
        let echoed = msg
            .get::<PasswordAlgorithms>()
            .map_err(|_| bad("malformed PASSWORD-ALGORITHMS"))?;
        let chosen = msg
            .get::<PasswordAlgorithm>()
            .map_err(|_| bad("malformed PASSWORD-ALGORITHM"))?;
        if let Some(e) = echoed {
            if !PasswordAlgorithms::new(&offered).is_ok_and(|o| o == e) {
                return Err(bad(
                    "PASSWORD-ALGORITHMS differs from what the server offered",
                ));
            }
        }
        if echoed.is_some() != chosen.is_some() {
            return Err(bad(
                "PASSWORD-ALGORITHM and PASSWORD-ALGORITHMS go together",
            ));
        }
        let keys = self.users.get(&user).ok_or(Refusal::Challenge(
            ErrorCode::UNAUTHENTICATED,
            "Unknown user",
        ))?;
        let key = match chosen.map(|c| c.kind) {
            None | Some(PasswordAlgorithmKind::Md5) => &keys.md5,
            Some(PasswordAlgorithmKind::Sha256) => &keys.sha256,
            Some(PasswordAlgorithmKind::Unknown(_)) => {
                return Err(bad("PASSWORD-ALGORITHM is not one the server offered"));
            }
        };
        let sha256 = msg.has_integrity_sha256();
        if msg.verify_any_integrity(key).is_err() {
            return Err(Refusal::Challenge(
                ErrorCode::UNAUTHENTICATED,
                "Wrong credentials",
            ));
        }
        Ok(Auth {
            user,
            key: key.clone(),
            sha256,
        })
    }

    /// Allocate (RFC 8656 §7.2).
    fn allocate(
        &mut self,
        now: Instant,
        client: ClientKey,
        msg: &Message<'_>,
        auth: &Auth,
    ) -> Result<(), Refusal> {
        let bad = |reason| Refusal::Code(ErrorCode::BAD_REQUEST, reason);
        if let Some(a) = self.allocations.get(&client) {
            if a.transaction == msg.transaction_id() && a.user == auth.user {
                // A retransmission of the request that created it: the same success.
                let (relay, left, token) = (
                    a.relay,
                    a.expires.saturating_duration_since(now),
                    (a.reservation, a.refused_v6),
                );
                self.send_allocate_success(client, msg.context(), auth, relay, left, token);
                return Ok(());
            }
            return Err(Refusal::Code(
                ErrorCode::ALLOCATION_MISMATCH,
                "Allocation Mismatch",
            ));
        }
        if self.pending.values().any(|p| p.client == client) {
            // Its relay socket is being bound; the answer comes then.
            return Ok(());
        }
        match msg.get::<RequestedTransport>() {
            Ok(Some(RequestedTransport(TransportProtocol::Udp))) => {}
            Ok(Some(_)) => {
                return Err(Refusal::Code(
                    ErrorCode::UNSUPPORTED_TRANSPORT,
                    "Unsupported Transport Protocol: only UDP relays",
                ));
            }
            _ => return Err(bad("REQUESTED-TRANSPORT missing or malformed")),
        }
        // RFC 8656 §7.2: a server that cannot set DF on relayed datagrams (this one leaves
        // the socket options to the driver, which does not) treats DONT-FRAGMENT as an
        // unknown comprehension-required attribute.
        if msg.has(AttrType::DONT_FRAGMENT) {
            return Err(Refusal::Unknown(vec![AttrType::DONT_FRAGMENT]));
        }
        let even = msg
            .get::<EvenPort>()
            .map_err(|_| bad("malformed EVEN-PORT"))?;
        let token = msg
            .get::<ReservationToken>()
            .map_err(|_| bad("malformed RESERVATION-TOKEN"))?;
        let family = msg
            .get::<RequestedAddressFamily>()
            .map_err(|_| bad("malformed REQUESTED-ADDRESS-FAMILY"))?;
        if token.is_some() && (even.is_some() || family.is_some()) {
            return Err(bad(
                "RESERVATION-TOKEN excludes EVEN-PORT and REQUESTED-ADDRESS-FAMILY",
            ));
        }
        let additional = msg
            .get::<AdditionalAddressFamily>()
            .map_err(|_| bad("malformed ADDITIONAL-ADDRESS-FAMILY"))?;
        match additional {
            Some(_) if family.is_some() || token.is_some() => {
                return Err(bad(
                    "ADDITIONAL-ADDRESS-FAMILY excludes REQUESTED-ADDRESS-FAMILY and RESERVATION-TOKEN",
                ));
            }
            Some(AdditionalAddressFamily(AddressFamily::V4)) => {
                return Err(bad("ADDITIONAL-ADDRESS-FAMILY must ask for IPv6"));
            }
            _ => {}
        }
        let want_v4 = !matches!(family, Some(RequestedAddressFamily(AddressFamily::V6)));
        if want_v4 != self.config.relay_ip.is_ipv4() {
            return Err(Refusal::Code(
                ErrorCode::ADDRESS_FAMILY_NOT_SUPPORTED,
                "Address Family not Supported",
            ));
        }
        let held = self
            .allocations
            .values()
            .filter(|a| a.user == auth.user)
            .count()
            + self
                .pending
                .values()
                .filter(|p| p.auth.user == auth.user)
                .count();
        if held >= self.config.limits.allocations_per_user {
            return Err(Refusal::Code(
                ErrorCode::ALLOCATION_QUOTA_REACHED,
                "Allocation Quota Reached",
            ));
        }
        if self.allocations.len() + self.pending.len() >= self.config.limits.max_allocations {
            return Err(Refusal::Code(
                ErrorCode::INSUFFICIENT_CAPACITY,
                "Insufficient Capacity: the server holds its maximum of allocations",
            ));
        }
        let requested = msg
            .get::<Lifetime>()
            .map_err(|_| bad("malformed LIFETIME"))?
            .map_or(DEFAULT_LIFETIME, Lifetime::duration);
        let lifetime = requested.min(MAX_LIFETIME).max(DEFAULT_LIFETIME);
        let token = match token {
            Some(ReservationToken(t)) => match self.reservations.get(&t) {
                Some(&(_, expires)) if expires > now => Some(t),
                _ => {
                    return Err(Refusal::Code(
                        ErrorCode::INSUFFICIENT_CAPACITY,
                        "Insufficient Capacity: no such port reservation",
                    ));
                }
            },
            None => None,
        };
        let pending = Pending {
            client,
            auth: auth.clone(),
            ctx: *msg.context(),
            lifetime,
            even: even.is_some(),
            reserve: even.is_some_and(|e| e.reserve),
            token,
            refused_v6: additional.is_some(),
            attempts: 0,
            deadline: now + BIND_TIMEOUT,
        };
        if !self.start_bind(now, pending) {
            return Err(Refusal::Code(
                ErrorCode::INSUFFICIENT_CAPACITY,
                "Insufficient Capacity: no free relay port",
            ));
        }
        Ok(())
    }

    /// Picks a port and asks the driver to bind it; false when no port is free.
    fn start_bind(&mut self, now: Instant, mut p: Pending) -> bool {
        let port = match p.token {
            Some(t) => match self.reservations.remove(&t) {
                // The reserved port stays in `ports`; it is now the one being bound.
                Some((port, _)) => port,
                None => return false,
            },
            None => match self.pick_port(p.even, p.reserve) {
                Some(port) => port,
                None => return false,
            },
        };
        p.attempts += 1;
        p.deadline = now + BIND_TIMEOUT;
        self.wake_at(p.deadline);
        let relay = SocketAddr::new(self.config.relay_ip, port);
        self.pending.insert(relay, p);
        self.push_event(TurnServerEvent::BindRelay { relay });
        true
    }

    /// A random free port from the range (even, and with the next one free, if asked).
    fn pick_port(&mut self, even: bool, reserve: bool) -> Option<u16> {
        let (lo, hi) = self.config.relay_ports;
        let span = u64::from(hi - lo) + 1;
        let start = self.rng.below(span);
        // At most 64 random probes, then a linear scan from a random start: a nearly full
        // range still finds its free ports, and an empty one costs little.
        for i in 0..span.min(65_536) {
            let off = if i < 64 {
                self.rng.below(span)
            } else {
                (start + i) % span
            };
            let port = lo + off as u16;
            if port == 0 || self.ports.contains(&port) {
                continue;
            }
            if even && port % 2 != 0 {
                continue;
            }
            if reserve && (port == hi || self.ports.contains(&(port + 1))) {
                continue;
            }
            self.ports.insert(port);
            return Some(port);
        }
        None
    }

    fn release_reservation_of(&mut self, p: &Pending) {
        if let Some(t) = p.token {
            if let Some((port, _)) = self.reservations.remove(&t) {
                self.ports.remove(&port);
            }
        }
    }

    /// Refresh (RFC 8656 §7.3): LIFETIME 0 deletes; otherwise the allocation lives
    /// min(requested, 3600 s) more (600 s without LIFETIME).
    fn refresh(
        &mut self,
        now: Instant,
        client: ClientKey,
        msg: &Message<'_>,
        auth: &Auth,
    ) -> Result<(), Refusal> {
        let requested = msg
            .get::<Lifetime>()
            .map_err(|_| Refusal::Code(ErrorCode::BAD_REQUEST, "malformed LIFETIME"))?
            .map_or(DEFAULT_LIFETIME, Lifetime::duration);
        let Some(alloc) = self.allocations.get_mut(&client) else {
            return Err(Refusal::Code(
                ErrorCode::ALLOCATION_MISMATCH,
                "Allocation Mismatch: no allocation",
            ));
        };
        if alloc.user != auth.user {
            return Err(Refusal::Code(
                ErrorCode::WRONG_CREDENTIALS,
                "Wrong Credentials",
            ));
        }
        let lifetime = requested.min(MAX_LIFETIME);
        if lifetime.is_zero() {
            self.delete_allocation(client);
        } else {
            alloc.expires = now + lifetime;
            self.wake_at(now + lifetime);
        }
        let secs = u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX);
        self.respond_success(client, msg.context(), Method::REFRESH, Some(auth), |b| {
            b.add(&Lifetime(secs))?;
            Ok(())
        });
        Ok(())
    }

    /// CreatePermission (RFC 8656 §9): every XOR-PEER-ADDRESS gets (or refreshes) a
    /// 300 s permission for its IP; all or none.
    fn create_permission(
        &mut self,
        now: Instant,
        client: ClientKey,
        msg: &Message<'_>,
        auth: &Auth,
    ) -> Result<(), Refusal> {
        let alloc = self.allocation_of(client, auth)?;
        let relay_v4 = alloc.relay.is_ipv4();
        let mut peers: Vec<IpAddr> = Vec::new();
        for raw in msg
            .attributes()
            .filter(|a| a.typ == AttrType::XOR_PEER_ADDRESS)
        {
            use crate::stun::Attribute;
            let XorPeerAddress(p) = XorPeerAddress::decode(raw.value, msg.context())
                .map_err(|_| Refusal::Code(ErrorCode::BAD_REQUEST, "malformed XOR-PEER-ADDRESS"))?;
            if p.is_ipv4() != relay_v4 {
                return Err(Refusal::Code(
                    PEER_ADDRESS_FAMILY_MISMATCH,
                    "Peer Address Family Mismatch",
                ));
            }
            if !peers.contains(&p.ip()) {
                peers.push(p.ip());
            }
        }
        if peers.is_empty() {
            return Err(Refusal::Code(
                ErrorCode::BAD_REQUEST,
                "XOR-PEER-ADDRESS missing",
            ));
        }
        let new = peers
            .iter()
            .filter(|ip| !alloc.permissions.contains_key(ip))
            .count();
        if alloc.permissions.len() + new > self.config.limits.permissions_per_allocation {
            return Err(Refusal::Code(
                ErrorCode::INSUFFICIENT_CAPACITY,
                "Insufficient Capacity: too many permissions on this allocation",
            ));
        }
        let expires = now + PERMISSION_LIFETIME;
        let alloc = self.allocations.get_mut(&client).ok_or(Refusal::Code(
            ErrorCode::ALLOCATION_MISMATCH,
            "Allocation Mismatch: no allocation",
        ))?;
        for ip in peers {
            alloc.permissions.insert(ip, expires);
        }
        self.wake_at(expires);
        self.respond_success(
            client,
            msg.context(),
            Method::CREATE_PERMISSION,
            Some(auth),
            |_| Ok(()),
        );
        Ok(())
    }

    /// ChannelBind (RFC 8656 §12.2): a channel belongs to one peer and a peer to one
    /// channel for the binding's life; binding refreshes the channel (600 s) and the
    /// peer's permission (300 s).
    fn channel_bind(
        &mut self,
        now: Instant,
        client: ClientKey,
        msg: &Message<'_>,
        auth: &Auth,
    ) -> Result<(), Refusal> {
        let bad = |reason| Refusal::Code(ErrorCode::BAD_REQUEST, reason);
        // RFC 5766's range (0x4000..=0x7FFF), which older clients still use.
        let channel = msg
            .attributes()
            .find(|a| a.typ == AttrType::CHANNEL_NUMBER)
            .ok_or_else(|| bad("CHANNEL-NUMBER missing"))?;
        let channel = match *channel.value {
            [a, b, _, _] => ChannelNumber::new_rfc5766(u16::from_be_bytes([a, b])),
            _ => None,
        }
        .ok_or_else(|| bad("CHANNEL-NUMBER outside 0x4000..=0x7FFF"))?;
        let XorPeerAddress(peer) = msg
            .get::<XorPeerAddress>()
            .map_err(|_| bad("malformed XOR-PEER-ADDRESS"))?
            .ok_or_else(|| bad("XOR-PEER-ADDRESS missing"))?;
        let limits = self.config.limits;
        let alloc = self.allocation_of(client, auth)?;
        if peer.is_ipv4() != alloc.relay.is_ipv4() {
            return Err(Refusal::Code(
                PEER_ADDRESS_FAMILY_MISMATCH,
                "Peer Address Family Mismatch",
            ));
        }
        match (alloc.channels.get(&channel), alloc.peer_channels.get(&peer)) {
            (Some(c), _) if c.peer != peer => {
                return Err(bad("the channel is bound to another peer"));
            }
            (_, Some(&c)) if c != channel => {
                return Err(bad("the peer is bound to another channel"));
            }
            (None, _) if alloc.channels.len() >= limits.channels_per_allocation => {
                return Err(Refusal::Code(
                    ErrorCode::INSUFFICIENT_CAPACITY,
                    "Insufficient Capacity: too many channels on this allocation",
                ));
            }
            _ => {}
        }
        if !alloc.permissions.contains_key(&peer.ip())
            && alloc.permissions.len() >= limits.permissions_per_allocation
        {
            return Err(Refusal::Code(
                ErrorCode::INSUFFICIENT_CAPACITY,
                "Insufficient Capacity: too many permissions on this allocation",
            ));
        }
        let alloc = self.allocations.get_mut(&client).ok_or(Refusal::Code(
            ErrorCode::ALLOCATION_MISMATCH,
            "Allocation Mismatch: no allocation",
        ))?;
        let expires = now + CHANNEL_LIFETIME;
        alloc.channels.insert(channel, Channel { peer, expires });
        alloc.peer_channels.insert(peer, channel);
        alloc
            .permissions
            .insert(peer.ip(), now + PERMISSION_LIFETIME);
        self.wake_at(now + PERMISSION_LIFETIME);
        self.respond_success(
            client,
            msg.context(),
            Method::CHANNEL_BIND,
            Some(auth),
            |_| Ok(()),
        );
        Ok(())
    }

    fn allocation_of(&self, client: ClientKey, auth: &Auth) -> Result<&Allocation, Refusal> {
        let alloc = self.allocations.get(&client).ok_or(Refusal::Code(
            ErrorCode::ALLOCATION_MISMATCH,
            "Allocation Mismatch: no allocation",
        ))?;
        if alloc.user != auth.user {
            return Err(Refusal::Code(
                ErrorCode::WRONG_CREDENTIALS,
                "Wrong Credentials",
            ));
        }
        Ok(alloc)
    }

    fn delete_allocation(&mut self, client: ClientKey) {
        if let Some(a) = self.allocations.remove(&client) {
            self.by_relay.remove(&a.relay);
            self.ports.remove(&a.relay.port());
            self.stats.deleted += 1;
            self.push_event(TurnServerEvent::ReleaseRelay { relay: a.relay });
        }
        // An Allocate of this client may still wait for its socket: forget it.
        let waiting: Vec<SocketAddr> = self
            .pending
            .iter()
            .filter(|(_, p)| p.client == client)
            .map(|(r, _)| *r)
            .collect();
        for relay in waiting {
            if let Some(p) = self.pending.remove(&relay) {
                self.release_reservation_of(&p);
                self.ports.remove(&relay.port());
            }
        }
    }

    // ----- nonces and rate limits ----------------------------------------------------

    fn nonce(&self, now: Instant) -> String {
        let expiry = (now.saturating_duration_since(self.epoch) + self.config.limits.nonce_lifetime)
            .as_millis() as u64;
        let mac = self.nonce_key.sha1(&[&expiry.to_be_bytes()]);
        let mut s = String::with_capacity(NONCE_COOKIE.len() + 32);
        s.push_str(NONCE_COOKIE);
        for b in expiry.to_be_bytes().iter().chain(&mac[..8]) {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    fn check_nonce(&self, now: Instant, nonce: &str) -> NonceCheck {
        let Some(hex) = nonce.strip_prefix(NONCE_COOKIE) else {
            return NonceCheck::Forged;
        };
        let mut bytes = [0u8; 16];
        if hex.len() != 32 || !hex.is_ascii() {
            return NonceCheck::Forged;
        }
        for (i, b) in bytes.iter_mut().enumerate() {
            match u8::from_str_radix(&hex[2 * i..2 * i + 2], 16) {
                Ok(v) => *b = v,
                Err(_) => return NonceCheck::Forged,
            }
        }
        let (exp, mac) = bytes.split_at(8);
        let expected = self.nonce_key.sha1(&[exp]);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..8], mac)) {
            return NonceCheck::Forged;
        }
        let mut e = [0u8; 8];
        e.copy_from_slice(exp);
        let expiry = Duration::from_millis(u64::from_be_bytes(e));
        if now.saturating_duration_since(self.epoch) >= expiry {
            NonceCheck::Stale
        } else {
            NonceCheck::Valid
        }
    }

    /// One token from `client`'s bucket; false when it is empty (or the limiter's table
    /// is full of active clients).
    fn take_token(&mut self, now: Instant, client: SocketAddr) -> bool {
        let l = self.config.limits;
        let cap = u64::from(l.request_burst) * 1000;
        if !self.buckets.contains_key(&client) && self.buckets.len() >= l.max_clients {
            self.sweep_buckets(now);
            if self.buckets.len() >= l.max_clients {
                return false;
            }
        }
        let b = self.buckets.entry(client).or_insert(Bucket {
            milli: cap,
            last: now,
        });
        let ms = now
            .saturating_duration_since(b.last)
            .as_millis()
            .min(u128::from(u32::MAX)) as u64;
        b.milli = (b.milli + ms * u64::from(l.requests_per_second)).min(cap);
        b.last = now;
        if b.milli < 1000 {
            return false;
        }
        b.milli -= 1000;
        let full_at = now + Duration::from_millis(cap.div_ceil(u64::from(l.requests_per_second)));
        self.wake_at(full_at);
        true
    }

    /// Forgets buckets that have refilled: they hold nothing a new bucket would not.
    fn sweep_buckets(&mut self, now: Instant) {
        let l = self.config.limits;
        let cap = u64::from(l.request_burst) * 1000;
        self.buckets.retain(|_, b| {
            let ms = now
                .saturating_duration_since(b.last)
                .as_millis()
                .min(u128::from(u32::MAX)) as u64;
            b.milli + ms * u64::from(l.requests_per_second) < cap
        });
    }

    // ----- time --------------------------------------------------------------------

    fn wake_at(&mut self, at: Instant) {
        self.next_wake = Some(self.next_wake.map_or(at, |w| w.min(at)));
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Timeout> {
        self.next_wake
            .map(|at| Timeout::new(at, "TURN expiry sweep"))
    }

    /// Expires whatever is due at `now`: allocations, permissions, channels, reservations,
    /// unanswered relay binds, refilled rate-limit buckets.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_wake.is_none_or(|w| w > now) {
            return;
        }
        let mut next: Option<Instant> = None;
        let mut later = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        let dead: Vec<ClientKey> = self
            .allocations
            .iter()
            .filter(|(_, a)| a.expires <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in dead {
            self.delete_allocation(k);
        }
        for a in self.allocations.values_mut() {
            a.permissions.retain(|_, t| *t > now);
            let expired: Vec<ChannelNumber> = a
                .channels
                .iter()
                .filter(|(_, c)| c.expires <= now)
                .map(|(n, _)| *n)
                .collect();
            for n in expired {
                if let Some(c) = a.channels.remove(&n) {
                    a.peer_channels.remove(&c.peer);
                }
            }
            later(a.expires);
            a.permissions.values().for_each(|t| later(*t));
            a.channels.values().for_each(|c| later(c.expires));
        }
        let ports = &mut self.ports;
        self.reservations.retain(|_, (port, t)| {
            let keep = *t > now;
            if !keep {
                ports.remove(port);
            }
            keep
        });
        self.reservations.values().for_each(|(_, t)| later(*t));
        let stale: Vec<SocketAddr> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(r, _)| *r)
            .collect();
        let mut later_pending = Vec::new();
        for relay in stale {
            // The driver never answered: treat as a failed bind.
            later_pending.push(relay);
        }
        self.pending.values().for_each(|p| later(p.deadline));
        self.sweep_buckets(now);
        let l = self.config.limits;
        let refill = Duration::from_millis(
            (u64::from(l.request_burst) * 1000).div_ceil(u64::from(l.requests_per_second)),
        );
        self.buckets.values().for_each(|b| later(b.last + refill));
        self.next_wake = next;
        for relay in later_pending {
            self.relay_bound(now, relay, false);
        }
    }

    // ----- output ------------------------------------------------------------------

    /// The next transmit, from the address it names (the listen address, or a relayed
    /// address); over TCP, on the client's connection.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        if let Some(done) = self.sent.take() {
            if self.spare.len() < 16 {
                self.spare.push(done.bytes);
            }
        }
        let out = self.sent.insert(self.queue.pop_front()?);
        Some(Transmit {
            transport: out.transport,
            source: out.source,
            destination: out.destination,
            contents: &out.bytes,
        })
    }

    /// The next thing the driver must do (bind or close a relay socket).
    pub fn poll_event(&mut self) -> Option<TurnServerEvent> {
        self.events.pop_front()
    }

    fn push_event(&mut self, e: TurnServerEvent) {
        if self.events.len() < 2 * self.config.limits.max_allocations + MAX_EVENTS {
            self.events.push_back(e);
        } else {
            self.stats.dropped += 1;
        }
    }

    fn buffer(&mut self, len: usize) -> Vec<u8> {
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.resize(len, 0);
        buf
    }

    fn enqueue_copy(
        &mut self,
        transport: Transport,
        source: SocketAddr,
        dest: SocketAddr,
        data: &[u8],
    ) {
        if self.queue.len() >= MAX_QUEUE {
            self.stats.dropped += 1;
            return;
        }
        let mut buf = self.buffer(0);
        buf.extend_from_slice(data);
        self.queue.push_back(Outgoing {
            transport,
            source,
            destination: dest,
            bytes: buf,
        });
    }

    fn send_allocate_success(
        &mut self,
        client: ClientKey,
        ctx: &HeaderContext,
        auth: &Auth,
        relay: SocketAddr,
        lifetime: Duration,
        (token, refused_v6): (Option<[u8; 8]>, bool),
    ) {
        let secs = u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX);
        self.respond_success(client, ctx, Method::ALLOCATE, Some(auth), |b| {
            b.add(&XorRelayedAddress(relay))?
                .add(&Lifetime(secs))?
                .add(&XorMappedAddress(client.1))?;
            if let Some(t) = token {
                b.add(&ReservationToken(t))?;
            }
            if refused_v6 {
                // ADDRESS-ERROR-CODE (RFC 8656 §18.11): family, reserved, then as
                // ERROR-CODE.
                let reason = b"Address Family not Supported";
                let mut v = [0u8; 4 + 28];
                v[..4].copy_from_slice(&[0x02, 0, 4, 40]);
                v[4..].copy_from_slice(reason);
                b.add_raw(AttrType::ADDRESS_ERROR_CODE, &v)?;
            }
            Ok(())
        });
    }

    fn respond_success(
        &mut self,
        client: ClientKey,
        ctx: &HeaderContext,
        method: Method,
        auth: Option<&Auth>,
        body: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), StunError>,
    ) {
        self.stats.successes += 1;
        self.respond(
            client,
            ctx,
            MessageType::new(method, Class::Success),
            auth,
            body,
        );
    }

    fn respond_error(
        &mut self,
        client: ClientKey,
        ctx: &HeaderContext,
        method: Method,
        auth: Option<&Auth>,
        refusal: &Refusal,
    ) {
        self.stats.errors += 1;
        let typ = MessageType::new(method, Class::Error);
        match refusal {
            Refusal::Code(code, reason) => self.respond(client, ctx, typ, auth, |b| {
                b.add(&ErrorCode::new(*code, reason)?)?;
                Ok(())
            }),
            Refusal::Unknown(types) => self.respond(client, ctx, typ, auth, |b| {
                b.add(&ErrorCode::new(
                    ErrorCode::UNKNOWN_ATTRIBUTE,
                    "Unknown Attribute",
                )?)?
                .add(&UnknownAttributes::new(types)?)?;
                Ok(())
            }),
            Refusal::Challenge(code, reason) => {
                let nonce = self.nonce(self.last_now);
                let realm = self.config.realm.clone();
                let offered = offered_algorithms();
                self.respond(client, ctx, typ, None, |b| {
                    b.add(&ErrorCode::new(*code, reason)?)?
                        .add(&Realm::new(&realm)?)?
                        .add(&Nonce::new(&nonce)?)?
                        .add(&PasswordAlgorithms::new(&offered)?)?;
                    Ok(())
                })
            }
        }
    }

    fn respond(
        &mut self,
        client: ClientKey,
        ctx: &HeaderContext,
        typ: MessageType,
        auth: Option<&Auth>,
        body: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), StunError>,
    ) {
        if self.queue.len() >= MAX_QUEUE {
            self.stats.dropped += 1;
            return;
        }
        let mut buf = self.buffer(MAX_RESPONSE);
        let software = self.config.software.clone();
        let len = (|| -> Result<usize, StunError> {
            let mut b = MessageBuilder::with_cookie(&mut buf, typ, ctx.cookie, ctx.transaction_id)?;
            body(&mut b)?;
            if let Some(s) = &software {
                b.add(&Software::new(s)?)?;
            }
            if let Some(a) = auth {
                if a.sha256 {
                    b.add_integrity_sha256(&a.key)?;
                } else {
                    b.add_integrity(&a.key)?;
                }
            }
            b.add_fingerprint()?;
            Ok(b.finish().len())
        })();
        let Ok(len) = len else {
            self.stats.dropped += 1;
            return;
        };
        buf.truncate(len);
        self.queue.push_back(Outgoing {
            transport: client.0,
            source: self.config.listen,
            destination: client.1,
            bytes: buf,
        });
    }
}

enum NonceCheck {
    Valid,
    Stale,
    Forged,
}

fn offered_algorithms() -> [PasswordAlgorithm<'static>; 2] {
    [
        PasswordAlgorithm::new(PasswordAlgorithmKind::Md5),
        PasswordAlgorithm::new(PasswordAlgorithmKind::Sha256),
    ]
}

/// The length of the next frame in a TURN-over-TCP byte stream: a STUN message or a
/// padded ChannelData message (RFC 8656 §12.5). `None` while the header is incomplete;
/// `Some(Err(()))` when the bytes are neither (the connection should be closed).
pub fn stream_frame_len(buf: &[u8]) -> Option<Result<usize, ()>> {
    let first = *buf.first()?;
    if buf.len() < CHANNEL_DATA_HEADER {
        return None;
    }
    match first >> 6 {
        0 => {
            if buf.len() < crate::stun::HEADER_LEN {
                return None;
            }
            Some(message_len(buf).ok_or(()))
        }
        // Any 01 prefix: RFC 5766's channels reach 0x7FFF.
        1 => {
            let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
            Some(Ok((CHANNEL_DATA_HEADER + len + 3) & !3))
        }
        _ => Some(Err(())),
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
