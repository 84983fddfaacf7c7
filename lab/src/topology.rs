//! Topologies: which namespaces exist, how they are wired, and their teardown.
//!
//! ```text
//!  host h0 --eth0--+                                   +--wan0-- router r1 --lan0-- ...
//!                  lan0 router r0 --wan0-- (r0) br0 server (r1)
//!  host h1 --eth0--+                  198.51.100.1 + 203.0.113.1
//! ```
//! The server namespace holds the "internet": a bridge `br0` with two public
//! documentation addresses. A router's WAN veth is created inside the router with
//! its peer inside the upstream namespace (the server, or a carrier-grade router),
//! so nothing is ever linked to the host's root namespace.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::error::{LabError, Result};
use crate::netns::{CONFIG_TIMEOUT, Netns};
use crate::process::{self, BgProcess, Output};
use crate::router::{self, RouterKind, RouterNet};

/// The server's first public address (STUN primary, TURN, MQTT).
pub const SERVER_IP1: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The server's second public address (STUN "other address").
pub const SERVER_IP2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The server's first IPv6 address (when the lab has IPv6).
pub const SERVER_IP6_1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
/// The server's second IPv6 address (when the lab has IPv6).
pub const SERVER_IP6_2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);

/// Prefix of every namespace and state directory the lab creates.
pub const NAME_PREFIX: &str = "p2l";

/// Where a router's WAN side is plugged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// The public segment (the server's bridge).
    Public,
    /// The LAN of an earlier router (that router then acts as a carrier-grade NAT and
    /// its LAN uses 100.64.N.0/24).
    Router(usize),
}

/// Describes a topology before it is built. Routers must be added before the routers
/// and hosts that sit behind them.
#[derive(Debug, Clone, Default)]
pub struct LabBuilder {
    routers: Vec<(Upstream, RouterKind)>,
    hosts: Vec<Vec<usize>>,
    ipv6: bool,
}

impl LabBuilder {
    /// Adds a router (index = number of routers added before it).
    pub fn router(mut self, upstream: Upstream, kind: RouterKind) -> Self {
        self.routers.push((upstream, kind));
        self
    }

    /// Adds a host with one interface per router in `routers` (`eth0` behind the first).
    pub fn host(mut self, routers: &[usize]) -> Self {
        self.hosts.push(routers.to_vec());
        self
    }

    /// Gives the server, the public routers and their LANs IPv6 addresses
    /// (2001:db8::/32). Routers never translate IPv6; NAT kinds firewall it.
    pub fn ipv6(mut self, on: bool) -> Self {
        self.ipv6 = on;
        self
    }

    /// Creates the namespaces, links, addresses, routes and router rules.
    pub fn build(self) -> Result<Lab> {
        self.check()?;
        let mut lab = Lab::empty(self.ipv6)?;
        lab.wire(&self)?;
        Ok(lab)
    }

    fn check(&self) -> Result<()> {
        for (j, (up, kind)) in self.routers.iter().enumerate() {
            kind.validate()?;
            if let Upstream::Router(i) = up {
                if *i >= j {
                    return Err(LabError::Invalid(format!(
                        "router {j} sits behind router {i}: add upstream routers first"
                    )));
                }
            }
        }
        if self.routers.len() > 200 || self.hosts.len() > 200 {
            return Err(LabError::Invalid(
                "at most 200 routers and 200 hosts".into(),
            ));
        }
        for (h, links) in self.hosts.iter().enumerate() {
            if links.is_empty() || links.len() > 8 {
                return Err(LabError::Invalid(format!("host {h} needs 1 to 8 routers")));
            }
            if let Some(r) = links.iter().find(|r| **r >= self.routers.len()) {
                return Err(LabError::Invalid(format!(
                    "host {h} refers to missing router {r}"
                )));
            }
        }
        Ok(())
    }
}

/// A router namespace: WAN `wan0`, LAN bridge `lan0`, rules in `table inet p2plab`.
#[derive(Debug)]
pub struct Router {
    index: usize,
    ns: Netns,
    upstream: Upstream,
    wan: Ipv4Addr,
    wan_gateway: Ipv4Addr,
    lan: Ipv4Addr,
    lan_gateway: Ipv4Addr,
    wan6: Option<Ipv6Addr>,
    lan6_gateway: Option<Ipv6Addr>,
    kind: Mutex<RouterKind>,
    next_lan_host: Mutex<u8>,
    /// The first host plugged into this router's LAN, if any.
    first_host: Mutex<Option<Ipv4Addr>>,
}

