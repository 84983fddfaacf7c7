//! Maps a local port on the gateway, on any [`Runtime`]: PCP, then NAT-PMP (the sans-IO
//! [`PortMapClient`] over one UDP socket), then UPnP IGD ([`UpnpDriver`]); an IPv6 host
//! address gets a UPnP IPv6 pinhole instead. [`PortMapper::keep`] is the one call a node
//! needs: map, renew before expiry in a background task, delete on shutdown. Also finds
//! the default IPv4 gateway in `/proc/net/route`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use p2pd_core::Machine;
use p2pd_core::portmap::client::{
    Mapping, PortMapClient, PortMapConfig, PortMapError, PortMapEvent, Via,
};
use p2pd_core::portmap::natpmp::{MapProtocol, NATPMP_SERVER_PORT};
use p2pd_core::portmap::pcp::Nonce;
use p2pd_core::portmap::upnp::client::{Existing, UpnpConfig};
use p2pd_core::rng::Rng;

use crate::net::{bind_udp, route_local_ip};
use crate::socket_set::SocketSet;
use crate::timer::until;
use crate::upnp::{UpnpDriver, ssdp_destinations};
use crate::{AsyncUdpSocket, Runtime};

/// The default IPv4 gateway from a `/proc/net/route` table (the first `00000000`
/// destination with the gateway flag), or `None`.
pub fn parse_proc_net_route(table: &str) -> Option<Ipv4Addr> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (dest, gw, flags) = (f.get(1)?, f.get(2)?, f.get(3)?);
        let flags = u16::from_str_radix(flags, 16).ok()?;
        if *dest != "00000000" || flags & 0x2 == 0 {
            return None;
        }
        // Little-endian hex on every Linux host p2pd supports.
        let v = u32::from_str_radix(gw, 16).ok()?;
        Some(Ipv4Addr::from(v.to_le_bytes()))
    })
}

/// The default IPv4 gateway of this host (Linux: `/proc/net/route`).
pub fn default_gateway() -> io::Result<Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/route")?;
    parse_proc_net_route(&table).ok_or_else(|| {
        io::Error::other("no default IPv4 gateway in /proc/net/route; pass --gateway IP")
    })
}

/// What [`PortMapper::map`] asks for.
#[derive(Debug, Clone)]
pub struct MapWanted {
    /// The gateway's LAN address (PCP and NAT-PMP talk to it; UPnP sends a unicast
    /// M-SEARCH to it besides the multicast one and only takes its answer when IPv4).
    pub gateway: IpAddr,
    /// UDP or TCP.
    pub protocol: MapProtocol,
    /// The local port.
    pub internal_port: u16,
    /// Requested lease in seconds (finite).
    pub lease: u32,
    /// Protocols to try in order (empty: PCP, then NAT-PMP, then UPnP).
    pub order: Vec<Via>,
    /// A stored PCP nonce (to refresh or delete an earlier process's mapping).
    pub nonce: Option<Nonce>,
    /// The host address to map (default: the address that routes to the gateway). An
    /// IPv6 address asks for a UPnP IPv6 pinhole to it (`order` is then UPnP only).
    pub local: Option<IpAddr>,
}

impl MapWanted {
    /// Map `internal_port` through `gateway` for `lease` seconds, trying PCP, then
    /// NAT-PMP, then UPnP.
    pub fn new(gateway: IpAddr, protocol: MapProtocol, internal_port: u16, lease: u32) -> Self {
        Self {
            gateway,
            protocol,
            internal_port,
            lease,
            order: Vec::new(),
            nonce: None,
            local: None,
        }
    }
}

/// The default order: PCP, then NAT-PMP, then UPnP IGD.
pub const DEFAULT_ORDER: [Via; 3] = [Via::Pcp, Via::NatPmp, Via::Upnp];

#[derive(Debug)]
enum Engine<R: Runtime> {
    Pmp {
        set: SocketSet<R::UdpSocket>,
        client: Box<PortMapClient>,
    },
    Upnp(Box<UpnpDriver<R>>),
}

