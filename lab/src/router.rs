//! Router behaviours and the nftables rules that produce them.
//!
//! Every router namespace has a WAN veth `wan0` and a LAN bridge `lan0`. Its behaviour
//! lives in one table, `inet p2plab`, which is replaced atomically when the kind
//! changes (the caller then flushes conntrack so old flows do not keep old NAT).
//! See the crate README for which of p2pd's 35 NAT configurations each kind yields.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::error::{LabError, Result};

/// The NAT port range the router translates into; its own sockets use 61000-65000.
pub const NAT_PORTS: (u16, u16) = (1024, 60999);

/// How a cone (endpoint-independent mapping) NAT picks the external port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortAlloc {
    /// Keep the local port when free (Linux default): p2pd delta `equal`.
    Preserve,
    /// External = local + d (wrapping inside the NAT range): delta `preserving`.
    Offset(u16),
    /// External = local × d (mod the range size): consecutive local ports map `d`
    /// apart, others unpredictably: delta `dependent`. `d` must be coprime with
    /// 59976 (the range size) so the map stays one-to-one.
    Dependent(u16),
    /// A fixed random permutation of the range (seeded): delta `random`.
    Random(u64),
}

/// First port and number of ports of the sequential symmetric NAT's counter.
const SEQ_BASE: u16 = 30000;
const SEQ_PORTS: u16 = 4096;

/// How a symmetric (address-and-port-dependent mapping) NAT picks the external port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymmetricPorts {
    /// `masquerade random`: a random port per new flow: delta `random`.
    Random,
    /// `masquerade fully-random`: same observable behaviour as `Random`.
    FullyRandom,
    /// `snat to WAN : numgen inc ...`: the next port (30000-34095, wrapping) per new
    /// flow: delta `independent` (+1).
    Sequential,
}

/// A router's behaviour. Changing it at runtime flushes the router's conntrack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterKind {
    /// Routing only, no NAT, no filter: p2pd `open_internet`.
    Open,
    /// No NAT, stateful filter (established/related in, new inbound dropped):
    /// p2pd `symmetric_udp_firewall`.
    Firewall,
    /// Endpoint-independent mapping and filtering (any remote may use a mapping):
    /// p2pd `full_cone`. UDP only; TCP behaves port-restricted.
    FullCone(PortAlloc),
    /// Endpoint-independent mapping, address-dependent filtering: p2pd
    /// `restricted_cone`. UDP only; TCP behaves port-restricted.
    RestrictedCone(PortAlloc),
    /// Endpoint-independent mapping, address-and-port-dependent filtering (plain
    /// conntrack): p2pd `port_restricted_cone`.
    PortRestrictedCone(PortAlloc),
    /// A new mapping per destination: p2pd `symmetric`.
    Symmetric(SymmetricPorts),
    /// Port-restricted NAT whose firewall drops all UDP from the LAN: p2pd `blocked`.
    UdpBlocked,
}

impl RouterKind {
    /// The usual home router: port-preserving masquerade.
    pub const HOME: RouterKind = RouterKind::PortRestrictedCone(PortAlloc::Preserve);

    /// True when the router translates IPv4 addresses.
    pub fn translates(self) -> bool {
        !matches!(self, RouterKind::Open | RouterKind::Firewall)
    }

