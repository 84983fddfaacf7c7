//! A sans-IO MQTT 3.1.1 client session over a byte stream, with keep-alive and
//! reconnection with backoff across a list of candidate brokers.
//!
//! The driver owns the TCP stream. It reports stream events — [`handle_connected`],
//! [`handle_input`] (bytes read), [`handle_closed`] — and time ([`handle_timeout`]); it
//! writes whatever [`poll_transmit`] returns and obeys two events: [`MqttEvent::Open`]
//! (open a stream to this broker) and [`MqttEvent::Close`] (drop the stream). This is the
//! same contract as core's datagram machines ([`crate::Machine`]), for a stream.
//!
//! A failure (refused connection, timeout, malformed packet, a broker silent after
//! PINGREQ, a close) becomes [`MqttEvent::Disconnected`] and a reconnect after an
//! exponential backoff with jitter (from the caller's [`Rng`], so runs repeat in the
//! simulator). After `switch_after` consecutive failures on one broker the client moves
//! to the next candidate, so a dead broker is replaced without its owner doing anything.
//!
//! [`handle_connected`]: MqttClient::handle_connected
//! [`handle_input`]: MqttClient::handle_input
//! [`handle_closed`]: MqttClient::handle_closed
//! [`handle_timeout`]: MqttClient::handle_timeout
//! [`poll_transmit`]: MqttClient::poll_transmit

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::error::MqttError;
use super::packet::{Connect, ConnectReturn, Packet, Publish, QoS, Subscribe};
use super::wire::{DEFAULT_MAX_PACKET, frame_len};
use crate::addr::Broker;
use crate::rng::Rng;
use crate::time::Timeout;

/// How a client behaves. [`ClientConfig::new`] gives sensible defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The client identifier sent in CONNECT.
    pub client_id: String,
    /// Candidate brokers, in order of preference.
    pub brokers: Vec<Broker>,
    /// Topic filters subscribed (QoS 1) after every successful connect.
    pub subscriptions: Vec<String>,
    /// Send PINGREQ after this long without sending anything (also sent in CONNECT).
    pub keep_alive: Duration,
    /// Give up on a broker that has not answered PINGREQ after this long.
    pub ping_timeout: Duration,
    /// Give up on a connection attempt without CONNACK after this long.
    pub connect_timeout: Duration,
    /// First reconnect delay; it doubles per consecutive failure.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Consecutive failures on one broker before moving to the next candidate.
    pub switch_after: u32,
    /// Largest packet accepted or sent.
    pub max_packet: usize,
    /// Most QoS 1 publishes awaiting PUBACK.
    pub max_in_flight: usize,
}

impl ClientConfig {
    /// Defaults after P2PD's (spec §4: keep-alive 60 s, connect timeout 5 s), with a
    /// shorter keep-alive so a dead broker is noticed within a minute, and backoff from
    /// 0.5 s to 60 s instead of P2PD's fixed 60 s.
    pub fn new(client_id: impl Into<String>, brokers: Vec<Broker>) -> Self {
        ClientConfig {
            client_id: client_id.into(),
            brokers,
            subscriptions: Vec::new(),
            keep_alive: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            switch_after: 2,
            max_packet: DEFAULT_MAX_PACKET,
            max_in_flight: 64,
        }
    }
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting to (re)connect at the instant given.
    Waiting(Instant),
    /// Asked the driver for a stream; gives up at the instant given.
    Opening(Instant),
    /// CONNECT sent; gives up at the instant given without CONNACK.
    Connecting(Instant),
    /// CONNACK accepted: publishing and receiving.
    Ready,
    /// Stopped by [`MqttClient::disconnect`] (or no broker to try).
    Stopped,
}

/// What the client reports or asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttEvent {
    /// Driver: open a TCP stream to this broker, then call `handle_connected` or `handle_closed`.
    Open(Broker),
    /// Driver: close the stream (the session is over).
    Close,
    /// The broker accepted the session.
    Connected(Broker),
    /// A SUBACK: the QoS granted for `topic`, `None` if the broker refused it.
    Subscribed {
        /// The filter.
        topic: String,
        /// What the broker granted.
        granted: Option<u8>,
    },
    /// A message arrived.
    Message {
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: Vec<u8>,
    },
    /// A QoS 1 publish was acknowledged.
    Delivered(u16),
    /// A PINGRESP arrived.
    Pong(Duration),
    /// The session with `broker` ended; the next attempt is in `retry_in`.
    Disconnected {
        /// The broker.
        broker: Broker,
        /// Why.
        reason: String,
        /// When the client tries again.
        retry_in: Duration,
        /// QoS 1 publishes never acknowledged (their fate is unknown).
        undelivered: Vec<u16>,
    },
}

