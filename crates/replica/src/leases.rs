//! Leases at the replica: keep-alives and time-to-live questions (answered by the leader
//! after a read barrier, forwarded there by followers), the leader's promotion through its
//! lease epoch, and expiries proposed through the log. Grants and client revokes are plain
//! writes (`Replica::write`); what they did reaches [`Replica::on_lease_applied`].
//! Why this is safe: lessor.rs and docs/design/WATCH_LEASE.md, section 3.

use crate::effects::Answer;
use crate::error::ReplicaError;
use crate::lease_wire::{LeaseAsk, LeaseMessage, LeaseReply};
use crate::lessor::{Lessor, Renewal};
use crate::replica::Replica;
use crate::{Time, Waiter};
use std::collections::BTreeMap;
use synod_kv::{LeaseApplied, LeaseEpoch, LeaseRevokeRequest, Request};
use synod_paxos::{AppMessage, Ballot, NodeId, ReadId, Role};

/// Lease questions one member holds at once: waiting for a read barrier, for the
/// promotion, for a revoke, or forwarded to the leader (each bound separately). Beyond it
/// they are refused with "too many requests".
pub const LEASE_ASKS_MAX: usize = 65_536;

/// Who waits for a lease answer: a client here, or a follower that forwarded the question.
#[derive(Debug)]
enum LeaseWaiter<W> {
    Local(W),
    Remote { from: NodeId, id: u64 },
}

/// A question the leader answers once a read barrier started at `arrived` has passed.
#[derive(Debug)]
struct LeaseOp<W> {
    ask: LeaseAsk,
    /// Time-to-live: list the lease's keys.
    keys: bool,
    waiter: LeaseWaiter<W>,
    arrived: Time,
}

/// A question this follower forwarded to the leader (or will, once one is known).
#[derive(Debug)]
struct Forwarded<W> {
    ask: LeaseAsk,
    keys: bool,
    waiter: W,
    deadline: Time,
    sent_to: Option<NodeId>,
    /// Not sent again before this (a leader that just refused it is not asked again at once).
    not_before: Time,
}

#[derive(Debug)]
pub(crate) struct Leases<W> {
    pub(crate) lessor: Lessor,
    /// Questions waiting for their read barrier.
    barriers: BTreeMap<ReadId, LeaseOp<W>>,
    /// Questions whose barrier passed before this leader's promotion.
    awaiting_promotion: Vec<LeaseOp<W>>,
    /// Keep-alives of leases whose expiry is in flight: answered TTL 0 once revoked.
    parked: BTreeMap<i64, Vec<LeaseOp<W>>>,
    forwarded: BTreeMap<u64, Forwarded<W>>,
    next_ask: u64,
    /// The tenure (leader ballot) this member's lease state belongs to; `None` unless leading.
    tenure: Option<Ballot>,
    /// When this tenure's epoch was last proposed.
    epoch_proposed_at: Option<Time>,
}

impl<W> Leases<W> {
    /// `incarnation` seeds the ids of forwarded questions, so answers meant for an earlier
    /// start of this member are never taken for answers to this one's.
    pub(crate) fn new(lessor: Lessor, incarnation: u64) -> Leases<W> {
        Leases {
            lessor,
            barriers: BTreeMap::new(),
            awaiting_promotion: Vec::new(),
            parked: BTreeMap::new(),
            forwarded: BTreeMap::new(),
            next_ask: incarnation.wrapping_shl(32),
            tenure: None,
            epoch_proposed_at: None,
        }
    }

    fn held(&self) -> usize {
        self.barriers.len()
            + self.awaiting_promotion.len()
            + self.parked.values().map(Vec::len).sum::<usize>()
    }
}

fn epoch_of(ballot: Ballot) -> LeaseEpoch {
    LeaseEpoch {
        round: ballot.round,
        node: ballot.node,
    }
}

impl<W: Waiter> Replica<W> {
    /// etcd's LeaseKeepAlive (one request of the stream): answered with the granted TTL once
    /// the leader renewed the lease, 0 if it does not exist. Followers forward it.
    pub fn lease_keep_alive(&mut self, id: i64, waiter: W) {
        self.lease_ask(LeaseAsk::KeepAlive(id), false, waiter);
    }

    /// etcd's LeaseTimeToLive: the remaining TTL as the leader sees it (-1 if the lease does
    /// not exist), the granted TTL, and the attached keys if `keys`.
    pub fn lease_time_to_live(&mut self, id: i64, keys: bool, waiter: W) {
        self.lease_ask(LeaseAsk::TimeToLive(id), keys, waiter);
    }

