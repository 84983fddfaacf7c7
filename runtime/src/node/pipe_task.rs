//! The background task that keeps a [`DatagramPipe`] running: datagrams in (forwarded by
//! the node, which owns the sockets), datagrams out (sent straight from the shared
//! sockets), the TURN server's TCP connection when the relay runs over TCP, and the
//! pipe's timers. The application side is [`super::Connection`].

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Instant;

use p2pd_core::negotiate::{Action, TcpEvent, TcpId};
use p2pd_core::stream::Event as StreamEvent;

use super::connection::{LINGER, Shared, lock};
use crate::runtime::{AsyncTcpStream, AsyncUdpSocket, Runtime};

/// Bytes read from the TURN TCP connection per wake-up.
const READ_CHUNK: usize = 16 * 1024;
/// Most bytes queued for the TURN TCP connection; beyond, the pipe counts as failed
/// (the server stopped reading).
const MAX_TCP_OUT: usize = 4 * 1024 * 1024;

/// A datagram for the pipe: (source, the local socket it arrived on, bytes).
pub(crate) type Inbound = (SocketAddr, SocketAddr, Vec<u8>);

/// The pipe's TURN-over-TCP connection.
pub(crate) struct PipeTcp<R: Runtime> {
    pub(crate) id: TcpId,
    pub(crate) stream: R::TcpStream,
    pub(crate) out: Vec<u8>,
}

enum Wake {
    Kick(bool),
    Datagram(Option<Inbound>),
    TcpData(usize),
    TcpClosed(String),
    TcpWrote(usize),
    Timer,
}

