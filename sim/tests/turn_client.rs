//! Core's TURN client against core's TURN server in the simulator: two hosts behind
//! symmetric random-port NATs allocate, bind channels to each other and exchange data
//! over two virtual hours, which only works if allocations, permissions and channels are
//! all refreshed on time; then they close. Deterministic per seed.

use std::net::SocketAddr;
use std::time::Duration;

use p2pd_core::nat::{DeltaKind, NatType};
use p2pd_core::rng::Rng;
use p2pd_core::turn::{
    TurnClient, TurnClientConfig, TurnClientEvent, TurnClientStats, TurnServerConfig,
};
use p2pd_sim::{HostConfig, HostId, MachineEndpoint, Network, RouterConfig};

const SERVER: &str = "203.0.113.10:3478";
const REALM: &str = "sim.test";
/// When (minutes after the channels are bound) each side sends a message.
const SEND_AT_MINUTES: [u64; 6] = [0, 4, 6, 11, 31, 119];

/// The client as a simulated host's application, keeping its events.
type ClientEndpoint = MachineEndpoint<TurnClient>;

struct Outcome {
    events: [Vec<TurnClientEvent>; 2],
    stats: [TurnClientStats; 2],
    relays: [SocketAddr; 2],
    live_allocations_before_close: usize,
    live_allocations_after_close: usize,
    trace: u64,
}

fn endpoint(net: &Network, host: HostId) -> &ClientEndpoint {
    net.endpoint::<ClientEndpoint>(host)
        .expect("client endpoint")
}

fn relayed(events: &[TurnClientEvent]) -> Option<SocketAddr> {
    events.iter().find_map(|e| match e {
        TurnClientEvent::Allocated { relayed, .. } => Some(*relayed),
        _ => None,
    })
}

fn run(seed: u64) -> Outcome {
    let mut net = Network::new(seed);
    net.record_trace(100_000);
    let users = [("alice", "a-pass"), ("bob", "b-pass")];
    let server_addr: SocketAddr = SERVER.parse().unwrap();
    let mut cfg = TurnServerConfig::new(
        server_addr,
        REALM,
        users
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect(),
    );
    cfg.relay_ports = (40000, 40999);
    let turn = net.add_turn_server(cfg, seed).unwrap();
    let mut hosts = Vec::new();
    for (i, (user, pass)) in users.into_iter().enumerate() {
        let nat = net
            .add_router(RouterConfig::for_type(
                NatType::Symmetric,
                DeltaKind::Random,
                0,
            ))
            .unwrap();
        let host = net.add_host(HostConfig::behind(nat)).unwrap();
        let ip = net.host_ip(host).unwrap();
        let local = SocketAddr::new(ip, net.free_port(host, ip).unwrap());
        let config = TurnClientConfig::udp(server_addr, local, user, pass);
        let client = TurnClient::new(config, Rng::seed_from_u64(seed * 10 + i as u64));
        net.attach(host, ClientEndpoint::new(client)).unwrap();
        hosts.push(host);
    }
    for &h in &hosts {
        net.with_endpoint::<ClientEndpoint, _>(h, |e, now| e.machine_mut().allocate(now))
            .unwrap()
            .unwrap();
    }
    net.run_for(Duration::from_secs(1), 10_000);
    let relays = [0, 1]
        .map(|i| relayed(endpoint(&net, hosts[i]).events()).expect("allocated within a second"));
    for i in 0..2 {
        let peer = relays[1 - i];
        net.with_endpoint::<ClientEndpoint, _>(hosts[i], |e, now| {
            e.machine_mut().bind_channel(now, peer)
        })
        .unwrap()
        .unwrap();
    }
    net.run_for(Duration::from_secs(1), 10_000);
    let start = net.now();
    for (n, minutes) in SEND_AT_MINUTES.into_iter().enumerate() {
        let at = start + Duration::from_secs(60 * minutes);
        net.run_until(at, 1_000_000);
        for i in 0..2 {
            let peer = relays[1 - i];
            let msg = format!("{} #{n}", users[i].0).into_bytes();
            let sent = net
                .with_endpoint::<ClientEndpoint, _>(hosts[i], |e, now| {
                    e.machine_mut().send_to(now, peer, &msg)
                })
                .unwrap();
            if let Err(e) = sent {
                let events = &endpoint(&net, hosts[i]).events();
                panic!("{} at minute {minutes}: {e}; events {events:?}", users[i].0);
            }
        }
    }
    net.run_for(Duration::from_secs(1), 10_000);
    let server = net.turn_server(turn).unwrap();
    let live_allocations_before_close = server.allocation_count();
    for &h in &hosts {
        net.with_endpoint::<ClientEndpoint, _>(h, |e, now| e.machine_mut().close(now))
            .unwrap();
    }
    net.run_for(Duration::from_secs(1), 10_000);
    let live_allocations_after_close = net.turn_server(turn).unwrap().allocation_count();
    Outcome {
        events: [0, 1].map(|i| endpoint(&net, hosts[i]).events().to_vec()),
        stats: [0, 1].map(|i| endpoint(&net, hosts[i]).machine().stats()),
        relays,
        live_allocations_before_close,
        live_allocations_after_close,
        trace: net.trace_hash(),
    }
}

#[test]
fn two_hours_of_channel_data_through_core_turn_server_with_refreshes() {
    let o = run(5);
    let names = ["alice", "bob"];
    for i in 0..2 {
        let events = &o.events[i];
        let data: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                TurnClientEvent::Data { peer, bytes } => {
                    assert_eq!(*peer, o.relays[1 - i]);
                    Some(String::from_utf8_lossy(bytes).into_owned())
                }
                _ => None,
            })
            .collect();
        let want: Vec<String> = (0..SEND_AT_MINUTES.len())
            .map(|n| format!("{} #{n}", names[1 - i]))
            .collect();
        assert_eq!(data, want, "{} got every message, in order", names[i]);
        assert!(
            !events.iter().any(|e| matches!(
                e,
                TurnClientEvent::Error(_)
                    | TurnClientEvent::ServerUnreachable { .. }
                    | TurnClientEvent::Expired
            )),
            "{events:?}"
        );
        let refreshes = events
            .iter()
            .filter(|e| matches!(e, TurnClientEvent::Refreshed { .. }))
            .count();
        // 600 s allocations refreshed every 540 s for two hours.
        assert!(refreshes >= 13, "{refreshes} refreshes");
        assert_eq!(events.last(), Some(&TurnClientEvent::Closed));
        let s = o.stats[i];
        assert_eq!(s.channel_data_sent, SEND_AT_MINUTES.len() as u64);
        assert_eq!(s.channel_data_received, SEND_AT_MINUTES.len() as u64);
        assert_eq!(s.send_indications, 0);
    }
    assert_eq!(o.live_allocations_before_close, 2);
    assert_eq!(o.live_allocations_after_close, 0, "close released both");
}

#[test]
fn the_client_scenario_is_deterministic_per_seed() {
    for seed in [1, 2] {
        let (x, y) = (run(seed), run(seed));
        assert_eq!(x.trace, y.trace, "seed {seed}");
        assert_eq!(x.events, y.events, "seed {seed}");
    }
}
