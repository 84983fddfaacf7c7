//! Sans-IO state machines for p2pd.
//!
//! Everything in this crate is driven by the caller: bytes and an `Instant` go in
//! (`handle_input`, `handle_timeout`), transmits, events and deadlines come out
//! (`poll_transmit`, `poll_event`, `poll_timeout`). Nothing here opens a socket, reads a
//! clock, spawns a thread or draws global randomness; randomness comes from a [`rng::Rng`]
//! the caller seeds. That makes every machine usable from any async runtime and exactly
//! reproducible in the simulator.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod identity;
pub mod machine;
pub mod mqtt;
pub mod names;
pub mod nat;
pub mod negotiate;
pub mod portmap;
pub mod punch;
pub mod rng;
pub mod signal;
pub mod stream;
pub mod stun;
pub mod time;
pub mod transmit;
pub mod turn;

pub use machine::Machine;
pub use time::Timeout;
pub use transmit::{Transmit, Transport};
