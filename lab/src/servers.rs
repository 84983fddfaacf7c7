//! Real servers on the public side: coturn (STUN/TURN), mosquitto (MQTT), and
//! miniupnpd (UPnP IGD, NAT-PMP, PCP) inside a router.
//!
//! Configs are written into the lab's state directory; each server runs in the
//! foreground under the lab's process tracking and is considered started only once
//! its sockets are bound (checked with `ss` inside the namespace, bounded in time).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::error::{LabError, Result};
use crate::netns::{Netns, Proto};
use crate::process::BgProcess;
use crate::router::{MINIUPNPD_SKELETON, MINIUPNPD_SKELETON_IPV6_FIREWALL, RouterKind};
use crate::topology::{Lab, SERVER_IP1, SERVER_IP2, SERVER_IP6_1, SERVER_IP6_2, lock};

/// STUN/TURN port (RFC 5780 primary).
pub const STUN_PORT: u16 = 3478;
/// STUN alternate port (RFC 5780 "other address" uses it with [`SERVER_IP2`]).
pub const STUN_ALT_PORT: u16 = 3479;
/// TURN long-term credential user.
pub const TURN_USER: &str = "user";
/// TURN long-term credential password.
pub const TURN_PASSWORD: &str = "pass";
/// TURN realm.
pub const TURN_REALM: &str = "natlab.test";
/// First port of coturn's relay range.
pub const TURN_RELAY_PORTS: (u16, u16) = (49152, 49999);
/// MQTT broker port on [`SERVER_IP1`].
pub const MQTT_PORT: u16 = 1883;
/// miniupnpd's HTTP (UPnP IGD) port on the router's LAN address.
pub const UPNP_HTTP_PORT: u16 = 5000;
/// NAT-PMP and PCP port on the router's LAN address.
pub const NATPMP_PORT: u16 = 5351;

/// How long a server may take to bind its sockets.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Servers the lab runs, so each is started at most once.
#[derive(Debug, Default)]
pub(crate) struct Services {
    coturn: Option<BgProcess>,
    mosquitto: Option<BgProcess>,
    miniupnpd: BTreeMap<usize, BgProcess>,
    skeleton: Vec<usize>,
}

/// Fails with the server's log if it is no longer running.
fn still_running(p: &BgProcess, ns: &Netns) -> Result<()> {
    if p.is_running() {
        return Ok(());
    }
    Err(LabError::Server {
        server: p.name().to_string(),
        netns: ns.name().to_string(),
        reason: format!("it exited ({:?})", p.exit_status()),
        log: p.log_path().to_path_buf(),
        log_tail: p.log_tail(20),
    })
}

impl Lab {
    fn server_addrs(&self) -> Vec<IpAddr> {
        let mut v = vec![IpAddr::V4(SERVER_IP1), IpAddr::V4(SERVER_IP2)];
        if self.has_ipv6() {
            v.push(IpAddr::V6(SERVER_IP6_1));
            v.push(IpAddr::V6(SERVER_IP6_2));
        }
        v
    }

    fn write_config(&self, file: &str, text: &str) -> Result<std::path::PathBuf> {
        let path = self.state_dir().join(file);
        std::fs::write(&path, text)
            .map_err(|e| LabError::io(format!("write {}", path.display()), e))?;
        Ok(path)
    }

    fn spawn_coturn(&self) -> Result<(BgProcess, Vec<(Proto, SocketAddr)>)> {
        self.spawn_coturn_with("")
    }

