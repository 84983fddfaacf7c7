//! The TURN client (RFC 8656, over UDP or TCP to the server per RFC 8656 §3.1 and
//! RFC 6062's framing), sans-IO.
//!
//! One [`TurnClient`] owns one allocation on one server. Commands
//! ([`allocate`](TurnClient::allocate), [`create_permission`](TurnClient::create_permission),
//! [`bind_channel`](TurnClient::bind_channel), [`send_to`](TurnClient::send_to),
//! [`close`](TurnClient::close)) queue requests; the caller drives it like every core
//! machine: bytes from the server in ([`handle_input`](TurnClient::handle_input)), time in
//! ([`handle_timeout`](TurnClient::handle_timeout)), transmits, events and deadlines out.
//!
//! * Long-term credentials (RFC 8489 §9.2): the first Allocate goes out without them;
//!   the 401 names REALM and NONCE, and the retry is authenticated. A second 401 is
//!   [`TurnClientError::WrongCredentials`]. 438 (stale nonce) takes the new NONCE and retries
//!   once. When the 401 offers PASSWORD-ALGORITHMS (RFC 8489 §9.2.4), SHA-256 is chosen
//!   if offered and MESSAGE-INTEGRITY-SHA256 replaces MESSAGE-INTEGRITY.
//! * Every request is one [`ClientTransaction`]: RFC 8489 §6.2.1 retransmissions over
//!   UDP, one send and a 39.5 s timeout over TCP. A duplicated response finds no
//!   transaction and is ignored, so retransmissions are harmless.
//! * Timers, all from `now`: the allocation is refreshed 60 s before it expires (at half
//!   its lifetime when that is under 2 minutes); permissions every 4 minutes (they last 5,
//!   RFC 8656 §9); channel bindings every 9 minutes (they last 10, §12).
//! * Data goes as ChannelData once a channel is bound (§12.4; padded to 4 bytes over
//!   TCP), as Send indications before (§10).
//! * A refused request, a server that stops answering and an allocation that runs out
//!   are events ([`TurnClientEvent::Error`], [`TurnClientEvent::ServerUnreachable`],
//!   [`TurnClientEvent::Expired`]), never a silent stall.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::attributes::{
    AddressFamily, ChannelNumber, Data, Lifetime, RequestedAddressFamily, RequestedTransport,
    TransportProtocol,
};
use super::channel_data::{CHANNEL_DATA_HEADER, ChannelData, channel_data_len};
use crate::rng::Rng;
use crate::stun::{
    AttrType, Class, ClientTransaction, ErrorCode, HEADER_LEN, IntegrityKey, Message,
    MessageBuilder, MessageType, Method, Nonce, PasswordAlgorithm, PasswordAlgorithmKind,
    PasswordAlgorithms, Realm, StunError, TransactionConfig, TransactionEvent, TransactionId,
    Username, XorMappedAddress, XorPeerAddress, XorRelayedAddress, message_len,
};
use crate::time::Timeout;
use crate::transmit::{Transmit, Transport};

/// How long a permission lasts on the server (RFC 8656 §9).
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// How long a channel binding lasts on the server (RFC 8656 §12).
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// Refresh a permission this long after it was installed (a minute of margin).
pub const PERMISSION_REFRESH: Duration = Duration::from_secs(240);
/// Refresh a channel binding this long after it was made (a minute of margin).
pub const CHANNEL_REFRESH: Duration = Duration::from_secs(540);
/// Largest number of queued outgoing data messages; beyond it `send_to` refuses.
pub const MAX_QUEUED_SENDS: usize = 256;
/// Largest number of received data events held for the caller; beyond it data is dropped
/// (and counted in [`TurnClientStats::data_dropped`]).
pub const MAX_QUEUED_DATA: usize = 1024;
/// Largest number of peers with permissions or channels.
pub const MAX_PEERS: usize = 1024;
/// Largest application payload in one datagram to a peer (ChannelData's 16-bit length,
/// minus room for a Send indication's headers).
pub const MAX_PAYLOAD: usize = 65_535 - 256;
/// Largest frame on a TCP connection to the server: a STUN message of the largest length
/// (its header plus 65 532 bytes), or a padded ChannelData message (4 + 65 535 + 1).
const MAX_STREAM_FRAME: usize = HEADER_LEN + 65_532;

/// What the client needs to know up front.
#[derive(Debug, Clone)]
pub struct TurnClientConfig {
    /// The TURN server's address (IPv4 or IPv6).
    pub server: SocketAddr,
    /// UDP datagrams or a TCP stream to the server.
    pub transport: Transport,
    /// The local address transmits leave from (the UDP socket's address or the TCP
    /// stream's local address).
    pub local: SocketAddr,
    /// Long-term credential user name.
    pub username: String,
    /// Long-term credential password.
    pub password: String,
    /// The relayed address's family: IPv4 unless asked (REQUESTED-ADDRESS-FAMILY,
    /// RFC 8656 §7.1).
    pub relay_family: AddressFamily,
    /// The allocation lifetime to ask for; the server may grant less (RFC 8656 §7.2).
    pub lifetime: Duration,
    /// Retransmission schedule of every request.
    pub transaction: TransactionConfig,
    /// Over UDP, send a STUN Binding indication to the server after this long without
    /// sending anything, so that the NAT in front of us keeps our mapping: a NAT that
    /// moves us to a new port orphans the allocation (the server answers 437). `None`
    /// turns it off (TCP needs none: the connection's own mapping lives for hours).
    pub keepalive: Option<Duration>,
}

/// The default keepalive interval over UDP: RFC 8445 §11's 15 s, well inside the
/// shortest UDP mapping timeouts seen in practice (30 s).
pub const KEEPALIVE: Duration = Duration::from_secs(15);

impl TurnClientConfig {
    /// A UDP client of `server` from `local` with `username`/`password`, asking for an
    /// IPv4 relay for 10 minutes, with RFC 8489's default retransmissions.
    pub fn udp(server: SocketAddr, local: SocketAddr, username: &str, password: &str) -> Self {
        TurnClientConfig {
            server,
            transport: Transport::Udp,
            local,
            username: username.to_string(),
            password: password.to_string(),
            relay_family: AddressFamily::V4,
            lifetime: Duration::from_secs(600),
            transaction: TransactionConfig::default(),
            keepalive: Some(KEEPALIVE),
        }
    }

