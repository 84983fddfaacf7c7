//! `/p2p/pipe/{name}`: after the response head, the HTTP connection's socket and the named
//! connection are relayed both ways until both ends have finished.
//!
//! End of stream is passed on: when the HTTP client shuts down its sending side, the
//! connection's sending side is shut down (the peer reads end of stream), and when the
//! peer ends its side, the HTTP socket's sending side is shut down. An error on either
//! socket, or `/p2p/close`, ends the relay. The connection stays in the table afterwards
//! (its byte counters include what the pipe moved) until it is closed.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::table::{PipeGuard, RECV_MAX};

/// The HTTP response head that starts a pipe (no `Content-Length`: the body is the relay).
pub fn pipe_head(name: &str, cors: &[(&'static str, String)]) -> Vec<u8> {
    let mut headers = cors.to_vec();
    headers.push(("X-P2PD-Pipe", name.to_string()));
    let mut head = super::http::head(200, "application/octet-stream", &headers);
    head.extend_from_slice(b"\r\n");
    head
}

/// Relays between `http` (whose bytes after the request head are `early`) and the
/// connection held by `guard`. Returns (bytes to the peer, bytes to the client).
pub async fn relay(mut http: TcpStream, early: Vec<u8>, mut guard: PipeGuard) -> (u64, u64) {
    let conn = guard.conn.clone();
    let PipeGuard { reader, writer, .. } = &mut guard;
    let (mut from_client, mut to_client) = http.split();
    let up_bytes = AtomicU64::new(0);
    let down_bytes = AtomicU64::new(0);
    let peer_gone = conn.is_peer_closed();
    let send_gone = conn.is_send_closed();

    let up = async {
        if send_gone {
            return Ok(());
        }
        let half = writer.half();
        if !early.is_empty() {
            half.write_all(&early).await.map_err(|_| Side::Peer)?;
            conn.count_sent(early.len());
            up_bytes.fetch_add(early.len() as u64, Ordering::Relaxed);
        }
        let mut buf = vec![0u8; RECV_MAX];
        // Bounded by the streams: ends at end of stream or on an error.
        loop {
            let n = from_client.read(&mut buf).await.map_err(|_| Side::Client)?;
            if n == 0 {
                let _ = half.shutdown().await;
                conn.mark_send_closed();
                return Ok(());
            }
            if half.write_all(&buf[..n]).await.is_err() {
                conn.mark_send_closed();
                return Err(Side::Peer);
            }
            conn.count_sent(n);
            up_bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
    };
    let down = async {
        if !reader.pending.is_empty() {
            let pending = std::mem::take(&mut reader.pending);
            to_client
                .write_all(&pending)
                .await
                .map_err(|_| Side::Client)?;
            down_bytes.fetch_add(pending.len() as u64, Ordering::Relaxed);
        }
        if !peer_gone {
            let mut buf = vec![0u8; RECV_MAX];
            loop {
                let n = match reader.half().read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                conn.count_received(n);
                to_client
                    .write_all(&buf[..n])
                    .await
                    .map_err(|_| Side::Client)?;
                down_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            conn.mark_peer_closed();
        }
        let _ = to_client.shutdown().await;
        Ok::<(), Side>(())
    };
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    // Bounded: each pass finishes one direction or ends the loop.
    while !(up_done && down_done) {
        tokio::select! {
            r = &mut up, if !up_done => {
                up_done = true;
                if r == Err(Side::Client) { break; }
            }
            r = &mut down, if !down_done => {
                down_done = true;
                if r.is_err() { break; }
            }
            _ = conn.closed() => break,
        }
    }
    let (up_bytes, down_bytes) = (
        up_bytes.load(Ordering::Relaxed),
        down_bytes.load(Ordering::Relaxed),
    );
    tracing::debug!(name = %conn.name, up_bytes, down_bytes, "pipe ended");
    (up_bytes, down_bytes)
}

/// Which socket failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Peer,
}
