//! The in-memory twin of [`crate::DiskStorage`], for the simulator and tests. It keeps the
//! batches themselves rather than bytes, but tracks exactly what the disk version promises:
//! which writes are synced, which a crash may lose or tear, and what a restart makes of damage
//! (the disk version's rules): a torn unsynced write is cut off silently; damage to a synced
//! batch that a later batch depends on (written after it was synced) refuses to start; damage
//! at the tail, or a synced tail lost outright, is cut off and reported as a lost tail until
//! [`Storage::finish_peer_recovery`].
//! Snapshot files, written through a [`SnapshotWriter`] and adopted, follow the disk version's
//! rules too (`mem_snapshots.rs`).

use crate::batch::Batch;
use crate::error::StorageError;
use crate::loss::{LossKind, LossReport};
use crate::mem_snapshots::MemSnapshots;
use crate::recovered::{compaction_bound, Recovered, TornTail};
use crate::snapshot::{Snapshot, SnapshotMeta, SnapshotWriter};
use crate::Storage;
use std::path::PathBuf;
use synod_paxos::{HardState, Slot};

#[derive(Clone, Debug)]
struct MemFrame {
    seq: u64,
    /// The last seq durable when this one was written (as on disk).
    synced_upto: u64,
    batch: Batch,
    /// Fails its checksum: torn by a crash or corrupted on purpose.
    damage: Option<Damage>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Damage {
    /// An unsynced write a crash interrupted.
    Torn,
    /// Synced data damaged afterwards.
    Corrupted,
}

#[derive(Clone, Debug)]
pub struct MemStorage {
    /// Batches a crash keeps, in write order.
    durable: Vec<MemFrame>,
    /// Batches written since the last sync, in write order.
    unsynced: Vec<MemFrame>,
    /// The snapshot files; a clone gets its own copy of them.
    snapshots: MemSnapshots,
    /// Batches were dropped by compaction: recovery needs a snapshot.
    compacted: bool,
    /// The latest hard state written, synced or not.
    hard_state: HardState,
    next_seq: u64,
    synced_seq: u64,
    recovered: Recovered,
    poisoned: Option<String>,
    /// A synced tail lost by a fault hook, for the next restart to find.
    lost: Option<(LossKind, String)>,
    /// The loss marker: a loss not yet recovered from (its description).
    marker: Option<String>,
}

impl Default for MemStorage {
    fn default() -> MemStorage {
        MemStorage::new()
    }
}

fn wal_path() -> PathBuf {
    PathBuf::from("mem:wal")
}

impl MemStorage {
    /// An empty disk, keeping the last 2 snapshots like [`crate::Options::default`].
    pub fn new() -> MemStorage {
        MemStorage {
            durable: Vec::new(),
            unsynced: Vec::new(),
            snapshots: MemSnapshots::new(2),
            compacted: false,
            hard_state: HardState::default(),
            next_seq: 1,
            synced_seq: 0,
            recovered: Recovered::default(),
            poisoned: None,
            lost: None,
            marker: None,
        }
    }

    /// Batches written but not yet synced.
    pub fn unsynced_batches(&self) -> usize {
        self.unsynced.len()
    }

    /// Batches that survive a crash (after compaction, a compacted prefix counts as one).
    pub fn durable_batches(&self) -> usize {
        self.durable.len()
    }

    /// Makes the oldest `n` unsynced batches durable: an fdatasync that returned, covering
    /// only the writes issued before it (the simulator completes syncs one by one).
    pub fn sync_prefix(&mut self, n: usize) {
        let n = n.min(self.unsynced.len());
        self.durable.extend(self.unsynced.drain(..n));
        if let Some(last) = self.durable.last() {
            self.synced_seq = self.synced_seq.max(last.seq);
        }
    }

    /// The process died: every unsynced batch is lost, and snapshot writers taken before it
    /// refuse to write (their process is gone). Snapshot files already written are durable.
    /// Call [`MemStorage::restart`] next.
    pub fn crash(&mut self) {
        self.crash_torn(0, false);
    }