/// Runs the pipe until it is closed (both ways finished, or failed) and the application
/// dropped its handle, or until [`LINGER`] after the drop.
pub(crate) async fn run<R: Runtime>(
    rt: R,
    shared: Arc<Mutex<Shared>>,
    kick: async_channel::Receiver<()>,
    inbound: async_channel::Receiver<Inbound>,
    sockets: Vec<(SocketAddr, Arc<R::UdpSocket>)>,
    mut tcp: Option<PipeTcp<R>>,
) {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut dropped_at: Option<Instant> = None;
    let mut kick_open = true;
    let mut inbound_open = true;
    loop {
        // Drain the pipe under the lock; send after releasing it.
        let now = rt.now();
        let mut transmits: Vec<(SocketAddr, SocketAddr, Vec<u8>)> = Vec::new();
        let (deadline, finished, wake) = {
            let mut s = lock(&shared);
            while let Some(t) = s.pipe.poll_transmit() {
                transmits.push((t.source, t.destination, t.contents.to_vec()));
            }
            while let Some(a) = s.pipe.poll_action() {
                if let (Action::TcpSend { id, bytes }, Some(t)) = (a, tcp.as_mut())
                    && id == t.id
                {
                    if t.out.len() + bytes.len() > MAX_TCP_OUT {
                        s.failure = Some("the TURN server stopped reading".into());
                    } else {
                        t.out.extend_from_slice(&bytes);
                    }
                }
            }
            let mut any = false;
            while let Some(e) = s.pipe.poll_event() {
                any = true;
                if let StreamEvent::Failed { reason } = e {
                    s.failure = Some(format!("the connection failed: {reason:?}"));
                }
            }
            if s.pipe.is_closed() && s.failure.is_none() && !s.pipe.connection().is_closed() {
                s.failure =
                    Some("the TURN relay failed (allocation expired or server gone)".into());
            }
            let wake = any || s.failure.is_some();
            if s.dropped && dropped_at.is_none() {
                dropped_at = Some(now);
            }
            let finished =
                s.dropped && (s.pipe.is_closed() || dropped_at.is_some_and(|d| now >= d + LINGER));
            if finished {
                s.pipe.close(now);
                while let Some(t) = s.pipe.poll_transmit() {
                    transmits.push((t.source, t.destination, t.contents.to_vec()));
                }
            }
            (s.pipe.poll_timeout().map(|t| t.at), finished, wake)
        };
        for (source, destination, bytes) in &transmits {
            if let Some((_, sock)) = sockets.iter().find(|(a, _)| a == source) {
                // A send error concerns one datagram: the stream retransmits.
                let _ = sock.send_to(bytes, *destination).await;
            }
        }
        // Wake the application only after sending: what the event answers (the ack of
        // the peer's last bytes) is out before the application may exit.
        if wake || finished {
            let mut s = lock(&shared);
            s.task_done = finished;
            s.wake_all();
        }
        if finished {
            return;
        }
        let linger_end = dropped_at.map(|d| d + LINGER);
        let wake_at = match (deadline, linger_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut sleep = wake_at.map(|d| Box::pin(rt.sleep_until(d)));
        let mut kick_recv = pin!(kick.recv());
        let mut in_recv = pin!(inbound.recv());
        let wake = poll_fn(|cx| {
            if kick_open && let Poll::Ready(r) = kick_recv.as_mut().poll(cx) {
                return Poll::Ready(Wake::Kick(r.is_ok()));
            }
            if inbound_open && let Poll::Ready(r) = in_recv.as_mut().poll(cx) {
                return Poll::Ready(Wake::Datagram(r.ok()));
            }
            if let Some(t) = tcp.as_mut() {
                if !t.out.is_empty() {
                    match t.stream.poll_write(cx, &t.out) {
                        Poll::Ready(Ok(n)) if n > 0 => return Poll::Ready(Wake::TcpWrote(n)),
                        Poll::Ready(Ok(_)) => {
                            return Poll::Ready(Wake::TcpClosed("write returned 0".into()));
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Wake::TcpClosed(e.to_string())),
                        Poll::Pending => {}
                    }
                }
                match t.stream.poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Wake::TcpClosed("closed by the server".into()));
                    }
                    Poll::Ready(Ok(n)) => return Poll::Ready(Wake::TcpData(n)),
                    Poll::Ready(Err(e)) => return Poll::Ready(Wake::TcpClosed(e.to_string())),
                    Poll::Pending => {}
                }
            }
            if let Some(s) = sleep.as_mut()
                && s.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Wake::Timer);
            }
            Poll::Pending
        })
        .await;
        let now = rt.now();
        let mut s = lock(&shared);
        match wake {
            Wake::Kick(open) => kick_open = open,
            Wake::Datagram(Some((source, destination, bytes))) => {
                s.pipe.handle_udp(now, source, destination, &bytes);
                // Take whatever else already arrived, without waiting, up to a bound.
                for _ in 0..256 {
                    match inbound.try_recv() {
                        Ok((src, dst, b)) => s.pipe.handle_udp(now, src, dst, &b),
                        Err(_) => break,
                    }
                }
            }
            Wake::Datagram(None) => {
                inbound_open = false;
                // A pipe on UDP sockets hears nothing more once the node that reads them
                // is gone; a relay over TCP never needed it.
                if !sockets.is_empty() {
                    s.failure.get_or_insert_with(|| "the node stopped".into());
                    s.wake_all();
                }
            }
            Wake::TcpData(n) => {
                if let Some(t) = &tcp {
                    let id = t.id;
                    s.pipe.handle_tcp(
                        now,
                        TcpEvent::Data {
                            id,
                            bytes: &buf[..n],
                        },
                    );
                }
            }
            Wake::TcpWrote(n) => {
                if let Some(t) = tcp.as_mut() {
                    t.out.drain(..n);
                }
            }
            Wake::TcpClosed(reason) => {
                if let Some(t) = tcp.take() {
                    s.pipe.handle_tcp(
                        now,
                        TcpEvent::Closed {
                            id: t.id,
                            reason: &reason,
                        },
                    );
                }
            }
            Wake::Timer => {}
        }
        if deadline.is_some_and(|d| now >= d) {
            s.pipe.handle_timeout(now);
        }
    }
}
