//! A node's disk: the real storage contract ([`synod_storage::MemStorage`], the in-memory twin
//! of the server's write-ahead log, behind the same [`Storage`] trait), driven the way the
//! server's persist thread drives it, with the simulator's fsync latency.
//!
//! The server (`crates/server/src/replica/persist.rs`) writes each `Ready`'s hard state and
//! records as one [`Batch`]; a single persist thread takes every job that queued up, writes
//! them all, syncs once (group commit), and only then sends their `messages_after_persist`
//! and reports the last `persist_seq` to the engine. Here the jobs queue in [`Disk`]; a group
//! is written when the previous sync has completed, and its sync completes after one random
//! fsync latency (a `DiskDone` event). So at any moment the storage's unsynced batches are
//! exactly the group whose fdatasync is in flight, and jobs still queued never reached the
//! kernel.
//!
//! Faults: a crash loses the unsynced group, or (with torn writes) keeps a prefix of it whole
//! and tears the next batch, which the restart cuts off as the disk version cuts a torn frame.
//! Corruption damages a record that was synced and that a restart will detect; the restart
//! then fails, as the real server refuses to start on a damaged log, and the node stays down.
//! A lost tail ([`Disk::lose_tail`]) takes synced batches off the end of the log (cut off, the
//! newest segment deleted, or damage in the last synced group); the restart reports it
//! (`Recovered::lost_tail`) until the driver records the end of the replica's peer recovery
//! (`PersistJob::FinishRecovery`, a job in order behind the batches queued before it).

use crate::rng::Rng;
use bytes::Bytes;
use std::collections::VecDeque;
use synod_paxos::{DurableState, Message, Slot};
use synod_replica::{group_jobs, PersistJob};
use synod_storage::{Batch, LossReport, MemStorage, Storage, StorageError};

/// What the persist thread is doing: the jobs written together, whose one sync is in
/// flight, or one job that runs alone once they are durable (a snapshot being saved or
/// adopted, the end of a peer recovery being recorded).
#[derive(Debug)]
enum Group {
    Batches {
        last_seq: Option<u64>,
        after: Vec<Message>,
    },
    Alone(PersistJob),
}

/// A group the persist thread finished: what the core learns.
#[derive(Debug)]
pub enum Done {
    /// The batches are durable: report `persisted(seq)` and send what waited.
    Persisted(Option<u64>, Vec<Message>),
    /// The snapshot is durable (`saved`, and the log compacted up to it), or a newer one
    /// already was (not `saved`).
    Snapshot {
        slot: Slot,
        data: Bytes,
        received: bool,
        saved: bool,
    },
    /// The end of the peer recovery is durable: the next restart reports no loss.
    RecoveryFinished,
}

/// What a crash did to the writes in flight, for the trace.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CrashLoss {
    /// Batches written but not synced (the group in flight).
    pub unsynced: usize,
    /// Of those, how many reached the disk whole anyway.
    pub kept: usize,
    /// The next one reached it in part (the restart cuts it off).
    pub torn: bool,
    /// Jobs the persist thread had not written yet.
    pub unwritten: usize,
    /// A snapshot was being saved (it is lost: it was never reported durable).
    pub snapshot_lost: bool,
    /// The end of a peer recovery was not recorded yet: the restart recovers again.
    pub finish_lost: bool,
}

/// How a synced tail is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailLoss {
    /// The newest batches cut off (a truncated segment).
    Cut,
    /// The newest batches gone with the segment that held them.
    SegmentDeleted,
    /// Bytes flipped in the last synced group: recovery cuts the log at the damage.
    Damage,
}

impl TailLoss {
    pub const ALL: [TailLoss; 3] = [TailLoss::Cut, TailLoss::SegmentDeleted, TailLoss::Damage];
}

/// A synced tail lost on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LostTail {
    pub how: TailLoss,
    /// Durable batches lost, of the `of` there were.
    pub batches: usize,
    pub of: usize,
}

/// A record damaged on purpose, and what `corrupt_record` said about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corruption {
    /// Index among the durable batches (0 = oldest).
    pub index: usize,
    /// `corrupt_record` promised that the next restart will detect it.
    pub detectable: bool,
}

