//! The TURN client against hand-built server responses.

use super::*;
use crate::stun::PasswordAlgorithm;

const USER: &str = "user";
const PASS: &str = "pass";
const REALM: &str = "natlab.test";

fn server() -> SocketAddr {
    "198.51.100.1:3478".parse().unwrap()
}
fn local() -> SocketAddr {
    "10.0.1.2:40000".parse().unwrap()
}
fn relayed() -> SocketAddr {
    "198.51.100.1:49200".parse().unwrap()
}
fn peer() -> SocketAddr {
    "203.0.113.9:50000".parse().unwrap()
}
fn md5_key() -> IntegrityKey {
    IntegrityKey::long_term(USER, REALM, PASS, PasswordAlgorithmKind::Md5).unwrap()
}

struct H {
    c: TurnClient,
    now: Instant,
}

impl H {
    fn new(transport: Transport) -> Self {
        let mut config = TurnClientConfig::udp(server(), local(), USER, PASS);
        config.transport = transport;
        // Keepalives have their own test; the others count every transmit.
        config.keepalive = None;
        Self::with(config)
    }

    fn with(config: TurnClientConfig) -> Self {
        H {
            c: TurnClient::new(config, Rng::seed_from_u64(7)),
            now: Instant::now(),
        }
    }

    fn sent(&mut self) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        while let Some(t) = self.c.poll_transmit() {
            assert_eq!((t.source, t.destination), (local(), server()));
            v.push(t.contents.to_vec());
        }
        v
    }

    fn one(&mut self) -> Vec<u8> {
        let v = self.sent();
        assert_eq!(v.len(), 1, "expected one transmit");
        v.into_iter().next().unwrap()
    }

    fn events(&mut self) -> Vec<TurnClientEvent> {
        std::iter::from_fn(|| self.c.poll_event()).collect()
    }

    fn input(&mut self, bytes: &[u8]) {
        self.c.handle_input(self.now, server(), local(), bytes);
    }

    fn advance_to(&mut self, at: Instant) {
        self.now = at;
        self.c.handle_timeout(at);
    }

    /// Drives from scratch to an MD5-authenticated allocation of `lifetime` seconds.
    fn allocated(transport: Transport, lifetime: u32) -> Self {
        let mut h = H::new(transport);
        h.c.allocate(h.now).unwrap();
        let first = h.one();
        h.input(&challenge(&first, None));
        let second = h.one();
        h.input(&allocate_ok(&second, lifetime, &md5_key()));
        assert!(matches!(
            h.events()[..],
            [TurnClientEvent::Allocated { .. }]
        ));
        h
    }
}

/// A response of `class` to `req` with attributes from `f`, signed with `key`.
fn respond(
    req: &[u8],
    class: Class,
    key: Option<&IntegrityKey>,
    f: impl FnOnce(&mut MessageBuilder<'_>),
) -> Vec<u8> {
    let m = Message::parse(req).unwrap();
    let mut buf = vec![0u8; 1024];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(m.message_type().method, class),
        m.transaction_id(),
    )
    .unwrap();
    f(&mut b);
    if let Some(k) = key {
        b.add_integrity(k).unwrap();
    }
    b.add_fingerprint().unwrap();
    b.finish().to_vec()
}

fn error(req: &[u8], code: u16, reason: &str, key: Option<&IntegrityKey>) -> Vec<u8> {
    respond(req, Class::Error, key, |b| {
        b.add(&ErrorCode::new(code, reason).unwrap()).unwrap();
    })
}

