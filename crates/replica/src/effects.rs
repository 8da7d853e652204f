//! What a turn asks of the shell: messages to send, jobs to make durable, snapshots to encode,
//! reads too large for the turn, answers to deliver, peers to reach.

use crate::error::ReplicaError;
use crate::hashes::HashJob;
use crate::members::MemberTable;
use crate::persist::PersistJob;
use crate::snapshot_format;
use crate::watch::{StreamId, WatchResponse};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::time::Duration;
use synod_kv::{Applied, HashKv, ReadRequest, ReadView, Response, SnapshotView};
use synod_paxos::{Message, NodeId, SharedValue, Slot, SnapshotInfo};

/// A request's outcome.
#[derive(Debug)]
pub enum Answer {
    /// A write, a read or a Txn.
    Kv(Response),
    /// A membership request: the member table that resulted.
    Members(MemberTable),
    /// Leadership moved where it was asked to.
    LeaderMoved,
    /// A consistent copy of the store (Maintenance.Snapshot), encoded by the shell from an
    /// [`ExportJob`].
    Exported { slot: Slot, data: Bytes },
    /// A keep-alive: the lease's granted TTL, or 0 if it does not exist (any more).
    LeaseKeepAlive { id: i64, ttl: i64 },
    /// A time-to-live: remaining TTL (-1 if the lease does not exist), granted TTL, and the
    /// attached keys if asked (sorted).
    LeaseTimeToLive {
        id: i64,
        ttl: i64,
        granted_ttl: i64,
        keys: Vec<Bytes>,
    },
    /// Every lease of this member's store, by id.
    Leases(Vec<i64>),
    /// etcd's HashKV of the store at `revision` (the store's revision, not the one asked).
    HashKv { hash: HashKv, revision: i64 },
    /// Synod's Hash of the store at `revision`.
    Hash { hash: u32, revision: i64 },
}

/// A read too large to run inside a turn (more than [`crate::INLINE_READ_WORK_MAX`] work):
/// the shell runs it elsewhere (the server: on a read worker) and answers `waiter`.
#[derive(Debug)]
pub enum ReadJob<W> {
    /// A Range or read-only Txn over a view frozen when it was due (O(1) to take).
    Read {
        view: ReadView,
        request: ReadRequest,
        waiter: W,
    },
    /// The reads a write Txn left to finish (its writes are applied; `applied.finish()`
    /// computes the answer). Never refused: the write happened.
    Complete { applied: Applied, waiter: W },
}

impl<W: crate::Waiter> ReadJob<W> {
    /// Runs the job here, however long it takes; returns whom to answer and with what, or
    /// `None` if the waiter gave up meanwhile (`Waiter::is_gone`, asked now and then).
    pub fn run(self) -> Option<(W, Result<Response, ReplicaError>)> {
        match self {
            ReadJob::Read {
                view,
                request,
                waiter,
            } => {
                if waiter.is_gone() {
                    return None;
                }
                let result = view.read(&request, &|| waiter.is_gone())?;
                Some((waiter, result.map_err(ReplicaError::from)))
            }
            ReadJob::Complete { applied, waiter } => {
                if waiter.is_gone() {
                    return None;
                }
                let result = applied.complete(&|| waiter.is_gone())?;
                Some((waiter, result.map_err(ReplicaError::from)))
            }
        }
    }
}

/// Encode the store as of `slot` (frozen in `view`) as a snapshot, write it, and hand the
/// persist path `PersistJob::Snapshot { received: false, .. }` for it. May take long (the
/// whole store); the replica goes on meanwhile and takes no other snapshot until
/// `snapshot_saved` reports this one.
#[derive(Debug)]
pub struct SnapshotJob {
    pub slot: Slot,
    pub info: SnapshotInfo,
    pub view: SnapshotView,
}

impl SnapshotJob {
    pub fn encode(&self) -> Bytes {
        snapshot_format::encode_view(&self.info, &self.view)
    }
}

/// Encode the store as of `slot` for a client and answer it with `Answer::Exported`.
#[derive(Debug)]
pub struct ExportJob<W> {
    pub slot: Slot,
    pub info: SnapshotInfo,
    pub view: SnapshotView,
    pub waiter: W,
}

