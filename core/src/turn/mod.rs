//! TURN (RFC 8656, with RFC 6062 TCP allocations): wire format here; the client and
//! server state machines build on it.

mod attributes;
mod channel_data;
pub mod client;
mod server;

pub use attributes::{
    AdditionalAddressFamily, AddressFamily, ChannelNumber, ConnectionId, Data, DontFragment,
    EvenPort, Icmp, Lifetime, RequestedAddressFamily, RequestedTransport, ReservationToken,
    TransportProtocol,
};
pub use channel_data::{CHANNEL_DATA_HEADER, ChannelData, ChannelDataError, channel_data_len};
pub use client::{
    CommandError, RequestKind, TurnClient, TurnClientConfig, TurnClientError, TurnClientEvent,
    TurnClientStats,
};
pub use server::{
    BIND_TIMEOUT, CHANNEL_LIFETIME, DEFAULT_LIFETIME, MAX_LIFETIME, PERMISSION_LIFETIME,
    RESERVATION_LIFETIME, TurnConfigError, TurnLimits, TurnServer, TurnServerConfig,
    TurnServerEvent, TurnServerStats, stream_frame_len,
};
