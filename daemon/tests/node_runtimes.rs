//! The node (`p2pd_runtime::node`) is written once, generic over `Runtime`: two nodes in
//! one process connect and move data both ways on tokio, smol and async-std, over TCP
//! (direct) and over a datagram pipe (the relay, through `p2pd turn-server`), against
//! mosquitto and `p2pd stun-server` on loopback. Without mosquitto the tests print why and
//! pass, unless `P2PD_LAB_REQUIRED=1`.

mod common;
mod node_common;

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use p2pd_core::addr::Broker;
use p2pd_core::negotiate::{Strategy, TurnSpec};
use p2pd_runtime::Runtime;
use p2pd_runtime::interfaces::InterfaceFilter;
use p2pd_runtime::node::{Connection, Node, NodeConfig};

use node_common::{Servers, TempDir, servers};

/// Bytes each way.
const LEN: usize = 300 * 1024;

fn config(s: &Servers, home: &TempDir, accept: bool) -> NodeConfig {
    let mut c = NodeConfig::new(
        home.0.clone(),
        vec![s.stun],
        vec![Broker::Ip(s.mqtt)],
        vec![TurnSpec {
            server: s.turn,
            username: "alice".into(),
            password: "secret".into(),
        }],
    );
    c.accept = accept;
    c.connect_timeout = Duration::from_secs(30);
    c.interfaces = InterfaceFilter {
        include_loopback: true,
        include_down: false,
        names: vec!["lo".into()],
    };
    c
}

fn bytes(seed: u8) -> Vec<u8> {
    (0..LEN)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Writes `data` and shuts down writing while reading to the end (both at once: one
/// direction at a time deadlocks once both send buffers are full); returns what was read.
async fn talk<R: Runtime>(conn: &mut Connection<R>, data: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let (mut sent, mut shut, mut eof) = (0, false, false);
    std::future::poll_fn(|cx| {
        loop {
            let mut progress = false;
            if sent < data.len() {
                if let Poll::Ready(r) = conn.poll_write(cx, &data[sent..]) {
                    sent += r.expect("write");
                    progress = true;
                }
            } else if !shut && conn.poll_shutdown_write(cx).is_ready() {
                shut = true;
                progress = true;
            }
            if !eof && let Poll::Ready(r) = conn.poll_read(cx, &mut buf) {
                match r.expect("read") {
                    0 => eof = true,
                    n => got.extend_from_slice(&buf[..n]),
                }
                progress = true;
            }
            if shut && eof {
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
    })
    .await;
    conn.finish().await.expect("finish");
    got
}

async fn pair<R: Runtime>(rt: R, s: &Servers, strategy: Strategy) {
    let (ha, hb) = (TempDir::new("rt-a"), TempDir::new("rt-b"));
    let listener = Node::start(&rt, config(s, &ha, true))
        .await
        .expect("start listener");
    let connector = Node::start(&rt, config(s, &hb, false))
        .await
        .expect("start connector");
    let addr = listener.addr().clone();
    let accept = p2pd_runtime::task::spawn(&rt, async move {
        let mut conn = listener.accept().await.expect("accept");
        let strategy = conn.strategy();
        let got = talk(&mut conn, &bytes(2)).await;
        (strategy, got)
    });
    let mut conn = connector
        .connect(&addr, &[strategy])
        .await
        .expect("connect");
    assert_eq!(conn.strategy(), strategy);
    assert_eq!(conn.info().peer, *addr.key());
    let got = talk(&mut conn, &bytes(1)).await;
    let (their_strategy, their_got) = accept.join().await.expect("accept task");
    assert_eq!(their_strategy, strategy);
    assert!(
        got == bytes(2),
        "connector got {} bytes, not the listener's",
        got.len()
    );
    assert!(
        their_got == bytes(1),
        "listener got {} bytes",
        their_got.len()
    );
}

fn each_runtime(tag: &str, strategy: Strategy) {
    let Some(s) = servers(tag) else {
        return;
    };
    let limit = Duration::from_secs(60);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(limit, pair(p2pd_tokio::Tokio, &s, strategy))
                .await
                .expect("tokio: within the limit")
        });
    smol::block_on(guard(limit, pair(p2pd_smol::Smol, &s, strategy)));
    async_std::task::block_on(guard(limit, pair(p2pd_async_std::AsyncStd, &s, strategy)));
}

/// Fails the test instead of hanging it.
async fn guard(limit: Duration, f: impl Future<Output = ()>) {
    smol::future::or(f, async {
        smol::Timer::after(limit).await;
        panic!("no result within {limit:?}");
    })
    .await
}

#[test]
fn direct_on_every_runtime() {
    each_runtime("rt-direct", Strategy::Direct);
}

#[test]
fn udp_punch_on_every_runtime() {
    each_runtime("rt-punch", Strategy::UdpPunch);
}

#[test]
fn relay_on_every_runtime() {
    each_runtime("rt-relay", Strategy::Relay);
}
