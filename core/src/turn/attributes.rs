//! TURN attributes (RFC 8656 §18, RFC 6062 §6.2) as parse/emit pairs over their values.
//! XOR-PEER-ADDRESS and XOR-RELAYED-ADDRESS live with the other address attributes in
//! [`crate::stun`].

use std::time::Duration;

use crate::stun::{AttrType, Attribute, HeaderContext, StunError};

fn bad(typ: AttrType, reason: &'static str) -> StunError {
    StunError::BadAttribute { typ, reason }
}

fn exact<const N: usize>(typ: AttrType, value: &[u8]) -> Result<[u8; N], StunError> {
    value.try_into().map_err(|_| {
        bad(
            typ,
            match N {
                1 => "must be 1 byte",
                4 => "must be 4 bytes",
                8 => "must be 8 bytes",
                _ => "wrong length",
            },
        )
    })
}

/// CHANNEL-NUMBER: a channel bound to a peer, 0x4000..=0x4FFF (RFC 8656 §18.1, §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelNumber(u16);

impl ChannelNumber {
    /// The first valid channel number.
    pub const MIN: u16 = 0x4000;
    /// The last valid channel number.
    pub const MAX: u16 = 0x4FFF;

    /// A channel number; `None` outside 0x4000..=0x4FFF.
    pub const fn new(n: u16) -> Option<Self> {
        if n >= Self::MIN && n <= Self::MAX {
            Some(ChannelNumber(n))
        } else {
            None
        }
    }

    /// The last channel number RFC 5766 allowed; RFC 8656 §12 later reserved
    /// 0x5000..=0x7FFF, but older clients (coturn's among them) still pick from there,
    /// so a server accepts them with [`new_rfc5766`](Self::new_rfc5766).
    pub const MAX_RFC5766: u16 = 0x7FFF;

    /// A channel number in RFC 5766's wider range 0x4000..=0x7FFF.
    pub const fn new_rfc5766(n: u16) -> Option<Self> {
        if n >= Self::MIN && n <= Self::MAX_RFC5766 {
            Some(ChannelNumber(n))
        } else {
            None
        }
    }

    /// The number.
    pub const fn value(self) -> u16 {
        self.0
    }
}

impl<'a> Attribute<'a> for ChannelNumber {
    const TYPE: AttrType = AttrType::CHANNEL_NUMBER;

    fn decode(value: &'a [u8], _ctx: &HeaderContext) -> Result<Self, StunError> {
        let [a, b, _, _] = exact::<4>(Self::TYPE, value)?;
        ChannelNumber::new(u16::from_be_bytes([a, b]))
            .ok_or_else(|| bad(Self::TYPE, "outside 0x4000..=0x4FFF"))
    }

    fn encoded_len(&self) -> usize {
        4
    }

    fn encode(&self, out: &mut [u8], _ctx: &HeaderContext) {
        out[..2].copy_from_slice(&self.0.to_be_bytes());
        out[2..].fill(0);
    }
}

/// LIFETIME: seconds an allocation should live (RFC 8656 §18.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lifetime(pub u32);

impl Lifetime {
    /// As a duration.
    pub fn duration(self) -> Duration {
        Duration::from_secs(u64::from(self.0))
    }
}

impl<'a> Attribute<'a> for Lifetime {
    const TYPE: AttrType = AttrType::LIFETIME;

    fn decode(value: &'a [u8], _ctx: &HeaderContext) -> Result<Self, StunError> {
        Ok(Lifetime(u32::from_be_bytes(exact::<4>(Self::TYPE, value)?)))
    }

    fn encoded_len(&self) -> usize {
        4
    }

    fn encode(&self, out: &mut [u8], _ctx: &HeaderContext) {
        out.copy_from_slice(&self.0.to_be_bytes());
    }
}

/// DATA: application data in Send and Data indications (RFC 8656 §18.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Data<'a>(pub &'a [u8]);

impl<'a> Attribute<'a> for Data<'a> {
    const TYPE: AttrType = AttrType::DATA;

    fn decode(value: &'a [u8], _ctx: &HeaderContext) -> Result<Self, StunError> {
        Ok(Data(value))
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn encode(&self, out: &mut [u8], _ctx: &HeaderContext) {
        out.copy_from_slice(self.0);
    }
}

/// An address family as TURN names it (RFC 8656 §18.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    /// 0x01.
    V4,
    /// 0x02.
    V6,
}

impl AddressFamily {
    fn from_byte(typ: AttrType, b: u8) -> Result<Self, StunError> {
        match b {
            0x01 => Ok(AddressFamily::V4),
            0x02 => Ok(AddressFamily::V6),
            _ => Err(bad(typ, "unknown address family")),
        }
    }

    fn byte(self) -> u8 {
        match self {
            AddressFamily::V4 => 0x01,
            AddressFamily::V6 => 0x02,
        }
    }
}

