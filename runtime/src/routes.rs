//! Routes: which external address each interface's local addresses map to.
//!
//! A route is a set of local addresses of one interface plus the external address they
//! map to, learned by STUN from a socket bound to each address (so the request leaves
//! through that interface). Each interface is examined in its own task, concurrently;
//! one failing interface is reported in its own [`InterfaceRoutes`] and does not stop
//! the others. Optionally the NAT in front of each interface is classified per family.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use p2pd_core::nat::{Classification, ClassifierConfig};
use p2pd_core::rng::Rng;
use p2pd_core::stun::TransactionConfig;
use serde::Serialize;

use crate::interfaces::{Family, Interface, is_link_local};
use crate::nat::{NatError, classify};
use crate::net::bind_udp;
use crate::runtime::Runtime;
use crate::stun::{BindingRequest, StunClientError, binding};
use crate::task;

/// Local addresses of one interface that share an external address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    /// The interface.
    pub interface: String,
    /// The address family.
    pub family: Family,
    /// The interface's addresses that map to `external`.
    pub local: Vec<IpAddr>,
    /// The external address a STUN server saw.
    pub external: IpAddr,
    /// The server that reported it (for the first local address).
    pub server: SocketAddr,
}

/// What went wrong for one local address.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// No STUN server of the addresses' family was given, so they were not examined.
    #[error(
        "{}: not examined, no {} STUN server configured", addrs_text(local), family.name()
    )]
    NoServer {
        /// The local addresses left out.
        local: Vec<IpAddr>,
        /// Their family.
        family: Family,
    },
    /// A socket could not be bound to the address.
    #[error("{local}: {source}")]
    Bind {
        /// The local address.
        local: IpAddr,
        /// The OS error, with what to do.
        source: std::io::Error,
    },
    /// Every server failed; each failure names its server (and for silence, how long
    /// it waited).
    #[error("{local}: {}", failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Stun {
        /// The local address.
        local: IpAddr,
        /// One failure per server tried.
        failures: Vec<StunClientError>,
    },
    /// The interface's task ended without a result (it panicked).
    #[error("interface {interface}: route discovery ended without a result")]
    Lost {
        /// The interface.
        interface: String,
    },
}

/// How to look routes up.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// STUN servers, tried in order per local address until one answers.
    pub servers: Vec<SocketAddr>,
    /// Retransmissions per server.
    pub transaction: TransactionConfig,
    /// When set, also classify the NAT per interface and family with these settings
    /// (its server list is replaced by the family's servers from `servers`).
    pub classify: Option<ClassifierConfig>,
}

impl RouteConfig {
    /// Routes via `servers`, 3 requests per server 250 ms apart at first (about 1.75 s
    /// before a silent server is given up), no NAT classification.
    pub fn new(servers: Vec<SocketAddr>) -> Self {
        RouteConfig {
            servers,
            transaction: TransactionConfig {
                rto: Duration::from_millis(250),
                max_sends: 3,
                ..TransactionConfig::default()
            },
            classify: None,
        }
    }

    fn servers_of(&self, family: Family) -> Vec<SocketAddr> {
        self.servers
            .iter()
            .copied()
            .filter(|s| Family::of(s.ip()) == family)
            .collect()
    }
}

/// The NAT in front of one interface for one family.
#[derive(Debug)]
pub struct InterfaceNat {
    /// The family.
    pub family: Family,
    /// The verdict, or why there is none.
    pub result: Result<Classification, NatError>,
}

/// Everything found about one interface.
#[derive(Debug)]
pub struct InterfaceRoutes {
    /// The interface.
    pub interface: Interface,
    /// Its routes, IPv4 first, sorted by external address.
    pub routes: Vec<Route>,
    /// Addresses whose external address could not be learned, and why.
    pub errors: Vec<RouteError>,
    /// NAT classification per family (empty unless asked for).
    pub nat: Vec<InterfaceNat>,
}