fn challenge(req: &[u8], algorithms: Option<&[PasswordAlgorithm<'_>]>) -> Vec<u8> {
    respond(req, Class::Error, None, |b| {
        b.add(&ErrorCode::new(401, "Unauthorized").unwrap())
            .unwrap();
        b.add(&Realm::new(REALM).unwrap()).unwrap();
        b.add(&Nonce::new("nonce-1").unwrap()).unwrap();
        if let Some(list) = algorithms {
            b.add(&PasswordAlgorithms::new(list).unwrap()).unwrap();
        }
    })
}

fn allocate_ok(req: &[u8], lifetime: u32, key: &IntegrityKey) -> Vec<u8> {
    respond(req, Class::Success, Some(key), |b| {
        b.add(&XorRelayedAddress(relayed())).unwrap();
        b.add(&XorMappedAddress("192.0.2.7:61000".parse().unwrap()))
            .unwrap();
        b.add(&Lifetime(lifetime)).unwrap();
    })
}

fn ok(req: &[u8]) -> Vec<u8> {
    respond(req, Class::Success, Some(&md5_key()), |_| {})
}

#[test]
fn the_401_challenge_is_answered_with_long_term_credentials() {
    let mut h = H::new(Transport::Udp);
    h.c.allocate(h.now).unwrap();
    let first = h.one();
    let m = Message::parse(&first).unwrap();
    assert_eq!(
        m.message_type(),
        MessageType::new(Method::ALLOCATE, Class::Request)
    );
    assert!(!m.has_integrity() && m.get::<Username>().unwrap().is_none());
    assert_eq!(
        m.get::<RequestedTransport>().unwrap(),
        Some(RequestedTransport(TransportProtocol::Udp))
    );
    assert!(m.get::<RequestedAddressFamily>().unwrap().is_none());
    h.input(&challenge(&first, None));
    let second = h.one();
    let m2 = Message::parse(&second).unwrap();
    assert_ne!(
        m2.transaction_id(),
        m.transaction_id(),
        "a retry is a new transaction"
    );
    assert_eq!(m2.get::<Username>().unwrap().unwrap().as_str(), USER);
    assert_eq!(m2.get::<Realm>().unwrap().unwrap().as_str(), REALM);
    assert_eq!(m2.get::<Nonce>().unwrap().unwrap().as_str(), "nonce-1");
    m2.verify_integrity(&md5_key()).unwrap();
    assert!(!m2.has_integrity_sha256());
    m2.verify_fingerprint().unwrap();
    // A success without valid integrity is not accepted.
    let forged = allocate_ok(&second, 600, &IntegrityKey::from_bytes(b"wrong"));
    h.input(&forged);
    assert!(h.events().is_empty());
    h.input(&allocate_ok(&second, 600, &md5_key()));
    assert_eq!(
        h.events(),
        vec![TurnClientEvent::Allocated {
            relayed: relayed(),
            mapped: Some("192.0.2.7:61000".parse().unwrap()),
            lifetime: Duration::from_secs(600),
        }]
    );
    assert_eq!(h.c.relayed(), Some(relayed()));
}

#[test]
fn a_second_401_is_a_clear_wrong_credentials_error() {
    let mut h = H::new(Transport::Udp);
    h.c.allocate(h.now).unwrap();
    let first = h.one();
    h.input(&challenge(&first, None));
    let second = h.one();
    h.input(&challenge(&second, None));
    let events = h.events();
    let [TurnClientEvent::Error(e)] = &events[..] else {
        panic!("{events:?}");
    };
    assert_eq!(e.code(), Some(401));
    let text = e.to_string();
    assert!(
        text.contains("wrong username or password for realm \"natlab.test\""),
        "{text}"
    );
    assert!(h.sent().is_empty(), "no third attempt");
    assert!(h.c.is_done());
    assert_eq!(h.c.poll_timeout(), None, "nothing left to wait for");
}

#[test]
fn sha256_is_chosen_when_the_server_offers_password_algorithms() {
    let mut h = H::new(Transport::Udp);
    h.c.allocate(h.now).unwrap();
    let first = h.one();
    let offer = [
        PasswordAlgorithm::new(PasswordAlgorithmKind::Md5),
        PasswordAlgorithm::new(PasswordAlgorithmKind::Sha256),
    ];
    h.input(&challenge(&first, Some(&offer)));
    let second = h.one();
    let m = Message::parse(&second).unwrap();
    assert!(m.has_integrity_sha256() && !m.has_integrity());
    let sha = IntegrityKey::long_term(USER, REALM, PASS, PasswordAlgorithmKind::Sha256).unwrap();
    m.verify_integrity_sha256(&sha).unwrap();
    assert_eq!(
        m.get::<PasswordAlgorithm>().unwrap().unwrap().kind,
        PasswordAlgorithmKind::Sha256
    );
    assert_eq!(
        m.get::<PasswordAlgorithms>().unwrap().unwrap(),
        PasswordAlgorithms::new(&offer).unwrap(),
        "the offer is echoed as sent"
    );
}

#[test]
fn stale_nonce_takes_the_new_nonce_and_retries_once() {
    let mut h = H::allocated(Transport::Udp, 600);
    h.c.create_permission(h.now, peer().ip()).unwrap();
    let req = h.one();
    let stale = respond(&req, Class::Error, None, |b| {
        b.add(&ErrorCode::new(438, "Stale Nonce").unwrap()).unwrap();
        b.add(&Realm::new(REALM).unwrap()).unwrap();
        b.add(&Nonce::new("nonce-2").unwrap()).unwrap();
    });
    h.input(&stale);
    let retry = h.one();
    let m = Message::parse(&retry).unwrap();
    assert_eq!(m.get::<Nonce>().unwrap().unwrap().as_str(), "nonce-2");
    assert_eq!(
        m.get::<XorPeerAddress>().unwrap(),
        Some(XorPeerAddress(SocketAddr::new(peer().ip(), 0)))
    );
    m.verify_integrity(&md5_key()).unwrap();
    // A second 438 to the retry is reported, not looped on.
    let stale2 = respond(&retry, Class::Error, None, |b| {
        b.add(&ErrorCode::new(438, "Stale Nonce").unwrap()).unwrap();
        b.add(&Nonce::new("nonce-3").unwrap()).unwrap();
    });
    h.input(&stale2);
    assert!(h.sent().is_empty());
    let events = h.events();
    assert!(
        matches!(
            &events[..],
            [TurnClientEvent::Error(TurnClientError::StaleNonceAgain {
                request: RequestKind::CreatePermission
            })]
        ),
        "{events:?}"
    );
    assert!(!h.c.has_permission(peer().ip()));
}

#[test]
fn error_codes_become_errors_with_hints() {
    let mut h = H::new(Transport::Udp);
    h.c.allocate(h.now).unwrap();
    let first = h.one();
    h.input(&challenge(&first, None));
    let second = h.one();
    h.input(&error(
        &second,
        486,
        "Allocation Quota Reached",
        Some(&md5_key()),
    ));
    let events = h.events();
    let [TurnClientEvent::Error(e)] = &events[..] else {
        panic!("{events:?}");
    };
    assert_eq!(e.code(), Some(486));
    assert!(e.to_string().contains("quota"), "{e}");
    assert!(h.c.is_done());
    assert_eq!(h.c.allocate(h.now), Err(CommandError::Closed));

    // A 403 to a permission keeps the allocation.
    let mut h = H::allocated(Transport::Udp, 600);
    h.c.create_permission(h.now, peer().ip()).unwrap();
    let req = h.one();
    h.input(&error(&req, 403, "Forbidden IP", Some(&md5_key())));
    let events = h.events();
    assert!(
        matches!(
            &events[..],
            [TurnClientEvent::Error(TurnClientError::Rejected {
                code: 403,
                ..
            })]
        ),
        "{events:?}"
    );
    assert_eq!(h.c.relayed(), Some(relayed()));
}

#[test]
fn refresh_before_expiry_and_expired_when_unanswered() {
    let mut h = H::allocated(Transport::Udp, 600);
    let start = h.now;
    let t = h.c.poll_timeout().unwrap();
    assert_eq!(
        (t.at - start, t.reason),
        (Duration::from_secs(540), "turn: refresh")
    );
    h.advance_to(t.at);
    let req = h.one();
    let m = Message::parse(&req).unwrap();
    assert_eq!(
        m.message_type(),
        MessageType::new(Method::REFRESH, Class::Request)
    );
    assert_eq!(m.get::<Lifetime>().unwrap(), Some(Lifetime(600)));
    h.input(&respond(&req, Class::Success, Some(&md5_key()), |b| {
        b.add(&Lifetime(600)).unwrap();
    }));
    assert_eq!(
        h.events(),
        vec![TurnClientEvent::Refreshed {
            lifetime: Duration::from_secs(600)
        }]
    );
    assert_eq!(h.c.expires(), Some(start + Duration::from_secs(1140)));

    // A short lifetime is refreshed at half; a server that stops answering is reported,
    // and so is the expiry.
    let mut h = H::allocated(Transport::Udp, 30);
    let start = h.now;
    let t = h.c.poll_timeout().unwrap();
    assert_eq!(t.at - start, Duration::from_secs(15));
    let mut seen = Vec::new();
    for _ in 0..100 {
        let Some(t) = h.c.poll_timeout() else { break };
        h.advance_to(t.at);
        h.sent();
        seen.extend(h.events());
    }
    assert_eq!(
        seen,
        vec![TurnClientEvent::Expired],
        "the refresh (39.5 s of retransmissions) outlives the allocation"
    );
    assert_eq!(h.now - start, Duration::from_secs(30));
    assert!(h.c.is_done());
}

#[test]
fn unanswered_request_is_server_unreachable_after_the_rfc_schedule() {
    let mut h = H::new(Transport::Udp);
    h.c.allocate(h.now).unwrap();
    let start = h.now;
    let first = h.one();
    let mut sends = vec![Duration::ZERO];
    let mut events = Vec::new();
    while let Some(t) = h.c.poll_timeout() {
        h.advance_to(t.at);
        for s in h.sent() {
            assert_eq!(s, first, "retransmissions are identical");
            sends.push(h.now - start);
        }
        events.extend(h.events());
    }
    let ms: Vec<u128> = sends.iter().map(|d| d.as_millis()).collect();
    assert_eq!(ms, vec![0, 500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(h.now - start, Duration::from_millis(39_500));
    assert_eq!(
        events,
        vec![TurnClientEvent::ServerUnreachable {
            request: RequestKind::Allocate,
            server: server()
        }]
    );

    // Over TCP: one send, then the same verdict.
    let mut h = H::new(Transport::Tcp);
    h.c.allocate(h.now).unwrap();
    assert_eq!(h.sent().len(), 1);
    let t = h.c.poll_timeout().unwrap();
    h.advance_to(t.at);
    assert!(h.sent().is_empty());
    assert!(matches!(
        h.events()[..],
        [TurnClientEvent::ServerUnreachable { .. }]
    ));
}

#[test]
fn permissions_and_channels_are_refreshed_on_time() {
    let mut h = H::allocated(Transport::Udp, 3600);
    let start = h.now;
    h.c.create_permission(h.now, peer().ip()).unwrap();
    let perm = h.one();
    h.input(&ok(&perm));
    let ch = h.c.bind_channel(h.now, peer()).unwrap();
    assert_eq!(ch.value(), 0x4000);
    let bind = h.one();
    let m = Message::parse(&bind).unwrap();
    assert_eq!(m.get::<ChannelNumber>().unwrap(), Some(ch));
    assert_eq!(
        m.get::<XorPeerAddress>().unwrap(),
        Some(XorPeerAddress(peer()))
    );
    h.input(&ok(&bind));
    assert_eq!(
        h.events(),
        vec![
            TurnClientEvent::PermissionCreated { peer: peer().ip() },
            TurnClientEvent::ChannelBound {
                peer: peer(),
                channel: ch
            }
        ]
    );
    // Idempotent commands send nothing more.
    h.c.create_permission(h.now, peer().ip()).unwrap();
    assert_eq!(h.c.bind_channel(h.now, peer()).unwrap(), ch);
    assert!(h.sent().is_empty());

    let mut refreshes = Vec::new();
    while h.now - start < Duration::from_secs(1200) {
        let t = h.c.poll_timeout().unwrap();
        h.advance_to(t.at);
        for req in h.sent() {
            let m = Message::parse(&req).unwrap();
            let method = m.message_type().method;
            refreshes.push(((h.now - start).as_secs(), method));
            h.input(&ok(&req));
        }
        assert!(h.events().is_empty(), "refreshes are silent");
    }
    assert_eq!(
        refreshes,
        vec![
            (240, Method::CREATE_PERMISSION),
            (480, Method::CREATE_PERMISSION),
            (540, Method::CHANNEL_BIND),
            // The ChannelBind refreshed the permission too (RFC 8656 §11.2).
            (780, Method::CREATE_PERMISSION),
            (1020, Method::CREATE_PERMISSION),
            (1080, Method::CHANNEL_BIND),
            (1320, Method::CREATE_PERMISSION),
        ]
    );
    assert_eq!(h.c.channel(peer()), Some(ch));
}

#[test]
fn send_indication_before_the_channel_channel_data_after() {
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut h = H::allocated(transport, 600);
        h.c.send_to(h.now, peer(), b"hello").unwrap();
        // No permission yet: one is requested, then the Send indication.
        let sent = h.sent();
        assert_eq!(sent.len(), 2);
        let perm = Message::parse(&sent[0]).unwrap();
        assert_eq!(perm.message_type().method, Method::CREATE_PERMISSION);
        let ind = Message::parse(&sent[1]).unwrap();
        assert_eq!(
            ind.message_type(),
            MessageType::new(Method::SEND, Class::Indication)
        );
        assert_eq!(
            ind.get::<XorPeerAddress>().unwrap(),
            Some(XorPeerAddress(peer()))
        );
        assert_eq!(ind.get::<Data>().unwrap(), Some(Data(b"hello")));
        h.input(&ok(&sent[0]));
        let ch = h.c.bind_channel(h.now, peer()).unwrap();
        let bind = h.one();
        // Bound but unconfirmed: still an indication.
        h.c.send_to(h.now, peer(), b"x").unwrap();
        assert!(Message::parse(&h.one()).is_ok());
        h.input(&ok(&bind));
        h.c.send_to(h.now, peer(), b"hello").unwrap();
        let cd = h.one();
        let expect_len = if transport == Transport::Tcp { 12 } else { 9 };
        assert_eq!(cd.len(), expect_len, "padded over TCP only");
        let parsed = ChannelData::parse(&cd).unwrap();
        assert_eq!((parsed.channel(), parsed.data()), (ch, &b"hello"[..]));
        let stats = h.c.stats();
        assert_eq!((stats.send_indications, stats.channel_data_sent), (2, 1));
    }
}

#[test]
fn data_indications_and_channel_data_become_data_events() {
    let mut h = H::allocated(Transport::Udp, 600);
    h.c.create_permission(h.now, peer().ip()).unwrap();
    let perm = h.one();
    h.input(&ok(&perm));
    h.events();
    let mut buf = [0u8; 128];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::DATA, Class::Indication),
        TransactionId::new([9; 12]),
    )
    .unwrap();
    b.add(&XorPeerAddress(peer())).unwrap();
    b.add(&Data(b"from peer")).unwrap();
    let ind = b.finish().to_vec();
    h.input(&ind);
    // The same from a stranger is ignored.
    h.c.handle_input(h.now, "192.0.2.66:3478".parse().unwrap(), local(), &ind);
    // ChannelData on an unknown channel is ignored; on a bound one it is data.
    let mut cd = [0u8; 16];
    let n = ChannelData::emit(ChannelNumber::new(0x4000).unwrap(), b"cd", false, &mut cd).unwrap();
    h.input(&cd[..n]);
    let mut events = h.events();
    h.c.bind_channel(h.now, peer()).unwrap();
    let bind = h.one();
    h.input(&ok(&bind));
    assert!(matches!(
        h.events()[..],
        [TurnClientEvent::ChannelBound { .. }]
    ));
    h.input(&cd[..n]);
    events.extend(h.events());
    assert_eq!(
        events,
        vec![
            TurnClientEvent::Data {
                peer: peer(),
                bytes: b"from peer".to_vec()
            },
            TurnClientEvent::Data {
                peer: peer(),
                bytes: b"cd".to_vec()
            },
        ]
    );
    assert_eq!(h.c.stats().ignored, 2);
}

