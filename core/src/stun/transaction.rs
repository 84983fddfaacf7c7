//! The STUN client transaction: send a request, retransmit on RFC 8489 §6.2.1's schedule,
//! accept the one response that really answers it, or time out.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::error_code::ErrorCode;
use super::header::{Class, Method, TransactionId};
use super::integrity::IntegrityKey;
use super::message::Message;
use crate::time::Timeout;
use crate::transmit::{Transmit, Transport};

/// Retransmission parameters (RFC 8489 §6.2.1). The defaults are the RFC's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionConfig {
    /// The first retransmission timeout (RTO); it doubles after every retransmission.
    /// RFC default: 500 ms. Use a measured value (see [`super::RtoEstimator`]) when one
    /// is known.
    pub rto: Duration,
    /// Rc: how many times the request is sent in all over UDP. RFC default: 7.
    pub max_sends: u32,
    /// Rm: after the last send, wait `rm × rto` for a response. RFC default: 16.
    pub last_wait_multiplier: u32,
    /// Ti: over TCP the request is sent once and the transaction fails after this long.
    /// RFC default: 39.5 s.
    pub reliable_timeout: Duration,
}

impl Default for TransactionConfig {
    fn default() -> Self {
        TransactionConfig {
            rto: Duration::from_millis(500),
            max_sends: 7,
            last_wait_multiplier: 16,
            reliable_timeout: Duration::from_millis(39_500),
        }
    }
}

impl TransactionConfig {
    /// The time from the first send to the timeout over UDP: with RFC defaults, 39.5 s.
    pub fn total_udp_time(&self) -> Duration {
        let sends = self.max_sends.max(1);
        let doublings = (1u32 << (sends - 1).min(20)) - 1; // rto × (1 + 2 + … + 2^(n-2))
        self.rto * doublings + self.rto * self.last_wait_multiplier
    }
}

/// Where a response must come from to be accepted. Anything else is ignored: an off-path
/// attacker who guesses no transaction ID also has to spoof the right source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseSource {
    /// The address the request was sent to (the normal case).
    Destination,
    /// Exactly this address: the server's alternate address after a CHANGE-REQUEST.
    Exact(SocketAddr),
    /// Any port of this IP (CHANGE-REQUEST asking for a new port only, when the port is
    /// not known in advance).
    Ip(IpAddr),
}

/// What a transaction ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionEvent {
    /// A success or error response that matched; `bytes` is the whole message (parse it
    /// with [`Message::parse`], which is known to succeed).
    Response {
        /// The response message.
        bytes: Vec<u8>,
        /// Where it came from.
        source: SocketAddr,
        /// The local address it arrived on.
        destination: SocketAddr,
        /// Round trip of an unambiguous exchange: `Some` only if the request was sent
        /// once (Karn's rule: after a retransmission we cannot tell which send was
        /// answered).
        rtt: Option<Duration>,
        /// From the first send to the response.
        elapsed: Duration,
        /// How many times the request was sent.
        sends: u32,
    },
    /// No acceptable response before the last deadline.
    TimedOut {
        /// The server that did not answer.
        server: SocketAddr,
        /// From the first send to giving up.
        elapsed: Duration,
        /// How many times the request was sent.
        sends: u32,
    },
}

/// Why an input was not taken as the response. Callers that share a socket among many
/// transactions try each; logs show why a stray packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Not a STUN message, or malformed.
    NotStun,
    /// Another transaction's message, or a request/indication.
    NotOurs,
    /// The transaction already ended.
    Finished,
    /// The right transaction ID from the wrong address or to the wrong local socket.
    WrongAddress,
    /// A FINGERPRINT that does not match.
    BadFingerprint,
    /// A response that should carry MESSAGE-INTEGRITY and did not verify.
    BadIntegrity,
}

#[derive(Debug)]
enum State {
    Running {
        next_send: Instant,
        rto: Duration,
        give_up: Option<Instant>,
    },
    Done,
}

