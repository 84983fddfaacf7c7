//! Command-line syntax. Subcommand and flag names are the product's interface: keep them.

use std::net::{IpAddr, SocketAddr};

use clap::{Args, Parser, Subcommand};

/// The default STUN port (RFC 8489 §18.2... IANA: 3478).
pub const STUN_PORT: u16 = 3478;

/// p2pd: direct connections between computers behind NATs.
#[derive(Debug, Parser)]
#[command(name = "p2pd", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr: -v info, -vv debug, -vvv trace (RUST_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a STUN server (RFC 8489); with --alternate, an RFC 5780 NAT behaviour
    /// discovery server on both addresses × PORT and PORT+1.
    StunServer(StunServerArgs),
    /// Ask a STUN server for this host's mapped (external) address.
    Stun(StunArgs),
    /// Classify the NAT in front of this host: type, port allocation, and the facts behind them.
    Nat(NatArgs),
    /// List interfaces, their routes (local addresses and the external address they map
    /// to, via STUN) and, with --nat, the NAT per interface and family.
    Ifs(crate::ifs_cmd::IfsArgs),
    /// Run a TURN relay server (RFC 8656) on UDP and TCP, with long-term credentials.
    TurnServer(crate::turn_cmd::TurnServerArgs),
    /// Port mapping on the local gateway: PCP (RFC 6887), then NAT-PMP (RFC 6886).
    #[command(subcommand)]
    Portmap(crate::portmap_cmd::PortmapCommand),
    /// Run a name server (UDP, port 5300): names for node addresses, signed by their
    /// owners, stored durably.
    NameServer(crate::name_cmd::NameServerArgs),
    /// Register, resolve or delete a name on name servers.
    #[command(subcommand)]
    Name(crate::name_cmd::NameCommand),
    /// Run p2pd's machines in the deterministic network simulator.
    #[command(subcommand)]
    Sim(SimCommand),
    /// Run the local REST API (127.0.0.1:12333 and [::1]:12333) through which other
    /// programs open and use connections.
    Daemon(crate::rest::DaemonArgs),
    /// Start a node, print its address on stderr, accept one connection and copy it
    /// to and from stdin/stdout (like `nc -l`).
    Listen(crate::node_cmd::ListenArgs),
    /// Connect to a node by its address and copy the connection to and from
    /// stdin/stdout (like `nc`); prints the strategy used on stderr.
    Connect(crate::node_cmd::ConnectArgs),
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Classify every one of the 35 NAT configurations (7 types × 5 port allocations).
    Classify(SimClassifyArgs),
    /// Connect every pair of the 23 distinguishable NAT configurations through the real
    /// negotiator and compare each outcome with the oracle.
    Matrix(SimMatrixArgs),
}

#[derive(Debug, Args)]
pub struct SimMatrixArgs {
    /// Packet loss on each NAT's uplink, each way (0.1 = 10 %).
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// The seed (each pair derives its own from it).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print JSON: one object per pair with a, b, connected, strategy, virtual_ms, expected.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SimClassifyArgs {
    /// Packet loss on the host's link, each way (0.2 = 20 %).
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Seeds per configuration; above 1, accuracy per configuration is reported.
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// One-way latency of the host's link in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub latency_ms: u64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct NatArgs {
    /// A STUN server, IP[:PORT]; repeat for more. RFC 5780 servers (two IPs, two ports)
    /// are needed for the filtering tests.
    #[arg(long = "stun", value_parser = parse_host_port)]
    pub stun: Vec<SocketAddr>,
    /// Config file whose `stun` list is used when no --stun is given (default:
    /// $P2PD_HOME/config.toml). `nat` has no built-in servers: a NAT verdict is only as
    /// good as the servers it came from.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Also test whether the NAT hairpins.
    #[arg(long)]
    pub hairpin: bool,
    /// Also measure how long the NAT keeps an idle UDP mapping (RFC 5780 §4.6); takes as
    /// long as --lifetime-max-s.
    #[arg(long)]
    pub lifetime: bool,
    /// The longest idle time the lifetime test tries, in seconds.
    #[arg(long, default_value_t = 120)]
    pub lifetime_max_s: u64,
    /// With no answer from any server by then, UDP counts as blocked (milliseconds).
    #[arg(long, default_value_t = 5000)]
    pub blocked_after_ms: u64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StunServerArgs {
    /// Primary address: IP or IP:PORT (port 3478 by default; 0 picks a free port).
    #[arg(long, value_parser = parse_host_port)]
    pub primary: SocketAddr,
    /// Alternate IP for RFC 5780: the server also listens on it, and on PORT+1 of both.
    #[arg(long)]
    pub alternate: Option<IpAddr>,
    /// Print the listening addresses as one JSON line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StunArgs {
    /// The server: IP or IP:PORT (port 3478 by default).
    #[arg(value_parser = parse_host_port)]
    pub server: SocketAddr,
    /// Local address to send from (default: any address of the server's family, a free port).
    #[arg(long)]
    pub local: Option<SocketAddr>,
    /// Ask the server to answer from its alternate IP (RFC 5780 CHANGE-REQUEST).
    #[arg(long)]
    pub change_ip: bool,
    /// Ask the server to answer from its alternate port (RFC 5780 CHANGE-REQUEST).
    #[arg(long)]
    pub change_port: bool,
    /// Initial retransmission timeout in milliseconds (RFC 8489 default 500).
    #[arg(long, default_value_t = 500)]
    pub rto_ms: u64,
    /// Requests to send before giving up (RFC 8489 default 7).
    #[arg(long, default_value_t = 7)]
    pub tries: u32,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parses `IP`, `IP:PORT` or `[IPv6]:PORT`, defaulting the port to 3478.
pub fn parse_host_port(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let ip = s.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, STUN_PORT))
        .map_err(|_| format!("'{s}' is not IP, IP:PORT or [IPv6]:PORT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(
            parse_host_port("192.0.2.1").unwrap(),
            "192.0.2.1:3478".parse().unwrap()
        );
        assert_eq!(
            parse_host_port("192.0.2.1:9").unwrap(),
            "192.0.2.1:9".parse().unwrap()
        );
        assert_eq!(
            parse_host_port("::1").unwrap(),
            "[::1]:3478".parse().unwrap()
        );
        assert_eq!(
            parse_host_port("[::1]").unwrap(),
            "[::1]:3478".parse().unwrap()
        );
        assert_eq!(
            parse_host_port("[::1]:5").unwrap(),
            "[::1]:5".parse().unwrap()
        );
        assert!(parse_host_port("stun.example").is_err());
        assert!(parse_host_port("1.2.3.4:99999").is_err());
    }
}
