//! Core's [`TurnServer`] on a simulated public host: the production relay, not a model of
//! it. UDP only (the simulator carries no TCP); relay "sockets" are bound at once, since a
//! simulated host receives on every port of its addresses.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use p2pd_core::Transport;
use p2pd_core::rng::Rng;
use p2pd_core::turn::{TurnServer, TurnServerConfig, TurnServerEvent};

use crate::endpoint::{Datagram, Endpoint};
use crate::error::SimError;
use crate::host::{HostConfig, InterfaceConfig};
use crate::link::LinkConfig;
use crate::network::{Attachment, HostId, Network};

/// Transmits kept between the server and the network; the server's own queue is bounded
/// too, and the network drains this after every input.
const MAX_OUT: usize = 4096;

/// A [`TurnServer`] as an [`Endpoint`].
#[derive(Debug)]
pub struct TurnEndpoint {
    server: TurnServer,
    out: VecDeque<Datagram>,
}

impl TurnEndpoint {
    /// Wraps a server.
    pub fn new(server: TurnServer) -> Self {
        TurnEndpoint {
            server,
            out: VecDeque::new(),
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
            if t.transport == Transport::Udp && self.out.len() < MAX_OUT {
                if let Some(d) = Datagram::from_transmit(&t) {
                    self.out.push_back(d);
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

    fn poll_transmit(&mut self) -> Option<Datagram> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.server.poll_timeout().map(|t| t.at)
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.server.handle_timeout(now);
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
        self.attach(id, TurnEndpoint::new(server))?;
        Ok(TurnServerId(id))
    }

    /// The TURN server `id` (for its counters and allocations).
    pub fn turn_server(&self, id: TurnServerId) -> Option<&TurnServer> {
        self.endpoint::<TurnEndpoint>(id.0)
            .map(TurnEndpoint::server)
    }
}