/// One client transaction (RFC 8489 §6.2), sans-IO.
///
/// The request is encoded once by the caller and sent identically every time. Drive it
/// with [`poll_transmit`](Self::poll_transmit), [`poll_timeout`](Self::poll_timeout),
/// [`handle_timeout`](Self::handle_timeout), [`handle_input`](Self::handle_input) and
/// [`poll_event`](Self::poll_event).
#[derive(Debug)]
pub struct ClientTransaction {
    request: Vec<u8>,
    transaction_id: TransactionId,
    method: Method,
    transport: Transport,
    local: SocketAddr,
    server: SocketAddr,
    expect: ResponseSource,
    key: Option<IntegrityKey>,
    config: TransactionConfig,
    started: Instant,
    sends: u32,
    transmit_pending: bool,
    state: State,
    event: Option<TransactionEvent>,
}

/// The request given to [`ClientTransaction::new`] was not a STUN request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a client transaction needs an encoded STUN request: {0}")]
pub struct NotARequest(&'static str);

impl ClientTransaction {
    /// Starts a transaction at `now`: the first send is due at once.
    ///
    /// `request` is an encoded STUN request; `local` is the socket address it leaves from
    /// (an unspecified IP matches any local IP of that port); `server` is where it goes.
    pub fn new(
        now: Instant,
        request: Vec<u8>,
        transport: Transport,
        local: SocketAddr,
        server: SocketAddr,
        config: TransactionConfig,
    ) -> Result<Self, NotARequest> {
        let (transaction_id, method) = {
            let msg = Message::parse(&request).map_err(|_| NotARequest("malformed message"))?;
            if msg.message_type().class != Class::Request {
                return Err(NotARequest("the message is not a request"));
            }
            (msg.transaction_id(), msg.message_type().method)
        };
        Ok(ClientTransaction {
            request,
            transaction_id,
            method,
            transport,
            local,
            server,
            expect: ResponseSource::Destination,
            key: None,
            config,
            started: now,
            sends: 0,
            transmit_pending: false,
            state: State::Running {
                next_send: now,
                rto: config.rto,
                give_up: None,
            },
            event: None,
        })
    }

    /// Accepts the response only from `source` (for CHANGE-REQUEST tests).
    pub fn expect_response_from(mut self, source: ResponseSource) -> Self {
        self.expect = source;
        self
    }

    /// Requires MESSAGE-INTEGRITY (either kind) on success responses, verified with
    /// `key`. Error responses 400, 401, 420 and 438 are accepted without it, as RFC 8489
    /// §9.2.5 requires, so that a credential challenge can be seen.
    pub fn verify_responses_with(mut self, key: IntegrityKey) -> Self {
        self.key = Some(key);
        self
    }

    /// The transaction ID.
    pub fn transaction_id(&self) -> TransactionId {
        self.transaction_id
    }

    /// The server the request goes to.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The local address the request leaves from.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// Whether the transaction has ended (its event may still wait in `poll_event`).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Ends the transaction without an event; nothing more is sent.
    pub fn cancel(&mut self) {
        self.state = State::Done;
        self.transmit_pending = false;
    }

    /// The request to send now, if a send is due.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        if !std::mem::take(&mut self.transmit_pending) {
            return None;
        }
        Some(Transmit {
            transport: self.transport,
            source: self.local,
            destination: self.server,
            contents: &self.request,
        })
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Timeout> {
        match self.state {
            State::Running {
                next_send,
                give_up: None,
                ..
            } => Some(Timeout::new(
                next_send,
                if self.sends == 0 {
                    "stun: first send"
                } else {
                    "stun: retransmit"
                },
            )),
            State::Running {
                give_up: Some(at), ..
            } => Some(Timeout::new(at, "stun: transaction timeout")),
            State::Done => None,
        }
    }

    /// Advances the retransmission schedule to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let State::Running {
            next_send,
            rto,
            give_up,
        } = &mut self.state
        else {
            return;
        };
        if let Some(at) = *give_up {
            if now >= at {
                self.event = Some(TransactionEvent::TimedOut {
                    server: self.server,
                    elapsed: now.saturating_duration_since(self.started),
                    sends: self.sends,
                });
                self.state = State::Done;
            }
            return;
        }
        if now < *next_send {
            return;
        }
        self.sends += 1;
        self.transmit_pending = true;
        if self.transport == Transport::Tcp {
            *give_up = Some(now + self.config.reliable_timeout);
        } else if self.sends >= self.config.max_sends.max(1) {
            *give_up = Some(now + self.config.rto * self.config.last_wait_multiplier);
        } else {
            *next_send = now + *rto;
            *rto = rto.saturating_mul(2);
        }
    }

    /// Offers a received packet. Returns `Ok(())` if it was the response (an event is
    /// then ready), or why it was ignored; ignored input changes nothing.
    pub fn handle_input(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), Ignored> {
        if self.is_done() {
            return Err(Ignored::Finished);
        }
        let msg = Message::parse(bytes).map_err(|_| Ignored::NotStun)?;
        let typ = msg.message_type();
        if msg.transaction_id() != self.transaction_id
            || typ.method != self.method
            || !matches!(typ.class, Class::Success | Class::Error)
        {
            return Err(Ignored::NotOurs);
        }
        if !self.source_ok(source) || !local_matches(self.local, destination) {
            return Err(Ignored::WrongAddress);
        }
        if msg.has_fingerprint() && msg.verify_fingerprint().is_err() {
            return Err(Ignored::BadFingerprint);
        }
        if let Some(key) = &self.key {
            if !exempt_from_integrity(&msg) && msg.verify_any_integrity(key).is_err() {
                return Err(Ignored::BadIntegrity);
            }
        }
        let elapsed = now.saturating_duration_since(self.started);
        self.event = Some(TransactionEvent::Response {
            bytes: bytes.to_vec(),
            source,
            destination,
            rtt: (self.sends == 1).then_some(elapsed),
            elapsed,
            sends: self.sends,
        });
        self.state = State::Done;
        self.transmit_pending = false;
        Ok(())
    }

    fn source_ok(&self, source: SocketAddr) -> bool {
        match self.expect {
            ResponseSource::Destination => source == self.server,
            ResponseSource::Exact(a) => source == a,
            ResponseSource::Ip(ip) => source.ip() == ip,
        }
    }

    /// The transaction's outcome, once.
    pub fn poll_event(&mut self) -> Option<TransactionEvent> {
        self.event.take()
    }
}