    /// etcd's LeaseLeases: every lease of this member's applied store, by id.
    pub fn lease_leases(&mut self, waiter: W) {
        let ids = self.kv.leases().map(|(id, _)| id).collect();
        self.fx.answers.push((waiter, Ok(Answer::Leases(ids))));
    }

    fn lease_ask(&mut self, ask: LeaseAsk, keys: bool, waiter: W) {
        if self.engine.role() == Role::Leader {
            let op = LeaseOp {
                ask,
                keys,
                waiter: LeaseWaiter::Local(waiter),
                arrived: self.now,
            };
            self.lease_confirm(op);
            return;
        }
        if self.leases.forwarded.len() >= LEASE_ASKS_MAX {
            self.fx
                .answers
                .push((waiter, Err(ReplicaError::TooManyRequests)));
            return;
        }
        let id = self.leases.next_ask;
        self.leases.next_ask = id.wrapping_add(1);
        let leader = self.engine.leader();
        let forwarded = Forwarded {
            ask,
            keys,
            waiter,
            deadline: self.now + self.cfg.request_timeout,
            sent_to: leader,
            not_before: self.now,
        };
        self.leases.forwarded.insert(id, forwarded);
        if let Some(leader) = leader {
            self.send_lease(leader, LeaseMessage::Ask { id, ask });
        }
    }

    /// Answers a question at this leader once it is confirmed (a read barrier).
    fn lease_confirm(&mut self, op: LeaseOp<W>) {
        if self
            .cfg
            .planted
            .is(crate::ReplicaBug::KeepAliveWithoutLeadership)
            && matches!(op.ask, LeaseAsk::KeepAlive(_))
        {
            self.keep_alive_unconfirmed(op);
            return;
        }
        self.lease_barrier(op);
    }

    /// Planted bug: a keep-alive acknowledged at once, as if this member surely led.
    fn keep_alive_unconfirmed(&mut self, op: LeaseOp<W>) {
        if self.leases.lessor.is_promoted() {
            self.lease_answer(op);
            return;
        }
        let LeaseAsk::KeepAlive(id) = op.ask else {
            return;
        };
        let ttl = self.kv.lease(id).unwrap_or(0);
        self.lease_reply(op, Ok((ttl, ttl)));
    }

    /// Starts the read barrier that confirms this member still leads now.
    fn lease_barrier(&mut self, op: LeaseOp<W>) {
        if self.leases.held() >= LEASE_ASKS_MAX {
            self.lease_reply(op, Err(ReplicaError::TooManyRequests));
            return;
        }
        let id = self.next_read;
        self.next_read += 1;
        self.leases.barriers.insert(id, op);
        self.engine.read_barrier(id);
    }

    /// A read barrier passed; false if it was not a lease question's.
    pub(crate) fn lease_barrier_passed(&mut self, id: ReadId) -> bool {
        let Some(op) = self.leases.barriers.remove(&id) else {
            return false;
        };
        if self.engine.role() != Role::Leader {
            self.lease_reply(op, Err(ReplicaError::LeaderChanged));
        } else if self.leases.lessor.is_promoted() {
            self.lease_answer(op);
        } else {
            // Leadership confirmed, but the deadlines of this tenure start only once its
            // epoch is applied.
            self.leases.awaiting_promotion.push(op);
        }
        true
    }

    /// A read barrier failed; false if it was not a lease question's.
    pub(crate) fn lease_barrier_failed(&mut self, id: ReadId, error: ReplicaError) -> bool {
        let Some(op) = self.leases.barriers.remove(&id) else {
            return false;
        };
        self.lease_reply(op, Err(error));
        true
    }

    /// Answers a confirmed question at the promoted leader.
    fn lease_answer(&mut self, op: LeaseOp<W>) {
        let now = self.now;
        match op.ask {
            LeaseAsk::KeepAlive(id) => {
                let ttl = self.kv.lease(id);
                match self.leases.lessor.renew(now, op.arrived, id, ttl) {
                    Renewal::Renewed(ttl) => self.lease_reply(op, Ok((ttl, ttl))),
                    Renewal::Unknown => self.lease_reply(op, Ok((0, 0))),
                    Renewal::Expiring => self.leases.parked.entry(id).or_default().push(op),
                }
            }
            LeaseAsk::TimeToLive(id) => {
                let reply = match self.kv.lease(id) {
                    None => (-1, 0),
                    Some(granted) => {
                        let left = self.leases.lessor.remaining(now, id).unwrap_or(granted);
                        (left, granted)
                    }
                };
                self.lease_reply(op, Ok(reply));
            }
        }
    }

