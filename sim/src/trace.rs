//! The packet trace: a running hash of everything that happened (always on, cheap), and an
//! optional bounded record of entries for reading.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::network::{HostId, RouterId};
use crate::stats::DropReason;

/// What happened to a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceKind {
    /// An endpoint on `host` sent it.
    Sent(HostId),
    /// NAT `router` rewrote its addresses (the entry shows them after the rewrite).
    Translated(RouterId),
    /// It reached the endpoint on `host`.
    Delivered(HostId),
    /// It was dropped.
    Dropped(DropReason),
    /// The endpoint on `host` handled a timeout (source and destination are unspecified).
    Timeout(HostId),
}

/// One line of the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEntry {
    /// Virtual time since the network was built.
    pub at: Duration,
    /// What happened.
    pub kind: TraceKind,
    /// The datagram's source at that point.
    pub source: SocketAddr,
    /// The datagram's destination at that point.
    pub destination: SocketAddr,
    /// Its payload length.
    pub len: usize,
}

impl fmt::Display for TraceEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.at.as_secs_f64() * 1e3;
        match self.kind {
            TraceKind::Sent(h) => write!(f, "{ms:10.3}ms sent       h{}", h.index())?,
            TraceKind::Translated(r) => write!(f, "{ms:10.3}ms translated r{}", r.index())?,
            TraceKind::Delivered(h) => write!(f, "{ms:10.3}ms delivered  h{}", h.index())?,
            TraceKind::Dropped(why) => write!(f, "{ms:10.3}ms dropped    {why}")?,
            TraceKind::Timeout(h) => return write!(f, "{ms:10.3}ms timeout    h{}", h.index()),
        }
        write!(
            f,
            " {} -> {} ({} B)",
            self.source, self.destination, self.len
        )
    }
}

/// FNV-1a: stable across Rust versions and platforms, unlike `DefaultHasher`.
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.write(&v.to_le_bytes());
    }

    fn write_addr(&mut self, a: SocketAddr) {
        match a.ip() {
            IpAddr::V4(ip) => self.write(&ip.octets()),
            IpAddr::V6(ip) => self.write(&ip.octets()),
        }
        self.write(&a.port().to_le_bytes());
    }
}

#[derive(Debug)]
pub(crate) struct Trace {
    hash: Fnv,
    entries: Vec<TraceEntry>,
    limit: usize,
}

impl Trace {
    pub(crate) fn new() -> Self {
        Trace {
            hash: Fnv(0xcbf2_9ce4_8422_2325),
            entries: Vec::new(),
            limit: 0,
        }
    }

    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    pub(crate) fn hash(&self) -> u64 {
        self.hash.0
    }

    pub(crate) fn entries(&self) -> &[TraceEntry] {
        &self.entries
    }

    /// Records that `host`'s endpoint handled a timeout.
    pub(crate) fn record_timeout(&mut self, at: Duration, host: HostId) {
        let none = SocketAddr::from(([0, 0, 0, 0], 0));
        self.record(at, TraceKind::Timeout(host), none, none, &[]);
    }

    /// Records one happening; `payload` is hashed so a changed byte changes the hash.
    pub(crate) fn record(
        &mut self,
        at: Duration,
        kind: TraceKind,
        source: SocketAddr,
        destination: SocketAddr,
        payload: &[u8],
    ) {
        let (code, id) = match kind {
            TraceKind::Sent(h) => (0u8, h.index() as u64),
            TraceKind::Translated(r) => (1, r.index() as u64),
            TraceKind::Delivered(h) => (2, h.index() as u64),
            TraceKind::Dropped(why) => (3, why as u64),
            TraceKind::Timeout(h) => (4, h.index() as u64),
        };
        let h = &mut self.hash;
        h.write_u64(u64::try_from(at.as_nanos()).unwrap_or(u64::MAX));
        h.write(&[code]);
        h.write_u64(id);
        h.write_addr(source);
        h.write_addr(destination);
        h.write_u64(payload.len() as u64);
        h.write(payload);
        if self.entries.len() < self.limit {
            self.entries.push(TraceEntry {
                at,
                kind,
                source,
                destination,
                len: payload.len(),
            });
        }
    }
}
