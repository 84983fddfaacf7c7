//! `p2pd listen` and `p2pd connect`: a node, one connection, and stdin/stdout copied to
//! and from it like `nc -l` / `nc`. stdout carries only the peer's bytes; the node
//! address, the strategy used and every message go to stderr.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use p2pd_core::addr::Broker;
use p2pd_core::negotiate::Strategy;
use p2pd_tokio::Tokio;
use p2pd_tokio::TokioConnection;
use p2pd_tokio::interfaces::InterfaceFilter;
use p2pd_tokio::node::{Connection, Node, NodeConfig, NodeError, TurnSpec};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::parse_host_port;
use crate::config;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How long, after both directions ended, delivery of what we wrote may take.
const FINISH_TIMEOUT: Duration = Duration::from_secs(30);
/// stdin chunks read ahead of the connection.
const STDIN_QUEUE: usize = 16;

/// The flags that say how to start a node: shared by `listen`, `connect` and `daemon`.
#[derive(Debug, Args)]
pub struct NodeFlags {
    /// A STUN server, IP[:PORT]; repeat for more. Replaces the config file's list.
    #[arg(long = "stun", value_parser = parse_host_port)]
    pub stun: Vec<SocketAddr>,
    /// An MQTT broker for signaling, HOST[:PORT] (port 1883 by default); repeat for more.
    /// Replaces the config file's list.
    #[arg(long = "mqtt")]
    pub mqtt: Vec<Broker>,
    /// A TURN server for the relay strategy, USER:PASS@HOST:PORT; repeat for more.
    /// Replaces the config file's list.
    #[arg(long = "turn", value_parser = config::parse_turn)]
    pub turn: Vec<TurnSpec>,
    /// The node's home directory (identity key, config.toml). Default: $P2PD_HOME, else
    /// $XDG_CONFIG_HOME/p2pd, else ~/.config/p2pd. Give each node on one machine its own.
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// Config file (default: HOME/config.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Listen port for TCP and UDP on every interface (default: a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Only this interface (by name, loopback allowed); repeat for more.
    #[arg(long = "interface")]
    pub interfaces: Vec<String>,
    /// Map the listen port on the gateway (PCP, then NAT-PMP, then UPnP IGD; at most 2 s
    /// of start-up), advertise it so peers connect directly, renew it, delete it on exit.
    /// Default: on, or the config file's `[portmap] enabled`.
    #[arg(long, value_parser = parse_on_off, value_name = "on|off")]
    pub portmap: Option<bool>,
    /// Port mapping protocols to try, in order, comma-separated: pcp, natpmp, upnp.
    #[arg(long = "portmap-via", value_delimiter = ',', value_parser = config::parse_via)]
    pub portmap_via: Vec<p2pd_core::portmap::client::Via>,
}

/// Flags of the commands that run a node on the terminal (`listen`, `connect`).
#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub flags: NodeFlags,
    /// Print the address and the connection as JSON lines on stderr.
    #[arg(long)]
    pub json: bool,
}

fn parse_on_off(s: &str) -> std::result::Result<bool, String> {
    match s {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("'{s}' is neither on nor off")),
    }
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Register this name for the node's address and keep it registered while the node
    /// runs (again before it expires, and whenever the address changes); repeat for more.
    #[arg(long = "name", value_parser = crate::node_names::parse_name)]
    pub names: Vec<p2pd_core::names::Name>,
    /// A name server for --name, IP[:PORT] (port 5300 by default); repeat for more.
    /// Default: the config file's `names` list.
    #[arg(long = "name-server", value_parser = crate::name_cmd::parse_name_server)]
    pub name_servers: Vec<SocketAddr>,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The peer: its node address (p2pd1:…), as its `p2pd listen` printed it, or a name
    /// it registered (resolved on the name servers).
    pub addr: String,
    /// A name server to resolve a name with, IP[:PORT] (port 5300 by default); repeat
    /// for more. Default: the config file's `names` list.
    #[arg(long = "name-server", value_parser = crate::name_cmd::parse_name_server)]
    pub name_servers: Vec<SocketAddr>,
    /// Strategies to try, comma-separated: direct, reverse, tcp_punch, udp_punch, relay.
    #[arg(long, default_value = "direct,reverse,tcp_punch,udp_punch,relay")]
    pub strategies: String,
    /// Give up connecting after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// The config file the flags name: `--config`, else `--home`'s `config.toml` (optional),
/// else the default path (optional). Returns it and the file it came from, if any.
pub fn load_config(flags: &NodeFlags) -> Result<(config::Config, Option<PathBuf>)> {
    // --home DIR means DIR/config.toml (optional), never another home's file.
    Ok(match (&flags.config, &flags.home) {
        (Some(p), _) => config::load(Some(p))?,
        (None, Some(h)) if h.join("config.toml").exists() => {
            config::load(Some(&h.join("config.toml")))?
        }
        (None, Some(_)) => (config::Config::default(), None),
        (None, None) => config::load(None)?,
    })
}