#[derive(Debug)]
pub struct Disk {
    storage: MemStorage,
    /// What a brand-new member writes first (as the server does on an empty data directory).
    bootstrap: DurableState,
    /// Jobs waiting for the persist thread (a sync is in flight).
    queued: VecDeque<PersistJob>,
    /// The group written and being synced, or the snapshot being saved.
    syncing: Option<Group>,
    /// Damage injected while the node was down.
    corruption: Option<Corruption>,
    /// The newest snapshot file, damaged while the node was down (its slot).
    damaged_snapshot: Option<Slot>,
}

impl Disk {
    /// An empty data directory: the first [`Disk::open`] bootstraps it.
    pub fn new(bootstrap: DurableState) -> Disk {
        Disk {
            storage: MemStorage::new(),
            bootstrap,
            queued: VecDeque::new(),
            syncing: None,
            corruption: None,
            damaged_snapshot: None,
        }
    }

    /// What the server does at start: recover; on a brand-new (empty) disk append the
    /// bootstrap state; start the engine from what was recovered, and the state machine from
    /// the newest snapshot (returned with it; the caller decodes it and fills in
    /// `DurableState::snapshot`). A damaged log is an error and no engine may be started
    /// from it.
    pub fn open(&mut self) -> Result<(DurableState, Option<Bytes>), StorageError> {
        self.queued.clear();
        self.syncing = None;
        self.storage.restart()?;
        if !self.storage.recovered().report.damaged_snapshots.is_empty() {
            // Set aside, never to be served: what is left is sound.
            self.damaged_snapshot = None;
        }
        if self.storage.recovered().is_empty() {
            let state = self.bootstrap.clone();
            self.storage
                .append(&Batch::new(Some(state.hard_state), state.records.clone()))?;
            return Ok((state, None));
        }
        let snapshot = self.storage.latest_snapshot()?.map(|s| s.data);
        Ok((self.storage.recovered().durable_state(), snapshot))
    }

    /// A handle that writes snapshot files beside the persist thread, as the server's
    /// snapshot thread does (take a new one after every open: a crash detaches the old).
    pub fn snapshot_writer(&self) -> Option<synod_storage::SnapshotWriter> {
        self.storage.snapshot_writer()
    }

    /// The persist thread is saving a snapshot (rather than syncing batches).
    pub fn saving_snapshot(&self) -> bool {
        matches!(
            self.syncing,
            Some(Group::Alone(PersistJob::Snapshot { .. }))
        )
    }

    /// What the last open found lost of the synced log, if anything (an earlier loss not yet
    /// recovered from included).
    pub fn lost_tail(&self) -> Option<&LossReport> {
        self.storage.recovered().lost_tail()
    }

    /// The storage itself (what recovery found, batch counts).
    pub fn storage(&self) -> &MemStorage {
        &self.storage
    }

    pub fn corruption(&self) -> Option<Corruption> {
        self.corruption
    }

    /// Anything on this disk was damaged on purpose (log or snapshot).
    pub fn is_damaged(&self) -> bool {
        self.corruption.is_some() || self.damaged_snapshot.is_some()
    }

    /// The slot of the snapshot file damaged on purpose and not yet set aside by a restart.
    pub fn damaged_snapshot(&self) -> Option<Slot> {
        self.damaged_snapshot
    }

    /// Damages the newest snapshot file (flipped bytes its checksum catches); returns its
    /// slot, or `None` without one. The next start must set it aside and fall back to the
    /// older one kept (the log is never compacted past it), or refuse to start when none is
    /// left: never serve it. Call only while the node is down.
    pub fn corrupt_snapshot(&mut self) -> Option<Slot> {
        let slot = self.storage.latest_snapshot().ok()??.meta.slot;
        if !self.storage.corrupt_snapshot(slot) {
            return None;
        }
        self.damaged_snapshot = Some(slot);
        Some(slot)
    }

    /// Hands a job to the persist thread, behind every job queued before it.
    pub fn enqueue(&mut self, job: PersistJob) {
        self.queued.push_back(job);
    }

