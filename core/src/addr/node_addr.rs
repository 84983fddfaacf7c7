//! [`NodeAddr`]: the typed form of a node address, with its parse/emit pair.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use super::base32;
use super::broker::Broker;
use super::error::AddrError;
use crate::identity::{NodeId, PUBLIC_KEY_LEN, PublicKey};
use crate::nat::{Delta, DeltaKind, NatType};

/// The prefix of a version-1 address.
pub const PREFIX: &str = "p2pd1:";
/// Most brokers an address lists.
pub const MAX_BROKERS: usize = 6;
/// Most interfaces an address lists.
pub const MAX_INTERFACES: usize = 4;
/// Longest text accepted (longer than the largest valid address, with room for line breaks).
pub const MAX_TEXT_LEN: usize = 4096;
/// Largest delta value magnitude (a port distance).
const MAX_DELTA: i32 = 65535;

const TAG_V4: u8 = b'4';
const TAG_V6: u8 = b'6';
const TAG_NAME: u8 = b'h';
/// Extension tag: the ports gateways forward to the node (see [`MappedPort`]).
const TAG_MAPPED: u8 = b'm';
const FAMILY_V4: u8 = 1;
const FAMILY_V6: u8 = 2;

/// How a node is reached on one interface and address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    /// The address peers on the internet see (from STUN).
    pub external: IpAddr,
    /// The interface's own address (what peers on the same LAN use).
    pub internal: IpAddr,
    /// The node's listen port on this interface.
    pub port: u16,
    /// The NAT in front of the interface.
    pub nat: NatType,
    /// How that NAT allocates ports.
    pub delta: Delta,
}

/// One interface: a route per address family it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Interface {
    /// IPv4 route.
    pub v4: Option<Route>,
    /// IPv6 route.
    pub v6: Option<Route>,
}

/// A TCP port that the gateway in front of one route forwards to the node's listen port
/// on that route (mapped by PCP, NAT-PMP or UPnP IGD): peers connect straight to the
/// route's external address and this port, though the NAT drops other unsolicited
/// connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MappedPort {
    /// The interface's position in the address.
    pub interface: u8,
    /// The route's family: `false` IPv4, `true` IPv6.
    pub v6: bool,
    /// The external port.
    pub port: u16,
}

/// A checked node address. Build one with [`NodeAddr::new`] or parse one; either way it
/// is valid, so printing it cannot fail and parsing the print gives it back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeAddr {
    key: PublicKey,
    brokers: Vec<Broker>,
    interfaces: Vec<Interface>,
    /// Sorted by (interface, family), at most one per route.
    mapped: Vec<MappedPort>,
}

impl NodeAddr {
    /// An address for `key`, listening for signaling on `brokers` and reachable through
    /// `interfaces` (in the node's order: a peer refers to an interface by position).
    pub fn new(
        key: PublicKey,
        brokers: Vec<Broker>,
        interfaces: Vec<Interface>,
    ) -> Result<Self, AddrError> {
        let invalid = |field: String, problem: String| AddrError::Invalid { field, problem };
        if brokers.len() > MAX_BROKERS {
            return Err(invalid(
                "brokers".into(),
                format!("{} brokers; at most {MAX_BROKERS} fit", brokers.len()),
            ));
        }
        for (i, b) in brokers.iter().enumerate() {
            check_broker(i, b)?;
        }
        if interfaces.is_empty() || interfaces.len() > MAX_INTERFACES {
            return Err(invalid(
                "interfaces".into(),
                format!(
                    "{} interfaces; an address has 1 to {MAX_INTERFACES}",
                    interfaces.len()
                ),
            ));
        }
        for (i, iface) in interfaces.iter().enumerate() {
            if iface.v4.is_none() && iface.v6.is_none() {
                return Err(invalid(
                    format!("interface {i}"),
                    "it has neither an IPv4 nor an IPv6 route".into(),
                ));
            }
            for (fam, route) in [("IPv4", iface.v4), ("IPv6", iface.v6)] {
                if let Some(r) = route {
                    check_route(&format!("interface {i} {fam}"), fam == "IPv6", &r)?;
                }
            }
        }
        Ok(NodeAddr {
            key,
            brokers,
            interfaces,
            mapped: Vec::new(),
        })
    }

