//! Classification scenarios: core's [`Classifier`] behind every NAT configuration, on a
//! seeded virtual network, scored against what the configuration makes observable.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use p2pd_core::nat::{
    Classification, Classifier, ClassifierConfig, ClassifierSockets, DeltaKind, LifetimeConfig,
    LifetimeProbe, LifetimeSockets, MappingLifetime, NatType,
};
use p2pd_core::rng::Rng;
use p2pd_core::stun::ServerConfig;

use crate::error::SimError;
use crate::host::{HostConfig, InterfaceConfig};
use crate::link::LinkConfig;
use crate::machine::MachineEndpoint;
use crate::nat::RouterConfig;
use crate::network::{Attachment, HostId, Network};
use crate::stats::Stats;

/// One NAT configuration: P2PD's type and delta kind, with the step or offset the
/// allocator uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatCase {
    /// The NAT type configured.
    pub nat_type: NatType,
    /// The port allocation configured.
    pub delta: DeltaKind,
    /// Its step (independent, dependent) or offset (preserving).
    pub step: u16,
}

impl NatCase {
    /// All 35 configurations, with step 7.
    pub fn all() -> Vec<NatCase> {
        NatType::ALL
            .iter()
            .flat_map(|&nat_type| {
                DeltaKind::ALL.iter().map(move |&delta| NatCase {
                    nat_type,
                    delta,
                    step: 7,
                })
            })
            .collect()
    }

    /// What a perfect classifier can see of this configuration: the type, and the delta
    /// where there is one to see (none when UDP is blocked; `equal` when nothing is
    /// translated, whatever allocator the box would use).
    pub fn observable(&self) -> (NatType, Option<(DeltaKind, Option<i32>)>) {
        let delta = match self.nat_type {
            NatType::Blocked => None,
            NatType::OpenInternet | NatType::SymmetricUdpFirewall => {
                Some((DeltaKind::Equal, Some(0)))
            }
            _ => Some(match self.delta {
                DeltaKind::Equal => (DeltaKind::Equal, Some(0)),
                DeltaKind::Random => (DeltaKind::Random, None),
                k => (k, Some(i32::from(self.step))),
            }),
        };
        (self.nat_type, delta)
    }

    /// Whether every field of the configuration can be observed (false for delta kinds
    /// configured on boxes that do not translate, and for blocked UDP).
    pub fn fully_observable(&self) -> bool {
        match self.nat_type {
            NatType::Blocked => false,
            NatType::OpenInternet | NatType::SymmetricUdpFirewall => self.delta == DeltaKind::Equal,
            _ => true,
        }
    }
}

/// How a verdict compares with the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Score {
    /// Everything observable was reported, exactly.
    Correct,
    /// Some field was reported as unknown; nothing reported was wrong.
    Uncertain,
    /// Some field was reported with confidence, and wrongly.
    Wrong,
}

/// One classification run in the simulator.
#[derive(Debug, Clone)]
pub struct ClassifyRun {
    /// The configuration.
    pub case: NatCase,
    /// The seed.
    pub seed: u64,
    /// The verdict.
    pub result: Classification,
    /// Its score.
    pub score: Score,
    /// Virtual time from start to verdict.
    pub virtual_time: Duration,
    /// Datagram statistics of the run.
    pub stats: Stats,
}

/// The RFC 5780 server every scenario uses (documentation addresses).
pub const SERVER_PRIMARY: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)), 3478);
/// Its alternate address.
pub const SERVER_ALTERNATE: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2)), 3479);
/// Virtual time a scenario may take before it counts as stuck.
pub const MAX_VIRTUAL_TIME: Duration = Duration::from_secs(120);
/// Delta probes from random local ports, as the real driver sends.
pub const DELTA_RANDOM: u16 = 8;
/// Delta probes from consecutive local ports: more, because every probe lost on its first
/// send breaks the chain a dependent allocator needs.
pub const DELTA_CONSECUTIVE: u16 = 12;

/// Classifies `case` behind one NAT whose host link is `link`, with `seed`.
pub fn classify(case: NatCase, seed: u64, link: LinkConfig) -> Result<ClassifyRun, SimError> {
    let router = RouterConfig::for_type(case.nat_type, case.delta, case.step);
    classify_behind(case, router, seed, link, ClassifierConfig::default())
}

