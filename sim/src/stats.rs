//! Counters for a run: what was sent, delivered and dropped, and why.

use std::fmt;

/// Why the network dropped a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A link lost it.
    Loss,
    /// A NAT or firewall filter refused unsolicited inbound traffic.
    Filtered,
    /// Inbound traffic to a NAT's public port with no live mapping.
    NoMapping,
    /// No host, router or server has the destination address.
    NoRoute,
    /// It reached a host with no endpoint attached.
    NoEndpoint,
    /// A router that blocks all UDP.
    BlockedUdp,
    /// An endpoint sent from an address that is not its host's (a bug in the endpoint).
    BadSource,
    /// A LAN host sent to its NAT's own public address and the NAT does not hairpin.
    HairpinDisabled,
    /// A NAT had no free external port left in its range.
    PortsExhausted,
}

impl DropReason {
    /// All reasons, in a fixed order.
    pub const ALL: [DropReason; 9] = [
        DropReason::Loss,
        DropReason::Filtered,
        DropReason::NoMapping,
        DropReason::NoRoute,
        DropReason::NoEndpoint,
        DropReason::BlockedUdp,
        DropReason::BadSource,
        DropReason::HairpinDisabled,
        DropReason::PortsExhausted,
    ];

    /// A short name for reports (`loss`, `filtered`, …).
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Loss => "loss",
            DropReason::Filtered => "filtered",
            DropReason::NoMapping => "no_mapping",
            DropReason::NoRoute => "no_route",
            DropReason::NoEndpoint => "no_endpoint",
            DropReason::BlockedUdp => "blocked_udp",
            DropReason::BadSource => "bad_source",
            DropReason::HairpinDisabled => "hairpin_disabled",
            DropReason::PortsExhausted => "ports_exhausted",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Dropped datagrams, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts {
    counts: [u64; DropReason::ALL.len()],
}

impl DropCounts {
    /// How many were dropped for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason as usize]
    }

    /// How many were dropped in all.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub(crate) fn add(&mut self, reason: DropReason) {
        self.counts[reason as usize] += 1;
    }
}

/// Counters since the network was built (or since [`Network::reset_stats`]).
///
/// [`Network::reset_stats`]: crate::Network::reset_stats
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams endpoints sent (including ones then dropped for a bad source).
    pub sent: u64,
    /// Datagrams handed to an endpoint (a duplicate counts again).
    pub delivered: u64,
    /// Datagrams dropped, by reason.
    pub dropped: DropCounts,
    /// Extra copies links made.
    pub duplicated: u64,
    /// Datagrams links held back so later ones could overtake them.
    pub held_back: u64,
    /// Address translations NAT boxes made (each direction, each NAT).
    pub translated: u64,
    /// Events the scheduler processed (arrivals and timers).
    pub events: u64,
    /// `handle_timeout` calls.
    pub timeouts: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {} delivered {} dropped {}",
            self.sent,
            self.delivered,
            self.dropped.total()
        )?;
        let mut first = true;
        for r in DropReason::ALL {
            let n = self.dropped.get(r);
            if n > 0 {
                write!(f, "{}{r} {n}", if first { " (" } else { ", " })?;
                first = false;
            }
        }
        if !first {
            f.write_str(")")?;
        }
        write!(
            f,
            " duplicated {} held_back {} translated {} events {} timeouts {}",
            self.duplicated, self.held_back, self.translated, self.events, self.timeouts
        )
    }
}