    /// This address with `ports` forwarded by gateways (replacing any it had). Each must
    /// name a route the address has, one port per route, and not port 0.
    pub fn with_mapped_ports(mut self, mut ports: Vec<MappedPort>) -> Result<Self, AddrError> {
        ports.sort();
        for (i, m) in ports.iter().enumerate() {
            let fam = if m.v6 { "IPv6" } else { "IPv4" };
            let field = format!("interface {} {fam} mapped port", m.interface);
            let invalid = |problem: &str| AddrError::Invalid {
                field: field.clone(),
                problem: problem.into(),
            };
            let route = self
                .interfaces
                .get(usize::from(m.interface))
                .and_then(|iface| if m.v6 { iface.v6 } else { iface.v4 });
            if route.is_none() {
                return Err(invalid("the address has no such route"));
            }
            if m.port == 0 {
                return Err(invalid("port 0 cannot be connected to"));
            }
            if i > 0 && (ports[i - 1].interface, ports[i - 1].v6) == (m.interface, m.v6) {
                return Err(invalid("a route has one mapped port at most"));
            }
        }
        self.mapped = ports;
        Ok(self)
    }

    /// The ports gateways forward to this node, by route.
    pub fn mapped_ports(&self) -> &[MappedPort] {
        &self.mapped
    }

    /// The port the gateway of interface `interface`'s route of that family forwards to
    /// the node, if any.
    pub fn mapped_port(&self, interface: usize, v6: bool) -> Option<u16> {
        self.mapped
            .iter()
            .find(|m| usize::from(m.interface) == interface && m.v6 == v6)
            .map(|m| m.port)
    }

    /// The node's public key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// The node id.
    pub fn node_id(&self) -> NodeId {
        self.key.node_id()
    }

    /// The brokers it listens on, in its order of preference.
    pub fn brokers(&self) -> &[Broker] {
        &self.brokers
    }