#[test]
fn a_duplicated_response_is_harmless() {
    let mut h = H::new(Transport::Udp);
    h.c.allocate(h.now).unwrap();
    let first = h.one();
    let ch = challenge(&first, None);
    h.input(&ch);
    h.input(&ch); // the duplicate 401 starts nothing
    let second = h.one();
    let okr = allocate_ok(&second, 600, &md5_key());
    h.input(&okr);
    h.input(&okr);
    let events = h.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(h.sent().is_empty());
    assert_eq!(h.c.stats().requests, 2);
    assert_eq!(h.c.stats().ignored, 2);
}

#[test]
fn close_sends_refresh_with_lifetime_zero() {
    let mut h = H::allocated(Transport::Udp, 600);
    h.c.close(h.now);
    let req = h.one();
    let m = Message::parse(&req).unwrap();
    assert_eq!(m.message_type().method, Method::REFRESH);
    assert_eq!(m.get::<Lifetime>().unwrap(), Some(Lifetime(0)));
    assert_eq!(h.c.send_to(h.now, peer(), b"x"), Err(CommandError::Closed));
    // A second close (found by fuzzing) must not cancel the first one's Refresh.
    h.c.close(h.now);
    assert!(h.sent().is_empty());
    h.input(&ok(&req));
    assert_eq!(h.events(), vec![TurnClientEvent::Closed]);
    assert!(h.c.is_done());
    // A close that the server never answers still ends.
    let mut h = H::allocated(Transport::Udp, 600);
    h.c.close(h.now);
    let mut events = Vec::new();
    while let Some(t) = h.c.poll_timeout() {
        h.advance_to(t.at);
        h.sent();
        events.extend(h.events());
    }
    assert_eq!(
        events,
        vec![
            TurnClientEvent::ServerUnreachable {
                request: RequestKind::Refresh,
                server: server()
            },
            TurnClientEvent::Closed
        ]
    );
}

