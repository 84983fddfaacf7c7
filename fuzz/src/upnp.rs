//! UPnP IGD (`p2pd_core::portmap::upnp`): the SSDP, HTTP response, URL, device
//! description and SOAP parsers on arbitrary bytes, and the client machine fed arbitrary
//! SSDP datagrams and TCP bytes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bolero::check;
use p2pd_core::portmap::client::PortMapEvent;
use p2pd_core::portmap::natpmp::MapProtocol;
use p2pd_core::portmap::upnp::client::{TcpCommand, UpnpClient, UpnpConfig};
use p2pd_core::portmap::upnp::description::Description;
use p2pd_core::portmap::upnp::http::{self, MAX_BODY_LEN};
use p2pd_core::portmap::upnp::soap::{self, Action};
use p2pd_core::portmap::upnp::ssdp::{SearchRequest, SearchResponse};
use p2pd_core::portmap::upnp::url::HttpUrl;
use p2pd_core::portmap::upnp::xml::MAX_XML_LEN;

/// How long each target runs under plain `cargo test` (cargo-bolero ignores it).
const TEST_TIME: Duration = Duration::from_secs(2);

/// Arbitrary bytes → SSDP search response and M-SEARCH parsers; a parsed response
/// re-emits to bytes that parse back equal.
#[test]
fn ssdp_parse() {
    check!().with_test_time(TEST_TIME).for_each(|bytes: &[u8]| {
        if let Ok(r) = SearchResponse::parse(bytes) {
            assert!(!r.location.is_empty());
            // Header values have no CR/LF, so the re-emitted form parses back equal.
            assert_eq!(SearchResponse::parse(&r.emit()), Ok(r));
        }
        let _ = SearchRequest::parse(bytes);
    });
}

/// Arbitrary bytes → HTTP response parser, open and closed; a complete response's body is
/// bounded and parsing is stable under "closed".
#[test]
fn http_response_parse() {
    check!().with_test_time(TEST_TIME).for_each(|bytes: &[u8]| {
        let open = http::parse_response(bytes, false);
        let closed = http::parse_response(bytes, true);
        if let Ok(Some(r)) = &open {
            assert!(r.body.len() <= MAX_BODY_LEN);
            assert!((100..=999).contains(&r.status));
            assert_eq!(
                &closed, &open,
                "a complete response is complete when closed too"
            );
        }
        if let Ok(Some(r)) = &closed {
            assert!(r.body.len() <= MAX_BODY_LEN);
        }
        assert!(
            !matches!(closed, Ok(None)),
            "closed gives a response or an error"
        );
    });
}

/// Arbitrary text → URL parser and joiner; what parses has a path starting with `/`.
#[test]
fn url_parse() {
    check!().with_test_time(TEST_TIME).for_each(|bytes: &[u8]| {
        let Ok(s) = std::str::from_utf8(bytes) else {
            return;
        };
        if let Ok(u) = HttpUrl::parse(s) {
            assert!(u.path.starts_with('/'));
            assert_ne!(u.port, 0);
        }
        let base = HttpUrl {
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            port: 5000,
            path: "/dev/rootDesc.xml".into(),
        };
        if let Ok(u) = base.join(s) {
            assert!(u.path.starts_with('/'));
        }
    });
}

/// Arbitrary bytes → device description and SOAP response parsers (every action, status
/// 200 and 500); never panics, what parses is bounded.
#[test]
fn xml_soap_parse() {
    let loc = HttpUrl {
        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        port: 5000,
        path: "/rootDesc.xml".into(),
    };
    let actions = [
        Action::GetExternalIpAddress,
        Action::AddPortMapping {
            external_port: 1,
            protocol: MapProtocol::Udp,
            internal_port: 1,
            internal_client: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            description: "p2pd".into(),
            lease: 60,
        },
        Action::DeletePortMapping {
            external_port: 1,
            protocol: MapProtocol::Tcp,
        },
        Action::AddPinhole {
            internal_client: "2001:db8::2"
                .parse()
                .unwrap_or(std::net::Ipv6Addr::LOCALHOST),
            internal_port: 1,
            protocol: MapProtocol::Tcp,
            lease: 60,
        },
        Action::UpdatePinhole { id: 1, lease: 60 },
        Action::DeletePinhole { id: 1 },
    ];
    check!().with_test_time(TEST_TIME).for_each(|bytes: &[u8]| {
        if let Ok(d) = Description::parse(bytes, &loc) {
            assert!(bytes.len() <= MAX_XML_LEN);
            assert!(d.services.len() <= 64);
        }
        for a in &actions {
            for status in [200, 500] {
                if let Err(soap::SoapError::Fault { description, .. }) =
                    soap::parse_response(a, status, bytes)
                {
                    assert!(description.chars().count() <= 120);
                }
            }
        }
    });
}

