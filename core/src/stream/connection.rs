//! The stream state machine: one reliable, ordered, flow- and congestion-controlled byte
//! stream in each direction over an opaque datagram path.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::congestion::NewReno;
use super::packet::{
    self, FIN, MAX_HEADER_LEN, MAX_SACK_BLOCKS, PING, Packet, PacketError, Repr, SackBlocks,
    truncate, unwrap,
};
use super::recv_buffer::RecvBuffer;
use super::send_buffer::SendBuffer;
use crate::stun::RtoEstimator;
use crate::time::Timeout;

/// Buffers above this would let offsets drift more than 2³¹ apart, which the 32-bit wire
/// sequence numbers could no longer tell apart.
pub const MAX_BUFFER: usize = 1 << 30;
/// The smallest datagram worth configuring: a full header plus some payload.
pub const MIN_DATAGRAM: usize = MAX_HEADER_LEN + 16;
/// DupThresh (RFC 5681 §3.2, RFC 6675): this many duplicate ACKs, or SACKed segments above
/// a hole, mean the hole was lost.
pub const DUP_THRESH: u32 = 3;

/// How a [`Connection`] behaves. Both ends must agree on `connection_id` (it comes from the
/// signalling that set up the path); everything else may differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Packets carrying another id are ignored (stray datagrams on a reused port, another
    /// connection on the same path).
    pub connection_id: u32,
    /// The largest datagram sent. 1200 fits the IPv6 minimum MTU (1280) with IP and UDP
    /// headers and leaves room for TURN ChannelData (4 bytes) or an encryption layer.
    pub max_datagram_size: usize,
    /// Bytes written but not yet acknowledged, at most.
    pub send_buffer: usize,
    /// Bytes received but not yet read, at most (the advertised receive window).
    pub recv_buffer: usize,
    /// The RTO before any round trip was measured (RFC 6298 §2.1: 1 s).
    pub initial_rto: Duration,
    /// The RTO's floor (RFC 6298 §2.4 says 1 s; 200 ms as Linux does, for short paths).
    pub min_rto: Duration,
    /// The RTO's ceiling, backoff included.
    pub max_rto: Duration,
    /// The peer is declared unreachable after this many consecutive retransmission (or
    /// window-probe) timeouts without hearing anything from it.
    pub max_timeouts: u32,
    /// The peer is declared unreachable after this long without a valid packet from it.
    pub idle_timeout: Duration,
    /// With nothing else to send for this long, send a PING (keeps NAT mappings and the
    /// peer's idle timer alive). Must be below `idle_timeout`.
    pub keepalive_interval: Duration,
    /// The longest an ACK is delayed (RFC 5681 §4.2 allows up to 500 ms; every second
    /// full-sized segment is acknowledged at once anyway).
    pub ack_delay: Duration,
    /// Initial congestion window in segments (RFC 6928: 10).
    pub initial_window: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            connection_id: 0,
            max_datagram_size: 1200,
            send_buffer: 1 << 20,
            recv_buffer: 1 << 20,
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(10),
            max_timeouts: 8,
            idle_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(10),
            ack_delay: Duration::from_millis(25),
            initial_window: 10,
        }
    }
}

/// A [`Config`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// `max_datagram_size` below [`MIN_DATAGRAM`].
    #[error("max_datagram_size {0} is below {MIN_DATAGRAM}")]
    DatagramTooSmall(usize),
    /// A buffer of zero bytes or above [`MAX_BUFFER`].
    #[error("buffer size {0} is outside 1..={MAX_BUFFER}")]
    BufferSize(usize),
    /// Keepalives would not keep the peer's idle timer from expiring.
    #[error("keepalive_interval must be shorter than idle_timeout")]
    Keepalive,
    /// A zero RTO, or a minimum above the maximum.
    #[error("RTO bounds must satisfy 0 < min_rto <= max_rto")]
    Rto,
    /// A timer above [`MAX_TIMER`] (deadlines must stay representable).
    #[error("timer settings must not exceed {MAX_TIMER:?}")]
    TimerTooLong,
}

/// The longest any configured timer may be.
pub const MAX_TIMER: Duration = Duration::from_secs(24 * 3600);

/// Why a connection gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FailReason {
    /// `timeouts` retransmission timeouts in a row passed without a word from the peer.
    #[error("peer unreachable: {timeouts} retransmission timeouts without an answer")]
    Unacknowledged {
        /// Consecutive timeouts.
        timeouts: u32,
    },
    /// Nothing valid arrived for the idle timeout.
    #[error("peer silent for {0:?}")]
    IdleTimeout(Duration),
}

/// What the application learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Bytes can be read (reported again only after `read` emptied the buffer).
    Readable,
    /// Room freed up in the send buffer after a `write` took less than offered.
    Writable,
    /// The peer half-closed: every byte it will ever send has arrived (`read` drains what
    /// is left, then returns 0).
    PeerFinished,
    /// Both directions finished and every byte (FIN included) was acknowledged.
    Closed,
    /// The peer is unreachable; the connection does nothing more.
    Failed {
        /// Why.
        reason: FailReason,
    },
}

/// Why an input datagram was ignored. Ignoring is always safe: the connection's state is
/// unchanged, and a peer that really sent it will retransmit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum InputError {
    /// Not a packet.
    #[error(transparent)]
    Packet(#[from] PacketError),
    /// Another connection's packet.
    #[error("connection id {0:#010x} is not this connection's")]
    WrongConnection(u32),
    /// Acknowledges bytes never sent.
    #[error("acknowledgment beyond what was sent")]
    AckOutOfRange,
    /// Data after the peer's FIN, or a FIN contradicting an earlier one or data received.
    #[error("data or FIN inconsistent with the peer's FIN")]
    BadFin,
    /// The connection failed; it ignores everything.
    #[error("connection failed")]
    Failed,
}

/// Counters for tests, traces and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets emitted by `poll_transmit`.
    pub packets_sent: u64,
    /// Valid packets accepted by `handle_input`.
    pub packets_received: u64,
    /// Datagrams ignored by `handle_input`.
    pub packets_ignored: u64,
    /// Segments sent again.
    pub retransmissions: u64,
    /// Fast-recovery episodes (losses found by SACK or duplicate ACKs).
    pub fast_recoveries: u64,
    /// Retransmissions found unnecessary (the original arrived; the path reorders).
    pub spurious_retransmissions: u64,
    /// Tail-loss probes sent.
    pub tail_probes: u64,
    /// Retransmission timeouts.
    pub timeouts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Closed,
    Failed,
}

/// RACK's record of the most recently sent segment known delivered.
#[derive(Debug, Clone, Copy)]
struct Rack {
    sent_at: Instant,
    seq: u64,
    rtt: Duration,
}

/// One segment sent and not yet cumulatively acknowledged.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// Payload bytes.
    len: u64,
    /// Carries the FIN (which takes one more sequence number).
    fin: bool,
    sent_at: Instant,
    retransmitted: bool,
    sacked: bool,
    lost: bool,
    /// Last sent as a tail-loss probe (its early ACK proves nothing spurious).
    probe: bool,
}

impl Segment {
    fn span(&self) -> u64 {
        self.len + u64::from(self.fin)
    }

