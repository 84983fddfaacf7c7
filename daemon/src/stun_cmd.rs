//! `p2pd stun-server` and `p2pd stun`.

use std::net::SocketAddr;
use std::time::Duration;

use p2pd_core::stun::{ChangeRequest, ResponseSource, ServerConfig, TransactionConfig};
use p2pd_tokio::Tokio;
use p2pd_tokio::net::{any_local_for, bind_udp};
use p2pd_tokio::stun::{BindingRequest, BindingResponse, BoundStunServer, binding};
use serde::Serialize;

use crate::cli::{StunArgs, StunServerArgs};
use crate::output;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub async fn server(args: StunServerArgs) -> Result<()> {
    let primary = args.primary;
    let alternate = match args.alternate {
        Some(ip) if ip.is_ipv4() != primary.is_ipv4() => {
            return Err(format!(
                "--alternate {ip} must be of the same address family as --primary {primary}"
            )
            .into());
        }
        // Port 0 asks for a free pair; bind() then assigns P and P+1.
        Some(ip) if primary.port() == 0 => Some(SocketAddr::new(ip, 0)),
        Some(ip) => {
            let port = primary.port().checked_add(1).ok_or_else(|| {
                format!(
                    "--primary port {} leaves no room for the alternate port PORT+1",
                    primary.port()
                )
            })?;
            Some(SocketAddr::new(ip, port))
        }
        None => None,
    };
    let bound = BoundStunServer::bind(
        &Tokio,
        ServerConfig {
            primary,
            alternate,
            software: Some(concat!("p2pd ", env!("CARGO_PKG_VERSION")).into()),
        },
    )?;
    let addrs = bound.local_addresses();
    if args.json {
        #[derive(Serialize)]
        struct Listening {
            listening: Vec<SocketAddr>,
            rfc5780: bool,
        }
        output::line(serde_json::to_string(&Listening {
            listening: addrs.clone(),
            rfc5780: addrs.len() == 4,
        })?)?;
    } else {
        for a in &addrs {
            output::line(format!("listening on udp {a}"))?;
        }
    }
    tokio::select! {
        r = bound.run() => Err(format!("STUN server stopped: {}", r.err().map_or_else(|| "no error".into(), |e| e.to_string())).into()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// What `p2pd stun --json` prints.
#[derive(Debug, Serialize)]
struct StunOutput {
    server: SocketAddr,
    local: SocketAddr,
    mapped: SocketAddr,
    response_from: SocketAddr,
    response_origin: Option<SocketAddr>,
    other_address: Option<SocketAddr>,
    rtt_ms: Option<f64>,
    sends: u32,
}

pub async fn client(args: StunArgs) -> Result<()> {
    let server = args.server;
    let local = args.local.unwrap_or_else(|| any_local_for(server));
    let socket = bind_udp(&Tokio, local, false)?;
    let change = ChangeRequest {
        change_ip: args.change_ip,
        change_port: args.change_port,
    };
    let expect_from = if change.change_ip || change.change_port {
        // The alternate address is only known from a first exchange: ask plainly first.
        let mut rng = p2pd_tokio::rng::os_rng()?;
        let first = binding(
            &Tokio,
            &socket,
            &request(
                &args,
                server,
                ChangeRequest::default(),
                ResponseSource::Destination,
            ),
            &mut rng,
        )
        .await?;
        let other = first.other_address.ok_or_else(|| {
            format!("{server} gave no OTHER-ADDRESS: it is not an RFC 5780 server, so --change-ip/--change-port cannot work")
        })?;
        let ip = if change.change_ip {
            other.ip()
        } else {
            server.ip()
        };
        let port = if change.change_port {
            other.port()
        } else {
            server.port()
        };
        ResponseSource::Exact(SocketAddr::new(ip, port))
    } else {
        ResponseSource::Destination
    };
    let mut rng = p2pd_tokio::rng::os_rng()?;
    let r = binding(
        &Tokio,
        &socket,
        &request(&args, server, change, expect_from),
        &mut rng,
    )
    .await?;
    print(&args, server, &r)
}

fn request(
    args: &StunArgs,
    server: SocketAddr,
    change: ChangeRequest,
    expect_from: ResponseSource,
) -> BindingRequest {
    BindingRequest {
        server,
        change,
        expect_from,
        config: TransactionConfig {
            rto: Duration::from_millis(args.rto_ms.max(1)),
            max_sends: args.tries.max(1),
            ..TransactionConfig::default()
        },
    }
}

fn print(args: &StunArgs, server: SocketAddr, r: &BindingResponse) -> Result<()> {
    if args.json {
        let out = StunOutput {
            server,
            local: r.local,
            mapped: r.mapped,
            response_from: r.source,
            response_origin: r.response_origin,
            other_address: r.other_address,
            rtt_ms: r.rtt.map(|d| d.as_secs_f64() * 1e3),
            sends: r.sends,
        };
        output::line(serde_json::to_string(&out)?)?;
    } else {
        output::line(format!("mapped address: {}", r.mapped))?;
        if let Some(o) = r.other_address {
            output::line(format!("other address:  {o}"))?;
        }
        if r.source != server {
            output::line(format!("answered from:  {}", r.source))?;
        }
    }
    Ok(())
}
