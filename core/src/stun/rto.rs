//! A retransmission-timeout estimator from measured round trips (RFC 6298 §2, as RFC 8489
//! §6.2.1 recommends for STUN over UDP).

use std::time::Duration;

/// Smoothed round-trip estimate. Feed it unambiguous samples (a [`super::TransactionEvent`]
/// `rtt`, which is `Some` only when Karn's rule allows) and use [`rto`](Self::rto) as the
/// next transaction's initial RTO, so timeouts follow the real path instead of a fixed
/// guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtoEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    min: Duration,
    max: Duration,
    initial: Duration,
}

impl Default for RtoEstimator {
    fn default() -> Self {
        Self::new(
            Duration::from_millis(500),
            Duration::from_millis(50),
            Duration::from_secs(3),
        )
    }
}

impl RtoEstimator {
    /// An estimator that answers `initial` until the first sample and keeps its answers
    /// within `min..=max`.
    pub fn new(initial: Duration, min: Duration, max: Duration) -> Self {
        RtoEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            min,
            max: max.max(min),
            initial,
        }
    }

    /// Adds one round-trip sample.
    pub fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    /// The smoothed round trip, once sampled.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The retransmission timeout: SRTT + 4·RTTVAR, clamped.
    pub fn rto(&self) -> Duration {
        match self.srtt {
            None => self.initial.clamp(self.min, self.max),
            Some(srtt) => (srtt + self.rttvar * 4).clamp(self.min, self.max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_rfc6298() {
        let mut e = RtoEstimator::default();
        assert_eq!(e.rto(), Duration::from_millis(500));
        e.sample(Duration::from_millis(100));
        // SRTT = 100, RTTVAR = 50 → 300 ms.
        assert_eq!(e.rto(), Duration::from_millis(300));
        e.sample(Duration::from_millis(100));
        // RTTVAR = 3/4·50 + 1/4·0 = 37.5 → 100 + 150 = 250 ms.
        assert_eq!(e.rto(), Duration::from_millis(250));
        for _ in 0..50 {
            e.sample(Duration::from_millis(1));
        }
        assert_eq!(e.rto(), Duration::from_millis(50), "clamped to the minimum");
        e.sample(Duration::from_secs(100));
        assert_eq!(e.rto(), Duration::from_secs(3), "clamped to the maximum");
    }
}
