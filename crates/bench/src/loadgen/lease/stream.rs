//! One keep-alive stream of `lease-keepalive` and its leases. The stream is opened with its
//! first lease as soon as that is granted, and renewing starts at once, while the rest are
//! granted: each lease is renewed from its grant on, however long granting them all takes
//! (on a busy machine, 10,000 grants can take longer than a TTL).

use crate::loadgen::runner::{new_histogram, record_latency};
use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper};
use hdrhistogram::Histogram;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What every stream's tasks share.
#[derive(Debug, Default)]
pub struct Shared {
    pub answered: AtomicU64,
    /// Leases a renewal was answered with TTL 0 for.
    pub lost: Mutex<HashSet<i64>>,
    pub streams_failed: AtomicU64,
    pub first_problem: Mutex<Option<String>>,
}

impl Shared {
    fn note_problem(&self, problem: String) {
        self.streams_failed.fetch_add(1, Relaxed);
        let mut first = self.first_problem.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(problem);
    }
}

/// The workload's signals to every stream.
#[derive(Debug, Clone)]
pub struct Control {
    /// The measured window, once every lease is granted; answers in it are counted.
    pub window: watch::Receiver<Option<(Instant, Instant)>>,
    pub stop_sending: watch::Receiver<bool>,
    /// Later than `stop_sending`, so the last renewals' answers are read.
    pub stop_reading: watch::Receiver<bool>,
}

/// When each lease's latest renewal was sent, until answered.
type Sent = Arc<Mutex<HashMap<i64, Instant>>>;

#[derive(Debug)]
pub struct KeptStream {
    ids: Arc<Mutex<Vec<i64>>>,
    sender: JoinHandle<LeaseKeeper>,
    receiver: JoinHandle<(Histogram<u64>, u64)>,
}

impl KeptStream {
    /// Grants `count` leases of `ttl` seconds on `conn`, renewing each every `period` on
    /// one stream from its grant on; returns once all are granted.
    pub async fn start(
        conn: Client,
        count: usize,
        ttl: i64,
        period: Duration,
        shared: Arc<Shared>,
        control: Control,
    ) -> Result<KeptStream, String> {
        let mut lease = conn.lease_client();
        let grant = |mut lease: etcd_client::LeaseClient| async move {
            lease
                .grant(ttl, None)
                .await
                .map(|r| r.id())
                .map_err(|e| format!("lease grant failed: {e}"))
        };
        let first = grant(lease.clone()).await?;
        let (keeper, answers) = lease
            .keep_alive(first)
            .await
            .map_err(|e| format!("cannot open a keep-alive stream: {e}"))?;
        let ids = Arc::new(Mutex::new(Vec::with_capacity(count)));
        ids.lock().unwrap_or_else(|e| e.into_inner()).push(first);
        let sent: Sent = Arc::default();
        let receiver = tokio::spawn(receive(answers, sent.clone(), shared, control.clone()));
        let tick = period / count.max(1) as u32;
        let sender = tokio::spawn(send(keeper, ids.clone(), tick, sent, control));
        for _ in 1..count {
            let id = grant(lease.clone()).await?;
            ids.lock().unwrap_or_else(|e| e.into_inner()).push(id);
        }
        Ok(KeptStream {
            ids,
            sender,
            receiver,
        })
    }

    /// The stream's leases.
    pub fn ids(&self) -> Vec<i64> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Once reading has stopped: the latencies and count of the answers in the window.
    /// Closes the stream.
    pub async fn finish(self) -> (Histogram<u64>, u64) {
        let (histogram, measured) = self.receiver.await.unwrap_or_else(|_| (new_histogram(), 0));
        // Dropping the keeper ends the stream: only now, once nothing reads it any more. A
        // sender that panicked renewed nothing more: its leases show up as lost.
        drop(self.sender.await);
        (histogram, measured)
    }
}

/// Renews the leases granted so far round-robin, one every `tick`, until told to stop.
/// Returns the keeper: the stream stays open while it exists.
async fn send(
    keeper: LeaseKeeper,
    ids: Arc<Mutex<Vec<i64>>>,
    tick: Duration,
    sent: Sent,
    control: Control,
) -> LeaseKeeper {
    let mut stop = control.stop_sending;
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cursor = 0;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            // Told to stop, or the workload is gone.
            _ = stop.changed() => break,
        }
        let id = {
            let ids = ids.lock().unwrap_or_else(|e| e.into_inner());
            if cursor >= ids.len() {
                cursor = 0;
            }
            ids[cursor]
        };
        cursor += 1;
        sent.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Instant::now());
        // The feature `pub-response-field` makes a keeper's fields public: a keeper per lease
        // on the same request channel, so that all renew over this one stream, as a client
        // library keeping many leases alive does (etcd-client opens a stream per lease).
        let mut renew = LeaseKeeper {
            id,
            sender: keeper.sender.clone(),
        };
        if renew.keep_alive().await.is_err() {
            // The stream is gone; the receiver says why.
            break;
        }
    }
    keeper
}

/// Reads one stream's answers until told to stop; the latencies and count of the answers
/// that arrived in the window.
async fn receive(
    mut answers: LeaseKeepAliveStream,
    sent: Sent,
    shared: Arc<Shared>,
    control: Control,
) -> (Histogram<u64>, u64) {
    let mut stop = control.stop_reading;
    let mut histogram = new_histogram();
    let mut measured = 0;
    loop {
        let message = tokio::select! {
            m = answers.message() => m,
            _ = stop.changed() => break,
        };
        let answer = match message {
            // Told to stop meanwhile: the end is ours, not a failure.
            Ok(None) | Err(_) if *stop.borrow() => break,
            Ok(None) => {
                shared.note_problem("a keep-alive stream was closed by the server".into());
                break;
            }
            Err(e) => {
                shared.note_problem(format!("a keep-alive stream failed: {e}"));
                break;
            }
            Ok(Some(answer)) => answer,
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
        let window = *control.window.borrow();
        let in_window = window.is_some_and(|(from, until)| at >= from && at <= until);
        if let Some(asked) = asked.filter(|_| in_window) {
            record_latency(&mut histogram, at - asked);
            measured += 1;
        }
    }
    (histogram, measured)
}
