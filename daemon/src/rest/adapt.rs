//! Makes a runtime-agnostic p2pd stream usable as a [`PipeIo`](super::node::PipeIo).
//!
//! p2pd's runtime layer speaks `poll_read`/`poll_write`/`poll_shutdown` on `&mut self`
//! ([`AsyncTcpStream`]); the REST layer runs on tokio and wants tokio's `AsyncRead` and
//! `AsyncWrite`. [`PollStream`] is the three calls the bridge needs: every
//! `AsyncTcpStream` has them, and a node stream of another kind (a reliable stream over a
//! punched or relayed UDP path) implements them to be wrapped the same way.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use p2pd_tokio::AsyncTcpStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A byte stream driven by polling: reads, writes, and a shutdown of the sending side.
pub trait PollStream: Send + Unpin {
    /// Reads into `buf`; `Ok(0)` is the end of the stream.
    fn poll_read_bytes(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
    /// Writes some of `buf`.
    fn poll_write_bytes(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;
    /// Ends the sending side (the peer reads end of stream).
    fn poll_close_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl<S: AsyncTcpStream> PollStream for S {
    fn poll_read_bytes(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.poll_read(cx, buf)
    }

    fn poll_write_bytes(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write(cx, buf)
    }

    fn poll_close_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_shutdown(cx)
    }
}

/// Wraps a [`PollStream`] as a tokio `AsyncRead + AsyncWrite`.
#[derive(Debug)]
pub struct Tokioized<S>(pub S);

impl<S: PollStream> AsyncRead for Tokioized<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = match this.0.poll_read_bytes(cx, buf.initialize_unfilled()) {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: PollStream> AsyncWrite for Tokioized<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().0.poll_write_bytes(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Writes go straight to the stream; there is no buffer here to flush.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().0.poll_close_send(cx)
    }
}
