//! Links: latency, jitter, loss, duplication and reordering between a node and its parent.

use std::time::Duration;

use p2pd_core::rng::Rng;

/// What a link does to the datagrams crossing it. Each host interface and each router uplink
/// has one; both directions use the same settings but queue independently.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// One-way delay every datagram takes.
    pub latency: Duration,
    /// Extra delay drawn uniformly from `0..=jitter`. Jitter alone never reorders: a datagram
    /// never arrives before one sent earlier on the same link and direction.
    pub jitter: Duration,
    /// Probability (0..=1) that a datagram is lost.
    pub loss: f64,
    /// Probability (0..=1) that a datagram arrives twice.
    pub duplicate: f64,
    /// Probability (0..=1) that a datagram is held back so later ones overtake it.
    pub reorder: f64,
}

impl Default for LinkConfig {
    /// 5 ms one way, otherwise perfect.
    fn default() -> Self {
        LinkConfig::with_latency(Duration::from_millis(5))
    }
}

impl LinkConfig {
    /// A perfect link with this one-way latency.
    pub const fn with_latency(latency: Duration) -> Self {
        LinkConfig {
            latency,
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
        }
    }

    /// A perfect link with no delay at all.
    pub const fn instant() -> Self {
        LinkConfig::with_latency(Duration::ZERO)
    }
}

/// Which way a datagram crosses a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// From the node towards its parent (the internet or a router's LAN side).
    Up,
    /// From the parent down to the node.
    Down,
}

/// What happens to one datagram on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transit {
    /// Lost.
    Lost,
    /// Arrives at `at` (time since the simulation started), and a second copy at `duplicate`.
    Arrives {
        at: Duration,
        duplicate: Option<Duration>,
        held_back: bool,
    },
}

/// A link's settings and its per-direction FIFO state.
#[derive(Debug)]
pub(crate) struct Link {
    config: LinkConfig,
    last_arrival: [Duration; 2],
    rng: Rng,
}

impl Link {
    pub(crate) fn new(config: LinkConfig, rng: Rng) -> Self {
        Link {
            config,
            last_arrival: [Duration::ZERO; 2],
            rng,
        }
    }

    /// Decides the fate of a datagram entering the link at `now` going `dir`.
    pub(crate) fn transit(&mut self, dir: Dir, now: Duration) -> Transit {
        let c = self.config;
        if chance(&mut self.rng, c.loss) {
            return Transit::Lost;
        }
        let mut delay = c.latency;
        if !c.jitter.is_zero() {
            delay += nanos(self.rng.below(as_nanos(c.jitter).saturating_add(1)));
        }
        let slot = &mut self.last_arrival[dir as usize];
        let held_back = chance(&mut self.rng, c.reorder);
        let at = if held_back {
            // Held back by up to one more latency + jitter (at least 1 ms), without moving
            // the FIFO horizon: datagrams sent meanwhile overtake this one.
            let window = as_nanos(c.latency + c.jitter).max(1_000_000);
            now + delay + nanos(1 + self.rng.below(window))
        } else {
            let at = (now + delay).max(*slot);
            *slot = at;
            at
        };
        let duplicate = chance(&mut self.rng, c.duplicate).then_some(at);
        Transit::Arrives {
            at,
            duplicate,
            held_back,
        }
    }
}

/// True with probability `p` (NaN and p ≤ 0 never, p ≥ 1 always; draws only when needed, so a
/// perfect link consumes no randomness).
fn chance(rng: &mut Rng, p: f64) -> bool {
    if p.is_nan() || p <= 0.0 {
        return false;
    }
    if p >= 1.0 {
        return true;
    }
    const SCALE: u64 = 1 << 53;
    (rng.below(SCALE) as f64) < p * SCALE as f64
}

fn as_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn nanos(n: u64) -> Duration {
    Duration::from_nanos(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_keeps_fifo_order() {
        let mut link = Link::new(
            LinkConfig {
                jitter: Duration::from_millis(20),
                ..LinkConfig::default()
            },
            Rng::seed_from_u64(1),
        );
        let mut last = Duration::ZERO;
        let mut spread = false;
        for i in 0..200u64 {
            let now = Duration::from_micros(100 * i);
            match link.transit(Dir::Up, now) {
                Transit::Arrives { at, .. } => {
                    assert!(at >= last, "reordered without reorder > 0");
                    assert!(at >= now + Duration::from_millis(5));
                    spread |= at > now + Duration::from_millis(6);
                    last = at;
                }
                Transit::Lost => panic!("lost on a lossless link"),
            }
        }
        assert!(spread, "jitter had no effect");
    }

    #[test]
    fn directions_queue_independently() {
        let mut link = Link::new(
            LinkConfig::with_latency(Duration::from_millis(10)),
            Rng::seed_from_u64(2),
        );
        link.transit(Dir::Up, Duration::from_millis(50));
        match link.transit(Dir::Down, Duration::ZERO) {
            Transit::Arrives { at, .. } => assert_eq!(at, Duration::from_millis(10)),
            Transit::Lost => panic!("lost"),
        }
    }

    #[test]
    fn certain_loss_and_duplication() {
        let mut lossy = Link::new(
            LinkConfig {
                loss: 1.0,
                ..LinkConfig::default()
            },
            Rng::seed_from_u64(3),
        );
        assert_eq!(lossy.transit(Dir::Up, Duration::ZERO), Transit::Lost);
        let mut dup = Link::new(
            LinkConfig {
                duplicate: 1.0,
                ..LinkConfig::instant()
            },
            Rng::seed_from_u64(3),
        );
        assert_eq!(
            dup.transit(Dir::Up, Duration::ZERO),
            Transit::Arrives {
                at: Duration::ZERO,
                duplicate: Some(Duration::ZERO),
                held_back: false
            }
        );
    }
}
