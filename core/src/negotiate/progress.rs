//! A negotiation's progress as plain data: what a user interface shows of
//! [`NegotiationEvent`]s (which strategies were skipped, tried, failed, and which won)
//! without the pipe a `Connected` event hands over.

use std::fmt;
use std::net::SocketAddr;

use super::negotiator::NegotiationEvent;
use super::strategy::Strategy;

/// One step of a negotiation, for display and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A strategy will not run, and why.
    Skipped {
        /// The strategy.
        strategy: Strategy,
        /// Why.
        reason: String,
    },
    /// A strategy started.
    Trying {
        /// The strategy.
        strategy: Strategy,
        /// What it does.
        detail: String,
    },
    /// A strategy failed; the next one starts.
    StrategyFailed {
        /// The strategy.
        strategy: Strategy,
        /// Why.
        reason: String,
    },
    /// The strategy that won, and the two ends of its connection.
    Connected {
        /// The strategy.
        strategy: Strategy,
        /// Our end.
        local: SocketAddr,
        /// The peer's end.
        remote: SocketAddr,
    },
    /// Nothing worked.
    Failed {
        /// Why.
        reason: String,
    },
}

impl From<&NegotiationEvent> for Progress {
    fn from(e: &NegotiationEvent) -> Self {
        match e {
            NegotiationEvent::Skipped { strategy, reason } => Progress::Skipped {
                strategy: *strategy,
                reason: reason.clone(),
            },
            NegotiationEvent::Trying { strategy, detail } => Progress::Trying {
                strategy: *strategy,
                detail: detail.clone(),
            },
            NegotiationEvent::StrategyFailed { strategy, reason } => Progress::StrategyFailed {
                strategy: *strategy,
                reason: reason.clone(),
            },
            NegotiationEvent::Connected {
                strategy,
                local,
                remote,
                ..
            } => Progress::Connected {
                strategy: *strategy,
                local: *local,
                remote: *remote,
            },
            NegotiationEvent::Failed { reason } => Progress::Failed {
                reason: reason.clone(),
            },
        }
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Progress::Skipped { strategy, reason } => write!(f, "skipped {strategy}: {reason}"),
            Progress::Trying { strategy, detail } => write!(f, "trying {strategy}: {detail}"),
            Progress::StrategyFailed { strategy, reason } => {
                write!(f, "{strategy} failed: {reason}")
            }
            Progress::Connected {
                strategy,
                local,
                remote,
            } => write!(f, "connected by {strategy} ({local} -> {remote})"),
            Progress::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_progress() {
        let e = NegotiationEvent::Skipped {
            strategy: Strategy::Direct,
            reason: "the peer's NAT filters".into(),
        };
        let p = Progress::from(&e);
        assert_eq!(
            p,
            Progress::Skipped {
                strategy: Strategy::Direct,
                reason: "the peer's NAT filters".into()
            }
        );
        assert_eq!(p.to_string(), "skipped direct: the peer's NAT filters");
        let f = Progress::from(&NegotiationEvent::Failed {
            reason: "no way".into(),
        });
        assert_eq!(f.to_string(), "failed: no way");
    }
}
