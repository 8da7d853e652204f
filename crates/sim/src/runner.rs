//! Running seeds: one at a time ([`run_seed`], what tests and replays use) or many in
//! parallel threads ([`run_many`], what the binary uses). Each seed is independent and
//! deterministic, so threads only change which seed finishes first, never a seed's outcome.

use crate::checkers::{Violation, ViolationKind};
use crate::options::{FaultKind, Focus, Options, Swarm};
use crate::rng::Rng;
use crate::simulation::{Simulation, Stats};
use crate::trace::Trace;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The result of one seed.
#[derive(Clone, Debug)]
pub struct SeedOutcome {
    pub seed: u64,
    pub swarm: Swarm,
    pub violation: Option<Violation>,
    pub stats: Stats,
}

impl SeedOutcome {
    pub fn is_ok(&self) -> bool {
        self.violation.is_none()
    }
}

/// The swarm parameters a seed draws (the same draw the simulation makes).
pub fn swarm_for_seed(seed: u64, focus: Focus) -> Swarm {
    Swarm::draw(&mut Rng::new(seed).fork(), focus)
}

/// Runs one seed with no trace.
pub fn run_seed(seed: u64, options: &Options) -> SeedOutcome {
    let trace = if options.trace {
        Trace::stdout()
    } else {
        Trace::off()
    };
    run_seed_traced(seed, options, trace).0
}

/// Runs one seed into the given trace sink; returns the outcome and any captured lines.
/// A panic (an engine assertion firing) is caught and reported as a violation.
pub fn run_seed_traced(seed: u64, options: &Options, trace: Trace) -> (SeedOutcome, Vec<String>) {
    crate::simulation::SIM_NOW_US.with(|t| t.set(0));
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut sim = Simulation::new(seed, options, trace);
        if sim.trace.enabled() {
            let swarm = sim.swarm.to_string();
            sim.trace
                .emit(0, "SIM", || format!("seed {seed} swarm: {swarm}"));
        }
        sim.run();
        let outcome = SeedOutcome {
            seed,
            swarm: sim.swarm.clone(),
            violation: sim.violation.take(),
            stats: sim.stats.clone(),
        };
        (outcome, std::mem::take(&mut sim.trace).into_lines())
    }));
    match result {
        Ok(r) => r,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_string());
            let outcome = SeedOutcome {
                seed,
                swarm: swarm_for_seed(seed, options.focus),
                violation: Some(Violation {
                    kind: ViolationKind::Panic,
                    at_us: crate::simulation::SIM_NOW_US.with(|t| t.get()),
                    detail: format!("panic: {message}"),
                }),
                stats: Stats::default(),
            };
            (outcome, Vec::new())
        }
    }
}

/// The command that replays a seed with its trace.
pub fn replay_command(seed: u64, options: &Options) -> String {
    let mut cmd = String::from("cargo run --release -p synod-sim");
    if options.planted_bug.is_some() {
        cmd.push_str(" --features planted-bugs");
    }
    cmd.push_str(&format!(" -- --seed {seed} --trace"));
    if let Some(bug) = options.planted_bug {
        cmd.push_str(&format!(" --plant {}", crate::bug_name(bug)));
    }
    if options.focus != Focus::Swarm
        && Some(options.focus) != options.planted_bug.map(Focus::for_bug)
    {
        cmd.push_str(&format!(" --focus {}", crate::focus_name(options.focus)));
    }
    if options.no_watch_clients {
        cmd.push_str(" --no-watch-clients");
    }
    cmd
}

/// A progress report, delivered to the caller's callback on its own thread.
#[derive(Clone, Debug)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    pub violations: u64,
    pub elapsed: Duration,
}

