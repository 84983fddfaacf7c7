//! Node addresses (`p2pd_core::addr`): the parser on arbitrary text and on arbitrary
//! payloads behind a valid prefix and checksum; whatever parses must print back to itself.

use std::time::Duration;

use bolero::check;
use p2pd_core::addr::NodeAddr;

const TEST_TIME: Duration = Duration::from_secs(2);

/// Arbitrary text → `NodeAddr::parse`: never panics; a parsed address round-trips.
#[test]
fn addr_parse() {
    check!().with_test_time(TEST_TIME).for_each(|bytes: &[u8]| {
        if let Ok(text) = std::str::from_utf8(bytes) {
            parse_and_round_trip(text);
        }
    });
}

/// Arbitrary payload bytes, base32-encoded with a correct checksum, so the fuzzer reaches
/// the field parser instead of stopping at the checksum.
#[test]
fn addr_payload() {
    check!()
        .with_test_time(TEST_TIME)
        .for_each(|payload: &[u8]| {
            let mut b = payload.to_vec();
            b.extend_from_slice(&crc32(payload).to_be_bytes());
            parse_and_round_trip(&format!("p2pd1:{}", base32(&b)));
        });
}

fn parse_and_round_trip(text: &str) {
    if let Ok(a) = NodeAddr::parse(text) {
        let printed = a.to_string();
        assert_eq!(NodeAddr::parse(&printed).as_ref(), Ok(&a));
    }
}

/// RFC 4648 base32, lowercase, unpadded (an independent copy: the target checks core's decoder).
fn base32(bytes: &[u8]) -> String {
    const A: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(A[((acc >> bits) & 31) as usize] as char);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(A[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// CRC-32 (IEEE), bitwise.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
