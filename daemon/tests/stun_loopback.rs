//! `p2pd stun-server` on real loopback UDP sockets (127.0.0.1 and 127.0.0.2), queried by
//! core's client transaction through the tokio adapter and by `p2pd stun`.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use p2pd_core::rng::Rng;
use p2pd_core::stun::{ChangeRequest, ResponseSource, TransactionConfig};
use p2pd_tokio::net::bind_udp;
use p2pd_tokio::stun::{BindingRequest, StunClientError, binding};
use p2pd_tokio::{AsyncUdpSocket, Tokio};

use common::{BIN, start_server};

fn quick() -> TransactionConfig {
    TransactionConfig {
        rto: Duration::from_millis(100),
        max_sends: 5,
        ..TransactionConfig::default()
    }
}

fn request(
    server: SocketAddr,
    change_ip: bool,
    change_port: bool,
    expect: ResponseSource,
) -> BindingRequest {
    BindingRequest {
        server,
        change: ChangeRequest {
            change_ip,
            change_port,
        },
        expect_from: expect,
        config: quick(),
    }
}

#[tokio::test]
async fn client_transaction_gets_mapped_address_and_change_requests_are_honoured() {
    let server = start_server(&["--primary", "127.0.0.1:0", "--alternate", "127.0.0.2"]);
    let primary = server.addrs[0];
    let port = primary.port();
    let alt_ip: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let alternate = SocketAddr::new(alt_ip, port + 1);
    assert_eq!(server.addrs.len(), 4);

    let socket = bind_udp(&Tokio, "127.0.0.1:0".parse().unwrap(), false).unwrap();
    let local = socket.local_addr().unwrap();
    let mut rng = Rng::seed_from_u64(1);

    let plain = binding(
        &Tokio,
        &socket,
        &request(primary, false, false, ResponseSource::Destination),
        &mut rng,
    )
    .await
    .unwrap();
    assert_eq!(plain.mapped, local);
    assert_eq!(plain.source, primary);
    assert_eq!(plain.response_origin, Some(primary));
    assert_eq!(plain.other_address, Some(alternate));

    for (ip, port_flag, from) in [
        (true, true, alternate),
        (true, false, SocketAddr::new(alt_ip, port)),
        (false, true, SocketAddr::new(primary.ip(), port + 1)),
    ] {
        let r = binding(
            &Tokio,
            &socket,
            &request(primary, ip, port_flag, ResponseSource::Exact(from)),
            &mut rng,
        )
        .await
        .unwrap_or_else(|e| panic!("change ip={ip} port={port_flag}: {e}"));
        assert_eq!(r.source, from);
        assert_eq!(r.response_origin, Some(from));
        assert_eq!(r.mapped, local);
    }

    // A response from the alternate address is not accepted when the primary was expected:
    // the transaction ignores it and times out.
    let err = binding(
        &Tokio,
        &socket,
        &request(primary, true, true, ResponseSource::Destination),
        &mut rng,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, StunClientError::Timeout { server: s, sends: 5, .. } if s == primary),
        "{err}"
    );
}

#[test]
fn cli_prints_mapped_and_other_address_as_json() {
    let server = start_server(&["--primary", "127.0.0.1:0", "--alternate", "127.0.0.2"]);
    let primary = server.addrs[0];
    let out = Command::new(BIN)
        .args([
            "stun",
            &primary.to_string(),
            "--json",
            "--change-ip",
            "--change-port",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mapped: SocketAddr = v["mapped"].as_str().unwrap().parse().unwrap();
    let local: SocketAddr = v["local"].as_str().unwrap().parse().unwrap();
    assert_eq!(mapped.ip().to_string(), "127.0.0.1");
    assert_eq!(mapped.port(), local.port());
    let alternate = format!("127.0.0.2:{}", primary.port() + 1);
    assert_eq!(v["other_address"], alternate.as_str());
    assert_eq!(v["response_from"], alternate.as_str());
}

#[test]
fn cli_names_the_server_that_did_not_answer() {
    // A port with no server: bind one and keep it silent.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["stun", &addr, "--rto-ms", "20", "--tries", "2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&addr) && err.contains("did not answer"),
        "{err}"
    );
}

#[test]
fn ipv6_loopback() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipping: IPv6 loopback (::1) is not available on this host");
        return;
    }
    let server = start_server(&["--primary", "[::1]:0"]);
    let out = Command::new(BIN)
        .args(["stun", &server.addrs[0].to_string(), "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mapped: SocketAddr = v["mapped"].as_str().unwrap().parse().unwrap();
    assert_eq!(mapped.ip().to_string(), "::1");
    assert!(v["other_address"].is_null());
}

#[test]
fn server_rejects_mixed_families_and_busy_ports() {
    let out = Command::new(BIN)
        .args([
            "stun-server",
            "--primary",
            "127.0.0.1:0",
            "--alternate",
            "::1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("same address family"));

    let busy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["stun-server", "--primary", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr), "{err}");
}