macro_rules! family_attribute {
    ($(#[$doc:meta])* $name:ident, $typ:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(pub AddressFamily);

        impl<'a> Attribute<'a> for $name {
            const TYPE: AttrType = AttrType::$typ;

            fn decode(value: &'a [u8], _ctx: &HeaderContext) -> Result<Self, StunError> {
                let [f, _, _, _] = exact::<4>(Self::TYPE, value)?;
                AddressFamily::from_byte(Self::TYPE, f).map($name)
            }

            fn encoded_len(&self) -> usize {
                4
            }

            fn encode(&self, out: &mut [u8], _ctx: &HeaderContext) {
                out.copy_from_slice(&[self.0.byte(), 0, 0, 0]);
            }
        }
    };
}

family_attribute!(
    /// REQUESTED-ADDRESS-FAMILY: the family of the relayed address wanted (RFC 8656 §18.6).
    RequestedAddressFamily, REQUESTED_ADDRESS_FAMILY);
family_attribute!(
    /// ADDITIONAL-ADDRESS-FAMILY: also allocate an IPv6 relayed address (RFC 8656 §18.12).
    AdditionalAddressFamily, ADDITIONAL_ADDRESS_FAMILY);

/// A transport protocol number as TURN names it (RFC 8656 §18.7, RFC 6062 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportProtocol {
    /// 17: a UDP relay (RFC 8656).
    Udp,
    /// 6: a TCP relay (RFC 6062).
    Tcp,
    /// Anything else (refused with 442).
    Other(u8),
}

/// REQUESTED-TRANSPORT: the relay's transport (RFC 8656 §18.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestedTransport(pub TransportProtocol);

impl<'a> Attribute<'a> for RequestedTransport {
    const TYPE: AttrType = AttrType::REQUESTED_TRANSPORT;

    fn decode(value: &'a [u8], _ctx: &HeaderContext) -> Result<Self, StunError> {
        let [p, _, _, _] = exact::<4>(Self::TYPE, value)?;
        Ok(RequestedTransport(match p {
            17 => TransportProtocol::Udp,
            6 => TransportProtocol::Tcp,
            other => TransportProtocol::Other(other),
        }))
    }

    fn encoded_len(&self) -> usize {
        4
    }

    fn encode(&self, out: &mut [u8], _ctx: &HeaderContext) {
        let p = match self.0 {
            TransportProtocol::Udp => 17,
            TransportProtocol::Tcp => 6,
            TransportProtocol::Other(p) => p,
        };
        out.copy_from_slice(&[p, 0, 0, 0]);
    }
}

/// EVEN-PORT: ask for an even relayed port, optionally reserving the next one
/// (RFC 8656 §18.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EvenPort {
    /// Reserve the next higher port too.
    pub reserve: bool,
}

impl<'a> Attribute<'a> for EvenPort {
    const TYPE: AttrType = AttrType::EVEN_PORT;

    fn decode(value: &'a [u8], _ctx: &HeaderContext) -> Result<Self, StunError> {
        let [b] = exact::<1>(Self::TYPE, value)?;
        Ok(EvenPort {
            reserve: b & 0x80 != 0,
        })
    }

    fn encoded_len(&self) -> usize {
        1
    }

    fn encode(&self, out: &mut [u8], _ctx: &HeaderContext) {
        out[0] = if self.reserve { 0x80 } else { 0 };
    }
}

/// DONT-FRAGMENT: set DF on relayed datagrams (RFC 8656 §18.9). No value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DontFragment;

impl<'a> Attribute<'a> for DontFragment {
    const TYPE: AttrType = AttrType::DONT_FRAGMENT;

    fn decode(value: &'a [u8], _ctx: &HeaderContext) -> Result<Self, StunError> {
        if value.is_empty() {
            Ok(DontFragment)
        } else {
            Err(bad(Self::TYPE, "must be empty"))
        }
    }

    fn encoded_len(&self) -> usize {
        0
    }

    fn encode(&self, _out: &mut [u8], _ctx: &HeaderContext) {}
}

/// RESERVATION-TOKEN: names a port reserved by EVEN-PORT (RFC 8656 §18.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReservationToken(pub [u8; 8]);

impl<'a> Attribute<'a> for ReservationToken {
    const TYPE: AttrType = AttrType::RESERVATION_TOKEN;

    fn decode(value: &'a [u8], _ctx: &HeaderContext) -> Result<Self, StunError> {
        exact::<8>(Self::TYPE, value).map(ReservationToken)
    }

    fn encoded_len(&self) -> usize {
        8
    }

    fn encode(&self, out: &mut [u8], _ctx: &HeaderContext) {
        out.copy_from_slice(&self.0);
    }
}

/// CONNECTION-ID: names a TCP connection of a TCP allocation (RFC 6062 §6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub u32);

impl<'a> Attribute<'a> for ConnectionId {
    const TYPE: AttrType = AttrType::CONNECTION_ID;

