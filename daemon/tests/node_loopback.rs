//! `p2pd listen` and `p2pd connect` on loopback, run as a user would: a mosquitto broker,
//! `p2pd stun-server` (RFC 5780 on 127.0.0.1 and 127.0.0.2) and `p2pd turn-server`,
//! then two nodes with their own homes moving data both ways, per strategy.
//! Without mosquitto the tests print why and pass, unless `P2PD_LAB_REQUIRED=1`.

mod common;
mod node_common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::BIN;
use node_common::{Proc, Servers, TempDir, payload, servers, stderr_lines, wait_event};
use p2pd_core::addr::NodeAddr;
use p2pd_core::negotiate::Strategy;
use p2pd_core::negotiate::plan::{Side, possible};

/// Bytes sent each way per strategy.
const PAYLOAD: usize = 1 << 20;
/// The longest a whole exchange may take before the test fails (not a timing assertion:
/// a hang guard).
const EXCHANGE_LIMIT: Duration = Duration::from_secs(60);

impl Servers {
    /// The flags every node command gets.
    fn node_args(&self, home: &TempDir) -> Vec<String> {
        vec![
            "--interface".into(),
            "lo".into(),
            "--stun".into(),
            self.stun.to_string(),
            "--mqtt".into(),
            self.mqtt.to_string(),
            "--turn".into(),
            format!("alice:secret@{}", self.turn),
            "--home".into(),
            home.0.to_string_lossy().into_owned(),
            "--json".into(),
        ]
    }
}

/// A node process with its stdin fed from `data` (then closed) and its stdout collected.
struct Running {
    proc: Proc,
    /// stdin, when the test writes it itself.
    stdin: Option<std::process::ChildStdin>,
    stderr: mpsc::Receiver<String>,
    out: mpsc::Receiver<Vec<u8>>,
}

fn spawn_node(args: &[String], tag: &'static str, data: Option<Vec<u8>>) -> Running {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn p2pd");
    let stderr = stderr_lines(child.stderr.take().unwrap(), tag);
    let mut stdin = child.stdin.take();
    if let Some(data) = data
        && let Some(mut input) = stdin.take()
    {
        std::thread::spawn(move || {
            let _ = input.write_all(&data);
            // Dropping stdin closes it: the node shuts down its write half.
        });
    }
    let mut stdout = child.stdout.take().unwrap();
    let (tx, out) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stdout.read_to_end(&mut all);
        let _ = tx.send(all);
    });
    Running {
        proc: Proc(child),
        stdin,
        stderr,
        out,
    }
}

impl Running {
    /// Waits (bounded) for the exit status, everything the node wrote to stdout, and
    /// the stderr lines not read yet.
    fn finish(mut self, limit: Duration) -> (std::process::ExitStatus, Vec<u8>, Vec<String>) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.proc.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "p2pd did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = self
            .out
            .recv_timeout(Duration::from_secs(5))
            .expect("stdout collected");
        let mut lines = Vec::new();
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            lines.push(l);
        }
        (status, out, lines)
    }
}

/// Starts `p2pd listen`; returns it and its address.
fn listen(s: &Servers, home: &TempDir, data: Option<Vec<u8>>) -> (Running, NodeAddr) {
    let mut args = vec!["listen".to_string()];
    args.extend(s.node_args(home));
    let r = spawn_node(&args, "listen", data);
    let v = wait_event(&r.stderr, "listening", Duration::from_secs(20));
    let addr = NodeAddr::parse(v["addr"].as_str().unwrap()).unwrap();
    (r, addr)
}

fn connect_args(s: &Servers, home: &TempDir, addr: &str, strategies: &str) -> Vec<String> {
    let mut args = vec![
        "connect".to_string(),
        addr.to_string(),
        "--strategies".into(),
        strategies.into(),
        "--timeout".into(),
        "20".into(),
    ];
    args.extend(s.node_args(home));
    args
}

/// What the oracle says about `strategy` between two nodes with `addr`'s NAT (both nodes
/// sit on loopback, so both get the same verdict).
fn oracle(addr: &NodeAddr, strategy: Strategy) -> Result<(), String> {
    let r = addr.interfaces()[0].v4.expect("an IPv4 route on loopback");
    let side = Side {
        nat: r.nat,
        delta: r.delta,
        has_turn: true,
        mapped: false,
    };
    possible(strategy, &side, &side, true)
}