impl Progress {
    pub fn seeds_per_sec(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What a multi-seed run found.
#[derive(Debug, Default)]
pub struct Summary {
    pub seeds_run: u64,
    /// The failing seeds found before the run stopped (at least the first one).
    pub failures: Vec<SeedOutcome>,
    pub wall: Duration,
    /// Totals over every seed run.
    pub sim_ms: u64,
    pub ops_ok: u64,
    pub ops_unknown: u64,
    pub faults: u64,
    /// Disks corrupted, and restarts refused because of it.
    pub corruptions: u64,
    pub refusals: u64,
    /// Newest snapshot files damaged.
    pub snapshots_damaged: u64,
    /// Synced log tails lost, peer recoveries started (starts that found a loss reported),
    /// ended by the engine, and recorded durably (`Stats`).
    pub lost_tails: u64,
    pub recoveries_started: u64,
    pub recoveries_ended: u64,
    pub recoveries_recorded: u64,
    /// Seeds with a lost-tail fault enabled.
    pub lost_tail_seeds: u64,
    /// Seeds with watch clients, and their totals (`Stats`).
    pub watch_seeds: u64,
    pub watchers_created: u64,
    pub watch_resumes: u64,
    pub watch_events: u64,
    pub watch_catchups: u64,
    pub watch_progress: u64,
    pub watch_compacted: u64,
    pub watch_streams_full: u64,
    /// Seeds with lease clients, and their totals (`Stats`).
    pub lease_seeds: u64,
    pub lease_grants: u64,
    pub lease_renewals: u64,
    pub lease_expiries: u64,
    /// Seeds whose history the linearizability search could not decide in its budget.
    pub histories_undecided: Vec<u64>,
    /// The slowest recovery in a liveness phase relative to its bound: (seed, time from
    /// healing to liveness, the bound).
    pub slowest_liveness: (u64, Duration, Duration),
}

impl Summary {
    fn add(&mut self, o: &SeedOutcome) {
        self.seeds_run += 1;
        self.sim_ms += o.stats.sim_us / 1000;
        self.ops_ok += o.stats.ops_ok;
        self.ops_unknown += o.stats.ops_unknown;
        self.faults += o.stats.faults;
        self.corruptions += o.stats.corruptions;
        self.refusals += o.stats.refusals;
        self.snapshots_damaged += o.stats.snapshots_damaged;
        self.lost_tails += o.stats.lost_tails;
        self.recoveries_started += o.stats.recoveries_started;
        self.recoveries_ended += o.stats.recoveries_ended;
        self.recoveries_recorded += o.stats.recoveries_recorded;
        self.lost_tail_seeds += u64::from(o.swarm.faults.contains(&FaultKind::LostTail));
        self.watch_seeds += u64::from(o.swarm.watch_clients > 0);
        self.watchers_created += o.stats.watchers_created;
        self.watch_resumes += o.stats.watch_resumes;
        self.watch_events += o.stats.watch_events;
        self.watch_catchups += o.stats.watch_catchups;
        self.watch_progress += o.stats.watch_progress;
        self.watch_compacted += o.stats.watch_compacted;
        self.watch_streams_full += o.stats.watch_streams_full;
        self.lease_seeds += u64::from(o.swarm.lease_clients > 0);
        self.lease_grants += o.stats.lease_grants;
        self.lease_renewals += o.stats.lease_renewals;
        self.lease_expiries += o.stats.lease_expiries;
        if o.stats.histories_undecided > 0 {
            self.histories_undecided.push(o.seed);
        }
        let liveness = Duration::from_micros(o.stats.liveness_us);
        let bound = Duration::from_micros(o.stats.liveness_bound_us.max(1));
        let (_, worst, worst_bound) = self.slowest_liveness;
        if liveness.as_secs_f64() / bound.as_secs_f64()
            > worst.as_secs_f64() / worst_bound.as_secs_f64().max(1e-9)
        {
            self.slowest_liveness = (o.seed, liveness, bound);
        }
    }
}

/// Runs seeds `first..first + count` on `threads` threads, calling `progress` at least every
/// `every`. Stops at the first violation (seeds already running finish) unless `keep_going`.
pub fn run_many(
    first: u64,
    count: u64,
    threads: usize,
    options: &Options,
    every: Duration,
    keep_going: bool,
    mut progress: impl FnMut(&Progress, Option<&SeedOutcome>),
) -> Summary {
    let start = Instant::now();
    let next = AtomicU64::new(first);
    let stop = AtomicBool::new(false);
    let end = first + count;
    let (tx, rx) = mpsc::channel::<SeedOutcome>();
    let mut options = options.clone();
    options.trace = false;
    let mut summary = Summary::default();
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            let tx = tx.clone();
            let (next, stop, options) = (&next, &stop, &options);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    if tx.send(run_seed(seed, options)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut last_report = Instant::now();
        loop {
            match rx.recv_timeout(every) {
                Ok(outcome) => {
                    summary.add(&outcome);
                    if !outcome.is_ok() {
                        stop.store(!keep_going, Ordering::Relaxed);
                        progress(&report(&summary, count, start), Some(&outcome));
                        summary.failures.push(outcome);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if last_report.elapsed() >= every {
                last_report = Instant::now();
                progress(&report(&summary, count, start), None);
            }
        }
    });
    summary.failures.sort_by_key(|f| f.seed);
    summary.wall = start.elapsed();
    summary
}

fn report(summary: &Summary, total: u64, start: Instant) -> Progress {
    Progress {
        done: summary.seeds_run,
        total,
        violations: summary.failures.len() as u64,
        elapsed: start.elapsed(),
    }
}
