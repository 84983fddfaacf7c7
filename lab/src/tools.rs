//! Running the real reference tools in a namespace and reading their verdicts.

use std::time::Duration;

use crate::error::Result;
use crate::netns::Netns;

/// What coturn's `turnutils_natdiscovery -m -f SERVER` concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatDiscovery {
    /// Its mapping line, e.g. "NAT with Endpoint Independent Mapping".
    pub mapping: Option<String>,
    /// Its filtering line, e.g. "NAT with Address and Port Dependent Filtering".
    pub filtering: Option<String>,
    /// Everything it printed.
    pub text: String,
}

impl NatDiscovery {
    /// The RFC 4787 mapping in p2pd's spelling (`endpoint_independent`, …), if reported.
    pub fn mapping_name(&self) -> Option<&'static str> {
        self.mapping.as_deref().and_then(behaviour_name)
    }

    /// The RFC 4787 filtering in p2pd's spelling, if reported.
    pub fn filtering_name(&self) -> Option<&'static str> {
        self.filtering.as_deref().and_then(behaviour_name)
    }
}

fn behaviour_name(line: &str) -> Option<&'static str> {
    if line.contains("Endpoint Independent") {
        Some("endpoint_independent")
    } else if line.contains("Address and Port Dependent") {
        Some("address_and_port_dependent")
    } else if line.contains("Address Dependent") {
        Some("address_dependent")
    } else {
        None
    }
}

/// Runs `turnutils_natdiscovery -m -f server` in `ns` (at most 60 s) and parses its
/// "NAT with … Mapping/Filtering" lines.
pub fn natdiscovery(ns: &Netns, server: &str) -> Result<NatDiscovery> {
    let out = ns.run(
        &["turnutils_natdiscovery", "-m", "-f", server],
        Duration::from_secs(60),
    )?;
    let text = out.combined();
    let find = |what: &str| {
        text.lines()
            .find(|l| l.contains(what) && l.contains("NAT with"))
            .map(|l| l.trim().trim_end_matches('!').to_string())
    };
    Ok(NatDiscovery {
        mapping: find("Mapping"),
        filtering: find("Filtering"),
        text,
    })
}
