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

/// The port-mapping client fed a script of (delay, from the gateway?, bytes) plus a
/// `remove()` at a fuzzed step: answers built from its real requests (PCP and NAT-PMP,
/// any result code and epoch) and junk. Never panics, never sends anything but a valid
/// PCP or NAT-PMP request, and always either finishes or has a deadline pending.
#[test]
fn portmap_client_arbitrary_replies() {
    use p2pd_core::portmap::client::{PortMapClient, PortMapConfig};
    use p2pd_core::rng::Rng;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::time::Instant;

    check!()
        .with_test_time(TEST_TIME)
        .with_type::<(u8, u32, Vec<(u16, u8, u8, u32, Vec<u8>)>)>()
        .for_each(|(remove_at, lease, script)| {
            let gw = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
            let gw_port = SocketAddr::new(gw, 5351);
            let local: SocketAddr = "10.0.0.2:4000".parse().unwrap_or(gw_port);
            let t0 = Instant::now();
            let cfg = PortMapConfig::new(gw, local, natpmp::MapProtocol::Udp, 4000, *lease);
            let mut c = PortMapClient::new(cfg, &mut Rng::seed_from_u64(1), t0);
            let mut now = t0;
            let mut last: Vec<Vec<u8>> = Vec::new();
            for (i, (delay, kind, code, epoch, junk)) in script.iter().take(200).enumerate() {
                while let Some(t) = c.poll_transmit() {
                    let b = t.contents;
                    let ok = pcp::MapRequest::parse(b).is_ok()
                        || natpmp::MapRequest::parse(b).is_ok()
                        || b == [0, 0];
                    assert!(ok, "sent {b:?}");
                    last.push(b.to_vec());
                }
                if i == usize::from(*remove_at) {
                    c.remove(now);
                }
                now += Duration::from_millis(u64::from(*delay));
                let reply: Vec<u8> = match (kind % 4, last.last()) {
                    (0, Some(req)) if req.first() == Some(&2) => {
                        let mut out = vec![0u8; pcp::MAP_LEN];
                        if let Ok(r) = pcp::MapRequest::parse(req) {
                            pcp::MapResponse {
                                result: pcp::ResultCode::from_u8(*code % 16),
                                lifetime: r.lifetime,
                                epoch: *epoch,
                                nonce: r.nonce,
                                protocol: r.protocol,
                                internal_port: r.internal_port,
                                external_port: 4000,
                                external_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                            }
                            .emit(&mut out);
                        }
                        out
                    }
                    (1, Some(req)) => {
                        let mut out = vec![0u8; 16];
                        if let Ok(r) = natpmp::MapRequest::parse(req) {
                            natpmp::MapResponse {
                                header: natpmp::ResponseHeader {
                                    opcode: 129,
                                    result: natpmp::ResultCode::from_u16(u16::from(*code % 8)),
                                    epoch: *epoch,
                                },
                                protocol: r.protocol,
                                internal_port: r.internal_port,
                                external_port: 4000,
                                lifetime: r.lifetime,
                            }
                            .emit(&mut out);
                        } else {
                            out.truncate(12);
                            natpmp::ExternalAddressResponse {
                                header: natpmp::ResponseHeader {
                                    opcode: 128,
                                    result: natpmp::ResultCode::from_u16(u16::from(*code % 8)),
                                    epoch: *epoch,
                                },
                                external: Ipv4Addr::new(192, 0, 2, 1),
                            }
                            .emit(&mut out);
                        }
                        out
                    }
                    _ => junk.clone(),
                };
                let from = if kind & 0x80 == 0 { gw_port } else { local };
                c.handle_input(now, from, local, &reply);
                while c.poll_event().is_some() {}
                if let Some(t) = c.poll_timeout() {
                    assert!(t.at >= t0);
                    if t.at <= now {
                        c.handle_timeout(now);
                    }
                }
            }
            // Run the clock out: the client must finish or keep a future deadline.
            for _ in 0..10_000 {
                let Some(t) = c.poll_timeout() else { break };
                now = now.max(t.at);
                c.handle_timeout(now);
                while c.poll_transmit().is_some() {}
                while c.poll_event().is_some() {}
                if c.mapping().is_some() {
                    break;
                }
            }
        });
}
