//! The UPnP driver (`p2pd_runtime::upnp::UpnpDriver` on tokio) against hostile "gateways"
//! on loopback: one that answers SSDP and then streams an endless HTTP body, one that
//! accepts the connection and never answers, one that serves a billion-laughs
//! description, and one that sends a huge SSDP datagram. Each must end in the matching
//! error (never a hang, a panic or unbounded memory); the test's own 20 s deadline on
//! `next_event` turns a hang into a failure.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use p2pd_core::portmap::client::{PortMapError, PortMapEvent};
use p2pd_core::portmap::natpmp::MapProtocol;
use p2pd_core::portmap::upnp::client::{UpnpConfig, UpnpError};
use p2pd_core::portmap::upnp::http::HttpError;
use p2pd_runtime::upnp::UpnpDriver;
use p2pd_tokio::Tokio;

#[derive(Clone, Copy)]
enum Behaviour {
    EndlessBody,
    Silent,
    BillionLaughs,
}

/// An SSDP responder and HTTP server on loopback behaving badly; returns the SSDP
/// address.
fn hostile(b: Behaviour) -> SocketAddr {
    let tcp = TcpListener::bind("127.0.0.1:0").expect("tcp");
    let http = tcp.local_addr().expect("addr");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let ssdp = udp.local_addr().expect("addr");
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((_, from)) = udp.recv_from(&mut buf) {
            let answer = format!(
                "HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nLOCATION: http://{http}/rootDesc.xml\r\n\r\n"
            );
            let _ = udp.send_to(answer.as_bytes(), from);
        }
    });
    thread::spawn(move || {
        for s in tcp.incoming() {
            let Ok(mut s) = s else { return };
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req);
            match b {
                Behaviour::EndlessBody => {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n\r\n");
                    let chunk = [b'<'; 4096];
                    while s.write_all(&chunk).is_ok() {}
                }
                Behaviour::Silent => thread::sleep(Duration::from_secs(30)),
                Behaviour::BillionLaughs => {
                    let body = r#"<?xml version="1.0"?><!DOCTYPE root [<!ENTITY a "aaaaaaaaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]><root>&d;&d;&d;&d;&d;&d;&d;&d;</root>"#;
                    let _ = s.write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    );
                }
            }
        }
    });
    ssdp
}

/// Runs a driver against `ssdp` until its first event.
fn first_event(ssdp: SocketAddr) -> (PortMapEvent, Duration) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        let mut cfg = UpnpConfig::new("127.0.0.1:0".parse().unwrap(), MapProtocol::Tcp, 40000, 60);
        cfg.ssdp_destinations = vec![ssdp];
        cfg.http_timeout = Duration::from_secs(2);
        let t0 = Instant::now();
        let mut d = UpnpDriver::start(&Tokio, cfg).expect("start");
        let ev = d
            .next_event(&Tokio, Some(t0 + Duration::from_secs(20)))
            .await
            .expect("driver I/O")
            .expect("an event before the test's deadline");
        (ev, t0.elapsed())
    })
}

#[test]
fn endless_body_is_cut_off() {
    let (ev, took) = first_event(hostile(Behaviour::EndlessBody));
    assert!(
        matches!(
            ev,
            PortMapEvent::Failed(PortMapError::Upnp(UpnpError::Http(HttpError::BodyTooLarge)))
        ),
        "{ev:?}"
    );
    eprintln!("{ev:?} after {took:?}");
}

#[test]
fn silent_gateway_times_out() {
    let (ev, took) = first_event(hostile(Behaviour::Silent));
    assert!(
        matches!(
            ev,
            PortMapEvent::Failed(PortMapError::Upnp(UpnpError::Timeout(_)))
        ),
        "{ev:?}"
    );
    eprintln!("{ev:?} after {took:?}");
}

#[test]
fn billion_laughs_description_is_refused() {
    let (ev, took) = first_event(hostile(Behaviour::BillionLaughs));
    assert!(
        matches!(
            ev,
            PortMapEvent::Failed(PortMapError::Upnp(UpnpError::Description(_)))
        ),
        "{ev:?}"
    );
    eprintln!("{ev:?} after {took:?}");
}

#[test]
fn oversized_ssdp_answers_are_ignored_and_discovery_ends() {
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let ssdp = udp.local_addr().expect("addr");
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((_, from)) = udp.recv_from(&mut buf) {
            let mut junk = b"HTTP/1.1 200 OK\r\nLOCATION: http://127.0.0.1:1/x\r\nX: ".to_vec();
            junk.resize(60_000, b'a');
            junk.extend_from_slice(b"\r\n\r\n");
            let _ = udp.send_to(&junk, from);
        }
    });
    let (ev, took) = first_event(ssdp);
    assert!(
        matches!(
            ev,
            PortMapEvent::Failed(PortMapError::Upnp(UpnpError::NoGateway(3)))
        ),
        "{ev:?}"
    );
    eprintln!("{ev:?} after {took:?}");
}
