//! `p2pd ifs`: the host's interfaces, the routes each one has to the internet (local
//! addresses and the external address they map to), and optionally the NAT per
//! interface and family.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use p2pd_core::nat::ClassifierConfig;
use p2pd_core::stun::TransactionConfig;
use p2pd_tokio::Tokio;
use p2pd_tokio::interfaces::{self, Interface, InterfaceFilter};
use p2pd_tokio::routes::{InterfaceRoutes, Route, RouteConfig, discover};
use serde::Serialize;

use crate::cli::parse_host_port;
use crate::config;
use crate::nat_cmd::NatReport;
use crate::output;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Debug, Args)]
pub struct IfsArgs {
    /// A STUN server, IP[:PORT]; repeat for more. Replaces the config file's list.
    #[arg(long = "stun", value_parser = parse_host_port)]
    pub stun: Vec<SocketAddr>,
    /// Config file (default: $P2PD_HOME/config.toml; P2PD_HOME defaults to
    /// $XDG_CONFIG_HOME/p2pd, else ~/.config/p2pd).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Only this interface (by name); repeat for more.
    #[arg(long = "interface")]
    pub interfaces: Vec<String>,
    /// Also use loopback interfaces and interfaces that are down.
    #[arg(long)]
    pub all: bool,
    /// Also classify the NAT per interface and family (RFC 5780 servers give a full verdict).
    #[arg(long)]
    pub nat: bool,
    /// Initial retransmission timeout per STUN server, in milliseconds.
    #[arg(long, default_value_t = 250)]
    pub rto_ms: u64,
    /// Requests per STUN server before trying the next.
    #[arg(long, default_value_t = 3)]
    pub tries: u32,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
struct IfsReport {
    servers: Vec<SocketAddr>,
    config: Option<PathBuf>,
    interfaces: Vec<InterfaceReport>,
}

#[derive(Debug, Serialize)]
pub(crate) struct InterfaceReport {
    #[serde(flatten)]
    interface: Interface,
    routes: Vec<Route>,
    errors: Vec<String>,
    nat: Vec<NatEntry>,
}

#[derive(Debug, Serialize)]
struct NatEntry {
    family: &'static str,
    result: Option<NatReport>,
    error: Option<String>,
}

impl InterfaceReport {
    pub(crate) fn new(r: InterfaceRoutes) -> Self {
        InterfaceReport {
            interface: r.interface,
            routes: r.routes,
            errors: r.errors.iter().map(ToString::to_string).collect(),
            nat: r
                .nat
                .iter()
                .map(|n| NatEntry {
                    family: n.family.name(),
                    result: n.result.as_ref().ok().map(NatReport::new),
                    error: n.result.as_ref().err().map(ToString::to_string),
                })
                .collect(),
        }
    }
}

pub async fn run(args: IfsArgs) -> Result<()> {
    let (file_config, file) = config::load(args.config.as_deref())?;
    let servers = config::stun_servers(&args.stun, &file_config, file.as_deref())?;
    let filter = InterfaceFilter {
        include_down: args.all,
        include_loopback: args.all,
        names: args.interfaces.clone(),
    };
    let chosen = interfaces::select(interfaces::list()?, &filter)?;
    let config = RouteConfig {
        transaction: TransactionConfig {
            rto: Duration::from_millis(args.rto_ms.max(1)),
            max_sends: args.tries.max(1),
            ..TransactionConfig::default()
        },
        classify: args.nat.then(ClassifierConfig::default),
        ..RouteConfig::new(servers.clone())
    };
    let mut rng = p2pd_tokio::rng::os_rng()?;
    let found = discover(&Tokio, chosen, &config, &mut rng).await;
    let report = IfsReport {
        servers,
        config: file,
        interfaces: found.into_iter().map(InterfaceReport::new).collect(),
    };
    if args.json {
        output::line(serde_json::to_string_pretty(&report)?)?;
    } else {
        print_text(&report)?;
    }
    if report.interfaces.iter().all(|i| i.routes.is_empty()) {
        let why: Vec<&str> = report
            .interfaces
            .iter()
            .flat_map(|i| i.errors.iter().map(String::as_str))
            .collect();
        return Err(format!("no route on any interface: {}", why.join("; ")).into());
    }
    Ok(())
}

fn addrs_text(ips: impl Iterator<Item = IpAddr>) -> String {
    let v: Vec<String> = ips.map(|a| a.to_string()).collect();
    if v.is_empty() {
        "no address".into()
    } else {
        v.join(", ")
    }
}

fn print_text(report: &IfsReport) -> Result<()> {
    for i in &report.interfaces {
        let iface = &i.interface;
        let mut state = vec![if iface.up { "up" } else { "down" }];
        if iface.loopback {
            state.push("loopback");
        }
        for f in &iface.default_for {
            state.push(match f {
                interfaces::Family::Ipv4 => "default ipv4",
                interfaces::Family::Ipv6 => "default ipv6",
            });
        }
        output::line(format!(
            "{} ({}): {}",
            iface.name,
            state.join(", "),
            addrs_text(iface.addrs())
        ))?;
        for r in &i.routes {
            output::line(format!(
                "  route {}: {} -> {} (via {})",
                r.family.name(),
                addrs_text(r.local.iter().copied()),
                r.external,
                r.server
            ))?;
        }
        for n in &i.nat {
            match (&n.result, &n.error) {
                (Some(r), _) => output::line(format!(
                    "  nat {}: {}, delta {}",
                    n.family,
                    r.nat_type.unwrap_or("uncertain"),
                    r.delta
                        .as_ref()
                        .map_or("uncertain".to_string(), |d| format!(
                            "{} {}",
                            d.kind, d.value
                        ))
                ))?,
                (None, Some(e)) => output::line(format!("  nat {}: {e}", n.family))?,
                (None, None) => {}
            }
        }
        for e in &i.errors {
            output::line(format!("  error: {e}"))?;
        }
    }
    Ok(())
}
