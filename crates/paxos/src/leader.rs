//! The distinguished proposer: phase 2 only, a bounded window of slots in flight, commands
//! batched into slots, commit point propagation, heartbeat rounds (check-quorum, leases and
//! read barriers) and catch-up of lagging replicas.

use crate::config::Config;
use crate::engine::{Engine, RoleState};
use crate::log::Log;
use crate::message::Body;
use crate::reads::PendingRead;
use crate::ready::ProposeError;
use crate::types::{
    Ballot, Command, Membership, NodeId, SharedValue, Slot, Value, MEMBERSHIP_DELAY_SLOTS,
};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// A slot proposed under this leader's ballot and not yet known chosen.
#[derive(Debug)]
pub(crate) struct Proposal {
    pub(crate) value: SharedValue,
    /// Voters whose Accepted arrived (this leader's own only once its write is durable).
    votes: Vec<NodeId>,
    /// When the Accept was last sent, for retransmission.
    sent_tick: u64,
}

/// What the leader knows of one peer.
#[derive(Debug, Default)]
pub(crate) struct Peer {
    /// The peer's chosen prefix, as it last reported.
    commit: Slot,
    /// The newest heartbeat round it acknowledged.
    acked_round: u64,
    /// When catch-up was last sent, and the last slot it carried: the next batch goes when
    /// a reply shows that slot reached (or, if something was lost, a heartbeat interval on).
    learn_sent_tick: Option<u64>,
    learn_sent_upto: Slot,
    /// Catch-up goes on until the peer's commit point reaches this slot.
    learn_target: Slot,
    /// When the driver was last asked to send this peer a snapshot: a transfer takes a
    /// while, so it is asked again only after an election timeout.
    snapshot_sent_tick: Option<u64>,
}

/// Commit points sent with recent heartbeat rounds, kept so a reply can be judged against
/// what its round told the peer (a reply showing a commit point below the current one is
/// normal under load; below the one its own heartbeat carried means the peer has a gap).
const ROUND_COMMITS_MAX: usize = 64;

/// Catch-up chunks (`Config::catchup_slots_max` slots and `catchup_bytes_max` bytes each)
/// sent per batch: what a far-behind replica learns per round trip.
pub const LEARN_CHUNKS_PER_BATCH: usize = 4;

/// Most bytes a varint takes.
const VARINT_BYTES_MAX: usize = 10;

/// An upper bound on the bytes `value` takes encoded (`codec::put_value`): its payloads plus
/// the largest varints around them. Messages are split by it, so they are never encoded just
/// to be measured.
pub(crate) fn value_wire_bytes(value: &Value) -> usize {
    match value {
        Value::Noop => 1,
        Value::Commands(commands) => {
            1 + VARINT_BYTES_MAX
                + commands
                    .iter()
                    .map(|c| 3 * VARINT_BYTES_MAX + c.payload.len())
                    .sum::<usize>()
        }
        Value::Membership(m) => {
            1 + 3 * VARINT_BYTES_MAX
                + (m.voters().len() + m.learners().len()) * VARINT_BYTES_MAX
                + m.context().len()
        }
    }
}

/// Cuts values for consecutive slots from `first` into runs of at most `slots_max` values
/// and `bytes_max` bytes (`value_wire_bytes`; a larger value goes alone), at most `runs_max`
/// runs: one message each. A message that does not fit the transport's frame is dropped,
/// and whatever was in it would be resent, and dropped, forever.
fn runs_by_bytes(
    first: Slot,
    values: impl IntoIterator<Item = SharedValue>,
    slots_max: u64,
    bytes_max: usize,
    runs_max: usize,
) -> Vec<(Slot, Vec<SharedValue>)> {
    let mut runs: Vec<(Slot, Vec<SharedValue>)> = Vec::new();
    let (mut next, mut bytes) = (first, 0);
    for value in values {
        let size = value_wire_bytes(&value);
        let fits = runs
            .last()
            .is_some_and(|(_, run)| (run.len() as u64) < slots_max && bytes + size <= bytes_max);
        if !fits {
            if runs.len() == runs_max {
                break;
            }
            runs.push((next, Vec::new()));
            bytes = 0;
        }
        let (_, run) = runs.last_mut().expect("pushed above");
        run.push(value);
        bytes += size;
        next += 1;
    }
    runs
}

