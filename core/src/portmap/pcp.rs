//! PCP wire format (RFC 6887): the common request/response header (§7.1, §7.2), the MAP
//! opcode (§11.1) with its 96-bit nonce, lifetimes, result codes (§7.4) and the epoch
//! (§8.5). Addresses are always 128-bit; IPv4 goes as an IPv4-mapped IPv6 address
//! (`::ffff:a.b.c.d`, §5).
//!
//! Options (§7.3) after the MAP payload are skipped with bounds checks; a response that is
//! shorter than the MAP layout, longer than 1100 bytes, not a multiple of 4, has the wrong
//! version, is a request, or carries a malformed option gives a [`PcpError`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// PCP version (RFC 6887 §7.1).
pub const PCP_VERSION: u8 = 2;
/// The MAP opcode (RFC 6887 §11.1).
pub const OPCODE_MAP: u8 = 1;
/// Length of the common header (RFC 6887 §7.1, §7.2).
pub const HEADER_LEN: usize = 24;
/// Length of the MAP opcode payload (RFC 6887 §11.1).
pub const MAP_PAYLOAD_LEN: usize = 36;
/// Length of a MAP request or response without options.
pub const MAP_LEN: usize = HEADER_LEN + MAP_PAYLOAD_LEN;
/// Largest PCP message (RFC 6887 §7).
pub const MAX_MESSAGE_LEN: usize = 1100;

/// The 96-bit mapping nonce (RFC 6887 §11.1). A refresh or delete must repeat it.
pub type Nonce = [u8; 12];

/// IANA protocol numbers a MAP request may name.
pub mod protocol {
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
}

/// Write `ip` as the 16-byte PCP address form (IPv4 becomes IPv4-mapped IPv6, RFC 6887 §5).
pub fn encode_addr(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Read a 16-byte PCP address; IPv4-mapped addresses come back as IPv4.
pub fn decode_addr(b: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(b);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// A PCP result code (RFC 6887 §7.4). Unknown codes are kept as [`ResultCode::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResultCode {
    /// 0 SUCCESS.
    Success,
    /// 1 UNSUPP_VERSION: the server speaks another version (often NAT-PMP only).
    UnsupportedVersion,
    /// 2 NOT_AUTHORIZED: the gateway refuses; ask its administrator to allow mapping.
    NotAuthorized,
    /// 3 MALFORMED_REQUEST.
    MalformedRequest,
    /// 4 UNSUPP_OPCODE.
    UnsupportedOpcode,
    /// 5 UNSUPP_OPTION.
    UnsupportedOption,
    /// 6 MALFORMED_OPTION.
    MalformedOption,
    /// 7 NETWORK_FAILURE (short-lived).
    NetworkFailure,
    /// 8 NO_RESOURCES (short-lived).
    NoResources,
    /// 9 UNSUPP_PROTOCOL.
    UnsupportedProtocol,
    /// 10 USER_EX_QUOTA (short-lived).
    UserExceededQuota,
    /// 11 CANNOT_PROVIDE_EXTERNAL (short-lived).
    CannotProvideExternal,
    /// 12 ADDRESS_MISMATCH: the client address in the header is not the packet's source.
    AddressMismatch,
    /// 13 EXCESSIVE_REMOTE_PEERS.
    ExcessiveRemotePeers,
    /// Any other value.
    Other(u8),
}

impl ResultCode {
    const NAMED: [(u8, ResultCode, &'static str); 14] = [
        (0, Self::Success, "SUCCESS"),
        (1, Self::UnsupportedVersion, "UNSUPP_VERSION"),
        (2, Self::NotAuthorized, "NOT_AUTHORIZED"),
        (3, Self::MalformedRequest, "MALFORMED_REQUEST"),
        (4, Self::UnsupportedOpcode, "UNSUPP_OPCODE"),
        (5, Self::UnsupportedOption, "UNSUPP_OPTION"),
        (6, Self::MalformedOption, "MALFORMED_OPTION"),
        (7, Self::NetworkFailure, "NETWORK_FAILURE"),
        (8, Self::NoResources, "NO_RESOURCES"),
        (9, Self::UnsupportedProtocol, "UNSUPP_PROTOCOL"),
        (10, Self::UserExceededQuota, "USER_EX_QUOTA"),
        (11, Self::CannotProvideExternal, "CANNOT_PROVIDE_EXTERNAL"),
        (12, Self::AddressMismatch, "ADDRESS_MISMATCH"),
        (13, Self::ExcessiveRemotePeers, "EXCESSIVE_REMOTE_PEERS"),
    ];

    /// Decode from the wire value.
    pub fn from_u8(v: u8) -> Self {
        Self::NAMED
            .iter()
            .find(|(n, _, _)| *n == v)
            .map_or(Self::Other(v), |(_, c, _)| *c)
    }

    /// The wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Other(v) => v,
            known => Self::NAMED
                .iter()
                .find(|(_, c, _)| *c == known)
                .map_or(0, |(n, _, _)| *n),
        }
    }

    /// The RFC name, for error messages.
    pub fn name(self) -> &'static str {
        Self::NAMED
            .iter()
            .find(|(_, c, _)| *c == self)
            .map_or("UNKNOWN", |(_, _, n)| n)
    }

    /// Whether RFC 6887 §7.4 calls this a short-lifetime error worth retrying later.
    pub fn is_short_lived(self) -> bool {
        matches!(
            self,
            Self::NetworkFailure
                | Self::NoResources
                | Self::UserExceededQuota
                | Self::CannotProvideExternal
        )
    }
}

