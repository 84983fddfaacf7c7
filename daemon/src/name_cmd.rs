//! `p2pd name-server` and `p2pd name register|resolve|delete`: names for node addresses
//! (see `p2pd_core::names` for the protocol and its security).
//!
//! Library entry points for the node: [`resolve_name`] (what `connect NAME` and
//! `/p2p/open/{con}/{name}` need) and `p2pd_tokio::names::NameKeeper` (keeping a running
//! node's names registered).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use p2pd_core::addr::NodeAddr;
use p2pd_core::names::rate::RateConfig;
use p2pd_core::names::{
    ClientConfig, Finished, Name, NameServer, Operation, Outcome, Refusal, ServerConfig,
    ServerEvent, SignedWrite, wire::MAX_MESSAGE_LEN,
};
use p2pd_core::rng::Rng;
use p2pd_tokio::Tokio;
use p2pd_tokio::names::{ResolveError, run, unix_ms_now};
use serde::Serialize;

use crate::name_store::RedbStore;
use crate::{config, output};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Parses `IP`, `IP:PORT` or `[IPv6]:PORT`, defaulting the port to 5300.
pub fn parse_name_server(s: &str) -> std::result::Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map(|ip| SocketAddr::new(ip, p2pd_core::names::NAME_PORT))
        .map_err(|_| format!("'{s}' is not IP, IP:PORT or [IPv6]:PORT"))
}