    /// coturn with `extra` lines appended to its configuration.
    fn spawn_coturn_with(&self, extra: &str) -> Result<(BgProcess, Vec<(Proto, SocketAddr)>)> {
        let addrs = self.server_addrs();
        let mut conf =
            String::from("# coturn: STUN (RFC 5780 with two addresses x two ports) + TURN\n");
        for a in &addrs {
            conf.push_str(&format!("listening-ip={a}\n"));
        }
        conf.push_str(&format!("relay-ip={SERVER_IP1}\n"));
        if self.has_ipv6() {
            conf.push_str(&format!("relay-ip={SERVER_IP6_1}\n"));
        }
        conf.push_str(&format!(
            "listening-port={STUN_PORT}\nalt-listening-port={STUN_ALT_PORT}\n\
             min-port={}\nmax-port={}\nrealm={TURN_REALM}\nlt-cred-mech\nuser={TURN_USER}:{TURN_PASSWORD}\n\
             fingerprint\nno-tls\nno-dtls\nno-cli\nno-software-attribute\nno-multicast-peers\n\
             pidfile={}\nlog-file=stdout\nsimple-log\nverbose\n",
            TURN_RELAY_PORTS.0,
            TURN_RELAY_PORTS.1,
            self.state_dir().join("turnserver.pid").display()
        ));
        conf.push_str(extra);
        let path = self.write_config("turnserver.conf", &conf)?;
        let p = self.spawn(
            self.server(),
            "turnserver",
            &["turnserver".as_ref(), "-c".as_ref(), path.as_os_str()],
        )?;
        let mut want = Vec::new();
        for a in addrs {
            for port in [STUN_PORT, STUN_ALT_PORT] {
                want.push((Proto::Udp, SocketAddr::new(a, port)));
                want.push((Proto::Tcp, SocketAddr::new(a, port)));
            }
        }
        Ok((p, want))
    }

    fn spawn_mosquitto(&self) -> Result<(BgProcess, Vec<(Proto, SocketAddr)>)> {
        let mut listeners = vec![IpAddr::V4(SERVER_IP1)];
        if self.has_ipv6() {
            listeners.push(IpAddr::V6(SERVER_IP6_1));
        }
        let mut conf = String::from("# mosquitto: anonymous MQTT on the public address\n");
        for a in &listeners {
            conf.push_str(&format!("listener {MQTT_PORT} {a}\n"));
        }
        conf.push_str("allow_anonymous true\npersistence false\nlog_dest stderr\nlog_type all\n");
        let path = self.write_config("mosquitto.conf", &conf)?;
        let p = self.spawn(
            self.server(),
            "mosquitto",
            &["mosquitto".as_ref(), "-c".as_ref(), path.as_os_str()],
        )?;
        let want = listeners
            .into_iter()
            .map(|a| (Proto::Tcp, SocketAddr::new(a, MQTT_PORT)))
            .collect();
        Ok((p, want))
    }

    fn await_ready(&self, p: &BgProcess, ns: &Netns, want: &[(Proto, SocketAddr)]) -> Result<()> {
        ns.wait_listening(want, READY_TIMEOUT, || still_running(p, ns))
            .map_err(|e| match e {
                LabError::Timeout { detail, .. } => LabError::Server {
                    server: p.name().to_string(),
                    netns: ns.name().to_string(),
                    reason: format!("sockets not bound within {READY_TIMEOUT:?} ({detail})"),
                    log: p.log_path().to_path_buf(),
                    log_tail: p.log_tail(20),
                },
                other => other,
            })
    }

    /// Starts coturn in the server namespace (STUN on both addresses and ports,
    /// TURN with long-term credentials over UDP and TCP, no CLI) and waits until
    /// every socket is bound. Idempotent.
    pub fn start_coturn(&self) -> Result<BgProcess> {
        if let Some(p) = &lock(&self.services).coturn {
            return Ok(p.clone());
        }
        let (p, want) = self.spawn_coturn()?;
        self.await_ready(&p, self.server(), &want)?;
        lock(&self.services).coturn = Some(p.clone());
        Ok(p)
    }

