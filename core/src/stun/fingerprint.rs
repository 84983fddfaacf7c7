//! FINGERPRINT: CRC-32 of the message XOR 0x5354554e (RFC 8489 §14.7), which tells STUN
//! apart from other protocols multiplexed on one port.

/// The constant the CRC is XOR-ed with ("STUN" in ASCII).
pub const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// The fingerprint of `message_prefix`: the message up to (not including) the FINGERPRINT
/// attribute, with the header length already covering that attribute.
#[inline]
pub fn fingerprint(message_prefix: &[u8]) -> u32 {
    crc32fast::hash(message_prefix) ^ FINGERPRINT_XOR
}
