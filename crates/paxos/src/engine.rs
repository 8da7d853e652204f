//! The engine's public face: inputs, the `Ready` it hands out, and dispatch to the roles
//! (acceptor.rs, election.rs, leader.rs, reads.rs) that hold the protocol.

use crate::config::PlantedBug;
use crate::config::{Config, ConfigError};
use crate::election::Campaign;
use crate::leader::LeaderState;
use crate::log::Log;
use crate::message::{Body, Message};
use crate::outbox::Outbox;
use crate::reads::FollowerReads;
use crate::ready::{
    Committed, DurableState, HardState, ProposeError, ReadId, Ready, Role, SnapshotChunk,
    SnapshotInfo, Status,
};
use crate::recovery::Recovery;
use crate::rng::Rng;
use crate::types::{Ballot, Command, Membership, NodeId, Slot};

/// Why a leadership hand-over was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferError {
    /// Only the leader hands over.
    NotLeader,
    /// The target is not a voter of the newest membership.
    NotAVoter,
}

impl std::fmt::Display for TransferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransferError::NotLeader => write!(f, "not the leader"),
            TransferError::NotAVoter => write!(f, "the target is not a voting member"),
        }
    }
}

impl std::error::Error for TransferError {}

/// What this replica is doing beyond accepting.
#[derive(Debug)]
pub(crate) enum RoleState {
    Follower,
    PreCandidate(Campaign),
    Candidate(Campaign),
    Leader(Box<LeaderState>),
}

/// One replica's Multi-Paxos state machine: acceptor, learner and (when elected) proposer.
#[derive(Debug)]
pub struct Engine {
    pub(crate) cfg: Config,
    pub(crate) id: NodeId,
    pub(crate) rng: Rng,
    /// Ticks since this engine was created; the only notion of time the protocol has.
    pub(crate) now: u64,
    /// The acceptor's promise: it accepts nothing below it. Never decreases.
    pub(crate) promised: Ballot,
    /// The highest round seen in any ballot, so a new campaign outbids everyone it heard of.
    pub(crate) highest_round_seen: u64,
    pub(crate) log: Log,
    /// Slots handed to the driver in `Ready::committed`.
    pub(crate) delivered: Slot,
    /// Slots the driver's state machine has applied.
    pub(crate) applied: Slot,
    pub(crate) role: RoleState,
    /// The leader this replica last heard from (or itself).
    pub(crate) leader: Option<NodeId>,
    /// When a valid leader was last heard. An acceptor refuses to promise a new ballot for
    /// `election_timeout_ticks` after it, which is what leases rely on.
    pub(crate) last_leader_contact: u64,
    pub(crate) election_deadline: u64,
    /// Consecutive failed campaigns; widens the randomized back-off.
    pub(crate) backoff_exp: u32,
    pub(crate) reads: FollowerReads,
    pub(crate) out: Outbox,
    /// When this replica last offered its snapshot to a candidate behind it, per candidate.
    pub(crate) snapshot_offers: std::collections::BTreeMap<NodeId, u64>,
    /// Recovering from a lost log tail (see recovery.rs): no votes until it ends.
    pub(crate) recovery: Option<Recovery>,
}