/// Whether `got` is the local socket `ours` (an unspecified IP in `ours` matches any IP).
fn local_matches(ours: SocketAddr, got: SocketAddr) -> bool {
    ours.port() == got.port() && (ours.ip().is_unspecified() || ours.ip() == got.ip())
}

/// Error responses that are sent without MESSAGE-INTEGRITY (RFC 8489 §9.2.5).
fn exempt_from_integrity(msg: &Message<'_>) -> bool {
    msg.message_type().class == Class::Error
        && matches!(
            msg.get::<ErrorCode>().ok().flatten().map(|e| e.code()),
            Some(400 | 401 | 420 | 438)
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::{MessageBuilder, MessageType, XorMappedAddress};

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn request(id: TransactionId) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let mut b = MessageBuilder::new(&mut buf, MessageType::BINDING_REQUEST, id).unwrap();
        b.add_fingerprint().unwrap();
        b.finish().to_vec()
    }

    fn response(id: TransactionId, mapped: SocketAddr) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let mut b = MessageBuilder::new(&mut buf, MessageType::BINDING_SUCCESS, id).unwrap();
        b.add(&XorMappedAddress(mapped)).unwrap();
        b.add_fingerprint().unwrap();
        b.finish().to_vec()
    }

    fn drive_to_timeout(t: &mut ClientTransaction, start: Instant) -> Vec<Duration> {
        let mut sends = vec![];
        for _ in 0..100 {
            let Some(to) = t.poll_timeout() else { break };
            t.handle_timeout(to.at);
            if t.poll_transmit().is_some() {
                sends.push(to.at - start);
            }
        }
        sends
    }

    #[test]
    fn follows_the_rfc_schedule_then_times_out() {
        let start = Instant::now();
        let id = TransactionId::new([1; 12]);
        let cfg = TransactionConfig::default();
        let mut t = ClientTransaction::new(
            start,
            request(id),
            Transport::Udp,
            addr("0.0.0.0:5000"),
            addr("192.0.2.1:3478"),
            cfg,
        )
        .unwrap();
        let sends = drive_to_timeout(&mut t, start);
        let ms: Vec<u128> = sends.iter().map(Duration::as_millis).collect();
        // RFC 8489 §6.2.1's own example: 0, 500, 1500, 3500, 7500, 15500, 31500 ms; fail at 39500.
        assert_eq!(ms, [0, 500, 1500, 3500, 7500, 15500, 31500]);
        match t.poll_event() {
            Some(TransactionEvent::TimedOut { elapsed, sends, .. }) => {
                assert_eq!(elapsed, Duration::from_millis(39_500));
                assert_eq!(elapsed, cfg.total_udp_time());
                assert_eq!(sends, 7);
            }
            e => panic!("expected a timeout, got {e:?}"),
        }
    }

    #[test]
    fn tcp_sends_once_and_waits_ti() {
        let start = Instant::now();
        let mut t = ClientTransaction::new(
            start,
            request(TransactionId::new([2; 12])),
            Transport::Tcp,
            addr("10.0.0.1:5000"),
            addr("192.0.2.1:3478"),
            TransactionConfig::default(),
        )
        .unwrap();
        assert_eq!(drive_to_timeout(&mut t, start).len(), 1);
        assert!(matches!(
            t.poll_event(),
            Some(TransactionEvent::TimedOut { elapsed, .. }) if elapsed == Duration::from_millis(39_500)
        ));
    }

    #[test]
    fn accepts_only_the_matching_response_from_the_right_place() {
        let start = Instant::now();
        let id = TransactionId::new([3; 12]);
        let local = addr("0.0.0.0:5000");
        let server = addr("192.0.2.1:3478");
        let mut t = ClientTransaction::new(
            start,
            request(id),
            Transport::Udp,
            local,
            server,
            TransactionConfig::default(),
        )
        .unwrap();
        t.handle_timeout(start);
        assert!(t.poll_transmit().is_some());
        let mapped = addr("198.51.100.7:40000");
        let here = addr("10.0.0.2:5000");
        let later = start + Duration::from_millis(30);
        let good = response(id, mapped);
        assert_eq!(
            t.handle_input(later, server, here, b"junk"),
            Err(Ignored::NotStun)
        );
        assert_eq!(
            t.handle_input(
                later,
                server,
                here,
                &response(TransactionId::new([9; 12]), mapped)
            ),
            Err(Ignored::NotOurs)
        );
        assert_eq!(
            t.handle_input(later, addr("192.0.2.66:3478"), here, &good),
            Err(Ignored::WrongAddress)
        );
        assert_eq!(
            t.handle_input(later, server, addr("10.0.0.2:5001"), &good),
            Err(Ignored::WrongAddress)
        );
        let mut corrupt = good.clone();
        *corrupt.last_mut().unwrap() ^= 1;
        assert_eq!(
            t.handle_input(later, server, here, &corrupt),
            Err(Ignored::BadFingerprint)
        );
        assert_eq!(
            t.handle_input(later, server, here, &request(id)),
            Err(Ignored::NotOurs)
        );
        assert!(!t.is_done());
        assert_eq!(t.handle_input(later, server, here, &good), Ok(()));
        match t.poll_event() {
            Some(TransactionEvent::Response {
                bytes, rtt, sends, ..
            }) => {
                assert_eq!(
                    Message::parse(&bytes).unwrap().mapped_address().unwrap(),
                    Some(mapped)
                );
                assert_eq!(rtt, Some(Duration::from_millis(30)));
                assert_eq!(sends, 1);
            }
            e => panic!("expected a response, got {e:?}"),
        }
        assert_eq!(t.poll_timeout(), None);
        assert_eq!(
            t.handle_input(later, server, here, &good),
            Err(Ignored::Finished)
        );
    }

    #[test]
    fn karn_rule_hides_rtt_after_a_retransmission() {
        let start = Instant::now();
        let id = TransactionId::new([4; 12]);
        let server = addr("192.0.2.1:3478");
        let mut t = ClientTransaction::new(
            start,
            request(id),
            Transport::Udp,
            addr("0.0.0.0:5000"),
            server,
            TransactionConfig::default(),
        )
        .unwrap();
        t.handle_timeout(start);
        t.handle_timeout(start + Duration::from_millis(500));
        let at = start + Duration::from_millis(600);
        t.handle_input(at, server, addr("10.0.0.2:5000"), &response(id, server))
            .unwrap();
        assert!(matches!(
            t.poll_event(),
            Some(TransactionEvent::Response {
                rtt: None,
                sends: 2,
                ..
            })
        ));
    }

    #[test]
    fn rejects_a_non_request() {
        let r = ClientTransaction::new(
            Instant::now(),
            response(TransactionId::new([5; 12]), addr("192.0.2.1:1")),
            Transport::Udp,
            addr("0.0.0.0:1"),
            addr("192.0.2.1:3478"),
            TransactionConfig::default(),
        );
        assert!(r.is_err());
    }
}
