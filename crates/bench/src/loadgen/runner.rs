//! Closed-loop clients: each of N tasks keeps exactly one request outstanding on one of C
//! shared connections. The load runs for a warm-up, then for a fixed measured window; only
//! operations that complete inside the window count, and their latencies go into an HDR
//! histogram. Throughput is those operations over the window's length.

use super::report::{LatencySummary, RunResult};
use super::sys;
use super::workload::{ClientOps, Outcome, Workload, WorkloadParams};
use etcd_client::{Client, ConnectOptions, KvClient};
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest latency the histogram keeps exactly (larger ones are clamped to it): far beyond
/// the request timeout.
pub const LATENCY_US_MAX: u64 = 60_000_000;
/// Per-request deadline, so that a stalled server shows up as errors, not as a hung run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed request, so a dead endpoint is not hammered in a tight loop.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// Error messages kept for the report.
const ERROR_SAMPLES_MAX: usize = 5;
/// Concurrent writers when filling the keyspace before a read workload.
const PREFILL_TASKS: usize = 64;

/// CPU seconds used so far by the servers under test (summed over their processes).
pub type CpuProbe = Arc<dyn Fn() -> Option<f64> + Send + Sync>;

#[derive(Clone)]
pub struct RunConfig {
    pub endpoints: Vec<String>,
    pub workload: Workload,
    pub params: WorkloadParams,
    pub clients: usize,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Write every key once before starting (read workloads need something to read).
    pub prefill: bool,
    /// Prefix of the progress line; `None` for no progress line.
    pub progress: Option<String>,
    pub server_cpu: Option<CpuProbe>,
}

impl std::fmt::Debug for RunConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunConfig")
            .field("endpoints", &self.endpoints)
            .field("workload", &self.workload)
            .field("params", &self.params)
            .field("clients", &self.clients)
            .field("connections", &self.connections)
            .field("warmup", &self.warmup)
            .field("duration", &self.duration)
            .field("prefill", &self.prefill)
            .finish_non_exhaustive()
    }
}

/// Connects `count` clients, connection i to endpoint i mod the number of endpoints (as etcd's
/// benchmark tool spreads its connections), so load reaches every member evenly and no
/// client library balancing hides where requests go.
pub async fn connect(endpoints: &[String], count: usize) -> Result<Vec<Client>, String> {
    if endpoints.is_empty() {
        return Err("no endpoints".into());
    }
    let mut clients = Vec::with_capacity(count);
    for i in 0..count {
        let endpoint = &endpoints[i % endpoints.len()];
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(REQUEST_TIMEOUT);
        let client = Client::connect([endpoint.as_str()], Some(options))
            .await
            .map_err(|e| format!("cannot connect to {endpoint}: {e}"))?;
        clients.push(client);
    }
    Ok(clients)
}

/// What the client tasks share: counters for the progress line and the errors seen.
#[derive(Default)]
struct Shared {
    completed: AtomicU64,
    errors_total: AtomicU64,
    error_samples: Mutex<Vec<String>>,
}

impl Shared {
    fn note_error(&self, error: &etcd_client::Error) {
        self.errors_total.fetch_add(1, Relaxed);
        let mut samples = self.error_samples.lock().unwrap_or_else(|e| e.into_inner());
        let text = error.to_string();
        if samples.len() < ERROR_SAMPLES_MAX && !samples.contains(&text) {
            samples.push(text);
        }
    }
}

/// One client task's tally of its measured window.
struct Tally {
    histogram: Histogram<u64>,
    ops: u64,
    errors: u64,
    cas_succeeded: u64,
    /// Background operations completed inside the window.
    background: u64,
}

/// The latency histogram every workload records into: 1 µs to [`LATENCY_US_MAX`], three
/// significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

/// Records `latency` in microseconds, clamped to the histogram's bounds.
pub fn record_latency(histogram: &mut Histogram<u64>, latency: Duration) {
    let us = latency.as_micros().clamp(1, u128::from(LATENCY_US_MAX));
    histogram.saturating_record(us as u64);
}

