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
//! use std::time::Duration;
//! use p2pd_core::nat::{DeltaKind, NatType};
//! use p2pd_core::stun::ServerConfig;
//! use p2pd_sim::{Attachment, HostConfig, Network, RouterConfig};
//!
//! let mut net = Network::new(7);
//! let nat = net.add_router(RouterConfig::for_type(NatType::Symmetric, DeltaKind::Random, 0))?;
//! let host = net.add_host(HostConfig::behind(nat))?;
//! net.add_stun_server(ServerConfig {
//!     primary: "203.0.113.1:3478".parse().unwrap(),
//!     alternate: Some("203.0.113.2:3479".parse().unwrap()),
//!     software: None,
//! })?;
//! let ip = net.host_ip(host).unwrap();
//! let port = net.free_port(host, ip)?;
//! assert!(port >= 49152);
//! // net.attach(host, my_endpoint)?; then:
//! let deadline = net.now() + Duration::from_secs(5);
//! net.run_until(deadline, 10_000);
//! assert_eq!(net.router_config(nat).map(|c| c.nat_type()), Some(NatType::Symmetric));
//! # let _ = Attachment::Internet;
//! # Ok::<(), p2pd_sim::SimError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod endpoint;
mod error;
mod event;
mod host;
mod link;
mod nat;
mod network;
mod stats;
mod trace;

pub use endpoint::{Datagram, Endpoint, StunEndpoint};
pub use error::SimError;
pub use host::{HostConfig, InterfaceConfig};
pub use link::LinkConfig;
pub use nat::{PortAllocation, RouterConfig};
pub use network::{Attachment, HostId, Network, RouterId, ServerId, Stop};
pub use stats::{DropCounts, DropReason, Stats};
pub use trace::{TraceEntry, TraceKind};
