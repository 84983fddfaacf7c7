//! The lab's self-test: every router kind, every server, impairments and topologies,
//! observed with real tools (coturn's natdiscovery and uclient, mosquitto clients,
//! upnpc, natpmpc, ping) and with STUN probes run inside the namespaces.
//! Run as root; without root or the packages the tests skip (or fail when
//! `P2PD_LAB_REQUIRED=1`).

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::{delivered, mapped_from, natdiscovery, stun_mapped};
use p2pd_lab::prereq::ALL_TOOLS;
use p2pd_lab::{
    Lab, LinkParams, MQTT_PORT, PortAlloc, RouterKind, SERVER_IP1, SERVER_IP2, STUN_PORT,
    SymmetricPorts, TURN_PASSWORD, TURN_USER,
};

const EIM: &str = "NAT with Endpoint Independent Mapping";
const APDM: &str = "NAT with Address and Port Dependent Mapping";
const EIF: &str = "NAT with Endpoint Independent Filtering";
const ADF: &str = "NAT with Address Dependent Filtering";
const APDF: &str = "NAT with Address and Port Dependent Filtering";

fn any(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
}

fn sa(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip), port)
}

/// Sets router 0 to each kind and checks coturn's RFC 5780 verdict from host 0.
fn check_natdiscovery(kinds: &[(RouterKind, Option<&str>, Option<&str>)]) {
    let lab = Lab::two_lans(RouterKind::HOME, RouterKind::HOME).expect("build lab");
    lab.start_coturn().expect("coturn");
    for &(kind, mapping, filtering) in kinds {
        lab.set_router_kind(0, kind).expect("set kind");
        let (m, f, text) = natdiscovery(lab.host(0).ns());
        assert_eq!(
            (m.as_deref(), f.as_deref()),
            (mapping, filtering),
            "{kind:?}: natdiscovery said:\n{text}"
        );
        let wan = lab.router(0).wan_addr();
        let reflexive = if kind == RouterKind::UdpBlocked {
            None
        } else if kind.translates() {
            Some(wan)
        } else {
            Some(lab.host(0).addr())
        };
        match reflexive {
            Some(ip) => assert!(
                text.contains(&format!("UDP reflexive addr: {ip}:")),
                "{kind:?}: expected reflexive address {ip}:\n{text}"
            ),
            None => assert!(
                !text.contains("reflexive addr"),
                "{kind:?}: UDP got through:\n{text}"
            ),
        }
    }
}

#[test]
fn natdiscovery_cone_kinds() {
    p2pd_lab::require!(ALL_TOOLS);
    check_natdiscovery(&[
        (
            RouterKind::PortRestrictedCone(PortAlloc::Preserve),
            Some(EIM),
            Some(APDF),
        ),
        (
            RouterKind::RestrictedCone(PortAlloc::Preserve),
            Some(EIM),
            Some(ADF),
        ),
        (
            RouterKind::FullCone(PortAlloc::Preserve),
            Some(EIM),
            Some(EIF),
        ),
        (
            RouterKind::FullCone(PortAlloc::Offset(1000)),
            Some(EIM),
            Some(EIF),
        ),
        (
            RouterKind::RestrictedCone(PortAlloc::Random(9)),
            Some(EIM),
            Some(ADF),
        ),
        (
            RouterKind::PortRestrictedCone(PortAlloc::Dependent(11)),
            Some(EIM),
            Some(APDF),
        ),
    ]);
}

#[test]
fn natdiscovery_symmetric_firewall_open_blocked() {
    p2pd_lab::require!(ALL_TOOLS);
    check_natdiscovery(&[
        (
            RouterKind::Symmetric(SymmetricPorts::Random),
            Some(APDM),
            Some(APDF),
        ),
        (
            RouterKind::Symmetric(SymmetricPorts::FullyRandom),
            Some(APDM),
            Some(APDF),
        ),
        (
            RouterKind::Symmetric(SymmetricPorts::Sequential),
            Some(APDM),
            Some(APDF),
        ),
        // no translation: the reflexive address is the host's own (checked below)
        (RouterKind::Firewall, Some(EIM), Some(APDF)),
        (RouterKind::Open, Some(EIM), Some(EIF)),
        (RouterKind::UdpBlocked, None, None),
    ]);
}

