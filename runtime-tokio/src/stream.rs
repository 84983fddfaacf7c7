//! A node [`Connection`] as tokio's `AsyncRead + AsyncWrite`, for code built on tokio's
//! I/O utilities (`tokio::io::copy`, `split`, a REST server's pipes).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use p2pd_runtime::node::{Connection, ConnectionInfo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::Tokio;

/// A [`Connection`] on tokio with tokio's I/O traits. `poll_shutdown` shuts down the
/// writing half (the peer reads end of stream); `poll_flush` returns at once, since
/// written bytes are already on their way (use [`TokioConnection::finish`] to wait until
/// they were delivered).
#[derive(Debug)]
pub struct TokioConnection(Connection<Tokio>);

impl TokioConnection {
    /// Wraps `conn`.
    pub fn new(conn: Connection<Tokio>) -> Self {
        TokioConnection(conn)
    }

    /// How the connection was made.
    pub fn info(&self) -> &ConnectionInfo {
        self.0.info()
    }

    /// The connection itself.
    pub fn into_inner(self) -> Connection<Tokio> {
        self.0
    }

    /// Waits until both directions ended and what was written was delivered.
    pub async fn finish(&mut self) -> io::Result<()> {
        self.0.finish().await
    }

    /// Ends the connection and waits until its last packets are out (see
    /// [`Connection::close`]).
    pub async fn close(self) {
        self.0.close().await
    }
}

impl From<Connection<Tokio>> for TokioConnection {
    fn from(conn: Connection<Tokio>) -> Self {
        TokioConnection(conn)
    }
}

impl AsyncRead for TokioConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = std::task::ready!(this.0.poll_read(cx, buf.initialize_unfilled()))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TokioConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().0.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().0.poll_shutdown_write(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a server that stores pipes as boxed `AsyncRead + AsyncWrite + Send + Unpin`
    /// trait objects needs of it.
    #[test]
    fn boxes_as_a_tokio_pipe() {
        fn pipe<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static>() {}
        pipe::<TokioConnection>();
        // A server shares one node between its handlers.
        fn shared<T: Send + Sync + 'static>() {}
        shared::<p2pd_runtime::node::Node<Tokio>>();
    }
}
