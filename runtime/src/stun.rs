//! STUN over UDP on any [`Runtime`]: one Binding transaction as a client, and the
//! Binding / RFC 5780 responder as a server.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::net::bind_udp;
use crate::runtime::{AsyncUdpSocket, Runtime};
use crate::socket_set::SocketSet;
use crate::timer::until;
use p2pd_core::Transport;
use p2pd_core::rng::Rng;
use p2pd_core::stun::{
    ChangeRequest, ClientTransaction, ErrorCode, Message, MessageBuilder, MessageType,
    OtherAddress, ResponseOrigin, ResponseSource, ServerConfig, ServerConfigError, Software,
    StunError, StunServer, TransactionConfig, TransactionEvent, TransactionId,
};

/// What to ask a STUN server.
#[derive(Debug, Clone)]
pub struct BindingRequest {
    /// The server.
    pub server: SocketAddr,
    /// RFC 5780 CHANGE-REQUEST flags (none by default).
    pub change: ChangeRequest,
    /// Where the response must come from: the server itself, or its alternate address
    /// after a CHANGE-REQUEST.
    pub expect_from: ResponseSource,
    /// Retransmission schedule.
    pub config: TransactionConfig,
}

impl BindingRequest {
    /// A plain Binding request to `server` with the RFC's retransmission defaults.
    pub fn to(server: SocketAddr) -> Self {
        BindingRequest {
            server,
            change: ChangeRequest::default(),
            expect_from: ResponseSource::Destination,
            config: TransactionConfig::default(),
        }
    }
}

/// A successful Binding exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingResponse {
    /// Our address as the server saw it (XOR-MAPPED-ADDRESS or MAPPED-ADDRESS).
    pub mapped: SocketAddr,
    /// Where the response came from.
    pub source: SocketAddr,
    /// The local socket address used.
    pub local: SocketAddr,
    /// RESPONSE-ORIGIN, if the server is an RFC 5780 server.
    pub response_origin: Option<SocketAddr>,
    /// OTHER-ADDRESS (or RFC 3489 CHANGED-ADDRESS): the server's alternate address.
    pub other_address: Option<SocketAddr>,
    /// Round trip, when unambiguous (no retransmission).
    pub rtt: Option<Duration>,
    /// Time from first send to the response.
    pub elapsed: Duration,
    /// How many times the request was sent.
    pub sends: u32,
}

/// Why a Binding exchange failed. Every variant names the server.
#[derive(Debug, thiserror::Error)]
pub enum StunClientError {
    /// The socket failed.
    #[error("STUN to {server}: socket error: {source}")]
    Io {
        /// The server.
        server: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// No answer in time.
    #[error(
        "STUN server {server} did not answer: {sends} requests over {elapsed:.1?} (is it running, and is UDP to it allowed?)"
    )]
    Timeout {
        /// The server.
        server: SocketAddr,
        /// How long we waited.
        elapsed: Duration,
        /// How many requests were sent.
        sends: u32,
    },
    /// The server answered with an error.
    #[error("STUN server {server} refused the request: {code} {reason}")]
    ErrorResponse {
        /// The server.
        server: SocketAddr,
        /// The STUN error code.
        code: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// The response was unusable.
    #[error("STUN server {server} sent an unusable response: {problem}")]
    BadResponse {
        /// The server.
        server: SocketAddr,
        /// What was wrong.
        problem: String,
    },
}

/// Builds an encoded Binding request with a fresh transaction ID.
pub fn binding_request_bytes(change: ChangeRequest, rng: &mut Rng) -> Result<Vec<u8>, StunError> {
    let mut buf = [0u8; 128];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::BINDING_REQUEST,
        TransactionId::random(rng),
    )?;
    if change.change_ip || change.change_port {
        b.add(&change)?;
    }
    b.add(&Software::new(concat!("p2pd ", env!("CARGO_PKG_VERSION")))?)?;
    b.add_fingerprint()?;
    Ok(b.finish().to_vec())
}

/// Runs one Binding transaction on `socket`, with `rt`'s clock and timers.
///
/// Ends by the transaction's own deadline at the latest: with the RFC defaults 39.5 s,
/// less with a shorter [`TransactionConfig`]. Packets that are not the response (stray
/// datagrams, spoofed sources, other transactions) are ignored.
pub async fn binding<R: Runtime, S: AsyncUdpSocket>(
    rt: &R,
    socket: &S,
    request: &BindingRequest,
    rng: &mut Rng,
) -> Result<BindingResponse, StunClientError> {
    let server = request.server;
    let io_err = |source| StunClientError::Io { server, source };
    let local = socket.local_addr().map_err(io_err)?;
    let bytes =
        binding_request_bytes(request.change, rng).map_err(|e| StunClientError::BadResponse {
            server,
            problem: e.to_string(),
        })?;
    let mut t = ClientTransaction::new(
        rt.now(),
        bytes,
        Transport::Udp,
        local,
        server,
        request.config,
    )
    .map_err(|e| StunClientError::BadResponse {
        server,
        problem: e.to_string(),
    })?
    .expect_response_from(request.expect_from);
    let mut buf = vec![0u8; 2048];
    let mut recv_errors = 0u32;
    loop {
        t.handle_timeout(rt.now());
        while let Some(tx) = t.poll_transmit() {
            socket
                .send_to(tx.contents, tx.destination)
                .await
                .map_err(io_err)?;
        }
        if let Some(event) = t.poll_event() {
            return finish(event, server, local);
        }
        let Some(deadline) = t.poll_timeout() else {
            // Done without an event cannot happen; report rather than spin.
            return Err(StunClientError::BadResponse {
                server,
                problem: "transaction ended without a result".into(),
            });
        };
        match until(rt, deadline.at, socket.recv_from(&mut buf)).await {
            Some(Ok((n, from))) => {
                let _ = t.handle_input(rt.now(), from, local, &buf[..n]);
            }
            // An ICMP error surfaced on the socket: keep waiting for the deadline, but do
            // not spin on a socket that only returns errors.
            Some(Err(e)) => {
                recv_errors += 1;
                if recv_errors > 64 {
                    return Err(io_err(e));
                }
            }
            None => {}
        }
    }
}