impl Router {
    /// Position in the lab's router list.
    pub fn index(&self) -> usize {
        self.index
    }
    /// The router's namespace.
    pub fn ns(&self) -> &Netns {
        &self.ns
    }
    /// Where its WAN is plugged in.
    pub fn upstream(&self) -> Upstream {
        self.upstream
    }
    /// Its WAN address (public for routers on the public segment, 100.64/10 behind a CGN).
    pub fn wan_addr(&self) -> Ipv4Addr {
        self.wan
    }
    /// Its IPv6 WAN address, when the lab has IPv6 and the router is public.
    pub fn wan_addr6(&self) -> Option<Ipv6Addr> {
        self.wan6
    }
    /// Its LAN address (the hosts' gateway).
    pub fn lan_gateway(&self) -> Ipv4Addr {
        self.lan_gateway
    }
    /// Its IPv6 LAN address, when it has one.
    pub fn lan_gateway6(&self) -> Option<Ipv6Addr> {
        self.lan6_gateway
    }
    /// Its LAN subnet as (network address, prefix length).
    pub fn lan_subnet(&self) -> (Ipv4Addr, u8) {
        (self.lan, 24)
    }
    /// Its current behaviour.
    pub fn kind(&self) -> RouterKind {
        *lock(&self.kind)
    }
    /// The first host on its LAN (miniupnpd tests map ports to it).
    pub fn first_host(&self) -> Option<Ipv4Addr> {
        *lock(&self.first_host)
    }

    fn net(&self) -> RouterNet {
        RouterNet {
            wan: self.wan,
            lan: (self.lan, 24),
        }
    }
}

/// A host namespace with `eth0` (and `eth1`... when multihomed).
#[derive(Debug)]
pub struct Host {
    index: usize,
    ns: Netns,
    addrs: Vec<Ipv4Addr>,
    gateways: Vec<Ipv4Addr>,
    routers: Vec<usize>,
    addr6: Option<Ipv6Addr>,
}

impl Host {
    /// Position in the lab's host list.
    pub fn index(&self) -> usize {
        self.index
    }
    /// The host's namespace.
    pub fn ns(&self) -> &Netns {
        &self.ns
    }
    /// Its address on `eth0`.
    pub fn addr(&self) -> Ipv4Addr {
        self.addrs[0]
    }
    /// Its addresses, `eth0` first. Traffic from address k leaves through interface k.
    pub fn addrs(&self) -> &[Ipv4Addr] {
        &self.addrs
    }
    /// Its gateways, one per interface.
    pub fn gateways(&self) -> &[Ipv4Addr] {
        &self.gateways
    }
    /// The routers it sits behind, one per interface.
    pub fn routers(&self) -> &[usize] {
        &self.routers
    }
    /// Its global IPv6 address, when the lab has IPv6.
    pub fn addr6(&self) -> Option<Ipv6Addr> {
        self.addr6
    }
    /// Runs `argv` inside the host's namespace (see [`Netns::run`]).
    pub fn run<S: AsRef<OsStr>>(&self, argv: &[S], timeout: Duration) -> Result<Output> {
        self.ns.run(argv, timeout)
    }
}

/// A built lab. Dropping it stops every process it started, deletes every
/// namespace it created and removes its state directory — also during a panic.
#[derive(Debug)]
pub struct Lab {
    name: String,
    state_dir: PathBuf,
    server: Netns,
    routers: Vec<Router>,
    hosts: Vec<Host>,
    ipv6: bool,
    /// Namespaces that may exist, in creation order.
    created: Vec<String>,
    procs: Mutex<Vec<BgProcess>>,
    pub(crate) services: Mutex<crate::servers::Services>,
    pub(crate) links: Mutex<crate::impair::Links>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Root of all lab state directories.
pub fn state_root() -> PathBuf {
    std::env::temp_dir().join("p2pd-lab")
}

impl Lab {
    /// Starts describing a custom topology.
    pub fn builder() -> LabBuilder {
        LabBuilder::default()
    }

