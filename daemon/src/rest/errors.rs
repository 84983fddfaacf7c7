//! The REST API's errors: one numeric code per failure, with an HTTP status and a message
//! that says what to do.
//!
//! Every failure is answered with a JSON body `{"error": CODE, "name": NAME, "msg": TEXT}`
//! and the status below; success bodies carry `"error": 0` (as P2PD's did). The codes are
//! part of the API: never renumber one, only add.
//!
//! | code | name | status | when |
//! |---|---|---|---|
//! | 1 | `no_route` | 404 | no endpoint has this path |
//! | 2 | `method_not_allowed` | 405 | the path exists, not with this method |
//! | 3 | `bad_request` | 400 | the request is not valid HTTP/1.x, or its path is not valid percent-encoded UTF-8 |
//! | 4 | `unknown_con` | 404 | no connection has this name |
//! | 5 | `con_exists` | 409 | a connection with this name exists (or is being opened) |
//! | 6 | `bad_name` | 400 | a connection name is not 1–64 of `A-Z a-z 0-9 . _ -` |
//! | 7 | `bad_addr` | 400 | the target is not a node address |
//! | 8 | `bad_strategies` | 400 | `strategies=` names an unknown strategy |
//! | 9 | `bad_query` | 400 | an unknown query parameter, or a bad value (`timeout`) |
//! | 10 | `recv_timeout` | 504 | nothing arrived from the peer within the timeout |
//! | 11 | `open_failed` | 502 | every strategy failed to connect |
//! | 12 | `node_unavailable` | 503 | the node is not running (starting, or failed to start) |
//! | 13 | `table_full` | 503 | the connection table is full: close a connection first |
//! | 14 | `busy` | 409 | the connection is in use by a `/p2p/pipe` (or another request) |
//! | 15 | `peer_closed` | 410 | the peer closed its side: nothing more will arrive |
//! | 16 | `send_failed` | 502 | writing to the connection failed |
//! | 17 | `not_text` | 422 | the received bytes are not UTF-8 text: use `GET /p2p/binary/{name}` |
//! | 18 | `host_refused` | 403 | the `Host` header is missing or not a loopback name or address (DNS rebinding) |
//! | 19 | `origin_refused` | 403 | a browser request from a page that is not on this machine |
//! | 20 | `unauthorized` | 401 | a token is configured and the request lacks `Authorization: Bearer <token>` |
//! | 21 | `body_too_large` | 413 | the body is larger than the limit |
//! | 22 | `headers_too_large` | 431 | the request head is larger than the limit |
//! | 23 | `request_timeout` | 408 | the request head or body did not arrive in time |
//! | 24 | `length_required` | 411 | a body without `Content-Length` (chunked bodies are not accepted) |
//! | 25 | `too_many_connections` | 429 | too many HTTP connections are open: retry shortly |
//! | 26 | `open_timeout` | 504 | connecting took longer than the limit |
//! | 27 | `closed` | 410 | the connection was closed (by `/p2p/close`) while the request waited |
//! | 28 | `accept_timeout` | 504 | no incoming connection arrived within the timeout |
//! | 29 | `send_timeout` | 504 | the peer did not take the bytes within the limit |
//! | 30 | `unknown_peer_name` | 404 | the target is a name no name server knows |
//! | 31 | `name_lookup_failed` | 502 | the target is a name and no name server answered (or none is configured) |

use std::fmt;

/// One failure of a REST request. The message is meant for a person; clients branch on
/// [`ApiError::code`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Which failure.
    pub kind: ErrorKind,
    /// What happened and what to do.
    pub msg: String,
}

/// The kinds of failure, with their stable numeric codes (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum ErrorKind {
    NoRoute = 1,
    MethodNotAllowed = 2,
    BadRequest = 3,
    UnknownCon = 4,
    ConExists = 5,
    BadName = 6,
    BadAddr = 7,
    BadStrategies = 8,
    BadQuery = 9,
    RecvTimeout = 10,
    OpenFailed = 11,
    NodeUnavailable = 12,
    TableFull = 13,
    Busy = 14,
    PeerClosed = 15,
    SendFailed = 16,
    NotText = 17,
    HostRefused = 18,
    OriginRefused = 19,
    Unauthorized = 20,
    BodyTooLarge = 21,
    HeadersTooLarge = 22,
    RequestTimeout = 23,
    LengthRequired = 24,
    TooManyConnections = 25,
    OpenTimeout = 26,
    Closed = 27,
    AcceptTimeout = 28,
    SendTimeout = 29,
    UnknownPeerName = 30,
    NameLookupFailed = 31,
}

