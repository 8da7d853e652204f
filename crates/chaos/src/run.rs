//! One run: start a cluster behind the proxies, run the clients, inject the faults, heal,
//! measure recovery, read everything back, check.

use crate::bank::{self, BankCounts};
use crate::checks;
use crate::clients::Roster;
use crate::cluster::{Cluster, ClusterSpec};
use crate::history::OpCounts;
use crate::nemesis::{self, FaultRecord, Scenario};
use crate::recovery;
use crate::workload::{self, Shared, WorkloadSpec};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use synod_check::{Op, Response};
use synod_testkit::rng::Rng;

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub seed: u64,
    /// How long faults are injected (a fault under way is finished).
    pub duration: Duration,
    pub scenario: Scenario,
    pub cluster: ClusterSpec,
    pub workload: WorkloadSpec,
    /// (c): after healing, every member must serve a write and a linearizable read within
    /// this, and a member that lost its log tail must have finished recovering from its peers
    /// within it.
    pub recovery_bound: Duration,
    /// Keep the members' logs and data even when nothing was found.
    pub keep_logs: bool,
    /// Where run directories go [default: the system's temporary directory].
    pub base_dir: Option<PathBuf>,
    /// Print each fault as it is injected.
    pub verbose: bool,
}

/// Election and heartbeat as in the server's own end-to-end tests: fast enough that a
/// minute of faults holds dozens of elections.
pub const HEARTBEAT_MS: u64 = 20;
pub const ELECTION_MS: u64 = 200;

/// Snapshots every 2,000 commands (etcd's default is 100,000) and 256 KiB log segments, so
/// that a run of a minute or two takes snapshots, compacts the log, deletes segments, and
/// brings members that were down or cut off back through snapshot transfer.
pub const DEFAULT_MEMBER_FLAGS: [&str; 2] = ["--snapshot-count=2000", "--wal-segment-bytes=262144"];

