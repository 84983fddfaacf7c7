//! MQTT 3.1.1 (OASIS standard, 2014) for signaling: the packet codec and a sans-IO client
//! session over a byte stream.
//!
//! Only what signaling needs: CONNECT/CONNACK, PUBLISH at QoS 0 and 1 with PUBACK,
//! SUBSCRIBE/SUBACK, PINGREQ/PINGRESP and DISCONNECT. QoS 2 and UNSUBSCRIBE are refused
//! as unsupported (we never subscribe at QoS 2, so a broker never sends it to us). No
//! codec crate fits: `mqttbytes` is unmaintained and `rumqttc` owns its sockets, so the
//! codec is written here and fuzzed (`fuzz/src/mqtt.rs`).
//!
//! [`Packet::parse`] reads one whole packet (the caller frames with [`frame_len`]);
//! [`Packet::emit`] appends one. Every length is bounded by a caller-given maximum
//! packet size, so a hostile broker cannot make a client buffer without limit.

mod client;
mod error;
mod packet;
mod wire;

pub use client::{ClientConfig, MqttClient, MqttEvent, PublishError, State};
pub use error::MqttError;
pub use packet::{
    ConnAck, Connect, ConnectReturn, Packet, PacketType, Publish, QoS, SubAck, Subscribe,
};
pub use wire::{DEFAULT_MAX_PACKET, MAX_REMAINING_LEN, frame_len};
