//! A STUN Binding responder (RFC 8489 §6.3) that becomes an RFC 5780 behaviour-discovery
//! server when given a second IP address and port, answering RFC 3489 clients too.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::address::{
    ChangedAddress, MappedAddress, OtherAddress, ResponseOrigin, SourceAddress, XorMappedAddress,
};
use super::attr::AttrType;
use super::builder::MessageBuilder;
use super::error::StunError;
use super::error_code::{ErrorCode, UnknownAttributes};
use super::header::{Class, MessageType, Method};
use super::message::Message;
use super::nat_behaviour::{ChangeRequest, Padding, ResponsePort};
use super::text::Software;
use crate::transmit::{Transmit, Transport};

/// Largest response the server writes; PADDING is capped to stay within it.
const MAX_RESPONSE: usize = 1280;
/// Responses waiting for `poll_transmit`; the driver drains after every input, so more
/// than a handful means it does not, and new responses are dropped rather than queued
/// without bound.
const MAX_QUEUE: usize = 64;

/// What the server listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The primary address (IP1, P1).
    pub primary: SocketAddr,
    /// The alternate address (IP2, P2) of an RFC 5780 server: another IP of the same
    /// family and another port. The server then listens on all four combinations.
    pub alternate: Option<SocketAddr>,
    /// A SOFTWARE value to add to responses.
    pub software: Option<String>,
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerConfigError {
    /// Primary and alternate must differ in both IP and port (RFC 5780 §4.1).
    #[error(
        "the alternate address {alternate} must differ from the primary {primary} in both IP and port, in the same address family"
    )]
    AlternateNotDistinct {
        /// The primary address.
        primary: SocketAddr,
        /// The alternate address.
        alternate: SocketAddr,
    },
    /// The SOFTWARE value is too long.
    #[error("SOFTWARE value too long: {0}")]
    Software(StunError),
}

/// Why a packet got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Not STUN, or malformed.
    NotStun,
    /// Not a request (responses and indications get no answer).
    NotARequest,
    /// Its FINGERPRINT did not match.
    BadFingerprint,
    /// The response queue was full (the driver is not draining `poll_transmit`).
    QueueFull,
}

/// Counters for operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Binding success responses queued.
    pub successes: u64,
    /// Error responses queued.
    pub errors: u64,
    /// Packets dropped without a response.
    pub dropped: u64,
}

#[derive(Debug)]
struct Outgoing {
    transport: Transport,
    source: SocketAddr,
    destination: SocketAddr,
    bytes: Vec<u8>,
}

/// The Binding responder, sans-IO: feed it every packet that arrives on its addresses
/// with [`handle_input`](Self::handle_input) and send what
/// [`poll_transmit`](Self::poll_transmit) returns, from the source address it names.
#[derive(Debug)]
pub struct StunServer {
    config: ServerConfig,
    queue: VecDeque<Outgoing>,
    sent: Option<Outgoing>,
    spare: Vec<Vec<u8>>,
    stats: ServerStats,
}

impl StunServer {
    /// A server for `config`.
    pub fn new(config: ServerConfig) -> Result<Self, ServerConfigError> {
        if let Some(alt) = config.alternate {
            let p = config.primary;
            if alt.ip() == p.ip() || alt.port() == p.port() || alt.is_ipv4() != p.is_ipv4() {
                return Err(ServerConfigError::AlternateNotDistinct {
                    primary: p,
                    alternate: alt,
                });
            }
        }
        if let Some(s) = &config.software {
            Software::new(s).map_err(ServerConfigError::Software)?;
        }
        Ok(StunServer {
            config,
            queue: VecDeque::new(),
            sent: None,
            spare: Vec::new(),
            stats: ServerStats::default(),
        })
    }