    /// A crash in the middle of writing: the first `keep` unsynced batches reached the disk
    /// whole, and with `tear` the next one reached it in part (restart cuts it off, as the disk
    /// version cuts a torn frame). The rest is lost. Snapshot files as in [`MemStorage::crash`].
    pub fn crash_torn(&mut self, keep: usize, tear: bool) {
        let keep = keep.min(self.unsynced.len());
        self.sync_prefix(keep);
        if let Some(mut torn) = self.unsynced.drain(..).next().filter(|_| tear) {
            torn.damage = Some(Damage::Torn);
            self.durable.push(torn);
        }
        self.unsynced.clear();
        self.snapshots.crash();
    }

    /// Damages the `index`-th durable batch (0 = oldest), as a bit flip on disk would. The
    /// next restart always detects it. Returns whether it refuses to start: true when a later
    /// batch was written after this one had been synced (damage in the middle of the log).
    /// False when nothing after it depends on it (or `index` is out of range): the restart
    /// cuts the log there and reports a lost tail ([`LossKind::DamagedFrame`]).
    pub fn corrupt_record(&mut self, index: usize) -> bool {
        let Some(frame) = self.durable.get_mut(index) else {
            return false;
        };
        frame.damage = Some(Damage::Corrupted);
        let seq = frame.seq;
        self.durable[index + 1..]
            .iter()
            .any(|later| later.damage.is_none() && later.synced_upto >= seq)
    }

    /// Loses the newest `n` durable batches, as a cut-off newest segment would
    /// ([`LossKind::TruncatedSegment`]); returns how many were lost. The next restart reports
    /// the loss (if any was lost). Call only while the node is down.
    pub fn lose_synced_tail(&mut self, n: usize) -> usize {
        self.lose(
            n,
            LossKind::TruncatedSegment,
            "the newest segment was cut short",
        )
    }

    /// Loses the newest `n` durable batches, as a deleted newest segment would
    /// ([`LossKind::MissingSegment`]); returns how many were lost.
    pub fn lose_newest_segment(&mut self, n: usize) -> usize {
        self.lose(
            n,
            LossKind::MissingSegment,
            "the newest segment was deleted",
        )
    }

    fn lose(&mut self, n: usize, kind: LossKind, what: &str) -> usize {
        let n = n.min(self.durable.len());
        if n > 0 {
            self.durable.truncate(self.durable.len() - n);
            self.lost
                .get_or_insert((kind, format!("{what}: {n} synced batches lost")));
        }
        n
    }

    /// Damages the snapshot file at `slot`, adopted or only written; false if there is none.
    /// A restart sets it aside and falls back to an older one; `latest_snapshot` reports it
    /// rather than serve it.
    pub fn corrupt_snapshot(&mut self, slot: Slot) -> bool {
        self.snapshots.corrupt(slot)
    }

