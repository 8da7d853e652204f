//! `synod`: run one member of a Synod cluster, or (`synod dev`) a local 3-member cluster.

use clap::Parser;
use std::process::ExitCode;
use synod_server::cli::{Cli, Command};
use synod_server::server::{self, MemberConfig};
use tracing_subscriber::EnvFilter;

// jemalloc rather than the system allocator: measured on the benchmark machine (2 cores,
// three members), 9% less CPU per linearizable get and 10% per put, with a lower put p99
// (docs/BENCHMARKS.md). mimalloc did as well on gets but raised the put p99.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread runs the gRPC handlers, the peer transport and the replica's core task, so
    // that handing a request to the core and its reply back is a task switch, not a thread
    // wake-up; fdatasync and snapshot encoding have threads of their own. On a 2-core machine
    // running three members this cut CPU per linearizable get by ~40% and per put by ~10%
    // against tokio's multi-threaded runtime with a core thread (docs/BENCHMARKS.md).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("synod: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Every error type says what failed in words an operator can act on; main adds the
    // program's name and the exit status.
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Some(Command::Dev(args)) => runtime
            .block_on(synod_server::dev::run(args))
            .map_err(Into::into),
        None => {
            let filter = EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new(&cli.member.log_level));
            // Logs go to stderr, coloured only on a terminal (log files stay plain text).
            let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_ansi(colour)
                .init();
            match MemberConfig::from_args(&cli.member) {
                Ok(cfg) => runtime
                    .block_on(server::run(cfg, synod_server::stop_signal()))
                    .map_err(Into::into),
                Err(e) => Err(e.into()),
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
