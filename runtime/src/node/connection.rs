//! [`Connection`]: the reliable byte stream a negotiation yields, whatever the strategy.
//!
//! TCP strategies end with a kernel TCP stream (plus the bytes the peer sent right after
//! its handshake, read first). UDP strategies (punch, relay) end with core's
//! [`DatagramPipe`], which a background task keeps running (datagrams, timers, the TURN
//! allocation) while the application reads and writes it through this handle; the two
//! share the pipe behind a mutex that is never held across an `await`.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use p2pd_core::identity::PublicKey;
use p2pd_core::negotiate::{DatagramPipe, Strategy};

use crate::runtime::{AsyncTcpStream, Runtime};

/// How long a dropped datagram connection keeps running to deliver what was written.
pub(crate) const LINGER: Duration = Duration::from_secs(10);

/// What a connection is: how it was made and between which ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The strategy that won.
    pub strategy: Strategy,
    /// Our end (a TCP socket, a UDP socket, or our relayed address).
    pub local: SocketAddr,
    /// The peer's end as we reach it.
    pub remote: SocketAddr,
    /// The peer's long-term key (authenticated by the handshake).
    pub peer: PublicKey,
}

/// A reliable, ordered byte stream to a peer. See the module documentation.
///
/// `poll_*` methods are the primitive (a runtime's `AsyncRead`/`AsyncWrite` wraps them);
/// [`read`](Self::read), [`write_all`](Self::write_all),
/// [`shutdown_write`](Self::shutdown_write) and [`finish`](Self::finish) are the
/// `async` forms.
#[derive(Debug)]
pub struct Connection<R: Runtime> {
    info: ConnectionInfo,
    inner: Inner<R>,
}

#[derive(Debug)]
enum Inner<R: Runtime> {
    Tcp(TcpInner<R>),
    Datagram(DatagramHandle<R>),
}

#[derive(Debug)]
struct TcpInner<R: Runtime> {
    stream: R::TcpStream,
    /// Received after the handshake, before the stream was handed over.
    leftover: Vec<u8>,
    read_pos: usize,
    /// Handshake bytes the negotiator queued that were not yet written.
    unsent: Vec<u8>,
    write_pos: usize,
}

impl<R: Runtime> TcpInner<R> {
    fn poll_flush_unsent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.write_pos < self.unsent.len() {
            match self.stream.poll_write(cx, &self.unsent[self.write_pos..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.write_pos += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if !self.unsent.is_empty() {
            self.unsent = Vec::new();
            self.write_pos = 0;
        }
        Poll::Ready(Ok(()))
    }
}

/// The state the application and the pipe's task share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) pipe: DatagramPipe,
    pub(crate) read_waker: Option<Waker>,
    pub(crate) write_waker: Option<Waker>,
    pub(crate) close_waker: Option<Waker>,
    /// The application dropped its handle: linger, then close.
    pub(crate) dropped: bool,
    /// Why the pipe failed, once it did.
    pub(crate) failure: Option<String>,
    /// The pipe's task ended (after [`Connection::close`] or a drop).
    pub(crate) task_done: bool,
}

impl Shared {
    pub(crate) fn new(pipe: DatagramPipe) -> Self {
        Shared {
            pipe,
            read_waker: None,
            write_waker: None,
            close_waker: None,
            dropped: false,
            failure: None,
            task_done: false,
        }
    }

    /// Wakes everyone waiting on the pipe (they re-check their condition).
    pub(crate) fn wake_all(&mut self) {
        for w in [
            self.read_waker.take(),
            self.write_waker.take(),
            self.close_waker.take(),
        ]
        .into_iter()
        .flatten()
        {
            w.wake();
        }
    }
}

pub(crate) fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding the lock leaves a pipe that is still memory-safe to use.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug)]
struct DatagramHandle<R: Runtime> {
    rt: R,
    shared: Arc<Mutex<Shared>>,
    /// Tells the pipe's task that the application changed the pipe (it has datagrams to
    /// send). Capacity 1: one pending kick says it all.
    kick: async_channel::Sender<()>,
}

impl<R: Runtime> DatagramHandle<R> {
    fn kick(&self) {
        let _ = self.kick.try_send(());
    }

    fn broken(s: &Shared) -> io::Error {
        let why = s
            .failure
            .clone()
            .unwrap_or_else(|| "the connection is closed".into());
        io::Error::new(io::ErrorKind::BrokenPipe, why)
    }
}

impl<R: Runtime> Drop for DatagramHandle<R> {
    fn drop(&mut self) {
        lock(&self.shared).dropped = true;
        self.kick();
    }
}

impl<R: Runtime> Connection<R> {
    /// A connection over a TCP stream: `leftover` is read before the stream, `unsent`
    /// written before anything the application writes.
    pub(crate) fn tcp(
        info: ConnectionInfo,
        stream: R::TcpStream,
        leftover: Vec<u8>,
        unsent: Vec<u8>,
    ) -> Self {
        Connection {
            info,
            inner: Inner::Tcp(TcpInner {
                stream,
                leftover,
                read_pos: 0,
                unsent,
                write_pos: 0,
            }),
        }
    }

