//! `p2pd portmap add|remove|list`: ask the gateway for a port mapping with PCP
//! (RFC 6887), NAT-PMP (RFC 6886) or UPnP IGD — or, for an IPv6 address, a UPnP IPv6
//! pinhole — delete it, and list what this host mapped.
//!
//! `list` reads `portmap.json` in the p2pd home directory, which `add` and `remove`
//! maintain; it shows what this host asked for, not what the gateway still holds.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand, ValueEnum};
use p2pd_core::portmap::client::{Mapping, PortMapEvent, Via};
use p2pd_core::portmap::natpmp::MapProtocol;
use p2pd_core::portmap::upnp::client::Existing;
use p2pd_tokio::Tokio;
use p2pd_tokio::portmap::{DEFAULT_ORDER, MapWanted, PortMapper, default_gateway};
use serde::{Deserialize, Serialize};

use crate::output;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Debug, Subcommand)]
pub enum PortmapCommand {
    /// Map PORT on the gateway; prints the external address, the protocol that worked and
    /// the expiry.
    Add(AddArgs),
    /// Delete the mapping of PORT (lifetime 0, the same PCP nonce).
    Remove(RemoveArgs),
    /// Show the mappings this host made (from the state file in the p2pd home dir).
    List(ListArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Udp,
    Tcp,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ViaArg {
    Pcp,
    Natpmp,
    Upnp,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The local port to map.
    pub port: u16,
    #[arg(long, value_enum, default_value = "udp")]
    pub protocol: Proto,
    /// Requested lease in seconds.
    #[arg(long, default_value_t = 7200)]
    pub lease: u32,
    /// Use only this protocol (default: PCP, then NAT-PMP, then UPnP).
    #[arg(long, value_enum)]
    pub via: Option<ViaArg>,
    /// The gateway (default: the default IPv4 route's gateway).
    #[arg(long)]
    pub gateway: Option<IpAddr>,
    /// The host address to open PORT on (default: the address that routes to the
    /// gateway). An IPv6 address gets a UPnP IPv6 pinhole (WANIPv6FirewallControl).
    #[arg(long)]
    pub local: Option<IpAddr>,
    /// Open an IPv6 pinhole to this host's global IPv6 address (the source of its IPv6
    /// default route) with UPnP, instead of an IPv4 port mapping.
    #[arg(long, conflicts_with = "local")]
    pub ipv6: bool,
    /// Stay running, renew at half the lease (a JSON line per renewal with --json), and
    /// delete the mapping after --for seconds (or never).
    #[arg(long)]
    pub keep: bool,
    /// With --keep: how long to keep the mapping, in seconds.
    #[arg(long = "for")]
    pub keep_for: Option<u64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The local port whose mapping to delete.
    pub port: u16,
    #[arg(long, value_enum, default_value = "udp")]
    pub protocol: Proto,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// One mapping as printed and as kept in `portmap.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub port: u16,
    pub protocol: Proto,
    pub via: String,
    pub gateway: IpAddr,
    pub external: SocketAddr,
    pub lease_s: u64,
    pub expires_unix: u64,
    pub nonce: String,
    /// The host address the mapping points at (IPv6 for a pinhole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<IpAddr>,
    /// A UPnP IPv6 pinhole's `UniqueID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinhole_id: Option<u16>,
}

fn state_path() -> Option<PathBuf> {
    crate::config::default_path().and_then(|p| p.parent().map(|d| d.join("portmap.json")))
}

fn load() -> Vec<Entry> {
    state_path()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

fn save(entries: &[Entry]) -> Result<()> {
    let Some(path) = state_path() else {
        return Ok(());
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, serde_json::to_string_pretty(entries)?)?;
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex12(s: &str) -> Option<[u8; 12]> {
    let mut out = [0u8; 12];
    if s.len() != 24 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn map_proto(p: Proto) -> MapProtocol {
    match p {
        Proto::Udp => MapProtocol::Udp,
        Proto::Tcp => MapProtocol::Tcp,
    }
}

struct Made {
    gateway: IpAddr,
    local: Option<IpAddr>,
    pinhole_id: Option<u16>,
}

fn entry(port: u16, protocol: Proto, made: &Made, m: &Mapping, nonce: &[u8]) -> Entry {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Entry {
        port,
        protocol,
        via: m.protocol_used.name().to_string(),
        gateway: made.gateway,
        external: m.external,
        lease_s: m.lease.as_secs(),
        expires_unix: (now + m.lease).as_secs(),
        nonce: if m.protocol_used == Via::Pcp {
            hex(nonce)
        } else {
            String::new()
        },
        local: made.local,
        pinhole_id: made.pinhole_id,
    }
}

fn print(e: &Entry, json: bool, what: &str) -> Result<()> {
    if json {
        output::line(serde_json::to_string(e)?)?;
    } else {
        output::line(format!(
            "{what} {:?} port {} -> {} via {} (lease {} s, expires at unix {})",
            e.protocol, e.port, e.external, e.via, e.lease_s, e.expires_unix
        ))?;
    }
    Ok(())
}

fn record(e: &Entry) -> Result<()> {
    let mut all = load();
    all.retain(|x| !(x.port == e.port && x.protocol == e.protocol));
    all.push(e.clone());
    save(&all)
}

pub async fn run(cmd: PortmapCommand) -> Result<()> {
    match cmd {
        PortmapCommand::Add(a) => add(a).await,
        PortmapCommand::Remove(r) => remove(r).await,
        PortmapCommand::List(l) => {
            let all = load();
            if l.json {
                output::line(serde_json::to_string_pretty(&all)?)?;
            } else if all.is_empty() {
                output::line("no port mappings made by this host")?;
            } else {
                for e in &all {
                    print(e, false, "mapped")?;
                }
            }
            Ok(())
        }
    }
}

async fn add(a: AddArgs) -> Result<()> {
    let order = match a.via {
        None => DEFAULT_ORDER.to_vec(),
        Some(ViaArg::Pcp) => vec![Via::Pcp],
        Some(ViaArg::Natpmp) => vec![Via::NatPmp],
        Some(ViaArg::Upnp) => vec![Via::Upnp],
    };
    let local = if a.ipv6 {
        Some(global_ipv6()?)
    } else {
        a.local
    };
    if local.is_some_and(|l| l.is_ipv6()) && a.via.is_some_and(|v| !matches!(v, ViaArg::Upnp)) {
        return Err("an IPv6 pinhole needs UPnP: use --via upnp (or leave --via out)".into());
    }
    let gateway = match a.gateway {
        Some(g) => g,
        None => match default_gateway() {
            Ok(g) => IpAddr::V4(g),
            // An IPv6 pinhole only needs the multicast search.
            Err(_) if local.is_some_and(|l| l.is_ipv6()) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            Err(e) => return Err(e.into()),
        },
    };
    let mut rng = p2pd_tokio::rng::os_rng()?;
    let rt = Tokio;
    let mut want = MapWanted::new(gateway, map_proto(a.protocol), a.port, a.lease);
    want.order = order;
    want.local = local;
    let (mut mapper, m) = PortMapper::map(&rt, want, &mut rng).await?;
    let nonce = mapper.nonce();
    let made = Made {
        gateway,
        local,
        pinhole_id: mapper.pinhole_id(),
    };
    let e = entry(a.port, a.protocol, &made, &m, &nonce);
    record(&e)?;
    print(&e, a.json, "mapped")?;
    if !a.keep {
        return Ok(());
    }
    let until = a
        .keep_for
        .map(|s| std::time::Instant::now() + Duration::from_secs(s));
    loop {
        tokio::select! {
            ev = mapper.next_event(&rt, until) => match ev? {
                Some(PortMapEvent::Mapped(m)) => {
                    let made = Made { gateway, local, pinhole_id: mapper.pinhole_id() };
                    let e = entry(a.port, a.protocol, &made, &m, &nonce);
                    record(&e)?;
                    print(&e, a.json, "renewed")?;
                }
                Some(PortMapEvent::Failed(e)) => return Err(e.to_string().into()),
                Some(_) => {}
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let confirmed = mapper.remove(&rt).await?;
    forget(a.port, a.protocol)?;
    output::line(if a.json {
        format!("{{\"removed\":{},\"confirmed\":{confirmed}}}", a.port)
    } else {
        format!("removed port {} (gateway confirmed: {confirmed})", a.port)
    })?;
    Ok(())
}

/// This host's global IPv6 address: the source the kernel picks for the IPv6 default
/// route (a connected UDP socket; nothing is sent).
fn global_ipv6() -> Result<IpAddr> {
    let probe = SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1), 9));
    let s = std::net::UdpSocket::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)))?;
    s.connect(probe)
        .map_err(|e| format!("no IPv6 default route ({e}); pass --local IPV6"))?;
    Ok(s.local_addr()?.ip())
}

fn forget(port: u16, protocol: Proto) -> Result<()> {
    let mut all = load();
    all.retain(|x| !(x.port == port && x.protocol == protocol));
    save(&all)
}

async fn remove(r: RemoveArgs) -> Result<()> {
    let all = load();
    let Some(e) = all
        .iter()
        .find(|x| x.port == r.port && x.protocol == r.protocol)
    else {
        return Err(format!(
            "no mapping of {:?} port {} in the state file; `p2pd portmap list` shows what this host mapped",
            r.protocol, r.port
        )
        .into());
    };
    let via = match e.via.as_str() {
        "pcp" => Via::Pcp,
        "upnp" => Via::Upnp,
        _ => Via::NatPmp,
    };
    let nonce = unhex12(&e.nonce);
    let mut rng = p2pd_tokio::rng::os_rng()?;
    let rt = Tokio;
    // PCP/NAT-PMP: re-assert the mapping with the stored nonce (refresh, RFC 6887
    // §11.2.1), then delete. UPnP: find the gateway again and delete by external port or
    // pinhole id.
    let mut want = MapWanted::new(e.gateway, map_proto(e.protocol), e.port, 1);
    want.order = vec![via];
    want.nonce = nonce;
    want.local = e.local;
    let confirmed = if via == Via::Upnp {
        let existing = match e.pinhole_id {
            Some(id) => Existing::Pinhole { id },
            None => Existing::PortMapping {
                external_port: e.external.port(),
            },
        };
        PortMapper::delete_upnp(&rt, &want, existing)
            .await
            .map_err(|err| format!("cannot delete via UPnP: {err}"))?
    } else {
        match PortMapper::map(&rt, want, &mut rng).await {
            Ok((mapper, _)) => mapper.remove(&rt).await?,
            Err(err) => return Err(format!("cannot reach the gateway to delete: {err}").into()),
        }
    };
    forget(r.port, r.protocol)?;
    if r.json {
        output::line(format!(
            "{{\"removed\":{},\"protocol\":\"{}\",\"confirmed\":{confirmed}}}",
            r.port, e.via
        ))?;
    } else {
        output::line(format!(
            "removed port {} via {} (gateway confirmed: {confirmed})",
            r.port, e.via
        ))?;
    }
    Ok(())
}
