//! The same exchange as the lab's 10 MB test, in the simulator through p2pd's own TURN
//! server: two hosts behind symmetric random-port NATs allocate on core's `TurnServer`,
//! bind channels to each other's relayed address, and move a reliable stream (core's
//! `stream::Connection`) both ways at once over ChannelData. Checked byte for byte by
//! hash; deterministic per seed. 10 MB each way in release builds, 2 MB in debug builds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use p2pd_core::nat::{DeltaKind, NatType};
use p2pd_core::rng::Rng;
use p2pd_core::stream::{Config, Connection};
use p2pd_core::turn::{TurnClient, TurnClientConfig, TurnClientEvent, TurnServerConfig};
use p2pd_sim::{Datagram, Endpoint, HostConfig, HostId, LinkConfig, Network, RouterConfig};
use p2pd_sim::{EMPTY_HASH, fnv1a};

const SERVER: &str = "203.0.113.10:3478";

fn bytes_each_way() -> usize {
    if cfg!(debug_assertions) {
        2 << 20
    } else {
        10 << 20
    }
}

/// A host running a TURN client that carries one reliable stream to the peer's relay.
struct RelayedStream {
    client: TurnClient,
    conn: Connection,
    relayed: Option<SocketAddr>,
    peer: Option<SocketAddr>,
    bound: bool,
    data: Vec<u8>,
    written: usize,
    received: u64,
    hash: u64,
    now: Option<Instant>,
    errors: Vec<String>,
    buf: Vec<u8>,
}

impl RelayedStream {
    fn after(&mut self, now: Instant) {
        self.now = Some(now);
        while let Some(e) = self.client.poll_event() {
            match e {
                TurnClientEvent::Allocated { relayed, .. } => self.relayed = Some(relayed),
                TurnClientEvent::ChannelBound { .. } => self.bound = true,
                TurnClientEvent::Data { bytes, .. } => {
                    let _ = self.conn.handle_input(now, &bytes);
                }
                TurnClientEvent::Error(e) => self.errors.push(e.to_string()),
                TurnClientEvent::ServerUnreachable { .. } | TurnClientEvent::Expired => {
                    self.errors.push(format!("{e:?}"))
                }
                _ => {}
            }
        }
        if !self.bound {
            return;
        }
        self.written += self.conn.write(&self.data[self.written..]);
        if self.written == self.data.len() {
            self.conn.shutdown_write();
        }
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = self.conn.read(&mut chunk);
            if n == 0 {
                break;
            }
            self.received += n as u64;
            self.hash = fnv1a(self.hash, &chunk[..n]);
        }
        while self.conn.poll_event().is_some() {}
    }
}

impl Endpoint for RelayedStream {
    fn handle_input(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        self.client.handle_input(now, source, destination, bytes);
        self.after(now);
    }

    fn poll_transmit(&mut self) -> Option<Datagram> {
        if let Some(d) = self
            .client
            .poll_transmit()
            .and_then(|t| Datagram::from_transmit(&t))
        {
            return Some(d);
        }
        // The client's queue is empty: hand it the stream's next packet.
        let (Some(peer), Some(now)) = (self.peer.filter(|_| self.bound), self.now) else {
            return None;
        };
        let n = self.conn.poll_transmit(now, &mut self.buf)?;
        // A refused send is a lost packet; the stream retransmits it.
        self.client.send_to(now, peer, &self.buf[..n]).ok()?;
        self.client
            .poll_transmit()
            .and_then(|t| Datagram::from_transmit(&t))
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let turn = self.client.poll_timeout().map(|t| t.at);
        let stream = self
            .conn
            .poll_timeout()
            .filter(|_| self.bound)
            .map(|t| t.at);
        match (turn, stream) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.client.handle_timeout(now);
        if self.bound {
            self.conn.handle_timeout(now);
        }
        self.after(now);
    }
}

fn side(net: &Network, host: HostId) -> &RelayedStream {
    net.endpoint::<RelayedStream>(host).expect("endpoint")
}

