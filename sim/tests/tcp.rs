//! The simulator's TCP model through its NATs: connects, refusals, unsolicited SYNs,
//! simultaneous open, and bytes under loss.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use p2pd_core::nat::{DeltaKind, NatType};
use p2pd_sim::tcp::{TcpEvent, TcpFailure, TcpId, TcpStack};
use p2pd_sim::{
    Attachment, Datagram, EMPTY_HASH, Endpoint, HostConfig, InterfaceConfig, LinkConfig, Network,
    RouterConfig, fnv1a,
};

/// A host application: a TCP stack, optional connects at given times, and bytes to send on
/// every connection; it records events and hashes what it reads.
struct App {
    tcp: TcpStack,
    connects: Vec<(Instant, SocketAddr, SocketAddr)>,
    send: Vec<u8>,
    sent: usize,
    conn: Option<TcpId>,
    events: Vec<TcpEvent>,
    received: usize,
    hash: u64,
}

impl App {
    fn new(listen: Option<SocketAddr>) -> Self {
        let mut tcp = TcpStack::new();
        if let Some(l) = listen {
            tcp.listen(l);
        }
        App {
            tcp,
            connects: Vec::new(),
            send: Vec::new(),
            sent: 0,
            conn: None,
            events: Vec::new(),
            received: 0,
            hash: EMPTY_HASH,
        }
    }

    fn pump(&mut self, now: Instant) {
        while let Some(e) = self.tcp.poll_event() {
            match e {
                TcpEvent::Connected { id, .. } | TcpEvent::Accepted { id, .. } => {
                    self.conn = Some(id)
                }
                TcpEvent::Readable(id) => {
                    let mut b = [0u8; 8192];
                    loop {
                        let n = self.tcp.read(now, id, &mut b);
                        if n == 0 {
                            break;
                        }
                        self.received += n;
                        self.hash = fnv1a(self.hash, &b[..n]);
                    }
                }
                _ => {}
            }
            self.events.push(e);
        }
        if let Some(id) = self.conn
            && self.sent < self.send.len()
        {
            let n = self.tcp.write(now, id, &self.send[self.sent..]);
            self.sent += n;
        }
    }
}

