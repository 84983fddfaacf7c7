//! SSDP discovery (UPnP Device Architecture 1.1 §1.3): the M-SEARCH request a control
//! point multicasts to 239.255.255.250:1900 or `[ff02::c]:1900`, and the unicast
//! `HTTP/1.1 200 OK` search response whose `LOCATION` header points at the device
//! description.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use super::http::{HttpError, parse_head};

/// The SSDP port.
pub const SSDP_PORT: u16 = 1900;
/// The IPv4 SSDP multicast group.
pub const SSDP_V4_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 250);
/// The IPv6 link-local SSDP multicast group (UDA 1.1 §1.3.2).
pub const SSDP_V6_GROUP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xc);
/// Largest search response accepted (real ones are about 300 bytes).
pub const MAX_SEARCH_RESPONSE_LEN: usize = 2048;

/// The search targets a control point asks for: any Internet Gateway Device (v2 devices
/// also answer v1 searches, UDA 1.1 §1.3.2, but some only answer their own version).
pub const IGD_SEARCH_TARGETS: [&str; 2] = [
    "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
    "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
];

/// The IPv4 SSDP destination.
pub fn ssdp_v4() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(SSDP_V4_GROUP), SSDP_PORT)
}

/// The IPv6 SSDP destination on the interface with index `scope_id`.
pub fn ssdp_v6(scope_id: u32) -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(SSDP_V6_GROUP, SSDP_PORT, 0, scope_id))
}

/// Why an SSDP datagram is not a usable search response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsdpError {
    /// Larger than [`MAX_SEARCH_RESPONSE_LEN`].
    #[error("SSDP response is too large")]
    TooLarge,
    /// Not a `HTTP/1.1 200` response with headers.
    #[error("not an SSDP search response: {0}")]
    Malformed(&'static str),
    /// No `LOCATION` header.
    #[error("SSDP response has no LOCATION header")]
    NoLocation,
}

impl From<HttpError> for SsdpError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::HeadTooLarge | HttpError::BodyTooLarge => SsdpError::TooLarge,
            HttpError::Malformed(m) => SsdpError::Malformed(m),
            HttpError::Truncated => SsdpError::Malformed("truncated"),
        }
    }
}

/// An M-SEARCH request (UDA 1.1 §1.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchRequest<'a> {
    /// Where it is sent (the `HOST` header).
    pub destination: SocketAddr,
    /// The search target (`ST`).
    pub target: &'a str,
    /// Maximum wait in seconds (`MX`, 1..=5).
    pub mx: u8,
}

impl SearchRequest<'_> {
    /// The datagram.
    pub fn emit(&self) -> Vec<u8> {
        let host = match self.destination {
            SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        format!(
            "M-SEARCH * HTTP/1.1\r\nHOST: {host}\r\nMAN: \"ssdp:discover\"\r\nMX: {}\r\nST: {}\r\n\r\n",
            self.mx.clamp(1, 5),
            self.target
        )
        .into_bytes()
    }

    /// Parses an M-SEARCH (for tests and fuzzing); returns the `ST` and `MX` values.
    pub fn parse(bytes: &[u8]) -> Result<(String, u8), SsdpError> {
        let text = head_text(bytes)?;
        let (first, headers) = parse_head(text)?;
        if first != "M-SEARCH * HTTP/1.1" {
            return Err(SsdpError::Malformed("not an M-SEARCH"));
        }
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let st = get("st").ok_or(SsdpError::Malformed("no ST"))?;
        let mx = get("mx")
            .and_then(|v| v.parse().ok())
            .ok_or(SsdpError::Malformed("no MX"))?;
        Ok((st, mx))
    }
}