impl Engine {
    /// Starts a replica from what its disk holds: `DurableState::bootstrap` for a member of
    /// a new cluster, `DurableState::default()` for one joining a running cluster (it was
    /// added to the membership first; it learns the log or a snapshot from the leader and
    /// never campaigns before it knows a membership naming it a voter).
    pub fn new(config: Config, durable: DurableState) -> Result<Engine, ConfigError> {
        config.validate()?;
        let compacted = durable.snapshot.as_ref().map_or(0, |s| s.slot);
        let snapshot_memberships = durable
            .snapshot
            .as_ref()
            .map(|s| s.memberships.clone())
            .unwrap_or_default();
        if durable.snapshot.is_some() && snapshot_memberships.is_empty() {
            return Err(ConfigError("the snapshot names no membership".into()));
        }
        // An acceptor's promise covers every ballot it accepted; if a crash kept a record but
        // not the hard state written beside it, the record's ballot still binds.
        let promised = durable
            .records
            .iter()
            .map(|r| r.ballot)
            .fold(durable.hard_state.promised, Ballot::max);
        let mut log = Log::recover(
            &durable.records,
            durable.hard_state.commit,
            compacted,
            snapshot_memberships,
        );
        if config.bug(PlantedBug::MembershipWithoutDelay) {
            log.plant_membership_delay_bug();
        }
        let id = config.id;
        let mut engine = Engine {
            rng: Rng::new(config.seed ^ 0x5359_4E4F_4400_0000),
            id,
            now: 0,
            promised,
            highest_round_seen: promised.round,
            log,
            // The driver restored its state machine from the snapshot.
            delivered: compacted,
            applied: compacted,
            role: RoleState::Follower,
            leader: None,
            // A restarted acceptor cannot know whom it acknowledged before the crash, so it
            // behaves as if it had just heard a leader: no promises for one election timeout.
            last_leader_contact: 0,
            election_deadline: 0,
            backoff_exp: 0,
            // Drawn from a stream of its own, so election timing does not shift with it.
            reads: FollowerReads::new(Rng::new(config.seed ^ 0x5245_4144_5F49_4453).next_u64()),
            out: Outbox::new(
                id,
                HardState {
                    promised,
                    commit: 0,
                },
            ),
            snapshot_offers: std::collections::BTreeMap::new(),
            recovery: None,
            cfg: config,
        };
        engine.election_deadline = engine.random_election_timeout();
        Ok(engine)
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Proposes a batch of commands. At the leader they are queued and packed into slots at
    /// the next `ready`; at a follower they are forwarded to the leader. `Ok` does not mean
    /// chosen: the caller learns the outcome from `Ready::committed` (or times out, since a
    /// forwarded batch can be lost with its leader).
    pub fn propose(&mut self, commands: Vec<Command>) -> Result<(), ProposeError> {
        if commands.is_empty() {
            return Err(ProposeError::Empty);
        }
        let result = match (&mut self.role, self.leader) {
            (RoleState::Leader(leader), _) => leader.enqueue(commands, &self.cfg),
            (_, Some(leader)) if leader != self.id => {
                self.send(leader, Body::Forward { commands });
                Ok(())
            }
            _ => Err(ProposeError::NoLeader),
        };
        self.process_inbox();
        result
    }

    /// Proposes a new membership (leader only). It is chosen like any value and governs the
    /// slots from `MEMBERSHIP_DELAY_SLOTS` after its own on (the leader fills the gap with
    /// no-ops when idle). One change at a time. Safety holds for any membership; liveness
    /// needs a quorum of the new voters up and caught up, which the driver should check.
    pub fn propose_membership(&mut self, membership: Membership) -> Result<(), ProposeError> {
        if !matches!(self.role, RoleState::Leader(_)) {
            return Err(ProposeError::NotLeader);
        }
        let result = self.enqueue_membership(membership);
        self.process_inbox();
        result
    }

    /// Hands leadership to voter `to` (leader only): once `to` holds every chosen slot, this
    /// leader steps down and tells it to campaign at once. New commands wait meanwhile; if
    /// the hand-over has not happened within an election timeout it is abandoned. The
    /// driver learns the outcome from `status().leader`.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), TransferError> {
        if !matches!(self.role, RoleState::Leader(_)) {
            return Err(TransferError::NotLeader);
        }
        if to == self.id {
            return Ok(());
        }
        let voter = self
            .log
            .memberships()
            .latest()
            .is_some_and(|c| c.membership.is_voter(to));
        if !voter {
            return Err(TransferError::NotAVoter);
        }
        self.begin_transfer(to);
        self.process_inbox();
        Ok(())
    }

    /// At the leader, each peer's chosen prefix as last reported (e.g. to tell whether a
    /// learner has caught up before promoting it); empty elsewhere.
    pub fn peer_progress(&self) -> Vec<(NodeId, Slot)> {
        self.peer_commits()
    }

    /// Asks for a linearizable read point. When `Ready::reads_ready` lists `id`, the local
    /// state machine reflects every write acknowledged before this call.
    pub fn read_barrier(&mut self, id: ReadId) {
        self.start_read(id);
        self.process_inbox();
    }

    /// Handles a message from a peer.
    pub fn step(&mut self, message: Message) {
        if message.to != self.id || message.from == self.id {
            return; // misrouted or forged: never ours to act on
        }
        if message.from == 0 {
            return; // id 0 is reserved: a forged or corrupt message
        }
        // Messages from nodes outside the memberships this replica knows are handled like
        // any other: a replica still replaying an old part of the log must hear a leader
        // that joined later (the simulator found one that never caught up), and Paxos is
        // safe whoever proposes. What a stranger can never do is count: quorums are always
        // counted among the voters of the governing memberships.
        self.handle(message);
        self.process_inbox();
    }

