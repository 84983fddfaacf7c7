//! `p2pd nat` behind real Linux NATs (network namespaces + nftables, see `lab/`), against
//! coturn and against `p2pd stun-server`, cross-checked with coturn's own
//! `turnutils_natdiscovery`. Needs root and the lab's packages; skips otherwise (fails
//! under `P2PD_LAB_REQUIRED=1`, as in CI).

use std::time::Duration;

use p2pd_lab::prereq::ALL_TOOLS;
use p2pd_lab::{Lab, LinkParams, PortAlloc, RouterKind, SERVER_IP1, SERVER_IP2, SymmetricPorts};

const BIN: &str = env!("CARGO_BIN_EXE_p2pd");
/// `p2pd stun-server` listens here (coturn has 3478/3479).
const P2PD_STUN_PORT: u16 = 4478;

struct Expect {
    kind: RouterKind,
    nat_type: &'static str,
    delta: Option<(&'static str, Option<i32>)>,
}

fn run_nat(lab: &Lab, server: &str, extra: &[&str]) -> serde_json::Value {
    let mut argv = vec![BIN, "nat", "--json", "--stun", server];
    argv.extend_from_slice(extra);
    let out = lab
        .host(0)
        .run(&argv, Duration::from_secs(30))
        .expect("run p2pd nat");
    assert!(out.status.success(), "p2pd nat failed:\n{}", out.combined());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    v[0].clone()
}

fn check(kinds: &[Expect]) {
    let lab = Lab::one_lan(RouterKind::HOME).expect("build lab");
    lab.start_coturn().expect("coturn");
    let p2pd_server = lab
        .spawn(
            lab.server(),
            "p2pd-stun-server",
            &[
                BIN,
                "stun-server",
                "--primary",
                &format!("{SERVER_IP1}:{P2PD_STUN_PORT}"),
                "--alternate",
                &SERVER_IP2.to_string(),
            ],
        )
        .expect("spawn p2pd stun-server");
    p2pd_server
        .wait_for_log("listening on udp", Duration::from_secs(10))
        .expect("p2pd stun-server up");
    let servers = [
        format!("{SERVER_IP1}:3478"),
        format!("{SERVER_IP1}:{P2PD_STUN_PORT}"),
    ];
    for e in kinds {
        lab.set_router_kind(0, e.kind).expect("set router kind");
        let reference = p2pd_lab::tools::natdiscovery(lab.host(0).ns(), &SERVER_IP1.to_string())
            .expect("turnutils_natdiscovery");
        for server in &servers {
            let r = run_nat(&lab, server, &["--blocked-after-ms", "2000"]);
            let ctx = format!(
                "{:?} via {server}: {r:#}\nnatdiscovery:\n{}",
                e.kind, reference.text
            );
            assert_eq!(r["nat_type"], e.nat_type, "{ctx}");
            match e.delta {
                None => assert!(r["delta"].is_null(), "{ctx}"),
                Some((kind, value)) => {
                    assert_eq!(r["delta"]["kind"], kind, "{ctx}");
                    if let Some(v) = value {
                        assert_eq!(r["delta"]["value"], v, "{ctx}");
                    }
                }
            }
            if e.nat_type == "blocked" {
                assert!(reference.mapping.is_none(), "{ctx}");
                continue;
            }
            // Agree with coturn's tool on filtering always, and on mapping where there
            // is translation (without it p2pd reports no mapping behaviour).
            assert_eq!(r["filtering"].as_str(), reference.filtering_name(), "{ctx}");
            if r["translated"] == true {
                assert_eq!(r["mapping"].as_str(), reference.mapping_name(), "{ctx}");
                assert_eq!(
                    r["external"]
                        .as_str()
                        .map(|a| a.starts_with("198.51.100.2:")),
                    Some(true),
                    "{ctx}"
                );
            }
        }
    }
}

#[test]
fn cone_kinds_and_their_port_allocation() {
    p2pd_lab::require!(ALL_TOOLS);
    check(&[
        Expect {
            kind: RouterKind::HOME,
            nat_type: "port_restricted_cone",
            delta: Some(("equal", Some(0))),
        },
        Expect {
            kind: RouterKind::RestrictedCone(PortAlloc::Preserve),
            nat_type: "restricted_cone",
            delta: Some(("equal", Some(0))),
        },
        Expect {
            kind: RouterKind::FullCone(PortAlloc::Preserve),
            nat_type: "full_cone",
            delta: Some(("equal", Some(0))),
        },
        Expect {
            kind: RouterKind::PortRestrictedCone(PortAlloc::Offset(7)),
            nat_type: "port_restricted_cone",
            delta: Some(("preserving", Some(7))),
        },
        Expect {
            kind: RouterKind::RestrictedCone(PortAlloc::Dependent(5)),
            nat_type: "restricted_cone",
            delta: Some(("dependent", Some(5))),
        },
        Expect {
            kind: RouterKind::FullCone(PortAlloc::Random(42)),
            nat_type: "full_cone",
            delta: Some(("random", None)),
        },
    ]);
}

#[test]
fn symmetric_open_firewall_and_blocked() {
    p2pd_lab::require!(ALL_TOOLS);
    check(&[
        Expect {
            kind: RouterKind::Symmetric(SymmetricPorts::Random),
            nat_type: "symmetric",
            delta: Some(("random", None)),
        },
        Expect {
            kind: RouterKind::Symmetric(SymmetricPorts::Sequential),
            nat_type: "symmetric",
            delta: Some(("independent", Some(1))),
        },
        Expect {
            kind: RouterKind::Open,
            nat_type: "open_internet",
            delta: Some(("equal", Some(0))),
        },
        Expect {
            kind: RouterKind::Firewall,
            nat_type: "symmetric_udp_firewall",
            delta: Some(("equal", Some(0))),
        },
        Expect {
            kind: RouterKind::UdpBlocked,
            nat_type: "blocked",
            delta: None,
        },
    ]);
}

/// The verdict stays right with 20 ms each way on the router's uplink; prints the wall
/// time for BENCHMARKS.md.
#[test]
fn port_restricted_with_20ms_one_way_delay() {
    p2pd_lab::require!(ALL_TOOLS);
    let lab = Lab::one_lan(RouterKind::HOME).expect("build lab");
    lab.start_coturn().expect("coturn");
    lab.set_link(0, LinkParams::delay(Duration::from_millis(20)))
        .expect("delay");
    for kind in [
        RouterKind::HOME,
        RouterKind::Symmetric(SymmetricPorts::Random),
        RouterKind::FullCone(PortAlloc::Preserve),
    ] {
        lab.set_router_kind(0, kind).expect("kind");
        let r = run_nat(&lab, &format!("{SERVER_IP1}:3478"), &[]);
        let want = match kind {
            RouterKind::HOME => "port_restricted_cone",
            RouterKind::FullCone(_) => "full_cone",
            _ => "symmetric",
        };
        assert_eq!(r["nat_type"], want, "{r:#}");
        eprintln!(
            "lab, 20 ms one-way: {want}: {} ms wall, rtt {} ms, {} round trips, {} requests",
            r["elapsed_ms"], r["rtt_ms"], r["round_trips"], r["requests"]
        );
    }
}

/// `--lifetime` against real conntrack: the router's UDP timeouts are set to 8 s in its
/// namespace, so the idle mapping must be alive after 5 s and gone after 10 s.
#[test]
fn mapping_lifetime_brackets_the_conntrack_timeout() {
    p2pd_lab::require!(ALL_TOOLS);
    let lab = Lab::one_lan(RouterKind::HOME).expect("build lab");
    lab.start_coturn().expect("coturn");
    for key in [
        "net.netfilter.nf_conntrack_udp_timeout",
        "net.netfilter.nf_conntrack_udp_timeout_stream",
    ] {
        let out = lab
            .router(0)
            .ns()
            .run(
                &["sysctl", "-w", &format!("{key}=8")],
                Duration::from_secs(5),
            )
            .expect("sysctl");
        assert!(out.status.success(), "{}", out.combined());
    }
    let r = run_nat(
        &lab,
        &format!("{SERVER_IP1}:3478"),
        &["--lifetime", "--lifetime-max-s", "20"],
    );
    let l = &r["mapping_lifetime"];
    assert_eq!(l["at_least_s"], 5.0, "{r:#}");
    assert_eq!(l["less_than_s"], 10.0, "{r:#}");
}
