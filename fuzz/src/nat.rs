//! The NAT classifier fed arbitrary answers: whatever comes back — responses to its real
//! requests with arbitrary mapped addresses, OTHER-ADDRESS values and sources, stray
//! bytes, or silence — it never panics, always reaches a verdict, and never sends more
//! than its schedules allow.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bolero::check;
use p2pd_core::nat::{Classifier, ClassifierConfig, ClassifierSockets};
use p2pd_core::rng::Rng;
use p2pd_core::stun::{
    Message, MessageBuilder, MessageType, OtherAddress, ResponseOrigin, XorMappedAddress,
};

const TEST_TIME: Duration = Duration::from_secs(2);

/// Requests the classifier may send at most (schedules × probes), and events a run may take.
const MAX_SENDS: usize = 4_000;
const MAX_STEPS: usize = 20_000;

fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port)
}

/// A small pool of addresses, so fuzzed choices often hit the "right" ones.
fn pick(b: u8) -> SocketAddr {
    match b % 8 {
        0 => v4(192, 0, 2, 1, 3478),
        1 => v4(192, 0, 2, 2, 3479),
        2 => v4(192, 0, 2, 2, 3478),
        3 => v4(192, 0, 2, 1, 3479),
        4 => v4(10, 0, 0, 2, 40000),
        5 => v4(198, 51, 100, 7, 40000),
        6 => v4(198, 51, 100, 7, u16::from(b) * 97),
        _ => v4(203, 0, 113, b, 1 + u16::from(b)),
    }
}

fn respond(
    request: &[u8],
    mapped: SocketAddr,
    other: Option<SocketAddr>,
    origin: SocketAddr,
) -> Vec<u8> {
    let Ok(req) = Message::parse(request) else {
        return Vec::new();
    };
    let mut buf = [0u8; 128];
    let Ok(mut b) =
        MessageBuilder::new(&mut buf, MessageType::BINDING_SUCCESS, req.transaction_id())
    else {
        return Vec::new();
    };
    let _ = b.add(&XorMappedAddress(mapped));
    if let Some(o) = other {
        let _ = b.add(&OtherAddress(o));
    }
    let _ = b.add(&ResponseOrigin(origin));
    b.finish().to_vec()
}

#[test]
fn classifier_arbitrary_answers() {
    check!()
        .with_test_time(TEST_TIME)
        .for_each(|script: &[u8]| {
            let start = Instant::now();
            let local = v4(10, 0, 0, 2, 40000);
            let sockets = ClassifierSockets {
                mapping: local,
                filtering: v4(10, 0, 0, 2, 40001),
                delta_random: (0..4).map(|i| v4(10, 0, 0, 2, 50000 + i * 7)).collect(),
                delta_consecutive: (0..4).map(|i| v4(10, 0, 0, 2, 45000 + i)).collect(),
            };
            let config = ClassifierConfig {
                servers: vec![v4(192, 0, 2, 1, 3478), v4(192, 0, 2, 9, 3478)],
                test_hairpinning: script.first().is_some_and(|b| b & 1 == 1),
                ..ClassifierConfig::default()
            };
            let Ok(mut c) = Classifier::new(start, config, sockets, Rng::seed_from_u64(1)) else {
                panic!("valid configuration refused");
            };
            let mut now = start;
            let mut script = script.iter().copied();
            let mut sends = 0usize;
            for _ in 0..MAX_STEPS {
                let mut outgoing = Vec::new();
                while let Some(t) = c.poll_transmit() {
                    sends += 1;
                    assert!(sends <= MAX_SENDS, "the classifier keeps sending");
                    outgoing.push((t.source, t.destination, t.contents.to_vec()));
                }
                if c.poll_event().is_some() {
                    return;
                }
                for (src, dst, bytes) in outgoing {
                    // Each request: answered (with fuzzed contents), junk, or silence.
                    match script.next() {
                        Some(op) if op % 4 == 0 => {
                            let (m, o, from) = (
                                script.next().unwrap_or(0),
                                script.next().unwrap_or(0),
                                script.next().unwrap_or(0),
                            );
                            let other = (o % 3 != 0).then(|| pick(o));
                            let resp = respond(&bytes, pick(m), other, pick(from));
                            c.handle_input(now, pick(from), src, &resp);
                        }
                        Some(op) if op % 4 == 1 => {
                            let n = usize::from(op / 4) % 32;
                            let junk: Vec<u8> = script.by_ref().take(n).collect();
                            c.handle_input(now, pick(op), src, &junk);
                        }
                        Some(op) if op % 4 == 2 => {
                            // The right answer from the right place.
                            let resp = respond(
                                &bytes,
                                v4(198, 51, 100, 7, 40000),
                                Some(v4(192, 0, 2, 2, 3479)),
                                v4(192, 0, 2, 1, 3478),
                            );
                            c.handle_input(now, dst, src, &resp);
                        }
                        _ => {}
                    }
                }
                let Some(t) = c.poll_timeout() else {
                    assert!(
                        c.poll_event().is_some() || c.is_done(),
                        "no deadline and no verdict"
                    );
                    return;
                };
                assert!(
                    t.at >= now,
                    "deadline in the past: {:?} ({})",
                    now - t.at,
                    t.reason
                );
                now = t.at;
                c.handle_timeout(now);
                assert!(
                    now - start < Duration::from_secs(600),
                    "no verdict after 600 s"
                );
            }
            panic!("no verdict within {MAX_STEPS} steps");
        });
}