    /// The persist thread picks up what queued, if it is idle. A snapshot job at the head is
    /// taken alone (`Ok(Some(true))`: it takes a while, and is durable only when it
    /// completes). Otherwise it writes every `Ready` job's batch up to the next snapshot job
    /// (an empty one is skipped) and starts one sync for all of them. `Ok(Some(true))` when
    /// a sync was started, `Ok(Some(false))` when nothing needed writing (the jobs are
    /// released without a sync, everything before them being durable already), `Ok(None)`
    /// when busy or idle with nothing to do.
    pub fn start_group(&mut self) -> Result<Option<bool>, StorageError> {
        if self.syncing.is_some() {
            return Ok(None);
        }
        let Some(first) = self.queued.pop_front() else {
            return Ok(None);
        };
        // The server's persist thread's grouping (synod-replica `group_jobs`): the Ready jobs
        // up to the next snapshot or recovery-end job, which runs once they are durable.
        let group = group_jobs(first, || match self.queued.front() {
            Some(PersistJob::Ready { .. }) => self.queued.pop_front(),
            _ => None,
        });
        let last_seq = group.last_seq();
        if group.readys.is_empty() {
            let job = group
                .then
                .expect("group_jobs keeps a job it does not group");
            self.syncing = Some(Group::Alone(job));
            return Ok(Some(true));
        }
        if let Some(then) = group.then {
            self.queued.push_front(then); // after this group is durable
        }
        let mut after = Vec::new();
        let mut wrote = false;
        for (_, batch, msgs) in group.readys {
            if !batch.is_empty() {
                self.storage.write(&batch)?;
                wrote = true;
            }
            after.extend(msgs);
        }
        self.syncing = Some(Group::Batches { last_seq, after });
        Ok(Some(wrote))
    }

    /// The group's fdatasync returned (its batches are durable), or the snapshot is saved
    /// (durable, and the log compacted up to it: never before).
    pub fn complete_group(&mut self) -> Result<Done, StorageError> {
        match self.syncing.take().expect("one DiskDone per group") {
            Group::Batches { last_seq, after } => {
                self.storage.sync()?;
                Ok(Done::Persisted(last_seq, after))
            }
            Group::Alone(PersistJob::Snapshot {
                slot,
                data,
                received,
                written,
            }) => {
                let result = match written {
                    Some(meta) => self.storage.adopt_snapshot(meta),
                    None => self.storage.save_snapshot(slot, &data),
                };
                let saved = match result {
                    Ok(_) => {
                        self.storage.compact(slot)?;
                        true
                    }
                    // A newer one is already durable (a received snapshot raced our own).
                    Err(StorageError::SnapshotNotNewer { .. }) => false,
                    Err(e) => return Err(e),
                };
                Ok(Done::Snapshot {
                    slot,
                    data,
                    received,
                    saved,
                })
            }
            Group::Alone(PersistJob::Ready { .. }) => unreachable!("grouped, never alone"),
            Group::Alone(PersistJob::FinishRecovery) => {
                self.storage.finish_peer_recovery()?;
                Ok(Done::RecoveryFinished)
            }
        }
    }

    /// The process died. Jobs not yet written are gone; of the group whose sync was in
    /// flight, nothing survives, or (with `torn`) a random prefix whole and possibly the next
    /// batch torn: both legal outcomes of a crash mid-fdatasync, and harmless, since nothing
    /// that depended on those writes was sent yet.
    pub fn crash(&mut self, rng: &mut Rng, torn: bool) -> CrashLoss {
        let unsynced = self.storage.unsynced_batches();
        let mut loss = CrashLoss {
            unsynced,
            unwritten: self.queued.len(),
            snapshot_lost: matches!(
                self.syncing,
                Some(Group::Alone(PersistJob::Snapshot { .. }))
            ),
            finish_lost: matches!(self.syncing, Some(Group::Alone(PersistJob::FinishRecovery)))
                || self
                    .queued
                    .iter()
                    .any(|j| matches!(j, PersistJob::FinishRecovery)),
            ..CrashLoss::default()
        };
        self.queued.clear();
        self.syncing = None;
        if torn && unsynced > 0 {
            loss.kept = rng.below(unsynced as u64 + 1) as usize;
            loss.torn = loss.kept < unsynced && rng.chance(0.5);
        }
        self.storage.crash_torn(loss.kept, loss.torn);
        loss
    }

