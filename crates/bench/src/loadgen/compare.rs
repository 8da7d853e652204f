//! `synod-bench compare`: a 3-member etcd cluster, then a 3-member Synod cluster, on loopback
//! with data on the same filesystem, each driven by the same workloads from the same client;
//! then the ratios Synod/etcd, a JSON file and a PNG plot. The watch and lease workloads
//! ([`super::scenario`]) run on the same clusters, before the closed-loop ones.

use super::binaries::{ensure_etcd, ensure_synod, version_of};
use super::cli::{connections, CompareArgs, ComparePlan};
use super::cluster::{Cluster, System};
use super::report::{self, ComparePoint, Ratios, RunResult};
use super::runner::{self, CpuProbe, RunConfig};
use super::scenario::{self, median_result, Scenario, ScenarioResult, Settings, Target};
use super::scenario_report::{self, Row, ScenarioPoint};
use super::sys;
use super::workload::Workload;
use serde::Serialize;
use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Generous: etcd elects within a few seconds, Synod within about one election timeout.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Serialize)]
struct Output<'a> {
    command: &'a str,
    machine: String,
    filesystem: Option<String>,
    etcd_version: Option<String>,
    synod_version: Option<String>,
    synod_binary: Option<String>,
    clients: &'a [usize],
    workloads: &'a [Workload],
    duration_s: f64,
    warmup_s: f64,
    /// With several rounds, each point shows the run of median throughput; `all_runs` has
    /// every run.
    points: Vec<PointOutput<'a>>,
    rounds: u64,
    all_runs: Vec<SystemRun<'a>>,
    /// The watch and lease workloads: their sizes, then per workload the median run of each
    /// system (by its first figure) with the figures side by side, then every run.
    scenario_settings: Option<Settings>,
    scenarios: Vec<ScenarioOutput<'a>>,
    all_scenario_runs: Vec<SystemScenarioRun<'a>>,
}

#[derive(Debug, Serialize)]
struct ScenarioOutput<'a> {
    #[serde(flatten)]
    point: &'a ScenarioPoint,
    rows: Vec<Row>,
}

#[derive(Debug, Serialize)]
struct SystemScenarioRun<'a> {
    system: System,
    #[serde(flatten)]
    run: &'a ScenarioResult,
}

#[derive(Debug, Serialize)]
struct SystemRun<'a> {
    system: System,
    #[serde(flatten)]
    run: &'a RunResult,
}

fn note_round(round: u64, rounds: u64) {
    if rounds > 1 {
        eprintln!("round {round} of {rounds}");
    }
}

/// The run of median throughput (the lower middle one for an even count): one disturbed run
/// among three moves nothing, and its latencies and CPU stay those of one real run.
pub fn median_run(runs: Option<&Vec<RunResult>>) -> Option<RunResult> {
    let mut runs: Vec<&RunResult> = runs?.iter().collect();
    if runs.is_empty() {
        return None;
    }
    runs.sort_by(|a, b| a.throughput.total_cmp(&b.throughput));
    Some(runs[(runs.len() - 1) / 2].clone())
}

#[derive(Debug, Serialize)]
struct PointOutput<'a> {
    #[serde(flatten)]
    point: &'a ComparePoint,
    ratios: Ratios,
}

/// What `compare` measured.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub points: Vec<ComparePoint>,
    pub scenarios: Vec<ScenarioPoint>,
}