impl ErrorKind {
    /// Every kind, in code order (the documented table).
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "the tests check the tables with it")
    )]
    pub const ALL: [ErrorKind; 31] = [
        ErrorKind::NoRoute,
        ErrorKind::MethodNotAllowed,
        ErrorKind::BadRequest,
        ErrorKind::UnknownCon,
        ErrorKind::ConExists,
        ErrorKind::BadName,
        ErrorKind::BadAddr,
        ErrorKind::BadStrategies,
        ErrorKind::BadQuery,
        ErrorKind::RecvTimeout,
        ErrorKind::OpenFailed,
        ErrorKind::NodeUnavailable,
        ErrorKind::TableFull,
        ErrorKind::Busy,
        ErrorKind::PeerClosed,
        ErrorKind::SendFailed,
        ErrorKind::NotText,
        ErrorKind::HostRefused,
        ErrorKind::OriginRefused,
        ErrorKind::Unauthorized,
        ErrorKind::BodyTooLarge,
        ErrorKind::HeadersTooLarge,
        ErrorKind::RequestTimeout,
        ErrorKind::LengthRequired,
        ErrorKind::TooManyConnections,
        ErrorKind::OpenTimeout,
        ErrorKind::Closed,
        ErrorKind::AcceptTimeout,
        ErrorKind::SendTimeout,
        ErrorKind::UnknownPeerName,
        ErrorKind::NameLookupFailed,
    ];

    /// The numeric code in the `error` field.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The HTTP status.
    pub fn status(self) -> u16 {
        use ErrorKind::*;
        match self {
            NoRoute | UnknownCon | UnknownPeerName => 404,
            MethodNotAllowed => 405,
            BadRequest | BadName | BadAddr | BadStrategies | BadQuery => 400,
            ConExists | Busy => 409,
            RecvTimeout | OpenTimeout | AcceptTimeout | SendTimeout => 504,
            OpenFailed | SendFailed | NameLookupFailed => 502,
            NodeUnavailable | TableFull => 503,
            TooManyConnections => 429,
            PeerClosed | Closed => 410,
            NotText => 422,
            HostRefused | OriginRefused => 403,
            Unauthorized => 401,
            BodyTooLarge => 413,
            HeadersTooLarge => 431,
            RequestTimeout => 408,
            LengthRequired => 411,
        }
    }

    /// The short name in the `name` field.
    pub fn name(self) -> &'static str {
        use ErrorKind::*;
        match self {
            NoRoute => "no_route",
            MethodNotAllowed => "method_not_allowed",
            BadRequest => "bad_request",
            UnknownCon => "unknown_con",
            ConExists => "con_exists",
            BadName => "bad_name",
            BadAddr => "bad_addr",
            BadStrategies => "bad_strategies",
            BadQuery => "bad_query",
            RecvTimeout => "recv_timeout",
            OpenFailed => "open_failed",
            NodeUnavailable => "node_unavailable",
            TableFull => "table_full",
            Busy => "busy",
            PeerClosed => "peer_closed",
            SendFailed => "send_failed",
            NotText => "not_text",
            HostRefused => "host_refused",
            OriginRefused => "origin_refused",
            Unauthorized => "unauthorized",
            BodyTooLarge => "body_too_large",
            HeadersTooLarge => "headers_too_large",
            RequestTimeout => "request_timeout",
            LengthRequired => "length_required",
            TooManyConnections => "too_many_connections",
            OpenTimeout => "open_timeout",
            Closed => "closed",
            AcceptTimeout => "accept_timeout",
            SendTimeout => "send_timeout",
            UnknownPeerName => "unknown_peer_name",
            NameLookupFailed => "name_lookup_failed",
        }
    }
}

impl ApiError {
    /// A failure of `kind` with message `msg`.
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        ApiError {
            kind,
            msg: msg.into(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": self.kind.code(),
            "name": self.kind.name(),
            "msg": self.msg,
        })
    }

    /// No connection is called `name`.
    pub fn unknown_con(name: &str) -> Self {
        ApiError::new(
            ErrorKind::UnknownCon,
            format!(
                "no connection is named '{name}': open one with /p2p/open/{name}/<node address>, or list them with /p2p/cons"
            ),
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.kind.name(),
            self.kind.code(),
            self.msg
        )
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_and_names_are_distinct_and_in_order() {
        let mut names = HashSet::new();
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(usize::from(k.code()), i + 1, "{k:?}");
            assert!(names.insert(k.name()), "{k:?}");
            assert!((400..600).contains(&k.status()), "{k:?}");
        }
    }

    #[test]
    fn module_table_matches_the_enum() {
        let doc = include_str!("errors.rs");
        for k in ErrorKind::ALL {
            let row = format!("//! | {} | `{}` | {} |", k.code(), k.name(), k.status());
            assert!(doc.contains(&row), "table row missing or wrong: {row}");
        }
    }
}
