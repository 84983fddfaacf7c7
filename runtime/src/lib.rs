//! Runtime-agnostic drivers for p2pd's sans-IO core.
//!
//! An async runtime implements the small [`Runtime`] trait family (a clock, a timer,
//! spawning, and poll-based UDP and TCP sockets — in the spirit of quinn's `Runtime` /
//! `AsyncUdpSocket`); everything else is written once here, generic over it: socket
//! construction with socket2 ([`net`]), many UDP sockets as one ([`socket_set`]), the
//! STUN client and server loops ([`stun`]), the NAT classifier driver ([`nat`]),
//! interface enumeration ([`interfaces`]), route discovery ([`routes`]) and the node
//! that connects to peers through core's negotiator ([`node`]).
//! `p2pd-tokio`, `p2pd-smol` and `p2pd-async-std` are the adapters; [`conformance`] is
//! the suite each of them must pass.

pub mod conformance;
pub mod home;
pub mod interfaces;
pub mod mqtt;
pub mod names;
pub mod nat;
pub mod net;
pub mod node;
pub mod portmap;
pub mod rng;
pub mod routes;
mod runtime;
pub mod socket_set;
pub mod stun;
pub mod task;
pub mod timer;
pub mod turn;
pub mod turn_server;
pub mod upnp;

pub use runtime::{AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, Runtime};
