//! The connection negotiator (issue 7): which strategies can work for two nodes, in what
//! order, and the sans-IO machine that runs them with fallback.
//!
//! * [`strategy`] — the five ways to connect and their names.
//! * [`plan`] — the oracle: what can work for two NAT types, and why the rest cannot.
//! * [`message`] — the signaling messages both sides exchange.
//! * [`handshake`] — the signed HELLO that authenticates every new connection.
//! * [`io`] — the actions and inputs between the negotiator and its driver.
//! * [`negotiator`] — the machine: strategies in order, with fallback.
//! * [`pipe`] — what a negotiation yields: a reliable byte stream.
//! * [`progress`] — its events as plain data, for display.

pub mod handshake;
pub mod io;
pub mod message;
pub mod negotiator;
pub mod pipe;
pub mod plan;
pub mod progress;
pub mod strategy;

pub use handshake::{HELLO_LEN, HandshakeError, ROUTE_LEN, Role, route_preamble, route_tcp};
pub use io::{Action, TcpEvent, TcpId};
pub use message::{AttemptId, SIGNAL_KIND, route_signal};
pub use negotiator::{
    NegotiateError, NegotiationEvent, Negotiator, NegotiatorConfig, Timeouts, TurnSpec,
};
pub use pipe::{DatagramPipe, Pipe};
pub use plan::{Plan, Side, expected, plan};
pub use progress::Progress;
pub use strategy::{Strategy, UnknownStrategy};