#[test]
fn tcp_stream_is_framed_across_arbitrary_chunks() {
    let mut h = H::allocated(Transport::Tcp, 600);
    h.c.create_permission(h.now, peer().ip()).unwrap();
    let perm = h.one();
    h.c.bind_channel(h.now, peer()).unwrap();
    let bind = h.one();
    let mut stream = ok(&perm);
    stream.extend(ok(&bind));
    let mut cd = [0u8; 16];
    let n =
        ChannelData::emit(ChannelNumber::new(0x4000).unwrap(), b"abcde", true, &mut cd).unwrap();
    stream.extend(&cd[..n]);
    stream.extend(&cd[..n]);
    for chunk in stream.chunks(3) {
        h.input(chunk);
    }
    let events = h.events();
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(
        events[3],
        TurnClientEvent::Data {
            peer: peer(),
            bytes: b"abcde".to_vec()
        }
    );
    // Garbage is a clear error and the end of the allocation, not a stall.
    h.input(&[0xFF, 0, 0, 0]);
    let events = h.events();
    assert!(
        matches!(
            &events[..],
            [
                TurnClientEvent::Error(TurnClientError::StreamCorrupt { .. }),
                TurnClientEvent::Expired
            ]
        ),
        "{events:?}"
    );
}

#[test]
fn ipv6_relay_is_requested_and_commands_check_families() {
    let mut config = TurnClientConfig::udp(server(), local(), USER, PASS);
    config.relay_family = AddressFamily::V6;
    let mut h = H::with(config);
    assert_eq!(
        h.c.send_to(h.now, peer(), b"x"),
        Err(CommandError::NotAllocated)
    );
    h.c.allocate(h.now).unwrap();
    let first = h.one();
    let m = Message::parse(&first).unwrap();
    assert_eq!(
        m.get::<RequestedAddressFamily>().unwrap(),
        Some(RequestedAddressFamily(AddressFamily::V6))
    );
    let h4 = &mut H::allocated(Transport::Udp, 600);
    let v6: SocketAddr = "[2001:db8::9]:5000".parse().unwrap();
    assert_eq!(
        h4.c.bind_channel(h4.now, v6),
        Err(CommandError::WrongFamily { peer: v6 })
    );
    assert_eq!(
        h4.c.send_to(h4.now, peer(), &vec![0; MAX_PAYLOAD + 1]),
        Err(CommandError::TooLarge(MAX_PAYLOAD + 1))
    );
}

