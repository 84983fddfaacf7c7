//! Names and the node on loopback, run as a user would: `p2pd name-server`, mosquitto,
//! `p2pd stun-server` and `p2pd turn-server`; `p2pd listen --name alice` registers its
//! name, `p2pd connect alice` resolves it and moves bytes both ways; unknown, invalid and
//! unresolvable names fail with clear errors; `p2pd name register` without `--addr`
//! registers the node's own address; a listening node whose broker dies re-registers
//! its new address. Without mosquitto the node tests print why and pass, unless
//! `P2PD_LAB_REQUIRED=1`.

mod common;
mod node_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::BIN;
use node_common::{Proc, Servers, TempDir, free_port, payload, servers, stderr_lines, wait_event};
use p2pd_core::addr::NodeAddr;

/// Bytes sent each way.
const PAYLOAD: usize = 256 * 1024;
/// Hang guard for one exchange (not a timing assertion).
const LIMIT: Duration = Duration::from_secs(60);

/// A `p2pd name-server` on loopback (its database in `dir`), killed on drop.
fn name_server(dir: &Path) -> (Proc, SocketAddr) {
    let mut child = Command::new(BIN)
        .args(["name-server", "--listen", "127.0.0.1:0", "--json", "--db"])
        .arg(dir.join("names.redb"))
        // Every client here shares 127.0.0.1: the default rate limit is per address.
        .args(["--rate-burst", "100000", "--rate-per-s", "10000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn p2pd name-server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON listening line");
    let addr = v["listening"][0].as_str().unwrap().parse().unwrap();
    (Proc(child), addr)
}

/// Node flags for loopback with these servers and home.
fn node_args(s: &Servers, mqtt: &[SocketAddr], home: &TempDir) -> Vec<String> {
    let mut v = vec![
        "--interface".into(),
        "lo".into(),
        "--stun".into(),
        s.stun.to_string(),
        "--turn".into(),
        format!("alice:secret@{}", s.turn),
        "--home".into(),
        home.0.to_string_lossy().into_owned(),
        "--json".into(),
    ];
    for m in mqtt {
        v.push("--mqtt".into());
        v.push(m.to_string());
    }
    v
}

/// A node process: stdin fed from `data` then closed, stdout collected.
struct Running {
    proc: Proc,
    stderr: mpsc::Receiver<String>,
    out: mpsc::Receiver<Vec<u8>>,
}

fn spawn_node(args: &[String], tag: &'static str, data: Vec<u8>) -> Running {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn p2pd");
    let stderr = stderr_lines(child.stderr.take().unwrap(), tag);
    let mut input = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let mut stdout = child.stdout.take().unwrap();
    let (tx, out) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stdout.read_to_end(&mut all);
        let _ = tx.send(all);
    });
    Running {
        proc: Proc(child),
        stderr,
        out,
    }
}

impl Running {
    /// Waits (bounded) for the exit status and everything written to stdout.
    fn finish(mut self, limit: Duration) -> (std::process::ExitStatus, Vec<u8>) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.proc.0.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "p2pd did not exit in {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = self.out.recv_timeout(Duration::from_secs(5)).unwrap();
        (status, out)
    }
}