    fn lease_reply(&mut self, op: LeaseOp<W>, reply: LeaseReply) {
        match op.waiter {
            LeaseWaiter::Local(waiter) => {
                let answer =
                    reply.map(|(ttl, granted)| self.lease_result(op.ask, op.keys, ttl, granted));
                self.fx.answers.push((waiter, answer));
            }
            LeaseWaiter::Remote { from, id } => {
                self.send_lease(from, LeaseMessage::Answer { id, reply });
            }
        }
    }

    /// The client's answer. Time-to-live keys come from this member's store (a follower's
    /// may trail the leader's by what it has not applied yet).
    fn lease_result(&self, ask: LeaseAsk, keys: bool, ttl: i64, granted: i64) -> Answer {
        match ask {
            LeaseAsk::KeepAlive(id) => Answer::LeaseKeepAlive { id, ttl },
            LeaseAsk::TimeToLive(id) => Answer::LeaseTimeToLive {
                id,
                ttl,
                granted_ttl: granted,
                keys: if keys && ttl >= 0 {
                    self.kv.lease_keys(id)
                } else {
                    Vec::new()
                },
            },
        }
    }

    fn send_lease(&mut self, to: NodeId, message: LeaseMessage) {
        // Both messages are a few dozen bytes, far below the engine's bound.
        let _ = self.engine.send_app(to, message.encode());
    }

    /// Lease messages from peers (or from this member to itself).
    pub(crate) fn receive_app(&mut self, messages: Vec<AppMessage>) {
        for m in messages {
            match LeaseMessage::decode(&m.data) {
                Some(LeaseMessage::Ask { id, ask }) => {
                    let op = LeaseOp {
                        ask,
                        keys: false,
                        waiter: LeaseWaiter::Remote { from: m.from, id },
                        arrived: self.now,
                    };
                    if self.engine.role() == Role::Leader {
                        self.lease_confirm(op);
                    } else {
                        self.lease_reply(op, Err(ReplicaError::LeaderChanged));
                    }
                }
                Some(LeaseMessage::Answer { id, reply }) => self.lease_answered(id, reply),
                None => tracing::debug!(from = m.from, "dropped an undecodable lease message"),
            }
        }
    }

    /// The leader answered a forwarded question: to the client, or, if the leader changed
    /// on the way, sent again to the next one (until the request timeout).
    fn lease_answered(&mut self, id: u64, reply: LeaseReply) {
        let Some(f) = self.leases.forwarded.remove(&id) else {
            return; // answered already, or timed out
        };
        match reply {
            Err(ReplicaError::LeaderChanged | ReplicaError::NoLeader) => {
                // Asked again after a heartbeat interval (by then this member may know the
                // new leader), under a fresh id: a duplicated or late answer to this ask
                // then finds nothing, rather than sending the question again (the
                // simulator found questions multiplying between two members that way).
                let retry = Forwarded {
                    sent_to: None,
                    not_before: self.now + self.lease_retry_interval(),
                    ..f
                };
                let fresh = self.leases.next_ask;
                self.leases.next_ask = fresh.wrapping_add(1);
                self.leases.forwarded.insert(fresh, retry);
            }
            reply => {
                let answer =
                    reply.map(|(ttl, granted)| self.lease_result(f.ask, f.keys, ttl, granted));
                self.fx.answers.push((f.waiter, answer));
            }
        }
    }

    /// A lease command took effect in the store.
    pub(crate) fn on_lease_applied(&mut self, applied: LeaseApplied) {
        let now = self.now;
        match applied {
            LeaseApplied::Granted { id, ttl } => self.leases.lessor.granted(now, id, ttl),
            LeaseApplied::Revoked { id } => {
                self.observer.lease_revoked(id);
                self.leases.lessor.revoked(id);
                for op in self.leases.parked.remove(&id).unwrap_or_default() {
                    self.lease_reply(op, Ok((0, 0)));
                }
            }
            LeaseApplied::Epoch(epoch) => {
                let ours = self.leases.tenure.filter(|b| epoch_of(*b) == epoch);
                let still_leading = ours.is_some() && self.engine.leader_ballot() == ours;
                if still_leading && self.kv.lease_epoch() == epoch {
                    self.promote_lessor();
                }
            }
        }
    }

    fn promote_lessor(&mut self) {
        let leases: Vec<(i64, i64)> = self.kv.leases().collect();
        self.leases.lessor.promote(self.now, leases);
        tracing::debug!(leases = self.kv.leases().count(), "lessor promoted");
        for op in std::mem::take(&mut self.leases.awaiting_promotion) {
            self.lease_answer(op);
        }
    }