    /// Its interfaces.
    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    /// The binary payload (without checksum).
    fn payload(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&self.key.to_bytes());
        out.push(self.brokers.len() as u8);
        for b in &self.brokers {
            match b {
                Broker::Ip(SocketAddr::V4(a)) => {
                    out.push(TAG_V4);
                    out.extend_from_slice(&a.ip().octets());
                }
                Broker::Ip(SocketAddr::V6(a)) => {
                    out.push(TAG_V6);
                    out.extend_from_slice(&a.ip().octets());
                }
                Broker::Name { host, .. } => {
                    out.push(TAG_NAME);
                    out.push(host.len() as u8);
                    out.extend_from_slice(host.as_bytes());
                }
            }
            out.extend_from_slice(&b.port().to_be_bytes());
        }
        out.push(self.interfaces.len() as u8);
        for iface in &self.interfaces {
            let mask = iface.v4.map_or(0, |_| FAMILY_V4) | iface.v6.map_or(0, |_| FAMILY_V6);
            out.push(mask);
            for r in [iface.v4, iface.v6].into_iter().flatten() {
                for ip in [r.external, r.internal] {
                    match ip {
                        IpAddr::V4(v) => out.extend_from_slice(&v.octets()),
                        IpAddr::V6(v) => out.extend_from_slice(&v.octets()),
                    }
                }
                out.extend_from_slice(&r.port.to_be_bytes());
                out.push(nat_code(r.nat));
                out.push(delta_code(r.delta.kind));
                out.extend_from_slice(&r.delta.value.to_be_bytes());
            }
        }
        if !self.mapped.is_empty() {
            out.push(TAG_MAPPED);
            out.push(self.mapped.len() as u8);
            for m in &self.mapped {
                out.push(m.interface);
                out.push(if m.v6 { FAMILY_V6 } else { FAMILY_V4 });
                out.extend_from_slice(&m.port.to_be_bytes());
            }
        }
        out
    }

    /// Reads an address; the error names the offending part.
    pub fn parse(text: &str) -> Result<Self, AddrError> {
        let text = text.trim();
        if text.len() > MAX_TEXT_LEN {
            return Err(AddrError::TooLong {
                len: text.len(),
                max: MAX_TEXT_LEN,
            });
        }
        let Some(colon) = text.find(':') else {
            return Err(missing_prefix(text));
        };
        let (head, body) = (&text[..colon], &text[colon + 1..]);
        match head.to_ascii_lowercase().strip_prefix("p2pd") {
            Some("1") => {}
            Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(AddrError::UnsupportedVersion {
                    version: v.chars().take(10).collect(),
                });
            }
            _ => return Err(missing_prefix(text)),
        }
        let bytes = base32::decode(body, colon + 1)?;
        if bytes.len() < 4 {
            return Err(AddrError::Checksum);
        }
        let (payload, sum) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(payload).to_be_bytes() != sum {
            return Err(AddrError::Checksum);
        }
        Self::from_payload(payload)
    }

    fn from_payload(payload: &[u8]) -> Result<Self, AddrError> {
        let mut r = Reader {
            buf: payload,
            pos: 0,
        };
        let key_bytes: [u8; PUBLIC_KEY_LEN] = r.array(&|| "the public key".into())?;
        let key = PublicKey::from_bytes(&key_bytes).map_err(|e| AddrError::Invalid {
            field: "public key".into(),
            problem: e.to_string(),
        })?;
        let n_brokers = r.u8(&|| "the broker count".into())? as usize;
        if n_brokers > MAX_BROKERS {
            return Err(AddrError::Invalid {
                field: "broker count".into(),
                problem: format!("{n_brokers} brokers; at most {MAX_BROKERS} are allowed"),
            });
        }
        let mut brokers = Vec::with_capacity(n_brokers);
        for i in 0..n_brokers {
            let field = |what: &str| format!("broker {i} {what}");
            let broker = match r.u8(&|| field("kind"))? {
                TAG_V4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>(&|| field("IPv4 address"))?)),
                TAG_V6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>(&|| field("IPv6 address"))?)),
                TAG_NAME => {
                    let len = r.u8(&|| field("name length"))? as usize;
                    let raw = r.bytes(len, &|| field("name"))?;
                    let host = std::str::from_utf8(raw).map_err(|_| AddrError::Invalid {
                        field: field("name"),
                        problem: "not text".into(),
                    })?;
                    let port = r.u16(&|| field("port"))?;
                    brokers.push(Broker::name(host, port).map_err(|p| AddrError::Invalid {
                        field: field("name"),
                        problem: p.into(),
                    })?);
                    continue;
                }
                other => {
                    return Err(AddrError::Invalid {
                        field: field("kind"),
                        problem: format!("unknown kind {other} (known: IPv4, IPv6, host name)"),
                    });
                }
            };
            let port = r.u16(&|| field("port"))?;
            brokers.push(Broker::Ip(SocketAddr::new(broker, port)));
        }
        let n_ifaces = r.u8(&|| "the interface count".into())? as usize;
        if n_ifaces > MAX_INTERFACES {
            return Err(AddrError::Invalid {
                field: "interface count".into(),
                problem: format!("{n_ifaces} interfaces; at most {MAX_INTERFACES} are allowed"),
            });
        }
        let mut interfaces = Vec::with_capacity(n_ifaces);
        for i in 0..n_ifaces {
            let mask = r.u8(&|| format!("interface {i} families"))?;
            if mask & !(FAMILY_V4 | FAMILY_V6) != 0 {
                return Err(AddrError::Invalid {
                    field: format!("interface {i} families"),
                    problem: format!("unknown family bits {mask:#04x}"),
                });
            }
            let mut iface = Interface::default();
            if mask & FAMILY_V4 != 0 {
                iface.v4 = Some(read_route(&mut r, &format!("interface {i} IPv4"), false)?);
            }
            if mask & FAMILY_V6 != 0 {
                iface.v6 = Some(read_route(&mut r, &format!("interface {i} IPv6"), true)?);
            }
            interfaces.push(iface);
        }
        let mapped = if r.pos < payload.len() {
            read_mapped(&mut r)?
        } else {
            Vec::new()
        };
        if r.pos != payload.len() {
            return Err(AddrError::TrailingBytes(payload.len() - r.pos));
        }
        NodeAddr::new(key, brokers, interfaces)?.with_mapped_ports(mapped)
    }
}

fn missing_prefix(text: &str) -> AddrError {
    AddrError::MissingPrefix {
        found: text.chars().take(8).collect(),
    }
}

fn check_broker(i: usize, b: &Broker) -> Result<(), AddrError> {
    let invalid = |problem: &str| AddrError::Invalid {
        field: format!("broker {i}"),
        problem: problem.into(),
    };
    if b.port() == 0 {
        return Err(invalid("port 0 cannot be connected to"));
    }
    match b {
        Broker::Ip(a) if a.ip().is_unspecified() => Err(invalid("an unspecified IP")),
        Broker::Ip(_) => Ok(()),
        Broker::Name { host, .. } => super::broker::valid_host(host).map_err(invalid),
    }
}

