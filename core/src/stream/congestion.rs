//! Congestion control: NewReno (RFC 5681 slow start and congestion avoidance, RFC 6582 /
//! RFC 6675 fast recovery driven by the SACK scoreboard).

/// A NewReno congestion window in bytes.
///
/// * Slow start: the window grows by the bytes acknowledged, at most two segments per ACK
///   (RFC 3465 appropriate byte counting, L = 2).
/// * Congestion avoidance: one segment per window's worth of acknowledged bytes.
/// * Loss (fast retransmit): `ssthresh = max(flight / 2, 2·MSS)`, window = ssthresh, and no
///   further cut until everything sent before the loss is acknowledged (one reduction per
///   window of data, RFC 6582's recovery point).
/// * Retransmission timeout: `ssthresh` as above, window = one segment (RFC 5681 §3.1's loss
///   window).
///
/// The window never grows beyond `max` (the send buffer bounds what can be in flight
/// anyway; a window larger than that would only grow without being exercised).
#[derive(Debug, Clone)]
pub struct NewReno {
    mss: u64,
    cwnd: u64,
    ssthresh: u64,
    max: u64,
    acked: u64,
    recovery_end: Option<u64>,
    /// No loss before this offset cuts the window again (set by a timeout, whose cut
    /// already covers everything then in flight).
    guard: u64,
    /// Window and threshold before the last cut, to restore if it proves spurious.
    prior: Option<(u64, u64)>,
}

impl NewReno {
    /// A window of `initial_segments` segments of `mss` bytes (RFC 6928 suggests 10),
    /// capped at `max` bytes.
    pub fn new(mss: usize, initial_segments: usize, max: usize) -> Self {
        let mss = mss.max(1) as u64;
        let max = (max as u64).max(2 * mss);
        NewReno {
            mss,
            cwnd: (mss * initial_segments.max(1) as u64).min(max),
            ssthresh: u64::MAX,
            max,
            acked: 0,
            recovery_end: None,
            guard: 0,
            prior: None,
        }
    }

    /// The congestion window in bytes.
    pub fn window(&self) -> u64 {
        self.cwnd
    }

    /// The slow-start threshold (`u64::MAX` until the first loss).
    pub fn ssthresh(&self) -> u64 {
        self.ssthresh
    }

    /// Whether a loss episode is being repaired.
    pub fn in_recovery(&self) -> bool {
        self.recovery_end.is_some()
    }

    /// `acked` new bytes were cumulatively acknowledged, up to offset `una`.
    pub fn on_ack(&mut self, acked: u64, una: u64) {
        if let Some(end) = self.recovery_end {
            if una < end {
                // Partial ACK: hold the window while the holes are repaired.
                return;
            }
            self.recovery_end = None;
            self.cwnd = self.ssthresh;
            self.acked = 0;
            return;
        }
        if self.cwnd < self.ssthresh {
            self.cwnd += acked.min(2 * self.mss);
        } else {
            self.acked += acked;
            if self.acked >= self.cwnd {
                self.acked -= self.cwnd;
                self.cwnd += self.mss;
            }
        }
        self.cwnd = self.cwnd.min(self.max);
    }

    /// The segment at offset `lost` was found lost with `flight` bytes outstanding and
    /// `next` the next offset to send; returns whether this started a new recovery episode
    /// (and cut the window).
    pub fn on_loss(&mut self, lost: u64, flight: u64, next: u64) -> bool {
        if self.recovery_end.is_some() || lost < self.guard {
            return false;
        }
        self.prior = Some((self.cwnd, self.ssthresh));
        self.ssthresh = (flight / 2).max(2 * self.mss);
        self.cwnd = self.ssthresh;
        self.acked = 0;
        self.recovery_end = Some(next);
        true
    }

    /// The last fast-retransmit cut was for nothing (the "lost" segment arrived after
    /// all): restore the window and threshold from before it and leave recovery (the undo
    /// of RFC 3708 / RFC 4015 Eifel response, without timestamps).
    pub fn undo(&mut self) {
        if let Some((cwnd, ssthresh)) = self.prior.take() {
            self.cwnd = self.cwnd.max(cwnd);
            self.ssthresh = self.ssthresh.max(ssthresh);
            self.recovery_end = None;
        }
    }

    /// The retransmission timer expired with `flight` bytes outstanding.
    pub fn on_timeout(&mut self, flight: u64, next: u64) {
        if self.recovery_end.is_none() && next > self.guard {
            self.ssthresh = (flight / 2).max(2 * self.mss);
        }
        self.cwnd = self.mss;
        self.acked = 0;
        self.recovery_end = None;
        self.prior = None;
        self.guard = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_avoidance_recovery_timeout() {
        let mut cc = NewReno::new(1000, 10, 1_000_000);
        assert_eq!(cc.window(), 10_000);
        cc.on_ack(1000, 1000);
        cc.on_ack(5000, 6000);
        assert_eq!(cc.window(), 13_000, "slow start, at most 2 MSS per ACK");
        assert!(cc.on_loss(8000, 12_000, 20_000));
        assert_eq!((cc.window(), cc.ssthresh()), (6000, 6000));
        assert!(!cc.on_loss(9000, 6000, 21_000), "one cut per window");
        let mut undone = cc.clone();
        undone.undo();
        assert_eq!((undone.window(), undone.in_recovery()), (13_000, false));
        undone.undo();
        assert_eq!(undone.window(), 13_000, "one undo per cut");
        cc.on_ack(1000, 15_000);
        assert_eq!(cc.window(), 6000, "partial ACK holds the window");
        assert!(cc.in_recovery());
        cc.on_ack(5000, 20_000);
        assert!(!cc.in_recovery());
        // Congestion avoidance: +1 MSS per window of ACKed bytes.
        for _ in 0..6 {
            cc.on_ack(1000, 30_000);
        }
        assert_eq!(cc.window(), 7000);
        cc.on_timeout(7000, 40_000);
        assert_eq!((cc.window(), cc.ssthresh()), (1000, 3500));
        assert!(
            !cc.on_loss(39_000, 1000, 40_000),
            "covered by the timeout's cut"
        );
        cc.on_ack(1000, 40_000);
        assert_eq!(cc.window(), 2000, "slow start again after the timeout");
        assert!(cc.on_loss(40_000, 2000, 42_000));
        assert_eq!(cc.window(), 2000, "never below 2 MSS");
    }
}