pub async fn run(cfg: RunConfig) -> Result<RunResult, String> {
    cfg.params.validate()?;
    if cfg.clients == 0 || cfg.connections == 0 {
        return Err("clients and connections must be at least 1".into());
    }
    if cfg.duration.is_zero() {
        return Err("the measured duration must be positive".into());
    }
    let conns = connect(&cfg.endpoints, cfg.connections).await?;
    let kvs: Vec<KvClient> = conns.iter().map(Client::kv_client).collect();
    if cfg.prefill {
        prefill(&kvs, cfg.params, cfg.progress.as_deref()).await?;
    }

    let shared = Arc::new(Shared::default());
    let start = Instant::now();
    let measure_from = start + cfg.warmup;
    let measure_until = measure_from + cfg.duration;
    let mut clients = Vec::with_capacity(cfg.clients + cfg.workload.background_clients());
    for i in 0..cfg.clients {
        let kv = kvs[i % kvs.len()].clone();
        let ops = ClientOps::new(cfg.workload, cfg.params, i as u64, cfg.clients as u64);
        clients.push((kv, ops));
    }
    // Background clients on connections of their own, to the first endpoint (compare puts
    // the leader's first), so that they share nothing with the measured clients but the
    // server.
    let background = connect(&cfg.endpoints[..1], cfg.workload.background_clients()).await?;
    for conn in &background {
        let ops = ClientOps::background(cfg.workload, cfg.params);
        clients.push((conn.kv_client(), ops));
    }
    let mut tasks = Vec::with_capacity(clients.len());
    for (mut kv, mut ops) in clients {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally {
                histogram: new_histogram(),
                ops: 0,
                errors: 0,
                cas_succeeded: 0,
                background: 0,
            };
            while Instant::now() < measure_until {
                let sent = Instant::now();
                let result = ops.execute(&mut kv).await;
                let done = Instant::now();
                // Counted if it completed inside the window: throughput is completions per
                // second, and an operation sent during warm-up still has a true latency.
                let measured = done >= measure_from && done <= measure_until;
                match result {
                    Ok(Outcome::Background) => tally.background += u64::from(measured),
                    Ok(outcome) => {
                        shared.completed.fetch_add(1, Relaxed);
                        if measured {
                            record_latency(&mut tally.histogram, done - sent);
                            tally.ops += 1;
                            if outcome == Outcome::Cas(true) {
                                tally.cas_succeeded += 1;
                            }
                        }
                    }
                    Err(e) => {
                        shared.note_error(&e);
                        if measured && !ops.is_background() {
                            tally.errors += 1;
                        }
                        tokio::time::sleep(ERROR_BACKOFF).await;
                    }
                }
            }
            tally
        }));
    }

    // The controller: samples CPU at the window's edges and prints progress meanwhile.
    let window = measure_window(
        &cfg,
        &shared,
        start,
        measure_from,
        measure_until,
        cfg.progress.as_deref(),
    )
    .await;

    let mut histogram = new_histogram();
    let (mut ops, mut errors, mut cas_succeeded, mut background_ops) = (0, 0, 0, 0);
    for task in tasks {
        let tally = task
            .await
            .map_err(|e| format!("a client task failed: {e}"))?;
        histogram
            .add(&tally.histogram)
            .map_err(|e| format!("merging histograms: {e}"))?;
        ops += tally.ops;
        errors += tally.errors;
        cas_succeeded += tally.cas_succeeded;
        background_ops += tally.background;
    }
    let seconds = cfg.duration.as_secs_f64();
    let error_samples = shared
        .error_samples
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let per_1k = |cpu: Option<f64>| cpu.filter(|_| ops > 0).map(|c| c / ops as f64 * 1000.0);
    Ok(RunResult {
        workload: cfg.workload,
        clients: cfg.clients,
        connections: cfg.connections,
        endpoints: cfg.endpoints.clone(),
        params: cfg.params,
        warmup_s: cfg.warmup.as_secs_f64(),
        duration_s: seconds,
        ops,
        errors,
        error_samples,
        cas_succeeded: (cfg.workload == Workload::Txn).then_some(cas_succeeded),
        background_ops: (cfg.workload.background_clients() > 0).then_some(background_ops),
        throughput: ops as f64 / seconds,
        latency: LatencySummary::of(&histogram),
        server_cpu_s: window.server_cpu,
        server_cpu_s_per_1k_ops: per_1k(window.server_cpu),
        client_cpu_s: window.client_cpu,
        client_cpu_s_per_1k_ops: per_1k(window.client_cpu),
        load_average_before: window.load_before,
        load_average_after: window.load_after,
    })
}