/// Why a PCP message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcpError {
    /// Too short for the MAP layout.
    #[error("PCP message has {0} bytes, a MAP message needs at least 60; the reply was cut")]
    Truncated(usize),
    /// Longer than 1100 bytes or not a multiple of 4 (RFC 6887 §7).
    #[error("PCP message has {0} bytes: over 1100 or not a multiple of 4; not a PCP server")]
    BadLength(usize),
    /// Version is not 2. A NAT-PMP-only gateway answers version 0 (RFC 6887 §9).
    #[error("PCP message has version {0}, expected 2; fall back to NAT-PMP if it is 0")]
    Version(u8),
    /// The R bit says request where a response was expected, or the other way round.
    #[error("PCP message direction bit is wrong (request where response expected or vice versa)")]
    Direction,
    /// Not the MAP opcode.
    #[error("PCP opcode {0} is not MAP (1); ignore it")]
    Opcode(u8),
    /// An option header runs past the end of the message.
    #[error("PCP option at byte {0} runs past the end of the message")]
    Option(usize),
}

/// A MAP request (RFC 6887 §7.1 header + §11.1 payload). Lifetime 0 deletes the mapping
/// made with the same nonce, protocol and internal port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapRequest {
    /// Requested lifetime in seconds.
    pub lifetime: u32,
    /// The client's own address as it sends the packet (RFC 6887 §7.1).
    pub client: IpAddr,
    /// The mapping nonce.
    pub nonce: Nonce,
    /// IANA protocol number ([`protocol::UDP`], [`protocol::TCP`]); 0 means all.
    pub protocol: u8,
    /// The port on the client.
    pub internal_port: u16,
    /// Suggested external port (0: no preference).
    pub suggested_external_port: u16,
    /// Suggested external address (`0.0.0.0` mapped or `::` for no preference).
    pub suggested_external_ip: IpAddr,
}

impl MapRequest {
    /// Emit into `buf` (at least [`MAP_LEN`] bytes); `None` if it is too small.
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let out = buf.get_mut(..MAP_LEN)?;
        out.fill(0);
        out[0] = PCP_VERSION;
        out[1] = OPCODE_MAP; // R = 0
        out[4..8].copy_from_slice(&self.lifetime.to_be_bytes());
        out[8..24].copy_from_slice(&encode_addr(self.client));
        out[24..36].copy_from_slice(&self.nonce);
        out[36] = self.protocol;
        out[40..42].copy_from_slice(&self.internal_port.to_be_bytes());
        out[42..44].copy_from_slice(&self.suggested_external_port.to_be_bytes());
        out[44..60].copy_from_slice(&encode_addr(self.suggested_external_ip));
        Some(MAP_LEN)
    }

    /// Parse a MAP request (server side; for tests and the fuzzer).
    pub fn parse(bytes: &[u8]) -> Result<Self, PcpError> {
        let b = check(bytes, false)?;
        Ok(Self {
            lifetime: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            client: decode_addr(arr16(&b[8..24])),
            nonce: arr12(&b[24..36]),
            protocol: b[36],
            internal_port: u16::from_be_bytes([b[40], b[41]]),
            suggested_external_port: u16::from_be_bytes([b[42], b[43]]),
            suggested_external_ip: decode_addr(arr16(&b[44..60])),
        })
    }
}

