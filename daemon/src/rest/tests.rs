//! The REST layer in-process, over real loopback sockets: a real HTTP server task, raw
//! HTTP requests, and real TCP connections standing in for the node's pipes.
//!
//! The p2p node (issue 7) does not exist yet, so [`TcpNode`] stands in for it: `open`
//! makes a plain TCP connection to the target address's first IPv4 route (the same kind
//! of byte stream the node's direct and TCP-punch strategies yield), wrapped as p2pd's
//! runtime-agnostic stream and bridged by [`Tokioized`], and `accept` hands
//! out TCP connections the test makes to it. Everything above the [`Node`] trait — the
//! table, send/recv/binary, pipes, close, incoming names — is the code the daemon runs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use p2pd_core::addr::{Interface, NodeAddr, Route};
use p2pd_core::identity::Identity;
use p2pd_core::nat::{Delta, DeltaKind, NatType};
use p2pd_core::negotiate::Strategy;
use p2pd_core::rng::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

use p2pd_tokio::{Runtime, Tokio};

use super::adapt::Tokioized;
use super::node::{BoxFuture, ConnInfo, Node, NodeSlot, NodeState, OpenError, Pipe};
use super::{State, http, ifs, security, server, table};

/// A node address whose first interface routes to 127.0.0.1:`port`.
fn loopback_addr(seed: u64, port: u16) -> NodeAddr {
    let key = Identity::generate(&mut Rng::seed_from_u64(seed)).public();
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    NodeAddr::new(
        key,
        vec![],
        vec![Interface {
            v4: Some(Route {
                external: lo,
                internal: lo,
                port,
                nat: NatType::OpenInternet,
                delta: Delta {
                    kind: DeltaKind::Equal,
                    value: 0,
                },
            }),
            v6: None,
        }],
    )
    .unwrap()
}

/// The stand-in node (see the module comment).
struct TcpNode {
    own: NodeAddr,
    incoming: Mutex<tokio::sync::mpsc::Receiver<TcpStream>>,
}

impl Node for TcpNode {
    fn addr(&self) -> NodeAddr {
        self.own.clone()
    }

    fn open(
        &self,
        target: NodeAddr,
        strategies: Vec<Strategy>,
    ) -> BoxFuture<'_, Result<Pipe, OpenError>> {
        Box::pin(async move {
            let route = target.interfaces()[0].v4.unwrap();
            let s = TcpStream::connect(SocketAddr::new(route.internal, route.port))
                .await
                .map_err(|e| OpenError(format!("direct: {e}")))?;
            let info = ConnInfo {
                strategy: strategies[0],
                local: s.local_addr().unwrap(),
                remote: s.peer_addr().unwrap(),
                interface: Some("lo".into()),
                peer: target.node_id().to_string(),
            };
            // Through the runtime layer's stream and the adapter, as the node will.
            let s = Tokio.wrap_tcp_stream(s.into_std().unwrap()).unwrap();
            Ok(Pipe {
                io: Box::new(Tokioized(s)),
                info,
            })
        })
    }

    fn accept(&self) -> BoxFuture<'_, Option<Pipe>> {
        Box::pin(async move {
            let s = self.incoming.lock().await.recv().await?;
            let info = ConnInfo {
                strategy: Strategy::Direct,
                local: s.local_addr().ok()?,
                remote: s.peer_addr().ok()?,
                interface: None,
                peer: "incoming-peer".into(),
            };
            Some(Pipe {
                io: Box::new(s),
                info,
            })
        })
    }
}

struct Rig {
    api: SocketAddr,
    /// The peer's listener (target of opens).
    peer: TcpListener,
    peer_addr: NodeAddr,
    /// Feeds the node's `accept`.
    incoming: tokio::sync::mpsc::Sender<TcpStream>,
}

async fn rig(max_cons: usize, token: Option<&str>) -> Rig {
    rig_with_names(max_cons, token, Vec::new()).await
}

