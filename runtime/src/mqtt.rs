//! MQTT and signaling on real TCP streams of any [`Runtime`].
//!
//! Core's [`MqttClient`] and [`Signaler`] are sans-IO machines over byte streams; the
//! [`StreamMachine`] trait is what they have in common, and [`drive_streams`] runs either
//! of them: it opens the TCP connections they ask for (names resolved here, at connect
//! time), feeds them what the streams read, writes what they produce, and wakes them at
//! their deadlines. [`spawn_mqtt`] and [`spawn_signaler`] run one in the background and
//! return a handle.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use p2pd_core::Timeout;
use p2pd_core::addr::{Broker, NodeAddr};
use p2pd_core::identity::Identity;
use p2pd_core::mqtt::{ClientConfig, MqttClient, MqttEvent, PublishError, QoS};
use p2pd_core::rng::Rng;
use p2pd_core::signal::{ConnId, MessageId, SendError, SignalEvent, Signaler, SignalerConfig};

use crate::net::{any_local_for, connect_tcp};
use crate::runtime::{AsyncTcpStream, Runtime};
use crate::task::{Task, spawn};
use crate::timer::until;

/// How long one write may take before the stream counts as dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read per wake-up.
const READ_CHUNK: usize = 16 * 1024;
/// Events buffered for the owner before the driver waits for it to read.
const EVENT_QUEUE: usize = 1024;

/// What a stream machine asks of its driver besides bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent<E> {
    /// Open a TCP stream to `broker` for `conn` (replacing any it has).
    Open {
        /// The connection.
        conn: ConnId,
        /// Where to.
        broker: Broker,
    },
    /// Close `conn`'s stream.
    Close(ConnId),
    /// Something for the machine's owner.
    App(E),
}

/// A sans-IO machine over TCP streams (core's datagram machines use [`p2pd_core::Machine`]).
pub trait StreamMachine {
    /// What the owner receives.
    type Event: Send + 'static;
    /// `conn`'s stream is up.
    fn handle_connected(&mut self, now: Instant, conn: ConnId);
    /// Bytes read from `conn`.
    fn handle_input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]);
    /// `conn` closed or could not be opened.
    fn handle_closed(&mut self, now: Instant, conn: ConnId);
    /// Time passed.
    fn handle_timeout(&mut self, now: Instant);
    /// Bytes to write.
    fn poll_transmit(&mut self) -> Option<(ConnId, Vec<u8>)>;
    /// The next request or event.
    fn poll_stream_event(&mut self) -> Option<StreamEvent<Self::Event>>;
    /// The next deadline.
    fn poll_timeout(&self) -> Option<Timeout>;
}

/// The one connection of a lone [`MqttClient`].
const MQTT_CONN: ConnId = ConnId(0);

impl StreamMachine for MqttClient {
    type Event = MqttEvent;
    fn handle_connected(&mut self, now: Instant, _: ConnId) {
        MqttClient::handle_connected(self, now);
    }
    fn handle_input(&mut self, now: Instant, _: ConnId, bytes: &[u8]) {
        MqttClient::handle_input(self, now, bytes);
    }
    fn handle_closed(&mut self, now: Instant, _: ConnId) {
        MqttClient::handle_closed(self, now);
    }
    fn handle_timeout(&mut self, now: Instant) {
        MqttClient::handle_timeout(self, now);
    }
    fn poll_transmit(&mut self) -> Option<(ConnId, Vec<u8>)> {
        MqttClient::poll_transmit(self).map(|b| (MQTT_CONN, b))
    }
    fn poll_stream_event(&mut self) -> Option<StreamEvent<MqttEvent>> {
        Some(match self.poll_event()? {
            MqttEvent::Open(broker) => StreamEvent::Open {
                conn: MQTT_CONN,
                broker,
            },
            MqttEvent::Close => StreamEvent::Close(MQTT_CONN),
            other => StreamEvent::App(other),
        })
    }
    fn poll_timeout(&self) -> Option<Timeout> {
        MqttClient::poll_timeout(self)
    }
}

impl StreamMachine for Signaler {
    type Event = SignalEvent;
    fn handle_connected(&mut self, now: Instant, conn: ConnId) {
        Signaler::handle_connected(self, now, conn);
    }
    fn handle_input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        Signaler::handle_input(self, now, conn, bytes);
    }
    fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        Signaler::handle_closed(self, now, conn);
    }
    fn handle_timeout(&mut self, now: Instant) {
        Signaler::handle_timeout(self, now);
    }
    fn poll_transmit(&mut self) -> Option<(ConnId, Vec<u8>)> {
        Signaler::poll_transmit(self)
    }
    fn poll_stream_event(&mut self) -> Option<StreamEvent<SignalEvent>> {
        Some(match self.poll_event()? {
            SignalEvent::Open { conn, broker } => StreamEvent::Open { conn, broker },
            SignalEvent::Close(conn) => StreamEvent::Close(conn),
            other => StreamEvent::App(other),
        })
    }
    fn poll_timeout(&self) -> Option<Timeout> {
        Signaler::poll_timeout(self)
    }
}

