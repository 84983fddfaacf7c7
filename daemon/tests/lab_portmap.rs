//! `p2pd portmap` against miniupnpd in the lab's router namespace: for PCP and NAT-PMP the
//! host maps a UDP port, a datagram from the public side arrives, `remove` closes it again;
//! and a short lease is renewed by `add --keep`. Needs root and the lab's packages; skips
//! otherwise (fails under `P2PD_LAB_REQUIRED=1`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use p2pd_lab::prereq::ALL_TOOLS;
use p2pd_lab::{Lab, RouterKind, SERVER_IP2};

const BIN: &str = env!("CARGO_BIN_EXE_p2pd");

fn delivered(lab: &Lab, to: SocketAddr, sock: &std::net::UdpSocket, wait: Duration) -> bool {
    let mut buf = [0u8; 64];
    sock.set_nonblocking(true).expect("nonblocking");
    while sock.recv_from(&mut buf).is_ok() {}
    sock.set_nonblocking(false).expect("blocking");
    let tx = lab
        .server()
        .udp_bind(SocketAddr::new(IpAddr::V4(SERVER_IP2), 0))
        .expect("bind sender");
    for _ in 0..3 {
        tx.send_to(b"inbound probe", to).expect("send probe");
    }
    sock.set_read_timeout(Some(wait)).expect("timeout");
    matches!(sock.recv_from(&mut buf), Ok((n, _)) if &buf[..n] == b"inbound probe")
}

fn p2pd(lab: &Lab, home: &str, args: &[&str]) -> p2pd_lab::Output {
    let env = format!("P2PD_HOME={home}");
    let mut argv = vec!["env", &env, BIN, "portmap"];
    argv.extend_from_slice(args);
    lab.host(0)
        .run(&argv, Duration::from_secs(60))
        .expect("run p2pd portmap")
}

#[test]
fn portmap_pcp_and_natpmp_through_miniupnpd() {
    p2pd_lab::require!(ALL_TOOLS);
    let lab = Lab::one_lan(RouterKind::HOME).expect("build lab");
    lab.start_miniupnpd(0).expect("miniupnpd");
    let wan = lab.router(0).wan_addr();
    let home = tempdir();
    for (via, port) in [("pcp", 40000u16), ("natpmp", 40010)] {
        let sock = lab
            .host(0)
            .ns()
            .udp_bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))
            .expect("bind listener");
        let out = p2pd(
            &lab,
            &home,
            &["add", &port.to_string(), "--via", via, "--json"],
        );
        assert!(out.status.success(), "add via {via}: {}", out.combined());
        let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("JSON");
        eprintln!("{via}: {v}");
        assert_eq!(v["via"], via);
        let external: SocketAddr = v["external"].as_str().expect("external").parse().unwrap();
        assert_eq!(external.ip(), IpAddr::V4(wan), "{v}");
        assert!(
            delivered(&lab, external, &sock, Duration::from_secs(3)),
            "{via}: datagram to {external} did not arrive"
        );
        let list = p2pd(&lab, &home, &["list", "--json"]);
        assert!(
            list.stdout.contains(&format!("\"port\": {port}")),
            "{}",
            list.combined()
        );
        let out = p2pd(&lab, &home, &["remove", &port.to_string(), "--json"]);
        assert!(out.status.success(), "remove via {via}: {}", out.combined());
        eprintln!("{via} remove: {}", out.stdout.trim());
        assert!(
            out.stdout.contains("\"confirmed\":true"),
            "{}",
            out.combined()
        );
        assert!(
            !delivered(&lab, external, &sock, Duration::from_millis(700)),
            "{via}: removed mapping still lets UDP in"
        );
    }
}

#[test]
fn portmap_short_lease_is_renewed_and_deleted_on_exit() {
    p2pd_lab::require!(ALL_TOOLS);
    let lab = Lab::one_lan(RouterKind::HOME).expect("build lab");
    lab.start_miniupnpd(0).expect("miniupnpd");
    let home = tempdir();
    let out = p2pd(
        &lab,
        &home,
        &[
            "add", "40020", "--via", "natpmp", "--lease", "4", "--keep", "--for", "7", "--json",
        ],
    );
    assert!(out.status.success(), "{}", out.combined());
    eprintln!("{}", out.stdout);
    let renewals = out
        .stdout
        .lines()
        .filter(|l| l.contains("\"expires_unix\""))
        .count();
    assert!(
        renewals >= 2,
        "no renewal within 7 s of a 4 s lease: {}",
        out.combined()
    );
    assert!(
        out.stdout.contains("\"confirmed\":true"),
        "{}",
        out.combined()
    );
    let sock = lab
        .host(0)
        .ns()
        .udp_bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 40020))
        .expect("bind listener");
    let external = SocketAddr::new(IpAddr::V4(lab.router(0).wan_addr()), 40020);
    assert!(
        !delivered(&lab, external, &sock, Duration::from_millis(700)),
        "mapping still open after `add --keep` exited"
    );
}

fn tempdir() -> String {
    let d = std::env::temp_dir().join(format!("p2pd-portmap-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d.to_string_lossy().into_owned()
}
