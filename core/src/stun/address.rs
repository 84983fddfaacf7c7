//! Address attributes: MAPPED-ADDRESS and its XOR-ed and RFC 3489/5780 relatives
//! (RFC 8489 §14.1–14.2, RFC 5780 §7.3–7.4, RFC 3489 §11.2).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::attr::{AttrType, Attribute, be16};
use super::error::StunError;
use super::header::HeaderContext;

const FAMILY_V4: u8 = 0x01;
const FAMILY_V6: u8 = 0x02;

/// Decodes the common address layout: reserved byte, family, port, address.
#[inline(always)]
fn decode_plain(typ: AttrType, v: &[u8]) -> Result<SocketAddr, StunError> {
    let bad = |reason| StunError::BadAttribute { typ, reason };
    let port = be16(v, 2).ok_or_else(|| bad("shorter than 4 bytes"))?;
    match (v.get(1), v.len()) {
        (Some(&FAMILY_V4), 8) => {
            let ip: [u8; 4] = v[4..8].try_into().map_err(|_| bad("bad IPv4 length"))?;
            Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        (Some(&FAMILY_V6), 20) => {
            let ip: [u8; 16] = v[4..20].try_into().map_err(|_| bad("bad IPv6 length"))?;
            Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        (Some(&FAMILY_V4 | &FAMILY_V6), _) => Err(bad("length does not match the address family")),
        _ => Err(bad("unknown address family")),
    }
}

#[inline]
fn plain_len(a: &SocketAddr) -> usize {
    if a.is_ipv4() { 8 } else { 20 }
}

#[inline]
fn encode_plain(a: &SocketAddr, out: &mut [u8]) {
    out[0] = 0;
    out[2..4].copy_from_slice(&a.port().to_be_bytes());
    match a.ip() {
        IpAddr::V4(ip) => {
            out[1] = FAMILY_V4;
            out[4..8].copy_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out[1] = FAMILY_V6;
            out[4..20].copy_from_slice(&ip.octets());
        }
    }
}

/// XORs an address with the cookie (and, for IPv6, the transaction ID) in place: the
/// operation is its own inverse (RFC 8489 §14.2).
#[inline(always)]
fn xor(a: SocketAddr, ctx: &HeaderContext) -> SocketAddr {
    let cookie = ctx.cookie.to_be_bytes();
    let port = a.port() ^ u16::from_be_bytes([cookie[0], cookie[1]]);
    let ip = match a.ip() {
        IpAddr::V4(ip) => IpAddr::V4(Ipv4Addr::from(u32::from(ip) ^ ctx.cookie)),
        IpAddr::V6(ip) => {
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&cookie);
            key[4..].copy_from_slice(ctx.transaction_id.as_bytes());
            IpAddr::V6(Ipv6Addr::from(u128::from(ip) ^ u128::from_be_bytes(key)))
        }
    };
    SocketAddr::new(ip, port)
}

macro_rules! address_attribute {
    ($(#[$doc:meta])* $name:ident, $typ:ident, plain) => {
        address_attribute!(@def $(#[$doc])* $name, $typ, |a, _ctx| a);
    };
    ($(#[$doc:meta])* $name:ident, $typ:ident, xor) => {
        address_attribute!(@def $(#[$doc])* $name, $typ, xor);
    };
    (@def $(#[$doc:meta])* $name:ident, $typ:ident, $map:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(pub SocketAddr);

        impl<'a> Attribute<'a> for $name {
            const TYPE: AttrType = AttrType::$typ;

            #[inline(always)]
            fn decode(value: &'a [u8], ctx: &HeaderContext) -> Result<Self, StunError> {
                let map: fn(SocketAddr, &HeaderContext) -> SocketAddr = $map;
                decode_plain(Self::TYPE, value).map(|a| $name(map(a, ctx)))
            }

            #[inline]
            fn encoded_len(&self) -> usize {
                plain_len(&self.0)
            }

            #[inline]
            fn encode(&self, out: &mut [u8], ctx: &HeaderContext) {
                let map: fn(SocketAddr, &HeaderContext) -> SocketAddr = $map;
                encode_plain(&map(self.0, ctx), out);
            }
        }
    };
}

address_attribute!(
    /// MAPPED-ADDRESS: the reflexive address in clear, as RFC 3489 servers send it
    /// (RFC 8489 §14.1).
    MappedAddress, MAPPED_ADDRESS, plain);
address_attribute!(
    /// XOR-MAPPED-ADDRESS: the reflexive transport address, obfuscated so that NATs which
    /// rewrite addresses in payloads leave it alone (RFC 8489 §14.2).
    XorMappedAddress, XOR_MAPPED_ADDRESS, xor);
address_attribute!(
    /// ALTERNATE-SERVER: where a 300 Try Alternate sends the client (RFC 8489 §14.15).
    AlternateServer, ALTERNATE_SERVER, plain);
address_attribute!(
    /// RESPONSE-ORIGIN: the address the response was sent from (RFC 5780 §7.3).
    ResponseOrigin, RESPONSE_ORIGIN, plain);
address_attribute!(
    /// OTHER-ADDRESS: the server's alternate IP and port for behaviour tests (RFC 5780 §7.4).
    OtherAddress, OTHER_ADDRESS, plain);
address_attribute!(
    /// CHANGED-ADDRESS: RFC 3489's name for the alternate address (RFC 3489 §11.2.3).
    ChangedAddress, CHANGED_ADDRESS, plain);
address_attribute!(
    /// SOURCE-ADDRESS: RFC 3489's name for the response origin (RFC 3489 §11.2.5).
    SourceAddress, SOURCE_ADDRESS, plain);
address_attribute!(
    /// XOR-PEER-ADDRESS: a TURN peer's address (RFC 8656 §18.3).
    XorPeerAddress, XOR_PEER_ADDRESS, xor);
address_attribute!(
    /// XOR-RELAYED-ADDRESS: the relayed transport address of a TURN allocation
    /// (RFC 8656 §18.5).
    XorRelayedAddress, XOR_RELAYED_ADDRESS, xor);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::header::{MAGIC_COOKIE, TransactionId};

    fn ctx() -> HeaderContext {
        HeaderContext {
            cookie: MAGIC_COOKIE,
            transaction_id: TransactionId::new([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
        }
    }

    #[test]
    fn xor_address_round_trips_v4_and_v6() {
        for a in [
            "192.0.2.1:32853",
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
        ] {
            let a: SocketAddr = a.parse().unwrap();
            let attr = XorMappedAddress(a);
            let mut buf = vec![0; attr.encoded_len()];
            attr.encode(&mut buf, &ctx());
            // The wire form must not carry the address in clear.
            assert_ne!(decode_plain(AttrType::XOR_MAPPED_ADDRESS, &buf).unwrap(), a);
            assert_eq!(XorMappedAddress::decode(&buf, &ctx()).unwrap(), attr);
        }
    }

    #[test]
    fn rejects_bad_family_and_length() {
        assert!(MappedAddress::decode(&[0, 3, 0, 1, 1, 2, 3, 4], &ctx()).is_err());
        assert!(MappedAddress::decode(&[0, 1, 0, 1, 1, 2, 3], &ctx()).is_err());
        assert!(MappedAddress::decode(&[0, 2, 0, 1, 1, 2, 3, 4], &ctx()).is_err());
        assert!(MappedAddress::decode(&[], &ctx()).is_err());
    }
}
