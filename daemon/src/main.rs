//! The `p2pd` command: STUN server and client today; the node, daemon and demo later.

mod cli;
mod config;
mod ifs_cmd;
mod name_cmd;
mod name_store;
mod nat_cmd;
mod node_cmd;
mod node_names;
mod output;
mod portmap_cmd;
mod rest;
mod sim_cmd;
mod stun_cmd;
mod target;
mod turn_cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logs(cli.verbose);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("p2pd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            cli::Command::StunServer(args) => stun_cmd::server(args).await,
            cli::Command::Stun(args) => stun_cmd::client(args).await,
            cli::Command::Nat(args) => nat_cmd::run(args).await,
            cli::Command::Ifs(args) => ifs_cmd::run(args).await,
            cli::Command::TurnServer(args) => turn_cmd::server(args).await,
            cli::Command::Portmap(cmd) => portmap_cmd::run(cmd).await,
            cli::Command::NameServer(args) => name_cmd::server(args).await,
            cli::Command::Name(cmd) => name_cmd::run_cmd(cmd).await,
            cli::Command::Sim(cli::SimCommand::Classify(args)) => sim_cmd::classify_all(args),
            cli::Command::Sim(cli::SimCommand::Matrix(args)) => sim_cmd::matrix(args),
            cli::Command::Daemon(args) => rest::run(args).await,
            cli::Command::Listen(args) => node_cmd::listen(args).await,
            cli::Command::Connect(args) => node_cmd::connect(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if output::is_broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("p2pd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr through `tracing`: warnings only by default, more with each `-v`;
/// `RUST_LOG` (e.g. `p2pd=debug`) overrides.
fn init_logs(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
