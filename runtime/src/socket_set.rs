//! Many UDP sockets seen as one: [`SocketSet::recv`] yields the next datagram from any of
//! them, and a send goes out of the socket bound to the transmit's source address.
//!
//! Core's machines name the source of every transmit (hole punching and RFC 5780 tests
//! send from chosen ports), so the driver needs exactly this. Nothing is queued in user
//! space: datagrams wait in the kernel's socket buffers, which bound them (a flood is
//! dropped by the kernel, not piled up here). Sockets are polled round-robin so one busy
//! socket cannot starve the others.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::task::Poll;

use crate::runtime::AsyncUdpSocket;

/// Largest datagram kept; longer ones are truncated (STUN messages are far smaller).
const MAX_DATAGRAM: usize = 2048;

/// Transient errors tolerated on one socket in one poll before yielding.
const ERRORS_PER_POLL: usize = 64;

/// A received datagram: (source, the local address it arrived on, bytes).
pub type Received<'a> = (SocketAddr, SocketAddr, &'a [u8]);

/// Owns the sockets and one receive buffer.
#[derive(Debug)]
pub struct SocketSet<S> {
    sockets: Vec<(SocketAddr, S)>,
    next: usize,
    buf: Vec<u8>,
}

impl<S: AsyncUdpSocket> SocketSet<S> {
    /// The set of `sockets`. Each address is the socket's address as core knows it (its
    /// bound address, or the interface address when bound to the unspecified one).
    pub fn new(sockets: Vec<(SocketAddr, S)>) -> Self {
        SocketSet {
            sockets,
            next: 0,
            buf: vec![0u8; MAX_DATAGRAM],
        }
    }

    /// Like [`new`](Self::new), keeping datagrams of up to `max_datagram` bytes (for
    /// protocols with larger messages than STUN's, such as names).
    pub fn with_max_datagram(sockets: Vec<(SocketAddr, S)>, max_datagram: usize) -> Self {
        SocketSet {
            sockets,
            next: 0,
            buf: vec![0u8; max_datagram.max(1)],
        }
    }

    /// The local addresses, in the order given.
    pub fn local_addresses(&self) -> Vec<SocketAddr> {
        self.sockets.iter().map(|(a, _)| *a).collect()
    }

    /// Sends `bytes` from the socket whose address is `source`. A send error concerns one
    /// destination only; it is returned for the caller to log or ignore.
    pub async fn send(
        &self,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) -> io::Result<()> {
        let (_, socket) = self
            .sockets
            .iter()
            .find(|(a, _)| *a == source)
            .ok_or_else(|| io::Error::other(format!("no socket bound to {source}")))?;
        socket.send_to(bytes, destination).await.map(|_| ())
    }

    /// The next datagram from any socket (cancel-safe); an error when a socket failed for
    /// good. Errors one bad peer causes (ICMP unreachable) are skipped.
    pub async fn recv(&mut self) -> io::Result<Received<'_>> {
        if self.sockets.is_empty() {
            return Err(io::Error::other("socket set has no sockets"));
        }
        let SocketSet { sockets, next, buf } = self;
        let (i, n, from) = poll_fn(|cx| {
            let count = sockets.len();
            let mut registered = true;
            for k in 0..count {
                let i = (*next + k) % count;
                let socket = &sockets[i].1;
                let mut errors = 0;
                loop {
                    match socket.poll_recv_from(cx, buf) {
                        Poll::Ready(Ok((n, from))) => {
                            *next = (i + 1) % count;
                            return Poll::Ready(Ok((i, n, from)));
                        }
                        Poll::Ready(Err(e)) if is_transient(&e) => {
                            errors += 1;
                            if errors == ERRORS_PER_POLL {
                                // Not registered for a wake-up: ask to be polled again.
                                registered = false;
                                break;
                            }
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => break,
                    }
                }
            }
            if !registered {
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        })
        .await?;
        Ok((from, sockets[i].0, &buf[..n.min(buf.len())]))
    }
}

/// Errors a UDP socket reports for one bad peer (ICMP unreachable and the like), after
/// which it keeps working.
pub fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}