/// Resolves `broker` (blocking for a name: once per connection attempt) and connects.
async fn connect_broker<R: Runtime>(rt: R, broker: Broker) -> io::Result<R::TcpStream> {
    let addr: SocketAddr = match &broker {
        Broker::Ip(a) => *a,
        Broker::Name { host, port } => (host.as_str(), *port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| {
                io::Error::other(format!("MQTT broker {broker}: name has no address"))
            })?,
    };
    connect_tcp(&rt, any_local_for(addr), addr, false).await
}

/// A connection attempt in progress: its id, the attempt, and where its stream lands.
type Connecting<S> = (
    ConnId,
    Pin<Box<dyn Future<Output = io::Result<S>> + Send>>,
    Option<S>,
);

enum Wake<C> {
    Command(Option<C>),
    Connected(usize, io::Result<()>),
    Data(ConnId, usize),
    Closed(ConnId),
    Timer,
}

/// Runs `machine` on `rt` until `commands` closes (every sender dropped) or the owner
/// stops reading `events`. Each command is applied with `on_command`.
pub async fn drive_streams<R, M, C>(
    rt: &R,
    machine: &mut M,
    commands: async_channel::Receiver<C>,
    mut on_command: impl FnMut(&mut M, Instant, C),
    events: async_channel::Sender<M::Event>,
) where
    R: Runtime,
    M: StreamMachine,
{
    let mut streams: HashMap<ConnId, R::TcpStream> = HashMap::new();
    let mut connecting: Vec<Connecting<R::TcpStream>> = Vec::new();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        // Drain the machine: writes, connection requests, events.
        loop {
            let mut progressed = false;
            while let Some((conn, bytes)) = machine.poll_transmit() {
                progressed = true;
                let Some(s) = streams.get_mut(&conn) else {
                    continue;
                };
                let written = until(rt, rt.now() + WRITE_TIMEOUT, s.write_all(&bytes)).await;
                if !matches!(written, Some(Ok(()))) {
                    streams.remove(&conn);
                    machine.handle_closed(rt.now(), conn);
                }
            }
            while let Some(e) = machine.poll_stream_event() {
                progressed = true;
                match e {
                    StreamEvent::Open { conn, broker } => {
                        streams.remove(&conn);
                        connecting.retain(|(c, ..)| *c != conn);
                        connecting.push((conn, Box::pin(connect_broker(rt.clone(), broker)), None));
                    }
                    StreamEvent::Close(conn) => {
                        streams.remove(&conn);
                        connecting.retain(|(c, ..)| *c != conn);
                    }
                    StreamEvent::App(ev) => {
                        if events.send(ev).await.is_err() {
                            return;
                        }
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        let deadline = machine.poll_timeout().map(|t| t.at);
        let mut sleep = deadline.map(|d| Box::pin(rt.sleep_until(d)));
        let mut recv = std::pin::pin!(commands.recv());
        let wake = poll_fn(|cx| {
            if let Poll::Ready(c) = recv.as_mut().poll(cx) {
                return Poll::Ready(Wake::Command(c.ok()));
            }
            for (i, (_, fut, slot)) in connecting.iter_mut().enumerate() {
                if let Poll::Ready(r) = fut.as_mut().poll(cx) {
                    return Poll::Ready(Wake::Connected(
                        i,
                        r.map(|s| {
                            *slot = Some(s);
                        }),
                    ));
                }
            }
            for (conn, s) in streams.iter_mut() {
                match s.poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        return Poll::Ready(Wake::Closed(*conn));
                    }
                    Poll::Ready(Ok(n)) => return Poll::Ready(Wake::Data(*conn, n)),
                    Poll::Pending => {}
                }
            }
            if let Some(s) = sleep.as_mut()
                && s.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Wake::Timer);
            }
            Poll::Pending
        })
        .await;
        let now = rt.now();
        match wake {
            Wake::Command(None) => return,
            Wake::Command(Some(c)) => on_command(machine, now, c),
            Wake::Connected(i, result) => {
                let (conn, _, slot) = connecting.swap_remove(i);
                match (result, slot) {
                    (Ok(()), Some(stream)) => {
                        streams.insert(conn, stream);
                        machine.handle_connected(now, conn);
                    }
                    _ => machine.handle_closed(now, conn),
                }
            }
            Wake::Data(conn, n) => machine.handle_input(now, conn, &buf[..n]),
            Wake::Closed(conn) => {
                streams.remove(&conn);
                machine.handle_closed(now, conn);
            }
            Wake::Timer => {}
        }
        if deadline.is_some_and(|d| now >= d) {
            machine.handle_timeout(now);
        }
    }
}

