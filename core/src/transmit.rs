//! What a state machine asks its driver to send.

use std::collections::VecDeque;
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

/// Owned UDP datagrams waiting to be handed out as borrowed [`Transmit`]s: machines that
/// build datagrams in pieces (or collect them from children) queue them here and lend the
/// front one out from `poll_transmit`. Bounded: past `limit` datagrams, pushes are dropped
/// (the protocols above retransmit).
#[derive(Debug)]
pub struct DatagramQueue {
    queue: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    current: Option<(SocketAddr, SocketAddr, Vec<u8>)>,
    limit: usize,
}

impl DatagramQueue {
    /// An empty queue holding at most `limit` datagrams.
    pub fn new(limit: usize) -> Self {
        DatagramQueue {
            queue: VecDeque::new(),
            current: None,
            limit,
        }
    }

    /// Queues a datagram from `source` to `destination`; false if the queue is full.
    pub fn push(&mut self, source: SocketAddr, destination: SocketAddr, bytes: Vec<u8>) -> bool {
        if self.queue.len() >= self.limit {
            return false;
        }
        self.queue.push_back((source, destination, bytes));
        true
    }

    /// Queues a copy of a transmit.
    pub fn push_transmit(&mut self, t: &Transmit<'_>) -> bool {
        self.push(t.source, t.destination, t.contents.to_vec())
    }

    /// How many wait.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The next datagram, lent until the next call.
    pub fn poll(&mut self) -> Option<Transmit<'_>> {
        self.current = self.queue.pop_front();
        let (source, destination, bytes) = self.current.as_ref()?;
        Some(Transmit {
            transport: Transport::Udp,
            source: *source,
            destination: *destination,
            contents: bytes,
        })
    }
}