/// Finds the routes of every interface, each in its own task on `rt`, concurrently.
/// The result keeps the order of `interfaces`.
pub async fn discover<R: Runtime>(
    rt: &R,
    interfaces: Vec<Interface>,
    config: &RouteConfig,
    rng: &mut Rng,
) -> Vec<InterfaceRoutes> {
    let tasks: Vec<(Interface, task::Task<InterfaceRoutes>)> = interfaces
        .into_iter()
        .map(|i| {
            let (rt2, cfg, rng) = (rt.clone(), config.clone(), rng.fork());
            let iface = i.clone();
            (
                i,
                task::spawn(
                    rt,
                    async move { interface_routes(&rt2, iface, &cfg, rng).await },
                ),
            )
        })
        .collect();
    let mut out = Vec::new();
    for (interface, t) in tasks {
        out.push(match t.join().await {
            Some(r) => r,
            None => InterfaceRoutes {
                errors: vec![RouteError::Lost {
                    interface: interface.name.clone(),
                }],
                interface,
                routes: Vec::new(),
                nat: Vec::new(),
            },
        });
    }
    out
}

/// Finds the routes of one interface: one STUN lookup per (non-link-local) address,
/// from a socket bound to it; addresses with the same external address form one route.
pub async fn interface_routes<R: Runtime>(
    rt: &R,
    interface: Interface,
    config: &RouteConfig,
    mut rng: Rng,
) -> InterfaceRoutes {
    let mut routes: Vec<Route> = Vec::new();
    let mut errors = Vec::new();
    for family in Family::ALL {
        let local: Vec<IpAddr> = interface
            .addrs_of(family)
            .into_iter()
            .filter(|a| !is_link_local(*a))
            .collect();
        if !local.is_empty() && config.servers_of(family).is_empty() {
            errors.push(RouteError::NoServer { local, family });
        }
    }
    for local in interface
        .addrs()
        .filter(|a| !is_link_local(*a) && !config.servers_of(Family::of(*a)).is_empty())
    {
        match external_of(rt, local, config, &mut rng).await {
            Ok((external, server)) => {
                let family = Family::of(local);
                match routes
                    .iter_mut()
                    .find(|r| r.family == family && r.external == external)
                {
                    Some(r) => r.local.push(local),
                    None => routes.push(Route {
                        interface: interface.name.clone(),
                        family,
                        local: vec![local],
                        external,
                        server,
                    }),
                }
            }
            Err(e) => errors.push(e),
        }
    }
    routes.sort_by_key(|r| (r.family, r.external));
    let mut nat = Vec::new();
    if let Some(base) = &config.classify {
        for family in Family::ALL {
            let Some(route) = routes.iter().find(|r| r.family == family) else {
                continue;
            };
            let cfg = ClassifierConfig {
                servers: config.servers_of(family),
                ..base.clone()
            };
            let result = classify(rt, route.local[0], cfg, rng.fork()).await;
            nat.push(InterfaceNat { family, result });
        }
    }
    InterfaceRoutes {
        interface,
        routes,
        errors,
        nat,
    }
}

fn addrs_text(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The external IP of `local` and the server that reported it: servers of its family
/// are tried in turn until one answers.
async fn external_of<R: Runtime>(
    rt: &R,
    local: IpAddr,
    config: &RouteConfig,
    rng: &mut Rng,
) -> Result<(IpAddr, SocketAddr), RouteError> {
    let servers = config.servers_of(Family::of(local));
    let socket = bind_udp(rt, SocketAddr::new(local, 0), false)
        .map_err(|source| RouteError::Bind { local, source })?;
    let mut failures = Vec::new();
    for server in servers {
        let request = BindingRequest {
            config: config.transaction,
            ..BindingRequest::to(server)
        };
        match binding(rt, &socket, &request, rng).await {
            Ok(r) => return Ok((r.mapped.ip(), server)),
            Err(e) => failures.push(e),
        }
    }
    Err(RouteError::Stun { local, failures })
}
