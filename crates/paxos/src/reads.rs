//! Linearizable reads. The leader picks a read point at least as high as every write
//! acknowledged before the read began (its commit point, and never below its election no-op),
//! then confirms it is still leader: by a heartbeat round a quorum acknowledges after the read
//! arrived, or (lease mode) by holding a lease. A follower asks the leader for the read point
//! and serves once it has applied that far; reads that arrive before its request has left
//! (within one `Ready`) share it, since the leader picks the point only once the request
//! reaches it, after all of them began.

use crate::config::ReadMode;
use crate::engine::{Engine, RoleState};
use crate::message::Body;
use crate::ready::{ReadError, ReadId};
use crate::types::{NodeId, Slot};
use std::collections::BTreeMap;

#[derive(Debug)]
pub(crate) enum ReadOrigin {
    Local(ReadId),
    Remote { node: NodeId, request: u64 },
}

/// A read at the leader waiting for a heartbeat round to confirm leadership.
#[derive(Debug)]
pub(crate) struct PendingRead {
    origin: ReadOrigin,
    read_index: Slot,
    /// The first round sent after the read arrived; its confirmation confirms the read.
    round_needed: u64,
}

/// Reads waiting on one ReadIndex request to the leader.
#[derive(Debug)]
struct RemoteRequest {
    reads: Vec<ReadId>,
    /// When it was sent (ticks).
    sent: u64,
}

#[derive(Debug)]
pub(crate) struct FollowerReads {
    /// Requests sent to the leader, by request id.
    remote: BTreeMap<u64, RemoteRequest>,
    /// Reads in `remote`, all requests together (bounded by `pending_reads_max`).
    remote_reads: usize,
    /// The request still in the outbox (not yet handed out in a `Ready`) and the leader it
    /// goes to: a read arriving now may join it.
    open: Option<(u64, NodeId)>,
    /// Starts at a random point drawn from this incarnation's seed, so that a late reply to
    /// a request from before a restart does not match one sent after it (request ids kept
    /// in memory only would otherwise restart at zero).
    next_request: u64,
    /// Confirmed reads waiting for the state machine to apply up to their read point.
    waiting_apply: Vec<(ReadId, Slot)>,
}

impl FollowerReads {
    pub(crate) fn new(first_request: u64) -> Self {
        FollowerReads {
            remote: BTreeMap::new(),
            remote_reads: 0,
            open: None,
            next_request: first_request,
            waiting_apply: Vec::new(),
        }
    }
}

impl Engine {
    pub(crate) fn lease_held(&self) -> bool {
        matches!(&self.role, RoleState::Leader(l) if self.now < l.lease_until)
    }

    fn reads_pending(&self) -> usize {
        let at_leader = match &self.role {
            RoleState::Leader(l) => l.reads.len(),
            _ => 0,
        };
        at_leader + self.reads.remote_reads + self.reads.waiting_apply.len()
    }

    pub(crate) fn start_read(&mut self, id: ReadId) {
        if self.reads_pending() >= self.cfg.pending_reads_max {
            self.out.reads_failed.push((id, ReadError::Busy));
            return;
        }
        if matches!(self.role, RoleState::Leader(_)) {
            self.leader_read(ReadOrigin::Local(id));
            return;
        }
        match self.leader {
            Some(leader) if leader != self.id => {
                self.reads.remote_reads += 1;
                if let Some((request, to)) = self.reads.open {
                    if to == leader {
                        // Its message has not left yet: the leader will pick the read point
                        // after this read began, as it must.
                        let joined = self
                            .reads
                            .remote
                            .get_mut(&request)
                            .expect("the open request is pending until its Ready is taken");
                        joined.reads.push(id);
                        return;
                    }
                }
                let request = self.reads.next_request;
                self.reads.next_request = self.reads.next_request.wrapping_add(1);
                let pending = RemoteRequest {
                    reads: vec![id],
                    sent: self.now,
                };
                self.reads.remote.insert(request, pending);
                self.reads.open = Some((request, leader));
                self.send(leader, Body::ReadIndex { request });
            }
            _ => self.out.reads_failed.push((id, ReadError::NoLeader)),
        }
    }

