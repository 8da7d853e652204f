//! `lease-keepalive`: 10,000 leases (TTL 10 s) kept alive at once. They are granted from 64
//! tasks over connections spread over every member, then kept alive over 100 keep-alive
//! streams of 100 leases each (stream i on connection i mod 16, so a third of the renewals
//! reach the leader directly and the rest are forwarded by a follower), each lease renewed
//! every TTL/3, the renewals of a stream evenly spaced. Measured in the window: renewals
//! answered per second, their latency (send to answer), and the members' CPU per renewal,
//! taken as the closed-loop workloads take it. A lease is lost if a renewal is answered
//! with TTL 0 or, after the window, TimeToLive finds it gone; every lease is revoked at the
//! end, so that none expires during a later workload.

use super::cli::connections;
use super::report::LatencySummary;
use super::runner::{connect, new_histogram, record_latency};
use super::scenario::{Mark, Metric, Scenario, ScenarioResult, Settings, Sizes, Spent, Target};
use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Concurrent grants, TimeToLive checks and revokes.
const REQUEST_TASKS: usize = 64;
/// How long a renewal sent at the window's end may take to be answered and still count.
const ANSWER_GRACE: Duration = Duration::from_millis(500);
const SECOND: Duration = Duration::from_secs(1);

#[derive(Debug, Serialize)]
struct Details {
    leases: usize,
    streams: usize,
    ttl_s: i64,
    renew_every_s: f64,
    grant_s: f64,
    renewals_measured: u64,
    renewals_per_s: f64,
    latency: LatencySummary,
    /// Leases a renewal found gone (answered TTL 0) or TimeToLive found gone afterwards.
    leases_lost: usize,
    streams_failed: u64,
    first_problem: Option<String>,
    revoke_errors: u64,
    server_cpu_us_per_renewal: Option<f64>,
    client_cpu_us_per_renewal: Option<f64>,
    spent: Spent,
}

/// What the stream tasks share.
#[derive(Default)]
struct Shared {
    answered: AtomicU64,
    lost: Mutex<HashSet<i64>>,
    streams_failed: AtomicU64,
    first_problem: Mutex<Option<String>>,
}

impl Shared {
    fn note_problem(&self, problem: String) {
        self.streams_failed.fetch_add(1, Relaxed);
        let mut first = self.first_problem.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(problem);
    }
}

pub async fn run(target: &Target, settings: &Settings) -> Result<ScenarioResult, String> {
    let label = target.label(Scenario::LeaseKeepalive);
    let leases = settings.sizes.leases;
    let streams = Sizes::lease_streams_for(leases);
    let conns = connect(&target.endpoints, connections(None, streams)).await?;
    let granting = Instant::now();
    let ids = grant_all(&conns, leases, settings.lease_ttl).await?;
    let grant_s = granting.elapsed().as_secs_f64();
    eprintln!("{label}{leases} leases granted in {grant_s:.1}s");

    let period = Duration::from_secs(settings.lease_ttl as u64) / 3;
    let start = Instant::now();
    let from = start + settings.warmup;
    let until = from + settings.duration;
    let shared = Arc::new(Shared::default());
    let (stop, stopped) = watch::channel(false);
    let mut senders = Vec::with_capacity(streams);
    let mut receivers = JoinSet::new();
    for k in 0..streams {
        // Stream k keeps leases k, k + streams, ...: in grant order, so the first granted
        // are renewed first.
        let mine: Vec<i64> = ids.iter().skip(k).step_by(streams).copied().collect();
        let (keeper, answers) = conns[k % conns.len()]
            .lease_client()
            .keep_alive(mine[0])
            .await
            .map_err(|e| format!("cannot open a keep-alive stream: {e}"))?;
        let sent = Arc::new(Mutex::new(HashMap::with_capacity(mine.len())));
        senders.push(tokio::spawn(send(
            keeper,
            mine,
            period,
            sent.clone(),
            until,
        )));
        receivers.spawn(receive(
            answers,
            sent,
            (from, until),
            shared.clone(),
            stopped.clone(),
        ));
    }
    let spent = progress(target, &shared, start, from, until, &label).await;
    tokio::time::sleep(ANSWER_GRACE).await;
    let _ = stop.send(true);
    for sender in senders {
        // Dropping its keepers (only now, so that no stream was closed while answers were
        // still read) ends the stream. A sender that panicked renewed nothing more: its
        // leases show up as lost.
        drop(sender.await);
    }
    let mut histogram = new_histogram();
    let mut measured = 0;
    while let Some(joined) = receivers.join_next().await {
        if let Ok((h, n)) = joined {
            // Both histograms have the same bounds, so adding cannot fail.
            let _ = histogram.add(&h);
            measured += n;
        }
    }

    let mut lost = shared
        .lost
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    lost.extend(gone(&conns, &ids).await);
    let revoke_errors = revoke_all(&conns, &ids).await;
    let d = Details {
        leases,
        streams,
        ttl_s: settings.lease_ttl,
        renew_every_s: period.as_secs_f64(),
        grant_s,
        renewals_measured: measured,
        renewals_per_s: measured as f64 / spent.seconds,
        latency: LatencySummary::of(&histogram),
        leases_lost: lost.len(),
        streams_failed: shared.streams_failed.load(Relaxed),
        first_problem: shared
            .first_problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        revoke_errors,
        server_cpu_us_per_renewal: spent.server_us_per(measured),
        client_cpu_us_per_renewal: spent
            .client_cpu_s
            .filter(|_| measured > 0)
            .map(|c| c * 1e6 / measured as f64),
        spent,
    };
    eprintln!(
        "{label}{:.0} renewals/s, p50 {:.3} ms, p99 {:.3} ms, {} server CPU µs per renewal, \
         {} leases lost",
        d.renewals_per_s,
        d.latency.p50_us as f64 / 1000.0,
        d.latency.p99_us as f64 / 1000.0,
        d.server_cpu_us_per_renewal
            .map_or("?".into(), |c| format!("{c:.1}")),
        d.leases_lost,
    );
    Ok(result(d))
}

