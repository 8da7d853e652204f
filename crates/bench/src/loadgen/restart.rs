//! `synod-bench restart`: how long a member takes to come back after many writes,
//! and whether the data directories stay bounded while the writes go on.
//!
//! 1. Starts a 3-member Synod cluster on loopback ([`Cluster`], as `compare` does).
//! 2. Writes `--writes` puts (`--value-bytes` values, keys uniform over `--keys`) from
//!    `--clients` closed-loop clients, printing a progress line and measuring every member's
//!    data directory (a `du`-like walk) every `--sample-every`.
//! 3. Stops one follower with SIGTERM, writes `--writes-while-down` more puts and a marker,
//!    starts it again and measures (a) the time from spawning the process to the member
//!    answering a linearizable get of the marker with its latest value, and (b) what the
//!    member's `/metrics` says of its start: when the data directory was recovered (WAL
//!    replayed), when the newest snapshot was restored, when it was serving.
//! 4. The same with all three members stopped and started at once.
//!
//! A readable summary goes to stdout (and with `--json` one JSON object after it); the JSON
//! is always written to `<dir>/restart.json`.

use super::cli::{connections, parse_duration};
use super::cluster::{Cluster, System, MEMBERS};
use super::report::thousands;
use super::runner::connect;
use super::sys;
use super::workload::{ClientOps, Workload, WorkloadParams};
use clap::Args;
use etcd_client::{Client, ConnectOptions, KvClient};
use serde::Serialize;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use synod_testkit::http::metric;
use synod_testkit::Bin;

/// The key whose latest value a restarted member must serve.
pub const MARKER_KEY: &str = "synod-bench/restart-marker";
/// How long a fresh cluster gets to elect a leader.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a member gets to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// A client gives up after this many failed puts in a row.
const CONSECUTIVE_ERRORS_MAX: u32 = 200;
const ERROR_BACKOFF: Duration = Duration::from_millis(20);
/// How often a restarting member is asked for the marker.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Args)]
pub struct RestartArgs {
    /// Puts written before the restarts.
    #[arg(long, default_value_t = 1_000_000)]
    pub writes: u64,
    /// Closed-loop clients writing (each keeps one put outstanding).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// gRPC connections the clients share [default: one per client, at most 16], spread
    /// over the members with the leader's first.
    #[arg(long)]
    pub connections: Option<usize>,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    pub value_bytes: usize,
    /// Distinct keys; each put picks one uniformly at random.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Bytes per key.
    #[arg(long, default_value_t = 16)]
    pub key_bytes: usize,
    /// Passed to every member as --snapshot-count (etcd's default).
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Puts written while the follower is down (then one more: the marker).
    #[arg(long, default_value_t = 10_000)]
    pub writes_while_down: u64,
    /// Compact the MVCC history as writes go on, keeping this many revisions (what etcd's
    /// --auto-compaction-mode=revision --auto-compaction-retention does). Off by default:
    /// nothing is compacted, as in a cluster whose clients never compact.
    #[arg(long)]
    pub compact_retain: Option<u64>,
    /// How often the data directories are measured (and progress printed).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub sample_every: Duration,
    /// How long a restarted member gets to serve the latest write.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub recovery_timeout: Duration,
    /// Where the data directories, the members' logs and restart.json go. Must not be on
    /// tmpfs (unless --allow-tmpfs).
    #[arg(long, default_value = "target/bench-restart")]
    pub dir: PathBuf,
    /// Keep the data directories afterwards (by default they are removed).
    #[arg(long)]
    pub keep: bool,
    /// The synod binary [default: `synod` next to this program].
    #[arg(long)]
    pub synod_bin: Option<PathBuf>,
    /// An extra flag for every member (repeatable), e.g. --synod-flag=--read-mode=quorum.
    #[arg(long = "synod-flag", allow_hyphen_values = true)]
    pub synod_flags: Vec<String>,
    /// Allow data directories on tmpfs.
    #[arg(long)]
    pub allow_tmpfs: bool,
    /// Also print the report as one JSON object on stdout, after the summary.
    #[arg(long)]
    pub json: bool,
}

impl RestartArgs {
    fn params(&self) -> WorkloadParams {
        WorkloadParams {
            key_size: self.key_bytes,
            value_size: self.value_bytes,
            keyspace: self.keys,
            read_percent: 0,
        }
    }

