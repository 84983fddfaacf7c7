//! A TURN client session on real sockets of any [`Runtime`]: core's [`TurnClient`] over
//! one UDP socket or one TCP connection to the server (RFC 8656 §3.1).
//!
//! [`TurnSession`] owns the socket and the machine. Its `async` commands
//! ([`allocate`](TurnSession::allocate), [`create_permission`](TurnSession::create_permission),
//! [`bind_channel`](TurnSession::bind_channel), [`close`](TurnSession::close)) wait for the
//! outcome they asked for; everything else the client reports meanwhile (data, refreshes)
//! is kept, in order, for [`next_event`](TurnSession::next_event). Refreshes and
//! retransmissions run whenever the session is being polled, so a caller that wants the
//! allocation kept alive keeps calling `next_event` (or `next_event_until`).

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::net::{any_local_for, bind_udp, connect_tcp};
use crate::runtime::{AsyncTcpStream, AsyncUdpSocket, Runtime};
use crate::socket_set::is_transient;
use crate::timer::until;
use p2pd_core::Transport;
use p2pd_core::rng::Rng;
use p2pd_core::turn::{
    ChannelNumber, CommandError, RequestKind, TurnClient, TurnClientConfig, TurnClientError,
    TurnClientEvent,
};

/// Receive buffer: the largest UDP datagram, and a generous TCP read.
const RECV_BUF: usize = 65_536;

/// Why a TURN session call failed.
#[derive(Debug, thiserror::Error)]
pub enum TurnSessionError {
    /// The socket failed.
    #[error("TURN server {server}: {source}")]
    Io {
        /// The server.
        server: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The server refused a request, or the credentials are wrong.
    #[error(transparent)]
    Turn(#[from] TurnClientError),
    /// The client refused the command.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A request went unanswered through every retransmission.
    #[error(
        "the TURN server {server} did not answer {request}: check its address and port, and that {transport} to it is not blocked"
    )]
    Unreachable {
        /// The server.
        server: SocketAddr,
        /// The request.
        request: RequestKind,
        /// "UDP" or "TCP".
        transport: &'static str,
    },
    /// The allocation ran out.
    #[error("the TURN allocation on {server} expired: allocate again")]
    Expired {
        /// The server.
        server: SocketAddr,
    },
    /// The session is closed.
    #[error("the TURN session with {server} is closed")]
    Closed {
        /// The server.
        server: SocketAddr,
    },
}

/// A granted allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// The relayed transport address.
    pub relayed: SocketAddr,
    /// Our address as the server saw it.
    pub mapped: Option<SocketAddr>,
    /// The lifetime granted.
    pub lifetime: std::time::Duration,
}

#[derive(Debug)]
enum Conn<R: Runtime> {
    Udp(R::UdpSocket),
    Tcp(R::TcpStream),
}

/// A TURN client session: see the module docs.
#[derive(Debug)]
pub struct TurnSession<R: Runtime> {
    rt: R,
    client: TurnClient,
    conn: Conn<R>,
    local: SocketAddr,
    server: SocketAddr,
    backlog: VecDeque<TurnClientEvent>,
    buf: Vec<u8>,
}

impl<R: Runtime> TurnSession<R> {
    /// Opens the transport to `config.server` (a UDP socket on an ephemeral port, or a
    /// TCP connection) and returns a session that has sent nothing yet.
    /// `config.local` is replaced by the socket's address.
    pub async fn connect(
        rt: &R,
        mut config: TurnClientConfig,
        rng: Rng,
    ) -> Result<Self, TurnSessionError> {
        let server = config.server;
        let io_err = |source| TurnSessionError::Io { server, source };
        let (conn, local) = match config.transport {
            Transport::Udp => {
                let s = bind_udp(rt, any_local_for(server), false).map_err(io_err)?;
                let local = s.local_addr().map_err(io_err)?;
                (Conn::Udp(s), local)
            }
            Transport::Tcp => {
                let s = connect_tcp(rt, any_local_for(server), server, false)
                    .await
                    .map_err(io_err)?;
                let local = s.local_addr().map_err(io_err)?;
                (Conn::Tcp(s), local)
            }
        };
        config.local = local;
        Ok(TurnSession {
            rt: rt.clone(),
            client: TurnClient::new(config, rng),
            conn,
            local,
            server,
            backlog: VecDeque::new(),
            buf: vec![0u8; RECV_BUF],
        })
    }

    /// The machine, for commands that need no waiting (`send_to`) and for inspection.
    /// Call [`flush`](Self::flush) after a command to send what it queued.
    pub fn client(&mut self) -> &mut TurnClient {
        &mut self.client
    }