impl RunConfig {
    pub fn new(binary: PathBuf, nodes: usize, duration: Duration, seed: u64) -> RunConfig {
        RunConfig {
            seed,
            duration,
            scenario: Scenario::Random(crate::schedule::ALL_FAULTS.to_vec()),
            cluster: ClusterSpec {
                nodes,
                binary,
                heartbeat_ms: HEARTBEAT_MS,
                election_ms: ELECTION_MS,
                request_timeout_ms: 2000,
                flags: DEFAULT_MEMBER_FLAGS.iter().map(|f| f.to_string()).collect(),
                member_flags: Vec::new(),
                log_level: "info".into(),
            },
            workload: WorkloadSpec::default(),
            recovery_bound: Duration::from_secs(10),
            keep_logs: false,
            base_dir: None,
            verbose: false,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct RunReport {
    pub nodes: usize,
    pub seed: u64,
    pub ops: OpCounts,
    pub bank: BankCounts,
    /// Faults and membership changes ([`is_change`]), in order.
    pub faults: Vec<FaultRecord>,
    /// Time some fault was in force (membership changes not counted).
    pub fault_time: Duration,
    /// From healing until every member served a write and a linearizable read.
    pub recovery: Option<Duration>,
    /// Members whose log tail was destroyed (`lost-tail`), what was done, and their recovery.
    pub lost_tails: Vec<crate::tail::LostTail>,
    pub check_time: Duration,
    /// The longest an isolated member kept answering reads after being cut off, and how many
    /// reads it answered so (see `checks::isolated_reads`).
    pub isolated_read_longest: Option<Duration>,
    pub isolated_reads: u64,
    pub violations: Vec<String>,
    /// Members at the start and at the end (they differ after membership changes).
    pub members_final: usize,
    /// Membership changes asked for, and how many the member table showed done.
    pub changes: u64,
    pub changes_done: u64,
    /// The most members the cluster had at once.
    pub members_max: usize,
    /// Kept when something was found (or when asked).
    pub log_dir: Option<PathBuf>,
    pub wall: Duration,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The summary, then how long isolated members went on answering, each violation and
    /// where the run's directory was kept: what a person reads after a run.
    pub fn details(&self) -> String {
        let mut out = self.summary();
        if let Some(longest) = self.isolated_read_longest {
            out += &format!(
                "\n  isolated members answered {} reads after being cut off, the last {:.0}ms \
                 after the cut",
                self.isolated_reads,
                longest.as_secs_f64() * 1000.0
            );
        }
        for v in &self.violations {
            out += &format!("\n  VIOLATION: {v}");
        }
        if let Some(dir) = &self.log_dir {
            out += &format!("\n  logs and data kept in {}", dir.display());
        }
        out
    }

    /// One line per run.
    pub fn summary(&self) -> String {
        let membership = if self.changes > 0 {
            format!(
                " and {} membership changes ({} done; up to {} members, {} at the end)",
                self.changes, self.changes_done, self.members_max, self.members_final
            )
        } else {
            String::new()
        };
        let tails = if self.lost_tails.is_empty() {
            String::new()
        } else {
            let times: Vec<Duration> = self
                .lost_tails
                .iter()
                .filter_map(|t| t.recovery_time())
                .collect();
            format!(
                ", {} lost tails ({} seen recovered, the slowest in {:.2}s)",
                self.lost_tails.len(),
                times.len(),
                times.iter().max().map_or(0.0, |d| d.as_secs_f64())
            )
        };
        format!(
            "{} nodes, seed {}: {} ops ({} ok, {} unknown, {} failed), {} bank reads, {} \
             transfers, {} faults{membership} over {:.0}s, recovery {}{tails}, check {:.1}s, \
             {} violation(s)",
            self.nodes,
            self.seed,
            self.ops.total(),
            self.ops.ok,
            self.ops.unknown,
            self.ops.failed,
            self.bank.reads,
            self.bank.transfers_ok,
            self.faults.len() as u64 - self.changes,
            self.fault_time.as_secs_f64(),
            self.recovery
                .map_or("NONE".into(), |r| format!("{:.2}s", r.as_secs_f64())),
            self.check_time.as_secs_f64(),
            self.violations.len()
        )
    }
}

/// Runs once. `Err` is a failure of the harness itself (no cluster came up), not a finding.
pub async fn run(cfg: &RunConfig) -> Result<RunReport, String> {
    let wall = Instant::now();
    let n = cfg.cluster.nodes;
    let mut rng = Rng::new(cfg.seed);
    let base = cfg.base_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("synod-chaos-{n}n-seed{}-", cfg.seed))
        .tempdir_in(&base)
        .map_err(|e| format!("a run directory in {}: {e}", base.display()))?;
    let mut cluster = Cluster::start(&cfg.cluster, dir.path(), cfg.seed)
        .await
        .map_err(|e| format!("starting the cluster: {e}"))?;
    let roster = cluster.roster.clone();
    if let Err(e) = cluster.wait_leader(Duration::from_secs(30)).await {
        let _ = dir.keep();
        return Err(format!("{e} (logs in {})", cluster.dir.display()));
    }
    let shared = Shared::new();
    // Whatever way this function returns, the clients stop.
    let _stop = StopOnDrop(shared.clone());
    bank::init(
        roster.clone(),
        &cfg.workload,
        &shared,
        Duration::from_secs(30),
    )
    .await?;
    let workers = start_workers(&roster, &cfg.workload, &shared, &mut rng);

    let run_start = Instant::now();
    let mut nemesis_rng = rng.fork();
    let nemesis = nemesis::run(
        &mut cluster,
        &cfg.scenario,
        cfg.duration,
        &mut nemesis_rng,
        run_start,
        cfg.verbose,
    )
    .await
    .map_err(|e| format!("injecting faults: {e}"))?;
    let faults = nemesis.records;
    let nemesis_max = nemesis.members_max;
    let mut violations = nemesis.findings;
    cluster.heal_all().map_err(|e| format!("healing: {e}"))?;
    let healed_at = Instant::now();
    let membership_changed = faults.iter().any(|f| is_change(&f.kind));
    if membership_changed {
        // Go by the member table: an add that timed out may have landed (its member is
        // started now), a remove too.
        if let Err(e) = membership_table(&mut cluster, &mut nemesis_rng).await {
            violations.push(format!("membership: no member table after healing: {e}"));
        }
    }
    let finals_at = cluster.current();
    let recovery = recovery::measure(&roster, &finals_at, cfg.recovery_bound * 3, &shared).await;
    // A member recovering from a lost tail already forwards writes and linearizable reads,
    // so the probe above may pass before it is done: its recovery is waited for on its own.
    for i in cluster
        .tails
        .wait_recovered(healed_at + cfg.recovery_bound)
        .await
    {
        violations.push(format!(
            "progress: {} had not finished recovering from its lost log tail {:?} after \
             healing (its LOST_TAIL marker {}; log ends: {})",
            crate::schedule::name(i),
            cfg.recovery_bound,
            crate::nemesis::marker(&cluster, i),
            cluster.members[i].log_tail(1)
        ));
    }
    let lost_tails = cluster.tails.all();

    shared.stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let finals = final_reads(&roster, &finals_at, &cfg.workload, &shared).await;
    let mut members = crate::clients::Members::over(roster.clone(), cfg.workload.op_timeout);
    for &i in &finals_at {
        if let Some(c) = members.client(i).await {
            let client = (workload::HARNESS_CLIENT, i);
            bank::read_and_check(c, false, &cfg.workload, &shared, client).await;
        }
    }
    // A removed member stops by itself once the change is in force (one that was down then
    // learns it when it is back): give the last ones the recovery bound to do so.
    let stop_by = Instant::now() + cfg.recovery_bound;
    while !cluster.removed_but_running().is_empty() && Instant::now() < stop_by {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (i, since) in cluster.removed_but_running() {
        violations.push(format!(
            "membership: {} still runs {:.1}s after its removal (log ends: {})",
            crate::schedule::name(i),
            since.as_secs_f64(),
            cluster.members[i].log_tail(1)
        ));
    }
    let unrouted = cluster.unrouted_connections();
    if unrouted > 0 {
        eprintln!(
            "warning: {unrouted} peer connection(s) reached a front door from an unknown \
             sender and went through unfaulted (did the transport's hello change?)"
        );
    }
    let crashes = cluster.crashes();
    let members_final = finals_at.len();
    cluster.shutdown();

    let check_start = Instant::now();
    let history = shared.recorder.history();
    let lin = tokio::task::spawn_blocking(move || checks::linearizable(&history))
        .await
        .map_err(|e| format!("the checker panicked: {e}"))?;
    let check_time = check_start.elapsed();
    if let Err(e) = lin {
        violations.push(format!("linearizability: {e}"));
    }
    let snapshot = shared.recorder.snapshot();
    let ops: Vec<_> = snapshot.iter().map(|(o, _)| o.clone()).collect();
    violations.extend(checks::lost_writes(&ops, &finals));
    violations.extend(shared.bank.violations());
    violations.extend(
        shared
            .anomalies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|a| format!("unexpected answer: {a}")),
    );
    violations.extend(
        crashes
            .iter()
            .map(|(m, s)| format!("{m} exited on its own: {s}")),
    );
    match recovery {
        Some(r) if r <= cfg.recovery_bound => {}
        Some(r) => violations.push(format!(
            "progress: {r:.2?} after healing before every member served a write and a read \
             (bound {:?})",
            cfg.recovery_bound
        )),
        None => violations.push(format!(
            "progress: some member served no write or read within {:?} of healing",
            cfg.recovery_bound * 3
        )),
    }
    if finals.len() as u64 != cfg.workload.keys {
        violations.push(format!(
            "final reads: only {} of {} registers could be read after healing",
            finals.len(),
            cfg.workload.keys
        ));
    }
    let (isolated_read_longest, isolated_reads) = checks::isolated_reads(&snapshot, &faults);

    let log_dir = (!violations.is_empty() || cfg.keep_logs).then(|| dir.keep());
    if let Some(d) = &log_dir {
        if let Err(e) = crate::evidence::write(d, run_start, &snapshot, &faults, &violations) {
            eprintln!("could not write the evidence into {}: {e}", d.display());
        }
    }
    let changes: Vec<&FaultRecord> = faults.iter().filter(|f| is_change(&f.kind)).collect();
    Ok(RunReport {
        nodes: n,
        members_final,
        members_max: nemesis_max.max(members_final),
        changes: changes.len() as u64,
        changes_done: changes
            .iter()
            .filter(|f| !f.description.ends_with("(NOT DONE)"))
            .count() as u64,
        seed: cfg.seed,
        ops: shared.recorder.counts(),
        bank: shared.bank.counts(),
        fault_time: faults
            .iter()
            .filter(|f| !is_change(&f.kind))
            .map(|f| f.held)
            .sum(),
        faults,
        recovery,
        lost_tails,
        check_time,
        isolated_read_longest,
        isolated_reads,
        violations,
        log_dir,
        wall: wall.elapsed(),
    })
}

/// Sets `stop` when dropped.
struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

/// Whether a record is a membership change (not a fault).
pub fn is_change(kind: &str) -> bool {
    kind.starts_with("member-") || kind == "move-leader"
}

/// Brings the harness in line with the member table, retrying while members recover.
async fn membership_table(cluster: &mut Cluster, rng: &mut Rng) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match crate::membership::refresh(cluster, rng).await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// The register clients (plus pinned readers) and the bank clients.
fn start_workers(
    roster: &Arc<Roster>,
    spec: &WorkloadSpec,
    shared: &Arc<Shared>,
    rng: &mut Rng,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut workers = Vec::new();
    let (pinned_at, pinned) = spec.pinned_readers.unwrap_or((0, 0));
    for id in 1..=(spec.register_clients + pinned) as u64 {
        let pin = (id as usize > spec.register_clients).then_some(pinned_at);
        workers.push(tokio::spawn(workload::register_worker(
            id,
            roster.clone(),
            spec.clone(),
            shared.clone(),
            rng.fork(),
            pin,
        )));
    }
    let first_bank_client = (spec.register_clients + pinned) as u64 + 1;
    for id in first_bank_client..first_bank_client + spec.bank_clients as u64 {
        workers.push(tokio::spawn(bank::bank_worker(
            id,
            roster.clone(),
            spec.clone(),
            shared.clone(),
            rng.fork(),
        )));
    }
    workers
}

/// Reads every register at every member in `at` after healing, into the history; returns
/// each register's last value read.
async fn final_reads(
    roster: &Arc<Roster>,
    at: &[usize],
    spec: &WorkloadSpec,
    shared: &Shared,
) -> BTreeMap<u64, Option<u64>> {
    let mut members = crate::clients::Members::over(roster.clone(), spec.op_timeout);
    let mut finals = BTreeMap::new();
    for key in 1..=spec.keys {
        for &node in at {
            // A healed cluster answers; a few tries cover a member still catching up.
            for _ in 0..10 {
                let op = Op::Get { key };
                let (client, timeout) = (workload::HARNESS_CLIENT, spec.op_timeout);
                let outcome = workload::run_one(client, &op, node, &mut members, timeout, shared);
                if let Some(Response::Get { read, .. }) = outcome.await.answer() {
                    finals.insert(key, read.value);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    finals
}
