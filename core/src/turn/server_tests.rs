//! One test per rule of the TURN server.

use super::*;

const LISTEN: &str = "198.51.100.1:3478";
const CLIENT: &str = "192.0.2.10:50000";
const PEER: &str = "203.0.113.5:4000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn config() -> TurnServerConfig {
    let mut c = TurnServerConfig::new(
        addr(LISTEN),
        "example.org",
        vec![
            ("alice".into(), "secret".into()),
            ("bob".into(), "hunter2".into()),
        ],
    );
    c.relay_ports = (50000, 50099);
    c
}

fn server_with(c: TurnServerConfig, t0: Instant) -> TurnServer {
    TurnServer::new(c, Rng::seed_from_u64(1), t0).unwrap()
}

/// What the server sent, owned.
#[derive(Debug, Clone)]
struct Out {
    transport: Transport,
    source: SocketAddr,
    destination: SocketAddr,
    bytes: Vec<u8>,
}

fn drain(s: &mut TurnServer) -> Vec<Out> {
    let mut v = Vec::new();
    while let Some(t) = s.poll_transmit() {
        v.push(Out {
            transport: t.transport,
            source: t.source,
            destination: t.destination,
            bytes: t.contents.to_vec(),
        });
    }
    v
}

/// Binds every relay the server asks for (like a driver whose binds succeed).
fn bind_all(s: &mut TurnServer, now: Instant) {
    while let Some(e) = s.poll_event() {
        if let TurnServerEvent::BindRelay { relay } = e {
            s.relay_bound(now, relay, true);
        }
    }
}

/// A long-term credential client speaking to the server by hand.
struct Client {
    user: &'static str,
    pass: &'static str,
    nonce: String,
    sha256: bool,
    n: u32,
}

impl Client {
    fn new(user: &'static str, pass: &'static str) -> Self {
        Client {
            user,
            pass,
            nonce: String::new(),
            sha256: false,
            n: 0,
        }
    }

    fn request(
        &mut self,
        method: Method,
        extra: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), StunError>,
    ) -> Vec<u8> {
        self.n += 1;
        let mut buf = vec![0u8; 1500];
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(method, Class::Request),
            TransactionId::new({
                let mut id = [0u8; 12];
                id[..4].copy_from_slice(&self.n.to_be_bytes());
                id
            }),
        )
        .unwrap();
        extra(&mut b).unwrap();
        if !self.nonce.is_empty() {
            b.add(&Username::new(self.user).unwrap()).unwrap();
            b.add(&Realm::new("example.org").unwrap()).unwrap();
            b.add(&Nonce::new(&self.nonce).unwrap()).unwrap();
            let kind = if self.sha256 {
                PasswordAlgorithmKind::Sha256
            } else {
                PasswordAlgorithmKind::Md5
            };
            if self.sha256 {
                b.add(&PasswordAlgorithms::new(&offered_algorithms()).unwrap())
                    .unwrap();
                b.add(&PasswordAlgorithm::new(kind)).unwrap();
            }
            let key = IntegrityKey::long_term(self.user, "example.org", self.pass, kind).unwrap();
            if self.sha256 {
                b.add_integrity_sha256(&key).unwrap();
            } else {
                b.add_integrity(&key).unwrap();
            }
        }
        b.add_fingerprint().unwrap();
        b.finish().to_vec()
    }

    /// Learns the nonce from a 401/438.
    fn learn(&mut self, resp: &[u8]) {
        let m = Message::parse(resp).unwrap();
        self.nonce = m.get::<Nonce>().unwrap().unwrap().as_str().to_owned();
    }
}

fn code(bytes: &[u8]) -> Option<u16> {
    Message::parse(bytes)
        .unwrap()
        .get::<ErrorCode>()
        .unwrap()
        .map(|e| e.code())
}

fn allocate_req(c: &mut Client) -> Vec<u8> {
    c.request(Method::ALLOCATE, |b| {
        b.add(&RequestedTransport(TransportProtocol::Udp))?;
        Ok(())
    })
}

/// Sends `req` from CLIENT over UDP and returns the single response.
fn ask(s: &mut TurnServer, now: Instant, from: &str, req: &[u8]) -> Vec<u8> {
    s.handle_input(now, addr(from), addr(LISTEN), req);
    bind_all(s, now);
    let out = drain(s);
    assert_eq!(out.len(), 1, "one response expected, got {out:?}");
    assert_eq!(out[0].source, addr(LISTEN));
    assert_eq!(out[0].destination, addr(from));
    out[0].bytes.clone()
}

