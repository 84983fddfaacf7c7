//! A sans-IO port-mapping client: PCP MAP (RFC 6887) first, then NAT-PMP (RFC 6886).
//!
//! Given the gateway, the local address, the internal port/protocol and a lease, the
//! client asks for a finite mapping, emits [`PortMapEvent::Mapped`], renews at half the
//! granted lifetime (RFC 6886 §3.3, RFC 6887 §11.2.1), re-maps when the gateway's epoch
//! goes backwards (RFC 6886 §3.6, RFC 6887 §8.5), and deletes the mapping on
//! [`PortMapClient::remove`] (lifetime 0; PCP repeats the nonce, RFC 6887 §15).
//!
//! Retransmission: RFC 6886 §3.1 (250 ms, doubling). RFC 6887 §8.1.1 allows 3 s initial
//! and unbounded retries; to fall back to NAT-PMP within a few seconds this client uses the
//! same 250 ms doubling schedule for PCP, bounded by [`PortMapConfig::attempts`] per
//! protocol. Replies from anyone but the gateway's port 5351, with the wrong nonce, opcode,
//! protocol or internal port are ignored.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::{natpmp, pcp};
use crate::rng::Rng;
use crate::time::Timeout;
use crate::transmit::{Transmit, Transport};

/// Which port-mapping protocol to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// PCP, RFC 6887.
    Pcp,
    /// NAT-PMP, RFC 6886.
    NatPmp,
    /// UPnP IGD (driven by [`super::upnp::client::UpnpClient`], not by this machine).
    Upnp,
}

impl Via {
    /// Lower-case name for output.
    pub fn name(self) -> &'static str {
        match self {
            Via::Pcp => "pcp",
            Via::NatPmp => "natpmp",
            Via::Upnp => "upnp",
        }
    }
}

/// Client configuration.
#[derive(Debug, Clone)]
pub struct PortMapConfig {
    /// The gateway's LAN address; requests go to its port 5351.
    pub gateway: IpAddr,
    /// The local socket the requests are sent from (its IP is PCP's client address).
    pub local: SocketAddr,
    /// UDP or TCP.
    pub protocol: natpmp::MapProtocol,
    /// The port on this host to map.
    pub internal_port: u16,
    /// Requested lease in seconds (finite; at least 1).
    pub lease: u32,
    /// Protocols to try, in order (default: PCP, then NAT-PMP).
    pub order: Vec<Via>,
    /// Requests per protocol before giving up on it (default 4: 250+500+1000+2000 ms).
    pub attempts: u32,
    /// First retransmission timeout (default 250 ms, RFC 6886 §3.1).
    pub initial_rto: Duration,
    /// The PCP nonce to use (to renew or delete a mapping made by an earlier process);
    /// `None` draws a fresh one from the `Rng`.
    pub nonce: Option<pcp::Nonce>,
}

impl PortMapConfig {
    /// Defaults for mapping `internal_port` from `local` through `gateway`.
    pub fn new(
        gateway: IpAddr,
        local: SocketAddr,
        protocol: natpmp::MapProtocol,
        internal_port: u16,
        lease: u32,
    ) -> Self {
        Self {
            gateway,
            local,
            protocol,
            internal_port,
            lease: lease.max(1),
            order: vec![Via::Pcp, Via::NatPmp],
            attempts: 4,
            initial_rto: Duration::from_millis(250),
            nonce: None,
        }
    }
}

/// A mapping the gateway granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// The protocol that worked.
    pub protocol_used: Via,
    /// External address and port.
    pub external: SocketAddr,
    /// Lifetime the gateway granted.
    pub lease: Duration,
    /// When it expires unless renewed.
    pub expires: Instant,
}

/// Why mapping failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortMapError {
    /// The gateway answered with an error code.
    #[error(
        "the gateway refused ({via}): {code} ({value}); enable NAT-PMP/PCP on the router or ask its administrator"
    )]
    Refused {
        /// Protocol name.
        via: &'static str,
        /// RFC name of the result code.
        code: &'static str,
        /// Wire value.
        value: u16,
    },
    /// No answer from any protocol tried.
    #[error(
        "no port-mapping answer from {0}:5351 (tried {1}); check the gateway address or that the router runs NAT-PMP/PCP"
    )]
    NoAnswer(IpAddr, String),
    /// UPnP IGD failed.
    #[error(transparent)]
    Upnp(#[from] super::upnp::client::UpnpError),
}

