//! The datagrams: [`Request`] and [`Response`], each a parse/emit pair.
//!
//! All integers are big-endian. Every message starts with a 12-byte header:
//!
//! ```text
//! "PN" | version (1) | kind (u8) | request id (u64, chosen by the client, echoed)
//! ```
//!
//! Requests then carry the server's cookie (16 bytes, zeros when the client has none) and:
//!
//! | kind | body |
//! |---|---|
//! | 1 resolve | name length (u8), name |
//! | 2 put | name length (u8), name, timestamp (u64 ms), owner key (32), address length (u16), address text, signature (64) |
//! | 3 delete | name length (u8), name, timestamp (u64 ms), owner key (32), signature (64) |
//!
//! Responses then carry:
//!
//! | kind | body |
//! |---|---|
//! | 1 cookie | the cookie to repeat (16) |
//! | 2 accepted | the stored timestamp (u64 ms) |
//! | 3 found | the stored put, laid out as a put request's body (signature included, so the reader verifies it) |
//! | 4 not found | nothing |
//! | 5 refused | reason code (u8), detail (u64; what it means depends on the reason) |
//!
//! Parsing refuses anything else: trailing bytes, names that are not [`Name`]s, addresses
//! that are not canonical node address text (the signature covers the exact bytes), weak
//! keys.

use super::name::{MAX_NAME_LEN, Name, NameError};
use super::record::SignedWrite;
use crate::addr::{MAX_TEXT_LEN, NodeAddr};
use crate::identity::{PUBLIC_KEY_LEN, PublicKey, SIGNATURE_LEN};

/// The first two bytes of every message.
pub const MAGIC: [u8; 2] = *b"PN";
/// The protocol version this code speaks.
pub const VERSION: u8 = 1;
/// Bytes in a cookie.
pub const COOKIE_LEN: usize = 16;
/// The name server's default UDP port (P2PD's name servers listen on 5300).
pub const NAME_PORT: u16 = 5300;
/// Bytes in the common header.
pub const HEADER_LEN: usize = 12;
/// The largest message either side ever sends: a put with the longest name and address.
pub const MAX_MESSAGE_LEN: usize = HEADER_LEN
    + COOKIE_LEN
    + 1
    + MAX_NAME_LEN
    + 8
    + PUBLIC_KEY_LEN
    + 2
    + MAX_TEXT_LEN
    + SIGNATURE_LEN;

/// A server's proof that a client receives at the address it claims (see
/// [`super::server`]).
pub type Cookie = [u8; COOKIE_LEN];

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Too short for the field named.
    #[error("name message truncated in its {0}")]
    Truncated(&'static str),
    /// Not "PN".
    #[error("not a p2pd name message (bad magic)")]
    Magic,
    /// Another protocol version.
    #[error(
        "name protocol version {0} is not supported (this p2pd speaks version {VERSION}); upgrade p2pd"
    )]
    Version(u8),
    /// Unknown message kind.
    #[error("unknown name message kind {0}")]
    Kind(u8),
    /// The name is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The name is not UTF-8.
    #[error("the name is not text")]
    NameNotText,
    /// The owner key is not a usable ed25519 key.
    #[error("the owner key is not a valid ed25519 public key")]
    Key,
    /// The address is not canonical node address text.
    #[error("the node address is invalid or not in canonical form: {0}")]
    Addr(String),
    /// Bytes after the end of the message.
    #[error("{0} unexpected bytes after the end of the name message")]
    Trailing(usize),
}

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestBody {
    /// Look a name up.
    Resolve(Name),
    /// Write (put or delete) a name. Boxed: a write is 20 times a name.
    Write(Box<SignedWrite>),
}

/// A request datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Chosen by the client; the answer repeats it.
    pub id: u64,
    /// The cookie the server handed out, if any.
    pub cookie: Option<Cookie>,
    /// The question.
    pub body: RequestBody,
}

