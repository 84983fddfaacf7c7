//! `p2pd sim classify` and `p2pd sim matrix`: every configuration (or pair), its fields, and bad flags.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_p2pd");

#[test]
fn classify_prints_all_35_configurations_correct() {
    let out = Command::new(BIN)
        .args(["sim", "classify", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 35);
    for r in &rows {
        for field in [
            "nat_type",
            "delta",
            "detected_type",
            "detected_delta",
            "correct",
            "round_trips",
            "virtual_ms",
        ] {
            assert!(r.get(field).is_some(), "{field} missing in {r}");
        }
        assert_eq!(r["correct"], true, "{r}");
        if r["observable"] == true {
            assert_eq!(r["nat_type"], r["detected_type"], "{r}");
            assert_eq!(r["delta"], r["detected_delta"], "{r}");
        }
    }
}

#[test]
fn classify_reports_accuracy_over_seeds_with_loss() {
    let out = Command::new(BIN)
        .args([
            "sim", "classify", "--loss", "0.2", "--seeds", "20", "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    for r in &rows {
        assert_eq!(r["seeds"], 20);
        assert_eq!(r["wrong"], 0.0, "{r}");
        assert!(r["accuracy"].as_f64().unwrap() >= 0.9, "{r}");
    }
}

#[test]
fn bad_loss_is_refused() {
    let out = Command::new(BIN)
        .args(["sim", "classify", "--loss", "1.5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--loss"));
}

#[test]
fn matrix_prints_every_pair_with_its_strategy_and_the_oracle() {
    let out = Command::new(BIN)
        .args(["sim", "matrix", "--json", "--loss", "0.1", "--seed", "4"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 23 * 23);
    let names = ["direct", "reverse", "tcp_punch", "udp_punch", "relay"];
    for r in &rows {
        for side in ["a", "b"] {
            assert!(r[side]["nat_type"].is_string(), "{r}");
            assert!(r[side]["delta"].is_string(), "{r}");
        }
        assert_eq!(r["connected"], true, "{r}");
        assert!(names.contains(&r["strategy"].as_str().unwrap_or("")), "{r}");
        assert_eq!(r["strategy"], r["expected"], "{r}");
        assert!(r["virtual_ms"].as_u64().is_some(), "{r}");
    }
    let bad = Command::new(BIN)
        .args(["sim", "matrix", "--loss", "1.5"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--loss"));
}
