//! The target of `/p2p/open/{con}/{target}`: `self`, a node address, or a name resolved
//! on the daemon's name servers (the config file's `names` list), with the REST error
//! for each way it can fail.

use std::net::SocketAddr;

use p2pd_core::addr::NodeAddr;

use super::errors::{ApiError, ErrorKind};
use crate::target::{Target, TargetError, parse};

/// A checked target, not resolved yet.
#[derive(Debug)]
pub enum OpenTarget {
    /// The node's own address.
    SelfNode,
    /// A node address or a name.
    Peer(Target),
}

/// Checks `target` without touching the network (`bad_addr` when it is neither
/// `self`, a node address nor a valid name).
pub fn check_target(target: &str) -> Result<OpenTarget, ApiError> {
    if target == "self" {
        return Ok(OpenTarget::SelfNode);
    }
    parse(target)
        .map(OpenTarget::Peer)
        .map_err(|e| api_error(&e))
}

/// The node address a checked target stands for (a name is looked up on
/// `name_servers`); `None` for `self`.
pub async fn resolve_target(
    target: OpenTarget,
    name_servers: &[SocketAddr],
) -> Result<Option<NodeAddr>, ApiError> {
    match target {
        OpenTarget::SelfNode => Ok(None),
        OpenTarget::Peer(Target::Addr(a)) => Ok(Some(*a)),
        OpenTarget::Peer(Target::Name(name)) => {
            let text = name.to_string();
            match crate::target::resolve(&text, name_servers).await {
                Ok((addr, _)) => {
                    tracing::info!(%name, node = %addr.node_id(), "name resolved");
                    Ok(Some(addr))
                }
                Err(e) => Err(api_error(&e)),
            }
        }
    }
}

/// [`check_target`] then [`resolve_target`].
#[cfg(test)]
pub async fn open_target(
    target: &str,
    name_servers: &[SocketAddr],
) -> Result<Option<NodeAddr>, ApiError> {
    resolve_target(check_target(target)?, name_servers).await
}

fn api_error(e: &TargetError) -> ApiError {
    let kind = if e.is_bad_input() {
        ErrorKind::BadAddr
    } else if e.is_unknown_name() {
        ErrorKind::UnknownPeerName
    } else {
        ErrorKind::NameLookupFailed
    };
    let msg = match e {
        // The CLI's advice (`--server`) means nothing to a REST client.
        TargetError::Resolve {
            name,
            source: p2pd_tokio::names::ResolveError::NoAnswer { asked },
        } => format!(
            "cannot resolve the name '{name}': no name server answered ({asked}); check the daemon's config `names` list and that `p2pd name-server` runs there"
        ),
        other => other.to_string(),
    };
    ApiError::new(kind, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn self_addresses_and_names() {
        assert_eq!(open_target("self", &[]).await.unwrap(), None);
        let e = open_target("p2pd1:nonsense", &[]).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadAddr);
        let e = open_target("not a name!", &[]).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadAddr);
        assert!(e.msg.contains("neither a node address"), "{}", e.msg);
        let e = open_target("alice", &[]).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::NameLookupFailed);
        assert!(e.msg.contains("names = ["), "{}", e.msg);
    }
}
