//! The Binding responder in RFC 5780 mode, driven sans-IO: every combination of
//! CHANGE-REQUEST, RESPONSE-PORT, RFC 3489 clients, and hostile input.

use std::net::SocketAddr;
use std::time::Instant;

use p2pd_core::Transport;
use p2pd_core::stun::{
    AttrType, ChangeRequest, ChangedAddress, ClientTransaction, Dropped, ErrorCode, Message,
    MessageBuilder, MessageType, OtherAddress, Padding, ResponseOrigin, ResponsePort, ServerConfig,
    SourceAddress, StunServer, TransactionConfig, TransactionEvent, TransactionId,
    UnknownAttributes,
};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const P: &str = "192.0.2.1:3478";
const A: &str = "203.0.113.1:3479";
const CLIENT: &str = "198.51.100.9:40000";

fn server5780() -> StunServer {
    StunServer::new(ServerConfig {
        primary: addr(P),
        alternate: Some(addr(A)),
        software: Some("p2pd test".into()),
    })
    .unwrap()
}

fn binding(change: Option<ChangeRequest>, port: Option<u16>, padding: usize) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::BINDING_REQUEST,
        TransactionId::new([0x42; 12]),
    )
    .unwrap();
    if let Some(c) = change {
        b.add(&c).unwrap();
    }
    if let Some(p) = port {
        b.add(&ResponsePort(p)).unwrap();
    }
    if padding > 0 {
        b.add(&Padding(&vec![7u8; padding])).unwrap();
    }
    b.add_fingerprint().unwrap();
    b.finish().to_vec()
}

/// Sends `req` to the server on `local` and returns (from, to, response bytes).
fn exchange(s: &mut StunServer, local: &str, req: &[u8]) -> (SocketAddr, SocketAddr, Vec<u8>) {
    s.handle_input(
        Instant::now(),
        Transport::Udp,
        addr(CLIENT),
        addr(local),
        req,
    )
    .unwrap();
    let t = s.poll_transmit().unwrap();
    let out = (t.source, t.destination, t.contents.to_vec());
    assert!(s.poll_transmit().is_none());
    out
}

