//! The suite every runtime adapter must pass, written once and generic over [`Runtime`].
//!
//! [`conformance_tests!`](crate::conformance_tests) turns it into `#[test]` functions for
//! one runtime; `daemon/tests/runtimes.rs` instantiates it for tokio, smol and async-std
//! against a real `p2pd stun-server`. Each check panics with a message on failure.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use p2pd_core::Transport;
use p2pd_core::rng::Rng;
use p2pd_core::stun::{ClientTransaction, ServerConfig, TransactionConfig};

use crate::interfaces::{Family, Interface};
use crate::net::{bind_udp, connect_tcp, connect_tcp_until, listen_tcp};
use crate::routes::{RouteConfig, discover, interface_routes};
use crate::runtime::{AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, Runtime};
use crate::stun::{BindingRequest, BoundStunServer, StunClientError, binding};
use crate::task;
use crate::timer::until;

/// How long any one check may wait for the network before it fails.
const BOUND: Duration = Duration::from_secs(10);

fn quick() -> TransactionConfig {
    TransactionConfig {
        rto: Duration::from_millis(100),
        max_sends: 5,
        ..TransactionConfig::default()
    }
}

fn loopback_of(server: SocketAddr) -> SocketAddr {
    SocketAddr::new(server.ip(), 0)
}

/// A Binding request to the STUN server at `server` (on loopback) returns the client's
/// own address as the mapped address.
pub async fn stun_binding<R: Runtime>(rt: R, server: SocketAddr) {
    let socket = bind_udp(&rt, loopback_of(server), false).expect("bind client");
    let local = socket.local_addr().expect("local addr");
    let mut rng = Rng::seed_from_u64(7);
    let request = BindingRequest {
        config: quick(),
        ..BindingRequest::to(server)
    };
    let r = binding(&rt, &socket, &request, &mut rng)
        .await
        .unwrap_or_else(|e| panic!("binding to {server}: {e}"));
    assert_eq!(r.mapped, local);
    assert_eq!(r.source, server);
    assert_eq!(r.local, local);
}

