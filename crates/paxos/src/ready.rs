//! What the engine hands its driver, and what the driver hands back after a restart.

use crate::memberships::MembershipChange;
use crate::message::Message;
use crate::types::{Ballot, Membership, NodeId, SharedValue, Slot, Value};
use std::fmt;
use std::sync::Arc;

/// Identifies a read barrier; chosen by the caller.
pub type ReadId = u64;

/// The acceptor's promise and the replica's known-chosen prefix. `promised` must never go
/// backwards on disk; `commit` may lag (it is relearned from the leader) but never run ahead
/// of the entries written before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub promised: Ballot,
    pub commit: Slot,
}

/// One slot as the acceptor holds it: the value accepted under `ballot`, or (`chosen`) a value
/// learned to be chosen. A later record for the same slot replaces an earlier one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub slot: Slot,
    pub ballot: Ballot,
    pub value: SharedValue,
    pub chosen: bool,
}

/// A snapshot of the state machine that stands for slots `1..=slot`, and the memberships
/// chosen at or below `slot` that govern slots after it (the engine needs them: the entries
/// that held them are gone). Get one from [`crate::Engine::snapshot_info`]; store it with the
/// snapshot ([`crate::codec::encode_snapshot_info`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub slot: Slot,
    /// Oldest first; never empty.
    pub memberships: Vec<MembershipChange>,
}

impl SnapshotInfo {
    /// The newest membership (the one that governs new slots).
    pub fn membership(&self) -> &Membership {
        &self
            .memberships
            .last()
            .expect("a snapshot carries at least one membership")
            .membership
    }
}

/// Everything a replica recovers from its disk: the newest snapshot (the driver restores
/// its state machine from it before starting the engine), the latest hard state and, per
/// slot above the snapshot, the latest record (in slot order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DurableState {
    pub hard_state: HardState,
    pub records: Vec<LogRecord>,
    pub snapshot: Option<SnapshotInfo>,
}

impl DurableState {
    /// The state every member of a new cluster starts from: slot 1 holds the initial
    /// membership, chosen by construction because every member is given the same one.
    pub fn bootstrap(members: &Membership) -> DurableState {
        DurableState {
            hard_state: HardState {
                promised: Ballot::ZERO,
                commit: 1,
            },
            records: vec![LogRecord {
                slot: 1,
                ballot: Ballot::ZERO,
                value: Arc::new(Value::Membership(members.clone())),
                chosen: true,
            }],
            snapshot: None,
        }
    }
}

/// A chosen slot, delivered to the driver exactly once per engine instance and in slot order.
/// A restarted engine delivers again from slot 1: the state machine is rebuilt from the log
/// (snapshots, which let it resume from an applied point, come with log compaction).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub slot: Slot,
    pub value: SharedValue,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// No leader is known, or the leader lost its leadership before confirming.
    NoLeader,
    /// Too many reads are waiting.
    Busy,
    /// The leader did not answer in time.
    Timeout,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposeError {
    /// No leader is known to forward to; `leader` is a hint when one was known recently.
    NoLeader,
    /// The leader's queue is full; retry later.
    Busy,
    /// An empty batch.
    Empty,
    /// Membership changes go to the leader only; this replica is not it.
    NotLeader,
    /// A membership change is under way (asked for, in flight, or chosen and not yet in
    /// force); one at a time.
    MembershipChanging,
}

impl fmt::Display for ProposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProposeError::NoLeader => write!(f, "no leader"),
            ProposeError::Busy => write!(f, "too many pending proposals"),
            ProposeError::Empty => write!(f, "empty proposal"),
            ProposeError::NotLeader => write!(f, "not the leader"),
            ProposeError::MembershipChanging => {
                write!(f, "another membership change is in progress")
            }
        }
    }
}

impl std::error::Error for ProposeError {}

/// The output of the engine since the last [`crate::Engine::ready`]. The driver must:
/// 1. write `hard_state` and `records` durably (in order, after every earlier `Ready`'s),
///    sending `messages` meanwhile (they do not depend on the write);
/// 2. once durable, send `messages_after_persist` and call `persisted(persist_seq)`;
/// 3. apply `committed` in order and call `applied`;
/// 4. serve each read in `reads_ready` from the state machine once it has applied
///    `read_index` (the engine only reports them once `applied` says so).
#[derive(Debug, Default)]
pub struct Ready {
    /// `Some(seq)`: call `persisted(seq)` when everything up to this `Ready` is durable.
    pub persist_seq: Option<u64>,
    pub hard_state: Option<HardState>,
    pub records: Vec<LogRecord>,
    pub messages: Vec<Message>,
    pub messages_after_persist: Vec<Message>,
    pub committed: Vec<Committed>,
    pub reads_ready: Vec<ReadId>,
    pub reads_failed: Vec<(ReadId, ReadError)>,
    /// Peers that lag behind this replica's compaction point: the log entries they need are
    /// gone, so send each the latest snapshot (out of band, in chunks); the receiver's driver
    /// restores it and calls [`crate::Engine::install_snapshot`].
    pub send_snapshot: Vec<NodeId>,
    /// Snapshot pieces peers sent (see `Body::SnapshotChunk`), for the driver to reassemble.
    pub snapshot_chunks: Vec<SnapshotChunk>,
    /// Application messages peers (or this replica) sent with [`crate::Engine::send_app`],
    /// in the order they arrived.
    pub app_messages: Vec<AppMessage>,
}

/// A piece of a peer's snapshot, as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunk {
    pub from: NodeId,
    pub slot: Slot,
    pub total: u64,
    pub offset: u64,
    pub data: bytes::Bytes,
}

/// An application message (`Body::App`), as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppMessage {
    pub from: NodeId,
    pub data: bytes::Bytes,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.persist_seq.is_none()
            && self.messages.is_empty()
            && self.committed.is_empty()
            && self.reads_ready.is_empty()
            && self.reads_failed.is_empty()
            && self.send_snapshot.is_empty()
            && self.snapshot_chunks.is_empty()
            && self.app_messages.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    /// Asking peers whether they would promise (pre-vote); no state changed yet.
    PreCandidate,
    /// Phase 1 in progress.
    Candidate,
    Leader,
}

/// A snapshot of the engine's state, for metrics, logs and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    pub leader: Option<NodeId>,
    pub promised: Ballot,
    pub commit: Slot,
    pub applied: Slot,
    /// Slots up to here are covered by a snapshot and no longer held.
    pub compacted: Slot,
    /// The newest chosen membership (it governs new slots once in force); `None` while a
    /// joining replica has not learned any.
    pub members: Option<Membership>,
    /// The leader holds a read lease right now.
    pub lease_held: bool,
    /// Removed from the cluster and no longer needed: the process may stop (see
    /// [`crate::Engine::retired`]).
    pub retired: bool,
    /// Recovering from a lost log tail: this replica does not vote until it ends (see
    /// [`crate::Engine::start_peer_recovery`]).
    pub recovery: Option<crate::recovery::RecoveryPhase>,
}
