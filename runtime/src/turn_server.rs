//! The TURN server (core's [`TurnServer`]) on any [`Runtime`]: UDP and TCP on the listen
//! port, and one UDP socket per relayed address, bound when the server asks
//! ([`TurnServerEvent::BindRelay`]) and closed when it says so.
//!
//! One task owns the server and every UDP socket; each TCP connection has a task that cuts
//! its byte stream into frames ([`stream_frame_len`]) and writes what the server sends it.
//! Queues between them are bounded: a slow TCP client loses its own relayed data, nobody
//! else's.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_lite::Stream;
use p2pd_core::Transport;
use p2pd_core::rng::Rng;
use p2pd_core::turn::{
    TurnConfigError, TurnServer, TurnServerConfig, TurnServerEvent, stream_frame_len,
};

use crate::net::{bind_udp, listen_tcp};
use crate::runtime::{AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, Runtime};
use crate::socket_set::is_transient;

/// Largest datagram relayed; a UDP payload cannot be longer.
const MAX_DATAGRAM: usize = 65_536;
/// TCP connections served at once; further ones are closed at once.
const MAX_CONNECTIONS: usize = 1024;
/// Frames a connection may have in flight to the server task.
const INBOUND_QUEUE: usize = 256;
/// Frames waiting to be written to one TCP client; past it they are dropped.
const OUTBOUND_QUEUE: usize = 256;
/// How long accepting pauses after an accept error.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// A TCP connection without an allocation is closed after this long without a frame, so
/// idle connections cannot hold the connection slots (an allocation's own lifetime
/// bounds the others: when it ends, so does this grace).
const IDLE_WITHOUT_ALLOCATION: Duration = Duration::from_secs(30);

/// Why the TURN server could not start.
#[derive(Debug, thiserror::Error)]
pub enum TurnServeError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] TurnConfigError),
    /// The listen port could not be bound; the message says why and what to do.
    #[error("{0}")]
    Bind(io::Error),
}

enum FromConn {
    Frame(SocketAddr, Vec<u8>),
    Closed(SocketAddr),
}

/// A TURN server whose listen sockets are bound; [`run`](Self::run) serves until dropped.
#[derive(Debug)]
pub struct BoundTurnServer<R: Runtime> {
    rt: R,
    server: TurnServer,
    udp: R::UdpSocket,
    tcp: R::TcpListener,
    idle: Duration,
}