/// The name servers for a node command: `flags` if any, else the config file's `names`.
pub fn name_servers(args: &NodeFlags, flags: &[SocketAddr]) -> Result<Vec<SocketAddr>> {
    let (file, file_path) = load_config(args)?;
    Ok(config::name_servers(flags, &file, file_path.as_deref())?)
}

/// The node configuration from flags and the config file.
pub fn node_config(args: &NodeFlags) -> Result<NodeConfig> {
    let home = match &args.home {
        Some(h) => h.clone(),
        None => config::default_path()
            .and_then(|p| p.parent().map(PathBuf::from))
            .ok_or("no home directory: give --home DIR or set P2PD_HOME")?,
    };
    let (file, file_path) = load_config(args)?;
    // Brokers first: without one there is no node, and the STUN list (which may name
    // hosts) need not be resolved to say so.
    let mqtt = config::mqtt_brokers(&args.mqtt, &file, file_path.as_deref())?;
    if mqtt.is_empty() {
        return Err(NodeError::NoBrokers.into());
    }
    let turn = config::turn_servers(&args.turn, &file, file_path.as_deref())?;
    let stun = config::stun_servers(&args.stun, &file, file_path.as_deref())?;
    let portmap =
        config::node_portmap(args.portmap, &args.portmap_via, &file, file_path.as_deref())?;
    let mut c = NodeConfig::new(home, stun, mqtt, turn);
    c.port = args.port;
    c.portmap = portmap;
    c.interfaces = InterfaceFilter {
        // Naming an interface is asking for it, loopback included.
        include_loopback: !args.interfaces.is_empty(),
        include_down: false,
        names: args.interfaces.clone(),
    };
    Ok(c)
}

#[derive(Serialize)]
struct Listening<'a> {
    event: &'static str,
    addr: String,
    node_id: String,
    routes: Vec<RouteJson<'a>>,
    /// The gateway's port mapping the address advertises.
    #[serde(skip_serializing_if = "Option::is_none")]
    portmap: Option<PortmapJson>,
}

#[derive(Serialize)]
struct PortmapJson {
    via: &'static str,
    external: SocketAddr,
    lease_s: u64,
}

#[derive(Serialize)]
struct Started {
    event: &'static str,
    addr: String,
}

#[derive(Serialize)]
struct RouteJson<'a> {
    interface: &'a str,
    local: SocketAddr,
    external: std::net::IpAddr,
    nat_type: String,
    delta: String,
}

#[derive(Serialize)]
struct Connected {
    event: &'static str,
    /// From asking the node to connect to the connection being up (connect side only).
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_ms: Option<u128>,
    strategy: &'static str,
    local: SocketAddr,
    remote: SocketAddr,
    peer: String,
}

pub(crate) fn say(text: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{text}");
    let _ = e.flush();
}

fn announce_connection(conn: &Connection<Tokio>, json: bool, took: Option<Duration>) -> Result<()> {
    let i = conn.info();
    if json {
        say(&serde_json::to_string(&Connected {
            event: "connected",
            connect_ms: took.map(|d| d.as_millis()),
            strategy: i.strategy.name(),
            local: i.local,
            remote: i.remote,
            peer: i.peer.node_id().to_string(),
        })?);
    } else {
        say(&format!(
            "connected by {} ({} -> {})",
            i.strategy, i.local, i.remote
        ));
    }
    Ok(())
}

pub async fn listen(args: ListenArgs) -> Result<()> {
    let config = node_config(&args.node.flags)?;
    // Checked before the node starts: a missing server list is a usage error.
    let name_servers = if args.names.is_empty() {
        Vec::new()
    } else {
        let list = name_servers(&args.node.flags, &args.name_servers)?;
        if list.is_empty() {
            return Err(
                "--name needs a name server: pass --name-server IP:PORT or list `names = [\"IP:PORT\"]` in the config file".into(),
            );
        }
        list
    };
    let home = config.home.clone();
    let node = Node::start(&Tokio, config).await?;
    if args.node.json {
        let routes = node
            .routes()
            .iter()
            .map(|r| RouteJson {
                interface: &r.interface,
                local: r.local,
                external: r.route.external,
                nat_type: r.route.nat.to_string(),
                delta: format!("{} {}", r.route.delta.kind, r.route.delta.value),
            })
            .collect();
        say(&serde_json::to_string(&Listening {
            event: "listening",
            addr: node.addr().to_string(),
            node_id: node.addr().node_id().to_string(),
            routes,
            portmap: node.port_mapping().map(|m| PortmapJson {
                via: m.protocol_used.name(),
                external: m.external,
                lease_s: m.lease.as_secs(),
            }),
        })?);
    } else {
        say(&node.addr().to_string());
        if let Some(m) = node.port_mapping() {
            say(&format!(
                "port {} mapped to {} via {}",
                node.routes().first().map_or(0, |r| r.local.port()),
                m.external,
                m.protocol_used.name()
            ));
        }
    }
    let keeper = if args.names.is_empty() {
        None
    } else {
        Some(crate::node_names::keep(
            &node,
            &home,
            args.names,
            &name_servers,
            args.node.json,
        )?)
    };
    // Interrupted before a peer came: still delete the mapping on the way out.
    let accepted = tokio::select! {
        c = node.accept() => Some(c),
        _ = tokio::signal::ctrl_c() => None,
    };
    let Some(conn) = accepted else {
        drop(keeper);
        node.shutdown().await;
        return Err("interrupted".into());
    };
    let conn = conn?;
    announce_connection(&conn, args.node.json, None)?;
    let result = copy(conn).await;
    drop(keeper);
    node.shutdown().await;
    result
}