impl Endpoint for App {
    fn handle_input(&mut self, _: Instant, _: SocketAddr, _: SocketAddr, _: &[u8]) {}
    fn handle_tcp(&mut self, now: Instant, s: SocketAddr, d: SocketAddr, b: &[u8]) {
        self.tcp.handle_input(now, s, d, b);
        self.pump(now);
        self.pump(now);
    }
    fn poll_transmit(&mut self) -> Option<Datagram> {
        self.tcp.poll_transmit()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        let c = self.connects.iter().map(|c| c.0).min();
        match (c, self.tcp.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
    fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<_> = self
            .connects
            .iter()
            .filter(|c| c.0 <= now)
            .copied()
            .collect();
        self.connects.retain(|c| c.0 > now);
        for (_, l, r) in due {
            self.tcp.connect(now, l, r);
        }
        self.tcp.handle_timeout(now);
        self.pump(now);
        self.pump(now);
    }
}

fn public_server(net: &mut Network, ip: &str) -> (p2pd_sim::HostId, SocketAddr) {
    let addr: SocketAddr = format!("{ip}:80").parse().unwrap();
    let h = net
        .add_host(
            HostConfig::default()
                .with_interface(InterfaceConfig::new(Attachment::Internet).with_ip(addr.ip())),
        )
        .unwrap();
    (h, addr)
}

fn failed(app: &App) -> Option<TcpFailure> {
    app.events.iter().find_map(|e| match e {
        TcpEvent::Failed { reason, .. } => Some(*reason),
        _ => None,
    })
}

fn connected(app: &App) -> bool {
    app.events
        .iter()
        .any(|e| matches!(e, TcpEvent::Connected { .. } | TcpEvent::Accepted { .. }))
}

#[test]
fn connect_out_through_every_nat_type_and_refused_fast_without_listener() {
    for nat in NatType::ALL {
        let mut net = Network::new(1);
        let (srv, addr) = public_server(&mut net, "203.0.113.10");
        net.attach(srv, App::new(Some(addr))).unwrap();
        let r = net
            .add_router(RouterConfig::for_type(nat, DeltaKind::Random, 1))
            .unwrap();
        let h = net.add_host(HostConfig::behind(r)).unwrap();
        let ip = net.host_ip(h).unwrap();
        let mut app = App::new(None);
        let now = net.now();
        app.connects.push((now, SocketAddr::new(ip, 5000), addr));
        app.connects.push((
            now,
            SocketAddr::new(ip, 5001),
            "203.0.113.10:81".parse().unwrap(),
        ));
        net.attach(h, app).unwrap();
        net.run_for(Duration::from_secs(5), 100_000);
        let app = net.endpoint::<App>(h).unwrap();
        assert!(
            connected(app),
            "{nat:?}: {:?} {:?}",
            app.events,
            net.stats()
        );
        assert_eq!(failed(app), Some(TcpFailure::Refused), "{nat:?}");
    }
}

#[test]
fn unsolicited_syn_is_dropped_by_a_nat_but_reaches_an_open_host() {
    for (nat, reachable) in [
        (NatType::OpenInternet, true),
        (NatType::FullCone, false),
        (NatType::SymmetricUdpFirewall, false),
    ] {
        let mut net = Network::new(2);
        let r = net
            .add_router(RouterConfig::for_type(nat, DeltaKind::Equal, 0))
            .unwrap();
        let h = net.add_host(HostConfig::behind(r)).unwrap();
        let ip = net.host_ip(h).unwrap();
        let target = SocketAddr::new(net.router_public_ip(r).unwrap_or(ip), 4000);
        net.attach(h, App::new(Some(SocketAddr::new(ip, 4000))))
            .unwrap();
        let (c, _) = public_server(&mut net, "203.0.113.11");
        let mut app = App::new(None);
        app.connects
            .push((net.now(), "203.0.113.11:7000".parse().unwrap(), target));
        net.attach(c, app).unwrap();
        net.run_for(Duration::from_secs(90), 100_000);
        let app = net.endpoint::<App>(c).unwrap();
        assert_eq!(connected(app), reachable, "{nat:?}: {:?}", app.events);
        if !reachable {
            assert_eq!(failed(app), Some(TcpFailure::TimedOut), "{nat:?}");
        }
    }
}

/// Both sides connect from their listen port to the other's external address at about the
/// same time.
fn simultaneous_open(a: (NatType, DeltaKind), b: (NatType, DeltaKind), loss: f64) -> (bool, bool) {
    let mut net = Network::new(3);
    let link = LinkConfig {
        loss,
        ..LinkConfig::with_latency(Duration::from_millis(20))
    };
    let mut hosts = Vec::new();
    for (nat, d) in [a, b] {
        let r = net
            .add_router(RouterConfig::for_type(nat, d, 0).with_link(link))
            .unwrap();
        let h = net.add_host(HostConfig::behind(r)).unwrap();
        let ip = net.host_ip(h).unwrap();
        hosts.push((
            h,
            SocketAddr::new(ip, 4000),
            net.router_public_ip(r).unwrap_or(ip),
        ));
    }
    let now = net.now();
    for i in 0..2 {
        let (h, local, _) = hosts[i];
        let peer = SocketAddr::new(hosts[1 - i].2, 4000);
        let mut app = App::new(Some(local));
        app.connects
            .push((now + Duration::from_millis(5 * i as u64), local, peer));
        app.send = vec![i as u8; 1 << 20];
        net.attach(h, app).unwrap();
    }
    net.run_for(Duration::from_secs(120), 2_000_000);
    let apps: Vec<&App> = hosts
        .iter()
        .map(|h| net.endpoint::<App>(h.0).unwrap())
        .collect();
    let both = apps.iter().all(|a| connected(a));
    let intact = both
        && apps[0].hash == fnv1a(EMPTY_HASH, &vec![1u8; 1 << 20])
        && apps[1].hash == fnv1a(EMPTY_HASH, &vec![0u8; 1 << 20]);
    (both, intact)
}

#[test]
fn simultaneous_open_through_cones_and_not_through_random_symmetric_nats() {
    let (ok, intact) = simultaneous_open(
        (NatType::PortRestrictedCone, DeltaKind::Equal),
        (NatType::FullCone, DeltaKind::Equal),
        0.0,
    );
    assert!(ok && intact);
    let (ok, _) = simultaneous_open(
        (NatType::Symmetric, DeltaKind::Random),
        (NatType::Symmetric, DeltaKind::Random),
        0.0,
    );
    assert!(!ok);
}

#[test]
fn a_megabyte_each_way_intact_at_ten_percent_loss() {
    let (ok, intact) = simultaneous_open(
        (NatType::RestrictedCone, DeltaKind::Equal),
        (NatType::OpenInternet, DeltaKind::Equal),
        0.10,
    );
    assert!(ok && intact);
}
