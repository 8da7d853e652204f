//! `synod-sim`: run many seeds (`--seeds N`), or replay one with a trace (`--seed S --trace`).

use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;
use synod_sim::{
    bug_name, focus_name, replay_command, run_many, run_seed, validate, Focus, Options,
    SeedOutcome, BUG_NAMES, FOCUS_NAMES,
};

/// How often the progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

#[derive(Parser, Debug)]
#[command(
    name = "synod-sim",
    about = "Deterministic cluster simulator for Synod's Multi-Paxos engine",
    after_help = "Exits non-zero on the first violation and prints the seed, its swarm \
                  parameters, what failed and the command that replays it."
)]
struct Args {
    /// Run this many seeds, from --first-seed on.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed of a --seeds run.
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Run (replay) exactly this seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Print the event trace of a --seed run to stdout.
    #[arg(long)]
    trace: bool,
    /// Worker threads for a --seeds run (default: available parallelism).
    #[arg(long)]
    threads: Option<usize>,
    /// Run a deliberately broken engine or replica (needs `--features planted-bugs`):
    /// acceptor-ignores-promise, leader-ignores-accepted-values, lease-without-drift-margin,
    /// membership-without-delay, follower-read-joins-sent-request, skips-peer-recovery
    /// (the engine's); acknowledges-writes-when-proposed, linearizable-reads-served-locally,
    /// watch-skips-event-at-sync, watch-repeats-revision, lessor-without-drift-margin,
    /// keep-alive-without-leadership (the replica's).
    #[arg(long, value_parser = parse_bug)]
    plant: Option<synod_sim::Bug>,
    /// Do not stop at the first violation: run every seed and list each failing one.
    #[arg(long)]
    keep_going: bool,
    /// Bias the swarm draw: swarm (default), leader-churn, stale-leader, lease, corruption,
    /// membership, lost-tail, lost-tail-membership, watch, leases.
    /// Defaults to the planted bug's focus when --plant is given.
    #[arg(long, value_parser = parse_focus)]
    focus: Option<Focus>,
    /// Run no watch clients (a seed does everything else exactly as with them).
    #[arg(long)]
    no_watch_clients: bool,
}

fn parse_bug(s: &str) -> Result<synod_sim::Bug, String> {
    BUG_NAMES
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, b)| *b)
        .ok_or_else(|| {
            let names: Vec<&str> = BUG_NAMES.iter().map(|(n, _)| *n).collect();
            format!("unknown bug {s:?}; one of: {}", names.join(", "))
        })
}

fn parse_focus(s: &str) -> Result<Focus, String> {
    FOCUS_NAMES
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, f)| *f)
        .ok_or_else(|| {
            let names: Vec<&str> = FOCUS_NAMES.iter().map(|(n, _)| *n).collect();
            format!("unknown focus {s:?}; one of: {}", names.join(", "))
        })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = Options {
        trace: args.trace,
        planted_bug: args.plant,
        focus: args
            .focus
            .or(args.plant.map(Focus::for_bug))
            .unwrap_or_default(),
        no_watch_clients: args.no_watch_clients,
    };
    if let Err(e) = validate(&options) {
        eprintln!("synod-sim: {e}");
        if let Some(bug) = options.planted_bug {
            eprintln!(
                "synod-sim: --plant {} needs a build with the planted-bugs feature: \
                 cargo run --release -p synod-sim --features planted-bugs -- --plant {} ...",
                bug_name(bug),
                bug_name(bug)
            );
        }
        return ExitCode::from(2);
    }
    match args.seed {
        Some(seed) => replay(seed, &options),
        None => many(&args, &options),
    }
}

fn replay(seed: u64, options: &Options) -> ExitCode {
    let start = std::time::Instant::now();
    let outcome = run_seed(seed, options);
    let s = &outcome.stats;
    println!(
        "seed {seed}: {} in {:.1}ms wall; simulated {}ms, {} events, {} messages, {} slots, \
         ops ok/unknown/failed {}/{}/{}, faults {} (crashes {}, disks corrupted {}, \
         tails lost {}), peer recoveries started/ended/recorded {}/{}/{}, liveness after {}ms \
         of {}ms; watch events checked {} (catch-up responses {}, resumes {}, progress {}, \
         compacted {})",
        if outcome.is_ok() { "ok" } else { "VIOLATION" },
        start.elapsed().as_secs_f64() * 1000.0,
        s.sim_us / 1000,
        s.events,
        s.messages,
        s.slots,
        s.ops_ok,
        s.ops_unknown,
        s.ops_failed,
        s.faults,
        s.crashes,
        s.corruptions,
        s.lost_tails,
        s.recoveries_started,
        s.recoveries_ended,
        s.recoveries_recorded,
        s.liveness_us / 1000,
        s.liveness_bound_us / 1000,
        s.watch_events,
        s.watch_catchups,
        s.watch_resumes,
        s.watch_progress,
        s.watch_compacted
    );
    if outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        report(&outcome, options);
        ExitCode::FAILURE
    }
}