pub async fn run(args: &CompareArgs, command_line: &str) -> Result<Comparison, String> {
    let plan = args.plan()?;
    let params = args.load.workload_params();
    params.validate()?;
    let settings = args
        .scenario
        .settings(params.value_size, plan.warmup, plan.duration)?;
    let systems = match args.only {
        Some(system) => vec![system],
        None => vec![System::Etcd, System::Synod],
    };

    let data_parent = args.out.join("data");
    fs::create_dir_all(&data_parent)
        .map_err(|e| format!("cannot create {}: {e}", data_parent.display()))?;
    let filesystem = sys::filesystem_type(&data_parent);
    if filesystem.as_deref() == Some("tmpfs") && !args.allow_tmpfs {
        return Err(format!(
            "{} is on tmpfs, where fsync costs nothing; use --out on a disk (or --allow-tmpfs)",
            data_parent.display()
        ));
    }

    let mut binaries = HashMap::new();
    let mut versions = HashMap::new();
    for &system in &systems {
        let binary = match system {
            System::Etcd => ensure_etcd(args.etcd_bin.as_deref(), args.etcd_debian)?,
            System::Synod => ensure_synod(args.synod_bin.as_deref())?,
        };
        versions.insert(system, version_of(&binary));
        binaries.insert(system, binary);
    }
    eprintln!(
        "machine: {}; load average {}; data on {} ({})",
        sys::machine_description(),
        sys::load_average().map_or("?".into(), |l| format!("{l:.2}")),
        data_parent.display(),
        filesystem.as_deref().unwrap_or("?")
    );
    for (system, version) in &versions {
        eprintln!(
            "{system}: {} ({})",
            binaries[system].display(),
            version.as_deref().unwrap_or("version unknown")
        );
    }

    // Every run of every round, per system and point (and per system and scenario).
    let mut results: HashMap<(System, Workload, usize), Vec<RunResult>> = HashMap::new();
    let mut scenario_runs: HashMap<(System, Scenario), Vec<ScenarioResult>> = HashMap::new();
    let start = |system: System| {
        let flags = match system {
            System::Etcd => &args.etcd_flags,
            System::Synod => &args.synod_flags,
        };
        Running::start(system, &binaries[&system], flags, args, &data_parent)
    };
    if args.interleave {
        // Both clusters up at once (the idle one costs next to nothing), each point run on
        // one right after the other, so slow changes in the machine's other load hit both.
        let mut running = Vec::new();
        for &system in &systems {
            running.push(start(system).await?);
        }
        for round in 1..=args.rounds {
            note_round(round, args.rounds);
            for &scenario in &plan.scenarios {
                for r in &mut running {
                    let result = r.scenario(scenario, &settings).await?;
                    scenario_runs
                        .entry((r.system(), scenario))
                        .or_default()
                        .push(result);
                }
            }
            for &workload in &plan.workloads {
                for &clients in &plan.clients {
                    for r in &mut running {
                        let result = r.point(args, &plan, workload, clients).await?;
                        let key = (r.system(), workload, clients);
                        results.entry(key).or_default().push(result);
                    }
                }
            }
        }
        for r in &mut running {
            r.finish(args).await?;
        }
    } else {
        for round in 1..=args.rounds {
            note_round(round, args.rounds);
            for &system in &systems {
                let mut r = start(system).await?;
                for &scenario in &plan.scenarios {
                    let result = r.scenario(scenario, &settings).await?;
                    scenario_runs
                        .entry((system, scenario))
                        .or_default()
                        .push(result);
                }
                for &workload in &plan.workloads {
                    for &clients in &plan.clients {
                        let result = r.point(args, &plan, workload, clients).await?;
                        let key = (system, workload, clients);
                        results.entry(key).or_default().push(result);
                    }
                }
                r.finish(args).await?;
            }
        }
    }

    let mut points = Vec::new();
    for &workload in &plan.workloads {
        for &clients in &plan.clients {
            points.push(ComparePoint {
                workload,
                clients,
                etcd: median_run(results.get(&(System::Etcd, workload, clients))),
                synod: median_run(results.get(&(System::Synod, workload, clients))),
            });
        }
    }
    let scenarios: Vec<ScenarioPoint> = plan
        .scenarios
        .iter()
        .map(|&scenario| ScenarioPoint {
            scenario,
            etcd: median_result(scenario_runs.get(&(System::Etcd, scenario))),
            synod: median_result(scenario_runs.get(&(System::Synod, scenario))),
        })
        .collect();
    if !scenarios.is_empty() {
        println!("{}", scenario_report::table(&scenarios));
    }
    if !points.is_empty() {
        println!("{}", report::compare_table(&points));
    }
    for p in &points {
        for r in [&p.etcd, &p.synod].into_iter().flatten() {
            if r.errors > 0 {
                println!(
                    "{} x{}: {} errors, e.g. {:?}",
                    r.workload, r.clients, r.errors, r.error_samples
                );
            }
        }
    }

    let all_runs: Vec<SystemRun> = results
        .iter()
        .flat_map(|((system, _, _), runs)| {
            runs.iter().map(|run| SystemRun {
                system: *system,
                run,
            })
        })
        .collect();
    let output = Output {
        command: command_line,
        machine: sys::machine_description(),
        filesystem,
        etcd_version: versions.get(&System::Etcd).cloned().flatten(),
        synod_version: versions.get(&System::Synod).cloned().flatten(),
        synod_binary: binaries
            .get(&System::Synod)
            .map(|b| b.display().to_string()),
        clients: &plan.clients,
        workloads: &plan.workloads,
        duration_s: plan.duration.as_secs_f64(),
        warmup_s: plan.warmup.as_secs_f64(),
        points: points
            .iter()
            .map(|point| PointOutput {
                point,
                ratios: point.ratios(),
            })
            .collect(),
        rounds: args.rounds,
        all_runs,
        scenario_settings: (!plan.scenarios.is_empty()).then_some(settings),
        scenarios: scenarios
            .iter()
            .map(|point| ScenarioOutput {
                point,
                rows: point.rows(),
            })
            .collect(),
        all_scenario_runs: scenario_runs
            .iter()
            .flat_map(|((system, _), runs)| {
                runs.iter().map(|run| SystemScenarioRun {
                    system: *system,
                    run,
                })
            })
            .collect(),
    };
    let json_path = args.out.join("compare.json");
    let json = serde_json::to_string_pretty(&output).map_err(|e| format!("JSON: {e}"))?;
    fs::write(&json_path, json + "\n")
        .map_err(|e| format!("cannot write {}: {e}", json_path.display()))?;
    let md_path = args.out.join("compare.md");
    let mut markdown = String::new();
    if !scenarios.is_empty() {
        markdown += &scenario_report::markdown(&scenarios);
        markdown.push('\n');
    }
    if !points.is_empty() {
        markdown += &report::compare_markdown(&points);
    }
    fs::write(&md_path, markdown)
        .map_err(|e| format!("cannot write {}: {e}", md_path.display()))?;
    eprintln!("wrote {} and {}", json_path.display(), md_path.display());

    let mut plots = vec![args.out.join("compare.png")];
    plots.extend(args.plot.clone());
    for path in plots.iter().filter(|_| !points.is_empty()) {
        match super::plot::draw(&points, path) {
            Ok(()) => eprintln!("wrote {}", path.display()),
            Err(e) => eprintln!("no plot at {}: {e}", path.display()),
        }
    }
    Ok(Comparison { points, scenarios })
}

