//! NAT boxes and firewalls: RFC 4787 mapping and filtering, port allocation, idle timeout.
//!
//! [`RouterConfig`] says what a box does; [`Nat`] is its mapping table. The table is pure
//! logic over virtual time — the network feeds it outbound and inbound datagrams and it says
//! what the addresses become, or why the datagram dies.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use p2pd_core::nat::{DeltaKind, FilteringBehaviour, MappingBehaviour, NatType};
use p2pd_core::rng::Rng;

use crate::link::LinkConfig;
use crate::network::Attachment;
use crate::stats::DropReason;

/// How a NAT picks the external port of a new mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortAllocation {
    /// External port = local port when free and in range (P2PD's `equal`); otherwise random.
    Preserving,
    /// External port = local port + k when free and in range (P2PD's `preserving`: distances
    /// between local ports are kept); otherwise random.
    Offset(u16),
    /// Each new mapping takes the previous new mapping's external port + `step`, whatever the
    /// local port, wrapping inside the range and skipping ports in use (P2PD's
    /// `independent`). The first is random.
    Sequential {
        /// The distance between consecutive external ports.
        step: u16,
    },
    /// When the new mapping's local port is the previous new mapping's local port + 1, its
    /// external port is the previous external port + `step`; otherwise random (P2PD's
    /// `dependent`).
    DependentOnLocal {
        /// The distance between consecutive external ports.
        step: u16,
    },
    /// A seeded random free port in the range (P2PD's `random`).
    Random,
}

impl PortAllocation {
    /// The allocation that produces P2PD's delta `kind` with value `d` (the offset for
    /// `preserving`, the step for `independent` and `dependent`; ignored otherwise).
    pub fn for_delta(kind: DeltaKind, d: u16) -> Self {
        match kind {
            DeltaKind::Equal => PortAllocation::Preserving,
            DeltaKind::Preserving => PortAllocation::Offset(d),
            DeltaKind::Independent => PortAllocation::Sequential { step: d },
            DeltaKind::Dependent => PortAllocation::DependentOnLocal { step: d },
            DeltaKind::Random => PortAllocation::Random,
        }
    }

    /// The P2PD delta kind a classifier should find.
    pub fn delta_kind(self) -> DeltaKind {
        match self {
            PortAllocation::Preserving => DeltaKind::Equal,
            PortAllocation::Offset(_) => DeltaKind::Preserving,
            PortAllocation::Sequential { .. } => DeltaKind::Independent,
            PortAllocation::DependentOnLocal { .. } => DeltaKind::Dependent,
            PortAllocation::Random => DeltaKind::Random,
        }
    }
}

/// A NAT box or firewall: where it sits and how it behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterConfig {
    /// Where its public side is: on the internet, or inside another router's LAN (stacked
    /// NAT, carrier-grade NAT).
    pub parent: Attachment,
    /// Its public address (a NAT's external IP); allocated when `None`. Unused by a firewall,
    /// which has no address of its own.
    pub public_ip: Option<Ipv4Addr>,
    /// The /24 its LAN hosts get addresses from; allocated (10.x.y.0) when `None`. A firewall
    /// hands out its parent's addresses instead.
    pub lan_prefix: Option<Ipv4Addr>,
    /// When a mapping is reused (RFC 4787 §4.1).
    pub mapping: MappingBehaviour,
    /// Which inbound datagrams pass (RFC 4787 §5).
    pub filtering: FilteringBehaviour,
    /// How external ports are picked.
    pub allocation: PortAllocation,
    /// The external ports it may use; this bounds the mapping table.
    pub port_range: RangeInclusive<u16>,
    /// A mapping with no traffic for this long is gone (refreshed by outbound traffic and by
    /// inbound traffic that passed the filter).
    pub mapping_timeout: Duration,
    /// Whether a LAN host sending to the NAT's own public address reaches the mapped LAN host.
    pub hairpinning: bool,
    /// `false`: a stateful firewall that rewrites nothing but still filters (with
    /// endpoint-independent filtering it lets everything in: open internet).
    pub translate: bool,
    /// Drop every UDP datagram, both ways.
    pub block_udp: bool,
    /// The uplink to its parent.
    pub link: LinkConfig,
}

impl Default for RouterConfig {
    /// A port-restricted cone NAT with port preservation on the internet (the most common
    /// home router).
    fn default() -> Self {
        RouterConfig::for_type(NatType::PortRestrictedCone, DeltaKind::Equal, 0)
    }
}

