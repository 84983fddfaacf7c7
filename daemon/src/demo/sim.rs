//! `p2pd demo --sim`: the demo's flow inside the simulator, offline. Two computers, each
//! behind a NAT of the user's choice, on a simulated internet with a STUN server, a TURN
//! relay and a signaling broker; the real negotiator connects them, each step is shown
//! with its virtual time, then the echo chat runs over the resulting pipe.

use std::time::{Duration, Instant};

use p2pd_core::addr::NodeAddr;
use p2pd_core::nat::{DeltaKind, NatType};
use p2pd_core::negotiate::{Progress, Strategy};
use p2pd_sim::classify::NatCase;
use p2pd_sim::matrix::PairNet;
use p2pd_sim::node::SimNode;

use super::chat::{Chat, ChatEvent};
use super::input::{Input, prompt};
use super::{DemoArgs, Result, parse_strategies, say, summary};

/// This side's NAT unless chosen.
pub const DEFAULT_NAT: &str = "port_restricted_cone/random";
/// The peer's NAT unless chosen.
pub const DEFAULT_PEER_NAT: &str = "symmetric/independent";
/// The port step (independent, dependent) or offset (preserving) of the simulated NATs.
const STEP: u16 = 7;
/// The longest the connect may take, in virtual time.
const CONNECT_LIMIT: Duration = Duration::from_secs(200);
/// The longest one chat line and its echo may take, in virtual time.
const ECHO_LIMIT: Duration = Duration::from_secs(30);
/// Questions asked again after a bad answer, at most.
const TRIES: usize = 5;

/// Parses `TYPE[/DELTA]` (delta `equal` if omitted), e.g. `symmetric/independent`.
pub fn parse_nat_case(s: &str) -> std::result::Result<NatCase, String> {
    let (t, d) = s.split_once('/').unwrap_or((s, "equal"));
    let nat_type: NatType = t.trim().parse()?;
    let delta: DeltaKind = d.trim().parse()?;
    Ok(NatCase {
        nat_type,
        delta,
        step: STEP,
    })
}

fn case_name(c: &NatCase) -> String {
    format!("{}/{}", c.nat_type, c.delta)
}

/// The NAT from the flag, or asked (interactive), or the default.
async fn choose_nat(
    input: &mut Input,
    given: Option<NatCase>,
    who: &str,
    default: &str,
) -> Result<NatCase> {
    if let Some(c) = given {
        return Ok(c);
    }
    for _ in 0..TRIES {
        let answer = input
            .ask(&format!("{who} NAT, TYPE/DELTA [{default}]: "))
            .await
            .ok_or("the input ended")?;
        let text = if answer.is_empty() { default } else { &answer };
        match parse_nat_case(text) {
            Ok(c) => return Ok(c),
            Err(e) => say(&format!("  {e}")),
        }
    }
    Err(format!("no valid NAT for {who} side").into())
}

fn show_side(who: &str, case: &NatCase, addr: &NodeAddr) {
    say(&format!("  {who}: behind a {} NAT", case_name(case)));
    for i in addr.interfaces() {
        for r in [i.v4, i.v6].into_iter().flatten() {
            let family = if r.internal.is_ipv4() { "v4" } else { "v6" };
            say(&format!(
                "    eth0 ({family}) {} -> external {}: {}; delta {} {}",
                r.internal, r.external, r.nat, r.delta.kind, r.delta.value
            ));
        }
    }
}

fn ms(since: Instant, at: Instant) -> u128 {
    at.saturating_duration_since(since).as_millis()
}

