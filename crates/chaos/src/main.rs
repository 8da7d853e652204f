//! `synod-chaos`: one fault-injection run, or a long series of them with a summary.

use clap::{Args, Parser, Subcommand};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use synod_chaos::{run, FaultKind, RunConfig, RunReport, Scenario};
use synod_testkit::Bin;

#[derive(Debug, Parser)]
#[command(
    name = "synod-chaos",
    about = "Break a real synod cluster and check every client history"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One run: start a cluster, inject faults for --duration, heal, check.
    Run(RunArgs),
    /// Runs back to back, in turn 3 members, 5 members, and 3 members grown to 5 and shrunk
    /// back (the membership scenario), until --minutes of faults were injected; prints a
    /// summary (runs, operations, faults, violations).
    Long(LongArgs),
}

#[derive(Debug, Args)]
struct Common {
    /// Fault kinds to draw from, comma-separated [default: all]: kill, pause, partition,
    /// one-way, leader-isolated, quorum-loss, constrained-election, chained, flaky, resets,
    /// lost-tail; and membership (a membership change, not among the default).
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// The membership scenario: grow the cluster from --nodes to --nodes + 2 members one at
    /// a time (learners promoted once caught up, or voters at once), shrink it back (the
    /// leader half the time), again, with replacements and leader moves now and then; half
    /// the changes run under a fault of --faults, and a third of the turns are a plain fault.
    /// At the end the cluster is shrunk back to --nodes. With `long`: every run.
    #[arg(long)]
    membership: bool,
    /// Extra flags for every member, e.g. --member-flag=--read-mode=quorum (after the
    /// defaults --snapshot-count=2000 --wal-segment-bytes=262144, which a flag of the same
    /// name replaces).
    #[arg(long = "member-flag", allow_hyphen_values = true)]
    member_flags: Vec<String>,
    /// Skew one member's clock rate: m1=-300000 makes m1's clock run 30% slow (parts per
    /// million; the member's --clock-skew-ppm). Repeatable.
    #[arg(long, value_parser = parse_skew)]
    skew: Vec<(usize, i64)>,
    /// Instead of random faults: make this member (m1, m2, ...) the leader, cut it from its
    /// peers while two clients keep reading from it, heal, again (the lease scenario;
    /// steering the leadership needs 5 members).
    #[arg(long)]
    isolate_leader: Option<String>,
    /// Where run directories go (members' data and logs, kept when a run finds something).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep every run's directory, not only failing ones.
    #[arg(long)]
    keep_logs: bool,
    /// The synod binary [default: next to this one; or $SYNOD_BIN].
    #[arg(long)]
    synod: Option<PathBuf>,
    /// Do not print each fault as it is injected.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// How long to inject faults: 90s, 2m, 500ms.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct LongArgs {
    /// Minutes of faults in force, in total, across all runs.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Fault phase of each run.
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    run_duration: Duration,
    /// Seed of the first run; each next run uses the next seed.
    #[arg(long, default_value_t = 1000)]
    seed: u64,
    #[command(flatten)]
    common: Common,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let v: f64 = number.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn member_index(name: &str) -> Result<usize, String> {
    name.strip_prefix('m')
        .and_then(|i| i.parse::<usize>().ok())
        .filter(|&i| i >= 1)
        .map(|i| i - 1)
        .ok_or_else(|| format!("bad member name {name:?} (m1, m2, ...)"))
}

fn parse_skew(s: &str) -> Result<(usize, i64), String> {
    let (m, ppm) = s
        .split_once('=')
        .ok_or("expected MEMBER=PPM, e.g. m1=-300000")?;
    let ppm = ppm.parse().map_err(|_| format!("bad ppm in {s:?}"))?;
    Ok((member_index(m)?, ppm))
}

fn config(
    common: &Common,
    nodes: usize,
    duration: Duration,
    seed: u64,
    membership: bool,
) -> Result<RunConfig, String> {
    if nodes < 3 {
        return Err("--nodes must be at least 3 (faults need a majority to survive)".into());
    }
    let binary = match &common.synod {
        Some(p) => p.clone(),
        None => Bin::SYNOD.find().map_err(|e| e.to_string())?,
    };
    let mut cfg = RunConfig::new(binary, nodes, duration, seed);
    let kinds = if common.faults.is_empty() {
        synod_chaos::ALL_FAULTS.to_vec()
    } else {
        common
            .faults
            .iter()
            .map(|f| FaultKind::parse(f).ok_or_else(|| format!("unknown fault kind {f:?}")))
            .collect::<Result<Vec<_>, _>>()?
    };
    cfg.scenario = if membership {
        Scenario::Membership {
            faults: kinds,
            max: nodes + 2,
        }
    } else {
        Scenario::Random(kinds)
    };
    cfg.cluster
        .flags
        .extend(common.member_flags.iter().cloned());
    for &(m, ppm) in &common.skew {
        cfg.cluster
            .member_flags
            .push((m, format!("--clock-skew-ppm={ppm}")));
    }
    if let Some(target) = &common.isolate_leader {
        let target = member_index(target)?;
        cfg.scenario = Scenario::IsolateLeader { target };
        cfg.workload.pinned_readers = Some((target, 2));
    }
    cfg.base_dir = common.dir.clone();
    cfg.keep_logs = common.keep_logs;
    cfg.verbose = !common.quiet;
    Ok(cfg)
}

fn print_report(r: &RunReport) {
    println!("{}", r.details());
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let work = async {
        match cli.command {
            Command::Run(a) => one(a).await,
            Command::Long(a) => long(a).await,
        }
    };
    // On Ctrl-C or SIGTERM the run is dropped, which kills every member it started (paused
    // ones too). (A background job ignores SIGINT: stop it with SIGTERM.)
    let result = tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
        _ = terminated() => Err("terminated".to_string()),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("synod-chaos: {e}");
            ExitCode::from(2)
        }
    }
}