fn check_route(field: &str, v6: bool, r: &Route) -> Result<(), AddrError> {
    let invalid = |what: &str, problem: String| AddrError::Invalid {
        field: format!("{field} {what}"),
        problem,
    };
    for (what, ip) in [
        ("external address", r.external),
        ("internal address", r.internal),
    ] {
        if ip.is_ipv6() != v6 {
            return Err(invalid(
                what,
                format!("{ip} is of the other address family"),
            ));
        }
    }
    if r.port == 0 {
        return Err(invalid(
            "listen port",
            "port 0 cannot be connected to".into(),
        ));
    }
    if !(-MAX_DELTA..=MAX_DELTA).contains(&r.delta.value) {
        return Err(invalid(
            "delta value",
            format!("{} is beyond ±{MAX_DELTA}", r.delta.value),
        ));
    }
    Ok(())
}

fn nat_code(t: NatType) -> u8 {
    NatType::ALL.iter().position(|x| *x == t).unwrap_or(0) as u8 + 1
}

fn delta_code(k: DeltaKind) -> u8 {
    DeltaKind::ALL.iter().position(|x| *x == k).unwrap_or(0) as u8 + 1
}

fn read_route(r: &mut Reader<'_>, field: &str, v6: bool) -> Result<Route, AddrError> {
    let f = |what: &str| format!("{field} {what}");
    let mut ip = |what: &str| -> Result<IpAddr, AddrError> {
        Ok(if v6 {
            IpAddr::V6(Ipv6Addr::from(r.array::<16>(&|| f(what))?))
        } else {
            IpAddr::V4(Ipv4Addr::from(r.array::<4>(&|| f(what))?))
        })
    };
    let external = ip("external address")?;
    let internal = ip("internal address")?;
    let port = r.u16(&|| f("listen port"))?;
    let nat_raw = r.u8(&|| f("NAT type"))?;
    let nat = NatType::ALL
        .get(usize::from(nat_raw).wrapping_sub(1))
        .copied()
        .ok_or_else(|| AddrError::Invalid {
            field: f("NAT type"),
            problem: format!("{nat_raw} is not a NAT type (1 to {})", NatType::ALL.len()),
        })?;
    let kind_raw = r.u8(&|| f("delta kind"))?;
    let kind = DeltaKind::ALL
        .get(usize::from(kind_raw).wrapping_sub(1))
        .copied()
        .ok_or_else(|| AddrError::Invalid {
            field: f("delta kind"),
            problem: format!(
                "{kind_raw} is not a delta kind (1 to {})",
                DeltaKind::ALL.len()
            ),
        })?;
    let value = i32::from_be_bytes(r.array::<4>(&|| f("delta value"))?);
    Ok(Route {
        external,
        internal,
        port,
        nat,
        delta: Delta { kind, value },
    })
}

/// The optional extension after the interfaces: tag `m`, a count (1..=2 ×
/// [`MAX_INTERFACES`]), then per mapped port, in (interface, family) order: interface
/// index (u8), family (1 IPv4, 2 IPv6), external port (u16). Only the canonical order is
/// accepted, so that parse and print stay exact inverses.
fn read_mapped(r: &mut Reader<'_>) -> Result<Vec<MappedPort>, AddrError> {
    let invalid = |field: &str, problem: String| AddrError::Invalid {
        field: field.into(),
        problem,
    };
    let tag = r.u8(&|| "the extension tag".into())?;
    if tag != TAG_MAPPED {
        return Err(invalid(
            "extension tag",
            format!(
                "unknown extension {tag:#04x}: the address may come from a newer p2pd; upgrade p2pd"
            ),
        ));
    }
    let n = usize::from(r.u8(&|| "the mapped port count".into())?);
    if n == 0 || n > 2 * MAX_INTERFACES {
        return Err(invalid(
            "mapped port count",
            format!(
                "{n} mapped ports; an address has 1 to {}",
                2 * MAX_INTERFACES
            ),
        ));
    }
    let mut out: Vec<MappedPort> = Vec::with_capacity(n);
    for i in 0..n {
        let f = |what: &str| format!("mapped port {i} {what}");
        let interface = r.u8(&|| f("interface"))?;
        let v6 = match r.u8(&|| f("family"))? {
            FAMILY_V4 => false,
            FAMILY_V6 => true,
            other => return Err(invalid(&f("family"), format!("unknown family {other}"))),
        };
        let port = r.u16(&|| f("port"))?;
        let m = MappedPort {
            interface,
            v6,
            port,
        };
        if out
            .last()
            .is_some_and(|p| (p.interface, p.v6) >= (m.interface, m.v6))
        {
            return Err(invalid(
                &f("order"),
                "mapped ports must be listed once per route, in interface and family order".into(),
            ));
        }
        out.push(m);
    }
    Ok(out)
}