/// A leadership hand-over in progress: to whom, and until when it is tried.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transfer {
    to: NodeId,
    deadline: u64,
}

#[derive(Debug)]
pub(crate) struct LeaderState {
    pub(crate) ballot: Ballot,
    next_slot: Slot,
    proposals: BTreeMap<Slot, Proposal>,
    /// Values phase 1 recovered (and the closing no-op) not yet proposed: they wait for the
    /// window like new ones (see `window_end`).
    recovered: VecDeque<SharedValue>,
    /// A membership change asked for and not yet packed into a slot.
    pending_membership: Option<Membership>,
    /// One past the first slot governed by the newest membership this leader proposed or
    /// knows chosen: it fills slots up to there with no-ops when idle, so a change takes
    /// force without waiting for client traffic.
    pad_until: Slot,
    transfer: Option<Transfer>,
    pending: VecDeque<Command>,
    /// The election's closing no-op: reads wait until it is chosen, when this leader knows
    /// every value chosen before it.
    pub(crate) serving_from: Slot,
    peers: BTreeMap<NodeId, Peer>,
    /// The newest heartbeat round sent, and the rounds awaiting a quorum with send times.
    pub(crate) round: u64,
    rounds: VecDeque<(u64, u64)>,
    /// `(round, commit point it carried)`, newest last, at most `ROUND_COMMITS_MAX`.
    round_commits: VecDeque<(u64, Slot)>,
    pub(crate) confirmed_round: u64,
    /// Send time of the newest round a quorum acknowledged (check-quorum measures from it).
    confirmed_sent_tick: u64,
    /// The lease lasts until this tick (exclusive).
    pub(crate) lease_until: u64,
    last_round_tick: u64,
    /// A read is waiting for a round that has not been sent yet.
    pub(crate) round_wanted: bool,
    /// The commit point last sent to followers.
    commit_sent: Slot,
    pub(crate) reads: Vec<PendingRead>,
}

impl LeaderState {
    pub(crate) fn new(
        ballot: Ballot,
        serving_from: Slot,
        now: u64,
        peers: &[NodeId],
    ) -> LeaderState {
        let peers = peers.iter().map(|&n| (n, Peer::default())).collect();
        LeaderState {
            ballot,
            next_slot: 0,
            proposals: BTreeMap::new(),
            recovered: VecDeque::new(),
            pending_membership: None,
            pad_until: 0,
            transfer: None,
            pending: VecDeque::new(),
            serving_from,
            peers,
            round: 0,
            rounds: VecDeque::new(),
            round_commits: VecDeque::new(),
            confirmed_round: 0,
            confirmed_sent_tick: now,
            lease_until: 0,
            last_round_tick: now,
            round_wanted: false,
            commit_sent: 0,
            reads: Vec::new(),
        }
    }

    pub(crate) fn enqueue(
        &mut self,
        commands: Vec<Command>,
        cfg: &Config,
    ) -> Result<(), ProposeError> {
        if self.pending.len() + commands.len() > cfg.pending_commands_max {
            return Err(ProposeError::Busy);
        }
        self.pending.extend(commands);
        Ok(())
    }

    /// What phase 1 left to propose, from `first_slot` on; `pad_until` as for the field.
    pub(crate) fn recover(&mut self, first_slot: Slot, values: Vec<SharedValue>, pad_until: Slot) {
        debug_assert!(self.next_slot == 0 && self.proposals.is_empty());
        self.next_slot = first_slot;
        self.recovered = values.into();
        self.pad_until = pad_until;
    }