    /// The same over a TCP stream from `local` to `server`.
    pub fn tcp(server: SocketAddr, local: SocketAddr, username: &str, password: &str) -> Self {
        TurnClientConfig {
            transport: Transport::Tcp,
            keepalive: None,
            ..Self::udp(server, local, username, password)
        }
    }
}

/// Which request a failure concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// Allocate (RFC 8656 §7).
    Allocate,
    /// Refresh (§8); lifetime 0 closes.
    Refresh,
    /// CreatePermission (§9).
    CreatePermission,
    /// ChannelBind (§11).
    ChannelBind,
}

impl std::fmt::Display for RequestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RequestKind::Allocate => "Allocate",
            RequestKind::Refresh => "Refresh",
            RequestKind::CreatePermission => "CreatePermission",
            RequestKind::ChannelBind => "ChannelBind",
        })
    }
}

/// Why the server refused, or why the client gave up on, a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnClientError {
    /// The server refused our credentials after we answered its challenge.
    #[error(
        "wrong username or password for realm \"{realm}\" (user \"{username}\"): check the TURN credentials configured for this server"
    )]
    WrongCredentials {
        /// The user name sent.
        username: String,
        /// The server's realm.
        realm: String,
    },
    /// A 401 without the REALM and NONCE needed to answer it.
    #[error(
        "the TURN server demands authentication for {request} but sent no REALM/NONCE: it is not a working RFC 8656 server"
    )]
    BadChallenge {
        /// The request.
        request: RequestKind,
    },
    /// The server kept saying the nonce is stale.
    #[error(
        "the TURN server rejected a fresh nonce for {request} again (438 twice): its clock or nonce handling is broken; try again later"
    )]
    StaleNonceAgain {
        /// The request.
        request: RequestKind,
    },
    /// Any other error response.
    #[error("{request} refused by the TURN server: {code} {reason}{}", hint(*code))]
    Rejected {
        /// The request.
        request: RequestKind,
        /// The error code.
        code: u16,
        /// The server's reason phrase.
        reason: String,
    },
    /// A success response without what it must carry.
    #[error("malformed {request} response from the TURN server: {reason}")]
    BadResponse {
        /// The request.
        request: RequestKind,
        /// What was wrong.
        reason: String,
    },
    /// The TCP connection to the server ended; the server deletes an allocation whose
    /// connection closes (RFC 8656 §3.1, §7.2).
    #[error(
        "the TCP connection to the TURN server {server} closed, and the allocation with it: reconnect and allocate again"
    )]
    ConnectionClosed {
        /// The server.
        server: SocketAddr,
    },
    /// The TCP byte stream from the server holds neither STUN nor ChannelData.
    #[error(
        "the TCP stream from the TURN server is corrupt ({reason}): reconnect and allocate again"
    )]
    StreamCorrupt {
        /// What was wrong.
        reason: String,
    },
}

impl TurnClientError {
    /// The STUN error code, for errors that carry one (401 for wrong credentials).
    pub fn code(&self) -> Option<u16> {
        match self {
            TurnClientError::WrongCredentials { .. } => Some(ErrorCode::UNAUTHENTICATED),
            TurnClientError::StaleNonceAgain { .. } => Some(ErrorCode::STALE_NONCE),
            TurnClientError::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }
}

fn hint(code: u16) -> &'static str {
    match code {
        403 => " (the server forbids this peer address or request)",
        437 => {
            " (allocation mismatch: the allocation is gone or another exists on this 5-tuple; allocate again from a new port)"
        }
        440 => " (the server cannot relay this address family)",
        441 => " (wrong credentials for this allocation)",
        442 => " (the server does not relay this transport)",
        486 => " (the user's allocation quota is used up: close other allocations)",
        508 => " (the server is out of relay ports or channels: try another server)",
        _ => "",
    }
}

/// A command the client refused at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The command needs an allocation; there is none (yet, or any more).
    #[error("no TURN allocation: call allocate() and wait for Allocated first")]
    NotAllocated,
    /// allocate() twice.
    #[error("an allocation already exists or is being made on this client")]
    AlreadyAllocating,
    /// The client is closing or closed.
    #[error("the TURN client is closed; create a new one to allocate again")]
    Closed,
    /// Too many sends waiting: drain `poll_transmit`.
    #[error("{MAX_QUEUED_SENDS} sends are waiting: drain poll_transmit before sending more")]
    QueueFull,
    /// Every channel number is in use, or too many peers.
    #[error("no more peers or channel numbers on this allocation (limit {MAX_PEERS})")]
    TooManyPeers,
    /// The payload does not fit one relayed datagram.
    #[error("payload of {0} bytes exceeds the {MAX_PAYLOAD}-byte limit of one relayed datagram")]
    TooLarge(usize),
    /// The peer's family differs from the relayed address's.
    #[error("peer {peer} is not of the relayed address's family; allocate with the peer's family")]
    WrongFamily {
        /// The peer.
        peer: SocketAddr,
    },
}

/// What the client reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnClientEvent {
    /// The allocation exists (RFC 8656 §7.3).
    Allocated {
        /// The relayed transport address peers send to.
        relayed: SocketAddr,
        /// Our address as the server saw it (XOR-MAPPED-ADDRESS), if sent.
        mapped: Option<SocketAddr>,
        /// The lifetime the server granted.
        lifetime: Duration,
    },
    /// A Refresh kept the allocation alive.
    Refreshed {
        /// The lifetime the server granted.
        lifetime: Duration,
    },
    /// A permission for this peer IP is installed (or refreshed: only the first is
    /// reported).
    PermissionCreated {
        /// The peer IP.
        peer: IpAddr,
    },
    /// A channel to this peer is bound; data now goes as ChannelData.
    ChannelBound {
        /// The peer.
        peer: SocketAddr,
        /// The channel.
        channel: ChannelNumber,
    },
    /// Data from a peer (Data indication or ChannelData).
    Data {
        /// The peer.
        peer: SocketAddr,
        /// The payload.
        bytes: Vec<u8>,
    },
    /// A request failed; the allocation may still be alive (see the request).
    Error(TurnClientError),
    /// A request went unanswered through all its retransmissions.
    ServerUnreachable {
        /// The request.
        request: RequestKind,
        /// The server.
        server: SocketAddr,
    },
    /// The allocation's lifetime ran out without a successful refresh, or the server
    /// said it is gone (437 to a Refresh). Allocate again with a new client.
    Expired,
    /// close() finished (the server acknowledged lifetime 0, or stopped answering).
    Closed,
}