    /// p2pd's NAT type name for this behaviour (the `nat` vocabulary).
    pub fn p2pd_nat_type(self) -> &'static str {
        match self {
            RouterKind::Open => "open_internet",
            RouterKind::Firewall => "symmetric_udp_firewall",
            RouterKind::FullCone(_) => "full_cone",
            RouterKind::RestrictedCone(_) => "restricted_cone",
            RouterKind::PortRestrictedCone(_) => "port_restricted_cone",
            RouterKind::Symmetric(_) => "symmetric",
            RouterKind::UdpBlocked => "blocked",
        }
    }

    /// p2pd's delta name for this behaviour, when one applies.
    pub fn p2pd_delta(self) -> Option<&'static str> {
        let alloc = match self {
            RouterKind::FullCone(a)
            | RouterKind::RestrictedCone(a)
            | RouterKind::PortRestrictedCone(a) => a,
            RouterKind::Symmetric(SymmetricPorts::Sequential) => return Some("independent"),
            RouterKind::Symmetric(_) => return Some("random"),
            RouterKind::UdpBlocked => return Some("equal"),
            RouterKind::Open | RouterKind::Firewall => return None,
        };
        Some(match alloc {
            PortAlloc::Preserve => "equal",
            PortAlloc::Offset(_) => "preserving",
            PortAlloc::Dependent(_) => "dependent",
            PortAlloc::Random(_) => "random",
        })
    }

    /// Checks parameters the kernel rules cannot express.
    pub fn validate(self) -> Result<()> {
        if let RouterKind::FullCone(a)
        | RouterKind::RestrictedCone(a)
        | RouterKind::PortRestrictedCone(a) = self
        {
            match a {
                PortAlloc::Dependent(d) if d == 0 || gcd(u64::from(d), range_len()) != 1 => {
                    return Err(LabError::Invalid(format!(
                        "PortAlloc::Dependent({d}): d must be coprime with {} (try 5, 11, 13, 19 or 23)",
                        range_len()
                    )));
                }
                PortAlloc::Offset(d) if u64::from(d) % range_len() == 0 => {
                    return Err(LabError::Invalid(format!(
                        "PortAlloc::Offset({d}) maps every port to itself; use PortAlloc::Preserve"
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn range_len() -> u64 {
    u64::from(NAT_PORTS.1 - NAT_PORTS.0) + 1
}

/// What the rules need to know about the router's place in the topology.
#[derive(Debug, Clone)]
pub(crate) struct RouterNet {
    /// The router's IPv4 address on `wan0`.
    pub wan: Ipv4Addr,
    /// Its LAN subnet (`a.b.c.0/24`).
    pub lan: (Ipv4Addr, u8),
}

/// External port of every local port `NAT_PORTS.0 + i` under an EIM port map
/// (`None` for `Preserve`, which has no fixed map).
pub(crate) fn port_table(alloc: PortAlloc) -> Option<Vec<u16>> {
    let n = range_len();
    let lo = u64::from(NAT_PORTS.0);
    let perm = match alloc {
        PortAlloc::Preserve => return None,
        PortAlloc::Offset(d) => (0..n).map(|i| (i + u64::from(d)) % n).collect(),
        PortAlloc::Dependent(d) => (0..n).map(|i| (i * u64::from(d)) % n).collect(),
        PortAlloc::Random(seed) => permutation(seed),
    };
    Some(
        perm.into_iter()
            .filter_map(|j| u16::try_from(lo + j).ok())
            .collect(),
    )
}

/// External port for `local` under an EIM port map (`None` outside the map).
pub fn mapped_port(alloc: PortAlloc, local: u16) -> Option<u16> {
    let i = usize::from(local.checked_sub(NAT_PORTS.0)?);
    port_table(alloc)?.get(i).copied()
}

/// A seeded permutation of `0..range_len()` (Fisher-Yates over splitmix64).
fn permutation(seed: u64) -> Vec<u64> {
    let n = range_len();
    let mut v: Vec<u64> = (0..n).collect();
    let mut state = seed;
    for i in (1..v.len()).rev() {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let j = (z % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

/// The `inet p2plab` table for `kind` (without the leading delete).
pub(crate) fn ruleset(kind: RouterKind, net: &RouterNet) -> String {
    let (lo, hi) = NAT_PORTS;
    let wan = net.wan;
    let lan = format!("{}/{}", net.lan.0, net.lan.1);
    let mut sets = String::new();
    let mut track = String::new();
    let mut pre = String::new();
    let mut post = String::new();
    let mut fwd = String::new();

    let masq = format!("oifname \"wan0\" ip saddr {lan} masquerade");
    let alloc = match kind {
        RouterKind::FullCone(a)
        | RouterKind::RestrictedCone(a)
        | RouterKind::PortRestrictedCone(a) => Some(a),
        _ => None,
    };
    if let Some(a) = alloc {
        match a {
            PortAlloc::Preserve => {}
            PortAlloc::Offset(_) | PortAlloc::Dependent(_) | PortAlloc::Random(_) => {
                let elems: Vec<String> = port_table(a)
                    .unwrap_or_default()
                    .iter()
                    .zip(lo..=hi)
                    .map(|(m, p)| format!("{p} : {m}"))
                    .collect();
                let _ = writeln!(
                    sets,
                    "  map ports {{\n    type inet_service : inet_service\n    elements = {{ {} }}\n  }}",
                    elems.join(", ")
                );
                let _ = writeln!(
                    post,
                    "    oifname \"wan0\" ip saddr {lan} meta l4proto {{ tcp, udp }} snat ip to {wan} : th sport map @ports"
                );
            }
        }
        // Ports outside the map (and ICMP) fall back to plain masquerade.
        let _ = writeln!(post, "    {masq}");
    }
    match kind {
        RouterKind::Open | RouterKind::Firewall => {}
        RouterKind::PortRestrictedCone(_) => {}
        RouterKind::RestrictedCone(_) => {
            // Remember (remote ip, mapped port) -> internal endpoint after NAT; a new
            // inbound flow from that ip, any port, is sent to the internal endpoint.
            sets.push_str(
                "  map contacted {\n    typeof ip daddr . udp sport : ip saddr . udp sport\n    \
                 flags dynamic,timeout\n    timeout 2m\n  }\n",
            );
            let _ = writeln!(
                track,
                "    oifname \"wan0\" meta l4proto udp ct original ip saddr {lan} update @contacted {{ ip daddr . udp sport : ct original ip saddr . ct original proto-src }}"
            );
            let _ = writeln!(
                pre,
                "    iifname \"wan0\" ip daddr {wan} meta l4proto udp dnat ip to ip saddr . udp dport map @contacted"
            );
        }
        RouterKind::FullCone(_) => {
            // Remember mapped port -> internal endpoint; anyone may then use it.
            sets.push_str(
                "  map cone {\n    typeof udp sport : ip saddr . udp sport\n    \
                 flags dynamic,timeout\n    timeout 2m\n  }\n",
            );
            let _ = writeln!(
                track,
                "    oifname \"wan0\" meta l4proto udp ct original ip saddr {lan} update @cone {{ udp sport : ct original ip saddr . ct original proto-src }}"
            );
            let _ = writeln!(
                pre,
                "    iifname \"wan0\" ip daddr {wan} meta l4proto udp dnat ip to udp dport map @cone"
            );
        }
        RouterKind::Symmetric(p) => {
            let _ = writeln!(
                post,
                "    {}",
                match p {
                    SymmetricPorts::Random => format!("{masq} random"),
                    SymmetricPorts::FullyRandom => format!("{masq} fully-random"),
                    SymmetricPorts::Sequential => {
                        // A map from the counter to the port: numgen yields a host-order
                        // integer, the map yields a proper (network-order) port.
                        let elems: Vec<String> = (0..SEQ_PORTS)
                            .map(|i| format!("{i} : {}", SEQ_BASE + i))
                            .collect();
                        format!(
                            "oifname \"wan0\" ip saddr {lan} meta l4proto {{ tcp, udp }} snat ip to {wan} : numgen inc mod {SEQ_PORTS} map {{ {} }}\n    {masq}",
                            elems.join(", ")
                        )
                    }
                }
            );
        }
        RouterKind::UdpBlocked => {
            let _ = writeln!(post, "    {masq}");
            let _ = writeln!(
                fwd,
                "    iifname \"lan0\" oifname \"wan0\" meta l4proto udp drop"
            );
        }
    }
    if kind != RouterKind::Open {
        // NAT and firewall kinds: nothing new gets in unless a dnat rule (ours or
        // miniupnpd's) took it. IPv6 is firewalled the same way, never translated.
        let _ = writeln!(
            fwd,
            "    iifname \"wan0\" ct state established,related accept\n    \
             iifname \"wan0\" ct status dnat accept\n    \
             iifname \"wan0\" drop"
        );
    }
    format!(
        "table inet p2plab {{\n{sets}\
  chain lab_in {{\n    type filter hook input priority filter; policy accept;\n    \
    # Unsolicited packets no nat rule took would otherwise leave an [UNREPLIED]\n    \
    # conntrack entry that later makes an allowed flow skip the dnat rules.\n    \
    iifname \"wan0\" udp dport {lo}-{hi} ct state new drop\n    \
    iifname \"wan0\" tcp dport {lo}-{hi} ct state new drop\n  }}\n\
  chain lab_fwd {{\n    type filter hook forward priority filter; policy accept;\n{fwd}  }}\n\
  chain lab_track {{\n    type filter hook postrouting priority srcnat + 20; policy accept;\n{track}  }}\n\
  chain lab_pre {{\n    type nat hook prerouting priority dstnat + 10; policy accept;\n{pre}  }}\n\
  chain lab_post {{\n    type nat hook postrouting priority srcnat + 10; policy accept;\n{post}  }}\n}}\n"
    )
}

/// The `inet filter` skeleton miniupnpd 2.3.1 (nftables backend) expects.
///
/// Debian's `nft_init.sh` cannot create it (it sources the iptables helper), so the
/// lab does. The chain names are miniupnpd's compiled-in defaults.
pub(crate) const MINIUPNPD_SKELETON: &str = "table inet filter {
  chain forward {
    type filter hook forward priority filter; policy accept;
    jump miniupnpd
  }
  chain miniupnpd {
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    jump prerouting_miniupnpd
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    jump postrouting_miniupnpd
  }
  chain prerouting_miniupnpd {
  }
  chain postrouting_miniupnpd {
  }
}
";

/// [`MINIUPNPD_SKELETON`] plus an IPv6 firewall after miniupnpd's chain: inbound IPv6
/// from `wan0` passes only when established or when a miniupnpd pinhole accepted it.
pub(crate) const MINIUPNPD_SKELETON_IPV6_FIREWALL: &str = "table inet filter {
  chain forward {
    type filter hook forward priority filter; policy accept;
    jump miniupnpd
    iifname \"wan0\" meta nfproto ipv6 ct state established,related accept
    iifname \"wan0\" meta nfproto ipv6 meta l4proto ipv6-icmp accept
    iifname \"wan0\" meta nfproto ipv6 drop
  }
  chain miniupnpd {
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    jump prerouting_miniupnpd
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    jump postrouting_miniupnpd
  }
  chain prerouting_miniupnpd {
  }
  chain postrouting_miniupnpd {
  }
}
";

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> RouterNet {
        RouterNet {
            wan: Ipv4Addr::new(198, 51, 100, 2),
            lan: (Ipv4Addr::new(10, 0, 0, 0), 24),
        }
    }

    #[test]
    fn port_maps_are_bijective_inside_the_range() {
        for alloc in [
            PortAlloc::Offset(1000),
            PortAlloc::Dependent(11),
            PortAlloc::Random(7),
        ] {
            let table = port_table(alloc).expect("a map");
            assert_eq!(table.len(), range_len() as usize);
            let mut seen = std::collections::HashSet::new();
            for (i, &m) in table.iter().enumerate() {
                assert!(
                    (NAT_PORTS.0..=NAT_PORTS.1).contains(&m),
                    "{alloc:?}: #{i} -> {m}"
                );
                assert!(seen.insert(m), "{alloc:?}: {m} used twice");
            }
        }
        assert_eq!(mapped_port(PortAlloc::Offset(1000), 1024), Some(2024));
        assert_eq!(
            mapped_port(PortAlloc::Offset(1000), 60999),
            Some(1024 + 999)
        );
        assert_eq!(mapped_port(PortAlloc::Dependent(11), 1025), Some(1035));
        assert_eq!(mapped_port(PortAlloc::Offset(5), 65000), None);
    }

    #[test]
    fn random_permutation_depends_on_seed_only() {
        let a: Vec<_> = (2000..2010)
            .map(|p| mapped_port(PortAlloc::Random(1), p))
            .collect();
        let b: Vec<_> = (2000..2010)
            .map(|p| mapped_port(PortAlloc::Random(1), p))
            .collect();
        let c: Vec<_> = (2000..2010)
            .map(|p| mapped_port(PortAlloc::Random(2), p))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn validate_rejects_non_bijective_dependent_maps() {
        assert!(RouterKind::HOME.validate().is_ok());
        assert!(
            RouterKind::FullCone(PortAlloc::Dependent(11))
                .validate()
                .is_ok()
        );
        assert!(
            RouterKind::FullCone(PortAlloc::Dependent(2))
                .validate()
                .is_err()
        );
        assert!(
            RouterKind::FullCone(PortAlloc::Dependent(0))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn rules_differ_per_kind_as_documented() {
        let open = ruleset(RouterKind::Open, &net());
        assert!(!open.contains("masquerade") && !open.contains("iifname \"wan0\" drop"));
        let fw = ruleset(RouterKind::Firewall, &net());
        assert!(!fw.contains("masquerade") && fw.contains("iifname \"wan0\" drop"));
        let home = ruleset(RouterKind::HOME, &net());
        assert!(home.contains("ip saddr 10.0.0.0/24 masquerade\n"));
        let sym = ruleset(RouterKind::Symmetric(SymmetricPorts::Random), &net());
        assert!(sym.contains("masquerade random"));
        let seq = ruleset(RouterKind::Symmetric(SymmetricPorts::Sequential), &net());
        assert!(seq.contains("numgen inc"));
        let rc = ruleset(RouterKind::RestrictedCone(PortAlloc::Preserve), &net());
        assert!(rc.contains("update @contacted") && rc.contains("map @contacted"));
        let fc = ruleset(RouterKind::FullCone(PortAlloc::Offset(7)), &net());
        assert!(fc.contains("1024 : 1031") && fc.contains("map @cone"));
        let blocked = ruleset(RouterKind::UdpBlocked, &net());
        assert!(blocked.contains("oifname \"wan0\" meta l4proto udp drop"));
    }

    #[test]
    fn delta_names_follow_the_allocation() {
        assert_eq!(RouterKind::HOME.p2pd_delta(), Some("equal"));
        assert_eq!(
            RouterKind::FullCone(PortAlloc::Offset(3)).p2pd_delta(),
            Some("preserving")
        );
        assert_eq!(
            RouterKind::Symmetric(SymmetricPorts::Sequential).p2pd_delta(),
            Some("independent")
        );
        assert_eq!(RouterKind::Open.p2pd_delta(), None);
        assert_eq!(
            RouterKind::Firewall.p2pd_nat_type(),
            "symmetric_udp_firewall"
        );
    }
}