    /// Advances this replica's clock by one tick.
    pub fn tick(&mut self) {
        self.now += 1;
        self.tick_election();
        self.tick_leader();
        self.tick_reads();
        self.tick_recovery();
        self.process_inbox();
    }

    /// Everything in the `Ready`s up to `persist_seq` is durable.
    pub fn persisted(&mut self, persist_seq: u64) {
        self.out.persisted(persist_seq);
        self.process_inbox();
    }

    /// The state machine has applied every delivered slot up to `slot`.
    pub fn applied(&mut self, slot: Slot) {
        assert!(
            slot <= self.delivered,
            "applied({slot}) beyond what was delivered ({})",
            self.delivered
        );
        self.applied = self.applied.max(slot);
        self.release_applied_reads();
        self.try_finish_recovery();
    }

    /// The driver holds a durable snapshot of its state machine covering every slot up to
    /// `upto` (at most what it has applied): the engine forgets those slots. A peer that
    /// later needs them is listed in `Ready::send_snapshot`.
    pub fn compact(&mut self, upto: Slot) {
        assert!(
            upto <= self.applied,
            "compact({upto}) beyond what the state machine applied ({})",
            self.applied
        );
        self.log.compact(upto);
    }

    /// Whether a snapshot covering `1..=slot` from a peer would move this replica forward
    /// (it is ahead of everything known chosen here). Ask before replacing the state
    /// machine with it.
    pub fn wants_snapshot(&self, slot: Slot) -> bool {
        slot > self.log.commit()
    }

    /// The driver has made a snapshot received from a peer durable and restored its state
    /// machine from it: every slot up to `snapshot.slot` is chosen and applied. Returns false
    /// (and changes nothing) if the snapshot is not ahead of this replica; the driver must
    /// then not have replaced its state machine (see [`Engine::wants_snapshot`]).
    pub fn install_snapshot(&mut self, snapshot: SnapshotInfo) -> bool {
        if !self.wants_snapshot(snapshot.slot) {
            return false;
        }
        if !matches!(self.role, RoleState::Follower) {
            // Anyone holding a newer chosen prefix outranks our campaign or leadership.
            self.step_down();
        }
        self.log
            .install_snapshot(snapshot.slot, snapshot.memberships);
        self.delivered = snapshot.slot;
        self.applied = snapshot.slot;
        self.release_applied_reads();
        self.process_inbox();
        true
    }

    pub fn has_ready(&self) -> bool {
        self.out.has_output(self.hard_state())
            || self.log.commit() > self.delivered
            || matches!(&self.role, RoleState::Leader(l)
                if l.round_wanted || l.can_pack(&self.log, &self.cfg, self.id))
    }

    /// Takes everything the driver must do now. See [`Ready`] for the contract.
    pub fn ready(&mut self) -> Ready {
        self.pack_proposals();
        if matches!(&self.role, RoleState::Leader(l) if l.round_wanted) {
            self.start_round(); // one round confirms every read that arrived since the last
        }
        self.broadcast_commit_if_moved();
        self.process_inbox();
        let mut ready = Ready::default();
        let commit = self.log.commit();
        while self.delivered < commit {
            let slot = self.delivered + 1;
            let entry = self.log.get(slot).expect("every slot up to commit is held");
            ready.committed.push(Committed {
                slot,
                value: entry.value.clone(),
            });
            self.delivered = slot;
        }
        let hard_state = self.hard_state();
        self.out.drain_into(&mut ready, hard_state);
        self.close_read_request();
        ready
    }

    pub fn status(&self) -> Status {
        Status {
            id: self.id,
            role: self.role(),
            leader: self.leader,
            promised: self.promised,
            commit: self.log.commit(),
            applied: self.applied,
            compacted: self.log.compacted(),
            members: self.members().cloned(),
            lease_held: self.lease_held(),
            retired: self.retired(),
            recovery: self.recovery_phase(),
        }
    }

    // Single fields of [`Status`], for callers that ask every turn: `status()` clones the
    // membership.

    /// This replica's role.
    pub fn role(&self) -> Role {
        match self.role {
            RoleState::Follower => Role::Follower,
            RoleState::PreCandidate(_) => Role::PreCandidate,
            RoleState::Candidate(_) => Role::Candidate,
            RoleState::Leader(_) => Role::Leader,
        }
    }

