//! What `p2pd connect TARGET` and `/p2p/open/{con}/{target}` accept: a node address
//! (text starting `p2pd1:`) or a name, resolved on name servers (see
//! `p2pd_core::names`). The prefix decides: text with it must be a valid address, text
//! without it a valid name — a mistyped address is never looked up as a name.

use std::net::SocketAddr;

use p2pd_core::addr::{AddrError, NodeAddr, PREFIX};
use p2pd_core::names::{Name, NameError};
use p2pd_tokio::names::ResolveError;

/// A parsed target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A node address (boxed: it is ten times a name's size).
    Addr(Box<NodeAddr>),
    /// A name to resolve.
    Name(Name),
}

/// Why a target could not be turned into a node address.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// `p2pd1:…` text that is not a valid address.
    #[error("bad node address: {0}")]
    BadAddr(#[from] AddrError),
    /// Neither an address nor a valid name.
    #[error("'{shown}' is neither a node address ({PREFIX}…) nor a valid name: {why}")]
    BadName {
        /// The text, shortened for display.
        shown: String,
        /// What is wrong with it as a name.
        why: NameError,
    },
    /// A name, but no name server to ask.
    #[error(
        "'{0}' is a name, and no name server is configured to resolve it: list `names = [\"IP:PORT\"]` in the config file (p2pd connect also takes --name-server IP:PORT)"
    )]
    NoServers(Name),
    /// The name servers did not give an address.
    #[error("cannot resolve the name '{name}': {source}")]
    Resolve {
        /// The name.
        name: Name,
        /// Why.
        source: ResolveError,
    },
}

impl TargetError {
    /// Whether the text itself is at fault (rather than the name servers).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, TargetError::BadAddr(_) | TargetError::BadName { .. })
    }

    /// Whether the servers answered that no such name exists.
    pub fn is_unknown_name(&self) -> bool {
        matches!(
            self,
            TargetError::Resolve {
                source: ResolveError::NotFound { .. },
                ..
            }
        )
    }
}

/// Parses `text` as a node address (with the `p2pd1:` prefix, any case) or a name.
pub fn parse(text: &str) -> Result<Target, TargetError> {
    let has_prefix = text
        .get(..PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX));
    if has_prefix {
        return Ok(Target::Addr(Box::new(NodeAddr::parse(text)?)));
    }
    Name::parse(text).map(Target::Name).map_err(|why| {
        let mut shown: String = text.chars().take(40).collect();
        if shown.len() < text.len() {
            shown.push('…');
        }
        TargetError::BadName {
            shown: shown.escape_debug().to_string(),
            why,
        }
    })
}

/// The node address `text` stands for: parsed, or resolved on `servers` (all asked at
/// once, the first verified record wins; a few seconds at most when none answers).
/// Returns the name too when there was one (for messages).
pub async fn resolve(
    text: &str,
    servers: &[SocketAddr],
) -> Result<(NodeAddr, Option<Name>), TargetError> {
    match parse(text)? {
        Target::Addr(a) => Ok((*a, None)),
        Target::Name(name) => {
            if servers.is_empty() {
                return Err(TargetError::NoServers(name));
            }
            match crate::name_cmd::resolve_name(&name, servers).await {
                Ok(a) => Ok((a, Some(name))),
                Err(source) => Err(TargetError::Resolve { name, source }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_decides_between_address_and_name() {
        assert!(matches!(parse("alice"), Ok(Target::Name(n)) if n.as_str() == "alice"));
        assert!(matches!(parse("Alice-2"), Ok(Target::Name(n)) if n.as_str() == "alice-2"));
        // A mistyped address is an address error, never a name lookup.
        assert!(matches!(parse("p2pd1:xyz"), Err(TargetError::BadAddr(_))));
        assert!(matches!(parse("P2PD1:xyz"), Err(TargetError::BadAddr(_))));
        let e = parse("al").unwrap_err();
        assert!(e.is_bad_input());
        assert!(e.to_string().contains("neither a node address"), "{e}");
        let e = parse("bob@home").unwrap_err();
        assert!(matches!(e, TargetError::BadName { .. }));
        let long = "x".repeat(500);
        let e = parse(&long).unwrap_err().to_string();
        assert!(e.len() < 400, "{e}");
    }

    #[tokio::test]
    async fn a_name_without_servers_says_how_to_configure_them() {
        let e = resolve("alice", &[]).await.unwrap_err();
        assert!(matches!(e, TargetError::NoServers(_)));
        assert!(e.to_string().contains("names = ["), "{e}");
    }
}
