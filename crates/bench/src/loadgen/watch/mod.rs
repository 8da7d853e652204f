//! The watch workloads and what they share: a [`Fleet`] of watchers on one prefix, many to a
//! stream, each stream read by a task of its own that counts every watcher's events and notes
//! when sampled watchers' events arrive; and ([`writer`]) a paced writer that notes when each
//! put was sent and acknowledged, and latencies from those two.
//!
//! - [`latency`] runs `watch-latency`.
//! - [`fanout`] runs `watch-fanout`.
//! - [`memory`] runs `watch-memory`.
//! - [`writer`] is the paced writer and the event latencies.

pub mod fanout;
pub mod latency;
pub mod memory;
pub mod writer;

use etcd_client::{Client, WatchOptions, WatchRequestSender, WatchResponseStream};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// How long the watchers of one stream may take to be created.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long watchers may take, after the writer stopped, to receive its last put.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN_POLL: Duration = Duration::from_millis(5);

/// What the stream readers report as they go; the workload reads it at any time.
#[derive(Debug)]
pub struct Board {
    /// Per watcher: the highest revision it got an event of (0: none yet).
    last_revision: Vec<AtomicI64>,
    /// Per watcher: events received.
    events: Vec<AtomicU64>,
    pub events_total: AtomicU64,
    /// Watchers the server canceled.
    pub canceled: AtomicU64,
    /// Streams that ended or failed before the workload closed them.
    pub streams_failed: AtomicU64,
    first_problem: Mutex<Option<String>>,
}

impl Board {
    fn new(watchers: usize) -> Board {
        Board {
            last_revision: (0..watchers).map(|_| AtomicI64::new(0)).collect(),
            events: (0..watchers).map(|_| AtomicU64::new(0)).collect(),
            events_total: AtomicU64::new(0),
            canceled: AtomicU64::new(0),
            streams_failed: AtomicU64::new(0),
            first_problem: Mutex::new(None),
        }
    }

    fn note_problem(&self, problem: String) {
        let mut first = self.first_problem.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(problem);
    }

