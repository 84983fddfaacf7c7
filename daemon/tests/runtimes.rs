//! The runtime conformance suite (`p2pd_runtime::conformance`) on tokio, smol and
//! async-std: STUN against `p2pd stun-server` on loopback, the generic STUN server loop,
//! TCP listen / bind-before-connect / simultaneous open on loopback, timers, and route
//! discovery on the loopback interface.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use p2pd_lab::{Lab, RouterKind};

use common::{Server, start_server};

/// A `p2pd stun-server` on 127.0.0.1 (stopped when the guard drops).
fn p2pd_stun_server() -> (Server, SocketAddr) {
    let server = start_server(&["--primary", "127.0.0.1:0"]);
    let addr = server.addrs[0];
    (server, addr)
}

/// Runs the TCP simultaneous open test where it cannot race: on host 0 of a lab whose
/// loopback drops outgoing TCP RSTs, so a SYN that arrives before the peer's connect is
/// retransmitted rather than refused (as behind NATs that drop unsolicited SYNs). Without
/// root or the lab's tools it runs on the host's own loopback instead, saying so; under
/// `P2PD_LAB_REQUIRED=1` (CI) that is a failure.
fn without_rst<F: FnOnce() + Send>(f: F) {
    if let Some(reason) = p2pd_lab::skip_reason() {
        assert!(
            std::env::var_os("P2PD_LAB_REQUIRED").is_none(),
            "P2PD_LAB_REQUIRED is set but the lab is unavailable: {reason}"
        );
        eprintln!("simultaneous open on the host's loopback (timing-dependent): {reason}");
        return f();
    }
    let lab = Lab::one_lan(RouterKind::Open).expect("lab");
    let ns = lab.host(0).ns();
    let rules = "add table inet p2pd_norst; \
        add chain inet p2pd_norst out { type filter hook output priority 0 ; } ; \
        add rule inet p2pd_norst out tcp flags & rst == rst drop";
    for argv in [&["ip", "link", "set", "lo", "up"][..], &["nft", rules][..]] {
        let out = ns
            .run(argv, Duration::from_secs(10))
            .expect("configure namespace");
        assert!(out.status.success(), "{argv:?}: {}", out.combined());
    }
    ns.enter(f).expect("enter the namespace");
}

/// A fresh two-worker tokio runtime per test, as the daemon runs.
fn tokio_block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

p2pd_runtime::conformance_tests!(
    tokio_runtime,
    runtime: p2pd_tokio::Tokio,
    block_on: tokio_block_on,
    stun_server: p2pd_stun_server,
    isolate: without_rst,
);

p2pd_runtime::conformance_tests!(
    smol_runtime,
    runtime: p2pd_smol::Smol,
    block_on: smol::block_on,
    stun_server: p2pd_stun_server,
    isolate: without_rst,
);

p2pd_runtime::conformance_tests!(
    async_std_runtime,
    runtime: p2pd_async_std::AsyncStd,
    block_on: async_std::task::block_on,
    stun_server: p2pd_stun_server,
    isolate: without_rst,
);