/// Why a publish was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// No session right now; it is reconnecting.
    #[error("not connected to an MQTT broker (reconnecting): try again after it connects")]
    NotConnected,
    /// Too many QoS 1 publishes await PUBACK.
    #[error("{0} MQTT publishes await acknowledgement: wait for some to be delivered")]
    InFlightFull(usize),
    /// The packet cannot be encoded.
    #[error(transparent)]
    Codec(#[from] MqttError),
}

/// The session. See the module documentation for the driver contract.
#[derive(Debug)]
pub struct MqttClient {
    config: ClientConfig,
    rng: Rng,
    state: State,
    broker: usize,
    failures_here: u32,
    attempts: u32,
    last_sent: Option<Instant>,
    ping_sent: Option<Instant>,
    next_id: u16,
    in_flight: Vec<u16>,
    pending_subs: Vec<(u16, Vec<String>)>,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    events: VecDeque<MqttEvent>,
}

impl MqttClient {
    /// A client that starts connecting at once (its first event is [`MqttEvent::Open`]).
    /// With no broker in `config` it stays [`State::Stopped`].
    pub fn new(config: ClientConfig, rng: Rng, now: Instant) -> Self {
        let mut c = MqttClient {
            config,
            rng,
            state: State::Stopped,
            broker: 0,
            failures_here: 0,
            attempts: 0,
            last_sent: None,
            ping_sent: None,
            next_id: 1,
            in_flight: Vec::new(),
            pending_subs: Vec::new(),
            inbuf: Vec::new(),
            out: Vec::new(),
            events: VecDeque::new(),
        };
        if !c.config.brokers.is_empty() {
            c.open(now);
        }
        c
    }

    /// The session state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The broker the client is connected or connecting to (or will try next).
    pub fn broker(&self) -> Option<&Broker> {
        self.config.brokers.get(self.broker)
    }

    /// The candidate brokers.
    pub fn brokers(&self) -> &[Broker] {
        &self.config.brokers
    }

    /// Whether publishes can go out now.
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// Replaces the candidate list; the next attempt starts at its first entry. A
    /// session in progress is kept.
    pub fn set_brokers(&mut self, now: Instant, brokers: Vec<Broker>) {
        let current = self.broker().cloned();
        self.config.brokers = brokers;
        self.broker = current
            .and_then(|b| self.config.brokers.iter().position(|x| *x == b))
            .unwrap_or(0);
        if matches!(self.state, State::Waiting(_)) || self.state == State::Stopped {
            self.broker = 0;
            self.failures_here = 0;
            if self.state == State::Stopped && !self.config.brokers.is_empty() {
                self.open(now);
            }
        }
    }

    fn open(&mut self, now: Instant) {
        let Some(b) = self.broker().cloned() else {
            self.state = State::Stopped;
            return;
        };
        self.inbuf.clear();
        self.out.clear();
        self.ping_sent = None;
        self.pending_subs.clear();
        self.state = State::Opening(now + self.config.connect_timeout);
        self.events.push_back(MqttEvent::Open(b));
    }

    fn send(&mut self, now: Instant, p: &Packet<'_>) -> Result<(), MqttError> {
        let start = self.out.len();
        p.emit(&mut self.out)?;
        let len = self.out.len() - start;
        if len > self.config.max_packet {
            self.out.truncate(start);
            return Err(MqttError::TooLarge {
                len,
                max: self.config.max_packet,
            });
        }
        self.last_sent = Some(now);
        Ok(())
    }

    fn backoff(&mut self) -> Duration {
        let shift = self.attempts.saturating_sub(1).min(20);
        let base = self
            .config
            .backoff_min
            .saturating_mul(1 << shift)
            .min(self.config.backoff_max);
        let half = u64::try_from(base.as_micros() / 2).unwrap_or(u64::MAX);
        Duration::from_micros(half + self.rng.below(half.max(1)))
    }

