//! The real thing: a write-ahead log and snapshots in a data directory.
//!
//! ```text
//! <dir>/wal/wal-<index:016x>.log        segments, oldest first, preallocated
//! <dir>/wal/synced                      how far the log is known synced
//! <dir>/wal/LOST_TAIL                   present while a lost tail is not recovered from
//! <dir>/snap/snap-<slot:016x>.snap      the newest snapshots (2 by default)
//! ```

use crate::batch::Batch;
use crate::error::StorageError;
use crate::fsutil;
use crate::recover;
use crate::recovered::{compaction_bound, Recovered};
use crate::snapshot::{Snapshot, SnapshotMeta, SnapshotStore};
use crate::wal::Wal;
use crate::Storage;
use std::path::{Path, PathBuf};
use synod_paxos::Slot;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// The size every log segment is preallocated at (at least 512 bytes); a segment is
    /// sealed and the next one started when a batch no longer fits. A batch larger than a
    /// segment gets a segment of its own, made large enough.
    pub segment_bytes_max: u64,
    /// Snapshots kept; the log is never compacted past the oldest of them, so a damaged
    /// newest snapshot still leaves a complete older one to recover from.
    pub snapshots_kept: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            segment_bytes_max: 64 << 20,
            snapshots_kept: 2,
        }
    }
}

#[derive(Debug)]
pub struct DiskStorage {
    dir: PathBuf,
    wal: Wal,
    snapshots: SnapshotStore,
    recovered: Recovered,
}

impl DiskStorage {
    /// Opens the data directory (creating it if missing) and recovers: the newest snapshot that
    /// verifies, then every log frame above it. A torn (unsynced) tail is cut off. A lost
    /// synced tail is cut off too, and reported in [`Recovered::lost_tail`] until
    /// [`Storage::finish_peer_recovery`]. Damage followed by good data, or a segment missing
    /// in the middle, is an error naming the file and offset, and the replica must not start
    /// (docs/STORAGE.md, "Rejoining a replica whose disk is damaged").
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<DiskStorage, StorageError> {
        let dir = dir.as_ref().to_path_buf();
        fsutil::ensure_dir(&dir)?;
        let (snapshots, damaged) =
            SnapshotStore::open(&dir.join("snap"), options.snapshots_kept, false)?;
        let mut recovered = Recovered::new(snapshots.newest());
        recovered.set_damaged_snapshots(damaged);
        let wal = Wal::open(&dir.join("wal"), options.segment_bytes_max, &mut recovered)?;
        check_coverage(&dir, wal.first_seq(), &recovered)?;
        Ok(DiskStorage {
            dir,
            wal,
            snapshots,
            recovered,
        })
    }

    /// What [`DiskStorage::open`] would recover, without changing anything on disk: a torn or
    /// lost tail is reported but not cut (nor marked), damaged snapshots are reported but not
    /// set aside. For checking a data directory (and for tests that recover thousands of times).
    pub fn inspect(dir: impl AsRef<Path>, options: Options) -> Result<Recovered, StorageError> {
        let dir = dir.as_ref();
        let (snapshots, damaged) =
            SnapshotStore::open(&dir.join("snap"), options.snapshots_kept, true)?;
        let mut recovered = Recovered::new(snapshots.newest());
        recovered.set_damaged_snapshots(damaged);
        let plan = recover::scan(&dir.join("wal"), &mut recovered)?;
        check_coverage(dir, plan.first_seq(), &recovered)?;
        Ok(recovered)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Segment files in the log (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        self.wal.segment_count()
    }
}

/// A compacted log is only complete together with a snapshot covering what was deleted.
fn check_coverage(dir: &Path, first_seq: u64, recovered: &Recovered) -> Result<(), StorageError> {
    if first_seq == 1 || recovered.snapshot.is_some() {
        return Ok(());
    }
    Err(StorageError::corrupt(
        dir.join("wal"),
        0,
        format!(
            "the log starts at seq {first_seq} (older segments were compacted) but no usable \
             snapshot covers what they held"
        ),
    ))
}

impl Storage for DiskStorage {
    fn write(&mut self, batch: &Batch) -> Result<(), StorageError> {
        self.wal.write(batch)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.wal.sync()
    }

    fn recovered(&self) -> &Recovered {
        &self.recovered
    }

    fn save_snapshot(&mut self, slot: Slot, data: &[u8]) -> Result<SnapshotMeta, StorageError> {
        self.snapshots.save(slot, data)
    }

    fn snapshot_writer(&self) -> Option<crate::SnapshotWriter> {
        Some(self.snapshots.writer())
    }

    fn adopt_snapshot(&mut self, meta: SnapshotMeta) -> Result<SnapshotMeta, StorageError> {
        self.snapshots.adopt(meta)
    }

    fn latest_snapshot(&self) -> Result<Option<Snapshot>, StorageError> {
        self.snapshots.latest()
    }

    fn compact(&mut self, upto: Slot) -> Result<(), StorageError> {
        let bound = compaction_bound(upto, &self.snapshots.retained_slots());
        self.wal.compact(bound).map(|_| ())
    }

    fn finish_peer_recovery(&mut self) -> Result<(), StorageError> {
        self.wal.finish_peer_recovery()
    }
}
