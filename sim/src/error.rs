//! Mistakes in building a network.

use std::net::IpAddr;

use p2pd_core::stun::ServerConfigError;

use crate::network::{HostId, RouterId};

/// Why a network could not be built or changed as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// No router with this id.
    #[error("no router r{}", .0.index())]
    UnknownRouter(RouterId),
    /// No host with this id.
    #[error("no host h{}", .0.index())]
    UnknownHost(HostId),
    /// The address is already taken in that address space.
    #[error("address {0} is already in use")]
    AddressInUse(IpAddr),
    /// No address left to allocate in a LAN or the public pool.
    #[error("no free address left in {0}")]
    AddressSpaceExhausted(&'static str),
    /// A host needs at least one interface.
    #[error("a host needs at least one interface")]
    NoInterfaces,
    /// A host runs one endpoint.
    #[error("host h{} already runs an endpoint", .0.index())]
    HostBusy(HostId),
    /// The address is not one of the host's.
    #[error("{ip} is not an address of host h{}", .host.index())]
    NotHostAddress {
        /// The host.
        host: HostId,
        /// The address asked for.
        ip: IpAddr,
    },
    /// No free port (or run of ports) left on the host's address.
    #[error("no {0} free consecutive port(s) left")]
    NoFreePort(u16),
    /// The STUN server configuration is unusable.
    #[error(transparent)]
    StunConfig(#[from] ServerConfigError),
    /// The TURN server configuration is unusable.
    #[error(transparent)]
    TurnConfig(#[from] p2pd_core::turn::TurnConfigError),
    /// A scenario could not be set up.
    #[error("scenario: {0}")]
    Config(String),
    /// A node address the simulator built was invalid.
    #[error("node address: {0}")]
    NodeAddr(#[from] p2pd_core::addr::AddrError),
    /// A classifier scenario could not start.
    #[error("classifier: {0}")]
    Classifier(#[from] p2pd_core::nat::ClassifyError),
    /// A lifetime scenario's sockets did not match its delays.
    #[error(transparent)]
    Lifetime(#[from] p2pd_core::nat::LifetimeSocketsMismatch),
    /// A classifier scenario ran out of virtual time without a verdict.
    #[error("the classifier gave no verdict within {0:?} of virtual time")]
    NoVerdict(std::time::Duration),
}
