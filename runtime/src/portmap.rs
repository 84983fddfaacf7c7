//! Drives the sans-IO [`PortMapClient`] (PCP, then NAT-PMP) over one UDP socket towards the
//! gateway, on any [`Runtime`]; and finds the default IPv4 gateway in `/proc/net/route`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use p2pd_core::Machine;
use p2pd_core::portmap::client::{
    Mapping, PortMapClient, PortMapConfig, PortMapError, PortMapEvent, Via,
};
use p2pd_core::portmap::natpmp::{MapProtocol, NATPMP_SERVER_PORT};
use p2pd_core::portmap::pcp::Nonce;
use p2pd_core::rng::Rng;

use crate::Runtime;
use crate::net::{bind_udp, route_local_ip};
use crate::socket_set::SocketSet;
use crate::timer::until;

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
    /// The gateway's LAN address.
    pub gateway: IpAddr,
    /// UDP or TCP.
    pub protocol: MapProtocol,
    /// The local port.
    pub internal_port: u16,
    /// Requested lease in seconds.
    pub lease: u32,
    /// Protocols to try in order (empty: PCP, then NAT-PMP).
    pub order: Vec<Via>,
    /// A stored PCP nonce (to refresh or delete an earlier process's mapping).
    pub nonce: Option<Nonce>,
}

/// A port mapping being kept: the client machine and its socket.
#[derive(Debug)]
pub struct PortMapper<S> {
    set: SocketSet<S>,
    client: PortMapClient,
}

fn failed(e: PortMapError) -> io::Error {
    io::Error::other(e.to_string())
}

impl<S: crate::AsyncUdpSocket> PortMapper<S> {
    /// Ask `gateway` for a mapping of `internal_port` and wait for the answer (a few
    /// seconds at most when the gateway is silent).
    pub async fn map<R: Runtime<UdpSocket = S>>(
        rt: &R,
        want: MapWanted,
        rng: &mut Rng,
    ) -> io::Result<(Self, Mapping)> {
        let MapWanted {
            gateway,
            protocol,
            internal_port,
            lease,
            order,
            nonce,
        } = want;
        let ip = route_local_ip(SocketAddr::new(gateway, NATPMP_SERVER_PORT))?;
        let socket = bind_udp(rt, SocketAddr::new(ip, 0), false)?;
        let local = socket.local_addr()?;
        let mut config = PortMapConfig::new(gateway, local, protocol, internal_port, lease);
        if !order.is_empty() {
            config.order = order;
        }
        config.nonce = nonce;
        let client = PortMapClient::new(config, rng, rt.now());
        let mut me = Self {
            set: SocketSet::new(vec![(local, socket)]),
            client,
        };
        loop {
            match me.next_event(rt, None).await? {
                Some(PortMapEvent::Mapped(m)) => return Ok((me, m)),
                Some(PortMapEvent::Failed(e)) => return Err(failed(e)),
                Some(_) => {}
                None => return Err(io::Error::other("port-mapping client stopped")),
            }
        }
    }

    /// The PCP nonce in use (store it to delete the mapping from another process).
    pub fn nonce(&self) -> Nonce {
        self.client.nonce()
    }

    /// The current mapping.
    pub fn mapping(&self) -> Option<Mapping> {
        self.client.mapping()
    }

    /// Run (renewing as needed) until the next event or `deadline`; `None` at the deadline
    /// or when the client has nothing left to do.
    pub async fn next_event<R: Runtime<UdpSocket = S>>(
        &mut self,
        rt: &R,
        deadline: Option<Instant>,
    ) -> io::Result<Option<PortMapEvent>> {
        loop {
            self.client.handle_timeout(rt.now());
            while let Some(t) = Machine::poll_transmit(&mut self.client) {
                let _ = self.set.send(t.source, t.destination, t.contents).await;
            }
            if let Some(e) = self.client.poll_event() {
                return Ok(Some(e));
            }
            let wake = match (self.client.poll_timeout().map(|t| t.at), deadline) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => return Ok(None),
            };
            if let Some(r) = until(rt, wake, self.set.recv()).await {
                let (from, local, bytes) = r?;
                self.client.handle_input(rt.now(), from, local, bytes);
            } else if deadline.is_some_and(|d| rt.now() >= d) {
                return Ok(None);
            }
        }
    }

    /// Delete the mapping (lifetime 0) and wait for the gateway's answer or the retries
    /// to run out; `Ok(true)` when the gateway confirmed.
    pub async fn remove<R: Runtime<UdpSocket = S>>(mut self, rt: &R) -> io::Result<bool> {
        self.client.remove(rt.now());
        loop {
            match self.next_event(rt, None).await? {
                Some(PortMapEvent::Removed { confirmed }) => return Ok(confirmed),
                Some(_) => {}
                None => return Ok(false),
            }
        }
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
