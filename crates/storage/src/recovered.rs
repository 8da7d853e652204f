//! What a replica finds on its disk when it starts, built by replaying the log over the
//! newest good snapshot. Both implementations replay through [`Recovered::replay`], so they
//! agree on what "the latest hard state and the latest record per slot" means.

use crate::batch::Batch;
use crate::error::StorageError;
use crate::loss::LossReport;
use crate::snapshot::SnapshotMeta;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use synod_paxos::{DurableState, HardState, LogRecord, Slot};

/// The state recovered when the storage was opened. It is not updated by later writes (the
/// engine holds the live state); reopen to see what survived.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The latest hard state written; `HardState::default()` if none ever was.
    pub hard_state: HardState,
    /// Per slot above the snapshot, the latest record written.
    pub records: BTreeMap<Slot, LogRecord>,
    /// The snapshot recovery starts from, if any. Records at or below its slot are dropped.
    pub snapshot: Option<SnapshotMeta>,
    /// What recovery had to do on the way, for the operator's log.
    pub report: RecoveryReport,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Batches replayed from the log.
    pub batches: u64,
    /// The end of an interrupted write that was cut off, if any. Never data that was synced.
    pub torn_tail: Option<TornTail>,
    /// Synced data that was lost (or an earlier loss not yet recovered from): see
    /// [`Recovered::lost_tail`].
    pub lost_tail: Option<LossReport>,
    /// Snapshots that failed verification and were set aside (renamed to `*.corrupt` on
    /// disk), with the reason. Never served.
    pub damaged_snapshots: Vec<(PathBuf, String)>,
}

/// Where recovery cut the log: the bytes from `offset` to the end of `path` were the
/// remains of a write that had not been synced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub path: PathBuf,
    pub offset: u64,
    pub bytes_dropped: u64,
}

impl Recovered {
    /// Starts recovery from `snapshot` (records at or below it are not kept).
    pub(crate) fn new(snapshot: Option<SnapshotMeta>) -> Recovered {
        Recovered {
            snapshot,
            ..Recovered::default()
        }
    }

    /// Nothing was ever written: a new replica (which should be bootstrapped). False after a
    /// loss, even if nothing at all survived: that replica existed and made promises.
    pub fn is_empty(&self) -> bool {
        self.hard_state == HardState::default()
            && self.records.is_empty()
            && self.snapshot.is_none()
            && self.report.batches == 0
            && self.report.lost_tail.is_none()
    }

    /// Synced data this replica acknowledged is gone (or an earlier such loss has not been
    /// recovered from yet). The log was cut at the last good frame and is consistent, but the
    /// replica may have forgotten promises and accepted values: it must not promise or accept
    /// until it has recovered from a quorum of peers, then call
    /// [`crate::Storage::finish_peer_recovery`]. Until then every open reports the loss again.
    /// `None` after a crash that only lost unsynced writes (see `report.torn_tail`).
    pub fn lost_tail(&self) -> Option<&LossReport> {
        self.report.lost_tail.as_ref()
    }

    /// The slot of the snapshot recovery starts from, 0 without one.
    pub fn snapshot_slot(&self) -> Slot {
        self.snapshot.map_or(0, |s| s.slot)
    }

    /// Records the snapshots set aside as damaged (newest first).
    pub(crate) fn set_damaged_snapshots(&mut self, damaged: Vec<(PathBuf, String)>) {
        self.report.damaged_snapshots = damaged;
    }

    /// The newest snapshot set aside as damaged, if it is newer than the one recovery starts
    /// from: recovery fell back past it.
    pub fn fell_back_from(&self) -> Option<Slot> {
        self.report
            .damaged_snapshots
            .iter()
            .filter_map(|(path, _)| {
                let name = path.file_name()?.to_str()?;
                let name = name.strip_prefix("mem:").unwrap_or(name);
                crate::fsutil::parse_hex_name(name, "snap-", ".snap")
            })
            .max()
            .filter(|&damaged| damaged > self.snapshot_slot())
    }

    /// What the engine is started from: the hard state and the records in slot order.
    /// `snapshot` is left `None`: the membership a snapshot carries lives in its data, which
    /// only the driver decodes, so the driver fills it in when it restores the snapshot.
    ///
    /// When recovery fell back past a damaged newer snapshot, the commit point is lowered to
    /// the snapshot it starts from: the slots between may have reached this replica only in
    /// the damaged snapshot (one installed from a peer), so the records the log holds for
    /// them are values it accepted, not necessarily the chosen ones, and the engine treats
    /// every record at or below the commit point as chosen. It learns them again from its
    /// peers. Only the commit point is forgotten: promises and accepted values stay.
    pub fn durable_state(&self) -> DurableState {
        let mut hard_state = self.hard_state;
        if self.fell_back_from().is_some() {
            hard_state.commit = hard_state.commit.min(self.snapshot_slot());
        }
        DurableState {
            hard_state,
            records: self.records.values().cloned().collect(),
            snapshot: None,
        }
    }

    /// Applies one logged batch. A promise lower than one replayed before it can only come
    /// from damage or a bug (writers refuse to lower it), so it stops recovery.
    pub(crate) fn replay(
        &mut self,
        batch: &Batch,
        path: &Path,
        offset: u64,
    ) -> Result<(), StorageError> {
        if let Some(hs) = batch.hard_state {
            if hs.promised < self.hard_state.promised {
                return Err(StorageError::corrupt(
                    path,
                    offset,
                    format!(
                        "promise goes backwards from {} to {}",
                        self.hard_state.promised, hs.promised
                    ),
                ));
            }
            self.hard_state = hs;
        }
        let floor = self.snapshot_slot();
        for r in batch.records.iter().filter(|r| r.slot > floor) {
            self.records.insert(r.slot, r.clone());
        }
        self.report.batches += 1;
        Ok(())
    }
}

/// How far the log may be compacted when asked for `upto`: never past the oldest snapshot
/// still kept. So if the newest snapshot turns out damaged, recovery can fall back to an
/// older one and still find every record above it in the log.
pub(crate) fn compaction_bound(upto: Slot, retained_snapshot_slots: &[Slot]) -> Slot {
    retained_snapshot_slots
        .iter()
        .copied()
        .min()
        .map_or(0, |oldest| oldest.min(upto))
}