/// Why a server refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request could not be parsed.
    #[error(
        "the server could not parse the request; check that client and server run compatible p2pd versions"
    )]
    Malformed,
    /// Bad signature or a record pointing at another node's address.
    #[error("the server found the signature invalid or the address not the signer's own")]
    BadSignature,
    /// Another key owns the name.
    #[error("the name is owned by another key; choose another name")]
    NotOwner,
    /// The timestamp is not newer than the stored write (a replay, or a clock gone back).
    #[error(
        "refused as a replay: the server already holds a write of this name with timestamp {stored_ms} ms, not older than this one"
    )]
    Stale {
        /// The stored write's timestamp.
        stored_ms: u64,
    },
    /// The timestamp is too far from the server's clock.
    #[error(
        "this computer's clock differs from the name server's ({server_ms} ms since 1970) by more than an hour; fix the system clock (NTP)"
    )]
    ClockSkew {
        /// The server's clock.
        server_ms: u64,
    },
    /// The sender's address (IPv4) or /64 (IPv6) holds as many names as allowed.
    #[error(
        "this network address already holds {limit} names on the server; delete one or wait for one to expire"
    )]
    AddressLimit {
        /// The limit.
        limit: u64,
    },
    /// Too many requests from this address.
    #[error("too many requests from this address; retry in {retry_ms} ms")]
    RateLimited {
        /// How long to wait.
        retry_ms: u64,
    },
    /// The server holds as many names as it is configured to.
    #[error("the name server is full; use another server")]
    Full,
    /// The server could not store the write.
    #[error(
        "the name server could not store the write (storage error); use another server or retry later"
    )]
    Storage,
    /// A reason this version does not know.
    #[error("the server refused with reason code {0} (unknown to this p2pd version)")]
    Other(u8),
}

/// What a server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseBody {
    /// Repeat the request with this cookie.
    Cookie(Cookie),
    /// The write was stored durably; the name's timestamp is now this.
    Accepted {
        /// The stored timestamp.
        timestamp_ms: u64,
    },
    /// The name's record (a put, signed by its owner). Boxed: it is large.
    Found(Box<SignedWrite>),
    /// Nobody holds the name (or it was deleted or expired).
    NotFound,
    /// The request was refused.
    Refused(Refusal),
}

/// A response datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The request's id.
    pub id: u64,
    /// The answer.
    pub body: ResponseBody,
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < n {
            return Err(WireError::Truncated(field));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, field)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, field)?);
        Ok(u64::from_be_bytes(a))
    }
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }
    fn name(&mut self) -> Result<Name, WireError> {
        let len = usize::from(self.u8("name length")?);
        let raw = self.take(len, "name")?;
        let text = std::str::from_utf8(raw).map_err(|_| WireError::NameNotText)?;
        let name = Name::parse(text)?;
        if name.as_str() != text {
            // Names travel lower case: the signature covers the exact bytes.
            return Err(WireError::Name(NameError::Character {
                name: text.into(),
                found: text.chars().find(|c| c.is_ascii_uppercase()).unwrap_or('?'),
                position: text
                    .chars()
                    .position(|c| c.is_ascii_uppercase())
                    .unwrap_or(0),
            }));
        }
        Ok(name)
    }
    fn end(&self) -> Result<(), WireError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing(self.bytes.len()))
        }
    }
}

fn header(r: &mut Reader<'_>) -> Result<(u8, u64), WireError> {
    // An integer comparison (not a slice one) so coverage-guided fuzzers see through it.
    if r.u16("magic")? != u16::from_be_bytes(MAGIC) {
        return Err(WireError::Magic);
    }
    let v = r.u8("version")?;
    if v != VERSION {
        return Err(WireError::Version(v));
    }
    let kind = r.u8("kind")?;
    let id = r.u64("request id")?;
    Ok((kind, id))
}

fn emit_header(out: &mut Vec<u8>, kind: u8, id: u64) {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&id.to_be_bytes());
}

/// Reads a write's body (after the kind told put or delete).
fn read_write(r: &mut Reader<'_>, put: bool) -> Result<SignedWrite, WireError> {
    let name = r.name()?;
    let timestamp_ms = r.u64("timestamp")?;
    let key: [u8; PUBLIC_KEY_LEN] = r.array("owner key")?;
    let owner = PublicKey::from_bytes(&key).map_err(|_| WireError::Key)?;
    let addr = if put {
        let len = usize::from(r.u16("address length")?);
        if len > MAX_TEXT_LEN {
            return Err(WireError::Addr(format!(
                "{len} bytes, more than {MAX_TEXT_LEN}"
            )));
        }
        let raw = r.take(len, "address")?;
        let text = std::str::from_utf8(raw).map_err(|_| WireError::Addr("not text".into()))?;
        let addr = NodeAddr::parse(text).map_err(|e| WireError::Addr(e.to_string()))?;
        if addr.to_string() != text {
            return Err(WireError::Addr("not in canonical form".into()));
        }
        Some(addr)
    } else {
        None
    };
    let signature = r.array("signature")?;
    Ok(SignedWrite {
        name,
        addr,
        owner,
        timestamp_ms,
        signature,
    })
}

