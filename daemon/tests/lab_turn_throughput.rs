//! Relay throughput of coturn as its own client, `turnutils_uclient`, measures it: two
//! clients on one LAN host behind a NAT talk to each other through two allocations
//! (client → relay → relay → client), the same path as p2pd's two-host 10 MB stream test
//! in `lab_turn.rs`. Ignored by default (a measurement, not a check); run with
//! `cargo test -p p2pd --test lab_turn_throughput -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use p2pd_lab::prereq::ALL_TOOLS;
use p2pd_lab::{Lab, RouterKind, SERVER_IP1, TURN_PASSWORD, TURN_USER};

/// Parses a `name=NUMBER` or `name ~ NUMBER` field out of uclient's summary line.
fn field(text: &str, name: &str) -> Option<f64> {
    let at = text.rfind(name)? + name.len();
    let rest = text[at..].trim_start_matches([' ', '=', '~']);
    let num: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    num.parse().ok()
}

#[test]
#[ignore = "a measurement for BENCHMARKS.md; run with --ignored"]
fn turnutils_uclient_relay_throughput() {
    p2pd_lab::require!(ALL_TOOLS);
    let lab = Lab::one_lan(RouterKind::HOME).expect("build lab");
    lab.start_coturn().expect("coturn");
    for (transport, flags) in [("udp", &[][..]), ("tcp", &["-t"][..])] {
        let messages = "10000";
        let mut argv = vec![
            "turnutils_uclient",
            "-u",
            TURN_USER,
            "-w",
            TURN_PASSWORD,
            "-y",
            "-m",
            "2",
            "-n",
            messages,
            "-l",
            "1000",
            "-z",
            "0",
        ];
        argv.extend_from_slice(flags);
        let server = SERVER_IP1.to_string();
        argv.push(&server);
        let start = Instant::now();
        let out = lab
            .host(0)
            .run(&argv, Duration::from_secs(120))
            .expect("uclient");
        let wall = start.elapsed();
        let text = out.combined();
        let sent = field(&text, "tot_send_bytes").unwrap_or(0.0);
        let recv = field(&text, "tot_recv_bytes").unwrap_or(0.0);
        let lost = field(&text, "Total lost packets").unwrap_or(f64::NAN);
        let time = field(&text, "Total transmit time is").unwrap_or(f64::NAN);
        eprintln!(
            "uclient over {transport}: sent {sent} B, received {recv} B, lost {lost} packets, transmit time {time} s, wall {wall:?}; {:.1} Mbit/s received per client pair",
            recv * 8.0 / wall.as_secs_f64() / 1e6
        );
        assert!(recv > 0.0, "uclient moved nothing:\n{text}");
    }
}