/// A cursor over the payload whose errors name the field being read.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize, field: &dyn Fn() -> String) -> Result<&'a [u8], AddrError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let Some(end) = end else {
            return Err(AddrError::Truncated { field: field() });
        };
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &dyn Fn() -> String) -> Result<[u8; N], AddrError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, field)?);
        Ok(out)
    }

    fn u8(&mut self, field: &dyn Fn() -> String) -> Result<u8, AddrError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &dyn Fn() -> String) -> Result<u16, AddrError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = self.payload();
        let sum = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&sum.to_be_bytes());
        write!(f, "{PREFIX}{}", base32::encode(&bytes))
    }
}

impl FromStr for NodeAddr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, AddrError> {
        NodeAddr::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::rng::Rng;
    use proptest::prelude::*;

    fn route(v6: bool, port: u16) -> Route {
        let (external, internal): (IpAddr, IpAddr) = if v6 {
            ("2001:db8::10".parse().unwrap(), "fe80::1".parse().unwrap())
        } else {
            (
                "203.0.113.9".parse().unwrap(),
                "192.168.1.20".parse().unwrap(),
            )
        };
        Route {
            external,
            internal,
            port,
            nat: NatType::PortRestrictedCone,
            delta: Delta {
                kind: DeltaKind::Independent,
                value: -3,
            },
        }
    }

    pub(crate) fn example() -> NodeAddr {
        let key = Identity::generate(&mut Rng::seed_from_u64(42)).public();
        NodeAddr::new(
            key,
            vec![
                "198.51.100.1:1883".parse().unwrap(),
                "mqtt.example.net".parse().unwrap(),
            ],
            vec![Interface {
                v4: Some(route(false, 31415)),
                v6: Some(route(true, 31415)),
            }],
        )
        .unwrap()
    }

    #[test]
    fn round_trip_and_shape() {
        let a = example();
        let text = a.to_string();
        assert!(text.starts_with("p2pd1:"));
        assert!(
            text[6..]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        );
        assert_eq!(NodeAddr::parse(&text).unwrap(), a);
        // Pasted in upper case, wrapped, with surrounding blanks.
        let wrapped = format!(" {}\n{} ", &text[..40].to_uppercase(), &text[40..]);
        assert_eq!(NodeAddr::parse(&wrapped).unwrap(), a);
    }

    #[test]
    fn errors_name_the_problem() {
        let text = example().to_string();
        let err = |s: &str| NodeAddr::parse(s).unwrap_err();
        assert!(matches!(
            err("3,7-[0,0,1.2.3.4]"),
            AddrError::MissingPrefix { .. }
        ));
        assert!(matches!(err("hello:abc"), AddrError::MissingPrefix { .. }));
        assert_eq!(
            err(&text.replacen("p2pd1", "p2pd2", 1)),
            AddrError::UnsupportedVersion {
                version: "2".into()
            }
        );
        assert!(
            err(&text.replacen("p2pd1", "p2pd2", 1))
                .to_string()
                .contains("upgrade")
        );
        // One character changed: checksum.
        let mut typo = text.clone().into_bytes();
        typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
        assert_eq!(
            err(std::str::from_utf8(&typo).unwrap()),
            AddrError::Checksum
        );
        // Truncated: checksum or ending.
        assert!(matches!(
            err(&text[..text.len() - 5]),
            AddrError::Checksum | AddrError::BadEnding { .. }
        ));
        assert_eq!(
            err(&format!("{}1{}", &text[..10], &text[10..])),
            AddrError::BadCharacter {
                ch: '1',
                position: 10
            }
        );
        assert!(matches!(err(&"a".repeat(5000)), AddrError::TooLong { .. }));
    }

