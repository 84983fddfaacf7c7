//! The runtime conformance suite (`p2pd_runtime::conformance`) on tokio, smol and
//! async-std: STUN against `p2pd stun-server` on loopback, the generic STUN server loop,
//! TCP listen / bind-before-connect / simultaneous open on loopback, timers, and route
//! discovery on the loopback interface.

mod common;

use std::future::Future;
use std::net::SocketAddr;

use common::{Server, start_server};

/// A `p2pd stun-server` on 127.0.0.1 (stopped when the guard drops).
fn p2pd_stun_server() -> (Server, SocketAddr) {
    let server = start_server(&["--primary", "127.0.0.1:0"]);
    let addr = server.addrs[0];
    (server, addr)
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
);

p2pd_runtime::conformance_tests!(
    smol_runtime,
    runtime: p2pd_smol::Smol,
    block_on: smol::block_on,
    stun_server: p2pd_stun_server,
);

p2pd_runtime::conformance_tests!(
    async_std_runtime,
    runtime: p2pd_async_std::AsyncStd,
    block_on: async_std::task::block_on,
    stun_server: p2pd_stun_server,
);
