//! `p2pd turn-server` on real loopback sockets, used by coturn's standard client
//! `turnutils_uclient` over UDP and TCP (its relayed echo between two allocations, and to
//! an external `turnutils_peer`), and refused with a wrong password.
//!
//! p2pd's own TURN client (core's `TurnClient` via the runtime's `TurnSession`) relays
//! through it too.
//!
//! `turnutils_uclient` exits 0 even when it fails (lab NOTES §3.3), so its output is read.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use p2pd_core::rng::Rng;
use p2pd_core::turn::{TurnClientConfig, TurnClientError, TurnClientEvent};
use p2pd_tokio::Tokio;
use p2pd_tokio::turn::{TurnSession, TurnSessionError};

const BIN: &str = env!("CARGO_BIN_EXE_p2pd");

/// A running child, killed when dropped (also when a test panics).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `p2pd turn-server` on 127.0.0.1 with a free port and user alice:secret.
fn start_turn_server() -> (Running, SocketAddr) {
    let mut child = Command::new(BIN)
        .args([
            "turn-server",
            "--listen",
            "127.0.0.1:0",
            "--realm",
            "p2pd.test",
        ])
        .args(["--user", "alice:secret", "--user", "bob:hunter2", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn p2pd turn-server");
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("p2pd turn-server printed no address within 20 s");
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON listening line");
    let addr = v["listening"].as_str().unwrap().parse().unwrap();
    (running, addr)
}

fn uclient(server: SocketAddr, args: &[&str]) -> String {
    let out: Output = Command::new("timeout")
        .arg("60")
        .arg("turnutils_uclient")
        .args(args)
        .args(["-p", &server.port().to_string(), &server.ip().to_string()])
        .output()
        .expect("turnutils_uclient (coturn) must be installed for this test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(124), "uclient hung:\n{text}");
    text
}

/// The last `tot_send_msgs=N, tot_recv_msgs=M` and the lost-packet count uclient printed.
fn totals(text: &str) -> (u64, u64, u64) {
    let num = |line: &str, key: &str| -> Option<u64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let mut sent = 0;
    let mut received = 0;
    let mut lost = u64::MAX;
    for line in text.lines() {
        if let (Some(s), Some(r)) = (num(line, "tot_send_msgs="), num(line, "tot_recv_msgs=")) {
            sent = s;
            received = r;
        }
        if let Some(l) = num(line, "Total lost packets ") {
            lost = l;
        }
    }
    (sent, received, lost)
}

fn assert_all_echoed(text: &str, expected: u64) {
    assert!(
        !text.contains("ERROR"),
        "uclient reported an error:\n{text}"
    );
    let (sent, received, lost) = totals(text);
    assert_eq!(sent, expected, "messages sent:\n{text}");
    assert_eq!(received, expected, "messages echoed back:\n{text}");
    assert_eq!(lost, 0, "lost packets:\n{text}");
}

#[test]
fn uclient_relays_between_its_own_allocations_over_udp() {
    let (_server, addr) = start_turn_server();
    // -y: client-to-client through two allocations; -m 2 clients, each an RTP/RTCP pair
    // (EVEN-PORT with a reservation, then RESERVATION-TOKEN), 10 messages each.
    let text = uclient(
        addr,
        &["-u", "alice", "-w", "secret", "-y", "-n", "10", "-m", "2"],
    );
    assert_all_echoed(&text, 40);
}

#[test]
fn uclient_relays_over_tcp() {
    let (_server, addr) = start_turn_server();
    let text = uclient(
        addr,
        &[
            "-t", "-u", "bob", "-w", "hunter2", "-y", "-n", "10", "-m", "2",
        ],
    );
    assert_all_echoed(&text, 40);
}

#[test]
fn uclient_with_send_indications_and_extra_requests() {
    let (_server, addr) = start_turn_server();
    // -s: Send/Data indications instead of ChannelData; -G: extra CreatePermission and
    // ChannelBind refreshes; -c: one allocation per client (no RTCP pair).
    let text = uclient(
        addr,
        &[
            "-s", "-G", "-c", "-u", "alice", "-w", "secret", "-y", "-n", "10", "-m", "2",
        ],
    );
    assert_all_echoed(&text, 20);
}

#[test]
fn uclient_reaches_an_external_peer() {
    let (_server, addr) = start_turn_server();
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer_port = probe.local_addr().unwrap().port();
    drop(probe);
    let peer = Running(
        Command::new("turnutils_peer")
            .args(["-L", "127.0.0.1", "-p", &peer_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnutils_peer (coturn) must be installed"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let text = uclient(
        addr,
        &[
            "-c",
            "-u",
            "alice",
            "-w",
            "secret",
            "-e",
            "127.0.0.1",
            "-r",
            &peer_port.to_string(),
            "-n",
            "10",
            "-m",
            "2",
        ],
    );
    drop(peer);
    assert_all_echoed(&text, 20);
}

#[test]
fn uclient_with_a_wrong_password_cannot_allocate() {
    let (_server, addr) = start_turn_server();
    let text = uclient(
        addr,
        &["-u", "alice", "-w", "wrong", "-y", "-n", "10", "-m", "1"],
    );
    assert!(
        text.contains("Cannot complete Allocation"),
        "a wrong password must be refused:\n{text}"
    );
    assert_eq!(totals(&text).1, 0, "nothing relayed:\n{text}");
}

// ----- p2pd's own TURN client (core's TurnClient through the runtime's TurnSession) ----

fn client_config(tcp: bool, server: SocketAddr, user: &str, pass: &str) -> TurnClientConfig {
    let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
    if tcp {
        TurnClientConfig::tcp(server, any, user, pass)
    } else {
        TurnClientConfig::udp(server, any, user, pass)
    }
}

/// Waits for the next Data event (5 s at most), keeping refreshes and the like aside.
async fn next_data(s: &mut TurnSession<Tokio>) -> (SocketAddr, Vec<u8>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match s.next_event_until(deadline).await.expect("session") {
            Some(TurnClientEvent::Data { peer, bytes }) => return (peer, bytes),
            Some(_) => {}
            None => panic!("no data within 5 s"),
        }
    }
}

/// Two p2pd TURN clients allocate on `p2pd turn-server`, bind channels to each other's
/// relayed address and exchange numbered messages both ways, then release.
async fn two_clients_exchange(tcp: bool) {
    let (_server, addr) = start_turn_server();
    let mut a = TurnSession::connect(
        &Tokio,
        client_config(tcp, addr, "alice", "secret"),
        Rng::seed_from_u64(1),
    )
    .await
    .unwrap();
    let mut b = TurnSession::connect(
        &Tokio,
        client_config(tcp, addr, "bob", "hunter2"),
        Rng::seed_from_u64(2),
    )
    .await
    .unwrap();
    let ra = a.allocate().await.unwrap();
    let rb = b.allocate().await.unwrap();
    assert_eq!(ra.relayed.ip(), addr.ip());
    assert_ne!(ra.relayed, rb.relayed);
    // XOR-MAPPED-ADDRESS is the client's socket as the server saw it (a UDP socket is
    // bound to 0.0.0.0, so compare ports).
    assert_eq!(ra.mapped.map(|m| m.port()), Some(a.local_addr().port()));
    assert_eq!(ra.mapped.map(|m| m.ip()), Some(addr.ip()));
    // alice starts with a permission (Send indications), bob with a channel.
    a.create_permission(rb.relayed.ip()).await.unwrap();
    b.bind_channel(ra.relayed).await.unwrap();
    for i in 0..10u32 {
        let msg = format!("a->b {i}");
        a.send_to(rb.relayed, msg.as_bytes()).await.unwrap();
        assert_eq!(next_data(&mut b).await, (ra.relayed, msg.into_bytes()));
        let msg = format!("b->a {i}");
        b.send_to(ra.relayed, msg.as_bytes()).await.unwrap();
        assert_eq!(next_data(&mut a).await, (rb.relayed, msg.into_bytes()));
        if i == 4 {
            // Halfway, alice moves to a channel too.
            a.bind_channel(rb.relayed).await.unwrap();
        }
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
    // The server answered the Refresh 0 only after closing the relay sockets
    // (ReleaseRelay), so their ports are free again.
    for relayed in [ra.relayed, rb.relayed] {
        std::net::UdpSocket::bind(relayed)
            .unwrap_or_else(|e| panic!("relay socket {relayed} still open after close: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2pd_client_relays_through_p2pd_turn_server_over_udp() {
    two_clients_exchange(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2pd_client_relays_through_p2pd_turn_server_over_tcp() {
    two_clients_exchange(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2pd_client_with_a_wrong_password_is_told_so() {
    let (_server, addr) = start_turn_server();
    let mut a = TurnSession::connect(
        &Tokio,
        client_config(false, addr, "alice", "nope"),
        Rng::seed_from_u64(3),
    )
    .await
    .unwrap();
    match a.allocate().await {
        Err(TurnSessionError::Turn(TurnClientError::WrongCredentials { username, realm })) => {
            assert_eq!((username.as_str(), realm.as_str()), ("alice", "p2pd.test"));
        }
        other => panic!("expected wrong credentials, got {other:?}"),
    }
}

#[test]
fn bytes_that_are_neither_stun_nor_channel_data_close_a_tcp_connection() {
    use std::io::{Read, Write};
    let (_server, addr) = start_turn_server();
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(&[0xC0; 64]).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        tcp.read(&mut buf).unwrap(),
        0,
        "the server closes the connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tcp_connections_without_an_allocation_are_closed_but_allocated_ones_stay() {
    use p2pd_core::turn::TurnServerConfig;
    use p2pd_tokio::turn_server::BoundTurnServer;
    use tokio::io::AsyncReadExt;
    let cfg = TurnServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        "p2pd.test",
        vec![("alice".into(), "secret".into())],
    );
    let mut bound = BoundTurnServer::bind(&Tokio, cfg, Rng::seed_from_u64(5)).unwrap();
    bound.set_idle_timeout(Duration::from_millis(300));
    let addr = bound.local_address();
    let server = tokio::spawn(bound.run());
    // A client with a TCP allocation, silent afterwards.
    let mut a = TurnSession::connect(
        &Tokio,
        client_config(true, addr, "alice", "secret"),
        Rng::seed_from_u64(6),
    )
    .await
    .unwrap();
    a.allocate().await.unwrap();
    // A connection that never says anything.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 8];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0))),
        "the silent connection is closed: {read:?}"
    );
    // The allocated one still works well after the idle time.
    tokio::time::sleep(Duration::from_millis(600)).await;
    a.create_permission("127.0.0.1".parse().unwrap())
        .await
        .unwrap();
    a.close().await.unwrap();
    server.abort();
}

/// The server loop is generic over the runtime: the same uclient exchanges, UDP and TCP,
/// with the loop on smol and on async-std (in-process; the binary runs it on tokio).
fn serve_on<R: p2pd_runtime::Runtime>(
    rt: R,
    block_on: fn(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>),
) -> SocketAddr {
    use p2pd_core::turn::TurnServerConfig;
    let cfg = TurnServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        "p2pd.test",
        vec![("alice".into(), "secret".into())],
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        block_on(Box::pin(async move {
            let bound =
                p2pd_runtime::turn_server::BoundTurnServer::bind(&rt, cfg, Rng::seed_from_u64(9))
                    .unwrap();
            tx.send(bound.local_address()).unwrap();
            let _ = bound.run().await;
        }))
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

#[test]
fn uclient_against_the_loop_on_smol_and_async_std() {
    let servers = [
        serve_on(p2pd_smol::Smol, smol::block_on),
        serve_on(p2pd_async_std::AsyncStd, async_std::task::block_on),
    ];
    for addr in servers {
        let text = uclient(
            addr,
            &["-u", "alice", "-w", "secret", "-y", "-n", "10", "-m", "2"],
        );
        assert_all_echoed(&text, 40);
        let text = uclient(
            addr,
            &[
                "-t", "-u", "alice", "-w", "secret", "-y", "-n", "10", "-m", "2",
            ],
        );
        assert_all_echoed(&text, 40);
    }
}