#[test]
fn same_seed_same_inputs_same_bytes() {
    // The simulator replays runs exactly: nothing may depend on hash order or the clock.
    let run = || {
        let mut h = H::allocated(Transport::Udp, 600);
        let start = h.now;
        let mut wire = Vec::new();
        for i in 0..8u8 {
            let p = SocketAddr::from(([203, 0, 113, 10 + i], 4000 + u16::from(i)));
            h.c.create_permission(h.now, p.ip()).unwrap();
            h.c.bind_channel(h.now, p).unwrap();
            h.c.send_to(h.now, p, &[i; 3]).unwrap();
        }
        while h.now - start < Duration::from_secs(700) {
            let Some(t) = h.c.poll_timeout() else { break };
            h.advance_to(t.at);
            for req in h.sent() {
                if Message::parse(&req).is_ok_and(|m| m.message_type().class == Class::Request) {
                    h.input(&ok(&req));
                }
                wire.push(req);
            }
            h.events();
        }
        wire
    };
    let (a, b) = (run(), run());
    assert!(a.len() > 20, "{} transmits", a.len());
    assert_eq!(a, b);
}

#[test]
fn a_channel_alone_keeps_its_permission_refreshed() {
    // Permissions last 5 minutes, channels 10: a channel's permission needs its own
    // refreshes or the server drops the channel's data after 5 minutes.
    let mut h = H::allocated(Transport::Udp, 3600);
    let start = h.now;
    h.c.bind_channel(h.now, peer()).unwrap();
    let bind = h.one();
    h.input(&ok(&bind));
    assert_eq!(
        h.events(),
        vec![
            TurnClientEvent::ChannelBound {
                peer: peer(),
                channel: ChannelNumber::new(0x4000).unwrap()
            },
            TurnClientEvent::PermissionCreated { peer: peer().ip() },
        ]
    );
    assert!(h.c.has_permission(peer().ip()));
    let mut refreshes = Vec::new();
    while h.now - start < Duration::from_secs(600) {
        let t = h.c.poll_timeout().unwrap();
        h.advance_to(t.at);
        for req in h.sent() {
            let m = Message::parse(&req).unwrap();
            refreshes.push(((h.now - start).as_secs(), m.message_type().method));
            h.input(&ok(&req));
        }
    }
    assert_eq!(
        refreshes,
        vec![
            (240, Method::CREATE_PERMISSION),
            (480, Method::CREATE_PERMISSION),
            (540, Method::CHANNEL_BIND),
            (780, Method::CREATE_PERMISSION),
        ]
    );
}

