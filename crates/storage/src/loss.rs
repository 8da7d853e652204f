//! A lost synced tail: what recovery found, and the marker that keeps reporting it until the
//! replica has recovered from its peers.
//!
//! A replica that lost acknowledged writes (promises, accepted values) must not act as an
//! acceptor until it has learnt again from a quorum of peers what it may have promised; a
//! replica that merely lost an unsynced, torn tail has lost nothing it acknowledged. Recovery
//! tells the two apart and reports the first as a [`LossReport`]. Before repairing the log it
//! writes the marker `<dir>/wal/LOST_TAIL`; every later open reports the loss again
//! ([`LossKind::Unrecovered`]) until the driver calls `Storage::finish_peer_recovery`.

use crate::error::StorageError;
use crate::fsutil::DirHandle;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const MARKER_NAME: &str = "LOST_TAIL";

/// What kind of loss recovery found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// The newest segment is shorter than its preallocated size: its tail was cut off.
    TruncatedSegment,
    /// A segment that was in use is gone: the successor a sealed newest segment names, or the
    /// newest one when only its prepared successor remains.
    MissingSegment,
    /// A frame (or the header) at the end of the log is damaged, and no interrupted write
    /// explains it.
    DamagedFrame,
    /// The log's good frames end below what the synced record says was durable.
    BelowSyncedRecord,
    /// The synced record is missing or unreadable while the log holds data: how far it was
    /// synced is unknown, so the tail cannot be trusted to be complete.
    SyncedRecordUnreadable,
    /// The log is gone while snapshots (or the synced record) show it existed.
    LogMissing,
    /// An earlier open found a loss and the replica has not finished recovering from its
    /// peers since (the marker is still there).
    Unrecovered,
}

/// A lost synced tail. The log was cut at the last good frame (the damaged segment copied
/// aside first); nothing after the damage is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LossReport {
    pub kind: LossKind,
    /// The file where the loss was found (a segment, the log directory or the marker).
    pub path: PathBuf,
    /// Byte offset in `path` where the good data ends.
    pub offset: u64,
    /// The seq of the last frame kept (0: none).
    pub kept_upto: u64,
    /// What was found, for the operator.
    pub detail: String,
    /// Copies of damaged files kept as evidence (`*.damaged`).
    pub set_aside: Vec<PathBuf>,
}

impl fmt::Display for LossReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lost synced log tail ({:?}) in {} at byte offset {}: {}; log kept up to frame seq {}",
            self.kind,
            self.path.display(),
            self.offset,
            self.detail,
            self.kept_upto
        )?;
        for p in &self.set_aside {
            write!(f, "; damaged copy kept at {}", p.display())?;
        }
        Ok(())
    }
}

/// The marker's text, if the marker exists.
pub fn read_marker(dir: &Path) -> Result<Option<String>, StorageError> {
    let path = dir.join(MARKER_NAME);
    match std::fs::read(&path) {
        Ok(text) => Ok(Some(String::from_utf8_lossy(&text).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io(&path, "read")(e)),
    }
}

/// The report an open gives while the marker of an earlier loss remains.
pub fn unrecovered(dir: &Path, text: String, kept_upto: u64) -> LossReport {
    LossReport {
        kind: LossKind::Unrecovered,
        path: dir.join(MARKER_NAME),
        offset: 0,
        kept_upto,
        detail: format!("peer recovery not finished after: {}", text.trim_end()),
        set_aside: Vec::new(),
    }
}

/// Durably writes the marker describing `loss` (before any repair, so that a crash during the
/// repair still reports the loss).
pub fn write_marker(dir: &DirHandle, loss: &LossReport) -> Result<(), StorageError> {
    let path = dir.path().join(MARKER_NAME);
    std::fs::File::create(&path)
        .and_then(|mut f| {
            writeln!(f, "{loss}")?;
            f.sync_all()
        })
        .map_err(StorageError::io(&path, "write loss marker"))?;
    dir.sync()
}

/// Durably removes the marker (a no-op without one).
pub fn remove_marker(dir: &DirHandle) -> Result<(), StorageError> {
    let path = dir.path().join(MARKER_NAME);
    match std::fs::remove_file(&path) {
        Ok(()) => dir.sync(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(&path, "remove loss marker")(e)),
    }
}
