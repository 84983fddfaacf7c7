//! The fixed 20-byte STUN header: message type, length, magic cookie, transaction ID
//! (RFC 8489 §5).

use std::fmt;

use crate::rng::Rng;

/// The magic cookie that marks an RFC 5389/8489 message (RFC 8489 §5).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;

/// Length of the STUN header in bytes.
pub const HEADER_LEN: usize = 20;

/// The class of a STUN message: the two C bits of the message type (RFC 8489 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// A request, answered by a success or an error response.
    Request,
    /// An indication: no response is expected.
    Indication,
    /// A success response.
    Success,
    /// An error response (carries ERROR-CODE).
    Error,
}

/// A STUN method: the 12 M bits of the message type.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Method(u16);

impl Method {
    /// Binding (RFC 8489 §18.2).
    pub const BINDING: Method = Method(0x001);
    /// TURN Allocate (RFC 8656 §17).
    pub const ALLOCATE: Method = Method(0x003);
    /// TURN Refresh.
    pub const REFRESH: Method = Method(0x004);
    /// TURN Send (indication only).
    pub const SEND: Method = Method(0x006);
    /// TURN Data (indication only).
    pub const DATA: Method = Method(0x007);
    /// TURN CreatePermission.
    pub const CREATE_PERMISSION: Method = Method(0x008);
    /// TURN ChannelBind.
    pub const CHANNEL_BIND: Method = Method(0x009);
    /// TURN-TCP Connect (RFC 6062 §6.1).
    pub const CONNECT: Method = Method(0x00A);
    /// TURN-TCP ConnectionBind.
    pub const CONNECTION_BIND: Method = Method(0x00B);
    /// TURN-TCP ConnectionAttempt (indication).
    pub const CONNECTION_ATTEMPT: Method = Method(0x00C);

    /// A method from its 12-bit number; `None` if it does not fit in 12 bits.
    pub const fn new(value: u16) -> Option<Method> {
        if value <= 0x0FFF {
            Some(Method(value))
        } else {
            None
        }
    }

    /// The 12-bit method number.
    pub const fn value(self) -> u16 {
        self.0
    }
}

impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            Method::BINDING => "Binding",
            Method::ALLOCATE => "Allocate",
            Method::REFRESH => "Refresh",
            Method::SEND => "Send",
            Method::DATA => "Data",
            Method::CREATE_PERMISSION => "CreatePermission",
            Method::CHANNEL_BIND => "ChannelBind",
            Method::CONNECT => "Connect",
            Method::CONNECTION_BIND => "ConnectionBind",
            Method::CONNECTION_ATTEMPT => "ConnectionAttempt",
            _ => return write!(f, "Method({:#05x})", self.0),
        };
        f.write_str(name)
    }
}

/// Method and class together: the 14-bit STUN message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageType {
    /// The method.
    pub method: Method,
    /// The class.
    pub class: Class,
}

impl MessageType {
    /// A Binding request.
    pub const BINDING_REQUEST: MessageType = MessageType::new(Method::BINDING, Class::Request);
    /// A Binding success response.
    pub const BINDING_SUCCESS: MessageType = MessageType::new(Method::BINDING, Class::Success);
    /// A Binding error response.
    pub const BINDING_ERROR: MessageType = MessageType::new(Method::BINDING, Class::Error);

    /// Combines a method and a class.
    pub const fn new(method: Method, class: Class) -> Self {
        MessageType { method, class }
    }

    /// Decodes the 16-bit type field. `None` when either of the two top bits is set,
    /// which no STUN message has (RFC 8489 §5); that is how STUN is told apart from
    /// ChannelData and other protocols on a shared port.
    pub const fn from_u16(v: u16) -> Option<Self> {
        if v & 0xC000 != 0 {
            return None;
        }
        let class = match ((v >> 7) & 0b10) | ((v >> 4) & 0b01) {
            0 => Class::Request,
            1 => Class::Indication,
            2 => Class::Success,
            _ => Class::Error,
        };
        let method = (v & 0x000F) | ((v >> 1) & 0x0070) | ((v >> 2) & 0x0F80);
        Some(MessageType {
            method: Method(method),
            class,
        })
    }

    /// Encodes the 16-bit type field (RFC 8489 §5, figure 3).
    pub const fn to_u16(self) -> u16 {
        let m = self.method.0;
        let c: u16 = match self.class {
            Class::Request => 0,
            Class::Indication => 1,
            Class::Success => 2,
            Class::Error => 3,
        };
        (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
    }
}

/// The 96-bit transaction ID that pairs a response with its request (RFC 8489 §5).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId([u8; 12]);

impl TransactionId {
    /// A transaction ID from its bytes.
    pub const fn new(bytes: [u8; 12]) -> Self {
        TransactionId(bytes)
    }

    /// A fresh random transaction ID, drawn from the caller's generator.
    pub fn random(rng: &mut Rng) -> Self {
        let mut b = [0u8; 12];
        rng.fill(&mut b);
        TransactionId(b)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 12] {
        &self.0
    }
}

impl fmt::Debug for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TransactionId(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// The parts of the header that attribute codecs need: XOR-ed addresses are keyed with
/// the cookie and the transaction ID (RFC 8489 §14.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderContext {
    /// The magic cookie field as it appears on the wire. Anything but [`MAGIC_COOKIE`]
    /// means an RFC 3489 message, whose 128-bit transaction ID is cookie ‖ id.
    pub cookie: u32,
    /// The transaction ID.
    pub transaction_id: TransactionId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_type_round_trips_every_value() {
        for v in 0u16..0x4000 {
            let t = MessageType::from_u16(v).unwrap();
            assert_eq!(t.to_u16(), v, "type {v:#06x}");
        }
        assert_eq!(MessageType::from_u16(0x8001), None);
        assert_eq!(MessageType::BINDING_REQUEST.to_u16(), 0x0001);
        assert_eq!(MessageType::BINDING_SUCCESS.to_u16(), 0x0101);
        assert_eq!(MessageType::BINDING_ERROR.to_u16(), 0x0111);
        assert_eq!(
            MessageType::new(Method::SEND, Class::Indication).to_u16(),
            0x0016
        );
    }
}