#[test]
fn keepalives_keep_the_nat_mapping_while_idle() {
    let mut config = TurnClientConfig::udp(server(), local(), USER, PASS);
    config.keepalive = Some(Duration::from_secs(15));
    let mut h = H::with(config);
    h.c.allocate(h.now).unwrap();
    let first = h.one();
    h.input(&challenge(&first, None));
    let second = h.one();
    h.input(&allocate_ok(&second, 600, &md5_key()));
    h.events();
    let start = h.now;
    let t = h.c.poll_timeout().unwrap();
    assert_eq!(
        (t.at - start, t.reason),
        (Duration::from_secs(15), "turn: keepalive")
    );
    h.advance_to(t.at);
    let ka = h.one();
    let m = Message::parse(&ka).unwrap();
    assert_eq!(
        m.message_type(),
        MessageType::new(Method::BINDING, Class::Indication)
    );
    m.verify_fingerprint().unwrap();
    // Sending data counts as traffic: the next keepalive moves.
    h.now = start + Duration::from_secs(20);
    h.c.send_to(h.now, peer(), b"x").unwrap();
    let sent = h.sent();
    assert_eq!(sent.len(), 2, "CreatePermission and the Send indication");
    h.input(&ok(&sent[0]));
    let t = h.c.poll_timeout().unwrap();
    assert_eq!(
        (t.at - start, t.reason),
        (Duration::from_secs(35), "turn: keepalive")
    );
    assert_eq!(h.c.stats().keepalives, 1);
    // Over TCP there are none.
    let h = H::allocated(Transport::Tcp, 600);
    assert_eq!(h.c.config().keepalive, None);
    assert_eq!(h.c.poll_timeout().unwrap().reason, "turn: refresh");
}