    /// The local address of the socket or connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn io_err(&self, source: io::Error) -> TurnSessionError {
        TurnSessionError::Io {
            server: self.server,
            source,
        }
    }

    /// Sends everything the client has queued.
    pub async fn flush(&mut self) -> Result<(), TurnSessionError> {
        while let Some(t) = self.client.poll_transmit() {
            let r = match &mut self.conn {
                Conn::Udp(s) => match s.send_to(t.contents, t.destination).await {
                    // A lost datagram is the client's retransmissions' business.
                    Err(e) if is_transient(&e) => Ok(()),
                    other => other.map(|_| ()),
                },
                Conn::Tcp(s) => s.write_all(t.contents).await,
            };
            if let Err(e) = r {
                return Err(TurnSessionError::Io {
                    server: self.server,
                    source: e,
                });
            }
        }
        Ok(())
    }

    /// Sends `bytes` to `peer` through the relay (ChannelData once a channel is bound).
    pub async fn send_to(
        &mut self,
        peer: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), TurnSessionError> {
        let now = self.rt.now();
        self.client.send_to(now, peer, bytes)?;
        self.flush().await
    }

    /// The next event, running timers and receiving until one comes or `deadline`
    /// passes (`Ok(None)`). Cancel-safe: nothing is lost if the future is dropped.
    pub async fn next_event_until(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<TurnClientEvent>, TurnSessionError> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                return Ok(Some(e));
            }
            self.client.handle_timeout(self.rt.now());
            self.flush().await?;
            if let Some(e) = self.client.poll_event() {
                return Ok(Some(e));
            }
            let wake = match self.client.poll_timeout() {
                Some(t) if t.at < deadline => t.at,
                _ => deadline,
            };
            if self.rt.now() >= deadline {
                return Ok(None);
            }
            let received = match &mut self.conn {
                Conn::Udp(s) => until(&self.rt, wake, s.recv_from(&mut self.buf)).await,
                Conn::Tcp(s) => until(&self.rt, wake, s.read(&mut self.buf))
                    .await
                    .map(|r| r.map(|n| (n, self.server))),
            };
            match received {
                None => {}
                Some(Ok((0, _))) if matches!(self.conn, Conn::Tcp(_)) => {
                    if self.client.is_done() {
                        return Ok(None);
                    }
                    // The allocation ends with its connection: the client reports it.
                    self.client.handle_connection_closed(self.rt.now());
                }
                Some(Ok((n, from))) => {
                    let now = self.rt.now();
                    self.client
                        .handle_input(now, from, self.local, &self.buf[..n]);
                }
                Some(Err(e)) if is_transient(&e) && matches!(self.conn, Conn::Udp(_)) => {}
                // Over TCP every error (a reset included) ends the connection, and the
                // allocation with it: the client reports that first; the OS error follows
                // on the next read.
                Some(Err(_)) if matches!(self.conn, Conn::Tcp(_)) && !self.client.is_done() => {
                    self.client.handle_connection_closed(self.rt.now());
                }
                Some(Err(e)) => return Err(self.io_err(e)),
            }
        }
    }

    /// The next event (data, refreshes, errors), waiting as long as it takes; `None` once
    /// the client is done and has nothing more to say.
    pub async fn next_event(&mut self) -> Result<Option<TurnClientEvent>, TurnSessionError> {
        loop {
            if self.client.is_done() && self.backlog.is_empty() {
                return Ok(self.client.poll_event());
            }
            let far = self.rt.now() + std::time::Duration::from_secs(3600);
            if let Some(e) = self.next_event_until(far).await? {
                return Ok(Some(e));
            }
        }
    }

    /// Waits for the first event `want` accepts; other events are kept for
    /// `next_event`; failures end the wait with an error.
    async fn wait_for<T>(
        &mut self,
        want: impl Fn(&TurnClientEvent) -> Option<T>,
    ) -> Result<T, TurnSessionError> {
        let mut kept = VecDeque::new();
        let result = loop {
            let event = match self.next_event().await {
                Ok(Some(e)) => e,
                Ok(None) => {
                    break Err(TurnSessionError::Closed {
                        server: self.server,
                    });
                }
                Err(e) => break Err(e),
            };
            if let Some(t) = want(&event) {
                break Ok(t);
            }
            match event {
                TurnClientEvent::Error(e) => break Err(e.into()),
                TurnClientEvent::ServerUnreachable { request, server } => {
                    break Err(TurnSessionError::Unreachable {
                        server,
                        request,
                        transport: match self.conn {
                            Conn::Udp(_) => "UDP",
                            Conn::Tcp(_) => "TCP",
                        },
                    });
                }
                TurnClientEvent::Expired => {
                    break Err(TurnSessionError::Expired {
                        server: self.server,
                    });
                }
                other => kept.push_back(other),
            }
        };
        kept.append(&mut self.backlog);
        self.backlog = kept;
        result
    }

    /// Allocates (answering the 401 challenge) and returns the allocation.
    pub async fn allocate(&mut self) -> Result<Allocation, TurnSessionError> {
        let now = self.rt.now();
        self.client.allocate(now)?;
        self.wait_for(|e| match *e {
            TurnClientEvent::Allocated {
                relayed,
                mapped,
                lifetime,
            } => Some(Allocation {
                relayed,
                mapped,
                lifetime,
            }),
            _ => None,
        })
        .await
    }

    /// Installs a permission for `peer` and waits until the server confirms it.
    pub async fn create_permission(&mut self, peer: IpAddr) -> Result<(), TurnSessionError> {
        let now = self.rt.now();
        self.client.create_permission(now, peer)?;
        if self.client.has_permission(peer) {
            return Ok(());
        }
        self.wait_for(|e| match *e {
            TurnClientEvent::PermissionCreated { peer: p } if p == peer => Some(()),
            _ => None,
        })
        .await
    }

    /// Binds a channel to `peer` and waits until the server confirms it.
    pub async fn bind_channel(
        &mut self,
        peer: SocketAddr,
    ) -> Result<ChannelNumber, TurnSessionError> {
        let now = self.rt.now();
        let channel = self.client.bind_channel(now, peer)?;
        if self.client.channel(peer).is_some() {
            return Ok(channel);
        }
        self.wait_for(|e| match *e {
            TurnClientEvent::ChannelBound { peer: p, channel } if p == peer => Some(channel),
            _ => None,
        })
        .await
    }

    /// Releases the allocation (Refresh with lifetime 0) and waits for the server's
    /// answer; with TCP, then shuts the connection down.
    pub async fn close(&mut self) -> Result<(), TurnSessionError> {
        let now = self.rt.now();
        self.client.close(now);
        let r = self
            .wait_for(|e| matches!(e, TurnClientEvent::Closed).then_some(()))
            .await;
        if let Conn::Tcp(s) = &mut self.conn {
            let _ = s.shutdown().await;
        }
        r
    }
}
