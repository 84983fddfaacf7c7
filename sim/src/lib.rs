//! A deterministic, seeded, virtual-time network that drives p2pd-core's state machines.
//!
//! Hosts, links, NAT boxes and firewalls are values in a [`Network`]; a scheduler pops the
//! earliest event (a datagram arriving somewhere, or an endpoint's timer) and feeds whoever
//! owns it. Endpoints are the same sans-IO machines the real runtimes drive, wrapped in the
//! small [`Endpoint`] trait: the simulator is not a second implementation of anything.
//!
//! * **Deterministic.** All randomness (loss, jitter, duplication, reordering, NAT ports, free
//!   host ports) comes from the seed given to [`Network::new`], forked per component; events
//!   at the same instant run in the order they were scheduled. Same seed and setup → same
//!   trace ([`Network::trace_hash`]).
//! * **Virtual time.** One real `Instant` is read when the network is built; after that, time
//!   is that instant plus the virtual time elapsed. Nothing sleeps.
//! * **Bounded.** [`Network::run_until`] takes a virtual deadline and an event budget;
//!   datagrams to nowhere are dropped and counted ([`Stats`]); a NAT's table is bounded by its
//!   port range.
//! * **NAT boxes** follow RFC 4787: endpoint-independent, address-dependent or
//!   address-and-port-dependent mapping and filtering, port allocation
//!   ([`PortAllocation`]), idle timeout, hairpinning, stacking, and firewalls that filter
//!   without translating ([`RouterConfig`]).
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::{Duration, Instant};
//! use p2pd_core::nat::{DeltaKind, NatType};
//! use p2pd_core::stun::ServerConfig;
//! use p2pd_sim::{Datagram, Endpoint, HostConfig, Network, RouterConfig};
//!
//! /// Sends one datagram, remembers who answered.
//! struct Once(Option<Datagram>, Option<SocketAddr>);
//! impl Endpoint for Once {
//!     fn handle_input(&mut self, _: Instant, from: SocketAddr, _: SocketAddr, _: &[u8]) {
//!         self.1 = Some(from);
//!     }
//!     fn poll_transmit(&mut self) -> Option<Datagram> { self.0.take() }
//!     fn poll_timeout(&self) -> Option<Instant> { None }
//!     fn handle_timeout(&mut self, _: Instant) {}
//! }
//!
//! let mut net = Network::new(7);
//! let server: SocketAddr = "203.0.113.1:3478".parse().unwrap();
//! let stun = net.add_stun_server(ServerConfig { primary: server, alternate: None, software: None })?;
//! let nat = net.add_router(RouterConfig::for_type(NatType::Symmetric, DeltaKind::Random, 0))?;
//! let host = net.add_host(HostConfig::behind(nat))?;
//! let ip = net.host_ip(host).unwrap();
//! let local = SocketAddr::new(ip, net.free_port(host, ip)?);
//! // Not STUN, so core's server drops it: nobody answers.
//! net.attach(host, Once(Some(Datagram::new(local, server, b"hello".to_vec())), None))?;
//! net.run_for(Duration::from_secs(1), 1_000);
//! assert_eq!(net.endpoint::<Once>(host).unwrap().1, None);
//! assert_eq!(net.stun_server(stun).map(|s| s.stats().dropped), Some(1));
//! assert_eq!(net.stats().sent, 1);
//! assert_eq!(net.stats().delivered, 1); // to the server
//! # Ok::<(), p2pd_sim::SimError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod classify;
mod endpoint;
mod error;
mod event;
mod host;
mod link;
mod machine;
pub mod matrix;
mod nat;
mod network;
pub mod node;
mod stats;
mod stream;
pub mod tcp;
mod trace;
mod turn;

pub use endpoint::{Datagram, Endpoint, StunEndpoint};
pub use error::SimError;
pub use host::{HostConfig, InterfaceConfig};
pub use link::LinkConfig;
pub use machine::{Machine, MachineEndpoint};
pub use nat::{PortAllocation, RouterConfig};
pub use network::{Attachment, HostId, Network, RouterId, ServerId, Stop};
pub use stats::{DropCounts, DropReason, Stats};
pub use stream::{EMPTY_HASH, StreamEndpoint, fnv1a};
pub use trace::{TraceEntry, TraceKind};
pub use turn::{TurnEndpoint, TurnServerId};