impl RouterConfig {
    /// A NAT with these behaviours on the internet: ports 1024–65535, a 2-minute idle timeout
    /// (RFC 4787 REQ-5), hairpinning on (REQ-9), 5 ms uplink.
    pub fn nat(
        mapping: MappingBehaviour,
        filtering: FilteringBehaviour,
        allocation: PortAllocation,
    ) -> Self {
        RouterConfig {
            parent: Attachment::Internet,
            public_ip: None,
            lan_prefix: None,
            mapping,
            filtering,
            allocation,
            port_range: 1024..=65535,
            mapping_timeout: Duration::from_secs(120),
            hairpinning: true,
            translate: true,
            block_udp: false,
            link: LinkConfig::default(),
        }
    }

    /// A stateful firewall without translation; `EndpointIndependent` filtering makes it
    /// transparent (open internet).
    pub fn firewall(filtering: FilteringBehaviour) -> Self {
        RouterConfig {
            translate: false,
            ..RouterConfig::nat(
                MappingBehaviour::EndpointIndependent,
                filtering,
                PortAllocation::Preserving,
            )
        }
    }

    /// A box of one of P2PD's seven NAT types whose port allocation shows delta `kind` with
    /// value `d` (see [`PortAllocation::for_delta`]). Symmetric is address-and-port-dependent
    /// in both mapping and filtering; blocked is a port-restricted cone that drops all UDP.
    /// The firewall types translate nothing, so their delta is always equal.
    pub fn for_type(nat_type: NatType, kind: DeltaKind, d: u16) -> Self {
        use FilteringBehaviour as F;
        use MappingBehaviour as M;
        let alloc = PortAllocation::for_delta(kind, d);
        match nat_type {
            NatType::OpenInternet => RouterConfig::firewall(F::EndpointIndependent),
            NatType::SymmetricUdpFirewall => RouterConfig::firewall(F::AddressAndPortDependent),
            NatType::FullCone => {
                RouterConfig::nat(M::EndpointIndependent, F::EndpointIndependent, alloc)
            }
            NatType::RestrictedCone => {
                RouterConfig::nat(M::EndpointIndependent, F::AddressDependent, alloc)
            }
            NatType::PortRestrictedCone => {
                RouterConfig::nat(M::EndpointIndependent, F::AddressAndPortDependent, alloc)
            }
            NatType::Symmetric => RouterConfig::nat(
                M::AddressAndPortDependent,
                F::AddressAndPortDependent,
                alloc,
            ),
            NatType::Blocked => RouterConfig {
                block_udp: true,
                ..RouterConfig::nat(M::EndpointIndependent, F::AddressAndPortDependent, alloc)
            },
        }
    }

    /// The same box with its public side inside `parent`.
    pub fn behind(mut self, parent: Attachment) -> Self {
        self.parent = parent;
        self
    }

    /// The same box with this uplink.
    pub fn with_link(mut self, link: LinkConfig) -> Self {
        self.link = link;
        self
    }

    /// The P2PD NAT type a correct classifier reports for a host behind this box alone.
    pub fn nat_type(&self) -> NatType {
        if self.block_udp {
            NatType::Blocked
        } else {
            NatType::from_behaviour(self.translate, self.mapping, self.filtering)
        }
    }
}

/// The destination part of a mapping's key: what makes a NAT create a new mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum DestKey {
    Any,
    Ip(IpAddr),
    Addr(SocketAddr),
}

#[derive(Debug)]
struct Mapping {
    internal: SocketAddr,
    key: DestKey,
    last_active: Duration,
    /// Addresses the inside host sent to (address-and-port-dependent filtering).
    sent_to: HashSet<SocketAddr>,
    /// IPs the inside host sent to (address-dependent filtering).
    sent_to_ip: HashSet<IpAddr>,
}

impl Mapping {
    fn permit(&mut self, filtering: FilteringBehaviour, dst: SocketAddr) {
        match filtering {
            FilteringBehaviour::EndpointIndependent => {}
            FilteringBehaviour::AddressDependent => {
                self.sent_to_ip.insert(dst.ip());
            }
            FilteringBehaviour::AddressAndPortDependent => {
                self.sent_to.insert(dst);
            }
        }
    }

    fn admits(&self, filtering: FilteringBehaviour, src: SocketAddr) -> bool {
        match filtering {
            FilteringBehaviour::EndpointIndependent => true,
            FilteringBehaviour::AddressDependent => self.sent_to_ip.contains(&src.ip()),
            FilteringBehaviour::AddressAndPortDependent => self.sent_to.contains(&src),
        }
    }
}

/// A router's mapping table (for a firewall: its table of flows, with external = internal).
#[derive(Debug)]
pub(crate) struct Nat {
    by_key: HashMap<(SocketAddr, DestKey), SocketAddr>,
    by_external: HashMap<SocketAddr, Mapping>,
    /// (local port, external port) of the last mapping created, for sequential and
    /// local-port-dependent allocation.
    last_new: Option<(u16, u16)>,
    rng: Rng,
}

