//! UDP hole punching (issue 7): the machinery a connection negotiator calls.
//!
//! * [`predict`] — candidate external ports of a peer's *next* mapping, from the delta
//!   facts the NAT classifier reported (several guesses, not only P2PD's first).
//! * [`birthday`] — the birthday-paradox plan for a random-port symmetric NAT facing an
//!   endpoint-independent-mapping one, under a packet-rate budget.
//! * [`timing`] — DCUtR-style scheduling of both sides' simultaneous open from a round
//!   trip measured over the signaling channel (no NTP needed).
//! * [`udp`] — the sans-IO punch machine: authenticated probes on a schedule, first
//!   two-way success wins.

pub mod birthday;
pub mod possible;
pub mod predict;
pub mod timing;
pub mod udp;

pub use birthday::{BirthdayError, BirthdayPlan};
pub use possible::udp_punch_possible;
pub use predict::{MappingFacts, PortRange, PredictError, predict_ports};
pub use timing::{PunchSchedule, TimingError, schedule_from_rtt};
pub use udp::{PunchConfig, PunchError, PunchFailure, UdpPunch, UdpPunchEvent};
