//! The node's listen port on the gateway (issue 9): ask PCP, then NAT-PMP, then UPnP IGD
//! for a finite TCP lease on the listen port, keep it renewed ([`PortMapper::keep`]),
//! advertise the external port in the node address (a [`MappedPort`]) so that peers
//! connect straight in, and delete it when the node shuts down.
//!
//! Start-up must not wait on a gateway that does not answer: the attempt runs alongside
//! route discovery and NAT classification and gives up [`AFTER_ROUTES`] after they
//! finished, and after [`NodePortmap::timeout`] (2 s by default) in any case. PCP and
//! NAT-PMP (tried in that order by one client) run side by side with UPnP IGD, whose
//! SSDP search would otherwise only start once PCP's retries ran out (most home routers
//! speak UPnP only): the first success in the preferred order wins, a later one is
//! deleted. A host whose chosen interfaces do not lead to the default gateway (a
//! loopback-only node, a host without a default route) sends nothing.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use p2pd_core::addr::MappedPort;
use p2pd_core::portmap::client::{PortMapEvent, Via};
use p2pd_core::portmap::natpmp::{MapProtocol, NATPMP_SERVER_PORT};
use p2pd_core::rng::Rng;

use super::start::Listening;
use crate::interfaces;
use crate::net::route_local_ip;
use crate::portmap::{DEFAULT_ORDER, KeptMapping, MapWanted, PortMapper, default_gateway};
use crate::runtime::Runtime;
use crate::timer::until;

/// How much longer than route discovery and NAT classification start-up waits for the
/// gateway (a gateway that answers at all answers on the LAN within milliseconds).
pub const AFTER_ROUTES: Duration = Duration::from_millis(500);

/// Longest wait for the gateway to confirm the deletion at shutdown (PCP and NAT-PMP
/// retry for 3.75 s on a silent gateway).
pub const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether and how a node maps its listen port on the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePortmap {
    /// Ask the gateway at all (on by default).
    pub enabled: bool,
    /// Protocols to try, in order (empty: PCP, then NAT-PMP, then UPnP IGD).
    pub order: Vec<Via>,
    /// The lease asked for, in seconds (finite; renewed at half of what the gateway
    /// grants).
    pub lease: u32,
    /// How long start-up waits for a mapping before going on without one.
    pub timeout: Duration,
    /// The gateway (default: the default IPv4 route's gateway).
    pub gateway: Option<IpAddr>,
}

impl Default for NodePortmap {
    fn default() -> Self {
        NodePortmap {
            enabled: true,
            order: Vec::new(),
            lease: 1200,
            timeout: Duration::from_secs(2),
            gateway: None,
        }
    }
}

/// A mapping asked for before the listen sockets exist, on the port they will use.
pub(crate) struct Pending {
    /// The host address the gateway forwards to.
    pub(crate) local: IpAddr,
    /// The internal (listen) port mapped.
    pub(crate) port: u16,
    /// The mapping, kept renewed.
    pub(crate) kept: KeptMapping,
}

/// Where to map: the gateway and the host address that routes to it, when that address
/// belongs to one of the `chosen` interfaces. `Err` says why not (for logs).
pub(crate) fn target(
    config: &NodePortmap,
    chosen: &[interfaces::Interface],
) -> Result<(IpAddr, IpAddr), String> {
    if !config.enabled {
        return Err("port mapping is off".into());
    }
    let gateway = match config.gateway {
        Some(g) => g,
        None => IpAddr::V4(default_gateway().map_err(|e| e.to_string())?),
    };
    let local = route_local_ip(SocketAddr::new(gateway, NATPMP_SERVER_PORT))
        .map_err(|e| format!("no route to the gateway {gateway}: {e}"))?;
    if !chosen.iter().any(|i| i.addrs().any(|a| a == local)) {
        return Err(format!(
            "the gateway {gateway} is reached from {local}, which is not on an interface this node uses"
        ));
    }
    Ok((gateway, local))
}