async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

async fn one(a: RunArgs) -> Result<bool, String> {
    let cfg = config(&a.common, a.nodes, a.duration, a.seed, a.common.membership)?;
    let report = run(&cfg).await?;
    print_report(&report);
    Ok(report.passed())
}

async fn long(a: LongArgs) -> Result<bool, String> {
    let started = Instant::now();
    let target = Duration::from_secs_f64(a.minutes * 60.0);
    let mut totals = Totals::default();
    let mut seed = a.seed;
    while totals.fault_time < target {
        // 3 members, 5 members, 3 grown to 5 and back; or only the last with --membership.
        let turn = totals.runs + totals.harness_errors.len() as u64;
        let (nodes, membership) = match (a.common.membership, turn % 3) {
            (true, _) | (false, 2) => (3, true),
            (false, 0) => (3, false),
            (false, _) => (5, false),
        };
        let cfg = config(&a.common, nodes, a.run_duration, seed, membership)?;
        seed += 1;
        match run(&cfg).await {
            Ok(report) => {
                print_report(&report);
                totals.add(&report);
            }
            Err(e) => {
                println!("run with seed {} could not run: {e}", cfg.seed);
                totals
                    .harness_errors
                    .push(format!("seed {}: {e}", cfg.seed));
            }
        }
        println!(
            "  progress: {:.1} of {:.1} minutes of faults, {:.1} minutes elapsed",
            totals.fault_time.as_secs_f64() / 60.0,
            a.minutes,
            started.elapsed().as_secs_f64() / 60.0
        );
        if totals.harness_errors.len() > 3 {
            return Err("the harness failed repeatedly; stopping".into());
        }
    }
    totals.print(started.elapsed());
    Ok(totals.violations.is_empty() && totals.harness_errors.is_empty())
}

#[derive(Debug, Default)]
struct Totals {
    runs: u64,
    runs_by_size: BTreeMap<String, u64>,
    changes: u64,
    changes_done: u64,
    change_kinds: BTreeMap<String, u64>,
    ops: synod_chaos::history::OpCounts,
    bank: synod_chaos::bank::BankCounts,
    faults: BTreeMap<String, u64>,
    fault_time: Duration,
    recovery_max: Duration,
    /// Lost tails, and the slowest recovery from one.
    lost_tails: u64,
    tail_recovery_max: Duration,
    violations: Vec<String>,
    harness_errors: Vec<String>,
}

impl Totals {
    fn add(&mut self, r: &RunReport) {
        self.runs += 1;
        let kind = if r.changes > 0 {
            format!("{} nodes with membership changes", r.nodes)
        } else {
            format!("{} nodes", r.nodes)
        };
        *self.runs_by_size.entry(kind).or_default() += 1;
        self.changes += r.changes;
        self.changes_done += r.changes_done;
        self.ops.add(&r.ops);
        self.bank.add(&r.bank);
        for f in r
            .faults
            .iter()
            .filter(|f| !synod_chaos::run::is_change(&f.kind))
        {
            *self.faults.entry(f.kind.clone()).or_default() += 1;
        }
        for f in r
            .faults
            .iter()
            .filter(|f| synod_chaos::run::is_change(&f.kind))
        {
            *self.change_kinds.entry(f.kind.clone()).or_default() += 1;
        }
        self.fault_time += r.fault_time;
        self.recovery_max = self.recovery_max.max(r.recovery.unwrap_or(Duration::MAX));
        self.lost_tails += r.lost_tails.len() as u64;
        for t in r.lost_tails.iter().filter(|t| !t.removed) {
            let time = t.recovery_time().unwrap_or(Duration::MAX);
            self.tail_recovery_max = self.tail_recovery_max.max(time);
        }
        self.violations.extend(
            r.violations
                .iter()
                .map(|v| format!("{} nodes, seed {}: {v}", r.nodes, r.seed)),
        );
    }

    fn print(&self, wall: Duration) {
        let faults: u64 = self.faults.values().sum();
        println!("==== synod-chaos long: summary ====");
        println!(
            "runs:        {} ({})",
            self.runs,
            self.runs_by_size
                .iter()
                .map(|(n, c)| format!("{c} × {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "operations:  {} register ops ({} ok, {} unknown outcome, {} failed); {} bank \
             reads, {} transfers ({} conflicted, {} unknown)",
            self.ops.total(),
            self.ops.ok,
            self.ops.unknown,
            self.ops.failed,
            self.bank.reads,
            self.bank.transfers_ok,
            self.bank.transfers_conflicted,
            self.bank.transfers_unknown
        );
        println!(
            "faults:      {faults} injected, in force {:.1} minutes: {}",
            self.fault_time.as_secs_f64() / 60.0,
            self.faults
                .iter()
                .map(|(k, c)| format!("{k} {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if self.changes > 0 {
            println!(
                "membership:  {} changes, {} done: {}",
                self.changes,
                self.changes_done,
                self.change_kinds
                    .iter()
                    .map(|(k, c)| format!("{k} {c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        println!(
            "recovery:    slowest {:.2}s from healing to every member serving",
            self.recovery_max.as_secs_f64()
        );
        if self.lost_tails > 0 {
            println!(
                "lost tails:  {}, the slowest recovered {:.2}s after its restart",
                self.lost_tails,
                self.tail_recovery_max.as_secs_f64()
            );
        }
        println!("wall time:   {:.1} minutes", wall.as_secs_f64() / 60.0);
        println!("violations:  {}", self.violations.len());
        for v in &self.violations {
            println!("  {v}");
        }
        for e in &self.harness_errors {
            println!("  harness error: {e}");
        }
    }
}