    /// The last slot this leader may propose now. A slot `s` is proposed only once every
    /// slot up to `s - MEMBERSHIP_DELAY_SLOTS` is known chosen, so the membership governing
    /// it is known (and the same at every leader); within that, the pipelining window.
    ///
    /// And the first slot a new membership governs waits until a quorum of its voters
    /// holds every slot before it: once such a slot is chosen, no candidate needs the old
    /// voters' promises any more, so they may retire (`Engine::retired`).
    fn window_end(&self, log: &Log, cfg: &Config, id: NodeId) -> Slot {
        let end = log.commit() + cfg.inflight_slots_max.min(MEMBERSHIP_DELAY_SLOTS);
        match self.held_from(log, id) {
            Some(first) => end.min(first - 1),
            None => end,
        }
    }

    /// The first slot the newest membership governs, if it is a change (slot 1's initial
    /// membership has no predecessor), that slot is not chosen yet, and a quorum of the new
    /// voters (this leader counted with its own commit point) has not reported holding
    /// every slot before it.
    fn held_from(&self, log: &Log, id: NodeId) -> Option<Slot> {
        let memberships = log.memberships();
        let latest = memberships.latest().filter(|c| c.slot > 1)?;
        let first = memberships.effective_slot(latest.slot);
        if first <= log.commit() {
            return None;
        }
        let caught_up: Vec<NodeId> = latest
            .membership
            .voters()
            .iter()
            .copied()
            .filter(|&v| match v == id {
                true => log.commit() + 1 >= first,
                false => self.peers.get(&v).is_some_and(|p| p.commit + 1 >= first),
            })
            .collect();
        (!latest.membership.is_quorum(&caught_up)).then_some(first)
    }

    fn has_work(&self) -> bool {
        !self.recovered.is_empty()
            || self.pending_membership.is_some()
            || (self.transfer.is_none() && !self.pending.is_empty())
            || self.next_slot < self.pad_until
    }

    pub(crate) fn can_pack(&self, log: &Log, cfg: &Config, id: NodeId) -> bool {
        self.has_work() && self.next_slot <= self.window_end(log, cfg, id)
    }

    /// Whether a membership change is under way: asked for, proposed, or chosen but not yet
    /// governing the slot after the commit point.
    fn membership_changing(&self, commit: Slot) -> bool {
        self.pending_membership.is_some()
            || self.pad_until > commit + 2
            || self
                .recovered
                .iter()
                .chain(self.proposals.values().map(|p| &p.value))
                .any(|v| matches!(**v, Value::Membership(_)))
    }

    /// Cuts one slot's worth of pending commands.
    fn cut_batch(&mut self, cfg: &Config) -> Vec<Command> {
        let mut bytes = 0;
        let mut n = 0;
        for c in &self.pending {
            if n == cfg.batch_commands_max
                || (n > 0 && bytes + c.payload.len() > cfg.batch_bytes_max)
            {
                break;
            }
            bytes += c.payload.len();
            n += 1;
        }
        self.pending.drain(..n).collect()
    }
}

impl Engine {
    /// Packs what waits into new slots while the window has room: values phase 1 recovered
    /// first, then a membership change, then client commands, then no-ops that bring a new
    /// membership into force. Called when the driver takes a `Ready`, so everything
    /// proposed since the last one shares slots (batching).
    pub(crate) fn pack_proposals(&mut self) {
        let memberships = self.log.memberships();
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let first = l.next_slot;
        let window_end = l.window_end(&self.log, &self.cfg, self.id);
        let mut values = Vec::new();
        let mut next = first;
        while next <= window_end {
            let value = if let Some(v) = l.recovered.pop_front() {
                v
            } else if let Some(m) = l.pending_membership.take() {
                Arc::new(Value::Membership(m))
            } else if l.transfer.is_none() && !l.pending.is_empty() {
                Arc::new(Value::Commands(l.cut_batch(&self.cfg)))
            } else if next < l.pad_until {
                Arc::new(Value::Noop)
            } else {
                break;
            };
            if let Value::Membership(_) = *value {
                // Through the first slot it governs: once that one is chosen the members
                // it removed know they may retire.
                l.pad_until = l.pad_until.max(memberships.effective_slot(next) + 1);
            }
            values.push(value);
            next += 1;
        }
        if !values.is_empty() {
            self.propose_values(first, values);
        }
    }

