//! Drives the sans-IO [`UpnpClient`] on any [`Runtime`]: SSDP over one UDP socket, HTTP
//! over the TCP connections the client asks for (one at a time, each bounded by the
//! client's deadline).

use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::time::Instant;

use p2pd_core::portmap::client::PortMapEvent;
use p2pd_core::portmap::upnp::client::{ConnId, TcpCommand, UpnpClient, UpnpConfig};
use p2pd_core::portmap::upnp::ssdp::{self, SSDP_PORT};

use crate::net::{bind_udp, connect_tcp};
use crate::runtime::{AsyncTcpStream, AsyncUdpSocket};
use crate::timer::until;
use crate::{Runtime, interfaces};

/// Largest SSDP datagram read (longer ones are truncated and then refused by the parser).
const SSDP_BUF: usize = 2048;
/// Read size on the HTTP connection.
const TCP_CHUNK: usize = 4096;
/// Most TCP commands handled in one turn of the loop (the client queues at most three).
const COMMANDS_PER_TURN: usize = 16;

/// The interface index that holds `ip` (for the IPv6 SSDP group's scope).
fn scope_of(ip: IpAddr) -> Option<u32> {
    interfaces::list()
        .ok()?
        .into_iter()
        .find(|i| i.addrs().any(|a| a == ip))
        .and_then(|i| i.index)
}

/// Where M-SEARCH goes for a host at `local`: the family's multicast group, and the
/// gateway itself when known (a unicast search works where multicast does not).
pub fn ssdp_destinations(local: IpAddr, gateway: Option<IpAddr>) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    match local {
        IpAddr::V4(_) => out.push(ssdp::ssdp_v4()),
        IpAddr::V6(_) => out.push(ssdp::ssdp_v6(scope_of(local).unwrap_or(0))),
    }
    if let Some(g) = gateway.filter(|g| g.is_ipv4() == local.is_ipv4() && !g.is_unspecified()) {
        let scope = match g {
            IpAddr::V6(v6) if v6.is_unicast_link_local() => scope_of(local).unwrap_or(0),
            _ => 0,
        };
        out.push(match g {
            IpAddr::V4(_) => SocketAddr::new(g, SSDP_PORT),
            IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(v6, SSDP_PORT, 0, scope)),
        });
    }
    out
}

/// The (local, remote) pair to connect: a link-local IPv6 gateway URL carries no zone, so
/// the scope comes from the interface holding `local_ip` and the kernel picks the
/// link-local source; anything else connects from `local_ip`.
fn link_local_fix(local_ip: IpAddr, remote: SocketAddr) -> (SocketAddr, SocketAddr) {
    match remote {
        SocketAddr::V6(r) if r.ip().is_unicast_link_local() && r.scope_id() == 0 => {
            let scope = scope_of(local_ip).unwrap_or(0);
            (
                SocketAddr::V6(SocketAddrV6::new(
                    std::net::Ipv6Addr::UNSPECIFIED,
                    0,
                    0,
                    scope,
                )),
                SocketAddr::V6(SocketAddrV6::new(*r.ip(), r.port(), 0, scope)),
            )
        }
        _ => (SocketAddr::new(local_ip, 0), remote),
    }
}

/// One UPnP mapping or pinhole being kept: the client, its SSDP socket and its HTTP
/// connection.
#[derive(Debug)]
pub struct UpnpDriver<R: Runtime> {
    client: UpnpClient,
    udp: R::UdpSocket,
    local_ip: IpAddr,
    conn: Option<(ConnId, R::TcpStream)>,
}

impl<R: Runtime> UpnpDriver<R> {
    /// Binds the SSDP socket on `config.local`'s IP (port 0 picks one) and starts the
    /// client.
    pub fn start(rt: &R, mut config: UpnpConfig) -> io::Result<Self> {
        let udp = bind_udp(rt, config.local, false)?;
        config.local = udp.local_addr()?;
        let local_ip = config.local.ip();
        Ok(Self {
            client: UpnpClient::new(config, rt.now()),
            udp,
            local_ip,
            conn: None,
        })
    }

    /// The client (mapping, pinhole id, control URL).
    pub fn client(&self) -> &UpnpClient {
        &self.client
    }

    /// Delete the mapping; the next events end in [`PortMapEvent::Removed`].
    pub fn remove(&mut self, now: Instant) {
        self.client.remove(now);
    }

    async fn run_commands(&mut self, rt: &R) {
        for _ in 0..COMMANDS_PER_TURN {
            let Some(cmd) = self.client.poll_tcp() else {
                return;
            };
            match cmd {
                TcpCommand::Connect { conn, remote } => {
                    self.conn = None;
                    let deadline = self
                        .client
                        .poll_timeout()
                        .map_or(rt.now(), |t| t.at)
                        .max(rt.now());
                    let (local, remote) = link_local_fix(self.local_ip, remote);
                    match until(rt, deadline, connect_tcp(rt, local, remote, false)).await {
                        Some(Ok(stream)) => {
                            self.conn = Some((conn, stream));
                            self.client.handle_tcp_connected(rt.now(), conn);
                        }
                        Some(Err(_)) => self.client.handle_tcp_closed(rt.now(), conn),
                        // The client's own deadline reports the timeout.
                        None => self.client.handle_timeout(rt.now()),
                    }
                }
                TcpCommand::Send { conn, bytes } => {
                    let ok = match &mut self.conn {
                        Some((id, stream)) if *id == conn => stream.write_all(&bytes).await.is_ok(),
                        _ => false,
                    };
                    if !ok {
                        self.conn = None;
                        self.client.handle_tcp_closed(rt.now(), conn);
                    }
                }
                TcpCommand::Close { conn } => {
                    if self.conn.as_ref().is_some_and(|(id, _)| *id == conn) {
                        self.conn = None;
                    }
                }
            }
        }
    }

    /// Run (renewing as needed) until the next event or `deadline`; `None` at the
    /// deadline or when the client has nothing left to do.
    pub async fn next_event(
        &mut self,
        rt: &R,
        deadline: Option<Instant>,
    ) -> io::Result<Option<PortMapEvent>> {
        let mut udp_buf = vec![0u8; SSDP_BUF];
        let mut tcp_buf = vec![0u8; TCP_CHUNK];
        loop {
            self.client.handle_timeout(rt.now());
            while let Some(t) = self.client.poll_transmit() {
                // A lost M-SEARCH is retried by the client's next round.
                let _ = self.udp.send_to(t.contents, t.destination).await;
            }
            self.run_commands(rt).await;
            if let Some(e) = self.client.poll_event() {
                return Ok(Some(e));
            }
            if deadline.is_some_and(|d| rt.now() >= d) {
                return Ok(None);
            }
            let wake = match (self.client.poll_timeout().map(|t| t.at), deadline) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => return Ok(None),
            };
            if let Some((id, stream)) = &mut self.conn {
                let id = *id;
                match until(rt, wake, stream.read(&mut tcp_buf)).await {
                    Some(Ok(0)) | Some(Err(_)) => {
                        self.conn = None;
                        self.client.handle_tcp_closed(rt.now(), id);
                    }
                    Some(Ok(n)) => self.client.handle_tcp_data(rt.now(), id, &tcp_buf[..n]),
                    None => {}
                }
            } else if let Some(Ok((n, from))) =
                until(rt, wake, self.udp.recv_from(&mut udp_buf)).await
            {
                let local = self.udp.local_addr()?;
                self.client
                    .handle_input(rt.now(), from, local, &udp_buf[..n]);
            }
        }
    }
}
