//! The network: topology (hosts, routers, servers, links), the scheduler that moves
//! datagrams through it in virtual time, and the endpoints it drives.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use p2pd_core::Transport;
use p2pd_core::rng::Rng;
use p2pd_core::stun::{ServerConfig, StunServer};

use crate::endpoint::{Datagram, Endpoint, Hosted, StunEndpoint};
use crate::error::SimError;
use crate::event::{EventKind, EventQueue, Node};
use crate::host::{Host, HostConfig, Interface, InterfaceConfig};
use crate::link::{Dir, Link, LinkConfig, Transit};
use crate::nat::{Nat, RouterConfig};
use crate::stats::{DropReason, Stats};
use crate::trace::{Trace, TraceEntry, TraceKind};

/// Most datagrams taken from one endpoint after one input or timeout; a machine that keeps
/// producing more is broken, and the rest wait for its next turn.
const MAX_DRAIN: usize = 4096;

/// First address of the public pool (198.18.0.0/15, set aside for benchmarking networks).
const PUBLIC_POOL: u32 = u32::from_be_bytes([198, 18, 0, 1]);
/// Size of the public pool.
const PUBLIC_POOL_LEN: u32 = (1 << 17) - 2;

/// A router, by the order it was added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouterId(u32);

/// A host (servers are hosts too), by the order it was added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostId(u32);

/// A STUN server placed with [`Network::add_stun_server`]; it runs on its own host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId(HostId);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkId(usize);

impl RouterId {
    /// Its position in the order routers were added.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl HostId {
    /// Its position in the order hosts were added.
    pub fn index(self) -> usize {
        self.0 as usize
    }

    #[cfg(test)]
    pub(crate) fn from_index(i: u32) -> Self {
        HostId(i)
    }
}

impl ServerId {
    /// The host the server runs on.
    pub fn host(self) -> HostId {
        self.0
    }
}

/// Where a host interface or a router's public side is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attachment {
    /// Directly on the internet, with a public address.
    Internet,
    /// Inside this router's LAN.
    Behind(RouterId),
}

/// Why [`Network::run_until`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The predicate said done.
    Done,
    /// Nothing left to happen before the deadline; the clock is now at the deadline.
    Deadline,
    /// Nothing is scheduled at all; the clock is now at the deadline.
    Idle,
    /// The event budget ran out first.
    MaxEvents,
}

/// Where a routing table sends an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A host's interface.
    Host(HostId, usize),
    /// A router's public side.
    RouterWan(RouterId),
}

#[derive(Debug)]
struct Router {
    config: RouterConfig,
    /// A NAT's public address; `None` for a firewall.
    public_ip: Option<Ipv4Addr>,
    uplink: LinkId,
    /// Who in the LAN has which address (for a firewall: its inside hosts' public ones).
    lan: HashMap<IpAddr, Target>,
    lan_prefix: Ipv4Addr,
    next_lan: u8,
    nat: Nat,
    /// TCP flows get their own table, with the same behaviour (Linux conntrack keeps
    /// protocols apart too).
    nat_tcp: Nat,
}

/// A simulated network in virtual time.
///
/// Build it (routers, hosts, servers), attach endpoints, then [`run_until`](Self::run_until).
/// Everything random — link loss and jitter, NAT ports, free host ports — comes from the seed
/// given to [`new`](Self::new), forked per component in the order they are added, so the same
/// seed and the same setup give the same trace.
#[derive(Debug)]
pub struct Network {
    base: Instant,
    now: Duration,
    rng: Rng,
    /// The seed, for components added after the fact that must not shift `rng`'s draws.
    seed: u64,
    queue: EventQueue,
    links: Vec<Link>,
    routers: Vec<Router>,
    hosts: Vec<Host>,
    internet: HashMap<IpAddr, Target>,
    next_public: u32,
    stats: Stats,
    trace: Trace,
}

impl Network {
    /// An empty network whose randomness all follows from `seed`.
    pub fn new(seed: u64) -> Self {
        Network {
            // The one real clock reading: virtual instants are this plus virtual time, and
            // only differences between them mean anything.
            base: Instant::now(),
            now: Duration::ZERO,
            rng: Rng::seed_from_u64(seed),
            seed,
            queue: EventQueue::default(),
            links: Vec::new(),
            routers: Vec::new(),
            hosts: Vec::new(),
            internet: HashMap::new(),
            next_public: 0,
            stats: Stats::default(),
            trace: Trace::new(),
        }
    }

    // ----- time -----

