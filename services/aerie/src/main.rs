//! `aerie`: the one binary. Parses flags, sets up logging and metrics, and
//! hands over to the subcommand.

#![forbid(unsafe_code)]

mod broker_port;
mod cli;
mod cmd;
mod gateway;
mod http;
mod metrics_help;
mod node;
mod otlp_tls;
mod process_metrics;
mod serve;
mod telemetry;
mod usage;
mod usage_stream;

use clap::Parser;

// Messages are allocated on the publisher's thread and freed on the
// subscriber's; mimalloc handles such cross-thread frees far better than the
// system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // One TLS provider for the whole process, before anything builds a config.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = cli::Cli::parse();
    let telemetry = telemetry::init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("aerie: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            cli::Command::Serve(args) => serve::run(*args).await,
            cli::Command::Control(args) => serve::run_control(args).await,
            cli::Command::Gateway(args) => gateway::run(*args).await,
            cli::Command::Keys(cli::KeysCommand::Rotate(args)) => serve::rotate_keys(args).await,
            cli::Command::Bench(args) => aerie_bench::run(args.into_options()).await,
            cli::Command::Migrate(args) => cmd::migrate::run(args).await,
            cli::Command::Token(cli::TokenCommand::Mint(args)) => cmd::token::mint(args).await,
            cli::Command::Token(cli::TokenCommand::Revoke(args)) => cmd::token::revoke(args).await,
            cli::Command::Tenant(command) => cmd::tenant::run(command).await,
            cli::Command::Account(cli::AccountCommand::ApiKey(command)) => {
                cmd::account::run(command).await
            }
        }
    });
    // The SIGTERM/SIGINT path returns here: send the last spans before exiting.
    telemetry.shutdown();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aerie: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
