//! The node's listen port on the gateway (issue 9): ask PCP, then NAT-PMP, then UPnP IGD
//! for a finite TCP lease on the listen port, keep it renewed ([`PortMapper::keep`]),
//! advertise the external port in the node address (a [`MappedPort`]) so that peers
//! connect straight in, and delete it when the node shuts down.
//!
//! Start-up must not wait on a gateway that does not answer: the attempt runs alongside
//! route discovery and NAT classification and gives up after [`NodePortmap::timeout`]
//! (2 s by default). A host whose chosen interfaces do not lead to the default gateway
//! (a loopback-only node, a host without a default route) sends nothing.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use p2pd_core::addr::MappedPort;
use p2pd_core::portmap::client::Via;
use p2pd_core::portmap::natpmp::{MapProtocol, NATPMP_SERVER_PORT};
use p2pd_core::rng::Rng;

use super::start::Listening;
use crate::interfaces;
use crate::net::route_local_ip;
use crate::portmap::{KeptMapping, MapWanted, PortMapper, default_gateway};
use crate::runtime::Runtime;
use crate::timer::until;

/// Longest wait for the gateway to confirm the deletion at shutdown (PCP and NAT-PMP
/// retry for 3.75 s on a silent gateway).
pub const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether and how a node maps its listen port on the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePortmap {
    /// Ask the gateway at all (on by default).
    pub enabled: bool,
    /// Protocols to try, in order (empty: PCP, then NAT-PMP, then UPnP IGD).
    pub order: Vec<Via>,
    /// The lease asked for, in seconds (finite; renewed at half of what the gateway
    /// grants).
    pub lease: u32,
    /// How long start-up waits for a mapping before going on without one.
    pub timeout: Duration,
    /// The gateway (default: the default IPv4 route's gateway).
    pub gateway: Option<IpAddr>,
}

impl Default for NodePortmap {
    fn default() -> Self {
        NodePortmap {
            enabled: true,
            order: Vec::new(),
            lease: 1200,
            timeout: Duration::from_secs(2),
            gateway: None,
        }
    }
}

/// A mapping asked for before the listen sockets exist, on the port they will use.
pub(crate) struct Pending {
    /// The host address the gateway forwards to.
    pub(crate) local: IpAddr,
    /// The internal (listen) port mapped.
    pub(crate) port: u16,
    /// The mapping, kept renewed.
    pub(crate) kept: KeptMapping,
}

/// Where to map: the gateway and the host address that routes to it, when that address
/// belongs to one of the `chosen` interfaces. `Err` says why not (for logs).
pub(crate) fn target(
    config: &NodePortmap,
    chosen: &[interfaces::Interface],
) -> Result<(IpAddr, IpAddr), String> {
    if !config.enabled {
        return Err("port mapping is off".into());
    }
    let gateway = match config.gateway {
        Some(g) => g,
        None => IpAddr::V4(default_gateway().map_err(|e| e.to_string())?),
    };
    let local = route_local_ip(SocketAddr::new(gateway, NATPMP_SERVER_PORT))
        .map_err(|e| format!("no route to the gateway {gateway}: {e}"))?;
    if !chosen.iter().any(|i| i.addrs().any(|a| a == local)) {
        return Err(format!(
            "the gateway {gateway} is reached from {local}, which is not on an interface this node uses"
        ));
    }
    Ok((gateway, local))
}

/// Maps TCP `port` of `local` on `gateway`, giving up after `config.timeout`.
pub(crate) async fn map<R: Runtime>(
    rt: &R,
    config: &NodePortmap,
    (gateway, local): (IpAddr, IpAddr),
    port: u16,
    rng: &mut Rng,
) -> Result<Pending, String> {
    let want = MapWanted {
        order: config.order.clone(),
        local: Some(local),
        ..MapWanted::new(gateway, MapProtocol::Tcp, port, config.lease.max(1))
    };
    match until(
        rt,
        rt.now() + config.timeout,
        PortMapper::keep(rt, want, rng),
    )
    .await
    {
        Some(Ok(kept)) => Ok(Pending { local, port, kept }),
        Some(Err(e)) => Err(format!("the gateway {gateway} mapped nothing: {e}")),
        None => Err(format!(
            "no mapping from the gateway {gateway} within {:?}",
            config.timeout
        )),
    }
}

/// The mapped port to advertise for `pending`: on the route whose internal address is
/// the mapped host address and whose external address (from STUN) is the one the
/// gateway reports. A gateway with another external address sits behind a further NAT,
/// and its mapping cannot be reached from the internet: `Err` says so.
pub(crate) fn advertise<R: Runtime>(
    pending: &Pending,
    listening: &[Listening<R>],
) -> Result<MappedPort, String> {
    let Some(m) = pending.kept.current() else {
        return Err("the mapping ended before the node started".into());
    };
    let Some(l) = listening
        .iter()
        .find(|l| l.route.internal == pending.local && l.local.port() == pending.port)
    else {
        return Err(format!(
            "no listen socket on {}:{} to advertise the mapping for",
            pending.local, pending.port
        ));
    };
    if l.route.external != m.external.ip() {
        return Err(format!(
            "the gateway's external address {} is not the one STUN sees ({}): another NAT is in front of it",
            m.external.ip(),
            l.route.external
        ));
    }
    Ok(MappedPort {
        interface: l.index as u8,
        v6: l.route.internal.is_ipv6(),
        port: m.external.port(),
    })
}
