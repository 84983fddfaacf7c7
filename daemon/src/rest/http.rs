//! HTTP/1.x framing for the REST API: one request per connection, bounded in size and
//! time, answered with `Connection: close`.
//!
//! Request heads are parsed by `httparse` (hyper's parser). The framing around it is kept
//! here, small, rather than in hyper, because hyper answers requests it cannot parse with
//! bodiless 400/431 responses of its own, while this API promises a JSON error for every
//! failure, and because `/p2p/pipe` turns the socket into a raw relay right after the
//! response head, which needs the socket and any bytes already read after the request.
//! Bodies need `Content-Length` (chunked bodies are refused with 411); `Expect:
//! 100-continue` is honoured.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::errors::{ApiError, ErrorKind};

/// Size and time limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request head (request line and headers), bytes.
    pub head_max: usize,
    /// Most header lines.
    pub headers_max: usize,
    /// Largest body, bytes.
    pub body_max: usize,
    /// Time allowed for the whole request head to arrive.
    pub head_timeout: Duration,
    /// Time allowed for the body to arrive.
    pub body_timeout: Duration,
    /// Time allowed for writing a response.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            head_max: 16 * 1024,
            headers_max: 64,
            body_max: 1024 * 1024,
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method, as sent.
    pub method: String,
    /// The path part of the target, still percent-encoded.
    pub path: String,
    /// The query part (after `?`), still percent-encoded; empty if none.
    pub query: String,
    /// Header names (lowercase) and raw values.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Bytes read after the head (the start of a body, or of piped data).
    pub after_head: Vec<u8>,
}

impl Request {
    /// Every value of header `name` (lowercase).
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The single value of header `name`: `Ok(None)` if absent, an error if repeated.
    pub fn header<'a>(&'a self, name: &'a str) -> Result<Option<&'a [u8]>, ApiError> {
        let mut it = self.header_all(name);
        let first = it.next();
        if it.next().is_some() {
            return Err(ApiError::new(
                ErrorKind::BadRequest,
                format!("the {name} header appears more than once: send it once"),
            ));
        }
        Ok(first)
    }

    /// The body length from `Content-Length` (0 if absent); chunked bodies are refused.
    pub fn content_length(&self) -> Result<usize, ApiError> {
        if self.header_all("transfer-encoding").next().is_some() {
            return Err(ApiError::new(
                ErrorKind::LengthRequired,
                "chunked (Transfer-Encoding) bodies are not accepted: send the body with a Content-Length",
            ));
        }
        match self.header("content-length")? {
            None => Ok(0),
            Some(v) => std::str::from_utf8(v)
                .ok()
                .filter(|s| !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| {
                    ApiError::new(ErrorKind::BadRequest, "Content-Length is not a number")
                }),
        }
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The client went away (or sent nothing); there is no one to answer.
    Gone,
    /// The request is bad; answer with this error.
    Bad(ApiError),
}

/// Reads and parses one request head, within `limits`.
pub async fn read_head(stream: &mut TcpStream, limits: &Limits) -> Result<Request, ReadError> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let read = async {
        // Bounded: every pass reads at least one byte and the buffer is capped.
        loop {
            let room = (limits.head_max + 1)
                .saturating_sub(buf.len())
                .min(chunk.len());
            let n = match stream.read(&mut chunk[..room]).await {
                Ok(0) | Err(_) => return Err(ReadError::Gone),
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            match parse(&buf, limits)? {
                Some(req) => return Ok(req),
                None if buf.len() > limits.head_max => {
                    return Err(ReadError::Bad(too_large(limits)));
                }
                None => {}
            }
        }
    };
    match tokio::time::timeout(limits.head_timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(ReadError::Bad(ApiError::new(
            ErrorKind::RequestTimeout,
            format!(
                "the request head did not arrive within {} s",
                limits.head_timeout.as_secs_f64()
            ),
        ))),
    }
}

fn too_large(limits: &Limits) -> ApiError {
    ApiError::new(
        ErrorKind::HeadersTooLarge,
        format!(
            "the request head is larger than {} bytes or has more than {} headers",
            limits.head_max, limits.headers_max
        ),
    )
}

/// Parses a complete head at the start of `buf`, or says more is needed.
fn parse(buf: &[u8], limits: &Limits) -> Result<Option<Request>, ReadError> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.headers_max];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ReadError::Bad(too_large(limits))),
        Err(e) => {
            return Err(ReadError::Bad(ApiError::new(
                ErrorKind::BadRequest,
                format!("not a valid HTTP/1.1 request: {e}"),
            )));
        }
    };
    let target = req.path.unwrap_or("");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    let path = path.split_once('#').map_or(path, |(p, _)| p);
    Ok(Some(Request {
        method: req.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers: req
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect(),
        after_head: buf[used..].to_vec(),
    }))
}