/// No answer: the error names the server and how long was waited, after the configured
/// number of requests.
pub async fn stun_silence_names_server_and_wait<R: Runtime>(rt: R) {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("silent socket");
    let server = silent.local_addr().expect("addr");
    let socket = bind_udp(&rt, "127.0.0.1:0".parse().expect("addr"), false).expect("bind");
    let request = BindingRequest {
        config: TransactionConfig {
            rto: Duration::from_millis(20),
            max_sends: 2,
            ..TransactionConfig::default()
        },
        ..BindingRequest::to(server)
    };
    let start = Instant::now();
    let e = binding(&rt, &socket, &request, &mut Rng::seed_from_u64(1))
        .await
        .expect_err("nobody answers");
    let waited = start.elapsed();
    match &e {
        StunClientError::Timeout {
            server: s,
            elapsed,
            sends,
        } => {
            assert_eq!(*s, server);
            assert_eq!(*sends, 2);
            // Rm × RTO = 16 × 20 ms after the last request (RFC 8489 §6.2.1).
            assert!(*elapsed >= Duration::from_millis(300), "{elapsed:?}");
            assert!(waited >= *elapsed, "{waited:?} < {elapsed:?}");
        }
        other => panic!("expected a timeout, got {other}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains(&server.to_string()) && msg.contains("did not answer"),
        "{msg}"
    );
}

/// The generic STUN server loop, spawned on this runtime, answers a Binding request
/// over IPv4 and (when the host has it) IPv6 loopback.
pub async fn stun_server_loop_ipv4_and_ipv6<R: Runtime>(rt: R) {
    for primary in ["127.0.0.1:0", "[::1]:0"] {
        let primary: SocketAddr = primary.parse().expect("addr");
        if primary.is_ipv6() && std::net::UdpSocket::bind(primary).is_err() {
            eprintln!("skipping IPv6: ::1 is not available on this host");
            continue;
        }
        let bound = BoundStunServer::bind(
            &rt,
            ServerConfig {
                primary,
                alternate: None,
                software: None,
            },
        )
        .expect("bind server");
        let server = bound.local_addresses()[0];
        let serving = task::spawn(&rt, bound.run());
        stun_binding(rt.clone(), server).await;
        drop(serving);
    }
}

/// Timers: sleeping until a core machine's `poll_timeout` deadline wakes at (not before)
/// that deadline, when the machine indeed has work; a past deadline completes at once;
/// [`until`] gives up at its deadline.
pub async fn timers_follow_poll_timeout<R: Runtime>(rt: R) {
    let silent: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let local: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    let config = TransactionConfig {
        rto: Duration::from_millis(60),
        max_sends: 3,
        ..TransactionConfig::default()
    };
    let mut t = ClientTransaction::new(
        rt.now(),
        vec![0u8; 20],
        Transport::Udp,
        local,
        silent,
        config,
    )
    .expect("transaction");
    t.handle_timeout(rt.now());
    assert!(t.poll_transmit().is_some(), "first request");
    while t.poll_transmit().is_some() {}
    let deadline = t.poll_timeout().expect("a retransmission deadline").at;
    rt.sleep_until(deadline).await;
    let woke = rt.now();
    assert!(woke >= deadline, "woke {:?} early", deadline - woke);
    assert!(
        woke - deadline < Duration::from_millis(250),
        "woke {:?} late",
        woke - deadline
    );
    t.handle_timeout(woke);
    assert!(
        t.poll_transmit().is_some(),
        "retransmission due at the deadline"
    );

    let before = Instant::now();
    rt.sleep_until(rt.now() - Duration::from_millis(5)).await;
    assert!(
        before.elapsed() < Duration::from_millis(100),
        "a past deadline must not wait"
    );

    let never = futures_lite::future::pending::<()>();
    let cut = rt.now() + Duration::from_millis(30);
    assert_eq!(until(&rt, cut, never).await, None);
    assert!(rt.now() >= cut);
}

fn free_tcp_port(ip: IpAddr) -> SocketAddr {
    let l = std::net::TcpListener::bind(SocketAddr::new(ip, 0)).expect("probe port");
    l.local_addr().expect("addr")
}

/// A listener and a connection made with bind-before-connect from a chosen port
/// (sharing it with a second listener through SO_REUSEADDR/SO_REUSEPORT), bytes both
/// ways and a clean shutdown; IPv4 and, when available, IPv6.
pub async fn tcp_listen_and_bound_connect<R: Runtime>(rt: R) {
    for ip in [IpAddr::V4(Ipv4Addr::LOCALHOST), "::1".parse().expect("ip")] {
        if ip.is_ipv6() && std::net::TcpListener::bind((ip, 0)).is_err() {
            eprintln!("skipping IPv6: ::1 is not available on this host");
            continue;
        }
        let listener = listen_tcp(&rt, SocketAddr::new(ip, 0), true).expect("listen");
        let server = listener.local_addr().expect("addr");
        let local = free_tcp_port(ip);
        // The chosen port also has a listener of its own, as in TCP hole punching.
        let _own = listen_tcp(&rt, local, true).expect("listen on the client port");
        let accepting = task::spawn(&rt, async move {
            let (mut s, from) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 5];
            let mut got = 0;
            while got < buf.len() {
                let n = s.read(&mut buf[got..]).await.expect("read");
                assert!(n > 0, "early end of stream");
                got += n;
            }
            s.write_all(b"world").await.expect("write");
            s.shutdown().await.expect("shutdown");
            (from, buf)
        });
        let mut c = until(&rt, rt.now() + BOUND, connect_tcp(&rt, local, server, true))
            .await
            .expect("connect in time")
            .expect("connect");
        assert_eq!(c.local_addr().expect("local"), local);
        assert_eq!(c.peer_addr().expect("peer"), server);
        c.write_all(b"hello").await.expect("write");
        let (from, got) = accepting.join().await.expect("server task");
        assert_eq!(from, local);
        assert_eq!(&got, b"hello");
        let mut reply = Vec::new();
        let mut buf = [0u8; 16];
        loop {
            let n = c.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
        }
        assert_eq!(reply, b"world");
    }
}

/// A connection refused by a port nobody listens on is an error naming both ends.
pub async fn tcp_refused_is_named<R: Runtime>(rt: R) {
    let closed = free_tcp_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let local = free_tcp_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let e = connect_tcp(&rt, local, closed, true)
        .await
        .expect_err("refused");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&local.to_string()) && msg.contains(&closed.to_string()),
        "{msg}"
    );
}

/// TCP simultaneous open: two bound ports, no listener, each side connecting to the
/// other at the same time until their SYNs cross; both ends then hold one connection.
///
/// Both sides run on the calling thread (joined, not spawned), so every socket is
/// created where the caller runs: the daemon's suite runs this inside a namespace whose
/// loopback drops RSTs, where an early SYN is retransmitted instead of refused and the
/// SYNs cross deterministically, as they do through NATs that drop unsolicited SYNs. On
/// a plain loopback the kernel refuses an early SYN at once, and success depends on both
/// connects overlapping; the retries cover that, slowly.
pub async fn tcp_simultaneous_open<R: Runtime>(rt: R) {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (a, b) = (free_tcp_port(ip), free_tcp_port(ip));
    let deadline = rt.now() + BOUND;
    let pause = Duration::from_micros(500);
    let (mut rng_a, mut rng_b) = (Rng::seed_from_u64(1), Rng::seed_from_u64(2));
    let side_a = connect_tcp_until(&rt, a, b, deadline, pause, &mut rng_a);
    let side_b = async {
        let mut s = connect_tcp_until(&rt, b, a, deadline, pause, &mut rng_b).await?;
        s.write_all(b"from b").await?;
        Ok::<_, std::io::Error>(s)
    };
    let (sa, sb) = futures_lite::future::zip(side_a, side_b).await;
    let mut sa = sa.unwrap_or_else(|e| panic!("side a: {e}"));
    let mut sb = sb.unwrap_or_else(|e| panic!("side b: {e}"));
    assert_eq!(sa.local_addr().expect("a local"), a);
    assert_eq!(sa.peer_addr().expect("a peer"), b);
    assert_eq!(sb.local_addr().expect("b local"), b);
    assert_eq!(sb.peer_addr().expect("b peer"), a);
    sa.write_all(b"from a").await.expect("write a");
    let mut buf = [0u8; 6];
    for (s, want) in [(&mut sa, b"from b"), (&mut sb, b"from a")] {
        let mut got = 0;
        while got < buf.len() {
            let n = s.read(&mut buf[got..]).await.expect("read");
            assert!(n > 0, "early end of stream");
            got += n;
        }
        assert_eq!(&buf, want);
    }
}

