//! Three engines in one process: in-memory storage that is durable the moment a `Ready` is
//! written to it, and messages delivered by calling `step` on the receiver. Nothing is lost,
//! delayed or reordered, so what remains to measure is the engine's own CPU cost (plus the
//! few queue operations this driver needs).

use std::collections::VecDeque;
use std::fmt;
use synod_paxos::{
    Command, Committed, Config, ConfigError, DurableState, Engine, HardState, LogRecord,
    Membership, Message, NodeId, ProposeError, Ready, Role,
};

/// Ticks allowed for the first election. A randomized election timeout is at most two
/// timeouts, and pre-vote plus phase 1 need a few more; ten timeouts is ample.
const ELECTION_TIMEOUTS_MAX: u64 = 10;

/// Passes of `pump` allowed per tick while electing. Each pass hands every message out; a
/// cluster that still moves after this many is stuck in a loop, which is a bug.
const SETTLE_PASSES_MAX: usize = 10_000;

#[derive(Debug)]
pub enum ClusterError {
    Config(ConfigError),
    NoLeader {
        ticks: u64,
    },
    /// The benchmark only means something with one stable leader: a change means heartbeats
    /// were starved (a tick burst after the process was descheduled) or an engine bug.
    LeaderChanged {
        leader: NodeId,
        node: NodeId,
        role: Role,
    },
    Propose(ProposeError),
    /// The cluster did not settle within `SETTLE_PASSES_MAX` passes.
    NoSettle,
    /// Proposals were outstanding but nothing moved for this long: with instant delivery
    /// and persistence, a lost proposal can only be an engine (or driver) bug.
    Stalled {
        secs: u64,
    },
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterError::Config(e) => write!(f, "{e}"),
            ClusterError::NoLeader { ticks } => write!(f, "no leader elected in {ticks} ticks"),
            ClusterError::LeaderChanged { leader, node, role } => write!(
                f,
                "leadership changed during the run: node {node} is {role:?} while node \
                 {leader} was expected to lead (were heartbeats starved? is the machine \
                 overloaded?)"
            ),
            ClusterError::Propose(e) => write!(f, "proposal refused by the leader: {e}"),
            ClusterError::NoSettle => {
                write!(f, "cluster still busy after {SETTLE_PASSES_MAX} passes")
            }
            ClusterError::Stalled { secs } => write!(
                f,
                "no progress for {secs} s with proposals outstanding (lost proposal?)"
            ),
        }
    }
}

impl std::error::Error for ClusterError {}

/// A replica's "disk": what a durable storage would hold, kept in memory. Records are
/// appended, as an in-memory log store does; the engine has no log compaction yet, so
/// nothing is ever truncated (the values are shared with the engine's own log through
/// `Arc`, so each record adds only its few words of bookkeeping).
#[derive(Debug)]
struct MemStorage {
    hard_state: HardState,
    records: Vec<LogRecord>,
}

impl MemStorage {
    fn new(durable: DurableState) -> MemStorage {
        MemStorage {
            hard_state: durable.hard_state,
            records: durable.records,
        }
    }

    fn write(&mut self, hard_state: Option<HardState>, records: Vec<LogRecord>) {
        if let Some(hard_state) = hard_state {
            self.hard_state = hard_state;
        }
        self.records.extend(records);
    }
}

#[derive(Debug)]
pub struct Cluster {
    /// `engines[i]` is node `i + 1`, and `storage[i]` its storage.
    engines: Vec<Engine>,
    storage: Vec<MemStorage>,
    /// Messages in flight, delivered in send order.
    queue: VecDeque<Message>,
    leader: NodeId,
}

impl Cluster {
    /// Starts `replicas` fresh engines and ticks them until one leads and its election
    /// no-op is chosen (so it serves proposals at once).
    pub fn start(
        replicas: u64,
        config: impl Fn(NodeId) -> Config,
    ) -> Result<Cluster, ClusterError> {
        let members = Membership::new(1..=replicas).ok_or_else(|| {
            ClusterError::Config(ConfigError(format!("cannot form {replicas} replicas")))
        })?;
        let configs: Vec<Config> = (1..=replicas).map(config).collect();
        let timeout_max = configs
            .iter()
            .map(|c| c.election_timeout_ticks)
            .max()
            .unwrap_or(0);
        let engines = configs
            .into_iter()
            .map(|c| Engine::new(c, DurableState::bootstrap(&members)))
            .collect::<Result<Vec<Engine>, ConfigError>>()
            .map_err(ClusterError::Config)?;
        let storage = (1..=replicas)
            .map(|_| MemStorage::new(DurableState::bootstrap(&members)))
            .collect();
        let mut cluster = Cluster {
            engines,
            storage,
            queue: VecDeque::new(),
            leader: 0,
        };
        cluster.leader = cluster.elect(timeout_max * ELECTION_TIMEOUTS_MAX)?;
        Ok(cluster)
    }