    fn leader_read(&mut self, origin: ReadOrigin) {
        let lease = self.cfg.read_mode == ReadMode::Lease && self.lease_held();
        let commit = self.log.commit();
        let RoleState::Leader(l) = &mut self.role else {
            unreachable!("checked by callers");
        };
        // Every write acknowledged before now is chosen at or below the commit point, or (just
        // after an election) at or below the closing no-op of phase 1.
        let read_index = commit.max(l.serving_from);
        if lease {
            self.confirmed_read(origin, read_index);
            return;
        }
        l.reads.push(PendingRead {
            origin,
            read_index,
            round_needed: l.round + 1,
        });
        l.round_wanted = true;
    }

    fn confirmed_read(&mut self, origin: ReadOrigin, read_index: Slot) {
        match origin {
            ReadOrigin::Local(id) => {
                self.reads.waiting_apply.push((id, read_index));
                self.release_applied_reads();
            }
            ReadOrigin::Remote { node, request } => {
                let read_index = Some(read_index);
                self.send(
                    node,
                    Body::ReadIndexReply {
                        request,
                        read_index,
                    },
                );
            }
        }
    }

    pub(crate) fn on_read_index(&mut self, from: NodeId, request: u64) {
        if matches!(self.role, RoleState::Leader(_)) {
            self.leader_read(ReadOrigin::Remote {
                node: from,
                request,
            });
        } else {
            self.send(
                from,
                Body::ReadIndexReply {
                    request,
                    read_index: None,
                },
            );
        }
    }

    pub(crate) fn on_read_index_reply(&mut self, request: u64, read_index: Option<Slot>) {
        let Some(answered) = self.reads.remote.remove(&request) else {
            return; // timed out already, or a duplicate
        };
        self.reads.remote_reads -= answered.reads.len();
        if self.reads.open.is_some_and(|(open, _)| open == request) {
            self.reads.open = None; // answered before it was even taken: start afresh
        }
        match read_index {
            Some(index) => {
                let waiting = answered.reads.into_iter().map(|id| (id, index));
                self.reads.waiting_apply.extend(waiting);
                self.release_applied_reads();
            }
            None => {
                let failed = answered
                    .reads
                    .into_iter()
                    .map(|id| (id, ReadError::NoLeader));
                self.out.reads_failed.extend(failed);
            }
        }
    }

    /// The outbox was handed out: the open request has left, later reads need a new one.
    pub(crate) fn close_read_request(&mut self) {
        if self
            .cfg
            .bug(crate::config::PlantedBug::FollowerReadJoinsSentRequest)
        {
            return; // left open until answered: later reads join a request already sent
        }
        self.reads.open = None;
    }

    /// Releases the leader's reads whose round a quorum has now acknowledged.
    pub(crate) fn release_confirmed_reads(&mut self) {
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        let confirmed = l.confirmed_round;
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut l.reads)
            .into_iter()
            .partition(|r| r.round_needed <= confirmed);
        l.reads = waiting;
        for r in done {
            self.confirmed_read(r.origin, r.read_index);
        }
    }

    pub(crate) fn release_applied_reads(&mut self) {
        let applied = self.applied;
        let out = &mut self.out;
        self.reads.waiting_apply.retain(|&(id, index)| {
            if index <= applied {
                out.reads_ready.push(id);
                false
            } else {
                true
            }
        });
    }

    /// A deposed leader can confirm nothing more.
    pub(crate) fn fail_leader_reads(&mut self) {
        let RoleState::Leader(l) = &mut self.role else {
            return;
        };
        for r in std::mem::take(&mut l.reads) {
            match r.origin {
                ReadOrigin::Local(id) => self.out.reads_failed.push((id, ReadError::NoLeader)),
                ReadOrigin::Remote { node, request } => self.out.send(crate::message::Message {
                    from: self.id,
                    to: node,
                    body: Body::ReadIndexReply {
                        request,
                        read_index: None,
                    },
                }),
            }
        }
    }

    /// Requests to a leader that never answered fail after an election timeout.
    pub(crate) fn tick_reads(&mut self) {
        let deadline = self.now.saturating_sub(self.cfg.election_timeout_ticks);
        let out = &mut self.out;
        let reads = &mut self.reads;
        reads.remote.retain(|&request, pending| {
            if pending.sent >= deadline {
                return true;
            }
            reads.remote_reads -= pending.reads.len();
            if reads.open.is_some_and(|(open, _)| open == request) {
                reads.open = None;
            }
            let failed = pending.reads.drain(..).map(|id| (id, ReadError::Timeout));
            out.reads_failed.extend(failed);
            false
        });
    }
}
