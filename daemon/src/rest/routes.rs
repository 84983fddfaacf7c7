//! The endpoints: the route table, path and query decoding, and one handler per route.
//!
//! Paths keep P2PD's v2 `/p2p/...` shape, with its bugs fixed: each path segment is
//! percent-decoded *after* splitting (P2PD decoded first, so a `%2F` in a text split it),
//! `timeout` is a number with an upper bound (P2PD passed it on as a string), and every
//! failure has its own code and HTTP status (P2PD answered 200 to everything).

use std::sync::Arc;
use std::time::Duration;

use p2pd_core::negotiate::Strategy;

use super::State;
use super::errors::{ApiError, ErrorKind};
use super::http::Response;
use super::table::{PipeGuard, RecvMode};

/// Longest `?timeout=` accepted, seconds.
pub const MAX_TIMEOUT_S: f64 = 60.0;
/// `?timeout=` when none is given, seconds (P2PD's default).
pub const DEFAULT_TIMEOUT_S: f64 = 2.0;
/// How long `/p2p/open` waits for the node before giving up.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a send may wait for the peer to take the bytes.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Most query parameters.
const MAX_PARAMS: usize = 8;

/// Which handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum RouteId {
    Version,
    Ifs,
    OpenApi,
    Addr,
    Open,
    Cons,
    Con,
    Accept,
    Send,
    Recv,
    BinaryRecv,
    BinarySend,
    Pipe,
    Close,
}

/// One endpoint: method, path template (`{x}` is one segment; a final `{text}` of a route
/// with `rest` takes the rest of the path, slashes included), query keys it accepts.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The template, as in the OpenAPI document.
    pub path: &'static str,
    /// The handler.
    pub id: RouteId,
    /// Query parameters accepted.
    pub query: &'static [&'static str],
    /// Whether the last parameter takes the rest of the path.
    pub rest: bool,
}

const fn route(
    method: &'static str,
    path: &'static str,
    id: RouteId,
    query: &'static [&'static str],
) -> Route {
    Route {
        method,
        path,
        id,
        query,
        rest: false,
    }
}

/// Every endpoint. The OpenAPI document describes exactly these (a test checks).
pub const ROUTES: &[Route] = &[
    route("GET", "/version", RouteId::Version, &[]),
    route("GET", "/ifs", RouteId::Ifs, &[]),
    route("GET", "/openapi.json", RouteId::OpenApi, &[]),
    route("GET", "/p2p/addr", RouteId::Addr, &[]),
    route(
        "GET",
        "/p2p/open/{name}/{addr}",
        RouteId::Open,
        &["strategies"],
    ),
    route("GET", "/p2p/cons", RouteId::Cons, &[]),
    route("GET", "/p2p/con/{name}", RouteId::Con, &[]),
    route("GET", "/p2p/accept", RouteId::Accept, &["timeout"]),
    Route {
        rest: true,
        ..route("GET", "/p2p/send/{name}/{text}", RouteId::Send, &[])
    },
    route("GET", "/p2p/recv/{name}", RouteId::Recv, &["timeout"]),
    route(
        "GET",
        "/p2p/binary/{name}",
        RouteId::BinaryRecv,
        &["timeout"],
    ),
    route("POST", "/p2p/binary/{name}", RouteId::BinarySend, &[]),
    route("GET", "/p2p/pipe/{name}", RouteId::Pipe, &[]),
    route("GET", "/p2p/close/{name}", RouteId::Close, &[]),
];

/// A matched request: the route and its decoded path parameters.
#[derive(Debug)]
pub struct Matched {
    /// The route.
    pub route: &'static Route,
    /// Decoded parameters, in template order.
    pub params: Vec<String>,
}

/// Decodes `%XX` escapes strictly (a `%` not followed by two hex digits is an error) and
/// requires UTF-8.
pub fn percent_decode(raw: &str) -> Result<String, ApiError> {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).and_then(|h| {
                std::str::from_utf8(h)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            });
            let Some(byte) = hex else {
                return Err(ApiError::new(
                    ErrorKind::BadRequest,
                    format!(
                        "bad percent-encoding at byte {i} of the path or query: '%' must be followed by two hex digits"
                    ),
                ));
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| {
        ApiError::new(
            ErrorKind::BadRequest,
            "the decoded path or query is not UTF-8 text",
        )
    })
}