/// Maps TCP `port` of `local` on `gateway`: PCP/NAT-PMP and UPnP side by side (see the
/// module docs), giving up when `cutoff` completes or after `config.timeout`.
pub(crate) async fn map<R: Runtime>(
    rt: &R,
    config: &NodePortmap,
    (gateway, local): (IpAddr, IpAddr),
    port: u16,
    rng: &mut Rng,
    cutoff: impl Future<Output = ()>,
) -> Result<Pending, String> {
    let order = if config.order.is_empty() {
        DEFAULT_ORDER.to_vec()
    } else {
        config.order.clone()
    };
    let pmp: Vec<Via> = order.iter().copied().filter(|v| *v != Via::Upnp).collect();
    let upnp = order.contains(&Via::Upnp);
    let upnp_preferred = order.first() == Some(&Via::Upnp);
    let want = |order: Vec<Via>| MapWanted {
        order,
        local: Some(local),
        ..MapWanted::new(gateway, MapProtocol::Tcp, port, config.lease.max(1))
    };
    let mut upnp_rng = rng.fork();
    let pmp_try = async {
        if pmp.is_empty() {
            None
        } else {
            Some(Box::pin(PortMapper::keep(rt, want(pmp.clone()), rng)).await)
        }
    };
    let upnp_try = async {
        if upnp {
            Some(Box::pin(PortMapper::keep(rt, want(vec![Via::Upnp]), &mut upnp_rng)).await)
        } else {
            None
        }
    };
    let stop = futures_lite::future::or(rt.sleep_until(rt.now() + config.timeout), cutoff);
    let (first, second) = if upnp_preferred {
        race(upnp_try, pmp_try, stop).await
    } else {
        race(pmp_try, upnp_try, stop).await
    };
    if first.is_none() && second.is_none() {
        return Err(format!(
            "no mapping from the gateway {gateway} within {:?} ({AFTER_ROUTES:?} after the routes were found at most)",
            config.timeout
        ));
    }
    let mut errors = Vec::new();
    let mut won = None;
    for r in [first, second].into_iter().flatten() {
        match r {
            Ok(kept) if won.is_none() => won = Some(kept),
            // A mapping the preferred protocol made redundant.
            Ok(kept) => {
                let _ = until(rt, rt.now() + REMOVE_TIMEOUT, kept.shutdown()).await;
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    match won {
        Some(kept) => Ok(Pending { local, port, kept }),
        None => Err(format!(
            "the gateway {gateway} mapped nothing: {}",
            errors.join("; ")
        )),
    }
}

/// One mapping attempt's result: `None` when not asked for (or still running).
type Attempt<T> = Option<io::Result<T>>;

/// Runs two mapping attempts, `a` preferred, until decided: `a` succeeded, or `a` ended
/// without success and `b` ended too; or until `stop` completes. Returns what each gave
/// (`None`: not asked for, or still running — then dropped: it mapped nothing yet, or
/// its mapping expires with its finite lease).
async fn race<T>(
    a: impl Future<Output = Attempt<T>>,
    b: impl Future<Output = Attempt<T>>,
    stop: impl Future<Output = ()>,
) -> (Attempt<T>, Attempt<T>) {
    let mut a = pin!(a);
    let mut b = pin!(b);
    let mut stop = pin!(stop);
    let (mut ra, mut rb): (Option<Attempt<T>>, Option<Attempt<T>>) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none()
            && let Poll::Ready(v) = a.as_mut().poll(cx)
        {
            ra = Some(v);
        }
        if rb.is_none()
            && let Poll::Ready(v) = b.as_mut().poll(cx)
        {
            rb = Some(v);
        }
        let a_won = matches!(ra, Some(Some(Ok(_))));
        let a_out = matches!(ra, Some(None | Some(Err(_))));
        if a_won || (a_out && rb.is_some()) || stop.as_mut().poll(cx).is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    (ra.flatten(), rb.flatten())
}

/// Logs the renewals, epoch resets and the loss or removal of a kept mapping, in a task
/// that ends with it.
pub(crate) fn log_events<R: Runtime>(rt: &R, kept: &KeptMapping) {
    let events = kept.events().clone();
    rt.spawn(async move {
        while let Ok(e) = events.recv().await {
            match e {
                PortMapEvent::Mapped(m) => tracing::info!(
                    "port mapping renewed: {} via {} for {} s",
                    m.external,
                    m.protocol_used.name(),
                    m.lease.as_secs()
                ),
                PortMapEvent::EpochReset => {
                    tracing::info!("the gateway restarted: mapping the port again")
                }
                PortMapEvent::Failed(e) => tracing::warn!("port mapping lost: {e}"),
                PortMapEvent::Removed { .. } => return,
            }
        }
    });
}

/// The mapped port to advertise for `pending`: on the route whose internal address is
/// the mapped host address and whose external address (from STUN) is the one the
/// gateway reports. A gateway with another external address sits behind a further NAT,
/// and its mapping cannot be reached from the internet: `Err` says so.
pub(crate) fn advertise<R: Runtime>(
    pending: &Pending,
    listening: &[Listening<R>],
) -> Result<MappedPort, String> {
    let Some(m) = pending.kept.current() else {
        return Err("the mapping ended before the node started".into());
    };
    let Some(l) = listening
        .iter()
        .find(|l| l.route.internal == pending.local && l.local.port() == pending.port)
    else {
        return Err(format!(
            "no listen socket on {}:{} to advertise the mapping for",
            pending.local, pending.port
        ));
    };
    if l.route.external != m.external.ip() {
        return Err(format!(
            "the gateway's external address {} is not the one STUN sees ({}): another NAT is in front of it",
            m.external.ip(),
            l.route.external
        ));
    }
    Ok(MappedPort {
        interface: l.index as u8,
        v6: l.route.internal.is_ipv6(),
        port: m.external.port(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, pending, ready};

    fn ok(v: u32) -> Attempt<u32> {
        Some(Ok(v))
    }

    fn failed() -> Attempt<u32> {
        Some(Err(io::Error::other("refused")))
    }

    fn never() -> impl Future<Output = Attempt<u32>> {
        pending()
    }

    fn ok_of(r: &Attempt<u32>) -> Option<u32> {
        r.as_ref().and_then(|r| r.as_ref().ok()).copied()
    }

    #[test]
    fn the_preferred_success_wins_without_waiting_for_the_other() {
        let (a, b) = block_on(race(ready(ok(1)), never(), pending()));
        assert_eq!((ok_of(&a), b.is_none()), (Some(1), true));
    }

    #[test]
    fn the_other_success_waits_for_the_preferred_one_to_end() {
        // Preferred still running: undecided until the stop.
        let (a, b) = block_on(race(never(), ready(ok(2)), ready(())));
        assert!(a.is_none());
        assert_eq!(ok_of(&b), Some(2), "what the other made is kept");
        // Preferred failed: the other wins.
        let (a, b) = block_on(race(ready(failed()), ready(ok(2)), pending()));
        assert!(matches!(a, Some(Err(_))));
        assert_eq!(ok_of(&b), Some(2));
        // Preferred not asked for.
        let (a, b) = block_on(race(ready(None), ready(ok(3)), pending()));
        assert!(a.is_none());
        assert_eq!(ok_of(&b), Some(3));
        // Both succeed: both are returned, the caller keeps the preferred one.
        let (a, b) = block_on(race(ready(ok(1)), ready(ok(2)), pending()));
        assert_eq!((ok_of(&a), ok_of(&b)), (Some(1), Some(2)));
    }

    #[test]
    fn nothing_answering_ends_at_the_stop() {
        let (a, b) = block_on(race(never(), never(), ready(())));
        assert!(a.is_none() && b.is_none());
        let (a, b) = block_on(race(ready(failed()), ready(failed()), pending()));
        assert!(a.is_some() && b.is_some());
    }
}