    /// The leader this replica last heard from (itself while leading), if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The ballot this replica leads with: `Some` from the moment its phase 1 succeeds (role
    /// [`Role::Leader`]) until it steps down, `None` otherwise. A leader keeps one ballot for
    /// its whole tenure and no other tenure has it, so the value names the tenure. A command proposed while it is `Some` is packed after the election's closing
    /// no-op, so once that command is applied everything chosen before the tenure is too.
    pub fn leader_ballot(&self) -> Option<Ballot> {
        match &self.role {
            RoleState::Leader(l) => Some(l.ballot),
            _ => None,
        }
    }

    /// The highest slot known chosen with every slot below it.
    pub fn commit(&self) -> Slot {
        self.log.commit()
    }

    /// The highest slot the state machine has applied (reported through [`Engine::applied`]).
    pub fn applied_slot(&self) -> Slot {
        self.applied
    }

    /// The newest chosen membership; `None` while a joining replica has not learned any.
    pub fn members(&self) -> Option<&Membership> {
        self.log.memberships().latest().map(|c| &c.membership)
    }

    pub(crate) fn hard_state(&self) -> HardState {
        HardState {
            promised: self.promised,
            commit: self.log.commit(),
        }
    }

    pub(crate) fn send(&mut self, to: NodeId, body: Body) {
        self.out.send(Message {
            from: self.id,
            to,
            body,
        });
    }

    pub(crate) fn send_after_persist(&mut self, to: NodeId, body: Body) {
        self.out.send_after_persist(Message {
            from: self.id,
            to,
            body,
        });
    }

    /// Sends to every voter and learner of the memberships governing open slots, and to
    /// this replica (its own acceptor answers through the inbox like any other, so one code
    /// path handles all votes; a leader that was removed still stores what it proposes,
    /// though its vote no longer counts).
    pub(crate) fn broadcast(&mut self, body: Body) {
        let mut members = self.active_members(true);
        if !members.contains(&self.id) {
            members.push(self.id);
        }
        for to in members {
            self.send(to, body.clone());
        }
    }

