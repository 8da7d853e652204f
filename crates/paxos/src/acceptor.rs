//! The acceptor and learner: promises, accepts, commit points and catch-up from the leader.
//! Every reply that reveals acceptor state (Promise, Accepted) leaves only after that state
//! is durable.

use crate::config::PlantedBug;
use crate::engine::{Engine, RoleState};
use crate::message::{Body, PromisedSlot};
use crate::types::{Ballot, NodeId, SharedValue, Slot};

impl Engine {
    /// True while this replica must not promise a new ballot: it is the leader, or heard a
    /// leader less than one (minimum) election timeout ago.
    pub(crate) fn hears_leader(&self) -> bool {
        matches!(self.role, RoleState::Leader(_))
            || self.now < self.last_leader_contact + self.cfg.election_timeout_ticks
    }

    pub(crate) fn on_pre_vote(&mut self, from: NodeId, ballot: Ballot, commit: Slot) {
        // A campaign from a replica the leader does not count as a member: one that was
        // removed but missed it (down or cut off then). Bring it up to date, so it learns
        // it may retire.
        self.adopt_stray(from, commit);
        // Learn the candidate's round even when refusing, so our own next campaign outbids
        // it; otherwise two nodes can refuse each other forever (one for its promise, the
        // other for its commit point).
        self.note_round(ballot);
        // Granting changes nothing: it only says a real Prepare would likely succeed. A
        // candidate behind our commit point is refused so that a promise never has to carry
        // a long chosen history; a more up-to-date replica can win instead.
        // A replica that can no longer lead (it was removed) does not hold out for a more
        // up-to-date candidate: the candidate may be the only voter left to elect.
        if self.is_recovering() {
            // Granting would be harmless, but a replica that may have forgotten promises
            // takes no part in elections until it recovered.
            self.send(
                from,
                Body::PreVoteReply {
                    ballot,
                    granted: false,
                },
            );
            return;
        }
        let up_to_date = commit >= self.log.commit() || !self.is_voter();
        if commit < self.log.compacted() {
            self.offer_snapshot(from);
        }
        let granted = ballot > self.promised && !self.hears_leader() && up_to_date;
        self.send(from, Body::PreVoteReply { ballot, granted });
    }

    pub(crate) fn on_prepare(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        first_slot: Slot,
        transfer_from: Option<Ballot>,
    ) {
        self.note_round(ballot);
        if self.is_recovering() {
            return; // silent, as if down: it may have forgotten promises and acceptances
        }
        if ballot < self.promised {
            let promised = self.promised;
            self.send(
                from,
                Body::Nack {
                    rejected: ballot,
                    promised,
                },
            );
            return;
        }
        if ballot > self.promised {
            // A hand-over from the very leader we follow: it gave up its lease when it sent
            // TimeoutNow, so the lease rule below has nothing left to protect.
            let handed_over = transfer_from.is_some_and(|b| b == self.promised)
                && !matches!(self.role, RoleState::Leader(_));
            if self.hears_leader() && !handed_over {
                // Leases: while a leader may hold one that counts on us, stay silent; the
                // candidate times out and backs off.
                return;
            }
            if first_slot <= self.log.compacted() {
                // The candidate is behind our snapshot: the values it would have to learn from
                // us are gone (all chosen). Stay silent, as if down: promises counted from
                // others still carry every value chosen from its first slot on, and a replica
                // that is not behind can win instead (the pre-vote already prefers one). If
                // none can (say, we were removed and the candidate is the last voter), our
                // snapshot brings the candidate forward for its next campaign.
                self.offer_snapshot(from);
                return;
            }
            self.raise_promise(ballot);
            self.abandon_role_below(ballot);
        }
        let first_slot = first_slot.max(1);
        let accepted = self
            .log
            .range_from(first_slot)
            .map(|(&slot, e)| PromisedSlot {
                slot,
                ballot: e.ballot,
                value: e.value.clone(),
                chosen: e.chosen || slot <= self.log.commit(),
            })
            .collect();
        self.send_after_persist(
            from,
            Body::Promise {
                ballot,
                first_slot,
                accepted,
            },
        );
    }

