//! UPnP IGD (Internet Gateway Device) port mapping and IPv6 pinholes, sans-IO.
//!
//! One concept a file: [`ssdp`] (M-SEARCH and search responses), [`http`] (the minimal
//! HTTP/1.1 client side, bounded), [`url`] (gateway URLs and resolution), [`xml`]
//! (bounded XML parsing), [`description`] (device description → control URLs),
//! [`soap`] (the six control actions and faults) and [`client`] (the machine that runs
//! discovery → description → control, renews and deletes).
//!
//! **Crates.** XML is parsed with `roxmltree` (read-only tree, no I/O, no unsafe code in
//! our use, well kept, one dependency: `memchr`), with DTDs refused and size and node
//! limits on top; writing a correct XML tokenizer for namespaces, CDATA, entities and
//! comments is more risk than the few kB a dependency costs, and gateways do send all of
//! those. HTTP is written here: p2pd needs one request per connection and a response
//! parser for three body framings with hard limits, which is smaller than adapting
//! `httparse` (heads only) plus our own body framing, and keeps every size bound in one
//! place. SSDP and SOAP are a few lines of text each on top of those two.
//!
//! Hostile or broken gateways get errors: every buffer is bounded ([`http::MAX_RESPONSE_LEN`],
//! [`xml::MAX_XML_LEN`], [`xml::MAX_XML_NODES`], [`ssdp::MAX_SEARCH_RESPONSE_LEN`]),
//! every exchange has a deadline, and URLs must be `http://` with an IP literal on the
//! host that answered.

pub mod client;
pub mod description;
pub mod http;
pub mod soap;
pub mod ssdp;
pub mod url;
pub mod xml;
