//! `p2pd sim …`: the simulator from the command line.

use std::time::Duration;

use p2pd_sim::LinkConfig;
use p2pd_sim::classify::{NatCase, Score, classify};
use serde::Serialize;

use crate::cli::{SimClassifyArgs, SimMatrixArgs};
use crate::output;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// One configuration's line of `p2pd sim classify --json`.
#[derive(Debug, Serialize)]
struct ClassifyRow {
    nat_type: &'static str,
    delta: &'static str,
    /// Whether everything configured can be observed (not for delta kinds on boxes that
    /// do not translate, nor for blocked UDP).
    observable: bool,
    detected_type: Option<&'static str>,
    detected_delta: Option<&'static str>,
    detected_delta_value: Option<i32>,
    correct: bool,
    round_trips: Option<f64>,
    virtual_ms: f64,
    /// With --seeds: the share of seeds classified exactly, uncertain, and wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uncertain: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wrong: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seeds: Option<u64>,
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn classify_all(args: SimClassifyArgs) -> Result<()> {
    if !(0.0..1.0).contains(&args.loss) {
        return Err(format!("--loss {} must be at least 0 and below 1", args.loss).into());
    }
    let seeds = args.seeds.clamp(1, 100_000);
    let link = LinkConfig {
        loss: args.loss,
        ..LinkConfig::with_latency(Duration::from_millis(args.latency_ms))
    };
    let mut rows = Vec::new();
    for case in NatCase::all() {
        let (mut correct, mut uncertain, mut wrong) = (0u64, 0u64, 0u64);
        let (mut rt_sum, mut rt_n, mut ms_sum) = (0.0, 0u64, 0.0);
        let mut first = None;
        for seed in args.seed..args.seed + seeds {
            let run = classify(case, seed, link)?;
            match run.score {
                Score::Correct => correct += 1,
                Score::Uncertain => uncertain += 1,
                Score::Wrong => wrong += 1,
            }
            if let Some(rt) = run.result.round_trips() {
                rt_sum += rt;
                rt_n += 1;
            }
            ms_sum += run.virtual_time.as_secs_f64() * 1e3;
            first.get_or_insert(run);
        }
        let Some(first) = first else { continue };
        let n = seeds as f64;
        rows.push(ClassifyRow {
            nat_type: case.nat_type.name(),
            delta: case.delta.name(),
            observable: case.fully_observable(),
            detected_type: first.result.nat_type.map(|t| t.name()),
            detected_delta: first.result.delta.map(|d| d.kind.name()),
            detected_delta_value: first.result.delta.map(|d| d.value),
            correct: first.score == Score::Correct,
            round_trips: (rt_n > 0).then(|| round1(rt_sum / rt_n as f64)),
            virtual_ms: round1(ms_sum / n),
            accuracy: (seeds > 1).then(|| correct as f64 / n),
            uncertain: (seeds > 1).then(|| uncertain as f64 / n),
            wrong: (seeds > 1).then(|| wrong as f64 / n),
            seeds: (seeds > 1).then_some(seeds),
        });
    }
    if args.json {
        output::line(serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    output::line(format!(
        "{:<22} {:<11} {:<22} {:<16} {:>7} {:>6} {:>9}{}",
        "nat_type",
        "delta",
        "detected_type",
        "detected_delta",
        "correct",
        "rtts",
        "virt_ms",
        if seeds > 1 {
            "  accuracy uncertain wrong"
        } else {
            ""
        }
    ))?;
    for r in &rows {
        let delta = match (r.detected_delta, r.detected_delta_value) {
            (Some(k), Some(v)) if v != 0 => format!("{k} {v}"),
            (Some(k), _) => k.to_string(),
            (None, _) => "-".into(),
        };
        let extra = match (r.accuracy, r.uncertain, r.wrong) {
            (Some(a), Some(u), Some(w)) => format!(
                "  {:>7.1}% {:>8.1}% {:>4.1}%",
                a * 100.0,
                u * 100.0,
                w * 100.0
            ),
            _ => String::new(),
        };
        output::line(format!(
            "{:<22} {:<11} {:<22} {:<16} {:>7} {:>6} {:>9.1}{}{}",
            r.nat_type,
            r.delta,
            r.detected_type.unwrap_or("-"),
            delta,
            r.correct,
            r.round_trips.map_or("-".into(), |x| format!("{x:.1}")),
            r.virtual_ms,
            extra,
            if r.observable {
                ""
            } else {
                "  (delta not observable)"
            }
        ))?;
    }
    Ok(())
}

/// One pair's line of `p2pd sim matrix --json`.
#[derive(Debug, Serialize)]
struct MatrixRow {
    a: Config,
    b: Config,
    connected: bool,
    strategy: Option<&'static str>,
    virtual_ms: Option<u64>,
    expected: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Config {
    nat_type: &'static str,
    delta: &'static str,
}

impl Config {
    fn of(c: &NatCase) -> Self {
        let (nat, d) = c.observable();
        Config {
            nat_type: nat.name(),
            delta: d.map_or("-", |(k, _)| k.name()),
        }
    }
}

pub fn matrix(args: SimMatrixArgs) -> Result<()> {
    if !(0.0..1.0).contains(&args.loss) {
        return Err(format!("--loss {} must be at least 0 and below 1", args.loss).into());
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let started = std::time::Instant::now();
    let results = p2pd_sim::matrix::run_matrix(args.seed, args.loss, threads)?;
    let wall = started.elapsed();
    let rows: Vec<MatrixRow> = results
        .iter()
        .map(|r| MatrixRow {
            a: Config::of(&r.a),
            b: Config::of(&r.b),
            connected: r.connected,
            strategy: r.strategy.map(|s| s.name()),
            virtual_ms: r.virtual_ms,
            expected: r.expected.map(|s| s.name()),
            error: r.error.clone(),
        })
        .collect();
    if args.json {
        output::line(serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    output::line(format!(
        "{:<22} {:<11} {:<22} {:<11} {:<9} {:<10} {:<10} {:>8}",
        "a", "a_delta", "b", "b_delta", "connected", "strategy", "expected", "virt_ms"
    ))?;
    for r in &rows {
        output::line(format!(
            "{:<22} {:<11} {:<22} {:<11} {:<9} {:<10} {:<10} {:>8}{}",
            r.a.nat_type,
            r.a.delta,
            r.b.nat_type,
            r.b.delta,
            r.connected,
            r.strategy.unwrap_or("-"),
            r.expected.unwrap_or("-"),
            r.virtual_ms.map_or("-".into(), |v| v.to_string()),
            r.error
                .as_ref()
                .map_or(String::new(), |e| format!("  ({e})")),
        ))?;
    }
    let ok = rows
        .iter()
        .filter(|r| r.connected && r.strategy == r.expected)
        .count();
    output::line(format!(
        "{ok}/{} pairs connected with the expected strategy; {:.1} s wall on {threads} threads",
        rows.len(),
        wall.as_secs_f64()
    ))?;
    Ok(())
}
