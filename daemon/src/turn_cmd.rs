//! `p2pd turn-server`: a TURN relay (RFC 8656) on UDP and TCP with long-term credentials.

use std::net::{IpAddr, SocketAddr};

use clap::Args;
use p2pd_core::turn::TurnServerConfig;
use p2pd_tokio::Tokio;
use p2pd_tokio::turn_server::BoundTurnServer;
use serde::Serialize;

use crate::cli::parse_host_port;
use crate::output;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Debug, Args)]
pub struct TurnServerArgs {
    /// Address for UDP and TCP: IP or IP:PORT (port 3478 by default; 0 picks a free port).
    #[arg(long, value_parser = parse_host_port)]
    pub listen: SocketAddr,
    /// The long-term credential realm clients authenticate in.
    #[arg(long)]
    pub realm: String,
    /// A user allowed to allocate, NAME:PASS; repeat for more.
    #[arg(long = "user", value_parser = parse_user, required = true)]
    pub users: Vec<(String, String)>,
    /// The IP peers reach relayed addresses at (default: the --listen IP). Needed when
    /// listening on 0.0.0.0 or ::, or behind a 1:1 NAT.
    #[arg(long)]
    pub relay_ip: Option<IpAddr>,
    /// Relay port range, LOW-HIGH.
    #[arg(long, value_parser = parse_range, default_value = "49152-65535")]
    pub relay_ports: (u16, u16),
    /// Allocations one user may hold at once.
    #[arg(long, default_value_t = 16)]
    pub user_quota: usize,
    /// Print the listening address as one JSON line.
    #[arg(long)]
    pub json: bool,
}

fn parse_user(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once(':') {
        Some((name, pass)) if !name.is_empty() => Ok((name.to_owned(), pass.to_owned())),
        _ => Err(format!("'{s}' is not NAME:PASS")),
    }
}

fn parse_range(s: &str) -> std::result::Result<(u16, u16), String> {
    let bad = || format!("'{s}' is not a port range LOW-HIGH, like 49152-65535");
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

pub async fn server(args: TurnServerArgs) -> Result<()> {
    let relay_ip = match args.relay_ip {
        Some(ip) => ip,
        None if args.listen.ip().is_unspecified() => {
            return Err(format!(
                "--listen {} is unspecified: give --relay-ip, the address peers reach this host at",
                args.listen
            )
            .into());
        }
        None => args.listen.ip(),
    };
    let mut config = TurnServerConfig::new(args.listen, &args.realm, args.users);
    config.relay_ip = relay_ip;
    config.relay_ports = args.relay_ports;
    config.limits.allocations_per_user = args.user_quota;
    config.software = Some(concat!("p2pd ", env!("CARGO_PKG_VERSION")).into());
    let rng = p2pd_tokio::rng::os_rng()?;
    let bound = BoundTurnServer::bind(&Tokio, config, rng)?;
    let addr = bound.local_address();
    if args.json {
        #[derive(Serialize)]
        struct Listening {
            listening: SocketAddr,
            transports: [&'static str; 2],
            relay_ip: IpAddr,
            realm: String,
        }
        output::line(serde_json::to_string(&Listening {
            listening: addr,
            transports: ["udp", "tcp"],
            relay_ip,
            realm: args.realm,
        })?)?;
    } else {
        output::line(format!("listening on udp {addr}"))?;
        output::line(format!("listening on tcp {addr}"))?;
        output::line(format!("relaying on {relay_ip}"))?;
    }
    tokio::select! {
        r = bound.run() => Err(format!("TURN server stopped: {}", r.err().map_or_else(|| "no error".into(), |e| e.to_string())).into()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_range_syntax() {
        assert_eq!(parse_user("a:b:c").unwrap(), ("a".into(), "b:c".into()));
        assert!(parse_user(":x").is_err() && parse_user("nobody").is_err());
        assert_eq!(parse_range("5000-5010").unwrap(), (5000, 5010));
        assert!(parse_range("10-5").is_err() && parse_range("0-5").is_err());
        assert!(parse_range("x").is_err());
    }
}
