//! The minimal HTTP/1.1 (RFC 9112) a UPnP control point needs: one request per TCP
//! connection (`Connection: close`), and a response parser for `Content-Length`, chunked
//! and read-until-close bodies, with hard size limits.
//!
//! The parser is fed the whole buffer received so far and answers "complete", "need more"
//! or an error; the caller bounds the buffer with [`MAX_RESPONSE_LEN`]. Nothing here does
//! I/O.

/// Largest response head (status line and headers) accepted.
pub const MAX_HEAD_LEN: usize = 8 * 1024;
/// Largest response body accepted (device descriptions are a few kB).
pub const MAX_BODY_LEN: usize = 64 * 1024;
/// Most bytes a caller should ever buffer for one response (head, body, chunk framing).
pub const MAX_RESPONSE_LEN: usize = MAX_HEAD_LEN + 2 * MAX_BODY_LEN;
/// Most header lines accepted.
pub const MAX_HEADERS: usize = 64;
/// Most chunks accepted in a chunked body.
pub const MAX_CHUNKS: usize = 1024;

/// Why an HTTP response could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The head is longer than [`MAX_HEAD_LEN`] or has too many headers.
    #[error("the gateway's HTTP response head is too large")]
    HeadTooLarge,
    /// The body is longer than [`MAX_BODY_LEN`].
    #[error("the gateway's HTTP response body is larger than {MAX_BODY_LEN} bytes")]
    BodyTooLarge,
    /// The status line or a header is not HTTP/1.x syntax.
    #[error("the gateway sent a malformed HTTP response: {0}")]
    Malformed(&'static str),
    /// The connection closed before the response was complete.
    #[error("the gateway closed the connection before the HTTP response was complete")]
    Truncated,
}

/// An HTTP request to emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// The `Host` header value (`ip:port`, IPv6 in brackets).
    pub host: &'a str,
    /// The request target (absolute path and query).
    pub path: &'a str,
    /// Extra headers (name, value); must not contain CR or LF.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body (empty for GET).
    pub body: &'a [u8],
}

fn clean(s: &str) -> bool {
    !s.bytes().any(|b| b == b'\r' || b == b'\n')
}

impl Request<'_> {
    /// The request bytes, or `None` if a field contains CR/LF (header injection) or the
    /// path does not start with `/`.
    pub fn emit(&self) -> Option<Vec<u8>> {
        let fields_ok = clean(self.method)
            && clean(self.host)
            && clean(self.path)
            && self.path.starts_with('/')
            && !self.path.contains(' ')
            && self
                .headers
                .iter()
                .all(|(n, v)| clean(n) && clean(v) && !n.contains(':'));
        if !fields_ok {
            return None;
        }
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: p2pd UPnP/1.1\r\n",
            self.method, self.path, self.host
        );
        for (n, v) in self.headers {
            out.push_str(n);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
        if !self.body.is_empty() || self.method == "POST" {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(self.body);
        Some(bytes)
    }
}

/// A complete HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code (100..=999).
    pub status: u16,
    /// Header lines (name lower-cased, value trimmed), in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Header lines: (lower-case name, trimmed value).