    /// Damages one synced batch that the next restart must detect (never one in the last
    /// synced group, which recovery cannot tell from a torn write: that is the documented
    /// limit of a checksummed log, not something the system promises to survive). Returns
    /// the damage, or `None` when no such batch exists yet. Call only while the node is down.
    pub fn corrupt(&mut self, rng: &mut Rng) -> Option<Corruption> {
        // Detectable batches form a prefix of the durable ones (a batch is detectable when a
        // later one was written after it had been synced), so shrink the range on a miss.
        let mut upto = self.storage.durable_batches();
        for _ in 0..8 {
            if upto == 0 {
                return None;
            }
            let index = rng.below(upto as u64) as usize;
            if self.storage.clone().corrupt_record(index) {
                let detectable = self.storage.corrupt_record(index);
                let c = Corruption { index, detectable };
                self.corruption = Some(c);
                return Some(c);
            }
            upto = index;
        }
        None
    }

    /// Loses synced batches off the end of the log, as `how` says, keeping at least the oldest
    /// one (what a brand-new replica wrote first: its membership, so it knows whom to ask).
    /// `batches` is how many to drop (cut off or segment deleted); damage hits one batch of
    /// the last synced group instead, and the restart cuts the log there. Returns what was
    /// lost, or `None` when nothing could be. Call only while the node is down.
    pub fn lose_tail(&mut self, how: TailLoss, batches: usize, rng: &mut Rng) -> Option<LostTail> {
        let durable = self.storage.durable_batches();
        let n = batches.min(durable.saturating_sub(1));
        let lost = match how {
            TailLoss::Cut => self.storage.lose_synced_tail(n),
            TailLoss::SegmentDeleted => self.storage.lose_newest_segment(n),
            TailLoss::Damage => {
                // Batches no later batch vouches for form a suffix (the last synced group):
                // damage there is a lost tail, not a refusal to start.
                // Scanned from the end: the group is short, and each probe copies the log.
                let tail: Vec<usize> = (1..durable)
                    .rev()
                    .take_while(|&i| !self.storage.clone().corrupt_record(i))
                    .collect();
                if tail.is_empty() {
                    return None;
                }
                let index = rng.pick(&tail);
                let refused = self.storage.corrupt_record(index);
                debug_assert!(!refused, "chosen among the batches nothing vouches for");
                durable - index
            }
        };
        (lost > 0).then_some(LostTail {
            how,
            batches: lost,
            of: durable,
        })
    }

