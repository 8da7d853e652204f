//! The snapshot files of [`crate::MemStorage`], with the rules of the disk version's
//! [`crate::snapshot::SnapshotStore`]: a directory of whole, synced snapshot files (what a
//! [`SnapshotWriter`] writes lands there at once) and, apart from it, the snapshots taken in
//! (saved or adopted), of which the newest is served. A restart rescans the directory, so a
//! file written but never adopted is found like any saved one, exactly as on disk.
//!
//! The directory is shared with the writer handles (`Arc<Mutex<..>>`), but a clone of the
//! storage deep-copies it: a clone never sees what the original's handles write, nor the
//! other way round. A crash detaches the handles taken before it: the process holding them
//! is gone, and a write through one afterwards is refused rather than seen by the restarted
//! storage.
//!
//! There is no fault hook for a file adopted without being synced: [`SnapshotWriter::write`]
//! syncs the file and its directory before returning, so a file it reported is durable, and
//! a crash before it returns leaves only a temporary file that the next open deletes. Here
//! the write is one step: a crash before it is a write that never happened.

use crate::error::StorageError;
use crate::snapshot::{Snapshot, SnapshotMeta, SnapshotWriter};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use synod_paxos::Slot;

/// A snapshot file under its final name: whole and synced (it was renamed into place).
#[derive(Clone, Debug)]
struct MemFile {
    data: Bytes,
    /// Fails its checksum (corrupted on purpose).
    damaged: bool,
}

/// The snapshot directory, as the storage and its writer handles share it.
#[derive(Debug, Default)]
pub(crate) struct MemSnapshotDir {
    files: BTreeMap<Slot, MemFile>,
    /// The storage crashed after handing out the handles that still point here.
    crashed: bool,
}

pub(crate) fn snapshot_path(slot: Slot) -> PathBuf {
    PathBuf::from(format!("mem:snap-{slot:016x}.snap"))
}