/// A port mapping being kept: the machine of the protocol that worked and its sockets.
#[derive(Debug)]
pub struct PortMapper<R: Runtime> {
    engine: Engine<R>,
}

fn failed(e: PortMapError) -> io::Error {
    io::Error::other(e.to_string())
}

impl<R: Runtime> PortMapper<R> {
    /// Ask the gateway for a mapping of `internal_port`, trying `want.order` (default
    /// PCP, then NAT-PMP, then UPnP) until one works; waits for the answer (PCP and
    /// NAT-PMP give up after 3.75 s each on a silent gateway, UPnP after 3 s of SSDP
    /// searches or 5 s per HTTP exchange). The error names every protocol's failure.
    pub async fn map(rt: &R, want: MapWanted, rng: &mut Rng) -> io::Result<(Self, Mapping)> {
        let local_ip = match want.local {
            Some(ip) => ip,
            None => route_local_ip(SocketAddr::new(want.gateway, NATPMP_SERVER_PORT))?,
        };
        let mut order = if want.order.is_empty() {
            DEFAULT_ORDER.to_vec()
        } else {
            want.order.clone()
        };
        if local_ip.is_ipv6() {
            // PCP/NAT-PMP here map IPv4 only; an IPv6 host gets a UPnP pinhole.
            order.retain(|v| *v == Via::Upnp);
            if order.is_empty() {
                return Err(io::Error::other(
                    "an IPv6 address can only be opened with a UPnP pinhole; use --via upnp",
                ));
            }
        }
        let mut errors = Vec::new();
        let mut i = 0;
        while i < order.len() {
            let r = if order[i] == Via::Upnp {
                i += 1;
                Self::map_upnp(rt, &want, local_ip).await
            } else {
                let group: Vec<Via> = order[i..]
                    .iter()
                    .take_while(|v| **v != Via::Upnp)
                    .copied()
                    .collect();
                i += group.len();
                Self::map_pmp(rt, &want, local_ip, group, rng).await
            };
            match r {
                Ok(done) => return Ok(done),
                Err(e) => errors.push(e.to_string()),
            }
        }
        Err(io::Error::other(errors.join("; then ")))
    }

    async fn map_pmp(
        rt: &R,
        want: &MapWanted,
        local_ip: IpAddr,
        order: Vec<Via>,
        rng: &mut Rng,
    ) -> io::Result<(Self, Mapping)> {
        let socket = bind_udp(rt, SocketAddr::new(local_ip, 0), false)?;
        let local = socket.local_addr()?;
        let mut config = PortMapConfig::new(
            want.gateway,
            local,
            want.protocol,
            want.internal_port,
            want.lease,
        );
        config.order = order;
        config.nonce = want.nonce;
        let client = Box::new(PortMapClient::new(config, rng, rt.now()));
        let me = Self {
            engine: Engine::Pmp {
                set: SocketSet::new(vec![(local, socket)]),
                client,
            },
        };
        me.until_mapped(rt).await
    }

    fn upnp_config(want: &MapWanted, local_ip: IpAddr) -> UpnpConfig {
        let mut config = UpnpConfig::new(
            SocketAddr::new(local_ip, 0),
            want.protocol,
            want.internal_port,
            want.lease,
        );
        config.ssdp_destinations = ssdp_destinations(local_ip, Some(want.gateway));
        // An IPv4 answer must come from the gateway; IPv6 gateways answer from whichever
        // of their addresses they like.
        config.gateway = Some(want.gateway).filter(|g| g.is_ipv4() && local_ip.is_ipv4());
        config
    }

    async fn map_upnp(rt: &R, want: &MapWanted, local_ip: IpAddr) -> io::Result<(Self, Mapping)> {
        let config = Self::upnp_config(want, local_ip);
        let me = Self {
            engine: Engine::Upnp(Box::new(UpnpDriver::start(rt, config)?)),
        };
        me.until_mapped(rt).await
    }