/// An authenticated client with an allocation; returns it and its relayed address.
fn allocated(s: &mut TurnServer, now: Instant, from: &str) -> (Client, SocketAddr) {
    let mut c = Client::new("alice", "secret");
    let r = ask(s, now, from, &allocate_req(&mut c));
    assert_eq!(code(&r), Some(401));
    c.learn(&r);
    let r = ask(s, now, from, &allocate_req(&mut c));
    assert_eq!(code(&r), None, "allocate failed");
    let m = Message::parse(&r).unwrap();
    let key = IntegrityKey::long_term("alice", "example.org", "secret", PasswordAlgorithmKind::Md5)
        .unwrap();
    m.verify_integrity(&key).unwrap();
    let relay = m.get::<XorRelayedAddress>().unwrap().unwrap().0;
    assert_eq!(m.get::<Lifetime>().unwrap(), Some(Lifetime(600)));
    assert_eq!(m.get::<XorMappedAddress>().unwrap().unwrap().0, addr(from));
    (c, relay)
}

fn permit(s: &mut TurnServer, now: Instant, c: &mut Client, peer: &str) -> Option<u16> {
    let req = c.request(Method::CREATE_PERMISSION, |b| {
        b.add(&XorPeerAddress(addr(peer)))?;
        Ok(())
    });
    code(&ask(s, now, CLIENT, &req))
}

fn bind_channel(
    s: &mut TurnServer,
    now: Instant,
    c: &mut Client,
    ch: u16,
    peer: &str,
) -> Option<u16> {
    let req = c.request(Method::CHANNEL_BIND, |b| {
        b.add(&ChannelNumber::new(ch).unwrap())?
            .add(&XorPeerAddress(addr(peer)))?;
        Ok(())
    });
    code(&ask(s, now, CLIENT, &req))
}

fn send_indication(peer: &str, data: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 1500];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::SEND, Class::Indication),
        TransactionId::new([9; 12]),
    )
    .unwrap();
    b.add(&XorPeerAddress(addr(peer))).unwrap();
    b.add(&Data(data)).unwrap();
    b.finish().to_vec()
}

#[test]
fn unauthenticated_request_is_challenged_with_realm_nonce_and_algorithms() {
    let t0 = Instant::now();
    let mut s = server_with(config(), t0);
    let mut c = Client::new("alice", "secret");
    let r = ask(&mut s, t0, CLIENT, &allocate_req(&mut c));
    let m = Message::parse(&r).unwrap();
    assert_eq!(
        m.message_type(),
        MessageType::new(Method::ALLOCATE, Class::Error)
    );
    assert_eq!(code(&r), Some(401));
    assert_eq!(m.get::<Realm>().unwrap().unwrap().as_str(), "example.org");
    assert!(
        m.get::<Nonce>()
            .unwrap()
            .unwrap()
            .as_str()
            .starts_with("obMatJos2")
    );
    let algs: Vec<_> = m
        .get::<PasswordAlgorithms>()
        .unwrap()
        .unwrap()
        .iter()
        .map(|a| a.kind)
        .collect();
    assert_eq!(
        algs,
        [PasswordAlgorithmKind::Md5, PasswordAlgorithmKind::Sha256]
    );
    assert!(!m.has_integrity());
    assert_eq!(s.allocation_count(), 0);
}

#[test]
fn wrong_password_unknown_user_and_forged_nonce_get_401() {
    let t0 = Instant::now();
    let mut s = server_with(config(), t0);
    for (user, pass) in [("alice", "wrong"), ("mallory", "secret")] {
        let mut c = Client::new(user, pass);
        let req = allocate_req(&mut c);
        c.learn(&ask(&mut s, t0, CLIENT, &req));
        assert_eq!(
            code(&ask(&mut s, t0, CLIENT, &allocate_req(&mut c))),
            Some(401)
        );
    }
    let mut c = Client::new("alice", "secret");
    c.nonce = "obMatJos2gAAA00000000ffffffff0000000000000000".into();
    assert_eq!(
        code(&ask(&mut s, t0, CLIENT, &allocate_req(&mut c))),
        Some(401)
    );
    c.nonce = "not-ours".into();
    assert_eq!(
        code(&ask(&mut s, t0, CLIENT, &allocate_req(&mut c))),
        Some(401)
    );
    assert_eq!(s.allocation_count(), 0);
    assert!(
        s.poll_event().is_none(),
        "no relay socket for a refused request"
    );
}

#[test]
fn expired_nonce_gets_438_and_a_fresh_one_works() {
    let t0 = Instant::now();
    let mut c2 = config();
    c2.limits.nonce_lifetime = Duration::from_secs(60);
    let mut s = server_with(c2, t0);
    let mut c = Client::new("alice", "secret");
    let req = allocate_req(&mut c);
    c.learn(&ask(&mut s, t0, CLIENT, &req));
    let later = t0 + Duration::from_secs(61);
    let r = ask(&mut s, later, CLIENT, &allocate_req(&mut c));
    assert_eq!(code(&r), Some(438));
    c.learn(&r);
    assert_eq!(
        code(&ask(&mut s, later, CLIENT, &allocate_req(&mut c))),
        None
    );
    assert_eq!(s.allocation_count(), 1);
}