    /// Asks for a new membership (see [`Engine::propose_membership`]).
    pub(crate) fn enqueue_membership(
        &mut self,
        membership: Membership,
    ) -> Result<(), ProposeError> {
        let commit = self.log.commit();
        let RoleState::Leader(l) = &mut self.role else {
            unreachable!("callers check the role");
        };
        if l.membership_changing(commit) {
            return Err(ProposeError::MembershipChanging);
        }
        l.pending_membership = Some(membership);
        Ok(())
    }

    /// Starts handing leadership to `to` (see [`Engine::transfer_leadership`]).
    pub(crate) fn begin_transfer(&mut self, to: NodeId) {
        let deadline = self.now + self.cfg.election_timeout_ticks;
        if let RoleState::Leader(l) = &mut self.role {
            l.transfer = Some(Transfer { to, deadline });
        }
        self.advance_transfer();
    }

    /// Hands over once the target holds every slot this leader proposed: it then starts
    /// phase 1 at once and, holding the whole chosen prefix, wins it. No new commands are
    /// packed meanwhile; an election timeout later the hand-over is abandoned.
    pub(crate) fn advance_transfer(&mut self) {
        let (now, commit) = (self.now, self.log.commit());
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let Some(t) = l.transfer else {
            return;
        };
        if now > t.deadline {
            l.transfer = None;
            return;
        }
        let caught_up = l.peers.get(&t.to).is_some_and(|p| p.commit >= commit);
        if !caught_up || !l.proposals.is_empty() || !l.recovered.is_empty() {
            return;
        }
        let ballot = l.ballot;
        self.send(t.to, Body::TimeoutNow { ballot });
        // Giving up the lease with the leadership: the acceptors still following this ballot
        // promise the target at once (Prepare::transfer_from), so no lease may outlive this.
        self.step_down();
    }

    /// Keeps the set of peers (heartbeats, commit points, catch-up) equal to the members of
    /// the memberships governing open slots, plus removed members until they hold a slot
    /// the newest membership governs (then they know they may retire); starts handing over
    /// when this leader is not a voter of the membership in force (it was removed).
    pub(crate) fn refresh_peers(&mut self) {
        let members = self.active_members(true);
        let memberships = self.log.memberships();
        let latest_effective = memberships
            .latest()
            .map(|c| memberships.effective_slot(c.slot));
        let removed =
            !self.is_voter() && latest_effective.is_some_and(|e| e <= self.log.commit() + 1);
        let id = self.id;
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        l.peers
            .retain(|n, p| members.contains(n) || latest_effective.is_some_and(|e| p.commit < e));
        for &n in members.iter().filter(|&&n| n != id) {
            l.peers.entry(n).or_default();
        }
        if removed && l.transfer.is_none() {
            // Hand over to the voter furthest along.
            let latest = self
                .log
                .memberships()
                .latest()
                .map(|c| c.membership.clone());
            let target = latest.and_then(|m| {
                m.voters()
                    .iter()
                    .filter_map(|v| l.peers.get(v).map(|p| (p.commit, *v)))
                    .max()
                    .map(|(_, v)| v)
            });
            if let Some(to) = target {
                self.begin_transfer(to);
            }
        }
    }

    /// At the leader, a replica outside the memberships in force that campaigns (it missed
    /// its own removal) becomes a peer until it holds the slot that tells it so; heartbeats
    /// and catch-up (or a snapshot) then reach it (`refresh_peers` keeps it until then).
    pub(crate) fn adopt_stray(&mut self, from: NodeId, commit: Slot) {
        if from == self.id || self.active_members(true).contains(&from) {
            return;
        }
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        l.peers.entry(from).or_default();
        // Catch-up needs no ballot (chosen values are final): it reaches the stray even if
        // its campaign raised its promise above ours and it refuses our heartbeats.
        let target = self.log.commit();
        self.peer_reported(from, commit, Some(target));
    }

    /// Each peer's chosen prefix as last reported (leader only; empty elsewhere).
    pub(crate) fn peer_commits(&self) -> Vec<(NodeId, Slot)> {
        match &self.role {
            RoleState::Leader(l) => l.peers.iter().map(|(&n, p)| (n, p.commit)).collect(),
            _ => Vec::new(),
        }
    }

