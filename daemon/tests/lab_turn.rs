//! p2pd's TURN client (core `TurnClient`, driven by `p2pd_tokio::turn::TurnSession`)
//! against coturn, from hosts behind symmetric random-port NATs (see `lab/`): allocation
//! with long-term credentials, permissions, channels and data both ways over UDP and over
//! TCP to the server; refreshes keeping a short-lived allocation alive; a wrong password.
//! Needs root and the lab's packages; skips otherwise (fails under
//! `P2PD_LAB_REQUIRED=1`, as in CI).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use p2pd_core::Transport;
use p2pd_core::rng::Rng;
use p2pd_core::stream::{Config as StreamConfig, Connection};
use p2pd_core::turn::{AddressFamily, TurnClientConfig, TurnClientError, TurnClientEvent};
use p2pd_lab::{
    Lab, RouterKind, SERVER_IP1, SERVER_IP6_1, STUN_PORT, SymmetricPorts, TURN_PASSWORD,
    TURN_REALM, TURN_USER,
};
use p2pd_tokio::Tokio;
use p2pd_tokio::turn::{TurnSession, TurnSessionError};

/// Sequenced datagrams sent each way.
const DATAGRAMS: u32 = 1000;
/// Bytes per datagram.
const DATAGRAM_LEN: usize = 1000;

fn server() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(SERVER_IP1), STUN_PORT)
}

fn config(transport: Transport, password: &str) -> TurnClientConfig {
    let placeholder = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut c = TurnClientConfig::udp(server(), placeholder, TURN_USER, password);
    c.transport = transport;
    c
}