    /// The store was replaced by a snapshot: a promoted leader restarts every deadline from
    /// now (longer, never shorter, than what it had promised).
    pub(crate) fn leases_store_replaced(&mut self) {
        if self.leases.lessor.is_promoted() {
            self.promote_lessor();
        }
    }

    /// Per turn: a new tenure proposes its epoch, an ended one drops its deadlines and the
    /// questions that depended on it.
    pub(crate) fn lease_tenure(&mut self) {
        #[cfg(feature = "planted-bugs")]
        self.leases.lessor.plant(self.cfg.planted);
        let ballot = self.engine.leader_ballot();
        if ballot != self.leases.tenure {
            if self.leases.tenure.is_some() {
                self.demote_lessor(ReplicaError::LeaderChanged);
            }
            self.leases.tenure = ballot;
            self.leases.epoch_proposed_at = None;
        }
        let Some(ballot) = ballot else {
            return;
        };
        if self.leases.lessor.is_promoted() {
            return;
        }
        let due = self
            .leases
            .epoch_proposed_at
            .is_none_or(|at| self.now.saturating_sub(at) >= self.cfg.request_timeout);
        if due {
            self.leases.epoch_proposed_at = Some(self.now);
            let request = Request::LeaseEpoch(epoch_of(ballot));
            self.propose(synod_kv::encode_request(&request), None);
        }
    }

    fn demote_lessor(&mut self, error: ReplicaError) {
        self.leases.lessor.demote();
        let mut ops = std::mem::take(&mut self.leases.awaiting_promotion);
        for (_, parked) in std::mem::take(&mut self.leases.parked) {
            ops.extend(parked);
        }
        for op in ops {
            self.lease_reply(op, Err(error.clone()));
        }
    }

    /// Timers: expiries due at the promoted leader, forwarded questions sent to a newly
    /// known leader or timed out.
    pub(crate) fn lease_timers(&mut self) {
        if let (Some(ballot), true) = (self.leases.tenure, self.leases.lessor.is_promoted()) {
            let epoch = epoch_of(ballot);
            for id in self.leases.lessor.due(self.now, self.cfg.request_timeout) {
                tracing::debug!(lease = id, "lease expired");
                self.observer.lease_expiry_proposed(id, epoch);
                let revoke = LeaseRevokeRequest {
                    id,
                    expiry: Some(epoch),
                };
                self.propose(
                    synod_kv::encode_request(&Request::LeaseRevoke(revoke)),
                    None,
                );
            }
        }
        self.forward_or_expire();
    }

    /// How long a refused forwarded question waits before it is asked again.
    fn lease_retry_interval(&self) -> std::time::Duration {
        let ticks = u32::try_from(self.cfg.engine.heartbeat_interval_ticks).unwrap_or(u32::MAX);
        self.cfg.tick.saturating_mul(ticks)
    }

    fn forward_or_expire(&mut self) {
        let now = self.now;
        let expired: Vec<u64> = self
            .leases
            .forwarded
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(f) = self.leases.forwarded.remove(&id) {
                self.fx.answers.push((f.waiter, Err(ReplicaError::Timeout)));
            }
        }
        let Some(leader) = self.engine.leader() else {
            return;
        };
        let unsent: Vec<u64> = self
            .leases
            .forwarded
            .iter()
            .filter(|(_, f)| f.sent_to != Some(leader) && f.not_before <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in unsent {
            let Some(f) = self.leases.forwarded.get_mut(&id) else {
                continue;
            };
            f.sent_to = Some(leader);
            let ask = f.ask;
            self.send_lease(leader, LeaseMessage::Ask { id, ask });
        }
    }

    /// The replica stops: every lease question waiting here fails.
    pub(crate) fn stop_leases(&mut self) {
        let ops: Vec<LeaseOp<W>> = std::mem::take(&mut self.leases.barriers)
            .into_values()
            .chain(std::mem::take(&mut self.leases.awaiting_promotion))
            .chain(
                std::mem::take(&mut self.leases.parked)
                    .into_values()
                    .flatten(),
            )
            .collect();
        for op in ops {
            if let LeaseWaiter::Local(waiter) = op.waiter {
                self.fx.answers.push((waiter, Err(ReplicaError::Stopped)));
            }
        }
        for (_, f) in std::mem::take(&mut self.leases.forwarded) {
            self.fx.answers.push((f.waiter, Err(ReplicaError::Stopped)));
        }
    }
}