/// Finds the route for `method` and `path` (still percent-encoded).
pub fn find(method: &str, path: &str) -> Result<Matched, ApiError> {
    let Some(path) = path.strip_prefix('/') else {
        return Err(ApiError::new(
            ErrorKind::BadRequest,
            "the request target must be a path starting with '/'",
        ));
    };
    let segs: Vec<&str> = path.split('/').collect();
    let mut allowed: Vec<&'static str> = Vec::new();
    for r in ROUTES {
        let Some(raw) = match_template(r, &segs) else {
            continue;
        };
        if r.method != method {
            if !allowed.contains(&r.method) {
                allowed.push(r.method);
            }
            continue;
        }
        let params = raw
            .iter()
            .map(|p| percent_decode(p))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Matched { route: r, params });
    }
    if allowed.is_empty() {
        let shown: String = path.chars().take(100).collect();
        Err(ApiError::new(
            ErrorKind::NoRoute,
            format!(
                "no endpoint at '/{}': see GET /openapi.json for the API",
                shown.escape_debug()
            ),
        ))
    } else {
        Err(ApiError::new(
            ErrorKind::MethodNotAllowed,
            format!(
                "method {} is not allowed here; use {}",
                method.chars().take(20).collect::<String>().escape_debug(),
                allowed.join(" or ")
            ),
        ))
    }
}

/// The methods some route accepts at `path` (for a 405's `Allow` header).
pub fn allowed(path: &str) -> Vec<&'static str> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut out: Vec<&'static str> = Vec::new();
    for r in ROUTES {
        if match_template(r, &segs).is_some() && !out.contains(&r.method) {
            out.push(r.method);
        }
    }
    out
}

/// The raw parameter strings if `segs` fits the route's template.
fn match_template(r: &Route, segs: &[&str]) -> Option<Vec<String>> {
    let tpl: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
    if segs.len() < tpl.len() || (!r.rest && segs.len() != tpl.len()) {
        return None;
    }
    let mut params = Vec::new();
    for (i, t) in tpl.iter().enumerate() {
        if t.starts_with('{') {
            let value = if r.rest && i == tpl.len() - 1 {
                segs[i..].join("/")
            } else {
                segs[i].to_string()
            };
            if value.is_empty() {
                return None;
            }
            params.push(value);
        } else if *t != segs[i] {
            return None;
        }
    }
    Some(params)
}

/// The query string's parameters, checked against the keys the route accepts.
pub fn parse_query(route: &Route, query: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        if out.len() >= MAX_PARAMS {
            return Err(ApiError::new(
                ErrorKind::BadQuery,
                "too many query parameters",
            ));
        }
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let k = percent_decode(k)?;
        let v = percent_decode(v)?;
        if !route.query.contains(&k.as_str()) {
            let accepted = if route.query.is_empty() {
                "none".to_string()
            } else {
                route.query.join(", ")
            };
            return Err(ApiError::new(
                ErrorKind::BadQuery,
                format!(
                    "unknown query parameter '{}' for {}; accepted: {accepted}",
                    k.chars().take(40).collect::<String>().escape_debug(),
                    route.path
                ),
            ));
        }
        if out.iter().any(|(have, _)| *have == k) {
            return Err(ApiError::new(
                ErrorKind::BadQuery,
                format!("query parameter '{k}' is given twice"),
            ));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn query_value<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `?timeout=S`: seconds, 0 to [`MAX_TIMEOUT_S`], decimals allowed.
pub fn parse_timeout(q: &[(String, String)]) -> Result<Duration, ApiError> {
    let Some(v) = query_value(q, "timeout") else {
        return Ok(Duration::from_secs_f64(DEFAULT_TIMEOUT_S));
    };
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=MAX_TIMEOUT_S).contains(&s) => {
            Ok(Duration::from_secs_f64(s))
        }
        _ => Err(ApiError::new(
            ErrorKind::BadQuery,
            format!(
                "timeout '{}' is not a number of seconds from 0 to {MAX_TIMEOUT_S}",
                v.chars().take(40).collect::<String>().escape_debug()
            ),
        )),
    }
}

/// What a handler produced.
pub enum Outcome {
    /// An ordinary response.
    Response(Response),
    /// Turn the HTTP connection into a relay with this connection.
    Pipe(PipeGuard),
}

fn ok(v: serde_json::Value) -> Result<Outcome, ApiError> {
    Ok(Outcome::Response(Response::json(&v)))
}

