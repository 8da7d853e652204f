//! The command line of `synod-bench`.

use super::scenario::{Scenario, ScenarioArgs};
use super::workload::{Workload, WorkloadParams};
use clap::builder::PossibleValue;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "synod-bench",
    version,
    about = "Load generator over the etcd v3 API: drives Synod and etcd with the same client"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one workload against running servers and report throughput and latency.
    Run(RunArgs),
    /// Start 3-member etcd and Synod clusters on loopback in turn, run the same workloads
    /// against each, and print the ratios Synod/etcd (plus JSON and a PNG plot).
    Compare(CompareArgs),
    /// Print the comparison table (and Markdown) of a compare.json again, and redraw its plot.
    Report(ReportArgs),
    /// Start a 3-member Synod cluster, write many puts while measuring the data directories,
    /// then restart one follower and then all members, and time their recovery.
    Restart(super::restart::RestartArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A compare.json written by `synod-bench compare`.
    #[arg(long, default_value = "target/bench-compare/compare.json")]
    pub from: PathBuf,
    /// Draw the PNG plot here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Print the Markdown table too.
    #[arg(long)]
    pub markdown: bool,
}

/// What every workload shares: the load's shape and timing.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Bytes per key (keys are `k` and the zero-padded key number).
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    /// Bytes per value written.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Number of distinct keys; each operation picks one uniformly at random.
    #[arg(long, default_value_t = 10_000)]
    pub keyspace: u64,
    /// Share of linearizable gets in the `mix` workload, in percent (the rest are puts).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub read_percent: u8,
    /// gRPC connections the clients share [default: one per client, at most 16]. Connection
    /// i goes to endpoint i mod the number of endpoints, as in etcd's own benchmark tool.
    #[arg(long)]
    pub connections: Option<usize>,
    /// Connect every connection to the leader only (found with Status), like etcd's
    /// benchmark --target-leader.
    #[arg(long)]
    pub target_leader: bool,
    /// Do not write every key of the keyspace before a read workload (by default they are,
    /// so that gets find values).
    #[arg(long)]
    pub no_prefill: bool,
}

