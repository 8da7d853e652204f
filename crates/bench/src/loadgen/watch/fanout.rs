//! `watch-fanout`: 10,000 watchers of one prefix over 100 streams spread over every member
//! (stream i on connection i mod 16, connection j to member j mod 3), while a writer puts to
//! the leader at a fixed rate (open loop, [`super::writer`]), so every put is an event for
//! every watcher. Measured: events delivered per second in the window against what was
//! written, server CPU per event, event latency after the acknowledgement at every tenth watcher
//! of a stream, and whether anyone fell behind: once a second, the watchers still lacking a
//! revision acknowledged a second or more earlier; after the writer stops, how long until
//! all have its last put, and the events still missing then; watchers canceled by the
//! server.

use super::writer::{event_latency, paced_puts, EventLatency};
use super::{ms, Board, Fleet, DRAIN_TIMEOUT};
use crate::loadgen::cli::connections;
use crate::loadgen::runner::connect;
use crate::loadgen::scenario::{
    Mark, Metric, Scenario, ScenarioResult, Settings, Sizes, Spent, Target,
};
use serde::Serialize;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PREFIX: &str = "synod-bench/watch-fanout/";
const SECOND: Duration = Duration::from_secs(1);
/// Every 10th watcher of a stream is timed (1,000 of 10,000): enough for p99, and spread over
/// the stream's positions.
const SAMPLE_EVERY: usize = 10;

#[derive(Debug, Serialize)]
struct Details {
    watchers: usize,
    streams: usize,
    put_rate: f64,
    /// Seconds to create every watcher.
    open_s: f64,
    puts_measured: usize,
    events_measured: u64,
    delivered_per_s: f64,
    /// Puts sent in the window times the watchers, per second of the window.
    expected_per_s: f64,
    /// Most watchers lacking, at one of the once-a-second checks in the window, a revision
    /// acknowledged at least a second before.
    behind_max: usize,
    drained_s: Option<f64>,
    missing_events: u64,
    canceled: u64,
    streams_failed: u64,
    writer_errors: u64,
    /// Writer ticks that sent nothing: too many puts unanswered.
    writer_skipped: u64,
    first_problem: Option<String>,
    /// At every tenth watcher of each stream.
    latency: EventLatency,
    server_cpu_us_per_event: Option<f64>,
    client_cpu_us_per_event: Option<f64>,
    spent: Spent,
}

pub async fn run(target: &Target, settings: &Settings) -> Result<ScenarioResult, String> {
    let label = target.label(Scenario::WatchFanout);
    let watchers = settings.sizes.fanout_watchers;
    let streams = Sizes::streams_for(watchers);
    let conns = connect(&target.endpoints, connections(None, streams)).await?;
    let writer_conn = connect(&target.endpoints[..1], 1).await?;
    let opening = Instant::now();
    let fleet = Fleet::open(
        &conns,
        PREFIX.as_bytes(),
        watchers,
        streams,
        Some(SAMPLE_EVERY),
    )
    .await?;
    let open_s = opening.elapsed().as_secs_f64();
    eprintln!("{label}{watchers} watchers on {streams} streams created in {open_s:.1}s");

    let start = Instant::now();
    let from = start + settings.warmup;
    let until = from + settings.duration;
    let acked = Arc::new(AtomicI64::new(0));
    let writer = tokio::spawn(paced_puts(
        writer_conn[0].kv_client(),
        PREFIX.into(),
        Target::value(settings.value_size),
        settings.fanout_put_rate,
        until,
        acked.clone(),
    ));
    let window = watch_window(target, &fleet.board, &acked, start, from, until, &label).await;
    let writer = writer
        .await
        .map_err(|e| format!("the writer failed: {e}"))?;

    let last = writer.last_revision();
    let drained = fleet.board.drained(last, DRAIN_TIMEOUT).await;
    let board = fleet.board.clone();
    let arrivals = fleet.close().await;
    let seconds = window.spent.seconds;
    let puts_measured = writer.sent_in(from, until);
    let d = Details {
        watchers,
        streams,
        put_rate: settings.fanout_put_rate,
        open_s,
        puts_measured,
        events_measured: window.events,
        delivered_per_s: window.events as f64 / seconds,
        expected_per_s: (puts_measured * watchers) as f64 / seconds,
        behind_max: window.behind_max,
        drained_s: drained.map(|d| d.as_secs_f64()),
        missing_events: board.missing(writer.puts.len() as u64),
        canceled: board.canceled.load(Relaxed),
        streams_failed: board.streams_failed.load(Relaxed),
        writer_errors: writer.errors,
        writer_skipped: writer.skipped,
        first_problem: board.first_problem().or(writer.first_error),
        latency: event_latency(&writer.puts, from, until, &arrivals),
        server_cpu_us_per_event: window.spent.server_us_per(window.events),
        client_cpu_us_per_event: window
            .spent
            .client_cpu_s
            .filter(|_| window.events > 0)
            .map(|c| c * 1e6 / window.events as f64),
        spent: window.spent,
    };
    eprintln!(
        "{label}{:.0} events/s delivered of {:.0} written, {} server CPU µs per event, \
         at most {} watchers over 1 s behind, drained in {}, {} missing, {} canceled",
        d.delivered_per_s,
        d.expected_per_s,
        d.server_cpu_us_per_event
            .map_or("?".into(), |c| format!("{c:.2}")),
        d.behind_max,
        d.drained_s.map_or("-".into(), |s| format!("{s:.2}s")),
        d.missing_events,
        d.canceled,
    );
    Ok(result(d))
}

