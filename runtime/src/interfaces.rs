//! The host's network interfaces with their IPv4 and IPv6 addresses (from `if-addrs`),
//! which of them are usable, and which one is the default per address family.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::Serialize;

use crate::net::route_local_ip;

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

impl Family {
    /// Both families, IPv4 first.
    pub const ALL: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    /// The family of `ip`.
    pub fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        }
    }

    /// `ipv4` or `ipv6`.
    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }

    /// An address no packet is sent to, whose route the kernel looks up to find the
    /// default interface (as P2PD does: 192.0.2.1 is TEST-NET-1, 100::1 the discard prefix).
    fn probe(self) -> SocketAddr {
        match self {
            Family::Ipv4 => SocketAddr::new(Ipv4Addr::new(192, 0, 2, 1).into(), 9),
            Family::Ipv6 => SocketAddr::new(Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 1).into(), 9),
        }
    }
}

/// One network interface and its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interface {
    /// The OS name (`eth0`, `wlan0`).
    pub name: String,
    /// The OS index, when known.
    pub index: Option<u32>,
    /// Operationally up (IFF_RUNNING).
    pub up: bool,
    /// A loopback interface (it carries a loopback address).
    pub loopback: bool,
    /// IPv4 addresses.
    pub ipv4: Vec<Ipv4Addr>,
    /// IPv6 addresses.
    pub ipv6: Vec<Ipv6Addr>,
    /// The families for which this is the default interface (the one the kernel routes
    /// to the internet through).
    pub default_for: Vec<Family>,
}

impl Interface {
    /// All addresses, IPv4 first.
    pub fn addrs(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let v4 = self.ipv4.iter().map(|a| IpAddr::V4(*a));
        v4.chain(self.ipv6.iter().map(|a| IpAddr::V6(*a)))
    }

    /// The addresses of `family`.
    pub fn addrs_of(&self, family: Family) -> Vec<IpAddr> {
        self.addrs().filter(|a| Family::of(*a) == family).collect()
    }
}

/// Which interfaces to use.
#[derive(Debug, Clone, Default)]
pub struct InterfaceFilter {
    /// Also use interfaces that are down.
    pub include_down: bool,
    /// Also use loopback interfaces.
    pub include_loopback: bool,
    /// Only these interfaces (by name); empty means all.
    pub names: Vec<String>,
}

/// Why no interface can be used.
#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    /// The OS would not list them.
    #[error("cannot list network interfaces: {0}")]
    List(#[from] io::Error),
    /// Every interface was filtered out.
    #[error(
        "no usable network interface: {why} (interfaces found: {found}; loopback and down interfaces are skipped unless asked for)"
    )]
    NoneUsable {
        /// What removed them.
        why: String,
        /// Every interface seen, with its state.
        found: String,
    },
}

/// Every interface of the host with an IP address, sorted by name, with the default
/// interface per family marked.
pub fn list() -> io::Result<Vec<Interface>> {
    let mut by_name: BTreeMap<String, Interface> = BTreeMap::new();
    for i in if_addrs::get_if_addrs()? {
        let entry = by_name.entry(i.name.clone()).or_insert_with(|| Interface {
            name: i.name.clone(),
            index: i.index,
            up: false,
            loopback: false,
            ipv4: Vec::new(),
            ipv6: Vec::new(),
            default_for: Vec::new(),
        });
        entry.up |= i.is_oper_up();
        entry.loopback |= i.is_loopback();
        match i.ip() {
            IpAddr::V4(a) => entry.ipv4.push(a),
            IpAddr::V6(a) => entry.ipv6.push(a),
        }
    }
    let mut all: Vec<Interface> = by_name.into_values().collect();
    for family in Family::ALL {
        // No route for a family simply means no default interface for it.
        if let Ok(ip) = route_local_ip(family.probe()) {
            if let Some(i) = all.iter_mut().find(|i| i.addrs().any(|a| a == ip)) {
                i.default_for.push(family);
            }
        }
    }
    Ok(all)
}