    fn fail(&mut self, now: Instant, reason: String) {
        if !matches!(
            self.state,
            State::Opening(_) | State::Connecting(_) | State::Ready
        ) {
            return;
        }
        let broker = self.broker().cloned();
        self.events.push_back(MqttEvent::Close);
        self.failures_here += 1;
        self.attempts += 1;
        if self.failures_here >= self.config.switch_after.max(1) {
            self.broker = (self.broker + 1) % self.config.brokers.len().max(1);
            self.failures_here = 0;
        }
        let retry_in = self.backoff();
        self.state = State::Waiting(now + retry_in);
        self.inbuf.clear();
        self.out.clear();
        self.ping_sent = None;
        self.pending_subs.clear();
        if let Some(broker) = broker {
            self.events.push_back(MqttEvent::Disconnected {
                broker,
                reason,
                retry_in,
                undelivered: std::mem::take(&mut self.in_flight),
            });
        }
    }

    /// The driver's stream to the broker is up.
    pub fn handle_connected(&mut self, now: Instant) {
        let State::Opening(deadline) = self.state else {
            return;
        };
        self.state = State::Connecting(deadline);
        let client_id = self.config.client_id.clone();
        let connect = Packet::Connect(Connect {
            client_id: &client_id,
            keep_alive: u16::try_from(self.config.keep_alive.as_secs()).unwrap_or(u16::MAX),
            clean_session: true,
        });
        if let Err(e) = self.send(now, &connect) {
            self.fail(now, format!("cannot encode CONNECT: {e}"));
        }
    }

    /// The stream closed (or could not be opened).
    pub fn handle_closed(&mut self, now: Instant) {
        let reason = match self.state {
            State::Opening(_) => "the TCP connection could not be opened",
            State::Connecting(_) => "the broker closed the connection before CONNACK",
            _ => "the broker closed the connection",
        };
        self.fail(now, reason.into());
    }

