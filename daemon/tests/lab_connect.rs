//! `p2pd listen` and `p2pd connect` behind real Linux NATs (network namespaces +
//! nftables, see `lab/`), with mosquitto and coturn on the public side, run inside the
//! namespaces exactly as a user would: two nodes connect and move 10 MB each way intact
//! (SHA-256 compared) for cone × cone (punch), port-restricted × symmetric random
//! (birthday punch), symmetric × symmetric (relay), one side on the public segment
//! (direct and reverse), both on one LAN (local path), and IPv6 through firewalling
//! routers. Needs root and the lab's packages; skips otherwise (fails under
//! `P2PD_LAB_REQUIRED=1`, as in CI).
//!
//! `lab_connect_times` (ignored: run it by name) measures the time to connect per
//! strategy with 20 ms one-way delay between the peers (10 ms on each router's uplink);
//! the figures are in BENCHMARKS.md.

mod lab_node;
use lab_node::{Home, payload, spawn, wait_event};

use std::time::{Duration, Instant};

use p2pd_lab::{
    Lab, LinkParams, MQTT_PORT, PortAlloc, RouterKind, SERVER_IP1, SERVER_IP6_1, STUN_PORT,
    SymmetricPorts, TURN_PASSWORD, TURN_USER,
};
use sha2::{Digest, Sha256};

/// Bytes each way.
const TEN_MB: usize = 10 * 1024 * 1024;
/// Hang guard for one whole exchange (not a timing assertion).
const LIMIT: Duration = Duration::from_secs(120);

/// Which servers the nodes are given.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
    /// Both: STUN servers of both families, so addresses carry both routes.
    Both,
}

fn node_flags(home: &Home, family: Family) -> Vec<String> {
    let (stun, turn) = match family {
        Family::V4 | Family::Both => (
            format!("{SERVER_IP1}:{STUN_PORT}"),
            format!("{TURN_USER}:{TURN_PASSWORD}@{SERVER_IP1}:{STUN_PORT}"),
        ),
        Family::V6 => (
            format!("[{SERVER_IP6_1}]:{STUN_PORT}"),
            format!("{TURN_USER}:{TURN_PASSWORD}@[{SERVER_IP6_1}]:{STUN_PORT}"),
        ),
    };
    let mut flags = Vec::new();
    if family == Family::Both {
        flags.extend(["--stun".into(), format!("[{SERVER_IP6_1}]:{STUN_PORT}")]);
    }
    flags.extend([
        "--stun".into(),
        stun,
        "--mqtt".into(),
        format!("{SERVER_IP1}:{MQTT_PORT}"),
        "--turn".into(),
        turn,
        "--home".into(),
        home.0.to_string_lossy().into_owned(),
        "--json".into(),
        // The negotiation's steps on stderr: a failure shows where it stopped.
        "-v".into(),
    ]);
    flags
}

/// What one exchange showed.
struct Outcome {
    strategy: String,
    connect_ms: u64,
    remote: String,
}

/// Runs `p2pd listen` on `listener` and `p2pd connect` on `connector`, moves `len`
/// bytes each way, checks both SHA-256s and both exits; returns the strategy used.
fn exchange(
    lab: &Lab,
    listener: usize,
    connector: usize,
    family: Family,
    strategies: Option<&str>,
    len: usize,
) -> Outcome {
    let (hl, hc) = (Home::new("listen"), Home::new("connect"));
    let down = payload(7, len);
    let up = payload(8, len);
    let (want_down, want_up): ([u8; 32], [u8; 32]) =
        (Sha256::digest(&down).into(), Sha256::digest(&up).into());
    let mut args = vec!["listen".to_string()];
    args.extend(node_flags(&hl, family));
    let l = spawn(lab.host(listener), args, down, "listen");
    let v = wait_event(&l.stderr, "listening", Duration::from_secs(30));
    let addr = v["addr"].as_str().unwrap().to_string();
    let mut args = vec!["connect".to_string(), addr];
    if let Some(s) = strategies {
        args.extend(["--strategies".to_string(), s.to_string()]);
    }
    args.extend(node_flags(&hc, family));
    let c = spawn(lab.host(connector), args, up, "connect");
    let cv = wait_event(&c.stderr, "connected", LIMIT);
    let moving = Instant::now();
    let lv = wait_event(&l.stderr, "connected", LIMIT);
    assert_eq!(
        cv["strategy"], lv["strategy"],
        "both ends agree on the strategy"
    );
    let (cs, cn, ch) = c.finish(LIMIT);
    let (ls, ln, lh) = l.finish(LIMIT);
    assert!(cs.success(), "connect exited with {cs}");
    assert!(ls.success(), "listen exited with {ls}");
    assert_eq!(cn, len, "connector received {cn} bytes");
    assert_eq!(ln, len, "listener received {ln} bytes");
    assert!(ch == want_down, "connector's SHA-256 differs");
    assert!(lh == want_up, "listener's SHA-256 differs");
    let secs = moving.elapsed().as_secs_f64();
    eprintln!(
        "{} B each way by {} in {secs:.2} s (≈ {:.1} Mbit/s per direction, debug build)",
        len,
        cv["strategy"],
        len as f64 * 8.0 / secs / 1e6
    );
    Outcome {
        strategy: cv["strategy"].as_str().unwrap().to_string(),
        connect_ms: cv["connect_ms"].as_u64().unwrap_or(0),
        remote: cv["remote"].as_str().unwrap_or("").to_string(),
    }
}