/// A rig whose daemon resolves names on `name_servers`.
async fn rig_with_names(
    max_cons: usize,
    token: Option<&str>,
    name_servers: Vec<SocketAddr>,
) -> Rig {
    let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = loopback_addr(2, peer.local_addr().unwrap().port());
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let node = TcpNode {
        own: loopback_addr(1, 9),
        incoming: Mutex::new(rx),
    };
    let slot = NodeSlot::starting();
    slot.set(NodeState::Running(Arc::new(node)));
    let state = Arc::new(State {
        table: Arc::new(table::Table::new(max_cons)),
        node: slot,
        ifs: ifs::IfsCache::off(),
        security: security::Security {
            token: token.map(String::from),
        },
        limits: http::Limits {
            head_timeout: Duration::from_millis(500),
            ..http::Limits::default()
        },
        name_servers,
    });
    tokio::spawn(super::take_incoming(
        state.node.clone(),
        state.table.clone(),
    ));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = l.local_addr().unwrap();
    tokio::spawn(server::serve(vec![l], state));
    Rig {
        api,
        peer,
        peer_addr,
        incoming: tx,
    }
}

/// A response: status, head text, body.
struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn code(&self) -> u64 {
        self.json()["error"].as_u64().unwrap()
    }
}

fn split_response(raw: &[u8]) -> Resp {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status = head[9..12].parse().unwrap();
    Resp {
        status,
        head,
        body: raw[end + 4..].to_vec(),
    }
}

async fn raw(api: SocketAddr, request: &[u8]) -> Resp {
    let mut s = TcpStream::connect(api).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("response within 10 s")
        .unwrap();
    split_response(&out)
}

async fn get(api: SocketAddr, path: &str) -> Resp {
    raw(
        api,
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

async fn post(api: SocketAddr, path: &str, body: &[u8]) -> Resp {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    raw(api, &req).await
}

/// Opens `name` through the API and returns the peer's end.
async fn open(r: &Rig, name: &str) -> TcpStream {
    let path = format!(
        "/p2p/open/{name}/{}?strategies=tcp_punch,direct",
        r.peer_addr
    );
    let (resp, peer) = tokio::join!(get(r.api, &path), r.peer.accept());
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let j = resp.json();
    assert_eq!(j["error"], 0);
    assert_eq!(j["name"], name);
    assert_eq!(j["strategy"], "direct", "first in order of preference");
    assert_eq!(j["direction"], "outgoing");
    peer.unwrap().0
}

#[tokio::test]
async fn open_send_recv_binary_con_close() {
    let r = rig(8, None).await;
    let mut peer = open(&r, "a").await;

    let resp = get(r.api, "/p2p/send/a/hello%20there%2Fyou/and-more").await;
    assert_eq!(resp.json()["sent"], 24);
    let mut buf = vec![0u8; 24];
    peer.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf, b"hello there/you/and-more");

    peer.write_all("grüße".as_bytes()).await.unwrap();
    let j = get(r.api, "/p2p/recv/a?timeout=5").await.json();
    assert_eq!(j["data"], "grüße");

    let blob: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let resp = post(r.api, "/p2p/binary/a", &blob).await;
    assert_eq!(resp.json()["sent"], 300_000);
    let mut got = vec![0u8; blob.len()];
    peer.read_exact(&mut got).await.unwrap();
    assert_eq!(got, blob);

    peer.write_all(&[0, 159, 146, 150]).await.unwrap();
    let resp = get(r.api, "/p2p/binary/a?timeout=5").await;
    assert!(resp.head.contains("application/octet-stream"));
    assert_eq!(resp.body, [0, 159, 146, 150]);

    let j = get(r.api, "/p2p/con/a").await.json();
    assert_eq!(j["bytes_sent"], 24 + 300_000);
    assert_eq!(j["bytes_received"], 7 + 4);
    assert_eq!(j["peer"], r.peer_addr.node_id().to_string());
    assert_eq!(get(r.api, "/p2p/cons").await.json()["cons"][0]["name"], "a");

    assert_eq!(get(r.api, "/p2p/close/a").await.json()["closed"], "a");
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), peer.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "the peer sees the connection end");
    assert_eq!(get(r.api, "/p2p/con/a").await.code(), 4);
}