    pub(crate) fn on_accept(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        first_slot: Slot,
        values: Vec<SharedValue>,
        commit: Slot,
    ) {
        self.note_round(ballot);
        if self.is_recovering() {
            // No vote until it recovered, but the leader is worth knowing (forwarding,
            // reads); the values come as chosen ones through catch-up.
            if ballot >= self.promised {
                self.follow(from, ballot);
            }
            return;
        }
        let ignores_promise = self.cfg.bug(PlantedBug::AcceptorIgnoresPromise);
        if ballot < self.promised && !ignores_promise {
            let promised = self.promised;
            self.send(
                from,
                Body::Nack {
                    rejected: ballot,
                    promised,
                },
            );
            return;
        }
        if values.is_empty() || first_slot == 0 {
            return; // malformed: nothing to accept
        }
        if ballot > self.promised {
            // An acceptor's promise always covers what it accepted: otherwise a later
            // Prepare between the two ballots could be promised and then overwrite this value
            // with a lower-ballot one.
            self.raise_promise(ballot);
        }
        if ballot >= self.promised {
            self.follow(from, ballot);
        }
        let Some(last_slot) = first_slot.checked_add(values.len() as u64 - 1) else {
            return; // malformed: slots past the end of the log
        };
        let mut stale = false;
        for (i, value) in values.into_iter().enumerate() {
            let slot = first_slot + i as u64;
            if self.log.is_chosen(slot) {
                // Known chosen: nothing to write. A different value can only come from a
                // proposer whose ballot is below the one that chose it (a stale leader this
                // acceptor never promised against); it gets no vote from us.
                // (A compacted slot is no longer held; nothing to compare with.)
                if let Some(entry) = self.log.get(slot) {
                    stale |= entry.value != value;
                }
                continue;
            }
            let record = self.log.accept(slot, ballot, value, ignores_promise);
            self.out.persist(record);
        }
        if stale {
            return;
        }
        if ballot >= self.promised {
            self.log.commit_by_ballot(ballot, commit);
        }
        let commit = self.log.commit();
        self.send_after_persist(
            from,
            Body::Accepted {
                ballot,
                first_slot,
                last_slot,
                commit,
            },
        );
    }

    pub(crate) fn on_heartbeat(&mut self, from: NodeId, ballot: Ballot, commit: Slot, round: u64) {
        self.note_round(ballot);
        if ballot < self.promised {
            let promised = self.promised;
            self.send(
                from,
                Body::Nack {
                    rejected: ballot,
                    promised,
                },
            );
            return;
        }
        self.follow(from, ballot);
        self.log.commit_by_ballot(ballot, commit);
        if self.is_recovering() && self.recovery_fence().is_none_or(|fence| ballot < fence) {
            // Acknowledging vouches that no higher ballot was promised: only for ballots at
            // or above every promise this replica may have forgotten (the fence).
            return;
        }
        // Sent at once: the reply vouches for the promise (in memory at least as high as on
        // disk) and starts this acceptor's refusal window, which a restart also restarts.
        let commit = self.log.commit();
        self.send(
            from,
            Body::HeartbeatReply {
                ballot,
                round,
                commit,
            },
        );
    }

    pub(crate) fn on_commit(&mut self, from: NodeId, ballot: Ballot, commit: Slot) {
        if ballot < self.promised {
            return; // a deposed leader's news; its next heartbeat gets the Nack
        }
        self.follow(from, ballot);
        self.log.commit_by_ballot(ballot, commit);
    }

    /// Chosen values from the leader for a replica that lags. A chosen value is final
    /// whoever reports it, so no ballot check is needed.
    pub(crate) fn on_learn(&mut self, from: NodeId, first_slot: Slot, values: Vec<SharedValue>) {
        if first_slot == 0 {
            return;
        }
        for (i, value) in values.into_iter().enumerate() {
            let Some(slot) = first_slot.checked_add(i as u64) else {
                break;
            };
            if slot <= self.log.commit() {
                continue;
            }
            let ballot = self.log.get(slot).map_or(Ballot::ZERO, |e| e.ballot);
            if let Some(record) = self.log.learn(slot, ballot, &value) {
                self.out.persist(record);
            }
        }
        self.log.absorb_chosen();
        let commit = self.log.commit();
        self.send(from, Body::LearnReply { commit });
    }

    /// Asks the driver to send our snapshot to a candidate behind our compaction point, at
    /// most once per election timeout per candidate (a transfer takes a while).
    fn offer_snapshot(&mut self, to: NodeId) {
        let last = self.snapshot_offers.get(&to).copied();
        if last.is_some_and(|t| self.now < t + self.cfg.election_timeout_ticks) {
            return;
        }
        self.snapshot_offers.insert(to, self.now);
        if !self.out.send_snapshot.contains(&to) {
            self.out.send_snapshot.push(to);
        }
    }

    /// A valid leader spoke (its ballot is at least our promise): follow it, and leave any
    /// campaign or leadership of our own that it outranks.
    fn follow(&mut self, from: NodeId, ballot: Ballot) {
        if from != self.id {
            if matches!(self.role, RoleState::PreCandidate(_)) {
                self.step_down(); // a leader is alive: the pre-vote is moot
            }
            self.abandon_role_below(ballot);
            if !matches!(self.role, RoleState::Leader(_)) {
                self.leader = Some(from);
                self.last_leader_contact = self.now;
                self.backoff_exp = 0;
                self.election_deadline = self.now + self.random_election_timeout();
            }
        }
    }

    /// Leaves a campaign or leadership whose ballot is below `ballot`.
    pub(crate) fn abandon_role_below(&mut self, ballot: Ballot) {
        let own = match &self.role {
            RoleState::Follower => return,
            RoleState::PreCandidate(c) | RoleState::Candidate(c) => c.ballot,
            RoleState::Leader(l) => l.ballot,
        };
        if own < ballot {
            self.step_down();
        }
    }
}
