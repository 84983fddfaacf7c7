//! Port mapping (`p2pd_core::portmap`): the NAT-PMP and PCP response parsers on arbitrary
//! bytes; whatever parses must re-emit to bytes that parse back equal.

use std::time::Duration;

use bolero::check;
use p2pd_core::portmap::{natpmp, pcp};

/// How long each target runs under plain `cargo test` (cargo-bolero ignores it).
const TEST_TIME: Duration = Duration::from_secs(2);

/// Arbitrary bytes → every NAT-PMP response parser; a parsed success re-emits and parses
/// back equal.
#[test]
fn natpmp_parse() {
    check!().with_test_time(TEST_TIME).for_each(|bytes: &[u8]| {
        if let Ok(r) = natpmp::ExternalAddressResponse::parse(bytes) {
            assert!(bytes.len() == 8 || bytes.len() == 12);
            if bytes.len() == 12 {
                let mut buf = [0u8; 12];
                assert_eq!(r.emit(&mut buf), Some(12));
                assert_eq!(natpmp::ExternalAddressResponse::parse(&buf), Ok(r));
            }
        }
        for protocol in [natpmp::MapProtocol::Udp, natpmp::MapProtocol::Tcp] {
            if let Ok(r) = natpmp::MapResponse::parse(bytes, protocol) {
                assert_eq!(r.protocol, protocol);
                if bytes.len() == natpmp::MAP_RESPONSE_LEN {
                    let mut buf = [0u8; 16];
                    assert_eq!(r.emit(&mut buf), Some(16));
                    assert_eq!(&buf[..], bytes);
                } else {
                    assert_ne!(r.header.result, natpmp::ResultCode::Success);
                }
            }
        }
        if let Ok(r) = natpmp::MapRequest::parse(bytes) {
            let mut buf = [0u8; 12];
            r.emit(&mut buf);
            assert_eq!(natpmp::MapRequest::parse(&buf), Ok(r));
        }
    });
}

/// Arbitrary bytes → PCP MAP response and request parsers; what parses has a legal length
/// and re-emits to bytes that parse back equal.
#[test]
fn pcp_parse() {
    check!().with_test_time(TEST_TIME).for_each(|bytes: &[u8]| {
        if let Ok(r) = pcp::MapResponse::parse(bytes) {
            assert!(bytes.len() >= pcp::MAP_LEN && bytes.len() <= pcp::MAX_MESSAGE_LEN);
            let mut buf = [0u8; pcp::MAP_LEN];
            assert_eq!(r.emit(&mut buf), Some(pcp::MAP_LEN));
            assert_eq!(pcp::MapResponse::parse(&buf), Ok(r));
        }
        if let Ok(r) = pcp::MapRequest::parse(bytes) {
            let mut buf = [0u8; pcp::MAP_LEN];
            assert_eq!(r.emit(&mut buf), Some(pcp::MAP_LEN));
            assert_eq!(pcp::MapRequest::parse(&buf), Ok(r));
        }
    });
}