#[test]
fn listens_on_four_addresses() {
    let s = server5780();
    let mut got = s.local_addresses();
    got.sort();
    let mut want = vec![
        addr(P),
        addr("192.0.2.1:3479"),
        addr("203.0.113.1:3478"),
        addr(A),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn change_request_answers_from_the_asked_address() {
    let mut s = server5780();
    for (ip, port, from) in [
        (false, false, P),
        (false, true, "192.0.2.1:3479"),
        (true, false, "203.0.113.1:3478"),
        (true, true, A),
    ] {
        let req = binding(
            Some(ChangeRequest {
                change_ip: ip,
                change_port: port,
            }),
            None,
            0,
        );
        let (src, dst, resp) = exchange(&mut s, P, &req);
        assert_eq!(src, addr(from), "change ip={ip} port={port}");
        assert_eq!(dst, addr(CLIENT));
        let m = Message::parse(&resp).unwrap();
        m.verify_fingerprint().unwrap();
        assert_eq!(m.mapped_address().unwrap(), Some(addr(CLIENT)));
        assert_eq!(
            m.get::<ResponseOrigin>().unwrap(),
            Some(ResponseOrigin(addr(from)))
        );
        assert_eq!(
            m.get::<OtherAddress>().unwrap(),
            Some(OtherAddress(addr(A)))
        );
    }
}

#[test]
fn other_address_is_relative_to_where_the_request_arrived() {
    let mut s = server5780();
    let (_, _, resp) = exchange(&mut s, A, &binding(None, None, 0));
    let m = Message::parse(&resp).unwrap();
    // Unlike coturn, which names A again here, the answer from A points back at P.
    assert_eq!(
        m.get::<OtherAddress>().unwrap(),
        Some(OtherAddress(addr(P)))
    );
    let (_, _, resp) = exchange(&mut s, "203.0.113.1:3478", &binding(None, None, 0));
    let m = Message::parse(&resp).unwrap();
    assert_eq!(
        m.get::<OtherAddress>().unwrap(),
        Some(OtherAddress(addr("192.0.2.1:3479")))
    );
}

#[test]
fn response_port_redirects_to_another_port_of_the_same_ip() {
    let mut s = server5780();
    let (_, dst, _) = exchange(&mut s, P, &binding(None, Some(40001), 0));
    assert_eq!(dst, addr("198.51.100.9:40001"));
}

#[test]
fn padding_makes_the_response_as_large_as_the_request_never_larger() {
    let mut s = server5780();
    let req = binding(None, None, 400);
    let (_, _, resp) = exchange(&mut s, P, &req);
    assert!(
        resp.len() <= req.len() && resp.len() + 8 > req.len(),
        "{} vs {}",
        resp.len(),
        req.len()
    );
    Message::parse(&resp).unwrap().verify_fingerprint().unwrap();
}

#[test]
fn plain_server_refuses_change_request_with_420() {
    let mut s = StunServer::new(ServerConfig {
        primary: addr(P),
        alternate: None,
        software: None,
    })
    .unwrap();
    let req = binding(
        Some(ChangeRequest {
            change_ip: true,
            change_port: false,
        }),
        None,
        0,
    );
    let (src, _, resp) = exchange(&mut s, P, &req);
    assert_eq!(src, addr(P));
    let m = Message::parse(&resp).unwrap();
    assert_eq!(m.message_type(), MessageType::BINDING_ERROR);
    assert_eq!(m.get::<ErrorCode>().unwrap().unwrap().code(), 420);
    let unknown: Vec<_> = m
        .get::<UnknownAttributes>()
        .unwrap()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(unknown, [AttrType::CHANGE_REQUEST]);
    // Without CHANGE-REQUEST it answers, with no RFC 5780 attributes.
    let (_, _, resp) = exchange(&mut s, P, &binding(None, None, 0));
    let m = Message::parse(&resp).unwrap();
    assert!(!m.has(AttrType::OTHER_ADDRESS) && !m.has(AttrType::RESPONSE_ORIGIN));
}

#[test]
fn unknown_comprehension_required_attribute_gets_420() {
    let mut s = server5780();
    let mut buf = [0u8; 64];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::BINDING_REQUEST,
        TransactionId::new([1; 12]),
    )
    .unwrap();
    b.add_raw(AttrType(0x7777), &[1, 2, 3]).unwrap();
    b.add_raw(AttrType(0xC001), &[1]).unwrap(); // optional: ignored
    let req = b.finish().to_vec();
    let (_, _, resp) = exchange(&mut s, P, &req);
    let m = Message::parse(&resp).unwrap();
    assert_eq!(m.get::<ErrorCode>().unwrap().unwrap().code(), 420);
    let unknown: Vec<_> = m
        .get::<UnknownAttributes>()
        .unwrap()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(unknown, [AttrType(0x7777)]);
}

#[test]
fn rfc3489_client_gets_mapped_source_and_changed_address() {
    let mut s = server5780();
    let mut buf = [0u8; 64];
    // An RFC 3489 request: the cookie field is part of a 128-bit random ID.
    let mut b = MessageBuilder::with_cookie(
        &mut buf,
        MessageType::BINDING_REQUEST,
        0xdead_beef,
        TransactionId::new([9; 12]),
    )
    .unwrap();
    b.add(&ChangeRequest {
        change_ip: true,
        change_port: true,
    })
    .unwrap();
    let req = b.finish().to_vec();
    let (src, _, resp) = exchange(&mut s, P, &req);
    assert_eq!(src, addr(A));
    let m = Message::parse(&resp).unwrap();
    assert!(m.is_rfc3489());
    assert_eq!(&resp[4..20], &req[4..20], "the whole 128-bit ID is echoed");
    assert!(!m.has(AttrType::XOR_MAPPED_ADDRESS) && !m.has_fingerprint());
    assert_eq!(m.mapped_address().unwrap(), Some(addr(CLIENT)));
    assert_eq!(
        m.get::<SourceAddress>().unwrap(),
        Some(SourceAddress(addr(A)))
    );
    assert_eq!(
        m.get::<ChangedAddress>().unwrap(),
        Some(ChangedAddress(addr(A)))
    );
}

#[test]
fn tcp_refuses_change_request() {
    let mut s = server5780();
    let req = binding(
        Some(ChangeRequest {
            change_ip: false,
            change_port: true,
        }),
        None,
        0,
    );
    s.handle_input(Instant::now(), Transport::Tcp, addr(CLIENT), addr(P), &req)
        .unwrap();
    let t = s.poll_transmit().unwrap();
    assert_eq!(t.transport, Transport::Tcp);
    let m = Message::parse(t.contents).unwrap();
    assert_eq!(m.get::<ErrorCode>().unwrap().unwrap().code(), 400);
}

#[test]
fn drops_what_is_not_a_request() {
    let mut s = server5780();
    let now = Instant::now();
    let req = binding(None, None, 0);
    let (c, p) = (addr(CLIENT), addr(P));
    assert_eq!(
        s.handle_input(now, Transport::Udp, c, p, b"GET / HTTP/1.1"),
        Err(Dropped::NotStun)
    );
    let (_, _, resp) = exchange(&mut s, P, &req);
    assert_eq!(
        s.handle_input(now, Transport::Udp, c, p, &resp),
        Err(Dropped::NotARequest)
    );
    let mut bad = req.clone();
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    assert_eq!(
        s.handle_input(now, Transport::Udp, c, p, &bad),
        Err(Dropped::BadFingerprint)
    );
    assert!(s.poll_transmit().is_none());
    assert_eq!(s.stats().dropped, 3);
}

#[test]
fn queue_is_bounded_when_the_driver_does_not_drain() {
    let mut s = server5780();
    let req = binding(None, None, 0);
    let now = Instant::now();
    let results: Vec<_> = (0..100)
        .map(|_| s.handle_input(now, Transport::Udp, addr(CLIENT), addr(P), &req))
        .collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 64);
    assert_eq!(results.last(), Some(&Err(Dropped::QueueFull)));
    let mut n = 0;
    while s.poll_transmit().is_some() {
        n += 1;
    }
    assert_eq!(n, 64);
}

