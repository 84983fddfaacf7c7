//! p2pd on tokio: real sockets and timers for the sans-IO state machines of `p2pd-core`.
//!
//! The adapter owns no protocol logic. It binds sockets (through socket2, so that address
//! reuse and bind-before-connect are available), feeds what arrives into core's machines,
//! sends what they emit from the source address they name, and sleeps until their
//! `poll_timeout`.

pub mod nat;
pub mod net;
pub mod rng;
pub mod socket_set;
pub mod stun;