    /// Starts coturn as [`start_coturn`](Self::start_coturn) does, but granting TURN
    /// allocations at most `secs` seconds (`max-allocate-lifetime`; coturn otherwise
    /// raises any requested lifetime below 600 s to 600 s), so that tests can watch
    /// refreshes keep an allocation alive. Idempotent: a coturn already running is kept
    /// as it is.
    pub fn start_coturn_max_lifetime(&self, secs: u32) -> Result<BgProcess> {
        if let Some(p) = &lock(&self.services).coturn {
            return Ok(p.clone());
        }
        let (p, want) = self.spawn_coturn_with(&format!("max-allocate-lifetime={secs}\n"))?;
        self.await_ready(&p, self.server(), &want)?;
        lock(&self.services).coturn = Some(p.clone());
        Ok(p)
    }

    /// Starts mosquitto (anonymous MQTT on [`SERVER_IP1`]:[`MQTT_PORT`]) and waits
    /// until it listens. Idempotent.
    pub fn start_mosquitto(&self) -> Result<BgProcess> {
        if let Some(p) = &lock(&self.services).mosquitto {
            return Ok(p.clone());
        }
        let (p, want) = self.spawn_mosquitto()?;
        self.await_ready(&p, self.server(), &want)?;
        lock(&self.services).mosquitto = Some(p.clone());
        Ok(p)
    }

    /// Starts coturn and mosquitto together (both spawn first, then both are awaited).
    pub fn start_servers(&self) -> Result<()> {
        let have_turn = lock(&self.services).coturn.is_some();
        let have_mqtt = lock(&self.services).mosquitto.is_some();
        let turn = if have_turn {
            None
        } else {
            Some(self.spawn_coturn()?)
        };
        let mqtt = if have_mqtt {
            None
        } else {
            Some(self.spawn_mosquitto()?)
        };
        let mut want = Vec::new();
        for (_, w) in turn.iter().chain(mqtt.iter()) {
            want.extend(w.iter().copied());
        }
        self.server().wait_listening(&want, READY_TIMEOUT, || {
            for (p, _) in turn.iter().chain(mqtt.iter()) {
                still_running(p, self.server())?;
            }
            Ok(())
        })?;
        let mut s = lock(&self.services);
        if let Some((p, _)) = turn {
            s.coturn = Some(p);
        }
        if let Some((p, _)) = mqtt {
            s.mosquitto = Some(p);
        }
        Ok(())
    }

    /// Starts miniupnpd (UPnP IGD, NAT-PMP and PCP) inside router `i`.
    ///
    /// Starts coturn first if needed: miniupnpd refuses to forward ports on a
    /// "reserved" WAN address (the documentation ranges) unless its own STUN check
    /// against coturn finds the address reachable. The check runs while the router
    /// is a plain home router; the router's kind is restored afterwards.
    pub fn start_miniupnpd(&self, i: usize) -> Result<BgProcess> {
        self.start_miniupnpd_with(i, false)
    }

    /// Like [`Lab::start_miniupnpd`], with miniupnpd's IPv6 side on: IGD over IPv6 on
    /// the router's LAN IPv6 address and IPv6 pinholes (WANIPv6FirewallControl). The
    /// router then firewalls inbound IPv6 in miniupnpd's own forward chain (established
    /// flows and pinholes pass, everything else new from `wan0` is dropped), so use a
    /// router of kind [`RouterKind::Open`] in a lab with IPv6 (its IPv6 is otherwise
    /// dropped in the lab's own table, where miniupnpd's pinholes cannot reach).
    pub fn start_miniupnpd_ipv6(&self, i: usize) -> Result<BgProcess> {
        self.start_miniupnpd_with(i, true)
    }

