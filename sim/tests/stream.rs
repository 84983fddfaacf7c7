//! Core's reliable stream over the simulator: bulk transfers both ways over clean, lossy,
//! jittery/reordering/duplicating paths and through two NATs, half-close, and a peer that
//! vanishes.
//!
//! Sizes: 10 MB each way in release builds, 2 MB in debug builds (`cfg!(debug_assertions)`)
//! so `cargo test` stays fast; `cargo test --release -p p2pd-sim --test stream --
//! --nocapture` prints virtual time and goodput for the full size.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use p2pd_core::nat::{DeltaKind, NatType};
use p2pd_core::rng::Rng;
use p2pd_core::stream::{Config, Connection, Event, FailReason};
use p2pd_sim::{
    EMPTY_HASH, HostConfig, HostId, LinkConfig, Network, RouterConfig, Stop, StreamEndpoint, fnv1a,
};

const CONNECTION_ID: u32 = 0x5eed_0001;

fn size() -> usize {
    if cfg!(debug_assertions) {
        2_000_000
    } else {
        10_000_000
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Clean,
    Lossy,
    Jittery,
    Nat,
}

struct Setup {
    net: Network,
    hosts: [HostId; 2],
    data: [Vec<u8>; 2],
    start: Instant,
}

fn config() -> Config {
    Config {
        connection_id: CONNECTION_ID,
        ..Config::default()
    }
}

fn payload(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill(&mut v);
    v
}

/// Two hosts 5 ms from the internet each (20 ms round trip), joined by one stream
/// connection on `path`; host i is about to send `n[i]` random bytes and then half-close if
/// `finish[i]`.
fn setup(seed: u64, path: Path, n: [usize; 2], finish: [bool; 2]) -> Setup {
    let mut net = Network::new(seed);
    let base = LinkConfig::default();
    let links = match path {
        // 10 % of datagrams lost each way end to end (on one host's link).
        Path::Lossy => [LinkConfig { loss: 0.10, ..base }, base],
        Path::Jittery => {
            let l = LinkConfig {
                jitter: Duration::from_millis(10),
                reorder: 0.05,
                duplicate: 0.05,
                ..base
            };
            [l, l]
        }
        Path::Clean | Path::Nat => [base, base],
    };
    let mut hosts = Vec::new();
    let mut routers = Vec::new();
    for link in links {
        let h = if path == Path::Nat {
            let r = net
                .add_router(RouterConfig::for_type(
                    NatType::PortRestrictedCone,
                    DeltaKind::Equal,
                    0,
                ))
                .unwrap();
            routers.push(r);
            net.add_host(HostConfig::behind(r).with_link(link)).unwrap()
        } else {
            net.add_host(HostConfig::internet().with_link(link))
                .unwrap()
        };
        hosts.push(h);
    }
    let locals: Vec<SocketAddr> = hosts
        .iter()
        .map(|&h| {
            let ip = net.host_ip(h).unwrap();
            SocketAddr::new(ip, net.free_port(h, ip).unwrap())
        })
        .collect();
    // Behind port-preserving NATs the public address is the router's IP with the local
    // port (what STUN would have told each side; signalling swaps them).
    let publics: Vec<SocketAddr> = (0..2)
        .map(|i| match routers.get(i) {
            Some(&r) => SocketAddr::new(net.router_public_ip(r).unwrap(), locals[i].port()),
            None => locals[i],
        })
        .collect();
    let mut rng = Rng::seed_from_u64(seed ^ 0xda7a);
    let data = [payload(&mut rng, n[0]), payload(&mut rng, n[1])];
    let start = net.now();
    for i in 0..2 {
        let conn = Connection::new(config(), start).unwrap();
        let mut e = StreamEndpoint::new(conn, locals[i], publics[1 - i], start);
        e.send(&data[i], finish[i], start);
        net.attach(hosts[i], e).unwrap();
    }
    Setup {
        net,
        hosts: [hosts[0], hosts[1]],
        data,
        start,
    }
}

fn ep(net: &Network, h: HostId) -> &StreamEndpoint {
    net.endpoint::<StreamEndpoint>(h).unwrap()
}

#[derive(Debug, PartialEq)]
struct Outcome {
    /// Virtual time until each side had read everything the other sent.
    done: [Duration; 2],
    /// Virtual time until both sides were closed.
    closed: Duration,
    trace: u64,
}

/// Runs a transfer to completion and checks every byte arrived intact, in order.
fn transfer(seed: u64, path: Path, n: usize) -> Outcome {
    let Setup {
        mut net,
        hosts,
        data,
        start,
    } = setup(seed, path, [n, n], [true, true]);
    let deadline = start + Duration::from_secs(600);
    let stop = net.run_until_with(deadline, 50_000_000, |net| {
        hosts.iter().all(|&h| ep(net, h).connection().is_closed())
    });
    for (i, &h) in hosts.iter().enumerate() {
        let e = ep(&net, h);
        assert_eq!(stop, Stop::Done, "{path:?} seed {seed}: {:?}", e.events());
        assert_eq!(e.received(), n as u64, "{path:?}");
        assert_eq!(
            e.received_hash(),
            fnv1a(EMPTY_HASH, &data[1 - i]),
            "{path:?}: corrupted"
        );
    }
    let done = [1, 0].map(|i| {
        let e = ep(&net, hosts[i]);
        e.event_time(Event::PeerFinished).unwrap() - start
    });
    let closed = net.elapsed();
    let [sa, sb] = hosts.map(|h| ep(&net, h).connection().stats());
    let mbps = |d: Duration| n as f64 * 8.0 / d.as_secs_f64() / 1e6;
    println!(
        "{path:?} seed {seed}: {n} B each way; a→b done at {:?} ({:.1} Mbit/s), b→a at {:?} \
         ({:.1} Mbit/s), both closed at {closed:?}; a {sa:?}; b {sb:?}; net {}",
        done[0],
        mbps(done[0]),
        done[1],
        mbps(done[1]),
        net.stats()
    );
    Outcome {
        done,
        closed,
        trace: net.trace_hash(),
    }
}

#[test]
fn clean_path() {
    let o = transfer(1, Path::Clean, size());
    // RTT-bound: 1 MiB window per 20 ms round trip ≈ 400 Mbit/s ceiling; slow start first.
    assert!(o.done[0] < Duration::from_secs(2), "{o:?}");
}

#[test]
fn ten_percent_loss() {
    let o = transfer(2, Path::Lossy, size());
    assert!(o.done[0] < Duration::from_secs(300), "{o:?}");
}

#[test]
fn jitter_reordering_duplication() {
    let o = transfer(3, Path::Jittery, size());
    assert!(o.done[0] < Duration::from_secs(60), "{o:?}");
}

#[test]
fn behind_two_port_restricted_nats() {
    let o = transfer(4, Path::Nat, size());
    assert!(o.done[0] < Duration::from_secs(10), "{o:?}");
}

#[test]
fn deterministic_per_seed() {
    let n = 300_000;
    let a = transfer(5, Path::Jittery, n);
    let b = transfer(5, Path::Jittery, n);
    assert_eq!(a, b);
    let c = transfer(6, Path::Jittery, n);
    assert_ne!(a.trace, c.trace);
}

#[test]
fn half_close_then_reply() {
    let Setup {
        mut net,
        hosts: [a, b],
        data,
        start,
    } = setup(7, Path::Clean, [300_000, 0], [true, false]);
    let deadline = start + Duration::from_secs(60);
    let stop = net.run_until_with(deadline, 10_000_000, |net| {
        ep(net, b).connection().is_peer_finished()
    });
    assert_eq!(stop, Stop::Done);
    assert_eq!(ep(&net, b).received_hash(), fnv1a(EMPTY_HASH, &data[0]));
    // a's half is done, b's is open: nothing is closed, a has not seen a FIN.
    assert!(!ep(&net, a).connection().is_closed());
    assert!(!ep(&net, a).connection().is_peer_finished());
    // b answers on its still-open half, then finishes too.
    let reply = vec![0x22u8; 500_000];
    net.with_endpoint::<StreamEndpoint, _>(b, |e, now| e.send(&reply, true, now));
    let stop = net.run_until_with(deadline, 10_000_000, |net| {
        [a, b].iter().all(|&h| ep(net, h).connection().is_closed())
    });
    assert_eq!(stop, Stop::Done);
    assert_eq!(ep(&net, a).received_hash(), fnv1a(EMPTY_HASH, &reply));
    let (ea, eb) = (ep(&net, a), ep(&net, b));
    let b_fin = eb.event_time(Event::PeerFinished).unwrap();
    let a_fin = ea.event_time(Event::PeerFinished).unwrap();
    assert!(b_fin < a_fin);
    assert!(ea.event_time(Event::Closed).is_some() && eb.event_time(Event::Closed).is_some());
    assert!(
        ea.events()
            .iter()
            .all(|(_, e)| !matches!(e, Event::Failed { .. }))
    );
}

#[test]
fn peer_vanishes_mid_transfer() {
    let Setup {
        mut net,
        hosts: [a, b],
        start,
        ..
    } = setup(8, Path::Clean, [size(), size()], [true, true]);
    net.run_until(start + Duration::from_millis(100), 10_000_000);
    assert!(ep(&net, b).received() > 0, "transfer under way");
    net.with_endpoint::<StreamEndpoint, _>(b, |e, _| e.vanish());
    let vanished = net.now();
    let stop = net.run_until_with(vanished + Duration::from_secs(120), 10_000_000, |net| {
        ep(net, a).connection().is_failed()
    });
    assert_eq!(stop, Stop::Done);
    let (t, e) = *ep(&net, a).events().last().unwrap();
    let after = t - vanished;
    println!("peer vanished: a failed {after:?} later with {e:?}");
    // The idle timeout (30 s) bounds it; the retransmission-count limit would at ~43 s.
    assert!(after <= Duration::from_secs(31), "{after:?}");
    assert!(matches!(
        e,
        Event::Failed {
            reason: FailReason::IdleTimeout(_) | FailReason::Unacknowledged { .. }
        }
    ));
    // Nothing more wakes a after it failed.
    assert_eq!(net.run_for(Duration::from_secs(60), 1_000), Stop::Idle);
}
