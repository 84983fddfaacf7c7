//! The UPnP client against scripted gateway answers built with the module's own emitters
//! (the lab tests run it against real miniupnpd).

use super::*;
use crate::portmap::upnp::description::{WAN_IP_CONNECTION_1, WAN_IPV6_FIREWALL_CONTROL_1};
use crate::portmap::upnp::ssdp;

const GW: &str = "10.0.0.1";

fn desc_xml() -> String {
    format!(
        r#"<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><device><deviceList><device><serviceList>
<service><serviceType>{WAN_IP_CONNECTION_1}</serviceType><controlURL>/ctl/IPConn</controlURL></service>
<service><serviceType>{WAN_IPV6_FIREWALL_CONTROL_1}</serviceType><controlURL>/ctl/IP6FCtl</controlURL></service>
</serviceList></device></deviceList></device></root>"#
    )
}

fn http_ok(body: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

fn http_500(body: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

fn search_response(location: &str) -> Vec<u8> {
    SearchResponse {
        location: location.into(),
        target: ssdp::IGD_SEARCH_TARGETS[0].into(),
        usn: "uuid:x".into(),
        server: "test".into(),
    }
    .emit()
}

fn v4_client(now: Instant, lease: u32) -> UpnpClient {
    let cfg = UpnpConfig::new(
        "10.0.0.2:50000".parse().unwrap(),
        MapProtocol::Tcp,
        40000,
        lease,
    );
    UpnpClient::new(cfg, now)
}

fn gw_ssdp() -> SocketAddr {
    format!("{GW}:1900").parse().unwrap()
}

fn local() -> SocketAddr {
    "10.0.0.2:50000".parse().unwrap()
}

/// Drains TCP commands; answers the request sent on the open connection with `reply`
/// (connecting first). Returns the request bytes.
fn serve(c: &mut UpnpClient, now: Instant, reply: &[u8]) -> Vec<u8> {
    let mut conn = None;
    let mut request = Vec::new();
    for _ in 0..10 {
        let Some(cmd) = c.poll_tcp() else { break };
        match cmd {
            TcpCommand::Connect { conn: id, remote } => {
                assert_eq!(remote.port(), 5000);
                conn = Some(id);
                c.handle_tcp_connected(now, id);
            }
            TcpCommand::Send { conn: id, bytes } => {
                assert_eq!(Some(id), conn);
                request = bytes;
            }
            TcpCommand::Close { .. } => {}
        }
    }
    let id = conn.expect("a connection was asked for");
    // Deliver in two pieces to exercise incremental parsing.
    let mid = reply.len() / 2;
    c.handle_tcp_data(now, id, &reply[..mid]);
    c.handle_tcp_data(now, id, &reply[mid..]);
    request
}

fn events(c: &mut UpnpClient) -> Vec<PortMapEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn discover(c: &mut UpnpClient, now: Instant) {
    let t = c.poll_transmit().expect("an M-SEARCH");
    assert_eq!(t.destination, ssdp::ssdp_v4());
    assert!(SearchRequest::parse(t.contents).is_ok());
    while c.poll_transmit().is_some() {}
    c.handle_input(
        now,
        gw_ssdp(),
        local(),
        &search_response("http://10.0.0.1:5000/rootDesc.xml"),
    );
    let get = serve(c, now, &http_ok(desc_xml().as_bytes()));
    assert!(get.starts_with(b"GET /rootDesc.xml HTTP/1.1\r\nHost: 10.0.0.1:5000\r\n"));
}

#[test]
fn v4_map_renew_at_half_lease_and_delete() {
    let t0 = Instant::now();
    let mut c = v4_client(t0, 60);
    discover(&mut c, t0);
    let req = serve(
        &mut c,
        t0,
        &http_ok(&soap::emit_response(
            WAN_IP_CONNECTION_1,
            "GetExternalIPAddress",
            &[("NewExternalIPAddress", "198.51.100.2")],
        )),
    );
    assert!(String::from_utf8_lossy(&req).contains("#GetExternalIPAddress\""));
    let req = serve(
        &mut c,
        t0,
        &http_ok(&soap::emit_response(
            WAN_IP_CONNECTION_1,
            "AddPortMapping",
            &[],
        )),
    );
    let s = String::from_utf8_lossy(&req);
    assert!(
        s.contains("<NewInternalClient>10.0.0.2</NewInternalClient>"),
        "{s}"
    );
    assert!(s.contains("<NewLeaseDuration>60</NewLeaseDuration>"), "{s}");
    let ev = events(&mut c);
    let [PortMapEvent::Mapped(m)] = ev[..] else {
        panic!("{ev:?}")
    };
    assert_eq!(m.protocol_used, Via::Upnp);
    assert_eq!(m.external, "198.51.100.2:40000".parse().unwrap());
    assert_eq!(m.expires, t0 + Duration::from_secs(60));
    assert_eq!(c.poll_timeout().unwrap().at, t0 + Duration::from_secs(30));
    let t1 = t0 + Duration::from_secs(30);
    c.handle_timeout(t1);
    let req = serve(
        &mut c,
        t1,
        &http_ok(&soap::emit_response(
            WAN_IP_CONNECTION_1,
            "AddPortMapping",
            &[],
        )),
    );
    assert!(String::from_utf8_lossy(&req).contains("#AddPortMapping\""));
    let ev = events(&mut c);
    assert!(
        matches!(ev[..], [PortMapEvent::Mapped(m2)] if m2.expires == t1 + Duration::from_secs(60))
    );
    c.remove(t1);
    let req = serve(
        &mut c,
        t1,
        &http_ok(&soap::emit_response(
            WAN_IP_CONNECTION_1,
            "DeletePortMapping",
            &[],
        )),
    );
    let s = String::from_utf8_lossy(&req);
    assert!(
        s.contains("<NewExternalPort>40000</NewExternalPort><NewProtocol>TCP</NewProtocol>"),
        "{s}"
    );
    assert_eq!(
        events(&mut c),
        vec![PortMapEvent::Removed { confirmed: true }]
    );
    assert!(c.poll_timeout().is_none());
}

#[test]
fn v6_pinhole_add_update_delete() {
    let t0 = Instant::now();
    let local6: SocketAddr = "[2001:db8:10:0::2]:50000".parse().unwrap();
    let mut cfg = UpnpConfig::new(local6, MapProtocol::Tcp, 40000, 20);
    cfg.ssdp_destinations = vec![ssdp::ssdp_v6(2)];
    let mut c = UpnpClient::new(cfg, t0);
    assert!(c.is_pinhole());
    let t = c.poll_transmit().unwrap();
    assert_eq!(t.destination, ssdp::ssdp_v6(2));
    while c.poll_transmit().is_some() {}
    c.handle_input(
        t0,
        "[fe80::1]:1900".parse().unwrap(),
        local6,
        &search_response("http://[2001:db8:10::1]:5000/rootDesc.xml"),
    );
    serve(&mut c, t0, &http_ok(desc_xml().as_bytes()));
    let req = serve(
        &mut c,
        t0,
        &http_ok(&soap::emit_response(
            WAN_IPV6_FIREWALL_CONTROL_1,
            "AddPinhole",
            &[("UniqueID", "42")],
        )),
    );
    let s = String::from_utf8_lossy(&req);
    assert!(
        s.starts_with("POST /ctl/IP6FCtl HTTP/1.1\r\nHost: [2001:db8:10::1]:5000\r\n"),
        "{s}"
    );
    assert!(s.contains("<InternalClient>2001:db8:10::2</InternalClient>"));
    let ev = events(&mut c);
    assert!(
        matches!(ev[..], [PortMapEvent::Mapped(m)] if m.external == SocketAddr::new(local6.ip(), 40000))
    );
    assert_eq!(c.pinhole_id(), Some(42));
    let t1 = t0 + Duration::from_secs(10);
    c.handle_timeout(t1);
    let req = serve(
        &mut c,
        t1,
        &http_ok(&soap::emit_response(
            WAN_IPV6_FIREWALL_CONTROL_1,
            "UpdatePinhole",
            &[],
        )),
    );
    assert!(
        String::from_utf8_lossy(&req)
            .contains("<UniqueID>42</UniqueID><NewLeaseTime>20</NewLeaseTime>")
    );
    assert!(matches!(events(&mut c)[..], [PortMapEvent::Mapped(_)]));
    c.remove(t1);
    let req = serve(
        &mut c,
        t1,
        &http_ok(&soap::emit_response(
            WAN_IPV6_FIREWALL_CONTROL_1,
            "DeletePinhole",
            &[],
        )),
    );
    assert!(String::from_utf8_lossy(&req).contains("#DeletePinhole\""));
    assert_eq!(
        events(&mut c),
        vec![PortMapEvent::Removed { confirmed: true }]
    );
}

#[test]
fn silent_network_fails_after_bounded_searches() {
    let t0 = Instant::now();
    let mut c = v4_client(t0, 60);
    let mut sent = 0;
    let mut now = t0;
    for _ in 0..100 {
        while c.poll_transmit().is_some() {
            sent += 1;
        }
        let Some(t) = c.poll_timeout() else { break };
        now = t.at;
        c.handle_timeout(now);
    }
    assert_eq!(sent, 3 * IGD_SEARCH_TARGETS.len());
    assert_eq!(now - t0, Duration::from_secs(3));
    let ev = events(&mut c);
    assert!(
        matches!(
            &ev[..],
            [PortMapEvent::Failed(PortMapError::Upnp(
                UpnpError::NoGateway(3)
            ))]
        ),
        "{ev:?}"
    );
}

#[test]
fn hostile_answers_give_errors_only() {
    let t0 = Instant::now();
    // A LOCATION on another host than the responder is ignored.
    let mut c = v4_client(t0, 60);
    while c.poll_transmit().is_some() {}
    c.handle_input(
        t0,
        gw_ssdp(),
        local(),
        &search_response("http://192.0.2.9:5000/rootDesc.xml"),
    );
    assert!(c.poll_tcp().is_none());
    // Junk SSDP is ignored.
    c.handle_input(t0, gw_ssdp(), local(), &[0xff; 1500]);
    assert!(c.poll_tcp().is_none());
    // An endless body is cut off with an error.
    c.handle_input(
        t0,
        gw_ssdp(),
        local(),
        &search_response("http://10.0.0.1:5000/rootDesc.xml"),
    );
    let Some(TcpCommand::Connect { conn, .. }) = c.poll_tcp() else {
        panic!()
    };
    c.handle_tcp_connected(t0, conn);
    c.handle_tcp_data(t0, conn, b"HTTP/1.1 200 OK\r\n\r\n");
    for _ in 0..100 {
        c.handle_tcp_data(t0, conn, &[b'x'; 4096]);
    }
    let ev = events(&mut c);
    assert!(
        matches!(
            &ev[..],
            [PortMapEvent::Failed(PortMapError::Upnp(UpnpError::Http(
                HttpError::BodyTooLarge
            )))]
        ),
        "{ev:?}"
    );
    assert!(c.poll_timeout().is_none());

    // A fault on AddPortMapping is reported with its UPnP name.
    let mut c = v4_client(t0, 60);
    discover(&mut c, t0);
    serve(
        &mut c,
        t0,
        &http_ok(&soap::emit_response(
            WAN_IP_CONNECTION_1,
            "GetExternalIPAddress",
            &[("NewExternalIPAddress", "198.51.100.2")],
        )),
    );
    // A conflict moves to the next external port, at most MAX_CONFLICTS times.
    let mut ports = Vec::new();
    for _ in 0..=MAX_CONFLICTS {
        let req = serve(
            &mut c,
            t0,
            &http_500(&soap::emit_fault(718, "ConflictInMappingEntry")),
        );
        let s = String::from_utf8_lossy(&req).into_owned();
        let port = s
            .split("<NewExternalPort>")
            .nth(1)
            .and_then(|r| r.split('<').next())
            .unwrap()
            .to_string();
        ports.push(port);
    }
    assert_eq!(ports, ["40000", "40001", "40002", "40003"]);
    let ev = events(&mut c);
    let [PortMapEvent::Failed(e)] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert!(e.to_string().contains("718 ConflictInMappingEntry"), "{e}");

    // A gateway that accepts the connection and never answers times out.
    let mut c = v4_client(t0, 60);
    while c.poll_transmit().is_some() {}
    c.handle_input(
        t0,
        gw_ssdp(),
        local(),
        &search_response("http://10.0.0.1:5000/rootDesc.xml"),
    );
    let at = c.poll_timeout().unwrap().at;
    assert_eq!(at, t0 + Duration::from_secs(5));
    c.handle_timeout(at);
    assert!(matches!(
        &events(&mut c)[..],
        [PortMapEvent::Failed(PortMapError::Upnp(
            UpnpError::Timeout(_)
        ))]
    ));
}

#[test]
fn only_permanent_leases_falls_back_to_zero_and_still_deletes() {
    let t0 = Instant::now();
    let mut c = v4_client(t0, 60);
    discover(&mut c, t0);
    serve(
        &mut c,
        t0,
        &http_ok(&soap::emit_response(
            WAN_IP_CONNECTION_1,
            "GetExternalIPAddress",
            &[("NewExternalIPAddress", "198.51.100.2")],
        )),
    );
    serve(
        &mut c,
        t0,
        &http_500(&soap::emit_fault(725, "OnlyPermanentLeasesSupported")),
    );
    let req = serve(
        &mut c,
        t0,
        &http_ok(&soap::emit_response(
            WAN_IP_CONNECTION_1,
            "AddPortMapping",
            &[],
        )),
    );
    assert!(String::from_utf8_lossy(&req).contains("<NewLeaseDuration>0</NewLeaseDuration>"));
    assert!(matches!(events(&mut c)[..], [PortMapEvent::Mapped(_)]));
    c.remove(t0);
    let req = serve(
        &mut c,
        t0,
        &http_ok(&soap::emit_response(
            WAN_IP_CONNECTION_1,
            "DeletePortMapping",
            &[],
        )),
    );
    assert!(String::from_utf8_lossy(&req).contains("#DeletePortMapping\""));
    assert_eq!(
        events(&mut c),
        vec![PortMapEvent::Removed { confirmed: true }]
    );
}

#[test]
fn failed_renewal_retries_until_expiry() {
    let t0 = Instant::now();
    let mut c = v4_client(t0, 40);
    discover(&mut c, t0);
    serve(
        &mut c,
        t0,
        &http_ok(&soap::emit_response(
            WAN_IP_CONNECTION_1,
            "GetExternalIPAddress",
            &[("NewExternalIPAddress", "198.51.100.2")],
        )),
    );
    serve(
        &mut c,
        t0,
        &http_ok(&soap::emit_response(
            WAN_IP_CONNECTION_1,
            "AddPortMapping",
            &[],
        )),
    );
    let _ = events(&mut c);
    // From now on every connection is refused.
    let mut now = t0;
    let mut tries = 0;
    for _ in 0..1000 {
        let Some(t) = c.poll_timeout() else { break };
        now = t.at;
        c.handle_timeout(now);
        while let Some(cmd) = c.poll_tcp() {
            if let TcpCommand::Connect { conn, .. } = cmd {
                tries += 1;
                c.handle_tcp_closed(now, conn);
            }
        }
    }
    assert!(tries >= 3, "{tries}");
    assert!(
        now >= t0 + Duration::from_secs(40) && now < t0 + Duration::from_secs(42),
        "{:?}",
        now - t0
    );
    let ev = events(&mut c);
    assert!(
        matches!(
            &ev[..],
            [PortMapEvent::Failed(PortMapError::Upnp(
                UpnpError::Expired(_)
            ))]
        ),
        "{ev:?}"
    );
}

#[test]
fn existing_pinhole_is_deleted_without_adding() {
    let t0 = Instant::now();
    let local6: SocketAddr = "[2001:db8:10:0::2]:50000".parse().unwrap();
    let mut cfg = UpnpConfig::new(local6, MapProtocol::Udp, 40000, 20);
    cfg.ssdp_destinations = vec![ssdp::ssdp_v6(2)];
    cfg.existing = Some(Existing::Pinhole { id: 9 });
    let mut c = UpnpClient::new(cfg, t0);
    while c.poll_transmit().is_some() {}
    c.handle_input(
        t0,
        "[2001:db8:10::1]:1900".parse().unwrap(),
        local6,
        &search_response("http://[2001:db8:10::1]:5000/rootDesc.xml"),
    );
    serve(&mut c, t0, &http_ok(desc_xml().as_bytes()));
    let req = serve(&mut c, t0, &http_500(&soap::emit_fault(704, "NoSuchEntry")));
    assert!(String::from_utf8_lossy(&req).contains("<UniqueID>9</UniqueID>"));
    assert_eq!(
        events(&mut c),
        vec![PortMapEvent::Removed { confirmed: false }]
    );
}