    /// Restarts from what is durable (losing anything unsynced, as [`MemStorage::crash`]) and
    /// recovers, with the disk version's rules. On damage before the tail this returns the same
    /// kind of error and the storage refuses further writes.
    pub fn restart(&mut self) -> Result<(), StorageError> {
        self.crash();
        match self.recover() {
            Ok(recovered) => {
                self.recovered = recovered;
                self.hard_state = self.recovered.hard_state;
                self.poisoned = None;
                Ok(())
            }
            Err(e) => {
                self.poisoned = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn recover(&mut self) -> Result<Recovered, StorageError> {
        let damaged_snapshots = self.snapshots.recover();
        let newest = self.snapshots.newest();
        let mut recovered = Recovered::new(newest);
        recovered.set_damaged_snapshots(damaged_snapshots);
        if self.compacted && newest.is_none() {
            return Err(StorageError::corrupt(
                wal_path(),
                0,
                "the log was compacted but no usable snapshot covers what it held",
            ));
        }
        let mut lost = self.lost.clone();
        let bad = self.durable.iter().position(|f| f.damage.is_some());
        if let Some(i) = bad {
            let seq = self.durable[i].seq;
            if self.durable[i + 1..]
                .iter()
                .any(|f| f.damage.is_none() && f.synced_upto >= seq)
            {
                return Err(StorageError::corrupt(
                    wal_path(),
                    i as u64,
                    format!("batch {i} (seq {seq}) fails its checksum but was synced"),
                ));
            }
            if self.durable[i].damage == Some(Damage::Corrupted) {
                lost.get_or_insert((
                    LossKind::DamagedFrame,
                    format!("batch {i} (seq {seq}) fails its checksum and was synced"),
                ));
            } else {
                recovered.report.torn_tail = Some(TornTail {
                    path: wal_path(),
                    offset: i as u64,
                    bytes_dropped: (self.durable.len() - i) as u64,
                });
            }
            self.durable.truncate(i);
        }
        for (i, f) in self.durable.iter().enumerate() {
            recovered.replay(&f.batch, &wal_path(), i as u64)?;
        }
        let kept_upto = self.durable.last().map_or(0, |f| f.seq);
        let report = |kind, detail| LossReport {
            kind,
            path: wal_path(),
            offset: self.durable.len() as u64,
            kept_upto,
            detail,
            set_aside: Vec::new(),
        };
        recovered.report.lost_tail = match (lost, &self.marker) {
            (Some((kind, detail)), _) => {
                let r = report(kind, detail);
                // Written before the repair, as on disk.
                self.marker = Some(r.to_string());
                Some(r)
            }
            (None, Some(text)) => Some(report(
                LossKind::Unrecovered,
                format!("peer recovery not finished after: {text}"),
            )),
            (None, None) => None,
        };
        self.lost = None;
        if let Some(last) = self.durable.last() {
            // As on disk: the log goes on right after what survived.
            self.next_seq = last.seq + 1;
            self.synced_seq = last.seq;
        }
        Ok(recovered)
    }

    fn check_usable(&self) -> Result<(), StorageError> {
        match &self.poisoned {
            Some(reason) => Err(StorageError::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }
}

impl Storage for MemStorage {
    fn write(&mut self, batch: &Batch) -> Result<(), StorageError> {
        self.check_usable()?;
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(hs) = batch.hard_state {
            if hs.promised < self.hard_state.promised {
                return Err(StorageError::PromiseRegressed {
                    current: self.hard_state.promised,
                    attempted: hs.promised,
                });
            }
            self.hard_state = hs;
        }
        self.unsynced.push(MemFrame {
            seq: self.next_seq,
            synced_upto: self.synced_seq,
            batch: batch.clone(),
            damage: None,
        });
        self.next_seq += 1;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.check_usable()?;
        self.sync_prefix(self.unsynced.len());
        Ok(())
    }

    fn recovered(&self) -> &Recovered {
        &self.recovered
    }

    fn save_snapshot(&mut self, slot: Slot, data: &[u8]) -> Result<SnapshotMeta, StorageError> {
        self.snapshots.save(slot, data)
    }

    /// Writes into this storage's snapshot files (not a clone's), until it crashes.
    fn snapshot_writer(&self) -> Option<SnapshotWriter> {
        Some(self.snapshots.writer())
    }

    fn adopt_snapshot(&mut self, meta: SnapshotMeta) -> Result<SnapshotMeta, StorageError> {
        self.snapshots.adopt(meta)
    }

    fn latest_snapshot(&self) -> Result<Option<Snapshot>, StorageError> {
        self.snapshots.latest()
    }

    fn compact(&mut self, upto: Slot) -> Result<(), StorageError> {
        self.sync()?;
        let bound = compaction_bound(upto, &self.snapshots.retained_slots());
        let n = self
            .durable
            .iter()
            .take_while(|f| f.batch.records.iter().all(|r| r.slot <= bound))
            .count();
        if n == 0 {
            return Ok(());
        }
        let removed: Vec<MemFrame> = self.durable.drain(..n).collect();
        self.compacted = true;
        // What the disk version's rotation frame does: the hard state outlives the batches
        // that carried it.
        if let Some(hard_state) = removed.iter().rev().find_map(|f| f.batch.hard_state) {
            let last = &removed[removed.len() - 1];
            let carrier = MemFrame {
                seq: last.seq,
                synced_upto: last.synced_upto,
                batch: Batch::new(Some(hard_state), Vec::new()),
                damage: None,
            };
            self.durable.insert(0, carrier);
        }
        Ok(())
    }

    fn finish_peer_recovery(&mut self) -> Result<(), StorageError> {
        self.sync()?;
        self.marker = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use synod_paxos::{Ballot, LogRecord, Value};

    fn batch(slot: Slot) -> Batch {
        Batch::new(
            Some(HardState {
                promised: Ballot::new(slot, 1),
                commit: slot - 1,
            }),
            vec![LogRecord {
                slot,
                ballot: Ballot::new(slot, 1),
                value: Arc::new(Value::Noop),
                chosen: false,
            }],
        )
    }

    fn slots(s: &MemStorage) -> Vec<Slot> {
        s.recovered().records.keys().copied().collect()
    }

    #[test]
    fn a_crash_loses_exactly_the_unsynced_batches() {
        let mut s = MemStorage::new();
        s.append(&batch(1)).unwrap();
        s.write(&batch(2)).unwrap();
        s.write(&batch(3)).unwrap();
        assert_eq!(s.unsynced_batches(), 2);
        s.restart().unwrap();
        assert_eq!(slots(&s), vec![1]);
        assert_eq!(s.recovered().hard_state.promised, Ballot::new(1, 1));
        // The promise check follows what survived, not what was lost.
        s.append(&batch(2)).unwrap();
    }

    #[test]
    fn a_torn_crash_keeps_whole_batches_and_cuts_the_torn_one() {
        let mut s = MemStorage::new();
        s.append(&batch(1)).unwrap();
        for slot in 2..6 {
            s.write(&batch(slot)).unwrap();
        }
        s.crash_torn(2, true);
        s.restart().unwrap();
        assert_eq!(slots(&s), vec![1, 2, 3]);
        let torn = s.recovered().report.torn_tail.clone().unwrap();
        assert_eq!((torn.offset, torn.bytes_dropped), (3, 1));
        assert_eq!(s.recovered().hard_state.commit, 2);
    }

    #[test]
    fn sync_prefix_completes_the_oldest_writes_only() {
        let mut s = MemStorage::new();
        for slot in 1..5 {
            s.write(&batch(slot)).unwrap();
        }
        s.sync_prefix(3);
        assert_eq!((s.durable_batches(), s.unsynced_batches()), (3, 1));
        s.restart().unwrap();
        assert_eq!(slots(&s), vec![1, 2, 3]);
    }

    #[test]
    fn corrupt_record_says_whether_restart_will_refuse() {
        let mut s = MemStorage::new();
        s.append(&batch(1)).unwrap();
        s.append(&batch(2)).unwrap();
        // Two batches synced together: nothing after the first vouches that it was synced.
        s.write(&batch(3)).unwrap();
        s.write(&batch(4)).unwrap();
        s.sync().unwrap();
        let mut last_group = s.clone();
        assert!(!last_group.corrupt_record(2));
        last_group.restart().unwrap();
        assert_eq!(slots(&last_group), vec![1, 2]);
        let kind = last_group.recovered().lost_tail().map(|l| l.kind);
        assert_eq!(
            kind,
            Some(LossKind::DamagedFrame),
            "reported, not cut silently"
        );

        assert!(s.corrupt_record(1));
        let err = s.restart().unwrap_err();
        assert!(err.is_corruption(), "{err}");
        assert!(matches!(
            s.write(&batch(5)),
            Err(StorageError::Poisoned { .. })
        ));
        assert!(!s.corrupt_record(99));
    }

    #[test]
    fn crashes_lose_only_unsynced_writes_and_report_no_loss() {
        let mut s = MemStorage::new();
        s.append(&batch(1)).unwrap();
        s.write(&batch(2)).unwrap();
        s.write(&batch(3)).unwrap();
        s.crash_torn(1, true);
        s.restart().unwrap();
        assert!(s.recovered().lost_tail().is_none());
        assert!(s.recovered().report.torn_tail.is_some());
        s.write(&batch(3)).unwrap();
        s.crash();
        s.restart().unwrap();
        assert!(s.recovered().lost_tail().is_none());
        assert_eq!(slots(&s), vec![1, 2]);
    }

    #[test]
    fn a_lost_synced_tail_is_reported_until_peer_recovery_finishes() {
        let mut s = MemStorage::new();
        for slot in 1..6 {
            s.append(&batch(slot)).unwrap();
        }
        assert_eq!(s.lose_synced_tail(2), 2);
        s.restart().unwrap();
        let lost = s.recovered().lost_tail().unwrap().clone();
        assert_eq!((lost.kind, lost.kept_upto), (LossKind::TruncatedSegment, 3));
        assert_eq!(slots(&s), vec![1, 2, 3]);
        assert_eq!(
            s.lose_newest_segment(0),
            0,
            "nothing lost, nothing new reported"
        );
        s.restart().unwrap();
        let again = s.recovered().lost_tail().map(|l| l.kind);
        assert_eq!(again, Some(LossKind::Unrecovered));
        s.append(&batch(4)).unwrap();
        s.finish_peer_recovery().unwrap();
        s.restart().unwrap();
        assert!(s.recovered().lost_tail().is_none());
        assert_eq!(slots(&s), vec![1, 2, 3, 4]);
        // Damage at the tail is a loss too.
        assert!(!s.corrupt_record(s.durable_batches() - 1));
        s.restart().unwrap();
        let kind = s.recovered().lost_tail().map(|l| l.kind);
        assert_eq!(kind, Some(LossKind::DamagedFrame));
        assert_eq!(slots(&s), vec![1, 2, 3]);
    }

    #[test]
    fn a_corrupt_snapshot_is_reported_and_the_older_one_used() {
        let mut s = MemStorage::new();
        s.save_snapshot(3, b"three").unwrap();
        s.save_snapshot(5, b"five").unwrap();
        assert!(s.corrupt_snapshot(5));
        assert!(!s.corrupt_snapshot(4));
        assert!(s.latest_snapshot().is_err());
        s.restart().unwrap();
        assert_eq!(s.recovered().snapshot_slot(), 3);
        assert_eq!(s.recovered().report.damaged_snapshots.len(), 1);
        assert_eq!(&s.latest_snapshot().unwrap().unwrap().data[..], b"three");
    }

    /// A snapshot installed from a peer covers slots this replica's log holds only as values
    /// it accepted (perhaps not the chosen ones). If that snapshot is damaged, recovery falls
    /// back to the older one; the commit point must fall back with it, or the engine would
    /// take those accepted values for chosen ones.
    #[test]
    fn falling_back_past_a_damaged_snapshot_forgets_the_commit_point_above_it() {
        let mut s = MemStorage::new();
        for slot in 1..=3 {
            s.append(&batch(slot)).unwrap();
        }
        s.save_snapshot(2, b"two").unwrap();
        s.append(&batch(4)).unwrap();
        // Installed from a peer: covers slot 6, commit moves there.
        s.save_snapshot(6, b"six").unwrap();
        let hard_state = HardState {
            promised: Ballot::new(4, 1),
            commit: 6,
        };
        s.append(&Batch::new(Some(hard_state), Vec::new())).unwrap();
        s.restart().unwrap();
        assert_eq!(s.recovered().fell_back_from(), None);
        assert_eq!(s.recovered().durable_state().hard_state.commit, 6);
        assert!(s.corrupt_snapshot(6));
        s.restart().unwrap();
        assert_eq!(s.recovered().snapshot_slot(), 2);
        assert_eq!(s.recovered().fell_back_from(), Some(6));
        let state = s.recovered().durable_state();
        assert_eq!(
            state.hard_state.commit, 2,
            "slots 3 and 4 are only accepted"
        );
        assert_eq!(
            state.hard_state.promised,
            Ballot::new(4, 1),
            "promises stay"
        );
        assert_eq!(slots(&s), vec![3, 4], "and so do accepted values");
    }
}
