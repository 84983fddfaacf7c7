//! An MQTT broker's address: an IP socket address or a host name with a port.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// The IANA port for MQTT over plain TCP.
pub const MQTT_PORT: u16 = 1883;

/// Where a broker listens. Names stay names (core resolves nothing): the runtime resolves
/// them when it connects, so an address keeps working when a broker's IP changes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Broker {
    /// An IP address and port.
    Ip(SocketAddr),
    /// A DNS name (letters, digits, `-`, `.`; at most 253 characters) and port.
    Name {
        /// The host name, lowercase.
        host: String,
        /// The port.
        port: u16,
    },
}

/// Why text is not a broker address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// Not IP[:PORT], [IPv6]:PORT or HOST[:PORT].
    #[error("MQTT broker '{entry}': {problem} (write IP, IP:PORT, [IPv6]:PORT, HOST or HOST:PORT)")]
    Malformed {
        /// The text, shortened.
        entry: String,
        /// What is wrong.
        problem: &'static str,
    },
}

impl Broker {
    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            Broker::Ip(a) => a.port(),
            Broker::Name { port, .. } => *port,
        }
    }

    /// A name broker after checking `host` (what the address parser and `FromStr` accept).
    pub fn name(host: &str, port: u16) -> Result<Self, &'static str> {
        valid_host(host)?;
        Ok(Broker::Name {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// RFC 1123 host name rules: labels of 1–63 letters, digits and inner hyphens; 253 in all.
pub(crate) fn valid_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() || host.len() > 253 {
        return Err("a host name has 1 to 253 characters");
    }
    for label in host.strip_suffix('.').unwrap_or(host).split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each dot-separated label of a host name has 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err("a host name has only letters, digits, dots and inner hyphens");
        }
    }
    if host.parse::<IpAddr>().is_ok() {
        return Err("an IP address is not a host name");
    }
    Ok(())
}

impl fmt::Display for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Broker::Ip(a) => write!(f, "{a}"),
            Broker::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl FromStr for Broker {
    type Err = BrokerError;

    fn from_str(s: &str) -> Result<Self, BrokerError> {
        let bad = |problem| BrokerError::Malformed {
            entry: s.chars().take(80).collect(),
            problem,
        };
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Broker::Ip(a));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Broker::Ip(SocketAddr::new(ip, MQTT_PORT)));
        }
        if s.starts_with('[') {
            return Err(bad("not an [IPv6]:PORT address"));
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| bad("the port is not 0-65535"))?,
            ),
            None => (s, MQTT_PORT),
        };
        if port == 0 {
            return Err(bad("port 0 cannot be connected to"));
        }
        Broker::name(host, port).map_err(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        assert_eq!(
            "192.0.2.1".parse::<Broker>().unwrap(),
            Broker::Ip("192.0.2.1:1883".parse().unwrap())
        );
        assert_eq!(
            "[2001:db8::1]:8883".parse::<Broker>().unwrap().to_string(),
            "[2001:db8::1]:8883"
        );
        assert_eq!(
            "MQTT.Example.net".parse::<Broker>().unwrap(),
            Broker::Name {
                host: "mqtt.example.net".into(),
                port: 1883
            }
        );
        let b: Broker = "broker.example:1884".parse().unwrap();
        assert_eq!(b.to_string().parse::<Broker>().unwrap(), b);
        for bad in [
            "",
            "a..b",
            "-a.example",
            "a:b",
            "host:0",
            "[::1",
            "exa mple",
            "1.2.3.4:99999",
        ] {
            let e = bad.parse::<Broker>().unwrap_err().to_string();
            assert!(e.contains("MQTT broker"), "{bad}: {e}");
        }
    }
}