fn quick_routes(server: SocketAddr) -> RouteConfig {
    RouteConfig {
        transaction: quick(),
        ..RouteConfig::new(vec![server])
    }
}

/// The loopback interface with 127.0.0.1 only.
fn loopback_interface() -> Interface {
    Interface {
        name: "lo".into(),
        index: None,
        up: true,
        loopback: true,
        ipv4: vec![Ipv4Addr::LOCALHOST],
        ipv6: vec![],
        default_for: vec![],
    }
}

/// Route discovery on the loopback interface against the STUN server at `server`:
/// one route whose external address is the local one (no NAT on loopback).
pub async fn loopback_route<R: Runtime>(rt: R, server: SocketAddr) {
    let lo = loopback_interface();
    let config = quick_routes(server);
    let r = interface_routes(&rt, lo, &config, Rng::seed_from_u64(3)).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.routes.len(), 1, "{:?}", r.routes);
    assert_eq!(r.routes[0].family, Family::Ipv4);
    assert_eq!(r.routes[0].external, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(r.routes[0].server, server);
}

/// Route discovery over two interfaces at once, one of which cannot work (its address
/// is not on this host): the failure is reported for that interface alone and the
/// loopback interface still gets its route.
pub async fn discover_isolates_a_failing_interface<R: Runtime>(rt: R, server: SocketAddr) {
    let lo = loopback_interface();
    // 192.0.2.0/24 is documentation space; .77 is not configured on any test host.
    let bogus = Interface {
        name: "bogus0".into(),
        ipv4: vec![Ipv4Addr::new(192, 0, 2, 77)],
        loopback: false,
        ..lo.clone()
    };
    let config = quick_routes(server);
    let found = discover(&rt, vec![bogus, lo], &config, &mut Rng::seed_from_u64(4)).await;
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].interface.name, "bogus0");
    assert!(found[0].routes.is_empty());
    let msg = found[0]
        .errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    assert!(
        msg.contains("192.0.2.77 is not an address of this host"),
        "{msg}"
    );
    assert_eq!(found[1].interface.name, "lo");
    assert!(found[1].errors.is_empty(), "{:?}", found[1].errors);
    assert_eq!(found[1].routes[0].external, IpAddr::V4(Ipv4Addr::LOCALHOST));
}

/// Generates the conformance suite as `#[test]` functions in module `$name`.
///
/// - `runtime`: an expression giving the [`Runtime`] value (evaluated inside `block_on`);
/// - `block_on`: a function running a future to completion on that runtime;
/// - `stun_server`: a function returning `(guard, SocketAddr)` of a running STUN server
///   on loopback (the guard stops it when dropped);
/// - `isolate`: a function `fn(impl FnOnce() + Send)` that runs the TCP simultaneous open
///   test where it cannot race (see [`tcp_simultaneous_open`]), or just calls it.
#[macro_export]
macro_rules! conformance_tests {
    ($name:ident, runtime: $rt:expr, block_on: $block_on:path, stun_server: $server:path,
        isolate: $iso:path $(,)?) => {
        $crate::conformance_tests!(@emit $name, $rt, $block_on, $server, $iso,
            needs_server: [stun_binding, loopback_route, discover_isolates_a_failing_interface],
            standalone: [
                stun_silence_names_server_and_wait,
                stun_server_loop_ipv4_and_ipv6,
                timers_follow_poll_timeout,
                tcp_listen_and_bound_connect,
                tcp_refused_is_named,
            ]);
    };
    (@emit $name:ident, $rt:expr, $block_on:path, $server:path, $iso:path,
        needs_server: [$($with:ident),*], standalone: [$($alone:ident),* $(,)?]) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $with() {
                    let (_guard, addr) = $server();
                    $block_on(async { $crate::conformance::$with($rt, addr).await })
                }
            )*
            $(
                #[test]
                fn $alone() {
                    $block_on(async { $crate::conformance::$alone($rt).await })
                }
            )*
            #[test]
            fn tcp_simultaneous_open() {
                $iso(|| $block_on(async { $crate::conformance::tcp_simultaneous_open($rt).await }))
            }
        }
    };
}
