//! Two `p2pd daemon` processes with real nodes on loopback (mosquitto, `p2pd stun-server`
//! and `p2pd turn-server` on 127.0.0.1), driven through their REST APIs as a program
//! would: one opens a connection to the other by node address, both exchange text and
//! binary, a `/p2p/pipe` on each side moves megabytes both ways intact, and both close.
//! The accepting daemon sees the connection in `/p2p/accept` and `/p2p/cons`.
//! Once over TCP (`direct`) and once over a datagram connection (`relay`).
//! Without mosquitto the tests print why and pass, unless `P2PD_LAB_REQUIRED=1`.

mod common;
mod node_common;
mod rest_common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use node_common::{Servers, servers};
use p2pd_core::addr::NodeAddr;
use rest_common::{Daemon, Resp, digest, get, payload, post_request, pump, raw, start, start_pipe};

/// Bytes each way through the pipes.
const PIPE_BYTES: usize = 4 << 20;
/// Hang guard for the pipe transfer (not a timing assertion).
const PIPE_LIMIT: Duration = Duration::from_secs(90);

#[track_caller]
fn ok(r: &Resp) -> serde_json::Value {
    assert_eq!(
        r.status,
        200,
        "{}\n{}",
        r.head,
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

/// A daemon whose node uses the loopback servers.
fn daemon(s: &Servers, tag: &str) -> Daemon {
    daemon_with(s, tag, &[])
}

fn daemon_with(s: &Servers, tag: &str, extra: &[&str]) -> Daemon {
    let turn = format!("alice:secret@{}", s.turn);
    let (stun, mqtt) = (s.stun.to_string(), s.mqtt.to_string());
    let mut args = vec![
        "--no-discovery",
        "--interface",
        "lo",
        "--stun",
        &stun,
        "--mqtt",
        &mqtt,
        "--turn",
        &turn,
    ];
    args.extend_from_slice(extra);
    start(tag, None, &args)
}

/// Waits (bounded) until the daemon's node runs; returns its node address.
fn node_addr(d: &Daemon) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = ok(&get(d.addr(), "/version", ""));
        match v["node"].as_str().unwrap() {
            "running" => break,
            "failed" => panic!(
                "the node failed to start: {}",
                String::from_utf8_lossy(&get(d.addr(), "/p2p/addr", "").body)
            ),
            _ => {
                assert!(Instant::now() < deadline, "node still starting after 30 s");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    let addr = ok(&get(d.addr(), "/p2p/addr", ""))["addr"]
        .as_str()
        .unwrap()
        .to_string();
    NodeAddr::parse(&addr).expect("/p2p/addr is a node address");
    addr
}

/// The node id (hex) of a node address, as `/p2p/con` shows peers.
fn node_id(addr: &str) -> String {
    NodeAddr::parse(addr).unwrap().node_id().to_string()
}

/// Collects `len` bytes from `GET path` (text or binary recv), one response at a time.
fn gather(d: &Daemon, path: &str, len: usize, text: bool) -> Vec<u8> {
    let mut got = Vec::new();
    // Bounded: every pass takes at least one byte or fails on the daemon's timeout.
    while got.len() < len {
        let r = get(d.addr(), path, "");
        if text {
            let v = ok(&r);
            got.extend_from_slice(v["data"].as_str().unwrap().as_bytes());
        } else {
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            assert_eq!(
                r.header("content-type").as_deref(),
                Some("application/octet-stream")
            );
            assert!(!r.body.is_empty());
            got.extend_from_slice(&r.body);
        }
    }
    assert_eq!(got.len(), len, "more than was sent arrived");
    got
}

fn con(d: &Daemon, name: &str) -> serde_json::Value {
    ok(&get(d.addr(), &format!("/p2p/con/{name}"), ""))
}

/// A pipe on `d` for connection `name`: the TCP stream and the relay's first bytes.
fn pipe(d: &Daemon, name: &str) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(d.addr()).unwrap();
    let early = start_pipe(&mut s, name);
    (s, early)
}

fn session(strategy: &str) {
    let Some(s) = servers(&format!("rest-{strategy}")) else {
        return;
    };
    let a = daemon(&s, &format!("node-a-{strategy}"));
    let b = daemon(&s, &format!("node-b-{strategy}"));
    let addr_a = node_addr(&a);
    let addr_b = node_addr(&b);
    assert_ne!(
        node_id(&addr_a),
        node_id(&addr_b),
        "two homes, two identities"
    );

    // Open by address.
    let opened = ok(&get(
        a.addr(),
        &format!("/p2p/open/chat/{addr_b}?strategies={strategy}"),
        "",
    ));
    assert_eq!(opened["error"], 0);
    assert_eq!(opened["name"], "chat");
    assert_eq!(opened["strategy"], strategy, "{opened}");
    assert_eq!(opened["direction"], "outgoing");
    assert_eq!(opened["peer"], node_id(&addr_b));
    for end in ["local", "remote"] {
        let sa: SocketAddr = opened[end].as_str().unwrap().parse().unwrap();
        assert!(sa.ip().is_loopback(), "{end}: {sa}");
    }
    if strategy == "relay" {
        assert_eq!(
            opened["remote"]
                .as_str()
                .unwrap()
                .parse::<SocketAddr>()
                .unwrap()
                .ip(),
            s.turn.ip(),
            "a relayed connection's remote end is on the relay"
        );
    } else {
        assert_eq!(opened["interface"], "lo", "{opened}");
    }
    assert_eq!(opened["bytes_sent"], 0);
    // The same name twice is refused; so is connecting to ourselves.
    assert_eq!(
        get(a.addr(), &format!("/p2p/open/chat/{addr_b}"), "").code(),
        5
    );
    let own = get(a.addr(), "/p2p/open/me/self?strategies=direct", "");
    assert_eq!((own.status, own.code()), (502, 11), "{}", own.json());

    // The accepting side sees it.
    let inc = ok(&get(b.addr(), "/p2p/accept?timeout=20", ""));
    let name = inc["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("in-"), "{inc}");
    assert_eq!(inc["direction"], "incoming");
    assert_eq!(inc["strategy"], strategy);
    assert_eq!(inc["peer"], node_id(&addr_a));
    let cons = ok(&get(b.addr(), "/p2p/cons", ""));
    assert!(
        cons["cons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == name.as_str()),
        "{cons}"
    );

    // Text both ways (a '/' and non-ASCII, percent-encoded).
    let sent = ok(&get(a.addr(), "/p2p/send/chat/hello%20p2p%2Fworld", ""));
    assert_eq!(sent["sent"], 15);
    let got = gather(&b, &format!("/p2p/recv/{name}?timeout=10"), 15, true);
    assert_eq!(got, b"hello p2p/world");
    let back = "grüße zurück";
    let sent = ok(&get(
        b.addr(),
        &format!("/p2p/send/{name}/gr%C3%BC%C3%9Fe%20zur%C3%BCck"),
        "",
    ));
    assert_eq!(sent["sent"], back.len());
    let got = gather(&a, "/p2p/recv/chat?timeout=10", back.len(), true);
    assert_eq!(got, back.as_bytes());

    // Binary both ways.
    let up = payload(3, 300_000);
    let r = raw(a.addr(), &post_request("/p2p/binary/chat", &up));
    assert_eq!(ok(&r)["sent"], up.len());
    let got = gather(
        &b,
        &format!("/p2p/binary/{name}?timeout=10"),
        up.len(),
        false,
    );
    assert!(got == up, "binary a→b corrupted");
    let mut down: Vec<u8> = (0..=255u8).collect();
    down.extend(payload(4, 200_000));
    let r = raw(
        b.addr(),
        &post_request(&format!("/p2p/binary/{name}"), &down),
    );
    assert_eq!(ok(&r)["sent"], down.len());
    let got = gather(&a, "/p2p/binary/chat?timeout=10", down.len(), false);
    assert!(got == down, "binary b→a corrupted");

    let (a_sent, a_received) = (15 + up.len(), back.len() + down.len());
    let c = con(&a, "chat");
    assert_eq!(c["bytes_sent"], a_sent, "{c}");
    assert_eq!(c["bytes_received"], a_received, "{c}");
    let c = con(&b, &name);
    assert_eq!(c["bytes_sent"], a_received, "{c}");
    assert_eq!(c["bytes_received"], a_sent, "{c}");

    // A pipe on each side: megabytes both ways at once, then end of stream both ways.
    let (pa, early_a) = pipe(&a, "chat");
    let (pb, early_b) = pipe(&b, &name);
    // While piped, the connection is busy for other requests.
    assert_eq!(get(a.addr(), "/p2p/recv/chat", "").code(), 14);
    let (to_b, to_a) = (payload(5, PIPE_BYTES), payload(6, PIPE_BYTES));
    let (want_b, want_a) = (digest(&to_b), digest(&to_a));
    let ta = std::thread::spawn(move || pump(pa, early_a, to_b, PIPE_LIMIT));
    let tb = std::thread::spawn(move || pump(pb, early_b, to_a, PIPE_LIMIT));
    let (got_a, _) = ta.join().unwrap();
    let (got_b, _) = tb.join().unwrap();
    assert_eq!(got_b.0, PIPE_BYTES, "b's pipe received a different length");
    assert!(got_b == want_b, "b's pipe received corrupted data");
    assert_eq!(got_a.0, PIPE_BYTES, "a's pipe received a different length");
    assert!(got_a == want_a, "a's pipe received corrupted data");

    // The counters include the pipe; both sides ended.
    let deadline = Instant::now() + Duration::from_secs(10);
    let c = loop {
        let c = con(&a, "chat");
        if c["piped"] == false || Instant::now() > deadline {
            break c;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(c["piped"], false, "{c}");
    assert_eq!(c["bytes_sent"], a_sent + PIPE_BYTES, "{c}");
    assert_eq!(c["bytes_received"], a_received + PIPE_BYTES, "{c}");
    assert_eq!(c["peer_closed"], true, "{c}");
    assert_eq!(c["send_closed"], true, "{c}");

    // Close.
    assert_eq!(ok(&get(a.addr(), "/p2p/close/chat", ""))["closed"], "chat");
    assert_eq!(get(a.addr(), "/p2p/con/chat", "").code(), 4);
    ok(&get(b.addr(), &format!("/p2p/close/{name}"), ""));
    assert_eq!(
        ok(&get(b.addr(), "/p2p/cons", ""))["cons"],
        serde_json::json!([])
    );
    // The name is free again and the node still connects.
    let again = ok(&get(
        a.addr(),
        &format!("/p2p/open/chat/{addr_b}?strategies={strategy}"),
        "",
    ));
    assert_eq!(again["strategy"], strategy);
    ok(&get(a.addr(), "/p2p/close/chat", ""));
}

#[test]
fn rest_session_over_tcp_direct() {
    session("direct");
}

#[test]
fn rest_session_over_the_relay() {
    session("relay");
}

/// A peer that is gone: `/p2p/open` answers a JSON error within the node's limit
/// (`--connect-timeout-s`) and leaves no connection behind.
#[test]
fn open_to_a_stopped_node_fails_cleanly() {
    let Some(s) = servers("rest-gone") else {
        return;
    };
    let a = daemon_with(&s, "gone-a", &["--connect-timeout-s", "5"]);
    let addr_b = {
        let b = daemon(&s, "gone-b");
        node_addr(&b)
    };
    node_addr(&a);
    let r = get(
        a.addr(),
        &format!("/p2p/open/x/{addr_b}?strategies=direct,relay"),
        "",
    );
    assert!((r.status, r.code()) == (502, 11), "{} {}", r.head, r.json());
    assert!(r.json()["msg"].as_str().unwrap().contains("'x'"));
    assert_eq!(
        ok(&get(a.addr(), "/p2p/cons", ""))["cons"],
        serde_json::json!([])
    );
    assert_eq!(get(a.addr(), "/p2p/con/x", "").code(), 4);
}