    /// Two LANs behind two routers on the public segment (peer-to-peer tests).
    /// Router 0 (`a`) serves host 0, router 1 (`b`) serves host 1.
    pub fn two_lans(a: RouterKind, b: RouterKind) -> Result<Lab> {
        Lab::builder()
            .router(Upstream::Public, a)
            .router(Upstream::Public, b)
            .host(&[0])
            .host(&[1])
            .build()
    }

    /// Two hosts (0 and 1) on one LAN behind router 0.
    pub fn one_lan(kind: RouterKind) -> Result<Lab> {
        Lab::builder()
            .router(Upstream::Public, kind)
            .host(&[0])
            .host(&[0])
            .build()
    }

    /// Double NAT: host 0 behind home router 1, which sits behind carrier-grade
    /// router 0 (100.64.0.0/24 between them); host 1 behind router 2 (a plain home
    /// router on the public segment) as a peer.
    pub fn double_nat(home: RouterKind, carrier: RouterKind) -> Result<Lab> {
        Lab::builder()
            .router(Upstream::Public, carrier)
            .router(Upstream::Router(0), home)
            .router(Upstream::Public, RouterKind::HOME)
            .host(&[1])
            .host(&[2])
            .build()
    }

    /// Host 0 with `eth0` behind router 0 and `eth1` behind router 1; host 1 behind
    /// router 1 as a peer.
    pub fn multihomed(a: RouterKind, b: RouterKind) -> Result<Lab> {
        Lab::builder()
            .router(Upstream::Public, a)
            .router(Upstream::Public, b)
            .host(&[0, 1])
            .host(&[1])
            .build()
    }

    /// Like [`Lab::two_lans`] with IPv6 everywhere: IPv4 behaves per `kind`, IPv6 is
    /// routed without translation through a stateful firewall (open for
    /// [`RouterKind::Open`], UDP dropped for [`RouterKind::UdpBlocked`]).
    pub fn ipv6(kind: RouterKind) -> Result<Lab> {
        Lab::builder()
            .router(Upstream::Public, kind)
            .router(Upstream::Public, kind)
            .host(&[0])
            .host(&[1])
            .ipv6(true)
            .build()
    }

    /// Unique name of this lab; every namespace it creates starts with it.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Directory with server configs and logs; removed on drop.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
    /// The server namespace (public side; servers and link impairments live here).
    pub fn server(&self) -> &Netns {
        &self.server
    }
    /// Router `i`; panics if it does not exist (a test bug).
    pub fn router(&self, i: usize) -> &Router {
        &self.routers[i]
    }
    /// All routers.
    pub fn routers(&self) -> &[Router] {
        &self.routers
    }
    /// Host `i`; panics if it does not exist (a test bug).
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }
    /// All hosts.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }
    /// True when the lab has IPv6 addresses.
    pub fn has_ipv6(&self) -> bool {
        self.ipv6
    }
    /// Names of the namespaces this lab created.
    pub fn namespaces(&self) -> Vec<String> {
        self.created.clone()
    }
    /// PIDs of the background processes the lab started (running or not).
    pub fn pids(&self) -> Vec<u32> {
        lock(&self.procs).iter().map(BgProcess::pid).collect()
    }