/// A MAP response (RFC 6887 §7.2 header + §11.1 payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapResponse {
    /// The result.
    pub result: ResultCode,
    /// Granted lifetime in seconds (on error: how long the error is likely to last).
    pub lifetime: u32,
    /// Server epoch in seconds (§8.5); going backwards means the server lost its state.
    pub epoch: u32,
    /// Nonce, which must equal the request's.
    pub nonce: Nonce,
    /// IANA protocol number.
    pub protocol: u8,
    /// The port on the client.
    pub internal_port: u16,
    /// The assigned external port.
    pub external_port: u16,
    /// The assigned external address.
    pub external_ip: IpAddr,
}

impl MapResponse {
    /// Parse and check size, version, direction and opcode; options are skipped.
    pub fn parse(bytes: &[u8]) -> Result<Self, PcpError> {
        let b = check(bytes, true)?;
        Ok(Self {
            result: ResultCode::from_u8(b[3]),
            lifetime: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            epoch: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            nonce: arr12(&b[24..36]),
            protocol: b[36],
            internal_port: u16::from_be_bytes([b[40], b[41]]),
            external_port: u16::from_be_bytes([b[42], b[43]]),
            external_ip: decode_addr(arr16(&b[44..60])),
        })
    }

    /// Emit into `buf` (server side; for tests and the fuzzer's round trips).
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let out = buf.get_mut(..MAP_LEN)?;
        out.fill(0);
        out[0] = PCP_VERSION;
        out[1] = 0x80 | OPCODE_MAP;
        out[3] = self.result.to_u8();
        out[4..8].copy_from_slice(&self.lifetime.to_be_bytes());
        out[8..12].copy_from_slice(&self.epoch.to_be_bytes());
        out[24..36].copy_from_slice(&self.nonce);
        out[36] = self.protocol;
        out[40..42].copy_from_slice(&self.internal_port.to_be_bytes());
        out[42..44].copy_from_slice(&self.external_port.to_be_bytes());
        out[44..60].copy_from_slice(&encode_addr(self.external_ip));
        Some(MAP_LEN)
    }
}

/// The first `MAP_LEN` bytes once the size, version, direction, opcode and option framing
/// have been checked.
fn check(bytes: &[u8], response: bool) -> Result<&[u8; MAP_LEN], PcpError> {
    if bytes.len() > MAX_MESSAGE_LEN || bytes.len() % 4 != 0 {
        return Err(PcpError::BadLength(bytes.len()));
    }
    // Version first: a NAT-PMP server answers a short version-0 message (RFC 6887 §9).
    if let Some(&v) = bytes.first()
        && v != PCP_VERSION
    {
        return Err(PcpError::Version(v));
    }
    let Some(b) = bytes
        .get(..MAP_LEN)
        .and_then(|s| <&[u8; MAP_LEN]>::try_from(s).ok())
    else {
        return Err(PcpError::Truncated(bytes.len()));
    };
    if (b[1] & 0x80 != 0) != response {
        return Err(PcpError::Direction);
    }
    if b[1] & 0x7f != OPCODE_MAP {
        return Err(PcpError::Opcode(b[1] & 0x7f));
    }
    // Options (§7.3): code (1), reserved (1), length (2), data padded to 4 bytes.
    let mut at = MAP_LEN;
    while at < bytes.len() {
        let len = match bytes.get(at + 2..at + 4) {
            Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
            _ => return Err(PcpError::Option(at)),
        };
        let next = at + 4 + len.div_ceil(4) * 4;
        if next > bytes.len() {
            return Err(PcpError::Option(at));
        }
        at = next;
    }
    Ok(b)
}

fn arr16(s: &[u8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&s[..16]);
    a
}

fn arr12(s: &[u8]) -> [u8; 12] {
    let mut a = [0u8; 12];
    a.copy_from_slice(&s[..12]);
    a
}