    /// What this segment adds to the pipe: sent, and neither SACKed nor deemed lost.
    fn pipe(&self) -> u64 {
        if self.sacked || self.lost {
            0
        } else {
            self.span()
        }
    }
}

/// A reliable, ordered byte stream in each direction over datagrams.
///
/// Sans-IO and path-agnostic: the caller passes every datagram received on the path to
/// [`handle_input`](Self::handle_input), sends every datagram
/// [`poll_transmit`](Self::poll_transmit) writes, calls
/// [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout), and
/// after each of those calls and after `read`/`write`/`shutdown_write` drains
/// `poll_transmit` and [`poll_event`](Self::poll_event). The path may be a punched UDP
/// socket, TURN ChannelData or the simulator; it need not keep order, may duplicate and may
/// lose. Unlike [`crate::Machine`] nothing here names addresses: the path does.
///
/// There is no handshake: both ends start with offset 0 in each direction and the
/// `connection_id` agreed during signalling, and may send at once (a first packet lost to
/// a NAT that has not opened yet is simply retransmitted). Reliability follows TCP:
/// cumulative ACK plus SACK (RFC 2018), RTO from an RFC 6298 estimator with Karn's rule and
/// exponential backoff; fast retransmit when a later-sent segment was delivered and the hole
/// has been out longer than that one's round trip plus a reordering window (RFC 8985 RACK,
/// with its reordering timer) or, until the path is seen to reorder, on [`DUP_THRESH`]
/// duplicate ACKs or SACKed segments above a hole (RFC 5681, RFC 6675); a retransmission
/// acknowledged sooner than half the minimum round trip was spurious, so the window cut is
/// undone and the reordering window widened; a tail-loss probe two round trips after the
/// last send re-sends the last segment so a lost tail is found before the RTO (RFC 8985
/// §7); NewReno congestion control ([`NewReno`]); and
/// flow control by the peer's advertised window with window probes. Pacing is not done: the
/// window goes out as a burst. Keepalives (PING) every
/// [`Config::keepalive_interval`] of silence; the connection fails after
/// [`Config::max_timeouts`] unanswered RTOs or [`Config::idle_timeout`] of silence.
///
/// After [`Event::Closed`] keep the connection a little while (a few RTOs) if the peer
/// should see the ACK of its FIN even when the first one is lost; it answers retransmitted
/// FINs but arms no timers.
#[derive(Debug)]
pub struct Connection {
    config: Config,
    /// Payload bytes per full segment.
    mss: usize,
    state: State,

    // ----- sending -----
    send: SendBuffer,
    /// Oldest unacknowledged offset.
    snd_una: u64,
    /// Next new offset to send.
    snd_nxt: u64,
    segments: BTreeMap<u64, Segment>,
    /// Sum of [`Segment::pipe`] over `segments`.
    pipe: u64,
    /// SACKed segments in `segments`.
    sacked_count: usize,
    /// `shutdown_write` was called.
    fin_requested: bool,
    /// The FIN's offset, once sent.
    fin_seq: Option<u64>,
    fin_acked: bool,
    /// One past the last offset the peer's window admits (never moves left once the peer
    /// stated it; before that, a guess of one initial window).
    peer_edge: u64,
    peer_window_known: bool,
    rtt: RtoEstimator,
    backoff: u32,
    rto_at: Option<Instant>,
    /// Consecutive timeouts without hearing from the peer.
    timeouts: u32,
    cc: NewReno,
    dupacks: u32,
    /// The most recently sent segment known delivered (RFC 8985 RACK).
    rack: Option<Rack>,
    /// When a segment not yet deemed lost will be, unless acknowledged first (RACK's
    /// reordering timer).
    rack_timer: Option<Instant>,
    /// The smallest round trip measured.
    min_rtt: Option<Duration>,
    /// A retransmission turned out spurious (the original arrived): the path reorders, so
    /// losses are judged by time only and the reordering window widens.
    reordering_seen: bool,
    /// Multiplier of the reordering window (RFC 8985 §6.2 step 4), 1..=16.
    reo_mult: u32,
    /// When to send a tail-loss probe (RFC 8985 §7): the last segment again, so that a
    /// lost tail is found by the ACK it draws instead of by the RTO.
    tlp_at: Option<Instant>,
    /// A probe is due.
    tlp_pending: bool,
    /// A probe was sent and nothing new has been acknowledged since (one per tail).
    tlp_done: bool,
    /// When the current recovery began: segments sent before it and still missing at a
    /// partial ACK are lost (RFC 6582).
    recovery_start: Option<Instant>,
    /// Send one lost segment even if the window is full (fast retransmit, RTO).
    retransmit_now: bool,
    ping_pending: bool,
    write_blocked: bool,

    // ----- receiving -----
    recv: RecvBuffer,
    peer_fin: Option<u64>,
    peer_finished: bool,
    ack_now: bool,
    unacked_packets: u32,
    ack_at: Option<Instant>,
    advertised_edge: u64,
    readable_signalled: bool,

    last_send: Instant,
    last_recv: Instant,
    events: VecDeque<Event>,
    stats: Stats,
}

impl Connection {
    /// A connection starting at `now`.
    pub fn new(config: Config, now: Instant) -> Result<Self, ConfigError> {
        if config.max_datagram_size < MIN_DATAGRAM {
            return Err(ConfigError::DatagramTooSmall(config.max_datagram_size));
        }
        for b in [config.send_buffer, config.recv_buffer] {
            if b == 0 || b > MAX_BUFFER {
                return Err(ConfigError::BufferSize(b));
            }
        }
        if config.keepalive_interval >= config.idle_timeout {
            return Err(ConfigError::Keepalive);
        }
        if config.min_rto.is_zero() || config.min_rto > config.max_rto {
            return Err(ConfigError::Rto);
        }
        let timers = [
            config.initial_rto,
            config.max_rto,
            config.idle_timeout,
            config.keepalive_interval,
            config.ack_delay,
        ];
        if timers.iter().any(|&t| t > MAX_TIMER) {
            return Err(ConfigError::TimerTooLong);
        }
        let mss = config.max_datagram_size - MAX_HEADER_LEN;
        let max_segments = config.recv_buffer / mss * 2 + 16;
        Ok(Connection {
            mss,
            state: State::Open,
            send: SendBuffer::new(config.send_buffer),
            snd_una: 0,
            snd_nxt: 0,
            segments: BTreeMap::new(),
            pipe: 0,
            sacked_count: 0,
            fin_requested: false,
            fin_seq: None,
            fin_acked: false,
            peer_edge: (mss * config.initial_window.max(1)) as u64,
            peer_window_known: false,
            rtt: RtoEstimator::new(config.initial_rto, config.min_rto, config.max_rto),
            backoff: 0,
            rto_at: None,
            timeouts: 0,
            cc: NewReno::new(mss, config.initial_window, config.send_buffer),
            dupacks: 0,
            rack: None,
            rack_timer: None,
            min_rtt: None,
            reordering_seen: false,
            reo_mult: 1,
            tlp_at: None,
            tlp_pending: false,
            tlp_done: false,
            recovery_start: None,
            retransmit_now: false,
            ping_pending: false,
            write_blocked: false,
            recv: RecvBuffer::new(config.recv_buffer, max_segments),
            peer_fin: None,
            peer_finished: false,
            ack_now: false,
            unacked_packets: 0,
            ack_at: None,
            advertised_edge: 0,
            readable_signalled: false,
            last_send: now,
            last_recv: now,
            events: VecDeque::new(),
            stats: Stats::default(),
            config,
        })
    }

