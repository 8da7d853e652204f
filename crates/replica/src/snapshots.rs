//! Snapshots: when to take one (and the job that encodes it), serving the newest to peers
//! that lag behind the log, reassembling and installing one from a peer, exports for clients.

use crate::effects::{Count, ExportJob, SnapshotJob};
use crate::persist::PersistJob;
use crate::replica::Replica;
use crate::snapshot_format;
use crate::snapshot_receiver::{SnapshotReceiver, SNAPSHOT_BYTES_MAX, SNAPSHOT_STALL_TIMEOUT};
use crate::Waiter;
use bytes::Bytes;
use synod_kv::KvStore;
use synod_paxos::{Body, Command, Message, NodeId, Slot, SnapshotChunk, SnapshotInfo};

/// Snapshots travel to peers in pieces of this size (each one peer message).
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// Snapshot state: the policy's counters, the newest durable snapshot, one being saved, one
/// being reassembled from a peer and one waiting to be installed.
#[derive(Debug)]
pub(crate) struct Snapshots {
    /// Take a snapshot after this many applied commands (etcd's `--snapshot-count`).
    every_commands: u64,
    applied_commands: u64,
    /// Payload bytes of the commands applied since the last snapshot.
    applied_bytes: u64,
    /// The newest durable snapshot (slot, encoded), served to peers that need it.
    pub(crate) latest: Option<(Slot, Bytes)>,
    /// A snapshot of our own is being encoded or saved.
    saving: bool,
    /// A snapshot from a peer being reassembled (bounded; only the leader's).
    pub(crate) receiver: SnapshotReceiver,
    /// A received snapshot, decoded and waiting to be durable before it replaces the store.
    installing: Option<(SnapshotInfo, KvStore)>,
}

impl Snapshots {
    pub(crate) fn new(every_commands: u64, latest: Option<(Slot, Bytes)>) -> Snapshots {
        Snapshots {
            every_commands,
            applied_commands: 0,
            applied_bytes: 0,
            latest,
            saving: false,
            receiver: SnapshotReceiver::new(SNAPSHOT_BYTES_MAX, SNAPSHOT_STALL_TIMEOUT),
            installing: None,
        }
    }

    pub(crate) fn count_applied(&mut self, commands: &[Command]) {
        self.applied_commands += commands.len() as u64;
        self.applied_bytes += commands.iter().map(|c| c.payload.len() as u64).sum::<u64>();
    }

    fn reset_counts(&mut self) {
        self.applied_commands = 0;
        self.applied_bytes = 0;
    }

    /// Whether a snapshot is due: at least `--snapshot-count` commands applied since the
    /// last one, and commands of at least half as many bytes as the last snapshot holds. The
    /// second condition keeps the cost of snapshots proportional to the writes (at most about
    /// two bytes encoded per byte written): each one encodes the whole store, which (without
    /// compaction) holds every revision ever written, so at a fixed command count their cost
    /// per write would grow with the history without bound. It costs at most half a
    /// snapshot's worth of log on top of the snapshot; with the history compacted the store
    /// is small and the command count decides.
    fn due(&self) -> bool {
        let last_bytes = self.latest.as_ref().map_or(0, |(_, d)| d.len() as u64);
        self.applied_commands >= self.every_commands
            && self.applied_bytes >= last_bytes / 2
            && !self.saving
            && self.installing.is_none()
    }
}

impl<W: Waiter> Replica<W> {
    /// Asks the shell for a snapshot at `applied` when one is due. The store is only frozen
    /// here (O(1): its maps are persistent); the shell encodes and writes it off the turn,
    /// then queues `PersistJob::Snapshot`, which reports `snapshot_saved`.
    pub(crate) fn maybe_snapshot(&mut self, applied: Slot) {
        if !self.snapshots.due() {
            return;
        }
        self.snapshots.reset_counts();
        self.snapshots.saving = true;
        self.fx.snapshots.push(SnapshotJob {
            slot: applied,
            info: self.engine.snapshot_info(applied),
            view: self.kv.snapshot_view(),
        });
    }

