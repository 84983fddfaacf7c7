//! `p2pd nat`: classify the NAT in front of this host, per address family.

use std::net::SocketAddr;
use std::time::Duration;

use p2pd_core::nat::{Classification, ClassifierConfig, LifetimeConfig, MappingLifetime};
use p2pd_tokio::Tokio;
use p2pd_tokio::nat::{classify, mapping_lifetime};
use p2pd_tokio::net::route_local_ip;
use serde::Serialize;

use crate::cli::NatArgs;
use crate::config;
use crate::output;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// One classification as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct NatReport {
    pub family: &'static str,
    pub local: SocketAddr,
    pub nat_type: Option<&'static str>,
    pub delta: Option<DeltaReport>,
    pub translated: Option<bool>,
    pub mapping: Option<&'static str>,
    pub filtering: Option<&'static str>,
    pub external: Option<SocketAddr>,
    pub server: Option<SocketAddr>,
    pub other_address: Option<SocketAddr>,
    pub unreachable: Vec<SocketAddr>,
    pub hairpinning: Option<bool>,
    pub rtt_ms: Option<f64>,
    pub elapsed_ms: f64,
    pub round_trips: Option<f64>,
    pub requests: u32,
    pub tests: Vec<TestReport>,
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapping_lifetime: Option<LifetimeReport>,
}

/// `--lifetime`: how long an idle mapping lived.
#[derive(Debug, Serialize)]
pub struct LifetimeReport {
    /// Alive after this many seconds idle.
    pub at_least_s: Option<f64>,
    /// Gone after this many seconds idle.
    pub less_than_s: Option<f64>,
    pub tests: Vec<LifetimeTest>,
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct LifetimeTest {
    pub idle_s: f64,
    pub alive: Option<bool>,
}

impl LifetimeReport {
    fn new(m: &MappingLifetime) -> Self {
        LifetimeReport {
            at_least_s: m.at_least.map(|d| d.as_secs_f64()),
            less_than_s: m.less_than.map(|d| d.as_secs_f64()),
            tests: m
                .tests
                .iter()
                .map(|(d, alive)| LifetimeTest {
                    idle_s: d.as_secs_f64(),
                    alive: *alive,
                })
                .collect(),
            notes: m.notes.clone(),
        }
    }

