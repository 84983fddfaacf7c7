//! Core's UDP hole punching in the simulator: two hosts behind two NATs of every kind the
//! issue names (open internet, full cone, restricted, port-restricted, symmetric) × delta
//! kinds. Each side learns its mapping from a reflector (the facts a classifier reports),
//! predicts the peer's next mapping with [`predict_ports`], schedules with
//! [`schedule_from_rtt`] and punches with [`UdpPunch`]; a random-port symmetric NAT facing
//! a stable-mapping one punches with the birthday plan. Outcomes must match
//! [`udp_punch_possible`]; deterministic per seed, also with 10 % loss.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use p2pd_core::nat::{Delta, DeltaKind, NatType};
use p2pd_core::punch::{
    BirthdayPlan, MappingFacts, PortRange, PunchConfig, UdpPunch, UdpPunchEvent, predict_ports,
    schedule_from_rtt, udp_punch_possible,
};
use p2pd_core::rng::Rng;
use p2pd_sim::{Datagram, Endpoint, HostConfig, HostId, LinkConfig, Network, RouterConfig};

/// Guesses per predicted peer.
const GUESSES: usize = 8;
/// The offset / step every predictable NAT uses.
const STEP: u16 = 3;
/// The signaling channel's round trip (DCUtR's CONNECT / answer).
const SIGNAL_RTT: Duration = Duration::from_millis(80);

/// Echoes each datagram's source address back as text: a minimal STUN.
struct Reflector(Vec<Datagram>);