    /// Starts `argv` in the background inside `ns`; output goes to
    /// `<state dir>/<name>.log`. The lab stops it on teardown.
    pub fn spawn<S: AsRef<OsStr>>(&self, ns: &Netns, name: &str, argv: &[S]) -> Result<BgProcess> {
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| LabError::Invalid("spawn: empty command line".into()))?;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(LabError::Invalid(format!(
                "spawn: name {name:?} must be [A-Za-z0-9_-]+"
            )));
        }
        let n = lock(&self.procs).len();
        let log = self.state_dir.join(format!("{name}.{n}.log"));
        let p = BgProcess::spawn(name, ns.command(prog, args), &log)?;
        lock(&self.procs).push(p.clone());
        Ok(p)
    }

    /// Changes router `i`'s behaviour and flushes its conntrack table.
    pub fn set_router_kind(&self, i: usize, kind: RouterKind) -> Result<()> {
        kind.validate()?;
        let r = self
            .routers
            .get(i)
            .ok_or_else(|| LabError::Invalid(format!("no router {i}")))?;
        let rules = format!(
            "table inet p2plab\ndelete table inet p2plab\n{}",
            router::ruleset(kind, &r.net())
        );
        r.ns.nft(&rules, &format!("load {kind:?} rules into {}", r.ns.name()))?;
        r.ns.run_ok(
            &["conntrack", "-F"],
            &format!("flush conntrack in {}", r.ns.name()),
        )?;
        *lock(&r.kind) = kind;
        Ok(())
    }

    /// Stops everything and deletes everything now, reporting the first error.
    /// (Dropping the lab does the same, printing errors instead.)
    pub fn shutdown(mut self) -> Result<()> {
        self.teardown()
    }

    fn empty(ipv6: bool) -> Result<Lab> {
        cleanup_stale();
        let name = format!(
            "{NAME_PREFIX}{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let state_dir = state_root().join(&name);
        std::fs::create_dir_all(&state_dir)
            .map_err(|e| LabError::io(format!("create {}", state_dir.display()), e))?;
        Ok(Lab {
            server: Netns::new(format!("{name}s")),
            name,
            state_dir,
            routers: Vec::new(),
            hosts: Vec::new(),
            ipv6,
            created: Vec::new(),
            procs: Mutex::new(Vec::new()),
            services: Mutex::new(Default::default()),
            links: Mutex::new(Default::default()),
        })
    }

    fn wire(&mut self, spec: &LabBuilder) -> Result<()> {
        let name = self.name.clone();
        // Which routers have routers behind them (they get a 100.64/10 LAN).
        let carriers: BTreeSet<usize> = spec
            .routers
            .iter()
            .filter_map(|(u, _)| match u {
                Upstream::Router(i) => Some(*i),
                Upstream::Public => None,
            })
            .collect();
        let mut public_n: u8 = 0;
        for (j, (up, kind)) in spec.routers.iter().enumerate() {
            let jj = u8::try_from(j).map_err(|_| LabError::Invalid("too many routers".into()))?;
            let lan = if carriers.contains(&j) {
                Ipv4Addr::new(100, 64, jj, 0)
            } else {
                Ipv4Addr::new(10, 0, jj, 0)
            };
            let (wan, wan_gateway, wan6) = match up {
                Upstream::Public => {
                    public_n += 1;
                    let wan6 = self.ipv6.then(|| {
                        Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1 + u16::from(public_n))
                    });
                    (Ipv4Addr::new(198, 51, 100, 1 + public_n), SERVER_IP1, wan6)
                }
                Upstream::Router(i) => {
                    let parent = &self.routers[*i];
                    let a = next_addr(parent)?;
                    (a, parent.lan_gateway, None)
                }
            };
            let lan6_gateway =
                wan6.map(|_| Ipv6Addr::new(0x2001, 0xdb8, 0x10, u16::from(jj), 0, 0, 0, 1));
            self.routers.push(Router {
                index: j,
                ns: Netns::new(format!("{name}r{j}")),
                upstream: *up,
                wan,
                wan_gateway,
                lan,
                lan_gateway: Ipv4Addr::new(lan.octets()[0], lan.octets()[1], jj, 1),
                wan6,
                lan6_gateway,
                kind: Mutex::new(*kind),
                next_lan_host: Mutex::new(2),
                first_host: Mutex::new(None),
            });
        }
        for (h, links) in spec.hosts.iter().enumerate() {
            let mut addrs = Vec::new();
            let mut gateways = Vec::new();
            let mut addr6 = None;
            for &r in links {
                let router = &self.routers[r];
                let a = next_addr(router)?;
                lock(&router.first_host).get_or_insert(a);
                addrs.push(a);
                gateways.push(router.lan_gateway);
                if addr6.is_none() {
                    addr6 = router.lan6_gateway.map(|g| {
                        let s = g.segments();
                        Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, u16::from(a.octets()[3]))
                    });
                }
            }
            self.hosts.push(Host {
                index: h,
                ns: Netns::new(format!("{name}h{h}")),
                addrs,
                gateways,
                routers: links.clone(),
                addr6,
            });
        }

        // 1. all namespaces, in one `ip -batch`
        let mut all = vec![self.server.name().to_string()];
        all.extend(self.routers.iter().map(|r| r.ns.name().to_string()));
        all.extend(self.hosts.iter().map(|h| h.ns.name().to_string()));
        self.created = all.clone();
        let mut cmd = Command::new("ip");
        let batch: Vec<String> = all.iter().map(|n| format!("netns add {n}")).collect();
        let file = crate::netns::write_temp(&batch.join("\n"), "ip")?;
        cmd.arg("-batch").arg(file.path());
        process::run_ok(cmd, CONFIG_TIMEOUT, "create the lab's network namespaces")?;

        // 2. the server: bridge with both public addresses
        let mut srv = vec![
            "link set lo up".to_string(),
            "link add br0 type bridge".into(),
            "link set br0 up".into(),
            format!("addr add {SERVER_IP1}/24 dev br0"),
            format!("addr add {SERVER_IP2}/24 dev br0"),
        ];
        if self.ipv6 {
            srv.push(format!("addr add {SERVER_IP6_1}/64 dev br0 nodad"));
            srv.push(format!("addr add {SERVER_IP6_2}/64 dev br0 nodad"));
        }
        self.server
            .ip_batch(&srv, "configure the server namespace")?;

        // 3. routers: LAN bridge, WAN veth with its peer in the upstream namespace
        for r in &self.routers {
            let up_ns = self.upstream_ns(r.upstream);
            let mut b = vec![
                "link set lo up".to_string(),
                "link add lan0 type bridge".into(),
                "link set lan0 up".into(),
                format!("addr add {}/24 dev lan0", r.lan_gateway),
                format!(
                    "link add wan0 type veth peer name r{} netns {}",
                    r.index,
                    up_ns.name()
                ),
                format!("addr add {}/24 dev wan0", r.wan),
                "link set wan0 up".into(),
                format!("route add default via {}", r.wan_gateway),
            ];
            if let (Some(w6), Some(l6)) = (r.wan6, r.lan6_gateway) {
                b.push(format!("addr add {w6}/64 dev wan0 nodad"));
                b.push(format!("addr add {l6}/64 dev lan0 nodad"));
                b.push(format!("route add default via {SERVER_IP6_1}"));
            }
            r.ns.ip_batch(&b, &format!("configure router {}", r.ns.name()))?;
        }

        // 4. hosts: one veth per link, peer plugged into the router's LAN
        for h in &self.hosts {
            let mut b = vec!["link set lo up".to_string()];
            for (k, (&r, (&a, &gw))) in h
                .routers
                .iter()
                .zip(h.addrs.iter().zip(&h.gateways))
                .enumerate()
            {
                let router = &self.routers[r];
                let table = 100 + k;
                b.push(format!(
                    "link add eth{k} type veth peer name h{}e{k} netns {}",
                    h.index,
                    router.ns.name()
                ));
                b.push(format!("addr add {a}/24 dev eth{k}"));
                b.push(format!("link set eth{k} up"));
                b.push(format!(
                    "route add default via {gw} dev eth{k} metric {table}"
                ));
                b.push(format!(
                    "route add default via {gw} dev eth{k} table {table}"
                ));
                b.push(format!("rule add from {a} table {table}"));
                if k == 0 {
                    if let (Some(a6), Some(g6)) = (h.addr6, router.lan6_gateway) {
                        b.push(format!("addr add {a6}/64 dev eth0 nodad"));
                        b.push(format!("route add default via {g6}"));
                    }
                }
            }
            h.ns.ip_batch(&b, &format!("configure host {}", h.ns.name()))?;
        }

        // 5. plug the peers into bridges; routes to the LANs behind routers
        let mut srv_b = Vec::new();
        let mut router_b: Vec<Vec<String>> = vec![Vec::new(); self.routers.len()];
        for r in &self.routers {
            let port = format!("r{}", r.index);
            let lines = [
                format!("link set {port} master {}", bridge(r.upstream)),
                format!("link set {port} up"),
            ];
            match r.upstream {
                Upstream::Public => srv_b.extend(lines),
                Upstream::Router(i) => router_b[i].extend(lines),
            }
        }
        for h in &self.hosts {
            for (k, &r) in h.routers.iter().enumerate() {
                router_b[r].push(format!("link set h{}e{k} master lan0", h.index));
                router_b[r].push(format!("link set h{}e{k} up", h.index));
            }
        }
        for r in &self.routers {
            // Every node on r's upstream segment (the upstream itself and r's siblings)
            // reaches r's LAN and everything behind it through r's WAN address.
            let subnets = self.subnets_behind(r.index);
            let mut lines: Vec<String> = subnets
                .iter()
                .map(|s| format!("route add {s} via {}", r.wan))
                .collect();
            if let Some(w6) = r.wan6 {
                lines.push(format!("route add 2001:db8:10:{:x}::/64 via {w6}", r.index));
            }
            match r.upstream {
                Upstream::Public => srv_b.extend(lines.iter().cloned()),
                Upstream::Router(i) => router_b[i].extend(lines.iter().cloned()),
            }
            for s in &self.routers {
                if s.index != r.index && s.upstream == r.upstream {
                    router_b[s.index].extend(lines.iter().cloned());
                }
            }
        }
        self.server
            .ip_batch(&srv_b, "plug routers into the public bridge")?;
        for (r, b) in self.routers.iter().zip(&router_b) {
            r.ns.ip_batch(b, &format!("plug links into {}", r.ns.name()))?;
        }

        // 6. router sysctls and rules
        for r in &self.routers {
            let mut s = vec![
                "net.ipv4.ip_forward=1",
                // The router's own sockets (miniupnpd's STUN) stay out of the NAT range.
                "net.ipv4.ip_local_port_range=61000 65000",
            ];
            if r.wan6.is_some() {
                s.push("net.ipv6.conf.all.forwarding=1");
            }
            r.ns.sysctl(&s)?;
            let rules = router::ruleset(r.kind(), &r.net());
            r.ns.nft(
                &rules,
                &format!("load {:?} rules into {}", r.kind(), r.ns.name()),
            )?;
        }

        // 7. The kernel activates a device's queue in its link-watch work, up to a
        // second after carrier-up; packets sent before that are dropped (typically
        // the first ARP request). Wait, bounded, until every link is UP.
        self.wait_links_up(Duration::from_secs(5))
    }

    fn wait_links_up(&self, timeout: Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        // A bridge counts once a port is plugged in.
        let has_ports = |j: usize| {
            self.hosts.iter().any(|h| h.routers.contains(&j))
                || self
                    .routers
                    .iter()
                    .any(|r| r.upstream == Upstream::Router(j))
        };
        let public = self.routers.iter().any(|r| r.upstream == Upstream::Public);
        let mut pending: Vec<(&Netns, Option<&str>)> =
            vec![(&self.server, public.then_some("br0"))];
        pending.extend(
            self.routers
                .iter()
                .map(|r| (&r.ns, has_ports(r.index).then_some("lan0"))),
        );
        pending.extend(self.hosts.iter().map(|h| (&h.ns, None)));
        loop {
            let mut still = Vec::new();
            for (ns, bridge) in pending {
                let mut cmd = Command::new("ip");
                cmd.args(["-n", ns.name(), "-br", "link", "show"]);
                let out = process::run_ok(cmd, CONFIG_TIMEOUT, "check the lab's links")?;
                let down = out.stdout.lines().any(|l| {
                    let mut cols = l.split_whitespace();
                    let name = cols.next().unwrap_or("").split('@').next().unwrap_or("");
                    let state = cols.next().unwrap_or("");
                    let veth = name != "lo" && name != "br0" && name != "lan0";
                    (veth || Some(name) == bridge) && state != "UP"
                });
                if down {
                    still.push((ns, bridge));
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: "bring the lab's links up".into(),
                    after: timeout,
                    detail: format!(
                        "still down in {:?}",
                        still.iter().map(|(n, _)| n.name()).collect::<Vec<_>>()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
            pending = still;
        }
    }

    fn upstream_ns(&self, up: Upstream) -> &Netns {
        match up {
            Upstream::Public => &self.server,
            Upstream::Router(i) => &self.routers[i].ns,
        }
    }

    /// Router `j`'s LAN and the LANs of every router behind it.
    fn subnets_behind(&self, j: usize) -> Vec<String> {
        let mut out = vec![format!("{}/24", self.routers[j].lan)];
        for r in &self.routers {
            if r.upstream == Upstream::Router(j) {
                out.extend(self.subnets_behind(r.index));
            }
        }
        out
    }

    /// Every address reachable through router `j`'s WAN link (for link impairments).
    pub(crate) fn addrs_behind(&self, j: usize) -> Vec<String> {
        let r = &self.routers[j];
        let mut out = vec![r.wan.to_string()];
        out.extend(self.subnets_behind(j));
        out
    }

    fn teardown(&mut self) -> Result<()> {
        let mut first: Option<LabError> = None;
        // 1. processes the lab started: SIGTERM all, then wait for each (bounded).
        let procs: Vec<BgProcess> = std::mem::take(&mut *lock(&self.procs));
        std::thread::scope(|s| {
            for p in &procs {
                s.spawn(move || p.stop(Duration::from_secs(3)));
            }
        });
        // 2. namespaces (their veths, bridges, rules and conntrack go with them)
        let existing = list_netns().unwrap_or_default();
        let mine: Vec<&String> = self
            .created
            .iter()
            .filter(|n| existing.contains(*n))
            .collect();
        if !mine.is_empty() {
            let batch: Vec<String> = mine.iter().map(|n| format!("netns del {n}")).collect();
            let res = crate::netns::write_temp(&batch.join("\n"), "ip").and_then(|f| {
                let mut cmd = Command::new("ip");
                cmd.arg("-force").arg("-batch").arg(f.path());
                process::run_ok(cmd, CONFIG_TIMEOUT, "delete the lab's namespaces")
            });
            if let Err(e) = res {
                first.get_or_insert(e);
            }
        }
        self.created.clear();
        // 3. state directory
        if self.state_dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.state_dir) {
                first.get_or_insert(LabError::io(
                    format!("remove {}", self.state_dir.display()),
                    e,
                ));
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("p2pd-lab: teardown of {} incomplete: {e}", self.name);
        }
    }
}

fn bridge(up: Upstream) -> &'static str {
    match up {
        Upstream::Public => "br0",
        Upstream::Router(_) => "lan0",
    }
}

