//! p2pd on tokio: the [`Runtime`] implementation for tokio, and the runtime-agnostic
//! drivers of `p2pd-runtime` re-exported for it.
//!
//! The adapter owns no protocol logic: it maps timers, spawning and socket readiness to
//! tokio. Sockets are built with socket2 by [`net`] (address reuse, bind-before-connect)
//! and registered here. Tokio's test clock is honoured: [`Runtime::now`] reads
//! `tokio::time::Instant`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

pub use p2pd_runtime::{
    AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, Runtime, interfaces, names, nat, net,
    portmap, rng, routes, socket_set, stun, task, timer, turn, turn_server,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use p2pd_runtime::node;
pub mod stream;
pub use stream::TokioConnection;

/// The tokio runtime. Must be used from within a tokio runtime (it spawns with
/// `tokio::spawn`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

/// A UDP socket on tokio.
#[derive(Debug)]
pub struct UdpSocket(tokio::net::UdpSocket);

/// A TCP listener on tokio.
#[derive(Debug)]
pub struct TcpListener(tokio::net::TcpListener);

/// A TCP stream on tokio.
#[derive(Debug)]
pub struct TcpStream(tokio::net::TcpStream);

impl Runtime for Tokio {
    type UdpSocket = UdpSocket;
    type TcpListener = TcpListener;
    type TcpStream = TcpStream;
    type Sleep = tokio::time::Sleep;

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> Self::Sleep {
        tokio::time::sleep_until(deadline.into())
    }

    fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        drop(tokio::spawn(future));
    }

    fn wrap_udp(&self, socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        tokio::net::UdpSocket::from_std(socket).map(UdpSocket)
    }

    fn wrap_tcp_listener(&self, listener: std::net::TcpListener) -> io::Result<TcpListener> {
        tokio::net::TcpListener::from_std(listener).map(TcpListener)
    }

    fn wrap_tcp_stream(&self, stream: std::net::TcpStream) -> io::Result<TcpStream> {
        tokio::net::TcpStream::from_std(stream).map(TcpStream)
    }
}

impl AsyncUdpSocket for UdpSocket {
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        let mut buf = ReadBuf::new(buf);
        self.0
            .poll_recv_from(cx, &mut buf)
            .map_ok(|from| (buf.filled().len(), from))
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        destination: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.0.poll_send_to(cx, buf, destination)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl AsyncTcpListener for TcpListener {
    type Stream = TcpStream;

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        self.0.poll_accept(cx).map_ok(|(s, a)| (TcpStream(s), a))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl AsyncTcpStream for TcpStream {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        Pin::new(&mut self.0)
            .poll_read(cx, &mut buf)
            .map_ok(|()| buf.filled().len())
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_write_ready(cx)
    }

    fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.0.take_error()
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.peer_addr()
    }
}
