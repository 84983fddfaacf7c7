//! The negotiator (`p2pd_core::negotiate`): its signaling messages, the TCP routing
//! preamble and HELLO, and a live negotiator fed hostile signals, datagrams and TCP bytes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bolero::check;
use p2pd_core::addr::{Interface, NodeAddr, Route};
use p2pd_core::identity::Identity;
use p2pd_core::nat::{Delta, DeltaKind, NatType};
use p2pd_core::negotiate::message::NegotiationMessage;
use p2pd_core::negotiate::{
    Action, Negotiator, NegotiatorConfig, Strategy, TcpEvent, TcpId, Timeouts, handshake,
    route_signal, route_tcp,
};
use p2pd_core::rng::Rng;

const TEST_TIME: Duration = Duration::from_secs(2);

/// Arbitrary bytes → `NegotiationMessage::parse`: never panics; what parses re-emits to
/// the same bytes, and `route_signal` agrees with the parser.
#[test]
fn negotiate_message_parse() {
    check!().with_test_time(TEST_TIME).for_each(|bytes: &[u8]| {
        let parsed = NegotiationMessage::parse(bytes);
        assert_eq!(route_signal(bytes).is_some(), parsed.is_ok());
        if let Ok(m) = parsed {
            assert_eq!(m.emit(), bytes);
        }
    });
}

/// Arbitrary bytes as a TCP path's first bytes and as a HELLO: never panics; a HELLO of
/// arbitrary bytes never verifies.
#[test]
fn negotiate_preamble_and_hello() {
    let mut rng = Rng::seed_from_u64(3);
    let a = Identity::generate(&mut rng).public();
    let b = Identity::generate(&mut rng).public();
    check!().with_test_time(TEST_TIME).for_each(|bytes: &[u8]| {
        let _ = route_tcp(bytes);
        if let Ok(h) = <&[u8; handshake::HELLO_LEN]>::try_from(bytes) {
            let t = p2pd_core::negotiate::AttemptId(1);
            assert!(handshake::verify(h, handshake::Role::Responder, t, &a, &b).is_err());
        }
    });
}

fn node(id: &Identity, ip: &str, nat: NatType) -> NodeAddr {
    let ip = ip.parse().unwrap();
    let route = Route {
        external: ip,
        internal: ip,
        port: 4000,
        nat,
        delta: Delta {
            kind: DeltaKind::Independent,
            value: 2,
        },
    };
    let iface = Interface {
        v4: Some(route),
        v6: None,
    };
    NodeAddr::new(id.public(), Vec::new(), vec![iface]).unwrap()
}

/// A negotiator (either role) fed a script of hostile inputs: arbitrary signals (raw or
/// with a valid header for its attempt), datagrams, TCP events with arbitrary bytes,
/// bind answers and time. It never panics, its queues stay bounded, and once the script's
/// time has run out past every deadline it has finished.
#[test]
fn negotiator_arbitrary_inputs() {
    check!().with_test_time(TEST_TIME).for_each(|input: &[u8]| {
        let mut rng = Rng::seed_from_u64(9);
        let me = Identity::generate(&mut rng);
        let peer = Identity::generate(&mut rng);
        let nats = [NatType::Symmetric, NatType::FullCone, NatType::OpenInternet];
        let nat = nats[usize::from(input.first().copied().unwrap_or(0)) % 3];
        let cfg = NegotiatorConfig {
            identity: me.clone(),
            ours: node(&me, "192.0.2.1", nat),
            listen: vec!["192.0.2.1:4000".parse().unwrap()],
            strategies: Strategy::ALL.to_vec(),
            stun: vec!["198.51.100.1:3478".parse().unwrap()],
            turn: Vec::new(),
            timeouts: Timeouts::default(),
        };
        let start = Instant::now();
        let mut now = start;
        let mut n = Negotiator::connect(
            now,
            cfg,
            node(&peer, "192.0.2.2", NatType::PortRestrictedCone),
            Rng::seed_from_u64(4),
        )
        .unwrap();
        let attempt = n.attempt();
        let mut binds = Vec::new();
        for chunk in input.chunks(24).take(64) {
            let kind = chunk.first().copied().unwrap_or(0) % 7;
            let body = chunk.get(1..).unwrap_or(&[]);
            let src: SocketAddr = "192.0.2.2:4000".parse().unwrap();
            let dst: SocketAddr = "192.0.2.1:20000".parse().unwrap();
            match kind {
                0 => n.handle_signal(now, body),
                1 => {
                    // A valid header for our attempt, then fuzzed body bytes.
                    let mut m = vec![1, body.first().copied().unwrap_or(2) % 9];
                    m.extend_from_slice(&attempt.0.to_be_bytes());
                    m.extend_from_slice(body.get(1..).unwrap_or(&[]));
                    n.handle_signal(now, &m);
                }
                2 => n.handle_udp(now, src, dst, body),
                3 => n.handle_tcp(
                    now,
                    TcpEvent::Data {
                        id: TcpId(u64::from(body.first().copied().unwrap_or(1) % 4)),
                        bytes: body,
                    },
                ),
                4 => n.handle_tcp(
                    now,
                    TcpEvent::Accepted {
                        id: TcpId::accepted(1),
                        local: dst,
                        remote: src,
                    },
                ),
                5 => {
                    if let Some(req) = binds.pop() {
                        n.handle_bound(now, req, Ok(vec![dst, "192.0.2.1:20001".parse().unwrap()]));
                    }
                }
                _ => {
                    now +=
                        Duration::from_millis(u64::from(body.first().copied().unwrap_or(0)) * 50);
                    n.handle_timeout(now);
                }
            }
            let mut actions = 0;
            while let Some(a) = n.poll_action() {
                if let Action::BindUdp { req, .. } = a {
                    binds.push(req);
                }
                actions += 1;
                assert!(actions < 100_000);
            }
            let mut sends = 0;
            while n.poll_transmit().is_some() {
                sends += 1;
                assert!(sends < 100_000);
            }
            while n.poll_event().is_some() {}
        }
        // Run out every deadline.
        for _ in 0..10_000 {
            let Some(t) = n.poll_timeout() else { break };
            assert!(t.at >= start);
            now = now.max(t.at);
            n.handle_timeout(now);
            while n.poll_action().is_some() {}
            while n.poll_transmit().is_some() {}
            while n.poll_event().is_some() {}
        }
        assert!(n.is_done(), "the negotiator never finished");
    });
}