    /// The voters (and with `learners`, the learners) of every membership governing a slot
    /// above the commit point, sorted, each once.
    pub(crate) fn active_members(&self, learners: bool) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = Vec::new();
        for m in self.log.memberships().governing_from(self.log.commit() + 1) {
            nodes.extend(m.voters());
            if learners {
                nodes.extend(m.learners());
            }
        }
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }

    /// The memberships governing slots above the commit point. Anything that must hold for
    /// "the cluster from now on" (a lease, a read's confirmation, check-quorum, a pre-vote)
    /// needs a quorum in each.
    pub(crate) fn active_memberships(&self) -> impl Iterator<Item = &Membership> + '_ {
        self.log.memberships().governing_from(self.log.commit() + 1)
    }

    /// Whether `nodes` hold a quorum of every active membership.
    pub(crate) fn is_active_quorum(&self, nodes: &[NodeId]) -> bool {
        self.active_memberships().all(|m| m.is_quorum(nodes))
    }

    /// Whether this replica may campaign: a voter of the newest chosen membership, or,
    /// while no slot that membership governs is chosen yet, a voter of the one governing
    /// the commit point (a removed member may have to lead the new voters, say new ones
    /// with empty disks, through the change; it hands over once they caught up).
    pub(crate) fn may_campaign(&self) -> bool {
        let memberships = self.log.memberships();
        let commit = self.log.commit();
        let transition = memberships
            .latest()
            .is_some_and(|c| memberships.effective_slot(c.slot) > commit);
        if self.is_recovering() {
            return false; // no votes of its own until it recovered what it may have cast
        }
        self.is_voter()
            || (transition
                && memberships
                    .for_slot(commit)
                    .is_some_and(|m| m.is_voter(self.id)))
    }

    /// Whether this replica is a voter of the newest chosen membership.
    pub(crate) fn is_voter(&self) -> bool {
        self.log
            .memberships()
            .latest()
            .is_some_and(|c| c.membership.is_voter(self.id))
    }

    /// Whether this replica was removed and is no longer needed, so its process may stop:
    /// the newest membership leaves it out and a slot it governs is known chosen. A leader
    /// proposes the first slot a membership governs only once a quorum of its voters holds
    /// every slot before it (`LeaderState::window_end`), so from then on no candidate needs
    /// the old voters' promises; leaders keep removed members up to date until they see it.
    /// The driver must also know this replica was a member before: a replica that joined
    /// later sees memberships without it while it replays the log (the simulator checks
    /// that it was ever a member, the server that its member table lists it as removed).
    pub fn retired(&self) -> bool {
        let Some(latest) = self.log.memberships().latest() else {
            return false;
        };
        !latest.membership.is_member(self.id)
            && self.log.memberships().effective_slot(latest.slot) <= self.log.commit()
            && !matches!(self.role, RoleState::Leader(_))
    }

    /// What a snapshot of the state machine covering `1..=slot` must carry for the engine;
    /// `slot` must be between the compaction point and what was applied.
    pub fn snapshot_info(&self, slot: Slot) -> SnapshotInfo {
        assert!(
            slot >= self.log.compacted() && slot <= self.applied,
            "snapshot_info({slot}) outside {}..={}",
            self.log.compacted(),
            self.applied
        );
        SnapshotInfo {
            slot,
            memberships: self.log.memberships().for_snapshot(slot),
        }
    }

    pub(crate) fn note_round(&mut self, ballot: Ballot) {
        self.highest_round_seen = self.highest_round_seen.max(ballot.round);
    }

    /// Raises the promise. Promises only ever grow; the new one reaches disk before any
    /// message that depends on it (see `Outbox::drain_into`).
    pub(crate) fn raise_promise(&mut self, ballot: Ballot) {
        assert!(
            ballot >= self.promised,
            "promise would decrease from {} to {ballot}",
            self.promised
        );
        self.promised = ballot;
        self.note_round(ballot);
    }

    pub(crate) fn process_inbox(&mut self) {
        // Bounded: each self-message handles in O(1) rounds of new self-messages (a Prepare
        // yields a Promise, an Accept an Accepted), never a cycle.
        while let Some(message) = self.out.self_inbox.pop_front() {
            self.handle(message);
        }
        self.try_finish_recovery();
    }

    fn handle(&mut self, message: Message) {
        let from = message.from;
        match message.body {
            Body::PreVote { ballot, commit } => self.on_pre_vote(from, ballot, commit),
            Body::PreVoteReply { ballot, granted } => self.on_pre_vote_reply(from, ballot, granted),
            Body::Prepare {
                ballot,
                first_slot,
                transfer_from,
            } => self.on_prepare(from, ballot, first_slot, transfer_from),
            Body::TimeoutNow { ballot } => self.on_timeout_now(from, ballot),
            Body::Promise {
                ballot,
                first_slot,
                accepted,
            } => self.on_promise(from, ballot, first_slot, accepted),
            Body::Accept {
                ballot,
                first_slot,
                values,
                commit,
            } => self.on_accept(from, ballot, first_slot, values, commit),
            Body::Accepted {
                ballot,
                first_slot,
                last_slot,
                commit,
            } => self.on_accepted(from, ballot, first_slot, last_slot, commit),
            Body::Nack { rejected, promised } => self.on_nack(from, rejected, promised),
            Body::Heartbeat {
                ballot,
                commit,
                round,
            } => self.on_heartbeat(from, ballot, commit, round),
            Body::HeartbeatReply {
                ballot,
                round,
                commit,
            } => self.on_heartbeat_reply(from, ballot, round, commit),
            Body::Commit { ballot, commit } => self.on_commit(from, ballot, commit),
            Body::Learn { first_slot, values } => self.on_learn(from, first_slot, values),
            Body::LearnReply { commit } => self.on_learn_reply(from, commit),
            Body::Forward { commands } => self.on_forward(commands),
            Body::ReadIndex { request } => self.on_read_index(from, request),
            Body::ReadIndexReply {
                request,
                read_index,
            } => self.on_read_index_reply(request, read_index),
            Body::RecoveryQuery { nonce } => self.on_recovery_query(from, nonce),
            Body::RecoveryReply {
                nonce,
                promised,
                voters,
                leader,
            } => self.on_recovery_reply(from, nonce, promised, voters, leader),
            Body::SnapshotChunk {
                slot,
                total,
                offset,
                data,
            } => {
                // Only worth reassembling if it would move this replica forward.
                if self.wants_snapshot(slot) {
                    self.out.snapshot_chunks.push(SnapshotChunk {
                        from,
                        slot,
                        total,
                        offset,
                        data,
                    });
                }
            }
            Body::App { data } => self.on_app(from, data),
        }
    }
}