#[test]
fn sha256_password_algorithm_and_integrity_are_answered_in_kind() {
    let t0 = Instant::now();
    let mut s = server_with(config(), t0);
    let mut c = Client::new("bob", "hunter2");
    let req = allocate_req(&mut c);
    c.learn(&ask(&mut s, t0, CLIENT, &req));
    c.sha256 = true;
    let r = ask(&mut s, t0, CLIENT, &allocate_req(&mut c));
    assert_eq!(code(&r), None);
    let m = Message::parse(&r).unwrap();
    assert!(m.has_integrity_sha256() && !m.has_integrity());
    let key = IntegrityKey::long_term(
        "bob",
        "example.org",
        "hunter2",
        PasswordAlgorithmKind::Sha256,
    )
    .unwrap();
    m.verify_integrity_sha256(&key).unwrap();
}

#[test]
fn allocation_mismatch_unsupported_transport_and_missing_transport() {
    let t0 = Instant::now();
    let mut s = server_with(config(), t0);
    let (mut c, _) = allocated(&mut s, t0, CLIENT);
    // A second Allocate (new transaction) on the same 5-tuple: 437.
    let r = ask(&mut s, t0, CLIENT, &allocate_req(&mut c));
    assert_eq!(code(&r), Some(437));
    // Refresh from a 5-tuple without an allocation: 437.
    let other = "192.0.2.10:50001";
    let mut d = Client::new("alice", "secret");
    d.nonce = c.nonce.clone();
    let req = d.request(Method::REFRESH, |_| Ok(()));
    assert_eq!(code(&ask(&mut s, t0, other, &req)), Some(437));
    let req = d.request(Method::ALLOCATE, |b| {
        b.add(&RequestedTransport(TransportProtocol::Tcp))?;
        Ok(())
    });
    assert_eq!(code(&ask(&mut s, t0, other, &req)), Some(442));
    let req = d.request(Method::ALLOCATE, |_| Ok(()));
    assert_eq!(code(&ask(&mut s, t0, other, &req)), Some(400));
    let req = d.request(Method::ALLOCATE, |b| {
        b.add(&RequestedTransport(TransportProtocol::Udp))?
            .add(&RequestedAddressFamily(AddressFamily::V6))?;
        Ok(())
    });
    assert_eq!(code(&ask(&mut s, t0, other, &req)), Some(440));
}

#[test]
fn retransmitted_allocate_gets_the_same_relay() {
    let t0 = Instant::now();
    let mut s = server_with(config(), t0);
    let mut c = Client::new("alice", "secret");
    let req = allocate_req(&mut c);
    c.learn(&ask(&mut s, t0, CLIENT, &req));
    let req = allocate_req(&mut c);
    let a = ask(&mut s, t0, CLIENT, &req);
    let b = ask(&mut s, t0, CLIENT, &req);
    let relay = |r: &[u8]| {
        Message::parse(r)
            .unwrap()
            .get::<XorRelayedAddress>()
            .unwrap()
    };
    assert!(relay(&a).is_some());
    assert_eq!(relay(&a), relay(&b));
    assert_eq!(s.allocation_count(), 1);
}

#[test]
fn per_user_quota_gives_486_and_server_capacity_508() {
    let t0 = Instant::now();
    let mut cfg = config();
    cfg.limits.allocations_per_user = 2;
    cfg.limits.max_allocations = 3;
    let mut s = server_with(cfg, t0);
    allocated(&mut s, t0, "192.0.2.10:1");
    let (mut c, _) = allocated(&mut s, t0, "192.0.2.10:2");
    let r = ask(&mut s, t0, "192.0.2.10:3", &allocate_req(&mut c));
    assert_eq!(code(&r), Some(486));
    // bob still may, until the server is full.
    let mut b = Client::new("bob", "hunter2");
    b.nonce = c.nonce.clone();
    assert_eq!(
        code(&ask(&mut s, t0, "192.0.2.10:4", &allocate_req(&mut b))),
        None
    );
    assert_eq!(
        code(&ask(&mut s, t0, "192.0.2.10:5", &allocate_req(&mut b))),
        Some(508)
    );
    assert_eq!(s.allocation_count(), 3);
}

#[test]
fn failed_relay_binds_retry_other_ports_then_508() {
    let t0 = Instant::now();
    let mut s = server_with(config(), t0);
    let mut c = Client::new("alice", "secret");
    let req = allocate_req(&mut c);
    c.learn(&ask(&mut s, t0, CLIENT, &req));
    s.handle_input(t0, addr(CLIENT), addr(LISTEN), &allocate_req(&mut c));
    let mut asked = Vec::new();
    while let Some(TurnServerEvent::BindRelay { relay }) = s.poll_event() {
        asked.push(relay);
        s.relay_bound(t0, relay, false);
    }
    assert_eq!(asked.len(), usize::from(BIND_ATTEMPTS));
    let out = drain(&mut s);
    assert_eq!(code(&out[0].bytes), Some(508));
    assert_eq!(s.allocation_count(), 0);
}