#[tokio::test]
async fn text_keeps_split_characters_and_refuses_non_text() {
    let r = rig(8, None).await;
    let mut peer = open(&r, "t").await;
    let euro = "€".as_bytes();
    peer.write_all(&euro[..1]).await.unwrap();
    let resp = get(r.api, "/p2p/recv/t?timeout=0.3").await;
    assert_eq!(
        (resp.status, resp.code()),
        (504, 10),
        "half a character is not text yet"
    );
    peer.write_all(&euro[1..]).await.unwrap();
    assert_eq!(
        get(r.api, "/p2p/recv/t?timeout=5").await.json()["data"],
        "€"
    );

    peer.write_all(&[0xff, b'x']).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let resp = get(r.api, "/p2p/recv/t?timeout=5").await;
    assert_eq!((resp.status, resp.code()), (422, 17));
    let resp = get(r.api, "/p2p/binary/t?timeout=5").await;
    assert_eq!(
        resp.body,
        [0xff, b'x'],
        "the refused bytes are kept for binary"
    );

    drop(peer);
    let resp = get(r.api, "/p2p/recv/t?timeout=5").await;
    assert_eq!((resp.status, resp.code()), (410, 15));
    assert_eq!(get(r.api, "/p2p/con/t").await.json()["peer_closed"], true);
}

#[tokio::test]
async fn close_ends_a_waiting_recv() {
    let r = rig(8, None).await;
    let _peer = open(&r, "w").await;
    let api = r.api;
    let waiting = tokio::spawn(async move { get(api, "/p2p/recv/w?timeout=30").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get(r.api, "/p2p/close/w").await.status, 200);
    let resp = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the recv ends at once")
        .unwrap();
    assert_eq!((resp.status, resp.code()), (410, 27));
}

#[tokio::test]
async fn pipe_relays_both_ways_and_passes_end_of_stream() {
    let r = rig(8, None).await;
    let mut peer = open(&r, "p").await;
    peer.write_all(b"early").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // "early" is left unread: the pipe must deliver bytes that arrived before it.
    let mut client = TcpStream::connect(r.api).await.unwrap();
    client
        .write_all(b"GET /p2p/pipe/p HTTP/1.1\r\nHost: [::1]:12333\r\n\r\nfirst bytes")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        client.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("content-length"),
        "{head}"
    );

    let mut got = [0u8; 11];
    peer.read_exact(&mut got).await.unwrap();
    assert_eq!(
        &got, b"first bytes",
        "bytes sent with the request head are relayed"
    );
    let mut got = [0u8; 5];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"early");

    let busy = get(r.api, "/p2p/send/p/x").await;
    assert_eq!((busy.status, busy.code()), (409, 14));
    let busy = get(r.api, "/p2p/pipe/p").await;
    assert_eq!((busy.status, busy.code()), (409, 14));

    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (big2, big3) = (big.clone(), big.clone());
    let to_peer = async {
        client.write_all(&big2).await.unwrap();
        client.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        back
    };
    let at_peer = async {
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        peer.write_all(&big3).await.unwrap();
        peer.shutdown().await.unwrap();
        got
    };
    let (back, got) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(to_peer, at_peer)
    })
    .await
    .expect("relay within 20 s");
    assert!(got == big, "client to peer intact");
    assert!(back == big, "peer to client intact");

    let j = get(r.api, "/p2p/con/p").await.json();
    assert_eq!(j["bytes_sent"], 11 + 1_000_000);
    assert_eq!(j["bytes_received"], 5 + 1_000_000);
    assert_eq!(j["piped"], false);
    assert_eq!(j["peer_closed"], true);
    assert_eq!(j["send_closed"], true);
}

#[tokio::test]
async fn incoming_connections_are_named_and_accepted() {
    let r = rig(8, None).await;
    let resp = get(r.api, "/p2p/accept?timeout=0.2").await;
    assert_eq!((resp.status, resp.code()), (504, 28));

    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (mut far, near) = tokio::join!(TcpStream::connect(l.local_addr().unwrap()), l.accept());
    r.incoming.send(near.unwrap().0).await.unwrap();
    let j = get(r.api, "/p2p/accept?timeout=5").await.json();
    assert_eq!(j["name"], "in-1");
    assert_eq!(j["direction"], "incoming");
    far.as_mut().unwrap().write_all(b"hi").await.unwrap();
    assert_eq!(
        get(r.api, "/p2p/recv/in-1?timeout=5").await.json()["data"],
        "hi"
    );
    let resp = get(r.api, "/p2p/accept?timeout=0").await;
    assert_eq!(
        resp.code(),
        28,
        "each incoming connection is handed out once"
    );
}