    /// The current virtual instant.
    pub fn now(&self) -> Instant {
        self.base + self.now
    }

    /// Virtual time since the network was built.
    pub fn elapsed(&self) -> Duration {
        self.now
    }

    fn virtual_time(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.base)
    }

    // ----- building -----

    /// Adds a NAT box or firewall. A NAT gets a public address in its parent's address space
    /// (the internet, or the parent router's LAN) and a fresh LAN; a firewall gets neither:
    /// its inside hosts take addresses from its parent's space.
    pub fn add_router(&mut self, config: RouterConfig) -> Result<RouterId, SimError> {
        let id = RouterId(self.routers.len() as u32);
        self.check_attachment(config.parent)?;
        let lan_prefix = match config.lan_prefix {
            Some(p) => p,
            None => {
                let n = self.routers.len() + 1;
                if n > 0xFFFF {
                    return Err(SimError::AddressSpaceExhausted("10.0.0.0/8"));
                }
                Ipv4Addr::new(10, (n >> 8) as u8, n as u8, 0)
            }
        };
        let public_ip = if config.translate {
            let ip = self.place(
                config.parent,
                config.public_ip.map(IpAddr::V4),
                Target::RouterWan(id),
                true,
            )?;
            match ip {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            }
        } else {
            None
        };
        let uplink = self.add_link(config.link);
        let nat = Nat::new(self.rng.fork());
        // Seeded apart from `rng`, so adding TCP shifted no existing UDP draw.
        let nat_tcp = Nat::new(Rng::seed_from_u64(
            self.seed ^ 0x7c9_0000_0000 ^ u64::from(id.0),
        ));
        self.routers.push(Router {
            config,
            public_ip,
            uplink,
            lan: HashMap::new(),
            lan_prefix,
            next_lan: 2,
            nat,
            nat_tcp,
        });
        Ok(id)
    }

    /// Adds a host with the given interfaces.
    pub fn add_host(&mut self, config: HostConfig) -> Result<HostId, SimError> {
        if config.interfaces.is_empty() {
            return Err(SimError::NoInterfaces);
        }
        let id = HostId(self.hosts.len() as u32);
        for iface in &config.interfaces {
            self.check_attachment(iface.parent)?;
        }
        let mut interfaces = Vec::with_capacity(config.interfaces.len());
        for (n, iface) in config.interfaces.iter().enumerate() {
            let placed = self.place(iface.parent, iface.ip, Target::Host(id, n), false);
            let ip = match placed {
                Ok(ip) => ip,
                Err(e) => {
                    // Undo this host's earlier interfaces so a failed add leaves no trace.
                    for done in &interfaces {
                        self.unplace(done);
                    }
                    return Err(e);
                }
            };
            let link = self.add_link(iface.link);
            interfaces.push(Interface {
                ip,
                parent: iface.parent,
                link,
            });
        }
        let rng = self.rng.fork();
        self.hosts.push(Host {
            interfaces,
            app: None,
            used: Default::default(),
            rng,
            timer: None,
        });
        Ok(id)
    }

    /// Places core's [`StunServer`] on its own public host at the configuration's addresses:
    /// the primary, or all four RFC 5780 combinations when an alternate is given.
    pub fn add_stun_server(&mut self, config: ServerConfig) -> Result<ServerId, SimError> {
        self.add_stun_server_with_link(config, LinkConfig::default())
    }

    /// [`add_stun_server`](Self::add_stun_server) with a chosen link to the internet.
    pub fn add_stun_server_with_link(
        &mut self,
        config: ServerConfig,
        link: LinkConfig,
    ) -> Result<ServerId, SimError> {
        let endpoint = StunEndpoint::new(config)?;
        let mut host = HostConfig::default();
        for addr in endpoint.server().local_addresses() {
            if !host.interfaces.iter().any(|i| i.ip == Some(addr.ip())) {
                host = host.with_interface(
                    InterfaceConfig::new(Attachment::Internet)
                        .with_ip(addr.ip())
                        .with_link(link),
                );
            }
        }
        let id = self.add_host(host)?;
        self.attach(id, endpoint)?;
        Ok(ServerId(id))
    }

    /// The STUN server `id` (for its counters).
    pub fn stun_server(&self, id: ServerId) -> Option<&StunServer> {
        self.endpoint::<StunEndpoint>(id.0)
            .map(StunEndpoint::server)
    }

    /// Runs `endpoint` on `host` and lets it send what it wants to at once. A boxed
    /// `Box<dyn Endpoint>` works too (but can then be looked up only as that box).
    pub fn attach<E: Endpoint + 'static>(
        &mut self,
        host: HostId,
        endpoint: E,
    ) -> Result<(), SimError> {
        let h = self
            .hosts
            .get_mut(host.index())
            .ok_or(SimError::UnknownHost(host))?;
        if h.app.is_some() {
            return Err(SimError::HostBusy(host));
        }
        h.app = Some(Box::new(endpoint));
        self.service(host, |_, _| {});
        Ok(())
    }

    /// The endpoint on `host`, if it is an `E`.
    pub fn endpoint<E: Endpoint + 'static>(&self, host: HostId) -> Option<&E> {
        let app = self.hosts.get(host.index())?.app.as_ref()?;
        app.as_ref().as_any().downcast_ref()
    }

    /// Calls `f` on the endpoint on `host` (if it is an `E`) with the current virtual time,
    /// then sends what it queued and re-arms its timer — the way a driver hands a machine a
    /// command.
    pub fn with_endpoint<E: Endpoint + 'static, R>(
        &mut self,
        host: HostId,
        f: impl FnOnce(&mut E, Instant) -> R,
    ) -> Option<R> {
        let app = self.hosts.get(host.index())?.app.as_ref()?;
        app.as_ref().as_any().downcast_ref::<E>()?;
        self.service(host, |app, now| {
            app.as_any_mut().downcast_mut::<E>().map(|e| f(e, now))
        })
        .flatten()
    }

    /// A random free ephemeral port (49152–65535) on `host`'s address `ip`, reserved so the
    /// next call returns another — how a driver "binds" a socket.
    pub fn free_port(&mut self, host: HostId, ip: IpAddr) -> Result<u16, SimError> {
        self.free_port_range(host, ip, 1)
    }

    /// The first of `n` consecutive free ports on `host`'s address `ip`, all reserved.
    pub fn free_port_range(&mut self, host: HostId, ip: IpAddr, n: u16) -> Result<u16, SimError> {
        let h = self
            .hosts
            .get_mut(host.index())
            .ok_or(SimError::UnknownHost(host))?;
        if h.interface_of(ip).is_none() {
            return Err(SimError::NotHostAddress { host, ip });
        }
        h.free_range(ip, n).ok_or(SimError::NoFreePort(n))
    }

    // ----- inspection -----

    /// The addresses of `host`'s interfaces, in order.
    pub fn host_ips(&self, host: HostId) -> Vec<IpAddr> {
        self.hosts
            .get(host.index())
            .map(|h| h.interfaces.iter().map(|i| i.ip).collect())
            .unwrap_or_default()
    }

    /// The address of `host`'s first interface.
    pub fn host_ip(&self, host: HostId) -> Option<IpAddr> {
        Some(self.hosts.get(host.index())?.interfaces.first()?.ip)
    }

    /// A NAT's public address (`None` for a firewall or an unknown router).
    pub fn router_public_ip(&self, router: RouterId) -> Option<IpAddr> {
        self.routers.get(router.index())?.public_ip.map(IpAddr::V4)
    }

    /// A router's configuration.
    pub fn router_config(&self, router: RouterId) -> Option<&RouterConfig> {
        Some(&self.routers.get(router.index())?.config)
    }

    /// How many mappings (or firewall flows) a router holds, counting expired ones not yet
    /// reclaimed.
    pub fn router_mappings(&self, router: RouterId) -> usize {
        self.routers.get(router.index()).map_or(0, |r| r.nat.len())
    }

    /// Counters since the start or the last [`reset_stats`](Self::reset_stats).
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Zeroes the counters (the trace hash keeps running).
    pub fn reset_stats(&mut self) {
        self.stats = Stats::default();
    }

    /// Keep up to `limit` trace entries for [`trace`](Self::trace) (0, the default, keeps
    /// none; the hash is always kept).
    pub fn record_trace(&mut self, limit: usize) {
        self.trace.set_limit(limit);
    }

    /// The recorded trace entries.
    pub fn trace(&self) -> &[TraceEntry] {
        self.trace.entries()
    }

    /// A hash of everything that happened so far: every send, translation, delivery, drop and
    /// timeout, with its time, addresses and payload. Equal setups with equal seeds give
    /// equal hashes.
    pub fn trace_hash(&self) -> u64 {
        self.trace.hash()
    }

    /// Events waiting in the queue.
    pub fn pending_events(&self) -> usize {
        self.queue.len()
    }

    // ----- running -----

    /// Runs events until none is left before `deadline` or `max_events` have run. The clock
    /// ends at the deadline unless the budget ran out first.
    pub fn run_until(&mut self, deadline: Instant, max_events: u64) -> Stop {
        self.run_until_with(deadline, max_events, |_| false)
    }

    /// Runs for `duration` of virtual time (at most `max_events` events).
    pub fn run_for(&mut self, duration: Duration, max_events: u64) -> Stop {
        let deadline = self.now() + duration;
        self.run_until(deadline, max_events)
    }

    /// Like [`run_until`](Self::run_until), stopping early once `done` returns true (checked
    /// before the first event and after each one).
    pub fn run_until_with(
        &mut self,
        deadline: Instant,
        max_events: u64,
        mut done: impl FnMut(&Network) -> bool,
    ) -> Stop {
        let deadline = self.virtual_time(deadline);
        let mut ran = 0u64;
        loop {
            if done(self) {
                return Stop::Done;
            }
            if ran >= max_events {
                return Stop::MaxEvents;
            }
            match self.queue.peek_time() {
                None => {
                    self.now = self.now.max(deadline);
                    return Stop::Idle;
                }
                Some(t) if t > deadline => {
                    self.now = self.now.max(deadline);
                    return Stop::Deadline;
                }
                Some(_) => {}
            }
            if self.step() {
                ran += 1;
            }
        }
    }

    /// Processes the next event; false when it was a stale timer (which costs nothing).
    fn step(&mut self) -> bool {
        let Some(ev) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(ev.at);
        match ev.kind {
            EventKind::Arrive { node, datagram } => {
                self.stats.events += 1;
                self.arrive(node, datagram);
                true
            }
            EventKind::Timer { host } => {
                let now = self.now();
                let Some(h) = self.hosts.get_mut(host.index()) else {
                    return false;
                };
                if h.timer != Some(ev.at) {
                    return false;
                }
                h.timer = None;
                self.stats.events += 1;
                let due = h
                    .app
                    .as_ref()
                    .and_then(|a| a.poll_timeout())
                    .is_some_and(|t| t <= now);
                if due {
                    self.stats.timeouts += 1;
                    self.trace.record_timeout(self.now, host);
                }
                self.service(host, |app, now| {
                    if due {
                        app.handle_timeout(now);
                    }
                });
                true
            }
        }
    }

    fn arrive(&mut self, node: Node, d: Datagram) {
        match node {
            Node::Internet => match self.internet.get(&d.destination.ip()) {
                Some(&t) => self.forward(t, d),
                None => self.drop(DropReason::NoRoute, &d),
            },
            Node::RouterLan(r) => self.router_outbound(r, d),
            Node::RouterWan(r) => self.router_inbound(r, d),
            Node::Host(h) => self.deliver(h, d),
        }
    }

    /// A datagram from inside router `r`'s LAN.
    fn router_outbound(&mut self, r: RouterId, mut d: Datagram) {
        let now = self.now;
        let router = &mut self.routers[r.index()];
        let cfg = &router.config;
        let tcp = d.transport == Transport::Tcp;
        if cfg.block_udp && !tcp {
            return self.drop(DropReason::BlockedUdp, &d);
        }
        if let Some(&t) = router.lan.get(&d.destination.ip()) {
            return self.forward(t, d);
        }
        let public = router.public_ip.map(IpAddr::V4);
        if cfg.translate && public.is_some_and(|p| p.is_ipv4() != d.destination.is_ipv4()) {
            return self.drop(DropReason::NoRoute, &d);
        }
        let external = public.unwrap_or(d.source.ip());
        let hairpin = cfg.translate && public == Some(d.destination.ip());
        let (hairpinning, uplink, parent) = (cfg.hairpinning, router.uplink, cfg.parent);
        let table = if tcp {
            &mut router.nat_tcp
        } else {
            &mut router.nat
        };
        let source = match table.outbound(cfg, now, external, d.source, d.destination) {
            Ok(s) => s,
            Err(why) => return self.drop(why, &d),
        };
        if source != d.source {
            d.source = source;
            self.stats.translated += 1;
            self.record(TraceKind::Translated(r), &d);
        }
        if hairpin {
            if !hairpinning {
                return self.drop(DropReason::HairpinDisabled, &d);
            }
            return self.router_inbound(r, d);
        }
        self.send_link(uplink, Dir::Up, parent_node(parent), d);
    }

    /// A datagram reaching router `r` from its parent (or hairpinned back to it).
    fn router_inbound(&mut self, r: RouterId, mut d: Datagram) {
        let now = self.now;
        let router = &mut self.routers[r.index()];
        let cfg = &router.config;
        let tcp = d.transport == Transport::Tcp;
        if cfg.block_udp && !tcp {
            return self.drop(DropReason::BlockedUdp, &d);
        }
        if cfg.translate && router.public_ip.map(IpAddr::V4) != Some(d.destination.ip()) {
            return self.drop(DropReason::NoRoute, &d);
        }
        let table = if tcp {
            &mut router.nat_tcp
        } else {
            &mut router.nat
        };
        let inside = match table.inbound(cfg, now, d.source, d.destination) {
            Ok(a) => a,
            Err(why) => return self.drop(why, &d),
        };
        let Some(&target) = router.lan.get(&inside.ip()) else {
            return self.drop(DropReason::NoRoute, &d);
        };
        if inside != d.destination {
            d.destination = inside;
            self.stats.translated += 1;
            self.record(TraceKind::Translated(r), &d);
        }
        self.forward(target, d);
    }

    /// Sends `d` down the link to `target`.
    fn forward(&mut self, target: Target, d: Datagram) {
        match target {
            Target::Host(h, i) => {
                let link = self.hosts[h.index()].interfaces[i].link;
                self.send_link(link, Dir::Down, Node::Host(h), d);
            }
            Target::RouterWan(r) => {
                let link = self.routers[r.index()].uplink;
                self.send_link(link, Dir::Down, Node::RouterWan(r), d);
            }
        }
    }

    fn send_link(&mut self, link: LinkId, dir: Dir, to: Node, d: Datagram) {
        match self.links[link.0].transit(dir, self.now) {
            Transit::Lost => self.drop(DropReason::Loss, &d),
            Transit::Arrives {
                at,
                duplicate,
                held_back,
            } => {
                if held_back {
                    self.stats.held_back += 1;
                }
                if let Some(at2) = duplicate {
                    self.stats.duplicated += 1;
                    let copy = d.clone();
                    self.queue.push(
                        at,
                        EventKind::Arrive {
                            node: to,
                            datagram: d,
                        },
                    );
                    self.queue.push(
                        at2,
                        EventKind::Arrive {
                            node: to,
                            datagram: copy,
                        },
                    );
                } else {
                    self.queue.push(
                        at,
                        EventKind::Arrive {
                            node: to,
                            datagram: d,
                        },
                    );
                }
            }
        }
    }

    fn deliver(&mut self, host: HostId, d: Datagram) {
        let h = &self.hosts[host.index()];
        if h.app.is_none() {
            return self.drop(DropReason::NoEndpoint, &d);
        }
        self.stats.delivered += 1;
        self.record(TraceKind::Delivered(host), &d);
        self.service(host, |app, now| match d.transport {
            Transport::Udp => app.handle_input(now, d.source, d.destination, &d.contents),
            Transport::Tcp => app.handle_tcp(now, d.source, d.destination, &d.contents),
        });
    }

    /// Lets `f` drive the endpoint on `host`, then sends everything it queued and re-arms its
    /// timer.
    fn service<R>(
        &mut self,
        host: HostId,
        f: impl FnOnce(&mut dyn Hosted, Instant) -> R,
    ) -> Option<R> {
        let now = self.now();
        let mut app = self.hosts[host.index()].app.take()?;
        let out = f(app.as_mut(), now);
        for _ in 0..MAX_DRAIN {
            let Some(d) = app.poll_transmit() else { break };
            self.emit(host, d);
        }
        let due = app
            .poll_timeout()
            .map(|t| self.virtual_time(t).max(self.now));
        let h = &mut self.hosts[host.index()];
        h.app = Some(app);
        if due != h.timer {
            h.timer = due;
            if let Some(at) = due {
                self.queue.push(at, EventKind::Timer { host });
            }
        }
        Some(out)
    }

    /// A datagram an endpoint on `host` sent.
    fn emit(&mut self, host: HostId, d: Datagram) {
        self.stats.sent += 1;
        self.record(TraceKind::Sent(host), &d);
        let h = &mut self.hosts[host.index()];
        let Some(iface) = h.interface_of(d.source.ip()) else {
            return self.drop(DropReason::BadSource, &d);
        };
        if d.source.port() == 0 {
            return self.drop(DropReason::BadSource, &d);
        }
        let (link, parent) = (iface.link, iface.parent);
        h.used.insert((d.source.ip(), d.source.port()));
        self.send_link(link, Dir::Up, parent_node(parent), d);
    }

    fn drop(&mut self, why: DropReason, d: &Datagram) {
        self.stats.dropped.add(why);
        self.record(TraceKind::Dropped(why), d);
    }

    fn record(&mut self, kind: TraceKind, d: &Datagram) {
        self.trace
            .record(self.now, kind, d.source, d.destination, &d.contents);
    }

    // ----- addressing -----

    fn add_link(&mut self, config: LinkConfig) -> LinkId {
        let rng = self.rng.fork();
        self.links.push(Link::new(config, rng));
        LinkId(self.links.len() - 1)
    }

    fn check_attachment(&self, a: Attachment) -> Result<(), SimError> {
        match a {
            Attachment::Behind(r) if r.index() >= self.routers.len() => {
                Err(SimError::UnknownRouter(r))
            }
            _ => Ok(()),
        }
    }

    /// The firewalls between `parent` and the address space it draws from (the internet or a
    /// NAT's LAN), innermost first, and that space.
    fn address_space(&self, parent: Attachment) -> (Vec<RouterId>, Attachment) {
        let mut chain = Vec::new();
        let mut space = parent;
        while let Attachment::Behind(r) = space {
            let router = &self.routers[r.index()];
            if router.config.translate {
                break;
            }
            chain.push(r);
            space = router.config.parent;
        }
        (chain, space)
    }

    /// Gives `target` an address (`ip`, or a fresh one) under `parent` and routes it there
    /// through any firewalls in between.
    fn place(
        &mut self,
        parent: Attachment,
        ip: Option<IpAddr>,
        target: Target,
        ipv4_only: bool,
    ) -> Result<IpAddr, SimError> {
        let (chain, space) = self.address_space(parent);
        let ip = match ip {
            Some(ip) => {
                if self.space_table(space).contains_key(&ip) {
                    return Err(SimError::AddressInUse(ip));
                }
                ip
            }
            None => self.allocate(space)?,
        };
        if ipv4_only && ip.is_ipv6() {
            return Err(SimError::AddressSpaceExhausted(
                "IPv4 (a NAT needs an IPv4 address)",
            ));
        }
        let mut t = target;
        for r in chain {
            self.routers[r.index()].lan.insert(ip, t);
            t = Target::RouterWan(r);
        }
        self.space_table_mut(space).insert(ip, t);
        Ok(ip)
    }

    /// Removes an interface placed by [`place`](Self::place).
    fn unplace(&mut self, iface: &Interface) {
        let (chain, space) = self.address_space(iface.parent);
        for r in chain {
            self.routers[r.index()].lan.remove(&iface.ip);
        }
        self.space_table_mut(space).remove(&iface.ip);
    }

    fn space_table(&self, space: Attachment) -> &HashMap<IpAddr, Target> {
        match space {
            Attachment::Internet => &self.internet,
            Attachment::Behind(r) => &self.routers[r.index()].lan,
        }
    }

    fn space_table_mut(&mut self, space: Attachment) -> &mut HashMap<IpAddr, Target> {
        match space {
            Attachment::Internet => &mut self.internet,
            Attachment::Behind(r) => &mut self.routers[r.index()].lan,
        }
    }

    /// A fresh address in `space`: the next free one of the public pool or of the NAT's /24.
    fn allocate(&mut self, space: Attachment) -> Result<IpAddr, SimError> {
        match space {
            Attachment::Internet => {
                while self.next_public < PUBLIC_POOL_LEN {
                    let ip = IpAddr::V4(Ipv4Addr::from(PUBLIC_POOL + self.next_public));
                    self.next_public += 1;
                    if !self.internet.contains_key(&ip) {
                        return Ok(ip);
                    }
                }
                Err(SimError::AddressSpaceExhausted(
                    "the public pool 198.18.0.0/15",
                ))
            }
            Attachment::Behind(r) => {
                let router = &mut self.routers[r.index()];
                let [a, b, c, _] = router.lan_prefix.octets();
                while router.next_lan < 255 {
                    let ip = IpAddr::V4(Ipv4Addr::new(a, b, c, router.next_lan));
                    router.next_lan += 1;
                    if !router.lan.contains_key(&ip) {
                        return Ok(ip);
                    }
                }
                Err(SimError::AddressSpaceExhausted("a router's /24 LAN"))
            }
        }
    }
}

fn parent_node(parent: Attachment) -> Node {
    match parent {
        Attachment::Internet => Node::Internet,
        Attachment::Behind(r) => Node::RouterLan(r),
    }
}
