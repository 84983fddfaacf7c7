//! A p2pd node on any [`Runtime`]: identity, listen sockets, routes and NAT, the node
//! address, MQTT signaling, and core's [`p2pd_core::negotiate`] negotiators — so that
//! two nodes behind whatever NATs get a [`Connection`] with one call.
//!
//! [`Node::start`] loads (or creates) the identity in the home directory, finds the
//! routes of each usable interface with the NAT in front of them (the existing route and
//! classifier drivers), binds a TCP listener (with address and port reuse, so punches
//! share its port) and a UDP socket on one port per route, starts signaling on the
//! configured brokers and waits until it listens on one, and builds the [`NodeAddr`]
//! that describes all of it. [`Node::connect`] runs an initiating negotiation;
//! [`Node::accept`] yields the connections peers made (the node answers their offers
//! when [`NodeConfig::accept`] is set). One background task owns every socket and
//! negotiator (see `engine`); a connection over UDP (punch, relay) has a task of its own.

mod config;
mod connection;
mod engine;
mod pipe_task;
mod start;
mod watch;

use std::time::Duration;

use p2pd_core::addr::NodeAddr;
use p2pd_core::identity::PublicKey;
use p2pd_core::negotiate::Strategy;
use p2pd_core::signal::{SignalEvent, SignalerConfig};

pub use config::{ConnectError, NodeConfig, NodeError, default_strategies};
pub use connection::{Connection, ConnectionInfo};
pub use p2pd_core::negotiate::TurnSpec;

use crate::home::load_or_create_identity;
use crate::interfaces;
use crate::mqtt::spawn_signaler;
use crate::rng::os_rng;
use crate::runtime::Runtime;
use crate::task::{Task, spawn};
use crate::timer::until;

/// Connections made by peers, waiting for [`Node::accept`], at most.
const ACCEPT_QUEUE: usize = 16;

/// A route of the node, as it was found at start-up (for display).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// The interface.
    pub interface: String,
    /// The local listen address (TCP and UDP).
    pub local: std::net::SocketAddr,
    /// What the node address says about it.
    pub route: p2pd_core::addr::Route,
}

/// A running node. Dropping it stops accepting and connecting; connections already made
/// keep running until they finish.
#[derive(Debug)]
pub struct Node<R: Runtime> {
    rt: R,
    addr: NodeAddr,
    routes: Vec<RouteInfo>,
    connect_timeout: Duration,
    commands: async_channel::Sender<engine::Command<R>>,
    incoming: async_channel::Receiver<Connection<R>>,
    _keepalive: async_channel::Sender<()>,
    _task: Task<()>,
    watch: std::sync::Arc<watch::AddrWatch>,
}

impl<R: Runtime> std::fmt::Debug for engine::Command<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            engine::Command::Connect { peer, .. } => write!(f, "Connect({})", peer.node_id()),
        }
    }
}

