//! The TURN server (`p2pd_core::turn::TurnServer`) fed arbitrary sequences of client
//! datagrams, TCP frames, authenticated requests with arbitrary attributes, peer
//! datagrams, closed connections, failed relay binds and time: it never panics, and its
//! tables stay within their configured bounds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bolero::check;
use p2pd_core::rng::Rng;
use p2pd_core::stun::{
    AttrType, Class, IntegrityKey, Message, MessageBuilder, MessageType, Method, Nonce,
    PasswordAlgorithmKind, Realm, TransactionId, Username,
};
use p2pd_core::turn::{TurnLimits, TurnServer, TurnServerConfig, TurnServerEvent};

const TEST_TIME: Duration = Duration::from_secs(3);
const LISTEN: &str = "198.51.100.1:3478";

fn server(now: Instant) -> TurnServer {
    let mut c = TurnServerConfig::new(
        LISTEN.parse().unwrap(),
        "fuzz",
        vec![("u".into(), "p".into())],
    );
    c.relay_ports = (50000, 50015);
    c.limits = TurnLimits {
        max_allocations: 4,
        allocations_per_user: 3,
        permissions_per_allocation: 4,
        channels_per_allocation: 4,
        max_clients: 8,
        ..TurnLimits::default()
    };
    TurnServer::new(c, Rng::seed_from_u64(0), now).unwrap()
}

/// A request of `method` signed with the user's key, carrying `body` cut into TLVs.
fn signed(method: u16, body: &[u8], nonce: &str, id: u8) -> Option<Vec<u8>> {
    let method = Method::new(method & 0x0FFF)?;
    let mut buf = vec![0u8; 2048];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(method, Class::Request),
        TransactionId::new([id; 12]),
    )
    .ok()?;
    let mut rest = body;
    while let [t0, t1, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let typ = AttrType(u16::from_be_bytes([*t0, *t1]));
        // Leave the authentication attributes to the signer below.
        if ![
            AttrType::MESSAGE_INTEGRITY,
            AttrType::MESSAGE_INTEGRITY_SHA256,
            AttrType::FINGERPRINT,
        ]
        .contains(&typ)
        {
            b.add_raw(typ, &tail[..len]).ok()?;
        }
        rest = &tail[len..];
    }
    b.add(&Username::new("u").ok()?).ok()?;
    b.add(&Realm::new("fuzz").ok()?).ok()?;
    b.add(&Nonce::new(nonce).ok()?).ok()?;
    let key = IntegrityKey::long_term("u", "fuzz", "p", PasswordAlgorithmKind::Md5).ok()?;
    b.add_integrity(&key).ok()?;
    Some(b.finish().to_vec())
}

#[test]
fn turn_server_arbitrary_inputs() {
    check!()
        .with_test_time(TEST_TIME)
        .with_type::<Vec<(u8, u8, u16, Vec<u8>)>>()
        .for_each(|ops| {
            let t0 = Instant::now();
            let mut now = t0;
            let mut s = server(t0);
            let listen: SocketAddr = LISTEN.parse().unwrap();
            let mut nonce = String::new();
            let mut relays: Vec<SocketAddr> = Vec::new();
            let mut fail_binds = false;
            for (i, (op, who, arg, bytes)) in ops.iter().enumerate() {
                let client = SocketAddr::from(([192, 0, 2, who % 4], 1000 + u16::from(who % 3)));
                match op % 8 {
                    0 => s.handle_input(now, client, listen, bytes),
                    1 => s.handle_stream_frame(now, client, bytes),
                    2 => {
                        if let Some(req) = signed(*arg, bytes, &nonce, i as u8) {
                            s.handle_input(now, client, listen, &req);
                        }
                    }
                    3 => {
                        let peer = SocketAddr::from(([203, 0, 113, who % 4], *arg));
                        let relay = relays
                            .get(usize::from(*who) % relays.len().max(1))
                            .copied()
                            .unwrap_or(listen);
                        s.handle_input(now, peer, relay, bytes);
                    }
                    4 => s.handle_stream_closed(now, client),
                    5 => {
                        now += Duration::from_millis(u64::from(*arg) * 50);
                        s.handle_timeout(now);
                    }
                    6 => fail_binds = !fail_binds,
                    _ => {
                        // An unauthenticated request to learn a nonce.
                        let mut buf = [0u8; 64];
                        if let Ok(b) = MessageBuilder::new(
                            &mut buf,
                            MessageType::new(Method::ALLOCATE, Class::Request),
                            TransactionId::new([i as u8; 12]),
                        ) {
                            let req = b.finish().to_vec();
                            s.handle_input(now, client, listen, &req);
                        }
                    }
                }
                while let Some(e) = s.poll_event() {
                    match e {
                        TurnServerEvent::BindRelay { relay } => {
                            s.relay_bound(now, relay, !fail_binds);
                            if !fail_binds && relays.len() < 64 {
                                relays.push(relay);
                            }
                        }
                        TurnServerEvent::ReleaseRelay { relay } => relays.retain(|r| *r != relay),
                    }
                }
                let mut n = 0;
                while let Some(t) = s.poll_transmit() {
                    n += 1;
                    assert!(n <= 512, "a single input produced an unbounded burst");
                    if let Ok(m) = Message::parse(t.contents) {
                        if let Ok(Some(x)) = m.get::<Nonce>() {
                            nonce = x.as_str().to_owned();
                        }
                    }
                }
                assert!(s.allocation_count() <= 4);
            }
        });
}
