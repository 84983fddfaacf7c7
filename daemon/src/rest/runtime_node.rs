//! The real p2p node ([`p2pd_tokio::node::Node`]) behind the REST layer's [`Node`] trait,
//! and how the daemon starts it.
//!
//! The daemon starts the node from the same flags and config keys as `p2pd listen`
//! ([`NodeFlags`]): `--stun`, `--mqtt`, `--turn`, `--home`, `--port`, `--interface`. It
//! accepts connections (they appear in `/p2p/cons` and `/p2p/accept`) and gives an
//! outgoing attempt less than the REST layer's own limit (`--connect-timeout-s`), so the
//! client gets the node's explanation (what each strategy did) rather than a bare
//! timeout.

use std::time::Duration;

use p2pd_core::addr::NodeAddr;
use p2pd_core::negotiate::Strategy;
use p2pd_tokio::node::{Connection, NodeError};
use p2pd_tokio::{Tokio, TokioConnection};

use super::node::{BoxFuture, ConnInfo, Node, NodeSlot, NodeState, OpenError, Pipe};
use crate::node_cmd::{NodeFlags, node_config};

/// How much sooner than `/p2p/open`'s limit the node gives up by itself, at least.
pub const OPEN_MARGIN: Duration = Duration::from_secs(5);

/// The runtime's node, as the REST layer uses it.
pub struct RuntimeNode(p2pd_tokio::node::Node<Tokio>);

impl RuntimeNode {
    /// What the REST layer shows about `conn`, and its stream.
    fn pipe(&self, conn: Connection<Tokio>) -> Pipe {
        let i = conn.info().clone();
        // A connection's local address is on the route it uses (TCP strategies share
        // the listen port; a UDP punch uses the route's socket). A relayed connection's
        // local address is the relay's: no interface is known then.
        let interface = self
            .0
            .routes()
            .iter()
            .find(|r| r.local.ip() == i.local.ip())
            .map(|r| r.interface.clone());
        Pipe {
            io: Box::new(TokioConnection::new(conn)),
            info: ConnInfo {
                strategy: i.strategy,
                local: i.local,
                remote: i.remote,
                interface,
                peer: i.peer.node_id().to_string(),
            },
        }
    }
}

impl Node for RuntimeNode {
    fn addr(&self) -> NodeAddr {
        self.0.addr().clone()
    }

    fn open(
        &self,
        target: NodeAddr,
        strategies: Vec<Strategy>,
    ) -> BoxFuture<'_, Result<Pipe, OpenError>> {
        Box::pin(async move {
            let conn = self
                .0
                .connect(&target, &strategies)
                .await
                .map_err(|e| OpenError(e.to_string()))?;
            Ok(self.pipe(conn))
        })
    }

    fn accept(&self) -> BoxFuture<'_, Option<Pipe>> {
        Box::pin(async move {
            match self.0.accept().await {
                Ok(conn) => Some(self.pipe(conn)),
                Err(NodeError::Stopped) => None,
                Err(e) => {
                    tracing::warn!("the node stopped accepting: {e}");
                    None
                }
            }
        })
    }
}

/// Starts the node in the background; records in `slot` that it runs, or why not.
/// `connect_timeout` bounds each outgoing attempt.
pub fn start(flags: NodeFlags, connect_timeout: Duration, slot: NodeSlot) {
    tokio::spawn(async move {
        // Reading the config file and resolving server names block: off the runtime.
        let config =
            tokio::task::spawn_blocking(move || node_config(&flags).map_err(|e| e.to_string()))
                .await
                .unwrap_or_else(|e| Err(format!("reading the node's configuration failed: {e}")));
        let mut config = match config {
            Ok(c) => c,
            Err(why) => {
                tracing::warn!("no p2p node: {why}");
                slot.set(NodeState::Failed(why));
                return;
            }
        };
        config.accept = true;
        config.connect_timeout = connect_timeout;
        match p2pd_tokio::node::Node::start(&Tokio, config).await {
            Ok(node) => {
                tracing::info!(addr = %node.addr(), "p2p node running");
                slot.set(NodeState::Running(std::sync::Arc::new(RuntimeNode(node))));
            }
            Err(e) => {
                tracing::warn!("the p2p node could not start: {e}");
                slot.set(NodeState::Failed(e.to_string()));
            }
        }
    });
}