/// Next free address on `router`'s LAN.
fn next_addr(router: &Router) -> Result<Ipv4Addr> {
    let mut n = lock(&router.next_lan_host);
    if *n >= 250 {
        return Err(LabError::Invalid(format!(
            "LAN of router {} is full",
            router.index
        )));
    }
    let o = router.lan.octets();
    let a = Ipv4Addr::new(o[0], o[1], o[2], *n);
    *n += 1;
    Ok(a)
}

/// Names from `ip netns list`.
pub fn list_netns() -> Result<Vec<String>> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "list"]);
    let out = process::run_ok(cmd, CONFIG_TIMEOUT, "list network namespaces")?;
    Ok(out
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect())
}

/// The PID encoded in a lab namespace or state-dir name (`p2l<pid>x<n>...`).
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let (pid, tail) = rest.split_once('x')?;
    if tail.is_empty() || !tail.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Removes what labs of processes that no longer exist left behind (after SIGKILL).
fn cleanup_stale() {
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    if let Ok(names) = list_netns() {
        for n in names {
            let Some(pid) = owner_pid(&n) else { continue };
            if alive(pid) {
                continue;
            }
            let ns = Netns::new(n.clone());
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "pids", &n]);
            if let Ok(out) = process::run(cmd, CONFIG_TIMEOUT, "list stale lab processes") {
                for p in out
                    .stdout
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(p),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "del", ns.name()]);
            let _ = process::run(cmd, CONFIG_TIMEOUT, "delete a stale lab namespace");
        }
    }
    if let Ok(dirs) = std::fs::read_dir(state_root()) {
        for d in dirs.flatten() {
            let name = d.file_name().to_string_lossy().into_owned();
            if owner_pid(&name).is_some_and(|pid| !alive(pid)) {
                let _ = std::fs::remove_dir_all(d.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_only_lab_names() {
        assert_eq!(owner_pid("p2l1234x0s"), Some(1234));
        assert_eq!(owner_pid("p2l1234x12h3"), Some(1234));
        assert_eq!(owner_pid("p2lx0"), None);
        assert_eq!(owner_pid("p2l12"), None);
        assert_eq!(owner_pid("nl-srv"), None);
        assert_eq!(owner_pid("p2l12xab"), None);
    }

    #[test]
    fn builder_rejects_bad_topologies() {
        let e = Lab::builder()
            .router(Upstream::Router(0), RouterKind::HOME)
            .build()
            .expect_err("router behind itself");
        assert!(e.to_string().contains("add upstream routers first"));
        let e = Lab::builder()
            .router(Upstream::Public, RouterKind::HOME)
            .host(&[3])
            .build()
            .expect_err("missing router");
        assert!(e.to_string().contains("missing router 3"));
    }
}
