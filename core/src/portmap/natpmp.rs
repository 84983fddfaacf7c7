//! NAT-PMP wire format (RFC 6886 §3): external address and UDP/TCP mapping requests and
//! responses, result codes and the gateway epoch ("seconds since start of epoch").
//!
//! Requests are emitted into a buffer the caller owns; responses are parsed from the bytes
//! the gateway sent. A response that is truncated, has the wrong version, an unexpected
//! opcode or trailing bytes gives a [`NatPmpError`], never a panic.

use std::net::Ipv4Addr;

/// The UDP port the gateway listens on for NAT-PMP (and PCP) requests (RFC 6886 §3.1).
pub const NATPMP_SERVER_PORT: u16 = 5351;
/// NAT-PMP version number (RFC 6886 §3.2).
pub const NATPMP_VERSION: u8 = 0;
/// Length of an external address request (RFC 6886 §3.2).
pub const EXTERNAL_ADDRESS_REQUEST_LEN: usize = 2;
/// Length of an external address response (RFC 6886 §3.2).
pub const EXTERNAL_ADDRESS_RESPONSE_LEN: usize = 12;
/// Length of a mapping request (RFC 6886 §3.3).
pub const MAP_REQUEST_LEN: usize = 12;
/// Length of a mapping response (RFC 6886 §3.3).
pub const MAP_RESPONSE_LEN: usize = 16;

/// A transport protocol a NAT-PMP mapping is for (RFC 6886 §3.3, opcodes 1 and 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapProtocol {
    /// UDP, opcode 1.
    Udp,
    /// TCP, opcode 2.
    Tcp,
}

impl MapProtocol {
    /// The request opcode for this protocol.
    pub fn opcode(self) -> u8 {
        match self {
            MapProtocol::Udp => 1,
            MapProtocol::Tcp => 2,
        }
    }
}

/// A NAT-PMP result code (RFC 6886 §3.5). Unknown codes are kept as [`ResultCode::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResultCode {
    /// 0: Success.
    Success,
    /// 1: Unsupported Version.
    UnsupportedVersion,
    /// 2: Not Authorized/Refused (e.g. the box supports mapping but the user turned it off).
    NotAuthorized,
    /// 3: Network Failure (e.g. the gateway has no external address yet).
    NetworkFailure,
    /// 4: Out of resources (the gateway cannot create any more mappings).
    OutOfResources,
    /// 5: Unsupported opcode.
    UnsupportedOpcode,
    /// Any other value.
    Other(u16),
}

impl ResultCode {
    /// Decode from the wire value.
    pub fn from_u16(v: u16) -> Self {
        match v {
            0 => Self::Success,
            1 => Self::UnsupportedVersion,
            2 => Self::NotAuthorized,
            3 => Self::NetworkFailure,
            4 => Self::OutOfResources,
            5 => Self::UnsupportedOpcode,
            other => Self::Other(other),
        }
    }

    /// The wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            Self::Success => 0,
            Self::UnsupportedVersion => 1,
            Self::NotAuthorized => 2,
            Self::NetworkFailure => 3,
            Self::OutOfResources => 4,
            Self::UnsupportedOpcode => 5,
            Self::Other(v) => v,
        }
    }

    /// The RFC name of the code, for error messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::UnsupportedVersion => "UNSUPPORTED_VERSION",
            Self::NotAuthorized => "NOT_AUTHORIZED",
            Self::NetworkFailure => "NETWORK_FAILURE",
            Self::OutOfResources => "OUT_OF_RESOURCES",
            Self::UnsupportedOpcode => "UNSUPPORTED_OPCODE",
            Self::Other(_) => "UNKNOWN",
        }
    }
}

/// Why a NAT-PMP response was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NatPmpError {
    /// Fewer or more bytes than the response layout has.
    #[error(
        "NAT-PMP response has {got} bytes, expected {expected}; the sender is not a NAT-PMP gateway or the reply was cut"
    )]
    Length {
        /// Bytes received.
        got: usize,
        /// Bytes the layout needs.
        expected: usize,
    },
    /// The version byte is not 0 (a PCP server answers version 2 here).
    #[error("NAT-PMP response has version {0}, expected 0; the gateway may speak PCP instead")]
    Version(u8),
    /// The opcode is not a response to the request sent.
    #[error("NAT-PMP response has opcode {got}, expected {expected}; ignore it and wait")]
    Opcode {
        /// Opcode received.
        got: u8,
        /// Opcode expected (request opcode + 128).
        expected: u8,
    },
    /// Fewer than 2 bytes: not even a header.
    #[error("NAT-PMP message of {0} bytes is too short for a header")]
    Truncated(usize),
}

