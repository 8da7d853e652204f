//! Everything that can go wrong, each naming the file (and byte offset) involved, because the
//! operator who reads it has to decide whether a replica's disk can still be trusted.

use std::fmt;
use std::io;
use std::path::PathBuf;
use synod_paxos::{Ballot, Slot};

#[derive(Debug)]
pub enum StorageError {
    /// A system call failed. After a failed write or fdatasync the storage refuses every
    /// further operation ([`StorageError::Poisoned`]): what reached the disk is unknown, so
    /// the only safe way on is to reopen and recover.
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    /// Damage before the tail of the write-ahead log (or in a file that was complete when
    /// synced). The replica must not start from this disk: see docs/STORAGE.md, "Rejoining a
    /// replica whose disk is damaged".
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// A log written in a format this version cannot read (an older release's, or a newer
    /// one's). Nothing was changed; see docs/STORAGE.md, "Format versions".
    UnsupportedFormat { path: PathBuf, reason: String },
    /// A snapshot file failed verification; it is never served.
    SnapshotCorrupt { path: PathBuf, reason: String },
    /// A caller tried to write a promise below one already written: the acceptor would forget
    /// a promise it may have made. Nothing was written.
    PromiseRegressed { current: Ballot, attempted: Ballot },
    /// `save_snapshot` at a slot not above the newest snapshot.
    SnapshotNotNewer { slot: Slot, newest: Slot },
    /// One batch larger than a frame can hold.
    BatchTooLarge { bytes: usize, max: usize },
    /// An earlier write or sync failed; reopen the storage to recover.
    Poisoned { reason: String },
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| StorageError::Io { path, op, source }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        StorageError::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// True for damage that makes the disk untrustworthy (as opposed to an I/O failure or a
    /// caller's mistake): the replica must rejoin from its peers.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            StorageError::Corrupt { .. } | StorageError::SnapshotCorrupt { .. }
        )
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Io { path, op, source } => {
                write!(f, "{op} {}: {source}", path.display())
            }
            StorageError::Corrupt {
                path,
                offset,
                reason,
            } => write!(
                f,
                "corrupt write-ahead log {} at byte offset {offset}: {reason}; refusing to start \
                 from this disk (see docs/STORAGE.md, \"Rejoining a replica whose disk is \
                 damaged\")",
                path.display()
            ),
            StorageError::UnsupportedFormat { path, reason } => write!(
                f,
                "cannot read the write-ahead log {}: {reason}; this version cannot read or \
                 upgrade it: move the data directory away and add this member back as a new \
                 member (see docs/STORAGE.md, \"Format versions\")",
                path.display()
            ),
            StorageError::SnapshotCorrupt { path, reason } => {
                write!(f, "corrupt snapshot {}: {reason}", path.display())
            }
            StorageError::PromiseRegressed { current, attempted } => write!(
                f,
                "refusing to lower the durable promise from {current} to {attempted}"
            ),
            StorageError::SnapshotNotNewer { slot, newest } => write!(
                f,
                "snapshot at slot {slot} is not newer than the newest one (slot {newest})"
            ),
            StorageError::BatchTooLarge { bytes, max } => {
                write!(f, "batch of {bytes} bytes exceeds the frame limit of {max}")
            }
            StorageError::Poisoned { reason } => write!(
                f,
                "storage unusable after an earlier failure ({reason}); reopen it to recover"
            ),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
