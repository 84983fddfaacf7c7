//! `p2pd demo`: the interactive terminal demo in the spirit of P2PD's (spec §11). It
//! loads the interfaces with visible progress, prints the NAT per interface and family
//! and the node address, asks for a peer (or waits for one) and the strategies,
//! connects while showing each strategy skipped, tried and the winner, then runs an
//! echo chat ([`chat`]). `--sim` plays the same flow inside the simulator, offline.
//!
//! Questions are asked when stdin is a terminal; flags answer them otherwise
//! (`--peer`/`--wait`, `--strategies`, `--nat`/`--peer-nat`), and chat lines come from
//! `--script` or stdin — so the demo also runs unattended.

mod chat;
mod input;
mod real;
mod sim;

use std::io::Write;

use clap::Args;
use p2pd_core::negotiate::{Progress, Strategy};
use p2pd_sim::classify::NatCase;

use crate::node_cmd::NodeArgs;
use input::Input;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run offline inside the network simulator: two NATed peers connect and chat.
    #[arg(long)]
    pub sim: bool,
    /// With --sim: your NAT, TYPE/DELTA (e.g. full_cone/equal; types and deltas as
    /// `p2pd nat` names them). Asked when interactive; default port_restricted_cone/random.
    #[arg(long, value_parser = sim::parse_nat_case, requires = "sim")]
    pub nat: Option<NatCase>,
    /// With --sim: the peer's NAT, TYPE/DELTA. Default symmetric/independent.
    #[arg(long, value_parser = sim::parse_nat_case, requires = "sim")]
    pub peer_nat: Option<NatCase>,
    /// With --sim: the simulation's seed.
    #[arg(long, default_value_t = 1, requires = "sim")]
    pub seed: u64,
    /// Connect to this node address (p2pd1:…) instead of asking.
    #[arg(long, conflicts_with = "wait")]
    pub peer: Option<String>,
    /// Wait for a peer to connect instead of asking for an address.
    #[arg(long)]
    pub wait: bool,
    /// Strategies to try, comma-separated: direct, reverse, tcp_punch, udp_punch, relay
    /// (default all; asked when interactive).
    #[arg(long)]
    pub strategies: Option<String>,
    /// Chat lines to send instead of reading stdin, separated by newlines or a literal
    /// `\n` (e.g. "hello\nbye"); no questions are asked.
    #[arg(long)]
    pub script: Option<String>,
    /// With --script (or stdin not a terminal), how long to wait for each echo, seconds.
    #[arg(long, default_value_t = 10)]
    pub echo_timeout: u64,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> Result<()> {
    let mut input = Input::new(args.script.as_deref());
    if args.sim {
        sim::run(&args, &mut input).await
    } else {
        real::run(&args, &mut input).await
    }
}

/// Prints a line on stdout, flushed (the demo talks on stdout; logs go to stderr).
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// The strategies from the flag, or asked (interactive), or all.
async fn parse_strategies(input: &mut Input, given: Option<&str>) -> Result<Vec<Strategy>> {
    if let Some(s) = given {
        return Ok(Strategy::parse_list(s)?);
    }
    let all: Vec<_> = Strategy::ALL.iter().map(|s| s.name()).collect();
    let all = all.join(",");
    for _ in 0..5 {
        let answer = input
            .ask(&format!("Strategies to try [{all}]: "))
            .await
            .ok_or("the input ended")?;
        if answer.is_empty() {
            return Ok(Strategy::ALL.to_vec());
        }
        match Strategy::parse_list(&answer) {
            Ok(s) => return Ok(s),
            Err(e) => say(&format!("  {e}")),
        }
    }
    Err("no valid strategy list".into())
}

/// One line per strategy: skipped (why), tried and failed, won, not needed, not offered.
fn summary(offered: &[Strategy], steps: &[Progress]) -> String {
    let mut lines = vec!["Strategies:".to_string()];
    for s in Strategy::ALL {
        if !offered.contains(&s) {
            lines.push(format!("  {:<10} not offered", s.name()));
            continue;
        }
        let mut state = "not needed".to_string();
        for p in steps {
            match p {
                Progress::Skipped { strategy, reason } if *strategy == s => {
                    state = format!("skipped ({reason})");
                }
                Progress::Trying { strategy, .. } if *strategy == s => {
                    state = "tried".to_string();
                }
                Progress::StrategyFailed { strategy, reason } if *strategy == s => {
                    state = format!("tried, failed ({reason})");
                }
                Progress::Connected { strategy, .. } if *strategy == s => {
                    state = "WON".to_string();
                }
                _ => {}
            }
        }
        lines.push(format!("  {:<10} {state}", s.name()));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_every_strategy() {
        let steps = vec![
            Progress::Skipped {
                strategy: Strategy::Direct,
                reason: "filtered".into(),
            },
            Progress::Trying {
                strategy: Strategy::TcpPunch,
                detail: "x".into(),
            },
            Progress::StrategyFailed {
                strategy: Strategy::TcpPunch,
                reason: "timeout".into(),
            },
            Progress::Connected {
                strategy: Strategy::UdpPunch,
                local: "10.0.0.1:1".parse().unwrap(),
                remote: "192.0.2.1:2".parse().unwrap(),
            },
        ];
        let offered = [
            Strategy::Direct,
            Strategy::TcpPunch,
            Strategy::UdpPunch,
            Strategy::Relay,
        ];
        let s = summary(&offered, &steps);
        assert!(s.contains("direct     skipped (filtered)"), "{s}");
        assert!(s.contains("reverse    not offered"), "{s}");
        assert!(s.contains("tcp_punch  tried, failed (timeout)"), "{s}");
        assert!(s.contains("udp_punch  WON"), "{s}");
        assert!(s.contains("relay      not needed"), "{s}");
    }
}