    /// Every address the server must receive on: the primary, or all four RFC 5780
    /// combinations (IP1:P1, IP1:P2, IP2:P1, IP2:P2).
    pub fn local_addresses(&self) -> Vec<SocketAddr> {
        let p = self.config.primary;
        match self.config.alternate {
            None => vec![p],
            Some(a) => vec![
                p,
                SocketAddr::new(p.ip(), a.port()),
                SocketAddr::new(a.ip(), p.port()),
                a,
            ],
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// The address that differs from `local` in IP and/or port as asked, if the server has
    /// an alternate and `local` is one of its addresses.
    fn changed(&self, local: SocketAddr, ip: bool, port: bool) -> Option<SocketAddr> {
        let alt = self.config.alternate?;
        let p = self.config.primary;
        let other_ip = |x: IpAddr| {
            if x == p.ip() {
                Some(alt.ip())
            } else if x == alt.ip() {
                Some(p.ip())
            } else {
                None
            }
        };
        let other_port = |x: u16| {
            if x == p.port() {
                Some(alt.port())
            } else if x == alt.port() {
                Some(p.port())
            } else {
                None
            }
        };
        let new_ip = if ip {
            other_ip(local.ip())?
        } else {
            local.ip()
        };
        let new_port = if port {
            other_port(local.port())?
        } else {
            local.port()
        };
        // `local` must itself be one of ours for the answer to mean anything.
        other_ip(local.ip())?;
        other_port(local.port())?;
        Some(SocketAddr::new(new_ip, new_port))
    }

    /// Handles one packet that arrived from `source` on the server's local address
    /// `destination`. A request gets a response queued for `poll_transmit`; anything
    /// else is dropped, and the reason returned.
    pub fn handle_input(
        &mut self,
        _now: Instant,
        transport: Transport,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), Dropped> {
        let result = self.respond(transport, source, destination, bytes);
        if result.is_err() {
            self.stats.dropped += 1;
        }
        result
    }

    fn respond(
        &mut self,
        transport: Transport,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), Dropped> {
        let msg = Message::parse(bytes).map_err(|_| Dropped::NotStun)?;
        if msg.message_type().class != Class::Request {
            return Err(Dropped::NotARequest);
        }
        if msg.has_fingerprint() && msg.verify_fingerprint().is_err() {
            return Err(Dropped::BadFingerprint);
        }
        if self.queue.len() >= MAX_QUEUE {
            return Err(Dropped::QueueFull);
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.resize(MAX_RESPONSE, 0);
        let out = match self.plan(&msg, transport, source, destination) {
            Ok(plan) => {
                self.stats.successes += 1;
                let len = self.write_success(&mut buf, &msg, &plan);
                Outgoing {
                    transport,
                    source: plan.from,
                    destination: plan.to,
                    bytes: truncate(buf, len),
                }
            }
            Err(refusal) => {
                self.stats.errors += 1;
                let len = self.write_error(&mut buf, &msg, &refusal);
                Outgoing {
                    transport,
                    source: destination,
                    destination: source,
                    bytes: truncate(buf, len),
                }
            }
        };
        self.queue.push_back(out);
        Ok(())
    }

    /// Decides where a success response goes and from where, or why the request fails.
    fn plan(
        &self,
        msg: &Message<'_>,
        transport: Transport,
        source: SocketAddr,
        local: SocketAddr,
    ) -> Result<Plan, Refusal> {
        if msg.message_type().method != Method::BINDING {
            return Err(Refusal::Bad("only Binding is served here"));
        }
        let unknown: Vec<AttrType> = msg
            .unknown_required(AttrType::is_binding_attribute)
            .take(UnknownAttributes::MAX_TYPES)
            .collect();
        if !unknown.is_empty() {
            return Err(Refusal::Unknown(unknown));
        }
        let change = msg
            .get::<ChangeRequest>()
            .map_err(|_| Refusal::Bad("malformed CHANGE-REQUEST"))?
            .unwrap_or_default();
        let response_port = msg
            .get::<ResponsePort>()
            .map_err(|_| Refusal::Bad("malformed RESPONSE-PORT"))?;
        let padding = msg
            .get::<Padding>()
            .map_err(|_| Refusal::Bad("malformed PADDING"))?
            .map_or(0, |p| p.0.len());
        if transport == Transport::Tcp
            && (change.change_ip || change.change_port || response_port.is_some())
        {
            return Err(Refusal::Bad(
                "CHANGE-REQUEST and RESPONSE-PORT only work over UDP",
            ));
        }
        let from = if change.change_ip || change.change_port {
            // RFC 5780 §6.1: without an alternate address, CHANGE-REQUEST is an unknown
            // attribute.
            self.changed(local, change.change_ip, change.change_port)
                .ok_or_else(|| Refusal::Unknown(vec![AttrType::CHANGE_REQUEST]))?
        } else {
            local
        };
        let to = match response_port {
            Some(ResponsePort(port)) => SocketAddr::new(source.ip(), port),
            None => source,
        };
        Ok(Plan {
            from,
            to,
            mapped: source,
            other: self.changed(local, true, true),
            padding,
            request_len: msg.as_bytes().len(),
        })
    }

    fn write_success(&self, buf: &mut [u8], req: &Message<'_>, plan: &Plan) -> usize {
        let typ = MessageType::new(Method::BINDING, Class::Success);
        let ctx = req.context();
        // Building into a 1280-byte buffer with the bounded attributes below cannot run
        // out of room; an error would only shorten the response, never panic.
        let Ok(mut b) = MessageBuilder::with_cookie(buf, typ, ctx.cookie, ctx.transaction_id)
        else {
            return 0;
        };
        let _ = (|| -> Result<(), StunError> {
            if req.is_rfc3489() {
                b.add(&MappedAddress(plan.mapped))?;
                b.add(&SourceAddress(plan.from))?;
                if let Some(other) = plan.other {
                    b.add(&ChangedAddress(other))?;
                }
            } else {
                b.add(&XorMappedAddress(plan.mapped))?;
                if plan.other.is_some() {
                    b.add(&ResponseOrigin(plan.from))?;
                }
                if let Some(other) = plan.other {
                    b.add(&OtherAddress(other))?;
                }
            }
            if let Some(s) = &self.config.software {
                b.add(&Software::new(s)?)?;
            }
            if plan.padding > 0 {
                // Make the response as large as the request (RFC 5780 §7.6 uses this to
                // test fragmentation), never larger: no amplification.
                let room = MAX_RESPONSE.saturating_sub(b.len() + 4 + 8);
                let want = plan.request_len.saturating_sub(b.len() + 4 + 8) & !3;
                let zeros = [0u8; MAX_RESPONSE];
                b.add(&Padding(&zeros[..want.min(room)]))?;
            }
            if !req.is_rfc3489() {
                b.add_fingerprint()?;
            }
            Ok(())
        })();
        b.finish().len()
    }

    fn write_error(&self, buf: &mut [u8], req: &Message<'_>, refusal: &Refusal) -> usize {
        let typ = MessageType::new(req.message_type().method, Class::Error);
        let ctx = req.context();
        let Ok(mut b) = MessageBuilder::with_cookie(buf, typ, ctx.cookie, ctx.transaction_id)
        else {
            return 0;
        };
        let _ = (|| -> Result<(), StunError> {
            match refusal {
                Refusal::Bad(reason) => {
                    b.add(&ErrorCode::new(ErrorCode::BAD_REQUEST, reason)?)?;
                }
                Refusal::Unknown(types) => {
                    b.add(&ErrorCode::new(
                        ErrorCode::UNKNOWN_ATTRIBUTE,
                        "Unknown comprehension-required attribute",
                    )?)?;
                    b.add(&UnknownAttributes::new(types)?)?;
                }
            }
            if let Some(s) = &self.config.software {
                b.add(&Software::new(s)?)?;
            }
            if !req.is_rfc3489() {
                b.add_fingerprint()?;
            }
            Ok(())
        })();
        b.finish().len()
    }

    /// The next response to send, from the local address it names.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        if let Some(done) = self.sent.take() {
            if self.spare.len() < 8 {
                self.spare.push(done.bytes);
            }
        }
        let out = self.sent.insert(self.queue.pop_front()?);
        Some(Transmit {
            transport: out.transport,
            source: out.source,
            destination: out.destination,
            contents: &out.bytes,
        })
    }
}

fn truncate(mut v: Vec<u8>, len: usize) -> Vec<u8> {
    v.truncate(len);
    v
}

struct Plan {
    from: SocketAddr,
    to: SocketAddr,
    mapped: SocketAddr,
    other: Option<SocketAddr>,
    padding: usize,
    request_len: usize,
}

enum Refusal {
    Bad(&'static str),
    Unknown(Vec<AttrType>),
}