    fn unavailable(why: &str) -> Self {
        LifetimeReport {
            at_least_s: None,
            less_than_s: None,
            tests: Vec::new(),
            notes: vec![why.to_string()],
        }
    }
}

#[derive(Debug, Serialize)]
pub struct DeltaReport {
    pub kind: &'static str,
    pub value: i32,
}

#[derive(Debug, Serialize)]
pub struct TestReport {
    pub name: &'static str,
    pub local: SocketAddr,
    pub server: SocketAddr,
    pub expected_from: Option<SocketAddr>,
    pub mapped: Option<SocketAddr>,
    pub attempts: u32,
    pub rtt_ms: Option<f64>,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl NatReport {
    pub fn new(c: &Classification) -> Self {
        NatReport {
            family: if c.local.is_ipv4() { "ipv4" } else { "ipv6" },
            local: c.local,
            nat_type: c.nat_type.map(|t| t.name()),
            delta: c.delta.map(|d| DeltaReport {
                kind: d.kind.name(),
                value: d.value,
            }),
            translated: c.translated,
            mapping: c.mapping.map(|m| m.name()),
            filtering: c.filtering.map(|f| f.name()),
            external: c.external,
            server: c.server,
            other_address: c.other_address,
            unreachable: c.unreachable.clone(),
            hairpinning: c.hairpinning,
            rtt_ms: c.rtt.map(ms),
            elapsed_ms: ms(c.elapsed),
            round_trips: c.round_trips().map(|r| (r * 10.0).round() / 10.0),
            requests: c.requests,
            tests: c
                .tests
                .iter()
                .map(|t| TestReport {
                    name: t.name,
                    local: t.local,
                    server: t.server,
                    expected_from: t.expected_from,
                    mapped: t.mapped,
                    attempts: t.attempts,
                    rtt_ms: t.rtt.map(ms),
                })
                .collect(),
            notes: c.notes.clone(),
            mapping_lifetime: None,
        }
    }
}

pub async fn run(args: NatArgs) -> Result<()> {
    let stun = if args.stun.is_empty() {
        let (file_config, file) = config::load(args.config.as_deref())?;
        match (&file_config.stun, &file) {
            (Some(_), Some(path)) => config::stun_servers(&[], &file_config, Some(path))?,
            _ => return Err("no STUN servers: pass one or more --stun IP[:PORT], or list them as `stun = [...]` in the config file (RFC 5780 servers give a full verdict)".into()),
        }
    } else {
        args.stun.clone()
    };
    let mut reports = Vec::new();
    for v4 in [true, false] {
        let servers: Vec<SocketAddr> = stun.iter().copied().filter(|s| s.is_ipv4() == v4).collect();
        let Some(first) = servers.first() else {
            continue;
        };
        let ip = route_local_ip(*first).map_err(|e| format!("no route to {first}: {e}"))?;
        let config = ClassifierConfig {
            servers: servers.clone(),
            blocked_after: Duration::from_millis(args.blocked_after_ms),
            test_hairpinning: args.hairpin,
            ..ClassifierConfig::default()
        };
        let c = classify(&Tokio, ip, config, p2pd_tokio::rng::os_rng()?).await?;
        let mut report = NatReport::new(&c);
        if args.lifetime {
            report.mapping_lifetime = Some(match (c.server, c.rtt) {
                (Some(server), Some(rtt)) => {
                    let config = LifetimeConfig {
                        server,
                        delays: LifetimeConfig::default_delays(Duration::from_secs(
                            args.lifetime_max_s,
                        )),
                        rtt,
                        attempts: 6,
                    };
                    let m =
                        mapping_lifetime(&Tokio, ip, config, p2pd_tokio::rng::os_rng()?).await?;
                    LifetimeReport::new(&m)
                }
                _ => LifetimeReport::unavailable(
                    "no STUN server answered, so there is no mapping to time",
                ),
            });
        }
        reports.push(report);
    }
    if args.json {
        output::line(serde_json::to_string_pretty(&reports)?)?;
    } else {
        for r in &reports {
            output::line(format!("{} via {}:", r.family, r.local.ip()))?;
            output::line(format!(
                "  nat type:    {}",
                r.nat_type.unwrap_or("uncertain")
            ))?;
            match &r.delta {
                Some(d) => output::line(format!("  delta:       {} {}", d.kind, d.value))?,
                None => output::line("  delta:       uncertain")?,
            }
            output::line(format!("  mapping:     {}", r.mapping.unwrap_or("-")))?;
            output::line(format!("  filtering:   {}", r.filtering.unwrap_or("-")))?;
            if let Some(e) = r.external {
                output::line(format!("  external:    {e}"))?;
            }
            if let Some(h) = r.hairpinning {
                output::line(format!("  hairpinning: {h}"))?;
            }
            output::line(format!(
                "  took:        {:.1} ms{}",
                r.elapsed_ms,
                r.round_trips
                    .map_or(String::new(), |n| format!(" ({n} round trips)"))
            ))?;
            for s in &r.unreachable {
                output::line(format!("  no answer from {s}"))?;
            }
            if let Some(l) = &r.mapping_lifetime {
                let secs = |x: Option<f64>| x.map_or("?".to_string(), |s| format!("{s} s"));
                output::line(format!(
                    "  idle mapping: alive after {}, gone after {}",
                    secs(l.at_least_s),
                    secs(l.less_than_s)
                ))?;
                for n in &l.notes {
                    output::line(format!("  note: {n}"))?;
                }
            }
            for n in &r.notes {
                output::line(format!("  note: {n}"))?;
            }
        }
    }
    Ok(())
}