    fn validate(&self) -> Result<(), String> {
        self.params().validate()?;
        if self.clients == 0 {
            return Err("--clients must be at least 1".into());
        }
        if self.sample_every.is_zero() {
            return Err("--sample-every must be positive".into());
        }
        if self.snapshot_count == 0 {
            return Err("--snapshot-count must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Params {
    pub writes: u64,
    pub clients: usize,
    pub connections: usize,
    pub value_bytes: usize,
    pub key_bytes: usize,
    pub keys: u64,
    pub snapshot_count: u64,
    pub writes_while_down: u64,
    pub compact_retain: Option<u64>,
    pub synod_flags: Vec<String>,
}

/// One put phase.
#[derive(Debug, Clone, Serialize)]
pub struct WritePhase {
    pub writes: u64,
    pub seconds: f64,
    pub writes_per_s: f64,
    /// Failed puts (each retried until it succeeded, so `writes` succeeded in all; a put that
    /// timed out may have been applied as well as its retry).
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// Compactions the bench asked for (with --compact-retain).
    pub compactions: Vec<Compaction>,
}

/// One Compact request (with --compact-retain).
#[derive(Debug, Clone, Serialize)]
pub struct Compaction {
    /// Seconds into the write phase it was sent.
    pub t_s: f64,
    pub revision: i64,
    /// Request to response (the leader answers once it has applied the compaction).
    pub took_ms: f64,
}

/// The members' data directories at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct SizeSample {
    /// Seconds since the cluster was started.
    pub t_s: f64,
    pub phase: String,
    /// Puts written so far (all phases).
    pub written: u64,
    /// Disk usage per member (allocated blocks, as `du`), in `MEMBERS` order.
    pub bytes: Vec<u64>,
    /// Apparent sizes (sum of file lengths), as `du --apparent-size`.
    pub apparent_bytes: Vec<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberSizes {
    pub name: String,
    pub peak_bytes: u64,
    pub after_writes_bytes: u64,
    pub final_bytes: u64,
}

/// What a restarted member's `/metrics` says of its start, in seconds after the process
/// began (by its own clock: spawning takes a few milliseconds more).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StartupTimes {
    /// Snapshots verified, the WAL replayed.
    pub recovered_s: Option<f64>,
    pub wal_batches: Option<u64>,
    /// The newest snapshot read, verified, decoded into the store.
    pub snapshot_restored_s: Option<f64>,
    pub snapshot_slot: Option<u64>,
    pub snapshot_bytes: Option<u64>,
    /// Threads started, client port open.
    pub serving_s: Option<f64>,
    /// It installed a snapshot from a peer (it lagged behind the leader's compaction).
    pub installed_snapshot_from_peer: bool,
}

impl StartupTimes {
    /// Read from the Prometheus text of `/metrics`.
    pub fn from_metrics(text: &str) -> StartupTimes {
        let stage = |s: &str| metric(text, &format!("synod_startup_seconds{{stage=\"{s}\"}}"));
        let count = |name: &str| metric(text, name).map(|v| v as u64);
        StartupTimes {
            recovered_s: stage("data_dir_recovered"),
            wal_batches: count("synod_startup_wal_batches"),
            snapshot_restored_s: stage("snapshot_restored"),
            snapshot_slot: count("synod_startup_snapshot_slot").filter(|&s| s > 0),
            snapshot_bytes: count("synod_startup_snapshot_bytes").filter(|&b| b > 0),
            serving_s: stage("serving"),
            installed_snapshot_from_peer: count("synod_snapshots_installed_total")
                .is_some_and(|n| n > 0),
        }
    }
}

/// One member's way back.
#[derive(Debug, Clone, Serialize)]
pub struct MemberRecovery {
    pub name: String,
    pub data_dir_bytes: u64,
    /// Spawn → the client port accepts a TCP connection.
    pub listening_s: Option<f64>,
    /// Spawn → a linearizable get of the marker answered with its latest value.
    pub read_s: f64,
    /// What the member's `/metrics` says of its start.
    pub startup: StartupTimes,
    pub log_file: String,
}

/// A restart of some members.
#[derive(Debug, Clone, Serialize)]
pub struct Restart {
    pub what: String,
    /// The leader before the stop.
    pub leader_before: String,
    /// SIGTERM → every stopped member exited.
    pub stop_s: f64,
    /// Puts written while stopped (follower restart only).
    pub writes_while_down: Option<WritePhase>,
    /// The store revision of the marker write.
    pub marker_revision: i64,
    pub members: Vec<MemberRecovery>,
    /// The slowest member: spawn of the first → the last one serving the marker.
    pub all_serving_s: f64,
    /// `all_serving_s` over the seconds the main write phase took.
    pub ratio_to_write_time: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestartReport {
    pub command: String,
    pub machine: String,
    pub filesystem: Option<String>,
    pub synod_binary: String,
    pub synod_version: Option<String>,
    pub load_average_start: Option<f64>,
    pub load_average_end: Option<f64>,
    pub params: Params,
    pub write: WritePhase,
    pub follower_restart: Restart,
    pub full_restart: Restart,
    pub sizes: Vec<MemberSizes>,
    pub samples: Vec<SizeSample>,
    pub data_kept_in: Option<String>,
}

pub async fn run(args: &RestartArgs, command_line: &str) -> Result<RestartReport, String> {
    args.validate()?;
    let binary = match &args.synod_bin {
        Some(path) => path.clone(),
        None => Bin::SYNOD.find().map_err(|e| e.to_string())?,
    };
    let binary = super::binaries::checked(binary)?;
    let data_parent = args.dir.join("data");
    fs::create_dir_all(&data_parent)
        .map_err(|e| format!("cannot create {}: {e}", data_parent.display()))?;
    let filesystem = sys::filesystem_type(&data_parent);
    if filesystem.as_deref() == Some("tmpfs") && !args.allow_tmpfs {
        return Err(format!(
            "{} is on tmpfs, where fsync costs nothing; use --dir on a disk (or --allow-tmpfs)",
            data_parent.display()
        ));
    }
    let load_average_start = sys::load_average();
    eprintln!(
        "machine: {}; load average {}; data on {} ({}); synod: {}",
        sys::machine_description(),
        load_average_start.map_or("?".into(), |l| format!("{l:.2}")),
        data_parent.display(),
        filesystem.as_deref().unwrap_or("?"),
        binary.display()
    );

    let mut flags = vec![format!("--snapshot-count={}", args.snapshot_count)];
    flags.extend(args.synod_flags.iter().cloned());
    let log_dir = args.dir.join("logs");
    let mut cluster = Cluster::start(System::Synod, &binary, &data_parent, &log_dir, &flags)?;
    let started = Instant::now();
    let leader = cluster.wait_ready(READY_TIMEOUT).await?;
    eprintln!(
        "cluster ready: leader {}, pids {:?}, logs in {}",
        cluster.members[leader].name,
        cluster.pids(),
        log_dir.display()
    );
    let mut monitor = Monitor {
        dirs: cluster.members.iter().map(|m| m.data_dir.clone()).collect(),
        names: cluster.members.iter().map(|m| m.name.clone()).collect(),
        started,
        samples: Vec::new(),
        written: 0,
    };
    let conns = connections(args.connections, args.clients);

    // 1. The writes.
    let mut endpoints = cluster.endpoints();
    endpoints.rotate_left(leader);
    let write = write_puts(&endpoints, args.writes, args, conns, "writes", &mut monitor).await?;
    cluster.check_running()?;
    monitor.sample("after writes");
    let after_writes = monitor.samples.len() - 1;

    // 2. One follower stopped, more writes, started again.
    let leader = cluster.wait_ready(READY_TIMEOUT).await?;
    let follower = (leader + 1) % MEMBERS;
    let leader_name = cluster.members[leader].name.clone();
    eprintln!(
        "stopping follower {} with SIGTERM",
        cluster.members[follower].name
    );
    let stop = cluster.terminate(&[follower], STOP_TIMEOUT)?;
    let live: Vec<String> = (0..MEMBERS)
        .map(|i| (leader + i) % MEMBERS)
        .filter(|&i| i != follower)
        .map(|i| cluster.members[i].endpoint())
        .collect();
    let down = if args.writes_while_down > 0 {
        let phase = "writes while a follower is down";
        Some(
            write_puts(
                &live,
                args.writes_while_down,
                args,
                conns,
                phase,
                &mut monitor,
            )
            .await?,
        )
    } else {
        None
    };
    let (marker, marker_revision) = write_marker(&live, "follower").await?;
    monitor.sample("follower down");
    let recovery = restart_and_wait(&mut cluster, &[follower], &marker, args).await?;
    monitor.sample("follower recovered");
    let all_serving_s = recovery.iter().map(|m| m.read_s).fold(0.0, f64::max);
    let follower_restart = Restart {
        what: format!("follower {}", cluster.members[follower].name),
        leader_before: leader_name,
        stop_s: stop.iter().map(Duration::as_secs_f64).fold(0.0, f64::max),
        writes_while_down: down,
        marker_revision,
        members: recovery,
        all_serving_s,
        ratio_to_write_time: all_serving_s / write.seconds,
    };
    print_restart(&follower_restart);

    // 3. All three stopped and started again.
    let leader = cluster.wait_ready(READY_TIMEOUT).await?;
    let leader_name = cluster.members[leader].name.clone();
    let mut endpoints = cluster.endpoints();
    endpoints.rotate_left(leader);
    let (marker, marker_revision) = write_marker(&endpoints, "cluster").await?;
    eprintln!("stopping all {MEMBERS} members with SIGTERM");
    let all: Vec<usize> = (0..MEMBERS).collect();
    let stop = cluster.terminate(&all, STOP_TIMEOUT)?;
    monitor.sample("cluster down");
    let recovery = restart_and_wait(&mut cluster, &all, &marker, args).await?;
    monitor.sample("cluster recovered");
    let all_serving_s = recovery.iter().map(|m| m.read_s).fold(0.0, f64::max);
    let full_restart = Restart {
        what: format!("all {MEMBERS} members"),
        leader_before: leader_name,
        stop_s: stop.iter().map(Duration::as_secs_f64).fold(0.0, f64::max),
        writes_while_down: None,
        marker_revision,
        members: recovery,
        all_serving_s,
        ratio_to_write_time: all_serving_s / write.seconds,
    };
    print_restart(&full_restart);
    cluster.check_running()?;

    let sizes = monitor.sizes(after_writes);
    let data_kept_in = if args.keep {
        cluster.keep_data().map(|p| p.display().to_string())
    } else {
        None
    };
    drop(cluster);

    let report = RestartReport {
        command: command_line.to_string(),
        machine: sys::machine_description(),
        filesystem,
        synod_version: super::binaries::version_of(&binary),
        synod_binary: binary.display().to_string(),
        load_average_start,
        load_average_end: sys::load_average(),
        params: Params {
            writes: args.writes,
            clients: args.clients,
            connections: conns,
            value_bytes: args.value_bytes,
            key_bytes: args.key_bytes,
            keys: args.keys,
            snapshot_count: args.snapshot_count,
            writes_while_down: args.writes_while_down,
            compact_retain: args.compact_retain,
            synod_flags: args.synod_flags.clone(),
        },
        write,
        follower_restart,
        full_restart,
        sizes,
        samples: monitor.samples,
        data_kept_in,
    };
    print!("{}", summary(&report));
    let json = serde_json::to_string_pretty(&report).map_err(|e| format!("JSON: {e}"))?;
    let json_path = args.dir.join("restart.json");
    fs::write(&json_path, json.clone() + "\n")
        .map_err(|e| format!("cannot write {}: {e}", json_path.display()))?;
    eprintln!("wrote {}", json_path.display());
    if args.json {
        println!("{json}");
    }
    Ok(report)
}

/// Measures the data directories and keeps the samples.
struct Monitor {
    dirs: Vec<PathBuf>,
    names: Vec<String>,
    started: Instant,
    samples: Vec<SizeSample>,
    written: u64,
}

impl Monitor {
    fn sample(&mut self, phase: &str) -> &SizeSample {
        let (bytes, apparent_bytes) = self.dirs.iter().map(|d| dir_usage(d)).unzip();
        self.samples.push(SizeSample {
            t_s: self.started.elapsed().as_secs_f64(),
            phase: phase.to_string(),
            written: self.written,
            bytes,
            apparent_bytes,
        });
        self.samples.last().expect("just pushed")
    }

    fn sizes(&self, after_writes: usize) -> Vec<MemberSizes> {
        let last = self.samples.last();
        self.names
            .iter()
            .enumerate()
            .map(|(i, name)| MemberSizes {
                name: name.clone(),
                peak_bytes: self.samples.iter().map(|s| s.bytes[i]).max().unwrap_or(0),
                after_writes_bytes: self.samples.get(after_writes).map_or(0, |s| s.bytes[i]),
                final_bytes: last.map_or(0, |s| s.bytes[i]),
            })
            .collect()
    }
}

/// Disk usage (allocated blocks, as `du`) and apparent size of everything under `dir`. Files
/// that vanish during the walk (a WAL segment deleted behind a snapshot) count as nothing.
pub fn dir_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut allocated = 0;
    let mut apparent = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        allocated += meta.blocks() * 512;
        if meta.is_dir() {
            if let Ok(entries) = fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else {
            apparent += meta.len();
        }
    }
    (allocated, apparent)
}

/// Shared by the writing tasks.
#[derive(Default)]
struct Tally {
    claimed: AtomicU64,
    done: AtomicU64,
    errors: AtomicU64,
    failed: AtomicBool,
    error_samples: Mutex<Vec<String>>,
}

/// `count` puts from `args.clients` closed-loop clients over `conns` connections to
/// `endpoints`; a progress line and a size sample every `args.sample_every`, and with
/// --compact-retain a compaction then too.
async fn write_puts(
    endpoints: &[String],
    count: u64,
    args: &RestartArgs,
    conns: usize,
    phase: &str,
    monitor: &mut Monitor,
) -> Result<WritePhase, String> {
    let clients = connect(endpoints, conns).await?;
    let kvs: Vec<KvClient> = clients.iter().map(Client::kv_client).collect();
    let params = args.params();
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let mut kv = kvs[i % kvs.len()].clone();
        let mut ops = ClientOps::new(Workload::Put, params, i as u64, args.clients as u64);
        let tally = tally.clone();
        tasks.push(tokio::spawn(async move {
            while !tally.failed.load(Relaxed) && tally.claimed.fetch_add(1, Relaxed) < count {
                let mut consecutive = 0;
                loop {
                    match ops.execute(&mut kv).await {
                        Ok(_) => {
                            tally.done.fetch_add(1, Relaxed);
                            break;
                        }
                        Err(e) => {
                            tally.errors.fetch_add(1, Relaxed);
                            let text = e.to_string();
                            {
                                let mut samples = tally
                                    .error_samples
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner());
                                if samples.len() < 5 && !samples.contains(&text) {
                                    samples.push(text.clone());
                                }
                            }
                            consecutive += 1;
                            if consecutive >= CONSECUTIVE_ERRORS_MAX {
                                tally.failed.store(true, Relaxed);
                                return Err(format!("{consecutive} puts failed in a row: {text}"));
                            }
                            tokio::time::sleep(ERROR_BACKOFF).await;
                        }
                    }
                }
            }
            Ok::<(), String>(())
        }));
    }