fn emit_write(out: &mut Vec<u8>, w: &SignedWrite) {
    out.push(w.name.as_str().len() as u8);
    out.extend_from_slice(w.name.as_str().as_bytes());
    out.extend_from_slice(&w.timestamp_ms.to_be_bytes());
    out.extend_from_slice(&w.owner.to_bytes());
    if let Some(addr) = &w.addr {
        let text = addr.to_string();
        out.extend_from_slice(&(text.len() as u16).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    out.extend_from_slice(&w.signature);
}

const REQ_RESOLVE: u8 = 1;
const REQ_PUT: u8 = 2;
const REQ_DELETE: u8 = 3;

impl Request {
    /// Parses a request datagram.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader { bytes };
        let (kind, id) = header(&mut r)?;
        let cookie: Cookie = r.array("cookie")?;
        let cookie = (cookie != [0; COOKIE_LEN]).then_some(cookie);
        let body = match kind {
            REQ_RESOLVE => RequestBody::Resolve(r.name()?),
            REQ_PUT => RequestBody::Write(Box::new(read_write(&mut r, true)?)),
            REQ_DELETE => RequestBody::Write(Box::new(read_write(&mut r, false)?)),
            k => return Err(WireError::Kind(k)),
        };
        r.end()?;
        Ok(Request { id, cookie, body })
    }

    /// Only the header and cookie of a request (what a server needs to answer even a
    /// request it cannot parse further).
    pub fn parse_header(bytes: &[u8]) -> Result<(u64, Option<Cookie>), WireError> {
        let mut r = Reader { bytes };
        let (_, id) = header(&mut r)?;
        let cookie: Cookie = r.array("cookie")?;
        Ok((id, (cookie != [0; COOKIE_LEN]).then_some(cookie)))
    }

    /// Appends the datagram to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let kind = match &self.body {
            RequestBody::Resolve(_) => REQ_RESOLVE,
            RequestBody::Write(w) if w.is_delete() => REQ_DELETE,
            RequestBody::Write(_) => REQ_PUT,
        };
        emit_header(out, kind, self.id);
        out.extend_from_slice(&self.cookie.unwrap_or([0; COOKIE_LEN]));
        match &self.body {
            RequestBody::Resolve(name) => {
                out.push(name.as_str().len() as u8);
                out.extend_from_slice(name.as_str().as_bytes());
            }
            RequestBody::Write(w) => emit_write(out, w),
        }
    }

    /// The datagram.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.emit(&mut out);
        out
    }
}

const RESP_COOKIE: u8 = 1;
const RESP_ACCEPTED: u8 = 2;
const RESP_FOUND: u8 = 3;
const RESP_NOT_FOUND: u8 = 4;
const RESP_REFUSED: u8 = 5;

impl Refusal {
    fn code(self) -> (u8, u64) {
        match self {
            Refusal::Malformed => (1, 0),
            Refusal::BadSignature => (2, 0),
            Refusal::NotOwner => (3, 0),
            Refusal::Stale { stored_ms } => (4, stored_ms),
            Refusal::ClockSkew { server_ms } => (5, server_ms),
            Refusal::AddressLimit { limit } => (6, limit),
            Refusal::RateLimited { retry_ms } => (7, retry_ms),
            Refusal::Full => (8, 0),
            Refusal::Storage => (9, 0),
            Refusal::Other(c) => (c, 0),
        }
    }

    fn from_code(code: u8, detail: u64) -> Self {
        match code {
            1 => Refusal::Malformed,
            2 => Refusal::BadSignature,
            3 => Refusal::NotOwner,
            4 => Refusal::Stale { stored_ms: detail },
            5 => Refusal::ClockSkew { server_ms: detail },
            6 => Refusal::AddressLimit { limit: detail },
            7 => Refusal::RateLimited { retry_ms: detail },
            8 => Refusal::Full,
            9 => Refusal::Storage,
            c => Refusal::Other(c),
        }
    }
}

