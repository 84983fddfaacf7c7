//! Deadlines that say why they wake.

use std::time::Instant;

/// When a state machine next needs `handle_timeout`, and why: the reason makes a trace of
/// wake-ups readable (firezone's snownet does the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout {
    /// The instant to call `handle_timeout` at (or after).
    pub at: Instant,
    /// What will happen then.
    pub reason: &'static str,
}

impl Timeout {
    /// A deadline at `at` for `reason`.
    pub fn new(at: Instant, reason: &'static str) -> Self {
        Timeout { at, reason }
    }

    /// The earlier of two optional deadlines.
    pub fn earliest(a: Option<Timeout>, b: Option<Timeout>) -> Option<Timeout> {
        match (a, b) {
            (Some(x), Some(y)) => Some(if y.at < x.at { y } else { x }),
            (x, None) => x,
            (None, y) => y,
        }
    }
}