/// The interfaces of `all` that `filter` allows, or why there are none.
pub fn select(
    all: Vec<Interface>,
    filter: &InterfaceFilter,
) -> Result<Vec<Interface>, InterfaceError> {
    let found = if all.is_empty() {
        "none".to_string()
    } else {
        all.iter()
            .map(|i| {
                let state = match (i.up, i.loopback) {
                    (_, true) => "loopback",
                    (true, false) => "up",
                    (false, false) => "down",
                };
                format!("{} ({state})", i.name)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let unknown: Vec<&str> = filter
        .names
        .iter()
        .filter(|n| !all.iter().any(|i| &i.name == *n))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(InterfaceError::NoneUsable {
            why: format!("no interface named {}", unknown.join(", ")),
            found,
        });
    }
    let chosen: Vec<Interface> = all
        .into_iter()
        .filter(|i| filter.names.is_empty() || filter.names.contains(&i.name))
        .filter(|i| filter.include_down || i.up)
        .filter(|i| filter.include_loopback || !i.loopback)
        .collect();
    if chosen.is_empty() {
        return Err(InterfaceError::NoneUsable {
            why: "every candidate is down or loopback".into(),
            found,
        });
    }
    Ok(chosen)
}

/// Link-local addresses (169.254/16, fe80::/10) need a scope and never reach a STUN
/// server beyond the link, so routes are not looked up for them.
pub fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, up: bool, ip: &str) -> Interface {
        let ip: IpAddr = ip.parse().unwrap();
        Interface {
            name: name.into(),
            index: None,
            up,
            loopback: ip.is_loopback(),
            ipv4: match ip {
                IpAddr::V4(a) => vec![a],
                IpAddr::V6(_) => vec![],
            },
            ipv6: match ip {
                IpAddr::V6(a) => vec![a],
                IpAddr::V4(_) => vec![],
            },
            default_for: vec![],
        }
    }

    #[test]
    fn down_and_loopback_are_skipped_by_default() {
        let all = vec![
            iface("eth0", true, "10.0.0.2"),
            iface("eth1", false, "10.0.1.2"),
            iface("lo", true, "127.0.0.1"),
        ];
        let names = |v: Vec<Interface>| v.into_iter().map(|i| i.name).collect::<Vec<_>>();
        assert_eq!(
            names(select(all.clone(), &InterfaceFilter::default()).unwrap()),
            ["eth0"]
        );
        let every = InterfaceFilter {
            include_down: true,
            include_loopback: true,
            names: vec![],
        };
        assert_eq!(names(select(all, &every).unwrap()), ["eth0", "eth1", "lo"]);
    }

    #[test]
    fn nothing_usable_is_a_clear_error() {
        let all = vec![
            iface("eth1", false, "10.0.1.2"),
            iface("lo", true, "127.0.0.1"),
        ];
        let e = select(all.clone(), &InterfaceFilter::default()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("no usable network interface"), "{msg}");
        assert!(
            msg.contains("eth1 (down)") && msg.contains("lo (loopback)"),
            "{msg}"
        );
        let named = InterfaceFilter {
            names: vec!["wlan9".into()],
            ..InterfaceFilter::default()
        };
        let msg = select(all, &named).unwrap_err().to_string();
        assert!(msg.contains("no interface named wlan9"), "{msg}");
        let msg = select(vec![], &InterfaceFilter::default())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("interfaces found: none"), "{msg}");
    }

    #[test]
    fn this_host_has_a_loopback_interface() {
        let all = list().unwrap();
        assert!(
            all.iter()
                .any(|i| i.loopback && i.ipv4.contains(&Ipv4Addr::LOCALHOST)),
            "{all:?}"
        );
    }

    #[test]
    fn link_local() {
        assert!(is_link_local("169.254.1.1".parse().unwrap()));
        assert!(is_link_local("fe80::1".parse().unwrap()));
        assert!(!is_link_local("fd00::1".parse().unwrap()));
        assert!(!is_link_local("10.0.0.1".parse().unwrap()));
    }
}
