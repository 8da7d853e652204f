//! Writes: proposing a client's request, applying chosen commands to the store and answering
//! the clients that wait for them here, and failing those whose outcome became unknown.

use crate::effects::{Answer, Count, ReadJob};
use crate::error::ReplicaError;
use crate::reads::INLINE_READ_WORK_MAX;
use crate::replica::Replica;
use crate::{Time, Waiter};
use bytes::Bytes;
use synod_kv::Reads;
use synod_paxos::{Command, NodeId, ProposeError, Role, Slot, Value};

/// A write waiting for its slot to be chosen and applied.
#[derive(Debug)]
pub(crate) struct PendingWrite<W> {
    /// `None`: nobody waits (a compaction this member proposed by policy).
    pub(crate) waiter: Option<W>,
    pub(crate) arrived: Time,
    /// The leader the write went to (this member, or the one it was forwarded to).
    pub(crate) leader: Option<NodeId>,
}

impl<W: Waiter> Replica<W> {
    /// Proposes an encoded `synod_kv::Request` under the next sequence of this incarnation.
    pub(crate) fn propose(&mut self, payload: Bytes, waiter: Option<W>) {
        let seq = self.next_seq;
        let command = Command {
            client_id: self.cfg.incarnation,
            seq,
            payload,
        };
        let speculative = self.acknowledge_when_proposed(&command);
        match self.engine.propose(vec![command]) {
            Ok(()) => {
                self.next_seq += 1;
                self.observer.count(Count::ProposalsSubmitted, 1);
                let waiter = match (speculative, waiter) {
                    (Some(answer), Some(w)) => {
                        self.fx.answers.push((w, answer));
                        None
                    }
                    (_, waiter) => waiter,
                };
                let leader = self.engine.leader();
                self.writes.insert(
                    seq,
                    PendingWrite {
                        waiter,
                        arrived: self.now,
                        leader,
                    },
                );
            }
            Err(e) => {
                self.observer.count(Count::ProposalsFailed, 1);
                let error = match e {
                    ProposeError::NoLeader => ReplicaError::NoLeader,
                    ProposeError::Busy => ReplicaError::TooManyRequests,
                    // Only membership proposals fail these ways; this is a command.
                    ProposeError::Empty
                    | ProposeError::NotLeader
                    | ProposeError::MembershipChanging => {
                        unreachable!("one command is proposed")
                    }
                };
                if let Some(w) = waiter {
                    self.fx.answers.push((w, Err(error)));
                }
            }
        }
    }

    /// The planted bug's answer: what applying the command to the local store now gives.
    fn acknowledge_when_proposed(&self, command: &Command) -> Option<Result<Answer, ReplicaError>> {
        if !self
            .cfg
            .planted
            .is(crate::ReplicaBug::AcknowledgesWritesWhenProposed)
        {
            return None;
        }
        let mut store = self.kv.clone();
        let applied = store.apply_encoded_with(
            command.client_id,
            command.seq,
            &command.payload,
            Reads::Within(u64::MAX),
        );
        Some(
            applied
                .outcome()
                .map(Answer::Kv)
                .map_err(ReplicaError::from),
        )
    }