/// Counters, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TurnClientStats {
    /// Requests started (retries after 401/438 count again; retransmissions do not).
    pub requests: u64,
    /// Send indications sent.
    pub send_indications: u64,
    /// ChannelData messages sent.
    pub channel_data_sent: u64,
    /// Data indications received.
    pub data_indications: u64,
    /// ChannelData messages received.
    pub channel_data_received: u64,
    /// Received data dropped because the caller did not drain events.
    pub data_dropped: u64,
    /// Inputs ignored (wrong source, unknown transaction, duplicates, malformed).
    pub ignored: u64,
    /// Allocation refreshes that succeeded.
    pub refreshes: u64,
    /// Keepalives (Binding indications) sent.
    pub keepalives: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Allocate,
    Refresh {
        lifetime: u32,
    },
    Permission(IpAddr),
    Bind {
        channel: ChannelNumber,
        peer: SocketAddr,
    },
}

impl Op {
    fn kind(self) -> RequestKind {
        match self {
            Op::Allocate => RequestKind::Allocate,
            Op::Refresh { .. } => RequestKind::Refresh,
            Op::Permission(_) => RequestKind::CreatePermission,
            Op::Bind { .. } => RequestKind::ChannelBind,
        }
    }
}

#[derive(Debug)]
struct Pending {
    op: Op,
    tx: ClientTransaction,
    /// Whether this request carried credentials (a 401 to it is final).
    authenticated: bool,
    /// Whether this request is already the retry after a 438.
    stale_retried: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AllocState {
    Idle,
    Allocating,
    Allocated {
        relayed: SocketAddr,
        expires: Instant,
        refresh_at: Instant,
    },
    Closing,
    Done,
}

#[derive(Debug, Clone, Copy)]
struct Permission {
    /// Installed at least once.
    active: bool,
    /// A CreatePermission is in flight.
    pending: bool,
    refresh_at: Option<Instant>,
    expires: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Channel {
    number: ChannelNumber,
    bound: bool,
    pending: bool,
    refresh_at: Option<Instant>,
    expires: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Credentials {
    realm: String,
    nonce: String,
    key: IntegrityKey,
    /// PASSWORD-ALGORITHMS as the server sent it, echoed in every request (RFC 8489 §9.2.4),
    /// with the algorithm chosen; `None` for a classic (RFC 5389) server.
    algorithms: Option<(Vec<u8>, PasswordAlgorithmKind)>,
}

/// The TURN client state machine; see the module docs.
#[derive(Debug)]
pub struct TurnClient {
    config: TurnClientConfig,
    rng: Rng,
    state: AllocState,
    creds: Option<Credentials>,
    pending: BTreeMap<TransactionId, Pending>,
    permissions: BTreeMap<IpAddr, Permission>,
    channels: BTreeMap<SocketAddr, Channel>,
    by_number: BTreeMap<ChannelNumber, SocketAddr>,
    next_channel: u16,
    sends: VecDeque<Vec<u8>>,
    current: Vec<u8>,
    events: VecDeque<TurnClientEvent>,
    data_events: usize,
    rx: Vec<u8>,
    last_sent: Option<Instant>,
    stats: TurnClientStats,
}

impl TurnClient {
    /// A client that has sent nothing yet; call [`allocate`](Self::allocate).
    pub fn new(config: TurnClientConfig, rng: Rng) -> Self {
        TurnClient {
            config,
            rng,
            state: AllocState::Idle,
            creds: None,
            pending: BTreeMap::new(),
            permissions: BTreeMap::new(),
            channels: BTreeMap::new(),
            by_number: BTreeMap::new(),
            next_channel: ChannelNumber::MIN,
            sends: VecDeque::new(),
            current: Vec::new(),
            events: VecDeque::new(),
            data_events: 0,
            rx: Vec::new(),
            last_sent: None,
            stats: TurnClientStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TurnClientConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> TurnClientStats {
        self.stats
    }

    /// The relayed address, once allocated.
    pub fn relayed(&self) -> Option<SocketAddr> {
        match self.state {
            AllocState::Allocated { relayed, .. } => Some(relayed),
            _ => None,
        }
    }

    /// When the allocation expires unless refreshed.
    pub fn expires(&self) -> Option<Instant> {
        match self.state {
            AllocState::Allocated { expires, .. } => Some(expires),
            _ => None,
        }
    }

    /// The channel bound (and confirmed) to `peer`.
    pub fn channel(&self, peer: SocketAddr) -> Option<ChannelNumber> {
        self.channels
            .get(&peer)
            .filter(|c| c.bound)
            .map(|c| c.number)
    }

    /// Whether a permission for `peer` is installed.
    pub fn has_permission(&self, peer: IpAddr) -> bool {
        self.permissions.get(&peer).is_some_and(|p| p.active)
    }

    /// Whether the client is closed or its allocation expired (nothing more will happen).
    pub fn is_done(&self) -> bool {
        self.state == AllocState::Done
    }

    /// Starts the allocation (RFC 8656 §7.1): an Allocate without credentials, expecting
    /// the server's 401 challenge.
    pub fn allocate(&mut self, now: Instant) -> Result<(), CommandError> {
        match self.state {
            AllocState::Idle => {}
            AllocState::Closing | AllocState::Done => return Err(CommandError::Closed),
            _ => return Err(CommandError::AlreadyAllocating),
        }
        self.state = AllocState::Allocating;
        self.start(now, Op::Allocate, false);
        Ok(())
    }

    fn relayed_or_err(&self) -> Result<SocketAddr, CommandError> {
        match self.state {
            AllocState::Allocated { relayed, .. } => Ok(relayed),
            AllocState::Closing | AllocState::Done => Err(CommandError::Closed),
            _ => Err(CommandError::NotAllocated),
        }
    }

    /// Installs a permission for `peer` (RFC 8656 §9) and keeps it refreshed; data from
    /// the peer reaches us only once it is installed. Idempotent.
    pub fn create_permission(&mut self, now: Instant, peer: IpAddr) -> Result<(), CommandError> {
        let relayed = self.relayed_or_err()?;
        if relayed.is_ipv4() != peer.is_ipv4() {
            return Err(CommandError::WrongFamily {
                peer: SocketAddr::new(peer, 0),
            });
        }
        if let Some(p) = self.permissions.get(&peer) {
            if p.active || p.pending {
                return Ok(());
            }
        } else if self.permissions.len() >= MAX_PEERS {
            return Err(CommandError::TooManyPeers);
        }
        self.permissions.insert(
            peer,
            Permission {
                active: false,
                pending: true,
                refresh_at: None,
                expires: None,
            },
        );
        self.start(now, Op::Permission(peer), false);
        Ok(())
    }

    /// Binds a channel to `peer` (RFC 8656 §11), which also installs a permission for its
    /// IP, and keeps it refreshed. Returns the channel number; data goes over it once
    /// [`TurnClientEvent::ChannelBound`] is reported. Idempotent.
    pub fn bind_channel(
        &mut self,
        now: Instant,
        peer: SocketAddr,
    ) -> Result<ChannelNumber, CommandError> {
        let relayed = self.relayed_or_err()?;
        if relayed.is_ipv4() != peer.is_ipv4() {
            return Err(CommandError::WrongFamily { peer });
        }
        if let Some(c) = self.channels.get(&peer) {
            return Ok(c.number);
        }
        if self.next_channel > ChannelNumber::MAX || self.channels.len() >= MAX_PEERS {
            return Err(CommandError::TooManyPeers);
        }
        let number = ChannelNumber::new(self.next_channel).ok_or(CommandError::TooManyPeers)?;
        self.next_channel += 1;
        self.channels.insert(
            peer,
            Channel {
                number,
                bound: false,
                pending: true,
                refresh_at: None,
                expires: None,
            },
        );
        self.by_number.insert(number, peer);
        self.start(
            now,
            Op::Bind {
                channel: number,
                peer,
            },
            false,
        );
        Ok(number)
    }

    /// Sends `bytes` to `peer` through the relay: as ChannelData when a channel to it is
    /// bound, otherwise as a Send indication (RFC 8656 §10). Creates the permission for
    /// the peer's IP if there is none (data sent before it is installed is dropped by the
    /// server, as over any lossy path).
    pub fn send_to(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), CommandError> {
        self.relayed_or_err()?;
        if bytes.len() > MAX_PAYLOAD {
            return Err(CommandError::TooLarge(bytes.len()));
        }
        if self.sends.len() >= MAX_QUEUED_SENDS {
            return Err(CommandError::QueueFull);
        }
        if !self.permissions.contains_key(&peer.ip()) && !self.channels.contains_key(&peer) {
            self.create_permission(now, peer.ip())?;
        }
        let stream = self.config.transport == Transport::Tcp;
        let mut out = vec![0u8; CHANNEL_DATA_HEADER + bytes.len() + 3];
        if let Some(channel) = self.channel(peer) {
            match ChannelData::emit(channel, bytes, stream, &mut out) {
                Ok(n) => out.truncate(n),
                Err(_) => return Err(CommandError::TooLarge(bytes.len())),
            }
            self.stats.channel_data_sent += 1;
        } else {
            out.resize(bytes.len() + 128, 0);
            let id = TransactionId::random(&mut self.rng);
            let n = match build_send(&mut out, id, peer, bytes) {
                Ok(n) => n,
                Err(_) => return Err(CommandError::TooLarge(bytes.len())),
            };
            out.truncate(n);
            self.stats.send_indications += 1;
        }
        self.sends.push_back(out);
        self.last_sent = Some(now);
        Ok(())
    }

    /// Releases the allocation: a Refresh with lifetime 0 (RFC 8656 §8). Reports
    /// [`TurnClientEvent::Closed`] when the server answers (or stops answering). Without an
    /// allocation the client closes at once.
    pub fn close(&mut self, now: Instant) {
        if matches!(self.state, AllocState::Closing | AllocState::Done) {
            // Already closing: the Refresh in flight must not be cancelled.
            return;
        }
        let had = matches!(self.state, AllocState::Allocated { .. });
        for (_, mut p) in std::mem::take(&mut self.pending) {
            p.tx.cancel();
        }
        self.sends.clear();
        self.permissions.clear();
        self.channels.clear();
        self.by_number.clear();
        match self.state {
            AllocState::Closing | AllocState::Done => {}
            _ if had => {
                self.state = AllocState::Closing;
                self.start(now, Op::Refresh { lifetime: 0 }, false);
            }
            _ => {
                self.state = AllocState::Done;
                self.events.push_back(TurnClientEvent::Closed);
            }
        }
    }

    /// Starts a request for `op` (a fresh transaction ID), with credentials when known.
    fn start(&mut self, now: Instant, op: Op, stale_retried: bool) {
        let id = TransactionId::random(&mut self.rng);
        let (bytes, authenticated) = match self.build_request(id, op) {
            Ok(b) => b,
            Err(e) => {
                // Only an over-long user name or nonce gets here.
                self.fail(
                    op,
                    TurnClientError::BadResponse {
                        request: op.kind(),
                        reason: format!("cannot encode the request: {e}"),
                    },
                );
                return;
            }
        };
        let tx = match ClientTransaction::new(
            now,
            bytes,
            self.config.transport,
            self.config.local,
            self.config.server,
            self.config.transaction,
        ) {
            Ok(tx) => tx,
            Err(e) => {
                self.fail(
                    op,
                    TurnClientError::BadResponse {
                        request: op.kind(),
                        reason: e.to_string(),
                    },
                );
                return;
            }
        };
        let mut tx = match &self.creds {
            Some(c) => tx.verify_responses_with(c.key.clone()),
            None => tx,
        };
        tx.handle_timeout(now);
        self.last_sent = Some(now);
        self.stats.requests += 1;
        self.pending.insert(
            id,
            Pending {
                op,
                tx,
                authenticated,
                stale_retried,
            },
        );
    }

    fn build_request(&self, id: TransactionId, op: Op) -> Result<(Vec<u8>, bool), StunError> {
        let method = match op {
            Op::Allocate => Method::ALLOCATE,
            Op::Refresh { .. } => Method::REFRESH,
            Op::Permission(_) => Method::CREATE_PERMISSION,
            Op::Bind { .. } => Method::CHANNEL_BIND,
        };
        let mut buf = vec![0u8; 2048];
        let mut b = MessageBuilder::new(&mut buf, MessageType::new(method, Class::Request), id)?;
        match op {
            Op::Allocate => {
                b.add(&RequestedTransport(TransportProtocol::Udp))?;
                if self.config.relay_family == AddressFamily::V6 {
                    b.add(&RequestedAddressFamily(AddressFamily::V6))?;
                }
                let secs = u32::try_from(self.config.lifetime.as_secs()).unwrap_or(u32::MAX);
                b.add(&Lifetime(secs))?;
            }
            Op::Refresh { lifetime } => {
                b.add(&Lifetime(lifetime))?;
            }
            Op::Permission(ip) => {
                b.add(&XorPeerAddress(SocketAddr::new(ip, 0)))?;
            }
            Op::Bind { channel, peer } => {
                b.add(&channel)?;
                b.add(&XorPeerAddress(peer))?;
            }
        }
        let authenticated = if let Some(c) = &self.creds {
            b.add(&Username::new(&self.config.username)?)?;
            b.add(&Realm::new(&c.realm)?)?;
            b.add(&Nonce::new(&c.nonce)?)?;
            if let Some((algorithms, kind)) = &c.algorithms {
                b.add_raw(AttrType::PASSWORD_ALGORITHMS, algorithms)?;
                b.add(&PasswordAlgorithm::new(*kind))?;
                b.add_integrity_sha256(&c.key)?;
            } else {
                b.add_integrity(&c.key)?;
            }
            true
        } else {
            false
        };
        b.add_fingerprint()?;
        let n = b.len();
        buf.truncate(n);
        Ok((buf, authenticated))
    }

    /// Bytes from the server: one UDP datagram (from `source`, which must be the
    /// server), or the next chunk of the TCP stream.
    pub fn handle_input(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        if source != self.config.server {
            self.stats.ignored += 1;
            return;
        }
        match self.config.transport {
            Transport::Udp => self.handle_frame(now, source, destination, bytes),
            Transport::Tcp => self.handle_stream(now, source, destination, bytes),
        }
    }

    /// The TCP connection to the server closed or failed (the driver saw end of stream or
    /// an error). The allocation ends with it: [`TurnClientEvent::Error`]
    /// ([`TurnClientError::ConnectionClosed`]) then [`TurnClientEvent::Expired`]; while
    /// closing, [`TurnClientEvent::Closed`]. Nothing over UDP.
    pub fn handle_connection_closed(&mut self, _now: Instant) {
        if self.config.transport != Transport::Tcp {
            return;
        }
        let error = TurnClientEvent::Error(TurnClientError::ConnectionClosed {
            server: self.config.server,
        });
        match self.state {
            AllocState::Done => {}
            AllocState::Closing => {
                for (_, mut p) in std::mem::take(&mut self.pending) {
                    p.tx.cancel();
                }
                self.finish_close();
            }
            AllocState::Allocated { .. } => {
                self.events.push_back(error);
                self.expire();
            }
            AllocState::Idle | AllocState::Allocating => {
                for (_, mut p) in std::mem::take(&mut self.pending) {
                    p.tx.cancel();
                }
                self.events.push_back(error);
                self.state = AllocState::Done;
            }
        }
    }

    /// Cuts the TCP stream into STUN messages and ChannelData frames (RFC 6062 §4,
    /// RFC 8656 §12.5). The buffer never holds more than one partial frame.
    fn handle_stream(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        if self.state == AllocState::Done {
            return;
        }
        let mut rx = std::mem::take(&mut self.rx);
        rx.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            let rest = &rx[at..];
            let Some(&first) = rest.first() else { break };
            let len = match first >> 6 {
                0b00 if rest.len() >= 4 => {
                    let declared = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
                    if declared % 4 != 0 {
                        self.corrupt("a STUN length that is not a multiple of 4");
                        return;
                    }
                    if rest.len() < 20 {
                        break;
                    }
                    message_len(rest)
                }
                0b01 if rest.len() >= 4 => channel_data_len(rest),
                0b00 | 0b01 => break,
                _ => {
                    self.corrupt("a frame that is neither STUN nor ChannelData");
                    return;
                }
            };
            let Some(len) = len else {
                self.corrupt("a ChannelData header with a channel outside 0x4000..=0x4FFF");
                return;
            };
            if len > MAX_STREAM_FRAME {
                self.corrupt("an over-long frame");
                return;
            }
            if rest.len() < len {
                break;
            }
            self.handle_frame(now, source, destination, &rest[..len]);
            at += len;
        }
        rx.drain(..at);
        self.rx = rx;
    }

    fn corrupt(&mut self, reason: &str) {
        self.rx.clear();
        self.events
            .push_back(TurnClientEvent::Error(TurnClientError::StreamCorrupt {
                reason: reason.to_string(),
            }));
        self.expire();
    }

    fn handle_frame(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        match bytes.first().map(|b| b >> 6) {
            Some(0b01) => self.handle_channel_data(bytes),
            Some(0b00) => self.handle_stun(now, source, destination, bytes),
            _ => self.stats.ignored += 1,
        }
    }

    fn handle_channel_data(&mut self, bytes: &[u8]) {
        let Ok(cd) = ChannelData::parse(bytes) else {
            self.stats.ignored += 1;
            return;
        };
        let Some(&peer) = self.by_number.get(&cd.channel()) else {
            self.stats.ignored += 1;
            return;
        };
        self.stats.channel_data_received += 1;
        self.push_data(peer, cd.data());
    }

    fn push_data(&mut self, peer: SocketAddr, bytes: &[u8]) {
        if self.data_events >= MAX_QUEUED_DATA {
            self.stats.data_dropped += 1;
            return;
        }
        self.data_events += 1;
        self.events.push_back(TurnClientEvent::Data {
            peer,
            bytes: bytes.to_vec(),
        });
    }

    fn handle_stun(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        let Ok(msg) = Message::parse(bytes) else {
            self.stats.ignored += 1;
            return;
        };
        let typ = msg.message_type();
        if typ.class == Class::Indication {
            if typ.method == Method::DATA {
                match (msg.get::<XorPeerAddress>(), msg.get::<Data>()) {
                    (Ok(Some(XorPeerAddress(peer))), Ok(Some(Data(data)))) => {
                        self.stats.data_indications += 1;
                        self.push_data(peer, data);
                    }
                    _ => self.stats.ignored += 1,
                }
            } else {
                self.stats.ignored += 1;
            }
            return;
        }
        let id = msg.transaction_id();
        let Some(p) = self.pending.get_mut(&id) else {
            // A duplicate of a response already taken, or not ours.
            self.stats.ignored += 1;
            return;
        };
        if p.tx.handle_input(now, source, destination, bytes).is_err() {
            self.stats.ignored += 1;
            return;
        }
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        let mut tx = p.tx;
        if let Some(TransactionEvent::Response { bytes, .. }) = tx.poll_event() {
            self.on_response(now, p.op, p.authenticated, p.stale_retried, &bytes);
        }
    }

    fn on_response(
        &mut self,
        now: Instant,
        op: Op,
        authenticated: bool,
        stale_retried: bool,
        bytes: &[u8],
    ) {
        let Ok(msg) = Message::parse(bytes) else {
            return;
        };
        if msg.message_type().class == Class::Success {
            self.on_success(now, op, &msg);
            return;
        }
        let (code, reason) = match msg.get::<ErrorCode>() {
            Ok(Some(e)) => (e.code(), e.reason().to_string()),
            _ => (500, "error response without ERROR-CODE".to_string()),
        };
        let request = op.kind();
        match code {
            ErrorCode::UNAUTHENTICATED
                if !authenticated || (!stale_retried && self.challenge_is_new(&msg)) =>
            {
                match self.take_challenge(&msg) {
                    // A new realm on an authenticated request is answered once only.
                    Ok(()) => self.start(now, op, stale_retried || authenticated),
                    Err(e) => self.fail(op, e),
                }
            }
            ErrorCode::UNAUTHENTICATED => {
                let realm = self
                    .creds
                    .as_ref()
                    .map(|c| c.realm.clone())
                    .unwrap_or_default();
                self.fail(
                    op,
                    TurnClientError::WrongCredentials {
                        username: self.config.username.clone(),
                        realm,
                    },
                );
            }
            ErrorCode::STALE_NONCE if !stale_retried => {
                match (msg.get::<Nonce>(), self.creds.as_mut()) {
                    (Ok(Some(n)), Some(c)) => {
                        c.nonce = n.as_str().to_string();
                        if let Ok(Some(r)) = msg.get::<Realm>() {
                            c.realm = r.as_str().to_string();
                        }
                        self.start(now, op, true);
                    }
                    _ => self.fail(op, TurnClientError::BadChallenge { request }),
                }
            }
            ErrorCode::STALE_NONCE => self.fail(op, TurnClientError::StaleNonceAgain { request }),
            ErrorCode::ALLOCATION_MISMATCH if op != Op::Allocate => {
                if self.state != AllocState::Closing {
                    self.events
                        .push_back(TurnClientEvent::Error(TurnClientError::Rejected {
                            request,
                            code,
                            reason,
                        }));
                }
                // The allocation is gone (RFC 8656 §8: 437 to a Refresh; to the other
                // requests too, e.g. after a NAT rebinding moved us to a new 5-tuple).
                if self.state == AllocState::Closing {
                    self.finish_close();
                } else {
                    self.expire();
                }
            }
            _ => self.fail(
                op,
                TurnClientError::Rejected {
                    request,
                    code,
                    reason,
                },
            ),
        }
    }

    /// Whether a 401 to an authenticated request names a realm other than ours (a server
    /// that restarted under a new realm): that deserves one more try, not a verdict.
    fn challenge_is_new(&self, msg: &Message<'_>) -> bool {
        match (&self.creds, msg.get::<Realm>()) {
            (Some(c), Ok(Some(r))) => r.as_str() != c.realm,
            _ => false,
        }
    }

    /// Takes REALM, NONCE and PASSWORD-ALGORITHMS from a 401 and derives the key
    /// (RFC 8489 §9.2.3, §9.2.4).
    fn take_challenge(&mut self, msg: &Message<'_>) -> Result<(), TurnClientError> {
        let request = match msg.message_type().method {
            Method::REFRESH => RequestKind::Refresh,
            Method::CREATE_PERMISSION => RequestKind::CreatePermission,
            Method::CHANNEL_BIND => RequestKind::ChannelBind,
            _ => RequestKind::Allocate,
        };
        let (Ok(Some(realm)), Ok(Some(nonce))) = (msg.get::<Realm>(), msg.get::<Nonce>()) else {
            return Err(TurnClientError::BadChallenge { request });
        };
        let algorithms = match msg.get::<PasswordAlgorithms>() {
            Ok(Some(list)) => {
                let kinds: Vec<PasswordAlgorithmKind> = list.iter().map(|a| a.kind).collect();
                let kind = if kinds.contains(&PasswordAlgorithmKind::Sha256) {
                    PasswordAlgorithmKind::Sha256
                } else if kinds.contains(&PasswordAlgorithmKind::Md5) {
                    PasswordAlgorithmKind::Md5
                } else {
                    return Err(TurnClientError::BadResponse {
                        request,
                        reason: "the server offers no password algorithm we know (MD5, SHA-256)"
                            .to_string(),
                    });
                };
                msg.attributes()
                    .find(|a| a.typ == AttrType::PASSWORD_ALGORITHMS)
                    .map(|a| (a.value.to_vec(), kind))
            }
            _ => None,
        };
        let kind = algorithms
            .as_ref()
            .map_or(PasswordAlgorithmKind::Md5, |(_, k)| *k);
        let key = IntegrityKey::long_term(
            &self.config.username,
            realm.as_str(),
            &self.config.password,
            kind,
        )
        .map_err(|_| TurnClientError::WrongCredentials {
            username: self.config.username.clone(),
            realm: realm.as_str().to_string(),
        })?;
        self.creds = Some(Credentials {
            realm: realm.as_str().to_string(),
            nonce: nonce.as_str().to_string(),
            key,
            algorithms,
        });
        Ok(())
    }

    fn on_success(&mut self, now: Instant, op: Op, msg: &Message<'_>) {
        let granted = msg.get::<Lifetime>().ok().flatten().map(Lifetime::duration);
        match op {
            Op::Allocate => {
                let Ok(Some(XorRelayedAddress(relayed))) = msg.get::<XorRelayedAddress>() else {
                    self.fail(
                        op,
                        TurnClientError::BadResponse {
                            request: RequestKind::Allocate,
                            reason: "no XOR-RELAYED-ADDRESS".to_string(),
                        },
                    );
                    return;
                };
                let lifetime = granted.unwrap_or(self.config.lifetime);
                let mapped = msg.get::<XorMappedAddress>().ok().flatten().map(|m| m.0);
                self.state = AllocState::Allocated {
                    relayed,
                    expires: now + lifetime,
                    refresh_at: now + refresh_after(lifetime),
                };
                self.events.push_back(TurnClientEvent::Allocated {
                    relayed,
                    mapped,
                    lifetime,
                });
            }
            Op::Refresh { lifetime: 0 } => self.finish_close(),
            Op::Refresh { .. } => {
                let lifetime = granted.unwrap_or(self.config.lifetime);
                if let AllocState::Allocated { relayed, .. } = self.state {
                    self.state = AllocState::Allocated {
                        relayed,
                        expires: now + lifetime,
                        refresh_at: now + refresh_after(lifetime),
                    };
                    self.stats.refreshes += 1;
                    self.events
                        .push_back(TurnClientEvent::Refreshed { lifetime });
                }
            }
            Op::Permission(ip) => {
                if let Some(p) = self.permissions.get_mut(&ip) {
                    p.pending = false;
                    self.permission_installed(now, ip);
                }
            }
            Op::Bind { channel, peer } => {
                if let Some(c) = self.channels.get_mut(&peer) {
                    let first = !c.bound;
                    *c = Channel {
                        number: channel,
                        bound: true,
                        pending: false,
                        refresh_at: Some(now + CHANNEL_REFRESH),
                        expires: Some(now + CHANNEL_LIFETIME),
                    };
                    if first {
                        self.events
                            .push_back(TurnClientEvent::ChannelBound { peer, channel });
                    }
                }
                // ChannelBind installs or refreshes the permission for the peer's IP too
                // (RFC 8656 §11.2), but a permission lasts 5 minutes and a channel 10: keep
                // it refreshed with CreatePermission from here on, or the server drops the
                // channel's data after 5 minutes.
                self.permission_installed(now, peer.ip());
            }
        }
    }

    fn permission_installed(&mut self, now: Instant, ip: IpAddr) {
        if self.permissions.len() >= MAX_PEERS && !self.permissions.contains_key(&ip) {
            return;
        }
        let p = self.permissions.entry(ip).or_insert(Permission {
            active: false,
            pending: false,
            refresh_at: None,
            expires: None,
        });
        let first = !p.active;
        p.active = true;
        p.refresh_at = Some(now + PERMISSION_REFRESH);
        p.expires = Some(now + PERMISSION_LIFETIME);
        if first {
            self.events
                .push_back(TurnClientEvent::PermissionCreated { peer: ip });
        }
    }

    /// A request failed for good: report it and undo what it was for.
    fn fail(&mut self, op: Op, error: TurnClientError) {
        self.events.push_back(TurnClientEvent::Error(error));
        self.undo(op, false);
    }

    /// Undoes what a failed request was for. After an error response a refresh is not
    /// retried (the server would refuse again, and at once: a request storm); after a
    /// timeout (`retry`) it is, since the server may come back before the expiry.
    fn undo(&mut self, op: Op, retry: bool) {
        match op {
            Op::Allocate => self.state = AllocState::Done,
            Op::Refresh { lifetime: 0 } => self.finish_close(),
            // The allocation lives until it expires; the expiry timer reports it.
            Op::Refresh { .. } => {
                if let AllocState::Allocated {
                    relayed, expires, ..
                } = self.state
                {
                    if !retry {
                        self.state = AllocState::Allocated {
                            relayed,
                            expires,
                            refresh_at: expires,
                        };
                    }
                }
            }
            Op::Permission(ip) => {
                if let Some(p) = self.permissions.get_mut(&ip) {
                    p.pending = false;
                    if !p.active {
                        self.permissions.remove(&ip);
                    } else if !retry {
                        p.refresh_at = None;
                    }
                }
            }
            Op::Bind { peer, .. } => {
                if let Some(c) = self.channels.get_mut(&peer) {
                    c.pending = false;
                    if !c.bound {
                        let n = c.number;
                        self.channels.remove(&peer);
                        self.by_number.remove(&n);
                    } else if !retry {
                        c.refresh_at = None;
                    }
                }
            }
        }
    }

    fn finish_close(&mut self) {
        if self.state != AllocState::Done {
            self.state = AllocState::Done;
            self.events.push_back(TurnClientEvent::Closed);
        }
    }

    fn expire(&mut self) {
        for (_, mut p) in std::mem::take(&mut self.pending) {
            p.tx.cancel();
        }
        self.sends.clear();
        self.permissions.clear();
        self.channels.clear();
        self.by_number.clear();
        if self.state != AllocState::Done {
            self.state = AllocState::Done;
            self.events.push_back(TurnClientEvent::Expired);
        }
    }

    /// Time passed: retransmissions, transaction timeouts, refreshes and expiries.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut timed_out = Vec::new();
        for (id, p) in &mut self.pending {
            p.tx.handle_timeout(now);
            if p.tx.is_done() {
                if let Some(TransactionEvent::TimedOut { .. }) = p.tx.poll_event() {
                    timed_out.push(*id);
                }
            }
        }
        for id in timed_out {
            if let Some(p) = self.pending.remove(&id) {
                self.events.push_back(TurnClientEvent::ServerUnreachable {
                    request: p.op.kind(),
                    server: self.config.server,
                });
                self.undo(p.op, true);
            }
        }
        if let AllocState::Allocated {
            expires,
            refresh_at,
            ..
        } = self.state
        {
            if now >= expires {
                self.expire();
                return;
            }
            if now >= refresh_at && !self.in_flight(|op| matches!(op, Op::Refresh { .. })) {
                let lifetime = u32::try_from(self.config.lifetime.as_secs()).unwrap_or(u32::MAX);
                self.start(now, Op::Refresh { lifetime }, false);
            }
        } else {
            return;
        }
        if let Some(at) = self.keepalive_at() {
            if now >= at {
                let id = TransactionId::random(&mut self.rng);
                let mut buf = [0u8; 28];
                let typ = MessageType::new(Method::BINDING, Class::Indication);
                if let Ok(mut b) = MessageBuilder::new(&mut buf, typ, id) {
                    if b.add_fingerprint().is_ok() {
                        self.sends.push_back(b.finish().to_vec());
                        self.stats.keepalives += 1;
                    }
                }
                self.last_sent = Some(now);
            }
        }
        let mut refresh = Vec::new();
        self.permissions.retain(|ip, p| {
            if p.expires.is_some_and(|e| now >= e) && !p.pending {
                return false;
            }
            if p.refresh_at.is_some_and(|r| now >= r) && !p.pending {
                p.pending = true;
                refresh.push(Op::Permission(*ip));
            }
            true
        });
        let mut gone = Vec::new();
        for (peer, c) in &mut self.channels {
            if c.expires.is_some_and(|e| now >= e) && !c.pending {
                gone.push((*peer, c.number));
                continue;
            }
            if c.refresh_at.is_some_and(|r| now >= r) && !c.pending {
                c.pending = true;
                refresh.push(Op::Bind {
                    channel: c.number,
                    peer: *peer,
                });
            }
        }
        for (peer, n) in gone {
            self.channels.remove(&peer);
            self.by_number.remove(&n);
        }
        for op in refresh {
            self.start(now, op, false);
        }
    }

    /// When the next keepalive is due: over UDP, with an allocation, `keepalive` after the
    /// last send.
    fn keepalive_at(&self) -> Option<Instant> {
        match (self.state, self.config.transport, self.config.keepalive) {
            (AllocState::Allocated { .. }, Transport::Udp, Some(k)) => Some(self.last_sent? + k),
            _ => None,
        }
    }

    fn in_flight(&self, f: impl Fn(Op) -> bool) -> bool {
        self.pending.values().any(|p| f(p.op))
    }

    /// The next bytes to send to the server: requests and their retransmissions first,
    /// then data in the order sent.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        let mut found = None;
        for p in self.pending.values_mut() {
            if let Some(t) = p.tx.poll_transmit() {
                found = Some(t.contents.to_vec());
                break;
            }
        }
        self.current = match found {
            Some(bytes) => bytes,
            None => self.sends.pop_front()?,
        };
        Some(Transmit {
            transport: self.config.transport,
            source: self.config.local,
            destination: self.config.server,
            contents: &self.current,
        })
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Timeout> {
        let mut t = None;
        for p in self.pending.values() {
            t = Timeout::earliest(t, p.tx.poll_timeout());
        }
        if let AllocState::Allocated {
            expires,
            refresh_at,
            ..
        } = self.state
        {
            t = Timeout::earliest(t, Some(Timeout::new(expires, "turn: allocation expiry")));
            if !self.in_flight(|op| matches!(op, Op::Refresh { .. })) {
                t = Timeout::earliest(t, Some(Timeout::new(refresh_at, "turn: refresh")));
            }
            for p in self.permissions.values().filter(|p| !p.pending) {
                if let Some(r) = p.refresh_at.or(p.expires) {
                    t = Timeout::earliest(t, Some(Timeout::new(r, "turn: permission refresh")));
                }
            }
            if let Some(at) = self.keepalive_at() {
                t = Timeout::earliest(t, Some(Timeout::new(at, "turn: keepalive")));
            }
            for c in self.channels.values().filter(|c| !c.pending) {
                if let Some(r) = c.refresh_at.or(c.expires) {
                    t = Timeout::earliest(t, Some(Timeout::new(r, "turn: channel refresh")));
                }
            }
        }
        t
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<TurnClientEvent> {
        let e = self.events.pop_front()?;
        if matches!(e, TurnClientEvent::Data { .. }) {
            self.data_events -= 1;
        }
        Some(e)
    }
}

/// When to refresh an allocation granted for `lifetime`: a minute before it ends, or at
/// half of it when that leaves less than a minute of margin.
pub fn refresh_after(lifetime: Duration) -> Duration {
    if lifetime > Duration::from_secs(120) {
        lifetime - Duration::from_secs(60)
    } else {
        lifetime / 2
    }
}

fn build_send(
    out: &mut [u8],
    id: TransactionId,
    peer: SocketAddr,
    bytes: &[u8],
) -> Result<usize, StunError> {
    let mut b = MessageBuilder::new(out, MessageType::new(Method::SEND, Class::Indication), id)?;
    b.add(&XorPeerAddress(peer))?;
    b.add(&Data(bytes))?;
    Ok(b.len())
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
