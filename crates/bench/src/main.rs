//! `synod-bench`: load generation over the etcd v3 API. See docs/BENCHMARKS.md.

use clap::Parser;
use std::process::ExitCode;
use synod_bench::loadgen::cli::{self, Cli, Command, ReportArgs, RunArgs};
use synod_bench::loadgen::report::ComparePoint;
use synod_bench::loadgen::scenario_report::{self, ScenarioPoint};
use synod_bench::loadgen::{compare, plot, report, restart, runner};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("synod-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let work = async {
            match &cli.command {
                Command::Run(args) => run(args).await,
                Command::Compare(args) => {
                    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
                    compare::run(args, &command_line).await.map(|_| ())
                }
                Command::Report(args) => report_again(args),
                Command::Restart(args) => {
                    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
                    restart::run(args, &command_line).await.map(|_| ())
                }
            }
        };
        // Ctrl-C drops `work`, and with it any cluster it started: their guards kill the
        // servers (a panic unwinds through the same guards).
        tokio::select! {
            result = work => result,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("synod-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &RunArgs) -> Result<(), String> {
    let mut endpoints = args.endpoints.clone();
    if args.load.target_leader {
        endpoints = vec![leader_endpoint(&endpoints).await?];
    }
    let cfg = runner::RunConfig {
        endpoints,
        workload: args.workload,
        params: args.load.workload_params(),
        clients: args.clients,
        connections: cli::connections(args.load.connections, args.clients),
        warmup: args.warmup,
        duration: args.duration,
        prefill: args.workload.reads() && !args.load.no_prefill,
        progress: (!args.quiet).then(|| format!("[{} x{}] ", args.workload, args.clients)),
        server_cpu: None,
    };
    let result = runner::run(cfg).await?;
    print!("{}", report::run_table(std::slice::from_ref(&result)));
    if args.json {
        let json = serde_json::to_string(&result).map_err(|e| format!("JSON: {e}"))?;
        println!("{json}");
    }
    Ok(())
}

/// The endpoint of the member the others call leader (Status of each, matched by member id).
async fn leader_endpoint(endpoints: &[String]) -> Result<String, String> {
    let mut ids = Vec::new();
    let mut leader = 0;
    for endpoint in endpoints {
        let mut client = etcd_client::Client::connect([endpoint.as_str()], None)
            .await
            .map_err(|e| format!("{endpoint}: {e}"))?;
        let status = client
            .status()
            .await
            .map_err(|e| format!("{endpoint}: status: {e}"))?;
        leader = status.leader();
        ids.push(status.header().map(|h| h.member_id()).unwrap_or(0));
    }
    ids.iter()
        .position(|&id| id != 0 && id == leader)
        .map(|i| endpoints[i].clone())
        .ok_or_else(|| "no endpoint is the leader".to_string())
}

/// `synod-bench report`: the tables and plot of an earlier compare.json.
fn report_again(args: &ReportArgs) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.from)
        .map_err(|e| format!("cannot read {}: {e}", args.from.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", args.from.display()))?;
    let points: Vec<ComparePoint> = serde_json::from_value(json["points"].clone())
        .map_err(|e| format!("{}: points: {e}", args.from.display()))?;
    // Absent from comparisons made before the watch and lease workloads existed.
    let scenarios: Vec<ScenarioPoint> = match json.get("scenarios") {
        Some(s) => serde_json::from_value(s.clone())
            .map_err(|e| format!("{}: scenarios: {e}", args.from.display()))?,
        None => Vec::new(),
    };
    if let Some(command) = json["command"].as_str() {
        println!("command: {command}");
    }
    if !scenarios.is_empty() {
        println!("{}", scenario_report::table(&scenarios));
        if args.markdown {
            println!("{}", scenario_report::markdown(&scenarios));
        }
    }
    println!("{}", report::compare_table(&points));
    if args.markdown {
        println!("{}", report::compare_markdown(&points));
    }
    if let Some(path) = &args.plot {
        plot::draw(&points, path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
