//! The connection table: open connections by name, bounded in count, with byte counters.
//!
//! A connection's stream is split into a read side and a write side, each behind its own
//! async lock, so a `recv` waiting for data does not block a `send`. A `/p2p/pipe` takes
//! both sides for as long as it relays. `/p2p/close` raises the connection's close signal:
//! every request waiting on it returns at once (error `closed`), then the stream is shut
//! down and dropped.
//!
//! Names are chosen by the client for outgoing connections; incoming connections are named
//! `in-1`, `in-2`, … in arrival order (P2PD's REST API never showed incoming connections;
//! here they appear in `/p2p/cons` and are handed out by `/p2p/accept`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Mutex as AsyncMutex, Notify, OwnedMutexGuard, watch};

use super::errors::{ApiError, ErrorKind};
use super::node::{ConnInfo, Pipe, PipeIo};

/// Most connections (open or being opened) at once.
pub const MAX_CONS: usize = 256;
/// Longest connection name.
pub const MAX_NAME_LEN: usize = 64;
/// Most bytes one `recv` returns.
pub const RECV_MAX: usize = 64 * 1024;
/// How long closing waits for the stream to shut down before dropping it.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// Who opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// This node, via `/p2p/open`.
    Outgoing,
    /// The peer.
    Incoming,
}

impl Direction {
    /// `outgoing` or `incoming`.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Outgoing => "outgoing",
            Direction::Incoming => "incoming",
        }
    }
}

/// Checks a connection name: 1–64 characters from `A-Z a-z 0-9 . _ -`.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        let shown: String = name.chars().take(MAX_NAME_LEN).collect();
        Err(ApiError::new(
            ErrorKind::BadName,
            format!(
                "'{}' is not a connection name: use 1 to {MAX_NAME_LEN} characters from A-Z a-z 0-9 . _ -",
                shown.escape_debug()
            ),
        ))
    }
}

/// The read side: the stream half plus bytes read but not yet handed out.
pub struct Reader {
    half: ReadHalf<Box<dyn PipeIo>>,
    /// Bytes read from the peer not yet returned (an incomplete UTF-8 character, or
    /// bytes a text `recv` refused as not text). At most [`RECV_MAX`].
    pub pending: Vec<u8>,
}

impl Reader {
    /// Reads once from the peer, appending to `pending`; returns the count (0 = end).
    pub async fn fill(&mut self) -> std::io::Result<usize> {
        let room = RECV_MAX.saturating_sub(self.pending.len()).max(1);
        let mut buf = vec![0u8; room];
        let n = self.half.read(&mut buf).await?;
        self.pending.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    /// The read half itself (for the pipe relay).
    pub fn half(&mut self) -> &mut ReadHalf<Box<dyn PipeIo>> {
        &mut self.half
    }
}

/// The write side.
pub struct Writer {
    half: WriteHalf<Box<dyn PipeIo>>,
}

impl Writer {
    /// The write half itself (for the pipe relay).
    pub fn half(&mut self) -> &mut WriteHalf<Box<dyn PipeIo>> {
        &mut self.half
    }
}

/// What a text or binary `recv` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvMode {
    /// UTF-8 text: a character split across reads is kept until it is complete.
    Text,
    /// Bytes as they came.
    Binary,
}

/// One open connection.
pub struct Conn {
    /// Its name in the table.
    pub name: String,
    /// What the node said about it.
    pub info: ConnInfo,
    /// Who opened it.
    pub direction: Direction,
    opened: Instant,
    reader: Arc<AsyncMutex<Reader>>,
    writer: Arc<AsyncMutex<Writer>>,
    sent: AtomicU64,
    received: AtomicU64,
    piped: AtomicBool,
    peer_closed: AtomicBool,
    write_closed: AtomicBool,
    closed: watch::Sender<bool>,
}

impl Conn {
    fn new(name: String, pipe: Pipe, direction: Direction) -> Self {
        let (r, w) = tokio::io::split(pipe.io);
        Conn {
            name,
            info: pipe.info,
            direction,
            opened: Instant::now(),
            reader: Arc::new(AsyncMutex::new(Reader {
                half: r,
                pending: Vec::new(),
            })),
            writer: Arc::new(AsyncMutex::new(Writer { half: w })),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            piped: AtomicBool::new(false),
            peer_closed: AtomicBool::new(false),
            write_closed: AtomicBool::new(false),
            closed: watch::channel(false).0,
        }
    }

