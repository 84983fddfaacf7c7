//! `p2pd nat`: classify the NAT in front of this host, per address family.

use std::net::SocketAddr;
use std::time::Duration;

use p2pd_core::nat::{Classification, ClassifierConfig};
use p2pd_tokio::Tokio;
use p2pd_tokio::nat::classify;
use p2pd_tokio::net::route_local_ip;
use serde::Serialize;

use crate::cli::NatArgs;
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
        }
    }
}

pub async fn run(args: NatArgs) -> Result<()> {
    if args.stun.is_empty() {
        return Err("no STUN servers: pass one or more --stun IP[:PORT] (RFC 5780 servers give a full verdict)".into());
    }
    let mut reports = Vec::new();
    for v4 in [true, false] {
        let servers: Vec<SocketAddr> = args
            .stun
            .iter()
            .copied()
            .filter(|s| s.is_ipv4() == v4)
            .collect();
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
        reports.push(NatReport::new(&c));
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
            for n in &r.notes {
                output::line(format!("  note: {n}"))?;
            }
        }
    }
    Ok(())
}
