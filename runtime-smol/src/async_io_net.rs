//! Sockets and timers on async-io's reactor, the layer under both smol and async-std
//! (async-std's own sockets and timers are async-io's), so the async-std adapter uses
//! these too.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::ready;
use p2pd_runtime::{AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket};
use smol::{Async, Timer};

/// The items of a [`Runtime`](p2pd_runtime::Runtime) impl that every async-io based
/// runtime shares: the socket and timer types, `sleep_until` and the `wrap_*`
/// registrations. Only `spawn` (and `now`, if ever) differ between smol and async-std.
#[macro_export]
macro_rules! async_io_runtime_items {
    () => {
        type UdpSocket = $crate::async_io_net::UdpSocket;
        type TcpListener = $crate::async_io_net::TcpListener;
        type TcpStream = $crate::async_io_net::TcpStream;
        type Sleep = $crate::async_io_net::Sleep;

        fn sleep_until(&self, deadline: ::std::time::Instant) -> Self::Sleep {
            $crate::async_io_net::Sleep::until(deadline)
        }

        fn wrap_udp(
            &self,
            socket: ::std::net::UdpSocket,
        ) -> ::std::io::Result<$crate::async_io_net::UdpSocket> {
            $crate::async_io_net::udp(socket)
        }

        fn wrap_tcp_listener(
            &self,
            listener: ::std::net::TcpListener,
        ) -> ::std::io::Result<$crate::async_io_net::TcpListener> {
            $crate::async_io_net::tcp_listener(listener)
        }

        fn wrap_tcp_stream(
            &self,
            stream: ::std::net::TcpStream,
        ) -> ::std::io::Result<$crate::async_io_net::TcpStream> {
            $crate::async_io_net::tcp_stream(stream)
        }
    };
}

/// A timer at a deadline.
#[derive(Debug)]
pub struct Sleep(Timer);

impl Sleep {
    /// Fires at `deadline`.
    pub fn until(deadline: Instant) -> Self {
        Sleep(Timer::at(deadline))
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// A UDP socket on async-io.
#[derive(Debug)]
pub struct UdpSocket(Async<std::net::UdpSocket>);

/// A TCP listener on async-io.
#[derive(Debug)]
pub struct TcpListener(Async<std::net::TcpListener>);

/// A TCP stream on async-io.
#[derive(Debug)]
pub struct TcpStream(Async<std::net::TcpStream>);

/// Registers a UDP socket with async-io.
pub fn udp(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
    Async::new(socket).map(UdpSocket)
}

/// Registers a TCP listener with async-io.
pub fn tcp_listener(listener: std::net::TcpListener) -> io::Result<TcpListener> {
    Async::new(listener).map(TcpListener)
}

/// Registers a TCP stream (connected or connecting) with async-io.
pub fn tcp_stream(stream: std::net::TcpStream) -> io::Result<TcpStream> {
    Async::new(stream).map(TcpStream)
}

/// Retries a non-blocking operation until it stops saying `WouldBlock`, waiting for
/// readiness in between; any other error is returned as is.
fn retry<T>(
    cx: &mut Context<'_>,
    mut op: impl FnMut() -> io::Result<T>,
    mut ready: impl FnMut(&mut Context<'_>) -> Poll<io::Result<()>>,
) -> Poll<io::Result<T>> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready!(ready(cx))?,
            r => return Poll::Ready(r),
        }
    }
}

impl AsyncUdpSocket for UdpSocket {
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        retry(
            cx,
            || self.0.get_ref().recv_from(buf),
            |cx| self.0.poll_readable(cx),
        )
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        destination: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        retry(
            cx,
            || self.0.get_ref().send_to(buf, destination),
            |cx| self.0.poll_writable(cx),
        )
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }
}

impl AsyncTcpListener for TcpListener {
    type Stream = TcpStream;

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        let (s, from) = ready!(retry(
            cx,
            || self.0.get_ref().accept(),
            |cx| self.0.poll_readable(cx)
        ))?;
        Poll::Ready(tcp_stream(s).map(|s| (s, from)))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }
}

impl AsyncTcpStream for TcpStream {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // async-io's `poll_close` only flushes (a no-op for a socket): the FIN needs an
        // explicit shutdown of the writing half.
        ready!(Pin::new(&mut self.0).poll_flush(cx))?;
        Poll::Ready(self.0.get_ref().shutdown(std::net::Shutdown::Write))
    }

    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_writable(cx)
    }

    fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.0.get_ref().take_error()
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().peer_addr()
    }
}
