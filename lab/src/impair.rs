//! Delay, jitter and loss on a router's uplink (the veth between a public router and
//! the server's bridge), applied inside the server namespace in both directions.
//!
//! - Loss: an nftables `bridge` table drops `numgen random mod 100 < N` of the IP
//!   frames entering or leaving the bridge port (ARP is left alone).
//! - Delay/jitter: `bridge-nf-call-iptables` makes bridged IP traffic visit the IP
//!   hooks, where iptables `NFQUEUE` rules (mangle PREROUTING for frames from the
//!   port, POSTROUTING for bridged frames to it, OUTPUT for the server's own packets
//!   to the router) hand packets to a `p2pd-lab-delay` process. The kernel has no
//!   nft `queue` expression, hence iptables. With `--queue-bypass`, a stopped
//!   delayer never blackholes traffic.
//!
//! Peer-to-peer traffic between two routers crosses two uplinks, so it sees both
//! links' settings, as on a real path.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{LabError, Result};
use crate::process::{self, BgProcess};
use crate::topology::{Lab, Upstream, lock};

/// Environment variable naming the `p2pd-lab-delay` binary explicitly.
pub const DELAY_BIN_ENV: &str = "P2PD_LAB_DELAY_BIN";

/// Impairment of one uplink, applied to each direction separately.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkParams {
    /// One-way delay added to every packet.
    pub delay: Duration,
    /// Extra delay uniform in `[-jitter, +jitter]` (may reorder packets).
    pub jitter: Duration,
    /// Percentage (0-100) of IP packets dropped, per direction.
    pub loss_percent: u8,
}

impl LinkParams {
    /// No impairment.
    pub const CLEAN: LinkParams = LinkParams {
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        loss_percent: 0,
    };

    /// Only a one-way delay.
    pub fn delay(delay: Duration) -> LinkParams {
        LinkParams {
            delay,
            ..LinkParams::CLEAN
        }
    }

    /// Only loss.
    pub fn loss(percent: u8) -> LinkParams {
        LinkParams {
            loss_percent: percent,
            ..LinkParams::CLEAN
        }
    }
}

/// Current impairments and the delayers serving them.
#[derive(Debug, Default)]
pub(crate) struct Links {
    params: BTreeMap<usize, LinkParams>,
    delayers: BTreeMap<usize, BgProcess>,
    bridge_nf: bool,
}

/// Finds `p2pd-lab-delay`: `$P2PD_LAB_DELAY_BIN`, else next to the running executable
/// or one directory up (where cargo puts binaries relative to test executables).
pub fn delay_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(DELAY_BIN_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(LabError::Prerequisite(format!(
                "{DELAY_BIN_ENV}={} is not a file",
                p.display()
            )))
        };
    }
    let exe =
        std::env::current_exe().map_err(|e| LabError::io("find the current executable", e))?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("p2pd-lab-delay"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            LabError::Prerequisite(format!(
                "p2pd-lab-delay not found next to {}; build it with \
                 `cargo build -p p2pd-lab --bin p2pd-lab-delay` or set {DELAY_BIN_ENV}",
                exe.display()
            ))
        })
}

/// First NFQUEUE number; router `j`'s uplink uses `QUEUE_BASE + j`.
const QUEUE_BASE: u16 = 100;

impl Lab {
    /// Sets delay, jitter and loss on router `i`'s uplink (replacing earlier settings;
    /// [`LinkParams::CLEAN`] removes them). Only routers on the public segment have
    /// an uplink into the server namespace.
    pub fn set_link(&self, i: usize, params: LinkParams) -> Result<()> {
        let r = self
            .routers()
            .get(i)
            .ok_or_else(|| LabError::Invalid(format!("no router {i}")))?;
        if r.upstream() != Upstream::Public {
            return Err(LabError::Invalid(format!(
                "router {i} is not on the public segment; impair its upstream router instead"
            )));
        }
        if params.loss_percent > 100 {
            return Err(LabError::Invalid(format!(
                "loss {}% is over 100%",
                params.loss_percent
            )));
        }
        let mut links = lock(&self.links);
        let old = links.params.get(&i).copied().unwrap_or(LinkParams::CLEAN);
        links.params.insert(i, params);
        if old.loss_percent != params.loss_percent {
            self.server()
                .nft(&loss_rules(&links.params), "load the link-loss rules")?;
        }
        if (old.delay, old.jitter) != (params.delay, params.jitter) {
            if let Some(d) = links.delayers.remove(&i) {
                d.stop(Duration::from_secs(3));
            }
            if !params.delay.is_zero() || !params.jitter.is_zero() {
                if !links.bridge_nf {
                    let mut s = vec!["net.bridge.bridge-nf-call-iptables=1"];
                    if self.has_ipv6() {
                        s.push("net.bridge.bridge-nf-call-ip6tables=1");
                    }
                    self.server().sysctl(&s)?;
                    links.bridge_nf = true;
                }
                let bin = delay_binary()?;
                let q = (QUEUE_BASE + i as u16).to_string();
                let delay = params.delay.as_micros().to_string();
                let jitter = params.jitter.as_micros().to_string();
                let seed = (i + 1).to_string();
                let d = self.spawn(
                    self.server(),
                    "delay",
                    &[
                        bin.as_os_str(),
                        "--queue".as_ref(),
                        q.as_ref(),
                        "--delay-us".as_ref(),
                        delay.as_ref(),
                        "--jitter-us".as_ref(),
                        jitter.as_ref(),
                        "--seed".as_ref(),
                        seed.as_ref(),
                    ],
                )?;
                d.wait_for_log("ready on queue", Duration::from_secs(5))?;
                links.delayers.insert(i, d);
            }
            let delayed: Vec<usize> = links.delayers.keys().copied().collect();
            self.load_queue_rules(&delayed)?;
        }
        Ok(())
    }