#[test]
fn client_transaction_against_server_end_to_end() {
    let mut s = server5780();
    let start = Instant::now();
    let local = addr(CLIENT);
    let req = binding(
        Some(ChangeRequest {
            change_ip: true,
            change_port: true,
        }),
        None,
        0,
    );
    let mut t = ClientTransaction::new(
        start,
        req,
        Transport::Udp,
        local,
        addr(P),
        TransactionConfig::default(),
    )
    .unwrap()
    .expect_response_from(p2pd_core::stun::ResponseSource::Exact(addr(A)));
    t.handle_timeout(start);
    let tx = t.poll_transmit().unwrap();
    s.handle_input(start, tx.transport, tx.source, tx.destination, tx.contents)
        .unwrap();
    let resp = s.poll_transmit().unwrap();
    t.handle_input(start, resp.source, resp.destination, resp.contents)
        .unwrap();
    match t.poll_event() {
        Some(TransactionEvent::Response { bytes, source, .. }) => {
            assert_eq!(source, addr(A));
            assert_eq!(
                Message::parse(&bytes).unwrap().mapped_address().unwrap(),
                Some(local)
            );
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn alternate_must_differ_in_ip_and_port() {
    for alt in ["192.0.2.1:3479", "203.0.113.1:3478", "[2001:db8::1]:3479"] {
        assert!(
            StunServer::new(ServerConfig {
                primary: addr(P),
                alternate: Some(addr(alt)),
                software: None,
            })
            .is_err(),
            "{alt}"
        );
    }
}
