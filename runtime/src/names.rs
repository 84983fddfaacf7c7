//! Names on any [`Runtime`]: one operation against name servers ([`run`], [`resolve`]),
//! and a [`NameKeeper`] that keeps a node's names registered (the sans-IO
//! [`Registrar`] over UDP sockets).
//!
//! One UDP socket is bound per address family the servers need (unspecified address,
//! free port). The wall clock (`SystemTime`) is read here, never in core.

use std::io;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use p2pd_core::Machine;
use p2pd_core::addr::NodeAddr;
use p2pd_core::identity::Identity;
use p2pd_core::names::wire::MAX_MESSAGE_LEN;
use p2pd_core::names::{
    ClientConfig, Finished, Name, NameClient, Operation, Outcome, Registrar, RegistrarConfig,
    RegistrarEvent, Target,
};
use p2pd_core::rng::Rng;

use crate::net::{any_local_for, bind_udp};
use crate::socket_set::SocketSet;
use crate::timer::until;
use crate::{AsyncUdpSocket, Runtime};

/// Milliseconds since the Unix epoch, by this host's clock.
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis().min(u128::from(u64::MAX)) as u64)
        .unwrap_or(0)
}

/// Why a name could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No server holds the name.
    #[error(
        "no name server knows '{name}' (asked {asked}); check the spelling, or whether its owner registered it on these servers"
    )]
    NotFound {
        /// The name.
        name: String,
        /// The servers asked.
        asked: String,
    },
    /// No server answered at all.
    #[error(
        "no name server answered ({asked}); check the addresses (--server IP:PORT) and that `p2pd name-server` runs there"
    )]
    NoAnswer {
        /// The servers asked.
        asked: String,
    },
    /// Every server that answered refused the lookup (rate limit, malformed), so
    /// whether the name exists is unknown.
    #[error("the name servers refused to look up '{name}' ({why}; asked {asked})")]
    Refused {
        /// The name.
        name: String,
        /// The first refusal's reason.
        why: String,
        /// The servers asked.
        asked: String,
    },
    /// No servers were given.
    #[error(
        "no name server given: pass --server IP:PORT or list `names = [\"IP:PORT\"]` in the config file"
    )]
    NoServers,
    /// Sockets failed.
    #[error("name lookup: {0}")]
    Io(#[from] io::Error),
}

/// Binds one socket per family `servers` need and returns the set and the targets.
fn sockets<R: Runtime>(
    rt: &R,
    servers: &[SocketAddr],
) -> io::Result<(SocketSet<R::UdpSocket>, Vec<Target>)> {
    let mut bound: Vec<(SocketAddr, R::UdpSocket)> = Vec::new();
    let mut targets = Vec::new();
    for &server in servers {
        let family_v4 = server.is_ipv4();
        let local = match bound.iter().find(|(a, _)| a.is_ipv4() == family_v4) {
            Some((a, _)) => *a,
            None => {
                let socket = bind_udp(rt, any_local_for(server), false)?;
                let a = socket.local_addr()?;
                bound.push((a, socket));
                a
            }
        };
        targets.push(Target { server, local });
    }
    Ok((
        SocketSet::with_max_datagram(bound, MAX_MESSAGE_LEN),
        targets,
    ))
}

/// Drives `machine` over `set` until it reports or `deadline` passes (`None`).
async fn drive<R: Runtime, M: Machine>(
    rt: &R,
    set: &mut SocketSet<R::UdpSocket>,
    machine: &mut M,
    deadline: Option<Instant>,
) -> io::Result<Option<M::Event>> {
    loop {
        machine.handle_timeout(rt.now());
        while let Some(t) = machine.poll_transmit() {
            // A send error concerns one server; it then counts as silent.
            let _ = set.send(t.source, t.destination, t.contents).await;
        }
        if let Some(e) = machine.poll_event() {
            return Ok(Some(e));
        }
        let wake = match (machine.poll_timeout().map(|t| t.at), deadline) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => return Ok(None),
        };
        if let Some(r) = until(rt, wake, set.recv()).await {
            let (from, local, bytes) = r?;
            machine.handle_input(rt.now(), from, local, bytes);
        } else if deadline.is_some_and(|d| rt.now() >= d) {
            return Ok(None);
        }
    }
}

/// Runs one operation against `servers` (writes go to all; reads finish at the first
/// verified record) and returns every server's answer. Takes at most about 8 s with the
/// default retransmission settings.
pub async fn run<R: Runtime>(
    rt: &R,
    op: Operation,
    servers: &[SocketAddr],
    config: ClientConfig,
    rng: &mut Rng,
) -> io::Result<Finished> {
    let (mut set, targets) = sockets(rt, servers)?;
    let mut client = NameClient::new(op, &targets, config, rng, rt.now());
    match drive(rt, &mut set, &mut client, None).await? {
        Some(f) => Ok(f),
        None => Err(io::Error::other("name client stopped without a result")),
    }
}