    /// Bytes read from the stream.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        if !matches!(self.state, State::Connecting(_) | State::Ready) {
            return;
        }
        self.inbuf.extend_from_slice(bytes);
        loop {
            let n = match frame_len(&self.inbuf, self.config.max_packet) {
                Ok(Some(n)) => n,
                Ok(None) => return,
                Err(e) => return self.fail(now, e.to_string()),
            };
            let frame: Vec<u8> = self.inbuf.drain(..n).collect();
            match Packet::parse(&frame) {
                Ok(p) => self.handle_packet(now, p),
                Err(e) => return self.fail(now, e.to_string()),
            }
            if !matches!(self.state, State::Connecting(_) | State::Ready) {
                return;
            }
        }
    }

    fn handle_packet(&mut self, now: Instant, p: Packet<'_>) {
        match (self.state, p) {
            (State::Connecting(_), Packet::ConnAck(ack)) => {
                if ack.code != ConnectReturn::Accepted {
                    return self.fail(now, format!("broker refused: {}", ack.code.describe()));
                }
                self.state = State::Ready;
                self.attempts = 0;
                self.failures_here = 0;
                if let Some(b) = self.broker().cloned() {
                    self.events.push_back(MqttEvent::Connected(b));
                }
                let topics = self.config.subscriptions.clone();
                if !topics.is_empty() {
                    self.send_subscribe(now, topics);
                }
            }
            (State::Connecting(_), other) => self.fail(
                now,
                format!("expected CONNACK, got {:?}", other.packet_type()),
            ),
            (State::Ready, Packet::Publish(p)) => {
                if let Some(id) = p.packet_id
                    && let Err(e) = self.send(now, &Packet::PubAck(id))
                {
                    return self.fail(now, e.to_string());
                }
                self.events.push_back(MqttEvent::Message {
                    topic: p.topic.to_owned(),
                    payload: p.payload.to_vec(),
                });
            }
            (State::Ready, Packet::PubAck(id)) => {
                if let Some(i) = self.in_flight.iter().position(|x| *x == id) {
                    self.in_flight.swap_remove(i);
                    self.events.push_back(MqttEvent::Delivered(id));
                }
            }
            (State::Ready, Packet::SubAck(ack)) => {
                let Some(i) = self
                    .pending_subs
                    .iter()
                    .position(|(id, _)| *id == ack.packet_id)
                else {
                    return;
                };
                let (_, topics) = self.pending_subs.swap_remove(i);
                for (topic, code) in topics.into_iter().zip(ack.codes) {
                    self.events.push_back(MqttEvent::Subscribed {
                        topic,
                        granted: (*code != 0x80).then_some(*code),
                    });
                }
            }
            (State::Ready, Packet::PingResp) => {
                if let Some(sent) = self.ping_sent.take() {
                    self.events
                        .push_back(MqttEvent::Pong(now.saturating_duration_since(sent)));
                }
            }
            (_, other) => self.fail(
                now,
                format!("broker sent an unexpected {:?}", other.packet_type()),
            ),
        }
    }

    fn alloc_id(&mut self) -> u16 {
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            if !self.in_flight.contains(&id) && !self.pending_subs.iter().any(|(x, _)| *x == id) {
                return id;
            }
        }
    }

    fn send_subscribe(&mut self, now: Instant, topics: Vec<String>) {
        let packet_id = self.alloc_id();
        let filters = topics
            .iter()
            .map(|t| (t.as_str(), QoS::AtLeastOnce))
            .collect();
        match self.send(now, &Packet::Subscribe(Subscribe { packet_id, filters })) {
            Ok(()) => self.pending_subs.push((packet_id, topics)),
            Err(e) => self.fail(now, format!("cannot encode SUBSCRIBE: {e}")),
        }
    }

    /// Subscribes to `topic` now (if connected) and after every reconnect.
    pub fn subscribe(&mut self, now: Instant, topic: String) {
        if self.config.subscriptions.contains(&topic) {
            return;
        }
        self.config.subscriptions.push(topic.clone());
        if self.is_ready() {
            self.send_subscribe(now, vec![topic]);
        }
    }

    /// Publishes `payload` on `topic`; for QoS 1, returns the packet id a later
    /// [`MqttEvent::Delivered`] names.
    pub fn publish(
        &mut self,
        now: Instant,
        topic: &str,
        payload: &[u8],
        qos: QoS,
    ) -> Result<Option<u16>, PublishError> {
        if !self.is_ready() {
            return Err(PublishError::NotConnected);
        }
        let packet_id = match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => {
                if self.in_flight.len() >= self.config.max_in_flight {
                    return Err(PublishError::InFlightFull(self.in_flight.len()));
                }
                Some(self.alloc_id())
            }
        };
        let p = Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic,
            packet_id,
            payload,
        });
        self.send(now, &p)?;
        if let Some(id) = packet_id {
            self.in_flight.push(id);
        }
        Ok(packet_id)
    }

    /// Ends the session politely (DISCONNECT) and stops reconnecting.
    pub fn disconnect(&mut self, now: Instant) {
        if self.is_ready() {
            let _ = self.send(now, &Packet::Disconnect);
        }
        if self.state != State::Stopped {
            self.events.push_back(MqttEvent::Close);
            self.state = State::Stopped;
        }
    }

    /// Time passed: reconnect, time out a connect, or keep the session alive.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Waiting(at) if now >= at => self.open(now),
            State::Opening(at) | State::Connecting(at) if now >= at => self.fail(
                now,
                format!(
                    "no CONNACK within {} ms",
                    self.config.connect_timeout.as_millis()
                ),
            ),
            State::Ready => {
                if let Some(sent) = self.ping_sent {
                    if now >= sent + self.config.ping_timeout {
                        self.fail(
                            now,
                            format!(
                                "no PINGRESP within {} ms: the broker is gone",
                                self.config.ping_timeout.as_millis()
                            ),
                        );
                    }
                } else if self
                    .last_sent
                    .is_none_or(|t| now >= t + self.config.keep_alive)
                {
                    match self.send(now, &Packet::PingReq) {
                        Ok(()) => self.ping_sent = Some(now),
                        Err(e) => self.fail(now, e.to_string()),
                    }
                }
            }
            _ => {}
        }
    }

    /// Bytes to write to the stream (everything pending, in order).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.out.is_empty()).then(|| std::mem::take(&mut self.out))
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<MqttEvent> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next, and why.
    pub fn poll_timeout(&self) -> Option<Timeout> {
        match self.state {
            State::Waiting(at) => Some(Timeout::new(at, "mqtt reconnect")),
            State::Opening(at) | State::Connecting(at) => {
                Some(Timeout::new(at, "mqtt connect timeout"))
            }
            State::Ready => match self.ping_sent {
                Some(sent) => Some(Timeout::new(
                    sent + self.config.ping_timeout,
                    "mqtt ping timeout",
                )),
                // CONNECT was sent, so `last_sent` is set whenever the session is ready.
                None => self
                    .last_sent
                    .map(|t| Timeout::new(t + self.config.keep_alive, "mqtt keep-alive")),
            },
            State::Stopped => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::packet::{ConnAck, SubAck};

    fn bytes(p: Packet<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        p.emit(&mut out).unwrap();
        out
    }

    fn events(c: &mut MqttClient) -> Vec<MqttEvent> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    fn sent(c: &mut MqttClient) -> Vec<Vec<u8>> {
        let mut all = c.poll_transmit().unwrap_or_default();
        let mut out = Vec::new();
        while let Ok(Some(n)) = frame_len(&all, usize::MAX) {
            out.push(all.drain(..n).collect());
        }
        assert!(all.is_empty());
        out
    }

    fn brokers() -> Vec<Broker> {
        vec![
            "192.0.2.1:1883".parse().unwrap(),
            "192.0.2.2:1883".parse().unwrap(),
        ]
    }

    fn ready(now: Instant) -> MqttClient {
        let mut config = ClientConfig::new("me", brokers());
        config.subscriptions.push("p2pd/1/me".into());
        let mut c = MqttClient::new(config, Rng::seed_from_u64(1), now);
        assert_eq!(events(&mut c), [MqttEvent::Open(brokers()[0].clone())]);
        c.handle_connected(now);
        let connect = sent(&mut c);
        assert!(
            matches!(Packet::parse(&connect[0]), Ok(Packet::Connect(k)) if k.client_id == "me" && k.keep_alive == 30)
        );
        c.handle_input(
            now,
            &bytes(Packet::ConnAck(ConnAck {
                session_present: false,
                code: ConnectReturn::Accepted,
            })),
        );
        assert_eq!(events(&mut c), [MqttEvent::Connected(brokers()[0].clone())]);
        let sub = sent(&mut c);
        let Ok(Packet::Subscribe(s)) = Packet::parse(&sub[0]) else {
            panic!("no SUBSCRIBE")
        };
        assert_eq!(s.filters, [("p2pd/1/me", QoS::AtLeastOnce)]);
        // SUBACK delivered one byte at a time: framing across reads.
        for b in bytes(Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            codes: &[1],
        })) {
            c.handle_input(now, &[b]);
        }
        assert_eq!(
            events(&mut c),
            [MqttEvent::Subscribed {
                topic: "p2pd/1/me".into(),
                granted: Some(1)
            }]
        );
        c
    }

    #[test]
    fn connect_subscribe_publish_receive() {
        let now = Instant::now();
        let mut c = ready(now);
        let id = c
            .publish(now, "p2pd/1/peer", b"hi", QoS::AtLeastOnce)
            .unwrap()
            .unwrap();
        let out = sent(&mut c);
        assert!(
            matches!(Packet::parse(&out[0]), Ok(Packet::Publish(p)) if p.payload == b"hi" && p.packet_id == Some(id))
        );
        c.handle_input(now, &bytes(Packet::PubAck(id)));
        // A second PUBACK for the same id is ignored.
        c.handle_input(now, &bytes(Packet::PubAck(id)));
        assert_eq!(events(&mut c), [MqttEvent::Delivered(id)]);
        let incoming = bytes(Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "p2pd/1/me",
            packet_id: Some(5),
            payload: b"yo",
        }));
        c.handle_input(now, &incoming);
        assert_eq!(
            events(&mut c),
            [MqttEvent::Message {
                topic: "p2pd/1/me".into(),
                payload: b"yo".to_vec()
            }]
        );
        assert_eq!(sent(&mut c), [bytes(Packet::PubAck(5))]);
    }

    #[test]
    fn keepalive_pings_and_dead_broker_is_left() {
        let t0 = Instant::now();
        let mut c = ready(t0);
        let t = c.poll_timeout().unwrap();
        assert_eq!(
            (t.at, t.reason),
            (t0 + Duration::from_secs(30), "mqtt keep-alive")
        );
        c.handle_timeout(t.at);
        assert_eq!(sent(&mut c), [bytes(Packet::PingReq)]);
        c.handle_input(t.at + Duration::from_millis(20), &bytes(Packet::PingResp));
        assert_eq!(events(&mut c), [MqttEvent::Pong(Duration::from_millis(20))]);
        // Next ping goes unanswered.
        let t = c.poll_timeout().unwrap();
        c.handle_timeout(t.at);
        assert_eq!(sent(&mut c), [bytes(Packet::PingReq)]);
        let t = c.poll_timeout().unwrap();
        assert_eq!(t.reason, "mqtt ping timeout");
        c.handle_timeout(t.at);
        let ev = events(&mut c);
        assert_eq!(ev[0], MqttEvent::Close);
        assert!(
            matches!(&ev[1], MqttEvent::Disconnected { reason, retry_in, .. }
            if reason.contains("PINGRESP") && *retry_in >= Duration::from_millis(250) && *retry_in <= Duration::from_millis(500))
        );
        assert!(matches!(c.state(), State::Waiting(_)));
    }

    #[test]
    fn backoff_grows_and_switches_broker() {
        let mut now = Instant::now();
        let mut c = MqttClient::new(
            ClientConfig::new("me", brokers()),
            Rng::seed_from_u64(2),
            now,
        );
        let mut opened = Vec::new();
        let mut delays = Vec::new();
        for _ in 0..6 {
            for e in events(&mut c) {
                match e {
                    MqttEvent::Open(b) => opened.push(b),
                    MqttEvent::Disconnected { retry_in, .. } => delays.push(retry_in),
                    _ => {}
                }
            }
            c.handle_closed(now);
            for e in events(&mut c) {
                if let MqttEvent::Disconnected { retry_in, .. } = e {
                    delays.push(retry_in);
                }
            }
            now = c.poll_timeout().unwrap().at;
            c.handle_timeout(now);
        }
        let b = brokers();
        assert_eq!(
            opened,
            [
                b[0].clone(),
                b[0].clone(),
                b[1].clone(),
                b[1].clone(),
                b[0].clone(),
                b[0].clone()
            ]
        );
        for (i, d) in delays.iter().enumerate() {
            let base = Duration::from_millis(500) * (1 << i);
            assert!(*d >= base / 2 && *d <= base, "attempt {i}: {d:?}");
        }
    }

    #[test]
    fn refusals_and_garbage_end_the_session() {
        let now = Instant::now();
        let mut c = MqttClient::new(
            ClientConfig::new("me", brokers()),
            Rng::seed_from_u64(3),
            now,
        );
        events(&mut c);
        c.handle_connected(now);
        sent(&mut c);
        c.handle_input(
            now,
            &bytes(Packet::ConnAck(ConnAck {
                session_present: false,
                code: ConnectReturn::NotAuthorized,
            })),
        );
        assert!(events(&mut c).iter().any(
            |e| matches!(e, MqttEvent::Disconnected { reason, .. } if reason.contains("authorise"))
        ));
        let mut c = ready(now);
        c.handle_input(now, b"\xf0\x00 not MQTT");
        assert!(
            events(&mut c)
                .iter()
                .any(|e| matches!(e, MqttEvent::Disconnected { .. }))
        );
        assert_eq!(
            c.publish(now, "t", b"", QoS::AtMostOnce),
            Err(PublishError::NotConnected)
        );
        // A packet over the limit is refused before it is buffered.
        let mut c = ready(now);
        c.handle_input(now, &[0x30, 0xff, 0xff, 0x7f]);
        assert!(events(&mut c).iter().any(
            |e| matches!(e, MqttEvent::Disconnected { reason, .. } if reason.contains("limit"))
        ));
    }

    #[test]
    fn no_answer_to_connect_times_out() {
        let now = Instant::now();
        let mut c = MqttClient::new(
            ClientConfig::new("me", brokers()),
            Rng::seed_from_u64(4),
            now,
        );
        events(&mut c);
        let t = c.poll_timeout().unwrap();
        assert_eq!(t.reason, "mqtt connect timeout");
        c.handle_timeout(t.at);
        assert!(events(&mut c).iter().any(
            |e| matches!(e, MqttEvent::Disconnected { reason, .. } if reason.contains("CONNACK"))
        ));
        c.disconnect(now);
        assert_eq!(c.state(), State::Stopped);
        assert_eq!(c.poll_timeout(), None);
    }
}
