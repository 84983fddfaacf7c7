//! What passes between a [`Negotiator`](super::Negotiator) and its driver (a runtime's node,
//! or the simulator).
//!
//! The negotiator is sans-IO like every core machine, but it needs more than datagrams: it
//! opens TCP connections (direct, reverse, simultaneous open), fresh UDP sockets (punching
//! from new mappings, birthday probing from many) and talks to the peer over signaling. It
//! asks for those with [`Action`]s (drained with `poll_action`) and hears back through its
//! `handle_*` methods, the way [`crate::signal::Signaler`] asks for broker streams. UDP
//! datagrams go out through `poll_transmit`, naming the socket they leave from.

use std::net::{IpAddr, SocketAddr};

/// A TCP connection, named by whoever opened it: the negotiator for connects it asks for
/// ([`Action::TcpConnect`]), the driver for connections it accepted on a listen socket
/// ([`TcpEvent::Accepted`]). The two spaces never meet: the negotiator's ids have the top
/// bit clear, so a driver numbers accepted connections with [`TcpId::accepted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TcpId(pub u64);

impl TcpId {
    const ACCEPTED: u64 = 1 << 63;

    /// The id a driver gives the `n`-th connection it accepted.
    pub fn accepted(n: u64) -> Self {
        TcpId(n | Self::ACCEPTED)
    }

    /// Whether the driver (not the negotiator) named this connection.
    pub fn is_accepted(self) -> bool {
        self.0 & Self::ACCEPTED != 0
    }
}

/// A request from the negotiator to its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes to the peer over the signaling channel (the driver seals them
    /// with [`crate::signal::seal`] for the peer's key, so they arrive authenticated).
    Signal(Vec<u8>),
    /// Bind `count` fresh UDP sockets on `ip`, each on its own OS-chosen port, and answer
    /// with `handle_bound(req, …)`. Datagrams arriving on them go to `handle_udp`.
    BindUdp {
        /// Matches the answer to the request.
        req: u32,
        /// The local address to bind on.
        ip: IpAddr,
        /// How many sockets.
        count: u16,
    },
    /// Close these sockets (bound for an attempt that ended).
    ReleaseUdp(Vec<SocketAddr>),
    /// Open a TCP connection to `remote`. With `local`, bind it first with address and
    /// port reuse (simultaneous open from a listen port); without, any local port. The
    /// driver reports [`TcpEvent::Connected`] or [`TcpEvent::Failed`]; it may retry a
    /// refused or unanswered connect until the negotiator closes the id.
    TcpConnect {
        /// The name of the connection.
        id: TcpId,
        /// The local address to bind, for a simultaneous open.
        local: Option<SocketAddr>,
        /// Where to.
        remote: SocketAddr,
    },
    /// Write bytes on a connection (in order; the driver buffers).
    TcpSend {
        /// The connection.
        id: TcpId,
        /// What to write.
        bytes: Vec<u8>,
    },
    /// Close a connection the negotiator no longer wants (an attempt lost or failed).
    TcpClose(TcpId),
}

/// What happened on a TCP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpEvent<'a> {
    /// A connect the negotiator asked for succeeded.
    Connected {
        /// The connection.
        id: TcpId,
        /// Our end.
        local: SocketAddr,
        /// Their end.
        remote: SocketAddr,
    },
    /// The driver accepted a connection on a listen socket and routed it here (by
    /// [`super::handshake::Hello::peek_attempt`] on its first bytes).
    Accepted {
        /// The connection ([`TcpId::accepted`]).
        id: TcpId,
        /// Our end.
        local: SocketAddr,
        /// Their end.
        remote: SocketAddr,
    },
    /// Bytes arrived.
    Data {
        /// The connection.
        id: TcpId,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// The connect failed, or the connection closed or broke.
    Closed {
        /// The connection.
        id: TcpId,
        /// Why, for logs.
        reason: &'a str,
    },
}
