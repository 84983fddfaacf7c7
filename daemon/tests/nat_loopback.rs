//! `p2pd nat` on loopback against `p2pd stun-server` on 127.0.0.1 + 127.0.0.2. Loopback
//! has no NAT and no filter, so the verdict must be `open_internet` with `equal` ports;
//! real NATs are tested in the lab and, for every configuration, in the simulator.

mod common;

use std::process::Command;

use common::{BIN, start_server};

fn nat_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN)
        .arg("nat")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn loopback_is_open_internet_with_equal_ports() {
    let server = start_server(&["--primary", "127.0.0.1:0", "--alternate", "127.0.0.2"]);
    let primary = server.addrs[0].to_string();
    let v = nat_json(&["--stun", &primary]);
    let r = &v[0];
    assert_eq!(r["family"], "ipv4");
    assert_eq!(r["nat_type"], "open_internet", "{r:#}");
    assert_eq!(r["delta"]["kind"], "equal");
    assert_eq!(r["translated"], false);
    assert_eq!(r["filtering"], "endpoint_independent");
    assert_eq!(r["external"], r["local"]);
    assert_eq!(r["server"], primary.as_str());
    let names: Vec<&str> = r["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"test_i") && names.contains(&"filtering_eif"),
        "{names:?}"
    );
}

#[test]
fn a_dead_server_is_named_and_another_is_used() {
    let server = start_server(&["--primary", "127.0.0.1:0", "--alternate", "127.0.0.2"]);
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = silent.local_addr().unwrap().to_string();
    let v = nat_json(&["--stun", &dead, "--stun", &server.addrs[0].to_string()]);
    assert_eq!(v[0]["nat_type"], "open_internet");
    assert_eq!(v[0]["unreachable"][0], dead.as_str());
}

#[test]
fn no_answer_at_all_is_blocked_not_an_error() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = silent.local_addr().unwrap().to_string();
    let v = nat_json(&["--stun", &dead, "--blocked-after-ms", "300"]);
    assert_eq!(v[0]["nat_type"], "blocked");
    assert!(v[0]["delta"].is_null());
    assert_eq!(v[0]["unreachable"][0], dead.as_str());
    let elapsed = v[0]["elapsed_ms"].as_f64().unwrap();
    assert!(
        elapsed >= 300.0,
        "gave up after {elapsed} ms, before --blocked-after-ms"
    );
}

#[test]
fn no_servers_is_a_clear_error() {
    // An empty home: no config file, so no servers at all.
    let home = std::env::temp_dir().join(format!("p2pd-nat-test-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let out = Command::new(BIN)
        .arg("nat")
        .env("P2PD_HOME", &home)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&home);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--stun"));
}