/// Both ways, `strategy` only: the data arrives intact and both ends report `strategy`,
/// or the oracle rules it out and `connect` fails saying it was skipped.
fn exchange(strategy: Strategy) {
    let Some(s) = servers(strategy.name()) else {
        return;
    };
    let (h1, h2) = (TempDir::new("l"), TempDir::new("c"));
    let up = payload(1, PAYLOAD);
    let down = payload(2, PAYLOAD);
    let (listener, addr) = listen(&s, &h1, Some(down.clone()));
    let possible = oracle(&addr, strategy);
    let conn = spawn_node(
        &connect_args(&s, &h2, &addr.to_string(), strategy.name()),
        "connect",
        Some(up.clone()),
    );
    if let Err(why) = possible {
        let (status, _, lines) = conn.finish(EXCHANGE_LIMIT);
        assert!(
            !status.success(),
            "{strategy} ruled out ({why}) yet connect succeeded"
        );
        let text = lines.join("\n");
        assert!(text.contains("skipped"), "{strategy}: {text}");
        return;
    }
    let c = wait_event(&conn.stderr, "connected", EXCHANGE_LIMIT);
    assert_eq!(c["strategy"], strategy.name(), "connect side: {c}");
    let l = wait_event(&listener.stderr, "connected", EXCHANGE_LIMIT);
    assert_eq!(l["strategy"], strategy.name(), "listen side: {l}");
    let (cs, got_down, _) = conn.finish(EXCHANGE_LIMIT);
    let (ls, got_up, _) = listener.finish(EXCHANGE_LIMIT);
    assert!(cs.success(), "connect exited with {cs}");
    assert!(ls.success(), "listen exited with {ls}");
    assert_eq!(
        got_up.len(),
        up.len(),
        "listener received a different length"
    );
    assert!(got_up == up, "listener received corrupted data");
    assert_eq!(
        got_down.len(),
        down.len(),
        "connector received a different length"
    );
    assert!(got_down == down, "connector received corrupted data");
}

#[test]
fn direct_moves_data_both_ways() {
    exchange(Strategy::Direct);
}

#[test]
fn reverse_moves_data_both_ways() {
    exchange(Strategy::Reverse);
}

#[test]
fn udp_punch_moves_data_both_ways() {
    exchange(Strategy::UdpPunch);
}

#[test]
fn relay_moves_data_both_ways() {
    exchange(Strategy::Relay);
}

/// Half-close: the connector sends a short request and closes its stdin at once while
/// the listener has not written anything yet; the listener reads the end of stream,
/// then writes its reply and closes; the reply still arrives whole and both exit.
fn half_close(strategy: Strategy) {
    let Some(s) = servers(&format!("half-{strategy}")) else {
        return;
    };
    let (h1, h2) = (TempDir::new("l"), TempDir::new("c"));
    let (mut listener, addr) = listen(&s, &h1, None);
    let up = b"short request\n".to_vec();
    let conn = spawn_node(
        &connect_args(&s, &h2, &addr.to_string(), strategy.name()),
        "connect",
        Some(up.clone()),
    );
    let l = wait_event(&listener.stderr, "connected", EXCHANGE_LIMIT);
    assert_eq!(l["strategy"], strategy.name());
    // Give the request and its end of stream time to cross before the reply starts
    // (ordering only; nothing asserts on time).
    std::thread::sleep(Duration::from_millis(300));
    let mut stdin = listener.stdin.take().expect("listener stdin is ours");
    let reply = payload(3, 256 * 1024);
    stdin.write_all(&reply).unwrap();
    drop(stdin);
    let (cs, got_reply, _) = conn.finish(EXCHANGE_LIMIT);
    let (ls, got_request, _) = listener.finish(EXCHANGE_LIMIT);
    assert!(cs.success() && ls.success(), "exits: {cs}, {ls}");
    assert_eq!(got_request, up);
    assert!(
        got_reply == reply,
        "reply corrupted ({} bytes)",
        got_reply.len()
    );
}

#[test]
fn half_close_over_tcp() {
    half_close(Strategy::Direct);
}