fn many(args: &Args, options: &Options) -> ExitCode {
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    eprintln!(
        "synod-sim: seeds {}..{} on {threads} threads, focus {}{}",
        args.first_seed,
        args.first_seed + args.seeds,
        focus_name(options.focus),
        options
            .planted_bug
            .map(|b| format!(", planted bug {}", bug_name(b)))
            .unwrap_or_default()
    );
    let summary = run_many(
        args.first_seed,
        args.seeds,
        threads,
        options,
        PROGRESS_EVERY,
        args.keep_going,
        |p, failed| match failed {
            Some(o) if args.keep_going => {
                eprintln!("seed {}: {}", o.seed, o.violation.as_ref().expect("failed"))
            }
            _ => eprintln!(
                "progress: {}/{} seeds, {:.1} seeds/s, {} violations, {:.0}s",
                p.done,
                p.total,
                p.seeds_per_sec(),
                p.violations,
                p.elapsed.as_secs_f64()
            ),
        },
    );
    if let Some(first) = summary.failures.first() {
        report(first, options);
    }
    let wall = summary.wall.as_secs_f64();
    println!(
        "simulated {:.0}s, {} operations acknowledged, {} with unknown outcome, {} faults \
         ({} disks corrupted, {} restarts refused, {} snapshot files damaged; {} synced tails lost in {} seeds, peer \
         recoveries started/ended/recorded {}/{}/{}); slowest recovery after healing: {}ms \
         of the {}ms allowed (seed {})",
        summary.sim_ms as f64 / 1000.0,
        summary.ops_ok,
        summary.ops_unknown,
        summary.faults,
        summary.corruptions,
        summary.refusals,
        summary.snapshots_damaged,
        summary.lost_tails,
        summary.lost_tail_seeds,
        summary.recoveries_started,
        summary.recoveries_ended,
        summary.recoveries_recorded,
        summary.slowest_liveness.1.as_millis(),
        summary.slowest_liveness.2.as_millis(),
        summary.slowest_liveness.0
    );
    if summary.watch_seeds > 0 {
        println!(
            "watches in {} seeds: {} watchers created, {} resumed on a new stream, {} events \
             checked, {} responses from catch-up, {} progress responses, {} canceled for \
             compaction, {} streams full",
            summary.watch_seeds,
            summary.watchers_created,
            summary.watch_resumes,
            summary.watch_events,
            summary.watch_catchups,
            summary.watch_progress,
            summary.watch_compacted,
            summary.watch_streams_full
        );
    }
    if summary.lease_seeds > 0 {
        println!(
            "leases in {} seeds: {} granted, {} keep-alives acknowledged, {} expiries checked",
            summary.lease_seeds,
            summary.lease_grants,
            summary.lease_renewals,
            summary.lease_expiries
        );
    }
    if !summary.histories_undecided.is_empty() {
        let mut seeds = summary.histories_undecided.clone();
        seeds.sort_unstable();
        println!(
            "linearizability undecided (search out of steps, not a violation) in {} seeds: {:?}",
            seeds.len(),
            seeds
        );
    }
    println!(
        "seeds: {}, violations: {}, wall time: {wall:.1}s, seeds/s: {:.1}",
        summary.seeds_run,
        summary.failures.len(),
        summary.seeds_run as f64 / wall.max(1e-9)
    );
    if summary.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn report(outcome: &SeedOutcome, options: &Options) {
    let v = outcome
        .violation
        .as_ref()
        .expect("report only for violations");
    println!("VIOLATION in seed {}", outcome.seed);
    println!("  swarm:  {}", outcome.swarm);
    println!("  failed: {v}");
    println!("  replay: {}", replay_command(outcome.seed, options));
}
