//! `p2pd demo` on the real network: a node with the flags of `p2pd listen`, its
//! interfaces, routes and NAT shown as they load, then a connect (or an accept) and the
//! echo chat over the connection.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};

use p2pd_core::addr::NodeAddr;
use p2pd_core::negotiate::{Progress, Strategy};
use p2pd_tokio::interfaces::{self, Family};
use p2pd_tokio::node::{Connection, Node};
use p2pd_tokio::{Tokio, TokioConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::chat::{Chat, ChatEvent};
use super::input::{Input, prompt};
use super::{DemoArgs, Result, parse_strategies, say, summary};
use crate::node_cmd::node_config;

/// Progress dots while something slow runs.
const TICK: Duration = Duration::from_millis(500);
/// How long closing may take once the chat ended.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Steps of one connect kept for the summary, at most.
const MAX_STEPS: usize = 64;
/// Bytes read from the connection at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Runs `f`, printing `label` and a dot per [`TICK`] until it is done.
async fn with_ticker<F: Future>(label: &str, f: F) -> F::Output {
    prompt(label);
    let started = Instant::now();
    let mut f = pin!(f);
    let mut tick = tokio::time::interval(TICK);
    tick.tick().await;
    loop {
        tokio::select! {
            r = &mut f => {
                say(&format!(" ({:.1} s)", started.elapsed().as_secs_f64()));
                return r;
            }
            _ = tick.tick() => prompt("."),
        }
    }
}

/// Said with every failure to start the node.
const OFFLINE_HINT: &str = "(`p2pd demo --sim` runs the demo offline, inside the simulator)";

/// Runs the demo on the real network.
pub async fn run(args: &DemoArgs, input: &mut Input) -> Result<()> {
    say("p2pd demo: universal reachability\n");
    let node = start(args)
        .await
        .map_err(|e| format!("{e}\n{OFFLINE_HINT}"))?;
    say(&format!("Your node address:\n  {}\n", node.addr()));
    let peer = choose_peer(args, input).await?;
    let initiator = peer.is_some();
    let conn = match peer {
        Some(peer) => {
            let strategies = parse_strategies(input, args.strategies.as_deref()).await?;
            connect(&node, &peer, &strategies).await?
        }
        None => {
            say("Waiting for a peer to connect (give it the address above)...");
            let conn = node.accept().await?;
            let i = conn.info();
            say(&format!(
                "{} connected by {} ({} -> {})",
                i.peer.node_id(),
                i.strategy,
                i.local,
                i.remote
            ));
            conn
        }
    };
    let echo_timeout = Duration::from_secs(args.echo_timeout.max(1));
    let result = chat(conn, input, initiator, echo_timeout).await;
    // Deletes the gateway's port mapping before the process exits.
    node.shutdown().await;
    result
}

/// Loads the interfaces and starts the node, showing what it found.
async fn start(args: &DemoArgs) -> Result<Node<Tokio>> {
    let mut config = node_config(&args.node.flags)?;
    config.accept = true;
    say("Loading networking interfaces...");
    let ifs = interfaces::select(interfaces::list()?, &config.interfaces)?;
    for i in &ifs {
        let families: String = Family::ALL
            .iter()
            .filter(|f| !i.addrs_of(**f).is_empty())
            .map(|f| if *f == Family::Ipv4 { "(v4)" } else { "(v6)" })
            .collect();
        let addrs: Vec<String> = i.addrs().map(|a| a.to_string()).collect();
        say(&format!("  {} {families}  {}", i.name, addrs.join(" ")));
    }
    let stun: Vec<String> = config.stun.iter().map(ToString::to_string).collect();
    let mqtt: Vec<String> = config.mqtt.iter().map(ToString::to_string).collect();
    say(&format!(
        "Starting the node: routes and NAT per interface and family (STUN {}), signaling \
         (MQTT {})",
        stun.join(", "),
        mqtt.join(", ")
    ));
    let node = with_ticker("  working", Node::start(&Tokio, config)).await?;
    for r in node.routes() {
        let family = if r.local.is_ipv4() { "v4" } else { "v6" };
        say(&format!(
            "  {} ({family}) {} -> external {}: {}; delta {} {}",
            r.interface,
            r.local,
            r.route.external,
            r.route.nat,
            r.route.delta.kind,
            r.route.delta.value
        ));
    }
    Ok(node)
}

/// The peer to connect to, or `None` to wait for one.
async fn choose_peer(args: &DemoArgs, input: &mut Input) -> Result<Option<NodeAddr>> {
    if let Some(p) = &args.peer {
        return Ok(Some(
            NodeAddr::parse(p).map_err(|e| format!("bad --peer address: {e}"))?,
        ));
    }
    if args.wait || !input.interactive() {
        return Ok(None);
    }
    for _ in 0..5 {
        let answer = input
            .ask("Peer address to connect to (Enter: wait for a peer to connect): ")
            .await
            .ok_or("the input ended")?;
        if answer.is_empty() {
            return Ok(None);
        }
        match NodeAddr::parse(&answer) {
            Ok(a) => return Ok(Some(a)),
            Err(e) => say(&format!("  not a node address: {e}")),
        }
    }
    Err("no valid peer address".into())
}

/// Connects, printing each step of the negotiation as it happens.
async fn connect(
    node: &Node<Tokio>,
    peer: &NodeAddr,
    strategies: &[Strategy],
) -> Result<Connection<Tokio>> {
    let names: Vec<_> = strategies.iter().map(|s| s.name()).collect();
    say(&format!("Connecting with {}:", names.join(",")));
    let (tx, rx) = async_channel::bounded(MAX_STEPS);
    let started = Instant::now();
    let mut steps = Vec::new();
    let show = |p: Progress, steps: &mut Vec<Progress>| {
        say(&format!("  +{:>6} ms  {p}", started.elapsed().as_millis()));
        steps.push(p);
    };
    let mut connecting = pin!(node.connect_with_progress(peer, strategies, tx));
    let result = loop {
        tokio::select! {
            r = &mut connecting => break r,
            Ok(p) = rx.recv() => show(p, &mut steps),
        }
    };
    while let Ok(p) = rx.try_recv() {
        show(p, &mut steps);
    }
    say(&summary(strategies, &steps));
    Ok(result?)
}

/// The echo chat: typed lines go out, received lines are shown (and answered). The
/// `initiator` (the side that connected) ends once its input ended and its echoes came
/// back (or did not within `echo_timeout`); the other side serves until the peer closes.
/// Either ends when `exit` is typed.
async fn chat(
    conn: Connection<Tokio>,
    input: &mut Input,
    initiator: bool,
    echo_timeout: Duration,
) -> Result<()> {
    let strategy = conn.info().strategy;
    say(&format!(
        "\nEcho chat over {strategy}: type a line and Enter; the peer echoes it. 'exit' ends."
    ));
    let (mut rd, mut wr) = tokio::io::split(TokioConnection::new(conn));
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(b) = out_rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
        wr
    });
    let mut chat = Chat::new();
    let mut sent: VecDeque<Instant> = VecDeque::new();
    let mut input_done = false;
    let mut wait_until: Option<tokio::time::Instant> = None;
    let mut buf = vec![0u8; READ_CHUNK];
    let mut peer_closed = false;
    loop {
        if initiator && input_done && sent.is_empty() {
            break;
        }
        let deadline = wait_until.unwrap_or_else(|| tokio::time::Instant::now() + echo_timeout);
        tokio::select! {
            line = input.line(), if !input_done => match line {
                None => {
                    input_done = true;
                    wait_until = Some(tokio::time::Instant::now() + echo_timeout);
                }
                Some(l) if matches!(l.trim(), "exit" | "quit") => break,
                Some(l) if l.trim().is_empty() => {}
                Some(l) => {
                    if !input.interactive() {
                        say(&format!("> {l}"));
                    }
                    sent.push_back(Instant::now());
                    if out_tx.send(Chat::request(&l)).await.is_err() {
                        break;
                    }
                }
            },
            n = rd.read(&mut buf) => {
                let n = n.map_err(|e| format!("receiving from the peer: {e}"))?;
                if n == 0 {
                    peer_closed = true;
                    say("(the peer closed the connection)");
                    break;
                }
                for (ev, answer) in chat.feed(&buf[..n]) {
                    match ev {
                        ChatEvent::Message(t) => say(&format!("peer: {t}")),
                        ChatEvent::Echo(t) => {
                            let rtt = sent.pop_front().map(|s| s.elapsed().as_millis());
                            say(&format!("echo: {t}  (round trip {} ms)", rtt.unwrap_or(0)));
                        }
                    }
                    if let Some(a) = answer {
                        let _ = out_tx.send(a).await;
                    }
                }
            },
            _ = tokio::time::sleep_until(deadline), if initiator && input_done => {
                say(&format!("({} echo(es) did not come back within {echo_timeout:?})", sent.len()));
                break;
            }
        }
    }
    drop(out_tx);
    let wr = writer
        .await
        .map_err(|e| format!("the sending task failed: {e}"))?;
    // Wait (briefly) for the peer's end of the stream so the last answers get out.
    if !peer_closed {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            while matches!(rd.read(&mut buf).await, Ok(n) if n > 0) {}
        })
        .await;
    }
    let conn = rd.unsplit(wr);
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, conn.close()).await;
    say("Bye.");
    Ok(())
}
