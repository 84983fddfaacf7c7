//! Everything that can go wrong reading or writing MQTT packets.

/// An MQTT codec failure. Parse errors say what was wrong with the bytes, so one log line
/// tells a broken broker from a non-MQTT server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MqttError {
    /// The remaining-length field uses more than 4 bytes (MQTT 3.1.1 §2.2.3).
    #[error("malformed MQTT remaining length: more than 4 bytes (is this an MQTT server?)")]
    BadRemainingLength,
    /// The packet is larger than the configured limit.
    #[error(
        "MQTT packet of {len} bytes exceeds the {max}-byte limit (raise max_packet if the broker is trusted)"
    )]
    TooLarge {
        /// The packet's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes end inside a field.
    #[error("truncated MQTT {packet} packet: it ends inside its {field}")]
    Truncated {
        /// The packet type.
        packet: &'static str,
        /// The field being read.
        field: &'static str,
    },
    /// A packet type this client does not speak.
    #[error("unsupported MQTT packet type {0} (QoS 2 and UNSUBSCRIBE are not used by p2pd)")]
    Unsupported(u8),
    /// A reserved or invalid value.
    #[error("malformed MQTT {packet} packet: {problem}")]
    Malformed {
        /// The packet type.
        packet: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
    /// Bytes remain after the packet's last field.
    #[error("MQTT {packet} packet has {extra} bytes after its last field")]
    TrailingBytes {
        /// The packet type.
        packet: &'static str,
        /// How many.
        extra: usize,
    },
    /// A string or list too long to encode.
    #[error("cannot encode MQTT {what}: {len} bytes exceeds the 65535-byte field limit")]
    FieldTooLong {
        /// The field.
        what: &'static str,
        /// Its length.
        len: usize,
    },
}