/// What the client reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMapEvent {
    /// A mapping was made or renewed.
    Mapped(Mapping),
    /// The gateway lost its state (epoch went backwards); the client is re-mapping.
    EpochReset,
    /// The mapping was deleted (or no answer to the delete came before the retries ran out).
    Removed {
        /// Whether the gateway confirmed the delete.
        confirmed: bool,
    },
    /// Mapping failed; the client stops.
    Failed(PortMapError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Sending map requests via `order[via_index]`.
    Requesting,
    /// Mapped; renewal at `renew_at`.
    Mapped,
    /// Sending delete requests.
    Deleting,
    /// Finished (removed or failed).
    Done,
}

/// The port-mapping state machine. See the module docs.
#[derive(Debug)]
pub struct PortMapClient {
    config: PortMapConfig,
    nonce: pcp::Nonce,
    phase: Phase,
    via_index: usize,
    attempt: u32,
    next_send: Option<Instant>,
    renew_at: Option<Instant>,
    mapping: Option<Mapping>,
    natpmp_external: Option<Ipv4Addr>,
    natpmp_port: Option<(u16, u32)>,
    /// (server epoch, local time it was seen) per RFC 6887 §8.5.
    epoch: Option<(u32, Instant)>,
    out: VecDeque<Vec<u8>>,
    sending: Vec<u8>,
    events: VecDeque<PortMapEvent>,
}

impl PortMapClient {
    /// Start mapping at `now`; the nonce comes from `rng`.
    pub fn new(config: PortMapConfig, rng: &mut Rng, now: Instant) -> Self {
        let mut nonce = [0u8; 12];
        rng.fill(&mut nonce);
        let nonce = config.nonce.unwrap_or(nonce);
        let mut c = Self {
            config,
            nonce,
            phase: Phase::Requesting,
            via_index: 0,
            attempt: 0,
            next_send: Some(now),
            renew_at: None,
            mapping: None,
            natpmp_external: None,
            natpmp_port: None,
            epoch: None,
            out: VecDeque::new(),
            sending: Vec::new(),
            events: VecDeque::new(),
        };
        // UPnP runs in its own machine; this one speaks PCP and NAT-PMP only.
        c.config.order.retain(|v| *v != Via::Upnp);
        if c.config.order.is_empty() {
            c.config.order = vec![Via::Pcp, Via::NatPmp];
        }
        c.handle_timeout(now);
        c
    }

    /// The current mapping, if any.
    pub fn mapping(&self) -> Option<Mapping> {
        self.mapping
    }

    /// The PCP nonce this client uses (a delete must repeat it).
    pub fn nonce(&self) -> pcp::Nonce {
        self.nonce
    }

    fn via(&self) -> Via {
        self.config.order[self.via_index.min(self.config.order.len() - 1)]
    }

    /// Delete the mapping (lifetime 0). Emits [`PortMapEvent::Removed`] when done.
    pub fn remove(&mut self, now: Instant) {
        match self.phase {
            Phase::Done | Phase::Deleting => {}
            Phase::Requesting if self.mapping.is_none() && self.attempt == 0 => {
                self.phase = Phase::Done;
                self.next_send = None;
                self.events
                    .push_back(PortMapEvent::Removed { confirmed: true });
            }
            _ => {
                self.phase = Phase::Deleting;
                self.attempt = 0;
                self.renew_at = None;
                self.next_send = Some(now);
                self.handle_timeout(now);
            }
        }
    }

    fn lifetime(&self) -> u32 {
        if self.phase == Phase::Deleting {
            0
        } else {
            self.config.lease
        }
    }

