//! Many UDP sockets seen as one: datagrams from all of them arrive on one bounded stream,
//! and a send goes out of the socket bound to the transmit's source address.
//!
//! Core's machines name the source of every transmit (hole punching and RFC 5780 tests
//! send from chosen ports), so the driver needs exactly this.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// A received datagram: (source, the local address it arrived on, bytes).
pub type Received = (SocketAddr, SocketAddr, Vec<u8>);

/// Owns the sockets and one reader task per socket.
#[derive(Debug)]
pub struct SocketSet {
    sockets: Vec<(SocketAddr, Arc<UdpSocket>)>,
    rx: mpsc::Receiver<Received>,
    readers: JoinSet<io::Error>,
}

/// Datagrams waiting to be handled; beyond this a flood is dropped at the reader.
const QUEUE: usize = 1024;

impl SocketSet {
    /// Starts reading from every socket. `local` is each socket's address as core knows
    /// it (its bound address, or the interface address when bound to the unspecified one).
    pub fn new(sockets: Vec<(SocketAddr, UdpSocket)>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut readers = JoinSet::new();
        let sockets: Vec<(SocketAddr, Arc<UdpSocket>)> =
            sockets.into_iter().map(|(a, s)| (a, Arc::new(s))).collect();
        for (local, s) in &sockets {
            let (local, s, tx) = (*local, Arc::clone(s), tx.clone());
            readers.spawn(async move {
                let mut buf = vec![0u8; 2048];
                loop {
                    match s.recv_from(&mut buf).await {
                        Ok((n, from)) => {
                            if tx.is_closed() {
                                return io::Error::other("socket set dropped");
                            }
                            let _ = tx.try_send((from, local, buf[..n].to_vec()));
                        }
                        Err(e) if is_transient(&e) => continue,
                        Err(e) => return e,
                    }
                }
            });
        }
        SocketSet {
            sockets,
            rx,
            readers,
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

    /// The next datagram from any socket; an error when a socket failed for good.
    pub async fn recv(&mut self) -> io::Result<Received> {
        tokio::select! {
            Some(d) = self.rx.recv() => Ok(d),
            Some(done) = self.readers.join_next() => {
                Err(done.unwrap_or_else(|e| io::Error::other(e.to_string())))
            }
            else => Err(io::Error::other("no sockets")),
        }
    }
}

impl Drop for SocketSet {
    fn drop(&mut self) {
        self.readers.abort_all();
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
