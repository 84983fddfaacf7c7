//! Issue 9's node proof, with miniupnpd (UPnP IGD, NAT-PMP and PCP on) in the router
//! namespace in front of the listener, mosquitto and coturn (STUN, TURN) on the public
//! side: for each of PCP, NAT-PMP and UPnP (`--portmap-via`), and with the default order
//! (PCP wins), `p2pd listen` behind the
//! NAT maps its TCP listen port and prints an address carrying the mapped port; a
//! `p2pd connect` on a host on the public segment connects with strategy `direct` to the
//! router's external address and that port, and bytes cross both ways intact; once the
//! listener exited, the mapping is gone: a plain listener on the same host port is
//! unreachable from outside again. The connector's own gateway runs no port mapping
//! service: its (default-on) attempt gives up quietly and costs it nothing else. With a
//! 4 s lease the listener renews (logged every 2 s), and a peer still connects `direct`
//! after 10 s.
//!
//! Needs root and the lab's packages; skips otherwise (fails under
//! `P2PD_LAB_REQUIRED=1`).

mod lab_node;
use lab_node::{Home, payload, spawn, wait_event};

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use p2pd_core::addr::NodeAddr;
use p2pd_lab::prereq::ALL_TOOLS;
use p2pd_lab::{Host, Lab, MQTT_PORT, RouterKind, SERVER_IP1, STUN_PORT, TURN_PASSWORD, TURN_USER};
use sha2::{Digest, Sha256};

/// Bytes each way.
const LEN: usize = 256 * 1024;
/// Hang guard for one exchange (not a timing assertion).
const LIMIT: Duration = Duration::from_secs(60);

fn node_flags(home: &Home) -> Vec<String> {
    vec![
        "--stun".into(),
        format!("{SERVER_IP1}:{STUN_PORT}"),
        "--mqtt".into(),
        format!("{SERVER_IP1}:{MQTT_PORT}"),
        "--turn".into(),
        format!("{TURN_USER}:{TURN_PASSWORD}@{SERVER_IP1}:{STUN_PORT}"),
        "--home".into(),
        home.0.to_string_lossy().into_owned(),
        "--json".into(),
        "-v".into(),
    ]
}

/// Whether a plain TCP listener on `port` of `inside` is reachable from `outside` at
/// `to` (a connection that completes and carries a byte).
fn reachable(inside: &Host, port: u16, outside: &Host, to: SocketAddr) -> bool {
    let l = inside
        .ns()
        .enter(|| TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)))
        .expect("enter")
        .expect("bind the plain listener");
    let server = std::thread::spawn(move || {
        l.set_nonblocking(false).unwrap();
        // The listener is dropped with the thread; a connection that never comes is
        // ended by the dummy connection below.
        if let Ok((mut s, _)) = l.accept() {
            let _ = s.write_all(b"x");
        }
    });
    let got = outside
        .ns()
        .enter(|| {
            let Ok(mut s) = TcpStream::connect_timeout(&to, Duration::from_millis(1500)) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut b = [0u8; 1];
            s.read_exact(&mut b).is_ok() && &b == b"x"
        })
        .expect("enter");
    if !got {
        // Release the accept() from inside.
        let _ = inside.ns().enter(|| {
            TcpStream::connect_timeout(
                &SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
                Duration::from_secs(1),
            )
        });
    }
    server.join().unwrap();
    got
}