/// The served OpenAPI document (also `daemon/openapi.json` in the repository).
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// Runs the handler of `m`.
pub async fn handle(
    m: &Matched,
    query: &[(String, String)],
    body: Vec<u8>,
    state: &Arc<State>,
) -> Result<Outcome, ApiError> {
    let p = &m.params;
    let param = |i: usize| p.get(i).map(String::as_str).unwrap_or("");
    match m.route.id {
        RouteId::Version => ok(serde_json::json!({
            "error": 0,
            "name": "p2pd",
            "version": env!("CARGO_PKG_VERSION"),
            "api": 1,
            "node": state.node.state_name(),
        })),
        RouteId::Ifs => ok(state.ifs.json()),
        RouteId::OpenApi => Ok(Outcome::Response(Response {
            status: 200,
            content_type: "application/json",
            body: OPENAPI.as_bytes().to_vec(),
            headers: Vec::new(),
        })),
        RouteId::Addr => {
            let node = state.node.get()?;
            ok(serde_json::json!({"error": 0, "addr": node.addr().to_string()}))
        }
        RouteId::Open => open(param(0), param(1), query, state).await,
        RouteId::Cons => {
            let cons: Vec<_> = state.table.list().iter().map(|c| c.json()).collect();
            ok(serde_json::json!({"error": 0, "cons": cons}))
        }
        RouteId::Con => ok(state.table.get(param(0))?.json()),
        RouteId::Accept => {
            let wait = parse_timeout(query)?;
            let deadline = tokio::time::Instant::now() + wait;
            match state.table.accept(deadline).await {
                Some(c) => ok(c.json()),
                None => Err(ApiError::new(
                    ErrorKind::AcceptTimeout,
                    format!(
                        "no peer connected within {} s: try again, or wait longer with ?timeout=SECONDS (at most {MAX_TIMEOUT_S})",
                        wait.as_secs_f64()
                    ),
                )),
            }
        }
        RouteId::Send => {
            let conn = state.table.get(param(0))?;
            let text = param(1);
            conn.send(text.as_bytes(), tokio::time::Instant::now() + SEND_TIMEOUT)
                .await?;
            ok(serde_json::json!({"error": 0, "name": conn.name, "sent": text.len()}))
        }
        RouteId::BinarySend => {
            let conn = state.table.get(param(0))?;
            conn.send(&body, tokio::time::Instant::now() + SEND_TIMEOUT)
                .await?;
            ok(serde_json::json!({"error": 0, "name": conn.name, "sent": body.len()}))
        }
        RouteId::Recv | RouteId::BinaryRecv => {
            let wait = parse_timeout(query)?;
            let conn = state.table.get(param(0))?;
            let deadline = tokio::time::Instant::now() + wait;
            if m.route.id == RouteId::Recv {
                let data = conn.recv(RecvMode::Text, deadline).await?;
                let text = String::from_utf8(data).map_err(|_| {
                    ApiError::new(ErrorKind::NotText, "received bytes are not UTF-8 text")
                })?;
                ok(serde_json::json!({
                    "error": 0, "name": conn.name, "data": text, "bytes": text.len(),
                }))
            } else {
                let data = conn.recv(RecvMode::Binary, deadline).await?;
                Ok(Outcome::Response(Response {
                    status: 200,
                    content_type: "application/octet-stream",
                    body: data,
                    headers: Vec::new(),
                }))
            }
        }
        RouteId::Pipe => Ok(Outcome::Pipe(state.table.get(param(0))?.take_for_pipe()?)),
        RouteId::Close => {
            state.table.close(param(0))?;
            ok(serde_json::json!({"error": 0, "closed": param(0)}))
        }
    }
}