    /// Applies a chosen slot: a membership becomes the member table, commands go to the
    /// store (or, admin requests, to the member table's judge), their waiting clients hear
    /// the outcome.
    pub(crate) fn apply(&mut self, slot: Slot, value: &Value) {
        self.observer.count(Count::SlotsCommitted, 1);
        let commands = match value {
            Value::Commands(commands) => commands,
            Value::Membership(m) => {
                let changed = self.admin.on_membership(m, slot, self.cfg.incarnation);
                self.members_changed(changed);
                return;
            }
            Value::Noop => return, // fills a gap
        };
        self.observer.batch_commands(commands.len());
        self.snapshots.count_applied(commands);
        for c in commands {
            if let Some(request) = crate::members::decode_request(&c.payload) {
                let origin = (c.client_id, c.seq);
                self.admin
                    .on_command(&self.engine, self.cfg.incarnation, origin, request);
                self.observer.count(Count::ProposalsApplied, 1);
                continue;
            }
            // A payload that does not decode fails the same way on every replica, so the
            // replicas stay identical; the proposer learns why. The command's reads (a Txn's
            // Range ops) are computed only for a client waiting here, and only within a
            // budget: the rest are left for the shell to run on frozen views.
            let waiting = if c.client_id == self.cfg.incarnation {
                self.writes.remove(&c.seq)
            } else {
                None
            };
            let reads = match waiting.as_ref().and_then(|w| w.waiter.as_ref()) {
                Some(w) if !w.is_gone() => Reads::Within(INLINE_READ_WORK_MAX),
                _ => Reads::Skip,
            };
            let applied = self
                .kv
                .apply_encoded_with(c.client_id, c.seq, &c.payload, reads);
            self.observer.count(Count::ProposalsApplied, 1);
            if let Some((rev, keys)) = applied.changes() {
                self.watch.on_applied(rev, &keys, &self.kv);
            }
            if let Some(lease) = applied.lease() {
                self.on_lease_applied(lease);
            }
            let Some(PendingWrite {
                waiter: Some(waiter),
                arrived,
                ..
            }) = waiting
            else {
                continue;
            };
            self.observer
                .proposal_latency(self.now.saturating_sub(arrived));
            if applied.is_replay() && answers_reads(&c.payload) {
                // A duplicate of a command chosen twice (re-proposed around a leader
                // change), whose first copy this replica did not apply itself (it came in a
                // snapshot from a peer), so the client still waits here. The store kept
                // what the command did but not what it read: answering with that would
                // report empty reads. The write happened once; what it read is not known
                // here any more, so the client hears what etcd says when a proposal's fate
                // is unclear, and reads again.
                self.fx
                    .answers
                    .push((waiter, Err(ReplicaError::LeaderChanged)));
            } else if applied.is_stale() {
                // This replica numbers its writes increasingly but keeps many in flight, so
                // one of them can be chosen after a newer one of ours and be refused as
                // stale: either it never executed, or this is a second copy of a command
                // whose first copy did execute in a slot this replica took from a
                // snapshot. Refusal says nothing about which, so the client must not hear
                // "failed": it hears that the proposal's fate is unclear.
                self.fx
                    .answers
                    .push((waiter, Err(ReplicaError::LeaderChanged)));
            } else if applied.is_complete() {
                let outcome = applied
                    .outcome()
                    .map(Answer::Kv)
                    .map_err(ReplicaError::from);
                self.fx.answers.push((waiter, outcome));
            } else {
                self.fx.reads.push(ReadJob::Complete { applied, waiter });
            }
        }
    }

    /// At the leader, proposes the compaction `--auto-compaction-*` asks for, through the
    /// log like a client's (nobody waits for its answer).
    pub(crate) fn auto_compact(&mut self) {
        if self.last_role != Role::Leader {
            return;
        }
        let (revision, compacted) = (self.kv.revision(), self.kv.compact_revision());
        let now = self.now;
        let Some(target) = self
            .compactor
            .as_mut()
            .and_then(|c| c.due(now, revision, compacted))
        else {
            return;
        };
        tracing::info!(revision = target, "auto-compaction");
        let request = synod_kv::Request::Compact(synod_kv::CompactionRequest { revision: target });
        self.propose(synod_kv::encode_request(&request), None);
    }

    /// Fails writes that waited longer than the request timeout (the client has given up;
    /// the command may still be applied later, which is why its outcome is "unknown").
    pub(crate) fn expire_writes(&mut self) {
        while let Some(entry) = self.writes.first_entry() {
            if self.now.saturating_sub(entry.get().arrived) < self.cfg.request_timeout {
                break;
            }
            let w = entry.remove();
            self.observer.count(Count::ProposalsFailed, 1);
            if let Some(waiter) = w.waiter {
                self.fx.answers.push((waiter, Err(ReplicaError::Timeout)));
            }
        }
    }

    /// Writes that went to a leader that is no longer the leader may have been lost with
    /// it (or may still be chosen by its successor): tell their clients now that the outcome
    /// is unknown, rather than at the request timeout.
    pub(crate) fn fail_orphaned_writes(&mut self, leader: Option<NodeId>) {
        let orphaned: Vec<u64> = self
            .writes
            .iter()
            .filter(|(_, w)| w.leader != leader)
            .map(|(&seq, _)| seq)
            .collect();
        for seq in orphaned {
            if let Some(w) = self.writes.remove(&seq) {
                self.observer.count(Count::ProposalsFailed, 1);
                if let Some(waiter) = w.waiter {
                    self.fx
                        .answers
                        .push((waiter, Err(ReplicaError::LeaderChanged)));
                }
            }
        }
    }
}

/// Whether the command's answer would carry what it read (see `synod_kv::Request::answers_reads`).
fn answers_reads(payload: &[u8]) -> bool {
    synod_kv::decode_request(payload).is_ok_and(|r| r.answers_reads())
}
