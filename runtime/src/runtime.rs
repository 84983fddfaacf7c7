//! The small trait an async runtime implements so that p2pd's drivers run on it.
//!
//! Modelled on quinn's `Runtime` / `AsyncUdpSocket`: a timer, a clock, spawning, and
//! poll-based sockets. Everything that decides *what* to send and *when* lives once, in
//! this crate's drivers; an adapter only translates these calls to its runtime.

use std::fmt::Debug;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Instant;

/// An async runtime: timers, a clock, spawning, and wrapping of OS sockets built with
/// socket2 (see [`crate::net`]) into the runtime's reactor.
pub trait Runtime: Clone + Debug + Send + Sync + 'static {
    /// A UDP socket registered with the runtime.
    type UdpSocket: AsyncUdpSocket;
    /// A listening TCP socket registered with the runtime.
    type TcpListener: AsyncTcpListener<Stream = Self::TcpStream>;
    /// A TCP stream registered with the runtime.
    type TcpStream: AsyncTcpStream;
    /// The future [`sleep_until`](Self::sleep_until) returns.
    type Sleep: Future<Output = ()> + Send + 'static;

    /// The current time. Overridable so a runtime with a paused or virtual clock (tokio's
    /// test clock) is honoured by the drivers.
    fn now(&self) -> Instant {
        Instant::now()
    }

    /// A future that completes at `deadline` (at once if it has passed).
    fn sleep_until(&self, deadline: Instant) -> Self::Sleep;

    /// Runs `future` in the background. Dropping what it computes is the caller's
    /// business: see [`crate::task::spawn`] for a handle with a result.
    fn spawn(&self, future: impl Future<Output = ()> + Send + 'static);

    /// Registers a bound, non-blocking UDP socket.
    fn wrap_udp(&self, socket: std::net::UdpSocket) -> io::Result<Self::UdpSocket>;

    /// Registers a bound, listening, non-blocking TCP socket.
    fn wrap_tcp_listener(&self, listener: std::net::TcpListener) -> io::Result<Self::TcpListener>;

    /// Registers a non-blocking TCP stream, connected or with a connect in progress
    /// (then [`AsyncTcpStream::poll_writable`] says when it finished).
    fn wrap_tcp_stream(&self, stream: std::net::TcpStream) -> io::Result<Self::TcpStream>;
}

/// A UDP socket driven by a runtime's reactor.
///
/// Only `WouldBlock` may be turned into `Pending`; every other error is returned, so a
/// caller never spins on a socket that reports errors (quinn learned this the hard way).
pub trait AsyncUdpSocket: Debug + Send + Sync + 'static {
    /// Receives one datagram into `buf`: its length and sender.
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>>;

    /// Sends one datagram to `destination`.
    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        destination: SocketAddr,
    ) -> Poll<io::Result<usize>>;

    /// The address the socket is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// Receives one datagram (cancel-safe: nothing is consumed unless it completes).
    fn recv_from<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send + 'a
    where
        Self: Sized,
    {
        poll_fn(move |cx| self.poll_recv_from(cx, buf))
    }

    /// Sends one datagram.
    fn send_to<'a>(
        &'a self,
        buf: &'a [u8],
        destination: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a
    where
        Self: Sized,
    {
        poll_fn(move |cx| self.poll_send_to(cx, buf, destination))
    }
}

/// A listening TCP socket driven by a runtime's reactor.
pub trait AsyncTcpListener: Debug + Send + Sync + 'static {
    /// The stream type accepted connections come as.
    type Stream: AsyncTcpStream;

    /// Accepts one connection.
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Stream, SocketAddr)>>;

    /// The address the listener is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// Accepts one connection.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send + '_
    where
        Self: Sized,
    {
        poll_fn(move |cx| self.poll_accept(cx))
    }
}

/// A TCP stream driven by a runtime's reactor.
pub trait AsyncTcpStream: Debug + Send + Sync + Unpin + 'static {
    /// Reads into `buf`; `Ok(0)` is the end of the stream.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;

    /// Writes some of `buf`.
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;

    /// Shuts down the writing half (sends FIN).
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Ready when the socket is writable: for a connect in progress, when it finished
    /// (successfully or not; [`take_error`](Self::take_error) tells which).
    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// The pending socket error (SO_ERROR), if any, clearing it.
    fn take_error(&self) -> io::Result<Option<io::Error>>;

    /// The local address.
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// The remote address; fails while not connected.
    fn peer_addr(&self) -> io::Result<SocketAddr>;

    /// Reads into `buf`; `Ok(0)` is the end of the stream.
    fn read<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a
    where
        Self: Sized,
    {
        poll_fn(move |cx| self.poll_read(cx, buf))
    }

    /// Writes all of `buf`.
    fn write_all<'a>(
        &'a mut self,
        buf: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a
    where
        Self: Sized,
    {
        async move {
            let mut rest = buf;
            while !rest.is_empty() {
                let n = poll_fn(|cx| self.poll_write(cx, rest)).await?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                rest = &rest[n..];
            }
            Ok(())
        }
    }

    /// Shuts down the writing half (sends FIN).
    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>> + Send + '_
    where
        Self: Sized,
    {
        poll_fn(move |cx| self.poll_shutdown(cx))
    }
}
