//! p2pd-lab: a real-network lab for p2pd's integration tests.
//!
//! It builds topologies of Linux network namespaces joined by veth pairs — a
//! "public" segment with a server namespace (198.51.100.1 and 203.0.113.1), router
//! namespaces doing NAT with nftables, LANs behind them — and runs real servers
//! there: coturn (STUN with RFC 5780, TURN), mosquitto (MQTT) and miniupnpd (UPnP
//! IGD, NAT-PMP, PCP). Tests run programs (or Rust closures) inside any namespace.
//! Nothing is linked to the host's own network; dropping the [`Lab`] removes
//! everything it made, also when a test panics.
//!
//! ```no_run
//! use std::time::Duration;
//! use p2pd_lab::{Lab, RouterKind, SymmetricPorts, SERVER_IP1};
//!
//! // in a #[test] fn: `p2pd_lab::require!();` skips (or fails with P2PD_LAB_REQUIRED=1)
//! if let Some(reason) = p2pd_lab::skip_reason() {
//!     eprintln!("skipping: {reason}");
//!     return Ok(());
//! }
//! let lab = Lab::two_lans(RouterKind::HOME, RouterKind::Symmetric(SymmetricPorts::Random))?;
//! lab.start_servers()?; // coturn + mosquitto, ready when this returns
//! let out = lab.host(0).run(&["ping", "-c1", "-W2", &SERVER_IP1.to_string()], Duration::from_secs(5))?;
//! assert!(out.success());
//! # Ok::<(), p2pd_lab::LabError>(())
//! ```
//!
//! See `lab/README.md` for the topologies, the router kinds and which of p2pd's 35
//! NAT configurations the kernel can produce.

pub mod delay;
mod error;
mod impair;
mod netns;
pub mod prereq;
mod process;
mod router;
mod servers;
pub mod tools;
mod topology;

pub use error::{LabError, Result};
pub use impair::{DELAY_BIN_ENV, LinkParams, delay_binary};
pub use netns::{Netns, Proto};
pub use prereq::{skip_reason, skip_reason_for};
pub use process::{BgProcess, Output};
pub use router::{NAT_PORTS, PortAlloc, RouterKind, SymmetricPorts, mapped_port};
pub use servers::{
    MQTT_PORT, NATPMP_PORT, STUN_ALT_PORT, STUN_PORT, TURN_PASSWORD, TURN_REALM, TURN_RELAY_PORTS,
    TURN_USER, UPNP_HTTP_PORT,
};
pub use topology::{
    Host, Lab, LabBuilder, NAME_PREFIX, Router, SERVER_IP1, SERVER_IP2, SERVER_IP6_1, SERVER_IP6_2,
    Upstream, list_netns, state_root,
};