    fn start_miniupnpd_with(&self, i: usize, ipv6: bool) -> Result<BgProcess> {
        if let Some(p) = lock(&self.services).miniupnpd.get(&i) {
            return Ok(p.clone());
        }
        let r = self
            .routers()
            .get(i)
            .ok_or_else(|| LabError::Invalid(format!("no router {i}")))?;
        if r.upstream() != crate::topology::Upstream::Public {
            return Err(LabError::Invalid(format!(
                "router {i} is behind another router: miniupnpd's STUN check only works on the public segment"
            )));
        }
        self.start_coturn()?;
        let lan6 =
            if ipv6 {
                Some(r.lan_gateway6().ok_or_else(|| {
                    LabError::Invalid(format!("router {i} has no IPv6 LAN address"))
                })?)
            } else {
                None
            };
        if !lock(&self.services).skeleton.contains(&i) {
            let skeleton = if ipv6 {
                MINIUPNPD_SKELETON_IPV6_FIREWALL
            } else {
                MINIUPNPD_SKELETON
            };
            r.ns().nft(skeleton, "create miniupnpd's nft chains")?;
            lock(&self.services).skeleton.push(i);
        }
        let kind = r.kind();
        if kind != RouterKind::HOME {
            self.set_router_kind(i, RouterKind::HOME)?;
        }
        let (net, _) = r.lan_subnet();
        let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
            .map_err(|e| LabError::io("read a random uuid", e))?;
        let conf = format!(
            "# miniupnpd 2.3.1 (nftables backend) in router {i}\n\
             ext_ifname=wan0\nlistening_ip=lan0\nhttp_port={UPNP_HTTP_PORT}\n\
             enable_upnp=yes\nenable_natpmp=yes\nsecure_mode=yes\n{}system_uptime=yes\n\
             uuid={}\nlease_file={}\n\
             # the WAN address is a documentation address; STUN proves it reachable\n\
             ext_perform_stun=yes\next_stun_host={SERVER_IP1}\next_stun_port={STUN_PORT}\n\
             allow 1024-65535 {net}/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n",
            match lan6 {
                // miniupnpd binds SSDP and HTTP to ipv6_listening_ip when set, which
                // keeps multicast M-SEARCH and IPv4 HTTP out; without it, it listens on
                // lan0's addresses (and advertises the global one).
                Some(_) => String::new(),
                None => "ipv6_disable=yes\n".into(),
            },
            uuid.trim(),
            self.state_dir().join(format!("upnp{i}.leases")).display()
        );
        let path = self.write_config(&format!("miniupnpd{i}.conf"), &conf)?;
        let pid = self.state_dir().join(format!("miniupnpd{i}.pid"));
        let p = self.spawn(
            r.ns(),
            "miniupnpd",
            &[
                "miniupnpd".as_ref(),
                "-d".as_ref(),
                "-f".as_ref(),
                path.as_os_str(),
                "-P".as_ref(),
                pid.as_os_str(),
            ],
        )?;
        let ready = p
            .wait_for_log("Port forwarding is now enabled", READY_TIMEOUT)
            .and_then(|()| {
                // NAT-PMP/PCP on the LAN address; HTTP (IGD) on whatever address it picks.
                let want = [(
                    Proto::Udp,
                    SocketAddr::new(IpAddr::V4(r.lan_gateway()), NATPMP_PORT),
                )];
                self.await_ready(&p, r.ns(), &want)?;
                let http = r
                    .ns()
                    .listening()?
                    .iter()
                    .any(|(pr, a)| *pr == Proto::Tcp && a.port() == UPNP_HTTP_PORT);
                if http {
                    Ok(())
                } else {
                    Err(LabError::Server {
                        server: "miniupnpd".into(),
                        netns: r.ns().name().to_string(),
                        reason: format!("nothing listens on TCP port {UPNP_HTTP_PORT}"),
                        log: p.log_path().to_path_buf(),
                        log_tail: p.log_tail(20),
                    })
                }
            });
        // Restore the requested behaviour whatever happened.
        let restored = if kind != RouterKind::HOME {
            self.set_router_kind(i, kind)
        } else {
            Ok(())
        };
        ready?;
        restored?;
        lock(&self.services).miniupnpd.insert(i, p.clone());
        Ok(p)
    }
}