    /// Delete a UPnP mapping or pinhole that an earlier process made (found again by
    /// SSDP; deleted by external port or pinhole id): `want` names the gateway, protocol,
    /// port and (for a pinhole) the IPv6 `local` address. `Ok(true)` when the gateway
    /// confirmed.
    pub async fn delete_upnp(rt: &R, want: &MapWanted, existing: Existing) -> io::Result<bool> {
        let local_ip = match want.local {
            Some(ip) => ip,
            None => route_local_ip(SocketAddr::new(want.gateway, NATPMP_SERVER_PORT))?,
        };
        let mut config = Self::upnp_config(want, local_ip);
        config.existing = Some(existing);
        let mut me = Self {
            engine: Engine::Upnp(Box::new(UpnpDriver::start(rt, config)?)),
        };
        loop {
            match me.next_event(rt, None).await? {
                Some(PortMapEvent::Removed { confirmed }) => return Ok(confirmed),
                Some(PortMapEvent::Failed(e)) => return Err(failed(e)),
                Some(_) => {}
                None => return Ok(false),
            }
        }
    }

    async fn until_mapped(mut self, rt: &R) -> io::Result<(Self, Mapping)> {
        loop {
            match self.next_event(rt, None).await? {
                Some(PortMapEvent::Mapped(m)) => return Ok((self, m)),
                Some(PortMapEvent::Failed(e)) => return Err(failed(e)),
                Some(_) => {}
                None => return Err(io::Error::other("port-mapping client stopped")),
            }
        }
    }

    /// The PCP nonce in use (store it to delete the mapping from another process); zero
    /// for UPnP.
    pub fn nonce(&self) -> Nonce {
        match &self.engine {
            Engine::Pmp { client, .. } => client.nonce(),
            Engine::Upnp(_) => [0; 12],
        }
    }

    /// The UPnP pinhole's `UniqueID` (store it to delete the pinhole from another
    /// process).
    pub fn pinhole_id(&self) -> Option<u16> {
        match &self.engine {
            Engine::Pmp { .. } => None,
            Engine::Upnp(d) => d.client().pinhole_id(),
        }
    }

    /// The current mapping.
    pub fn mapping(&self) -> Option<Mapping> {
        match &self.engine {
            Engine::Pmp { client, .. } => client.mapping(),
            Engine::Upnp(d) => d.client().mapping(),
        }
    }

