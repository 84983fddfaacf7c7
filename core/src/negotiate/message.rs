//! The negotiation protocol's signaling messages, as a parse/emit pair.
//!
//! They travel inside sealed signaling envelopes ([`crate::signal::seal`], kind
//! [`SIGNAL_KIND`]), so they arrive signed by the peer, encrypted, deduplicated and fresh;
//! this layer only says what they mean. Every message names its attempt.
//!
//! ```text
//! version (1) = 1 | type (1) | attempt id (8, big-endian) | body
//! ```
//!
//! * `Offer` — initiator → responder: the strategies it will try and its node address.
//! * `Answer` — responder → initiator: the strategies it agrees to.
//! * `Reverse` — "connect to me": the reverse strategy.
//! * `PunchInit` / `PunchReady` / `Sync` — DCUtR-style punch start (see
//!   [`crate::punch::timing`]) with each side's fresh mapping facts.
//! * `Relay` — the sender's relayed address (when it allocated one) and the IP its
//!   datagrams come from, for the peer's TURN permission.
//! * `Abort` — the sender gives up on a strategy (or on everything), with a reason.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::strategy::Strategy;
use crate::nat::{Delta, DeltaKind, NatType};

/// The signaling envelope kind negotiation messages use.
pub const SIGNAL_KIND: u8 = 0x4e;
/// The only version this code speaks.
const VERSION: u8 = 1;
/// Longest reason text carried by `Abort`.
pub const MAX_REASON: usize = 200;
/// Longest node address text carried by `Offer`.
const MAX_ADDR: usize = crate::addr::MAX_TEXT_LEN;

/// One negotiation: a random 64-bit id both sides share, which also binds the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptId(pub u64);

impl std::fmt::Display for AttemptId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Which punch a punch message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PunchKind {
    /// UDP hole punching.
    Udp,
    /// TCP simultaneous open.
    Tcp,
}

impl PunchKind {
    /// The strategy it implements.
    pub fn strategy(self) -> Strategy {
        match self {
            PunchKind::Udp => Strategy::UdpPunch,
            PunchKind::Tcp => Strategy::TcpPunch,
        }
    }
}

/// What one side knows of its own mapping right before a punch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PunchFacts {
    /// Its NAT type (from classification).
    pub nat: NatType,
    /// Its NAT's port allocation.
    pub delta: Delta,
    /// The IP the peer should aim at (the external address of the punching route).
    pub external_ip: IpAddr,
    /// A fresh observation: the local port STUN was asked from and the external port it
    /// saw (`None` when there was no answer, or for TCP, which makes none).
    pub observed: Option<(u16, u16)>,
    /// The local port the punch leaves from.
    pub punch_port: u16,
}

/// A negotiation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Initiator → responder: the strategies to try and the initiator's address.
    Offer {
        /// Enabled strategies.
        strategies: Vec<Strategy>,
        /// The initiator's node address (text).
        addr: String,
    },
    /// Responder → initiator: the strategies it agrees to.
    Answer {
        /// Agreed strategies.
        strategies: Vec<Strategy>,
    },
    /// Connect to the sender (reverse strategy).
    Reverse,
    /// Initiator → responder: start a punch; its facts.
    PunchInit {
        /// UDP or TCP.
        kind: PunchKind,
        /// The initiator's facts.
        facts: PunchFacts,
    },
    /// Responder → initiator: ready; its facts and how long it held the Init before
    /// answering (subtracted from the measured round trip).
    PunchReady {
        /// UDP or TCP.
        kind: PunchKind,
        /// The responder's facts.
        facts: PunchFacts,
        /// Milliseconds between receiving Init and sending this.
        held_ms: u32,
    },
    /// Initiator → responder: start punching `delay_ms` after receiving this.
    Sync {
        /// UDP or TCP.
        kind: PunchKind,
        /// The margin.
        delay_ms: u16,
    },
    /// The sender's relay endpoint.
    Relay {
        /// Its relayed address, when it allocated one.
        relayed: Option<SocketAddr>,
        /// Where its datagrams come from (its own relayed address, or its UDP socket's
        /// external address), for the peer's TURN permission.
        source_ip: IpAddr,
    },
    /// The sender gives up on `strategy` (`None`: on the whole attempt).
    Abort {
        /// The strategy, or all.
        strategy: Option<Strategy>,
        /// Why.
        reason: String,
    },
}

