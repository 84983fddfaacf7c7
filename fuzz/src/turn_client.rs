//! The TURN client (`p2pd_core::turn::TurnClient`) over UDP and over TCP, fed arbitrary
//! server datagrams, stream chunks, signed and unsigned answers with arbitrary attributes
//! to its real requests, commands and time: it never panics, and once asked to allocate
//! it is never stalled (it is done, or it has a deadline).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bolero::check;
use p2pd_core::Transport;
use p2pd_core::rng::Rng;
use p2pd_core::stun::{
    AttrType, Class, ErrorCode, IntegrityKey, Message, MessageBuilder, MessageType, Nonce,
    PasswordAlgorithmKind, Realm, XorRelayedAddress,
};
use p2pd_core::turn::{TurnClient, TurnClientConfig};

const TEST_TIME: Duration = Duration::from_secs(3);
const SERVER: &str = "198.51.100.1:3478";
const LOCAL: &str = "10.0.0.2:40000";

/// An answer to `request`: success or error (`code`), with `body` cut into TLVs, a
/// challenge's REALM/NONCE when `challenge`, signed with the client's key when `sign`.
fn answer(request: &[u8], code: u16, body: &[u8], challenge: bool, sign: bool) -> Option<Vec<u8>> {
    let req = Message::parse(request).ok()?;
    let class = if code < 300 {
        Class::Success
    } else {
        Class::Error
    };
    let mut buf = vec![0u8; 2048];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(req.message_type().method, class),
        req.transaction_id(),
    )
    .ok()?;
    if class == Class::Error {
        b.add(&ErrorCode::new(300 + code % 300, "fuzz").ok()?)
            .ok()?;
    } else if code % 2 == 0 {
        b.add(&XorRelayedAddress(SERVER.parse().ok()?)).ok()?;
    }
    if challenge {
        b.add(&Realm::new("fuzz").ok()?).ok()?;
        b.add(&Nonce::new("n").ok()?).ok()?;
    }
    let mut rest = body;
    while let [t0, t1, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        b.add_raw(AttrType(u16::from_be_bytes([*t0, *t1])), &tail[..len])
            .ok()?;
        rest = &tail[len..];
    }
    if sign {
        let key = IntegrityKey::long_term("u", "fuzz", "p", PasswordAlgorithmKind::Md5).ok()?;
        b.add_integrity(&key).ok()?;
    }
    b.add_fingerprint().ok()?;
    Some(b.finish().to_vec())
}

#[test]
fn turn_client_arbitrary_inputs() {
    check!()
        .with_test_time(TEST_TIME)
        .with_type::<(bool, Vec<(u8, u16, Vec<u8>)>)>()
        .for_each(|(tcp, ops)| {
            let t0 = Instant::now();
            let mut now = t0;
            let server: SocketAddr = SERVER.parse().unwrap();
            let local: SocketAddr = LOCAL.parse().unwrap();
            let mut config = TurnClientConfig::udp(server, local, "u", "p");
            if *tcp {
                config.transport = Transport::Tcp;
            }
            let mut c = TurnClient::new(config, Rng::seed_from_u64(1));
            let mut asked = false;
            let mut last_request: Option<Vec<u8>> = None;
            let mut stream = Vec::new();
            for (op, arg, bytes) in ops {
                let peer = SocketAddr::from(([203, 0, 113, (*arg % 4) as u8], *arg));
                match op % 10 {
                    0 => c.handle_input(now, server, local, bytes),
                    1 => c.handle_input(now, peer, local, bytes),
                    2 | 3 => {
                        if let Some(req) = &last_request {
                            let challenge = op & 0x10 != 0;
                            let sign = op & 0x20 != 0;
                            if let Some(a) = answer(req, *arg, bytes, challenge, sign) {
                                stream.extend_from_slice(&a);
                                c.handle_input(now, server, local, &a);
                            }
                        }
                    }
                    4 => {
                        asked = true;
                        let _ = c.allocate(now);
                    }
                    5 => {
                        let _ = c.create_permission(now, peer.ip());
                    }
                    6 => {
                        let _ = c.bind_channel(now, peer);
                    }
                    7 => {
                        let _ = c.send_to(now, peer, bytes);
                    }
                    8 => {
                        now += Duration::from_millis(u64::from(*arg) * 100);
                        c.handle_timeout(now);
                    }
                    _ => c.close(now),
                }
                while let Some(t) = c.poll_transmit() {
                    if Message::parse(t.contents)
                        .is_ok_and(|m| m.message_type().class == Class::Request)
                    {
                        last_request = Some(t.contents.to_vec());
                    }
                }
                while c.poll_event().is_some() {}
                if asked {
                    assert!(
                        c.is_done() || c.poll_timeout().is_some(),
                        "stalled: not done and nothing to wait for; ops {:?}; {c:?}",
                        ops.iter()
                            .map(|(o, a, b)| (o % 10, o & 0x30, *a, b.len()))
                            .collect::<Vec<_>>()
                    );
                }
            }
            // The same answers cut into arbitrary chunks over a stream never panic either.
            if *tcp {
                for chunk in stream.chunks(7) {
                    c.handle_input(now, server, local, chunk);
                }
            }
        });
}