fn lock(dir: &Mutex<MemSnapshotDir>) -> MutexGuard<'_, MemSnapshotDir> {
    // Nothing can panic half-way through an update of the map: a poisoned lock holds whole
    // files still.
    dir.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What [`SnapshotWriter::write`] does for a `MemStorage`: the file is in place (replacing
/// one of the same slot, as the disk version's rename does) and durable, not yet adopted.
pub(crate) fn write(
    dir: &Mutex<MemSnapshotDir>,
    slot: Slot,
    data: &[u8],
) -> Result<SnapshotMeta, StorageError> {
    let mut dir = lock(dir);
    if dir.crashed {
        return Err(StorageError::Poisoned {
            reason: format!(
                "snapshot writer for slot {slot} outlived a crash of its storage: take a new \
                 one after the restart"
            ),
        });
    }
    let file = MemFile {
        data: Bytes::copy_from_slice(data),
        damaged: false,
    };
    dir.files.insert(slot, file);
    Ok(SnapshotMeta {
        slot,
        size: data.len() as u64,
    })
}

fn remove(dir: &mut MemSnapshotDir, slot: Slot) -> Result<(), StorageError> {
    match dir.files.remove(&slot) {
        Some(_) => Ok(()),
        None => {
            let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
            Err(StorageError::io(snapshot_path(slot), "remove")(missing))
        }
    }
}

/// The snapshots of one `MemStorage`.
#[derive(Debug)]
pub(crate) struct MemSnapshots {
    dir: Arc<Mutex<MemSnapshotDir>>,
    /// Saved, adopted or found at restart, oldest first (the disk version's `retained`).
    retained: Vec<SnapshotMeta>,
    keep: usize,
}

impl Clone for MemSnapshots {
    /// A copy of the directory, not a second name for it: what the original's writer
    /// handles write later does not appear in the clone.
    fn clone(&self) -> MemSnapshots {
        let dir = lock(&self.dir);
        MemSnapshots {
            dir: Arc::new(Mutex::new(MemSnapshotDir {
                files: dir.files.clone(),
                crashed: dir.crashed,
            })),
            retained: self.retained.clone(),
            keep: self.keep,
        }
    }
}

impl MemSnapshots {
    pub(crate) fn new(keep: usize) -> MemSnapshots {
        MemSnapshots {
            dir: Arc::default(),
            retained: Vec::new(),
            keep: keep.max(1),
        }
    }

    pub(crate) fn writer(&self) -> SnapshotWriter {
        SnapshotWriter::mem(Arc::clone(&self.dir))
    }

    pub(crate) fn newest(&self) -> Option<SnapshotMeta> {
        self.retained.last().copied()
    }

    pub(crate) fn retained_slots(&self) -> Vec<Slot> {
        self.retained.iter().map(|m| m.slot).collect()
    }

    /// The newest snapshot taken in, read back now: damage since is reported, not served.
    pub(crate) fn latest(&self) -> Result<Option<Snapshot>, StorageError> {
        let Some(newest) = self.newest() else {
            return Ok(None);
        };
        let path = snapshot_path(newest.slot);
        let dir = lock(&self.dir);
        let Some(file) = dir.files.get(&newest.slot) else {
            // Adopted without having been written: the disk version fails to read it.
            let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
            return Err(StorageError::io(path, "read")(missing));
        };
        if file.damaged {
            return Err(StorageError::SnapshotCorrupt {
                path,
                reason: "checksum mismatch".into(),
            });
        }
        Ok(Some(Snapshot {
            meta: SnapshotMeta {
                slot: newest.slot,
                size: file.data.len() as u64,
            },
            data: file.data.clone(),
        }))
    }

    pub(crate) fn save(&mut self, slot: Slot, data: &[u8]) -> Result<SnapshotMeta, StorageError> {
        if let Some(newest) = self.newest().filter(|n| n.slot >= slot) {
            return Err(StorageError::SnapshotNotNewer {
                slot,
                newest: newest.slot,
            });
        }
        let meta = write(&self.dir, slot, data)?;
        self.adopt(meta)
    }

    /// As the disk version: a file not newer than the newest snapshot is removed (unless it
    /// is the newest's own file) and refused; otherwise it is the newest, and the oldest
    /// beyond the number kept are removed. A file that is not there to remove fails as
    /// removing it on disk would (a driver adopting what it never wrote, or twice).
    pub(crate) fn adopt(&mut self, meta: SnapshotMeta) -> Result<SnapshotMeta, StorageError> {
        if let Some(newest) = self.newest().filter(|n| n.slot >= meta.slot) {
            if newest.slot != meta.slot {
                remove(&mut lock(&self.dir), meta.slot)?;
            }
            return Err(StorageError::SnapshotNotNewer {
                slot: meta.slot,
                newest: newest.slot,
            });
        }
        self.retained.push(meta);
        self.prune()?;
        Ok(meta)
    }

    /// Removes the oldest snapshots taken in beyond the number kept (files written but never
    /// adopted stay, as on disk, until a restart finds them). Like the disk version, it stops
    /// at a file that is missing, having forgotten every one beyond the number kept.
    fn prune(&mut self) -> Result<(), StorageError> {
        let extra = self.retained.len().saturating_sub(self.keep);
        let mut dir = lock(&self.dir);
        self.retained
            .drain(..extra)
            .try_for_each(|meta| remove(&mut dir, meta.slot))
    }

    /// Damages the file at `slot`, taken in or only written. False if there is none.
    pub(crate) fn corrupt(&mut self, slot: Slot) -> bool {
        let mut dir = lock(&self.dir);
        let found = dir.files.get_mut(&slot);
        found.map(|f| f.damaged = true).is_some()
    }

    /// The process died: handles taken before now write nowhere the restarted storage looks.
    pub(crate) fn crash(&mut self) {
        let mut old = lock(&self.dir);
        let files = std::mem::take(&mut old.files);
        old.crashed = true;
        drop(old);
        self.dir = Arc::new(Mutex::new(MemSnapshotDir {
            files,
            crashed: false,
        }));
    }

    /// What the disk version's open does: every file is verified, a damaged one is set aside
    /// (returned, newest first) and the rest are the snapshots kept, whether they were adopted
    /// or only written, pruned to the number kept.
    pub(crate) fn recover(&mut self) -> Vec<(PathBuf, String)> {
        let mut dir = lock(&self.dir);
        let mut damaged = Vec::new();
        dir.files.retain(|&slot, f| {
            if f.damaged {
                damaged.push((snapshot_path(slot), "checksum mismatch".to_string()));
            }
            !f.damaged
        });
        damaged.reverse();
        let found = dir.files.iter().map(|(&slot, f)| SnapshotMeta {
            slot,
            size: f.data.len() as u64,
        });
        self.retained = found.collect();
        drop(dir);
        // Every file kept was just found: none is missing.
        let _ = self.prune();
        damaged
    }
}

#[cfg(test)]
mod tests {
    use crate::{MemStorage, Storage, StorageError};

    fn latest(s: &MemStorage) -> Option<(u64, Vec<u8>)> {
        let snapshot = s.latest_snapshot().unwrap();
        snapshot.map(|l| (l.meta.slot, l.data.to_vec()))
    }

    fn write(s: &MemStorage, slot: u64, data: &[u8]) -> crate::SnapshotMeta {
        s.snapshot_writer().unwrap().write(slot, data).unwrap()
    }

    #[test]
    fn a_written_file_is_the_newest_snapshot_once_adopted() {
        let mut s = MemStorage::new();
        let writer = s
            .snapshot_writer()
            .expect("memory storage writes snapshot files");
        let meta = std::thread::spawn(move || writer.write(10, b"at ten").unwrap())
            .join()
            .unwrap();
        assert_eq!((meta.slot, meta.size), (10, 6));
        assert_eq!(latest(&s), None, "not adopted yet");
        assert_eq!(s.adopt_snapshot(meta).unwrap(), meta);
        assert_eq!(latest(&s), Some((10, b"at ten".to_vec())));
        s.restart().unwrap();
        assert_eq!(s.recovered().snapshot, Some(meta));
    }

    #[test]
    fn a_file_written_before_a_crash_is_found_by_the_restart() {
        let mut s = MemStorage::new();
        s.save_snapshot(5, b"five").unwrap();
        let writer = s.snapshot_writer().unwrap();
        writer.write(9, b"nine").unwrap();
        s.crash();
        // The thread that held the writer died with the process.
        assert!(matches!(
            writer.write(12, b"twelve"),
            Err(StorageError::Poisoned { .. })
        ));
        s.restart().unwrap();
        assert_eq!(s.recovered().snapshot_slot(), 9);
        assert_eq!(latest(&s), Some((9, b"nine".to_vec())));
        assert!(!s.corrupt_snapshot(12), "the dead writer wrote nothing");
        // The restarted storage hands out writers that work.
        let meta = write(&s, 12, b"twelve");
        s.adopt_snapshot(meta).unwrap();
        assert_eq!(latest(&s).unwrap().0, 12);
    }

    #[test]
    fn an_overtaken_file_is_refused_and_removed() {
        let mut s = MemStorage::new();
        let ours = write(&s, 10, b"ours");
        // A snapshot received from a peer, newer, was saved meanwhile.
        s.save_snapshot(30, b"from a peer").unwrap();
        assert!(matches!(
            s.adopt_snapshot(ours),
            Err(StorageError::SnapshotNotNewer {
                slot: 10,
                newest: 30
            })
        ));
        assert!(!s.corrupt_snapshot(10), "the refused file is gone");
        // The newest's own slot is refused too, but that file is the newest: it stays.
        let again = write(&s, 30, b"rewritten");
        assert!(s.adopt_snapshot(again).is_err());
        assert_eq!(latest(&s), Some((30, b"rewritten".to_vec())));
        s.restart().unwrap();
        assert_eq!(s.recovered().snapshot_slot(), 30);
    }

    #[test]
    fn a_damaged_written_file_is_set_aside_and_the_older_one_used() {
        let mut s = MemStorage::new();
        s.save_snapshot(3, b"three").unwrap();
        write(&s, 7, b"seven");
        assert!(s.corrupt_snapshot(7));
        assert_eq!(latest(&s).unwrap().0, 3, "never adopted, never served");
        s.restart().unwrap();
        assert_eq!(s.recovered().snapshot_slot(), 3);
        let damaged = &s.recovered().report.damaged_snapshots;
        assert_eq!(damaged.len(), 1);
        assert!(damaged[0]
            .0
            .to_string_lossy()
            .ends_with("snap-0000000000000007.snap"));
        assert!(!s.corrupt_snapshot(7), "set aside, never found again");
        // Rewriting a damaged file replaces it whole.
        write(&s, 3, b"three again");
        assert!(s.corrupt_snapshot(3));
        let meta = write(&s, 3, b"three again");
        assert!(s.adopt_snapshot(meta).is_err());
        assert_eq!(latest(&s), Some((3, b"three again".to_vec())));
    }

    #[test]
    fn files_never_adopted_are_kept_until_a_restart_prunes_them() {
        let mut s = MemStorage::new();
        write(&s, 1, b"old, never adopted");
        for slot in [2, 3, 4] {
            s.save_snapshot(slot, b"saved").unwrap();
        }
        assert!(
            !s.corrupt_snapshot(2),
            "the oldest adopted one beyond 2 is deleted"
        );
        let mut probe = s.clone();
        assert!(probe.corrupt_snapshot(1), "the unadopted one is not");
        s.restart().unwrap();
        assert!(
            !s.corrupt_snapshot(1),
            "the restart keeps the newest 2 only"
        );
        assert!(s.corrupt_snapshot(3));
    }

    #[test]
    fn a_clone_has_its_own_snapshot_files() {
        let mut s = MemStorage::new();
        s.save_snapshot(2, b"two").unwrap();
        let mut copy = s.clone();
        write(&s, 5, b"original's");
        write(&copy, 6, b"clone's");
        assert!(copy.corrupt_snapshot(2));
        assert!(
            !copy.corrupt_snapshot(5),
            "the original's write is not in the clone"
        );
        assert_eq!(
            latest(&s),
            Some((2, b"two".to_vec())),
            "the clone's damage is its own"
        );
        s.restart().unwrap();
        assert_eq!(s.recovered().snapshot_slot(), 5);
        assert!(s.recovered().report.damaged_snapshots.is_empty());
        copy.restart().unwrap();
        assert_eq!(copy.recovered().snapshot_slot(), 6);
        assert_eq!(copy.recovered().report.damaged_snapshots.len(), 1);
    }

    #[test]
    fn adopting_what_was_never_written_or_twice_fails_as_on_disk() {
        let mut s = MemStorage::new();
        let meta = crate::SnapshotMeta { slot: 4, size: 3 };
        s.adopt_snapshot(meta).unwrap();
        assert!(matches!(
            s.latest_snapshot(),
            Err(StorageError::Io { op: "read", .. })
        ));
        s.restart().unwrap();
        assert_eq!(s.recovered().snapshot, None);
        // Adopting twice: the second time the file is already gone, as it is on disk.
        let five = write(&s, 5, b"five");
        s.adopt_snapshot(five).unwrap();
        s.save_snapshot(6, b"six").unwrap();
        s.save_snapshot(7, b"seven").unwrap();
        assert!(matches!(
            s.adopt_snapshot(five),
            Err(StorageError::Io { op: "remove", .. })
        ));
    }
}