#[tokio::test]
async fn open_errors() {
    let r = rig(2, None).await;
    let addr = r.peer_addr.to_string();
    let check = |resp: Resp, status: u16, code: u64| {
        assert_eq!(
            (resp.status, resp.code()),
            (status, code),
            "{}",
            String::from_utf8_lossy(&resp.body)
        );
    };
    check(get(r.api, "/p2p/open/a/p2pd1:abc").await, 400, 7);
    check(get(r.api, "/p2p/open/a/non_sense").await, 400, 7);
    // A valid name, and this daemon has no name servers.
    check(get(r.api, "/p2p/open/a/nonsense").await, 502, 31);
    check(
        get(r.api, &format!("/p2p/open/a/{addr}?strategies=teleport")).await,
        400,
        8,
    );
    check(get(r.api, &format!("/p2p/open/a%20b/{addr}")).await, 400, 6);
    check(get(r.api, &format!("/p2p/open/a/{addr}?x=1")).await, 400, 9);
    let _p1 = open(&r, "one").await;
    check(get(r.api, &format!("/p2p/open/one/{addr}")).await, 409, 5);
    let _p2 = open(&r, "two").await;
    check(
        get(r.api, &format!("/p2p/open/three/{addr}")).await,
        503,
        13,
    );
    check(get(r.api, "/p2p/close/one").await, 200, 0);
    // A target nobody listens on: the node's error comes back as open_failed.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = loopback_addr(3, dead.local_addr().unwrap().port());
    drop(dead);
    check(
        get(r.api, &format!("/p2p/open/x/{dead_addr}")).await,
        502,
        11,
    );
    assert_eq!(
        get(r.api, "/p2p/cons").await.json()["cons"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "the failed open released its name"
    );
}

#[tokio::test]
async fn token_is_required_when_configured() {
    let token = "0123456789abcdef-secret";
    let r = rig(2, Some(token)).await;
    let resp = get(r.api, "/version").await;
    assert_eq!((resp.status, resp.code()), (401, 20));
    assert!(resp.head.contains("WWW-Authenticate: Bearer"));
    let with = |t: &str| {
        format!("GET /version HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {t}\r\n\r\n")
    };
    assert_eq!(
        raw(r.api, with("wrong-token-wrong-token").as_bytes())
            .await
            .code(),
        20
    );
    let ok = raw(r.api, with(token).as_bytes()).await;
    assert_eq!((ok.status, ok.code()), (200, 0));
    assert_eq!(ok.json()["node"], "running");
}

#[tokio::test]
async fn a_stalled_request_head_times_out() {
    let r = rig(2, None).await;
    let mut s = TcpStream::connect(r.api).await.unwrap();
    s.write_all(b"GET /version HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("answered after the head timeout")
        .unwrap();
    let resp = split_response(&out);
    assert_eq!((resp.status, resp.code()), (408, 23));
}

/// Starts `/p2p/pipe/{name}` and returns the socket after the response head.
async fn start_pipe(api: SocketAddr, name: &str) -> TcpStream {
    let mut client = TcpStream::connect(api).await.unwrap();
    client
        .write_all(format!("GET /p2p/pipe/{name} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        client.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"));
    client
}

#[tokio::test]
async fn close_ends_a_pipe() {
    let r = rig(8, None).await;
    let mut peer = open(&r, "c").await;
    let mut client = start_pipe(r.api, "c").await;
    client.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    peer.read_exact(&mut one).await.unwrap();
    assert_eq!(get(r.api, "/p2p/close/c").await.status, 200);
    let ends = async {
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest).await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(5), ends)
        .await
        .expect("both ends see the connection end");
    assert_eq!(get(r.api, "/p2p/con/c").await.code(), 4);
}

#[tokio::test]
async fn a_pipe_after_the_peer_left_delivers_what_is_left_then_ends() {
    let r = rig(8, None).await;
    let mut peer = open(&r, "g").await;
    peer.write_all(&[0xfe, b'a']).await.unwrap();
    drop(peer);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A text recv reads the bytes, refuses them as text and keeps them.
    assert_eq!(get(r.api, "/p2p/recv/g?timeout=5").await.code(), 17);
    let mut client = start_pipe(r.api, "g").await;
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest))
        .await
        .expect("the pipe ends")
        .unwrap();
    assert_eq!(rest, [0xfe, b'a']);
}