    /// Current settings of router `i`'s uplink.
    pub fn link(&self, i: usize) -> LinkParams {
        lock(&self.links)
            .params
            .get(&i)
            .copied()
            .unwrap_or(LinkParams::CLEAN)
    }

    /// Replaces the server's iptables/ip6tables mangle rules with queues for `routers`.
    fn load_queue_rules(&self, routers: &[usize]) -> Result<()> {
        let families: &[(&str, bool)] = &[("iptables-restore", false), ("ip6tables-restore", true)];
        for (tool, v6) in families {
            if *v6 && !self.has_ipv6() {
                continue;
            }
            let mut t = String::from(
                "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n",
            );
            for &j in routers {
                let q = QUEUE_BASE + j as u16;
                let target = format!("-j NFQUEUE --queue-num {q} --queue-bypass");
                t.push_str(&format!(
                    "-A PREROUTING -m physdev --physdev-in r{j} {target}\n"
                ));
                t.push_str(&format!(
                    "-A POSTROUTING -m physdev --physdev-out r{j} --physdev-is-bridged {target}\n"
                ));
                if *v6 {
                    t.push_str(&format!("-A OUTPUT -d 2001:db8:10:{j:x}::/64 {target}\n"));
                    if let Some(w6) = self.router(j).wan_addr6() {
                        t.push_str(&format!("-A OUTPUT -d {w6} {target}\n"));
                    }
                } else {
                    for a in self.addrs_behind(j) {
                        t.push_str(&format!("-A OUTPUT -d {a} {target}\n"));
                    }
                }
            }
            t.push_str("COMMIT\n");
            let file = crate::netns::write_temp(&t, "rules")?;
            let mut cmd = self.server().command(tool, [file.path()]);
            cmd.env_remove("XTABLES_LOCKFILE");
            process::run_ok(
                cmd,
                crate::netns::CONFIG_TIMEOUT,
                "load the link-delay queue rules",
            )?;
        }
        Ok(())
    }
}

/// The `bridge p2pimp` table dropping a share of the IP frames on each uplink.
fn loss_rules(params: &BTreeMap<usize, LinkParams>) -> String {
    let mut pre = String::new();
    let mut post = String::new();
    for (j, p) in params.iter().filter(|(_, p)| p.loss_percent > 0) {
        let n = p.loss_percent;
        for (chain, dir) in [(&mut pre, "iifname"), (&mut post, "oifname")] {
            chain.push_str(&format!(
                "    {dir} \"r{j}\" ether type ip numgen random mod 100 < {n} drop\n    \
                 {dir} \"r{j}\" ether type ip6 ip6 nexthdr {{ tcp, udp }} numgen random mod 100 < {n} drop\n"
            ));
        }
    }
    format!(
        "table bridge p2pimp\ndelete table bridge p2pimp\ntable bridge p2pimp {{\n  \
         chain pre {{\n    type filter hook prerouting priority 0; policy accept;\n{pre}  }}\n  \
         chain post {{\n    type filter hook postrouting priority 0; policy accept;\n{post}  }}\n}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_rules_cover_both_directions_of_lossy_links_only() {
        let mut m = BTreeMap::new();
        m.insert(0, LinkParams::loss(30));
        m.insert(1, LinkParams::delay(Duration::from_millis(5)));
        let r = loss_rules(&m);
        assert!(r.contains("iifname \"r0\" ether type ip numgen random mod 100 < 30 drop"));
        assert!(r.contains("oifname \"r0\" ether type ip numgen random mod 100 < 30 drop"));
        assert!(!r.contains("\"r1\""));
    }
}
