//! `engine_overhead`: the engine's own cost per command. Three replicas in one
//! thread, in-memory storage, messages delivered by function call, closed-loop proposers at
//! the leader. See docs/BENCHMARKS.md.

use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;
use synod_bench::overhead::{
    self, engine_config, report, Measurement, Params, Scenario, PAYLOAD_BYTES_MAX,
};
use synod_paxos::Config;

#[derive(Parser, Debug)]
#[command(
    name = "engine_overhead",
    about = "Commands/s and latency of Synod's engine alone: 3 replicas in one thread, \
             in-memory storage, function-call delivery, closed-loop proposers",
    after_help = "Scenarios: p1b1 p64b1 p256b1 p1b16 p64b16 p1b256 p64b256 \
                  (pN = N proposers, bK = K commands per proposal)."
)]
struct Args {
    /// Run only these scenarios (repeat the flag or separate with commas), e.g. p64b1.
    #[arg(long, value_delimiter = ',')]
    scenario: Vec<String>,
    /// Seconds measured per scenario.
    #[arg(long, default_value_t = 3.0)]
    duration_secs: f64,
    /// Seconds of warm-up per scenario before measuring.
    #[arg(long, default_value_t = 0.5)]
    warmup_secs: f64,
    /// Payload bytes per command (at most 4096).
    #[arg(long, default_value_t = 16)]
    payload_bytes: usize,
    /// Print one JSON object per scenario on stdout instead of the table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("engine_overhead: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let scenarios = select_scenarios(&args.scenario)?;
    if args.payload_bytes > PAYLOAD_BYTES_MAX {
        return Err(format!(
            "--payload-bytes must be at most {PAYLOAD_BYTES_MAX}, not {}",
            args.payload_bytes
        ));
    }
    let params = Params {
        warmup: seconds("--warmup-secs", args.warmup_secs)?,
        duration: positive_seconds("--duration-secs", args.duration_secs)?,
        payload_bytes: args.payload_bytes,
    };
    let mut measurements = Vec::new();
    for scenario in scenarios {
        measurements.push(run_one(scenario, &params)?);
    }
    if args.json {
        for m in &measurements {
            println!("{}", report::json_line(m));
        }
    } else {
        print!("{}", report::table(&measurements));
        let ratios = report::ratios(&measurements);
        if !ratios.is_empty() {
            print!("\n{ratios}");
        }
    }
    Ok(())
}

/// Runs one scenario with progress lines on stderr (stdout stays clean for --json).
fn run_one(scenario: Scenario, params: &Params) -> Result<Measurement, String> {
    let config = engine_config(1, scenario);
    let default = Config::new(1);
    let raised = if config.pending_commands_max != default.pending_commands_max {
        format!(
            " (pending_commands_max raised from {} to hold {} proposers x {} commands)",
            default.pending_commands_max, scenario.proposers, scenario.batch
        )
    } else {
        String::new()
    };
    eprintln!(
        "{scenario}: proposers={} commands/proposal={} payload={}B; warm-up {:.1} s, \
         measuring {:.1} s\n  engine config: {}{raised}",
        scenario.proposers,
        scenario.batch,
        params.payload_bytes,
        params.warmup.as_secs_f64(),
        params.duration.as_secs_f64(),
        report::describe_config(&config),
    );
    let m = overhead::run(scenario, params).map_err(|e| format!("{scenario} failed: {e}"))?;
    eprintln!(
        "  {:.0} commands/s, {:.0} proposals/s, p50 {:.1} us, p99 {:.1} us",
        m.commands_per_sec(),
        m.proposals_per_sec(),
        m.latency_us(0.50),
        m.latency_us(0.99),
    );
    Ok(m)
}

/// The scenarios named on the command line (all when none is).
fn select_scenarios(names: &[String]) -> Result<Vec<Scenario>, String> {
    if names.is_empty() {
        return Ok(overhead::SCENARIOS.to_vec());
    }
    names
        .iter()
        .map(|name| {
            overhead::SCENARIOS
                .iter()
                .copied()
                .find(|s| s.to_string() == name.trim())
                .ok_or_else(|| {
                    let known: Vec<String> =
                        overhead::SCENARIOS.iter().map(|s| s.to_string()).collect();
                    format!("unknown scenario {name:?}; one of: {}", known.join(", "))
                })
        })
        .collect()
}

fn seconds(flag: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("{flag} must be a non-negative number of seconds, not {value}"))
}

/// Rates are divided by the measured time, so it must not be zero.
fn positive_seconds(flag: &str, value: f64) -> Result<Duration, String> {
    match seconds(flag, value)? {
        d if d.is_zero() => Err(format!("{flag} must be more than zero")),
        d => Ok(d),
    }
}
