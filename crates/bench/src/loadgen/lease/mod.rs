//! `lease-keepalive`: 10,000 leases (TTL 10 s) kept alive at once, over 100 keep-alive
//! streams of 100 leases each on connections spread over every member (stream i on
//! connection i mod 16, so a third of the renewals reach the leader directly and the rest
//! are forwarded by a follower). Each stream grants its leases and renews each every TTL/3
//! from its grant on, the renewals of a stream evenly spaced ([`stream`]); the warm-up
//! starts once all are granted. Measured in the window: renewals
//! answered per second, their latency (send to answer), and the members' CPU per renewal,
//! taken as the closed-loop workloads take it. A lease is lost if a renewal is answered
//! with TTL 0 or, after the window, TimeToLive finds it gone; every lease is revoked at the
//! end, so that none expires during a later workload.

mod stream;

use super::cli::connections;
use super::report::LatencySummary;
use super::runner::{connect, new_histogram};
use super::scenario::{Mark, Metric, Scenario, ScenarioResult, Settings, Sizes, Spent, Target};
use etcd_client::Client;
use serde::Serialize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stream::{Control, KeptStream, Shared};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Concurrent TimeToLive checks and revokes at the end.
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
    /// Leases a renewal found gone (answered TTL 0) or TimeToLive found gone after the
    /// window (renewals still going on), and each count.
    leases_lost: usize,
    renewals_answered_ttl_0: usize,
    gone_after: usize,
    streams_failed: u64,
    first_problem: Option<String>,
    revoke_errors: u64,
    revoke_error: Option<String>,
    /// Leases a revoke at the end did not find: they expired after the renewals stopped
    /// (checked alive just before), which a slow revoke lets happen.
    expired_before_revoke: u64,
    server_cpu_us_per_renewal: Option<f64>,
    client_cpu_us_per_renewal: Option<f64>,
    spent: Spent,
}

pub async fn run(target: &Target, settings: &Settings) -> Result<ScenarioResult, String> {
    let label = target.label(Scenario::LeaseKeepalive);
    let leases = settings.sizes.leases;
    let streams = Sizes::lease_streams_for(leases);
    let conns = connect(&target.endpoints, connections(None, streams)).await?;
    let period = Duration::from_secs(settings.lease_ttl as u64) / 3;
    let shared = Arc::new(Shared::default());
    let (window, window_rx) = watch::channel(None);
    let (stop_sending, stop_sending_rx) = watch::channel(false);
    let (stop_reading, stop_reading_rx) = watch::channel(false);
    let control = Control {
        window: window_rx,
        stop_sending: stop_sending_rx,
        stop_reading: stop_reading_rx,
    };

    let granting = Instant::now();
    let mut starting = JoinSet::new();
    for k in 0..streams {
        // Stream k keeps leases [k L/S, (k+1) L/S): as even a split as the counts allow.
        let count = (k + 1) * leases / streams - k * leases / streams;
        starting.spawn(KeptStream::start(
            conns[k % conns.len()].clone(),
            count,
            settings.lease_ttl,
            period,
            shared.clone(),
            control.clone(),
        ));
    }
    let mut kept = Vec::with_capacity(streams);
    while let Some(joined) = starting.join_next().await {
        kept.push(joined.map_err(|e| format!("a keep-alive stream failed: {e}"))??);
    }
    let grant_s = granting.elapsed().as_secs_f64();
    eprintln!("{label}{leases} leases granted and being kept alive after {grant_s:.1}s");

    let start = Instant::now();
    let from = start + settings.warmup;
    let until = from + settings.duration;
    // Every stream's tasks hold a receiver until they end, so this cannot fail.
    let _ = window.send(Some((from, until)));
    let spent = progress(target, &shared, start, from, until, &label).await;
    // Renewals go on while every lease is checked, so that none expires meanwhile (on a busy
    // machine, 10,000 checks can take seconds).
    let ids: Vec<i64> = kept.iter().flat_map(KeptStream::ids).collect();
    let gone_after = gone(&conns, &ids).await;
    let _ = stop_sending.send(true);
    tokio::time::sleep(ANSWER_GRACE).await;
    let _ = stop_reading.send(true);
    let mut histogram = new_histogram();
    let mut measured = 0;
    for stream in kept {
        let (h, n) = stream.finish().await;
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = histogram.add(&h);
        measured += n;
    }
    let revoked = revoke_all(&conns, &ids).await;
    let renewed_lost = shared
        .lost
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut lost = renewed_lost.clone();
    lost.extend(&gone_after);
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
        renewals_answered_ttl_0: renewed_lost.len(),
        gone_after: gone_after.len(),
        streams_failed: shared.streams_failed.load(Relaxed),
        first_problem: shared
            .first_problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        revoke_errors: revoked.failed,
        revoke_error: revoked.first_error,
        expired_before_revoke: revoked.not_found,
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
        problems.push(format!(
            "{} revokes at the end failed (first: {})",
            d.revoke_errors,
            d.revoke_error.as_deref().unwrap_or("?")
        ));
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
    let (mut last, mut last_at) = (shared.answered.load(Relaxed), start);
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

#[derive(Debug, Default)]
struct Revoked {
    failed: u64,
    first_error: Option<String>,
    not_found: u64,
}

/// Revokes every lease. A lease not found is counted apart: etcd and Synod both answer
/// "etcdserver: requested lease not found" (NotFound) for it.
async fn revoke_all(conns: &[Client], ids: &[i64]) -> Revoked {
    let tally = Arc::new(Mutex::new(Revoked::default()));
    let noted = tally.clone();
    per_lease(conns, ids, move |mut lease, id| {
        let noted = noted.clone();
        async move {
            let e = lease.revoke(id).await.err()?;
            let text = e.to_string();
            let mut tally = noted.lock().unwrap_or_else(|e| e.into_inner());
            if text.contains("requested lease not found") {
                tally.not_found += 1;
            } else {
                tally.failed += 1;
                tally.first_error.get_or_insert(text);
            }
            Some(id)
        }
    })
    .await;
    let mut tally = tally.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::take(&mut *tally)
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
