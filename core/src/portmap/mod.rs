//! Port mapping on the local gateway: NAT-PMP (RFC 6886), PCP (RFC 6887, MAP opcode) and
//! UPnP IGD (port mappings and IPv6 pinholes, [`upnp`]).
//!
//! The codecs live in core (not in the runtime or the daemon) because they are pure byte
//! layouts with no I/O: keeping them sans-IO lets the same parser be unit-tested against
//! the RFC layouts, fuzzed, and later driven by a sans-IO client machine from any runtime
//! or from the simulator. Every parser borrows the bytes, checks lengths, version and
//! opcode once, and returns a typed error instead of panicking on hostile input.

pub mod client;
pub mod natpmp;
pub mod pcp;
pub mod upnp;