impl<W> ExportJob<W> {
    pub fn encode(&self) -> Bytes {
        snapshot_format::encode_view(&self.info, &self.view)
    }
}

/// Why the replica asks its shell to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// This member was removed from the cluster and the change is in force.
    Removed,
}

/// Everything a turn asks of the shell. Take it with [`crate::Replica::effects`] after
/// [`crate::Replica::end_turn`]; the order to carry it out in is in the crate docs.
#[derive(Debug)]
pub struct Effects<W> {
    /// Send now (they do not depend on anything being durable).
    pub messages: Vec<Message>,
    /// Hand to the persist path, in order.
    pub persist: Vec<PersistJob>,
    pub snapshots: Vec<SnapshotJob>,
    pub exports: Vec<ExportJob<W>>,
    pub reads: Vec<ReadJob<W>>,
    /// Hashes of the whole store (Maintenance.HashKV, Hash), to run like large reads.
    pub hashes: Vec<HashJob<W>>,
    pub answers: Vec<(W, Result<Answer, ReplicaError>)>,
    /// The peers to reach changed (id -> host:port; every peer of this run, removed ones too).
    pub peers: Option<BTreeMap<NodeId, String>>,
    /// The member table changed.
    pub members: Option<MemberTable>,
    pub stop: Option<Stop>,
    /// Responses for watch streams, in order per stream (see [`crate::watch`]); report
    /// them written with `Replica::watch_drained`.
    pub watch: Vec<(StreamId, WatchResponse)>,
}

impl<W> Default for Effects<W> {
    fn default() -> Self {
        Effects {
            messages: Vec::new(),
            persist: Vec::new(),
            snapshots: Vec::new(),
            exports: Vec::new(),
            reads: Vec::new(),
            hashes: Vec::new(),
            answers: Vec::new(),
            peers: None,
            members: None,
            stop: None,
            watch: Vec::new(),
        }
    }
}

impl<W> Effects<W> {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.persist.is_empty()
            && self.snapshots.is_empty()
            && self.exports.is_empty()
            && self.reads.is_empty()
            && self.hashes.is_empty()
            && self.answers.is_empty()
            && self.peers.is_none()
            && self.members.is_none()
            && self.stop.is_none()
            && self.watch.is_empty()
    }
}

/// Events the replica counts, for the shell's metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    ProposalsSubmitted,
    ProposalsFailed,
    ProposalsApplied,
    ReadsSerializable,
    ReadsLinearizable,
    ReadsFailed,
    SlotsCommitted,
    SnapshotsSaved,
    SnapshotsInstalled,
    LeaderChanges,
    ElectionsStarted,
}

/// Where the replica reports what it counts and measures (the server: its metrics). Calls
/// happen inside a turn; they must be cheap.
pub trait Observer: std::fmt::Debug + Send {
    fn count(&self, _what: Count, _n: u64) {}
    /// A write waited this long from arrival to its answer.
    fn proposal_latency(&self, _waited: Duration) {}
    /// A chosen slot held this many commands.
    fn batch_commands(&self, _n: usize) {}
    /// Slot `slot`, holding `value`, is about to be applied (each slot once per start, in
    /// order; slots a snapshot covers are skipped). The simulator checks agreement here.
    fn applied(&self, _slot: Slot, _value: &SharedValue) {}
    /// This leader proposed to expire lease `id` under its lease `epoch` (it takes effect
    /// only if that epoch is still the store's when applied). The simulator checks that no
    /// expiry taking effect was proposed before the lease's TTL passed.
    fn lease_expiry_proposed(&self, _id: i64, _epoch: synod_kv::LeaseEpoch) {}
    /// Lease `id` was revoked in this store (by a client, or an expiry that took effect),
    /// while applying the slot last passed to [`Observer::applied`].
    fn lease_revoked(&self, _id: i64) {}
}

/// Observes nothing.
#[derive(Debug, Default)]
pub struct Unobserved;

impl Observer for Unobserved {}