#[test]
fn rate_limit_drops_requests_past_the_burst_and_refills() {
    let t0 = Instant::now();
    let mut cfg = config();
    cfg.limits.request_burst = 5;
    cfg.limits.requests_per_second = 1;
    let mut s = server_with(cfg, t0);
    let mut c = Client::new("alice", "secret");
    for _ in 0..5 {
        ask(&mut s, t0, CLIENT, &allocate_req(&mut c));
    }
    s.handle_input(t0, addr(CLIENT), addr(LISTEN), &allocate_req(&mut c));
    assert!(
        drain(&mut s).is_empty(),
        "sixth request in the burst is dropped"
    );
    assert_eq!(s.stats().rate_limited, 1);
    // Another client is not affected.
    ask(&mut s, t0, "192.0.2.11:1", &allocate_req(&mut c));
    // One second later one token is back.
    ask(
        &mut s,
        t0 + Duration::from_secs(1),
        CLIENT,
        &allocate_req(&mut c),
    );
}

#[test]
fn rate_limiter_table_is_bounded() {
    let t0 = Instant::now();
    let mut cfg = config();
    cfg.limits.max_clients = 4;
    let mut s = server_with(cfg, t0);
    let mut c = Client::new("alice", "secret");
    for port in 1..=4 {
        ask(
            &mut s,
            t0,
            &format!("192.0.2.20:{port}"),
            &allocate_req(&mut c),
        );
    }
    s.handle_input(
        t0,
        addr("192.0.2.20:5"),
        addr(LISTEN),
        &allocate_req(&mut c),
    );
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.stats().rate_limited, 1);
    // Once the others' buckets refill they are forgotten and new clients fit again.
    ask(
        &mut s,
        t0 + Duration::from_secs(10),
        "192.0.2.20:5",
        &allocate_req(&mut c),
    );
}

#[test]
fn data_without_permission_is_dropped_both_ways() {
    let t0 = Instant::now();
    let mut s = server_with(config(), t0);
    let (_c, relay) = allocated(&mut s, t0, CLIENT);
    s.handle_input(
        t0,
        addr(CLIENT),
        addr(LISTEN),
        &send_indication(PEER, b"hi"),
    );
    s.handle_input(t0, addr(PEER), relay, b"from peer");
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.stats().no_permission, 2);
    assert_eq!(s.stats().relayed_to_peers + s.stats().relayed_to_clients, 0);
}

#[test]
fn permission_lets_data_through_as_send_and_data_indications() {
    let t0 = Instant::now();
    let mut s = server_with(config(), t0);
    let (mut c, relay) = allocated(&mut s, t0, CLIENT);
    assert_eq!(permit(&mut s, t0, &mut c, PEER), None);
    s.handle_input(
        t0,
        addr(CLIENT),
        addr(LISTEN),
        &send_indication(PEER, b"hi"),
    );
    let out = drain(&mut s);
    assert_eq!((out[0].source, out[0].destination), (relay, addr(PEER)));
    assert_eq!(out[0].bytes, b"hi");
    // The permission is per IP: another port of the peer's IP may answer.
    s.handle_input(t0, addr("203.0.113.5:4001"), relay, b"back");
    let out = drain(&mut s);
    assert_eq!(
        (out[0].source, out[0].destination),
        (addr(LISTEN), addr(CLIENT))
    );
    let m = Message::parse(&out[0].bytes).unwrap();
    assert_eq!(
        m.message_type(),
        MessageType::new(Method::DATA, Class::Indication)
    );
    assert_eq!(m.get::<Data>().unwrap(), Some(Data(b"back")));
    assert_eq!(
        m.get::<XorPeerAddress>().unwrap().unwrap().0,
        addr("203.0.113.5:4001")
    );
    // Another IP is still refused.
    s.handle_input(t0, addr("203.0.113.6:4000"), relay, b"x");
    assert!(drain(&mut s).is_empty());
}

#[test]
fn channel_bind_rules_and_channel_data_both_ways() {
    let t0 = Instant::now();
    let mut s = server_with(config(), t0);
    let (mut c, relay) = allocated(&mut s, t0, CLIENT);
    assert_eq!(bind_channel(&mut s, t0, &mut c, 0x4000, PEER), None);
    // Same channel, same peer: a refresh.
    assert_eq!(bind_channel(&mut s, t0, &mut c, 0x4000, PEER), None);
    // Same channel, other peer; same peer, other channel: 400.
    assert_eq!(
        bind_channel(&mut s, t0, &mut c, 0x4000, "203.0.113.5:4001"),
        Some(400)
    );
    assert_eq!(bind_channel(&mut s, t0, &mut c, 0x4001, PEER), Some(400));
    // A number outside the range and a missing peer: 400.
    let req = c.request(Method::CHANNEL_BIND, |b| {
        b.add_raw(AttrType::CHANNEL_NUMBER, &[0x80, 0, 0, 0])?
            .add(&XorPeerAddress(addr(PEER)))?;
        Ok(())
    });
    assert_eq!(code(&ask(&mut s, t0, CLIENT, &req)), Some(400));
    let req = c.request(Method::CHANNEL_BIND, |b| {
        b.add(&ChannelNumber::new(0x4002).unwrap())?;
        Ok(())
    });
    assert_eq!(code(&ask(&mut s, t0, CLIENT, &req)), Some(400));
    // Client → peer over the channel.
    let mut buf = [0u8; 64];
    let n = ChannelData::emit(
        ChannelNumber::new(0x4000).unwrap(),
        b"ping",
        false,
        &mut buf,
    )
    .unwrap();
    s.handle_input(t0, addr(CLIENT), addr(LISTEN), &buf[..n]);
    let out = drain(&mut s);
    assert_eq!(
        (out[0].source, out[0].destination, &out[0].bytes[..]),
        (relay, addr(PEER), &b"ping"[..])
    );
    // Peer → client as ChannelData.
    s.handle_input(t0, addr(PEER), relay, b"pong");
    let out = drain(&mut s);
    let cd = ChannelData::parse(&out[0].bytes).unwrap();
    assert_eq!((cd.channel().value(), cd.data()), (0x4000, &b"pong"[..]));
    // An unbound channel is dropped.
    let n = ChannelData::emit(ChannelNumber::new(0x4005).unwrap(), b"x", false, &mut buf).unwrap();
    s.handle_input(t0, addr(CLIENT), addr(LISTEN), &buf[..n]);
    assert!(drain(&mut s).is_empty());
}

