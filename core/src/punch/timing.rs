//! When to punch, without synchronised clocks (libp2p DCUtR's scheme).
//!
//! The initiator A sends CONNECT over the signaling channel at `sent`; B answers at once and
//! A receives the answer at `received`: `rtt = received − sent`. A then sends SYNC and
//! starts punching `rtt / 2` later — about when SYNC reaches B, which starts punching on
//! receipt (after `responder_delay`, zero unless the caller wants a margin). Both opens so
//! land within the signaling path's asymmetry of each other, with no NTP. An SNTP offset,
//! when a caller has one, is not needed here.

use std::time::{Duration, Instant};

/// The longest round trip accepted: beyond it the mapping the punch relies on may expire
/// before both sides start.
pub const MAX_RTT: Duration = Duration::from_secs(10);

/// Both sides' start instants, from the initiator's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PunchSchedule {
    /// The measured round trip.
    pub rtt: Duration,
    /// When the initiator sends SYNC (the instant the schedule was made).
    pub sync_at: Instant,
    /// When the initiator starts punching: `sync_at + rtt / 2 + margin`.
    pub initiator_start: Instant,
    /// How long the responder waits after receiving SYNC (the margin; it carries it in SYNC).
    pub responder_delay: Duration,
}

impl PunchSchedule {
    /// The responder's start instant, given when SYNC arrived on its own clock.
    pub fn responder_start(&self, sync_received: Instant) -> Instant {
        sync_received + self.responder_delay
    }
}

/// Why no schedule could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimingError {
    /// The reply came before the request (a clock or bookkeeping bug in the caller).
    #[error("reply received before the request was sent")]
    NegativeRtt,
    /// The round trip exceeds [`MAX_RTT`].
    #[error("round trip {0:?} exceeds the maximum")]
    RttTooLong(Duration),
}

/// The schedule for a CONNECT sent at `sent`, answered at `received`; SYNC goes out at
/// `received`. `margin` delays both starts equally (time for the caller to open sockets).
pub fn schedule_from_rtt(
    sent: Instant,
    received: Instant,
    margin: Duration,
) -> Result<PunchSchedule, TimingError> {
    let rtt = received
        .checked_duration_since(sent)
        .ok_or(TimingError::NegativeRtt)?;
    if rtt > MAX_RTT {
        return Err(TimingError::RttTooLong(rtt));
    }
    Ok(PunchSchedule {
        rtt,
        sync_at: received,
        initiator_start: received + rtt / 2 + margin,
        responder_delay: margin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_start_together_on_a_symmetric_path() {
        let t0 = Instant::now();
        // 80 ms round trip: 40 ms each way.
        let s = schedule_from_rtt(t0, t0 + Duration::from_millis(80), Duration::from_millis(5))
            .expect("schedule");
        assert_eq!(s.rtt, Duration::from_millis(80));
        assert_eq!(s.initiator_start, t0 + Duration::from_millis(125));
        // SYNC arrives at B 40 ms after it left A.
        let b = s.responder_start(s.sync_at + Duration::from_millis(40));
        assert_eq!(b, s.initiator_start);
    }

    #[test]
    fn asymmetric_path_skews_by_half_the_asymmetry() {
        let t0 = Instant::now();
        // A→B 30 ms, B→A 50 ms.
        let s = schedule_from_rtt(t0, t0 + Duration::from_millis(80), Duration::ZERO)
            .expect("schedule");
        let b = s.responder_start(s.sync_at + Duration::from_millis(30));
        assert_eq!(s.initiator_start - b, Duration::from_millis(10));
    }

    #[test]
    fn rejects_nonsense() {
        let t0 = Instant::now();
        assert_eq!(
            schedule_from_rtt(t0 + Duration::from_millis(1), t0, Duration::ZERO),
            Err(TimingError::NegativeRtt)
        );
        assert_eq!(
            schedule_from_rtt(t0, t0 + Duration::from_secs(11), Duration::ZERO),
            Err(TimingError::RttTooLong(Duration::from_secs(11)))
        );
        assert!(schedule_from_rtt(t0, t0, Duration::ZERO).is_ok());
    }
}