    /// The first cancel or stream failure seen, if any.
    pub fn first_problem(&self) -> Option<String> {
        self.first_problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Watchers that have not yet received the event of `revision`.
    pub fn behind(&self, revision: i64) -> usize {
        self.last_revision
            .iter()
            .filter(|r| r.load(Relaxed) < revision)
            .count()
    }

    /// Events short of `expected` per watcher, summed over the watchers.
    pub fn missing(&self, expected: u64) -> u64 {
        self.events
            .iter()
            .map(|e| expected.saturating_sub(e.load(Relaxed)))
            .sum()
    }

    /// Waits until every watcher got the event of `revision`; how long that took, or `None`
    /// if some had not after `timeout`.
    pub async fn drained(&self, revision: i64, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        while self.behind(revision) > 0 {
            if start.elapsed() >= timeout {
                return None;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
        Some(start.elapsed())
    }
}

/// When an event of `revision` reached sampled watcher `watcher`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub watcher: usize,
    pub revision: i64,
    pub at: Instant,
}

/// Watchers on one prefix over several streams.
#[derive(Debug)]
pub struct Fleet {
    pub board: Arc<Board>,
    /// Kept so that the streams stay open until [`Fleet::close`].
    senders: Vec<WatchRequestSender>,
    readers: Vec<JoinHandle<Vec<Arrival>>>,
    stop: watch::Sender<bool>,
}

impl Fleet {
    /// Creates `watchers` watchers of `prefix` from the current revision, over `streams`
    /// streams (stream i on connection i mod their number), and returns once every one is
    /// created. Every `sample_every`-th watcher of each stream, from its first, notes its
    /// arrivals (none if `None`): spread over the stream, since a stream delivers a put's
    /// responses one watcher after another and the last wait for the first.
    pub async fn open(
        conns: &[Client],
        prefix: &[u8],
        watchers: usize,
        streams: usize,
        sample_every: Option<usize>,
    ) -> Result<Fleet, String> {
        if conns.is_empty() || streams == 0 || watchers < streams {
            return Err("a fleet needs connections and at least one watcher per stream".into());
        }
        let board = Arc::new(Board::new(watchers));
        let (stop, stopped) = watch::channel(false);
        let mut opening = JoinSet::new();
        for s in 0..streams {
            // Stream s holds watchers [first, end): as even a split as the counts allow.
            let first = s * watchers / streams;
            let end = (s + 1) * watchers / streams;
            let client = conns[s % conns.len()].clone();
            let prefix = prefix.to_vec();
            opening.spawn(async move {
                let opened = tokio::time::timeout(
                    CREATE_TIMEOUT,
                    open_stream(client, prefix, first, end - first),
                )
                .await;
                match opened {
                    Ok(result) => {
                        result.map(|(sender, responses, ids)| (first, sender, responses, ids))
                    }
                    Err(_) => Err(format!(
                        "{} watchers not created within {CREATE_TIMEOUT:?}",
                        end - first
                    )),
                }
            });
        }
        let mut senders = Vec::with_capacity(streams);
        let mut readers = Vec::with_capacity(streams);
        while let Some(joined) = opening.join_next().await {
            let (first, sender, responses, ids) =
                joined.map_err(|e| format!("opening a watch stream: {e}"))??;
            senders.push(sender);
            let sample = sample_every.map(|every| Sample {
                first,
                every: every.max(1),
            });
            readers.push(tokio::spawn(read(
                responses,
                ids,
                sample,
                board.clone(),
                stopped.clone(),
            )));
        }
        Ok(Fleet {
            board,
            senders,
            readers,
            stop,
        })
    }

    /// Stops reading, closes the streams and hands back the sampled arrivals.
    pub async fn close(self) -> Vec<Arrival> {
        // Receivers may all be gone already (their streams failed): nothing to tell then.
        let _ = self.stop.send(true);
        let mut arrivals = Vec::new();
        for reader in self.readers {
            if let Ok(mut a) = reader.await {
                arrivals.append(&mut a);
            }
        }
        drop(self.senders);
        arrivals
    }
}

/// Which watchers of a stream note their arrivals.
#[derive(Debug, Clone, Copy)]
struct Sample {
    first: usize,
    every: usize,
}

impl Sample {
    fn takes(self, watcher: usize) -> bool {
        (watcher - self.first).is_multiple_of(self.every)
    }
}

/// One stream with `count` watchers of `prefix` numbered from `first`: the creates are sent
/// together, then the created responses awaited. Returns the stream's two halves and the
/// watcher number of each watch id.
async fn open_stream(
    client: Client,
    prefix: Vec<u8>,
    first: usize,
    count: usize,
) -> Result<(WatchRequestSender, WatchResponseStream, HashMap<i64, usize>), String> {
    let options = || Some(WatchOptions::new().with_prefix());
    let mut stream = client
        .watch_client()
        .watch(prefix.clone(), options())
        .await
        .map_err(|e| format!("cannot open a watch stream: {e}"))?;
    for _ in 1..count {
        stream
            .watch(prefix.clone(), options())
            .await
            .map_err(|e| format!("cannot create a watcher: {e}"))?;
    }
    let mut ids = HashMap::with_capacity(count);
    while ids.len() < count {
        let response = stream
            .message()
            .await
            .map_err(|e| format!("watch stream failed while creating: {e}"))?
            .ok_or("watch stream closed while creating")?;
        if response.canceled() {
            return Err(format!(
                "a watcher was refused: {:?}",
                response.cancel_reason()
            ));
        }
        // Created responses come in the order of the creates.
        if response.created() {
            ids.insert(response.watch_id(), first + ids.len());
        }
    }
    let (sender, responses) = stream.split();
    Ok((sender, responses, ids))
}

/// Reads one stream until told to stop or it ends, counting events per watcher.
async fn read(
    mut responses: WatchResponseStream,
    ids: HashMap<i64, usize>,
    sample: Option<Sample>,
    board: Arc<Board>,
    mut stop: watch::Receiver<bool>,
) -> Vec<Arrival> {
    let mut arrivals = Vec::new();
    loop {
        let message = tokio::select! {
            m = responses.message() => m,
            _ = stop.changed() => break,
        };
        let response = match message {
            Ok(Some(response)) => response,
            Ok(None) => {
                board.streams_failed.fetch_add(1, Relaxed);
                board.note_problem("a watch stream was closed by the server".into());
                break;
            }
            Err(e) => {
                board.streams_failed.fetch_add(1, Relaxed);
                board.note_problem(format!("a watch stream failed: {e}"));
                break;
            }
        };
        let at = Instant::now();
        let Some(&watcher) = ids.get(&response.watch_id()) else {
            continue;
        };
        if response.canceled() {
            board.canceled.fetch_add(1, Relaxed);
            board.note_problem(format!(
                "a watcher was canceled (compact revision {}, reason {:?})",
                response.compact_revision(),
                response.cancel_reason()
            ));
            continue;
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let revision = kv.mod_revision();
            board.last_revision[watcher].fetch_max(revision, Relaxed);
            board.events[watcher].fetch_add(1, Relaxed);
            board.events_total.fetch_add(1, Relaxed);
            if sample.is_some_and(|s| s.takes(watcher)) {
                arrivals.push(Arrival {
                    watcher,
                    revision,
                    at,
                });
            }
        }
    }
    arrivals
}

/// Microseconds as milliseconds, for a metric.
pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_counts_behind_and_missing() {
        let board = Board::new(3);
        board.last_revision[0].store(10, Relaxed);
        board.last_revision[1].store(12, Relaxed);
        board.events[0].store(4, Relaxed);
        board.events[1].store(5, Relaxed);
        assert_eq!(board.behind(11), 2);
        assert_eq!(board.behind(1), 1);
        assert_eq!(board.missing(5), 1 + 5);
        board.note_problem("first".into());
        board.note_problem("second".into());
        assert_eq!(board.first_problem().as_deref(), Some("first"));
    }
}