#[test]
fn peer_family_mismatch_gets_443() {
    let t0 = Instant::now();
    let mut s = server_with(config(), t0);
    let (mut c, _) = allocated(&mut s, t0, CLIENT);
    assert_eq!(permit(&mut s, t0, &mut c, "[2001:db8::1]:5"), Some(443));
}

#[test]
fn permissions_channels_and_allocations_expire_by_now() {
    let t0 = Instant::now();
    let mut s = server_with(config(), t0);
    let (mut c, relay) = allocated(&mut s, t0, CLIENT);
    assert_eq!(bind_channel(&mut s, t0, &mut c, 0x4000, PEER), None);
    let wake = s.poll_timeout().unwrap().at;
    assert!(wake <= t0 + PERMISSION_LIFETIME);
    // Just before 300 s the peer still gets through; at 300 s the permission is gone.
    let t1 = t0 + PERMISSION_LIFETIME - Duration::from_secs(1);
    s.handle_timeout(t1);
    s.handle_input(t1, addr(PEER), relay, b"a");
    assert_eq!(drain(&mut s).len(), 1);
    let t2 = t0 + PERMISSION_LIFETIME;
    s.handle_timeout(t2);
    s.handle_input(t2, addr(PEER), relay, b"b");
    assert!(drain(&mut s).is_empty());
    // The channel (600 s) outlives the permission but carries nothing without it.
    let mut buf = [0u8; 16];
    let n = ChannelData::emit(ChannelNumber::new(0x4000).unwrap(), b"x", false, &mut buf).unwrap();
    s.handle_input(t2, addr(CLIENT), addr(LISTEN), &buf[..n]);
    assert!(drain(&mut s).is_empty());
    // The allocation dies at 600 s and its socket is released.
    while s.poll_event().is_some() {}
    let t3 = t0 + DEFAULT_LIFETIME;
    let mut at = s.poll_timeout().unwrap().at;
    while at <= t3 {
        s.handle_timeout(at);
        match s.poll_timeout() {
            Some(t) => at = t.at,
            None => break,
        }
    }
    s.handle_timeout(t3);
    assert_eq!(s.allocation_count(), 0);
    assert_eq!(
        s.poll_event(),
        Some(TurnServerEvent::ReleaseRelay { relay })
    );
    s.handle_input(t3, addr(PEER), relay, b"c");
    assert!(drain(&mut s).is_empty());
}

#[test]
fn refresh_extends_and_zero_deletes() {
    let t0 = Instant::now();
    let mut s = server_with(config(), t0);
    let (mut c, relay) = allocated(&mut s, t0, CLIENT);
    let req = c.request(Method::REFRESH, |b| {
        b.add(&Lifetime(100_000))?;
        Ok(())
    });
    let r = ask(&mut s, t0, CLIENT, &req);
    assert_eq!(
        Message::parse(&r).unwrap().get::<Lifetime>().unwrap(),
        Some(Lifetime(3600))
    );
    s.handle_timeout(t0 + Duration::from_secs(601));
    assert_eq!(
        s.allocation_count(),
        1,
        "refreshed past the default lifetime"
    );
    let req = c.request(Method::REFRESH, |b| {
        b.add(&Lifetime(0))?;
        Ok(())
    });
    let r = ask(&mut s, t0, CLIENT, &req);
    assert_eq!(code(&r), None);
    assert_eq!(s.allocation_count(), 0);
    assert_eq!(s.stats().deleted, 1);
    let dropped = s.stats().dropped;
    s.handle_input(t0, addr(PEER), relay, b"late");
    assert_eq!(
        s.stats().dropped,
        dropped + 1,
        "the relayed address is gone"
    );
    // The 5-tuple is free again.
    assert_eq!(code(&ask(&mut s, t0, CLIENT, &allocate_req(&mut c))), None);
}

