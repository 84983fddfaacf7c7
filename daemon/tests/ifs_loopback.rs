//! `p2pd ifs` on this host's loopback interface against `p2pd stun-server`, its config
//! file and flags, and the errors it must make clear: no usable interface, no STUN
//! reply, permission denied.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::{BIN, start_server};

fn ifs(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("ifs").args(args);
    // No test may depend on the user's own config file.
    cmd.env("P2PD_HOME", scratch_dir("no-home"));
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run p2pd ifs")
}

fn ok_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("p2pd-ifs-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn loopback(v: &serde_json::Value) -> &serde_json::Value {
    v["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .find(|i| i["loopback"] == true)
        .unwrap_or_else(|| panic!("no loopback interface in {v:#}"))
}

fn silent_server() -> (std::net::UdpSocket, String) {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("silent socket");
    let a = s.local_addr().expect("addr").to_string();
    (s, a)
}

#[test]
fn loopback_route_maps_to_itself() {
    let server = start_server(&["--primary", "127.0.0.1:0"]);
    let addr = server.addrs[0].to_string();
    let v = ok_json(&ifs(&["--all", "--stun", &addr, "--json"], &[]));
    let lo = loopback(&v);
    let route = &lo["routes"][0];
    assert_eq!(route["family"], "ipv4", "{lo:#}");
    assert_eq!(route["external"], "127.0.0.1");
    assert_eq!(route["local"][0], "127.0.0.1");
    assert_eq!(route["server"], addr.as_str());
    assert!(lo["up"].as_bool().expect("up"));
    // Loopback is skipped unless asked for.
    let v = ok_json(&ifs(&["--stun", &addr, "--json"], &[])).to_string();
    assert!(!v.contains("\"loopback\":true"), "{v}");
}

#[test]
fn config_file_supplies_servers_and_flags_replace_them() {
    let server = start_server(&["--primary", "127.0.0.1:0"]);
    let live = server.addrs[0].to_string();
    let (_silent, dead) = silent_server();
    let home = scratch_dir("home");
    let file = home.join("config.toml");
    std::fs::write(&file, format!("stun = [\"{live}\"]\n")).expect("write config");
    let home_s = home.to_string_lossy().to_string();

    // $P2PD_HOME/config.toml is the default path.
    let v = ok_json(&ifs(&["--all", "--json"], &[("P2PD_HOME", &home_s)]));
    assert_eq!(v["servers"][0], live.as_str());
    assert_eq!(v["config"], file.to_string_lossy().as_ref());
    assert_eq!(loopback(&v)["routes"][0]["server"], live.as_str());

    // --config names another file; --stun replaces its list.
    let other = home.join("other.toml");
    std::fs::write(&other, format!("stun = [\"{dead}\"]\n")).expect("write config");
    let other_s = other.to_string_lossy().to_string();
    let v = ok_json(&ifs(
        &["--all", "--json", "--config", &other_s, "--stun", &live],
        &[],
    ));
    assert_eq!(v["servers"].as_array().expect("servers").len(), 1);
    assert_eq!(v["servers"][0], live.as_str());

    // A config file named with --config must exist; a bad one is named.
    let out = ifs(&["--config", "/nonexistent/p2pd.toml"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read config file /nonexistent/p2pd.toml"),
        "{err}"
    );
    std::fs::write(&other, "stun = 5\n").expect("write config");
    let err = String::from_utf8_lossy(&ifs(&["--config", &other_s], &[]).stderr).to_string();
    assert!(
        err.contains(&format!("config file {other_s} is invalid")),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn no_stun_reply_names_the_server_and_the_wait() {
    let (_silent, dead) = silent_server();
    let out = ifs(
        &["--all", "--stun", &dead, "--rto-ms", "20", "--tries", "2"],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no route on any interface"), "{err}");
    assert!(
        err.contains(&format!(
            "STUN server {dead} did not answer: 2 requests over"
        )),
        "{err}"
    );
    assert!(err.contains("ms"), "{err}");
    // The text report names it per address too.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("error: 127.0.0.1: STUN server"), "{text}");
}

#[test]
fn a_silent_server_is_passed_over_for_the_next() {
    // Two servers of which only the second answers: the route comes from it.
    let server = start_server(&["--primary", "127.0.0.1:0"]);
    let live = server.addrs[0].to_string();
    let (_silent, dead) = silent_server();
    let v = ok_json(&ifs(
        &[
            "--all", "--json", "--stun", &dead, "--stun", &live, "--rto-ms", "20", "--tries", "1",
        ],
        &[],
    ));
    assert_eq!(loopback(&v)["routes"][0]["server"], live.as_str());
}

#[test]
fn no_usable_interface_is_a_clear_error() {
    let out = ifs(&["--interface", "nosuch0", "--stun", "127.0.0.1:9"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no usable network interface: no interface named nosuch0"),
        "{err}"
    );
    // In a fresh network namespace only a down loopback exists (needs root + unshare).
    let unshare = Command::new("unshare")
        .args(["-n", BIN, "ifs", "--stun", "127.0.0.1:9"])
        .env("P2PD_HOME", scratch_dir("no-home"))
        .output();
    match unshare {
        Ok(out) if out.status.code() != Some(1) || out.stderr.starts_with(b"unshare:") => {
            eprintln!(
                "skipping the empty-namespace case: unshare -n is not permitted here ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("no usable network interface"), "{err}");
        }
        Err(e) => eprintln!("skipping the empty-namespace case: no unshare ({e})"),
    }
}

#[test]
fn permission_denied_says_what_to_do() {
    let unprivileged_start: u16 =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1024);
    if unprivileged_start <= 80 {
        eprintln!(
            "skipping: this host lets anyone bind port 80 (ip_unprivileged_port_start = {unprivileged_start})"
        );
        return;
    }
    let args = ["stun-server", "--primary", "127.0.0.1:80"];
    // As root, drop to nobody for this one command (root may bind port 80).
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let out = if is_root {
        match Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
            .args(args)
            .output()
        {
            Ok(o) => o,
            Err(e) => {
                eprintln!("skipping: running as root and setpriv is missing ({e})");
                return;
            }
        }
    } else {
        Command::new(BIN).args(args).output().expect("run p2pd")
    };
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot bind UDP 127.0.0.1:80: permission denied")
            && err.contains("CAP_NET_BIND_SERVICE"),
        "{err}"
    );
}
