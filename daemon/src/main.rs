//! The `p2pd` command: STUN server and client today; the node, daemon and demo later.

mod cli;
mod config;
mod ifs_cmd;
mod nat_cmd;
mod node_cmd;
mod output;
mod portmap_cmd;
mod sim_cmd;
mod stun_cmd;
mod turn_cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
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
            cli::Command::Sim(cli::SimCommand::Classify(args)) => sim_cmd::classify_all(args),
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