#[test]
fn even_port_with_reservation_gives_a_token_for_the_next_port() {
    let t0 = Instant::now();
    let mut s = server_with(config(), t0);
    let mut c = Client::new("alice", "secret");
    let req = allocate_req(&mut c);
    c.learn(&ask(&mut s, t0, CLIENT, &req));
    let req = c.request(Method::ALLOCATE, |b| {
        b.add(&RequestedTransport(TransportProtocol::Udp))?
            .add(&EvenPort { reserve: true })?;
        Ok(())
    });
    let r = ask(&mut s, t0, CLIENT, &req);
    let m = Message::parse(&r).unwrap();
    let relay = m.get::<XorRelayedAddress>().unwrap().unwrap().0;
    assert_eq!(relay.port() % 2, 0);
    let token = m.get::<ReservationToken>().unwrap().unwrap();
    let other = "192.0.2.10:50002";
    let req = c.request(Method::ALLOCATE, |b| {
        b.add(&RequestedTransport(TransportProtocol::Udp))?
            .add(&token)?;
        Ok(())
    });
    let r = ask(&mut s, t0, other, &req);
    let relay2 = Message::parse(&r)
        .unwrap()
        .get::<XorRelayedAddress>()
        .unwrap()
        .unwrap()
        .0;
    assert_eq!(relay2.port(), relay.port() + 1);
    // A used token is gone.
    let req = c.request(Method::ALLOCATE, |b| {
        b.add(&RequestedTransport(TransportProtocol::Udp))?
            .add(&token)?;
        Ok(())
    });
    assert_eq!(code(&ask(&mut s, t0, "192.0.2.10:50003", &req)), Some(508));
}

#[test]
fn permission_and_channel_tables_are_bounded() {
    let t0 = Instant::now();
    let mut cfg = config();
    cfg.limits.permissions_per_allocation = 2;
    cfg.limits.channels_per_allocation = 1;
    let mut s = server_with(cfg, t0);
    let (mut c, _) = allocated(&mut s, t0, CLIENT);
    assert_eq!(permit(&mut s, t0, &mut c, "203.0.113.1:1"), None);
    assert_eq!(permit(&mut s, t0, &mut c, "203.0.113.2:1"), None);
    assert_eq!(
        permit(&mut s, t0, &mut c, "203.0.113.2:9"),
        None,
        "same IP refreshes"
    );
    assert_eq!(permit(&mut s, t0, &mut c, "203.0.113.3:1"), Some(508));
    assert_eq!(
        bind_channel(&mut s, t0, &mut c, 0x4000, "203.0.113.1:1"),
        None
    );
    assert_eq!(
        bind_channel(&mut s, t0, &mut c, 0x4001, "203.0.113.2:1"),
        Some(508)
    );
}

#[test]
fn tcp_allocation_answers_on_the_stream_and_dies_with_it() {
    let t0 = Instant::now();
    let mut s = server_with(config(), t0);
    let mut c = Client::new("alice", "secret");
    s.handle_stream_frame(t0, addr(CLIENT), &allocate_req(&mut c));
    let out = drain(&mut s);
    assert_eq!(out[0].transport, Transport::Tcp);
    c.learn(&out[0].bytes);
    s.handle_stream_frame(t0, addr(CLIENT), &allocate_req(&mut c));
    bind_all(&mut s, t0);
    let out = drain(&mut s);
    assert_eq!(
        (out[0].transport, code(&out[0].bytes)),
        (Transport::Tcp, None)
    );
    assert_eq!(s.relayed_address(Transport::Udp, addr(CLIENT)), None);
    let relay = s.relayed_address(Transport::Tcp, addr(CLIENT)).unwrap();
    s.handle_stream_closed(t0, addr(CLIENT));
    assert_eq!(s.allocation_count(), 0);
    assert_eq!(
        s.poll_event(),
        Some(TurnServerEvent::ReleaseRelay { relay })
    );
}

#[test]
fn stream_frames_are_cut_for_stun_and_padded_channel_data() {
    let mut c = Client::new("alice", "secret");
    let req = allocate_req(&mut c);
    assert_eq!(stream_frame_len(&req[..3]), None);
    assert_eq!(stream_frame_len(&req[..10]), None);
    assert_eq!(stream_frame_len(&req), Some(Ok(req.len())));
    assert_eq!(stream_frame_len(&[0x40, 0x00, 0x00, 0x05]), Some(Ok(12)));
    assert_eq!(stream_frame_len(&[0xC0, 0, 0, 0]), Some(Err(())));
}

