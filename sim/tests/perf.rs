//! How fast the simulator runs a classification-sized scenario (printed, not asserted: wall
//! time depends on the machine; `cargo bench -p p2pd-sim` measures it properly).

mod common;

use std::time::Instant;

use p2pd_sim::DropReason;

#[test]
fn hundred_packet_scenario_rate() {
    const RUNS: u32 = 200;
    let first = common::hundred_packets(1);
    let s = *first.stats();
    // 50 requests, 45 of which get past their router (not the blocked one) and are
    // answered. Responses to CHANGE-REQUEST are filtered: both of them by each of the six
    // address-and-port-dependent filters, the changed-IP one by the address-dependent one.
    assert_eq!(s.sent, 95, "{s}");
    assert_eq!(s.dropped.get(DropReason::BlockedUdp), 5);
    assert_eq!(s.dropped.get(DropReason::Filtered), 6 * 2 + 1);
    assert_eq!(s.sent, s.delivered + s.dropped.total(), "{s}");
    let start = Instant::now();
    let mut events = 0;
    for seed in 0..RUNS {
        events += common::hundred_packets(u64::from(seed)).stats().events;
    }
    let per_run = start.elapsed() / RUNS;
    println!(
        "{} datagrams sent, {} delivered, {} events per run: {per_run:?} wall per run (build + run), {:.0} events/s",
        s.sent,
        s.delivered,
        s.events,
        events as f64 / start.elapsed().as_secs_f64()
    );
}
