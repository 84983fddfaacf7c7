//! Names: open, registration-free, key-authenticated names for node addresses (what
//! P2PD calls PNP, spec §8, rebuilt with sound cryptography).
//!
//! A [`Name`] (3–63 characters of `a-z0-9-`) maps to a [`crate::addr::NodeAddr`]. Anyone
//! may claim an unused name with their node key; from then on only that key may update or
//! delete it. Every write is a [`SignedWrite`]: name, address, owner key and a timestamp,
//! signed with ed25519 by the owner ([`crate::identity`]); a record may only point at the
//! signer's own address, so connecting by name reaches the key that owns the name.
//! Servers refuse writes whose timestamp is not newer than the stored one (replays) or far
//! from their clock, expire names not written for 7 days, limit names per IPv4 address
//! (20) and IPv6 /64 (5), and rate-limit requests per address in bounded memory.
//!
//! Modules: [`name`] (validation), [`record`] (the signed write), [`wire`] (datagrams),
//! [`cookie`] (address proof), [`rate`] (rate limits), [`store`] (storage trait),
//! [`server`] (server logic), [`client`] (one operation against several servers),
//! [`registrar`] (keeping names registered).
//!
//! # Transport: UDP
//!
//! Every exchange is one request and one answer, and every request is idempotent
//! (a retransmitted write carries the same timestamp and signature, and the server
//! acknowledges an identical write again without change), so UDP with STUN-style
//! retransmission is the natural fit: one round trip, no connection state on the server,
//! no handshake for a client behind a NAT. The largest message (a put with a 4096-byte
//! node address) is under 4.3 KB; typical addresses are a few hundred bytes and fit in
//! one unfragmented datagram. UDP's weakness, forged source addresses, is closed by
//! stateless cookies ([`cookie`]): a server does no work and sends nothing larger than
//! the request to an address that has not shown it receives there, so it can neither
//! amplify an attack nor let a forger spend a victim's name limit or rate budget.
//!
//! Servers do not sign their answers: records are signed by their owners and verified
//! by readers, so a server can withhold a record but not forge one. Writes go to several
//! servers and reads go to all and take the first verified record.

pub mod client;
pub mod cookie;
pub mod name;
pub mod rate;
pub mod record;
pub mod registrar;
pub mod server;
pub mod store;
pub mod wire;

#[cfg(test)]
mod tests;

pub use client::{ClientConfig, Finished, NameClient, Operation, Outcome, Report, Target};
pub use name::{MAX_NAME_LEN, MIN_NAME_LEN, Name, NameError};
pub use record::{RecordError, SignedWrite};
pub use registrar::{Registrar, RegistrarConfig, RegistrarError, RegistrarEvent};
pub use server::{NameServer, ServerConfig, ServerEvent};
pub use store::{Holder, MemoryStore, NameStore, StoreError, StoredName};
pub use wire::{NAME_PORT, Refusal, Request, RequestBody, Response, ResponseBody, WireError};
