//! # synod-storage: what makes an acceptor's word durable
//!
//! An acceptor may only answer a Prepare or an Accept once its promise and accepted values are
//! on disk, and a restarted replica must find them again. This crate provides that, behind one
//! trait with two implementations:
//! - [`DiskStorage`]: a segmented write-ahead log of checksummed frames in preallocated,
//!   chained segments with group commit (many batches, one fdatasync), recovery that tells a
//!   torn unsynced tail (cut off) from a lost synced one (cut off and reported), and crash-safe
//!   snapshots;
//! - [`MemStorage`]: the same contract in memory, for the simulator, with hooks to lose
//!   unsynced writes, tear the last one, corrupt records and snapshot files and lose a synced
//!   tail; its snapshot files are written through a [`SnapshotWriter`] like the disk's.
//!
//! Both pass one conformance suite (`tests/conformance.rs`). The file formats, the recovery
//! rules and the contract a driver must follow are in docs/STORAGE.md.

mod batch;
mod disk;
mod error;
mod frame;
mod fsutil;
mod loss;
mod mem;
mod mem_snapshots;
mod record;
mod recover;
mod recovered;
mod segment;
mod snapshot;
mod wal;

pub use batch::Batch;
pub use disk::{DiskStorage, Options};
pub use error::StorageError;
pub use loss::{LossKind, LossReport};
pub use mem::MemStorage;
pub use recovered::{Recovered, RecoveryReport, TornTail};
pub use snapshot::{Snapshot, SnapshotMeta, SnapshotWriter};

use synod_paxos::Slot;

/// Durable state of one replica: what the server and the simulator drive.
///
/// The driver's contract (docs/STORAGE.md, "Durability contract"): write each `Ready`'s
/// `hard_state` and `records` as one [`Batch`]; send its `messages_after_persist` and call
/// `persisted` only after a [`Storage::sync`] (or [`Storage::append`]) that followed the write
/// has returned `Ok`. After any error from `write` or `sync` other than
/// [`StorageError::PromiseRegressed`], the storage refuses further writes: reopen it.
pub trait Storage {
    /// Queues one batch after every earlier one. It is atomic (after a crash, all of it or none
    /// of it is recovered) but not durable until the next [`Storage::sync`]. An empty batch is
    /// ignored. A hard state whose promise is below the last one written is refused
    /// ([`StorageError::PromiseRegressed`]) and nothing is written.
    fn write(&mut self, batch: &Batch) -> Result<(), StorageError>;

    /// Makes every batch written so far durable, with a single fdatasync however many there
    /// are (group commit). A no-op when nothing was written since the last sync.
    fn sync(&mut self) -> Result<(), StorageError>;

    /// Writes one batch and makes it durable before returning.
    fn append(&mut self, batch: &Batch) -> Result<(), StorageError> {
        self.write(batch)?;
        self.sync()
    }

    /// What recovery found when the storage was opened (not updated by later writes).
    fn recovered(&self) -> &Recovered;

    /// Stores a snapshot of the state machine with every slot up to `slot` applied. It is
    /// durable when this returns. `slot` must be above the newest snapshot's.
    fn save_snapshot(&mut self, slot: Slot, data: &[u8]) -> Result<SnapshotMeta, StorageError>;

    /// A handle that writes snapshot files on another thread, so a large snapshot does not
    /// hold up [`Storage::write`]/[`Storage::sync`]; `None` (the default) when this storage
    /// has no files: use [`Storage::save_snapshot`]. A written file becomes the newest
    /// snapshot with [`Storage::adopt_snapshot`]; after a crash in between it is found like
    /// any saved one.
    fn snapshot_writer(&self) -> Option<SnapshotWriter> {
        None
    }

    /// Takes in a snapshot [`Storage::snapshot_writer`] wrote (see there); refused with
    /// [`StorageError::SnapshotNotNewer`] (and the file deleted) if it is not newer.
    fn adopt_snapshot(&mut self, meta: SnapshotMeta) -> Result<SnapshotMeta, StorageError> {
        Err(StorageError::SnapshotNotNewer {
            slot: meta.slot,
            newest: u64::MAX,
        })
    }

    /// The newest snapshot, verified now; a damaged one is an error, never served.
    fn latest_snapshot(&self) -> Result<Option<Snapshot>, StorageError>;

    /// Frees log space holding only records at or below `upto`, which a snapshot must cover.
    /// For safety it never goes past the oldest snapshot kept (so an older snapshot is still a
    /// complete starting point if the newest is damaged); without a snapshot it does nothing.
    /// Syncs first. Records at or below the snapshot are dropped from `recovered` on reopen.
    fn compact(&mut self, upto: Slot) -> Result<(), StorageError>;

    /// Ends the recovery after a lost tail ([`Recovered::lost_tail`]): syncs everything written
    /// so far (the state learnt from the peers), then durably removes the marker that makes
    /// every open report the loss again. Call it once the replica has recovered from a quorum
    /// of peers; without a loss it only syncs.
    fn finish_peer_recovery(&mut self) -> Result<(), StorageError> {
        self.sync()
    }
}
