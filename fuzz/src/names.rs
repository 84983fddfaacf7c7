//! Names (`p2pd_core::names`): the request, response and stored-entry parsers on arbitrary
//! bytes, and the server logic on a script of valid, forged and junk requests.

use std::time::Duration;

use bolero::check;
use p2pd_core::names::wire::{Request, Response};
use p2pd_core::names::{StoredName, store::NameStore};

/// How long each target runs under plain `cargo test` (cargo-bolero ignores it).
const TEST_TIME: Duration = Duration::from_secs(2);

/// Arbitrary bytes → `Request::parse`, `Request::parse_header`, `StoredName::from_bytes`:
/// never panic; a parsed request re-emits byte-identically and its header agrees.
#[test]
fn name_request_parse() {
    check!().with_test_time(TEST_TIME).for_each(|bytes: &[u8]| {
        if let Ok(r) = Request::parse(bytes) {
            assert_eq!(r.to_bytes(), bytes);
            assert_eq!(Request::parse_header(bytes), Ok((r.id, r.cookie)));
            assert!(bytes.len() <= p2pd_core::names::wire::MAX_MESSAGE_LEN);
        }
        let _ = Request::parse_header(bytes);
        if let Ok(e) = StoredName::from_bytes(bytes) {
            assert_eq!(StoredName::from_bytes(&e.to_bytes()), Ok(e.clone()));
            let _ = e.write.verify();
        }
    });
}

/// Arbitrary bytes → `Response::parse`: never panics; what parses re-emits to bytes that
/// parse back equal (byte-identical except the detail of reasons without one).
#[test]
fn name_response_parse() {
    check!().with_test_time(TEST_TIME).for_each(|bytes: &[u8]| {
        if let Ok(r) = Response::parse(bytes) {
            let again = r.to_bytes();
            assert_eq!(Response::parse(&again), Ok(r));
            assert!(again.len() <= bytes.len());
        }
    });
}

