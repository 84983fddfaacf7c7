//! p2pd on smol: the [`Runtime`] implementation for smol, and the runtime-agnostic
//! drivers of `p2pd-runtime` re-exported for it.
//!
//! Sockets and timers are async-io's ([`async_io_net`]); tasks go to smol's global
//! executor, so futures spawned by the drivers run while the caller blocks in
//! `smol::block_on`.

pub mod async_io_net;

use std::future::Future;

pub use p2pd_runtime::{
    AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, Runtime, interfaces, nat, net, rng, routes,
    socket_set, stun, task, timer, turn,
};

/// The smol runtime (its global executor).
#[derive(Debug, Clone, Copy, Default)]
pub struct Smol;

impl Runtime for Smol {
    async_io_runtime_items!();

    fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        smol::spawn(future).detach();
    }
}