struct Window {
    server_cpu: Option<f64>,
    client_cpu: Option<f64>,
    load_before: Option<f64>,
    load_after: Option<f64>,
}

async fn measure_window(
    cfg: &RunConfig,
    shared: &Shared,
    start: Instant,
    measure_from: Instant,
    measure_until: Instant,
    progress: Option<&str>,
) -> Window {
    let server_cpu = || cfg.server_cpu.as_ref().and_then(|probe| probe());
    let mut next_progress = start + Duration::from_secs(1);
    let mut last_completed = 0;
    let mut last_at = start;
    let mut before: Option<(Option<f64>, Option<f64>, Option<f64>)> = None;
    loop {
        let now = Instant::now();
        if before.is_none() && now >= measure_from {
            before = Some((server_cpu(), sys::own_cpu_seconds(), sys::load_average()));
        }
        if now >= measure_until {
            break;
        }
        let mut wake = measure_until.min(next_progress);
        if before.is_none() {
            wake = wake.min(measure_from);
        }
        tokio::time::sleep_until(wake.into()).await;
        let now = Instant::now();
        if now >= next_progress {
            let completed = shared.completed.load(Relaxed);
            let rate = (completed - last_completed) as f64 / (now - last_at).as_secs_f64();
            if let Some(label) = progress {
                let phase = if now < measure_from {
                    "warm-up"
                } else {
                    "measuring"
                };
                eprintln!(
                    "{label}{phase} {:>5.1}s  {:>10.0} ops/s  errors {}",
                    (now - start).as_secs_f64(),
                    rate,
                    shared.errors_total.load(Relaxed)
                );
            }
            last_completed = completed;
            last_at = now;
            next_progress += Duration::from_secs(1);
        }
    }
    let (server_before, client_before, load_before) = before.unwrap_or((None, None, None));
    let delta = |after: Option<f64>, before: Option<f64>| Some(after? - before?);
    Window {
        server_cpu: delta(server_cpu(), server_before),
        client_cpu: delta(sys::own_cpu_seconds(), client_before),
        load_before,
        load_after: sys::load_average(),
    }
}

/// Puts every key of the keyspace once, from [`PREFILL_TASKS`] tasks spread over the
/// connections, so the gets that follow find values.
async fn prefill(
    kvs: &[KvClient],
    params: WorkloadParams,
    progress: Option<&str>,
) -> Result<(), String> {
    let started = Instant::now();
    let tasks = PREFILL_TASKS.min(params.keyspace as usize).max(1);
    let ops = ClientOps::new(Workload::Put, params, 0, 1);
    let value = ops.value_bytes().to_vec();
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let mut kv = kvs[t % kvs.len()].clone();
        let value = value.clone();
        handles.push(tokio::spawn(async move {
            let mut index = t as u64;
            while index < params.keyspace {
                kv.put(params.key(index), value.clone(), None)
                    .await
                    .map_err(|e| format!("prefill: {e}"))?;
                index += tasks as u64;
            }
            Ok::<(), String>(())
        }));
    }
    for handle in handles {
        handle
            .await
            .map_err(|e| format!("prefill task failed: {e}"))??;
    }
    if let Some(label) = progress {
        eprintln!(
            "{label}prefilled {} keys in {:.1}s",
            params.keyspace,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
