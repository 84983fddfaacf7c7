//! Names behind real Linux NATs (network namespaces + nftables, see `lab/`): a
//! `p2pd name-server`, mosquitto and coturn on the public side; two nodes in two LANs,
//! each behind its own NAT. One runs `p2pd listen --name NAME` (it registers the name
//! from behind its NAT), the other `p2pd connect NAME` (it resolves the name on the
//! public server and connects to the address it got); bytes move both ways intact
//! (SHA-256 compared). An unknown name fails, saying so. Needs root and the lab's
//! packages; skips otherwise (fails under `P2PD_LAB_REQUIRED=1`, as in CI).

mod lab_node;
use lab_node::{BIN, Home, Proc, payload, spawn, wait_event};

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use p2pd_lab::{
    Lab, MQTT_PORT, PortAlloc, RouterKind, SERVER_IP1, STUN_PORT, TURN_PASSWORD, TURN_USER,
};
use sha2::{Digest, Sha256};

/// Bytes each way.
const LEN: usize = 2 * 1024 * 1024;
/// Hang guard for one whole exchange (not a timing assertion).
const LIMIT: Duration = Duration::from_secs(120);
/// The name server's port on the public side.
const NAME_PORT: u16 = 5300;

fn name_server_addr() -> SocketAddr {
    SocketAddr::new(SERVER_IP1.into(), NAME_PORT)
}

/// Starts `p2pd name-server` in the lab's server namespace and waits for its line.
fn name_server(lab: &Lab, db: &Home) -> Proc {
    let args = vec![
        "name-server".to_string(),
        "--listen".into(),
        name_server_addr().to_string(),
        "--db".into(),
        db.0.join("names.redb").to_string_lossy().into_owned(),
        "--json".into(),
    ];
    let mut child = lab
        .server()
        .command(BIN, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn p2pd name-server in the server namespace");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).expect("name-server JSON line");
    assert_eq!(v["listening"][0], name_server_addr().to_string());
    Proc(child)
}

fn node_flags(home: &Home) -> Vec<String> {
    vec![
        "--stun".into(),
        format!("{SERVER_IP1}:{STUN_PORT}"),
        "--mqtt".into(),
        format!("{SERVER_IP1}:{MQTT_PORT}"),
        "--turn".into(),
        format!("{TURN_USER}:{TURN_PASSWORD}@{SERVER_IP1}:{STUN_PORT}"),
        "--name-server".into(),
        name_server_addr().to_string(),
        "--home".into(),
        home.0.to_string_lossy().into_owned(),
        "--json".into(),
    ]
}

/// Host 1 listens as `name`, host 0 connects to `name`; returns the strategy used.
fn by_name(lab: &Lab, name: &str) -> String {
    let (hl, hc) = (Home::new("listen"), Home::new("connect"));
    let down = payload(7, LEN);
    let up = payload(8, LEN);
    let (want_down, want_up): ([u8; 32], [u8; 32]) =
        (Sha256::digest(&down).into(), Sha256::digest(&up).into());
    let mut args = vec!["listen".to_string(), "--name".into(), name.into()];
    args.extend(node_flags(&hl));
    let l = spawn(lab.host(1), args, down, "listen");
    let v = wait_event(&l.stderr, "listening", Duration::from_secs(30));
    let node_id = v["node_id"].as_str().unwrap().to_string();
    let r = wait_event(&l.stderr, "name_registered", Duration::from_secs(30));
    assert_eq!(r["accepted"][0], name_server_addr().to_string());

    let mut args = vec!["connect".to_string(), name.into()];
    args.extend(node_flags(&hc));
    let c = spawn(lab.host(0), args, up, "connect");
    let rv = wait_event(&c.stderr, "resolved", Duration::from_secs(30));
    assert_eq!(
        rv["node_id"],
        node_id.as_str(),
        "the name gave the listener"
    );
    eprintln!(
        "name resolved in {} ms from behind the NAT",
        rv["resolve_ms"]
    );
    let cv = wait_event(&c.stderr, "connected", LIMIT);
    eprintln!(
        "connect took {} ms (node up to connection up)",
        cv["connect_ms"]
    );
    let lv = wait_event(&l.stderr, "connected", LIMIT);
    assert_eq!(cv["strategy"], lv["strategy"]);
    assert_eq!(cv["peer"], node_id.as_str());
    let (cs, cn, ch) = c.finish(LIMIT);
    let (ls, ln, lh) = l.finish(LIMIT);
    assert!(cs.success(), "connect exited with {cs}");
    assert!(ls.success(), "listen exited with {ls}");
    assert_eq!((cn, ln), (LEN, LEN), "bytes received");
    assert!(ch == want_down, "connector's SHA-256 differs");
    assert!(lh == want_up, "listener's SHA-256 differs");
    cv["strategy"].as_str().unwrap().to_string()
}

const CONE: RouterKind = RouterKind::PortRestrictedCone(PortAlloc::Preserve);

#[test]
fn natted_nodes_connect_by_name() {
    p2pd_lab::require!();
    let lab = Lab::two_lans(CONE, CONE).expect("build lab");
    lab.start_servers().expect("coturn and mosquitto");
    let db = Home::new("db");
    let _ns = name_server(&lab, &db);
    let strategy = by_name(&lab, "lab-alice");
    eprintln!("connected by name using {strategy}");
    assert_eq!(strategy, "tcp_punch", "port-restricted cone on both sides");

    // An unknown name: the public server answers, and connect says so.
    let home = Home::new("unknown");
    let mut args = vec!["connect".to_string(), "lab-nobody".into()];
    args.extend(node_flags(&home));
    let out = lab
        .host(0)
        .ns()
        .command(BIN, &args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no name server knows 'lab-nobody'"), "{err}");
}
