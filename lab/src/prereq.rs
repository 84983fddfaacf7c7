//! Deciding whether lab tests can run here, and whether a missing piece is fatal.
//!
//! Developers without root or without the Debian packages get a clear "skipping"
//! line; CI sets `P2PD_LAB_REQUIRED=1`, which turns the same situation into a failure
//! so a broken runner cannot silently pass.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process;

/// Environment variable that turns "skip" into "fail".
pub const REQUIRED_ENV: &str = "P2PD_LAB_REQUIRED";

/// Programs every lab needs (topology, rules, readiness checks).
pub const BASE_TOOLS: &[&str] = &["ip", "nft", "conntrack", "ss", "sysctl"];

/// Programs for the servers and the link impairments.
pub const SERVER_TOOLS: &[&str] = &["turnserver", "mosquitto", "iptables"];

/// Everything the lab's own self-test uses.
pub const ALL_TOOLS: &[&str] = &[
    "ip",
    "nft",
    "conntrack",
    "ss",
    "sysctl",
    "iptables",
    "ping",
    "turnserver",
    "turnutils_natdiscovery",
    "turnutils_uclient",
    "mosquitto",
    "mosquitto_pub",
    "mosquitto_sub",
    "miniupnpd",
    "upnpc",
    "natpmpc",
];

/// Finds `tool` on `PATH` or in the sbin directories root normally has.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Why lab tests that need `tools` cannot run here, or `None` when they can.
pub fn skip_reason_for(tools: &[&str]) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some(
            "the lab needs root (network namespaces, nftables); run the tests as root".into(),
        );
    }
    let missing: Vec<&str> = BASE_TOOLS
        .iter()
        .chain(tools)
        .copied()
        .filter(|t| find_tool(t).is_none())
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "missing programs: {}; install the packages in lab/apt-packages.txt \
             (apt-get install -y $(cat lab/apt-packages.txt))",
            missing.join(", ")
        ));
    }
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "list"]);
    match process::run(cmd, Duration::from_secs(5), "list network namespaces") {
        Ok(out) if out.success() => None,
        Ok(out) => Some(format!("`ip netns list` failed: {}", out.stderr.trim())),
        Err(e) => Some(format!("`ip netns list` failed: {e}")),
    }
}

/// Why the full lab (servers included) cannot run here, or `None`.
pub fn skip_reason() -> Option<String> {
    skip_reason_for(SERVER_TOOLS)
}

/// True when `P2PD_LAB_REQUIRED` asks for missing prerequisites to fail tests.
pub fn required() -> bool {
    std::env::var(REQUIRED_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Returns the skip reason for `tools`, or panics with it when the lab is required.
///
/// This is what [`require!`](crate::require) calls; use it directly when a test
/// needs a custom message.
pub fn skip_or_fail(tools: &[&str]) -> Option<String> {
    let reason = skip_reason_for(tools)?;
    if required() {
        panic!("{REQUIRED_ENV} is set but the lab cannot run: {reason}");
    }
    Some(reason)
}

/// Returns early from a test (printing why) when the lab cannot run here.
///
/// `require!()` checks the base tools plus the servers; `require!(&["upnpc"])`
/// checks the base tools plus the given programs. With `P2PD_LAB_REQUIRED=1` a
/// missing prerequisite panics instead, so CI fails loudly.
#[macro_export]
macro_rules! require {
    () => {
        $crate::require!($crate::prereq::SERVER_TOOLS)
    };
    ($tools:expr) => {
        if let Some(reason) = $crate::prereq::skip_or_fail($tools) {
            eprintln!("skipping: {reason}");
            return;
        }
    };
}
