//! Wall time of a classification-sized scenario: ten NAT boxes, fifty Binding requests,
//! about a hundred datagrams, network built and run to idle.

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../tests/common/mod.rs"]
mod common;

fn sim(c: &mut Criterion) {
    let mut seed = 0u64;
    c.bench_function("sim/hundred_packets_build_and_run", |b| {
        b.iter(|| {
            seed += 1;
            common::hundred_packets(seed).stats().events
        })
    });
}

criterion_group!(benches, sim);
criterion_main!(benches);