fn lab(a: RouterKind, b: RouterKind) -> Lab {
    let lab = Lab::two_lans(a, b).expect("build lab");
    lab.start_servers().expect("coturn and mosquitto");
    lab
}

const CONE: RouterKind = RouterKind::PortRestrictedCone(PortAlloc::Preserve);
const FULL_CONE: RouterKind = RouterKind::FullCone(PortAlloc::Preserve);
const SYM_RANDOM: RouterKind = RouterKind::Symmetric(SymmetricPorts::Random);

#[test]
fn cone_cone_punches() {
    p2pd_lab::require!();
    let lab = lab(CONE, FULL_CONE);
    // Every strategy allowed: a port-keeping NAT on both sides makes TCP punching the
    // first that can work.
    let o = exchange(&lab, 1, 0, Family::V4, None, TEN_MB);
    assert_eq!(o.strategy, "tcp_punch");
    // UDP punching, on its own.
    let o = exchange(&lab, 1, 0, Family::V4, Some("udp_punch"), TEN_MB);
    assert_eq!(o.strategy, "udp_punch");
}

#[test]
fn port_restricted_symmetric_random_punches_udp() {
    p2pd_lab::require!();
    let lab = lab(CONE, SYM_RANDOM);
    let o = exchange(&lab, 1, 0, Family::V4, None, TEN_MB);
    assert_eq!(o.strategy, "udp_punch");
}

#[test]
fn symmetric_symmetric_relays() {
    p2pd_lab::require!();
    let lab = lab(SYM_RANDOM, SYM_RANDOM);
    let o = exchange(&lab, 1, 0, Family::V4, None, TEN_MB);
    assert_eq!(o.strategy, "relay");
}

#[test]
fn udp_blocked_side_relays_over_tcp() {
    p2pd_lab::require!();
    // Host 0's router drops all UDP from its LAN: the node advertises itself `blocked`
    // and reaches coturn over TCP; the peer relays over UDP.
    let lab = lab(RouterKind::UdpBlocked, CONE);
    let o = exchange(&lab, 1, 0, Family::V4, None, TEN_MB);
    assert_eq!(o.strategy, "relay");
}

#[test]
fn public_side_direct_and_reverse() {
    p2pd_lab::require!();
    // Host 0 sits behind a plain router: on the public segment, no NAT.
    let lab = lab(RouterKind::Open, CONE);
    let o = exchange(&lab, 0, 1, Family::V4, None, TEN_MB);
    assert_eq!(o.strategy, "direct", "NATed node to a public one");
    let o = exchange(&lab, 1, 0, Family::V4, None, TEN_MB);
    assert_eq!(o.strategy, "reverse", "public node to a NATed one");
}

#[test]
fn one_lan_takes_the_local_path() {
    p2pd_lab::require!();
    let lab = Lab::one_lan(CONE).expect("build lab");
    lab.start_servers().expect("coturn and mosquitto");
    let o = exchange(&lab, 1, 0, Family::V4, None, TEN_MB);
    assert_eq!(o.strategy, "direct");
    let lan = lab.host(1).addr().to_string();
    assert!(
        o.remote.starts_with(&format!("{lan}:")),
        "the local path goes to the peer's LAN address {lan}, not {}",
        o.remote
    );
}