/// `p2pd name resolve NAME --server S --json`: the address, or the error text.
fn resolve(name: &str, server: SocketAddr) -> Result<NodeAddr, String> {
    let out = Command::new(BIN)
        .args(["name", "resolve", name, "--json", "--server"])
        .arg(server.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Ok(NodeAddr::parse(v["addr"].as_str().unwrap()).unwrap())
}

/// `p2pd connect ARGS` that must fail before any node starts; its stderr.
fn connect_fails(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("connect")
        .args(args)
        .args(["--mqtt", "127.0.0.1:1", "--stun", "127.0.0.1:1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?}: exit 0");
    assert!(out.stdout.is_empty());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn listen_by_name_then_connect_by_name_moves_bytes_both_ways() {
    let Some(s) = servers("names-connect") else {
        return;
    };
    let db = TempDir::new("ns");
    let (_ns, ns) = name_server(&db.0);
    let (h1, h2) = (TempDir::new("alice"), TempDir::new("bob"));
    let up = payload(1, PAYLOAD);
    let down = payload(2, PAYLOAD);

    let mut args: Vec<String> = ["listen", "--name", "alice", "--name-server"]
        .map(String::from)
        .into();
    args.push(ns.to_string());
    args.extend(node_args(&s, &[s.mqtt], &h1));
    let listener = spawn_node(&args, "listen", down.clone());
    let l = wait_event(&listener.stderr, "listening", LIMIT);
    let node_id = l["node_id"].as_str().unwrap().to_string();
    let r = wait_event(&listener.stderr, "name_registered", LIMIT);
    assert_eq!(r["name"], "alice");
    assert_eq!(r["accepted"][0], ns.to_string());
    assert_eq!(
        resolve("alice", ns).unwrap().node_id().to_string(),
        node_id,
        "the name points at the listening node"
    );

    let mut args: Vec<String> = ["connect", "alice", "--timeout", "20", "--name-server"]
        .map(String::from)
        .into();
    args.push(ns.to_string());
    args.extend(node_args(&s, &[s.mqtt], &h2));
    let conn = spawn_node(&args, "connect", up.clone());
    let v = wait_event(&conn.stderr, "resolved", LIMIT);
    assert_eq!(v["name"], "alice");
    assert_eq!(v["node_id"], node_id.as_str());
    let c = wait_event(&conn.stderr, "connected", LIMIT);
    assert_eq!(c["peer"], node_id.as_str());
    wait_event(&listener.stderr, "connected", LIMIT);
    let (cs, got_down) = conn.finish(LIMIT);
    let (ls, got_up) = listener.finish(LIMIT);
    assert!(cs.success() && ls.success(), "exits: {cs}, {ls}");
    assert!(
        got_up == up,
        "listener got {} bytes, not the upload",
        got_up.len()
    );
    assert!(
        got_down == down,
        "connector got {} bytes, not the download",
        got_down.len()
    );
}

#[test]
fn unknown_invalid_and_unresolvable_names_are_clear_errors() {
    let db = TempDir::new("ns-errors");
    let (_ns, ns) = name_server(&db.0);
    let ns = ns.to_string();
    let e = connect_fails(&["nobody", "--name-server", &ns]);
    assert!(e.contains("no name server knows 'nobody'"), "{e}");
    assert!(e.contains(&ns), "names the server asked: {e}");
    let e = connect_fails(&["bob@home", "--name-server", &ns]);
    assert!(e.contains("neither a node address"), "{e}");
    let e = connect_fails(&["p2pd1:notbase32!!", "--name-server", &ns]);
    assert!(e.contains("bad node address"), "{e}");
    // A name and no server at all: says how to configure one (no config file in HOME).
    let home = TempDir::new("no-config");
    let e = connect_fails(&["nobody", "--home", &home.0.to_string_lossy()]);
    assert!(e.contains("no name server is configured"), "{e}");
    // `listen --name` without a name server: refused before the node starts.
    let out = Command::new(BIN)
        .args(["listen", "--name", "alice", "--home"])
        .arg(&home.0)
        .args(["--mqtt", "127.0.0.1:1", "--stun", "127.0.0.1:1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("--name needs a name server"), "{e}");
    // An invalid --name is refused by the flag parser.
    let out = Command::new(BIN)
        .args(["listen", "--name=alice-", "--name-server"])
        .arg(&ns)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("starts or ends with '-'"), "{e}");
    // A server that never answers (a bound, silent socket): bounded, and says so.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    let e = connect_fails(&["nobody", "--name-server", &silent]);
    assert!(e.contains("no name server answered"), "{e}");
    assert!(started.elapsed() < LIMIT);
}

/// `p2pd name register NAME` without --addr starts the node to learn its address and
/// registers that; a later `p2pd listen` with the same flags (same --port) has it.
#[test]
fn register_without_addr_names_the_nodes_own_address() {
    let Some(s) = servers("names-register") else {
        return;
    };
    let db = TempDir::new("ns-reg");
    let (_ns, ns) = name_server(&db.0);
    let home = TempDir::new("carol");
    let port = free_port().to_string();
    let mut args: Vec<String> = ["name", "register", "carol", "--port", &port, "--server"]
        .map(String::from)
        .into();
    args.push(ns.to_string());
    args.extend(node_args(&s, &[s.mqtt], &home));
    let out = Command::new(BIN)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["action"], "registered");
    assert_eq!(v["accepted"][0], ns.to_string());
    let registered = resolve("carol", ns).unwrap();

    let mut args: Vec<String> = ["listen", "--port", &port].map(String::from).into();
    args.extend(node_args(&s, &[s.mqtt], &home));
    let listener = spawn_node(&args, "listen", Vec::new());
    let l = wait_event(&listener.stderr, "listening", LIMIT);
    assert_eq!(
        l["addr"],
        registered.to_string(),
        "the registered address is the one `listen` with the same flags has"
    );
}

/// A mosquitto on a free loopback port, killed on drop.
fn mosquitto(dir: &TempDir, tag: &str) -> (Proc, SocketAddr) {
    let port = free_port();
    let conf = dir.0.join(format!("mosquitto-{tag}.conf"));
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .unwrap();
    let p = Proc(
        Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (p, addr)
}

/// A listening node on three brokers (it listens on two): when one dies, signaling moves
/// to the third, the node's address changes, and `listen --name` re-registers at once —
/// the name resolves to an address without the dead broker.
#[test]
fn a_listening_node_re_registers_when_its_address_changes() {
    let Some(s) = servers("names-moves") else {
        return;
    };
    let db = TempDir::new("ns-moves");
    let (_ns, ns) = name_server(&db.0);
    let brokers = TempDir::new("brokers");
    let (m1, a1) = mosquitto(&brokers, "1");
    let (_m2, a2) = mosquitto(&brokers, "2");
    let (_m3, a3) = mosquitto(&brokers, "3");
    let home = TempDir::new("dave");
    let mut args: Vec<String> = ["listen", "--name", "dave", "--name-server"]
        .map(String::from)
        .into();
    args.push(ns.to_string());
    args.extend(node_args(&s, &[a1, a2, a3], &home));
    let listener = spawn_node(&args, "listen", Vec::new());
    wait_event(&listener.stderr, "name_registered", LIMIT);
    // Wait until the registered address lists the first broker (signaling may report
    // its second listening broker just after start: one more registration).
    let has =
        |a: &NodeAddr, b: SocketAddr| a.brokers().iter().any(|x| x.to_string() == b.to_string());
    let deadline = Instant::now() + LIMIT;
    let before = loop {
        let a = resolve("dave", ns).unwrap();
        if has(&a, a1) && a.brokers().len() == 2 {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "never registered with 2 brokers: {a}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(m1);
    let deadline = Instant::now() + LIMIT;
    let after = loop {
        let a = resolve("dave", ns).unwrap();
        if !has(&a, a1) && has(&a, a3) {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "the name still points at the dead broker: {a}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(after.key(), before.key());
    assert_eq!(after.interfaces(), before.interfaces());
    assert!(has(&after, a2), "{after}");
    drop(listener);
}
