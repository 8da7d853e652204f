//! The paced writer of the watch workloads, and the latency of its puts' events: from the
//! acknowledgement (and from the send) to each event's arrival at a watcher.

use super::Arrival;
use crate::loadgen::report::LatencySummary;
use crate::loadgen::runner::{new_histogram, record_latency};
use etcd_client::KvClient;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::{JoinError, JoinSet};

/// Keys the writer cycles through under its prefix.
const WRITER_KEYS: u64 = 100;
/// Puts the writer keeps outstanding at most; beyond, a tick sends nothing (and says so).
pub const WRITER_IN_FLIGHT_MAX: usize = 64;

/// One put of the paced writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutRecord {
    pub revision: i64,
    pub sent: Instant,
    /// When its response reached the writer: the client's view of the acknowledgement.
    pub acked: Instant,
}

#[derive(Debug, Default)]
pub struct Writer {
    /// In the order they were acknowledged.
    pub puts: Vec<PutRecord>,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Ticks that sent nothing because [`WRITER_IN_FLIGHT_MAX`] puts were outstanding.
    pub skipped: u64,
}

impl Writer {
    /// The revision of the last put acknowledged (0: none).
    pub fn last_revision(&self) -> i64 {
        self.puts.iter().map(|p| p.revision).max().unwrap_or(0)
    }

    /// Puts sent in `[from, until)`.
    pub fn sent_in(&self, from: Instant, until: Instant) -> usize {
        self.puts
            .iter()
            .filter(|p| p.sent >= from && p.sent < until)
            .count()
    }
}

/// Puts `value` under `prefix` `rate` times a second until `until`, open loop: a put is sent
/// at every tick whether or not earlier ones were answered (up to
/// [`WRITER_IN_FLIGHT_MAX`]), so a slow server gets the same writes as a fast one. Each
/// acknowledged revision is published in `acked`. Waits for the puts in flight at the end.
pub async fn paced_puts(
    kv: KvClient,
    prefix: Vec<u8>,
    value: Vec<u8>,
    rate: f64,
    until: Instant,
    acked: Arc<AtomicI64>,
) -> Writer {
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    // Ticks the load generator itself missed (starved of CPU) are sent late, not dropped.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut writer = Writer::default();
    let mut in_flight = JoinSet::new();
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if Instant::now() >= until {
                    break;
                }
                if in_flight.len() >= WRITER_IN_FLIGHT_MAX {
                    writer.skipped += 1;
                    continue;
                }
                let mut key = prefix.clone();
                key.extend_from_slice(format!("{:03}", n % WRITER_KEYS).as_bytes());
                n += 1;
                in_flight.spawn(put(kv.clone(), key, value.clone(), acked.clone()));
            }
            Some(done) = in_flight.join_next() => writer.note(done),
        }
    }
    while let Some(done) = in_flight.join_next().await {
        writer.note(done);
    }
    writer
}

impl Writer {
    fn note(&mut self, done: Result<Result<PutRecord, String>, JoinError>) {
        match done.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(record) => self.puts.push(record),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

async fn put(
    mut kv: KvClient,
    key: Vec<u8>,
    value: Vec<u8>,
    acked: Arc<AtomicI64>,
) -> Result<PutRecord, String> {
    let sent = Instant::now();
    let response = kv.put(key, value, None).await.map_err(|e| e.to_string())?;
    let ack = Instant::now();
    let revision = response.header().map_or(0, |h| h.revision());
    acked.fetch_max(revision, Relaxed);
    Ok(PutRecord {
        revision,
        sent,
        acked: ack,
    })
}

/// Event latencies of the puts sent inside a window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EventLatency {
    /// From the put's acknowledgement reaching the writer to the event reaching the
    /// watcher; an event that arrived first counts as 0 (recorded as 1 µs).
    pub after_ack: LatencySummary,
    /// From sending the put to the event's arrival.
    pub after_send: LatencySummary,
    /// Events that arrived before the writer had the put's acknowledgement.
    pub before_ack: u64,
}

pub fn event_latency(
    puts: &[PutRecord],
    from: Instant,
    until: Instant,
    arrivals: &[Arrival],
) -> EventLatency {
    let by_revision: HashMap<i64, &PutRecord> = puts
        .iter()
        .filter(|p| p.sent >= from && p.sent < until)
        .map(|p| (p.revision, p))
        .collect();
    let mut after_ack = new_histogram();
    let mut after_send = new_histogram();
    let mut before_ack = 0;
    for a in arrivals {
        let Some(put) = by_revision.get(&a.revision) else {
            continue;
        };
        if a.at < put.acked {
            before_ack += 1;
        }
        record_latency(&mut after_ack, a.at.saturating_duration_since(put.acked));
        record_latency(&mut after_send, a.at.saturating_duration_since(put.sent));
    }
    EventLatency {
        after_ack: LatencySummary::of(&after_ack),
        after_send: LatencySummary::of(&after_send),
        before_ack,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_counts_only_puts_sent_in_the_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let puts = [
            PutRecord {
                revision: 5,
                sent: at(0),
                acked: at(2),
            },
            PutRecord {
                revision: 6,
                sent: at(100),
                acked: at(103),
            },
            PutRecord {
                revision: 7,
                sent: at(200),
                acked: at(201),
            },
        ];
        let arrival = |watcher, revision, ms| Arrival {
            watcher,
            revision,
            at: at(ms),
        };
        let arrivals = [
            arrival(0, 5, 3),   // before the window
            arrival(0, 6, 107), // 4 ms after the ack, 7 after the send
            arrival(1, 6, 102), // before the ack
            arrival(0, 7, 300), // after the window's end: sent at 200, outside
            arrival(0, 9, 120), // no such put
        ];
        let l = event_latency(&puts, at(50), at(150), &arrivals);
        assert_eq!(l.after_ack.count, 2);
        assert_eq!(l.before_ack, 1);
        assert!((3_990..=4_010).contains(&l.after_ack.max_us));
        assert_eq!(l.after_ack.p50_us, 1);
        assert_eq!(l.after_send.count, 2);
        assert!((6_990..=7_010).contains(&l.after_send.max_us));
    }

    #[test]
    fn the_writer_reports_its_last_revision_and_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut writer = Writer::default();
        assert_eq!(writer.last_revision(), 0);
        // Acknowledged out of order: the open-loop writer has several puts in flight.
        for (revision, sent) in [(7, 20), (6, 10), (8, 30)] {
            writer.note(Ok(Ok(PutRecord {
                revision,
                sent: at(sent),
                acked: at(sent + 5),
            })));
        }
        writer.note(Ok(Err("etcdserver: request timed out".into())));
        assert_eq!(writer.last_revision(), 8);
        assert_eq!(writer.sent_in(at(10), at(30)), 2);
        assert_eq!(writer.errors, 1);
        assert_eq!(
            writer.first_error.as_deref(),
            Some("etcdserver: request timed out")
        );
    }
}