/// Reads a body of `len` bytes (already checked against the limit), of which the first
/// were read with the head. Sends `100 Continue` first if the client asked for it.
pub async fn read_body(
    stream: &mut TcpStream,
    req: &mut Request,
    len: usize,
    limits: &Limits,
) -> Result<Vec<u8>, ReadError> {
    let mut body = std::mem::take(&mut req.after_head);
    if body.len() >= len {
        req.after_head = body.split_off(len);
        return Ok(body);
    }
    let expects_continue = req
        .header_all("expect")
        .any(|v| v.eq_ignore_ascii_case(b"100-continue"));
    let work = async {
        if expects_continue {
            stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .map_err(|_| ReadError::Gone)?;
        }
        body.reserve_exact(len - body.len());
        let mut chunk = [0u8; 16 * 1024];
        // Bounded: every pass reads at least one byte, up to `len`.
        while body.len() < len {
            let want = (len - body.len()).min(chunk.len());
            match stream.read(&mut chunk[..want]).await {
                Ok(0) | Err(_) => return Err(ReadError::Gone),
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        Ok(body)
    };
    match tokio::time::timeout(limits.body_timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(ReadError::Bad(ApiError::new(
            ErrorKind::RequestTimeout,
            format!(
                "the body did not arrive within {} s",
                limits.body_timeout.as_secs_f64()
            ),
        ))),
    }
}

/// A response to write.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
    /// Further headers.
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    /// A 200 JSON response.
    pub fn json(value: &serde_json::Value) -> Self {
        Response::json_status(200, value)
    }

    /// A JSON response with `status`.
    pub fn json_status(status: u16, value: &serde_json::Value) -> Self {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"{}".to_vec());
        body.push(b'\n');
        Response {
            status,
            content_type: "application/json",
            body,
            headers: Vec::new(),
        }
    }

    /// The JSON error response for `e`.
    pub fn error(e: &ApiError) -> Self {
        let mut r = Response::json_status(e.kind.status(), &e.body());
        if e.kind == ErrorKind::Unauthorized {
            r.headers
                .push(("WWW-Authenticate", "Bearer realm=\"p2pd\"".into()));
        }
        r
    }

    /// The response head and body as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = head(self.status, self.content_type, &self.headers);
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

/// A response head without `Content-Length` and without the final blank line.
pub fn head(status: u16, content_type: &str, headers: &[(&'static str, String)]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nConnection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
        reason(status)
    );
    for (k, v) in headers {
        out.push_str(k);
        out.push_str(": ");
        out.push_str(v);
        out.push_str("\r\n");
    }
    out.into_bytes()
}

/// Writes `bytes` within `limits.write_timeout`; false if the client is gone.
pub async fn write(stream: &mut TcpStream, bytes: &[u8], limits: &Limits) -> bool {
    matches!(
        tokio::time::timeout(limits.write_timeout, stream.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

/// Ends a connection politely: shuts down our side, then reads and discards what the
/// client still sends (at most 1 MiB, 1 s), so an unread body does not turn into a reset
/// that destroys the response before the client reads it.
pub async fn finish(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
    let drain = async {
        let mut chunk = [0u8; 16 * 1024];
        let mut total = 0usize;
        while total < 1024 * 1024 {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// The reason phrase for the statuses this API uses.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_path_query_and_lowercases_headers() {
        let l = Limits::default();
        let r = parse(
            b"GET /p2p/recv/a?timeout=1 HTTP/1.1\r\nHost: x\r\n\r\nrest",
            &l,
        )
        .ok()
        .flatten()
        .unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.query.as_str()),
            ("GET", "/p2p/recv/a", "timeout=1")
        );
        assert_eq!(r.headers[0].0, "host");
        assert_eq!(r.after_head, b"rest");
        assert!(matches!(parse(b"GET / HTTP/1.1\r\nHo", &l), Ok(None)));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nbad header\r\n\r\n", &l),
            Err(ReadError::Bad(_))
        ));
    }

    #[test]
    fn content_length_is_strict() {
        let l = Limits::default();
        let req = |h: &str| {
            parse(format!("POST / HTTP/1.1\r\n{h}\r\n\r\n").as_bytes(), &l)
                .ok()
                .flatten()
                .unwrap()
        };
        assert_eq!(req("Content-Length: 12").content_length().unwrap(), 12);
        for bad in [
            "Content-Length: -1",
            "Content-Length: 1e3",
            "Content-Length: 99999999999999999999999",
            "Content-Length: 1\r\nContent-Length: 1",
        ] {
            assert!(req(bad).content_length().is_err(), "{bad}");
        }
        assert_eq!(
            req("Transfer-Encoding: chunked")
                .content_length()
                .unwrap_err()
                .kind,
            ErrorKind::LengthRequired
        );
    }

    proptest::proptest! {
        /// Request-shaped input with arbitrary headers (Host, Origin, Authorization,
        /// Content-Length among them) goes through every check without a panic.
        #[test]
        fn any_headers_are_checked(
            path in "/[ -~&&[^ ]]{0,20}",
            headers in proptest::collection::vec(("(Host|Origin|Authorization|Content-Length|Transfer-Encoding|Sec-Fetch-Site|X)", "[ -~]{0,30}"), 0..6),
        ) {
            let mut text = format!("GET {path} HTTP/1.1\r\n");
            for (k, v) in &headers {
                text.push_str(&format!("{k}: {v}\r\n"));
            }
            text.push_str("\r\n");
            let l = Limits::default();
            if let Ok(Some(req)) = parse(text.as_bytes(), &l) {
                let _ = req.content_length();
                let _ = crate::rest::security::check_origin(&req);
                let sec = crate::rest::security::Security { token: Some("0123456789abcdef".into()) };
                let _ = crate::rest::security::check_token_header(&req, &sec);
                if let Ok(m) = crate::rest::routes::find(&req.method, &req.path) {
                    let _ = crate::rest::routes::parse_query(m.route, &req.query);
                }
            }
        }

        /// Any bytes parse to a request, "need more", or an error: never a panic.
        #[test]
        fn any_bytes_parse_or_fail(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let l = Limits::default();
            if let Ok(Some(req)) = parse(&raw, &l) {
                let _ = req.content_length();
                let _ = crate::rest::security::check_origin(&req);
                let _ = crate::rest::security::check_token_header(
                    &req,
                    &crate::rest::security::Security { token: Some("0123456789abcdef".into()) },
                );
            }
        }
    }
}
