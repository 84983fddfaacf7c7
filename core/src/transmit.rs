//! What a state machine asks its driver to send.

use std::net::SocketAddr;

/// The transport a [`Transmit`] travels over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// One UDP datagram.
    Udp,
    /// Bytes on an established TCP stream between `source` and `destination`.
    Tcp,
}

/// A packet to send, naming the local address it must leave from.
///
/// The source matters: hole punching and RFC 5780 tests must send from one chosen local
/// port, and a multi-homed host from one chosen interface. `contents` borrows the machine's
/// own buffer, so draining transmits allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit<'a> {
    /// UDP or TCP.
    pub transport: Transport,
    /// The local address to send from.
    pub source: SocketAddr,
    /// The remote address to send to.
    pub destination: SocketAddr,
    /// The bytes to send.
    pub contents: &'a [u8],
}
