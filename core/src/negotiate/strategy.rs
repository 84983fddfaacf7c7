//! The ways two nodes can get a connection, in the order the negotiator tries them.

use std::fmt;
use std::str::FromStr;

/// One way to connect two nodes. `Ord` is the negotiator's order of preference: cheapest
/// and most direct first, the relay last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Strategy {
    /// TCP connect to the peer's advertised listen address (it is reachable from outside).
    Direct,
    /// Ask the peer, over signaling, to TCP connect to us (we are reachable).
    Reverse,
    /// TCP simultaneous open from both listen ports at a scheduled moment.
    TcpPunch,
    /// UDP hole punching (with port prediction or birthday probing), then a reliable stream.
    UdpPunch,
    /// A TURN relay (RFC 8656), then a reliable stream: the last resort.
    Relay,
}

impl Strategy {
    /// Every strategy, in order of preference.
    pub const ALL: [Strategy; 5] = [
        Strategy::Direct,
        Strategy::Reverse,
        Strategy::TcpPunch,
        Strategy::UdpPunch,
        Strategy::Relay,
    ];

    /// The name users type and read (`direct`, `reverse`, `tcp_punch`, `udp_punch`, `relay`).
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Direct => "direct",
            Strategy::Reverse => "reverse",
            Strategy::TcpPunch => "tcp_punch",
            Strategy::UdpPunch => "udp_punch",
            Strategy::Relay => "relay",
        }
    }

    /// Parses a comma-separated list such as `direct,udp_punch,relay`: duplicates are
    /// dropped and the result keeps the order of preference, not the order typed.
    pub fn parse_list(text: &str) -> Result<Vec<Strategy>, UnknownStrategy> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let s: Strategy = part.parse()?;
            if !out.contains(&s) {
                out.push(s);
            }
        }
        if out.is_empty() {
            return Err(UnknownStrategy(text.to_string()));
        }
        out.sort();
        Ok(out)
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A strategy name that is not one of the five.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown strategy {0:?}: use a comma-separated list of direct, reverse, tcp_punch, udp_punch, relay"
)]
pub struct UnknownStrategy(pub String);

impl FromStr for Strategy {
    type Err = UnknownStrategy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Strategy::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| UnknownStrategy(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Strategy::ALL {
            assert_eq!(s.name().parse::<Strategy>(), Ok(s));
        }
    }

    #[test]
    fn list_is_deduplicated_and_ordered() {
        assert_eq!(
            Strategy::parse_list("relay, direct,relay"),
            Ok(vec![Strategy::Direct, Strategy::Relay])
        );
        assert!(Strategy::parse_list("").is_err());
        let e = Strategy::parse_list("direct,teleport").unwrap_err();
        assert!(e.to_string().contains("teleport"));
    }
}