/// Emit an external address request (RFC 6886 §3.2) into `buf`; returns the bytes written.
///
/// `buf` must hold [`EXTERNAL_ADDRESS_REQUEST_LEN`] bytes; returns `None` if it does not.
pub fn emit_external_address_request(buf: &mut [u8]) -> Option<usize> {
    let out = buf.get_mut(..EXTERNAL_ADDRESS_REQUEST_LEN)?;
    out.copy_from_slice(&[NATPMP_VERSION, 0]);
    Some(EXTERNAL_ADDRESS_REQUEST_LEN)
}

/// A mapping request (RFC 6886 §3.3). A lifetime of 0 (with suggested port 0) deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapRequest {
    /// UDP or TCP.
    pub protocol: MapProtocol,
    /// The port on this host.
    pub internal_port: u16,
    /// The external port the client would like (0: no preference).
    pub suggested_external_port: u16,
    /// Requested lifetime in seconds (RFC 6886 recommends 7200); 0 deletes the mapping.
    pub lifetime: u32,
}

impl MapRequest {
    /// Emit into `buf` (at least [`MAP_REQUEST_LEN`] bytes); returns the bytes written or
    /// `None` if `buf` is too small.
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let out = buf.get_mut(..MAP_REQUEST_LEN)?;
        out[0] = NATPMP_VERSION;
        out[1] = self.protocol.opcode();
        out[2..4].copy_from_slice(&[0, 0]);
        out[4..6].copy_from_slice(&self.internal_port.to_be_bytes());
        out[6..8].copy_from_slice(&self.suggested_external_port.to_be_bytes());
        out[8..12].copy_from_slice(&self.lifetime.to_be_bytes());
        Some(MAP_REQUEST_LEN)
    }

    /// Parse a request (used by tests and by a gateway-side simulator).
    pub fn parse(bytes: &[u8]) -> Result<Self, NatPmpError> {
        let b: &[u8; MAP_REQUEST_LEN] = bytes.try_into().map_err(|_| NatPmpError::Length {
            got: bytes.len(),
            expected: MAP_REQUEST_LEN,
        })?;
        if b[0] != NATPMP_VERSION {
            return Err(NatPmpError::Version(b[0]));
        }
        let protocol = match b[1] {
            1 => MapProtocol::Udp,
            2 => MapProtocol::Tcp,
            got => return Err(NatPmpError::Opcode { got, expected: 1 }),
        };
        Ok(Self {
            protocol,
            internal_port: u16::from_be_bytes([b[4], b[5]]),
            suggested_external_port: u16::from_be_bytes([b[6], b[7]]),
            lifetime: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        })
    }
}

/// The common part of every NAT-PMP response (RFC 6886 §3.2, §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHeader {
    /// Response opcode (request opcode + 128).
    pub opcode: u8,
    /// The result.
    pub result: ResultCode,
    /// Seconds since the gateway's port-mapping table was (re)initialised (RFC 6886 §3.6);
    /// a value that goes backwards means the gateway lost its mappings.
    pub epoch: u32,
}

fn header(bytes: &[u8], expected_opcode: u8, len: usize) -> Result<ResponseHeader, NatPmpError> {
    if bytes.len() < 2 {
        return Err(NatPmpError::Truncated(bytes.len()));
    }
    if bytes[0] != NATPMP_VERSION {
        return Err(NatPmpError::Version(bytes[0]));
    }
    if bytes[1] != expected_opcode {
        return Err(NatPmpError::Opcode {
            got: bytes[1],
            expected: expected_opcode,
        });
    }
    // An error response may be only 8 bytes long (RFC 6886 §3.5 lets the gateway stop
    // after the epoch when the result is not Success); accept that for errors only.
    if bytes.len() < 8 {
        return Err(NatPmpError::Length {
            got: bytes.len(),
            expected: len,
        });
    }
    let result = ResultCode::from_u16(u16::from_be_bytes([bytes[2], bytes[3]]));
    let ok_len = bytes.len() == len || (result != ResultCode::Success && bytes.len() == 8);
    if !ok_len {
        return Err(NatPmpError::Length {
            got: bytes.len(),
            expected: len,
        });
    }
    Ok(ResponseHeader {
        opcode: bytes[1],
        result,
        epoch: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
    })
}

