//! Two hosts behind symmetric NATs exchange datagrams through core's TURN server on a
//! simulated public host: each allocates (answering the 401 challenge), binds a channel to
//! the other's relayed address, and sends numbered messages as ChannelData. Deterministic:
//! the same seed gives the same trace.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use p2pd_core::nat::{DeltaKind, NatType};
use p2pd_core::stun::{
    Class, ErrorCode, IntegrityKey, Message, MessageBuilder, MessageType, Method, Nonce,
    PasswordAlgorithmKind, Realm, TransactionId, Username, XorPeerAddress, XorRelayedAddress,
};
use p2pd_core::turn::{
    ChannelData, ChannelNumber, RequestedTransport, TransportProtocol, TurnServerConfig,
};
use p2pd_sim::{Datagram, Endpoint, HostConfig, Network, RouterConfig};

const SERVER: &str = "203.0.113.10:3478";
const REALM: &str = "sim.test";
const MESSAGES: u32 = 20;

/// A small TURN client for the scenario: Allocate (with the challenge), ChannelBind to a
/// peer given later, then one ChannelData message every 20 ms.
struct Client {
    local: SocketAddr,
    user: &'static str,
    pass: &'static str,
    nonce: Option<String>,
    relay: Option<SocketAddr>,
    peer: Option<SocketAddr>,
    bound: bool,
    sent: u32,
    next_send: Option<Instant>,
    received: Vec<Vec<u8>>,
    out: Vec<Datagram>,
    tid: u8,
}

impl Client {
    fn new(local: SocketAddr, user: &'static str, pass: &'static str) -> Self {
        let mut c = Client {
            local,
            user,
            pass,
            nonce: None,
            relay: None,
            peer: None,
            bound: false,
            sent: 0,
            next_send: None,
            received: Vec::new(),
            out: Vec::new(),
            tid: 0,
        };
        c.request(Method::ALLOCATE);
        c
    }

    fn request(&mut self, method: Method) {
        self.tid += 1;
        let mut buf = [0u8; 512];
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(method, Class::Request),
            TransactionId::new([self.tid; 12]),
        )
        .unwrap();
        if method == Method::ALLOCATE {
            b.add(&RequestedTransport(TransportProtocol::Udp)).unwrap();
        } else {
            b.add(&ChannelNumber::new(0x4001).unwrap()).unwrap();
            b.add(&XorPeerAddress(self.peer.unwrap())).unwrap();
        }
        if let Some(n) = &self.nonce {
            b.add(&Username::new(self.user).unwrap()).unwrap();
            b.add(&Realm::new(REALM).unwrap()).unwrap();
            b.add(&Nonce::new(n).unwrap()).unwrap();
            let key =
                IntegrityKey::long_term(self.user, REALM, self.pass, PasswordAlgorithmKind::Md5)
                    .unwrap();
            b.add_integrity(&key).unwrap();
        }
        b.add_fingerprint().unwrap();
        let bytes = b.finish().to_vec();
        self.out
            .push(Datagram::new(self.local, SERVER.parse().unwrap(), bytes));
    }

    fn set_peer(&mut self, peer: SocketAddr) {
        self.peer = Some(peer);
        self.request(Method::CHANNEL_BIND);
    }
}

impl Endpoint for Client {
    fn handle_input(&mut self, now: Instant, _from: SocketAddr, _to: SocketAddr, bytes: &[u8]) {
        if let Ok(cd) = ChannelData::parse(bytes) {
            self.received.push(cd.data().to_vec());
            return;
        }
        let Ok(m) = Message::parse(bytes) else { return };
        let method = m.message_type().method;
        match m.get::<ErrorCode>().unwrap() {
            Some(e) if e.code() == 401 && self.nonce.is_none() => {
                self.nonce = Some(m.get::<Nonce>().unwrap().unwrap().as_str().to_owned());
                self.request(method);
            }
            Some(e) => panic!("{method:?} refused: {} {}", e.code(), e.reason()),
            None if method == Method::ALLOCATE => {
                self.relay = Some(m.get::<XorRelayedAddress>().unwrap().unwrap().0);
            }
            None => {
                self.bound = true;
                self.next_send = Some(now);
            }
        }
    }

