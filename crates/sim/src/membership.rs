//! The operator: membership changes and leadership hand-overs at random times, under every
//! fault the seed injects.
//!
//! At exponentially distributed times during the fault phase (`Swarm::membership_mean_ms`)
//! the operator sends one request the way etcdctl does (`member add [--learner]`, `member
//! promote`, `member remove`, `move-leader`) to the current leader's replica, whose admin
//! logic (synod-replica, the server's) judges it against the member table and proposes the
//! membership: add a learner or a voter (a fresh node with an empty disk, whose id derives
//! from its peer URL as in the server; started before the request or only once the change is
//! chosen; a new voter always before), promote a running learner, remove a voter (the leader
//! included: it hands over) or a learner; or hand leadership to a random voter. Requests the
//! replica refuses (a change under way, a lagging learner) are traced; the operator tries
//! again at its next turn.
//!
//! The operator keeps liveness possible, never safety (safety holds for any membership):
//! at least `voters_min` voters (3, or 1 in a few seeds without disk corruption), new voters
//! only among running nodes, and a healthy majority of disks among the voters (corruption is
//! injected only while that stays true, `faults.rs`). A node id is never reused: a removed
//! node is stopped for good once the membership without it governs (the commit point passed
//! its effective slot, `membership_effective_slot`), and never added again.
//!
//! Housekeeping runs every [`CONTROLLER_US`] in both phases: a node whose addition was chosen
//! but that was not started yet is started; a removed one is stopped a little later.

use crate::node::{Held, Request, Ticket, OPERATOR};
use crate::simulation::{peer_url, Event, Phase, Simulation};
use crate::trace::node_name;
use bytes::Bytes;
use synod_paxos::{membership_effective_slot, Membership, NodeId, Slot};
use synod_replica::{AdminRequest, Answer, ReplicaError};

/// How often the operator's housekeeping runs.
pub(crate) const CONTROLLER_US: u64 = 3_000;
/// Longest the operator waits for its membership request to be answered and chosen before
/// it sends another (its leader may have gone down with it).
const OPERATOR_WAIT_US_MAX: u64 = 500_000;
/// Longest wait between a removal taking force and the node being stopped.
const RETIRE_DELAY_US_MAX: u64 = 30_000;

/// One change the operator may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Transfer,
    AddLearner,
    AddVoter,
    Promote,
    RemoveVoter,
    RemoveLearner,
}

impl Simulation {
    /// The newest chosen membership and the slot that chose it.
    pub(crate) fn latest_membership(&self) -> (Slot, &Membership) {
        let (slot, m) = self
            .memberships
            .last_key_value()
            .expect("slot 1's membership is known from the start");
        (*slot, m)
    }

    /// A node that was a member of some chosen membership (ids are never reused).
    fn ever_member(&self, id: NodeId) -> bool {
        self.memberships.values().any(|m| m.is_member(id))
    }

    /// A membership was delivered for the first time anywhere: chosen in `slot`.
    pub(crate) fn membership_chosen(&mut self, slot: Slot, m: Membership) {
        if self.memberships.get(&slot) == Some(&m) {
            return; // slot 1, known from the start
        }
        self.stats.membership_changes += 1;
        self.trace.emit(self.now, "OPER", || {
            format!(
                "membership chosen in slot {slot} (governs from slot {}): voters {:?} learners {:?}",
                membership_effective_slot(slot),
                m.voters(),
                m.learners()
            )
        });
        let same = |p: &Membership| p.voters() == m.voters() && p.learners() == m.learners();
        if self.proposed.as_ref().is_some_and(same) {
            self.proposed = None;
        }
        self.memberships.insert(slot, m);
        if self.phase == Phase::Faults && self.rng.chance(self.swarm.churn_after_change) {
            let delay = self.rng.range(0, 3_000);
            self.schedule(self.now + delay, Event::Churn);
        }
    }

    /// Leader churn right after a change: the leader is crashed (within the node-fault cap)
    /// or cut off, while slots it proposed under the old membership may still be in flight.
    pub(crate) fn churn(&mut self) {
        if self.phase != Phase::Faults {
            return;
        }
        let Some(leader) = self.current_leader() else {
            return;
        };
        let duration = self.rng.range(1_000, self.swarm.fault_len_ms_max * 1000);
        self.stats.faults += 1;
        if self.node_faults() < self.swarm.node_faults_max && self.rng.chance(0.6) {
            self.trace.emit(self.now, "OPER", || {
                format!("churn: crash leader n{leader}")
            });
            self.crash_node(leader, duration);
        } else {
            self.isolate(leader, duration, "churn after a membership change");
        }
    }