/// `/p2p/open/{name}/{addr}`: checks everything it can before asking the node; `addr`
/// may be a name (see [`super::target`]).
async fn open(
    name: &str,
    target: &str,
    query: &[(String, String)],
    state: &Arc<State>,
) -> Result<Outcome, ApiError> {
    super::table::check_name(name)?;
    let strategies = match query_value(query, "strategies") {
        None => Strategy::ALL.to_vec(),
        Some(list) => Strategy::parse_list(list)
            .map_err(|e| ApiError::new(ErrorKind::BadStrategies, e.to_string()))?,
    };
    let target = super::target::check_target(target)?;
    let node = state.node.get()?;
    let addr = super::target::resolve_target(target, &state.name_servers)
        .await?
        .unwrap_or_else(|| node.addr());
    let reservation = state.table.reserve(name)?;
    let tried: Vec<&str> = strategies.iter().map(|s| s.name()).collect();
    let tried = tried.join(",");
    tracing::info!(%name, strategies = %tried, "opening connection");
    let pipe = match tokio::time::timeout(OPEN_TIMEOUT, node.open(addr, strategies)).await {
        Ok(Ok(pipe)) => pipe,
        Ok(Err(e)) => {
            return Err(ApiError::new(
                ErrorKind::OpenFailed,
                format!("could not connect '{name}' (tried {tried}): {e}"),
            ));
        }
        Err(_) => {
            return Err(ApiError::new(
                ErrorKind::OpenTimeout,
                format!(
                    "connecting '{name}' (tried {tried}) took longer than {} s",
                    OPEN_TIMEOUT.as_secs()
                ),
            ));
        }
    };
    let conn = reservation.fill(pipe);
    tracing::info!(%name, strategy = conn.info.strategy.name(), "connection open");
    ok(conn.json())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_and_decoding() {
        let m = find("GET", "/p2p/send/a/hello%2Fworld/more").unwrap();
        assert_eq!(m.route.id, RouteId::Send);
        assert_eq!(m.params, ["a", "hello/world/more"]);
        let m = find("POST", "/p2p/binary/x").unwrap();
        assert_eq!(m.route.id, RouteId::BinarySend);
        assert_eq!(
            find("DELETE", "/p2p/binary/x").unwrap_err().kind,
            ErrorKind::MethodNotAllowed
        );
        assert_eq!(
            find("GET", "/p2p/con").unwrap_err().kind,
            ErrorKind::NoRoute
        );
        assert_eq!(
            find("GET", "/p2p/con/").unwrap_err().kind,
            ErrorKind::NoRoute
        );
        assert_eq!(
            find("GET", "/p2p/con/a/b").unwrap_err().kind,
            ErrorKind::NoRoute
        );
        assert_eq!(find("GET", "*").unwrap_err().kind, ErrorKind::BadRequest);
        assert_eq!(
            find("GET", "/p2p/con/%zz").unwrap_err().kind,
            ErrorKind::BadRequest
        );
        assert_eq!(
            find("GET", "/p2p/con/%ff").unwrap_err().kind,
            ErrorKind::BadRequest
        );
        assert_eq!(
            find("GET", "/p2p/con/%4").unwrap_err().kind,
            ErrorKind::BadRequest
        );
        assert_eq!(percent_decode("%e2%82%ac").unwrap(), "€");
    }

    #[test]
    fn query_and_timeout() {
        let recv = find("GET", "/p2p/recv/a").unwrap().route;
        let q = parse_query(recv, "timeout=1.5").unwrap();
        assert_eq!(parse_timeout(&q).unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_timeout(&[]).unwrap(), Duration::from_secs(2));
        for bad in [
            "timeout=-1",
            "timeout=61",
            "timeout=NaN",
            "timeout=inf",
            "timeout=x",
        ] {
            let q = parse_query(recv, bad).unwrap();
            assert_eq!(
                parse_timeout(&q).unwrap_err().kind,
                ErrorKind::BadQuery,
                "{bad}"
            );
        }
        assert_eq!(
            parse_query(recv, "x=1").unwrap_err().kind,
            ErrorKind::BadQuery
        );
        assert_eq!(
            parse_query(recv, "timeout=1&timeout=2").unwrap_err().kind,
            ErrorKind::BadQuery
        );
    }

    #[test]
    fn openapi_describes_every_route_and_error() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for r in ROUTES {
            let op = &paths[r.path][r.method.to_ascii_lowercase()];
            assert!(
                op.is_object(),
                "{} {} is not in openapi.json",
                r.method,
                r.path
            );
        }
        let mut described = 0;
        for (path, item) in paths {
            for method in item.as_object().unwrap().keys() {
                if method == "parameters" {
                    continue;
                }
                described += 1;
                assert!(
                    ROUTES
                        .iter()
                        .any(|r| r.path == path && r.method.eq_ignore_ascii_case(method)),
                    "openapi.json describes {method} {path}, which the daemon does not serve"
                );
            }
        }
        assert_eq!(described, ROUTES.len());
        let codes = doc["components"]["schemas"]["Error"]["x-error-codes"]
            .as_array()
            .unwrap();
        assert_eq!(codes.len(), ErrorKind::ALL.len());
        for (c, k) in codes.iter().zip(ErrorKind::ALL) {
            assert_eq!(c["code"], k.code(), "{k:?}");
            assert_eq!(c["name"], k.name(), "{k:?}");
            assert_eq!(c["status"], k.status(), "{k:?}");
        }
    }

    proptest::proptest! {
        /// Whatever the path and query, routing answers (a route or an error) without
        /// panicking.
        #[test]
        fn any_path_and_query_is_answered(path in "(/[a-z%0-9.{}_~!-]{0,12}){0,6}", query in "[a-z=&%0-9.]{0,30}", method in "(GET|POST|PUT|X)") {
            if let Ok(m) = find(&method, &path) {
                let _ = parse_query(m.route, &query).map(|q| parse_timeout(&q));
            }
            let _ = allowed(&path);
        }

        #[test]
        fn any_bytes_decode_or_fail(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let text = String::from_utf8_lossy(&raw);
            if let Ok(s) = percent_decode(&text) {
                proptest::prop_assert!(s.len() <= text.len());
            }
        }
    }
}