impl Nat {
    pub(crate) fn new(rng: Rng) -> Self {
        Nat {
            by_key: HashMap::new(),
            by_external: HashMap::new(),
            last_new: None,
            rng,
        }
    }

    /// Live mappings (expired ones are removed lazily, so this counts them until touched).
    pub(crate) fn len(&self) -> usize {
        self.by_external.len()
    }

    /// An inside datagram from `src` to `dst` leaves at `now`: the source it leaves with.
    /// `external_ip` is the NAT's public address (ignored by a firewall).
    pub(crate) fn outbound(
        &mut self,
        cfg: &RouterConfig,
        now: Duration,
        external_ip: IpAddr,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Result<SocketAddr, DropReason> {
        let dest = if cfg.translate {
            match cfg.mapping {
                MappingBehaviour::EndpointIndependent => DestKey::Any,
                MappingBehaviour::AddressDependent => DestKey::Ip(dst.ip()),
                MappingBehaviour::AddressAndPortDependent => DestKey::Addr(dst),
            }
        } else {
            DestKey::Any
        };
        let key = (src, dest);
        if let Some(&ext) = self.by_key.get(&key) {
            if let Some(m) = self.by_external.get_mut(&ext) {
                if now.saturating_sub(m.last_active) < cfg.mapping_timeout {
                    m.last_active = now;
                    m.permit(cfg.filtering, dst);
                    return Ok(ext);
                }
            }
            self.remove(ext);
        }
        let ext = if cfg.translate {
            let port = self
                .allocate(cfg, now, external_ip, src.port())
                .ok_or(DropReason::PortsExhausted)?;
            self.last_new = Some((src.port(), port));
            SocketAddr::new(external_ip, port)
        } else {
            src
        };
        let mut m = Mapping {
            internal: src,
            key: dest,
            last_active: now,
            sent_to: HashSet::new(),
            sent_to_ip: HashSet::new(),
        };
        m.permit(cfg.filtering, dst);
        self.by_key.insert(key, ext);
        self.by_external.insert(ext, m);
        Ok(ext)
    }

    /// An outside datagram from `src` reaches the public address `dst` at `now`: the inside
    /// address it goes to.
    pub(crate) fn inbound(
        &mut self,
        cfg: &RouterConfig,
        now: Duration,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Result<SocketAddr, DropReason> {
        let open = !cfg.translate && cfg.filtering == FilteringBehaviour::EndpointIndependent;
        let missing = if open {
            Ok(dst)
        } else if cfg.translate {
            Err(DropReason::NoMapping)
        } else {
            Err(DropReason::Filtered)
        };
        let Some(m) = self.by_external.get_mut(&dst) else {
            return missing;
        };
        if now.saturating_sub(m.last_active) >= cfg.mapping_timeout {
            self.remove(dst);
            return missing;
        }
        if !m.admits(cfg.filtering, src) {
            return Err(DropReason::Filtered);
        }
        m.last_active = now;
        Ok(m.internal)
    }

    fn remove(&mut self, ext: SocketAddr) {
        if let Some(m) = self.by_external.remove(&ext) {
            self.by_key.remove(&(m.internal, m.key));
        }
    }

    /// Whether `port` on `ip` is free at `now`, removing an expired mapping that held it.
    fn free(&mut self, cfg: &RouterConfig, now: Duration, ip: IpAddr, port: u16) -> bool {
        if !cfg.port_range.contains(&port) {
            return false;
        }
        let ext = SocketAddr::new(ip, port);
        match self.by_external.get(&ext) {
            None => true,
            Some(m) if now.saturating_sub(m.last_active) >= cfg.mapping_timeout => {
                self.remove(ext);
                true
            }
            Some(_) => false,
        }
    }

    fn allocate(
        &mut self,
        cfg: &RouterConfig,
        now: Duration,
        ip: IpAddr,
        local: u16,
    ) -> Option<u16> {
        let lo = *cfg.port_range.start();
        let hi = *cfg.port_range.end();
        if lo > hi {
            return None;
        }
        let size = u32::from(hi - lo) + 1;
        // `base` + `step` inside the range, wrapping.
        let wrap = |base: u16, step: u16| -> u16 {
            let off = (u32::from(base.max(lo) - lo) + u32::from(step)) % size;
            lo + off as u16
        };
        let wanted = match cfg.allocation {
            PortAllocation::Preserving => Some(local),
            PortAllocation::Offset(k) => local.checked_add(k),
            PortAllocation::Sequential { step } => self.last_new.map(|(_, e)| wrap(e, step)),
            PortAllocation::DependentOnLocal { step } => match self.last_new {
                Some((l, e)) if Some(local) == l.checked_add(1) => Some(wrap(e, step)),
                _ => None,
            },
            PortAllocation::Random => None,
        };
        if let Some(p) = wanted {
            if self.free(cfg, now, ip, p) {
                return Some(p);
            }
            if let PortAllocation::Sequential { .. } = cfg.allocation {
                // Keep the sequence going past a port in use.
                return self.scan(cfg, now, ip, wrap(p, 1), size);
            }
        }
        self.random_free(cfg, now, ip, lo, size)
    }

    fn random_free(
        &mut self,
        cfg: &RouterConfig,
        now: Duration,
        ip: IpAddr,
        lo: u16,
        size: u32,
    ) -> Option<u16> {
        for _ in 0..32 {
            let p = lo + self.rng.below(u64::from(size)) as u16;
            if self.free(cfg, now, ip, p) {
                return Some(p);
            }
        }
        let start = lo + self.rng.below(u64::from(size)) as u16;
        self.scan(cfg, now, ip, start, size)
    }

    /// The first free port from `start` upwards, wrapping inside the range.
    fn scan(
        &mut self,
        cfg: &RouterConfig,
        now: Duration,
        ip: IpAddr,
        start: u16,
        size: u32,
    ) -> Option<u16> {
        let lo = *cfg.port_range.start();
        let first = u32::from(start.max(lo) - lo);
        (0..size)
            .map(|i| lo + ((first + i) % size) as u16)
            .find(|&p| self.free(cfg, now, ip, p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const PUBLIC: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));

    #[test]
    fn endpoint_independent_mapping_reuses_the_port() {
        let cfg = RouterConfig::for_type(NatType::FullCone, DeltaKind::Random, 0);
        let mut nat = Nat::new(Rng::seed_from_u64(1));
        let src = addr("10.0.1.2:5000");
        let a = nat
            .outbound(&cfg, Duration::ZERO, PUBLIC, src, addr("1.1.1.1:3478"))
            .unwrap();
        let b = nat
            .outbound(&cfg, Duration::ZERO, PUBLIC, src, addr("2.2.2.2:9"))
            .unwrap();
        assert_eq!(a, b);
        assert!(cfg.port_range.contains(&a.port()));
    }

    #[test]
    fn symmetric_mapping_differs_per_destination_port() {
        let cfg = RouterConfig::for_type(NatType::Symmetric, DeltaKind::Independent, 3);
        let mut nat = Nat::new(Rng::seed_from_u64(1));
        let src = addr("10.0.1.2:5000");
        let a = nat
            .outbound(&cfg, Duration::ZERO, PUBLIC, src, addr("1.1.1.1:3478"))
            .unwrap();
        let b = nat
            .outbound(&cfg, Duration::ZERO, PUBLIC, src, addr("1.1.1.1:3479"))
            .unwrap();
        assert_eq!(b.port(), a.port() + 3);
    }

    #[test]
    fn filtering_admits_only_what_was_sent_to() {
        let cfg = RouterConfig::for_type(NatType::RestrictedCone, DeltaKind::Equal, 0);
        let mut nat = Nat::new(Rng::seed_from_u64(1));
        let src = addr("10.0.1.2:5000");
        let ext = nat
            .outbound(&cfg, Duration::ZERO, PUBLIC, src, addr("1.1.1.1:3478"))
            .unwrap();
        assert_eq!(ext, SocketAddr::new(PUBLIC, 5000));
        assert_eq!(
            nat.inbound(&cfg, Duration::ZERO, addr("1.1.1.1:1"), ext),
            Ok(src)
        );
        assert_eq!(
            nat.inbound(&cfg, Duration::ZERO, addr("3.3.3.3:3478"), ext),
            Err(DropReason::Filtered)
        );
        assert_eq!(
            nat.inbound(
                &cfg,
                Duration::ZERO,
                addr("1.1.1.1:1"),
                SocketAddr::new(PUBLIC, 6000)
            ),
            Err(DropReason::NoMapping)
        );
    }

    #[test]
    fn exhausted_range_drops() {
        let cfg = RouterConfig {
            port_range: 2000..=2001,
            ..RouterConfig::for_type(NatType::Symmetric, DeltaKind::Random, 0)
        };
        let mut nat = Nat::new(Rng::seed_from_u64(1));
        let src = addr("10.0.1.2:5000");
        for port in 1..=2 {
            let dst = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)), port);
            nat.outbound(&cfg, Duration::ZERO, PUBLIC, src, dst)
                .unwrap();
        }
        assert_eq!(
            nat.outbound(&cfg, Duration::ZERO, PUBLIC, src, addr("1.1.1.1:3")),
            Err(DropReason::PortsExhausted)
        );
        assert_eq!(nat.len(), 2);
        // After the idle timeout the ports are free again.
        let later = cfg.mapping_timeout;
        assert!(
            nat.outbound(&cfg, later, PUBLIC, src, addr("1.1.1.1:3"))
                .is_ok()
        );
    }
}