/// Pipe relay throughput against raw loopback TCP (a figure, not a check). Run with
/// `cargo test --release -p p2pd --bin p2pd pipe_throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn pipe_throughput() {
    const SIZE: usize = 100 * 1024 * 1024;
    let chunk = vec![0x5au8; 256 * 1024];
    async fn pump(mut w: impl AsyncWriteExt + Unpin, chunk: &[u8]) {
        let mut sent = 0;
        while sent < SIZE {
            w.write_all(chunk).await.unwrap();
            sent += chunk.len();
        }
        w.shutdown().await.unwrap();
    }
    async fn drain(mut r: impl AsyncReadExt + Unpin) -> usize {
        let mut buf = vec![0u8; 256 * 1024];
        let mut n = 0;
        loop {
            match r.read(&mut buf).await.unwrap() {
                0 => return n,
                k => n += k,
            }
        }
    }
    // Raw TCP, both ways at once.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (a, b) = tokio::join!(TcpStream::connect(l.local_addr().unwrap()), l.accept());
    let (ar, aw) = a.unwrap().into_split();
    let (br, bw) = b.unwrap().0.into_split();
    let t = std::time::Instant::now();
    let (_, _, x, y) = tokio::join!(pump(aw, &chunk), pump(bw, &chunk), drain(br), drain(ar));
    let raw_s = t.elapsed().as_secs_f64();
    assert_eq!((x, y), (SIZE, SIZE));

    // Through the daemon: client <-> pipe <-> connection <-> peer.
    let r = rig(8, None).await;
    let peer = open(&r, "tp").await;
    let client = start_pipe(r.api, "tp").await;
    let (cr, cw) = client.into_split();
    let (pr, pw) = peer.into_split();
    let t = std::time::Instant::now();
    let (_, _, x, y) = tokio::join!(pump(cw, &chunk), pump(pw, &chunk), drain(pr), drain(cr));
    let pipe_s = t.elapsed().as_secs_f64();
    assert_eq!((x, y), (SIZE, SIZE));
    let mb = SIZE as f64 / 1e6;
    println!(
        "100 MB each way at once: raw loopback TCP {:.0} MB/s per direction, through /p2p/pipe {:.0} MB/s per direction",
        mb / raw_s,
        mb / pipe_s
    );
}

/// `/p2p/open/{con}/{name}`: a name registered on a real name server (the daemon's own
/// server loop, on a redb file) resolves to the peer's address and the connection opens;
/// an unknown name is `unknown_peer_name`; a silent server `name_lookup_failed`.
#[tokio::test]
async fn open_by_name() {
    use p2pd_core::names::{ClientConfig, Name, Operation, ServerConfig, SignedWrite};

    let dir = std::env::temp_dir().join(format!("p2pd-rest-names-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = crate::name_store::RedbStore::open(&dir.join("names.redb")).unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = socket.local_addr().unwrap();
    // The server loop never returns; the thread ends with the test process.
    std::thread::spawn(move || {
        let _ = crate::name_cmd::serve(
            socket,
            store,
            ServerConfig::default(),
            Rng::seed_from_u64(5),
        );
    });
    let r = rig_with_names(4, None, vec![server]).await;
    // The peer (seed 2, as the rig's peer address) names itself.
    let peer_id = Identity::generate(&mut Rng::seed_from_u64(2));
    let name = Name::parse("rest-peer").unwrap();
    let write = SignedWrite::sign(
        &peer_id,
        name.clone(),
        Some(r.peer_addr.clone()),
        p2pd_tokio::names::unix_ms_now(),
    );
    let done = p2pd_tokio::names::run(
        &Tokio,
        Operation::Write(Box::new(write)),
        &[server],
        ClientConfig::default(),
        &mut Rng::seed_from_u64(6),
    )
    .await
    .unwrap();
    assert_eq!(done.accepted(), vec![server]);

    let resp = get(r.api, "/p2p/open/byname/rest-peer").await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let j = resp.json();
    assert_eq!(j["peer"], r.peer_addr.node_id().to_string(), "{j}");
    let (mut far, _) = r.peer.accept().await.unwrap();
    far.write_all(b"by name").await.unwrap();
    assert_eq!(
        get(r.api, "/p2p/recv/byname?timeout=5").await.json()["data"],
        "by name"
    );

    let resp = get(r.api, "/p2p/open/other/nobody-here").await;
    assert_eq!(
        (resp.status, resp.code()),
        (404, 30),
        "{}",
        String::from_utf8_lossy(&resp.body)
    );
    assert!(String::from_utf8_lossy(&resp.body).contains("nobody-here"));
    let _ = std::fs::remove_dir_all(&dir);
}