/// The external port allocation of each kind, measured with STUN from chosen ports.
#[test]
fn port_allocation_matches_the_delta_kind() {
    p2pd_lab::require!(ALL_TOOLS);
    let lab = Lab::two_lans(RouterKind::HOME, RouterKind::HOME).expect("build lab");
    lab.start_coturn().expect("coturn");
    let ns = lab.host(0).ns();
    let wan = lab.router(0).wan_addr();

    // equal / preserving / dependent / random: external = f(local) for both servers
    for alloc in [
        PortAlloc::Preserve,
        PortAlloc::Offset(1000),
        PortAlloc::Dependent(11),
        PortAlloc::Random(9),
    ] {
        lab.set_router_kind(0, RouterKind::PortRestrictedCone(alloc))
            .expect("kind");
        for local in [20000u16, 20001, 33333] {
            let sock = ns.udp_bind(any(local)).expect("bind");
            let want = p2pd_lab::mapped_port(alloc, local).unwrap_or(local);
            for server in [SERVER_IP1, SERVER_IP2] {
                let got = stun_mapped(&sock, sa(server, STUN_PORT));
                assert_eq!(
                    got,
                    Some(sa(wan, want)),
                    "{alloc:?} local {local} via {server}"
                );
            }
        }
    }

    // independent, symmetric: every new flow takes the next port
    lab.set_router_kind(0, RouterKind::Symmetric(SymmetricPorts::Sequential))
        .expect("kind");
    let sock = ns.udp_bind(any(23000)).expect("bind");
    let a = stun_mapped(&sock, sa(SERVER_IP1, STUN_PORT))
        .expect("mapped")
        .port();
    let b = stun_mapped(&sock, sa(SERVER_IP2, STUN_PORT))
        .expect("mapped")
        .port();
    let sock2 = ns.udp_bind(any(23001)).expect("bind");
    let c = stun_mapped(&sock2, sa(SERVER_IP1, STUN_PORT))
        .expect("mapped")
        .port();
    assert_eq!([b, c], [a + 1, a + 2], "sequential symmetric ports");

    // random, symmetric: a different external port per destination
    lab.set_router_kind(0, RouterKind::Symmetric(SymmetricPorts::Random))
        .expect("kind");
    let sock = ns.udp_bind(any(24000)).expect("bind");
    let a = stun_mapped(&sock, sa(SERVER_IP1, STUN_PORT)).expect("mapped");
    let b = stun_mapped(&sock, sa(SERVER_IP2, STUN_PORT)).expect("mapped");
    assert_ne!(a, b, "symmetric NAT must map per destination");
}

#[test]
fn mqtt_crosses_two_nats() {
    p2pd_lab::require!(ALL_TOOLS);
    let lab = Lab::two_lans(
        RouterKind::HOME,
        RouterKind::Symmetric(SymmetricPorts::Random),
    )
    .expect("build lab");
    lab.start_servers().expect("servers");
    let broker = lab.start_mosquitto().expect("mosquitto handle");
    let server = SERVER_IP1.to_string();
    let port = MQTT_PORT.to_string();
    let sub = lab
        .spawn(
            lab.host(0).ns(),
            "mqtt-sub",
            &[
                "mosquitto_sub",
                "-h",
                &server,
                "-p",
                &port,
                "-t",
                "p2pd/#",
                "-C",
                "1",
                "-W",
                "10",
                "-v",
            ],
        )
        .expect("subscriber");
    // The subscription is in place once the broker has logged it.
    broker
        .wait_for_log("Received SUBSCRIBE from", Duration::from_secs(10))
        .expect("broker saw the subscription");
    let publ = lab
        .host(1)
        .run(
            &[
                "mosquitto_pub",
                "-h",
                &server,
                "-p",
                &port,
                "-t",
                "p2pd/lab",
                "-q",
                "1",
                "-m",
                "hello through NAT",
            ],
            Duration::from_secs(10),
        )
        .expect("publish");
    assert!(publ.success(), "mosquitto_pub failed: {}", publ.combined());
    let status = sub.wait(Duration::from_secs(10)).expect("subscriber exits");
    assert!(status.success(), "mosquitto_sub failed: {}", sub.log());
    assert!(
        sub.log().contains("p2pd/lab hello through NAT"),
        "got: {}",
        sub.log()
    );
    let log = broker.log();
    for r in [0, 1] {
        let wan = lab.router(r).wan_addr();
        assert!(
            log.contains(&format!("New connection from {wan}")),
            "broker log lacks {wan}:\n{log}"
        );
    }
}

