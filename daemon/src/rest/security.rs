//! Who may use the REST API: programs on this machine, not web pages.
//!
//! - **DNS rebinding.** A page on `evil.example` can make its name resolve to 127.0.0.1,
//!   but its requests still say `Host: evil.example`. Only `localhost` and loopback
//!   addresses are accepted as `Host`.
//! - **Cross-origin browser requests.** Browsers send `Origin` with cross-origin fetches
//!   and `Sec-Fetch-Site` with every request. A non-loopback `Origin` is refused, and so
//!   is `Origin: null` (P2PD accepted it, but any site can produce it from a sandboxed
//!   iframe), and `Sec-Fetch-Site: cross-site` (which also catches `<img src=…>` style
//!   GETs that carry no `Origin`).
//! - **Token.** With `[rest] token = "…"` in the config file, every request must carry
//!   `Authorization: Bearer <token>` (compared in constant time).

use std::net::{IpAddr, Ipv6Addr};

use super::errors::{ApiError, ErrorKind};
use super::http::Request;

/// The checks' settings.
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// The bearer token every request must carry, if set.
    pub token: Option<String>,
}

/// Checks a token from the config file: 16 to 256 visible ASCII characters.
pub fn check_token(token: &str) -> Result<(), String> {
    if !(16..=256).contains(&token.len()) || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "the [rest] token must be 16 to 256 visible ASCII characters (no spaces); e.g. generate one with `openssl rand -hex 32`".into(),
        );
    }
    Ok(())
}

/// Whether `host` (a `Host` header value, or an origin's host part, with an optional
/// port) names this machine's loopback.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return false;
        };
        if !port_ok(after) {
            return false;
        }
        return inside
            .parse::<Ipv6Addr>()
            .is_ok_and(|a| IpAddr::V6(a).to_canonical().is_loopback());
    } else {
        match host.split_once(':') {
            Some((name, port)) if port_ok(&format!(":{port}")) => name,
            Some(_) => return false,
            None => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

/// Empty, or `:` and a port number (0 to 65535).
fn port_ok(s: &str) -> bool {
    match s.strip_prefix(':') {
        None => s.is_empty(),
        Some(p) => {
            (1..=5).contains(&p.len())
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u16>().is_ok()
        }
    }
}

/// Whether an `Origin` value is a page served from this machine.
fn is_loopback_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    !rest.contains('/') && is_loopback_host(rest)
}

fn header_text<'a>(req: &'a Request, name: &'a str) -> Result<Option<&'a str>, ApiError> {
    match req.header(name)? {
        None => Ok(None),
        Some(v) => std::str::from_utf8(v).map(|s| Some(s.trim())).map_err(|_| {
            ApiError::new(
                ErrorKind::BadRequest,
                format!("the {name} header is not text"),
            )
        }),
    }
}

/// Checks `Host`, `Origin` and `Sec-Fetch-Site`. Returns the origin to allow in CORS
/// headers (a loopback page), if the request had one.
pub fn check_origin(req: &Request) -> Result<Option<String>, ApiError> {
    let host = header_text(req, "host")?;
    match host {
        Some(h) if is_loopback_host(h) => {}
        Some(h) => {
            let shown: String = h.chars().take(100).collect();
            return Err(ApiError::new(
                ErrorKind::HostRefused,
                format!(
                    "Host '{}' is not this machine: the API answers only to localhost or a loopback address (this blocks DNS rebinding)",
                    shown.escape_debug()
                ),
            ));
        }
        None => {
            return Err(ApiError::new(
                ErrorKind::HostRefused,
                "the request has no Host header: send Host: 127.0.0.1",
            ));
        }
    }
    if let Some(site) = header_text(req, "sec-fetch-site")? {
        if site.eq_ignore_ascii_case("cross-site") {
            return Err(ApiError::new(
                ErrorKind::OriginRefused,
                "requests from web pages of other sites are refused",
            ));
        }
    }
    match header_text(req, "origin")? {
        None => Ok(None),
        Some(o) if is_loopback_origin(o) => Ok(Some(o.to_string())),
        Some(o) => {
            let shown: String = o.chars().take(100).collect();
            Err(ApiError::new(
                ErrorKind::OriginRefused,
                format!(
                    "requests from the page origin '{}' are refused: only pages served from this machine (http://localhost, http://127.0.0.1) may call the API",
                    shown.escape_debug()
                ),
            ))
        }
    }
}

/// Checks the bearer token, if one is configured.
pub fn check_token_header(req: &Request, sec: &Security) -> Result<(), ApiError> {
    let Some(token) = &sec.token else {
        return Ok(());
    };
    let missing = || {
        ApiError::new(
            ErrorKind::Unauthorized,
            "this daemon requires a token: send Authorization: Bearer <token> with the token from the [rest] section of its config file",
        )
    };
    let value = req.header("authorization")?.ok_or_else(missing)?;
    let Some(given) = value
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case(b"bearer "))
        .map(|_| &value[7..])
    else {
        return Err(missing());
    };
    if constant_time_eq(given, token.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorKind::Unauthorized,
            "wrong token: use the one in the [rest] section of the daemon's config file",
        ))
    }
}

/// Compares without an early exit, so timing does not reveal the matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, &y) in b.iter().enumerate() {
        let x = a.get(i).copied().unwrap_or(!y);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for ok in [
            "localhost",
            "LOCALHOST:12333",
            "localhost.",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:12333",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "192.0.2.1",
            "[2001:db8::1]",
            "[::1",
            "::1",
            "localhost:",
            "localhost:123456",
            "localhost:99999",
            "localhost:80:80",
            "0.0.0.0",
            "[::]",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn origins() {
        assert!(is_loopback_origin("http://localhost:3000"));
        assert!(is_loopback_origin("https://127.0.0.1"));
        assert!(!is_loopback_origin("null"));
        assert!(!is_loopback_origin("http://evil.example"));
        assert!(!is_loopback_origin("file://"));
        assert!(!is_loopback_origin("http://127.0.0.1/x"));
    }

    #[test]
    fn token_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abd", b"abc"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
        assert!(check_token("short").is_err());
        assert!(check_token("0123456789abcdef").is_ok());
        assert!(check_token("0123456789abcdef with space").is_err());
    }
}
