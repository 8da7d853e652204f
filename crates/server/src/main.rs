//! `synod`: run one member of a Synod cluster, or (`synod dev`) a local 3-member cluster.

use clap::Parser;
use std::process::ExitCode;
use synod_server::cli::{Cli, Command};
use synod_server::server::{self, MemberConfig};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("synod: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(Command::Dev(args)) => runtime.block_on(synod_server::dev::run(args)),
        None => {
            let filter = EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new(&cli.member.log_level));
            tracing_subscriber::fmt().with_env_filter(filter).init();
            match MemberConfig::from_args(&cli.member) {
                Ok(cfg) => runtime.block_on(server::run(cfg, stop_signal())),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("synod: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping on signal");
}