    fn queue_request(&mut self) {
        let lifetime = self.lifetime();
        match self.via() {
            Via::Pcp => {
                let req = pcp::MapRequest {
                    lifetime,
                    client: self.config.local.ip(),
                    nonce: self.nonce,
                    protocol: match self.config.protocol {
                        natpmp::MapProtocol::Udp => pcp::protocol::UDP,
                        natpmp::MapProtocol::Tcp => pcp::protocol::TCP,
                    },
                    internal_port: self.config.internal_port,
                    suggested_external_port: match (lifetime, self.mapping) {
                        (0, _) | (_, None) => 0,
                        (_, Some(m)) => m.external.port(),
                    },
                    suggested_external_ip: match (lifetime, self.mapping) {
                        (0, _) | (_, None) => pcp::UNSPECIFIED_V4,
                        (_, Some(m)) => m.external.ip(),
                    },
                };
                let mut buf = vec![0u8; pcp::MAP_LEN];
                if req.emit(&mut buf).is_some() {
                    self.out.push_back(buf);
                }
            }
            Via::NatPmp | Via::Upnp => {
                if lifetime != 0 {
                    let mut buf = vec![0u8; natpmp::EXTERNAL_ADDRESS_REQUEST_LEN];
                    if natpmp::emit_external_address_request(&mut buf).is_some() {
                        self.out.push_back(buf);
                    }
                }
                let req = natpmp::MapRequest {
                    protocol: self.config.protocol,
                    internal_port: self.config.internal_port,
                    suggested_external_port: match (lifetime, self.mapping) {
                        (0, _) | (_, None) => 0,
                        (_, Some(m)) => m.external.port(),
                    },
                    lifetime,
                };
                let mut buf = vec![0u8; natpmp::MAP_REQUEST_LEN];
                if req.emit(&mut buf).is_some() {
                    self.out.push_back(buf);
                }
            }
        }
    }