/// A negotiation message with its attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiationMessage {
    /// The attempt.
    pub attempt: AttemptId,
    /// What it says.
    pub body: Body,
}

/// Why bytes are not a negotiation message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// It ended early.
    #[error("negotiation message truncated: the sender runs a broken or newer p2pd")]
    Truncated,
    /// Version other than 1.
    #[error("negotiation message version {0}: upgrade p2pd to talk to this peer")]
    Version(u8),
    /// Unknown type or field value.
    #[error("negotiation message has a bad {0}")]
    Bad(&'static str),
    /// Bytes after the end.
    #[error("negotiation message has {0} trailing bytes")]
    Trailing(usize),
}

const T_OFFER: u8 = 1;
const T_ANSWER: u8 = 2;
const T_REVERSE: u8 = 3;
const T_INIT: u8 = 4;
const T_READY: u8 = 5;
const T_SYNC: u8 = 6;
const T_RELAY: u8 = 7;
const T_ABORT: u8 = 8;

fn mask(strategies: &[Strategy]) -> u8 {
    strategies
        .iter()
        .map(|s| 1u8 << (*s as u8))
        .fold(0, |a, b| a | b)
}

fn unmask(m: u8) -> Result<Vec<Strategy>, MessageError> {
    if m >> Strategy::ALL.len() != 0 {
        return Err(MessageError::Bad("strategy set"));
    }
    Ok(Strategy::ALL
        .into_iter()
        .filter(|s| m & (1 << (*s as u8)) != 0)
        .collect())
}

fn nat_code(n: NatType) -> u8 {
    NatType::ALL.iter().position(|x| *x == n).unwrap_or(0) as u8
}