/// The verified node address `name` points to, from the first of `servers` that has it.
pub async fn resolve<R: Runtime>(
    rt: &R,
    name: &Name,
    servers: &[SocketAddr],
    rng: &mut Rng,
) -> Result<NodeAddr, ResolveError> {
    if servers.is_empty() {
        return Err(ResolveError::NoServers);
    }
    let f = run(
        rt,
        Operation::Resolve(name.clone()),
        servers,
        ClientConfig::default(),
        rng,
    )
    .await?;
    let asked = servers
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if let Some(addr) = f.record().and_then(|w| w.addr.clone()) {
        return Ok(addr);
    }
    let answered = f
        .reports
        .iter()
        .any(|r| r.outcome.as_ref().is_some_and(|o| *o != Outcome::NoAnswer));
    let said_not_found = f
        .reports
        .iter()
        .any(|r| r.outcome == Some(Outcome::NotFound));
    let refusal = f.reports.iter().find_map(|r| match &r.outcome {
        Some(Outcome::Refused(why)) => Some(why.to_string()),
        _ => None,
    });
    if let (false, Some(why)) = (said_not_found, refusal) {
        Err(ResolveError::Refused {
            name: name.to_string(),
            why,
            asked,
        })
    } else if answered {
        Err(ResolveError::NotFound {
            name: name.to_string(),
            asked,
        })
    } else {
        Err(ResolveError::NoAnswer { asked })
    }
}

/// Keeps a node's names registered: re-registers each before it expires and whenever
/// [`set_address`](Self::set_address) gives a new address. Call
/// [`next_event`](Self::next_event) in a loop (it does the work while it waits).
#[derive(Debug)]
pub struct NameKeeper<S> {
    set: SocketSet<S>,
    registrar: Registrar,
}

impl<S: crate::AsyncUdpSocket> NameKeeper<S> {
    /// Starts keeping `names` for `identity` at `addr` on `servers`.
    pub fn new<R: Runtime<UdpSocket = S>>(
        rt: &R,
        identity: Identity,
        addr: NodeAddr,
        servers: &[SocketAddr],
        names: Vec<Name>,
        config: RegistrarConfig,
        rng: Rng,
    ) -> io::Result<Self> {
        let (set, targets) = sockets(rt, servers)?;
        let now = rt.now();
        let mut registrar =
            Registrar::new(identity, addr, targets, config, rng, now, unix_ms_now());
        for n in names {
            registrar
                .add(now, n)
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(NameKeeper { set, registrar })
    }

    /// The node's address changed: every name is re-registered now.
    pub fn set_address<R: Runtime<UdpSocket = S>>(&mut self, rt: &R, addr: NodeAddr) {
        self.registrar.set_address(rt.now(), addr);
    }

    /// Adds a name to keep.
    pub fn add<R: Runtime<UdpSocket = S>>(&mut self, rt: &R, name: Name) -> io::Result<()> {
        self.registrar
            .add(rt.now(), name)
            .map_err(|e| io::Error::other(e.to_string()))
    }

    /// Runs until `updates` closes: each address received from it re-registers every
    /// name; every round's result goes to `on_event`. Spawn it next to the node.
    pub async fn run<R: Runtime<UdpSocket = S>>(
        mut self,
        rt: &R,
        updates: async_channel::Receiver<NodeAddr>,
        mut on_event: impl FnMut(RegistrarEvent),
    ) -> io::Result<()> {
        enum Step {
            Event(io::Result<Option<RegistrarEvent>>),
            Update(Result<NodeAddr, async_channel::RecvError>),
        }
        loop {
            let step =
                futures_lite::future::or(async { Step::Update(updates.recv().await) }, async {
                    Step::Event(self.next_event(rt, None).await)
                })
                .await;
            match step {
                Step::Update(Ok(addr)) => self.set_address(rt, addr),
                Step::Update(Err(_)) => return Ok(()),
                Step::Event(Ok(Some(e))) => on_event(e),
                // Nothing scheduled (no names): wait for an update only.
                Step::Event(Ok(None)) => match updates.recv().await {
                    Ok(addr) => self.set_address(rt, addr),
                    Err(_) => return Ok(()),
                },
                Step::Event(Err(e)) => return Err(e),
            }
        }
    }

    /// Works until the next registration result or `deadline` (`None` at the deadline).
    pub async fn next_event<R: Runtime<UdpSocket = S>>(
        &mut self,
        rt: &R,
        deadline: Option<Instant>,
    ) -> io::Result<Option<RegistrarEvent>> {
        self.registrar.set_wall_clock(rt.now(), unix_ms_now());
        drive(rt, &mut self.set, &mut self.registrar, deadline).await
    }
}