    fn decode(value: &'a [u8], _ctx: &HeaderContext) -> Result<Self, StunError> {
        Ok(ConnectionId(u32::from_be_bytes(exact::<4>(
            Self::TYPE,
            value,
        )?)))
    }

    fn encoded_len(&self) -> usize {
        4
    }

    fn encode(&self, out: &mut [u8], _ctx: &HeaderContext) {
        out.copy_from_slice(&self.0.to_be_bytes());
    }
}

/// ICMP: an ICMP error the relay received from a peer (RFC 8656 §18.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Icmp {
    /// ICMP type.
    pub icmp_type: u8,
    /// ICMP code.
    pub code: u8,
    /// Type-specific data (e.g. the MTU of "fragmentation needed").
    pub data: u32,
}

impl<'a> Attribute<'a> for Icmp {
    const TYPE: AttrType = AttrType::ICMP;

    fn decode(value: &'a [u8], _ctx: &HeaderContext) -> Result<Self, StunError> {
        let [_, _, icmp_type, code, d0, d1, d2, d3] = exact::<8>(Self::TYPE, value)?;
        Ok(Icmp {
            icmp_type: icmp_type & 0x7f,
            code,
            data: u32::from_be_bytes([d0, d1, d2, d3]),
        })
    }

    fn encoded_len(&self) -> usize {
        8
    }

    fn encode(&self, out: &mut [u8], _ctx: &HeaderContext) {
        out[..2].fill(0);
        out[2] = self.icmp_type & 0x7f;
        out[3] = self.code;
        out[4..].copy_from_slice(&self.data.to_be_bytes());
    }
}

impl AttrType {
    /// Whether a TURN agent (client or server) of p2pd understands this type.
    pub fn is_turn_attribute(self) -> bool {
        self.is_binding_attribute()
            || matches!(
                self,
                AttrType::CHANNEL_NUMBER
                    | AttrType::LIFETIME
                    | AttrType::XOR_PEER_ADDRESS
                    | AttrType::DATA
                    | AttrType::XOR_RELAYED_ADDRESS
                    | AttrType::REQUESTED_ADDRESS_FAMILY
                    | AttrType::EVEN_PORT
                    | AttrType::REQUESTED_TRANSPORT
                    | AttrType::DONT_FRAGMENT
                    | AttrType::RESERVATION_TOKEN
                    | AttrType::CONNECTION_ID
                    | AttrType::ADDITIONAL_ADDRESS_FAMILY
                    | AttrType::ADDRESS_ERROR_CODE
                    | AttrType::ICMP
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::{MAGIC_COOKIE, TransactionId};

    fn ctx() -> HeaderContext {
        HeaderContext {
            cookie: MAGIC_COOKIE,
            transaction_id: TransactionId::new([3; 12]),
        }
    }

    fn round_trip<'a, A: Attribute<'a> + PartialEq + std::fmt::Debug>(a: &A, buf: &'a mut Vec<u8>) {
        buf.resize(a.encoded_len(), 0xAA);
        a.encode(buf, &ctx());
        let back = A::decode(buf, &ctx()).unwrap();
        assert_eq!(&back, a);
    }

    #[test]
    fn every_attribute_round_trips() {
        round_trip(&ChannelNumber::new(0x4001).unwrap(), &mut Vec::new());
        round_trip(&Lifetime(600), &mut Vec::new());
        round_trip(&Data(b"hello"), &mut Vec::new());
        round_trip(&RequestedAddressFamily(AddressFamily::V6), &mut Vec::new());
        round_trip(&AdditionalAddressFamily(AddressFamily::V6), &mut Vec::new());
        round_trip(&RequestedTransport(TransportProtocol::Udp), &mut Vec::new());
        round_trip(&RequestedTransport(TransportProtocol::Tcp), &mut Vec::new());
        round_trip(&EvenPort { reserve: true }, &mut Vec::new());
        round_trip(&DontFragment, &mut Vec::new());
        round_trip(&ReservationToken([1, 2, 3, 4, 5, 6, 7, 8]), &mut Vec::new());
        round_trip(&ConnectionId(0xdead_beef), &mut Vec::new());
        round_trip(
            &Icmp {
                icmp_type: 3,
                code: 4,
                data: 1400,
            },
            &mut Vec::new(),
        );
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(ChannelNumber::new(0x3FFF).is_none() && ChannelNumber::new(0x5000).is_none());
        assert!(ChannelNumber::decode(&[0x50, 0, 0, 0], &ctx()).is_err());
        assert!(Lifetime::decode(&[0, 0, 1], &ctx()).is_err());
        assert!(RequestedAddressFamily::decode(&[3, 0, 0, 0], &ctx()).is_err());
        assert!(DontFragment::decode(&[0], &ctx()).is_err());
        assert_eq!(
            RequestedTransport::decode(&[99, 0, 0, 0], &ctx()).unwrap(),
            RequestedTransport(TransportProtocol::Other(99))
        );
    }
}