    /// Phase 2a for consecutive slots from `first`, one Accept message per voter (this
    /// replica's own acceptor included; its vote counts once its write is durable).
    pub(crate) fn propose_values(&mut self, first: Slot, values: Vec<SharedValue>) {
        let commit = self.log.commit();
        let now = self.now;
        let RoleState::Leader(l) = &mut self.role else {
            unreachable!("only a leader proposes");
        };
        assert!(first == l.next_slot, "slots proposed out of order");
        assert!(
            first + values.len() as u64 <= commit + MEMBERSHIP_DELAY_SLOTS + 1,
            "slot proposed before the membership governing it is known"
        );
        for (i, v) in values.iter().enumerate() {
            let slot = first + i as u64;
            let previous = l.proposals.insert(
                slot,
                Proposal {
                    value: v.clone(),
                    votes: Vec::new(),
                    sent_tick: now,
                },
            );
            // One value per slot per ballot: what makes "accepted under the leader's ballot"
            // mean "holds the leader's value" at every acceptor.
            assert!(
                previous.is_none(),
                "slot {slot} proposed twice under one ballot"
            );
        }
        l.next_slot = first + values.len() as u64;
        l.commit_sent = commit;
        let ballot = l.ballot;
        let bytes_max = self.cfg.accept_bytes_max;
        for (first_slot, values) in runs_by_bytes(first, values, u64::MAX, bytes_max, usize::MAX) {
            self.broadcast(Body::Accept {
                ballot,
                first_slot,
                values,
                commit,
            });
        }
    }

    pub(crate) fn on_accepted(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        first: Slot,
        last: Slot,
        commit: Slot,
    ) {
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        if l.ballot != ballot {
            return;
        }
        let memberships = self.log.memberships();
        let mut chosen = Vec::new();
        for (&slot, p) in l.proposals.range_mut(first..=last.max(first)) {
            if !p.votes.contains(&from) {
                p.votes.push(from);
                let membership = memberships
                    .for_slot(slot)
                    .expect("a leader proposes only slots whose membership it knows");
                if membership.is_quorum(&p.votes) {
                    chosen.push(slot);
                }
            }
        }
        for slot in chosen {
            let p = l.proposals.remove(&slot).expect("just counted");
            self.log.mark_chosen(slot, &p.value);
        }
        if let Some(peer) = l.peers.get_mut(&from) {
            // Only noted: the follower's commit point lags the slots it just accepted, which
            // the next Commit or heartbeat settles without any catch-up.
            peer.commit = commit;
        }
    }

    /// Tells followers the commit point promptly when no Accept is about to carry it, so
    /// that they apply (and answer forwarded requests) without waiting for a heartbeat.
    pub(crate) fn broadcast_commit_if_moved(&mut self) {
        let commit = self.log.commit();
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        if l.commit_sent >= commit {
            return;
        }
        l.commit_sent = commit;
        let ballot = l.ballot;
        let peers: Vec<NodeId> = l.peers.keys().copied().collect();
        for to in peers {
            self.send(to, Body::Commit { ballot, commit });
        }
    }

    pub(crate) fn tick_leader(&mut self) {
        let now = self.now;
        let (heartbeat, timeout) = (
            self.cfg.heartbeat_interval_ticks,
            self.cfg.election_timeout_ticks,
        );
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        // Check-quorum: a leader no majority has answered for an election timeout steps
        // down rather than hold clients hostage behind a partition.
        if now > l.confirmed_sent_tick + timeout {
            self.step_down();
            return;
        }
        if now >= l.last_round_tick + heartbeat || l.round_wanted {
            self.start_round();
            self.retransmit_accepts();
        }
        self.advance_transfer();
    }

