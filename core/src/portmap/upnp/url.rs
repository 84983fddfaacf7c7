//! The `http://IP[:port]/path` URLs a gateway hands out (SSDP `LOCATION`, `URLBase`,
//! `controlURL`), and resolving a relative control URL against the description's base
//! (RFC 3986 §5.2, for the shapes gateways use).
//!
//! Only IP literals are accepted as hosts: p2pd does no DNS lookups for the gateway, and
//! a gateway on the LAN always advertises its address.

use std::net::{IpAddr, SocketAddr};

/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 1024;

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not `http://`.
    #[error("the gateway's URL is not http://IP[:port]/path: {0}")]
    Unsupported(String),
    /// Longer than [`MAX_URL_LEN`] or has control characters.
    #[error("the gateway's URL is too long or has control characters")]
    Malformed,
}

/// An `http://` URL with an IP host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// The host address (an IPv6 zone id is dropped: the caller knows the interface).
    pub ip: IpAddr,
    /// The port (80 when absent).
    pub port: u16,
    /// The absolute path with query, starting with `/`.
    pub path: String,
}

fn short(s: &str) -> String {
    s.chars().take(80).collect()
}

impl HttpUrl {
    /// Parses an absolute `http://` URL.
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        if s.len() > MAX_URL_LEN || s.chars().any(|c| c.is_control() || c == ' ') {
            return Err(UrlError::Malformed);
        }
        let rest = s
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("http://"))
            .map(|_| &s[7..])
            .ok_or_else(|| UrlError::Unsupported(short(s)))?;
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = path.split('#').next().unwrap_or("/");
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        if authority.contains('@') {
            return Err(UrlError::Unsupported(short(s)));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| UrlError::Unsupported(short(s)))?;
            let h = h.split('%').next().unwrap_or_default();
            (h, after.strip_prefix(':'))
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let ip: IpAddr = host.parse().map_err(|_| UrlError::Unsupported(short(s)))?;
        let port = match port {
            None | Some("") => 80,
            Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| UrlError::Unsupported(short(s)))?,
            Some(_) => return Err(UrlError::Unsupported(short(s))),
        };
        Ok(Self { ip, port, path })
    }

    /// Where to connect.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }

    /// The `Host` header value.
    pub fn host_header(&self) -> String {
        match self.ip {
            IpAddr::V4(a) => format!("{a}:{}", self.port),
            IpAddr::V6(a) => format!("[{a}]:{}", self.port),
        }
    }

    /// Resolves `reference` (absolute URL, absolute path or relative path) against this
    /// base URL.
    pub fn join(&self, reference: &str) -> Result<Self, UrlError> {
        let reference = reference.trim();
        if reference.len() > MAX_URL_LEN || reference.chars().any(|c| c.is_control() || c == ' ') {
            return Err(UrlError::Malformed);
        }
        if reference.contains("://") {
            return Self::parse(reference);
        }
        if reference.starts_with("//") {
            return Self::parse(&format!("http:{reference}"));
        }
        let path = if reference.starts_with('/') {
            reference.to_string()
        } else {
            let base = self.path.split(['?', '#']).next().unwrap_or("/");
            let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
            format!("{}{reference}", if dir.is_empty() { "/" } else { dir })
        };
        Ok(Self {
            ip: self.ip,
            port: self.port,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_shapes() {
        let u = HttpUrl::parse("http://10.0.0.1:5000/rootDesc.xml").unwrap();
        assert_eq!(u.socket_addr(), "10.0.0.1:5000".parse().unwrap());
        assert_eq!(u.path, "/rootDesc.xml");
        let u = HttpUrl::parse("HTTP://[fe80::1%25eth0]:49152/desc?x=1").unwrap();
        assert_eq!(u.ip, "fe80::1".parse::<IpAddr>().unwrap());
        assert_eq!((u.port, u.path.as_str()), (49152, "/desc?x=1"));
        assert_eq!(u.host_header(), "[fe80::1]:49152");
        let u = HttpUrl::parse("http://192.168.1.1").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        for bad in [
            "https://10.0.0.1/",
            "http://router.local/",
            "http://10.0.0.1:0/",
            "http://10.0.0.1:99999/",
            "http://u@10.0.0.1/",
            "http://10.0.0.1/a b",
            "ftp://x",
            "",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn join_relative_absolute_and_full() {
        let base = HttpUrl::parse("http://10.0.0.1:5000/dev/rootDesc.xml").unwrap();
        assert_eq!(base.join("/ctl/IPConn").unwrap().path, "/ctl/IPConn");
        assert_eq!(base.join("ctl/IPConn").unwrap().path, "/dev/ctl/IPConn");
        let other = base.join("http://10.0.0.9:80/x").unwrap();
        assert_eq!(other.socket_addr(), "10.0.0.9:80".parse().unwrap());
        assert!(base.join("https://x/").is_err());
    }
}