    /// The operator's turn: one membership change or hand-over, asked of the leader.
    pub(crate) fn operator_action(&mut self) {
        if self.phase != Phase::Faults {
            return;
        }
        let mean = self
            .swarm
            .membership_mean_ms
            .expect("scheduled only when on");
        let gap = self.rng.exponential(mean * 1000).max(1);
        self.schedule(self.now + gap, Event::Membership);
        let Some(leader) = self.current_leader() else {
            return;
        };
        let Some(current) = self.node(leader).engine().and_then(|e| e.status().members) else {
            return;
        };
        let action = match self.rng.below(100) {
            0..=14 => Action::Transfer,
            15..=34 => Action::AddLearner,
            35..=44 => Action::AddVoter,
            45..=64 => Action::Promote,
            65..=84 => Action::RemoveVoter,
            _ => Action::RemoveLearner,
        };
        if action == Action::Transfer {
            let voters: Vec<NodeId> = current
                .voters()
                .iter()
                .copied()
                .filter(|&v| v != leader && self.node(v).is_running())
                .collect();
            if voters.is_empty() {
                return;
            }
            let to = self.rng.pick(&voters);
            self.stats.transfers += 1;
            self.trace.emit(self.now, "OPER", || {
                format!("ask n{leader} to hand leadership to n{to}")
            });
            let ticket = self.operator_ticket();
            self.input(leader, Held::Request(Request::MoveLeader { ticket, to }));
            return;
        }
        // One membership request at a time, as an operator running etcdctl does: the replica
        // queues valid requests and proposes them one after another, each judged against
        // the table then in force, so two sent at once could add up to a membership this
        // operator never vetted. It waits until the last one is answered (or its leader
        // went down with it) and chosen.
        if self.proposed.is_some() && self.operator_waiting_until > self.now {
            return;
        }
        let Some((request, next)) = self.plan(action, &current) else {
            return;
        };
        if !self.allowed(&current, &next) {
            return;
        }
        self.trace.emit(self.now, "OPER", || {
            format!(
                "{action:?}: ask n{leader} for voters {:?} learners {:?} (now {:?} / {:?})",
                next.voters(),
                next.learners(),
                current.voters(),
                current.learners()
            )
        });
        self.proposed = Some(next);
        self.operator_waiting_until = self.now + OPERATOR_WAIT_US_MAX;
        let ticket = self.operator_ticket();
        self.input(leader, Held::Request(Request::Admin { ticket, request }));
    }

    fn operator_ticket(&mut self) -> Ticket {
        self.operator_requests += 1;
        Ticket {
            client: OPERATOR,
            op: self.operator_requests,
        }
    }

    /// A replica answered the operator.
    pub(crate) fn operator_answered(
        &mut self,
        node: NodeId,
        ticket: Ticket,
        result: Result<Answer, ReplicaError>,
    ) {
        let outcome = match &result {
            Ok(Answer::Members(table)) => format!(
                "ok: voters {:?} learners {:?}",
                table.voters(),
                table.learners()
            ),
            Ok(other) => format!("ok: {other:?}"),
            Err(e) => format!("refused: {e}"),
        };
        if result.is_err() {
            self.stats.admin_refused += 1;
            // Refused: nothing of it will be proposed.
            self.proposed = None;
        }
        self.trace.emit(self.now, "OPER", || {
            format!(
                "request #{} answered by {}: {outcome}",
                ticket.op,
                node_name(node)
            )
        });
    }