fn result(d: Details) -> ScenarioResult {
    let timed = d.latency.count > 0;
    let mut problems = Vec::new();
    if d.leases_lost > 0 || d.streams_failed > 0 {
        problems.push(format!(
            "{} leases lost, {} keep-alive streams failed{}",
            d.leases_lost,
            d.streams_failed,
            d.first_problem
                .as_ref()
                .map_or(String::new(), |p| format!(" (first: {p})"))
        ));
    }
    if d.revoke_errors > 0 {
        problems.push(format!("{} revokes at the end failed", d.revoke_errors));
    }
    ScenarioResult {
        scenario: Scenario::LeaseKeepalive,
        metrics: vec![
            Metric::lower("server CPU µs per keep-alive", d.server_cpu_us_per_renewal),
            Metric::higher("keep-alives answered/s", Some(d.renewals_per_s)),
            Metric::lower(
                "keep-alive p50 ms",
                timed.then(|| d.latency.p50_us as f64 / 1000.0),
            ),
            Metric::lower(
                "keep-alive p99 ms",
                timed.then(|| d.latency.p99_us as f64 / 1000.0),
            ),
            Metric::lower("leases lost", Some(d.leases_lost as f64)),
        ],
        problems,
        details: serde_json::to_value(&d).unwrap_or_default(),
    }
}