/// Runs the offline demo.
pub async fn run(args: &DemoArgs, input: &mut Input) -> Result<()> {
    say("p2pd demo: universal reachability, offline inside the network simulator");
    say("Two computers behind NATs on a simulated internet (virtual time, seeded).\n");
    if input.interactive() && (args.nat.is_none() || args.peer_nat.is_none()) {
        let types: Vec<_> = NatType::ALL.iter().map(|t| t.name()).collect();
        let deltas: Vec<_> = DeltaKind::ALL.iter().map(|d| d.name()).collect();
        say(&format!(
            "NAT types: {}\nport allocations (delta): {}",
            types.join(", "),
            deltas.join(", ")
        ));
    }
    let me = choose_nat(input, args.nat, "Your", DEFAULT_NAT).await?;
    let peer = choose_nat(input, args.peer_nat, "The peer's", DEFAULT_PEER_NAT).await?;

    say("Loading networking interfaces...");
    let mut pair = PairNet::build(me, peer, args.seed, 0.0, [Vec::new(), Vec::new()], true)?;
    say(&format!(
        "  STUN server {}, TURN relay {}, signaling broker {}",
        pair.stun, pair.turn, pair.broker
    ));
    show_side("you ", &me, &pair.addrs[0]);
    show_side("peer", &peer, &pair.addrs[1]);
    say("Starting nodes...");
    let t0 = pair.net.now();
    pair.register()?;
    say(&format!(
        "  both nodes listen on the broker (+{} ms virtual)",
        ms(t0, pair.net.now())
    ));
    say(&format!("Your node address:\n  {}", pair.addrs[0]));
    say(&format!("The peer's node address:\n  {}\n", pair.addrs[1]));

    if input.interactive() {
        let answer = input
            .ask("Peer address to connect to [Enter: the simulated peer]: ")
            .await
            .ok_or("the input ended")?;
        if !answer.is_empty() && NodeAddr::parse(&answer).ok().as_ref() != Some(&pair.addrs[1]) {
            say("  only the simulated peer exists here; connecting to it");
        }
    }
    let strategies = parse_strategies(input, args.strategies.as_deref()).await?;
    let hosts = pair.hosts;
    pair.net
        .with_endpoint::<SimNode, _>(hosts[0], |n, _| n.set_strategies(strategies.clone()));

    let names: Vec<_> = strategies.iter().map(|s| s.name()).collect();
    say(&format!(
        "Connecting with {} (times are virtual, from the start of the connect):",
        names.join(",")
    ));
    let start = pair.begin();
    pair.run_until(CONNECT_LIMIT, |net| {
        let a = net.endpoint::<SimNode>(hosts[0]).map(|n| &n.report);
        let b = net.endpoint::<SimNode>(hosts[1]).map(|n| &n.report);
        a.is_some_and(|a| a.failed.is_some())
            || (a.is_some_and(|a| a.connected.is_some())
                && b.is_some_and(|b| b.connected.is_some()))
    });
    let report = pair.node(0).map(|n| n.report.clone()).unwrap_or_default();
    for (at, p) in &report.progress {
        say(&format!("  +{:>6} ms  {p}", ms(start, *at)));
    }
    let steps: Vec<Progress> = report.progress.iter().map(|(_, p)| p.clone()).collect();
    say(&summary(&strategies, &steps));
    let Some((won, _)) = report.connected else {
        let why = report
            .failed
            .unwrap_or_else(|| format!("no connection within {CONNECT_LIMIT:?}"));
        return Err(format!("could not connect: {why}").into());
    };
    if strategies == Strategy::ALL {
        let verdict = match pair.expected {
            Some(e) if e == won => format!("{e} (as here)"),
            Some(e) => format!("{e} (this run differs)"),
            None => "no strategy".to_string(),
        };
        say(&format!("  the oracle expects: {verdict}"));
    }
    chat(&mut pair, input, won).await
}

/// Runs the network until the node on `host` has a whole line, at most [`ECHO_LIMIT`].
fn run_until_line(pair: &mut PairNet, side: usize) -> bool {
    let host = pair.hosts[side];
    pair.run_until(ECHO_LIMIT, |net| {
        net.endpoint::<SimNode>(host)
            .is_some_and(|n| n.pending_received().contains(&b'\n'))
    })
}

async fn chat(pair: &mut PairNet, input: &mut Input, won: Strategy) -> Result<()> {
    say(&format!(
        "\nEcho chat over the {won} pipe: type a line and Enter; the peer echoes it. \
         'exit' (or the end of the input) ends."
    ));
    let hosts = pair.hosts;
    let (mut mine, mut theirs) = (Chat::new(), Chat::new());
    loop {
        if input.interactive() {
            prompt("> ");
        }
        let Some(line) = input.line().await else {
            break;
        };
        let line = line.trim().to_string();
        if line == "exit" || line == "quit" {
            break;
        }
        if line.is_empty() {
            continue;
        }
        if !input.interactive() {
            say(&format!("> {line}"));
        }
        let sent = pair.net.now();
        let req = Chat::request(&line);
        pair.net
            .with_endpoint::<SimNode, _>(hosts[0], |n, now| n.write(now, &req));
        if !run_until_line(pair, 1) {
            say(&format!("  (the peer got nothing within {ECHO_LIMIT:?})"));
            continue;
        }
        let got = pair
            .net
            .with_endpoint::<SimNode, _>(hosts[1], |n, _| n.take_received())
            .unwrap_or_default();
        for (ev, answer) in theirs.feed(&got) {
            if let ChatEvent::Message(text) = ev {
                say(&format!(
                    "  peer received: {text}  (+{} ms)",
                    ms(sent, pair.net.now())
                ));
            }
            if let Some(a) = answer {
                pair.net
                    .with_endpoint::<SimNode, _>(hosts[1], |n, now| n.write(now, &a));
            }
        }
        if !run_until_line(pair, 0) {
            say(&format!("  (no echo within {ECHO_LIMIT:?})"));
            continue;
        }
        let back = pair
            .net
            .with_endpoint::<SimNode, _>(hosts[0], |n, _| n.take_received())
            .unwrap_or_default();
        for (ev, _) in mine.feed(&back) {
            match ev {
                ChatEvent::Echo(text) => say(&format!(
                    "  echo: {text}  (round trip {} ms virtual)",
                    ms(sent, pair.net.now())
                )),
                ChatEvent::Message(text) => say(&format!("  peer: {text}")),
            }
        }
    }
    say("Bye.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat_cases_parse() {
        let c = parse_nat_case("symmetric/independent").unwrap();
        assert_eq!(c.nat_type, NatType::Symmetric);
        assert_eq!(c.delta, DeltaKind::Independent);
        assert_eq!(parse_nat_case("full_cone").unwrap().delta, DeltaKind::Equal);
        assert!(
            parse_nat_case("cone/random")
                .unwrap_err()
                .contains("full_cone")
        );
        assert!(
            parse_nat_case("full_cone/odd")
                .unwrap_err()
                .contains("random")
        );
    }
}