#[test]
fn listen_maps_its_port_by_each_protocol_and_a_public_peer_connects_direct() {
    p2pd_lab::require!(ALL_TOOLS);
    // Host 0 on the public segment (a plain router, no NAT); host 1 behind a home NAT
    // with miniupnpd.
    let lab = Lab::two_lans(RouterKind::Open, RouterKind::HOME).expect("build lab");
    lab.start_servers().expect("coturn and mosquitto");
    lab.start_miniupnpd(1).expect("miniupnpd");
    let wan = IpAddr::V4(lab.router(1).wan_addr());
    // The connector's start-up times (its gateway answers no port mapping protocol).
    let mut start_ms = Vec::new();
    let mut last_addr = String::new();
    // The last run leaves the choice to the node: PCP is preferred and answers first;
    // UPnP, tried alongside, is dropped.
    let runs = [
        (Some("pcp"), "pcp", 42000u16),
        (Some("natpmp"), "natpmp", 42010),
        (Some("upnp"), "upnp", 42020),
        (None, "pcp", 42030),
    ];
    for (flag, via, port) in runs {
        // Before: the NAT drops unsolicited connections to that port.
        assert!(
            !reachable(lab.host(1), port, lab.host(0), SocketAddr::new(wan, port)),
            "{via}: port {port} reachable before any mapping"
        );
        let (hl, hc) = (
            Home::new(&format!("l-{via}")),
            Home::new(&format!("c-{via}")),
        );
        let down = payload(u64::from(port), LEN);
        let up = payload(u64::from(port) + 1, LEN);
        let (want_down, want_up): ([u8; 32], [u8; 32]) =
            (Sha256::digest(&down).into(), Sha256::digest(&up).into());
        let mut args = vec!["listen".to_string(), "--port".into(), port.to_string()];
        if let Some(f) = flag {
            args.extend(["--portmap-via".into(), f.into()]);
        }
        args.extend(node_flags(&hl));
        let l = spawn(lab.host(1), args, down, "listen");
        let v = wait_event(&l.stderr, "listening", Duration::from_secs(30));
        assert_eq!(v["portmap"]["via"], via, "{v}");
        let external: SocketAddr = v["portmap"]["external"]
            .as_str()
            .expect("a mapping in the listening event")
            .parse()
            .unwrap();
        assert_eq!(external.ip(), wan, "{v}");
        let text = v["addr"].as_str().unwrap().to_string();
        let addr = NodeAddr::parse(&text).expect("the printed address parses");
        assert_eq!(
            addr.mapped_port(0, false),
            Some(external.port()),
            "the address carries the mapped port"
        );
        // The public host connects straight to the mapped port.
        last_addr.clone_from(&text);
        let mut args = vec!["connect".to_string(), text];
        args.extend(node_flags(&hc));
        let spawned = Instant::now();
        let c = spawn(lab.host(0), args, up, "connect");
        wait_event(&c.stderr, "started", LIMIT);
        start_ms.push(spawned.elapsed().as_millis());
        let cv = wait_event(&c.stderr, "connected", LIMIT);
        let lv = wait_event(&l.stderr, "connected", LIMIT);
        assert_eq!(cv["strategy"], "direct", "{via}: {cv}");
        assert_eq!(lv["strategy"], "direct", "{via}: {lv}");
        assert_eq!(cv["remote"], external.to_string(), "{via}: {cv}");
        let (cs, cn, ch) = c.finish(LIMIT);
        let (ls, ln, lh) = l.finish(LIMIT);
        assert!(cs.success(), "connect exited with {cs}");
        assert!(ls.success(), "listen exited with {ls}");
        assert_eq!((cn, ln), (LEN, LEN), "bytes received (connector, listener)");
        assert!(ch == want_down, "{via}: connector's SHA-256 differs");
        assert!(lh == want_up, "{via}: listener's SHA-256 differs");
        // After: the listener deleted its mapping on the way out.
        assert!(
            !reachable(lab.host(1), port, lab.host(0), external),
            "{via}: {external} still forwarded after the listener exited"
        );
        eprintln!("{via}: mapped {external}, direct, {LEN} B each way, mapping deleted");
    }
    // For comparison, a start-up without port mapping (the peer is gone: the attempt
    // then times out, which does not matter here).
    let hc = Home::new("c-off");
    let mut args = vec![
        "connect".to_string(),
        last_addr,
        "--timeout".into(),
        "1".into(),
        "--portmap".into(),
        "off".into(),
    ];
    args.extend(node_flags(&hc));
    let spawned = Instant::now();
    let c = spawn(lab.host(0), args, Vec::new(), "connect-off");
    wait_event(&c.stderr, "started", LIMIT);
    let off_ms = spawned.elapsed().as_millis();
    let _ = c.finish(LIMIT);
    eprintln!("start-up to 'started', silent gateway: portmap on {start_ms:?} ms, off {off_ms} ms");
}

/// A 4 s NAT-PMP lease (`[portmap] lease` in the listener's config file): the node renews
/// it, so that after more than two lease periods a public peer still connects `direct`
/// (a lapsed mapping would leave only `reverse`, which the public connector could also
/// take: the strategy tells them apart).
#[test]
fn listen_renews_a_short_lease() {
    p2pd_lab::require!(ALL_TOOLS);
    let lab = Lab::two_lans(RouterKind::Open, RouterKind::HOME).expect("build lab");
    lab.start_servers().expect("coturn and mosquitto");
    lab.start_miniupnpd(1).expect("miniupnpd");
    let wan = IpAddr::V4(lab.router(1).wan_addr());
    let (hl, hc) = (Home::new("l-renew"), Home::new("c-renew"));
    std::fs::write(hl.0.join("config.toml"), "[portmap]\nlease = 4\n").unwrap();
    let mut args = vec![
        "listen".to_string(),
        "--port".into(),
        "42040".into(),
        "--portmap-via".into(),
        "natpmp".into(),
    ];
    args.extend(node_flags(&hl));
    let l = spawn(lab.host(1), args, b"down".to_vec(), "listen");
    let v = wait_event(&l.stderr, "listening", Duration::from_secs(30));
    assert_eq!(v["portmap"]["lease_s"], 4, "{v}");
    let external: SocketAddr = v["portmap"]["external"].as_str().unwrap().parse().unwrap();
    assert_eq!(external.ip(), wan);
    std::thread::sleep(Duration::from_secs(10));
    let renewals = l
        .stderr
        .try_iter()
        .filter(|line| line.contains("port mapping renewed"))
        .count();
    assert!(renewals >= 2, "{renewals} renewals in 10 s of a 4 s lease");
    let mut args = vec!["connect".to_string(), v["addr"].as_str().unwrap().into()];
    args.extend(node_flags(&hc));
    let c = spawn(lab.host(0), args, b"up".to_vec(), "connect");
    let cv = wait_event(&c.stderr, "connected", LIMIT);
    assert_eq!(cv["strategy"], "direct", "{cv}");
    assert_eq!(cv["remote"], external.to_string(), "{cv}");
    let (cs, cn, _) = c.finish(LIMIT);
    let (ls, ln, _) = l.finish(LIMIT);
    assert!(cs.success() && ls.success(), "exits: {cs}, {ls}");
    assert_eq!((cn, ln), (4, 2));
}