fn head_text(bytes: &[u8]) -> Result<&str, SsdpError> {
    if bytes.len() > MAX_SEARCH_RESPONSE_LEN {
        return Err(SsdpError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| SsdpError::Malformed("not UTF-8"))?;
    let end = text
        .find("\r\n\r\n")
        .ok_or(SsdpError::Malformed("no end of headers"))?;
    Ok(&text[..end])
}

/// A search response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchResponse {
    /// The device description URL (`LOCATION`).
    pub location: String,
    /// The search target answered (`ST`), empty if absent.
    pub target: String,
    /// The unique service name (`USN`), empty if absent.
    pub usn: String,
    /// The `SERVER` header, empty if absent.
    pub server: String,
}

impl SearchResponse {
    /// Parses a search response datagram.
    pub fn parse(bytes: &[u8]) -> Result<Self, SsdpError> {
        let text = head_text(bytes)?;
        let (first, headers) = parse_head(text)?;
        let mut parts = first.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.eq_ignore_ascii_case("HTTP/1.1") && !version.eq_ignore_ascii_case("HTTP/1.0") {
            return Err(SsdpError::Malformed("not an HTTP status line"));
        }
        if parts.next() != Some("200") {
            return Err(SsdpError::Malformed("status is not 200"));
        }
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let location = get("location");
        if location.is_empty() {
            return Err(SsdpError::NoLocation);
        }
        Ok(Self {
            location,
            target: get("st"),
            usn: get("usn"),
            server: get("server"),
        })
    }

    /// Emits the response (for tests and fuzzing).
    pub fn emit(&self) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: {}\r\nUSN: {}\r\nEXT:\r\nSERVER: {}\r\nLOCATION: {}\r\n\r\n",
            self.target, self.usn, self.server, self.location
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msearch_round_trip_v4_and_v6() {
        let m = SearchRequest {
            destination: ssdp_v4(),
            target: IGD_SEARCH_TARGETS[0],
            mx: 2,
        }
        .emit();
        let s = String::from_utf8(m.clone()).unwrap();
        assert!(s.starts_with("M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n"));
        assert!(s.contains("MAN: \"ssdp:discover\"\r\n"));
        assert_eq!(
            SearchRequest::parse(&m).unwrap(),
            (IGD_SEARCH_TARGETS[0].to_string(), 2)
        );
        let m6 = SearchRequest {
            destination: ssdp_v6(3),
            target: "ssdp:all",
            mx: 9,
        }
        .emit();
        let s6 = String::from_utf8(m6).unwrap();
        assert!(s6.contains("HOST: [ff02::c]:1900\r\n"), "{s6}");
        assert!(s6.contains("MX: 5\r\n"));
    }

    #[test]
    fn parses_miniupnpd_response() {
        let r = b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nUSN: uuid:abc::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nEXT:\r\nSERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\nLOCATION: http://10.0.0.1:5000/rootDesc.xml\r\nOPT: \"http://schemas.upnp.org/upnp/1/0/\"; ns=01\r\n01-NLS: 1\r\nBOOTID.UPNP.ORG: 1\r\nCONFIGID.UPNP.ORG: 1337\r\n\r\n";
        let p = SearchResponse::parse(r).unwrap();
        assert_eq!(p.location, "http://10.0.0.1:5000/rootDesc.xml");
        assert!(p.server.contains("MiniUPnPd"));
        assert_eq!(SearchResponse::parse(&p.emit()).unwrap(), p);
    }

    #[test]
    fn rejects_non_responses() {
        assert!(SearchResponse::parse(b"NOTIFY * HTTP/1.1\r\nLOCATION: x\r\n\r\n").is_err());
        assert_eq!(
            SearchResponse::parse(b"HTTP/1.1 200 OK\r\nST: x\r\n\r\n"),
            Err(SsdpError::NoLocation)
        );
        assert_eq!(
            SearchResponse::parse(&[b'a'; 3000]),
            Err(SsdpError::TooLarge)
        );
        assert!(SearchResponse::parse(b"HTTP/1.1 200 OK\r\nLOCATION: x\r\n").is_err());
        assert!(SearchResponse::parse(&[0xff, 0xfe]).is_err());
    }
}