    let written_before = monitor.written;
    let mut compactions: Vec<Compaction> = Vec::new();
    let mut compactor = args.compact_retain.map(|retain| (kvs[0].clone(), retain));
    let mut next_sample = started + args.sample_every;
    let (mut last_done, mut last_at) = (0, started);
    while !tasks.iter().all(|t| t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        if now < next_sample {
            continue;
        }
        next_sample += args.sample_every;
        let done = tally.done.load(Relaxed);
        monitor.written = written_before + done;
        let mut compacted = String::new();
        if let Some((kv, retain)) = &mut compactor {
            // As etcd's revision auto-compaction: keep the newest `retain` revisions.
            if let Ok(resp) = kv.get(MARKER_KEY, None).await {
                let target = resp.header().map_or(0, |h| h.revision()) - *retain as i64;
                if target > compactions.last().map_or(0, |c| c.revision) {
                    let sent = Instant::now();
                    match kv.compact(target, None).await {
                        Ok(_) => {
                            let took_ms = sent.elapsed().as_secs_f64() * 1e3;
                            compacted = format!("  compacted to {target} in {took_ms:.0} ms");
                            compactions.push(Compaction {
                                t_s: (sent - started).as_secs_f64(),
                                revision: target,
                                took_ms,
                            });
                        }
                        Err(e) => eprintln!("[{phase}] compaction to {target} failed: {e}"),
                    }
                }
            }
        }
        let bytes = monitor.sample(phase).bytes.clone();
        let sizes = bytes
            .iter()
            .zip(&monitor.names)
            .map(|(b, n)| format!("{n} {}", mb(*b)))
            .collect::<Vec<_>>()
            .join("  ");
        let elapsed = (now - started).as_secs_f64();
        eprintln!(
            "[{phase}] {:>7.1}s  {}/{} ({:.0}%)  {} writes/s (avg {})  errors {}  data dirs MB: {sizes}  load {}{compacted}",
            elapsed,
            thousands(done as f64),
            thousands(count as f64),
            done as f64 * 100.0 / count.max(1) as f64,
            thousands((done - last_done) as f64 / (now - last_at).as_secs_f64()),
            thousands(done as f64 / elapsed),
            tally.errors.load(Relaxed),
            sys::load_average().map_or("?".into(), |l| format!("{l:.2}")),
        );
        (last_done, last_at) = (done, now);
    }
    let seconds = started.elapsed().as_secs_f64();
    for task in tasks {
        task.await
            .map_err(|e| format!("a writing task failed: {e}"))??;
    }
    let done = tally.done.load(Relaxed);
    monitor.written = written_before + done;
    let error_samples = tally
        .error_samples
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    eprintln!(
        "[{phase}] {} puts in {seconds:.1}s: {} writes/s, {} errors",
        thousands(done as f64),
        thousands(done as f64 / seconds),
        tally.errors.load(Relaxed)
    );
    Ok(WritePhase {
        writes: done,
        seconds,
        writes_per_s: done as f64 / seconds,
        errors: tally.errors.load(Relaxed),
        error_samples,
        compactions,
    })
}