fn finish(
    event: TransactionEvent,
    server: SocketAddr,
    local: SocketAddr,
) -> Result<BindingResponse, StunClientError> {
    let bad = |problem: String| StunClientError::BadResponse { server, problem };
    match event {
        TransactionEvent::TimedOut { elapsed, sends, .. } => Err(StunClientError::Timeout {
            server,
            elapsed,
            sends,
        }),
        TransactionEvent::Response {
            bytes,
            source,
            rtt,
            elapsed,
            sends,
            ..
        } => {
            let msg = Message::parse(&bytes).map_err(|e| bad(e.to_string()))?;
            if let Some(e) = msg.get::<ErrorCode>().map_err(|e| bad(e.to_string()))? {
                return Err(StunClientError::ErrorResponse {
                    server,
                    code: e.code(),
                    reason: e.reason().to_owned(),
                });
            }
            let mapped = msg
                .mapped_address()
                .map_err(|e| bad(e.to_string()))?
                .ok_or_else(|| bad("no XOR-MAPPED-ADDRESS or MAPPED-ADDRESS".into()))?;
            let other_address = match msg.get::<OtherAddress>().map_err(|e| bad(e.to_string()))? {
                Some(o) => Some(o.0),
                None => msg
                    .get::<p2pd_core::stun::ChangedAddress>()
                    .map_err(|e| bad(e.to_string()))?
                    .map(|c| c.0),
            };
            let response_origin = msg
                .get::<ResponseOrigin>()
                .map_err(|e| bad(e.to_string()))?
                .map(|r| r.0);
            Ok(BindingResponse {
                mapped,
                source,
                local,
                response_origin,
                other_address,
                rtt,
                elapsed,
                sends,
            })
        }
    }
}

/// Why a STUN server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is inconsistent.
    #[error(transparent)]
    Config(#[from] ServerConfigError),
    /// A socket could not be bound; the message says why and what to do
    /// ([`crate::net::bind_error`]).
    #[error("{0}")]
    Bind(io::Error),
}

/// A STUN server whose sockets are bound; [`run`](Self::run) serves until dropped.
#[derive(Debug)]
pub struct BoundStunServer<R: Runtime> {
    rt: R,
    server: StunServer,
    sockets: Vec<R::UdpSocket>,
}

impl<R: Runtime> BoundStunServer<R> {
    /// Binds every address `config` needs on `rt`. A primary port of 0 picks a free port
    /// `P` (and `P + 1` for the alternate) automatically.
    pub fn bind(rt: &R, config: ServerConfig) -> Result<Self, ServeError> {
        if config.primary.port() != 0 {
            return Self::bind_exact(rt, config);
        }
        // Find P with P and P+1 free on both IPs; bounded attempts.
        let mut last = None;
        for _ in 0..32 {
            let probe = bind_udp(rt, config.primary, false).map_err(ServeError::Bind)?;
            let port = probe.local_addr().map_err(ServeError::Bind)?.port();
            drop(probe);
            if port == u16::MAX {
                continue;
            }
            let mut c = config.clone();
            c.primary.set_port(port);
            if let Some(a) = c.alternate.as_mut() {
                a.set_port(port + 1);
            }
            match Self::bind_exact(rt, c) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ServeError::Bind(io::Error::other("no free port pair found"))))
    }

    fn bind_exact(rt: &R, config: ServerConfig) -> Result<Self, ServeError> {
        let server = StunServer::new(config)?;
        let sockets = server
            .local_addresses()
            .into_iter()
            .map(|a| bind_udp(rt, a, false))
            .collect::<io::Result<Vec<_>>>()
            .map_err(ServeError::Bind)?;
        Ok(BoundStunServer {
            rt: rt.clone(),
            server,
            sockets,
        })
    }

    /// The addresses being served.
    pub fn local_addresses(&self) -> Vec<SocketAddr> {
        self.server.local_addresses()
    }

    /// Serves forever (until the task is dropped or a socket fails fatally).
    pub async fn run(self) -> io::Result<()> {
        let BoundStunServer {
            rt,
            mut server,
            sockets,
        } = self;
        let addrs = server.local_addresses();
        let mut set = SocketSet::new(addrs.iter().copied().zip(sockets).collect());
        loop {
            let (from, local, bytes) = set.recv().await?;
            let _ = server.handle_input(rt.now(), Transport::Udp, from, local, bytes);
            while let Some(t) = server.poll_transmit() {
                // A send error to one client must not stop the server.
                let _ = set.send(t.source, t.destination, t.contents).await;
            }
        }
    }
}
