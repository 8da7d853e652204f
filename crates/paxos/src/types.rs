//! The protocol's vocabulary: node ids, slots, ballots and the values chosen in slots.

use bytes::Bytes;
use std::fmt;
use std::sync::Arc;

/// A replica's identity. Never reused for a different disk (see docs/PROTOCOL.md).
pub type NodeId = u64;

/// A position in the replicated log; slot 0 is never used, slot 1 holds the initial membership.
pub type Slot = u64;

/// A proposal number. Ballots are totally ordered by `(round, node)`; since every node only
/// uses its own id and never reuses a round (rounds are persisted through the promise), no two
/// proposers ever share a ballot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ballot {
    pub round: u64,
    pub node: NodeId,
}

impl Ballot {
    /// Below every ballot a proposer can use; what a fresh acceptor has promised.
    pub const ZERO: Ballot = Ballot { round: 0, node: 0 };

    pub fn new(round: u64, node: NodeId) -> Ballot {
        Ballot { round, node }
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.round, self.node)
    }
}

/// One client command. `(client_id, seq)` identifies it across retries and leader changes so
/// the state machine can apply it exactly once; the engine itself treats `payload` as opaque.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Command {
    pub client_id: u64,
    pub seq: u64,
    pub payload: Bytes,
}

impl Command {
    pub fn new(client_id: u64, seq: u64, payload: impl Into<Bytes>) -> Command {
        Command {
            client_id,
            seq,
            payload: payload.into(),
        }
    }
}

/// The voting members of the cluster. Kept sorted and free of duplicates so that two
/// replicas holding the same set compare equal and iterate identically (determinism).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Membership {
    voters: Vec<NodeId>,
}

impl Membership {
    /// Returns `None` when `voters` is empty or holds node id 0 (reserved for `Ballot::ZERO`).
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Option<Membership> {
        let mut voters: Vec<NodeId> = voters.into_iter().collect();
        voters.sort_unstable();
        voters.dedup();
        if voters.is_empty() || voters[0] == 0 {
            return None;
        }
        Some(Membership { voters })
    }

    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    pub fn contains(&self, node: NodeId) -> bool {
        self.voters.binary_search(&node).is_ok()
    }

    /// The smallest number of voters any two of which sets intersect: a strict majority.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }
}

/// What a slot holds once chosen.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// Fills a hole found by a new leader; applying it changes nothing.
    Noop,
    /// A batch of client commands, applied in order.
    Commands(Vec<Command>),
    /// A new membership (slot 1 holds the initial one).
    Membership(Membership),
}

impl Value {
    /// Bytes of client payload, for batch limits and metrics.
    pub fn payload_bytes(&self) -> usize {
        match self {
            Value::Commands(commands) => commands.iter().map(|c| c.payload.len()).sum(),
            Value::Noop | Value::Membership(_) => 0,
        }
    }
}

/// Values are shared between the log, in-flight proposals and outgoing messages.
pub type SharedValue = Arc<Value>;
