//! The persist thread: writes the engine's output to the write-ahead log and syncs it, then
//! releases what had to wait for the sync. Jobs that queued up during one fdatasync are
//! written together and share the next one (group commit), so the sync rate, not the request
//! rate, bounds the disk's cost.

use super::core::Network;
use super::Input;
use crate::metrics::Metrics;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use synod_paxos::Message;
use synod_storage::{Batch, Storage, StorageError};
use tokio::sync::mpsc::Sender;

/// Most jobs merged into one sync; bounds the latency the first of them pays.
const JOBS_PER_SYNC_MAX: usize = 1024;

#[derive(Debug)]
pub(crate) struct PersistJob {
    /// Report `Persisted(seq)` once this job is durable.
    pub seq: Option<u64>,
    pub batch: Batch,
    /// Messages that may leave only once the batch is durable (Promise, Accepted, ...).
    pub after: Vec<Message>,
}

pub(crate) fn spawn(
    mut wal: Box<dyn Storage + Send>,
    jobs: Receiver<PersistJob>,
    network: Arc<dyn Network>,
    inputs: Sender<Input>,
    metrics: Arc<Metrics>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("synod-persist".into())
        .spawn(move || {
            if let Err(e) = run(&mut *wal, &jobs, &*network, &inputs, &metrics) {
                let _ = inputs.blocking_send(Input::Fatal(format!("write-ahead log: {e}")));
            }
        })
        .expect("the persist thread starts (only fails when the OS is out of threads)")
}

fn run(
    wal: &mut (dyn Storage + Send),
    jobs: &Receiver<PersistJob>,
    network: &dyn Network,
    inputs: &Sender<Input>,
    metrics: &Metrics,
) -> Result<(), StorageError> {
    // Ends when the core drops its sender: every job it sent has been handled by then.
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < JOBS_PER_SYNC_MAX {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let mut wrote = false;
        for job in &group {
            if !job.batch.is_empty() {
                wal.write(&job.batch)?;
                let payload: usize = job
                    .batch
                    .records
                    .iter()
                    .map(|r| r.value.payload_bytes())
                    .sum();
                metrics.wal_bytes.fetch_add(payload as u64, Relaxed);
                wrote = true;
            }
        }
        if wrote {
            wal.sync()?;
            metrics.wal_syncs.fetch_add(1, Relaxed);
            metrics
                .fsync_seconds
                .observe(started.elapsed().as_secs_f64());
            metrics.readys_per_sync.observe(group.len() as f64);
        }
        let mut last_seq = None;
        for job in group {
            for m in job.after {
                network.send(m);
            }
            last_seq = job.seq.or(last_seq);
        }
        if let Some(seq) = last_seq {
            // The core must learn of every sync, so wait for room rather than drop.
            if inputs.blocking_send(Input::Persisted(seq)).is_err() {
                break; // the core has stopped
            }
        }
    }
    Ok(())
}