    fn poll_transmit(&mut self) -> Option<Datagram> {
        (!self.out.is_empty()).then(|| self.out.remove(0))
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next_send
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.next_send.is_some_and(|t| t <= now) && self.sent < MESSAGES {
            let payload = format!("{} #{}", self.user, self.sent);
            let mut buf = [0u8; 128];
            let n = ChannelData::emit(
                ChannelNumber::new(0x4001).unwrap(),
                payload.as_bytes(),
                false,
                &mut buf,
            )
            .unwrap();
            self.out.push(Datagram::new(
                self.local,
                SERVER.parse().unwrap(),
                buf[..n].to_vec(),
            ));
            self.sent += 1;
            self.next_send = (self.sent < MESSAGES).then(|| now + Duration::from_millis(20));
        }
    }
}

struct Outcome {
    a_got: Vec<Vec<u8>>,
    b_got: Vec<Vec<u8>>,
    relays: (SocketAddr, SocketAddr),
    relayed: (u64, u64),
    trace: u64,
}

fn run(seed: u64) -> Outcome {
    let mut net = Network::new(seed);
    net.record_trace(100_000);
    let mut cfg = TurnServerConfig::new(
        SERVER.parse().unwrap(),
        REALM,
        vec![
            ("alice".into(), "a-pass".into()),
            ("bob".into(), "b-pass".into()),
        ],
    );
    cfg.relay_ports = (40000, 40999);
    let turn = net.add_turn_server(cfg, seed).unwrap();
    let mut hosts = Vec::new();
    for (user, pass) in [("alice", "a-pass"), ("bob", "b-pass")] {
        let nat = net
            .add_router(RouterConfig::for_type(
                NatType::Symmetric,
                DeltaKind::Random,
                0,
            ))
            .unwrap();
        let host = net.add_host(HostConfig::behind(nat)).unwrap();
        let ip = net.host_ip(host).unwrap();
        let local = SocketAddr::new(ip, net.free_port(host, ip).unwrap());
        net.attach(host, Client::new(local, user, pass)).unwrap();
        hosts.push(host);
    }
    let (a, b) = (hosts[0], hosts[1]);
    net.run_for(Duration::from_secs(1), 10_000);
    let ra = net
        .endpoint::<Client>(a)
        .unwrap()
        .relay
        .expect("alice allocated");
    let rb = net
        .endpoint::<Client>(b)
        .unwrap()
        .relay
        .expect("bob allocated");
    net.with_endpoint::<Client, _>(a, |c, _| c.set_peer(rb))
        .unwrap();
    net.with_endpoint::<Client, _>(b, |c, _| c.set_peer(ra))
        .unwrap();
    net.run_for(Duration::from_secs(3), 100_000);
    let s = net.turn_server(turn).unwrap().stats();
    Outcome {
        a_got: net.endpoint::<Client>(a).unwrap().received.clone(),
        b_got: net.endpoint::<Client>(b).unwrap().received.clone(),
        relays: (ra, rb),
        relayed: (s.relayed_to_peers, s.relayed_to_clients),
        trace: net.trace_hash(),
    }
}

#[test]
fn two_symmetric_nated_hosts_exchange_datagrams_through_the_turn_server() {
    let o = run(7);
    assert!(o.a_got.len() as u32 == MESSAGES && o.b_got.len() as u32 == MESSAGES);
    let want = |user: &str| -> Vec<Vec<u8>> {
        (0..MESSAGES)
            .map(|i| format!("{user} #{i}").into_bytes())
            .collect()
    };
    assert_eq!(o.a_got, want("bob"), "alice gets bob's messages in order");
    assert_eq!(o.b_got, want("alice"), "bob gets alice's messages in order");
    assert_ne!(o.relays.0, o.relays.1);
    assert_eq!(
        o.relays.0.ip(),
        "203.0.113.10".parse::<std::net::IpAddr>().unwrap()
    );
    // Each message crosses the relay twice: client → peer (to the other relayed
    // address), then peer → client.
    assert_eq!(
        o.relayed,
        (2 * u64::from(MESSAGES), 2 * u64::from(MESSAGES))
    );
}

#[test]
fn the_relay_scenario_is_deterministic_per_seed() {
    for seed in [1, 2, 3] {
        let (x, y) = (run(seed), run(seed));
        assert_eq!(x.trace, y.trace, "seed {seed}");
        assert_eq!(x.relays, y.relays, "seed {seed}");
        assert_eq!(
            (x.a_got.len(), x.b_got.len()),
            (MESSAGES as usize, MESSAGES as usize)
        );
    }
    assert_ne!(run(1).relays, run(2).relays, "relay ports follow the seed");
}