/// Puts a new value under [`MARKER_KEY`] through `endpoints` (the first that answers); returns
/// the value and the revision of the write.
async fn write_marker(endpoints: &[String], label: &str) -> Result<(String, i64), String> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let value = format!("{label}-{nanos}");
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(10));
    let mut last = String::new();
    for _ in 0..20 {
        for endpoint in endpoints {
            match Client::connect([endpoint.as_str()], Some(options.clone())).await {
                Ok(mut client) => match client.put(MARKER_KEY, value.clone(), None).await {
                    Ok(resp) => {
                        let revision = resp.header().map_or(0, |h| h.revision());
                        return Ok((value, revision));
                    }
                    Err(e) => last = format!("{endpoint}: {e}"),
                },
                Err(e) => last = format!("{endpoint}: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("cannot write the marker: {last}"))
}

/// Starts the (stopped) members `which` and waits until each serves `marker` on a
/// linearizable get; then reads their logs.
async fn restart_and_wait(
    cluster: &mut Cluster,
    which: &[usize],
    marker: &str,
    args: &RestartArgs,
) -> Result<Vec<MemberRecovery>, String> {
    let data_bytes: Vec<u64> = which
        .iter()
        .map(|&i| dir_usage(&cluster.members[i].data_dir).0)
        .collect();
    let mut spawned = Vec::with_capacity(which.len());
    for &i in which {
        spawned.push(cluster.restart(i)?);
    }
    eprintln!(
        "started {} again; waiting for a linearizable read of the latest write",
        which
            .iter()
            .map(|&i| cluster.members[i].name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut polls = Vec::with_capacity(which.len());
    for (k, &i) in which.iter().enumerate() {
        let endpoint = cluster.members[i].endpoint();
        let marker = marker.to_string();
        let since = spawned[k];
        let timeout = args.recovery_timeout;
        polls.push(tokio::spawn(async move {
            wait_for_read(&endpoint, &marker, since, timeout).await
        }));
    }
    let mut out = Vec::with_capacity(which.len());
    for (k, poll) in polls.into_iter().enumerate() {
        let i = which[k];
        let outcome = poll.await.map_err(|e| format!("a poll task failed: {e}"))?;
        if outcome.is_err() {
            cluster.check_running()?;
        }
        let m = &cluster.members[i];
        let (listening_s, read_s) = outcome.map_err(|e| {
            format!(
                "member {}: {e}; the end of {}:\n{}",
                m.name,
                m.log.display(),
                m.log_tail(20)
            )
        })?;
        let endpoint = m.endpoint();
        let metrics =
            tokio::task::spawn_blocking(move || synod_testkit::http::get(&endpoint, "/metrics"))
                .await
                .map_err(|e| format!("a metrics task failed: {e}"))?
                .map_err(|e| format!("member {}: reading /metrics: {e}", m.name))?;
        out.push(MemberRecovery {
            name: m.name.clone(),
            data_dir_bytes: data_bytes[k],
            listening_s,
            read_s,
            startup: StartupTimes::from_metrics(&metrics),
            log_file: m.log.display().to_string(),
        });
    }
    Ok(out)
}

/// Polls `endpoint` until a linearizable get of [`MARKER_KEY`] answers `value`. Returns the
/// seconds from `since` to its client port first accepting a connection, and to that read.
async fn wait_for_read(
    endpoint: &str,
    value: &str,
    since: Instant,
    timeout: Duration,
) -> Result<(Option<f64>, f64), String> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(Duration::from_secs(5));
    let mut listening = None;
    let mut last = String::from("no answer yet");
    while since.elapsed() < timeout {
        if listening.is_none() {
            if tokio::net::TcpStream::connect(endpoint).await.is_err() {
                tokio::time::sleep(POLL_INTERVAL).await;
                continue;
            }
            listening = Some(since.elapsed().as_secs_f64());
        }
        match Client::connect([endpoint], Some(options.clone())).await {
            Ok(mut client) => match client.get(MARKER_KEY, None).await {
                Ok(resp) => {
                    let got = resp.kvs().first().map(|kv| kv.value().to_vec());
                    if got.as_deref() == Some(value.as_bytes()) {
                        return Ok((listening, since.elapsed().as_secs_f64()));
                    }
                    last = format!(
                        "read {:?}, not the latest value",
                        got.map(|v| String::from_utf8_lossy(&v).into_owned())
                    );
                }
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    Err(format!(
        "no linearizable read of the latest write within {timeout:?}: {last}"
    ))
}

/// Bytes as MB (10^6), one decimal.
fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

fn secs(s: Option<f64>) -> String {
    s.map_or("?".into(), |s| format!("{s:.2} s"))
}

fn print_restart(r: &Restart) {
    eprintln!(
        "{} back: slowest linearizable read of the latest write {:.2} s after spawn",
        r.what, r.all_serving_s
    );
}

/// The readable summary.
pub fn summary(r: &RestartReport) -> String {
    let mut out = String::new();
    let p = &r.params;
    out += &format!(
        "synod-bench restart: {} puts of {}-byte values over {} keys, {} clients on {} \
         connections, --snapshot-count {}{}\n",
        thousands(p.writes as f64),
        p.value_bytes,
        thousands(p.keys as f64),
        p.clients,
        p.connections,
        p.snapshot_count,
        p.compact_retain
            .map_or(", no compaction".into(), |n| format!(
                ", compacting to the newest {} revisions",
                thousands(n as f64)
            )),
    );
    out += &format!(
        "machine: {}; load average {} at the start, {} at the end\n",
        r.machine,
        r.load_average_start
            .map_or("?".into(), |l| format!("{l:.2}")),
        r.load_average_end.map_or("?".into(), |l| format!("{l:.2}")),
    );
    let w = &r.write;
    out += &format!(
        "writes: {} in {:.1} s = {} writes/s, {} errors{}\n",
        thousands(w.writes as f64),
        w.seconds,
        thousands(w.writes_per_s),
        w.errors,
        if let Some(last) = w.compactions.last() {
            format!(
                ", {} compactions (last to revision {}; the slowest took {:.0} ms)",
                w.compactions.len(),
                last.revision,
                w.compactions.iter().map(|c| c.took_ms).fold(0.0, f64::max)
            )
        } else {
            String::new()
        }
    );
    out += "data directory (du, MB):   max   after writes   final\n";
    for s in &r.sizes {
        out += &format!(
            "  {:<4} {:>24} {:>14} {:>7}\n",
            s.name,
            mb(s.peak_bytes),
            mb(s.after_writes_bytes),
            mb(s.final_bytes)
        );
    }
    out += "over time (MB per member):\n";
    let n = r.samples.len();
    let step = n.div_ceil(12).max(1);
    for (k, s) in r.samples.iter().enumerate() {
        if k % step == 0 || k + 1 == n || s.phase != "writes" {
            out += &format!(
                "  {:>7.1} s  {:>11} written  {:<32} {}\n",
                s.t_s,
                thousands(s.written as f64),
                s.phase,
                s.bytes
                    .iter()
                    .map(|b| mb(*b))
                    .collect::<Vec<_>>()
                    .join(" / ")
            );
        }
    }
    for restart in [&r.follower_restart, &r.full_restart] {
        out += &format!(
            "restart of {} (leader before: {}; stopped by SIGTERM in {:.2} s{}):\n",
            restart.what,
            restart.leader_before,
            restart.stop_s,
            restart
                .writes_while_down
                .as_ref()
                .map_or(String::new(), |d| format!(
                    "; {} puts while down",
                    thousands(d.writes as f64)
                ))
        );
        for m in &restart.members {
            out += &format!(
                "  {}: linearizable read of the latest write {:.2} s after spawn (port open {}); \
                 data dir {} MB\n",
                m.name,
                m.read_s,
                secs(m.listening_s),
                mb(m.data_dir_bytes)
            );
            let l = &m.startup;
            let restore = match (l.recovered_s, l.snapshot_restored_s) {
                (Some(a), Some(b)) => format!("{:.2} s", b - a),
                _ => "?".into(),
            };
            out += &format!(
                "      its /metrics: WAL replayed ({} batches) by {}, snapshot (slot {}, {} MB) \
                 restored by {} (took {restore}), serving at {}{}\n",
                l.wal_batches.map_or("?".into(), |b| thousands(b as f64)),
                secs(l.recovered_s),
                l.snapshot_slot.map_or("-".into(), |s| s.to_string()),
                l.snapshot_bytes.map_or("-".into(), mb),
                secs(l.snapshot_restored_s),
                secs(l.serving_s),
                if l.installed_snapshot_from_peer {
                    "; installed a snapshot from a peer"
                } else {
                    ""
                }
            );
        }
        out += &format!(
            "  all serving after {:.2} s = {:.4} of the write phase's {:.1} s\n",
            restart.all_serving_s, restart.ratio_to_write_time, r.write.seconds
        );
    }
    if let Some(dir) = &r.data_kept_in {
        out += &format!("data directories kept in {dir}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_times_are_read_from_metrics() {
        let text = "\
# HELP synod_snapshots_installed_total Snapshots received from a peer and installed.
# TYPE synod_snapshots_installed_total counter
synod_snapshots_installed_total 0
# TYPE synod_startup_seconds gauge
synod_startup_seconds{stage=\"data_dir_recovered\"} 0.5
synod_startup_seconds{stage=\"snapshot_restored\"} 1.25
synod_startup_seconds{stage=\"serving\"} 1.4
synod_startup_wal_batches 1234
synod_startup_snapshot_slot 1000000
synod_startup_snapshot_bytes 266000000
";
        let t = StartupTimes::from_metrics(text);
        assert_eq!(t.recovered_s, Some(0.5));
        assert_eq!(t.wal_batches, Some(1234));
        assert_eq!(t.snapshot_restored_s, Some(1.25));
        assert_eq!(t.snapshot_slot, Some(1_000_000));
        assert_eq!(t.snapshot_bytes, Some(266_000_000));
        assert_eq!(t.serving_s, Some(1.4));
        assert!(!t.installed_snapshot_from_peer);
        assert_eq!(StartupTimes::from_metrics(""), StartupTimes::default());
    }

    #[test]
    fn defaults_and_flags() {
        use crate::loadgen::cli::{Cli, Command};
        use clap::Parser;
        let parse = |args: &[&str]| {
            let cli =
                Cli::try_parse_from(std::iter::once("synod-bench").chain(args.iter().copied()))
                    .unwrap();
            match cli.command {
                Command::Restart(args) => args,
                other => panic!("not restart: {other:?}"),
            }
        };
        let a = parse(&["restart"]);
        assert_eq!(a.writes, 1_000_000);
        assert_eq!(a.clients, 64);
        assert_eq!(a.value_bytes, 256);
        assert_eq!(a.keys, 100_000);
        assert_eq!(a.snapshot_count, 100_000);
        assert_eq!(a.compact_retain, None);
        assert_eq!(a.sample_every, Duration::from_secs(5));
        assert!(!a.keep && !a.json);
        assert!(a.validate().is_ok());
        let a = parse(&[
            "restart",
            "--writes=5000",
            "--snapshot-count=1000",
            "--compact-retain=2000",
            "--keep",
            "--dir=/x",
            "--synod-flag=--read-mode=quorum",
            "--json",
        ]);
        assert_eq!(a.writes, 5000);
        assert_eq!(a.snapshot_count, 1000);
        assert_eq!(a.compact_retain, Some(2000));
        assert_eq!(a.dir, Path::new("/x"));
        assert_eq!(a.synod_flags, ["--read-mode=quorum"]);
        assert!(a.keep && a.json);
        assert!(parse(&["restart", "--keys=1000000000000000000"])
            .validate()
            .is_err());
        assert!(parse(&["restart", "--clients=0"]).validate().is_err());
    }

    #[test]
    fn usage_counts_every_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("a"), vec![1u8; 10_000]).unwrap();
        fs::write(dir.path().join("sub/b"), vec![1u8; 5_000]).unwrap();
        let (allocated, apparent) = dir_usage(dir.path());
        assert_eq!(apparent, 15_000);
        assert!(allocated >= 15_000, "{allocated}");
        assert_eq!(dir_usage(&dir.path().join("missing")), (0, 0));
    }
}
