//! What a node starts from, and why it may fail to start or to connect.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use p2pd_core::addr::{AddrError, Broker};
use p2pd_core::negotiate::{Strategy, TurnSpec};

use crate::home::HomeError;
use crate::interfaces::{InterfaceError, InterfaceFilter};

/// How to start a [`super::Node`].
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The home directory: the identity key lives there (created on first start).
    pub home: PathBuf,
    /// STUN servers: external addresses, NAT classification (RFC 5780 servers give full
    /// verdicts) and fresh mappings for UDP punching.
    pub stun: Vec<SocketAddr>,
    /// MQTT brokers to receive signaling on (listed in the node address).
    pub mqtt: Vec<Broker>,
    /// TURN servers for the relay strategy.
    pub turn: Vec<TurnSpec>,
    /// The listen port on every interface (TCP and UDP); 0 picks a free one.
    pub port: u16,
    /// Which interfaces to use.
    pub interfaces: InterfaceFilter,
    /// Whether peers may connect to this node (it answers offers); a node that only
    /// connects out leaves it off.
    pub accept: bool,
    /// The longest a [`super::Node::connect`] may take, whatever the negotiator does.
    pub connect_timeout: Duration,
    /// How long start-up waits for signaling to listen on a broker.
    pub signaling_timeout: Duration,
    /// Mapping the listen port on the gateway (on by default: PCP, NAT-PMP, UPnP IGD;
    /// at most 2 s of start-up).
    pub portmap: super::NodePortmap,
}

impl NodeConfig {
    /// A node at `home` with these servers; listens on a free port on every usable
    /// interface, accepts connections, and gives a connection attempt 60 s.
    pub fn new(
        home: PathBuf,
        stun: Vec<SocketAddr>,
        mqtt: Vec<Broker>,
        turn: Vec<TurnSpec>,
    ) -> Self {
        NodeConfig {
            home,
            stun,
            mqtt,
            turn,
            port: 0,
            interfaces: InterfaceFilter::default(),
            accept: true,
            connect_timeout: Duration::from_secs(60),
            signaling_timeout: Duration::from_secs(10),
            portmap: super::NodePortmap::default(),
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// No MQTT broker was configured.
    #[error(
        "no MQTT broker configured: a node needs one for signaling (--mqtt HOST:PORT, or `mqtt = [\"HOST:PORT\"]` in the config file)"
    )]
    NoBrokers,
    /// No STUN server was configured.
    #[error(
        "no STUN server configured: a node needs one to learn its external address (--stun HOST:PORT, or `stun = [...]` in the config file)"
    )]
    NoStun,
    /// The identity key could not be loaded or created.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// No interface can be used.
    #[error(transparent)]
    Interfaces(#[from] InterfaceError),
    /// No interface reached a STUN server.
    #[error("no interface reached a STUN server, so this node has no address: {0}")]
    NoRoute(String),
    /// A listen socket could not be bound.
    #[error("cannot bind the node's listen sockets: {0}")]
    Bind(io::Error),
    /// Signaling did not start listening on any broker in time.
    #[error(
        "no MQTT broker accepted this node within {waited:?} ({brokers}): check that a broker runs there and is reachable"
    )]
    Signaling {
        /// How long it waited.
        waited: Duration,
        /// The brokers tried.
        brokers: String,
    },
    /// The address could not be built.
    #[error("cannot build the node address: {0}")]
    Addr(#[from] AddrError),
    /// OS randomness failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The node stopped.
    #[error("the node stopped")]
    Stopped,
}

/// Why [`super::Node::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No strategy was given.
    #[error(
        "no strategy enabled: give at least one of direct, reverse, tcp_punch, udp_punch, relay"
    )]
    NoStrategy,
    /// That address is our own.
    #[error("that node address is this node's own")]
    Ourselves,
    /// Every strategy failed or was skipped.
    #[error("could not connect to the peer: {reason}{}", log_text(.log))]
    Failed {
        /// The negotiator's summary.
        reason: String,
        /// What each strategy did, in order.
        log: Vec<String>,
    },
    /// The attempt took longer than the node allows.
    #[error("no connection to the peer within {waited:?}: it may be offline, or its brokers unreachable{}", log_text(.log))]
    Timeout {
        /// How long it waited.
        waited: Duration,
        /// What each strategy did, in order.
        log: Vec<String>,
    },
    /// The node stopped.
    #[error("the node stopped")]
    Stopped,
}

fn log_text(log: &[String]) -> String {
    if log.is_empty() {
        String::new()
    } else {
        format!(" ({})", log.join("; "))
    }
}

/// The strategies a node tries when the caller names none.
pub fn default_strategies() -> Vec<Strategy> {
    Strategy::ALL.to_vec()
}