#[test]
fn a_refused_refresh_is_reported_once_not_retried_in_a_storm() {
    let mut h = H::allocated(Transport::Udp, 3600);
    let start = h.now;
    h.c.create_permission(h.now, peer().ip()).unwrap();
    let perm = h.one();
    h.input(&ok(&perm));
    h.events();
    h.advance_to(start + PERMISSION_REFRESH);
    let refresh = h.one();
    h.input(&error(&refresh, 403, "Forbidden", Some(&md5_key())));
    assert!(matches!(
        h.events()[..],
        [TurnClientEvent::Error(TurnClientError::Rejected {
            code: 403,
            ..
        })]
    ));
    assert!(h.sent().is_empty(), "no immediate retry");
    // The permission lapses at its expiry; nothing is sent meanwhile.
    let t = h.c.poll_timeout().unwrap();
    assert_eq!(t.at - start, PERMISSION_LIFETIME);
    h.advance_to(t.at);
    assert!(h.sent().is_empty());
    assert!(!h.c.has_permission(peer().ip()));

    // 437 to any request: the allocation is gone (a NAT rebinding, a server restart).
    h.c.create_permission(h.now, peer().ip()).unwrap();
    let perm = h.one();
    h.input(&error(&perm, 437, "Allocation Mismatch", Some(&md5_key())));
    assert!(matches!(
        h.events()[..],
        [
            TurnClientEvent::Error(TurnClientError::Rejected { code: 437, .. }),
            TurnClientEvent::Expired
        ]
    ));
    assert!(h.c.is_done());
}

#[test]
fn a_closed_tcp_connection_ends_the_allocation_as_events() {
    let mut h = H::allocated(Transport::Tcp, 600);
    h.c.handle_connection_closed(h.now);
    let events = h.events();
    assert!(
        matches!(
            &events[..],
            [
                TurnClientEvent::Error(TurnClientError::ConnectionClosed { .. }),
                TurnClientEvent::Expired
            ]
        ),
        "{events:?}"
    );
    assert!(h.c.is_done() && h.c.poll_timeout().is_none());
    // While closing it is the end of the close.
    let mut h = H::allocated(Transport::Tcp, 600);
    h.c.close(h.now);
    h.sent();
    h.c.handle_connection_closed(h.now);
    assert_eq!(h.events(), vec![TurnClientEvent::Closed]);
    // Over UDP there is no connection to lose.
    let mut h = H::allocated(Transport::Udp, 600);
    h.c.handle_connection_closed(h.now);
    assert!(h.events().is_empty() && !h.c.is_done());
}