    /// The request for `action` and the membership it leads to from `current`, if it
    /// applies.
    fn plan(&mut self, action: Action, current: &Membership) -> Option<(AdminRequest, Membership)> {
        let voters = current.voters().to_vec();
        let learners = current.learners().to_vec();
        let running_learners: Vec<NodeId> = learners
            .iter()
            .copied()
            .filter(|&l| self.node(l).is_running())
            .collect();
        let with = |v: Vec<NodeId>, l: Vec<NodeId>| Membership::with_learners(v, l, Bytes::new());
        match action {
            Action::Transfer => None,
            Action::AddLearner | Action::AddVoter => {
                let learner = action == Action::AddLearner;
                // A new voter must be running: start it now.
                let start = !learner || self.rng.chance(0.5);
                let id = self.new_member(start)?;
                let peer_urls = vec![peer_url(self.ix(id) as u64 + 1)];
                let request = AdminRequest::Add { peer_urls, learner };
                let next = if learner {
                    with(voters, learners.into_iter().chain([id]).collect())
                } else {
                    with(voters.into_iter().chain([id]).collect(), learners)
                };
                Some((request, next?))
            }
            Action::Promote => {
                if running_learners.is_empty() {
                    return self.plan(Action::AddLearner, current);
                }
                let l = self.rng.pick(&running_learners);
                let next = with(
                    voters.into_iter().chain([l]).collect(),
                    learners.into_iter().filter(|&x| x != l).collect(),
                );
                Some((AdminRequest::Promote { id: l }, next?))
            }
            Action::RemoveVoter => {
                let x = self.rng.pick(&voters);
                let next = with(voters.into_iter().filter(|&v| v != x).collect(), learners);
                Some((AdminRequest::Remove { id: x }, next?))
            }
            Action::RemoveLearner => {
                if learners.is_empty() {
                    return None;
                }
                let x = self.rng.pick(&learners);
                let next = with(voters, learners.into_iter().filter(|&l| l != x).collect());
                Some((AdminRequest::Remove { id: x }, next?))
            }
        }
    }

    /// A node to add: a spare (created earlier, never a member: its addition was not
    /// chosen), else a fresh id while fewer than `nodes_max` exist. Started now if `start`.
    fn new_member(&mut self, start: bool) -> Option<NodeId> {
        let spare = self
            .nodes
            .iter()
            .map(|n| n.id)
            .find(|&id| !self.node_ref(id).retired && !self.ever_member(id));
        let id = match spare {
            Some(id) => id,
            None if (self.nodes.len() as u64) < self.swarm.nodes_max => {
                let id = self.create_node();
                self.trace.emit(self.now, "OPER", || {
                    format!("new node n{id} with an empty disk")
                });
                id
            }
            None => return None,
        };
        if start && !self.node_ref(id).launched {
            self.launch(id);
        }
        Some(id)
    }

    fn node_ref(&self, id: NodeId) -> &crate::node::Node {
        &self.nodes[self.ix(id)]
    }

    /// Starts a node for the first time.
    fn launch(&mut self, id: NodeId) {
        let now = self.now;
        self.node(id).launch(now);
        self.trace.emit(self.now, &node_name(id), || {
            "START (empty disk)".to_string()
        });
        self.start_ticking(id);
        self.poke(id);
    }

    /// What keeps liveness possible (safety needs none of it): enough voters, new voters
    /// running, a healthy majority of disks among the voters, no id ever reused.
    fn allowed(&self, current: &Membership, next: &Membership) -> bool {
        let voters = next.voters();
        let min = self.swarm.voters_min.min(current.voters().len());
        if voters.len() < min.max(1) {
            return false;
        }
        let fresh_voters_run = voters
            .iter()
            .filter(|v| !current.is_voter(**v))
            .all(|&v| self.node_ref(v).is_running());
        let healthy = voters.iter().filter(|&&v| self.is_healthy(v)).count();
        let reused = next
            .members()
            .any(|n| !current.is_member(n) && (self.ever_member(n) || self.node_ref(n).retired));
        fresh_voters_run && healthy > voters.len() / 2 && !reused && next != current
    }

    /// Housekeeping: start nodes whose addition is chosen, stop removed ones once the
    /// membership without them governs.
    pub(crate) fn controller_duty(&mut self) {
        if self.phase == Phase::Done {
            return;
        }
        self.schedule(self.now + CONTROLLER_US, Event::Controller);
        let (_, latest) = self.latest_membership();
        let latest = latest.clone();
        let ids: Vec<NodeId> = self.nodes.iter().map(|n| n.id).collect();
        for id in ids {
            let n = self.node_ref(id);
            if n.retired || n.refused.is_some() {
                continue;
            }
            // A removed node stops once its engine says it is no longer needed (the
            // membership without it governs and no leader or candidate needs it).
            let retired = n.engine().is_some_and(|e| e.retired());
            if latest.is_member(id) && !n.launched {
                self.launch(id);
            } else if !latest.is_member(id) && retired && self.ever_member(id) {
                let delay = self.rng.range(0, RETIRE_DELAY_US_MAX);
                self.node(id).retired = true; // no restart from here on
                self.schedule(self.now + delay, Event::Retire(id));
            }
        }
    }

    /// A removed node's process stops for good.
    pub(crate) fn retire(&mut self, id: NodeId) {
        self.stats.nodes_retired += 1;
        self.trace.emit(self.now, &node_name(id), || {
            "STOP for good: removed from the cluster".to_string()
        });
        self.node(id).retire();
    }
}