    /// Records damage without making it: a storage that fails to detect what it promised to.
    #[cfg(test)]
    pub(crate) fn pretend_corrupted(&mut self, c: Corruption) {
        self.corruption = Some(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use synod_paxos::{Ballot, HardState, LogRecord, Membership, Value};

    fn batch(slot: Slot) -> Batch {
        Batch::new(
            Some(HardState {
                promised: Ballot::new(1, 1),
                commit: 0,
            }),
            vec![LogRecord {
                slot,
                ballot: Ballot::new(1, 1),
                value: Arc::new(Value::Noop),
                chosen: false,
            }],
        )
    }

    fn ready(seq: Option<u64>, batch: Batch) -> PersistJob {
        PersistJob::Ready {
            seq,
            batch,
            after: Vec::new(),
        }
    }

    fn snapshot_job(slot: Slot, data: Bytes, received: bool) -> PersistJob {
        PersistJob::Snapshot {
            slot,
            data,
            received,
            written: None,
        }
    }

    fn disk() -> Disk {
        let members = Membership::new([1, 2, 3]).unwrap();
        let mut disk = Disk::new(DurableState::bootstrap(&members));
        let (state, snapshot) = disk.open().unwrap();
        assert_eq!(state.records.len(), 1, "the bootstrap membership record");
        assert!(snapshot.is_none());
        disk
    }

    fn slots(state: &DurableState) -> Vec<Slot> {
        state.records.iter().map(|r| r.slot).collect()
    }

    #[test]
    fn group_commit_writes_what_queued_and_a_crash_loses_the_unsynced_group() {
        let mut disk = disk();
        disk.enqueue(ready(Some(1), batch(2)));
        assert_eq!(disk.start_group().unwrap(), Some(true));
        // Queued while the sync is in flight: written by the next group only.
        disk.enqueue(ready(Some(2), batch(3)));
        disk.enqueue(ready(Some(3), batch(4)));
        assert_eq!(disk.start_group().unwrap(), None, "one sync at a time");
        assert!(matches!(
            disk.complete_group().unwrap(),
            Done::Persisted(Some(1), _)
        ));
        assert_eq!(disk.start_group().unwrap(), Some(true));
        assert_eq!(disk.storage().unsynced_batches(), 2);
        let loss = disk.crash(&mut Rng::new(1), false);
        assert_eq!((loss.unsynced, loss.kept, loss.torn), (2, 0, false));
        assert_eq!(slots(&disk.open().unwrap().0), vec![1, 2]);
    }

    #[test]
    fn jobs_with_nothing_to_write_are_released_without_a_sync() {
        let mut disk = disk();
        disk.enqueue(ready(Some(1), Batch::default()));
        assert_eq!(disk.start_group().unwrap(), Some(false));
        assert!(matches!(
            disk.complete_group().unwrap(),
            Done::Persisted(Some(1), _)
        ));
    }

    #[test]
    fn a_snapshot_is_durable_only_once_saved_and_the_log_compacts_after_it() {
        let mut disk = disk();
        for slot in 2..6 {
            disk.enqueue(ready(Some(slot), batch(slot)));
            disk.start_group().unwrap();
            disk.complete_group().unwrap();
        }
        // A crash while the snapshot is being saved loses it, and the log is whole.
        disk.enqueue(snapshot_job(4, Bytes::from_static(b"four"), false));
        assert_eq!(disk.start_group().unwrap(), Some(true));
        let loss = disk.crash(&mut Rng::new(1), false);
        assert!(loss.snapshot_lost);
        let (state, snapshot) = disk.open().unwrap();
        assert_eq!((slots(&state), snapshot), (vec![1, 2, 3, 4, 5], None));
        // Saved: the restart finds it, and only the records above it.
        disk.enqueue(ready(Some(6), batch(6)));
        disk.enqueue(snapshot_job(4, Bytes::from_static(b"four"), false));
        assert_eq!(
            disk.start_group().unwrap(),
            Some(true),
            "the batch before it"
        );
        assert!(matches!(
            disk.complete_group().unwrap(),
            Done::Persisted(..)
        ));
        assert_eq!(
            disk.start_group().unwrap(),
            Some(true),
            "then the snapshot, alone"
        );
        let done = disk.complete_group().unwrap();
        assert!(matches!(
            done,
            Done::Snapshot {
                slot: 4,
                saved: true,
                ..
            }
        ));
        disk.crash(&mut Rng::new(1), false);
        let (state, snapshot) = disk.open().unwrap();
        assert_eq!(snapshot.as_deref(), Some(&b"four"[..]));
        assert_eq!(slots(&state), vec![5, 6]);
        // One not newer than the newest is not saved.
        disk.enqueue(snapshot_job(3, Bytes::from_static(b"three"), true));
        disk.start_group().unwrap();
        let done = disk.complete_group().unwrap();
        assert!(matches!(done, Done::Snapshot { saved: false, .. }));
    }

    #[test]
    fn corruption_is_detectable_and_the_restart_refuses() {
        let mut disk = disk();
        for slot in 2..6 {
            disk.enqueue(ready(Some(slot), batch(slot)));
            disk.start_group().unwrap();
            disk.complete_group().unwrap();
        }
        disk.crash(&mut Rng::new(1), false);
        let c = disk
            .corrupt(&mut Rng::new(2))
            .expect("synced batches to damage");
        assert!(c.detectable);
        assert!(c.index < 4, "never the last synced group");
        let err = disk.open().unwrap_err();
        assert!(err.is_corruption(), "{err}");
        assert!(disk.open().is_err(), "and it stays refused");
    }
}
