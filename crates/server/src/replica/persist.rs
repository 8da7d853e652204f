//! The persist thread: writes the engine's output to the write-ahead log and syncs it, then
//! releases what had to wait for the sync. Jobs that queued up during one fdatasync are
//! written together and share the next one (group commit), so the sync rate, not the request
//! rate, bounds the disk's cost.
//!
//! If the log cannot be written (storage returns an error), the member does not stop: it
//! raises `Condition::WalUnwritable` (etcd's NOSPACE alarm), and from then on this thread
//! takes jobs and drops them. Nothing after the failure is reported durable, so the engine
//! never sends the Promise or Accepted that waited for it (an acceptor that cannot persist
//! answers nothing), while the core goes on serving reads, learning chosen slots from the
//! others and handing leadership on (`degraded.rs`).

use super::core::Network;
use super::Input;
use crate::conditions::Condition;
use crate::metrics::Metrics;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use synod_replica::{group_jobs, PersistJob};
use synod_storage::{Storage, StorageError};
use tokio::sync::mpsc::Sender;

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
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run(&mut *wal, &jobs, &*network, &inputs, &metrics)
            }));
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    metrics.conditions.raise(
                        Condition::WalUnwritable,
                        format!(
                            "the write-ahead log cannot be written ({e}): NOSPACE alarm raised; \
                             this member refuses writes, makes no further promises and hands \
                             leadership on; it serves reads until it is restarted"
                        ),
                    );
                    // Until the core stops: it must never block on, or pile up, this queue.
                    while jobs.recv().is_ok() {}
                }
                // A bug in storage: its state is unknown, so the member stops, saying why.
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    let _ = inputs.blocking_send(Input::Fatal(format!(
                        "the persist thread panicked: {what}"
                    )));
                }
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
        // A group is the Ready jobs queued up to the next snapshot or recovery-end job (if
        // any), which runs after the group is durable: order is kept (synod-replica's
        // `group_jobs`, which the simulator's disk follows too).
        let group = group_jobs(first, || jobs.try_recv().ok());
        let last_seq = group.last_seq();
        let (group, then) = (group.readys, group.then);
        let started = Instant::now();
        let mut wrote = false;
        for (_, batch, _) in &group {
            if !batch.is_empty() {
                wal.write(batch)?;
                let payload: usize = batch.records.iter().map(|r| r.value.payload_bytes()).sum();
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
        for (_, _, after) in group {
            for m in after {
                network.send(m);
            }
        }
        if let Some(seq) = last_seq {
            // The core must learn of every sync, so wait for room rather than drop.
            if inputs.blocking_send(Input::Persisted(seq)).is_err() {
                break; // the core has stopped
            }
        }
        let (snapshot, finish_recovery) = match then {
            Some(PersistJob::Snapshot {
                slot,
                data,
                received,
                written,
            }) => (Some((slot, data, received, written)), false),
            Some(PersistJob::FinishRecovery) => (None, true),
            Some(PersistJob::Ready { .. }) | None => (None, false),
        };
        if let Some((slot, data, received, written)) = snapshot {
            let started = Instant::now();
            let result = match written {
                Some(meta) => wal.adopt_snapshot(meta),
                None => wal.save_snapshot(slot, &data),
            };
            let saved = match result {
                Ok(_) => {
                    wal.compact(slot)?;
                    true
                }
                // A newer one is already durable (a received snapshot raced our own).
                Err(StorageError::SnapshotNotNewer { .. }) => false,
                Err(e) => return Err(e),
            };
            tracing::info!(
                slot,
                bytes = data.len(),
                received,
                saved,
                took_ms = started.elapsed().as_millis() as u64,
                "snapshot saved"
            );
            let done = Input::SnapshotSaved {
                slot,
                data,
                received,
                saved,
            };
            if inputs.blocking_send(done).is_err() {
                break;
            }
        }
        if finish_recovery {
            wal.finish_peer_recovery()?;
            metrics.conditions.clear(Condition::RecoveringFromPeers);
            tracing::info!("recovered the lost log tail from peers; voting again");
        }
    }
    Ok(())
}