#[test]
fn malformed_and_hostile_requests_get_errors_or_are_dropped() {
    let t0 = Instant::now();
    let mut s = server_with(config(), t0);
    // Unknown comprehension-required attribute: 420 listing it.
    let mut c = Client::new("alice", "secret");
    let req = c.request(Method::ALLOCATE, |b| {
        b.add_raw(AttrType(0x7777), &[1, 2, 3, 4])?;
        Ok(())
    });
    let r = ask(&mut s, t0, CLIENT, &req);
    assert_eq!(code(&r), Some(420));
    let m = Message::parse(&r).unwrap();
    let unknown: Vec<_> = m
        .get::<UnknownAttributes>()
        .unwrap()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(unknown, [AttrType(0x7777)]);
    // An unsupported method: 400.
    let req = c.request(Method::CONNECT, |_| Ok(()));
    assert_eq!(code(&ask(&mut s, t0, CLIENT, &req)), Some(400));
    // Integrity without USERNAME: 400.
    let req = allocate_req(&mut c);
    c.learn(&ask(&mut s, t0, CLIENT, &req));
    let mut buf = [0u8; 256];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::ALLOCATE, Class::Request),
        TransactionId::new([77; 12]),
    )
    .unwrap();
    b.add(&RequestedTransport(TransportProtocol::Udp)).unwrap();
    b.add_integrity(&IntegrityKey::from_bytes(b"k")).unwrap();
    let req = b.finish().to_vec();
    assert_eq!(code(&ask(&mut s, t0, CLIENT, &req)), Some(400));
    // Binding works without credentials.
    let mut buf = [0u8; 64];
    let b = MessageBuilder::new(
        &mut buf,
        MessageType::BINDING_REQUEST,
        TransactionId::new([5; 12]),
    )
    .unwrap();
    let req = b.finish().to_vec();
    let r = ask(&mut s, t0, CLIENT, &req);
    assert_eq!(
        Message::parse(&r)
            .unwrap()
            .get::<XorMappedAddress>()
            .unwrap()
            .unwrap()
            .0,
        addr(CLIENT)
    );
    // Garbage, truncated messages, responses, and packets to unknown addresses: dropped.
    let before = s.stats().dropped;
    for junk in [
        &b""[..],
        &[0xff; 40],
        &req[..req.len() - 4],
        &[0x40, 0, 0, 9, 1],
    ] {
        s.handle_input(t0, addr(CLIENT), addr(LISTEN), junk);
    }
    s.handle_input(t0, addr(PEER), addr("198.51.100.1:1"), b"stray");
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.stats().dropped, before + 5);
}

#[test]
fn random_bytes_never_panic_and_state_stays_bounded() {
    let t0 = Instant::now();
    let mut s = server_with(config(), t0);
    let (_c, relay) = allocated(&mut s, t0, CLIENT);
    // Deterministic random inputs, some starting like STUN or ChannelData.
    let mut rng = Rng::seed_from_u64(42);
    for i in 0..20_000u32 {
        let len = rng.below(200) as usize;
        let mut bytes = vec![0u8; len];
        rng.fill(&mut bytes);
        if let Some(b) = bytes.first_mut() {
            *b &= [0x3f, 0x7f, 0xff][i as usize % 3];
        }
        s.handle_input(t0, addr(CLIENT), addr(LISTEN), &bytes);
        s.handle_input(t0, addr(PEER), relay, &bytes);
        s.handle_stream_frame(t0, addr(CLIENT), &bytes);
        bind_all(&mut s, t0);
        drain(&mut s);
    }
    assert!(s.allocation_count() <= 2);
}

#[test]
fn config_errors_say_what_to_fix() {
    let t0 = Instant::now();
    let mut c = config();
    c.users.clear();
    assert!(
        TurnServer::new(c, Rng::seed_from_u64(0), t0)
            .unwrap_err()
            .to_string()
            .contains("--user")
    );
    let mut c = config();
    c.relay_ports = (10, 5);
    assert!(matches!(
        TurnServer::new(c, Rng::seed_from_u64(0), t0),
        Err(TurnConfigError::EmptyPortRange(10, 5))
    ));
    let mut c = config();
    c.users = vec![("a:b".into(), "x".into())];
    assert!(matches!(
        TurnServer::new(c, Rng::seed_from_u64(0), t0),
        Err(TurnConfigError::BadUser(_))
    ));
    let mut c = config();
    c.relay_ip = "0.0.0.0".parse().unwrap();
    assert!(
        TurnServer::new(c, Rng::seed_from_u64(0), t0)
            .unwrap_err()
            .to_string()
            .contains("--relay-ip")
    );
}

#[test]
fn rfc5766_channel_numbers_up_to_0x7fff_work_for_older_clients() {
    let t0 = Instant::now();
    let mut s = server_with(config(), t0);
    let (mut c, relay) = allocated(&mut s, t0, CLIENT);
    let req = c.request(Method::CHANNEL_BIND, |b| {
        b.add_raw(AttrType::CHANNEL_NUMBER, &[0x7f, 0xfe, 0, 0])?
            .add(&XorPeerAddress(addr(PEER)))?;
        Ok(())
    });
    assert_eq!(code(&ask(&mut s, t0, CLIENT, &req)), None);
    s.handle_input(
        t0,
        addr(CLIENT),
        addr(LISTEN),
        &[0x7f, 0xfe, 0, 2, b'o', b'k'],
    );
    let out = drain(&mut s);
    assert_eq!((out[0].source, &out[0].bytes[..]), (relay, &b"ok"[..]));
    s.handle_input(t0, addr(PEER), relay, b"back");
    let out = drain(&mut s);
    assert_eq!(&out[0].bytes[..4], &[0x7f, 0xfe, 0, 4]);
    assert_eq!(stream_frame_len(&[0x7f, 0xfe, 0, 5]), Some(Ok(12)));
}