/// One running cluster and what the points run against it need.
struct Running {
    cluster: Cluster,
    /// The leader's first, see [`Running::start`]; only the leader's with --target-leader.
    endpoints: Vec<String>,
    /// The watch and lease workloads' view: every member, the leader's endpoint first.
    target: Target,
    probe: CpuProbe,
    prefilled: bool,
}

impl Running {
    /// Starts a cluster and waits for a leader.
    async fn start(
        system: System,
        binary: &Path,
        flags: &[String],
        args: &CompareArgs,
        data_parent: &Path,
    ) -> Result<Running, String> {
        let log_dir = args.out.join("logs");
        eprintln!(
            "starting a {}-member {system} cluster",
            super::cluster::MEMBERS
        );
        let mut cluster = Cluster::start(system, binary, data_parent, &log_dir, flags)?;
        let leader = cluster.wait_ready(READY_TIMEOUT).await?;
        // The leader's endpoint first: a single client (one connection) then talks to the
        // leader on both systems, rather than to whichever member happened to be listed
        // first.
        let mut endpoints = cluster.endpoints();
        endpoints.rotate_left(leader);
        let target = Target {
            system,
            endpoints: endpoints.clone(),
            pids: cluster.pids(),
        };
        if args.load.target_leader {
            endpoints.truncate(1);
        }
        let pids = cluster.pids();
        eprintln!(
            "{system} ready: leader {} (pid {}), pids {pids:?}, logs in {}",
            cluster.members[leader].name,
            pids[leader],
            log_dir.display()
        );
        Ok(Running {
            cluster,
            endpoints,
            target,
            probe: Arc::new(move || Cluster::cpu_seconds(&pids)),
            prefilled: false,
        })
    }