    /// A copy of the store as of the last applied slot, for a client.
    pub(crate) fn start_export(&mut self, waiter: W) {
        let applied = self.engine.applied_slot();
        self.fx.exports.push(ExportJob {
            slot: applied,
            info: self.engine.snapshot_info(applied),
            view: self.kv.snapshot_view(),
            waiter,
        });
    }

    /// The persist path finished a snapshot job (`saved`: it is durable and the log below it
    /// dropped; else a newer snapshot was already there).
    pub fn snapshot_saved(&mut self, slot: Slot, data: Bytes, received: bool, saved: bool) {
        if !received {
            self.snapshots.saving = false;
            if saved {
                // Durable: the engine may forget what it covers.
                self.engine.compact(slot);
                self.snapshots.latest = Some((slot, data));
                self.observer.count(Count::SnapshotsSaved, 1);
            }
            return;
        }
        let Some((info, kv)) = self.snapshots.installing.take() else {
            return;
        };
        debug_assert_eq!(info.slot, slot);
        if !saved || !self.engine.wants_snapshot(slot) {
            return; // overtaken meanwhile: keep the store we have
        }
        let previous_revision = self.kv.revision();
        self.kv = kv;
        self.watch.store_replaced(previous_revision);
        self.leases_store_replaced();
        let installed = self.engine.install_snapshot(info);
        debug_assert!(installed, "wanted a moment ago, in this same turn");
        let changed = self.admin.on_snapshot(&self.engine);
        self.members_changed(changed);
        self.snapshots.latest = Some((slot, data));
        self.snapshots.reset_counts();
        self.observer.count(Count::SnapshotsInstalled, 1);
        tracing::info!(slot, "installed a snapshot from a peer");
    }

    /// Sends our newest snapshot to a peer that lags behind our compaction point.
    pub(crate) fn send_snapshot(&mut self, peer: NodeId) {
        let Some((slot, data)) = self.snapshots.latest.clone() else {
            return; // nothing compacted without a snapshot, so this does not happen
        };
        let total = data.len() as u64;
        tracing::info!(peer, slot, bytes = total, "sending a snapshot");
        let mut offset = 0;
        while offset < data.len() {
            let end = (offset + self.cfg.snapshot_chunk_bytes.max(1)).min(data.len());
            self.fx.messages.push(Message {
                from: self.engine.id(),
                to: peer,
                body: Body::SnapshotChunk {
                    slot,
                    total,
                    offset: offset as u64,
                    data: data.slice(offset..end),
                },
            });
            offset = end;
        }
    }

    /// Hands a piece of a peer's snapshot to the receiver (the leader's only, memory bounded
    /// and freed with the transfer); once whole and valid, has it made durable (then
    /// `snapshot_saved` installs it).
    pub(crate) fn receive_chunk(&mut self, c: SnapshotChunk, connection: Option<u64>) {
        let leader = self.engine.leader();
        let received = self
            .snapshots
            .receiver
            .receive(c, leader, connection, self.now);
        let Some(inc) = received else {
            return;
        };
        if self.snapshots.installing.is_some() || !self.engine.wants_snapshot(inc.slot) {
            return;
        }
        let data = inc.data;
        let decoded = snapshot_format::decode(&data).and_then(|(info, kv)| {
            if info.slot != inc.slot {
                return Err(snapshot_format::FormatError::SlotMismatch {
                    announced: inc.slot,
                    held: info.slot,
                });
            }
            KvStore::restore(&kv)
                .map(|kv| (info, kv))
                .map_err(snapshot_format::FormatError::Store)
        });
        match decoded {
            Ok((info, kv)) => {
                self.snapshots.installing = Some((info, kv));
                self.fx.persist.push(PersistJob::Snapshot {
                    slot: inc.slot,
                    data,
                    received: true,
                    written: None,
                });
            }
            Err(e) => tracing::warn!(
                from = inc.from,
                slot = inc.slot,
                "bad snapshot from a peer: {e}"
            ),
        }
    }
}