fn delta_code(d: DeltaKind) -> u8 {
    DeltaKind::ALL.iter().position(|x| *x == d).unwrap_or(0) as u8
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => {
                self.u8(4);
                self.0.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                self.u8(6);
                self.0.extend_from_slice(&a.octets());
            }
        }
    }
    fn sock(&mut self, s: SocketAddr) {
        self.ip(s.ip());
        self.u16(s.port());
    }
    fn text(&mut self, t: &str, max: usize) {
        let t = &t.as_bytes()[..t.len().min(max)];
        self.u16(t.len() as u16);
        self.0.extend_from_slice(t);
    }
    fn kind(&mut self, k: PunchKind) {
        self.u8(match k {
            PunchKind::Udp => 0,
            PunchKind::Tcp => 1,
        });
    }
    fn facts(&mut self, f: &PunchFacts) {
        self.u8(nat_code(f.nat));
        self.u8(delta_code(f.delta.kind));
        self.u32(f.delta.value as u32);
        self.ip(f.external_ip);
        match f.observed {
            Some((l, e)) => {
                self.u8(1);
                self.u16(l);
                self.u16(e);
            }
            None => self.u8(0),
        }
        self.u16(f.punch_port);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MessageError> {
        if self.0.len() < n {
            return Err(MessageError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, MessageError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, MessageError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, MessageError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, MessageError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn ip(&mut self) -> Result<IpAddr, MessageError> {
        match self.u8()? {
            4 => {
                let b = self.take(4)?;
                Ok(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
            }
            6 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(self.take(16)?);
                Ok(IpAddr::V6(Ipv6Addr::from(a)))
            }
            _ => Err(MessageError::Bad("address family")),
        }
    }
    fn sock(&mut self) -> Result<SocketAddr, MessageError> {
        let ip = self.ip()?;
        Ok(SocketAddr::new(ip, self.u16()?))
    }
    fn text(&mut self, max: usize) -> Result<String, MessageError> {
        let n = usize::from(self.u16()?);
        if n > max {
            return Err(MessageError::Bad("text length"));
        }
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| MessageError::Bad("text encoding"))
    }
    fn kind(&mut self) -> Result<PunchKind, MessageError> {
        match self.u8()? {
            0 => Ok(PunchKind::Udp),
            1 => Ok(PunchKind::Tcp),
            _ => Err(MessageError::Bad("punch kind")),
        }
    }
    fn facts(&mut self) -> Result<PunchFacts, MessageError> {
        let nat = *NatType::ALL
            .get(usize::from(self.u8()?))
            .ok_or(MessageError::Bad("NAT type"))?;
        let kind = *DeltaKind::ALL
            .get(usize::from(self.u8()?))
            .ok_or(MessageError::Bad("delta kind"))?;
        let value = self.u32()? as i32;
        let external_ip = self.ip()?;
        let observed = match self.u8()? {
            0 => None,
            1 => Some((self.u16()?, self.u16()?)),
            _ => return Err(MessageError::Bad("observation flag")),
        };
        Ok(PunchFacts {
            nat,
            delta: Delta { kind, value },
            external_ip,
            observed,
            punch_port: self.u16()?,
        })
    }
}

impl NegotiationMessage {
    /// The wire form.
    pub fn emit(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(64));
        w.u8(VERSION);
        let ty = match &self.body {
            Body::Offer { .. } => T_OFFER,
            Body::Answer { .. } => T_ANSWER,
            Body::Reverse => T_REVERSE,
            Body::PunchInit { .. } => T_INIT,
            Body::PunchReady { .. } => T_READY,
            Body::Sync { .. } => T_SYNC,
            Body::Relay { .. } => T_RELAY,
            Body::Abort { .. } => T_ABORT,
        };
        w.u8(ty);
        w.0.extend_from_slice(&self.attempt.0.to_be_bytes());
        match &self.body {
            Body::Offer { strategies, addr } => {
                w.u8(mask(strategies));
                w.text(addr, MAX_ADDR);
            }
            Body::Answer { strategies } => w.u8(mask(strategies)),
            Body::Reverse => {}
            Body::PunchInit { kind, facts } => {
                w.kind(*kind);
                w.facts(facts);
            }
            Body::PunchReady {
                kind,
                facts,
                held_ms,
            } => {
                w.kind(*kind);
                w.facts(facts);
                w.u32(*held_ms);
            }
            Body::Sync { kind, delay_ms } => {
                w.kind(*kind);
                w.u16(*delay_ms);
            }
            Body::Relay { relayed, source_ip } => {
                match relayed {
                    Some(s) => {
                        w.u8(1);
                        w.sock(*s);
                    }
                    None => w.u8(0),
                }
                w.ip(*source_ip);
            }
            Body::Abort { strategy, reason } => {
                w.u8(strategy.map_or(0xff, |s| s as u8));
                w.text(reason, MAX_REASON);
            }
        }
        w.0
    }

    /// Parses one message; anything malformed is an error, never a panic.
    pub fn parse(bytes: &[u8]) -> Result<Self, MessageError> {
        let mut r = Reader(bytes);
        let v = r.u8()?;
        if v != VERSION {
            return Err(MessageError::Version(v));
        }
        let ty = r.u8()?;
        let attempt = AttemptId(r.u64()?);
        let body = match ty {
            T_OFFER => Body::Offer {
                strategies: unmask(r.u8()?)?,
                addr: r.text(MAX_ADDR)?,
            },
            T_ANSWER => Body::Answer {
                strategies: unmask(r.u8()?)?,
            },
            T_REVERSE => Body::Reverse,
            T_INIT => Body::PunchInit {
                kind: r.kind()?,
                facts: r.facts()?,
            },
            T_READY => Body::PunchReady {
                kind: r.kind()?,
                facts: r.facts()?,
                held_ms: r.u32()?,
            },
            T_SYNC => Body::Sync {
                kind: r.kind()?,
                delay_ms: r.u16()?,
            },
            T_RELAY => {
                let relayed = match r.u8()? {
                    0 => None,
                    1 => Some(r.sock()?),
                    _ => return Err(MessageError::Bad("relay flag")),
                };
                Body::Relay {
                    relayed,
                    source_ip: r.ip()?,
                }
            }
            T_ABORT => {
                let s = r.u8()?;
                let strategy = match s {
                    0xff => None,
                    n => Some(
                        *Strategy::ALL
                            .get(usize::from(n))
                            .ok_or(MessageError::Bad("strategy"))?,
                    ),
                };
                Body::Abort {
                    strategy,
                    reason: r.text(MAX_REASON)?,
                }
            }
            _ => return Err(MessageError::Bad("message type")),
        };
        if !r.0.is_empty() {
            return Err(MessageError::Trailing(r.0.len()));
        }
        Ok(NegotiationMessage { attempt, body })
    }
}

/// For a driver routing signaling messages: the attempt a body belongs to, and whether it
/// is an `Offer` (which starts a responder). `None` for anything that is not a negotiation
/// message.
pub fn route_signal(body: &[u8]) -> Option<(AttemptId, bool)> {
    let m = NegotiationMessage::parse(body).ok()?;
    Some((m.attempt, matches!(m.body, Body::Offer { .. })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> PunchFacts {
        PunchFacts {
            nat: NatType::Symmetric,
            delta: Delta {
                kind: DeltaKind::Dependent,
                value: -3,
            },
            external_ip: "203.0.113.9".parse().unwrap(),
            observed: Some((4000, 61000)),
            punch_port: 4001,
        }
    }

    fn all() -> Vec<Body> {
        vec![
            Body::Offer {
                strategies: vec![Strategy::Direct, Strategy::Relay],
                addr: "p2pd1:abc".into(),
            },
            Body::Answer {
                strategies: Strategy::ALL.to_vec(),
            },
            Body::Reverse,
            Body::PunchInit {
                kind: PunchKind::Udp,
                facts: facts(),
            },
            Body::PunchReady {
                kind: PunchKind::Tcp,
                facts: PunchFacts {
                    observed: None,
                    external_ip: "2001:db8::1".parse().unwrap(),
                    ..facts()
                },
                held_ms: 17,
            },
            Body::Sync {
                kind: PunchKind::Udp,
                delay_ms: 20,
            },
            Body::Relay {
                relayed: Some("198.51.100.1:50000".parse().unwrap()),
                source_ip: "198.51.100.1".parse().unwrap(),
            },
            Body::Relay {
                relayed: None,
                source_ip: "192.0.2.7".parse().unwrap(),
            },
            Body::Abort {
                strategy: Some(Strategy::TcpPunch),
                reason: "no".into(),
            },
            Body::Abort {
                strategy: None,
                reason: String::new(),
            },
        ]
    }

    #[test]
    fn every_message_round_trips_and_every_truncation_fails() {
        for body in all() {
            let m = NegotiationMessage {
                attempt: AttemptId(0x0102_0304_0506_0708),
                body,
            };
            let wire = m.emit();
            assert_eq!(NegotiationMessage::parse(&wire), Ok(m.clone()));
            for n in 0..wire.len() {
                assert!(
                    NegotiationMessage::parse(&wire[..n]).is_err(),
                    "{n} of {m:?}"
                );
            }
            let mut long = wire.clone();
            long.push(0);
            assert_eq!(
                NegotiationMessage::parse(&long),
                Err(MessageError::Trailing(1))
            );
        }
    }

    #[test]
    fn routing() {
        let offer = NegotiationMessage {
            attempt: AttemptId(9),
            body: all().remove(0),
        };
        assert_eq!(route_signal(&offer.emit()), Some((AttemptId(9), true)));
        let rev = NegotiationMessage {
            attempt: AttemptId(9),
            body: Body::Reverse,
        };
        assert_eq!(route_signal(&rev.emit()), Some((AttemptId(9), false)));
        assert_eq!(route_signal(b"\x02junk"), None);
    }
}
