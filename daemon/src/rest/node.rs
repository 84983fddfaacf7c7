//! What the REST layer needs from the p2p node, as a small trait the node implements, and
//! the slot that holds the node while it starts, runs or after it failed.
//!
//! The REST layer never sees the negotiator: it asks [`Node::open`] for a connection to an
//! address with some strategies and gets back a byte stream ([`PipeIo`]) plus what is known
//! about it ([`ConnInfo`]). Incoming connections come from [`Node::accept`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use p2pd_core::addr::NodeAddr;
use p2pd_core::negotiate::Strategy;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::errors::{ApiError, ErrorKind};

/// A boxed, sendable future (what the trait's async methods return).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A connection's byte stream: reliable and ordered, both ways, half-closable
/// (`poll_shutdown` sends end-of-stream to the peer). A `tokio::net::TcpStream` is one; so
/// is whatever the node makes of a punched or relayed path.
pub trait PipeIo: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> PipeIo for T {}

/// What is known about a connection, shown by `/p2p/con/{name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// The strategy that made it.
    pub strategy: Strategy,
    /// The local socket address it uses.
    pub local: SocketAddr,
    /// The remote socket address (for a relay, the relay's address).
    pub remote: SocketAddr,
    /// The local interface it goes out of, when known.
    pub interface: Option<String>,
    /// The peer's node id (hex), as authenticated by the node.
    pub peer: String,
}

/// A new connection: its stream and what is known about it.
pub struct Pipe {
    /// The byte stream.
    pub io: Box<dyn PipeIo>,
    /// Its description.
    pub info: ConnInfo,
}

impl std::fmt::Debug for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipe").field("info", &self.info).finish()
    }
}

/// Why [`Node::open`] failed. The message is shown to the REST client as is, so it should
/// say what was tried and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OpenError(pub String);

/// The node as the REST layer uses it. Implemented by the p2p node (issue 7).
pub trait Node: Send + Sync + 'static {
    /// The node's own address, as peers should be given it.
    fn addr(&self) -> NodeAddr;

    /// Connects to `target` trying `strategies` (never empty, in order of preference)
    /// with fallback; returns the first that works. Must give up by itself in bounded
    /// time; the REST layer also stops waiting after its own limit and drops the future,
    /// so dropping it must release everything it holds.
    fn open(
        &self,
        target: NodeAddr,
        strategies: Vec<Strategy>,
    ) -> BoxFuture<'_, Result<Pipe, OpenError>>;

    /// The next connection a peer opened to this node; `None` once the node has stopped
    /// (the daemon then stops asking).
    fn accept(&self) -> BoxFuture<'_, Option<Pipe>>;
}

/// The node's state as the REST layer sees it.
#[derive(Clone)]
pub enum NodeState {
    /// Still starting (interfaces, NAT, brokers).
    Starting,
    /// Running.
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "set by the node once it is plugged in (issue 7)")
    )]
    Running(Arc<dyn Node>),
    /// Could not start; why.
    Failed(String),
}

/// Where the daemon keeps the node: cheap to clone, set once the node is up (or failed).
#[derive(Clone)]
pub struct NodeSlot(Arc<watch::Sender<NodeState>>);

impl NodeSlot {
    /// A slot whose node is starting.
    pub fn starting() -> Self {
        NodeSlot(Arc::new(watch::channel(NodeState::Starting).0))
    }

    /// Changes the state.
    pub fn set(&self, state: NodeState) {
        self.0.send_replace(state);
    }

    /// The running node, or the REST error that says why there is none.
    pub fn get(&self) -> Result<Arc<dyn Node>, ApiError> {
        let state = self.0.borrow().clone();
        match state {
            NodeState::Running(n) => Ok(n),
            NodeState::Starting => Err(ApiError::new(
                ErrorKind::NodeUnavailable,
                "the node is still starting (discovering interfaces and NATs): retry in a few seconds",
            )),
            NodeState::Failed(why) => Err(ApiError::new(
                ErrorKind::NodeUnavailable,
                format!("the node is not running: {why}"),
            )),
        }
    }

    /// Waits until the node runs; `None` if it failed to start.
    pub async fn running(&self) -> Option<Arc<dyn Node>> {
        let mut rx = self.0.subscribe();
        let state = rx
            .wait_for(|s| !matches!(s, NodeState::Starting))
            .await
            .ok()?
            .clone();
        match state {
            NodeState::Running(n) => Some(n),
            _ => None,
        }
    }

    /// The state's name for `/version`: `starting`, `running` or `failed`.
    pub fn state_name(&self) -> &'static str {
        match &*self.0.borrow() {
            NodeState::Starting => "starting",
            NodeState::Running(_) => "running",
            NodeState::Failed(_) => "failed",
        }
    }
}