/// Grants `n` leases of `ttl` seconds; their ids in the order they were asked for.
async fn grant_all(conns: &[Client], n: usize, ttl: i64) -> Result<Vec<i64>, String> {
    let tasks = REQUEST_TASKS.min(n);
    let mut set = JoinSet::new();
    for t in 0..tasks {
        let mut lease = conns[t % conns.len()].lease_client();
        set.spawn(async move {
            let mut granted = Vec::new();
            for index in (t..n).step_by(tasks) {
                let response = lease
                    .grant(ttl, None)
                    .await
                    .map_err(|e| format!("lease grant failed: {e}"))?;
                granted.push((index, response.id()));
            }
            Ok::<_, String>(granted)
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(joined) = set.join_next().await {
        all.extend(joined.map_err(|e| format!("a grant task failed: {e}"))??);
    }
    all.sort_unstable();
    Ok(all.into_iter().map(|(_, id)| id).collect())
}

/// Renews `ids` round-robin on one stream, evenly spaced so that each comes every `period`,
/// until `until`. Returns the keepers: the stream stays open while they exist.
async fn send(
    keeper: LeaseKeeper,
    ids: Vec<i64>,
    period: Duration,
    sent: Arc<Mutex<HashMap<i64, Instant>>>,
    until: Instant,
) -> Vec<LeaseKeeper> {
    // The feature `pub-response-field` makes a keeper's fields public: one keeper per lease
    // on the same request channel, so that all renew over this one stream, as a client
    // library keeping many leases alive does (etcd-client opens a stream per lease).
    let mut keepers: Vec<LeaseKeeper> = ids
        .iter()
        .map(|&id| LeaseKeeper {
            id,
            sender: keeper.sender.clone(),
        })
        .collect();
    let mut ticks = tokio::time::interval(period / ids.len() as u32);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in (0..keepers.len()).cycle() {
        let keeper = &mut keepers[i];
        ticks.tick().await;
        let now = Instant::now();
        if now >= until {
            break;
        }
        sent.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(keeper.id(), now);
        if keeper.keep_alive().await.is_err() {
            // The stream is gone; the receiver says why.
            break;
        }
    }
    keepers
}

/// Reads one stream's answers until told to stop; the latencies and count of the answers
/// that arrived in the window.
async fn receive(
    mut answers: LeaseKeepAliveStream,
    sent: Arc<Mutex<HashMap<i64, Instant>>>,
    (from, until): (Instant, Instant),
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> (Histogram<u64>, u64) {
    let mut histogram = new_histogram();
    let mut measured = 0;
    loop {
        let message = tokio::select! {
            m = answers.message() => m,
            _ = stop.changed() => break,
        };
        let answer = match message {
            Ok(Some(answer)) => answer,
            Ok(None) => {
                shared.note_problem("a keep-alive stream was closed by the server".into());
                break;
            }
            Err(e) => {
                shared.note_problem(format!("a keep-alive stream failed: {e}"));
                break;
            }
        };
        let at = Instant::now();
        shared.answered.fetch_add(1, Relaxed);
        if answer.ttl() <= 0 {
            shared
                .lost
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(answer.id());
        }
        let asked = sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&answer.id());
        if let Some(asked) = asked.filter(|_| at >= from && at <= until) {
            record_latency(&mut histogram, at - asked);
            measured += 1;
        }
    }
    (histogram, measured)
}

/// Prints renewals answered per second until `until`; what the window from `from` cost.
async fn progress(
    target: &Target,
    shared: &Shared,
    start: Instant,
    from: Instant,
    until: Instant,
    label: &str,
) -> Spent {
    let mut before = None;
    let mut next_tick = start + SECOND;
    let (mut last, mut last_at) = (0, start);
    loop {
        let now = Instant::now();
        if before.is_none() && now >= from {
            before = Some(Mark::take(target));
        }
        if now >= until {
            break;
        }
        if now >= next_tick {
            let answered = shared.answered.load(Relaxed);
            let rate = (answered - last) as f64 / (now - last_at).as_secs_f64();
            let phase = if now < from { "warm-up" } else { "measuring" };
            eprintln!(
                "{label}{phase} {:>5.1}s {rate:>8.0} keep-alives/s answered, {} leases lost",
                (now - start).as_secs_f64(),
                shared.lost.lock().unwrap_or_else(|e| e.into_inner()).len()
            );
            (last, last_at) = (answered, now);
            next_tick += SECOND;
        }
        let mut wake = until.min(next_tick);
        if before.is_none() {
            wake = wake.min(from);
        }
        tokio::time::sleep_until(wake.into()).await;
    }
    let after = Mark::take(target);
    before.unwrap_or(after).until(&after)
}

/// The leases TimeToLive says are gone (TTL -1, or 0 while being revoked).
async fn gone(conns: &[Client], ids: &[i64]) -> Vec<i64> {
    per_lease(conns, ids, |mut lease, id| async move {
        match lease.time_to_live(id, None).await {
            Ok(r) if r.ttl() > 0 => None,
            _ => Some(id),
        }
    })
    .await
}

/// Revokes every lease; how many revokes failed.
async fn revoke_all(conns: &[Client], ids: &[i64]) -> u64 {
    let failed = per_lease(conns, ids, |mut lease, id| async move {
        lease.revoke(id).await.err().map(|_| id)
    })
    .await;
    failed.len() as u64
}

/// Runs `f` for every lease from [`REQUEST_TASKS`] tasks; the ids it returned.
async fn per_lease<F, Fut>(conns: &[Client], ids: &[i64], f: F) -> Vec<i64>
where
    F: Fn(etcd_client::LeaseClient, i64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Option<i64>> + Send,
{
    let tasks = REQUEST_TASKS.min(ids.len()).max(1);
    let mut set = JoinSet::new();
    for t in 0..tasks {
        let lease = conns[t % conns.len()].lease_client();
        let mine: Vec<i64> = ids.iter().skip(t).step_by(tasks).copied().collect();
        let f = f.clone();
        set.spawn(async move {
            let mut out = Vec::new();
            for id in mine {
                out.extend(f(lease.clone(), id).await);
            }
            out
        });
    }
    let mut out = Vec::new();
    while let Some(joined) = set.join_next().await {
        out.extend(joined.unwrap_or_default());
    }
    out
}