#[test]
fn half_close_over_the_relay() {
    half_close(Strategy::Relay);
}

#[test]
fn malformed_address_is_a_clear_error() {
    // "hello" is a valid name, so it is looked up (see names_connect_loopback.rs).
    for bad in ["p2pd1:notbase32!!", "p2pd9:aaaa"] {
        let out = Command::new(BIN)
            .args([
                "connect",
                bad,
                "--mqtt",
                "127.0.0.1:1",
                "--stun",
                "127.0.0.1:1",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad}: exit 0");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("bad node address") || err.contains("neither a node address"),
            "{bad}: {err}"
        );
        assert!(out.stdout.is_empty());
    }
}

/// A valid address of a node that is gone: connect fails within its --timeout (plus
/// start-up), saying it could not connect.
#[test]
fn unreachable_peer_fails_in_bounded_time() {
    let Some(s) = servers("gone") else {
        return;
    };
    let (h1, h2) = (TempDir::new("l"), TempDir::new("c"));
    let (listener, addr) = listen(&s, &h1, None);
    drop(listener);
    let mut args = connect_args(&s, &h2, &addr.to_string(), "direct,reverse,relay");
    let t = args.iter().position(|a| a == "--timeout").unwrap();
    args[t + 1] = "5".into();
    let started = Instant::now();
    let r = spawn_node(&args, "connect", Some(Vec::new()));
    let (status, out, lines) = r.finish(Duration::from_secs(40));
    eprintln!("connect gave up after {:?}", started.elapsed());
    assert!(!status.success());
    assert!(out.is_empty());
    let text = lines.join("\n");
    assert!(
        text.contains("could not connect") || text.contains("no connection to the peer"),
        "{text}"
    );
}

/// The connector says nothing and waits for the listener to speak first: the listener's
/// node still hands over the connection, because the connector's committing HELLO goes
/// out when `connect` returns, not with the connector's first write.
#[test]
fn listener_may_speak_first() {
    let Some(s) = servers("speaks-first") else {
        return;
    };
    let (h1, h2) = (TempDir::new("l"), TempDir::new("c"));
    let greeting = payload(9, 4096);
    let (listener, addr) = listen(&s, &h1, Some(greeting.clone()));
    let mut conn = spawn_node(
        &connect_args(&s, &h2, &addr.to_string(), "direct"),
        "connect",
        None,
    );
    let l = wait_event(&listener.stderr, "connected", EXCHANGE_LIMIT);
    assert_eq!(l["strategy"], "direct");
    // Only now does the connector end its (empty) side.
    drop(conn.stdin.take());
    let (cs, got, _) = conn.finish(EXCHANGE_LIMIT);
    let (ls, sent_up, _) = listener.finish(EXCHANGE_LIMIT);
    assert!(cs.success() && ls.success(), "exits: {cs}, {ls}");
    assert!(sent_up.is_empty());
    assert_eq!(got, greeting);
}

/// `--port` is the listen port of every route; a port another node holds is refused
/// with a message naming it.
#[test]
fn fixed_port_and_port_in_use() {
    let Some(s) = servers("port") else {
        return;
    };
    let (h1, h2) = (TempDir::new("p1"), TempDir::new("p2"));
    let port = node_common::free_port();
    let mut args = vec!["listen".to_string(), "--port".into(), port.to_string()];
    args.extend(s.node_args(&h1));
    let first = spawn_node(&args, "listen", None);
    let v = wait_event(&first.stderr, "listening", Duration::from_secs(20));
    let addr = NodeAddr::parse(v["addr"].as_str().unwrap()).unwrap();
    assert_eq!(addr.interfaces()[0].v4.unwrap().port, port);
    assert_eq!(v["routes"][0]["local"], format!("127.0.0.1:{port}"));
    let mut args = vec!["listen".to_string(), "--port".into(), port.to_string()];
    args.extend(s.node_args(&h2));
    let second = spawn_node(&args, "listen2", None);
    let (status, out, lines) = second.finish(Duration::from_secs(30));
    assert!(!status.success());
    assert!(out.is_empty());
    let text = lines.join("\n");
    assert!(
        text.contains(&format!("127.0.0.1:{port}")) && text.contains("in use"),
        "{text}"
    );
    drop(first);
}