#[test]
fn multihomed_node_uses_the_shared_lan() {
    p2pd_lab::require!();
    // Host 0 has eth0 behind router 0 and eth1 on router 1's LAN, where host 1 is: its
    // address lists both interfaces, and the path on the shared LAN is found.
    let lab = Lab::multihomed(SYM_RANDOM, CONE).expect("build lab");
    lab.start_servers().expect("coturn and mosquitto");
    let o = exchange(&lab, 1, 0, Family::V4, None, TEN_MB);
    assert_eq!(o.strategy, "direct");
    let lan = lab.host(1).addr().to_string();
    assert!(o.remote.starts_with(&format!("{lan}:")), "{}", o.remote);
}

#[test]
fn double_nat_connects() {
    p2pd_lab::require!();
    // Host 0 behind a home router behind a carrier-grade NAT, both port-preserving;
    // host 1 behind a home router. Seen from outside the pair behaves as one
    // port-keeping cone, so TCP punching works through both layers.
    let lab = Lab::double_nat(CONE, CONE).expect("build lab");
    lab.start_servers().expect("coturn and mosquitto");
    let o = exchange(&lab, 1, 0, Family::V4, None, TEN_MB);
    assert_eq!(o.strategy, "tcp_punch");
}

#[test]
fn ipv6_through_firewalls() {
    p2pd_lab::require!();
    let lab = Lab::ipv6(CONE).expect("build lab");
    lab.start_servers().expect("coturn and mosquitto");
    // Only an IPv6 STUN server: the nodes have IPv6 routes only, behind stateful
    // firewalls that drop unsolicited inbound connections.
    let o = exchange(&lab, 1, 0, Family::V6, None, TEN_MB);
    assert!(o.remote.starts_with('['), "an IPv6 path: {}", o.remote);
    // Stateful firewalls drop unsolicited connections (no direct, no reverse) but keep
    // ports: TCP simultaneous open is the oracle's first choice.
    assert_eq!(o.strategy, "tcp_punch");
    // Dual stack (IPv4 behind NAT, IPv6 behind the firewall): IPv6 is preferred.
    let o = exchange(&lab, 1, 0, Family::Both, None, TEN_MB);
    assert!(o.remote.starts_with('['), "IPv6 preferred: {}", o.remote);
}

/// A timing row: name, router kinds, listener and connector hosts, strategies.
type TimingCase = (
    &'static str,
    RouterKind,
    RouterKind,
    usize,
    usize,
    Option<&'static str>,
);

/// Time to connect per strategy with 20 ms one-way delay between the peers.
#[test]
#[ignore = "a measurement: run by name (needs root)"]
fn lab_connect_times() {
    p2pd_lab::require!();
    let cases: [TimingCase; 6] = [
        ("direct", RouterKind::Open, CONE, 0, 1, None),
        ("reverse", RouterKind::Open, CONE, 1, 0, None),
        ("tcp_punch", CONE, CONE, 1, 0, None),
        ("udp_punch", CONE, CONE, 1, 0, Some("udp_punch")),
        ("udp_punch (birthday)", CONE, SYM_RANDOM, 1, 0, None),
        ("relay", SYM_RANDOM, SYM_RANDOM, 1, 0, None),
    ];
    let mut rows = Vec::new();
    for (name, a, b, listener, connector, strategies) in cases {
        let lab = lab(a, b);
        for i in 0..2 {
            lab.set_link(i, LinkParams::delay(Duration::from_millis(10)))
                .expect("delay");
        }
        let mut times = Vec::new();
        for _ in 0..3 {
            let o = exchange(&lab, listener, connector, Family::V4, strategies, 64 * 1024);
            assert!(name.starts_with(&o.strategy), "{name}: got {}", o.strategy);
            times.push(o.connect_ms);
        }
        times.sort_unstable();
        rows.push(format!("| {name} | {:?} | {} |", times, times[1]));
    }
    println!("| strategy | connect ms (3 runs) | median |");
    println!("|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
