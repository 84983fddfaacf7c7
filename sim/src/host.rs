//! Hosts: machines with one or more interfaces, each on the internet or behind a router, and
//! at most one endpoint.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use p2pd_core::rng::Rng;

use crate::endpoint::Hosted;
use crate::link::LinkConfig;
use crate::network::{Attachment, LinkId, RouterId};

/// One network interface of a host.
#[derive(Debug, Clone, PartialEq)]
pub struct InterfaceConfig {
    /// On the internet (a public address) or behind a router (a LAN address).
    pub parent: Attachment,
    /// The address to use; allocated when `None`.
    pub ip: Option<IpAddr>,
    /// The link to the parent.
    pub link: LinkConfig,
}

impl InterfaceConfig {
    /// An interface attached to `parent` with an allocated address and a default link.
    pub fn new(parent: Attachment) -> Self {
        InterfaceConfig {
            parent,
            ip: None,
            link: LinkConfig::default(),
        }
    }

    /// The same interface with address `ip`.
    pub fn with_ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// The same interface with this link.
    pub fn with_link(mut self, link: LinkConfig) -> Self {
        self.link = link;
        self
    }
}

/// A host to add to the network.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HostConfig {
    /// Its interfaces, in order (the first is the host's primary address).
    pub interfaces: Vec<InterfaceConfig>,
}

impl HostConfig {
    /// A host with one public interface.
    pub fn internet() -> Self {
        HostConfig::default().with_interface(InterfaceConfig::new(Attachment::Internet))
    }

    /// A host with one interface behind `router`.
    pub fn behind(router: RouterId) -> Self {
        HostConfig::default().with_interface(InterfaceConfig::new(Attachment::Behind(router)))
    }

    /// The same host with another interface.
    pub fn with_interface(mut self, iface: InterfaceConfig) -> Self {
        self.interfaces.push(iface);
        self
    }

    /// The same host with every interface's link set to `link`.
    pub fn with_link(mut self, link: LinkConfig) -> Self {
        for i in &mut self.interfaces {
            i.link = link;
        }
        self
    }
}

#[derive(Debug)]
pub(crate) struct Interface {
    pub(crate) ip: IpAddr,
    pub(crate) parent: Attachment,
    pub(crate) link: LinkId,
}

/// First port handed out by [`Network::free_port`](crate::Network::free_port) (IANA dynamic
/// ports, 49152–65535).
pub(crate) const EPHEMERAL_START: u16 = 49152;

pub(crate) struct Host {
    pub(crate) interfaces: Vec<Interface>,
    pub(crate) app: Option<Box<dyn Hosted>>,
    /// Ports handed out or sent from, per address.
    pub(crate) used: HashSet<(IpAddr, u16)>,
    pub(crate) rng: Rng,
    /// The timer event currently armed.
    pub(crate) timer: Option<Duration>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("interfaces", &self.interfaces)
            .field("has_endpoint", &self.app.is_some())
            .field("timer", &self.timer)
            .finish_non_exhaustive()
    }
}

impl Host {
    pub(crate) fn interface_of(&self, ip: IpAddr) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.ip == ip)
    }

    /// The first of `n` consecutive free ports on `ip` from a random start, all marked used.
    pub(crate) fn free_range(&mut self, ip: IpAddr, n: u16) -> Option<u16> {
        let span = u32::from(u16::MAX - EPHEMERAL_START) + 1;
        let n32 = u32::from(n);
        if n == 0 || n32 > span {
            return None;
        }
        let starts = span - n32 + 1;
        let first = self.rng.below(u64::from(starts)) as u32;
        let start = (0..starts)
            .map(|i| EPHEMERAL_START + ((first + i) % starts) as u16)
            .find(|&s| (0..n).all(|k| !self.used.contains(&(ip, s + k))))?;
        for k in 0..n {
            self.used.insert((ip, start + k));
        }
        Some(start)
    }
}
