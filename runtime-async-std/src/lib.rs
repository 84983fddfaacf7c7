//! p2pd on async-std: the [`Runtime`] implementation for async-std, and the
//! runtime-agnostic drivers of `p2pd-runtime` re-exported for it.
//!
//! **async-std is discontinued upstream** (its authors point to smol); this adapter is
//! kept because users still run it. async-std's sockets and timers are async-io's, so
//! this adapter registers sockets and timers exactly as `p2pd-smol` does, reusing its
//! [`async_io_net`](p2pd_smol::async_io_net) module; only spawning is async-std's own
//! (its multi-threaded executor).

use std::future::Future;

pub use p2pd_runtime::{
    AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, Runtime, interfaces, nat, net, rng, routes,
    socket_set, stun, task, timer, turn,
};

/// The async-std runtime (its global executor).
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncStd;

impl Runtime for AsyncStd {
    p2pd_smol::async_io_runtime_items!();

    fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        // Dropping async-std's JoinHandle detaches the task.
        drop(async_std::task::spawn(future));
    }
}
