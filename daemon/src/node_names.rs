//! A running node's names: `p2pd listen --name NAME` keeps them registered (a
//! `NameKeeper` fed by the node's address changes), `p2pd name register NAME` without
//! `--addr` starts the node to learn its own address, and `p2pd connect NAME` reports
//! what a name resolved to.

use std::net::SocketAddr;
use std::path::Path;

use p2pd_core::addr::NodeAddr;
use p2pd_core::names::{Name, RegistrarConfig, RegistrarEvent};
use p2pd_tokio::Tokio;
use p2pd_tokio::names::NameKeeper;
use p2pd_tokio::node::Node;
use serde::Serialize;

use crate::node_cmd::{NodeArgs, node_config, say};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Parses a name flag (3-63 characters of a-z, 0-9 and '-').
pub fn parse_name(s: &str) -> std::result::Result<Name, String> {
    Name::parse(s).map_err(|e| e.to_string())
}

/// The task keeping a node's names registered; dropping it stops the task.
#[derive(Debug)]
pub struct Keeper(tokio::task::JoinHandle<()>);

impl Drop for Keeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Serialize)]
struct Registered<'a> {
    event: &'static str,
    name: &'a str,
    accepted: &'a [SocketAddr],
    servers: usize,
}

#[derive(Serialize)]
struct NotRegistered<'a> {
    event: &'static str,
    name: &'a str,
    detail: String,
    retry_in_s: u64,
}

/// Reports one registration round on stderr.
fn report(e: &RegistrarEvent, servers: usize, json: bool) {
    let line = match e {
        RegistrarEvent::Registered { name, accepted, .. } => {
            if json {
                serde_json::to_string(&Registered {
                    event: "name_registered",
                    name: name.as_str(),
                    accepted,
                    servers,
                })
                .ok()
            } else {
                let list: Vec<String> = accepted.iter().map(ToString::to_string).collect();
                Some(format!(
                    "name {name}: registered on {} of {servers} name servers ({})",
                    accepted.len(),
                    list.join(", ")
                ))
            }
        }
        RegistrarEvent::Failed {
            name,
            result,
            retry_in,
        } => {
            let detail: Vec<String> = result
                .reports
                .iter()
                .map(|r| format!("{}: {}", r.server, crate::name_cmd::describe(&r.outcome).1))
                .collect();
            let detail = detail.join("; ");
            if json {
                serde_json::to_string(&NotRegistered {
                    event: "name_failed",
                    name: name.as_str(),
                    detail,
                    retry_in_s: retry_in.as_secs(),
                })
                .ok()
            } else {
                Some(format!(
                    "name {name}: no name server accepted it ({detail}); trying again in {} s",
                    retry_in.as_secs()
                ))
            }
        }
    };
    if let Some(l) = line {
        say(&l);
    }
}

/// Starts keeping `names` registered on `servers` for `node` (whose identity is in
/// `home`): now, again before they expire, and at once whenever the node's address
/// changes. Each round is reported on stderr.
pub fn keep(
    node: &Node<Tokio>,
    home: &Path,
    names: Vec<Name>,
    servers: &[SocketAddr],
    json: bool,
) -> Result<Keeper> {
    let mut rng = p2pd_tokio::rng::os_rng()?;
    let identity = p2pd_runtime::home::load_or_create_identity(home, &mut rng)?;
    if identity.public() != *node.key() {
        return Err(
            "the node's identity changed under it (another process rewrote the home's key)".into(),
        );
    }
    // Subscribe first: a change between reading the address and subscribing is not lost.
    let updates = node.addr_changes();
    let keeper = NameKeeper::new(
        &Tokio,
        identity,
        node.current_addr(),
        servers,
        names,
        RegistrarConfig::default(),
        rng.fork(),
    )?;
    let count = servers.len();
    let task = tokio::spawn(async move {
        if let Err(e) = keeper
            .run(&Tokio, updates, move |e| report(&e, count, json))
            .await
        {
            say(&format!("p2pd: names are no longer kept registered: {e}"));
        }
    });
    Ok(Keeper(task))
}

#[derive(Serialize)]
struct Resolved<'a> {
    event: &'static str,
    name: &'a str,
    addr: String,
    node_id: String,
    resolve_ms: u128,
}

/// Says on stderr what a name resolved to, and how long the lookup took.
pub fn announce_resolved(
    name: &Name,
    addr: &NodeAddr,
    took: std::time::Duration,
    json: bool,
) -> Result<()> {
    if json {
        say(&serde_json::to_string(&Resolved {
            event: "resolved",
            name: name.as_str(),
            addr: addr.to_string(),
            node_id: addr.node_id().to_string(),
            resolve_ms: took.as_millis(),
        })?);
    } else {
        say(&format!("{name} is node {}", addr.node_id()));
    }
    Ok(())
}

/// This node's own address, learned by starting it with `args` (as `p2pd listen` would
/// with the same flags) and stopping it again.
pub async fn own_address(args: &NodeArgs) -> Result<NodeAddr> {
    let mut config = node_config(args)?;
    config.accept = false;
    let node = Node::start(&Tokio, config).await?;
    let addr = node.current_addr();
    drop(node);
    Ok(addr)
}