impl<R: Runtime> BoundTurnServer<R> {
    /// Binds UDP and TCP at `config.listen` (port 0 picks one port free for both).
    pub fn bind(rt: &R, mut config: TurnServerConfig, rng: Rng) -> Result<Self, TurnServeError> {
        let (udp, tcp) = if config.listen.port() != 0 {
            let udp = bind_udp(rt, config.listen, false).map_err(TurnServeError::Bind)?;
            let tcp = listen_tcp(rt, config.listen, false).map_err(TurnServeError::Bind)?;
            (udp, tcp)
        } else {
            let mut last = None;
            let mut found = None;
            for _ in 0..32 {
                let udp = bind_udp(rt, config.listen, false).map_err(TurnServeError::Bind)?;
                let addr = udp.local_addr().map_err(TurnServeError::Bind)?;
                match listen_tcp(rt, addr, false) {
                    Ok(tcp) => {
                        found = Some((udp, tcp));
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            found.ok_or_else(|| {
                TurnServeError::Bind(
                    last.unwrap_or_else(|| io::Error::other("no port free for both UDP and TCP")),
                )
            })?
        };
        config.listen = udp.local_addr().map_err(TurnServeError::Bind)?;
        let server = TurnServer::new(config, rng, rt.now())?;
        Ok(BoundTurnServer {
            rt: rt.clone(),
            server,
            udp,
            tcp,
            idle: IDLE_WITHOUT_ALLOCATION,
        })
    }

    /// How long a TCP connection without an allocation may stay silent before it is
    /// closed (30 s by default).
    pub fn set_idle_timeout(&mut self, idle: Duration) {
        self.idle = idle.max(Duration::from_millis(1));
    }

    /// The listen address (UDP and TCP).
    pub fn local_address(&self) -> SocketAddr {
        self.server.listen_address()
    }

    /// Serves forever (until the task is dropped or the listen socket fails fatally).
    pub async fn run(self) -> io::Result<()> {
        let BoundTurnServer {
            rt,
            mut server,
            udp,
            tcp,
            idle,
        } = self;
        let listen = server.listen_address();
        let mut relays: Vec<(SocketAddr, R::UdpSocket)> = Vec::new();
        // Per connection: where the server's frames go, and when the client last sent one.
        let mut conns: HashMap<SocketAddr, (async_channel::Sender<Vec<u8>>, Instant)> =
            HashMap::new();
        let mut next_idle_sweep = rt.now() + idle;
        let (conn_tx, conn_rx) = async_channel::bounded::<FromConn>(INBOUND_QUEUE);
        let mut conn_rx = Box::pin(conn_rx);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut next = 0usize;
        let mut sleep: Option<(Instant, Pin<Box<R::Sleep>>)> = None;
        let mut tcp_first = false;
        // After an accept error (out of descriptors), accepting pauses briefly instead of
        // spinning on a listener that keeps failing.
        let mut accept_pause: Option<Pin<Box<R::Sleep>>> = None;
        loop {
            let deadline = match server.poll_timeout().map(|t| t.at) {
                Some(t) if conns.is_empty() || t < next_idle_sweep => Some(t),
                _ if !conns.is_empty() => Some(next_idle_sweep),
                other => other,
            };
            if sleep.as_ref().map(|s| s.0) != deadline {
                sleep = deadline.map(|d| (d, Box::pin(rt.sleep_until(d))));
            }
            // TCP and UDP take turns at being polled first, and the timer goes before
            // both, so a flood on one cannot starve the others.
            tcp_first = !tcp_first;
            let wake = poll_fn(|cx| {
                if let Some((_, s)) = sleep.as_mut() {
                    if s.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Wake::Timer);
                    }
                }
                if accept_pause
                    .as_mut()
                    .is_some_and(|p| p.as_mut().poll(cx).is_ready())
                {
                    accept_pause = None;
                }
                macro_rules! poll_tcp {
                    () => {
                        if accept_pause.is_none() {
                            if let Poll::Ready(r) = tcp.poll_accept(cx) {
                                return Poll::Ready(Wake::Accept(r));
                            }
                        }
                        if let Poll::Ready(Some(m)) = conn_rx.as_mut().poll_next(cx) {
                            return Poll::Ready(Wake::Conn(m));
                        }
                    };
                }
                if tcp_first {
                    poll_tcp!();
                }
                // The listen socket and the relays, round-robin.
                let count = relays.len() + 1;
                for k in 0..count {
                    let i = (next + k) % count;
                    let socket = if i == 0 { &udp } else { &relays[i - 1].1 };
                    match socket.poll_recv_from(cx, &mut buf) {
                        Poll::Ready(Ok((n, from))) => {
                            next = (i + 1) % count;
                            let local = if i == 0 { listen } else { relays[i - 1].0 };
                            return Poll::Ready(Wake::Udp(from, local, n));
                        }
                        Poll::Ready(Err(e)) if is_transient(&e) => {
                            // One bad peer; ask to be polled again.
                            cx.waker().wake_by_ref();
                        }
                        Poll::Ready(Err(e)) if i == 0 => return Poll::Ready(Wake::Fatal(e)),
                        // A relay socket failing for good: its allocation will expire.
                        Poll::Ready(Err(_)) | Poll::Pending => {}
                    }
                }
                if !tcp_first {
                    poll_tcp!();
                }
                Poll::Pending
            })
            .await;
            let now = rt.now();
            match wake {
                Wake::Fatal(e) => return Err(e),
                Wake::Timer => {
                    sleep = None;
                    server.handle_timeout(now);
                    if now >= next_idle_sweep {
                        // Dropping the sender ends the connection's task, which closes it.
                        conns.retain(|from, (_, last)| {
                            now.saturating_duration_since(*last) < idle
                                || server.relayed_address(Transport::Tcp, *from).is_some()
                        });
                        next_idle_sweep = now + idle / 3;
                    }
                }
                Wake::Udp(from, local, n) => {
                    server.handle_input(now, from, local, &buf[..n.min(MAX_DATAGRAM)]);
                }
                Wake::Accept(Ok((stream, from))) => {
                    if conns.len() < MAX_CONNECTIONS {
                        let (tx, rx) = async_channel::bounded(OUTBOUND_QUEUE);
                        conns.insert(from, (tx, now));
                        rt.spawn(connection(stream, from, conn_tx.clone(), rx));
                    }
                }
                // Accept errors (out of descriptors, a connection reset before accept)
                // concern one connection; the listener goes on.
                Wake::Accept(Err(_)) => {
                    accept_pause = Some(Box::pin(rt.sleep_until(now + ACCEPT_PAUSE)));
                }
                Wake::Conn(FromConn::Frame(from, frame)) => {
                    if let Some((_, last)) = conns.get_mut(&from) {
                        *last = now;
                    }
                    server.handle_stream_frame(now, from, &frame);
                }
                Wake::Conn(FromConn::Closed(from)) => {
                    conns.remove(&from);
                    server.handle_stream_closed(now, from);
                }
            }
            while let Some(e) = server.poll_event() {
                match e {
                    TurnServerEvent::BindRelay { relay } => {
                        let ok = match bind_relay(&rt, relay) {
                            Ok(s) => {
                                relays.push((relay, s));
                                true
                            }
                            Err(_) => false,
                        };
                        server.relay_bound(now, relay, ok);
                    }
                    TurnServerEvent::ReleaseRelay { relay } => {
                        relays.retain(|(a, _)| *a != relay);
                    }
                }
            }
            while let Some(t) = server.poll_transmit() {
                // A send error concerns one destination; the server goes on.
                match t.transport {
                    Transport::Tcp => {
                        if let Some((tx, _)) = conns.get(&t.destination) {
                            let _ = tx.try_send(t.contents.to_vec());
                        }
                    }
                    Transport::Udp if t.source == listen => {
                        let _ = udp.send_to(t.contents, t.destination).await;
                    }
                    Transport::Udp => {
                        if let Some((_, s)) = relays.iter().find(|(a, _)| *a == t.source) {
                            let _ = s.send_to(t.contents, t.destination).await;
                        }
                    }
                }
            }
        }
    }
}

enum Wake<S> {
    Accept(io::Result<(S, SocketAddr)>),
    Conn(FromConn),
    Udp(SocketAddr, SocketAddr, usize),
    Timer,
    Fatal(io::Error),
}

/// Binds the relay socket at `relay`; when the address is not this host's (a public IP
/// in front of a 1:1 NAT, as on many clouds), the same port on the unspecified address.
fn bind_relay<R: Runtime>(rt: &R, relay: SocketAddr) -> io::Result<R::UdpSocket> {
    match bind_udp(rt, relay, false) {
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
            let mut any = crate::net::any_local_for(relay);
            any.set_port(relay.port());
            bind_udp(rt, any, false)
        }
        r => r,
    }
}

/// One TCP client: frames in, the server's bytes out, until either side closes.
async fn connection<S: AsyncTcpStream>(
    mut stream: S,
    from: SocketAddr,
    to_server: async_channel::Sender<FromConn>,
    from_server: async_channel::Receiver<Vec<u8>>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    'conn: loop {
        enum Step {
            Read(io::Result<usize>),
            Write(Option<Vec<u8>>),
        }
        let step =
            futures_lite::future::or(async { Step::Read(stream.read(&mut chunk).await) }, async {
                Step::Write(from_server.recv().await.ok())
            })
            .await;
        match step {
            Step::Read(Ok(0)) | Step::Read(Err(_)) | Step::Write(None) => break,
            Step::Read(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    match stream_frame_len(&buf) {
                        None => break,
                        Some(Err(())) => break 'conn,
                        Some(Ok(len)) if buf.len() < len => break,
                        Some(Ok(len)) => {
                            let frame: Vec<u8> = buf.drain(..len).collect();
                            if to_server.send(FromConn::Frame(from, frame)).await.is_err() {
                                break 'conn;
                            }
                        }
                    }
                }
            }
            Step::Write(Some(bytes)) => {
                if stream.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to_server.send(FromConn::Closed(from)).await;
}
