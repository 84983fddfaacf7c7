//! The target of `/p2p/open/{con}/{target}`: `self`, a node address, or a name resolved
//! on the daemon's name servers (the config file's `names` list), with the REST error
//! for each way it can fail.

use std::net::SocketAddr;

use p2pd_core::addr::NodeAddr;

use super::errors::{ApiError, ErrorKind};
use crate::target::{TargetError, resolve};

/// The node address `target` stands for; `None` for `self` (the node's own).
pub async fn open_target(
    target: &str,
    name_servers: &[SocketAddr],
) -> Result<Option<NodeAddr>, ApiError> {
    if target == "self" {
        return Ok(None);
    }
    match resolve(target, name_servers).await {
        Ok((addr, name)) => {
            if let Some(name) = name {
                tracing::info!(%name, node = %addr.node_id(), "name resolved");
            }
            Ok(Some(addr))
        }
        Err(e) => Err(api_error(&e)),
    }
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