fn parse_name(s: &str) -> std::result::Result<Name, String> {
    Name::parse(s).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct NameServerArgs {
    /// UDP address to listen on.
    #[arg(long, default_value = "0.0.0.0:5300")]
    pub listen: SocketAddr,
    /// The database file (default: names.redb in the p2pd home directory).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// The p2pd home directory (default: $P2PD_HOME, else ~/.config/p2pd).
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// Live names one IPv4 address may hold.
    #[arg(long, default_value_t = 20)]
    pub per_ipv4: u64,
    /// Live names one IPv6 /64 may hold.
    #[arg(long, default_value_t = 5)]
    pub per_ipv6_64: u64,
    /// Requests an address may send in a burst (a write counts 5).
    #[arg(long, default_value_t = 20)]
    pub rate_burst: u32,
    /// Requests per second an address may send after its burst.
    #[arg(long, default_value_t = 2)]
    pub rate_per_s: u32,
    /// Print the listening address (and database) as one JSON line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum NameCommand {
    /// Claim or update NAME for a node address on every server; says which accepted.
    Register(RegisterArgs),
    /// Print the node address NAME points to (its owner's signature checked).
    Resolve(ResolveArgs),
    /// Delete NAME on every server (only its owner can).
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
pub struct ServerFlags {
    /// A name server, IP[:PORT] (port 5300 by default); repeat for more. Default: the
    /// config file's `names` list.
    #[arg(long = "server", value_parser = parse_name_server)]
    pub servers: Vec<SocketAddr>,
    /// Config file (default: config.toml in the p2pd home directory).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The p2pd home directory: the identity key is read from (or created in) it.
    /// Default: $P2PD_HOME, else ~/.config/p2pd.
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The name: 3-63 characters of a-z, 0-9 and '-'.
    #[arg(value_parser = parse_name)]
    pub name: Name,
    /// The node address to point the name at (the node's own: it must carry this
    /// home's key). Default: start this node (the flags below, as `p2pd listen` takes
    /// them) to learn its address. Give --port so that a later `p2pd listen --port` with
    /// the same flags has that address; `p2pd listen --name` keeps it current itself.
    #[arg(long)]
    pub addr: Option<String>,
    /// Without --addr: a STUN server, IP[:PORT]; repeat for more. Replaces the config
    /// file's list.
    #[arg(long = "stun", value_parser = crate::cli::parse_host_port)]
    pub stun: Vec<SocketAddr>,
    /// Without --addr: an MQTT broker for signaling, HOST[:PORT]; repeat for more.
    #[arg(long = "mqtt")]
    pub mqtt: Vec<p2pd_core::addr::Broker>,
    /// Without --addr: a TURN server, USER:PASS@HOST:PORT; repeat for more.
    #[arg(long = "turn", value_parser = config::parse_turn)]
    pub turn: Vec<p2pd_core::negotiate::TurnSpec>,
    /// Without --addr: the node's listen port (default: a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Without --addr: only this interface; repeat for more.
    #[arg(long = "interface")]
    pub interfaces: Vec<String>,
    #[command(flatten)]
    pub flags: ServerFlags,
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// The name.
    #[arg(value_parser = parse_name)]
    pub name: Name,
    #[command(flatten)]
    pub flags: ServerFlags,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The name.
    #[arg(value_parser = parse_name)]
    pub name: Name,
    #[command(flatten)]
    pub flags: ServerFlags,
}

/// Runs `p2pd name …`.
pub async fn run_cmd(cmd: NameCommand) -> Result<()> {
    match cmd {
        NameCommand::Register(a) => {
            // Without --addr this must never fall through to a delete: the node's own.
            let addr = match &a.addr {
                Some(text) => text.clone(),
                None => {
                    let own = crate::node_names::own_address(&crate::node_cmd::NodeArgs {
                        stun: a.stun.clone(),
                        mqtt: a.mqtt.clone(),
                        turn: a.turn.clone(),
                        home: a.flags.home.clone(),
                        config: a.flags.config.clone(),
                        port: a.port,
                        interfaces: a.interfaces.clone(),
                        json: a.flags.json,
                    })
                    .await?;
                    // stdout carries the report; the address goes to stderr.
                    crate::node_cmd::say(&format!("this node's address: {own}"));
                    own.to_string()
                }
            };
            write(a.name, Some(addr), a.flags).await
        }
        NameCommand::Delete(a) => write(a.name, None, a.flags).await,
        NameCommand::Resolve(a) => resolve_cmd(a).await,
    }
}

fn servers(flags: &ServerFlags) -> Result<Vec<SocketAddr>> {
    let explicit = flags.config.clone().or_else(|| {
        let p = config::home_dir(flags.home.as_deref())?.join("config.toml");
        p.exists().then_some(p)
    });
    let (cfg, file) = config::load(explicit.as_deref())?;
    let list = config::name_servers(&flags.servers, &cfg, file.as_deref())?;
    if list.is_empty() {
        return Err(ResolveError::NoServers.into());
    }
    Ok(list)
}

/// The node address `name` points to, asking `servers` (all at once; the first verified
/// record wins). The entry point for `connect NAME` and `/p2p/open/{con}/{name}`.
pub async fn resolve_name(
    name: &Name,
    servers: &[SocketAddr],
) -> std::result::Result<NodeAddr, ResolveError> {
    let mut rng = p2pd_tokio::rng::os_rng()?;
    p2pd_tokio::names::resolve(&Tokio, name, servers, &mut rng).await
}

#[derive(Serialize)]
struct Resolved {
    name: String,
    addr: String,
    node_id: String,
}

async fn resolve_cmd(a: ResolveArgs) -> Result<()> {
    let list = servers(&a.flags)?;
    let addr = resolve_name(&a.name, &list).await?;
    if a.flags.json {
        output::line(serde_json::to_string(&Resolved {
            name: a.name.to_string(),
            addr: addr.to_string(),
            node_id: addr.node_id().to_string(),
        })?)?;
    } else {
        output::line(addr)?;
    }
    Ok(())
}

#[derive(Serialize)]
struct ServerLine {
    server: SocketAddr,
    result: &'static str,
    detail: String,
}

#[derive(Serialize)]
struct WriteOut {
    name: String,
    action: &'static str,
    timestamp_ms: u64,
    accepted: Vec<SocketAddr>,
    servers: Vec<ServerLine>,
}

pub(crate) fn describe(o: &Option<Outcome>) -> (&'static str, String) {
    match o {
        Some(Outcome::Accepted { timestamp_ms }) => {
            ("accepted", format!("stored with timestamp {timestamp_ms}"))
        }
        Some(Outcome::NotFound) => ("not_found", "the server holds no such name".into()),
        Some(Outcome::Refused(r)) => ("refused", r.to_string()),
        Some(Outcome::Invalid(why)) => ("invalid", why.clone()),
        Some(Outcome::Found(_)) => ("invalid", "a read answer to a write".into()),
        Some(Outcome::NoAnswer) | None => {
            ("no_answer", "no answer after 5 tries (about 8 s)".into())
        }
    }
}

/// Registers (`addr: Some`) or deletes (`addr: None`) `name`.
async fn write(name: Name, addr: Option<String>, flags: ServerFlags) -> Result<()> {
    let deleting = addr.is_none();
    let list = servers(&flags)?;
    let home = config::home_dir(flags.home.as_deref())
        .ok_or("no p2pd home directory: pass --home DIR or set P2PD_HOME")?;
    let mut rng = p2pd_tokio::rng::os_rng()?;
    let identity = p2pd_runtime::home::load_or_create_identity(&home, &mut rng)?;
    let node_addr = match &addr {
        Some(text) => {
            let a = NodeAddr::parse(text)?;
            if *a.key() != identity.public() {
                return Err(format!(
                    "the address is node {}'s, but this home ({}) is node {}: a node can only name its own address (use --home of that node)",
                    a.node_id(),
                    home.display(),
                    identity.node_id()
                )
                .into());
            }
            Some(a)
        }
        None => None,
    };
    let sign = |ts| {
        Box::new(SignedWrite::sign(
            &identity,
            name.clone(),
            node_addr.clone(),
            ts,
        ))
    };
    let ts = unix_ms_now();
    let mut result = run(
        &Tokio,
        Operation::Write(sign(ts)),
        &list,
        ClientConfig::default(),
        &mut rng,
    )
    .await?;
    let mut final_ts = ts;
    // Servers that hold a write at least as new (a clock behind, or two writes in one
    // millisecond): write again just above it, once.
    let stale: Vec<(usize, u64)> = result
        .reports
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match r.outcome {
            Some(Outcome::Refused(Refusal::Stale { stored_ms })) => Some((i, stored_ms)),
            _ => None,
        })
        .collect();
    if let Some(max) = stale.iter().map(|(_, s)| *s).max() {
        final_ts = max.saturating_add(1).max(ts);
        let again: Vec<SocketAddr> = stale.iter().map(|(i, _)| list[*i]).collect();
        let second: Finished = run(
            &Tokio,
            Operation::Write(sign(final_ts)),
            &again,
            ClientConfig::default(),
            &mut rng,
        )
        .await?;
        for (k, (i, _)) in stale.iter().enumerate() {
            result.reports[*i] = second.reports[k].clone();
        }
    }
    let accepted = result.accepted();
    let lines: Vec<ServerLine> = result
        .reports
        .iter()
        .map(|r| {
            let (res, detail) = describe(&r.outcome);
            ServerLine {
                server: r.server,
                result: res,
                detail,
            }
        })
        .collect();
    let action = if deleting { "deleted" } else { "registered" };
    let why = lines.first().map(|l| l.detail.clone()).unwrap_or_default();
    if flags.json {
        output::line(serde_json::to_string(&WriteOut {
            name: name.to_string(),
            action,
            timestamp_ms: final_ts,
            accepted: accepted.clone(),
            servers: lines,
        })?)?;
    } else {
        output::line(format!(
            "{name}: {action} on {} of {} servers",
            accepted.len(),
            list.len()
        ))?;
        for l in &lines {
            output::line(format!("  {}  {}: {}", l.server, l.result, l.detail))?;
        }
    }
    if accepted.is_empty() {
        return Err(format!("no name server accepted '{name}': {why}").into());
    }
    Ok(())
}

#[derive(Serialize)]
struct Listening {
    listening: Vec<SocketAddr>,
    db: String,
}

/// Runs `p2pd name-server`.
pub async fn server(args: NameServerArgs) -> Result<()> {
    let db = match &args.db {
        Some(p) => p.clone(),
        None => config::home_dir(args.home.as_deref())
            .ok_or("no p2pd home directory for the database: pass --db PATH or --home DIR")?
            .join("names.redb"),
    };
    let store = RedbStore::open(&db)?;
    let socket = std::net::UdpSocket::bind(args.listen)
        .map_err(|e| format!("cannot listen on UDP {}: {e}", args.listen))?;
    let local = socket.local_addr()?;
    let config = ServerConfig {
        per_ipv4: args.per_ipv4,
        per_ipv6_64: args.per_ipv6_64,
        rate: RateConfig {
            burst: args.rate_burst,
            per_second: args.rate_per_s,
            ..RateConfig::default()
        },
        ..ServerConfig::default()
    };
    if args.json {
        output::line(serde_json::to_string(&Listening {
            listening: vec![local],
            db: db.display().to_string(),
        })?)?;
    } else {
        output::line(format!(
            "name server on udp {local}, database {}",
            db.display()
        ))?;
    }
    let rng = p2pd_tokio::rng::os_rng()?;
    tokio::task::spawn_blocking(move || serve(socket, store, config, rng)).await??;
    Ok(())
}

/// Datagrams handled per batch (and per disk sync) at most.
const BATCH: usize = 64;

/// The server loop: waits for a datagram, takes whatever else has already arrived (up to
/// [`BATCH`]), handles them as one batch with one disk sync (group commit), then sends
/// the answers. Blocking on purpose: the sync must finish before any acknowledgement.
pub(crate) fn serve(
    socket: std::net::UdpSocket,
    mut store: RedbStore,
    config: ServerConfig,
    mut rng: Rng,
) -> Result<()> {
    let local = socket.local_addr()?;
    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut server = NameServer::new(config, local, &mut rng, Instant::now());
    let mut bufs = vec![vec![0u8; MAX_MESSAGE_LEN + 1]; BATCH];
    let mut got: Vec<(SocketAddr, usize)> = Vec::with_capacity(BATCH);
    loop {
        got.clear();
        // The first datagram: wait for it (at most a second, for the sweep).
        match socket.recv_from(&mut bufs[0]) {
            Ok((n, from)) => got.push((from, n)),
            Err(e) if quiet(&e) => {}
            Err(e) => return Err(format!("name server socket {local}: {e}").into()),
        }
        // Whatever else is already waiting, without blocking.
        if !got.is_empty() {
            socket.set_nonblocking(true)?;
            while got.len() < BATCH {
                match socket.recv_from(&mut bufs[got.len()]) {
                    Ok((n, from)) => got.push((from, n)),
                    Err(e) if quiet(&e) => break,
                    Err(e) => return Err(format!("name server socket {local}: {e}").into()),
                }
            }
            socket.set_nonblocking(false)?;
            let batch = got.iter().zip(&bufs).map(|(&(from, n), b)| (from, &b[..n]));
            server.handle_batch(Instant::now(), unix_ms_now(), batch, &mut store);
        }
        while let Some(t) = server.poll_transmit() {
            let _ = socket.send_to(t.contents, t.destination);
        }
        while let Some(e) = server.poll_event() {
            if let ServerEvent::StoreFailed(e) = e {
                eprintln!("p2pd name-server: {e}");
            }
        }
        if server
            .poll_timeout()
            .is_some_and(|t| t.at <= Instant::now())
        {
            match server.sweep(Instant::now(), unix_ms_now(), &mut store, 256) {
                Ok(0) => {}
                Ok(n) => eprintln!("p2pd name-server: {n} expired names removed"),
                Err(e) => eprintln!("p2pd name-server: sweep: {e}"),
            }
        }
    }
}

/// A receive error that only means "nothing now" or concerns one peer.
fn quiet(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    ) || p2pd_tokio::socket_set::is_transient(e)
}
