//! `p2pd daemon`: the local REST API through which other programs use the node.
//!
//! Modules: [`server`] accepts connections and runs each request through [`http`]
//! (framing and limits), [`security`] (Host, Origin, token) and [`routes`] (endpoints);
//! [`table`] holds the named connections, [`relay`] turns an HTTP connection into a pipe,
//! [`node`] is what the REST layer needs from the p2p node ([`adapt`] bridges p2pd's
//! runtime-agnostic streams to it), [`ifs`] the interface
//! discovery behind `/ifs`, [`errors`] the error codes.

#[cfg_attr(
    not(test),
    allow(
        dead_code,
        reason = "the node (issue 7) will wrap its streams with it; the tests do today"
    )
)]
pub mod adapt;
pub mod errors;
pub mod http;
pub mod ifs;
pub mod node;
pub mod relay;
pub mod routes;
pub mod security;
pub mod server;
pub mod table;
pub mod target;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::cli::parse_host_port;
use crate::{config, output};
use node::{NodeSlot, NodeState};

/// The REST API's default port (P2PD's).
pub const DEFAULT_PORT: u16 = 12333;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Listen on this loopback IP:PORT (port 0 picks a free one); repeat for more.
    /// Default: 127.0.0.1:12333 and [::1]:12333 (the latter only if IPv6 is available).
    #[arg(long = "listen", value_parser = parse_listen)]
    pub listen: Vec<SocketAddr>,
    /// Config file (default: $P2PD_HOME/config.toml): `stun` servers for /ifs and the
    /// `[rest] token` every request must then carry as `Authorization: Bearer TOKEN`;
    /// its `names` servers resolve names in `/p2p/open/{con}/{name}`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A STUN server for /ifs, IP[:PORT]; repeat for more. Replaces the config file's list.
    #[arg(long = "stun", value_parser = parse_host_port)]
    pub stun: Vec<SocketAddr>,
    /// Do not discover routes and NATs at start-up (/ifs then reports state "off").
    #[arg(long)]
    pub no_discovery: bool,
    /// Seconds a client has to send a request head (and, separately, its body).
    #[arg(long, default_value_t = 10.0)]
    pub request_timeout_s: f64,
    /// Print the listening addresses as one JSON line.
    #[arg(long)]
    pub json: bool,
}

/// `IP:PORT` or `[IPv6]:PORT`, on a loopback address: the API has no TLS and is meant for
/// programs on this machine.
fn parse_listen(s: &str) -> std::result::Result<SocketAddr, String> {
    let a: SocketAddr = s
        .parse()
        .map_err(|_| format!("'{s}' is not IP:PORT or [IPv6]:PORT"))?;
    if !a.ip().to_canonical().is_loopback() {
        return Err(format!(
            "{a} is not a loopback address: the REST API has no encryption and answers only local programs; listen on 127.0.0.1 or [::1]"
        ));
    }
    Ok(a)
}

/// What every request handler shares.
pub struct State {
    /// The named connections.
    pub table: Arc<table::Table>,
    /// The node (starting, running or failed).
    pub node: NodeSlot,
    /// Interfaces, routes and NATs for `/ifs`.
    pub ifs: ifs::IfsCache,
    /// Host/Origin/token settings.
    pub security: security::Security,
    /// Size and time limits.
    pub limits: http::Limits,
    /// Name servers for `/p2p/open/{con}/{name}` (the config file's `names` list).
    pub name_servers: Vec<SocketAddr>,
}

/// Starts the node in the background and records the outcome in `slot`.
///
/// The p2p node (issue 7) is not part of this build yet, so the slot records that, and
/// `/p2p/addr`, `/p2p/open` and `/p2p/accept` answer `node_unavailable` saying so. To plug
/// the node in: start it here and `slot.set(NodeState::Running(Arc::new(node)))` (on
/// failure `NodeState::Failed(reason)`); the node implements [`node::Node`].
fn start_node(slot: &NodeSlot) {
    slot.set(NodeState::Failed(
        "this build of p2pd has no p2p node yet (the connection negotiator, issue 7): /p2p/open, /p2p/addr and /p2p/accept need it".into(),
    ));
}