#[test]
fn upnp_and_natpmp_mappings_let_inbound_udp_in() {
    p2pd_lab::require!(ALL_TOOLS);
    let lab = Lab::two_lans(
        RouterKind::Symmetric(SymmetricPorts::Random),
        RouterKind::HOME,
    )
    .expect("build lab");
    let upnpd = lab.start_miniupnpd(0).expect("miniupnpd");
    assert_eq!(
        lab.router(0).kind(),
        RouterKind::Symmetric(SymmetricPorts::Random),
        "kind restored"
    );
    let host = lab.host(0);
    let me = host.addr().to_string();
    let wan = lab.router(0).wan_addr();
    let from = sa(SERVER_IP2, 0);
    let t = Duration::from_secs(20);

    // nothing mapped yet: dropped
    let sock = host.ns().udp_bind(any(40001)).expect("bind");
    assert!(
        !delivered(
            lab.server(),
            from,
            sa(wan, 40001),
            &sock,
            Duration::from_millis(700)
        ),
        "an unmapped port let UDP in"
    );

    // UPnP IGD
    let out = host
        .run(
            &["upnpc", "-i", "-a", &me, "40000", "40000", "UDP", "600"],
            t,
        )
        .expect("upnpc");
    assert!(
        out.stdout.contains(&format!(
            "external {wan}:40000 UDP is redirected to internal {me}:40000"
        )),
        "upnpc: {}",
        out.combined()
    );
    let sock = host.ns().udp_bind(any(40000)).expect("bind");
    assert!(
        delivered(
            lab.server(),
            from,
            sa(wan, 40000),
            &sock,
            Duration::from_secs(3)
        ),
        "UPnP mapping"
    );
    let out = host
        .run(&["upnpc", "-i", "-d", "40000", "UDP"], t)
        .expect("upnpc -d");
    assert!(
        out.stdout.contains("returned : 0"),
        "upnpc -d: {}",
        out.combined()
    );
    assert!(
        !delivered(
            lab.server(),
            from,
            sa(wan, 40000),
            &sock,
            Duration::from_millis(700)
        ),
        "deleted UPnP mapping still lets UDP in"
    );

    // NAT-PMP
    let gw = lab.router(0).lan_gateway().to_string();
    let out = host.run(&["natpmpc", "-g", &gw], t).expect("natpmpc");
    assert!(
        out.stdout.contains(&format!("Public IP address : {wan}")),
        "natpmpc: {}",
        out.combined()
    );
    let out = host
        .run(
            &["natpmpc", "-g", &gw, "-a", "40002", "40002", "udp", "600"],
            t,
        )
        .expect("natpmpc -a");
    assert!(
        out.stdout.contains("Mapped public port 40002"),
        "natpmpc -a: {}",
        out.combined()
    );
    let sock = host.ns().udp_bind(any(40002)).expect("bind");
    assert!(
        delivered(
            lab.server(),
            from,
            sa(wan, 40002),
            &sock,
            Duration::from_secs(3)
        ),
        "NAT-PMP mapping"
    );
    let sock = host.ns().udp_bind(any(40003)).expect("bind");
    assert!(
        !delivered(
            lab.server(),
            from,
            sa(wan, 40003),
            &sock,
            Duration::from_millis(700)
        ),
        "a port next to the NAT-PMP mapping let UDP in"
    );
    assert!(upnpd.is_running(), "miniupnpd died: {}", upnpd.log_tail(20));
}

#[test]
fn turn_allocation_relays_and_rejects_a_wrong_password() {
    p2pd_lab::require!(ALL_TOOLS);
    let lab = Lab::two_lans(RouterKind::HOME, RouterKind::HOME).expect("build lab");
    lab.start_coturn().expect("coturn");
    let server = SERVER_IP1.to_string();
    let t = Duration::from_secs(30);
    let ok = lab
        .host(0)
        .run(
            &[
                "turnutils_uclient",
                "-u",
                TURN_USER,
                "-w",
                TURN_PASSWORD,
                "-y",
                "-c",
                "-n",
                "10",
                "-m",
                "2",
                &server,
            ],
            t,
        )
        .expect("uclient");
    let text = ok.combined();
    assert!(
        !text.contains("Cannot complete Allocation"),
        "allocation failed:\n{text}"
    );
    assert!(
        text.contains("tot_recv_msgs=20"),
        "relayed data missing:\n{text}"
    );
    assert!(
        text.contains("Total lost packets 0 "),
        "relayed data lost:\n{text}"
    );
    let bad = lab
        .host(0)
        .run(
            &[
                "turnutils_uclient",
                "-u",
                TURN_USER,
                "-w",
                "wrong",
                "-y",
                "-c",
                "-n",
                "1",
                "-m",
                "1",
                &server,
            ],
            t,
        )
        .expect("uclient");
    assert!(
        bad.combined().contains("Cannot complete Allocation"),
        "a wrong password was accepted:\n{}",
        bad.combined()
    );
}

