//! Becoming leader: election timeouts with randomized exponential back-off, pre-vote, phase 1
//! over every open slot, and stepping down.

use crate::config::PlantedBug;
use crate::engine::{Engine, RoleState};
use crate::leader::LeaderState;
use crate::message::{Body, PromisedSlot};
use crate::types::{Ballot, NodeId, SharedValue, Slot, Value};
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
}

impl Engine {
    /// A random timeout in `[t, t + t * 2^backoff)`: random so that candidates rarely collide,
    /// widening after each failed campaign so that duelling proposers separate.
    pub(crate) fn random_election_timeout(&mut self) -> u64 {
        let t = self.cfg.election_timeout_ticks;
        let spread = t << self.backoff_exp.min(BACKOFF_EXP_MAX);
        t + self.rng.below(spread)
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
        Ballot::new(self.promised.round.max(self.max_round_seen) + 1, self.id)
    }

    fn start_pre_vote(&mut self) {
        if !self.members.contains(self.id) {
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
        });
        self.election_deadline = self.now + self.random_election_timeout();
        let commit = self.log.commit();
        self.broadcast(Body::PreVote { ballot, commit });
    }

    pub(crate) fn on_pre_vote_reply(&mut self, from: NodeId, ballot: Ballot, granted: bool) {
        let quorum = self.members.quorum();
        let voters = self.members.voters().len();
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
            if c.refusals.len() > voters - quorum {
                // A majority can no longer grant: end this pre-vote now rather than wait
                // out its deadline (the refusers hear a leader, or are ahead of us).
                self.step_down();
            }
            return;
        }
        c.votes.insert(from, Vec::new());
        if c.votes.len() >= quorum {
            self.start_phase1();
        }
    }

    /// Phase 1a: promise the new ballot to ourselves, then (once that promise is durable, so
    /// the round can never be reused after a crash) ask every voter to promise it too.
    fn start_phase1(&mut self) {
        let ballot = self.next_ballot();
        let first_slot = self.log.commit() + 1;
        self.raise_promise(ballot);
        self.role = RoleState::Candidate(Campaign {
            ballot,
            first_slot,
            votes: BTreeMap::new(),
            refusals: Vec::new(),
        });
        self.election_deadline = self.now + self.random_election_timeout();
        for i in 0..self.members.voters().len() {
            let to = self.members.voters()[i];
            let body = Body::Prepare { ballot, first_slot };
            if to == self.id {
                self.send(to, body);
            } else {
                self.send_after_persist(to, body);
            }
        }
    }

    pub(crate) fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        first_slot: Slot,
        accepted: Vec<PromisedSlot>,
    ) {
        let quorum = self.members.quorum();
        let RoleState::Candidate(c) = &mut self.role else {
            return;
        };
        if c.ballot != ballot || c.first_slot != first_slot {
            return; // a reply to an earlier campaign
        }
        c.votes.insert(from, accepted);
        if c.votes.len() >= quorum {
            self.become_leader();
        }
    }

    /// Phase 1 succeeded. For every slot from the campaign's first one up to the highest any
    /// promise mentions, re-propose the value known chosen or else accepted under the highest
    /// ballot, and fill holes with no-ops; then one more no-op, whose commit proves this
    /// leader knows every value chosen before it (reads wait for it).
    fn become_leader(&mut self) {
        let RoleState::Candidate(c) = std::mem::replace(&mut self.role, RoleState::Follower) else {
            unreachable!("become_leader outside phase 1");
        };
        let ignore_accepted = self.cfg.bug(PlantedBug::LeaderIgnoresAcceptedValues);
        let mut best: BTreeMap<Slot, (bool, Ballot, SharedValue)> = BTreeMap::new();
        for p in c.votes.into_values().flatten() {
            if p.slot < c.first_slot || (ignore_accepted && !p.chosen) {
                continue;
            }
            let candidate = (p.chosen, p.ballot, p.value);
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
        self.role = RoleState::Leader(Box::new(LeaderState::new(
            c.ballot,
            serving_from,
            self.now,
            &self.members,
            self.id,
        )));
        self.propose_values(c.first_slot, values);
        self.start_round();
    }

    pub(crate) fn on_nack(&mut self, rejected: Ballot, promised: Ballot) {
        self.note_round(promised);
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
