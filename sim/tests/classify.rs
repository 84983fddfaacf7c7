//! Core's NAT classifier behind every one of P2PD's 35 configurations in the simulator:
//! exact without loss for each of 100 seeds; with 20 % loss, at least 95 % exact over 100
//! seeds per configuration and never a confident wrong answer.

use std::time::Duration;

use p2pd_sim::LinkConfig;
use p2pd_sim::classify::{NatCase, Score, classify};

fn link(loss: f64) -> LinkConfig {
    link_with(loss, 10)
}

fn link_with(loss: f64, one_way_ms: u64) -> LinkConfig {
    LinkConfig {
        loss,
        ..LinkConfig::with_latency(Duration::from_millis(one_way_ms))
    }
}

#[test]
fn every_configuration_is_classified_exactly_without_loss() {
    let mut failures = Vec::new();
    for case in NatCase::all() {
        for seed in 0..100 {
            let run = classify(case, seed, link(0.0)).expect("scenario");
            if run.score != Score::Correct {
                failures.push(format!(
                    "{:?}/{:?} seed {seed}: got {:?} {:?}; notes {:?}",
                    case.nat_type,
                    case.delta,
                    run.result.nat_type,
                    run.result.delta,
                    run.result.notes
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn twenty_percent_loss_is_95_percent_exact_and_never_confidently_wrong() {
    let mut report = Vec::new();
    let mut wrong = Vec::new();
    for case in NatCase::all() {
        let mut correct = 0;
        for seed in 0..100 {
            let run = classify(case, seed, link(0.2)).expect("scenario");
            match run.score {
                Score::Correct => correct += 1,
                Score::Uncertain => {}
                Score::Wrong => wrong.push(format!(
                    "{:?}/{:?} seed {seed}: got {:?} {:?}",
                    case.nat_type, case.delta, run.result.nat_type, run.result.delta
                )),
            }
        }
        if correct < 95 {
            report.push(format!(
                "{:?}/{:?}: {correct}/100 exact",
                case.nat_type, case.delta
            ));
        }
    }
    assert!(wrong.is_empty(), "confidently wrong:\n{}", wrong.join("\n"));
    assert!(report.is_empty(), "below 95 %:\n{}", report.join("\n"));
}

/// 500 ms each way on the host link (≈1 s round trip, where P2PD calls every NAT
/// symmetric): exact without loss, and with 20 % loss still ≥ 95 % exact and never wrong.
/// Seed 43 once exposed a verdict that called an EIM NAT symmetric when its filtering
/// test was inconclusive.
#[test]
fn one_second_round_trip() {
    let mut bad = Vec::new();
    for case in NatCase::all() {
        let run = classify(case, 1, link_with(0.0, 500)).expect("scenario");
        if run.score != Score::Correct {
            bad.push(format!(
                "{:?}/{:?} without loss: {:?} {:?}",
                case.nat_type, case.delta, run.result.nat_type, run.result.delta
            ));
        }
        let mut correct = 0;
        for seed in 0..100 {
            let run = classify(case, seed, link_with(0.2, 500)).expect("scenario");
            match run.score {
                Score::Correct => correct += 1,
                Score::Uncertain => {}
                Score::Wrong => bad.push(format!(
                    "{:?}/{:?} seed {seed}: {:?} {:?}",
                    case.nat_type, case.delta, run.result.nat_type, run.result.delta
                )),
            }
        }
        if correct < 95 {
            bad.push(format!(
                "{:?}/{:?}: {correct}/100 exact with loss",
                case.nat_type, case.delta
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn same_seed_same_verdict_and_time() {
    let case = NatCase::all()[22];
    let a = classify(case, 9, link(0.2)).unwrap();
    let b = classify(case, 9, link(0.2)).unwrap();
    assert_eq!(a.result, b.result);
    assert_eq!(a.stats.sent, b.stats.sent);
}

/// The opt-in hairpinning probe against NATs that do and do not hairpin.
#[test]
fn hairpinning_probe() {
    use p2pd_core::nat::{ClassifierConfig, DeltaKind, NatType};
    use p2pd_sim::RouterConfig;
    use p2pd_sim::classify::classify_behind;
    let case = NatCase {
        nat_type: NatType::PortRestrictedCone,
        delta: DeltaKind::Equal,
        step: 7,
    };
    for (hairpin, loss) in [(true, 0.0), (false, 0.0), (true, 0.2), (false, 0.2)] {
        for seed in 0..20 {
            let router = RouterConfig {
                hairpinning: hairpin,
                ..RouterConfig::for_type(case.nat_type, case.delta, case.step)
            };
            let config = ClassifierConfig {
                test_hairpinning: true,
                ..ClassifierConfig::default()
            };
            let run = classify_behind(case, router, seed, link(loss), config).unwrap();
            assert_eq!(
                run.result.hairpinning,
                Some(hairpin),
                "hairpin {hairpin}, loss {loss}, seed {seed}"
            );
            assert_eq!(run.score, Score::Correct);
        }
    }
}

/// The opt-in mapping lifetime probe brackets the NAT's idle timeout.
#[test]
fn mapping_lifetime_probe_brackets_the_timeout() {
    use p2pd_core::nat::LifetimeConfig;
    use p2pd_sim::RouterConfig;
    use p2pd_sim::classify::measure_lifetime;
    for (timeout, want_at_least, want_less_than) in [(25, 20, 30), (70, 60, 90), (130, 120, 180)] {
        for loss in [0.0, 0.2] {
            let router = RouterConfig {
                mapping_timeout: Duration::from_secs(timeout),
                ..RouterConfig::default()
            };
            let delays = LifetimeConfig::default_delays(Duration::from_secs(180));
            let m = measure_lifetime(router, delays, 3, link(loss)).unwrap();
            assert_eq!(
                m.at_least,
                Some(Duration::from_secs(want_at_least)),
                "timeout {timeout}s loss {loss}: {m:?}"
            );
            assert_eq!(
                m.less_than,
                Some(Duration::from_secs(want_less_than)),
                "timeout {timeout}s loss {loss}: {m:?}"
            );
            assert!(m.notes.is_empty(), "{m:?}");
        }
    }
}
