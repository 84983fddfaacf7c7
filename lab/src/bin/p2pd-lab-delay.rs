//! `p2pd-lab-delay`: hold every packet of an NFQUEUE for a delay (± jitter), then
//! accept it. The lab runs it in the server namespace; see `p2pd_lab::delay`.
//!
//! ```text
//! p2pd-lab-delay --queue 100 --delay-us 20000 [--jitter-us 0] [--limit 4096]
//!                [--seed 1] [--max-seconds 3600]
//! ```
//! Exits 0 after SIGTERM/SIGINT (held packets are released first), 2 on bad usage.

use std::process::ExitCode;
use std::time::Duration;

use p2pd_lab::delay::{DelayConfig, run};

const USAGE: &str = "usage: p2pd-lab-delay --queue N --delay-us US [--jitter-us US] [--limit N] [--seed N] [--max-seconds N]";

fn parse(args: &[String]) -> Result<DelayConfig, String> {
    let mut cfg = DelayConfig {
        queue: 0,
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        limit: 4096,
        seed: 1,
        max_runtime: Duration::from_secs(3600),
    };
    let mut queue = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num: u64 = value
            .parse()
            .map_err(|_| format!("{flag}: {value:?} is not a number"))?;
        match flag.as_str() {
            "--queue" => {
                queue = Some(u16::try_from(num).map_err(|_| "--queue must be < 65536".to_string())?)
            }
            "--delay-us" => cfg.delay = Duration::from_micros(num),
            "--jitter-us" => cfg.jitter = Duration::from_micros(num),
            "--limit" => {
                cfg.limit = usize::try_from(num)
                    .map_err(|_| "--limit too large".to_string())?
                    .max(1)
            }
            "--seed" => cfg.seed = num,
            "--max-seconds" => cfg.max_runtime = Duration::from_secs(num),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    cfg.queue = queue.ok_or("--queue is required")?;
    Ok(cfg)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("p2pd-lab-delay: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(cfg) {
        Ok(s) => {
            println!(
                "p2pd-lab-delay: stopped; queued {}, released {}, dropped {}",
                s.queued, s.released, s.dropped
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("p2pd-lab-delay: {e}");
            ExitCode::FAILURE
        }
    }
}