/// Puts connections the node accepts into the table (named `in-1`, `in-2`, …).
async fn take_incoming(slot: NodeSlot, table: Arc<table::Table>) {
    let Some(node) = slot.running().await else {
        return;
    };
    while let Some(pipe) = node.accept().await {
        let peer = pipe.info.peer.clone();
        match table.insert_incoming(pipe) {
            Some(name) => tracing::info!(%name, %peer, "incoming connection"),
            None => tracing::warn!(
                %peer,
                "incoming connection refused: the connection table is full ({} connections)",
                table::MAX_CONS
            ),
        }
    }
    tracing::info!("the node stopped accepting connections");
}

/// Binds the listeners: the ones asked for (all must work), or the defaults (IPv6 only
/// if the host has it).
async fn bind(asked: &[SocketAddr]) -> Result<Vec<tokio::net::TcpListener>> {
    let mut out = Vec::new();
    if asked.is_empty() {
        let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT);
        let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), DEFAULT_PORT);
        out.push(tokio::net::TcpListener::bind(v4).await.map_err(|e| {
            format!("cannot listen on {v4}: {e} (is another p2pd daemon running? use --listen to pick another port)")
        })?);
        match tokio::net::TcpListener::bind(v6).await {
            Ok(l) => out.push(l),
            Err(e) => tracing::warn!("not listening on {v6}: {e}"),
        }
    } else {
        for a in asked {
            out.push(
                tokio::net::TcpListener::bind(a)
                    .await
                    .map_err(|e| format!("cannot listen on {a}: {e}"))?,
            );
        }
    }
    Ok(out)
}

/// Runs the daemon until Ctrl-C or SIGTERM.
pub async fn run(args: DaemonArgs) -> Result<()> {
    let (file_config, file) = config::load(args.config.as_deref())?;
    let token = file_config.rest.as_ref().and_then(|r| r.token.clone());
    if let Some(t) = &token {
        security::check_token(t).map_err(|why| {
            let at = file
                .as_ref()
                .map_or(String::new(), |f| format!(" in {}", f.display()));
            format!("{why}{at}")
        })?;
    }
    if !(args.request_timeout_s.is_finite()
        && args.request_timeout_s > 0.0
        && args.request_timeout_s <= 3600.0)
    {
        return Err(
            "--request-timeout-s must be a number of seconds above 0 and at most 3600".into(),
        );
    }
    let listeners = bind(&args.listen).await?;
    let ifs = if args.no_discovery {
        ifs::IfsCache::off()
    } else {
        let flags = args.stun.clone();
        let file = file.clone();
        let file_stun = file_config.stun.clone();
        ifs::IfsCache::discover(move || {
            let cfg = config::Config {
                stun: file_stun,
                ..config::Config::default()
            };
            config::stun_servers(&flags, &cfg, file.as_deref()).map_err(|e| e.to_string())
        })
    };
    let timeout = Duration::from_secs_f64(args.request_timeout_s);
    let name_servers = config::name_servers(&[], &file_config, file.as_deref())?;
    let state = Arc::new(State {
        table: Arc::new(table::Table::default()),
        node: NodeSlot::starting(),
        ifs,
        security: security::Security { token },
        limits: http::Limits {
            head_timeout: timeout,
            body_timeout: timeout,
            ..http::Limits::default()
        },
        name_servers,
    });
    start_node(&state.node);
    tokio::spawn(take_incoming(state.node.clone(), state.table.clone()));
    let addrs: Vec<String> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    if args.json {
        output::line(serde_json::json!({ "listening": addrs }))?;
    } else {
        let urls: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
        output::line(format!(
            "p2pd daemon: REST API on {} (GET /openapi.json describes it; Ctrl-C stops)",
            urls.join(" and ")
        ))?;
    }
    tracing::info!(
        ?addrs,
        token = state.security.token.is_some(),
        "REST API listening"
    );
    tokio::select! {
        _ = server::serve(listeners, state) => {}
        _ = shutdown_signal() => tracing::info!("stopping"),
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
