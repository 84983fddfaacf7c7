//! The node address: one printable, copy-pasteable, versioned string that tells a peer
//! everything it needs to reach this node.
//!
//! ```text
//! p2pd1:<base32 of (payload ‖ CRC-32 of payload)>
//! ```
//!
//! The payload (version 1) is, in order (integers big-endian):
//!
//! | field | encoding |
//! |---|---|
//! | public key | 32 bytes, ed25519 ([`crate::identity::PublicKey`]); the node id derives from it |
//! | brokers | count (u8, ≤ [`MAX_BROKERS`]), then each: tag `4` + IPv4 + port, tag `6` + IPv6 + port, or tag `h` + length (u8) + host name + port |
//! | interfaces | count (u8, 1..=[`MAX_INTERFACES`]), then each: a family mask (bit 0 IPv4, bit 1 IPv6), then per family present, IPv4 first: external IP, internal IP, listen port (u16), NAT type (u8 1..=7), delta kind (u8 1..=5), delta value (i32) |
//! | mapped ports (optional) | absent when no gateway forwards a port to the node; else tag `m`, count (u8), then each, in (interface, family) order: interface index (u8), family (u8: 1 IPv4, 2 IPv6), external port (u16) — see [`MappedPort`] |
//!
//! **Why binary + base32 rather than a readable grammar.** P2PD's text grammar
//! (`3,7-[0,0,203.0.113.9,…]-…`) mixes `-`, `,`, `[`, `|` and IPv6 colons: shells,
//! chat programs and double-click selection cut it apart, and a mistyped digit yields a
//! different but valid address. Here the alphabet is `a-z2-7` (RFC 4648 base32,
//! lowercase, no padding), so the string survives shells, URLs and terminals as one word,
//! reads aloud, and accepts upper case and line breaks when pasted back; the CRC-32
//! rejects typos and truncation with an error that says so, instead of a wrong peer.
//! The brokers are carried as addresses (IP:port or host:port), not as indexes into a
//! list both sides must share — P2PD's weakness (spec §6.1). `p2pd addr --parse`
//! shows any address in readable form. The `1` in the prefix is the format version: a
//! newer format gets a new prefix, and an old p2pd says "upgrade" rather than misread it.
//!
//! Parsing checks every field and names the one that is wrong ([`AddrError`]); parse and
//! [`NodeAddr::to_string`] round-trip exactly.

mod base32;
mod broker;
mod error;
mod node_addr;

pub use broker::{Broker, BrokerError, MQTT_PORT};
pub use error::AddrError;
pub use node_addr::{
    Interface, MAX_BROKERS, MAX_INTERFACES, MAX_TEXT_LEN, MappedPort, NodeAddr, PREFIX, Route,
};
