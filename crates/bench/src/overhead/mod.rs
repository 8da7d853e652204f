//! Engine overhead: three replicas in one thread, in-memory storage, messages
//! delivered by function call and closed-loop proposers at the leader. With disk and network
//! out of the picture, commands/s and latency are bounded by the engine's own cost: the CPU
//! time of its handlers and the memory it allocates and keeps.

mod cluster;
mod proposers;
pub mod report;

pub use cluster::{Cluster, ClusterError};
pub use proposers::{Proposers, Window, PAYLOAD_BYTES_MAX};

use std::fmt;
use std::time::{Duration, Instant};
use synod_paxos::{Config, NodeId};

/// The cluster size measured, the same as for the [`REFERENCES`] ("measured the same way").
pub const REPLICAS: u64 = 3;

/// Wall time per engine tick. With the default 10-tick heartbeat and 100-tick election
/// timeout, heartbeats run every 10 ms: present, as in production, but rare enough that the
/// measurement is about the command path.
pub const TICK: Duration = Duration::from_millis(1);

/// How long nothing may move while proposals are outstanding before the run is declared
/// stuck. Far above any retransmission interval (a heartbeat interval, 10 ms).
const STALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The event loop reads the clock once per this many passes. A pass can take well under a
/// microsecond with one proposer, so reading the clock every pass would be a visible part of
/// what is measured; eight passes are still far below a tick.
const CLOCK_EVERY_PASSES: u32 = 8;

/// A workload shape: how many closed-loop proposers, and commands per proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scenario {
    pub proposers: usize,
    pub batch: usize,
}

impl Scenario {
    pub const fn new(proposers: usize, batch: usize) -> Scenario {
        Scenario { proposers, batch }
    }

    /// The most commands the leader may have to queue at once.
    pub fn outstanding_commands(&self) -> usize {
        self.proposers * self.batch
    }
}

impl fmt::Display for Scenario {
    /// `p64b16`: 64 proposers, 16 commands per proposal; the name `--scenario` takes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}b{}", self.proposers, self.batch)
    }
}

/// The scenarios measured (1 to 256 proposers, 1 to 256 commands per proposal), in the order
/// they are run and reported.
pub const SCENARIOS: [Scenario; 7] = [
    Scenario::new(1, 1),
    Scenario::new(64, 1),
    Scenario::new(256, 1),
    Scenario::new(1, 16),
    Scenario::new(64, 16),
    Scenario::new(1, 256),
    Scenario::new(64, 256),
];

/// Commands/s that mature Rust consensus libraries reach when measured this way on the
/// 2-core benchmark machine: what the measurements are set against (docs/BENCHMARKS.md).
pub const REFERENCES: [(Scenario, f64); 2] = [
    (Scenario::new(1, 1), 19_000.0),
    (Scenario::new(64, 1), 585_000.0),
];

pub fn reference(scenario: Scenario) -> Option<f64> {
    REFERENCES
        .iter()
        .find(|(s, _)| *s == scenario)
        .map(|&(_, commands_per_sec)| commands_per_sec)
}

#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub warmup: Duration,
    pub duration: Duration,
    pub payload_bytes: usize,
}

/// The engine configuration a scenario runs with: the defaults, except that the leader's
/// queue must hold every command the proposers can have outstanding, or proposals would fail
/// with `Busy` instead of measuring anything.
pub fn engine_config(id: NodeId, scenario: Scenario) -> Config {
    let mut config = Config::new(id);
    config.pending_commands_max = config
        .pending_commands_max
        .max(scenario.outstanding_commands());
    config
}

/// One scenario's result.
#[derive(Debug)]
pub struct Measurement {
    pub scenario: Scenario,
    pub elapsed: Duration,
    pub window: Window,
    /// Time the benchmark thread spent on a CPU during the measurement (Linux only). On a
    /// busy machine it is well below `elapsed`: the rest went to other processes.
    pub on_cpu: Option<Duration>,
    /// Resident memory at the end of the run, before the cluster is dropped (Linux only).
    pub resident_mib: Option<f64>,
}

impl Measurement {
    pub fn commands_per_sec(&self) -> f64 {
        self.window.commands as f64 / self.elapsed.as_secs_f64()
    }

    pub fn proposals_per_sec(&self) -> f64 {
        self.window.proposals as f64 / self.elapsed.as_secs_f64()
    }

    pub fn commands_per_slot(&self) -> f64 {
        self.window.commands as f64 / self.window.slots.max(1) as f64
    }

    /// The share of the measured wall time the benchmark thread was running.
    pub fn cpu_share(&self) -> Option<f64> {
        Some(self.on_cpu?.as_secs_f64() / self.elapsed.as_secs_f64())
    }

