//! Fuzz targets for p2pd's wire codecs, one module per protocol.
//!
//! Every target is a `#[test]` built on [`bolero::check!`]: plain `cargo test` runs it as a
//! short property test with random inputs (and replays any saved corpus or crash files),
//! and `cargo bolero test` runs the same function under libFuzzer. See `README.md`.
#![cfg(test)]

mod addr;
mod mqtt;
mod names;
mod nat;
mod negotiate;
mod portmap;
mod punch;
mod signal;
mod stream;
mod stun;
mod turn;
mod turn_client;
mod turn_server;
mod upnp;