pub async fn connect(args: ConnectArgs) -> Result<()> {
    let strategies = Strategy::parse_list(&args.strategies)?;
    // A name is resolved before the node starts: an unknown name fails fast.
    let servers = match crate::target::parse(&args.addr)? {
        crate::target::Target::Addr(_) => Vec::new(),
        crate::target::Target::Name(_) => name_servers(&args.node.flags, &args.name_servers)?,
    };
    let asked = std::time::Instant::now();
    let (peer, name) = crate::target::resolve(&args.addr, &servers).await?;
    if let Some(name) = name {
        crate::node_names::announce_resolved(&name, &peer, asked.elapsed(), args.node.json)?;
    }
    let mut config = node_config(&args.node.flags)?;
    config.accept = false;
    config.connect_timeout = Duration::from_secs(args.timeout.max(1));
    let node = Node::start(&Tokio, config).await?;
    if args.node.json {
        say(&serde_json::to_string(&Started {
            event: "started",
            addr: node.addr().to_string(),
        })?);
    }
    let started = std::time::Instant::now();
    let conn = match node.connect(&peer, &strategies).await {
        Ok(c) => c,
        Err(e) => {
            node.shutdown().await;
            return Err(e.into());
        }
    };
    announce_connection(&conn, args.node.json, Some(started.elapsed()))?;
    let result = copy(conn).await;
    node.shutdown().await;
    result
}

/// stdin → connection (then shut down its write half) and connection → stdout, until
/// both ended; then waits until what we wrote was delivered.
async fn copy(conn: Connection<Tokio>) -> Result<()> {
    let (mut from_conn, mut to_conn) = tokio::io::split(TokioConnection::new(conn));
    // stdin is read on a thread of its own: a blocked read must not keep the process
    // from exiting once the connection failed.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(STDIN_QUEUE);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let r = stdin.read(&mut buf).map(|n| buf[..n].to_vec());
            let end = !matches!(&r, Ok(b) if !b.is_empty());
            if tx.blocking_send(r).is_err() || end {
                return;
            }
        }
    });
    let upload = async move {
        while let Some(chunk) = rx.recv().await {
            let chunk = chunk.map_err(|e| format!("reading stdin: {e}"))?;
            if chunk.is_empty() {
                break;
            }
            to_conn
                .write_all(&chunk)
                .await
                .map_err(|e| format!("sending to the peer: {e}"))?;
        }
        to_conn
            .shutdown()
            .await
            .map_err(|e| format!("closing the connection for writing: {e}"))?;
        Ok::<_, String>(to_conn)
    };
    let download = async move {
        let mut stdout = tokio::io::stdout();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from_conn
                .read(&mut buf)
                .await
                .map_err(|e| format!("receiving from the peer: {e}"))?;
            if n == 0 {
                break;
            }
            stdout
                .write_all(&buf[..n])
                .await
                .map_err(|e| format!("writing stdout: {e}"))?;
        }
        stdout
            .flush()
            .await
            .map_err(|e| format!("writing stdout: {e}"))?;
        Ok::<_, String>(from_conn)
    };
    // The first error ends both: a broken connection must not wait for stdin to end.
    let (to_conn, from_conn) = tokio::try_join!(upload, download)?;
    let mut conn = from_conn.unsplit(to_conn);
    match tokio::time::timeout(FINISH_TIMEOUT, conn.finish()).await {
        Ok(r) => r.map_err(|e| format!("delivering the last bytes: {e}"))?,
        Err(_) => {
            return Err(format!(
                "the peer did not acknowledge the last bytes within {FINISH_TIMEOUT:?}"
            )
            .into());
        }
    }
    // Let the last acknowledgements and the relay's release go out before exiting.
    let _ = tokio::time::timeout(FINISH_TIMEOUT, conn.close()).await;
    Ok(())
}