    /// Commands per second of the thread's own CPU time: what the machine would give
    /// without competing processes (for this single-threaded loop).
    pub fn commands_per_cpu_sec(&self) -> Option<f64> {
        let on_cpu = self.on_cpu?.as_secs_f64();
        (on_cpu > 0.0).then(|| self.window.commands as f64 / on_cpu)
    }

    pub fn latency_us(&self, quantile: f64) -> f64 {
        self.window.latency_ns.value_at_quantile(quantile) as f64 / 1_000.0
    }
}

/// Runs one scenario: elect, warm up, then measure for `params.duration`.
pub fn run(scenario: Scenario, params: &Params) -> Result<Measurement, ClusterError> {
    let mut cluster = Cluster::start(REPLICAS, |id| engine_config(id, scenario))?;
    let mut proposers = Proposers::new(scenario.proposers, scenario.batch, params.payload_bytes);
    let mut clock = TickClock::new(Instant::now());
    // Warm-up fills caches and grows the engines' queues to their working size; its
    // numbers are thrown away.
    let mut warmup = Window::new();
    let until = Instant::now() + params.warmup;
    drive(&mut cluster, &mut proposers, &mut clock, &mut warmup, until)?;
    let mut window = Window::new();
    let cpu_before = thread_cpu_time();
    let start = Instant::now();
    let until = start + params.duration;
    drive(&mut cluster, &mut proposers, &mut clock, &mut window, until)?;
    let elapsed = start.elapsed();
    let on_cpu = match (cpu_before, thread_cpu_time()) {
        (Some(before), Some(after)) => after.checked_sub(before),
        _ => None,
    };
    Ok(Measurement {
        scenario,
        elapsed,
        window,
        on_cpu,
        resident_mib: resident_mib(),
    })
}

/// The event loop: idle proposers propose, every engine's output is handled and every
/// message delivered, and the engines tick as wall time passes; until `until`.
fn drive(
    cluster: &mut Cluster,
    proposers: &mut Proposers,
    clock: &mut TickClock,
    window: &mut Window,
    until: Instant,
) -> Result<(), ClusterError> {
    let mut quiet_since: Option<Instant> = None;
    let mut moved_since_clock = false;
    let mut passes_to_clock = CLOCK_EVERY_PASSES;
    loop {
        proposers.propose_idle(cluster)?;
        moved_since_clock |= cluster.pump(&mut |committed| proposers.on_applied(committed, window));
        passes_to_clock -= 1;
        if passes_to_clock > 0 {
            continue;
        }
        passes_to_clock = CLOCK_EVERY_PASSES;
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        if clock.due(now) {
            cluster.tick()?;
        }
        quiet_since = if moved_since_clock {
            None
        } else {
            quiet_since.or(Some(now))
        };
        moved_since_clock = false;
        if quiet_since.is_some_and(|since| now - since > STALL_TIMEOUT) {
            return Err(ClusterError::Stalled {
                secs: STALL_TIMEOUT.as_secs(),
            });
        }
    }
}

/// Turns wall time into engine ticks, at most one per clock reading: if the process was
/// descheduled, ticks catch up gradually with every message delivered in between, so a burst
/// of ticks cannot expire election timeouts that the heartbeats would have renewed.
#[derive(Debug)]
struct TickClock {
    start: Instant,
    ticks: u64,
}

impl TickClock {
    fn new(start: Instant) -> TickClock {
        TickClock { start, ticks: 0 }
    }

    fn due(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.start).as_nanos() / TICK.as_nanos();
        if elapsed > u128::from(self.ticks) {
            self.ticks += 1;
            true
        } else {
            false
        }
    }
}

/// Time this thread has run on a CPU, from the scheduler's accounting (None where
/// /proc/thread-self/schedstat does not exist).
fn thread_cpu_time() -> Option<Duration> {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = schedstat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// The process's resident set size from /proc (None where that does not exist).
fn resident_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short real run: the driver elects, proposes, sees every batch applied exactly once
    /// in order (asserted inside) and counts what it saw consistently.
    #[test]
    fn short_run_measures_applied_commands() {
        let params = Params {
            warmup: Duration::from_millis(10),
            duration: Duration::from_millis(50),
            payload_bytes: 16,
        };
        let m = run(Scenario::new(4, 3), &params).expect("run succeeds");
        assert!(m.window.proposals > 0);
        assert_eq!(m.window.latency_ns.len(), m.window.proposals);
        assert!(m.window.commands >= m.window.slots);
        assert!(m.commands_per_sec() > 0.0);
    }

    #[test]
    fn scenario_names_are_unique() {
        let mut names: Vec<String> = SCENARIOS.iter().map(|s| s.to_string()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), SCENARIOS.len());
        assert_eq!(SCENARIOS[1].to_string(), "p64b1");
    }
}