    fn system(&self) -> System {
        self.cluster.system
    }

    /// One workload at one client count.
    async fn point(
        &mut self,
        args: &CompareArgs,
        plan: &ComparePlan,
        workload: Workload,
        clients: usize,
    ) -> Result<RunResult, String> {
        let system = self.system();
        self.cluster.check_running()?;
        // The keyspace is written once per cluster, before its first read workload.
        let prefill = workload.reads() && !self.prefilled && !args.load.no_prefill;
        let cfg = RunConfig {
            endpoints: self.endpoints.clone(),
            workload,
            params: args.load.workload_params(),
            clients,
            connections: connections(args.load.connections, clients),
            warmup: plan.warmup,
            duration: plan.duration,
            prefill,
            progress: Some(format!("[{system} {workload} x{clients}] ")),
            server_cpu: Some(self.probe.clone()),
        };
        let result = runner::run(cfg).await?;
        self.prefilled |= prefill;
        if let Some(n) = result.background_ops {
            eprintln!("[{system} {workload} x{clients}] {n} background operations meanwhile");
        }
        eprintln!(
            "[{system} {workload} x{clients}] {} ops/s, p50 {} ms, p99 {} ms, {} CPU-s/1k ops, \
             {} errors, load average {}",
            report::thousands(result.throughput),
            report::ms(result.latency.p50_us),
            report::ms(result.latency.p99_us),
            result
                .server_cpu_s_per_1k_ops
                .map_or("?".into(), |c| format!("{c:.3}")),
            result.errors,
            result
                .load_average_after
                .map_or("?".into(), |l| format!("{l:.2}")),
        );
        Ok(result)
    }

    /// One watch or lease workload.
    async fn scenario(
        &mut self,
        scenario: Scenario,
        settings: &Settings,
    ) -> Result<ScenarioResult, String> {
        self.cluster.check_running()?;
        // A workload that cannot run on one system (a service it lacks, say) is reported as
        // such and the comparison goes on; a member that died still ends it.
        let result = scenario::run(&self.target, scenario, settings)
            .await
            .unwrap_or_else(|e| ScenarioResult {
                scenario,
                metrics: Vec::new(),
                problems: vec![format!("did not complete: {e}")],
                details: serde_json::Value::Null,
            });
        self.cluster.check_running()?;
        for problem in &result.problems {
            eprintln!("{}{problem}", self.target.label(scenario));
        }
        Ok(result)
    }

    /// Checks the members survived, holds the cluster if asked, then stops it.
    async fn finish(&mut self, args: &CompareArgs) -> Result<(), String> {
        self.cluster.check_running()?;
        if args.hold {
            eprintln!(
                "holding the {} cluster (endpoints {}); Ctrl-C to stop",
                self.system(),
                self.endpoints.join(",")
            );
            let _ = tokio::signal::ctrl_c().await;
        }
        self.cluster.stop();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::report::tests::result;

    #[test]
    fn the_median_run_is_kept_whole() {
        assert!(median_run(None).is_none());
        assert!(median_run(Some(&vec![])).is_none());
        let runs = vec![
            result(Workload::Put, 64, 3000, 900),
            result(Workload::Put, 64, 1000, 100),
            result(Workload::Put, 64, 2000, 500),
        ];
        let median = median_run(Some(&runs)).unwrap();
        assert_eq!(median.ops, 2000);
        assert_eq!(median.latency.p50_us, 500);
        let two = median_run(Some(&runs[..2].to_vec())).unwrap();
        assert_eq!(two.ops, 1000);
    }
}
