//! Wall time to move 10 MB through core's reliable stream over a clean simulated path (two
//! public hosts, 20 ms round trip), against a baseline of copying the same 10 MB once with
//! `memcpy` in the same run. The simulator has no bandwidth model, so the virtual-time
//! goodput printed once at the start is bound by window / RTT, not by a link rate.
//!
//! Run: `cargo bench -p p2pd-sim --bench stream -- --warm-up-time 1 --measurement-time 10`

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use p2pd_core::rng::Rng;
use p2pd_core::stream::{Config, Connection};
use p2pd_sim::{EMPTY_HASH, HostConfig, Network, Stop, StreamEndpoint, fnv1a};

const SIZE: usize = 10_000_000;

/// Sends `data` from one host to the other and half-closes both ways; returns the virtual
/// time until the receiver had every byte (checked against `hash`).
fn transfer(data: &[u8], hash: u64) -> Duration {
    let mut net = Network::new(1);
    let hosts = [
        net.add_host(HostConfig::internet()).unwrap(),
        net.add_host(HostConfig::internet()).unwrap(),
    ];
    let locals: Vec<SocketAddr> = hosts
        .iter()
        .map(|&h| {
            let ip = net.host_ip(h).unwrap();
            SocketAddr::new(ip, net.free_port(h, ip).unwrap())
        })
        .collect();
    let now = net.now();
    for i in 0..2 {
        let config = Config {
            connection_id: 9,
            ..Config::default()
        };
        let conn = Connection::new(config, now).unwrap();
        let mut e = StreamEndpoint::new(conn, locals[i], locals[1 - i], now);
        e.send(if i == 0 { data } else { &[] }, true, now);
        net.attach(hosts[i], e).unwrap();
    }
    let stop = net.run_until_with(now + Duration::from_secs(60), 10_000_000, |net| {
        net.endpoint::<StreamEndpoint>(hosts[1])
            .is_some_and(|e| e.received() == SIZE as u64)
    });
    assert_eq!(stop, Stop::Done);
    let rx = net.endpoint::<StreamEndpoint>(hosts[1]).unwrap();
    assert_eq!(rx.received_hash(), hash);
    net.elapsed()
}

fn stream(c: &mut Criterion) {
    let mut data = vec![0u8; SIZE];
    Rng::seed_from_u64(7).fill(&mut data);
    let hash = fnv1a(EMPTY_HASH, &data);
    let virtual_time = transfer(&data, hash);
    println!(
        "stream: 10 MB in {virtual_time:?} virtual time = {:.0} Mbit/s goodput (RTT-bound: \
         1 MiB window / 20 ms RTT ≈ 420 Mbit/s)",
        SIZE as f64 * 8.0 / virtual_time.as_secs_f64() / 1e6
    );

    let mut g = c.benchmark_group("stream");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.sample_size(10);
    let mut dst = vec![0u8; SIZE];
    g.bench_function("memcpy_10MB", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&data));
            black_box(&dst);
        })
    });
    g.bench_function("hash_10MB", |b| {
        b.iter(|| fnv1a(EMPTY_HASH, black_box(&data)))
    });
    g.bench_function("sim_clean_10MB", |b| {
        b.iter(|| transfer(black_box(&data), hash))
    });
    g.finish();
}

criterion_group!(benches, stream);
criterion_main!(benches);