    /// A connection over a datagram pipe whose task listens on `kick`.
    pub(crate) fn datagram(
        rt: R,
        info: ConnectionInfo,
        shared: Arc<Mutex<Shared>>,
        kick: async_channel::Sender<()>,
    ) -> Self {
        Connection {
            info,
            inner: Inner::Datagram(DatagramHandle { rt, shared, kick }),
        }
    }

    /// How the connection was made.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// The strategy that made it.
    pub fn strategy(&self) -> Strategy {
        self.info.strategy
    }

    /// Reads into `buf`; `Ok(0)` is the end of the stream (the peer shut down writing).
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match &mut self.inner {
            Inner::Tcp(t) => {
                if t.read_pos < t.leftover.len() {
                    let n = buf.len().min(t.leftover.len() - t.read_pos);
                    buf[..n].copy_from_slice(&t.leftover[t.read_pos..t.read_pos + n]);
                    t.read_pos += n;
                    if t.read_pos == t.leftover.len() {
                        t.leftover = Vec::new();
                        t.read_pos = 0;
                    }
                    return Poll::Ready(Ok(n));
                }
                t.stream.poll_read(cx, buf)
            }
            Inner::Datagram(d) => {
                if buf.is_empty() {
                    return Poll::Ready(Ok(0));
                }
                let mut s = lock(&d.shared);
                let n = s.pipe.read(d.rt.now(), buf);
                if n > 0 {
                    drop(s);
                    // Reading freed receive window: the task may have acks to send.
                    d.kick();
                    return Poll::Ready(Ok(n));
                }
                if s.pipe.is_peer_finished() {
                    return Poll::Ready(Ok(0));
                }
                if s.pipe.is_closed() {
                    return Poll::Ready(Err(DatagramHandle::<R>::broken(&s)));
                }
                s.read_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Writes some of `buf`.
    pub fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.inner {
            Inner::Tcp(t) => match t.poll_flush_unsent(cx) {
                Poll::Ready(Ok(())) => t.stream.poll_write(cx, buf),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
            Inner::Datagram(d) => {
                if buf.is_empty() {
                    return Poll::Ready(Ok(0));
                }
                let mut s = lock(&d.shared);
                if s.pipe.is_closed() {
                    return Poll::Ready(Err(DatagramHandle::<R>::broken(&s)));
                }
                let n = s.pipe.write(d.rt.now(), buf);
                if n > 0 {
                    drop(s);
                    d.kick();
                    return Poll::Ready(Ok(n));
                }
                s.write_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Shuts down the writing half: the peer reads the end of the stream after every
    /// byte written so far.
    pub fn poll_shutdown_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Inner::Tcp(t) => {
                match t.poll_flush_unsent(cx) {
                    Poll::Ready(Ok(())) => {}
                    other => return other,
                }
                t.stream.poll_shutdown(cx)
            }
            Inner::Datagram(d) => {
                let mut s = lock(&d.shared);
                if s.pipe.is_closed() && s.failure.is_some() {
                    return Poll::Ready(Err(DatagramHandle::<R>::broken(&s)));
                }
                s.pipe.shutdown_write(d.rt.now());
                drop(s);
                d.kick();
                Poll::Ready(Ok(()))
            }
        }
    }

    /// Ready once the connection is finished: for a datagram pipe, both directions ended
    /// and everything we wrote was acknowledged (or it failed: then the error); for TCP,
    /// at once (the kernel delivers what was written after close).
    pub fn poll_finished(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Inner::Tcp(t) => t.poll_flush_unsent(cx),
            Inner::Datagram(d) => {
                let mut s = lock(&d.shared);
                if let Some(why) = &s.failure {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        why.clone(),
                    )));
                }
                if s.pipe.is_closed() || (s.pipe.is_flushed() && s.pipe.is_peer_finished()) {
                    return Poll::Ready(Ok(()));
                }
                s.close_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Ends the connection and waits until it is gone: for a datagram pipe, until its
    /// task sent its last packets and released the relay (at most about 10 s while the
    /// peer still has unacknowledged data), so a process may exit right after; for TCP,
    /// at once (the kernel finishes the close).
    pub async fn close(self) {
        if let Inner::Datagram(d) = &self.inner {
            lock(&d.shared).dropped = true;
            d.kick();
            poll_fn(|cx| {
                let mut s = lock(&d.shared);
                if s.task_done {
                    return Poll::Ready(());
                }
                s.close_waker = Some(cx.waker().clone());
                Poll::Pending
            })
            .await;
        }
    }

    /// Writes what the handshake still owes the peer: on a TCP path, the initiator's
    /// HELLO that commits to it may still be queued, and the peer's side of the
    /// connection completes only when it arrives. Nothing to do on a datagram pipe (its
    /// task sends on its own).
    pub(crate) async fn flush_handshake(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Tcp(t) => poll_fn(|cx| t.poll_flush_unsent(cx)).await,
            Inner::Datagram(_) => Ok(()),
        }
    }

    /// Reads into `buf`; `Ok(0)` is the end of the stream.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_read(cx, buf)).await
    }

    /// Writes all of `buf`.
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
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

    /// Shuts down the writing half.
    pub async fn shutdown_write(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_shutdown_write(cx)).await
    }

    /// Waits until the connection is finished both ways and what we wrote was delivered
    /// (see [`poll_finished`](Self::poll_finished)). Call after
    /// [`shutdown_write`](Self::shutdown_write) and reading to the end.
    pub async fn finish(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_finished(cx)).await
    }
}
