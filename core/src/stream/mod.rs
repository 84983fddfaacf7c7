//! A reliable, ordered byte stream over datagrams — the layer every p2pd datagram path
//! (punched UDP, TURN relay) uses so that a p2pd connection is a byte stream whatever the
//! strategy.
//!
//! One concept per file: [`packet`] (wire format, typed view + emit), [`send_buffer`]
//! (unacknowledged bytes), [`recv_buffer`] (reassembly), [`congestion`] (NewReno),
//! [`connection`] (the state machine). See [`Connection`] for the API and the protocol.

pub mod congestion;
pub mod connection;
pub mod packet;
pub mod recv_buffer;
pub mod send_buffer;

pub use congestion::NewReno;
pub use connection::{Config, ConfigError, Connection, Event, FailReason, InputError, Stats};
pub use packet::{Packet, PacketError};