    /// Re-encodes a hand-made payload with a valid checksum, to reach the field checks.
    fn with_sum(payload: &[u8]) -> String {
        let mut b = payload.to_vec();
        b.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
        format!("{PREFIX}{}", base32::encode(&b))
    }

    #[test]
    fn field_errors_name_the_field() {
        let good = example().payload();
        let field_of = |payload: &[u8]| match NodeAddr::parse(&with_sum(payload)).unwrap_err() {
            AddrError::Invalid { field, .. } | AddrError::Truncated { field } => field,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(field_of(&good[..20]), "the public key");
        assert_eq!(field_of(&good[..39]), "broker 0 port");
        let mut bad_kind = good.clone();
        bad_kind[33] = b'x';
        assert_eq!(field_of(&bad_kind), "broker 0 kind");
        // The NAT type byte of interface 0 IPv4: after the key, brokers and mask.
        let brokers_len = 1 + (1 + 4 + 2) + (1 + 1 + 16 + 2);
        let nat_at = 32 + brokers_len + 1 + 1 + 4 + 4 + 2;
        let mut bad_nat = good.clone();
        bad_nat[nat_at] = 9;
        assert_eq!(field_of(&bad_nat), "interface 0 IPv4 NAT type");
        let mut bad_delta = good.clone();
        bad_delta[nat_at + 1] = 0;
        assert_eq!(field_of(&bad_delta), "interface 0 IPv4 delta kind");
        let mut no_family = good.clone();
        no_family[nat_at - 11] = 0;
        no_family.truncate(nat_at - 10);
        assert_eq!(field_of(&no_family), "interface 0");
        let mut unknown = good.clone();
        unknown.push(0);
        assert_eq!(field_of(&unknown), "extension tag");
        let mut extra = good.clone();
        extra.extend_from_slice(&[TAG_MAPPED, 1, 0, FAMILY_V4, 0, 1, 0]);
        assert_eq!(
            NodeAddr::parse(&with_sum(&extra)).unwrap_err(),
            AddrError::TrailingBytes(1)
        );
        let mut weak_key = good;
        weak_key[..32].copy_from_slice(&[0; 32]);
        weak_key[0] = 1;
        assert_eq!(field_of(&weak_key), "public key");
    }

    #[test]
    fn new_refuses_inconsistent_routes() {
        let key = example().key().to_owned();
        let mixed = Route {
            internal: "fe80::1".parse().unwrap(),
            ..route(false, 1)
        };
        let e = NodeAddr::new(
            key,
            vec![],
            vec![Interface {
                v4: Some(mixed),
                v6: None,
            }],
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("interface 0 IPv4 internal address"),
            "{e}"
        );
        let e = NodeAddr::new(key, vec![], vec![]).unwrap_err();
        assert!(e.to_string().contains("interfaces"), "{e}");
    }

    #[test]
    fn mapped_ports_round_trip_and_are_checked() {
        let plain = example();
        let m4 = MappedPort {
            interface: 0,
            v6: false,
            port: 40001,
        };
        let m6 = MappedPort {
            interface: 0,
            v6: true,
            port: 40002,
        };
        let a = plain.clone().with_mapped_ports(vec![m6, m4]).unwrap();
        assert_eq!(a.mapped_ports(), &[m4, m6]);
        assert_eq!(a.mapped_port(0, false), Some(40001));
        assert_eq!(a.mapped_port(1, false), None);
        let text = a.to_string();
        assert_eq!(NodeAddr::parse(&text).unwrap(), a);
        assert_ne!(text, plain.to_string());
        // Without mapped ports the encoding is the plain one.
        assert_eq!(plain.payload().len() + 2 + 2 * 4, a.payload().len());
        let err = |ports: Vec<MappedPort>| {
            plain
                .clone()
                .with_mapped_ports(ports)
                .unwrap_err()
                .to_string()
        };
        assert!(err(vec![MappedPort { interface: 1, ..m4 }]).contains("no such route"));
        assert!(err(vec![MappedPort { port: 0, ..m4 }]).contains("port 0"));
        assert!(err(vec![m4, MappedPort { port: 9, ..m4 }]).contains("one mapped port"));
        // Hand-made extensions: unknown tag, bad count, wrong order, truncated.
        let base = plain.payload();
        let with = |ext: &[u8]| {
            let mut p = base.clone();
            p.extend_from_slice(ext);
            NodeAddr::parse(&with_sum(&p))
        };
        assert!(with(b"z").unwrap_err().to_string().contains("upgrade p2pd"));
        assert!(
            with(&[TAG_MAPPED, 0])
                .unwrap_err()
                .to_string()
                .contains("count")
        );
        assert!(
            with(&[TAG_MAPPED, 2, 0, 2, 1, 1, 0, 1, 1, 1])
                .unwrap_err()
                .to_string()
                .contains("order")
        );
        assert!(
            with(&[TAG_MAPPED, 1, 0, 3, 1, 1])
                .unwrap_err()
                .to_string()
                .contains("family")
        );
        assert!(matches!(
            with(&[TAG_MAPPED, 1, 0, 1, 1]).unwrap_err(),
            AddrError::Truncated { .. }
        ));
        assert_eq!(
            with(&[TAG_MAPPED, 1, 0, 1, 1, 1])
                .unwrap()
                .mapped_port(0, false),
            Some(257)
        );
    }

    fn arb_route(v6: bool) -> impl Strategy<Value = Route> {
        let ip = move || {
            any::<[u8; 16]>().prop_map(move |b| {
                if v6 {
                    IpAddr::V6(Ipv6Addr::from(b))
                } else {
                    IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
                }
            })
        };
        (
            ip(),
            ip(),
            1u16..,
            0..7usize,
            0..5usize,
            -MAX_DELTA..=MAX_DELTA,
        )
            .prop_map(|(external, internal, port, n, d, value)| Route {
                external,
                internal,
                port,
                nat: NatType::ALL[n],
                delta: Delta {
                    kind: DeltaKind::ALL[d],
                    value,
                },
            })
    }

    fn arb_broker() -> impl Strategy<Value = Broker> {
        prop_oneof![
            (any::<[u8; 4]>(), 1u16..).prop_map(|(b, p)| Broker::Ip(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(b).max(Ipv4Addr::new(0, 0, 0, 1))),
                p
            ))),
            (any::<[u8; 16]>(), 1u16..).prop_map(|(b, p)| Broker::Ip(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(b).max(Ipv6Addr::LOCALHOST)),
                p
            ))),
            ("[a-z][a-z0-9-]{0,20}[a-z0-9](\\.[a-z]{2,10}){1,3}", 1u16..)
                .prop_map(|(h, p)| Broker::Name { host: h, port: p }),
        ]
    }

    proptest! {
        #[test]
        fn any_address_round_trips(
            seed in any::<u64>(),
            mapped in proptest::collection::vec(any::<u16>(), 2 * MAX_INTERFACES),
            brokers in proptest::collection::vec(arb_broker(), 0..=MAX_BROKERS),
            ifaces in proptest::collection::vec(
                (proptest::option::of(arb_route(false)), proptest::option::of(arb_route(true)))
                    .prop_filter("one family", |(a, b)| a.is_some() || b.is_some()),
                1..=MAX_INTERFACES),
        ) {
            let key = Identity::generate(&mut Rng::seed_from_u64(seed)).public();
            let interfaces = ifaces.into_iter().map(|(v4, v6)| Interface { v4, v6 }).collect();
            let a = NodeAddr::new(key, brokers, interfaces).unwrap();
            // A mapped port on some routes (a zero draw: none on that route).
            let ports = a.interfaces().iter().enumerate().flat_map(|(i, iface)| {
                [(false, iface.v4.is_some()), (true, iface.v6.is_some())]
                    .into_iter()
                    .filter(|(_, has)| *has)
                    .map(move |(v6, _)| (i, v6))
            }).filter_map(|(i, v6)| {
                let port = mapped[2 * i + usize::from(v6)];
                (port != 0).then_some(MappedPort { interface: i as u8, v6, port })
            }).collect();
            let a = a.with_mapped_ports(ports).unwrap();
            let text = a.to_string();
            prop_assert!(text.len() <= MAX_TEXT_LEN);
            prop_assert_eq!(NodeAddr::parse(&text).unwrap(), a);
        }

        #[test]
        fn garbage_never_panics(s in "\\PC{0,300}") {
            let _ = NodeAddr::parse(&s);
            let _ = NodeAddr::parse(&format!("p2pd1:{s}"));
        }
    }
}