    /// The JSON shown by `/p2p/con/{name}` and `/p2p/open`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": 0,
            "name": self.name,
            "direction": self.direction.name(),
            "strategy": self.info.strategy.name(),
            "local": self.info.local.to_string(),
            "remote": self.info.remote.to_string(),
            "interface": self.info.interface,
            "peer": self.info.peer,
            "bytes_sent": self.sent.load(Ordering::Relaxed),
            "bytes_received": self.received.load(Ordering::Relaxed),
            "age_s": self.opened.elapsed().as_secs(),
            "piped": self.piped.load(Ordering::Relaxed),
            "peer_closed": self.peer_closed.load(Ordering::Relaxed),
            "send_closed": self.write_closed.load(Ordering::Relaxed),
        })
    }

    /// Counts bytes sent to the peer.
    pub fn count_sent(&self, n: usize) {
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts bytes received from the peer.
    pub fn count_received(&self, n: usize) {
        self.received.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Notes that the peer ended its side.
    pub fn mark_peer_closed(&self) {
        self.peer_closed.store(true, Ordering::Relaxed);
    }

    /// Notes that our sending side was shut down (or failed).
    pub fn mark_send_closed(&self) {
        self.write_closed.store(true, Ordering::Relaxed);
    }

    /// Whether the peer ended its side.
    pub fn is_peer_closed(&self) -> bool {
        self.peer_closed.load(Ordering::Relaxed)
    }

    /// Whether our sending side was shut down.
    pub fn is_send_closed(&self) -> bool {
        self.write_closed.load(Ordering::Relaxed)
    }

    /// Resolves once `/p2p/close` closed the connection.
    pub async fn closed(&self) {
        let mut rx = self.closed.subscribe();
        // Err means the sender is gone, which cannot happen while `self` lives; either
        // way there is nothing more to wait for.
        let _ = rx.wait_for(|c| *c).await;
    }

    fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    fn check_usable(&self) -> Result<(), ApiError> {
        if self.is_closed() {
            return Err(closed_error(&self.name));
        }
        if self.piped.load(Ordering::Relaxed) {
            return Err(ApiError::new(
                ErrorKind::Busy,
                format!(
                    "connection '{}' is being relayed by a /p2p/pipe request: end that HTTP connection first",
                    self.name
                ),
            ));
        }
        Ok(())
    }

    /// Sends all of `data`, waiting at most until `deadline`.
    pub async fn send(&self, data: &[u8], deadline: tokio::time::Instant) -> Result<(), ApiError> {
        self.check_usable()?;
        if self.write_closed.load(Ordering::Relaxed) {
            return Err(ApiError::new(
                ErrorKind::PeerClosed,
                format!(
                    "connection '{}' can no longer send (its sending side was shut down when a pipe ended or a send failed): close it with /p2p/close/{}",
                    self.name, self.name
                ),
            ));
        }
        let work = async {
            let mut w = self.writer.lock().await;
            let mut done = 0;
            while done < data.len() {
                let end = data.len().min(done + RECV_MAX);
                match w.half.write(&data[done..end]).await {
                    Ok(0) | Err(_) => {
                        self.mark_send_closed();
                        return Err(ApiError::new(
                            ErrorKind::SendFailed,
                            format!(
                                "sending on connection '{}' failed after {done} of {} bytes: the connection is broken; close it and open a new one",
                                self.name,
                                data.len()
                            ),
                        ));
                    }
                    Ok(n) => {
                        done += n;
                        self.count_sent(n);
                    }
                }
            }
            if w.half.flush().await.is_err() {
                self.mark_send_closed();
                return Err(ApiError::new(
                    ErrorKind::SendFailed,
                    format!(
                        "sending on connection '{}' failed: the connection is broken",
                        self.name
                    ),
                ));
            }
            Ok(())
        };
        tokio::select! {
            r = tokio::time::timeout_at(deadline, work) => r.unwrap_or_else(|_| Err(ApiError::new(
                ErrorKind::SendTimeout,
                format!("the peer of '{}' did not take the bytes in time; part may have been sent (see bytes_sent in /p2p/con/{})", self.name, self.name),
            ))),
            _ = self.closed() => Err(closed_error(&self.name)),
        }
    }

    /// Waits (until `deadline`) for bytes from the peer and returns up to [`RECV_MAX`].
    pub async fn recv(
        &self,
        mode: RecvMode,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<u8>, ApiError> {
        self.check_usable()?;
        let work = async {
            let mut r = self.reader.lock().await;
            // Bounded: each pass either returns or reads at least one byte into a
            // pending buffer capped at RECV_MAX, and the whole wait has a deadline.
            loop {
                if let Some(out) = self.take(&mut r.pending, mode)? {
                    return Ok(out);
                }
                if self.peer_closed.load(Ordering::Relaxed) {
                    return Err(peer_closed_error(&self.name, !r.pending.is_empty()));
                }
                match r.fill().await {
                    Ok(0) => self.mark_peer_closed(),
                    Ok(n) => self.count_received(n),
                    Err(_) => self.mark_peer_closed(),
                }
            }
        };
        tokio::select! {
            r = tokio::time::timeout_at(deadline, work) => r.unwrap_or_else(|_| Err(ApiError::new(
                ErrorKind::RecvTimeout,
                format!("nothing arrived on '{}' in time: try again, or wait longer with ?timeout=SECONDS (at most {})", self.name, super::routes::MAX_TIMEOUT_S),
            ))),
            _ = self.closed() => Err(closed_error(&self.name)),
        }
    }

    /// Takes what `pending` holds for a recv of `mode`, if anything.
    fn take(&self, pending: &mut Vec<u8>, mode: RecvMode) -> Result<Option<Vec<u8>>, ApiError> {
        if pending.is_empty() {
            return Ok(None);
        }
        if mode == RecvMode::Binary {
            return Ok(Some(std::mem::take(pending)));
        }
        let valid = match std::str::from_utf8(pending) {
            Ok(_) => pending.len(),
            Err(e) => {
                let incomplete_tail = e.error_len().is_none();
                if e.valid_up_to() == 0 {
                    if incomplete_tail && !self.peer_closed.load(Ordering::Relaxed) {
                        return Ok(None);
                    }
                    return Err(ApiError::new(
                        ErrorKind::NotText,
                        format!(
                            "the next bytes on '{}' are not UTF-8 text: read them with GET /p2p/binary/{}",
                            self.name, self.name
                        ),
                    ));
                }
                e.valid_up_to()
            }
        };
        let rest = pending.split_off(valid);
        Ok(Some(std::mem::replace(pending, rest)))
    }

    /// Takes both sides for a `/p2p/pipe`, or says why not.
    pub fn take_for_pipe(self: &Arc<Self>) -> Result<PipeGuard, ApiError> {
        self.check_usable()?;
        let busy = || {
            ApiError::new(
                ErrorKind::Busy,
                format!(
                    "connection '{}' has a send or recv in progress: retry when it ends",
                    self.name
                ),
            )
        };
        let reader = self.reader.clone().try_lock_owned().map_err(|_| busy())?;
        let writer = self.writer.clone().try_lock_owned().map_err(|_| busy())?;
        if self.piped.swap(true, Ordering::Relaxed) {
            return Err(busy());
        }
        Ok(PipeGuard {
            conn: self.clone(),
            reader,
            writer,
        })
    }

    /// Raises the close signal and shuts the stream down in the background.
    fn close(self: Arc<Self>) {
        self.closed.send_replace(true);
        tokio::spawn(async move {
            // Requests holding the sides see the signal and let go promptly.
            let shut = async {
                let mut w = self.writer.lock().await;
                let _ = w.half.shutdown().await;
            };
            let _ = tokio::time::timeout(SHUTDOWN_WAIT, shut).await;
            tracing::debug!(name = %self.name, "connection closed");
        });
    }
}

fn closed_error(name: &str) -> ApiError {
    ApiError::new(ErrorKind::Closed, format!("connection '{name}' was closed"))
}

fn peer_closed_error(name: &str, left: bool) -> ApiError {
    let extra = if left {
        " (bytes that are not text are left: read them with GET /p2p/binary/NAME)"
    } else {
        ""
    };
    ApiError::new(
        ErrorKind::PeerClosed,
        format!(
            "the peer closed connection '{name}': nothing more will arrive{extra}; close it with /p2p/close/{name}"
        ),
    )
}

/// Both sides of a connection, held by a `/p2p/pipe` relay; released when dropped.
pub struct PipeGuard {
    /// The connection.
    pub conn: Arc<Conn>,
    /// Its read side.
    pub reader: OwnedMutexGuard<Reader>,
    /// Its write side.
    pub writer: OwnedMutexGuard<Writer>,
}

impl Drop for PipeGuard {
    fn drop(&mut self) {
        self.conn.piped.store(false, Ordering::Relaxed);
    }
}

enum Slot {
    Opening,
    Open(Arc<Conn>),
}

/// Most incoming connections waiting to be handed out by `/p2p/accept`.
const MAX_UNCLAIMED: usize = MAX_CONS;

/// The table.
pub struct Table {
    slots: Mutex<HashMap<String, Slot>>,
    max: usize,
    next_incoming: AtomicU64,
    unclaimed: Mutex<VecDeque<String>>,
    arrived: Notify,
}

impl Default for Table {
    fn default() -> Self {
        Table::new(MAX_CONS)
    }
}

impl Table {
    /// An empty table holding at most `max` connections.
    pub fn new(max: usize) -> Self {
        Table {
            slots: Mutex::new(HashMap::new()),
            max,
            next_incoming: AtomicU64::new(1),
            unclaimed: Mutex::new(VecDeque::new()),
            arrived: Notify::new(),
        }
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        // A panic while holding the lock cannot leave the map half-changed (every
        // change is one insert or remove), so a poisoned lock is still usable.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn full_error(&self) -> ApiError {
        ApiError::new(
            ErrorKind::TableFull,
            format!(
                "{} connections are open, the most this daemon keeps: close one with /p2p/close/NAME",
                self.max
            ),
        )
    }

    /// Reserves `name` for a connection being opened. The reservation is released when
    /// dropped unless [`Reservation::fill`] was called.
    pub fn reserve(self: &Arc<Self>, name: &str) -> Result<Reservation, ApiError> {
        check_name(name)?;
        let mut slots = self.slots();
        if slots.contains_key(name) {
            return Err(ApiError::new(
                ErrorKind::ConExists,
                format!(
                    "a connection named '{name}' already exists (or is being opened): pick another name or close it with /p2p/close/{name}"
                ),
            ));
        }
        if slots.len() >= self.max {
            return Err(self.full_error());
        }
        slots.insert(name.to_string(), Slot::Opening);
        Ok(Reservation {
            table: self.clone(),
            name: Some(name.to_string()),
        })
    }

    /// The open connection called `name`.
    pub fn get(&self, name: &str) -> Result<Arc<Conn>, ApiError> {
        check_name(name)?;
        match self.slots().get(name) {
            Some(Slot::Open(c)) => Ok(c.clone()),
            Some(Slot::Opening) => Err(ApiError::new(
                ErrorKind::Busy,
                format!(
                    "connection '{name}' is still being opened: wait for its /p2p/open to answer"
                ),
            )),
            None => Err(ApiError::unknown_con(name)),
        }
    }

    /// Removes and closes `name`.
    pub fn close(&self, name: &str) -> Result<(), ApiError> {
        check_name(name)?;
        let conn = {
            let mut slots = self.slots();
            match slots.get(name) {
                Some(Slot::Open(_)) => match slots.remove(name) {
                    Some(Slot::Open(c)) => c,
                    _ => return Err(ApiError::unknown_con(name)),
                },
                Some(Slot::Opening) => {
                    return Err(ApiError::new(
                        ErrorKind::Busy,
                        format!(
                            "connection '{name}' is still being opened: close it once its /p2p/open has answered"
                        ),
                    ));
                }
                None => return Err(ApiError::unknown_con(name)),
            }
        };
        conn.close();
        Ok(())
    }

    /// Every open connection, sorted by name.
    pub fn list(&self) -> Vec<Arc<Conn>> {
        let mut v: Vec<Arc<Conn>> = self
            .slots()
            .values()
            .filter_map(|s| match s {
                Slot::Open(c) => Some(c.clone()),
                Slot::Opening => None,
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Adds a connection a peer opened, named `in-N`; returns the name, or `None` (and
    /// drops the pipe, closing it) when the table is full.
    pub fn insert_incoming(&self, pipe: Pipe) -> Option<String> {
        let name = {
            let mut slots = self.slots();
            if slots.len() >= self.max {
                return None;
            }
            // Bounded: at most `max` names are taken, so this finds a free one within
            // max + 1 tries.
            let name = loop {
                let n = self.next_incoming.fetch_add(1, Ordering::Relaxed);
                let name = format!("in-{n}");
                if !slots.contains_key(&name) {
                    break name;
                }
            };
            let conn = Arc::new(Conn::new(name.clone(), pipe, Direction::Incoming));
            slots.insert(name.clone(), Slot::Open(conn));
            name
        };
        let mut q = self.unclaimed.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= MAX_UNCLAIMED {
            q.pop_front();
        }
        q.push_back(name.clone());
        drop(q);
        self.arrived.notify_waiters();
        Some(name)
    }

    /// The oldest incoming connection not yet handed out that is still open, waiting
    /// until `deadline`.
    pub async fn accept(&self, deadline: tokio::time::Instant) -> Option<Arc<Conn>> {
        loop {
            let notified = self.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            loop {
                let next = self
                    .unclaimed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pop_front();
                match next {
                    Some(name) => {
                        if let Ok(c) = self.get(&name) {
                            return Some(c);
                        }
                    }
                    None => break,
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    fn release(&self, name: &str) {
        let mut slots = self.slots();
        if matches!(slots.get(name), Some(Slot::Opening)) {
            slots.remove(name);
        }
    }

    fn fill(&self, name: &str, conn: Arc<Conn>) {
        self.slots().insert(name.to_string(), Slot::Open(conn));
    }
}

/// A name held for a connection being opened.
pub struct Reservation {
    table: Arc<Table>,
    name: Option<String>,
}

impl Reservation {
    /// Puts the opened connection in the table under the reserved name.
    pub fn fill(mut self, pipe: Pipe) -> Arc<Conn> {
        let name = self.name.take().unwrap_or_default();
        let conn = Arc::new(Conn::new(name.clone(), pipe, Direction::Outgoing));
        self.table.fill(&name, conn.clone());
        conn
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            self.table.release(&name);
        }
    }
}