/// Milliseconds since the Unix epoch, for signaling expiries.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A request to a running [`MqttClient`].
#[derive(Debug)]
enum MqttCommand {
    Publish {
        topic: String,
        payload: Vec<u8>,
        qos: QoS,
        reply: async_channel::Sender<Result<Option<u16>, PublishError>>,
    },
    Subscribe(String),
}

/// A running MQTT client: publish, subscribe, and read its events. Dropping the handle
/// stops it.
#[derive(Debug)]
pub struct MqttHandle {
    commands: async_channel::Sender<MqttCommand>,
    events: async_channel::Receiver<MqttEvent>,
    _task: Task<()>,
}

/// Runs an MQTT client on `rt` in the background.
pub fn spawn_mqtt<R: Runtime>(rt: &R, config: ClientConfig, rng: Rng) -> MqttHandle {
    let (ctx, crx) = async_channel::bounded(64);
    let (etx, erx) = async_channel::bounded(EVENT_QUEUE);
    let r = rt.clone();
    let task = spawn(rt, async move {
        let mut client = MqttClient::new(config, rng, r.now());
        drive_streams(
            &r,
            &mut client,
            crx,
            |c, now, cmd| match cmd {
                MqttCommand::Publish {
                    topic,
                    payload,
                    qos,
                    reply,
                } => {
                    let _ = reply.try_send(c.publish(now, &topic, &payload, qos));
                }
                MqttCommand::Subscribe(topic) => c.subscribe(now, topic),
            },
            etx,
        )
        .await;
    });
    MqttHandle {
        commands: ctx,
        events: erx,
        _task: task,
    }
}

/// The driver stopped: the handle outlived it.
fn stopped<T>(_: T) -> PublishError {
    PublishError::NotConnected
}

impl MqttHandle {
    /// Publishes; for QoS 1 returns the packet id a later `Delivered` names.
    pub async fn publish(
        &self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
    ) -> Result<Option<u16>, PublishError> {
        let (tx, rx) = async_channel::bounded(1);
        self.commands
            .send(MqttCommand::Publish {
                topic: topic.into(),
                payload: payload.into(),
                qos,
                reply: tx,
            })
            .await
            .map_err(stopped)?;
        rx.recv().await.map_err(stopped)?
    }

    /// Subscribes now and after every reconnect.
    pub async fn subscribe(&self, topic: &str) {
        let _ = self
            .commands
            .send(MqttCommand::Subscribe(topic.into()))
            .await;
    }

    /// The next event; `None` once the client stopped.
    pub async fn next_event(&self) -> Option<MqttEvent> {
        self.events.recv().await.ok()
    }
}

/// A request to a running [`Signaler`].
#[derive(Debug)]
struct SendCommand {
    peer: NodeAddr,
    kind: u8,
    body: Vec<u8>,
    reply: async_channel::Sender<Result<MessageId, SendError>>,
}

/// Running signaling: send to peers, read what arrives. Dropping the handle stops it.
#[derive(Debug)]
pub struct SignalingHandle {
    commands: async_channel::Sender<SendCommand>,
    events: async_channel::Receiver<SignalEvent>,
    _task: Task<()>,
}

/// Why a message could not be handed to the signaler.
#[derive(Debug, thiserror::Error)]
pub enum SignalingError {
    /// The signaler refused it.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The signaler is no longer running.
    #[error("signaling stopped")]
    Stopped,
}

/// Runs signaling for `identity` on `rt` in the background.
pub fn spawn_signaler<R: Runtime>(
    rt: &R,
    identity: Identity,
    config: SignalerConfig,
    rng: Rng,
) -> SignalingHandle {
    let (ctx, crx) = async_channel::bounded(64);
    let (etx, erx) = async_channel::bounded(EVENT_QUEUE);
    let r = rt.clone();
    let task = spawn(rt, async move {
        let mut s = Signaler::new(identity, config, rng, r.now(), unix_ms());
        drive_streams(
            &r,
            &mut s,
            crx,
            |s, now, cmd: SendCommand| {
                let _ = cmd
                    .reply
                    .try_send(s.send(now, &cmd.peer, cmd.kind, &cmd.body));
            },
            etx,
        )
        .await;
    });
    SignalingHandle {
        commands: ctx,
        events: erx,
        _task: task,
    }
}

impl SignalingHandle {
    /// Seals `body` to `peer` and sends it through up to two of its brokers.
    pub async fn send(
        &self,
        peer: &NodeAddr,
        kind: u8,
        body: &[u8],
    ) -> Result<MessageId, SignalingError> {
        let (tx, rx) = async_channel::bounded(1);
        let cmd = SendCommand {
            peer: peer.clone(),
            kind,
            body: body.into(),
            reply: tx,
        };
        self.commands
            .send(cmd)
            .await
            .map_err(|_| SignalingError::Stopped)?;
        Ok(rx.recv().await.map_err(|_| SignalingError::Stopped)??)
    }

    /// The next event; `None` once signaling stopped.
    pub async fn next_event(&self) -> Option<SignalEvent> {
        self.events.recv().await.ok()
    }
}