    // ----- application side -----

    /// Queues as much of `bytes` as the send buffer has room for; returns how many bytes
    /// were taken (0 after `shutdown_write` or failure). When it takes less than offered,
    /// [`Event::Writable`] says when to try again.
    pub fn write(&mut self, bytes: &[u8]) -> usize {
        if self.fin_requested || self.state != State::Open {
            return 0;
        }
        let n = self.send.write(bytes);
        if n < bytes.len() {
            self.write_blocked = true;
        }
        n
    }

    /// Moves received in-order bytes into `out`; returns how many (0 when none are ready —
    /// [`is_peer_finished`](Self::is_peer_finished) tells whether more can come).
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let n = self.recv.read(out);
        if self.recv.readable() == 0 {
            self.readable_signalled = false;
        }
        // Tell the peer about the opened window once it grew enough to matter (receiver-
        // side silly window syndrome avoidance, RFC 9293 §3.8.6.2.2).
        let threshold = (self.config.recv_buffer as u64 / 2).min(2 * self.mss as u64);
        if n > 0 && self.recv.window_end() >= self.advertised_edge + threshold {
            self.ack_now = true;
        }
        n
    }

    /// Half-closes: no more writes; a FIN follows the bytes already written. Reading goes on.
    pub fn shutdown_write(&mut self) {
        self.fin_requested = true;
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Bytes waiting to be read.
    pub fn readable(&self) -> usize {
        self.recv.readable()
    }

    /// Room in the send buffer.
    pub fn writable(&self) -> usize {
        if self.fin_requested || self.state != State::Open {
            0
        } else {
            self.send.free()
        }
    }

    /// Whether the peer half-closed (its FIN arrived in order).
    pub fn is_peer_finished(&self) -> bool {
        self.peer_finished
    }

    /// Whether both directions are finished and acknowledged.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the connection gave up.
    pub fn is_failed(&self) -> bool {
        self.state == State::Failed
    }

    /// Whether everything written (and the FIN, if requested) is acknowledged.
    pub fn is_flushed(&self) -> bool {
        self.segments.is_empty() && self.send.is_empty() && (!self.fin_requested || self.fin_acked)
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The smoothed round-trip time, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }

    /// The congestion window in bytes.
    pub fn congestion_window(&self) -> u64 {
        self.cc.window()
    }

    /// Bytes this connection holds in its buffers and bookkeeping (an estimate of its
    /// heap use): bounded by the configured buffers, whatever the peer sends.
    pub fn memory(&self) -> usize {
        self.send.len()
            + self.recv.readable()
            + self.recv.out_of_order()
            + self.recv.pieces() * 64
            + self.segments.len() * std::mem::size_of::<(u64, Segment)>()
    }

    /// The most [`memory`](Self::memory) can reach with this configuration.
    pub fn memory_bound(&self) -> usize {
        let c = &self.config;
        // Segments: at most one per byte of the send buffer, but never more than the
        // buffer divided by the smallest segment sent (1 byte) — in practice the buffer
        // over the payload size; bound it by the worst case.
        c.send_buffer * (1 + std::mem::size_of::<(u64, Segment)>())
            + c.recv_buffer
            + self.recv.max_pieces() * 64
    }

    /// Payload bytes per full packet.
    pub fn max_payload(&self) -> usize {
        self.mss
    }

    /// Bytes sent and neither acknowledged, SACKed nor deemed lost (RFC 6675's "pipe"),
    /// kept as a running sum so sending stays O(1) with a thousand segments in flight.
    fn flight(&self) -> u64 {
        #[cfg(test)]
        assert_eq!(
            (self.pipe, self.sacked_count),
            (
                self.segments.values().map(Segment::pipe).sum::<u64>(),
                self.segments.values().filter(|s| s.sacked).count()
            ),
            "pipe out of step"
        );
        self.pipe
    }

    fn current_rto(&self) -> Duration {
        let factor = 1u32 << self.backoff.min(16);
        self.rtt
            .rto()
            .saturating_mul(factor)
            .min(self.config.max_rto)
    }

    fn fail(&mut self, reason: FailReason) {
        if self.state != State::Failed {
            self.state = State::Failed;
            self.events.push_back(Event::Failed { reason });
        }
    }

    fn check_closed(&mut self) {
        if self.state == State::Open && self.fin_acked && self.peer_finished {
            self.state = State::Closed;
            self.rto_at = None;
            self.events.push_back(Event::Closed);
        }
    }

    /// The offset the peer should send next (the FIN counts one).
    fn rcv_nxt(&self) -> u64 {
        self.recv.next() + u64::from(self.peer_finished)
    }

    // ----- input -----

    /// A datagram arrived on the path. An `Err` says why it was ignored (count it, nothing
    /// else to do).
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) -> Result<(), InputError> {
        let r = self.input(now, bytes);
        match r {
            Ok(()) => self.stats.packets_received += 1,
            Err(_) => self.stats.packets_ignored += 1,
        }
        r
    }

    fn input(&mut self, now: Instant, bytes: &[u8]) -> Result<(), InputError> {
        if self.state == State::Failed {
            return Err(InputError::Failed);
        }
        let p = Packet::parse(bytes)?;
        if p.connection_id() != self.config.connection_id {
            return Err(InputError::WrongConnection(p.connection_id()));
        }
        let ack = unwrap(self.snd_una, p.ack());
        if ack > self.snd_nxt {
            return Err(InputError::AckOutOfRange);
        }
        let payload = p.payload();
        let seq = unwrap(self.recv.next(), p.seq());
        let end = seq.saturating_add(payload.len() as u64);
        if let Some(f) = self.peer_fin
            && end > f
            && !payload.is_empty()
        {
            return Err(InputError::BadFin);
        }
        if p.fin()
            && (self.peer_fin.is_some_and(|f| f != end)
                || end < self.recv.next()
                || end < self.recv.highest_end())
        {
            return Err(InputError::BadFin);
        }

        self.last_recv = now;
        self.timeouts = 0;
        self.on_ack(now, ack, u64::from(p.window()), &p);

        if !payload.is_empty() || p.fin() {
            if self.recv.out_of_order() > 0 {
                // May fill a hole: say so at once (RFC 5681 §4.2).
                self.ack_now = true;
            }
            let ins = self.recv.insert(seq, payload);
            if ins.out_of_order || (ins.new == 0 && !payload.is_empty()) {
                self.ack_now = true;
            }
            if ins.readable > 0 && !self.readable_signalled {
                self.readable_signalled = true;
                self.events.push_back(Event::Readable);
            }
            self.unacked_packets += 1;
            if self.unacked_packets >= 2 {
                self.ack_now = true;
            } else if self.ack_at.is_none() {
                self.ack_at = Some(now + self.config.ack_delay);
            }
        }
        if p.fin() {
            self.peer_fin = Some(end);
            self.ack_now = true;
        }
        if p.ping() {
            self.ack_now = true;
        }
        if let Some(f) = self.peer_fin
            && !self.peer_finished
            && self.recv.next() == f
        {
            self.peer_finished = true;
            self.events.push_back(Event::PeerFinished);
            self.check_closed();
        }
        Ok(())
    }

    fn on_ack(&mut self, now: Instant, ack: u64, window: u64, p: &Packet<'_>) {
        if ack < self.snd_una {
            return;
        }
        let advertised = ack.saturating_add(window);
        if self.peer_window_known {
            self.peer_edge = self.peer_edge.max(advertised);
        } else {
            // The first statement replaces the guess.
            self.peer_window_known = true;
            self.peer_edge = advertised;
        }

        // SACK blocks: mark fully covered segments.
        let mut newly_sacked = false;
        let mut delivered: Vec<(u64, Segment)> = Vec::new();
        for (s, e) in p.sacks() {
            let (s, e) = (unwrap(self.snd_una, s), unwrap(self.snd_una, e));
            if s >= e || s < ack || e > self.snd_nxt {
                continue;
            }
            for (&k, seg) in self.segments.range_mut(s..e) {
                if !seg.sacked && k + seg.span() <= e {
                    self.pipe -= seg.pipe();
                    self.sacked_count += 1;
                    seg.sacked = true;
                    seg.lost = false;
                    newly_sacked = true;
                    delivered.push((k, *seg));
                }
            }
        }

        let newly_acked = ack - self.snd_una;
        if newly_acked > 0 {
            let mut sample = None;
            while let Some(entry) = self.segments.first_entry() {
                let k = *entry.key();
                let seg = *entry.get();
                if k >= ack {
                    break;
                }
                entry.remove();
                self.pipe -= seg.pipe();
                self.sacked_count -= usize::from(seg.sacked);
                if k + seg.span() > ack {
                    // Partly acknowledged (the peer's window was smaller than assumed):
                    // keep the rest as its own segment.
                    let done = ack - k;
                    let rest = Segment {
                        len: seg.len.saturating_sub(done),
                        ..seg
                    };
                    self.pipe += rest.pipe();
                    self.sacked_count += usize::from(rest.sacked);
                    self.segments.insert(ack, rest);
                    break;
                }
                if !seg.sacked {
                    delivered.push((k, seg));
                }
                // Karn's rule: only segments sent once give an unambiguous round trip.
                if !seg.retransmitted && !seg.sacked {
                    sample = Some(now.saturating_duration_since(seg.sent_at));
                }
            }
            if let Some(rtt) = sample {
                self.rtt.sample(rtt);
                self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
            }
            self.snd_una = ack;
            self.send.ack(ack);
            if let Some(f) = self.fin_seq
                && ack > f
            {
                self.fin_acked = true;
            }
            self.dupacks = 0;
            self.backoff = 0;
            self.cc.on_ack(newly_acked, ack);
            if !self.cc.in_recovery() {
                self.recovery_start = None;
            }
            self.rto_at = if self.segments.is_empty() {
                None
            } else {
                Some(now + self.current_rto())
            };
            self.tlp_done = false;
            self.arm_tlp(now);
            if self.write_blocked && self.writable() > 0 {
                self.write_blocked = false;
                self.events.push_back(Event::Writable);
            }
            // NewReno partial ACK: the next hole was lost too (unless the path is known to
            // reorder: then RACK's timer decides).
            if !self.reordering_seen
                && let Some(start) = self.recovery_start
                && let Some(seg) = self.segments.values_mut().next()
                && !seg.sacked
                && !seg.lost
                && seg.sent_at < start
            {
                self.pipe -= seg.pipe();
                seg.lost = true;
            }
            self.check_closed();
        } else if !self.segments.is_empty()
            && (newly_sacked || (p.payload().is_empty() && !p.fin()))
        {
            // A duplicate ACK (RFC 5681 §2): nothing new acknowledged, data outstanding.
            self.dupacks += 1;
        }
        for (k, seg) in delivered {
            self.on_delivered(now, k, seg);
        }
        if advertised == self.peer_edge {
            // Segments starting beyond the newest window the peer stated were refused (the
            // first ones go out on a guessed window): resend them once it opens, without
            // treating that as congestion.
            for seg in self.segments.range_mut(advertised..).map(|(_, s)| s) {
                if !seg.sacked && seg.len > 0 {
                    self.pipe -= seg.pipe();
                    seg.lost = true;
                }
            }
        }
        self.detect_losses(now);
    }

    /// A segment was acknowledged or SACKed: advance RACK's record (RFC 8985 §6.2) and
    /// notice a spurious retransmission — one acknowledged sooner after it was sent than
    /// half the smallest round trip can only have been the original arriving late.
    fn on_delivered(&mut self, now: Instant, k: u64, seg: Segment) {
        let rtt = now.saturating_duration_since(seg.sent_at);
        let min_rtt = self.min_rtt.unwrap_or(Duration::ZERO);
        if seg.retransmitted && !seg.probe && rtt < min_rtt / 2 {
            self.stats.spurious_retransmissions += 1;
            self.reordering_seen = true;
            self.reo_mult = (self.reo_mult + 1).min(16);
            self.cc.undo();
            return;
        }
        if seg.retransmitted && rtt < min_rtt {
            // Ambiguous: RFC 8985 §6.2 step 2 ignores it.
            return;
        }
        let newer = self
            .rack
            .is_none_or(|r| (seg.sent_at, k) > (r.sent_at, r.seq));
        if newer {
            self.rack = Some(Rack {
                sent_at: seg.sent_at,
                seq: k,
                rtt,
            });
        }
    }

    /// RACK's reordering window: a quarter of the smallest round trip, widened after each
    /// spurious retransmission, never above the smoothed round trip (RFC 8985 §6.2).
    fn reorder_window(&self) -> Duration {
        let min_rtt = self.min_rtt.unwrap_or(self.config.min_rto);
        let w = (min_rtt / 4).saturating_mul(self.reo_mult);
        w.min(self.rtt.srtt().unwrap_or(w))
            .max(Duration::from_millis(1))
    }

    /// Marks segments lost and starts a recovery episode when a loss is new. A segment is
    /// lost when a segment sent after it was delivered and it has been out longer than
    /// that one's round trip plus the reordering window (RFC 8985 RACK), or — until the
    /// path showed it reorders — when [`DUP_THRESH`] segments above it were SACKed (RFC
    /// 6675 §5 IsLost) or three duplicate ACKs arrived (RFC 5681 §3.2). Segments that will
    /// qualify by time arm the reordering timer.
    fn detect_losses(&mut self, now: Instant) {
        self.rack_timer = None;
        if self.segments.is_empty() {
            return;
        }
        let mut first_lost: Option<u64> = None;
        // DupThresh: SACKed segments above a hole (only while the path has not shown that
        // it reorders; only when something is SACKed at all).
        if !self.reordering_seen && self.sacked_count > 0 {
            let mut sacked_above = 0u32;
            for (&k, seg) in self.segments.iter_mut().rev() {
                if seg.sacked {
                    sacked_above += 1;
                } else if !seg.lost && !seg.retransmitted && sacked_above >= DUP_THRESH {
                    self.pipe -= seg.pipe();
                    seg.lost = true;
                    first_lost = Some(k);
                }
            }
        }
        // Three duplicate ACKs without SACK information: the first segment.
        if self.dupacks >= DUP_THRESH
            && !self.reordering_seen
            && let Some((&k, seg)) = self.segments.iter_mut().next()
            && !seg.sacked
            && !seg.lost
        {
            self.pipe -= seg.pipe();
            seg.lost = true;
            first_lost = Some(k);
        }
        // RACK: segments sent before the newest delivered one, out for longer than its
        // round trip plus the reordering window. First transmissions go out in offset
        // order, so the scan stops at the first one sent after the RACK segment (any
        // retransmission beyond it was sent later still).
        if let Some(r) = self.rack {
            let reorder = self.reorder_window();
            let mut timer: Option<Instant> = None;
            for (&k, seg) in self.segments.iter_mut() {
                if (seg.sent_at, k) >= (r.sent_at, r.seq) {
                    if seg.retransmitted {
                        continue;
                    }
                    break;
                }
                if seg.sacked || seg.lost {
                    continue;
                }
                let deadline = seg.sent_at + r.rtt + reorder;
                if now >= deadline {
                    self.pipe -= seg.pipe();
                    seg.lost = true;
                    first_lost = Some(first_lost.map_or(k, |f| f.min(k)));
                } else {
                    timer = Some(timer.map_or(deadline, |t| t.min(deadline)));
                }
            }
            self.rack_timer = timer;
        }
        if let Some(k) = first_lost {
            let flight = self.flight();
            if self.cc.on_loss(k, flight, self.snd_nxt) {
                self.stats.fast_recoveries += 1;
                self.recovery_start = Some(now);
                self.retransmit_now = true;
            }
        }
    }

    // ----- timers -----

    /// When to call [`handle_timeout`](Self::handle_timeout) next, and why.
    pub fn poll_timeout(&self) -> Option<Timeout> {
        if self.state == State::Failed {
            return None;
        }
        let mut t = self.ack_at.map(|at| Timeout::new(at, "delayed ack"));
        t = Timeout::earliest(
            t,
            self.rack_timer.map(|at| Timeout::new(at, "reorder timer")),
        );
        t = Timeout::earliest(t, self.tlp_at.map(|at| Timeout::new(at, "tail loss probe")));
        if let Some(at) = self.rto_at {
            let reason = if self.segments.is_empty() {
                "window probe"
            } else {
                "retransmission"
            };
            t = Timeout::earliest(t, Some(Timeout::new(at, reason)));
        }
        if self.state == State::Open {
            t = Timeout::earliest(
                t,
                Some(Timeout::new(
                    self.last_send + self.config.keepalive_interval,
                    "keepalive",
                )),
            );
            t = Timeout::earliest(
                t,
                Some(Timeout::new(
                    self.last_recv + self.config.idle_timeout,
                    "idle timeout",
                )),
            );
        }
        t
    }

    /// Time passed: fire whatever is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Failed {
            return;
        }
        if self.state == State::Open && now >= self.last_recv + self.config.idle_timeout {
            self.fail(FailReason::IdleTimeout(self.config.idle_timeout));
            return;
        }
        if self.ack_at.is_some_and(|at| now >= at) {
            self.ack_at = None;
            self.ack_now = true;
        }
        if self.rack_timer.is_some_and(|at| now >= at) {
            self.detect_losses(now);
        }
        if self.tlp_at.is_some_and(|at| now >= at) {
            self.tlp_at = None;
            self.tlp_done = true;
            self.tlp_pending = true;
        }
        if let Some(at) = self.rto_at
            && now >= at
        {
            self.timeouts += 1;
            if self.timeouts > self.config.max_timeouts {
                self.fail(FailReason::Unacknowledged {
                    timeouts: self.timeouts - 1,
                });
                return;
            }
            self.backoff = (self.backoff + 1).min(16);
            self.tlp_at = None;
            self.tlp_pending = false;
            if self.segments.is_empty() {
                // Zero-window probe: a PING makes the peer restate its window.
                self.ping_pending = true;
            } else {
                self.stats.timeouts += 1;
                let flight = self.flight();
                self.cc.on_timeout(flight, self.snd_nxt);
                for seg in self.segments.values_mut() {
                    if !seg.sacked {
                        self.pipe -= seg.pipe();
                        seg.lost = true;
                    }
                }
                self.recovery_start = None;
                self.dupacks = 0;
                self.retransmit_now = true;
                // If the peer's window keeps the retransmission back, a PING still asks
                // the peer to restate it.
                if let Some((&k, seg)) = self.segments.iter().find(|(_, s)| !s.sacked)
                    && k + seg.len > self.peer_edge
                {
                    self.ping_pending = true;
                }
            }
            self.rto_at = Some(now + self.current_rto());
        }
        if self.state == State::Open && now >= self.last_send + self.config.keepalive_interval {
            self.ping_pending = true;
        }
    }

    // ----- output -----

    /// Writes the next datagram to send into `buf` (which should hold
    /// [`Config::max_datagram_size`] bytes; a smaller one limits the packet) and returns its
    /// length, or `None` when there is nothing to send. `now` stamps the packet for RTT
    /// measurement and arms the retransmission timer.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if self.state == State::Failed {
            return None;
        }
        let limit = buf.len().min(self.config.max_datagram_size);
        if limit < packet::HEADER_LEN + MAX_SACK_BLOCKS * packet::SACK_BLOCK_LEN {
            return None;
        }
        let room = limit - MAX_HEADER_LEN;
        let n = if let Some(n) = self.tail_probe(now, buf, room) {
            n
        } else if let Some(n) = self
            .retransmission(now, buf, room)
            .or_else(|| self.new_data(now, buf, room))
        {
            self.arm_tlp(now);
            n
        } else {
            self.control(buf)?
        };
        self.after_send(now);
        Some(n)
    }

    /// Arms the tail-loss probe two smoothed round trips out (plus the peer's ACK delay
    /// when a single segment is in flight, RFC 8985 §7.2) — unless it would not come
    /// before the RTO, a probe already went out for this tail, or loss recovery is on.
    fn arm_tlp(&mut self, now: Instant) {
        self.tlp_at = None;
        if self.tlp_done
            || self.segments.is_empty()
            || self.cc.in_recovery()
            || self.state != State::Open
        {
            return;
        }
        let Some(srtt) = self.rtt.srtt() else {
            return;
        };
        let mut pto = (srtt * 2).max(Duration::from_millis(10));
        if self.pipe <= self.mss as u64 {
            pto += self.config.ack_delay;
        }
        let at = now + pto;
        if self.rto_at.is_none_or(|rto| at < rto) {
            self.tlp_at = Some(at);
        }
    }

    /// The due tail-loss probe: the highest segment still in flight, sent again.
    fn tail_probe(&mut self, now: Instant, buf: &mut [u8], room: usize) -> Option<usize> {
        if !self.tlp_pending {
            return None;
        }
        self.tlp_pending = false;
        let (&k, seg) = self
            .segments
            .iter()
            .rev()
            .find(|(_, s)| !s.sacked && !s.lost)?;
        let len = seg.len as usize;
        if len > room || k + seg.len > self.peer_edge {
            return None;
        }
        let flags = if seg.fin { FIN } else { 0 };
        let n = self.emit(flags, k, len, buf)?;
        if let Some(seg) = self.segments.get_mut(&k) {
            // Still in the pipe: a probe neither adds nor removes bytes in flight.
            seg.retransmitted = true;
            seg.probe = true;
            seg.sent_at = now;
        }
        self.stats.retransmissions += 1;
        self.stats.tail_probes += 1;
        Some(n)
    }

    fn header(&self, flags: u8, seq: u64) -> Repr {
        let mut sacks = SackBlocks::default();
        for (s, e) in self.recv.sack_blocks(MAX_SACK_BLOCKS) {
            sacks.push((truncate(s), truncate(e)));
        }
        Repr {
            flags,
            connection_id: self.config.connection_id,
            seq: truncate(seq),
            ack: truncate(self.rcv_nxt()),
            window: u32::try_from(self.recv.window()).unwrap_or(u32::MAX),
            sacks,
        }
    }

    fn emit(&mut self, flags: u8, seq: u64, payload_len: usize, buf: &mut [u8]) -> Option<usize> {
        let repr = self.header(flags, seq);
        let head = repr.emit_header(buf).ok()?;
        let n = self.send.copy(seq, buf.get_mut(head..head + payload_len)?);
        Some(head + n)
    }

    fn retransmission(&mut self, now: Instant, buf: &mut [u8], room: usize) -> Option<usize> {
        let flight = self.flight();
        let cwnd = self.cc.window();
        let (&k, seg) = self.segments.iter().find(|(_, s)| s.lost)?;
        let len = seg.len as usize;
        if len > room || k + seg.len > self.peer_edge {
            return None;
        }
        if !self.retransmit_now && flight + seg.span() > cwnd {
            return None;
        }
        let flags = if seg.fin { FIN } else { 0 };
        let n = self.emit(flags, k, len, buf)?;
        if let Some(seg) = self.segments.get_mut(&k) {
            seg.lost = false;
            seg.retransmitted = true;
            seg.probe = false;
            seg.sent_at = now;
            self.pipe += seg.pipe();
        }
        self.retransmit_now = false;
        self.stats.retransmissions += 1;
        if self.rto_at.is_none() || flight == 0 {
            // Nothing else in flight: time this segment, not an older send.
            self.rto_at = Some(now + self.current_rto());
        }
        Some(n)
    }

    fn new_data(&mut self, now: Instant, buf: &mut [u8], room: usize) -> Option<usize> {
        if self.state != State::Open || self.fin_seq.is_some() {
            return None;
        }
        let available = self.send.end().saturating_sub(self.snd_nxt);
        let window_room = self.peer_edge.saturating_sub(self.snd_nxt);
        let flight = self.flight();
        let cwnd_room = self.cc.window().saturating_sub(flight);
        let len = available
            .min(window_room)
            .min(cwnd_room)
            .min(room.min(self.mss) as u64);
        let all = len == available;
        let fin = self.fin_requested && all;
        if len == 0 && !fin {
            if available > 0
                && window_room == 0
                && self.segments.is_empty()
                && self.rto_at.is_none()
            {
                // Persist timer: probe the closed window.
                self.rto_at = Some(now + self.current_rto());
            }
            return None;
        }
        // Sender-side silly window avoidance: a short segment only when it is all there
        // is, or nothing is outstanding.
        if len < self.mss as u64 && !all && flight > 0 {
            return None;
        }
        let seq = self.snd_nxt;
        let n = self.emit(if fin { FIN } else { 0 }, seq, len as usize, buf)?;
        let seg = Segment {
            len,
            fin,
            sent_at: now,
            retransmitted: false,
            sacked: false,
            lost: false,
            probe: false,
        };
        self.pipe += seg.pipe();
        self.segments.insert(seq, seg);
        self.snd_nxt = seq + len + u64::from(fin);
        if fin {
            self.fin_seq = Some(seq + len);
        }
        if self.rto_at.is_none() || flight == 0 {
            self.rto_at = Some(now + self.current_rto());
        }
        Some(n)
    }

    fn control(&mut self, buf: &mut [u8]) -> Option<usize> {
        if !self.ack_now && !self.ping_pending {
            return None;
        }
        let flags = if self.ping_pending && self.state == State::Open {
            PING
        } else {
            0
        };
        self.ping_pending = false;
        // A bare ACK's sequence number is the end of the data (never past the FIN).
        self.emit(flags, self.fin_seq.unwrap_or(self.snd_nxt), 0, buf)
    }

    fn after_send(&mut self, now: Instant) {
        self.ack_now = false;
        self.ack_at = None;
        self.unacked_packets = 0;
        self.advertised_edge = self.recv.window_end();
        self.last_send = now;
        self.stats.packets_sent += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            connection_id: 7,
            ..Config::default()
        }
    }

    fn drain(c: &mut Connection, now: Instant) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 1500];
        while let Some(n) = c.poll_transmit(now, &mut buf) {
            out.push(buf[..n].to_vec());
            assert!(out.len() < 100_000, "transmit loop");
        }
        out
    }

    fn events(c: &mut Connection) -> Vec<Event> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    fn read_all(c: &mut Connection, into: &mut Vec<u8>) {
        let mut buf = [0u8; 4096];
        loop {
            let n = c.read(&mut buf);
            if n == 0 {
                break;
            }
            into.extend_from_slice(&buf[..n]);
        }
    }

    /// Two connections joined by a path that drops the datagrams `drop` selects (by
    /// direction and running index); runs until both sides have written and read
    /// everything, with a fixed one-way delay applied by stepping the clock.
    struct Pair {
        a: Connection,
        b: Connection,
        now: Instant,
        sent: [usize; 2],
    }

    impl Pair {
        fn new(ca: Config, cb: Config) -> Self {
            let now = Instant::now();
            Pair {
                a: Connection::new(ca, now).unwrap(),
                b: Connection::new(cb, now).unwrap(),
                now,
                sent: [0; 2],
            }
        }

        /// One round: both sides send, the clock moves 10 ms, both receive; timers fire.
        fn step(&mut self, drop: &mut dyn FnMut(usize, usize) -> bool) {
            let from_a = drain(&mut self.a, self.now);
            let from_b = drain(&mut self.b, self.now);
            self.now += Duration::from_millis(10);
            for d in from_a {
                self.sent[0] += 1;
                if !drop(0, self.sent[0]) {
                    let _ = self.b.handle_input(self.now, &d);
                }
            }
            for d in from_b {
                self.sent[1] += 1;
                if !drop(1, self.sent[1]) {
                    let _ = self.a.handle_input(self.now, &d);
                }
            }
            for c in [&mut self.a, &mut self.b] {
                if c.poll_timeout().is_some_and(|t| t.at <= self.now) {
                    c.handle_timeout(self.now);
                }
            }
        }
    }

    fn data(n: usize, salt: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ salt).collect()
    }

    /// Writes `data` through `src` to `dst` over `pair`, returning what `dst` read.
    fn transfer(
        pair: &mut Pair,
        to_send: [&[u8]; 2],
        drop: &mut dyn FnMut(usize, usize) -> bool,
        max_rounds: usize,
    ) -> [Vec<u8>; 2] {
        let mut got = [Vec::new(), Vec::new()];
        let mut off = [0usize; 2];
        for _ in 0..max_rounds {
            off[0] += pair.a.write(&to_send[0][off[0]..]);
            off[1] += pair.b.write(&to_send[1][off[1]..]);
            pair.step(drop);
            read_all(&mut pair.b, &mut got[0]);
            read_all(&mut pair.a, &mut got[1]);
            if got[0].len() == to_send[0].len() && got[1].len() == to_send[1].len() {
                break;
            }
        }
        got
    }

    #[test]
    fn transfers_both_ways() {
        let mut p = Pair::new(config(), config());
        let (x, y) = (data(300_000, 1), data(200_000, 2));
        let got = transfer(&mut p, [&x, &y], &mut |_, _| false, 1000);
        assert!(got[0] == x && got[1] == y);
        assert_eq!(p.a.stats().retransmissions, 0);
        assert!(p.a.srtt().is_some());
    }

    #[test]
    fn sack_repairs_a_single_loss_without_timeout() {
        let mut p = Pair::new(config(), config());
        let x = data(100_000, 3);
        let got = transfer(&mut p, [&x, &[]], &mut |dir, i| dir == 0 && i == 3, 1000);
        assert!(got[0] == x);
        let s = p.a.stats();
        assert_eq!(
            (s.retransmissions, s.fast_recoveries, s.timeouts),
            (1, 1, 0)
        );
    }

    #[test]
    fn tail_loss_probe_repairs_a_lost_tail_without_timeout() {
        let mut p = Pair::new(config(), config());
        let warm = data(20_000, 13);
        assert!(transfer(&mut p, [&warm, &[]], &mut |_, _| false, 100)[0] == warm);
        assert!(p.a.srtt().is_some());
        // A 5-segment burst whose last datagram is lost: no later segment can reveal it.
        let x = data(5 * p.a.max_payload(), 14);
        let last = p.sent[0] + 5;
        let got = transfer(&mut p, [&x, &[]], &mut |dir, i| dir == 0 && i == last, 100);
        assert!(got[0] == x);
        let s = p.a.stats();
        assert_eq!((s.tail_probes, s.timeouts), (1, 0), "{s:?}");
    }

    #[test]
    fn receiver_reports_sack_blocks() {
        let now = Instant::now();
        let mut a = Connection::new(config(), now).unwrap();
        let mut b = Connection::new(config(), now).unwrap();
        a.write(&data(10_000, 4));
        let pkts = drain(&mut a, now);
        assert!(pkts.len() >= 6);
        // Deliver 0, skip 1, deliver 2 and 4.
        for i in [0, 2, 4] {
            b.handle_input(now, &pkts[i]).unwrap();
        }
        let acks = drain(&mut b, now);
        let last = Packet::parse(acks.last().unwrap()).unwrap();
        let mss = a.max_payload() as u32;
        assert_eq!(last.ack(), mss);
        let sacks: Vec<_> = last.sacks().collect();
        assert_eq!(sacks, vec![(4 * mss, 5 * mss), (2 * mss, 3 * mss)]);
    }

    #[test]
    fn three_duplicate_acks_trigger_fast_retransmit() {
        let now = Instant::now();
        let mut a = Connection::new(config(), now).unwrap();
        a.write(&data(10_000, 5));
        let first = drain(&mut a, now);
        assert!(first.len() >= 5);
        // Plain cumulative duplicate ACKs, no SACK (as a SACK-less peer would send).
        let mut dup = [0u8; 64];
        let n = Repr {
            connection_id: 7,
            window: 1 << 20,
            ..Repr::default()
        }
        .emit(&[], &mut dup)
        .unwrap();
        for i in 0..3 {
            assert!(
                drain(&mut a, now).is_empty(),
                "no retransmit after {i} dupacks"
            );
            a.handle_input(now, &dup[..n]).unwrap();
        }
        let again = drain(&mut a, now);
        let p = Packet::parse(&again[0]).unwrap();
        assert_eq!((p.seq(), p.payload().len()), (0, a.max_payload()));
        assert_eq!(a.stats().fast_recoveries, 1);
    }

    #[test]
    fn rto_backs_off_then_fails() {
        let cfg = Config {
            idle_timeout: Duration::from_secs(1000),
            keepalive_interval: Duration::from_secs(999),
            ..config()
        };
        let start = Instant::now();
        let mut a = Connection::new(cfg, start).unwrap();
        a.write(b"anyone there?");
        assert_eq!(drain(&mut a, start).len(), 1);
        let mut gaps = Vec::new();
        let mut last = start;
        loop {
            let t = a.poll_timeout().expect("a timer while data is outstanding");
            assert_eq!(t.reason, "retransmission");
            gaps.push((t.at - last).as_secs());
            last = t.at;
            a.handle_timeout(t.at);
            if a.is_failed() {
                break;
            }
            let sent = drain(&mut a, t.at);
            assert_eq!(sent.len(), 1, "one retransmission per timeout");
            assert!(gaps.len() < 20);
        }
        assert_eq!(gaps, vec![1, 2, 4, 8, 10, 10, 10, 10, 10]);
        assert_eq!(
            events(&mut a),
            vec![Event::Failed {
                reason: FailReason::Unacknowledged { timeouts: 8 }
            }]
        );
        assert_eq!(a.poll_timeout(), None);
        assert_eq!(a.handle_input(last, &[]), Err(InputError::Failed));
    }

    #[test]
    fn keepalives_then_idle_failure() {
        let start = Instant::now();
        let mut a = Connection::new(config(), start).unwrap();
        let mut pings = 0;
        while !a.is_failed() {
            let t = a.poll_timeout().unwrap();
            a.handle_timeout(t.at);
            for d in drain(&mut a, t.at) {
                assert!(Packet::parse(&d).unwrap().ping());
                pings += 1;
            }
            assert!(t.at - start <= Duration::from_secs(30));
        }
        assert_eq!(pings, 2, "at 10 s and 20 s");
        assert_eq!(
            events(&mut a),
            vec![Event::Failed {
                reason: FailReason::IdleTimeout(Duration::from_secs(30))
            }]
        );
    }

    #[test]
    fn keepalive_is_answered_and_keeps_both_alive() {
        let mut p = Pair::new(config(), config());
        for _ in 0..10_000 {
            // 100 s of silence apart from keepalives.
            p.step(&mut |_, _| false);
        }
        assert!(!p.a.is_failed() && !p.b.is_failed());
        assert!(p.a.stats().packets_received >= 10);
    }

    #[test]
    fn half_close_both_directions() {
        let mut p = Pair::new(config(), config());
        let x = data(50_000, 6);
        let y = data(70_000, 7);
        p.a.write(&x);
        p.a.shutdown_write();
        assert_eq!(p.a.write(b"late"), 0, "no writes after shutdown");
        let mut got_b = Vec::new();
        for _ in 0..100 {
            p.step(&mut |_, _| false);
            read_all(&mut p.b, &mut got_b);
        }
        assert!(got_b == x);
        assert!(p.b.is_peer_finished());
        assert!(events(&mut p.b).contains(&Event::PeerFinished));
        assert!(!p.a.is_closed() && !p.b.is_closed(), "b has not finished");
        // The other half still works.
        let mut off = p.b.write(&y);
        let mut got_a = Vec::new();
        for _ in 0..200 {
            off += p.b.write(&y[off..]);
            if off == y.len() {
                p.b.shutdown_write();
            }
            p.step(&mut |_, _| false);
            read_all(&mut p.a, &mut got_a);
        }
        assert!(
            got_a == y,
            "{} of {}, {:?} {:?}",
            got_a.len(),
            y.len(),
            p.a.stats(),
            p.b.stats()
        );
        assert!(p.a.is_closed() && p.b.is_closed());
        assert!(events(&mut p.a).contains(&Event::Closed));
        assert!(events(&mut p.b).contains(&Event::Closed));
        assert!(p.a.poll_timeout().is_none() && p.b.poll_timeout().is_none());
    }

    #[test]
    fn fin_survives_loss() {
        let mut p = Pair::new(config(), config());
        p.a.shutdown_write();
        p.b.shutdown_write();
        // Lose every side's first two packets (the FINs and their first retransmissions).
        for _ in 0..500 {
            p.step(&mut |_, i| i <= 2);
        }
        assert!(p.a.is_closed() && p.b.is_closed());
    }

    #[test]
    fn flow_control_stalls_and_resumes() {
        let small = Config {
            recv_buffer: 5000,
            ..config()
        };
        let mut p = Pair::new(config(), small);
        let x = data(40_000, 8);
        let mut off = p.a.write(&x);
        for _ in 0..300 {
            p.step(&mut |_, _| false);
        }
        // b never read: exactly its buffer is held, the rest waits at a.
        assert_eq!(p.b.readable(), 5000);
        assert!(off > 5000 && p.a.send.len() as u64 == off as u64 - 5000);
        assert!(p.a.stats().packets_sent < 100, "probes back off");
        let timeouts_while_stalled = p.a.stats().timeouts;
        let mut got = Vec::new();
        for _ in 0..2000 {
            off += p.a.write(&x[off..]);
            read_all(&mut p.b, &mut got);
            p.step(&mut |_, _| false);
            if got.len() == x.len() {
                break;
            }
        }
        assert!(got == x);
        // Before b's first packet a assumed a 10-segment window and b trimmed the excess,
        // so a few timeouts repaired that; none after.
        assert_eq!(p.a.stats().timeouts, timeouts_while_stalled);
    }

    #[test]
    fn writable_after_a_full_send_buffer_drains() {
        let small = Config {
            send_buffer: 4000,
            ..config()
        };
        let mut p = Pair::new(small, config());
        let x = data(10_000, 12);
        assert_eq!(p.a.write(&x), 4000);
        assert_eq!(p.a.writable(), 0);
        assert!(events(&mut p.a).is_empty());
        for _ in 0..10 {
            p.step(&mut |_, _| false);
        }
        assert_eq!(events(&mut p.a), vec![Event::Writable]);
        assert_eq!(p.a.writable(), 4000);
        assert_eq!(events(&mut p.b), vec![Event::Readable]);
        assert!(p.a.is_flushed());
    }

    #[test]
    fn window_probe_recovers_a_lost_update() {
        let small = Config {
            recv_buffer: 3000,
            ..config()
        };
        let mut p = Pair::new(config(), small);
        let x = data(20_000, 9);
        let mut off = p.a.write(&x);
        for _ in 0..50 {
            p.step(&mut |_, _| false);
        }
        let mut got = Vec::new();
        read_all(&mut p.b, &mut got);
        // b's window update is lost; a's probe must find the open window.
        let lost_from = p.sent[1] + 1;
        p.step(&mut |dir, i| dir == 1 && i == lost_from);
        for _ in 0..2000 {
            off += p.a.write(&x[off..]);
            read_all(&mut p.b, &mut got);
            p.step(&mut |_, _| false);
            if got.len() == x.len() {
                break;
            }
        }
        assert!(got == x);
    }

    #[test]
    fn survives_heavy_loss_and_duplication() {
        let mut p = Pair::new(config(), config());
        let x = data(200_000, 10);
        let y = data(100_000, 11);
        let mut rng = crate::rng::Rng::seed_from_u64(1);
        let got = transfer(&mut p, [&x, &y], &mut |_, _| rng.below(100) < 20, 100_000);
        assert!(got[0] == x && got[1] == y);
        assert!(p.a.stats().retransmissions > 0);
    }

    #[test]
    fn ignores_foreign_and_hostile_packets() {
        let now = Instant::now();
        let mut a = Connection::new(config(), now).unwrap();
        let mut buf = [0u8; 64];
        let emit = |r: Repr, payload: &[u8], buf: &mut [u8; 64]| {
            let n = r.emit(payload, buf).unwrap();
            buf[..n].to_vec()
        };
        let foreign = emit(
            Repr {
                connection_id: 8,
                ..Repr::default()
            },
            b"x",
            &mut buf,
        );
        assert_eq!(
            a.handle_input(now, &foreign),
            Err(InputError::WrongConnection(8))
        );
        let future_ack = emit(
            Repr {
                connection_id: 7,
                ack: 10,
                ..Repr::default()
            },
            &[],
            &mut buf,
        );
        assert_eq!(
            a.handle_input(now, &future_ack),
            Err(InputError::AckOutOfRange)
        );
        let fin = emit(
            Repr {
                connection_id: 7,
                flags: FIN,
                seq: 0,
                ..Repr::default()
            },
            b"abc",
            &mut buf,
        );
        assert_eq!(a.handle_input(now, &fin), Ok(()));
        let beyond = emit(
            Repr {
                connection_id: 7,
                seq: 3,
                ..Repr::default()
            },
            b"d",
            &mut buf,
        );
        assert_eq!(a.handle_input(now, &beyond), Err(InputError::BadFin));
        let other_fin = emit(
            Repr {
                connection_id: 7,
                flags: FIN,
                seq: 0,
                ..Repr::default()
            },
            b"ab",
            &mut buf,
        );
        assert_eq!(a.handle_input(now, &other_fin), Err(InputError::BadFin));
        assert_eq!(
            a.handle_input(now, b"junk"),
            Err(InputError::Packet(PacketError::Truncated(4)))
        );
        assert_eq!(a.readable(), 3);
        assert!(a.is_peer_finished());
        assert_eq!(a.stats().packets_ignored, 5);
    }

    #[test]
    fn rejects_bad_config() {
        let now = Instant::now();
        let bad = [
            Config {
                max_datagram_size: 40,
                ..config()
            },
            Config {
                recv_buffer: 0,
                ..config()
            },
            Config {
                send_buffer: MAX_BUFFER + 1,
                ..config()
            },
            Config {
                keepalive_interval: Duration::from_secs(30),
                ..config()
            },
            Config {
                min_rto: Duration::ZERO,
                ..config()
            },
            Config {
                ack_delay: Duration::MAX,
                ..config()
            },
        ];
        for c in bad {
            assert!(Connection::new(c, now).is_err());
        }
    }
}