/// The server with an in-memory store fed a script of (delay, source, kind, name, time,
/// junk): puts and deletes signed by one of three keys (some with a wrong key or a
/// tampered byte), resolves, junk after a valid header, pure junk; each first without a
/// cookie, then with the one handed out. Never panics; a cookie answer is never larger
/// than its request; at most `MAX_QUEUED` replies wait; the rate table never grows;
/// every live stored record verifies and belongs to its writer; no holder exceeds its
/// limit.
#[test]
fn name_server_arbitrary_requests() {
    use std::net::SocketAddr;
    use std::time::Instant;

    use p2pd_core::addr::{Interface, NodeAddr, Route};
    use p2pd_core::identity::Identity;
    use p2pd_core::names::wire::{RequestBody, ResponseBody};
    use p2pd_core::names::{Holder, MemoryStore, Name, NameServer, ServerConfig, SignedWrite};
    use p2pd_core::nat::{Delta, DeltaKind, NatType};
    use p2pd_core::rng::Rng;

    let mut rng = Rng::seed_from_u64(1);
    let ids: Vec<Identity> = (0..3).map(|_| Identity::generate(&mut rng)).collect();
    let addr = |id: &Identity, port: u16| {
        let r = Route {
            external: "203.0.113.1".parse().unwrap(),
            internal: "10.0.0.1".parse().unwrap(),
            port,
            nat: NatType::FullCone,
            delta: Delta {
                kind: DeltaKind::Equal,
                value: 0,
            },
        };
        NodeAddr::new(
            id.public(),
            vec![],
            vec![Interface {
                v4: Some(r),
                v6: None,
            }],
        )
        .unwrap()
    };
    let sources: [SocketAddr; 4] = [
        "192.0.2.1:1".parse().unwrap(),
        "192.0.2.2:1".parse().unwrap(),
        "[2001:db8::1]:1".parse().unwrap(),
        "[2001:db8::2]:1".parse().unwrap(),
    ];
    let names = ["alice", "bob", "carol", "dave", "erin", "frank"];

    check!()
        .with_test_time(TEST_TIME)
        .with_type::<Vec<(u16, u8, u8, u8, i16, Vec<u8>)>>()
        .for_each(|script| {
            let config = ServerConfig {
                per_ipv4: 3,
                per_ipv6_64: 2,
                ..ServerConfig::default()
            };
            let t0 = Instant::now();
            let base_ms = 1_700_000_000_000u64;
            let mut now = t0;
            let local: SocketAddr = "198.51.100.1:5300".parse().unwrap();
            let mut server = NameServer::new(config, local, &mut Rng::seed_from_u64(2), t0);
            let memory = server.memory();
            let mut store = MemoryStore::new();
            for (delay, src, kind, which, dt, junk) in script.iter().take(64) {
                now += Duration::from_millis(u64::from(*delay) * 37);
                let unix = base_ms + now.duration_since(t0).as_millis() as u64;
                let source = sources[usize::from(*src) % sources.len()];
                let id = &ids[usize::from(*which) % ids.len()];
                let name = Name::parse(names[usize::from(*which / 3) % names.len()]).unwrap();
                let ts = unix.saturating_add_signed(i64::from(*dt) * 100);
                let body = match kind % 6 {
                    0 => Some(RequestBody::Resolve(name)),
                    1 => Some(RequestBody::Write(Box::new(SignedWrite::sign(
                        id,
                        name,
                        Some(addr(id, 1)),
                        ts,
                    )))),
                    2 => Some(RequestBody::Write(Box::new(SignedWrite::sign(
                        id, name, None, ts,
                    )))),
                    3 => {
                        // Someone else's address on the record.
                        let other = &ids[(usize::from(*which) + 1) % ids.len()];
                        Some(RequestBody::Write(Box::new(SignedWrite::sign(
                            id,
                            name,
                            Some(addr(other, 2)),
                            ts,
                        ))))
                    }
                    _ => None,
                };
                let mut bytes = match &body {
                    Some(b) => Request {
                        id: 7,
                        cookie: None,
                        body: b.clone(),
                    }
                    .to_bytes(),
                    None => junk.clone(),
                };
                if kind % 6 == 4 {
                    // A valid header, then junk.
                    bytes = Request {
                        id: 7,
                        cookie: None,
                        body: RequestBody::Resolve(Name::parse("abc").unwrap()),
                    }
                    .to_bytes();
                    bytes.truncate(28);
                    bytes.extend_from_slice(junk);
                }
                if kind & 0x80 != 0 && !bytes.is_empty() {
                    let i = usize::from(*delay) % bytes.len();
                    bytes[i] ^= 1 << (kind % 8);
                }
                // First without a cookie: only a cookie (no larger than the request) back.
                server.handle_input(now, unix, source, &bytes, &mut store);
                let mut cookie = None;
                while let Some(t) = server.poll_transmit() {
                    assert!(t.contents.len() <= bytes.len().max(28));
                    if let Ok(Response {
                        body: ResponseBody::Cookie(c),
                        ..
                    }) = Response::parse(t.contents)
                    {
                        cookie = Some(c);
                    }
                }
                if let Some(c) = cookie {
                    if bytes.len() >= 28 {
                        bytes[12..28].copy_from_slice(&c);
                    }
                    server.handle_input(now, unix, source, &bytes, &mut store);
                    let mut n = 0;
                    while let Some(t) = server.poll_transmit() {
                        n += 1;
                        assert!(Response::parse(t.contents).is_ok());
                    }
                    assert!(n <= 1);
                }
                while server.poll_event().is_some() {}
                assert_eq!(server.memory(), memory);
            }
            // Invariants of what was stored.
            let mut per: std::collections::BTreeMap<Holder, u64> = Default::default();
            for n in names {
                if let Some(e) = store.get(&Name::parse(n).unwrap()).unwrap() {
                    e.write.verify().unwrap();
                    if e.is_live() {
                        *per.entry(e.holder).or_default() += 1;
                    }
                }
            }
            for (h, count) in per {
                let limit = match h {
                    Holder::V4(_) => 3,
                    Holder::V6(_) => 2,
                };
                assert!(count <= limit, "{h:?} holds {count}");
            }
        });
}
