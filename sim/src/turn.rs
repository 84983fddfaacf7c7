//! Core's [`TurnServer`] on a simulated public host: the production relay, not a model of
//! it. Clients reach it over UDP or over the simulator's TCP ([`crate::tcp`]), whose byte
//! stream is cut into frames with [`stream_frame_len`]; relay "sockets" are bound at once,
//! since a simulated host receives on every port of its addresses.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use p2pd_core::Transport;
use p2pd_core::rng::Rng;
use p2pd_core::turn::{TurnServer, TurnServerConfig, TurnServerEvent, stream_frame_len};

use crate::endpoint::{Datagram, Endpoint};
use crate::error::SimError;
use crate::host::{HostConfig, InterfaceConfig};
use crate::link::LinkConfig;
use crate::network::{Attachment, HostId, Network};
use crate::tcp::{TcpEvent, TcpId, TcpStack};

/// Most bytes buffered from one TCP client before a frame completes.
const MAX_TCP_BUFFER: usize = 128 * 1024;

/// Transmits kept between the server and the network; the server's own queue is bounded
/// too, and the network drains this after every input.
const MAX_OUT: usize = 4096;

/// A [`TurnServer`] as an [`Endpoint`].
#[derive(Debug)]
pub struct TurnEndpoint {
    server: TurnServer,
    out: VecDeque<Datagram>,
    tcp: TcpStack,
    /// TCP clients: connection → (client address, bytes not yet framed).
    clients: BTreeMap<TcpId, (SocketAddr, Vec<u8>)>,
}

impl TurnEndpoint {
    /// Wraps a server.
    pub fn new(server: TurnServer, listen: SocketAddr) -> Self {
        let mut tcp = TcpStack::new();
        tcp.listen(listen);
        TurnEndpoint {
            server,
            out: VecDeque::new(),
            tcp,
            clients: BTreeMap::new(),
        }
    }

    fn tcp_events(&mut self, now: Instant) {
        for _ in 0..10_000 {
            let Some(e) = self.tcp.poll_event() else {
                break;
            };
            match e {
                TcpEvent::Accepted { id, remote, .. } => {
                    self.clients.insert(id, (remote, Vec::new()));
                }
                TcpEvent::Readable(id) => {
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        let n = self.tcp.read(now, id, &mut buf);
                        if n == 0 {
                            break;
                        }
                        if let Some((_, rx)) = self.clients.get_mut(&id) {
                            rx.extend_from_slice(&buf[..n]);
                        }
                    }
                    self.frames(now, id);
                }
                TcpEvent::Closed { id } | TcpEvent::Failed { id, .. } => {
                    if let Some((client, _)) = self.clients.remove(&id) {
                        self.server.handle_stream_closed(now, client);
                    }
                    self.tcp.abort(id);
                }
                _ => {}
            }
        }
    }

    fn frames(&mut self, now: Instant, id: TcpId) {
        loop {
            let Some((client, rx)) = self.clients.get_mut(&id) else {
                return;
            };
            let len = match stream_frame_len(rx) {
                None if rx.len() <= MAX_TCP_BUFFER => return,
                Some(Ok(n)) if rx.len() >= n => n,
                Some(Ok(n)) if n <= MAX_TCP_BUFFER => return,
                _ => {
                    // Not STUN or ChannelData, or too big: drop the client.
                    let client = *client;
                    self.clients.remove(&id);
                    self.tcp.abort(id);
                    self.server.handle_stream_closed(now, client);
                    return;
                }
            };
            let client = *client;
            let frame: Vec<u8> = rx.drain(..len).collect();
            self.server.handle_stream_frame(now, client, &frame);
        }
    }

    /// The wrapped server (for its counters and allocations).
    pub fn server(&self) -> &TurnServer {
        &self.server
    }

    fn drain(&mut self, now: Instant) {
        while let Some(e) = self.server.poll_event() {
            if let TurnServerEvent::BindRelay { relay } = e {
                self.server.relay_bound(now, relay, true);
            }
        }
        while let Some(t) = self.server.poll_transmit() {
            match t.transport {
                Transport::Udp => {
                    if self.out.len() < MAX_OUT
                        && let Some(d) = Datagram::from_transmit(&t)
                    {
                        self.out.push_back(d);
                    }
                }
                Transport::Tcp => {
                    let to = t.destination;
                    let bytes = t.contents.to_vec();
                    if let Some((&id, _)) = self.clients.iter().find(|(_, (c, _))| *c == to) {
                        // A full send buffer drops the frame, as a stalled client's
                        // kernel buffer would stop it.
                        self.tcp.write(now, id, &bytes);
                    }
                }
            }
        }
    }
}

impl Endpoint for TurnEndpoint {
    fn handle_input(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        self.server.handle_input(now, source, destination, bytes);
        self.drain(now);
    }

    fn handle_tcp(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        self.tcp.handle_input(now, source, destination, bytes);
        self.tcp_events(now);
        self.drain(now);
    }

    fn poll_transmit(&mut self) -> Option<Datagram> {
        self.out.pop_front().or_else(|| self.tcp.poll_transmit())
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let a = self.server.poll_timeout().map(|t| t.at);
        let b = self.tcp.poll_timeout();
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.server.handle_timeout(now);
        self.tcp.handle_timeout(now);
        self.tcp_events(now);
        self.drain(now);
    }
}

/// A TURN server placed with [`Network::add_turn_server`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TurnServerId(HostId);

impl TurnServerId {
    /// The host the server runs on.
    pub fn host(self) -> HostId {
        self.0
    }
}

impl Network {
    /// Places core's [`TurnServer`] on its own public host, at the listen address and the
    /// relay IP of `config`; its randomness is `seed`'s (nonce key, relay ports).
    pub fn add_turn_server(
        &mut self,
        config: TurnServerConfig,
        seed: u64,
    ) -> Result<TurnServerId, SimError> {
        let config_listen = config.listen;
        let mut ips = vec![config.listen.ip()];
        if config.relay_ip != config.listen.ip() {
            ips.push(config.relay_ip);
        }
        let server = TurnServer::new(config, Rng::seed_from_u64(seed), self.now())?;
        let mut host = HostConfig::default();
        for ip in ips {
            host = host.with_interface(
                InterfaceConfig::new(Attachment::Internet)
                    .with_ip(ip)
                    .with_link(LinkConfig::default()),
            );
        }
        let id = self.add_host(host)?;
        let listen = config_listen;
        self.attach(id, TurnEndpoint::new(server, listen))?;
        Ok(TurnServerId(id))
    }

    /// The TURN server `id` (for its counters and allocations).
    pub fn turn_server(&self, id: TurnServerId) -> Option<&TurnServer> {
        self.endpoint::<TurnEndpoint>(id.0)
            .map(TurnEndpoint::server)
    }
}