/// The unspecified IPv4 address in PCP's mapped form, for "no suggestion".
pub const UNSPECIFIED_V4: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> MapRequest {
        MapRequest {
            lifetime: 7200,
            client: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10)),
            nonce: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
            protocol: protocol::UDP,
            internal_port: 40000,
            suggested_external_port: 0,
            suggested_external_ip: UNSPECIFIED_V4,
        }
    }

    #[test]
    fn map_request_layout_rfc6887_7_1_and_11_1() {
        let mut buf = [0xaau8; 64];
        assert_eq!(request().emit(&mut buf), Some(60));
        assert_eq!(&buf[..4], &[2, 1, 0, 0]);
        assert_eq!(&buf[4..8], &7200u32.to_be_bytes());
        // IPv4-mapped client address (§5).
        assert_eq!(
            &buf[8..24],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 1, 10]
        );
        assert_eq!(&buf[24..36], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(&buf[36..40], &[17, 0, 0, 0]);
        assert_eq!(&buf[40..44], &[0x9c, 0x40, 0, 0]);
        assert_eq!(
            &buf[44..60],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0]
        );
        assert_eq!(MapRequest::parse(&buf[..60]), Ok(request()));
        assert!(request().emit(&mut [0u8; 59]).is_none());
    }

    #[test]
    fn map_response_round_trip_and_ipv6() {
        let resp = MapResponse {
            result: ResultCode::Success,
            lifetime: 3600,
            epoch: 77,
            nonce: [9; 12],
            protocol: protocol::TCP,
            internal_port: 40000,
            external_port: 50001,
            external_ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
        };
        let mut buf = [0u8; 60];
        resp.emit(&mut buf).unwrap();
        assert_eq!(buf[1], 0x81);
        assert_eq!(MapResponse::parse(&buf), Ok(resp));
        let v6 = MapResponse {
            external_ip: "2001:db8::1".parse().unwrap(),
            ..resp
        };
        v6.emit(&mut buf).unwrap();
        assert_eq!(MapResponse::parse(&buf), Ok(v6));
    }

    #[test]
    fn every_result_code_round_trips() {
        for v in 0..=255u8 {
            assert_eq!(ResultCode::from_u8(v).to_u8(), v);
        }
        assert_eq!(ResultCode::from_u8(2).name(), "NOT_AUTHORIZED");
        assert_eq!(ResultCode::from_u8(13), ResultCode::ExcessiveRemotePeers);
        assert_eq!(ResultCode::from_u8(14), ResultCode::Other(14));
        assert_eq!(ResultCode::from_u8(14).name(), "UNKNOWN");
        assert!(ResultCode::NoResources.is_short_lived());
        assert!(!ResultCode::NotAuthorized.is_short_lived());
    }

    #[test]
    fn options_are_skipped_with_bounds() {
        let mut buf = vec![0u8; 60];
        MapResponse {
            result: ResultCode::Success,
            lifetime: 1,
            epoch: 1,
            nonce: [0; 12],
            protocol: 17,
            internal_port: 1,
            external_port: 1,
            external_ip: UNSPECIFIED_V4,
        }
        .emit(&mut buf)
        .unwrap();
        // THIRD_PARTY-like option with 16 bytes of data.
        let mut with_opt = buf.clone();
        with_opt.extend_from_slice(&[1, 0, 0, 16]);
        with_opt.extend_from_slice(&[0; 16]);
        assert!(MapResponse::parse(&with_opt).is_ok());
        // Option claiming more data than present.
        let mut bad = buf.clone();
        bad.extend_from_slice(&[1, 0, 0, 64]);
        assert_eq!(MapResponse::parse(&bad), Err(PcpError::Option(60)));
    }

    #[test]
    fn hostile_inputs_are_errors() {
        assert_eq!(MapResponse::parse(&[]), Err(PcpError::Truncated(0)));
        // NAT-PMP "unsupported version" answer (RFC 6887 §9): version 0, 8 bytes.
        assert_eq!(
            MapResponse::parse(&[0, 129, 0, 1, 0, 0, 0, 0]),
            Err(PcpError::Version(0))
        );
        assert_eq!(MapResponse::parse(&[2; 61]), Err(PcpError::BadLength(61)));
        assert_eq!(
            MapResponse::parse(&[0; 1104]),
            Err(PcpError::BadLength(1104))
        );
        let mut buf = [0u8; 60];
        request().emit(&mut buf).unwrap();
        // A request is not a response.
        assert_eq!(MapResponse::parse(&buf), Err(PcpError::Direction));
        buf[1] = 0x82; // PEER response
        assert_eq!(MapResponse::parse(&buf), Err(PcpError::Opcode(2)));
        assert_eq!(MapResponse::parse(&buf[..56]), Err(PcpError::Truncated(56)));
    }
}