/// Runs the exchange; returns per side (received, hash of received, hash sent) and the trace hash.
fn run(seed: u64, link: LinkConfig) -> ([(u64, u64, u64); 2], Duration, u64) {
    let mut net = Network::new(seed);
    net.record_trace(1_000);
    let server: SocketAddr = SERVER.parse().unwrap();
    let users = [("alice", "a-pass"), ("bob", "b-pass")];
    let mut cfg = TurnServerConfig::new(
        server,
        "sim.test",
        users
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect(),
    );
    cfg.relay_ports = (40000, 40999);
    net.add_turn_server(cfg, seed).unwrap();
    let mut rng = Rng::seed_from_u64(seed);
    let mut hosts = Vec::new();
    let mut sent_hash = Vec::new();
    for (i, (user, pass)) in users.into_iter().enumerate() {
        let nat = net
            .add_router(RouterConfig::for_type(
                NatType::Symmetric,
                DeltaKind::Random,
                0,
            ))
            .unwrap();
        let host = net
            .add_host(HostConfig::behind(nat).with_link(link))
            .unwrap();
        let ip = net.host_ip(host).unwrap();
        let local = SocketAddr::new(ip, net.free_port(host, ip).unwrap());
        let mut data = vec![0u8; bytes_each_way()];
        rng.fill(&mut data);
        sent_hash.push(fnv1a(EMPTY_HASH, &data));
        let conn = Connection::new(
            Config {
                connection_id: 0x7e57,
                ..Config::default()
            },
            net.now(),
        )
        .unwrap();
        let client = TurnClient::new(
            TurnClientConfig::udp(server, local, user, pass),
            Rng::seed_from_u64(seed * 10 + i as u64),
        );
        net.attach(
            host,
            RelayedStream {
                client,
                conn,
                relayed: None,
                peer: None,
                bound: false,
                data,
                written: 0,
                received: 0,
                hash: EMPTY_HASH,
                now: None,
                errors: Vec::new(),
                buf: vec![0u8; 1500],
            },
        )
        .unwrap();
        hosts.push(host);
    }
    for &h in &hosts {
        net.with_endpoint::<RelayedStream, _>(h, |e, now| e.client.allocate(now))
            .unwrap()
            .unwrap();
    }
    net.run_for(Duration::from_secs(5), 100_000);
    let relays = [0, 1].map(|i| side(&net, hosts[i]).relayed.expect("allocated"));
    for i in 0..2 {
        let peer = relays[1 - i];
        net.with_endpoint::<RelayedStream, _>(hosts[i], |e, now| {
            e.peer = Some(peer);
            e.client.bind_channel(now, peer)
        })
        .unwrap()
        .unwrap();
    }
    let start = net.now();
    let want = bytes_each_way() as u64;
    net.run_until_with(start + Duration::from_secs(600), 50_000_000, |n| {
        hosts
            .iter()
            .all(|&h| side(n, h).received == want && side(n, h).conn.is_peer_finished())
    });
    let elapsed = net.now() - start;
    for &h in &hosts {
        assert!(
            side(&net, h).errors.is_empty(),
            "{:?}",
            side(&net, h).errors
        );
    }
    let out = [0, 1].map(|i| {
        let s = side(&net, hosts[i]);
        (s.received, s.hash, sent_hash[1 - i])
    });
    (out, elapsed, net.trace_hash())
}

#[test]
fn reliable_stream_both_ways_through_core_turn_server() {
    for (name, link) in [
        ("clean", LinkConfig::with_latency(Duration::from_millis(5))),
        (
            "2 % loss",
            LinkConfig {
                loss: 0.02,
                ..LinkConfig::with_latency(Duration::from_millis(5))
            },
        ),
    ] {
        let (sides, elapsed, _) = run(11, link);
        for (i, (received, got, want)) in sides.into_iter().enumerate() {
            assert_eq!(
                received,
                bytes_each_way() as u64,
                "{name}: side {i} received everything"
            );
            assert_eq!(
                got, want,
                "{name}: side {i} received exactly what the other sent"
            );
        }
        let mbit = bytes_each_way() as f64 * 8.0 / elapsed.as_secs_f64() / 1e6;
        eprintln!(
            "{name}: {} bytes each way in {elapsed:?} of virtual time ({mbit:.1} Mbit/s per direction)",
            bytes_each_way()
        );
    }
}

#[test]
fn same_seed_same_trace() {
    let link = LinkConfig {
        loss: 0.02,
        ..LinkConfig::with_latency(Duration::from_millis(5))
    };
    let a = run(3, link);
    let b = run(3, link);
    assert_eq!(a.2, b.2);
    assert_eq!(a.1, b.1);
}