fn result(d: Details) -> ScenarioResult {
    let timed = d.latency.after_ack.count > 0;
    let mut problems = Vec::new();
    if d.missing_events > 0 || d.canceled > 0 || d.streams_failed > 0 || d.behind_max > 0 {
        problems.push(format!(
            "{} events missing after {DRAIN_TIMEOUT:?}, at most {} watchers over 1 s behind, \
             {} watchers canceled, {} streams failed{}",
            d.missing_events,
            d.behind_max,
            d.canceled,
            d.streams_failed,
            d.first_problem
                .as_ref()
                .map_or(String::new(), |p| format!(" (first: {p})"))
        ));
    }
    if d.writer_errors > 0 || d.writer_skipped > 0 {
        problems.push(format!(
            "{} puts failed, {} not sent (too many unanswered)",
            d.writer_errors, d.writer_skipped
        ));
    }
    ScenarioResult {
        scenario: Scenario::WatchFanout,
        metrics: vec![
            Metric::higher("events delivered/s", Some(d.delivered_per_s)),
            Metric::lower("server CPU µs per event", d.server_cpu_us_per_event),
            Metric::lower(
                "event after ack p50 ms (every 10th watcher)",
                timed.then(|| ms(d.latency.after_ack.p50_us)),
            ),
            Metric::lower(
                "event after ack p99 ms (every 10th watcher)",
                timed.then(|| ms(d.latency.after_ack.p99_us)),
            ),
            Metric::lower("watchers over 1 s behind (most)", Some(d.behind_max as f64)),
            Metric::lower("watchers canceled", Some(d.canceled as f64)),
            Metric::lower("events missing after drain", Some(d.missing_events as f64)),
        ],
        problems,
        details: serde_json::to_value(&d).unwrap_or_default(),
    }
}

struct Window {
    spent: Spent,
    events: u64,
    behind_max: usize,
}

/// Waits out the warm-up and the measured window, checking once a second who is behind and
/// printing progress; CPU and events are taken at the window's edges.
async fn watch_window(
    target: &Target,
    board: &Board,
    acked: &AtomicI64,
    start: Instant,
    from: Instant,
    until: Instant,
    label: &str,
) -> Window {
    let mut before: Option<(Mark, u64)> = None;
    let mut next_tick = start + SECOND;
    // The revision acknowledged at the previous check: a second or more old at this one.
    let mut reference = 0;
    let (mut last_events, mut last_at) = (0, start);
    let mut behind_max = 0;
    loop {
        let now = Instant::now();
        if before.is_none() && now >= from {
            before = Some((Mark::take(target), board.events_total.load(Relaxed)));
        }
        if now >= until {
            break;
        }
        if now >= next_tick {
            let behind = if reference > 0 {
                board.behind(reference)
            } else {
                0
            };
            if now >= from {
                behind_max = behind_max.max(behind);
            }
            reference = acked.load(Relaxed);
            let events = board.events_total.load(Relaxed);
            let rate = (events - last_events) as f64 / (now - last_at).as_secs_f64();
            let phase = if now < from { "warm-up" } else { "measuring" };
            eprintln!(
                "{label}{phase} {:>5.1}s {rate:>10.0} events/s, {behind} watchers over 1 s behind",
                (now - start).as_secs_f64()
            );
            (last_events, last_at) = (events, now);
            next_tick += SECOND;
        }
        let mut wake = until.min(next_tick);
        if before.is_none() {
            wake = wake.min(from);
        }
        tokio::time::sleep_until(wake.into()).await;
    }
    let after = Mark::take(target);
    let events_after = board.events_total.load(Relaxed);
    // The loop takes `before` once `from` has passed, which it does before `until`.
    let (mark, events_before) = before.unwrap_or((after, events_after));
    Window {
        spent: mark.until(&after),
        events: events_after - events_before,
        behind_max,
    }
}
