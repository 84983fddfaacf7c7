//! A live pair scenario: connect step by step, then bytes written on one node arrive at
//! the other, both ways.

use std::time::Duration;

use p2pd_core::nat::{DeltaKind, NatType};
use p2pd_core::negotiate::Progress;
use p2pd_sim::classify::NatCase;
use p2pd_sim::matrix::PairNet;
use p2pd_sim::node::SimNode;

fn case(nat_type: NatType, delta: DeltaKind) -> NatCase {
    NatCase {
        nat_type,
        delta,
        step: 7,
    }
}

fn chat(a: NatCase, b: NatCase, seed: u64) {
    let mut pair = PairNet::build(a, b, seed, 0.0, [Vec::new(), Vec::new()], true).unwrap();
    pair.register().unwrap();
    pair.begin();
    let hosts = pair.hosts;
    let up = pair.run_until(Duration::from_secs(120), |net| {
        hosts.iter().all(|h| {
            net.endpoint::<SimNode>(*h)
                .is_some_and(|n| n.report.connected.is_some())
        })
    });
    let report = &pair.node(0).unwrap().report;
    assert!(up, "not connected: {:?}", report.log);
    let won = report.connected.unwrap().0;
    assert_eq!(Some(won), pair.expected);
    assert!(
        report
            .progress
            .iter()
            .any(|(_, p)| matches!(p, Progress::Connected { strategy, .. } if *strategy == won))
    );
    for (from, to, text) in [(0, 1, &b"hello over the pipe\n"[..]), (1, 0, b"and back\n")] {
        pair.net
            .with_endpoint::<SimNode, _>(hosts[from], |n, now| n.write(now, text));
        let arrived = pair.run_until(Duration::from_secs(30), |net| {
            net.endpoint::<SimNode>(hosts[to])
                .is_some_and(|n| n.pending_received().len() >= text.len())
        });
        assert!(arrived, "{} did not arrive", String::from_utf8_lossy(text));
        let got = pair
            .net
            .with_endpoint::<SimNode, _>(hosts[to], |n, _| n.take_received())
            .unwrap();
        assert_eq!(got, text);
    }
}

#[test]
fn bytes_cross_a_punched_pipe_both_ways() {
    chat(
        case(NatType::PortRestrictedCone, DeltaKind::Random),
        case(NatType::Symmetric, DeltaKind::Independent),
        1,
    );
}

#[test]
fn bytes_cross_a_tcp_pipe_both_ways() {
    chat(
        case(NatType::OpenInternet, DeltaKind::Equal),
        case(NatType::FullCone, DeltaKind::Equal),
        2,
    );
}