/// An external address response (RFC 6886 §3.2, opcode 128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExternalAddressResponse {
    /// Result code and epoch.
    pub header: ResponseHeader,
    /// The gateway's external IPv4 address (0.0.0.0 when the result is an error).
    pub external: Ipv4Addr,
}

impl ExternalAddressResponse {
    /// Parse and check the length, version and opcode.
    pub fn parse(bytes: &[u8]) -> Result<Self, NatPmpError> {
        let header = header(bytes, 128, EXTERNAL_ADDRESS_RESPONSE_LEN)?;
        let external = match bytes.get(8..12) {
            Some(&[a, b, c, d]) => Ipv4Addr::new(a, b, c, d),
            _ => Ipv4Addr::UNSPECIFIED,
        };
        Ok(Self { header, external })
    }

    /// Emit (gateway side; used by tests and the fuzzer's round trips).
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let out = buf.get_mut(..EXTERNAL_ADDRESS_RESPONSE_LEN)?;
        out[0] = NATPMP_VERSION;
        out[1] = 128;
        out[2..4].copy_from_slice(&self.header.result.to_u16().to_be_bytes());
        out[4..8].copy_from_slice(&self.header.epoch.to_be_bytes());
        out[8..12].copy_from_slice(&self.external.octets());
        Some(EXTERNAL_ADDRESS_RESPONSE_LEN)
    }
}

/// A mapping response (RFC 6886 §3.3, opcode 129 for UDP, 130 for TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapResponse {
    /// Result code and epoch.
    pub header: ResponseHeader,
    /// Which protocol the mapping is for.
    pub protocol: MapProtocol,
    /// The port on the client host.
    pub internal_port: u16,
    /// The port the gateway mapped (0 on error).
    pub external_port: u16,
    /// Lifetime the gateway granted, in seconds; may be shorter than asked.
    pub lifetime: u32,
}

impl MapResponse {
    /// Parse a response to a mapping request for `protocol`.
    pub fn parse(bytes: &[u8], protocol: MapProtocol) -> Result<Self, NatPmpError> {
        let header = header(bytes, 128 + protocol.opcode(), MAP_RESPONSE_LEN)?;
        let (internal_port, external_port, lifetime) = match bytes.get(8..16) {
            Some(&[a, b, c, d, e, f, g, h]) => (
                u16::from_be_bytes([a, b]),
                u16::from_be_bytes([c, d]),
                u32::from_be_bytes([e, f, g, h]),
            ),
            _ => (0, 0, 0),
        };
        Ok(Self {
            header,
            protocol,
            internal_port,
            external_port,
            lifetime,
        })
    }