    /// A heartbeat round: leadership, commit point, and a round number whose acknowledgement
    /// by a quorum confirms leadership for reads and extends the lease.
    pub(crate) fn start_round(&mut self) {
        // Heartbeats go to the members of the memberships in force now; a leader that was
        // removed starts handing over here.
        self.refresh_peers();
        let (now, commit) = (self.now, self.log.commit());
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        l.round += 1;
        l.rounds.push_back((l.round, now));
        if l.round_commits.len() == ROUND_COMMITS_MAX {
            l.round_commits.pop_front();
        }
        l.round_commits.push_back((l.round, commit));
        l.last_round_tick = now;
        l.round_wanted = false;
        l.commit_sent = l.commit_sent.max(commit);
        let (ballot, round) = (l.ballot, l.round);
        let peers: Vec<NodeId> = l.peers.keys().copied().collect();
        for to in peers {
            self.send(
                to,
                Body::Heartbeat {
                    ballot,
                    commit,
                    round,
                },
            );
        }
        self.confirm_rounds(); // a one-voter cluster confirms at once
    }

    pub(crate) fn on_heartbeat_reply(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        round: u64,
        commit: Slot,
    ) {
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        if l.ballot != ballot {
            return;
        }
        if let Some(p) = l.peers.get_mut(&from) {
            p.acked_round = p.acked_round.max(round);
        }
        let carried = l
            .round_commits
            .iter()
            .find(|&&(r, _)| r == round)
            .map_or(0, |&(_, c)| c);
        self.confirm_rounds();
        self.peer_reported(from, commit, Some(carried));
    }

    /// Finds the newest round a quorum (this leader included) acknowledged; extends the
    /// lease from that round's send time and releases reads waiting for it.
    fn confirm_rounds(&mut self) {
        let lease_ticks = self.cfg.lease_ticks();
        let id = self.id;
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        // The newest round a quorum of every membership governing open slots acknowledged.
        let mut confirmed = u64::MAX;
        for m in self.log.memberships().governing_from(self.log.commit() + 1) {
            let mut acked: Vec<u64> = m
                .voters()
                .iter()
                .map(|&v| match v == id {
                    true => l.round, // the leader acknowledges its own rounds
                    false => l.peers.get(&v).map_or(0, |p| p.acked_round),
                })
                .collect();
            acked.sort_unstable_by(|a, b| b.cmp(a));
            confirmed = confirmed.min(acked[m.quorum() - 1]);
        }
        if confirmed == u64::MAX {
            return;
        }
        if confirmed <= l.confirmed_round {
            return;
        }
        let mut sent = None;
        while let Some(&(r, t)) = l.rounds.front() {
            if r > confirmed {
                break;
            }
            sent = Some(t);
            l.rounds.pop_front();
        }
        let sent = sent.expect("a newly confirmed round was sent and not yet confirmed");
        l.confirmed_round = confirmed;
        l.confirmed_sent_tick = sent;
        l.lease_until = l.lease_until.max(sent + lease_ticks);
        self.release_confirmed_reads();
    }

    /// Resends Accepts that got no vote within a heartbeat interval (lost, or the acceptor
    /// was down), in runs of consecutive slots per peer.
    fn retransmit_accepts(&mut self) {
        let (now, commit, heartbeat) = (
            self.now,
            self.log.commit(),
            self.cfg.heartbeat_interval_ticks,
        );
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let ballot = l.ballot;
        let mut runs: Vec<(NodeId, Slot, Vec<SharedValue>)> = Vec::new();
        for (&peer, _) in l.peers.iter() {
            let mut run: Option<(Slot, Vec<SharedValue>)> = None;
            for (&slot, p) in l.proposals.iter() {
                let stale = p.sent_tick + heartbeat <= now && !p.votes.contains(&peer);
                match (&mut run, stale) {
                    (Some((first, values)), true) if *first + values.len() as u64 == slot => {
                        values.push(p.value.clone())
                    }
                    (_, true) => {
                        if let Some((first, values)) = run.take() {
                            runs.push((peer, first, values));
                        }
                        run = Some((slot, vec![p.value.clone()]));
                    }
                    (_, false) => {
                        if let Some((first, values)) = run.take() {
                            runs.push((peer, first, values));
                        }
                    }
                }
            }
            if let Some((first, values)) = run {
                runs.push((peer, first, values));
            }
        }
        for p in l.proposals.values_mut() {
            if p.sent_tick + heartbeat <= now {
                p.sent_tick = now;
            }
        }
        let bytes_max = self.cfg.accept_bytes_max;
        for (to, first, values) in runs {
            for (first_slot, values) in
                runs_by_bytes(first, values, u64::MAX, bytes_max, usize::MAX)
            {
                self.send(
                    to,
                    Body::Accept {
                        ballot,
                        first_slot,
                        values,
                        commit,
                    },
                );
            }
        }
    }

