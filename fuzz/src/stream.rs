//! The reliable stream (`p2pd_core::stream`): packet parsing on arbitrary bytes, a
//! connection fed arbitrary datagrams, and two connections over a fuzzed lossy path.

use std::time::{Duration, Instant};

use bolero::check;
use p2pd_core::stream::packet::{Packet, VERSION};
use p2pd_core::stream::{Config, Connection};

const TEST_TIME: Duration = Duration::from_secs(2);
const ID: u32 = 0x0102_0304;

/// Arbitrary bytes: `Packet::parse` never panics, and what parses re-emits identically.
#[test]
fn stream_packet_parse() {
    check!().with_test_time(TEST_TIME).for_each(|bytes: &[u8]| {
        if let Ok(p) = Packet::parse(bytes) {
            let mut out = vec![0u8; bytes.len()];
            let n = p.repr().emit(p.payload(), &mut out).expect("fits");
            assert_eq!(&out[..n], bytes);
            let _ = (p.fin(), p.ping(), p.sacks().count());
        }
    });
}

fn small_config() -> Config {
    Config {
        connection_id: ID,
        send_buffer: 8192,
        recv_buffer: 8192,
        ..Config::default()
    }
}

/// A connection with data to send, fed arbitrary datagrams (most made to pass the version
/// and connection-id checks so the state machine sees them) at arbitrary times: never
/// panics, stays within its memory bound, and never asks to be woken in the past.
#[test]
fn stream_connection_arbitrary_datagrams() {
    check!()
        .with_test_time(TEST_TIME)
        .with_type::<Vec<(u16, bool, Vec<u8>)>>()
        .for_each(|script| {
            let start = Instant::now();
            let mut now = start;
            let mut c = Connection::new(small_config(), now).expect("config");
            let mut buf = [0u8; 1500];
            let mut sink = [0u8; 4096];
            c.write(&[0x5a; 20_000]);
            for (dt, fix, bytes) in script {
                now += Duration::from_millis(u64::from(*dt));
                let mut d = bytes.clone();
                if *fix && d.len() >= 6 {
                    d[0] = VERSION;
                    d[1] &= 0x03;
                    d[2..6].copy_from_slice(&ID.to_be_bytes());
                }
                let _ = c.handle_input(now, &d);
                if let Some(t) = c.poll_timeout() {
                    if t.at <= now {
                        c.handle_timeout(now);
                    }
                }
                let mut sent = 0;
                while c.poll_transmit(now, &mut buf).is_some() {
                    sent += 1;
                    assert!(sent < 10_000, "transmit loop");
                }
                while c.poll_event().is_some() {}
                c.read(&mut sink);
                assert!(c.memory() <= c.memory_bound());
                if let Some(t) = c.poll_timeout() {
                    assert!(t.at >= start);
                }
            }
        });
}

/// Two connections over a path whose losses and duplications the fuzzer picks: whatever
/// arrives is a prefix of what was sent, in order, and nothing panics.
#[test]
fn stream_pair_fuzzed_path() {
    check!()
        .with_test_time(TEST_TIME)
        .with_type::<(Vec<u8>, Vec<u8>)>()
        .for_each(|(fate, data)| {
            let start = Instant::now();
            let mut now = start;
            let mut a = Connection::new(small_config(), now).expect("config");
            let mut b = Connection::new(small_config(), now).expect("config");
            let mut written = a.write(data);
            let mut got = Vec::new();
            let mut buf = [0u8; 1500];
            let mut sink = [0u8; 4096];
            let mut fates = fate.iter().copied().cycle();
            for _ in 0..400 {
                let mut inflight = Vec::new();
                while let Some(n) = a.poll_transmit(now, &mut buf) {
                    inflight.push((true, buf[..n].to_vec()));
                }
                while let Some(n) = b.poll_transmit(now, &mut buf) {
                    inflight.push((false, buf[..n].to_vec()));
                }
                now += Duration::from_millis(10);
                for (to_b, d) in inflight {
                    // 0: lost, 1: duplicated, otherwise delivered once.
                    let copies = match fates.next().map(|f| f % 8) {
                        Some(0) => 0,
                        Some(1) => 2,
                        _ => 1,
                    };
                    for _ in 0..copies {
                        let dst = if to_b { &mut b } else { &mut a };
                        let _ = dst.handle_input(now, &d);
                    }
                }
                for c in [&mut a, &mut b] {
                    if c.poll_timeout().is_some_and(|t| t.at <= now) {
                        c.handle_timeout(now);
                    }
                    while c.poll_event().is_some() {}
                }
                loop {
                    let n = b.read(&mut sink);
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&sink[..n]);
                }
                written += a.write(&data[written..]);
                if written == data.len() {
                    a.shutdown_write();
                }
                assert!(got.len() <= written && got[..] == data[..got.len()]);
            }
        });
}
