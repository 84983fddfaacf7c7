//! MQTT (`p2pd_core::mqtt`): the codec on arbitrary bytes (whatever parses re-emits to the
//! same bytes), and the client session fed arbitrary broker bytes and timeouts (never
//! panics, never loops, never buffers beyond its packet limit).

use std::time::{Duration, Instant};

use bolero::check;
use p2pd_core::addr::Broker;
use p2pd_core::mqtt::{ClientConfig, MqttClient, Packet, frame_len};
use p2pd_core::rng::Rng;

const TEST_TIME: Duration = Duration::from_secs(2);

/// Arbitrary bytes → `frame_len` + `Packet::parse`; a parsed packet emits the same bytes
/// (the codec is canonical: minimal remaining-length encoding is all it writes, so only
/// compare when the input used it).
#[test]
fn mqtt_parse() {
    check!().with_test_time(TEST_TIME).for_each(|bytes: &[u8]| {
        let Ok(Some(n)) = frame_len(bytes, 1 << 20) else {
            return;
        };
        let frame = &bytes[..n];
        if let Ok(p) = Packet::parse(frame) {
            let mut out = Vec::new();
            p.emit(&mut out).unwrap();
            let reparsed = Packet::parse(&out).unwrap();
            assert_eq!(reparsed, p);
            let minimal = out.len() == frame.len();
            if minimal {
                assert_eq!(out, frame);
            }
        }
    });
}

/// The client fed arbitrary broker bytes in arbitrary chunks, with stream events and
/// timeouts in between: no panic, its buffers stay bounded, and every call returns.
#[test]
fn mqtt_client_arbitrary_input() {
    check!().with_test_time(TEST_TIME).for_each(|input: &[u8]| {
        let t0 = Instant::now();
        let brokers: Vec<Broker> = vec![
            "192.0.2.1:1883".parse().unwrap(),
            "192.0.2.2:1883".parse().unwrap(),
        ];
        let mut config = ClientConfig::new("fuzz", brokers);
        config.subscriptions.push("p2pd/1/x".into());
        config.max_packet = 4096;
        let mut c = MqttClient::new(config, Rng::seed_from_u64(0), t0);
        let mut now = t0;
        // A well-behaved start so the fuzzer reaches the Ready state: CONNACK accepted.
        c.handle_connected(now);
        if input.first().is_some_and(|b| b & 1 == 1) {
            c.handle_input(now, &[0x20, 2, 0, 0]);
        }
        let mut rest = input.get(1..).unwrap_or_default();
        while let Some((&op, tail)) = rest.split_first() {
            let n = usize::from(op >> 2).min(tail.len());
            match op & 3 {
                0 => c.handle_input(now, &tail[..n]),
                1 => {
                    now += Duration::from_millis(u64::from(op) * 100);
                    c.handle_timeout(now);
                }
                2 => c.handle_closed(now),
                _ => c.handle_connected(now),
            }
            rest = &tail[if op & 3 == 0 { n } else { 0 }..];
            while let Some(out) = c.poll_transmit() {
                assert!(out.len() <= 64 * 1024);
            }
            let mut events = 0;
            while c.poll_event().is_some() {
                events += 1;
                assert!(events < 10_000, "event flood from one input");
            }
            if let Some(t) = c.poll_timeout() {
                assert!(t.at >= t0);
            }
        }
    });
}