#[test]
fn dont_fragment_is_refused_as_unknown_since_df_cannot_be_set() {
    let t0 = Instant::now();
    let mut s = server_with(config(), t0);
    let mut c = Client::new("alice", "secret");
    let req = allocate_req(&mut c);
    c.learn(&ask(&mut s, t0, CLIENT, &req));
    let req = c.request(Method::ALLOCATE, |b| {
        b.add(&RequestedTransport(TransportProtocol::Udp))?
            .add_raw(AttrType::DONT_FRAGMENT, &[])?;
        Ok(())
    });
    let r = ask(&mut s, t0, CLIENT, &req);
    assert_eq!(code(&r), Some(420));
    let m = Message::parse(&r).unwrap();
    let unknown: Vec<_> = m
        .get::<UnknownAttributes>()
        .unwrap()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(unknown, [AttrType::DONT_FRAGMENT]);
    assert_eq!(s.allocation_count(), 0);
}

#[test]
fn every_expired_allocation_releases_its_relay_even_when_many_expire_at_once() {
    let t0 = Instant::now();
    let mut cfg = config();
    cfg.limits.max_allocations = 400;
    cfg.limits.allocations_per_user = 400;
    cfg.limits.max_clients = 1000;
    cfg.relay_ports = (40000, 40999);
    let mut s = server_with(cfg, t0);
    let mut c = Client::new("alice", "secret");
    let req = allocate_req(&mut c);
    c.learn(&ask(&mut s, t0, CLIENT, &req));
    let mut relays = std::collections::HashSet::new();
    for port in 1..=300u16 {
        let from = format!("192.0.2.30:{port}");
        let r = ask(&mut s, t0, &from, &allocate_req(&mut c));
        let m = Message::parse(&r).unwrap();
        relays.insert(m.get::<XorRelayedAddress>().unwrap().unwrap().0);
    }
    assert_eq!((s.allocation_count(), relays.len()), (300, 300));
    // The driver does not drain events while all 300 expire in one sweep.
    let t1 = t0 + DEFAULT_LIFETIME;
    while let Some(t) = s.poll_timeout() {
        if t.at > t1 {
            break;
        }
        s.handle_timeout(t.at.max(t0));
        if t.at == t1 {
            break;
        }
    }
    s.handle_timeout(t1);
    assert_eq!(s.allocation_count(), 0);
    let released: std::collections::HashSet<_> = std::iter::from_fn(|| s.poll_event())
        .filter_map(|e| match e {
            TurnServerEvent::ReleaseRelay { relay } => Some(relay),
            TurnServerEvent::BindRelay { .. } => None,
        })
        .collect();
    assert_eq!(
        released, relays,
        "one ReleaseRelay per allocation, none dropped"
    );
}

#[test]
fn additional_ipv6_family_gets_the_ipv4_relay_and_address_error_440() {
    let t0 = Instant::now();
    let mut s = server_with(config(), t0);
    let mut c = Client::new("alice", "secret");
    let req = allocate_req(&mut c);
    c.learn(&ask(&mut s, t0, CLIENT, &req));
    let req = c.request(Method::ALLOCATE, |b| {
        b.add(&RequestedTransport(TransportProtocol::Udp))?
            .add(&AdditionalAddressFamily(AddressFamily::V6))?;
        Ok(())
    });
    let r = ask(&mut s, t0, CLIENT, &req);
    assert_eq!(code(&r), None);
    let m = Message::parse(&r).unwrap();
    assert!(m.get::<XorRelayedAddress>().unwrap().unwrap().0.is_ipv4());
    let aec = m
        .attributes()
        .find(|a| a.typ == AttrType::ADDRESS_ERROR_CODE)
        .expect("ADDRESS-ERROR-CODE");
    assert_eq!(&aec.value[..4], &[0x02, 0, 4, 40]);
    // IPv4 as the additional family, or with REQUESTED-ADDRESS-FAMILY: 400.
    for extra in [
        &[AdditionalAddressFamily(AddressFamily::V4)][..],
        &[AdditionalAddressFamily(AddressFamily::V6)][..],
    ] {
        let with_requested = extra[0].0 == AddressFamily::V6;
        let req = c.request(Method::ALLOCATE, |b| {
            b.add(&RequestedTransport(TransportProtocol::Udp))?
                .add(&extra[0])?;
            if with_requested {
                b.add(&RequestedAddressFamily(AddressFamily::V4))?;
            }
            Ok(())
        });
        assert_eq!(code(&ask(&mut s, t0, "192.0.2.10:50009", &req)), Some(400));
    }
}