    /// Emit (gateway side; used by tests and the fuzzer's round trips).
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let out = buf.get_mut(..MAP_RESPONSE_LEN)?;
        out[0] = NATPMP_VERSION;
        out[1] = 128 + self.protocol.opcode();
        out[2..4].copy_from_slice(&self.header.result.to_u16().to_be_bytes());
        out[4..8].copy_from_slice(&self.header.epoch.to_be_bytes());
        out[8..10].copy_from_slice(&self.internal_port.to_be_bytes());
        out[10..12].copy_from_slice(&self.external_port.to_be_bytes());
        out[12..16].copy_from_slice(&self.lifetime.to_be_bytes());
        Some(MAP_RESPONSE_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_address_request_layout() {
        let mut buf = [0xffu8; 4];
        assert_eq!(emit_external_address_request(&mut buf), Some(2));
        assert_eq!(&buf[..2], &[0, 0]);
        assert_eq!(emit_external_address_request(&mut [0u8; 1]), None);
    }

    #[test]
    fn map_request_layout_rfc6886_3_3() {
        let req = MapRequest {
            protocol: MapProtocol::Tcp,
            internal_port: 40000,
            suggested_external_port: 40001,
            lifetime: 7200,
        };
        let mut buf = [0u8; 12];
        assert_eq!(req.emit(&mut buf), Some(12));
        assert_eq!(buf, [0, 2, 0, 0, 0x9c, 0x40, 0x9c, 0x41, 0, 0, 0x1c, 0x20]);
        assert_eq!(MapRequest::parse(&buf), Ok(req));
        assert!(req.emit(&mut [0u8; 11]).is_none());
    }

    #[test]
    fn external_address_response_round_trip() {
        let resp = ExternalAddressResponse {
            header: ResponseHeader {
                opcode: 128,
                result: ResultCode::Success,
                epoch: 1234,
            },
            external: Ipv4Addr::new(192, 0, 2, 7),
        };
        let mut buf = [0u8; 12];
        resp.emit(&mut buf).unwrap();
        assert_eq!(buf, [0, 128, 0, 0, 0, 0, 4, 0xd2, 192, 0, 2, 7]);
        assert_eq!(ExternalAddressResponse::parse(&buf), Ok(resp));
    }

    #[test]
    fn map_response_round_trip_both_protocols() {
        for protocol in [MapProtocol::Udp, MapProtocol::Tcp] {
            let resp = MapResponse {
                header: ResponseHeader {
                    opcode: 128 + protocol.opcode(),
                    result: ResultCode::Success,
                    epoch: 99,
                },
                protocol,
                internal_port: 40000,
                external_port: 50000,
                lifetime: 3600,
            };
            let mut buf = [0u8; 16];
            resp.emit(&mut buf).unwrap();
            assert_eq!(MapResponse::parse(&buf, protocol), Ok(resp));
            let other = match protocol {
                MapProtocol::Udp => MapProtocol::Tcp,
                MapProtocol::Tcp => MapProtocol::Udp,
            };
            assert!(matches!(
                MapResponse::parse(&buf, other),
                Err(NatPmpError::Opcode { .. })
            ));
        }
    }

    #[test]
    fn every_result_code_round_trips() {
        for v in 0..=6u16 {
            let code = ResultCode::from_u16(v);
            assert_eq!(code.to_u16(), v);
        }
        assert_eq!(ResultCode::from_u16(2), ResultCode::NotAuthorized);
        assert_eq!(ResultCode::from_u16(2).name(), "NOT_AUTHORIZED");
        assert_eq!(ResultCode::from_u16(5), ResultCode::UnsupportedOpcode);
        assert_eq!(ResultCode::from_u16(6), ResultCode::Other(6));
    }

    #[test]
    fn short_error_response_is_accepted_short_success_is_not() {
        // NOT_AUTHORIZED, epoch 5, stops after the epoch.
        let err = [0, 129, 0, 2, 0, 0, 0, 5];
        let r = MapResponse::parse(&err, MapProtocol::Udp).unwrap();
        assert_eq!(r.header.result, ResultCode::NotAuthorized);
        assert_eq!(r.external_port, 0);
        let ok = [0, 129, 0, 0, 0, 0, 0, 5];
        assert!(matches!(
            MapResponse::parse(&ok, MapProtocol::Udp),
            Err(NatPmpError::Length { got: 8, .. })
        ));
    }

    #[test]
    fn hostile_inputs_are_errors() {
        assert_eq!(
            ExternalAddressResponse::parse(&[]),
            Err(NatPmpError::Truncated(0))
        );
        assert_eq!(
            ExternalAddressResponse::parse(&[0]),
            Err(NatPmpError::Truncated(1))
        );
        // PCP version answering on the same port.
        let mut pcp = [0u8; 60];
        pcp[0] = 2;
        pcp[1] = 0x81;
        assert_eq!(
            MapResponse::parse(&pcp, MapProtocol::Udp),
            Err(NatPmpError::Version(2))
        );
        // Oversized success response.
        let mut big = [0u8; 17];
        big[1] = 129;
        assert!(matches!(
            MapResponse::parse(&big, MapProtocol::Udp),
            Err(NatPmpError::Length { got: 17, .. })
        ));
        // Truncated mid-body.
        assert!(MapResponse::parse(&big[..12], MapProtocol::Udp).is_err());
        // A request echoed back is not a response.
        assert!(matches!(
            MapResponse::parse(
                &[0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                MapProtocol::Udp
            ),
            Err(NatPmpError::Opcode {
                got: 1,
                expected: 129
            })
        ));
    }
}