impl LoadArgs {
    pub fn workload_params(&self) -> WorkloadParams {
        WorkloadParams {
            key_size: self.key_size,
            value_size: self.value_size,
            keyspace: self.keyspace,
            read_percent: self.read_percent,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Client endpoints, comma-separated (host:port or http://host:port).
    #[arg(long, value_delimiter = ',', required = true)]
    pub endpoints: Vec<String>,
    #[arg(long, value_enum, default_value = "put")]
    pub workload: Workload,
    /// Closed-loop clients: each keeps exactly one request outstanding.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Measured time, after the warm-up (e.g. 10s, 500ms, 1m; a bare number is seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Time the load runs before measuring starts.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Also print the result as one JSON object on stdout, after the table.
    #[arg(long)]
    pub json: bool,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Smoke test: 2 s measured after 1 s of warm-up per point, clients 1 and 16 (flags given
    /// explicitly still win).
    #[arg(long)]
    pub quick: bool,
    /// Client counts to run each workload with [default: 1,16,64; --quick: 1,16].
    #[arg(long, value_delimiter = ',')]
    pub clients: Option<Vec<usize>>,
    /// Workloads to run [default: put,get,get-serializable,txn]. The watch and lease
    /// workloads (watch-memory, watch-latency, watch-fanout, lease-keepalive) run only when
    /// named, before the others, and ignore --clients.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub workloads: Option<Vec<WorkloadName>>,
    #[command(flatten)]
    pub scenario: ScenarioArgs,
    /// Measured time per point [default: 10s; --quick: 2s].
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Warm-up per point [default: 2s; --quick: 1s].
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Where results (compare.json, compare.png, the members' logs) and the clusters' data
    /// directories go. Must not be on tmpfs: both systems are to sync to a real disk.
    #[arg(long, default_value = "target/bench-compare")]
    pub out: PathBuf,
    /// Also write the PNG plot here (e.g. docs/bench-compare.png).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// The synod binary. Without it, `cargo build --release -p synod-server` runs first and
    /// target/release/synod of this workspace is used.
    #[arg(long)]
    pub synod_bin: Option<PathBuf>,
    /// The etcd binary [default: $ETCD_BIN, else etcd 3.5.30 as scripts/fetch-etcd.sh
    /// fetches it (unpacked, not installed; only the first time)].
    #[arg(long)]
    pub etcd_bin: Option<PathBuf>,
    /// Compare with Debian's own etcd-server package instead (3.4 on Debian 12/13): etcd on
    /// PATH, else /usr/bin/etcd, installed with apt-get if missing.
    #[arg(long, conflicts_with = "etcd_bin")]
    pub etcd_debian: bool,
    /// An extra flag for every etcd member (repeatable), e.g. --etcd-flag=--logger=zap.
    #[arg(long = "etcd-flag", allow_hyphen_values = true)]
    pub etcd_flags: Vec<String>,
    /// An extra flag for every Synod member (repeatable), e.g. --synod-flag=--read-mode=quorum.
    #[arg(long = "synod-flag", allow_hyphen_values = true)]
    pub synod_flags: Vec<String>,
    /// Run only this system (for profiling one of them); both by default.
    #[arg(long, value_enum)]
    pub only: Option<super::cluster::System>,
    /// Run both clusters at once and each point on etcd then Synod right after each other,
    /// instead of all points on etcd and then all on Synod: on a machine whose other load
    /// changes, each ratio then compares runs seconds apart rather than minutes.
    #[arg(long)]
    pub interleave: bool,
    /// Run everything this many times; each point then reports the run of median throughput
    /// (all runs are in compare.json).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub rounds: u64,
    /// Allow data directories on tmpfs (the figures then say nothing about durability).
    #[arg(long)]
    pub allow_tmpfs: bool,
    /// Leave the clusters running after the last point and wait for Ctrl-C (to profile them).
    #[arg(long)]
    pub hold: bool,
}

/// A name `--workloads` accepts: a closed-loop workload or a watch or lease workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadName {
    Load(Workload),
    Scenario(Scenario),
}

impl ValueEnum for WorkloadName {
    fn value_variants<'a>() -> &'a [Self] {
        static ALL: OnceLock<Vec<WorkloadName>> = OnceLock::new();
        ALL.get_or_init(|| {
            let loads = Workload::value_variants().iter().map(|&w| Self::Load(w));
            let scenarios = Scenario::value_variants()
                .iter()
                .map(|&s| Self::Scenario(s));
            loads.chain(scenarios).collect()
        })
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        match self {
            Self::Load(w) => w.to_possible_value(),
            Self::Scenario(s) => s.to_possible_value(),
        }
    }
}

/// What `compare` runs, with --quick and the defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComparePlan {
    pub clients: Vec<usize>,
    pub workloads: Vec<Workload>,
    /// The watch and lease workloads, in the order they run.
    pub scenarios: Vec<Scenario>,
    pub duration: Duration,
    pub warmup: Duration,
}

impl CompareArgs {
    pub fn plan(&self) -> Result<ComparePlan, String> {
        let (clients, duration, warmup) = if self.quick {
            (vec![1, 16], Duration::from_secs(2), Duration::from_secs(1))
        } else {
            (
                vec![1, 16, 64],
                Duration::from_secs(10),
                Duration::from_secs(2),
            )
        };
        let names = self.workloads.clone().unwrap_or_else(|| {
            [
                Workload::Put,
                Workload::Get,
                Workload::GetSerializable,
                Workload::Txn,
            ]
            .map(WorkloadName::Load)
            .to_vec()
        });
        let mut workloads = Vec::new();
        let mut scenarios = Vec::new();
        for name in names {
            match name {
                WorkloadName::Load(w) => workloads.push(w),
                WorkloadName::Scenario(s) => scenarios.push(s),
            }
        }
        let plan = ComparePlan {
            clients: self.clients.clone().unwrap_or(clients),
            workloads,
            scenarios: Scenario::ordered(scenarios),
            duration: self.duration.unwrap_or(duration),
            warmup: self.warmup.unwrap_or(warmup),
        };
        if plan.clients.is_empty() || plan.clients.contains(&0) {
            return Err("--clients: give one or more counts, each at least 1".into());
        }
        if plan.workloads.is_empty() && plan.scenarios.is_empty() {
            return Err("--workloads: give at least one".into());
        }
        if plan.duration.is_zero() {
            return Err("--duration must be positive".into());
        }
        Ok(plan)
    }
}

/// Connections for `clients` clients: as many as asked, else one per client up to 16 (enough
/// to spread load over every member and over the server's I/O threads; etcd's benchmark
/// also shares few connections among many clients). Never more than there are clients.
pub fn connections(asked: Option<usize>, clients: usize) -> usize {
    asked.unwrap_or(16).min(clients).max(1)
}

/// `10s`, `500ms`, `1.5s`, `2m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit_secs) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {text:?} (try 10s, 500ms or 2m)"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("not a duration: {text:?}"));
    }
    Ok(Duration::from_secs_f64(value * unit_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("synod-bench").chain(args.iter().copied()))
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn run_defaults_and_flags() {
        let cli = parse(&[
            "run",
            "--endpoints",
            "127.0.0.1:2379,127.0.0.1:22379",
            "--workload",
            "get-serializable",
            "--clients",
            "64",
            "--duration",
            "1s",
            "--value-size",
            "1024",
            "--json",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.endpoints, ["127.0.0.1:2379", "127.0.0.1:22379"]);
        assert_eq!(run.workload, Workload::GetSerializable);
        assert_eq!(run.clients, 64);
        assert_eq!(run.duration, Duration::from_secs(1));
        assert_eq!(run.warmup, Duration::from_secs(2));
        assert_eq!(run.load.key_size, 16);
        assert_eq!(run.load.value_size, 1024);
        assert_eq!(run.load.keyspace, 10_000);
        assert!(run.json);
        assert_eq!(connections(run.load.connections, run.clients), 16);
    }

    #[test]
    fn run_needs_endpoints_and_a_known_workload() {
        assert!(parse(&["run"]).is_err());
        assert!(parse(&["run", "--endpoints", "a:1", "--workload", "scan"]).is_err());
        assert!(parse(&["run", "--endpoints", "a:1", "--read-percent", "101"]).is_err());
    }

    #[test]
    fn connections_never_exceed_clients() {
        assert_eq!(connections(None, 1), 1);
        assert_eq!(connections(None, 4), 4);
        assert_eq!(connections(None, 64), 16);
        assert_eq!(connections(Some(100), 8), 8);
        assert_eq!(connections(Some(0), 8), 1);
    }

    #[test]
    fn compare_plans() {
        let Command::Compare(args) = parse(&["compare"]).unwrap().command else {
            panic!("not compare")
        };
        let plan = args.plan().unwrap();
        assert_eq!(plan.clients, [1, 16, 64]);
        assert_eq!(plan.workloads.len(), 4);
        assert!(plan.scenarios.is_empty());
        assert_eq!(plan.duration, Duration::from_secs(10));
        assert_eq!(args.scenario.scale, 1.0);
        assert!(!args.etcd_debian);

        let Command::Compare(args) = parse(&["compare", "--quick", "--workloads", "put,txn"])
            .unwrap()
            .command
        else {
            panic!("not compare")
        };
        let plan = args.plan().unwrap();
        assert_eq!(plan.clients, [1, 16]);
        assert_eq!(plan.workloads, [Workload::Put, Workload::Txn]);
        assert_eq!(plan.duration, Duration::from_secs(2));
        assert_eq!(plan.warmup, Duration::from_secs(1));

        let Command::Compare(args) = parse(&["compare", "--quick", "--clients", "0"])
            .unwrap()
            .command
        else {
            panic!("not compare")
        };
        assert!(args.plan().is_err());
    }

    #[test]
    fn watch_and_lease_workloads_are_workload_names() {
        let Command::Compare(args) = parse(&[
            "compare",
            "--workloads",
            "lease-keepalive,put,watch-latency,watch-memory",
            "--scale",
            "0.1",
            "--fanout-put-rate",
            "5",
            "--etcd-debian",
        ])
        .unwrap()
        .command
        else {
            panic!("not compare")
        };
        let plan = args.plan().unwrap();
        assert_eq!(plan.workloads, [Workload::Put]);
        assert_eq!(
            plan.scenarios,
            [
                Scenario::WatchMemory,
                Scenario::WatchLatency,
                Scenario::LeaseKeepalive
            ]
        );
        assert_eq!(args.scenario.scale, 0.1);
        assert_eq!(args.scenario.fanout_put_rate, 5.0);
        assert!(args.etcd_debian);

        let Command::Compare(args) = parse(&["compare", "--workloads", "watch-fanout"])
            .unwrap()
            .command
        else {
            panic!("not compare")
        };
        let plan = args.plan().unwrap();
        assert!(plan.workloads.is_empty());
        assert_eq!(plan.scenarios, [Scenario::WatchFanout]);

        assert!(parse(&["compare", "--workloads", "watch-everything"]).is_err());
        assert!(parse(&["compare", "--etcd-debian", "--etcd-bin", "/bin/etcd"]).is_err());
    }
}
