//! The NAT behaviour discovery attributes of RFC 5780 §7 and RFC 3489 §11.2.4:
//! CHANGE-REQUEST, RESPONSE-PORT and PADDING.

use super::attr::{AttrType, Attribute, bad, be16, be32};
use super::error::StunError;
use super::header::HeaderContext;

/// CHANGE-REQUEST: asks the server to answer from its other IP and/or port
/// (RFC 5780 §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChangeRequest {
    /// Answer from the alternate IP address.
    pub change_ip: bool,
    /// Answer from the alternate port.
    pub change_port: bool,
}

impl<'a> Attribute<'a> for ChangeRequest {
    const TYPE: AttrType = AttrType::CHANGE_REQUEST;

    fn decode(value: &'a [u8], _ctx: &HeaderContext) -> Result<Self, StunError> {
        if value.len() != 4 {
            return Err(bad::<Self>("must be 4 bytes"));
        }
        let flags = be32(value, 0).ok_or_else(|| bad::<Self>("must be 4 bytes"))?;
        Ok(ChangeRequest {
            change_ip: flags & 0x4 != 0,
            change_port: flags & 0x2 != 0,
        })
    }

    fn encoded_len(&self) -> usize {
        4
    }

    fn encode(&self, out: &mut [u8], _ctx: &HeaderContext) {
        let flags = (u32::from(self.change_ip) << 2) | (u32::from(self.change_port) << 1);
        out.copy_from_slice(&flags.to_be_bytes());
    }
}

/// RESPONSE-PORT: asks the server to send its response to this port of the client's
/// reflexive address, for filtering tests (RFC 5780 §7.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResponsePort(pub u16);

impl<'a> Attribute<'a> for ResponsePort {
    const TYPE: AttrType = AttrType::RESPONSE_PORT;

    fn decode(value: &'a [u8], _ctx: &HeaderContext) -> Result<Self, StunError> {
        if value.len() != 4 {
            return Err(bad::<Self>("must be 4 bytes"));
        }
        be16(value, 0)
            .map(ResponsePort)
            .ok_or_else(|| bad::<Self>("must be 4 bytes"))
    }

    fn encoded_len(&self) -> usize {
        4
    }

    fn encode(&self, out: &mut [u8], _ctx: &HeaderContext) {
        out[..2].copy_from_slice(&self.0.to_be_bytes());
        out[2..].fill(0);
    }
}

/// PADDING: bytes that make a request and its response bigger, for fragmentation tests
/// (RFC 5780 §7.6). Its content is meaningless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Padding<'a>(pub &'a [u8]);

impl<'a> Attribute<'a> for Padding<'a> {
    const TYPE: AttrType = AttrType::PADDING;

    fn decode(value: &'a [u8], _ctx: &HeaderContext) -> Result<Self, StunError> {
        Ok(Padding(value))
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn encode(&self, out: &mut [u8], _ctx: &HeaderContext) {
        out.copy_from_slice(self.0);
    }
}