    /// Advance timers: retransmit, fall back, renew.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Mapped
            && let Some(at) = self.renew_at
            && now >= at
        {
            self.renew_at = None;
            self.phase = Phase::Requesting;
            self.attempt = 0;
            self.next_send = Some(now);
        }
        let Some(at) = self.next_send else { return };
        if now < at {
            return;
        }
        if self.attempt >= self.config.attempts {
            match self.phase {
                Phase::Deleting => {
                    self.finish_removed(false);
                    return;
                }
                Phase::Requesting if self.mapping.is_none() => {
                    if self.via_index + 1 < self.config.order.len() {
                        self.via_index += 1;
                        self.attempt = 0;
                    } else {
                        let tried: Vec<_> = self.config.order.iter().map(|v| v.name()).collect();
                        self.fail(PortMapError::NoAnswer(
                            self.config.gateway,
                            tried.join(", "),
                        ));
                        return;
                    }
                }
                Phase::Requesting => {
                    // Renewal unanswered: keep trying (at the longest interval) until the
                    // mapping expires, then report it gone.
                    if self.mapping.is_some_and(|m| now >= m.expires) {
                        self.mapping = None;
                        let via = self.via().name().to_string();
                        self.fail(PortMapError::NoAnswer(self.config.gateway, via));
                        return;
                    }
                    self.attempt = self.config.attempts.saturating_sub(1);
                }
                Phase::Mapped | Phase::Done => return,
            }
        }
        self.queue_request();
        let rto = self
            .config
            .initial_rto
            .saturating_mul(1u32 << self.attempt.min(16));
        self.attempt += 1;
        self.next_send = Some(now + rto);
    }

    fn fail(&mut self, e: PortMapError) {
        self.phase = Phase::Done;
        self.next_send = None;
        self.renew_at = None;
        self.events.push_back(PortMapEvent::Failed(e));
    }

    fn finish_removed(&mut self, confirmed: bool) {
        self.phase = Phase::Done;
        self.next_send = None;
        self.mapping = None;
        self.events.push_back(PortMapEvent::Removed { confirmed });
    }

    /// RFC 6887 §8.5 / RFC 6886 §3.6: the server epoch must advance at least 7/8 of the
    /// local elapsed time (minus 2 s slack). Returns true if the gateway lost its state.
    fn epoch_reset(&mut self, epoch: u32, now: Instant) -> bool {
        let reset = match self.epoch {
            Some((prev, seen)) => {
                let elapsed = now.saturating_duration_since(seen).as_secs();
                let expected = u64::from(prev) + elapsed * 7 / 8;
                u64::from(epoch) + 2 < expected || epoch < prev
            }
            None => false,
        };
        self.epoch = Some((epoch, now));
        reset
    }

    fn granted(&mut self, now: Instant, via: Via, external: SocketAddr, lifetime: u32) {
        let lease = Duration::from_secs(u64::from(lifetime.max(1)));
        let m = Mapping {
            protocol_used: via,
            external,
            lease,
            expires: now + lease,
        };
        self.mapping = Some(m);
        self.phase = Phase::Mapped;
        self.next_send = None;
        self.attempt = 0;
        self.renew_at = Some(now + lease / 2);
        self.events.push_back(PortMapEvent::Mapped(m));
    }

    fn on_epoch(&mut self, epoch: u32, now: Instant) -> bool {
        if self.epoch_reset(epoch, now) && self.phase == Phase::Mapped {
            self.events.push_back(PortMapEvent::EpochReset);
            self.phase = Phase::Requesting;
            self.attempt = 0;
            self.next_send = Some(now);
            self.handle_timeout(now);
            return true;
        }
        false
    }

    /// Feed a datagram received on the local socket.
    pub fn handle_input(
        &mut self,
        now: Instant,
        source: SocketAddr,
        _destination: SocketAddr,
        bytes: &[u8],
    ) {
        if source != SocketAddr::new(self.config.gateway, natpmp::NATPMP_SERVER_PORT)
            || self.phase == Phase::Done
        {
            return;
        }
        let via = self.via();
        match via {
            Via::Pcp => self.on_pcp(now, bytes),
            Via::NatPmp | Via::Upnp => self.on_natpmp(now, bytes),
        }
    }

    fn on_pcp(&mut self, now: Instant, bytes: &[u8]) {
        let r = match pcp::MapResponse::parse(bytes) {
            Ok(r) => r,
            // A NAT-PMP-only gateway answers version 0 (RFC 6887 §9): fall back at once.
            Err(pcp::PcpError::Version(0)) if self.phase == Phase::Requesting => {
                self.next_protocol(now);
                return;
            }
            Err(_) => return,
        };
        let proto = match self.config.protocol {
            natpmp::MapProtocol::Udp => pcp::protocol::UDP,
            natpmp::MapProtocol::Tcp => pcp::protocol::TCP,
        };
        if r.nonce != self.nonce
            || r.protocol != proto
            || r.internal_port != self.config.internal_port
        {
            return;
        }
        if self.on_epoch(r.epoch, now) {
            return;
        }
        match (self.phase, r.result) {
            (Phase::Deleting, _) => self.finish_removed(r.result == pcp::ResultCode::Success),
            (Phase::Requesting, pcp::ResultCode::Success) => {
                self.granted(
                    now,
                    Via::Pcp,
                    SocketAddr::new(r.external_ip, r.external_port),
                    r.lifetime,
                );
            }
            (Phase::Requesting, pcp::ResultCode::UnsupportedVersion) => self.next_protocol(now),
            (Phase::Requesting, code) if self.mapping.is_none() => {
                self.fail(PortMapError::Refused {
                    via: "pcp",
                    code: code.name(),
                    value: u16::from(code.to_u8()),
                })
            }
            _ => {}
        }
    }

    fn on_natpmp(&mut self, now: Instant, bytes: &[u8]) {
        if let Ok(r) = natpmp::ExternalAddressResponse::parse(bytes) {
            if self.on_epoch(r.header.epoch, now) {
                return;
            }
            if r.header.result == natpmp::ResultCode::Success {
                self.natpmp_external = Some(r.external);
            }
        } else if let Ok(r) = natpmp::MapResponse::parse(bytes, self.config.protocol) {
            if r.header.result == natpmp::ResultCode::Success
                && r.internal_port != self.config.internal_port
            {
                return;
            }
            if self.on_epoch(r.header.epoch, now) {
                return;
            }
            match (self.phase, r.header.result) {
                (Phase::Deleting, code) => {
                    self.finish_removed(code == natpmp::ResultCode::Success);
                    return;
                }
                (Phase::Requesting, natpmp::ResultCode::Success) => {
                    self.natpmp_port = Some((r.external_port, r.lifetime));
                }
                (Phase::Requesting, code) if self.mapping.is_none() => {
                    self.fail(PortMapError::Refused {
                        via: "natpmp",
                        code: code.name(),
                        value: code.to_u16(),
                    });
                    return;
                }
                _ => return,
            }
        } else {
            return;
        }
        if self.phase == Phase::Requesting
            && let (Some(ip), Some((port, lifetime))) = (self.natpmp_external, self.natpmp_port)
        {
            self.natpmp_port = None;
            self.granted(
                now,
                Via::NatPmp,
                SocketAddr::new(IpAddr::V4(ip), port),
                lifetime,
            );
        }
    }

    fn next_protocol(&mut self, now: Instant) {
        if self.mapping.is_some() {
            return;
        }
        if self.via_index + 1 < self.config.order.len() {
            self.via_index += 1;
            self.attempt = 0;
            self.epoch = None;
            self.next_send = Some(now);
            self.handle_timeout(now);
        } else {
            self.attempt = self.config.attempts;
            self.next_send = Some(now);
            self.handle_timeout(now);
        }
    }

    /// The next datagram to send to the gateway.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        self.sending = self.out.pop_front()?;
        Some(Transmit {
            transport: Transport::Udp,
            source: self.config.local,
            destination: SocketAddr::new(self.config.gateway, natpmp::NATPMP_SERVER_PORT),
            contents: &self.sending,
        })
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Timeout> {
        let send = self
            .next_send
            .map(|at| Timeout::new(at, "portmap retransmit"));
        let renew = self.renew_at.map(|at| Timeout::new(at, "portmap renew"));
        Timeout::earliest(send, renew)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<PortMapEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1));
    const WAN: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

    fn gw() -> SocketAddr {
        SocketAddr::new(GW, 5351)
    }

    fn local() -> SocketAddr {
        "192.168.1.10:50000".parse().unwrap()
    }

    fn client(now: Instant, lease: u32) -> PortMapClient {
        let cfg = PortMapConfig::new(GW, local(), natpmp::MapProtocol::Udp, 40000, lease);
        PortMapClient::new(cfg, &mut Rng::seed_from_u64(7), now)
    }

    fn sent(c: &mut PortMapClient) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        while let Some(t) = c.poll_transmit() {
            assert_eq!(t.destination, gw());
            v.push(t.contents.to_vec());
        }
        v
    }

    fn events(c: &mut PortMapClient) -> Vec<PortMapEvent> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    fn pcp_reply(req: &[u8], result: pcp::ResultCode, epoch: u32, port: u16) -> Vec<u8> {
        let r = pcp::MapRequest::parse(req).unwrap();
        let mut buf = vec![0u8; pcp::MAP_LEN];
        pcp::MapResponse {
            result,
            lifetime: r.lifetime,
            epoch,
            nonce: r.nonce,
            protocol: r.protocol,
            internal_port: r.internal_port,
            external_port: port,
            external_ip: IpAddr::V4(WAN),
        }
        .emit(&mut buf)
        .unwrap();
        buf
    }

    fn natpmp_replies(reqs: &[Vec<u8>], epoch: u32, port: u16) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for req in reqs {
            if req.len() == 2 {
                let mut b = vec![0u8; 12];
                natpmp::ExternalAddressResponse {
                    header: natpmp::ResponseHeader {
                        opcode: 128,
                        result: natpmp::ResultCode::Success,
                        epoch,
                    },
                    external: WAN,
                }
                .emit(&mut b)
                .unwrap();
                out.push(b);
            } else {
                let r = natpmp::MapRequest::parse(req).unwrap();
                let mut b = vec![0u8; 16];
                natpmp::MapResponse {
                    header: natpmp::ResponseHeader {
                        opcode: 129,
                        result: natpmp::ResultCode::Success,
                        epoch,
                    },
                    protocol: r.protocol,
                    internal_port: r.internal_port,
                    external_port: if r.lifetime == 0 { 0 } else { port },
                    lifetime: r.lifetime,
                }
                .emit(&mut b)
                .unwrap();
                out.push(b);
            }
        }
        out
    }

    #[test]
    fn pcp_success_then_renew_at_half_lease_then_remove_with_same_nonce() {
        let t0 = Instant::now();
        let mut c = client(t0, 30);
        let reqs = sent(&mut c);
        assert_eq!(reqs.len(), 1);
        let req = pcp::MapRequest::parse(&reqs[0]).unwrap();
        assert_eq!(req.lifetime, 30);
        assert_eq!(req.client, local().ip());
        c.handle_input(
            t0,
            gw(),
            local(),
            &pcp_reply(&reqs[0], pcp::ResultCode::Success, 100, 50001),
        );
        let ev = events(&mut c);
        let PortMapEvent::Mapped(m) = ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(m.protocol_used, Via::Pcp);
        assert_eq!(m.external, SocketAddr::new(IpAddr::V4(WAN), 50001));
        assert_eq!(m.expires, t0 + Duration::from_secs(30));
        assert_eq!(c.poll_timeout().unwrap().at, t0 + Duration::from_secs(15));
        // Nothing before half the lease.
        c.handle_timeout(t0 + Duration::from_secs(14));
        assert!(sent(&mut c).is_empty());
        let t1 = t0 + Duration::from_secs(15);
        c.handle_timeout(t1);
        let renew = sent(&mut c);
        assert_eq!(renew.len(), 1);
        let r = pcp::MapRequest::parse(&renew[0]).unwrap();
        assert_eq!((r.nonce, r.suggested_external_port), (req.nonce, 50001));
        c.handle_input(
            t1,
            gw(),
            local(),
            &pcp_reply(&renew[0], pcp::ResultCode::Success, 115, 50001),
        );
        let ev = events(&mut c);
        let PortMapEvent::Mapped(m2) = ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(m2.expires, t1 + Duration::from_secs(30));
        c.remove(t1);
        let del = sent(&mut c);
        let d = pcp::MapRequest::parse(&del[0]).unwrap();
        assert_eq!((d.lifetime, d.nonce), (0, req.nonce));
        c.handle_input(
            t1,
            gw(),
            local(),
            &pcp_reply(&del[0], pcp::ResultCode::Success, 115, 0),
        );
        assert_eq!(
            events(&mut c),
            vec![PortMapEvent::Removed { confirmed: true }]
        );
        assert!(c.poll_timeout().is_none());
    }

    #[test]
    fn pcp_unsupported_falls_back_to_natpmp() {
        let t0 = Instant::now();
        let mut c = client(t0, 60);
        let reqs = sent(&mut c);
        // A NAT-PMP-only gateway answers version 0, UNSUPPORTED_VERSION (RFC 6887 §9).
        c.handle_input(t0, gw(), local(), &[0, 129, 0, 1, 0, 0, 0, 9]);
        let _ = reqs;
        let reqs = sent(&mut c);
        assert_eq!(reqs.len(), 2, "external address + map request");
        assert_eq!(reqs[0], vec![0, 0]);
        for r in natpmp_replies(&reqs, 10, 40000) {
            c.handle_input(t0, gw(), local(), &r);
        }
        let ev = events(&mut c);
        let PortMapEvent::Mapped(m) = ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(m.protocol_used, Via::NatPmp);
        assert_eq!(m.external, SocketAddr::new(IpAddr::V4(WAN), 40000));
        c.remove(t0);
        let del = sent(&mut c);
        assert_eq!(del.len(), 1);
        assert_eq!(natpmp::MapRequest::parse(&del[0]).unwrap().lifetime, 0);
        for r in natpmp_replies(&del, 10, 0) {
            c.handle_input(t0, gw(), local(), &r);
        }
        assert_eq!(
            events(&mut c),
            vec![PortMapEvent::Removed { confirmed: true }]
        );
    }

    #[test]
    fn silent_pcp_falls_back_after_bounded_retries_then_fails() {
        let t0 = Instant::now();
        let mut c = client(t0, 60);
        let mut now = t0;
        let mut pcp_sent = 0;
        let mut natpmp_sent = 0;
        while let Some(t) = c.poll_timeout() {
            for r in sent(&mut c) {
                if r.first() == Some(&2) {
                    pcp_sent += 1;
                } else {
                    natpmp_sent += 1;
                }
            }
            now = t.at;
            c.handle_timeout(now);
        }
        assert_eq!(pcp_sent, 4);
        assert_eq!(natpmp_sent, 8, "4 × (address + map)");
        // 250+500+1000+2000 ms per protocol.
        assert_eq!(now - t0, Duration::from_millis(7500));
        let ev = events(&mut c);
        assert!(
            matches!(ev[..], [PortMapEvent::Failed(PortMapError::NoAnswer(..))]),
            "{ev:?}"
        );
    }

    #[test]
    fn not_authorized_is_a_clear_error() {
        let t0 = Instant::now();
        let mut c = client(t0, 60);
        let reqs = sent(&mut c);
        c.handle_input(
            t0,
            gw(),
            local(),
            &pcp_reply(&reqs[0], pcp::ResultCode::NotAuthorized, 1, 0),
        );
        let ev = events(&mut c);
        let [PortMapEvent::Failed(e)] = &ev[..] else {
            panic!("{ev:?}")
        };
        assert!(
            e.to_string()
                .contains("the gateway refused (pcp): NOT_AUTHORIZED"),
            "{e}"
        );
        assert!(c.poll_timeout().is_none());
    }

    #[test]
    fn wrong_nonce_wrong_source_and_junk_are_ignored() {
        let t0 = Instant::now();
        let mut c = client(t0, 60);
        let reqs = sent(&mut c);
        let mut bad = pcp_reply(&reqs[0], pcp::ResultCode::Success, 1, 1234);
        bad[24] ^= 1;
        c.handle_input(t0, gw(), local(), &bad);
        let good = pcp_reply(&reqs[0], pcp::ResultCode::Success, 1, 1234);
        c.handle_input(t0, "192.168.1.2:5351".parse().unwrap(), local(), &good);
        c.handle_input(t0, gw(), local(), &good[..40]);
        c.handle_input(t0, gw(), local(), &[0xff; 1200]);
        assert!(events(&mut c).is_empty());
        c.handle_input(t0, gw(), local(), &good);
        assert!(matches!(events(&mut c)[..], [PortMapEvent::Mapped(_)]));
    }

    #[test]
    fn epoch_reset_triggers_remap() {
        let t0 = Instant::now();
        let mut c = client(t0, 600);
        let reqs = sent(&mut c);
        c.handle_input(
            t0,
            gw(),
            local(),
            &pcp_reply(&reqs[0], pcp::ResultCode::Success, 1000, 5),
        );
        assert!(matches!(events(&mut c)[..], [PortMapEvent::Mapped(_)]));
        // 100 s later the gateway says its epoch is 3: it rebooted.
        let t1 = t0 + Duration::from_secs(100);
        c.handle_timeout(t1);
        assert!(sent(&mut c).is_empty());
        c.handle_input(
            t1,
            gw(),
            local(),
            &pcp_reply(&reqs[0], pcp::ResultCode::Success, 3, 5),
        );
        assert_eq!(events(&mut c), vec![PortMapEvent::EpochReset]);
        let again = sent(&mut c);
        assert_eq!(again.len(), 1);
        c.handle_input(
            t1,
            gw(),
            local(),
            &pcp_reply(&again[0], pcp::ResultCode::Success, 4, 5),
        );
        assert!(matches!(events(&mut c)[..], [PortMapEvent::Mapped(_)]));
        // A consistent epoch later is no reset.
        let t2 = t1 + Duration::from_secs(200);
        c.handle_input(
            t2,
            gw(),
            local(),
            &pcp_reply(&again[0], pcp::ResultCode::Success, 204, 5),
        );
        assert!(
            events(&mut c).is_empty(),
            "no reset, and unsolicited replies change nothing"
        );
    }

    #[test]
    fn unanswered_renewal_ends_at_expiry() {
        let t0 = Instant::now();
        let mut c = client(t0, 20);
        let reqs = sent(&mut c);
        c.handle_input(
            t0,
            gw(),
            local(),
            &pcp_reply(&reqs[0], pcp::ResultCode::Success, 1, 7),
        );
        let _ = events(&mut c);
        let mut last = t0;
        while let Some(t) = c.poll_timeout() {
            last = t.at;
            c.handle_timeout(t.at);
            let _ = sent(&mut c);
        }
        assert!(last >= t0 + Duration::from_secs(20) && last < t0 + Duration::from_secs(23));
        let ev = events(&mut c);
        assert!(matches!(ev[..], [PortMapEvent::Failed(_)]), "{ev:?}");
        assert!(c.mapping().is_none());
    }

    #[test]
    fn remove_before_any_request_answered_still_deletes() {
        let t0 = Instant::now();
        let mut c = client(t0, 60);
        let _ = sent(&mut c);
        c.remove(t0);
        let del = sent(&mut c);
        assert_eq!(pcp::MapRequest::parse(&del[0]).unwrap().lifetime, 0);
        while let Some(t) = c.poll_timeout() {
            c.handle_timeout(t.at);
            let _ = sent(&mut c);
        }
        assert_eq!(
            events(&mut c),
            vec![PortMapEvent::Removed { confirmed: false }]
        );
    }
}
