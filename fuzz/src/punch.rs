//! The UDP punch machine fed arbitrary datagrams and time: valid probes and ACKs of its
//! attempt (from a peer machine with the same key), tampered ones, and junk, from and to
//! arbitrary addresses. It never panics, never loops on transmit, never sends more probes
//! than its budget, and always reports exactly one outcome by the end of its budget.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bolero::check;
use p2pd_core::punch::{PunchConfig, UdpPunch, UdpPunchEvent};

const MAX_PACKETS: u32 = 20;
const INTERVAL: Duration = Duration::from_millis(10);
const LINGER: Duration = Duration::from_millis(100);

fn v4(d: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, d)), port)
}

fn pick(b: u8) -> SocketAddr {
    match b % 4 {
        0 => v4(1, 1000),
        1 => v4(2, 2000),
        2 => v4(2, 2001),
        _ => v4(b, u16::from(b)),
    }
}

fn config(t0: Instant, local: SocketAddr, remote: Vec<SocketAddr>) -> PunchConfig {
    PunchConfig {
        key: [3; 32],
        attempt: 9,
        locals: vec![local],
        candidates: remote,
        start: t0,
        interval: INTERVAL,
        max_packets: MAX_PACKETS,
        linger: LINGER,
    }
}

/// One valid probe and one valid ACK of the attempt, made by a peer machine.
fn valid_packets(t0: Instant) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut peer = UdpPunch::new(config(t0, v4(2, 2000), vec![v4(1, 1000)])).ok()?;
    peer.handle_timeout(t0);
    let probe = peer.poll_transmit()?.contents.to_vec();
    peer.handle_input(t0, v4(1, 1000), v4(2, 2000), &probe);
    let ack = peer.poll_transmit()?.contents.to_vec();
    Some((probe, ack))
}

#[test]
fn punch_arbitrary_datagrams() {
    check!()
        .with_type::<Vec<(u8, u8, u8, u8, Vec<u8>)>>()
        .for_each(|script| {
            let t0 = Instant::now();
            let Some((probe, ack)) = valid_packets(t0) else {
                panic!("a peer machine must produce a probe and an ACK");
            };
            let Ok(mut m) = UdpPunch::new(config(t0, v4(1, 1000), vec![v4(2, 2000), v4(2, 2001)]))
            else {
                panic!("valid config");
            };
            let mut now = t0;
            let mut probes = 0u32;
            let mut outcomes = 0;
            for (delay, src, dst, kind, junk) in script.iter().take(500) {
                now += Duration::from_millis(u64::from(*delay));
                let bytes = match kind % 5 {
                    0 => probe.clone(),
                    1 => ack.clone(),
                    2 => {
                        let mut t = ack.clone();
                        if let Some(b) = t.get_mut(usize::from(*delay) % ack.len().max(1)) {
                            *b ^= 1 | *kind;
                        }
                        t
                    }
                    _ => junk.clone(),
                };
                m.handle_input(now, pick(*src), pick(*dst), &bytes);
                m.handle_timeout(now);
                let mut drained = 0;
                while let Some(t) = m.poll_transmit() {
                    assert_eq!(t.contents.len(), probe.len());
                    drained += 1;
                    assert!(drained <= 1000, "transmit loop");
                }
                probes = m.probes_sent();
                while m.poll_event().is_some() {
                    outcomes += 1;
                }
                if let Some(t) = m.poll_timeout() {
                    assert!(
                        t.at + INTERVAL * MAX_PACKETS >= t0,
                        "deadline before the start"
                    );
                }
            }
            // Run the clock out: the machine must finish.
            for _ in 0..(MAX_PACKETS as usize + 5) {
                let Some(t) = m.poll_timeout() else { break };
                now = now.max(t.at);
                m.handle_timeout(now);
                while m.poll_transmit().is_some() {}
                while let Some(e) = m.poll_event() {
                    match e {
                        UdpPunchEvent::Failed(_) | UdpPunchEvent::Punched { .. } => outcomes += 1,
                    }
                }
            }
            assert!(m.probes_sent() <= MAX_PACKETS && probes <= MAX_PACKETS);
            assert_eq!(outcomes, 1, "exactly one outcome");
            assert!(m.is_done() && m.poll_timeout().is_none());
        });
}
