//! `watch-latency`: how soon a watcher sees a put. A writer puts to the leader at a fixed
//! rate (open loop, [`super::writer`]); watchers of the written prefix sit on one member.
//! Each event's latency runs from the moment the put's response reached the writer (the
//! client's view of the acknowledgement) to the moment the event reached the watcher; an
//! event that arrived before the acknowledgement counts as 0. Run with 1 and with 1,000
//! watchers (100 to a stream), each with the watchers on a follower ("other member": the
//! event travels through replication) and on the leader ("same member"); every watcher's
//! arrivals are timed.

use super::writer::{event_latency, paced_puts, EventLatency};
use super::{ms, Fleet, DRAIN_TIMEOUT};
use crate::loadgen::cli::connections;
use crate::loadgen::runner::connect;
use crate::loadgen::scenario::{
    Mark, Metric, Scenario, ScenarioResult, Settings, Sizes, Spent, Target,
};
use serde::Serialize;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Placement {
    /// A follower: writes go to the leader.
    OtherMember,
    /// The leader, which the writer writes to.
    SameMember,
}

impl Placement {
    fn describe(self) -> &'static str {
        match self {
            Placement::OtherMember => "other member",
            Placement::SameMember => "same member",
        }
    }

    fn endpoint(self, target: &Target) -> &str {
        match self {
            Placement::OtherMember => &target.endpoints[1],
            Placement::SameMember => &target.endpoints[0],
        }
    }
}

/// One watcher count at one placement.
#[derive(Debug, Serialize)]
struct Point {
    watchers: usize,
    streams: usize,
    placement: Placement,
    endpoint: String,
    /// Puts sent in the measured window (their events are the ones timed).
    puts_measured: usize,
    latency: EventLatency,
    /// Events short of one per put per watcher once the watchers drained.
    missing_events: u64,
    /// From the writer's stop until every watcher had the last put; none: not within
    /// [`DRAIN_TIMEOUT`].
    drained_s: Option<f64>,
    writer_errors: u64,
    /// Writer ticks that sent nothing: too many puts unanswered.
    writer_skipped: u64,
    canceled: u64,
    streams_failed: u64,
    first_problem: Option<String>,
    spent: Spent,
}

impl Point {
    fn label(&self) -> String {
        let s = if self.watchers == 1 { "" } else { "s" };
        format!(
            "{} watcher{s}, {}",
            self.watchers,
            self.placement.describe()
        )
    }

    fn problems(&self) -> Vec<String> {
        let label = self.label();
        let mut problems = Vec::new();
        if self.missing_events > 0 || self.canceled > 0 || self.streams_failed > 0 {
            problems.push(format!(
                "{label}: {} events missing, {} watchers canceled, {} streams failed{}",
                self.missing_events,
                self.canceled,
                self.streams_failed,
                self.first_problem
                    .as_ref()
                    .map_or(String::new(), |p| format!(" (first: {p})"))
            ));
        }
        if self.writer_errors > 0 || self.writer_skipped > 0 {
            problems.push(format!(
                "{label}: {} puts failed, {} not sent (too many unanswered)",
                self.writer_errors, self.writer_skipped
            ));
        }
        problems
    }
}

pub async fn run(target: &Target, settings: &Settings) -> Result<ScenarioResult, String> {
    if target.endpoints.len() < 2 {
        return Err("watch-latency needs a member besides the leader".into());
    }
    let mut counts = settings.sizes.latency_watchers.to_vec();
    counts.dedup();
    let mut points = Vec::new();
    for watchers in counts {
        for placement in [Placement::OtherMember, Placement::SameMember] {
            points.push(measure(target, settings, watchers, placement).await?);
        }
    }
    let mut metrics = Vec::new();
    for p in &points {
        let measured = p.latency.after_ack.count > 0;
        let value = |us: u64| measured.then(|| ms(us));
        let label = p.label();
        metrics.push(Metric::lower(
            format!("{label}: p50 ms"),
            value(p.latency.after_ack.p50_us),
        ));
        metrics.push(Metric::lower(
            format!("{label}: p99 ms"),
            value(p.latency.after_ack.p99_us),
        ));
    }
    Ok(ScenarioResult {
        scenario: Scenario::WatchLatency,
        metrics,
        problems: points.iter().flat_map(Point::problems).collect(),
        details: serde_json::json!({
            "put_rate": settings.latency_put_rate,
            "points": points,
        }),
    })
}

async fn measure(
    target: &Target,
    settings: &Settings,
    watchers: usize,
    placement: Placement,
) -> Result<Point, String> {
    let endpoint = placement.endpoint(target).to_string();
    let streams = Sizes::streams_for(watchers);
    let conns = connect(std::slice::from_ref(&endpoint), connections(None, streams)).await?;
    let writer_conn = connect(&target.endpoints[..1], 1).await?;
    let prefix = format!(
        "synod-bench/watch-latency/{watchers}-{}/",
        placement.describe().replace(' ', "-")
    );
    let fleet = Fleet::open(&conns, prefix.as_bytes(), watchers, streams, Some(1)).await?;

    let start = Instant::now();
    let from = start + settings.warmup;
    let until = from + settings.duration;
    let acked = Arc::new(AtomicI64::new(0));
    let writer = tokio::spawn(paced_puts(
        writer_conn[0].kv_client(),
        prefix.into_bytes(),
        Target::value(settings.value_size),
        settings.latency_put_rate,
        until,
        acked,
    ));
    tokio::time::sleep_until(from.into()).await;
    let before = Mark::take(target);
    tokio::time::sleep_until(until.into()).await;
    let spent = before.until(&Mark::take(target));
    let writer = writer
        .await
        .map_err(|e| format!("the writer failed: {e}"))?;

    let last = writer.last_revision();
    let drained = fleet.board.drained(last, DRAIN_TIMEOUT).await;
    let board = fleet.board.clone();
    let arrivals = fleet.close().await;
    let latency = event_latency(&writer.puts, from, until, &arrivals);
    let point = Point {
        watchers,
        streams,
        placement,
        endpoint,
        puts_measured: writer.sent_in(from, until),
        latency,
        missing_events: board.missing(writer.puts.len() as u64),
        drained_s: drained.map(|d| d.as_secs_f64()),
        writer_errors: writer.errors,
        writer_skipped: writer.skipped,
        canceled: board.canceled.load(Relaxed),
        streams_failed: board.streams_failed.load(Relaxed),
        first_problem: board.first_problem().or(writer.first_error),
        spent,
    };
    eprintln!(
        "{}{}: event after ack p50 {:.3} ms, p99 {:.3} ms ({} events timed, {} before the ack), \
         {} missing",
        target.label(Scenario::WatchLatency),
        point.label(),
        ms(latency.after_ack.p50_us),
        ms(latency.after_ack.p99_us),
        latency.after_ack.count,
        latency.before_ack,
        point.missing_events,
    );
    Ok(point)
}