    pub fn leader(&self) -> NodeId {
        self.leader
    }

    /// Proposes at the leader (where a real driver sends its clients).
    pub fn propose(&mut self, commands: Vec<Command>) -> Result<(), ClusterError> {
        self.engine_mut(self.leader)
            .propose(commands)
            .map_err(ClusterError::Propose)
    }

    /// Advances every engine's clock by one tick and checks that the leader is unchanged.
    pub fn tick(&mut self) -> Result<(), ClusterError> {
        for engine in &mut self.engines {
            engine.tick();
        }
        self.check_leader()
    }

    /// One pass: takes every engine's `Ready` (persisting instantly, applying what it
    /// committed), then delivers every queued message. `on_leader_apply` sees the slots the
    /// leader applies, in order. Returns whether anything happened.
    pub fn pump(&mut self, on_leader_apply: &mut impl FnMut(&[Committed])) -> bool {
        let mut moved = false;
        for index in 0..self.engines.len() {
            moved |= self.handle_ready(index, on_leader_apply);
        }
        moved |= !self.queue.is_empty();
        while let Some(message) = self.queue.pop_front() {
            // Engines only address members, so a miss would be an engine bug; dropping the
            // message is what a real network would do with it.
            if let Some(engine) = self.engines.get_mut(index_of(message.to)) {
                engine.step(message);
            }
        }
        moved
    }

    fn handle_ready(
        &mut self,
        index: usize,
        on_leader_apply: &mut impl FnMut(&[Committed]),
    ) -> bool {
        let is_leader = index == index_of(self.leader);
        let engine = &mut self.engines[index];
        if !engine.has_ready() {
            return false;
        }
        let Ready {
            persist_seq,
            hard_state,
            records,
            messages,
            messages_after_persist,
            committed,
            ..
        } = engine.ready();
        self.queue.extend(messages);
        // In-memory storage is durable as soon as it is written, so the persist is
        // acknowledged at once and the after-persist messages may leave with the others.
        self.storage[index].write(hard_state, records);
        if let Some(seq) = persist_seq {
            engine.persisted(seq);
        }
        self.queue.extend(messages_after_persist);
        if let Some(last) = committed.last() {
            // Followers apply too (to nothing): the engine tracks applied points everywhere.
            let last = last.slot;
            if is_leader {
                on_leader_apply(&committed);
            }
            engine.applied(last);
        }
        true
    }

    /// Ticks every engine and settles the cluster after each tick until a leader has its
    /// election no-op chosen.
    fn elect(&mut self, ticks_max: u64) -> Result<NodeId, ClusterError> {
        for _ in 0..ticks_max {
            for engine in &mut self.engines {
                engine.tick();
            }
            self.settle()?;
            if let Some(leader) = self.serving_leader() {
                return Ok(leader);
            }
        }
        Err(ClusterError::NoLeader { ticks: ticks_max })
    }

    fn settle(&mut self) -> Result<(), ClusterError> {
        for _ in 0..SETTLE_PASSES_MAX {
            if !self.pump(&mut |_| {}) {
                return Ok(());
            }
        }
        Err(ClusterError::NoSettle)
    }

    /// The leader whose election is complete: slot 1 holds the membership and the new
    /// leader's closing no-op is at least slot 2, so a commit point of 2 or more means it
    /// is chosen.
    fn serving_leader(&self) -> Option<NodeId> {
        self.engines
            .iter()
            .map(Engine::status)
            .find(|s| s.role == Role::Leader && s.commit >= 2)
            .map(|s| s.id)
    }

    fn check_leader(&self) -> Result<(), ClusterError> {
        for engine in &self.engines {
            let status = engine.status();
            let expected = if status.id == self.leader {
                Role::Leader
            } else {
                Role::Follower
            };
            if status.role != expected {
                return Err(ClusterError::LeaderChanged {
                    leader: self.leader,
                    node: status.id,
                    role: status.role,
                });
            }
        }
        Ok(())
    }

    fn engine_mut(&mut self, id: NodeId) -> &mut Engine {
        &mut self.engines[index_of(id)]
    }
}

fn index_of(id: NodeId) -> usize {
    // Node ids are 1..=replicas by construction; 0 maps past the end and is never used.
    (id as usize).wrapping_sub(1)
}
