//! Becoming leader: election timeouts with randomized exponential back-off, pre-vote, phase 1
//! over every open slot, and stepping down.

use crate::config::PlantedBug;
use crate::engine::{Engine, RoleState};
use crate::leader::LeaderState;
use crate::message::{Body, PromisedSlot};
use crate::types::{Ballot, Membership, NodeId, SharedValue, Slot, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Widest back-off: election timeouts grow up to `2^BACKOFF_EXP_MAX` times the base.
const BACKOFF_EXP_MAX: u32 = 4;

/// A campaign in progress: a pre-vote (ballot not yet promised) or phase 1.
#[derive(Debug)]
pub(crate) struct Campaign {
    pub(crate) ballot: Ballot,
    /// Phase 1 covers every slot from here on: the candidate's first unchosen slot.
    pub(crate) first_slot: Slot,
    /// Voters that granted the pre-vote, or the promises received in phase 1.
    pub(crate) votes: BTreeMap<NodeId, Vec<PromisedSlot>>,
    /// Voters that refused the pre-vote.
    pub(crate) refusals: Vec<NodeId>,
    /// Nodes sent this campaign's Prepare (phase 1 asks more as promises reveal memberships).
    pub(crate) asked: Vec<NodeId>,
    /// The leader that handed over to this campaign (`TimeoutNow`), if any.
    pub(crate) transfer_from: Option<Ballot>,
}

/// Per slot from a campaign's first one: (known chosen, highest ballot, its value).
type Recovered = BTreeMap<Slot, (bool, Ballot, SharedValue)>;

impl Engine {
    /// A random timeout in `[t, t + t * 2^backoff)`: random so that candidates rarely collide,
    /// widening after each failed campaign so that duelling proposers separate.
    pub(crate) fn random_election_timeout(&mut self) -> u64 {
        let t = self.cfg.election_timeout_ticks;
        let spread = t << self.backoff_exp.min(BACKOFF_EXP_MAX);
        t + self.rng.below(spread)
    }

    /// The longest phase 1 lasts, in the candidate's ticks: then it gives up (and backs off
    /// before the next campaign). A fixed bound rather than the widening back-off, because a
    /// replica recovering from a lost log tail must wait out every campaign that may still
    /// count one of its forgotten promises (recovery.rs).
    pub(crate) fn campaign_ticks_max(&self) -> u64 {
        2 * self.cfg.election_timeout_ticks
    }

    pub(crate) fn tick_election(&mut self) {
        if matches!(self.role, RoleState::Leader(_)) || self.now < self.election_deadline {
            return;
        }
        match self.role {
            RoleState::Follower => self.start_pre_vote(),
            // A pre-vote changes no state, so a stalled one cannot be duelling anyone: try
            // again after a fresh timeout, without widening the back-off (which would only
            // delay recovery once the cluster heals).
            RoleState::PreCandidate(_) => self.step_down(),
            RoleState::Candidate(_) => {
                // Phase 1 stalled (lost messages, or acceptors still hear a leader).
                self.backoff_exp = self.backoff_exp.saturating_add(1);
                self.step_down();
            }
            RoleState::Leader(_) => unreachable!("checked above"),
        }
    }

    fn next_ballot(&self) -> Ballot {
        Ballot::new(
            self.promised.round.max(self.highest_round_seen) + 1,
            self.id,
        )
    }

    fn start_pre_vote(&mut self) {
        if !self.may_campaign() {
            self.election_deadline = self.now + self.random_election_timeout();
            return; // not a voter: never campaigns
        }
        let ballot = self.next_ballot();
        self.leader = None;
        self.role = RoleState::PreCandidate(Campaign {
            ballot,
            first_slot: self.log.commit() + 1,
            votes: BTreeMap::new(),
            refusals: Vec::new(),
            asked: Vec::new(),
            transfer_from: None,
        });
        self.election_deadline = self.now + self.random_election_timeout();
        let commit = self.log.commit();
        for to in self.active_members(false) {
            self.send(to, Body::PreVote { ballot, commit });
        }
    }

    pub(crate) fn on_pre_vote_reply(&mut self, from: NodeId, ballot: Ballot, granted: bool) {
        let RoleState::PreCandidate(c) = &mut self.role else {
            return;
        };
        if c.ballot != ballot {
            return;
        }
        if !granted {
            if !c.refusals.contains(&from) {
                c.refusals.push(from);
            }
            let refusals = c.refusals.clone();
            // A membership whose majority refused can no longer grant: end this pre-vote now
            // rather than wait out its deadline (the refusers hear a leader, or are ahead).
            let hopeless = self.active_memberships().any(|m| {
                let refused = refusals.iter().filter(|&&n| m.is_voter(n)).count();
                refused > m.voters().len() - m.quorum()
            });
            if hopeless {
                self.step_down();
            }
            return;
        }
        c.votes.insert(from, Vec::new());
        let granted: Vec<NodeId> = c.votes.keys().copied().collect();
        if self.is_active_quorum(&granted) {
            self.start_phase1(None);
        }
    }

    /// Phase 1a: promise the new ballot to ourselves, then (once that promise is durable, so
    /// the round can never be reused after a crash) ask the voters to promise it too: those
    /// of every membership governing open slots now, more if promises reveal others.
    pub(crate) fn start_phase1(&mut self, transfer_from: Option<Ballot>) {
        let ballot = self.next_ballot();
        let first_slot = self.log.commit() + 1;
        self.raise_promise(ballot);
        self.role = RoleState::Candidate(Campaign {
            ballot,
            first_slot,
            votes: BTreeMap::new(),
            refusals: Vec::new(),
            asked: Vec::new(),
            transfer_from,
        });
        self.election_deadline = self.now + self.campaign_ticks_max();
        let voters = self.active_members(false);
        self.ask_promises(&voters);
    }

    /// Sends the campaign's Prepare to those of `nodes` not yet asked.
    fn ask_promises(&mut self, nodes: &[NodeId]) {
        let RoleState::Candidate(c) = &mut self.role else {
            return;
        };
        let (ballot, first_slot, transfer_from) = (c.ballot, c.first_slot, c.transfer_from);
        let fresh: Vec<NodeId> = nodes
            .iter()
            .copied()
            .filter(|n| !c.asked.contains(n))
            .collect();
        c.asked.extend(&fresh);
        for to in fresh {
            let body = Body::Prepare {
                ballot,
                first_slot,
                transfer_from,
            };
            if to == self.id {
                self.send(to, body);
            } else {
                self.send_after_persist(to, body);
            }
        }
    }

    /// The leader of `ballot` hands over to us: campaign now, without a pre-vote.
    pub(crate) fn on_timeout_now(&mut self, from: NodeId, ballot: Ballot) {
        // Only from the leader we follow, for the ballot we promised: a late or replayed
        // hand-over from an older leader is ignored.
        if self.leader != Some(from) || self.promised != ballot || !self.is_voter() {
            return;
        }
        if !matches!(self.role, RoleState::Follower) {
            return;
        }
        self.start_phase1(Some(ballot));
    }

    pub(crate) fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        first_slot: Slot,
        accepted: Vec<PromisedSlot>,
    ) {
        let RoleState::Candidate(c) = &mut self.role else {
            return;
        };
        if c.ballot != ballot || c.first_slot != first_slot {
            return; // a reply to an earlier campaign
        }
        c.votes.insert(from, accepted);
        self.try_finish_phase1();
    }

    /// Phase 1 is done when the promises hold a quorum of every membership that governs a
    /// slot from the campaign's first one on: those chosen at or below the commit point, and
    /// those the promised values would choose above it (a value chosen in slot `s` was
    /// chosen by the quorum of the membership governing `s`, which earlier slots decide; by
    /// induction on slots, the promises of that membership's quorum reveal it). Memberships
    /// revealed only by the promises get the Prepare too.
    fn try_finish_phase1(&mut self) {
        let RoleState::Candidate(c) = &self.role else {
            return;
        };
        let best = self.recovered_values(c);
        let promised: Vec<NodeId> = c.votes.keys().copied().collect();
        let mut memberships: Vec<Membership> = self
            .log
            .memberships()
            .governing_from(c.first_slot)
            .cloned()
            .collect();
        memberships.extend(best.values().filter_map(|(_, _, v)| match &**v {
            Value::Membership(m) => Some(m.clone()),
            _ => None,
        }));
        if memberships.is_empty() {
            return; // knows no membership: cannot lead (start_pre_vote prevents this)
        }
        if memberships.iter().all(|m| m.is_quorum(&promised)) {
            self.become_leader(best);
            return;
        }
        let mut voters: Vec<NodeId> = memberships
            .iter()
            .flat_map(|m| m.voters())
            .copied()
            .collect();
        voters.sort_unstable();
        voters.dedup();
        self.ask_promises(&voters);
    }

    /// For every slot a promise reports from the campaign's first on: the value known chosen,
    /// or else the one accepted under the highest ballot.
    fn recovered_values(&self, c: &Campaign) -> Recovered {
        let ignore_accepted = self.cfg.bug(PlantedBug::LeaderIgnoresAcceptedValues);
        let mut best: Recovered = BTreeMap::new();
        for p in c.votes.values().flatten() {
            if p.slot < c.first_slot || (ignore_accepted && !p.chosen) {
                continue;
            }
            let candidate = (p.chosen, p.ballot, p.value.clone());
            match best.get(&p.slot) {
                Some((true, _, v)) => {
                    assert!(
                        !candidate.0 || *v == candidate.2,
                        "safety: two promises report different chosen values for slot {}",
                        p.slot
                    );
                }
                Some((false, b, _)) if !candidate.0 && *b >= candidate.1 => {}
                _ => {
                    best.insert(p.slot, candidate);
                }
            }
        }
        best
    }

    /// Phase 1 succeeded. For every slot from the campaign's first one up to the highest any
    /// promise mentions, re-propose the value known chosen or else accepted under the highest
    /// ballot, and fill holes with no-ops; then one more no-op, whose commit proves this
    /// leader knows every value chosen before it (reads wait for it).
    fn become_leader(&mut self, mut best: Recovered) {
        let RoleState::Candidate(c) = std::mem::replace(&mut self.role, RoleState::Follower) else {
            unreachable!("become_leader outside phase 1");
        };
        let last = best
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .max(c.first_slot - 1);
        let noop: SharedValue = Arc::new(Value::Noop);
        let mut values: Vec<SharedValue> = (c.first_slot..=last)
            .map(|slot| match self.log.get(slot) {
                Some(e) if self.log.is_chosen(slot) => e.value.clone(),
                _ => best
                    .remove(&slot)
                    .map_or_else(|| noop.clone(), |(_, _, v)| v),
            })
            .collect();
        values.push(noop);
        let serving_from = last + 1;
        self.leader = Some(self.id);
        self.backoff_exp = 0;
        let peers: Vec<NodeId> = self
            .active_members(true)
            .into_iter()
            .filter(|&n| n != self.id)
            .collect();
        let mut leader = LeaderState::new(c.ballot, serving_from, self.now, &peers);
        // Slots beyond the window wait: a leader proposes slot `s` only once every slot up to
        // `s - MEMBERSHIP_DELAY_SLOTS` is chosen, re-proposals included (a membership among
        // them must be chosen before the slots it governs are proposed).
        let pad_until = self
            .log
            .memberships()
            .latest()
            .map_or(0, |l| self.log.memberships().effective_slot(l.slot) + 1);
        leader.recover(c.first_slot, values, pad_until);
        self.role = RoleState::Leader(Box::new(leader));
        self.pack_proposals();
        self.start_round();
    }

    pub(crate) fn on_nack(&mut self, from: NodeId, rejected: Ballot, promised: Ballot) {
        self.note_round(promised);
        if !self.active_members(false).contains(&from) {
            // A replica outside the memberships in force (say, a removed one that missed
            // its removal and campaigned): its promise preempts no one who needs no vote
            // from it. Our next ballot still outbids it (`note_round`).
            return;
        }
        let own = match &self.role {
            RoleState::Follower => return,
            RoleState::PreCandidate(c) | RoleState::Candidate(c) => c.ballot,
            RoleState::Leader(l) => l.ballot,
        };
        if own == rejected && promised > rejected {
            // Preempted by a higher ballot: back off before trying again, so that two
            // proposers do not keep outbidding each other.
            self.backoff_exp = self.backoff_exp.saturating_add(1);
            self.step_down();
        }
    }

    /// Back to follower. A leader fails its pending reads (they can no longer be confirmed)
    /// and keeps refusing promises for an election timeout: its lease may still be counted.
    pub(crate) fn step_down(&mut self) {
        if let RoleState::Leader(_) = self.role {
            self.fail_leader_reads();
            self.last_leader_contact = self.now;
        }
        if matches!(self.role, RoleState::Leader(_)) || self.leader == Some(self.id) {
            self.leader = None;
        }
        self.role = RoleState::Follower;
        self.election_deadline = self.now + self.random_election_timeout();
    }
}