impl<R: Runtime> Node<R> {
    /// Starts a node: see the module documentation. Takes as long as route discovery,
    /// NAT classification and the first broker connection (a second or two on a LAN).
    pub async fn start(rt: &R, config: NodeConfig) -> Result<Self, NodeError> {
        if config.mqtt.is_empty() {
            return Err(NodeError::NoBrokers);
        }
        if config.stun.is_empty() {
            return Err(NodeError::NoStun);
        }
        let mut rng = os_rng()?;
        let identity = load_or_create_identity(&config.home, &mut rng)?;
        let chosen = interfaces::select(interfaces::list()?, &config.interfaces)?;
        let (listening, ifaces) =
            start::discover_and_bind(rt, chosen, &config.stun, config.port, &mut rng).await?;
        let signaling = spawn_signaler(
            rt,
            identity.clone(),
            SignalerConfig::new(config.mqtt.clone()),
            rng.fork(),
        );
        // Wait until signaling listens somewhere: an address naming brokers we are not
        // subscribed on yet would lose the first offers.
        let waited = config.signaling_timeout;
        let brokers = until(rt, rt.now() + waited, async {
            loop {
                match signaling.next_event().await {
                    Some(SignalEvent::Listening(b)) if !b.is_empty() => return Some(b),
                    Some(_) => {}
                    None => return None,
                }
            }
        })
        .await
        .flatten()
        .ok_or_else(|| NodeError::Signaling {
            waited,
            brokers: config
                .mqtt
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        let addr = NodeAddr::new(identity.public(), brokers, ifaces)?;
        let routes = listening
            .iter()
            .map(|l| RouteInfo {
                interface: l.interface.clone(),
                local: l.local,
                route: l.route,
            })
            .collect();
        let (ctx, crx) = async_channel::bounded(16);
        let (ktx, krx) = async_channel::bounded(1);
        let (itx, irx) = async_channel::bounded(ACCEPT_QUEUE);
        let watch = std::sync::Arc::new(watch::AddrWatch::new(addr.clone()));
        let setup = engine::EngineSetup {
            rt: rt.clone(),
            identity,
            ours: addr.clone(),
            listening,
            stun: config.stun.clone(),
            turn: config.turn.clone(),
            accept: config.accept,
            signaling,
            commands: crx,
            keepalive: krx,
            keepalive_tx: ktx.downgrade(),
            incoming: itx,
            rng,
            connect_limit: config.connect_timeout,
            watch: watch.clone(),
        };
        let task = spawn(rt, engine::run(setup));
        Ok(Node {
            rt: rt.clone(),
            addr,
            routes,
            connect_timeout: config.connect_timeout,
            commands: ctx,
            incoming: irx,
            _keepalive: ktx,
            _task: task,
            watch,
        })
    }

    /// This node's address as it started, to give to peers. It changes when signaling
    /// moves to other brokers: see [`Node::current_addr`] and [`Node::addr_changes`].
    pub fn addr(&self) -> &NodeAddr {
        &self.addr
    }

    /// This node's address now: the start-up one with the brokers signaling listens on
    /// now (a broker that died and was replaced is no longer listed).
    pub fn current_addr(&self) -> NodeAddr {
        self.watch.current()
    }

    /// Every later change of [`Node::current_addr`] (a receiver that lags gets the newest
    /// address, skipping older ones). Closes when the node stops. What keeps the node's
    /// names registered (`p2pd_runtime::names::NameKeeper::run`) takes this.
    pub fn addr_changes(&self) -> async_channel::Receiver<NodeAddr> {
        self.watch.subscribe()
    }

    /// This node's public key.
    pub fn key(&self) -> &PublicKey {
        self.addr.key()
    }

    /// The routes found at start-up, in the address's order.
    pub fn routes(&self) -> &[RouteInfo] {
        &self.routes
    }

    /// Connects to `peer`, trying `strategies` (in order of preference; the negotiator
    /// skips those that cannot work for the two NATs). Fails after at most
    /// [`NodeConfig::connect_timeout`].
    pub async fn connect(
        &self,
        peer: &NodeAddr,
        strategies: &[Strategy],
    ) -> Result<Connection<R>, ConnectError> {
        if strategies.is_empty() {
            return Err(ConnectError::NoStrategy);
        }
        let (tx, rx) = async_channel::bounded(1);
        self.commands
            .send(engine::Command::Connect {
                peer: peer.clone(),
                strategies: strategies.to_vec(),
                reply: tx,
            })
            .await
            .map_err(|_| ConnectError::Stopped)?;
        // The engine answers by its own deadline; this one is the safety net.
        let limit = self.connect_timeout + Duration::from_secs(5);
        match until(&self.rt, self.rt.now() + limit, rx.recv()).await {
            Some(r) => r.map_err(|_| ConnectError::Stopped)?,
            None => Err(ConnectError::Timeout {
                waited: limit,
                log: Vec::new(),
            }),
        }
    }

    /// The next connection a peer made to this node (none ever comes when
    /// [`NodeConfig::accept`] is off).
    pub async fn accept(&self) -> Result<Connection<R>, NodeError> {
        self.incoming.recv().await.map_err(|_| NodeError::Stopped)
    }
}