impl Response {
    /// Parses a response datagram.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader { bytes };
        let (kind, id) = header(&mut r)?;
        let body = match kind {
            RESP_COOKIE => ResponseBody::Cookie(r.array("cookie")?),
            RESP_ACCEPTED => ResponseBody::Accepted {
                timestamp_ms: r.u64("timestamp")?,
            },
            RESP_FOUND => ResponseBody::Found(Box::new(read_write(&mut r, true)?)),
            RESP_NOT_FOUND => ResponseBody::NotFound,
            RESP_REFUSED => {
                let code = r.u8("reason")?;
                let detail = r.u64("detail")?;
                ResponseBody::Refused(Refusal::from_code(code, detail))
            }
            k => return Err(WireError::Kind(k)),
        };
        r.end()?;
        Ok(Response { id, body })
    }

    /// Appends the datagram to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match &self.body {
            ResponseBody::Cookie(c) => {
                emit_header(out, RESP_COOKIE, self.id);
                out.extend_from_slice(c);
            }
            ResponseBody::Accepted { timestamp_ms } => {
                emit_header(out, RESP_ACCEPTED, self.id);
                out.extend_from_slice(&timestamp_ms.to_be_bytes());
            }
            ResponseBody::Found(w) => {
                emit_header(out, RESP_FOUND, self.id);
                emit_write(out, w);
            }
            ResponseBody::NotFound => emit_header(out, RESP_NOT_FOUND, self.id),
            ResponseBody::Refused(reason) => {
                emit_header(out, RESP_REFUSED, self.id);
                let (code, detail) = reason.code();
                out.push(code);
                out.extend_from_slice(&detail.to_be_bytes());
            }
        }
    }

    /// The datagram.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.emit(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::names::record::tests::addr_of;
    use crate::rng::Rng;

    fn put() -> SignedWrite {
        let id = Identity::generate(&mut Rng::seed_from_u64(3));
        SignedWrite::sign(
            &id,
            Name::parse("carol").unwrap(),
            Some(addr_of(&id, 4000)),
            77,
        )
    }

    #[test]
    fn requests_round_trip() {
        let del = {
            let id = Identity::generate(&mut Rng::seed_from_u64(4));
            SignedWrite::sign(&id, Name::parse("dave").unwrap(), None, 9)
        };
        for req in [
            Request {
                id: 1,
                cookie: None,
                body: RequestBody::Resolve(Name::parse("bob").unwrap()),
            },
            Request {
                id: u64::MAX,
                cookie: Some([7; COOKIE_LEN]),
                body: RequestBody::Write(Box::new(put())),
            },
            Request {
                id: 3,
                cookie: Some([1; COOKIE_LEN]),
                body: RequestBody::Write(Box::new(del)),
            },
        ] {
            let bytes = req.to_bytes();
            assert!(bytes.len() <= MAX_MESSAGE_LEN);
            assert_eq!(Request::parse(&bytes), Ok(req.clone()));
            assert_eq!(Request::parse_header(&bytes), Ok((req.id, req.cookie)));
            // Every truncation is an error, never a panic.
            for n in 0..bytes.len() {
                assert!(Request::parse(&bytes[..n]).is_err(), "prefix {n}");
            }
            let mut long = bytes.clone();
            long.push(0);
            assert_eq!(Request::parse(&long), Err(WireError::Trailing(1)));
        }
    }

    #[test]
    fn responses_round_trip() {
        for body in [
            ResponseBody::Cookie([9; COOKIE_LEN]),
            ResponseBody::Accepted { timestamp_ms: 5 },
            ResponseBody::Found(Box::new(put())),
            ResponseBody::NotFound,
            ResponseBody::Refused(Refusal::Stale { stored_ms: 12 }),
            ResponseBody::Refused(Refusal::Other(200)),
        ] {
            let resp = Response { id: 42, body };
            let bytes = resp.to_bytes();
            assert_eq!(Response::parse(&bytes), Ok(resp));
            for n in 0..bytes.len() {
                assert!(Response::parse(&bytes[..n]).is_err());
            }
        }
    }

    #[test]
    fn malformed_requests_are_named() {
        let good = Request {
            id: 1,
            cookie: None,
            body: RequestBody::Write(Box::new(put())),
        }
        .to_bytes();
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(Request::parse(&bad), Err(WireError::Magic));
        let mut bad = good.clone();
        bad[2] = 9;
        assert_eq!(Request::parse(&bad), Err(WireError::Version(9)));
        let mut bad = good.clone();
        bad[3] = 77;
        assert_eq!(Request::parse(&bad), Err(WireError::Kind(77)));
        // Upper case in the name: refused on the wire (the signature covers exact bytes).
        let mut bad = good.clone();
        bad[HEADER_LEN + COOKIE_LEN + 1] = b'C';
        assert!(matches!(Request::parse(&bad), Err(WireError::Name(_))));
        // A name with a dot.
        let mut bad = good.clone();
        bad[HEADER_LEN + COOKIE_LEN + 2] = b'.';
        assert!(matches!(Request::parse(&bad), Err(WireError::Name(_))));
        // The address in upper case parses as an address but is not canonical.
        let mut bad = good.clone();
        let at = HEADER_LEN + COOKIE_LEN + 1 + 5 + 8 + 32 + 2;
        bad[at..at + 4].make_ascii_uppercase();
        assert!(matches!(Request::parse(&bad), Err(WireError::Addr(_))));
        // A weak owner key.
        let mut bad = good;
        let at = HEADER_LEN + COOKIE_LEN + 1 + 5 + 8;
        bad[at..at + 32].copy_from_slice(&{
            let mut k = [0u8; 32];
            k[0] = 1;
            k
        });
        assert_eq!(Request::parse(&bad), Err(WireError::Key));
    }
}