/// A client of coturn over IPv6 asking for an IPv6 relay when `v6`, else [`config`].
fn config_for(transport: Transport, v6: bool) -> TurnClientConfig {
    let mut c = config(transport, TURN_PASSWORD);
    if v6 {
        c.server = SocketAddr::new(IpAddr::V6(SERVER_IP6_1), STUN_PORT);
        c.relay_family = AddressFamily::V6;
    }
    c
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The payload of datagram `seq` from side `from`: the sequence number, then bytes that
/// follow from both, so corruption or a mix-up of senders is caught.
fn payload(from: u8, seq: u32) -> Vec<u8> {
    let mut v = seq.to_be_bytes().to_vec();
    let mut x = u32::from(from).wrapping_mul(0x9E37_79B9) ^ seq.wrapping_mul(0x85EB_CA6B);
    while v.len() < DATAGRAM_LEN {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push(x as u8);
    }
    v
}

#[derive(Debug)]
struct SideReport {
    relayed: SocketAddr,
    mapped: Option<SocketAddr>,
    received: u32,
    bytes: usize,
    channel_data_sent: u64,
    channel_data_received: u64,
    elapsed: Duration,
}

/// One side of the exchange: allocate, learn the peer's relayed address, permit it,
/// bind a channel, send `DATAGRAMS` and receive the peer's, then close.
async fn side(
    me: u8,
    transport: Transport,
    v6: bool,
    to_peer: Sender<SocketAddr>,
    from_peer: Receiver<SocketAddr>,
    barrier: &Barrier,
) -> Result<SideReport, String> {
    let rt = Tokio;
    let mut s = TurnSession::connect(
        &rt,
        config_for(transport, v6),
        Rng::seed_from_u64(u64::from(me)),
    )
    .await
    .map_err(|e| e.to_string())?;
    let alloc = s.allocate().await.map_err(|e| e.to_string())?;
    to_peer.send(alloc.relayed).map_err(|e| e.to_string())?;
    let peer = from_peer
        .recv_timeout(Duration::from_secs(20))
        .map_err(|e| format!("peer's relayed address: {e}"))?;
    s.create_permission(peer.ip())
        .await
        .map_err(|e| e.to_string())?;
    s.bind_channel(peer).await.map_err(|e| e.to_string())?;
    barrier.wait();
    let start = Instant::now();
    let other = 1 - me;
    let mut got = BTreeSet::new();
    let mut bytes = 0;
    let mut check = |event: TurnClientEvent, got: &mut BTreeSet<u32>| -> Result<(), String> {
        match event {
            TurnClientEvent::Data {
                peer: from,
                bytes: b,
            } => {
                if from != peer {
                    return Err(format!("data from {from}, expected {peer}"));
                }
                let seq = b
                    .get(..4)
                    .map(|h| u32::from_be_bytes([h[0], h[1], h[2], h[3]]))
                    .ok_or("short datagram")?;
                if b != payload(other, seq) {
                    return Err(format!("datagram {seq} corrupted"));
                }
                if !got.insert(seq) {
                    return Err(format!("datagram {seq} duplicated"));
                }
                bytes += b.len();
                Ok(())
            }
            TurnClientEvent::Refreshed { .. } => Ok(()),
            other => Err(format!("unexpected event {other:?}")),
        }
    };
    for seq in 0..DATAGRAMS {
        s.send_to(peer, &payload(me, seq))
            .await
            .map_err(|e| e.to_string())?;
        // Pace a little and drain what arrived, so neither kernel buffer overflows.
        let wait = if seq % 4 == 3 {
            Duration::from_millis(1)
        } else {
            Duration::ZERO
        };
        let until = Instant::now() + wait;
        while let Some(e) = s.next_event_until(until).await.map_err(|e| e.to_string())? {
            check(e, &mut got)?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < DATAGRAMS as usize {
        match s
            .next_event_until(deadline)
            .await
            .map_err(|e| e.to_string())?
        {
            Some(e) => check(e, &mut got)?,
            None => break,
        }
    }
    let elapsed = start.elapsed();
    barrier.wait();
    let stats = s.client().stats();
    s.close().await.map_err(|e| format!("close: {e}"))?;
    Ok(SideReport {
        relayed: alloc.relayed,
        mapped: alloc.mapped,
        received: got.len() as u32,
        bytes,
        channel_data_sent: stats.channel_data_sent,
        channel_data_received: stats.channel_data_received,
        elapsed,
    })
}

fn exchange(transport: Transport, v6: bool) {
    let random = RouterKind::Symmetric(SymmetricPorts::Random);
    let lab = if v6 {
        Lab::ipv6(random)
    } else {
        Lab::two_lans(random, random)
    }
    .expect("build lab");
    lab.start_coturn().expect("coturn");
    let (a_tx, b_rx) = channel();
    let (b_tx, a_rx) = channel();
    let barrier = Barrier::new(2);
    let (a, b) = std::thread::scope(|scope| {
        let barrier = &barrier;
        let lab = &lab;
        let a = scope.spawn(move || {
            lab.host(0)
                .ns()
                .enter(|| runtime().block_on(side(0, transport, v6, a_tx, a_rx, barrier)))
        });
        let b = scope.spawn(move || {
            lab.host(1)
                .ns()
                .enter(|| runtime().block_on(side(1, transport, v6, b_tx, b_rx, barrier)))
        });
        (a.join(), b.join())
    });
    let a = a.expect("side 0 panicked").expect("enter ns 0");
    let b = b.expect("side 1 panicked").expect("enter ns 1");
    let (a, b) = (a.expect("side 0"), b.expect("side 1"));
    eprintln!("{transport:?} to the server:\n  A {a:?}\n  B {b:?}");
    for (r, router) in [(&a, 0), (&b, 1)] {
        eprintln!(
            "  {} bytes received in {:?} ({:.1} Mbit/s)",
            r.bytes,
            r.elapsed,
            r.bytes as f64 * 8.0 / r.elapsed.as_secs_f64() / 1e6
        );
        let (relay_ip, seen_as) = if v6 {
            // IPv6 is routed, not translated: the server sees the host itself.
            let host = lab.host(router).addr6().expect("host IPv6 address");
            (IpAddr::V6(SERVER_IP6_1), IpAddr::V6(host))
        } else {
            let wan = lab.router(router).wan_addr();
            (IpAddr::V4(SERVER_IP1), IpAddr::V4(wan))
        };
        assert_eq!(r.relayed.ip(), relay_ip, "{r:?}");
        assert_eq!(
            r.mapped.map(|m| m.ip()),
            Some(seen_as),
            "the server saw the host's public address: {r:?}"
        );
        assert_eq!(r.received, DATAGRAMS, "every datagram arrived: {r:?}");
        assert_eq!(r.bytes, DATAGRAMS as usize * DATAGRAM_LEN);
        assert_eq!(
            r.channel_data_sent,
            u64::from(DATAGRAMS),
            "sent over the channel"
        );
        assert_eq!(
            r.channel_data_received,
            u64::from(DATAGRAMS),
            "the server relayed to us over the channel"
        );
    }
}

#[test]
fn udp_to_server_two_symmetric_nats_exchange_over_channels() {
    p2pd_lab::require!();
    exchange(Transport::Udp, false);
}

#[test]
fn tcp_to_server_two_symmetric_nats_exchange_over_channels() {
    p2pd_lab::require!();
    exchange(Transport::Tcp, false);
}

#[test]
fn ipv6_relays_over_udp_and_tcp_to_the_server() {
    p2pd_lab::require!();
    exchange(Transport::Udp, true);
    exchange(Transport::Tcp, true);
}

#[test]
fn wrong_password_is_a_clear_error() {
    p2pd_lab::require!();
    let lab = Lab::one_lan(RouterKind::Symmetric(SymmetricPorts::Random)).expect("build lab");
    lab.start_coturn().expect("coturn");
    for transport in [Transport::Udp, Transport::Tcp] {
        let started = Instant::now();
        let r = lab
            .host(0)
            .ns()
            .enter(|| {
                runtime().block_on(async {
                    let mut s = TurnSession::connect(
                        &Tokio,
                        config(transport, "not-the-password"),
                        Rng::seed_from_u64(3),
                    )
                    .await?;
                    s.allocate().await
                })
            })
            .expect("enter ns");
        let elapsed = started.elapsed();
        let err = r.expect_err("a wrong password must not allocate");
        let text = err.to_string();
        eprintln!("{transport:?}: {text} (after {elapsed:?})");
        assert!(
            matches!(
                err,
                TurnSessionError::Turn(TurnClientError::WrongCredentials { .. })
            ),
            "{err:?}"
        );
        assert!(
            text.contains(&format!(
                "wrong username or password for realm \"{TURN_REALM}\""
            )),
            "{text}"
        );
        assert!(elapsed < Duration::from_secs(5), "an answer, not a timeout");
    }
}

/// The allocation lifetime coturn is configured to grant in the refresh test.
const SHORT_LIFETIME: u32 = 10;

#[derive(Debug)]
struct RefreshReport {
    granted: Duration,
    refreshes: Vec<(Duration, Duration)>,
    alive_for: Duration,
    received: usize,
    stats: p2pd_core::turn::TurnClientStats,
}

/// Allocates, permits the peer, idles `3 × lifetime` while the client refreshes, then
/// exchanges Send/Data indications with the peer through the allocation.
async fn refresh_side(
    me: u8,
    to_peer: Sender<SocketAddr>,
    from_peer: Receiver<SocketAddr>,
    barrier: &Barrier,
) -> Result<RefreshReport, String> {
    let rt = Tokio;
    let mut s = TurnSession::connect(
        &rt,
        config(Transport::Udp, TURN_PASSWORD),
        Rng::seed_from_u64(u64::from(me) + 10),
    )
    .await
    .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let alloc = s.allocate().await.map_err(|e| e.to_string())?;
    to_peer.send(alloc.relayed).map_err(|e| e.to_string())?;
    let peer = from_peer
        .recv_timeout(Duration::from_secs(20))
        .map_err(|e| format!("peer's relayed address: {e}"))?;
    s.create_permission(peer.ip())
        .await
        .map_err(|e| e.to_string())?;
    barrier.wait();
    let idle_until = start + alloc.lifetime * 3;
    let mut refreshes = Vec::new();
    while let Some(e) = s
        .next_event_until(idle_until)
        .await
        .map_err(|e| e.to_string())?
    {
        match e {
            TurnClientEvent::Refreshed { lifetime } => refreshes.push((start.elapsed(), lifetime)),
            other => return Err(format!("unexpected event while idle: {other:?}")),
        }
    }
    barrier.wait();
    // Past three lifetimes: the allocation must still relay, both ways.
    for seq in 0..10u32 {
        s.send_to(peer, &payload(me, seq))
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut got = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < 10 {
        match s
            .next_event_until(deadline)
            .await
            .map_err(|e| e.to_string())?
        {
            Some(TurnClientEvent::Data { peer: from, bytes }) if from == peer => {
                let seq = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                if bytes != payload(1 - me, seq) {
                    return Err(format!("datagram {seq} corrupted"));
                }
                got.insert(seq);
            }
            Some(TurnClientEvent::Refreshed { lifetime }) => {
                refreshes.push((start.elapsed(), lifetime));
            }
            Some(other) => return Err(format!("unexpected event: {other:?}")),
            None => break,
        }
    }
    let alive_for = start.elapsed();
    barrier.wait();
    let stats = s.client().stats();
    s.close().await.map_err(|e| format!("close: {e}"))?;
    Ok(RefreshReport {
        granted: alloc.lifetime,
        refreshes,
        alive_for,
        received: got.len(),
        stats,
    })
}

#[test]
fn refreshes_keep_a_short_allocation_alive_past_its_lifetime() {
    p2pd_lab::require!();
    let random = RouterKind::Symmetric(SymmetricPorts::Random);
    let lab = Lab::two_lans(random, random).expect("build lab");
    lab.start_coturn_max_lifetime(SHORT_LIFETIME)
        .expect("coturn");
    let (a_tx, b_rx) = channel();
    let (b_tx, a_rx) = channel();
    let barrier = Barrier::new(2);
    let (a, b) = std::thread::scope(|scope| {
        let barrier = &barrier;
        let lab = &lab;
        let a = scope.spawn(move || {
            lab.host(0)
                .ns()
                .enter(|| runtime().block_on(refresh_side(0, a_tx, a_rx, barrier)))
        });
        let b = scope.spawn(move || {
            lab.host(1)
                .ns()
                .enter(|| runtime().block_on(refresh_side(1, b_tx, b_rx, barrier)))
        });
        (a.join(), b.join())
    });
    let a = a.expect("side 0 panicked").expect("enter ns 0");
    let b = b.expect("side 1 panicked").expect("enter ns 1");
    let (a, b) = (a.expect("side 0"), b.expect("side 1"));
    eprintln!("A {a:?}\nB {b:?}");
    let lifetime = Duration::from_secs(u64::from(SHORT_LIFETIME));
    for r in [&a, &b] {
        assert_eq!(r.granted, lifetime, "coturn granted the configured maximum");
        assert!(r.alive_for > lifetime * 3, "{r:?}");
        assert!(
            r.refreshes.len() >= 5,
            "refreshed every half lifetime: {r:?}"
        );
        for pair in r.refreshes.windows(2) {
            let gap = pair[1].0 - pair[0].0;
            assert!(
                gap >= lifetime / 2 - Duration::from_millis(200)
                    && gap <= lifetime / 2 + Duration::from_secs(1),
                "refresh gap {gap:?}: {r:?}"
            );
        }
        assert_eq!(r.received, 10, "data relayed after three lifetimes: {r:?}");
        assert_eq!(r.stats.send_indications, 10, "{r:?}");
        assert_eq!(r.stats.data_indications, 10, "{r:?}");
    }
}

/// Bytes each side sends in the reliable-stream transfer.
const STREAM_BYTES: usize = 10 * 1024 * 1024;

/// The bytes side `from` sends: a xorshift stream, so any corruption, loss or reordering
/// of the byte stream shows.
fn stream_bytes(from: u8) -> Vec<u8> {
    let mut x = 0x2545_F491_4F6C_DD1Du64 ^ u64::from(from + 1);
    (0..STREAM_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// FNV-1a, 64-bit: the checksum the two sides compare.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Debug)]
struct StreamReport {
    received: usize,
    checksum: u64,
    expected: u64,
    elapsed: Duration,
    stream: p2pd_core::stream::Stats,
    turn: p2pd_core::turn::TurnClientStats,
}

/// One side of a 10 MB-each-way transfer: core's reliable stream ([`Connection`]) over
/// the TURN channel to the peer's relayed address.
async fn stream_side(
    me: u8,
    transport: Transport,
    to_peer: Sender<SocketAddr>,
    from_peer: Receiver<SocketAddr>,
    barrier: &Barrier,
    closed: &AtomicUsize,
) -> Result<StreamReport, String> {
    let rt = Tokio;
    let mut s = TurnSession::connect(
        &rt,
        config(transport, TURN_PASSWORD),
        Rng::seed_from_u64(u64::from(me) + 20),
    )
    .await
    .map_err(|e| e.to_string())?;
    let alloc = s.allocate().await.map_err(|e| e.to_string())?;
    to_peer.send(alloc.relayed).map_err(|e| e.to_string())?;
    let peer = from_peer
        .recv_timeout(Duration::from_secs(20))
        .map_err(|e| format!("peer's relayed address: {e}"))?;
    s.create_permission(peer.ip())
        .await
        .map_err(|e| e.to_string())?;
    s.bind_channel(peer).await.map_err(|e| e.to_string())?;
    barrier.wait();
    let data = stream_bytes(me);
    let expected_bytes = stream_bytes(1 - me);
    let start = Instant::now();
    let mut conn = Connection::new(
        StreamConfig {
            connection_id: 0x7475_726e,
            ..StreamConfig::default()
        },
        start,
    )
    .map_err(|e| e.to_string())?;
    let mut written = 0;
    let mut received = Vec::with_capacity(STREAM_BYTES);
    let mut out = vec![0u8; 1500];
    let mut rbuf = vec![0u8; 64 * 1024];
    let mut counted_closed = false;
    let give_up = start + Duration::from_secs(300);
    loop {
        let now = Instant::now();
        if now > give_up {
            return Err(format!(
                "transfer unfinished after 300 s: wrote {written}, received {}",
                received.len()
            ));
        }
        conn.handle_timeout(now);
        while written < data.len() {
            let n = conn.write(&data[written..]);
            if n == 0 {
                break;
            }
            written += n;
        }
        if written == data.len() {
            conn.shutdown_write();
        }
        loop {
            let n = conn.read(&mut rbuf);
            if n == 0 {
                break;
            }
            received.extend_from_slice(&rbuf[..n]);
        }
        while let Some(n) = conn.poll_transmit(now, &mut out) {
            s.send_to(peer, &out[..n])
                .await
                .map_err(|e| e.to_string())?;
        }
        while let Some(e) = conn.poll_event() {
            if let p2pd_core::stream::Event::Failed { reason } = e {
                return Err(format!("stream failed: {reason}"));
            }
        }
        if conn.is_closed() && !counted_closed {
            counted_closed = true;
            closed.fetch_add(1, Ordering::SeqCst);
        }
        // Both closed: done. Until then keep answering (the peer may need our last ACK).
        if closed.load(Ordering::SeqCst) == 2 {
            break;
        }
        let wake = conn
            .poll_timeout()
            .map_or(now + Duration::from_millis(20), |t| t.at)
            .min(now + Duration::from_millis(20));
        match s.next_event_until(wake).await.map_err(|e| e.to_string())? {
            Some(TurnClientEvent::Data { peer: from, bytes }) if from == peer => {
                // Ignored datagrams are the stream's business (it counts them).
                let _ = conn.handle_input(Instant::now(), &bytes);
            }
            Some(TurnClientEvent::Refreshed { .. }) | None => {}
            Some(other) => return Err(format!("unexpected event: {other:?}")),
        }
    }
    let elapsed = start.elapsed();
    barrier.wait();
    let turn = s.client().stats();
    s.close().await.map_err(|e| format!("close: {e}"))?;
    if received != expected_bytes {
        let first_bad = received
            .iter()
            .zip(&expected_bytes)
            .position(|(a, b)| a != b);
        return Err(format!(
            "received {} bytes, first difference at {first_bad:?}",
            received.len()
        ));
    }
    Ok(StreamReport {
        received: received.len(),
        checksum: fnv1a(&received),
        expected: fnv1a(&expected_bytes),
        elapsed,
        stream: conn.stats(),
        turn,
    })
}

fn stream_transfer(transport: Transport) {
    let random = RouterKind::Symmetric(SymmetricPorts::Random);
    let lab = Lab::two_lans(random, random).expect("build lab");
    lab.start_coturn().expect("coturn");
    let (a_tx, b_rx) = channel();
    let (b_tx, a_rx) = channel();
    let barrier = Barrier::new(2);
    let closed = AtomicUsize::new(0);
    let (a, b) = std::thread::scope(|scope| {
        let (barrier, closed, lab) = (&barrier, &closed, &lab);
        let a = scope.spawn(move || {
            lab.host(0).ns().enter(|| {
                runtime().block_on(stream_side(0, transport, a_tx, a_rx, barrier, closed))
            })
        });
        let b = scope.spawn(move || {
            lab.host(1).ns().enter(|| {
                runtime().block_on(stream_side(1, transport, b_tx, b_rx, barrier, closed))
            })
        });
        (a.join(), b.join())
    });
    let a = a.expect("side 0 panicked").expect("enter ns 0");
    let b = b.expect("side 1 panicked").expect("enter ns 1");
    let (a, b) = (a.expect("side 0"), b.expect("side 1"));
    for r in [&a, &b] {
        eprintln!(
            "{transport:?} to the server: {} bytes in {:?} ({:.1} Mbit/s), checksum {:#018x}\n  stream {:?}\n  turn {:?}",
            r.received,
            r.elapsed,
            r.received as f64 * 8.0 / r.elapsed.as_secs_f64() / 1e6,
            r.checksum,
            r.stream,
            r.turn
        );
        assert_eq!(r.received, STREAM_BYTES);
        assert_eq!(r.checksum, r.expected);
        assert_eq!(r.turn.send_indications, 0, "all data went over the channel");
    }
}

#[test]
fn ten_megabytes_each_way_reliable_stream_over_turn_udp() {
    p2pd_lab::require!();
    stream_transfer(Transport::Udp);
}

#[test]
fn ten_megabytes_each_way_reliable_stream_over_turn_tcp() {
    p2pd_lab::require!();
    stream_transfer(Transport::Tcp);
}

#[test]
fn a_dead_server_is_reported_not_a_stall() {
    p2pd_lab::require!();
    let lab = Lab::one_lan(RouterKind::Symmetric(SymmetricPorts::Random)).expect("build lab");
    lab.start_coturn().expect("coturn");
    // Nothing listens on this port of the server.
    let dead = SocketAddr::new(IpAddr::V4(SERVER_IP1), 4999);
    let fast = p2pd_core::stun::TransactionConfig {
        rto: Duration::from_millis(100),
        max_sends: 4,
        last_wait_multiplier: 4,
        reliable_timeout: Duration::from_secs(2),
    };
    for transport in [Transport::Udp, Transport::Tcp] {
        let started = Instant::now();
        let r = lab
            .host(0)
            .ns()
            .enter(|| {
                runtime().block_on(async {
                    let mut c = config(transport, TURN_PASSWORD);
                    c.server = dead;
                    c.transaction = fast;
                    let mut s = TurnSession::connect(&Tokio, c, Rng::seed_from_u64(4)).await?;
                    s.allocate().await
                })
            })
            .expect("enter ns");
        let elapsed = started.elapsed();
        let err = r.expect_err("nothing to allocate on");
        eprintln!("{transport:?}: {err} (after {elapsed:?})");
        match transport {
            // 100 + 200 + 400 ms of retransmissions, then 4 × 100 ms.
            Transport::Udp => {
                assert!(
                    matches!(err, TurnSessionError::Unreachable { .. }),
                    "{err:?}"
                );
                assert!(err.to_string().contains("did not answer Allocate"), "{err}");
                assert!(elapsed >= fast.total_udp_time(), "{elapsed:?}");
            }
            // The connection is refused at once.
            Transport::Tcp => {
                assert!(matches!(err, TurnSessionError::Io { .. }), "{err:?}");
            }
        }
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    }
}

#[test]
fn a_server_that_goes_away_ends_a_tcp_allocation_as_events() {
    p2pd_lab::require!();
    let lab = Lab::one_lan(RouterKind::Symmetric(SymmetricPorts::Random)).expect("build lab");
    let coturn = lab.start_coturn().expect("coturn");
    let events = lab
        .host(0)
        .ns()
        .enter(|| {
            runtime().block_on(async {
                let c = config(Transport::Tcp, TURN_PASSWORD);
                let mut s = TurnSession::connect(&Tokio, c, Rng::seed_from_u64(5))
                    .await
                    .map_err(|e| e.to_string())?;
                s.allocate().await.map_err(|e| e.to_string())?;
                coturn.stop(Duration::from_secs(2));
                let mut events = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(5);
                while let Some(e) = s
                    .next_event_until(deadline)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    events.push(e);
                    if s.client().is_done() && events.len() >= 2 {
                        break;
                    }
                }
                Ok::<_, String>(events)
            })
        })
        .expect("enter ns")
        .expect("session");
    eprintln!("{events:?}");
    assert!(
        matches!(
            &events[..],
            [
                TurnClientEvent::Error(TurnClientError::ConnectionClosed { .. }),
                TurnClientEvent::Expired
            ]
        ),
        "{events:?}"
    );
}
