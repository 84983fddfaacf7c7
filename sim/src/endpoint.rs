//! How a sans-IO state machine runs on a simulated host.

use std::any::Any;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use p2pd_core::stun::{ServerConfig, ServerConfigError, StunServer};
use p2pd_core::{Transmit, Transport};

/// One packet in flight, owned by the simulator: a UDP datagram or a TCP segment (of the
/// simulator's TCP model, [`crate::tcp`]).
///
/// Unlike core's borrowed [`Transmit`], a datagram outlives the machine that sent it: it sits
/// in the event queue for the link's latency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// UDP, or a TCP segment. NATs keep separate tables per transport; a UDP-blocking
    /// router passes TCP.
    pub transport: Transport,
    /// Where it comes from (after any translation on the way).
    pub source: SocketAddr,
    /// Where it goes (after any translation on the way).
    pub destination: SocketAddr,
    /// The payload.
    pub contents: Vec<u8>,
}

impl Datagram {
    /// A UDP datagram from `source` to `destination` carrying `contents`.
    pub fn new(source: SocketAddr, destination: SocketAddr, contents: Vec<u8>) -> Self {
        Datagram {
            transport: Transport::Udp,
            source,
            destination,
            contents,
        }
    }

    /// A TCP segment (the simulator's TCP model) from `source` to `destination`.
    pub fn tcp(source: SocketAddr, destination: SocketAddr, contents: Vec<u8>) -> Self {
        Datagram {
            transport: Transport::Tcp,
            ..Datagram::new(source, destination, contents)
        }
    }

    /// Copies a UDP [`Transmit`] into a datagram; `None` for TCP: core's TCP transmits are
    /// bytes on a stream, which [`crate::tcp::TcpStack`] carries.
    pub fn from_transmit(t: &Transmit<'_>) -> Option<Self> {
        match t.transport {
            Transport::Udp => Some(Datagram::new(t.source, t.destination, t.contents.to_vec())),
            Transport::Tcp => None,
        }
    }
}

/// A sans-IO machine attached to a simulated host.
///
/// The simulator calls `handle_input` for every datagram that reaches the host and
/// `handle_timeout` when `poll_timeout`'s deadline passes, and drains `poll_transmit` after
/// each of those. A transmit must name one of the host's own addresses as its source, the way
/// a real socket sends from the address it is bound to; any other source is dropped and
/// counted as [`DropReason::BadSource`](crate::DropReason::BadSource).
pub trait Endpoint {
    /// A datagram from `source` arrived on the host's `destination` address.
    fn handle_input(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    );

    /// A TCP segment from `source` arrived on the host's `destination` address. Hosts
    /// without a TCP stack drop it.
    fn handle_tcp(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        let _ = (now, source, destination, bytes);
    }

    /// The next datagram to send, if any.
    fn poll_transmit(&mut self) -> Option<Datagram>;

    /// When `handle_timeout` should next be called.
    fn poll_timeout(&self) -> Option<Instant>;

    /// The deadline from `poll_timeout` has passed.
    fn handle_timeout(&mut self, now: Instant);
}

impl<E: Endpoint + ?Sized> Endpoint for Box<E> {
    fn handle_input(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        (**self).handle_input(now, source, destination, bytes);
    }

    fn handle_tcp(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        (**self).handle_tcp(now, source, destination, bytes);
    }

    fn poll_transmit(&mut self) -> Option<Datagram> {
        (**self).poll_transmit()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        (**self).poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        (**self).handle_timeout(now);
    }
}

/// An endpoint the network stores: any [`Endpoint`] that can be looked up again by its
/// concrete type (so tests and drivers can read what their machine learned).
pub(crate) trait Hosted: Endpoint {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<E: Endpoint + Any> Hosted for E {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Core's [`StunServer`] as an [`Endpoint`]: a public STUN (and, with an alternate address,
/// RFC 5780) server on a simulated host. The server is the production code, not a model of it.
#[derive(Debug)]
pub struct StunEndpoint {
    server: StunServer,
    out: VecDeque<Datagram>,
}

impl StunEndpoint {
    /// A server for `config`.
    pub fn new(config: ServerConfig) -> Result<Self, ServerConfigError> {
        Ok(StunEndpoint {
            server: StunServer::new(config)?,
            out: VecDeque::new(),
        })
    }

    /// The wrapped server (for its addresses and counters).
    pub fn server(&self) -> &StunServer {
        &self.server
    }
}

impl Endpoint for StunEndpoint {
    fn handle_input(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        // A dropped request is already counted in the server's own stats.
        let _ = self
            .server
            .handle_input(now, Transport::Udp, source, destination, bytes);
        while let Some(t) = self.server.poll_transmit() {
            if let Some(d) = Datagram::from_transmit(&t) {
                self.out.push_back(d);
            }
        }
    }

    fn poll_transmit(&mut self) -> Option<Datagram> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn handle_timeout(&mut self, _now: Instant) {}
}
