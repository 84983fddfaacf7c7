//! TURN (RFC 8656, with RFC 6062 TCP allocations): wire format here; the client and
//! server state machines build on it.

mod attributes;
mod channel_data;

pub use attributes::{
    AdditionalAddressFamily, AddressFamily, ChannelNumber, ConnectionId, Data, DontFragment,
    EvenPort, Icmp, Lifetime, RequestedAddressFamily, RequestedTransport, ReservationToken,
    TransportProtocol,
};
pub use channel_data::{CHANNEL_DATA_HEADER, ChannelData, ChannelDataError, channel_data_len};
