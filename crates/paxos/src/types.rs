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

/// How many slots after the one that chose it a membership starts to govern (Lamport's
/// alpha): a membership chosen in slot `m` decides the quorums of slots `m + alpha` on. A
/// leader proposes slot `s` only once it knows every slot up to `s - alpha` chosen, so every
/// leader that proposes a slot agrees on the membership that decides it (docs/PROTOCOL.md,
/// "Membership changes"). Slot 1's initial membership governs from slot 2. A protocol
/// constant: every replica must use the same one.
pub const MEMBERSHIP_DELAY_SLOTS: Slot = 128;

/// The first slot a membership chosen in `slot` governs.
pub fn membership_effective_slot(slot: Slot) -> Slot {
    if slot <= 1 {
        2
    } else {
        slot + MEMBERSHIP_DELAY_SLOTS
    }
}

/// The members of the cluster: voters (acceptors whose votes make quorums) and learners
/// (replicas that receive and store every value but do not vote, e.g. a new member catching
/// up before its promotion), plus an opaque `context` the driver attaches (Synod's server
/// keeps member names and URLs there). Kept sorted and free of duplicates so that two
/// replicas holding the same set compare equal and iterate identically (determinism).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Membership {
    voters: Vec<NodeId>,
    learners: Vec<NodeId>,
    context: Bytes,
}

impl Membership {
    /// Returns `None` when `voters` is empty or holds node id 0 (reserved for `Ballot::ZERO`).
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Option<Membership> {
        Membership::with_learners(voters, [], Bytes::new())
    }

    /// Returns `None` when `voters` is empty, an id is 0, or a node is both voter and learner.
    pub fn with_learners(
        voters: impl IntoIterator<Item = NodeId>,
        learners: impl IntoIterator<Item = NodeId>,
        context: Bytes,
    ) -> Option<Membership> {
        let mut voters: Vec<NodeId> = voters.into_iter().collect();
        voters.sort_unstable();
        voters.dedup();
        let mut learners: Vec<NodeId> = learners.into_iter().collect();
        learners.sort_unstable();
        learners.dedup();
        if voters.is_empty() || voters[0] == 0 || learners.first() == Some(&0) {
            return None;
        }
        if learners.iter().any(|l| voters.binary_search(l).is_ok()) {
            return None;
        }
        Some(Membership {
            voters,
            learners,
            context,
        })
    }

    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    pub fn learners(&self) -> &[NodeId] {
        &self.learners
    }

    /// The driver's data attached to this membership (opaque to the engine).
    pub fn context(&self) -> &Bytes {
        &self.context
    }

    /// Whether `node` is a voter.
    pub fn is_voter(&self, node: NodeId) -> bool {
        self.voters.binary_search(&node).is_ok()
    }

    /// Whether `node` is a voter or a learner.
    pub fn is_member(&self, node: NodeId) -> bool {
        self.is_voter(node) || self.learners.binary_search(&node).is_ok()
    }

    /// Voters and learners, voters first.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }

    /// The smallest number of voters any two of which sets intersect: a strict majority.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Whether the voters among `nodes` make a quorum (non-voters are not counted).
    pub fn is_quorum<'a>(&self, nodes: impl IntoIterator<Item = &'a NodeId>) -> bool {
        nodes.into_iter().filter(|&&n| self.is_voter(n)).count() >= self.quorum()
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