pub type Headers = Vec<(String, String)>;

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses the header block of an HTTP/1.x message (`lines` is the text before the empty
/// line). Returns the first line and the headers.
pub(crate) fn parse_head(head: &str) -> Result<(&str, Headers), HttpError> {
    let mut lines = head.split("\r\n");
    let first = lines.next().ok_or(HttpError::Malformed("empty head"))?;
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(HttpError::HeadTooLarge);
        }
        if line.starts_with([' ', '\t']) {
            return Err(HttpError::Malformed("obsolete header line folding"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(HttpError::Malformed("header line without a colon"))?;
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(HttpError::Malformed("bad header name"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok((first, headers))
}

/// Tries to parse a response from everything received so far. `closed` says the peer
/// closed the connection (a body without length then ends there). `Ok(None)` means more
/// bytes are needed.
pub fn parse_response(bytes: &[u8], closed: bool) -> Result<Option<Response>, HttpError> {
    let Some(head_end) = find(&bytes[..bytes.len().min(MAX_HEAD_LEN + 4)], b"\r\n\r\n") else {
        if bytes.len() > MAX_HEAD_LEN {
            return Err(HttpError::HeadTooLarge);
        }
        return if closed {
            Err(HttpError::Truncated)
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&bytes[..head_end])
        .map_err(|_| HttpError::Malformed("head is not UTF-8"))?;
    let (status_line, headers) = parse_head(head)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HttpError::Malformed("not an HTTP/1.x status line"));
    }
    let code = parts.next().unwrap_or_default();
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpError::Malformed("bad status code"));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| HttpError::Malformed("bad status code"))?;
    if status < 100 {
        return Err(HttpError::Malformed("bad status code"));
    }
    let rest = &bytes[head_end + 4..];
    let get = |n: &str| {
        headers
            .iter()
            .filter(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    let chunked = get("transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        match dechunk(rest)? {
            Some(b) => b,
            None if closed => return Err(HttpError::Truncated),
            None => return Ok(None),
        }
    } else if let Some(len) = get("content-length").first() {
        if get("content-length").iter().any(|v| v != len) {
            return Err(HttpError::Malformed("conflicting Content-Length headers"));
        }
        if len.is_empty() || len.len() > 10 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HttpError::Malformed("bad Content-Length"));
        }
        let n: usize = len
            .parse()
            .map_err(|_| HttpError::Malformed("bad Content-Length"))?;
        if n > MAX_BODY_LEN {
            return Err(HttpError::BodyTooLarge);
        }
        if rest.len() < n {
            return if closed {
                Err(HttpError::Truncated)
            } else {
                Ok(None)
            };
        }
        rest[..n].to_vec()
    } else if status == 204 || status == 304 || status < 200 {
        Vec::new()
    } else {
        if rest.len() > MAX_BODY_LEN {
            return Err(HttpError::BodyTooLarge);
        }
        if !closed {
            return Ok(None);
        }
        rest.to_vec()
    };
    Ok(Some(Response {
        status,
        headers,
        body,
    }))
}

/// De-chunks a chunked body (RFC 9112 §7.1); `Ok(None)` when incomplete.
fn dechunk(mut rest: &[u8]) -> Result<Option<Vec<u8>>, HttpError> {
    let mut body = Vec::new();
    for _ in 0..MAX_CHUNKS {
        let Some(eol) = find(&rest[..rest.len().min(1024)], b"\r\n") else {
            if rest.len() > 1024 {
                return Err(HttpError::Malformed("chunk size line too long"));
            }
            return Ok(None);
        };
        let line = std::str::from_utf8(&rest[..eol])
            .map_err(|_| HttpError::Malformed("chunk size is not text"))?;
        let size = line.split(';').next().unwrap_or_default().trim();
        if size.is_empty() || size.len() > 8 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(HttpError::Malformed("bad chunk size"));
        }
        let n =
            usize::from_str_radix(size, 16).map_err(|_| HttpError::Malformed("bad chunk size"))?;
        rest = &rest[eol + 2..];
        if n == 0 {
            // Trailer section: lines until an empty one.
            for _ in 0..MAX_HEADERS {
                let Some(eol) = find(&rest[..rest.len().min(MAX_HEAD_LEN)], b"\r\n") else {
                    if rest.len() > MAX_HEAD_LEN {
                        return Err(HttpError::HeadTooLarge);
                    }
                    return Ok(None);
                };
                if eol == 0 {
                    return Ok(Some(body));
                }
                rest = &rest[eol + 2..];
            }
            return Err(HttpError::HeadTooLarge);
        }
        if body.len() + n > MAX_BODY_LEN {
            return Err(HttpError::BodyTooLarge);
        }
        if rest.len() < n + 2 {
            return Ok(None);
        }
        if &rest[n..n + 2] != b"\r\n" {
            return Err(HttpError::Malformed("chunk not followed by CRLF"));
        }
        body.extend_from_slice(&rest[..n]);
        rest = &rest[n + 2..];
    }
    Err(HttpError::Malformed("too many chunks"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_has_host_length_and_close() {
        let r = Request {
            method: "POST",
            host: "10.0.0.1:5000",
            path: "/ctl/IPConn",
            headers: &[("SOAPAction", "\"urn:x#A\"")],
            body: b"<x/>",
        }
        .emit()
        .unwrap();
        let s = String::from_utf8(r).unwrap();
        assert!(s.starts_with("POST /ctl/IPConn HTTP/1.1\r\nHost: 10.0.0.1:5000\r\n"));
        assert!(s.contains("Connection: close\r\n"));
        assert!(s.contains("SOAPAction: \"urn:x#A\"\r\n"));
        assert!(s.ends_with("Content-Length: 4\r\n\r\n<x/>"));
    }

    #[test]
    fn request_refuses_header_injection() {
        let r = Request {
            method: "GET",
            host: "a\r\nX: y",
            path: "/",
            headers: &[],
            body: b"",
        };
        assert_eq!(r.emit(), None);
        let r = Request {
            method: "GET",
            host: "a",
            path: "rel",
            headers: &[],
            body: b"",
        };
        assert_eq!(r.emit(), None);
    }

    #[test]
    fn content_length_incremental() {
        let full = b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 5\r\n\r\nhello";
        for cut in 0..full.len() {
            assert_eq!(parse_response(&full[..cut], false), Ok(None), "cut {cut}");
        }
        let r = parse_response(full, false).unwrap().unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));
        assert_eq!(r.header("content-type"), Some("text/xml"));
        assert_eq!(
            parse_response(&full[..full.len() - 1], true),
            Err(HttpError::Truncated)
        );
    }

    #[test]
    fn chunked_with_extension_and_trailer() {
        let full = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nT: v\r\n\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse_response(&full[..cut], false), Ok(None), "cut {cut}");
        }
        assert_eq!(
            parse_response(full, false).unwrap().unwrap().body,
            b"hello!"
        );
    }

    #[test]
    fn body_until_close() {
        let r = b"HTTP/1.0 200 OK\r\n\r\nabc";
        assert_eq!(parse_response(r, false), Ok(None));
        assert_eq!(parse_response(r, true).unwrap().unwrap().body, b"abc");
    }

    #[test]
    fn hostile_responses_are_errors() {
        let big = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_LEN + 1
        );
        assert_eq!(
            parse_response(big.as_bytes(), false),
            Err(HttpError::BodyTooLarge)
        );
        let huge_head = vec![b'a'; MAX_HEAD_LEN + 10];
        assert_eq!(
            parse_response(&huge_head, false),
            Err(HttpError::HeadTooLarge)
        );
        let chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFF\r\n";
        assert_eq!(parse_response(chunk, false), Err(HttpError::BodyTooLarge));
        let chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n";
        assert!(matches!(
            parse_response(chunk, false),
            Err(HttpError::Malformed(_))
        ));
        for bad in [
            &b"HTTP/2 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\na",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
        ] {
            assert!(
                matches!(parse_response(bad, true), Err(HttpError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