/// The client fed a script of SSDP datagrams, TCP bytes, closes and time steps; a valid
/// search response is injected first so the script reaches the HTTP and SOAP parsers.
/// Never panics, only sends M-SEARCHes, keeps within its buffers and ends (or holds a
/// mapping) once time runs out.
#[test]
fn upnp_client_arbitrary_replies() {
    check!()
        .with_test_time(TEST_TIME)
        .with_type::<(bool, Vec<(u8, u16, Vec<u8>)>)>()
        .for_each(|(v6, script)| {
            let t0 = Instant::now();
            let local: SocketAddr = if *v6 {
                "[2001:db8::2]:5000".parse()
            } else {
                "10.0.0.2:5000".parse()
            }
            .unwrap_or(SocketAddr::from(([10, 0, 0, 2], 5000)));
            let gw: SocketAddr = if *v6 {
                "[2001:db8::1]:1900".parse()
            } else {
                "10.0.0.1:1900".parse()
            }
            .unwrap_or(SocketAddr::from(([10, 0, 0, 1], 1900)));
            let mut c = UpnpClient::new(UpnpConfig::new(local, MapProtocol::Udp, 4000, 60), t0);
            let loc = if *v6 {
                "http://[2001:db8::1]:5000/rootDesc.xml"
            } else {
                "http://10.0.0.1:5000/rootDesc.xml"
            };
            let ok = SearchResponse {
                location: loc.into(),
                target: "urn:schemas-upnp-org:device:InternetGatewayDevice:1".into(),
                usn: String::new(),
                server: String::new(),
            }
            .emit();
            c.handle_input(t0, gw, local, &ok);
            let mut now = t0;
            let mut conn = None;
            let drain = |c: &mut UpnpClient, conn: &mut Option<_>, now| {
                while let Some(t) = c.poll_transmit() {
                    assert!(SearchRequest::parse(t.contents).is_ok());
                }
                for _ in 0..16 {
                    match c.poll_tcp() {
                        Some(TcpCommand::Connect { conn: id, .. }) => {
                            *conn = Some(id);
                            c.handle_tcp_connected(now, id);
                        }
                        Some(_) => {}
                        None => break,
                    }
                }
                while let Some(e) = c.poll_event() {
                    if let PortMapEvent::Mapped(m) = e {
                        assert!(m.expires > now || m.lease.is_zero());
                    }
                }
            };
            for (kind, delay, bytes) in script.iter().take(100) {
                drain(&mut c, &mut conn, now);
                now += Duration::from_millis(u64::from(*delay));
                match (kind % 4, conn) {
                    (0, _) => c.handle_input(now, gw, local, bytes),
                    (1, Some(id)) => c.handle_tcp_closed(now, id),
                    (_, Some(id)) => c.handle_tcp_data(now, id, bytes),
                    (_, None) => c.handle_timeout(now),
                }
                if kind & 0x80 != 0 {
                    c.remove(now);
                }
                if let Some(t) = c.poll_timeout()
                    && t.at <= now
                {
                    c.handle_timeout(now);
                }
            }
            for _ in 0..1000 {
                drain(&mut c, &mut conn, now);
                let Some(t) = c.poll_timeout() else { break };
                now = now.max(t.at);
                c.handle_timeout(now);
                if c.mapping().is_some() {
                    break;
                }
            }
        });
}
