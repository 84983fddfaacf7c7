//! `p2pd ifs` on a multihomed host in the lab (network namespaces + nftables, see
//! `lab/`): eth0 behind router 0 and eth1 behind router 1, each a real Linux NAT with
//! its own WAN address. Each interface must get its own route, mapped to its own
//! router's external address. Needs root and the lab's packages; skips otherwise (fails
//! under `P2PD_LAB_REQUIRED=1`, as in CI).

use std::net::IpAddr;
use std::time::Duration;

use p2pd_lab::{Lab, RouterKind, SERVER_IP1, STUN_PORT};

const BIN: &str = env!("CARGO_BIN_EXE_p2pd");

#[test]
fn two_interfaces_behind_two_routers_get_two_routes() {
    p2pd_lab::require!();
    let lab = Lab::multihomed(RouterKind::HOME, RouterKind::HOME).expect("build lab");
    lab.start_coturn().expect("coturn");
    let host = lab.host(0);
    let stun = format!("{SERVER_IP1}:{STUN_PORT}");
    let out = host
        .run(
            &[BIN, "ifs", "--json", "--stun", &stun],
            Duration::from_secs(30),
        )
        .expect("run p2pd ifs");
    assert!(out.status.success(), "p2pd ifs failed:\n{}", out.combined());
    eprintln!("p2pd ifs on the multihomed host:\n{}", out.stdout);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    let ifaces = v["interfaces"].as_array().expect("interfaces");
    assert!(
        ifaces.iter().all(|i| i["loopback"] == false),
        "loopback must be skipped by default: {v:#}"
    );
    let mut externals = Vec::new();
    for (k, local) in host.addrs().iter().enumerate() {
        let name = format!("eth{k}");
        let iface = ifaces
            .iter()
            .find(|i| i["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} missing: {v:#}"));
        let routes = iface["routes"].as_array().expect("routes");
        assert_eq!(routes.len(), 1, "{name}: {iface:#}");
        assert_eq!(routes[0]["local"][0], local.to_string().as_str(), "{name}");
        let external: IpAddr = routes[0]["external"]
            .as_str()
            .expect("external")
            .parse()
            .expect("an IP");
        let router = lab.router(host.routers()[k]).wan_addr();
        assert_eq!(
            external,
            IpAddr::V4(router),
            "{name} maps to its own router"
        );
        externals.push(external);
    }
    assert_eq!(externals.len(), 2);
    assert_ne!(
        externals[0], externals[1],
        "two routes, two external addresses"
    );
}
