//! NAT classification on real sockets of any [`Runtime`]: binds the classifier's sockets
//! on one interface address and drives core's [`Classifier`].

use std::io;
use std::net::{IpAddr, SocketAddr};

use crate::net::bind_udp;
use crate::runtime::{AsyncUdpSocket, Runtime};
use crate::socket_set::SocketSet;
use crate::timer::until;
use p2pd_core::nat::{
    Classification, Classifier, ClassifierConfig, ClassifierSockets, ClassifyError,
};
use p2pd_core::rng::Rng;

/// How many delta probes of each kind to send (P2PD sends 12 and 12).
pub const DELTA_PROBES: usize = 8;

/// Why classification could not run.
#[derive(Debug, thiserror::Error)]
pub enum NatError {
    /// The classifier refused its inputs.
    #[error(transparent)]
    Config(#[from] ClassifyError),
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
    for _ in 0..2 + DELTA_PROBES {
        bound.push(bind_udp(rt, any, false).map_err(io_err)?);
    }
    bound.extend(bind_consecutive(rt, ip, DELTA_PROBES, &mut rng).map_err(io_err)?);
    let mut with_addrs = Vec::new();
    for s in bound {
        with_addrs.push((s.local_addr().map_err(io_err)?, s));
    }
    let addrs: Vec<SocketAddr> = with_addrs.iter().map(|(a, _)| *a).collect();
    let sockets = ClassifierSockets {
        mapping: addrs[0],
        filtering: addrs[1],
        delta_random: addrs[2..2 + DELTA_PROBES].to_vec(),
        delta_consecutive: addrs[2 + DELTA_PROBES..].to_vec(),
    };
    let mut set = SocketSet::new(with_addrs);
    let mut c = Classifier::new(rt.now(), config, sockets, rng.fork())?;
    loop {
        c.handle_timeout(rt.now());
        while let Some(t) = c.poll_transmit() {
            // A send error (no route, filtered) is what a lost packet would be: the
            // classifier's own retries and verdicts account for it.
            let _ = set.send(t.source, t.destination, t.contents).await;
        }
        if let Some(result) = c.poll_event() {
            return Ok(result);
        }
        let Some(deadline) = c.poll_timeout() else {
            return Err(io_err(io::Error::other(
                "classifier stopped without a verdict",
            )));
        };
        if let Some(r) = until(rt, deadline.at, set.recv()).await {
            let (from, local, bytes) = r.map_err(io_err)?;
            c.handle_input(rt.now(), from, local, bytes);
        }
    }
}