    pub(crate) fn on_learn_reply(&mut self, from: NodeId, commit: Slot) {
        self.peer_reported(from, commit, None);
    }

    /// A peer told us its chosen prefix: in a heartbeat reply (`carried` = the commit point
    /// that heartbeat told it) or a reply to catch-up (`None`). A peer below what it was told
    /// has a gap only `Learn` can fill: send it chosen values, a batch of a few chunks at a
    /// time (the reply showing the batch landed sends the next at once), again after a
    /// heartbeat interval if something was lost.
    fn peer_reported(&mut self, from: NodeId, peer_commit: Slot, carried: Option<Slot>) {
        let (now, commit, heartbeat) = (
            self.now,
            self.log.commit(),
            self.cfg.heartbeat_interval_ticks,
        );
        let (slots_max, bytes_max) = (self.cfg.catchup_slots_max, self.cfg.catchup_bytes_max);
        let (compacted, election_timeout) = (self.log.compacted(), self.cfg.election_timeout_ticks);
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let Some(peer) = l.peers.get_mut(&from) else {
            return;
        };
        peer.commit = peer_commit;
        if let Some(carried) = carried {
            peer.learn_target = peer.learn_target.max(carried);
        }
        let target = peer.learn_target.min(commit);
        if peer_commit >= target {
            peer.learn_sent_tick = None;
            return;
        }
        let due = match (peer.learn_sent_tick, carried) {
            (None, _) => true,
            // A reply to catch-up: the next batch once the last one landed. Replies that
            // show less (earlier chunks, duplicates) send nothing, so a duplicating network
            // cannot multiply catch-up traffic.
            (Some(_), None) => peer_commit >= peer.learn_sent_upto,
            (Some(t), Some(_)) => now >= t + heartbeat,
        };
        if !due {
            return;
        }
        peer.learn_sent_tick = Some(now);
        let first_slot = peer_commit + 1;
        if first_slot <= compacted {
            // What the peer misses is only in our snapshot now.
            peer.learn_sent_tick = None;
            let due = peer
                .snapshot_sent_tick
                .is_none_or(|t| now >= t + election_timeout);
            if due {
                peer.snapshot_sent_tick = Some(now);
                if !self.out.send_snapshot.contains(&from) {
                    self.out.send_snapshot.push(from);
                }
            }
            return;
        }
        // A few chunks per batch, so a far-behind replica is not held to one round trip
        // per chunk. Chunks are cut by bytes as well as slots: a chunk of large values that
        // did not fit the transport's frame would be dropped, and resent, forever.
        let log = &self.log;
        let values = (first_slot..=target).map_while(|s| log.get(s).map(|e| e.value.clone()));
        let chunks = runs_by_bytes(
            first_slot,
            values,
            slots_max,
            bytes_max,
            LEARN_CHUNKS_PER_BATCH,
        );
        // The batch ends where the last chunk does (sooner than `slots_max` slots per chunk
        // would put it when values are large).
        peer.learn_sent_upto = chunks.last().map_or(peer_commit, |(first, values)| {
            first + values.len() as u64 - 1
        });
        for (first_slot, values) in chunks {
            self.send(from, Body::Learn { first_slot, values });
        }
    }

    pub(crate) fn on_forward(&mut self, commands: Vec<Command>) {
        if let RoleState::Leader(l) = &mut self.role {
            // A full queue drops the batch: the clients time out and retry, and dedup by
            // (client id, sequence) makes the retry safe.
            let _ = l.enqueue(commands, &self.cfg);
        }
    }
}