    /// Run (renewing as needed) until the next event or `deadline`; `None` at the deadline
    /// or when the client has nothing left to do.
    pub async fn next_event(
        &mut self,
        rt: &R,
        deadline: Option<Instant>,
    ) -> io::Result<Option<PortMapEvent>> {
        let (set, client) = match &mut self.engine {
            Engine::Upnp(d) => return d.next_event(rt, deadline).await,
            Engine::Pmp { set, client } => (set, client),
        };
        loop {
            client.handle_timeout(rt.now());
            while let Some(t) = Machine::poll_transmit(client.as_mut()) {
                let _ = set.send(t.source, t.destination, t.contents).await;
            }
            if let Some(e) = client.poll_event() {
                return Ok(Some(e));
            }
            let wake = match (client.poll_timeout().map(|t| t.at), deadline) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => return Ok(None),
            };
            if let Some(r) = until(rt, wake, set.recv()).await {
                let (from, local, bytes) = r?;
                client.handle_input(rt.now(), from, local, bytes);
            } else if deadline.is_some_and(|d| rt.now() >= d) {
                return Ok(None);
            }
        }
    }

    /// Delete the mapping (lifetime 0 / DeletePortMapping / DeletePinhole) and wait for
    /// the gateway's answer or the retries to run out; `Ok(true)` when the gateway
    /// confirmed.
    pub async fn remove(mut self, rt: &R) -> io::Result<bool> {
        match &mut self.engine {
            Engine::Pmp { client, .. } => client.remove(rt.now()),
            Engine::Upnp(d) => d.remove(rt.now()),
        }
        loop {
            match self.next_event(rt, None).await? {
                Some(PortMapEvent::Removed { confirmed }) => return Ok(confirmed),
                Some(PortMapEvent::Failed(e)) => return Err(failed(e)),
                Some(_) => {}
                None => return Ok(false),
            }
        }
    }

    /// Map as [`map`](Self::map) does, then keep the mapping in a task spawned on `rt`:
    /// it renews at half the lease, publishes every event, and deletes the mapping when
    /// [`KeptMapping::shutdown`] is called or the handle is dropped. This is the call a
    /// node makes for its listen port.
    pub async fn keep(rt: &R, want: MapWanted, rng: &mut Rng) -> io::Result<KeptMapping> {
        let (mut mapper, first) = Self::map(rt, want, rng).await?;
        let current = Arc::new(Mutex::new(Some(first)));
        let (ev_tx, ev_rx) = async_channel::bounded(16);
        let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
        let (done_tx, done_rx) = async_channel::bounded(1);
        let shared = current.clone();
        let task_rt = rt.clone();
        rt.spawn(async move {
            let rt = task_rt;
            loop {
                let step = futures_lite::future::or(
                    async { Some(mapper.next_event(&rt, None).await) },
                    async {
                        let _ = stop_rx.recv().await;
                        None
                    },
                )
                .await;
                match step {
                    Some(Ok(Some(ev))) => {
                        let now_mapped = match &ev {
                            PortMapEvent::Mapped(m) => Some(*m),
                            PortMapEvent::Failed(_) | PortMapEvent::Removed { .. } => None,
                            PortMapEvent::EpochReset => mapper.mapping(),
                        };
                        if let Ok(mut g) = shared.lock() {
                            *g = now_mapped;
                        }
                        let end =
                            matches!(ev, PortMapEvent::Failed(_) | PortMapEvent::Removed { .. });
                        // A full channel drops its oldest event: renewals never stall.
                        let _ = ev_tx.force_send(ev);
                        if end {
                            let _ = done_tx.try_send(false);
                            return;
                        }
                    }
                    Some(Ok(None)) | Some(Err(_)) => {
                        if let Ok(mut g) = shared.lock() {
                            *g = None;
                        }
                        let _ = done_tx.try_send(false);
                        return;
                    }
                    None => break,
                }
            }
            let confirmed = mapper.remove(&rt).await.unwrap_or(false);
            if let Ok(mut g) = shared.lock() {
                *g = None;
            }
            let _ = ev_tx.force_send(PortMapEvent::Removed { confirmed });
            let _ = done_tx.try_send(confirmed);
        });
        Ok(KeptMapping {
            first,
            current,
            events: ev_rx,
            stop: stop_tx,
            done: done_rx,
        })
    }
}

/// A mapping kept alive by a background task (see [`PortMapper::keep`]).
#[derive(Debug)]
pub struct KeptMapping {
    first: Mapping,
    current: Arc<Mutex<Option<Mapping>>>,
    events: async_channel::Receiver<PortMapEvent>,
    stop: async_channel::Sender<()>,
    done: async_channel::Receiver<bool>,
}

impl KeptMapping {
    /// The mapping as first granted.
    pub fn first(&self) -> Mapping {
        self.first
    }

    /// The mapping now (`None` once it failed or was removed): external address and
    /// port, the protocol that worked, lease and expiry.
    pub fn current(&self) -> Option<Mapping> {
        self.current.lock().ok().and_then(|g| *g)
    }

    /// Every renewal, epoch reset, failure and the final removal (at most 16 queued;
    /// older ones are dropped if nobody reads).
    pub fn events(&self) -> &async_channel::Receiver<PortMapEvent> {
        &self.events
    }

    /// Delete the mapping and wait for the gateway; `true` when it confirmed.
    pub async fn shutdown(self) -> bool {
        let _ = self.stop.try_send(());
        self.done.recv().await.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_gateway_from_proc_net_route() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(
            parse_proc_net_route(table),
            Some(Ipv4Addr::new(192, 168, 0, 1))
        );
        assert_eq!(parse_proc_net_route("header\n"), None);
        assert_eq!(parse_proc_net_route("h\neth0 00000000 zz 0003\n"), None);
    }
}