/// Classifies behind an arbitrary router (hairpinning, timeouts, …); `case` is what the
/// verdict is scored against, and `config`'s server list is replaced by the scenario's.
pub fn classify_behind(
    case: NatCase,
    router: RouterConfig,
    seed: u64,
    link: LinkConfig,
    config: ClassifierConfig,
) -> Result<ClassifyRun, SimError> {
    let (mut net, host, ip) = host_behind(router, seed, link)?;
    let primary = SERVER_PRIMARY;
    let port = |net: &mut Network| net.free_port(host, ip).map(|p| SocketAddr::new(ip, p));
    let mapping = port(&mut net)?;
    let filtering = port(&mut net)?;
    let mut delta_random = Vec::new();
    for _ in 0..DELTA_RANDOM {
        delta_random.push(port(&mut net)?);
    }
    let base = net.free_port_range(host, ip, DELTA_CONSECUTIVE)?;
    let delta_consecutive = (0..DELTA_CONSECUTIVE)
        .map(|i| SocketAddr::new(ip, base + i))
        .collect();
    let mut rng = Rng::seed_from_u64(seed ^ 0x5eed_c1a5);
    let start = net.now();
    let classifier = Classifier::new(
        start,
        ClassifierConfig {
            servers: vec![primary],
            ..config
        },
        ClassifierSockets {
            mapping,
            filtering,
            delta_random,
            delta_consecutive,
        },
        rng.fork(),
    )?;
    net.attach(host, MachineEndpoint::new(classifier))?;
    net.run_until_with(start + MAX_VIRTUAL_TIME, 1_000_000, |n| {
        n.endpoint::<MachineEndpoint<Classifier>>(host)
            .is_some_and(|e| !e.events().is_empty())
    });
    let result = net
        .endpoint::<MachineEndpoint<Classifier>>(host)
        .and_then(|e| e.events().first().cloned())
        .ok_or(SimError::NoVerdict(MAX_VIRTUAL_TIME))?;
    let score = score(&case, &result);
    Ok(ClassifyRun {
        case,
        seed,
        virtual_time: result.elapsed,
        result,
        score,
        stats: *net.stats(),
    })
}

/// Scores a verdict against what `case` makes observable.
pub fn score(case: &NatCase, result: &Classification) -> Score {
    let (want_type, want_delta) = case.observable();
    let type_score = match result.nat_type {
        Some(t) if t == want_type => Score::Correct,
        Some(_) => Score::Wrong,
        None => Score::Uncertain,
    };
    let delta_score = match (want_delta, result.delta) {
        (None, None) => Score::Correct,
        (None, Some(_)) => Score::Wrong,
        (Some(_), None) => Score::Uncertain,
        (Some((kind, value)), Some(got)) => {
            if got.kind == kind && value.is_none_or(|v| v == got.value) {
                Score::Correct
            } else {
                Score::Wrong
            }
        }
    };
    match (type_score, delta_score) {
        (Score::Wrong, _) | (_, Score::Wrong) => Score::Wrong,
        (Score::Correct, Score::Correct) => Score::Correct,
        _ => Score::Uncertain,
    }
}

/// A network with the RFC 5780 server and one host behind `router`, its link `link`.
fn host_behind(
    router: RouterConfig,
    seed: u64,
    link: LinkConfig,
) -> Result<(Network, HostId, IpAddr), SimError> {
    let mut net = Network::new(seed);
    net.add_stun_server(ServerConfig {
        primary: SERVER_PRIMARY,
        alternate: Some(SERVER_ALTERNATE),
        software: None,
    })?;
    let router = net.add_router(router)?;
    let host = net.add_host(HostConfig {
        interfaces: vec![InterfaceConfig::new(Attachment::Behind(router)).with_link(link)],
    })?;
    let ip = net.host_ip(host).ok_or(SimError::NoInterfaces)?;
    Ok((net, host, ip))
}

/// Measures the mapping lifetime behind `router` (host link `link`), testing `delays`.
pub fn measure_lifetime(
    router: RouterConfig,
    delays: Vec<Duration>,
    seed: u64,
    link: LinkConfig,
) -> Result<MappingLifetime, SimError> {
    let (mut net, host, ip) = host_behind(router, seed, link)?;
    let trigger = SocketAddr::new(ip, net.free_port(host, ip)?);
    let mut targets = Vec::new();
    for _ in &delays {
        targets.push(SocketAddr::new(ip, net.free_port(host, ip)?));
    }
    let longest = delays.iter().max().copied().unwrap_or_default();
    let start = net.now();
    let probe = LifetimeProbe::new(
        start,
        LifetimeConfig {
            server: SERVER_PRIMARY,
            delays,
            rtt: link.latency * 2 + Duration::from_millis(20),
            attempts: 6,
        },
        LifetimeSockets { trigger, targets },
        Rng::seed_from_u64(seed ^ 0x11fe),
    )?;
    net.attach(host, MachineEndpoint::new(probe))?;
    let limit = longest + MAX_VIRTUAL_TIME;
    net.run_until_with(start + limit, 1_000_000, |n| {
        n.endpoint::<MachineEndpoint<LifetimeProbe>>(host)
            .is_some_and(|e| !e.events().is_empty())
    });
    net.endpoint::<MachineEndpoint<LifetimeProbe>>(host)
        .and_then(|e| e.events().first().cloned())
        .ok_or(SimError::NoVerdict(limit))
}