/// Average RTT (ms) and received count of `ping` from host 0 to the server.
fn ping(lab: &Lab, count: u32, interval: &str) -> (f64, u32) {
    let c = count.to_string();
    let out = lab
        .host(0)
        .run(
            &[
                "ping",
                "-n",
                "-q",
                "-c",
                &c,
                "-i",
                interval,
                "-W",
                "1",
                &SERVER_IP1.to_string(),
            ],
            Duration::from_secs(60),
        )
        .expect("ping");
    let text = out.stdout;
    let received = text
        .split(", ")
        .find_map(|p| {
            p.strip_suffix(" received")
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0);
    let avg = text
        .lines()
        .find(|l| l.starts_with("rtt"))
        .and_then(|l| l.split(" = ").nth(1))
        .and_then(|v| v.split('/').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    (avg, received)
}

#[test]
fn delay_and_loss_apply_to_the_uplink() {
    p2pd_lab::require!(ALL_TOOLS);
    let lab = Lab::two_lans(RouterKind::HOME, RouterKind::HOME).expect("build lab");
    let (base, got) = ping(&lab, 5, "0.05");
    assert_eq!(got, 5);
    assert!(base < 10.0, "baseline RTT {base} ms");

    lab.set_link(0, LinkParams::delay(Duration::from_millis(25)))
        .expect("delay");
    let (rtt, got) = ping(&lab, 10, "0.05");
    assert_eq!(got, 10, "delay must not lose packets");
    assert!(
        (48.0..90.0).contains(&rtt),
        "RTT {rtt} ms with 25 ms each way"
    );

    // Peer traffic crosses both uplinks: delay on router 1 too doubles it again.
    lab.set_link(1, LinkParams::delay(Duration::from_millis(25)))
        .expect("delay");
    let peer = lab.router(1).wan_addr().to_string();
    let out = lab
        .host(0)
        .run(
            &["ping", "-n", "-c", "3", "-i", "0.05", "-W", "2", &peer],
            Duration::from_secs(20),
        )
        .expect("ping peer");
    let rtts: Vec<f64> = out
        .stdout
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(rtts.len(), 3, "{}", out.stdout);
    assert!(
        rtts.iter().all(|r| (98.0..160.0).contains(r)),
        "peer RTTs {rtts:?} with 4 x 25 ms"
    );

    lab.set_link(1, LinkParams::CLEAN).expect("clean");
    lab.set_link(0, LinkParams::CLEAN).expect("clean");
    let (rtt, _) = ping(&lab, 5, "0.05");
    assert!(rtt < 10.0, "RTT {rtt} ms after removing the delay");

    // 30 % loss each way: an echo survives with p = 0.49. 400 probes: mean 196,
    // sd 10; the band is over 5 sd wide on each side.
    lab.set_link(0, LinkParams::loss(30)).expect("loss");
    let (_, got) = ping(&lab, 400, "0.005");
    assert!(
        (140..=252).contains(&got),
        "{got}/400 echoes with 30 % loss each way"
    );
    lab.set_link(0, LinkParams::CLEAN).expect("clean");
    let (_, got) = ping(&lab, 20, "0.01");
    assert_eq!(got, 20, "loss removed");

    // jitter spreads the RTTs
    lab.set_link(
        0,
        LinkParams {
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(10),
            loss_percent: 0,
        },
    )
    .expect("jitter");
    let out = lab
        .host(0)
        .run(
            &[
                "ping",
                "-n",
                "-c",
                "20",
                "-i",
                "0.02",
                "-W",
                "1",
                &SERVER_IP1.to_string(),
            ],
            Duration::from_secs(20),
        )
        .expect("ping");
    let rtts: Vec<f64> = out
        .stdout
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(rtts.len(), 20, "{}", out.stdout);
    let (lo, hi) = rtts
        .iter()
        .fold((f64::MAX, 0.0f64), |(a, b), &r| (a.min(r), b.max(r)));
    assert!(
        lo >= 19.0 && hi <= 75.0 && hi - lo >= 4.0,
        "jittered RTTs {rtts:?}"
    );
}

#[test]
fn other_topologies_wire_as_documented() {
    p2pd_lab::require!(ALL_TOOLS);
    // two hosts on one LAN: they reach each other directly and share the public address
    let lab = Lab::one_lan(RouterKind::HOME).expect("one lan");
    lab.start_coturn().expect("coturn");
    let (a, b) = (lab.host(0), lab.host(1));
    let out = a
        .run(
            &["ping", "-n", "-c", "1", "-W", "2", &b.addr().to_string()],
            Duration::from_secs(5),
        )
        .expect("ping");
    assert!(out.success(), "LAN ping: {}", out.combined());
    let ma = mapped_from(a.ns(), any(30000), SERVER_IP1).expect("mapped a");
    let mb = mapped_from(b.ns(), any(30000), SERVER_IP1).expect("mapped b");
    assert_eq!(ma.ip(), lab.router(0).wan_addr());
    assert_eq!(mb.ip(), ma.ip());
    assert_ne!(
        ma.port(),
        mb.port(),
        "two hosts on the same port get distinct mappings"
    );
    drop(lab);

    // double NAT: the home router's WAN is in 100.64/10, the public address is the CGN's
    let lab = Lab::double_nat(RouterKind::HOME, RouterKind::HOME).expect("double nat");
    lab.start_coturn().expect("coturn");
    assert_eq!(lab.router(1).wan_addr(), Ipv4Addr::new(100, 64, 0, 2));
    let m = mapped_from(lab.host(0).ns(), any(30001), SERVER_IP1).expect("mapped");
    assert_eq!(m.ip(), lab.router(0).wan_addr());
    let m = mapped_from(lab.host(1).ns(), any(30001), SERVER_IP1).expect("mapped peer");
    assert_eq!(m.ip(), lab.router(2).wan_addr());
    drop(lab);

    // multihomed: each source address leaves through its own router
    let lab = Lab::multihomed(RouterKind::HOME, RouterKind::HOME).expect("multihomed");
    lab.start_coturn().expect("coturn");
    let h = lab.host(0);
    for (k, &addr) in h.addrs().iter().enumerate() {
        let m = mapped_from(h.ns(), SocketAddr::new(IpAddr::V4(addr), 30002), SERVER_IP1)
            .expect("mapped");
        assert_eq!(
            m.ip(),
            lab.router(h.routers()[k]).wan_addr(),
            "interface {k}"
        );
    }
}

#[test]
fn ipv6_is_routed_through_a_stateful_firewall() {
    p2pd_lab::require!(ALL_TOOLS);
    let lab = Lab::ipv6(RouterKind::HOME).expect("ipv6 lab");
    let host6 = lab.host(0).addr6().expect("host v6");
    let srv6 = p2pd_lab::SERVER_IP6_1;
    let server = lab
        .server()
        .udp_bind(SocketAddr::new(IpAddr::V6(srv6), 7000))
        .expect("server socket");
    let client = lab
        .host(0)
        .ns()
        .udp_bind(SocketAddr::new(IpAddr::V6(host6), 7001))
        .expect("client socket");
    // outbound, and the reply on the same 5-tuple comes back; no translation
    client
        .send_to(b"v6 hello", SocketAddr::new(IpAddr::V6(srv6), 7000))
        .expect("send");
    server
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    let (n, from) = server.recv_from(&mut buf).expect("server got the datagram");
    assert_eq!(&buf[..n], b"v6 hello");
    assert_eq!(
        from,
        SocketAddr::new(IpAddr::V6(host6), 7001),
        "IPv6 must not be translated"
    );
    server.send_to(b"reply", from).expect("reply");
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    assert!(client.recv_from(&mut buf).is_ok(), "reply on the open flow");
    // a new flow from another server port is filtered
    let other: UdpSocket = lab
        .server()
        .udp_bind(SocketAddr::new(IpAddr::V6(srv6), 7002))
        .expect("other socket");
    other.send_to(b"unsolicited", from).expect("send");
    client
        .set_read_timeout(Some(Duration::from_millis(700)))
        .expect("timeout");
    assert!(
        client.recv_from(&mut buf).is_err(),
        "the firewall let a new inbound flow in"
    );
    // and with an open router it gets through
    lab.set_router_kind(0, RouterKind::Open).expect("open");
    other.send_to(b"unsolicited", from).expect("send");
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    assert!(
        client.recv_from(&mut buf).is_ok(),
        "an open router must route inbound IPv6"
    );
}
