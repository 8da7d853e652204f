//! Messages between replicas. Every message names the ballot it speaks for, so a stale one
//! (from a deposed leader or an abandoned election) is recognised and answered or ignored.

use crate::types::{Ballot, Command, NodeId, SharedValue, Slot};
use bytes::Bytes;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub body: Body,
}

/// An acceptor's record of one slot, as reported in a promise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromisedSlot {
    pub slot: Slot,
    /// The ballot under which the acceptor accepted `value`.
    pub ballot: Ballot,
    pub value: SharedValue,
    /// The acceptor knows `value` is chosen (learned from a leader), not merely accepted.
    pub chosen: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// "Would you promise `ballot` if I asked?" Changes no state; stops a node that was only
    /// cut off from disrupting a live leader when it comes back (pre-vote).
    PreVote {
        ballot: Ballot,
        commit: Slot,
    },
    PreVoteReply {
        ballot: Ballot,
        granted: bool,
    },
    /// Phase 1a for every slot from `first_slot` on. `transfer_from`: the leader whose
    /// ballot this was handed over from (`TimeoutNow`); an acceptor still following that
    /// ballot may promise at once, since that leader gave up its lease when it handed over.
    Prepare {
        ballot: Ballot,
        first_slot: Slot,
        transfer_from: Option<Ballot>,
    },
    /// The leader of `ballot` hands leadership to the receiver, which is caught up: start
    /// phase 1 now, without a pre-vote or waiting for an election timeout.
    TimeoutNow {
        ballot: Ballot,
    },
    /// Phase 1b: the acceptor's promise and every slot it holds from `first_slot` on.
    Promise {
        ballot: Ballot,
        first_slot: Slot,
        accepted: Vec<PromisedSlot>,
    },
    /// Phase 2a for the consecutive slots `first_slot..first_slot + values.len()`, plus the
    /// leader's commit point.
    Accept {
        ballot: Ballot,
        first_slot: Slot,
        values: Vec<SharedValue>,
        commit: Slot,
    },
    /// Phase 2b for the slots `first_slot..=last_slot`; `commit` is the acceptor's own
    /// chosen prefix so the leader knows what it must catch up.
    Accepted {
        ballot: Ballot,
        first_slot: Slot,
        last_slot: Slot,
        commit: Slot,
    },
    /// The acceptor has promised `promised`, above the `rejected` ballot.
    Nack {
        rejected: Ballot,
        promised: Ballot,
    },
    /// Leadership, commit point and a round number for leases and read barriers.
    Heartbeat {
        ballot: Ballot,
        commit: Slot,
        round: u64,
    },
    HeartbeatReply {
        ballot: Ballot,
        round: u64,
        commit: Slot,
    },
    /// The leader's commit point moved and no Accept carried it; no reply.
    Commit {
        ballot: Ballot,
        commit: Slot,
    },
    /// Chosen values for consecutive slots from `first_slot`, for a replica that lags.
    Learn {
        first_slot: Slot,
        values: Vec<SharedValue>,
    },
    LearnReply {
        commit: Slot,
    },
    /// Commands a follower received from clients, for the leader to propose.
    Forward {
        commands: Vec<Command>,
    },
    /// A follower asks the leader for a safe read point.
    ReadIndex {
        request: u64,
    },
    /// `read_index: None` means the leader could not confirm (it is no longer leader).
    ReadIndexReply {
        request: u64,
        read_index: Option<Slot>,
    },
    /// A replica whose durable state may be shorter than what it acknowledged (its log's
    /// synced tail was lost or damaged) asks what it may have promised and accepted. Only
    /// replicas that are not recovering themselves answer. See recovery.rs.
    RecoveryQuery {
        nonce: u64,
    },
    /// `promised`: the answering acceptor's promise. `voters`: the voters of the newest
    /// membership it knows chosen (the recovering replica may have lost newer ones).
    /// `leader`: the answering replica's ballot and frontier (the highest slot it proposed or
    /// holds) when it is the leader.
    RecoveryReply {
        nonce: u64,
        promised: Ballot,
        voters: Vec<NodeId>,
        leader: Option<(Ballot, Slot)>,
    },
    /// A piece of a state-machine snapshot covering slots `1..=slot`, whose encoding is
    /// `total` bytes long; this piece starts at byte `offset`. Drivers send these (for
    /// `Ready::send_snapshot`) and reassemble them (from `Ready::snapshot_chunks`); the
    /// engine only carries them, so snapshots share the peer connections and their codec.
    SnapshotChunk {
        slot: Slot,
        total: u64,
        offset: u64,
        data: Bytes,
    },
    /// Opaque bytes from one replica's driver to another's, for what the drivers coordinate
    /// outside the log (say, forwarding a request only the leader can answer). The engine
    /// only carries them, so they share the peer connections and their codec. At most
    /// [`crate::APP_DATA_BYTES_MAX`] bytes: send them with [`crate::Engine::send_app`], which
    /// checks that; the codec refuses a longer one.
    App {
        data: Bytes,
    },
}

impl Body {
    /// A short name, for traces and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::PreVote { .. } => "PreVote",
            Body::PreVoteReply { .. } => "PreVoteReply",
            Body::Prepare { .. } => "Prepare",
            Body::Promise { .. } => "Promise",
            Body::TimeoutNow { .. } => "TimeoutNow",
            Body::Accept { .. } => "Accept",
            Body::Accepted { .. } => "Accepted",
            Body::Nack { .. } => "Nack",
            Body::Heartbeat { .. } => "Heartbeat",
            Body::HeartbeatReply { .. } => "HeartbeatReply",
            Body::Commit { .. } => "Commit",
            Body::Learn { .. } => "Learn",
            Body::LearnReply { .. } => "LearnReply",
            Body::Forward { .. } => "Forward",
            Body::ReadIndex { .. } => "ReadIndex",
            Body::ReadIndexReply { .. } => "ReadIndexReply",
            Body::SnapshotChunk { .. } => "SnapshotChunk",
            Body::RecoveryQuery { .. } => "RecoveryQuery",
            Body::RecoveryReply { .. } => "RecoveryReply",
            Body::App { .. } => "App",
        }
    }
}