impl Endpoint for Reflector {
    fn handle_input(&mut self, _: Instant, source: SocketAddr, destination: SocketAddr, _: &[u8]) {
        if self.0.len() < 64 {
            self.0.push(Datagram::new(
                destination,
                source,
                source.to_string().into_bytes(),
            ));
        }
    }
    fn poll_transmit(&mut self) -> Option<Datagram> {
        self.0.pop()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn handle_timeout(&mut self, _: Instant) {}
}

/// A host's application: first asks the reflector for its mapping, then runs a punch
/// machine once the test installs one.
struct Peer {
    to_send: Vec<Datagram>,
    observed: Option<SocketAddr>,
    punch: Option<UdpPunch>,
    outcome: Option<(UdpPunchEvent, Instant)>,
}

impl Endpoint for Peer {
    fn handle_input(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        if let Some(p) = self.punch.as_mut() {
            p.handle_input(now, source, destination, bytes);
            if let Some(e) = p.poll_event() {
                self.outcome.get_or_insert((e, now));
            }
        } else if let Ok(a) = std::str::from_utf8(bytes).unwrap_or("").parse() {
            // The first answer: the observation (later ones answer interfering traffic).
            self.observed.get_or_insert(a);
        }
    }
    fn poll_transmit(&mut self) -> Option<Datagram> {
        if let Some(d) = self.to_send.pop() {
            return Some(d);
        }
        self.punch
            .as_mut()
            .and_then(|p| p.poll_transmit())
            .and_then(|t| Datagram::from_transmit(&t))
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.punch
            .as_ref()
            .and_then(|p| p.poll_timeout())
            .map(|t| t.at)
    }
    fn handle_timeout(&mut self, now: Instant) {
        if let Some(p) = self.punch.as_mut() {
            p.handle_timeout(now);
            if let Some(e) = p.poll_event() {
                self.outcome.get_or_insert((e, now));
            }
        }
    }
}

type Side = (NatType, DeltaKind);

fn is_random_symmetric(s: Side) -> bool {
    s == (NatType::Symmetric, DeltaKind::Random)
}

/// Every configuration under test.
fn sides() -> Vec<Side> {
    let mut v = vec![(NatType::OpenInternet, DeltaKind::Equal)];
    for t in [
        NatType::FullCone,
        NatType::RestrictedCone,
        NatType::PortRestrictedCone,
    ] {
        v.push((t, DeltaKind::Equal));
        v.push((t, DeltaKind::Random));
    }
    for d in DeltaKind::ALL {
        v.push((NatType::Symmetric, d));
    }
    v
}

struct Host {
    id: HostId,
    ip: IpAddr,
    public_ip: IpAddr,
    /// The socket the reflector saw, and what it saw.
    obs_local: SocketAddr,
    /// The next free local port after `obs_local` (what a symmetric side punches from).
    next_local: SocketAddr,
    side: Side,
}

/// What one run found.
#[derive(Debug)]
struct Run {
    punched: bool,
    packets: u64,
    elapsed: Duration,
}

fn run(a: Side, b: Side, seed: u64, loss: f64) -> Run {
    run_with(a, b, seed, loss, GUESSES, 0)
}

/// One punch between `a` and `b` with `guesses` predictions per symmetric peer; each
/// symmetric side first opens `interfere` other mappings after its observation (traffic to
/// elsewhere), so its next mapping is not the first guess.
fn run_with(a: Side, b: Side, seed: u64, loss: f64, guesses: usize, interfere: u16) -> Run {
    let mut net = Network::new(seed);
    let link = LinkConfig {
        loss,
        ..LinkConfig::with_latency(Duration::from_millis(5))
    };
    let refl = net.add_host(HostConfig::internet()).expect("reflector");
    net.attach(refl, Reflector(Vec::new())).expect("attach");
    let refl_addr = SocketAddr::new(net.host_ip(refl).expect("ip"), 3478);
    let mut hosts = Vec::new();
    for side in [a, b] {
        let router = net
            .add_router(RouterConfig::for_type(side.0, side.1, STEP).with_link(link))
            .expect("router");
        let id = net.add_host(HostConfig::behind(router)).expect("host");
        let ip = net.host_ip(id).expect("ip");
        // Two consecutive ports: observe from the first, punch from the second.
        let first = net.free_port_range(id, ip, 2).expect("ports");
        let obs_local = SocketAddr::new(ip, first);
        let next_local = SocketAddr::new(ip, first + 1);
        let public_ip = net.router_public_ip(router).unwrap_or(ip);
        let to_send = (0..5)
            .map(|_| Datagram::new(obs_local, refl_addr, b"?".to_vec()))
            .collect();
        net.attach(
            id,
            Peer {
                to_send,
                observed: None,
                punch: None,
                outcome: None,
            },
        )
        .expect("attach");
        hosts.push(Host {
            id,
            ip,
            public_ip,
            obs_local,
            next_local,
            side,
        });
    }
    net.run_for(Duration::from_millis(200), 100_000);
    for h in hosts.iter().filter(|h| h.side.0 == NatType::Symmetric) {
        let extra: Vec<Datagram> = (0..interfere)
            .map(|k| {
                Datagram::new(
                    h.obs_local,
                    SocketAddr::new(refl_addr.ip(), 9000 + k),
                    b"x".to_vec(),
                )
            })
            .collect();
        net.with_endpoint::<Peer, _>(h.id, |p, _| p.to_send.extend(extra));
    }
    net.run_for(Duration::from_millis(100), 100_000);
    let observed: Vec<SocketAddr> = hosts
        .iter()
        .map(|h| {
            net.endpoint::<Peer>(h.id)
                .and_then(|p| p.observed)
                .unwrap_or(SocketAddr::new(h.public_ip, h.obs_local.port()))
        })
        .collect();
    // A stable-mapping side punches from the observed socket; a symmetric side from the next.
    let punch_local = |h: &Host| {
        if h.side.0 == NatType::Symmetric {
            h.next_local
        } else {
            h.obs_local
        }
    };
    // The candidates for reaching host `i`, as its peer computes them from `i`'s facts.
    let candidates = |i: usize| -> Vec<SocketAddr> {
        let h = &hosts[i];
        if h.side.0 != NatType::Symmetric {
            return vec![observed[i]];
        }
        let facts = MappingFacts {
            last_external: observed[i].port(),
            last_local: h.obs_local.port(),
            next_local: punch_local(h).port(),
            delta: Delta {
                kind: h.side.1,
                value: i32::from(if h.side.1 == DeltaKind::Equal {
                    0
                } else {
                    STEP
                }),
            },
        };
        match predict_ports(&facts, guesses, PortRange::default()) {
            Ok(ports) => ports
                .into_iter()
                .map(|p| SocketAddr::new(observed[i].ip(), p))
                .collect(),
            Err(_) => vec![observed[i]],
        }
    };
    // DCUtR timing: A measured the signaling RTT; SYNC reaches B half an RTT later.
    let t0 = net.now();
    let sched = schedule_from_rtt(t0, t0 + SIGNAL_RTT, Duration::from_millis(20)).expect("rtt");
    let starts = [
        sched.initiator_start,
        sched.responder_start(sched.sync_at + SIGNAL_RTT / 2),
    ];
    let birthday = (is_random_symmetric(a) && b.0 != NatType::Symmetric)
        || (is_random_symmetric(b) && a.0 != NatType::Symmetric);
    let plan = BirthdayPlan::default();
    let mut rng = Rng::seed_from_u64(seed ^ 0xb1d);
    let key = [seed as u8; 32];
    let mut configs = Vec::new();
    for i in 0..2 {
        let h = &hosts[i];
        let peer = 1 - i;
        let base = PunchConfig {
            key,
            attempt: seed,
            locals: vec![punch_local(h)],
            candidates: candidates(peer),
            start: starts[i],
            interval: Duration::from_millis(20),
            max_packets: (guesses * 6) as u32,
            linger: Duration::from_millis(500),
        };
        let cfg = if !birthday {
            base
        } else if is_random_symmetric(h.side) {
            // K sockets, all aimed at the peer's stable address, at the rate budget.
            let ip = h.ip;
            let first = net.free_port_range(h.id, ip, plan.sockets).expect("ports");
            PunchConfig {
                locals: (0..plan.sockets)
                    .map(|k| SocketAddr::new(ip, first + k))
                    .collect(),
                candidates: vec![observed[peer]],
                interval: plan.interval(),
                max_packets: u32::from(plan.sockets),
                linger: plan.duration() + Duration::from_secs(1),
                ..base
            }
        } else {
            // M random ports of the symmetric side's IP, at the rate budget.
            let targets = plan.targets(&mut rng).expect("plan");
            PunchConfig {
                candidates: targets
                    .into_iter()
                    .map(|p| SocketAddr::new(hosts[peer].public_ip, p))
                    .collect(),
                interval: plan.interval(),
                max_packets: plan.probes,
                linger: Duration::from_secs(1),
                ..base
            }
        };
        configs.push(cfg);
    }
    for (h, cfg) in hosts.iter().zip(configs) {
        let m = UdpPunch::new(cfg).expect("punch config");
        net.with_endpoint::<Peer, _>(h.id, |p, _| p.punch = Some(m));
    }
    net.reset_stats();
    let start = net.now();
    net.run_for(Duration::from_secs(15), 2_000_000);
    let mut punched = true;
    let mut packets = 0;
    let mut elapsed = Duration::ZERO;
    for h in &hosts {
        let p = net.endpoint::<Peer>(h.id).expect("peer");
        let Some((event, at)) = p.outcome else {
            panic!("{a:?} × {b:?} seed {seed}: a side never finished");
        };
        punched &= matches!(event, UdpPunchEvent::Punched { .. });
        packets += u64::from(p.punch.as_ref().map_or(0, UdpPunch::probes_sent));
        elapsed = elapsed.max(at - start);
    }
    Run {
        punched,
        packets,
        elapsed,
    }
}

fn pairs() -> Vec<(Side, Side)> {
    let all = sides();
    let mut v = Vec::new();
    for (i, a) in all.iter().enumerate() {
        for b in &all[i..] {
            v.push((*a, *b));
        }
    }
    v
}

fn is_birthday(a: Side, b: Side) -> bool {
    (is_random_symmetric(a) && b.0 != NatType::Symmetric)
        || (is_random_symmetric(b) && a.0 != NatType::Symmetric)
}

/// Checks every pair over `seeds` at `loss`; birthday pairs must succeed in at least
/// `birthday_min` of the runs. Prints a table for the report.
fn check(seeds: std::ops::Range<u64>, loss: f64, birthday_min: f64) {
    let mut wrong = Vec::new();
    let (mut b_ok, mut b_all) = (0u32, 0u32);
    for (a, b) in pairs() {
        let expect = udp_punch_possible(a, b);
        for seed in seeds.clone() {
            let r = run(a, b, seed, loss);
            println!(
                "{:?}/{:?} × {:?}/{:?} seed {seed}: punched {} ({} probes, {:?}) oracle {expect}",
                a.0, a.1, b.0, b.1, r.punched, r.packets, r.elapsed
            );
            if is_birthday(a, b) {
                assert!(expect, "birthday pairs are possible per the oracle");
                b_all += 1;
                b_ok += u32::from(r.punched);
            } else if r.punched != expect {
                wrong.push(format!(
                    "{a:?} × {b:?} seed {seed}: punched {} oracle {expect}",
                    r.punched
                ));
            }
        }
    }
    println!("birthday: {b_ok}/{b_all}");
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(
        f64::from(b_ok) >= birthday_min * f64::from(b_all),
        "birthday succeeded {b_ok}/{b_all}"
    );
}

#[test]
fn every_pair_matches_the_oracle_without_loss() {
    check(0..2, 0.0, 0.9);
}

#[test]
fn every_pair_matches_the_oracle_with_ten_percent_loss() {
    check(10..12, 0.1, 0.8);
}

/// The real birthday case — port-restricted cone × random-port symmetric, where only a
/// sprayed probe hitting one of the K open mappings gets through — over 40 seeds: the
/// success rate must be near the plan's `1 − (1 − K/R)^M` (≈ 98 %; a bit less here, as the
/// spray starts while the K mappings are still being opened at the same rate budget).
#[test]
fn birthday_success_rate_is_near_the_plan() {
    let plan = BirthdayPlan::default();
    let a = (NatType::PortRestrictedCone, DeltaKind::Equal);
    let b = (NatType::Symmetric, DeltaKind::Random);
    let (mut ok, mut probes, mut time) = (0u32, 0u64, Duration::ZERO);
    let seeds = 100..140u64;
    for seed in seeds.clone() {
        let r = run(a, b, seed, 0.0);
        if r.punched {
            ok += 1;
            probes += r.packets;
            time += r.elapsed;
        }
    }
    let n = seeds.count() as u32;
    println!(
        "birthday {ok}/{n} (plan {:.3}); mean on success {} probes, {:?}",
        plan.success_probability(),
        probes / u64::from(ok.max(1)),
        time / ok.max(1)
    );
    assert!(f64::from(ok) >= 0.85 * f64::from(n), "birthday {ok}/{n}");
}

/// Several guesses matter: a symmetric NAT with an independent delta that handed out two
/// other mappings between the observation and the punch is reached by the third guess; with
/// P2PD's single first guess the same punch fails.
#[test]
fn later_guesses_cover_mappings_allocated_meanwhile() {
    let a = (NatType::Symmetric, DeltaKind::Independent);
    let b = (NatType::PortRestrictedCone, DeltaKind::Equal);
    for seed in 0..5 {
        let many = run_with(a, b, seed, 0.0, GUESSES, 2);
        assert!(
            many.punched,
            "seed {seed}: {GUESSES} guesses should reach the third"
        );
        let first_only = run_with(a, b, seed, 0.0, 1, 2);
        assert!(
            !first_only.punched,
            "seed {seed}: the first guess alone cannot"
        );
        let undisturbed = run_with(a, b, seed, 0.0, 1, 0);
        assert!(
            undisturbed.punched,
            "seed {seed}: the first guess is right without interference"
        );
    }
}
