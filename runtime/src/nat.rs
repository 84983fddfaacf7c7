//! NAT classification on real sockets of any [`Runtime`]: binds the classifier's sockets
//! on one interface address and drives core's [`Classifier`].

use std::io;
use std::net::{IpAddr, SocketAddr};

use crate::net::bind_udp;
use crate::runtime::{AsyncUdpSocket, Runtime};
use crate::socket_set::SocketSet;
use crate::timer::until;
use p2pd_core::Machine;
use p2pd_core::nat::{
    Classification, Classifier, ClassifierConfig, ClassifierSockets, ClassifyError, LifetimeConfig,
    LifetimeProbe, LifetimeSockets, LifetimeSocketsMismatch, MappingLifetime,
};
use p2pd_core::rng::Rng;

/// Delta probes from random local ports (P2PD sends 12 in all, half each way).
pub const DELTA_RANDOM: usize = 8;
/// Delta probes from consecutive local ports: more, because every probe lost on its first
/// send breaks the chain a dependent allocator needs (the simulator's 20 % loss runs
/// showed 8 to be too few).
pub const DELTA_CONSECUTIVE: usize = 12;

/// Why classification could not run.
#[derive(Debug, thiserror::Error)]
pub enum NatError {
    /// The classifier refused its inputs.
    #[error(transparent)]
    Config(#[from] ClassifyError),
    /// The lifetime probe refused its inputs.
    #[error(transparent)]
    Lifetime(#[from] LifetimeSocketsMismatch),
    /// Sockets could not be bound or failed.
    #[error("NAT test sockets on {ip}: {source}")]
    Io {
        /// The interface address.
        ip: IpAddr,
        /// The OS error.
        source: io::Error,
    },
}

/// Binds `n` sockets on consecutive ports of `ip`, starting at a port drawn from `rng`;
/// retries other starts a bounded number of times.
fn bind_consecutive<R: Runtime>(
    rt: &R,
    ip: IpAddr,
    n: usize,
    rng: &mut Rng,
) -> io::Result<Vec<R::UdpSocket>> {
    let mut last = io::Error::other("no attempt");
    for _ in 0..64 {
        let start = 20_000 + rng.below(40_000 - n as u64) as u16;
        let bound: io::Result<Vec<R::UdpSocket>> = (0..n as u16)
            .map(|i| bind_udp(rt, SocketAddr::new(ip, start + i), false))
            .collect();
        match bound {
            Ok(v) => return Ok(v),
            Err(e) => last = e,
        }
    }
    Err(io::Error::new(
        last.kind(),
        format!("no {n} consecutive free UDP ports found: {last}"),
    ))
}

/// Classifies the NAT in front of `ip` (an address of one local interface) on `rt`.
pub async fn classify<R: Runtime>(
    rt: &R,
    ip: IpAddr,
    config: ClassifierConfig,
    mut rng: Rng,
) -> Result<Classification, NatError> {
    let io_err = |source| NatError::Io { ip, source };
    let any = SocketAddr::new(ip, 0);
    let mut bound: Vec<R::UdpSocket> = Vec::new();
    for _ in 0..2 + DELTA_RANDOM {
        bound.push(bind_udp(rt, any, false).map_err(io_err)?);
    }
    bound.extend(bind_consecutive(rt, ip, DELTA_CONSECUTIVE, &mut rng).map_err(io_err)?);
    let mut with_addrs = Vec::new();
    for s in bound {
        with_addrs.push((s.local_addr().map_err(io_err)?, s));
    }
    let addrs: Vec<SocketAddr> = with_addrs.iter().map(|(a, _)| *a).collect();
    let sockets = ClassifierSockets {
        mapping: addrs[0],
        filtering: addrs[1],
        delta_random: addrs[2..2 + DELTA_RANDOM].to_vec(),
        delta_consecutive: addrs[2 + DELTA_RANDOM..].to_vec(),
    };
    let set = SocketSet::new(with_addrs);
    let c = Classifier::new(rt.now(), config, sockets, rng.fork())?;
    drive(rt, set, c).await.map_err(io_err)
}

/// Runs any core [`Machine`] over `set` until its first event.
///
/// Send errors (no route, filtered) count as lost packets: the machines' own retries and
/// verdicts account for them. A machine that stops asking for time without an event is
/// a bug reported as an error, not a hang.
pub async fn drive<R: Runtime, M: Machine>(
    rt: &R,
    mut set: SocketSet<R::UdpSocket>,
    mut machine: M,
) -> io::Result<M::Event> {
    loop {
        machine.handle_timeout(rt.now());
        while let Some(t) = machine.poll_transmit() {
            let _ = set.send(t.source, t.destination, t.contents).await;
        }
        if let Some(event) = machine.poll_event() {
            return Ok(event);
        }
        let Some(deadline) = machine.poll_timeout() else {
            return Err(io::Error::other(
                "the state machine stopped without a result",
            ));
        };
        if let Some(r) = until(rt, deadline.at, set.recv()).await {
            let (from, local, bytes) = r?;
            machine.handle_input(rt.now(), from, local, bytes);
        }
    }
}

/// Measures how long the NAT in front of `ip` keeps an idle UDP mapping, testing
/// `config.delays` (RFC 5780 §4.6). Takes as long as the longest delay.
pub async fn mapping_lifetime<R: Runtime>(
    rt: &R,
    ip: IpAddr,
    config: LifetimeConfig,
    rng: Rng,
) -> Result<MappingLifetime, NatError> {
    let io_err = |source| NatError::Io { ip, source };
    let any = SocketAddr::new(ip, 0);
    let mut with_addrs = Vec::new();
    for _ in 0..=config.delays.len() {
        let s = bind_udp(rt, any, false).map_err(io_err)?;
        with_addrs.push((s.local_addr().map_err(io_err)?, s));
    }
    let addrs: Vec<SocketAddr> = with_addrs.iter().map(|(a, _)| *a).collect();
    let sockets = LifetimeSockets {
        trigger: addrs[0],
        targets: addrs[1..].to_vec(),
    };
    let probe = LifetimeProbe::new(rt.now(), config, sockets, rng)?;
    drive(rt, SocketSet::new(with_addrs), probe)
        .await
        .map_err(io_err)
}
