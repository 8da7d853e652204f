//! Membership requests (etcd's Cluster API) and leader moves, inside the replica's turn.
//!
//! A request travels as a command (`members::encode_request`), so any member can take it:
//! every replica judges it against the member table in force at its slot (same table, same
//! verdict), the leader turns a valid one into a membership proposal, and the member that
//! took it answers its client when the membership naming its request is applied (or when
//! the verdict is a refusal). See docs/SERVER.md, "Membership changes".

use crate::effects::Answer;
use crate::error::ReplicaError;
use crate::members::{AdminRequest, MemberTable};
use crate::Time;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use synod_paxos::{Engine, Membership, NodeId, ProposeError, Role, Slot, TransferError};

/// How often a member whose name or client URLs the table does not show yet asks to
/// publish them.
const PUBLISH_RETRY: Duration = Duration::from_secs(2);

/// Most valid requests the leader holds waiting for its turn (one change at a time).
const QUEUE_MAX: usize = 256;

/// A learner this far behind the leader (in slots) is not promoted (etcd: "in sync").
const PROMOTE_LAG_SLOTS_MAX: Slot = 1_000;

#[derive(Debug)]
pub(crate) struct Admin<W> {
    cluster_id: u64,
    me: NodeId,
    name: String,
    client_urls: Vec<String>,
    /// The table of the newest applied membership.
    pub(crate) table: MemberTable,
    /// Requests this member put in the log, by sequence: whom to answer (a publish has
    /// nobody), and when it gives up.
    waiting: BTreeMap<u64, (Option<W>, Time)>,
    /// At the leader: valid requests waiting for their turn, with their origin.
    queue: VecDeque<((u64, u64), AdminRequest)>,
    /// Leader moves waiting for the target to lead.
    moves: Vec<(NodeId, W, Time)>,
    last_publish: Option<Time>,
    /// Every peer of this run, removed ones too: the transport keeps them, so that a removed
    /// member that missed its removal (down or cut off then) can still be brought up to date
    /// by the leader and learn that it may stop (`Engine::retired`).
    all_peers: BTreeMap<NodeId, String>,
    /// Answers due, taken by the replica at the end of its turn.
    pub(crate) answers: Vec<(W, Result<Answer, ReplicaError>)>,
}

impl<W> Admin<W> {
    pub(crate) fn new(
        cluster_id: u64,
        me: NodeId,
        name: String,
        client_urls: Vec<String>,
        engine: &Engine,
    ) -> Admin<W> {
        let table = engine
            .members()
            .and_then(|m| MemberTable::from_membership(m).ok())
            .unwrap_or_default();
        Admin {
            cluster_id,
            me,
            name,
            client_urls,
            table,
            waiting: BTreeMap::new(),
            queue: VecDeque::new(),
            moves: Vec::new(),
            last_publish: None,
            all_peers: BTreeMap::new(),
            answers: Vec::new(),
        }
    }

    /// A client's request arrived here: check what only the leader can, then put it in the
    /// log under `seq` of this member's client id.
    pub(crate) fn submit(
        &mut self,
        engine: &mut Engine,
        client_id: u64,
        seq: u64,
        request: AdminRequest,
        reply: Option<W>,
        deadline: Time,
    ) -> Result<(), (ReplicaError, Option<W>)> {
        if let AdminRequest::Promote { id } = request {
            // Only the leader knows how far a learner got; elsewhere the check is skipped
            // (promotion is safe either way; a lagging voter only slows the cluster).
            let commit = engine.commit();
            let lag = engine
                .peer_progress()
                .into_iter()
                .find(|&(n, _)| n == id)
                .map(|(_, c)| commit.saturating_sub(c));
            if lag.is_some_and(|l| l > PROMOTE_LAG_SLOTS_MAX) {
                return Err((
                    ReplicaError::Precondition(
                        "etcdserver: can only promote a learner member which is in sync with \
                         leader"
                            .into(),
                    ),
                    reply,
                ));
            }
        }
        let command = synod_paxos::Command {
            client_id,
            seq,
            payload: crate::members::encode_request(&request),
        };
        match engine.propose(vec![command]) {
            Ok(()) => {
                self.waiting.insert(seq, (reply, deadline));
                Ok(())
            }
            Err(ProposeError::Busy) => Err((ReplicaError::TooManyRequests, reply)),
            Err(_) => Err((ReplicaError::NoLeader, reply)),
        }
    }

    /// An admin command was chosen: judge it against the table in force here (every
    /// replica reaches the same verdict); the leader queues a valid one for proposal.
    pub(crate) fn on_command(
        &mut self,
        engine: &Engine,
        our_client_id: u64,
        origin: (u64, u64),
        request: Result<AdminRequest, crate::members::DecodeError>,
    ) {
        let verdict = request
            .map_err(|e| ReplicaError::InvalidArgument(format!("bad admin request: {e}")))
            .and_then(|r| self.table.apply(self.cluster_id, &r, origin).map(|_| r));
        match verdict {
            Err(e) => {
                if origin.0 == our_client_id {
                    if let Some((Some(reply), _)) = self.waiting.remove(&origin.1) {
                        self.answers.push((reply, Err(e)));
                    }
                }
            }
            Ok(request) => {
                if engine.role() == Role::Leader && self.queue.len() < QUEUE_MAX {
                    self.queue.push_back((origin, request));
                }
            }
        }
    }

    /// At the leader, proposes the next queued change once the previous one is in force.
    /// It is judged again against the newest table (the one it will replace).
    pub(crate) fn propose_next(&mut self, engine: &mut Engine) {
        if engine.role() != Role::Leader {
            self.queue.clear();
            return;
        }
        while let Some((origin, request)) = self.queue.front().cloned() {
            let latest = engine
                .members()
                .and_then(|m| MemberTable::from_membership(m).ok())
                .unwrap_or_else(|| self.table.clone());
            let next = latest
                .apply(self.cluster_id, &request, origin)
                .and_then(|t| {
                    t.to_membership()
                        .map_err(|e| ReplicaError::Precondition(e.to_string()))
                });
            let membership: Membership = match next {
                Ok(m) => m,
                Err(e) => {
                    // Overtaken by an earlier change (say, the same member added twice).
                    tracing::info!(?request, "membership request refused at proposal: {e}");
                    self.queue.pop_front();
                    continue;
                }
            };
            match engine.propose_membership(membership) {
                Ok(()) => {
                    tracing::info!(?request, "proposed a membership change");
                    self.queue.pop_front();
                }
                Err(ProposeError::MembershipChanging) => return, // its turn comes
                Err(_) => {
                    self.queue.clear();
                    return;
                }
            }
        }
    }

    /// A membership was applied at `slot`: it becomes the table; answers the request that
    /// made it if it was taken here. Returns the table's peers for the transport.
    pub(crate) fn on_membership(
        &mut self,
        m: &Membership,
        slot: Slot,
        our_client_id: u64,
    ) -> Option<BTreeMap<NodeId, String>> {
        let table = match MemberTable::from_membership(m) {
            Ok(t) => t,
            Err(e) => {
                // Chosen, so every replica has it; it only lacks the names and URLs.
                tracing::error!(slot, "a chosen membership carries a bad member table: {e}");
                return None;
            }
        };
        if let Some((client, seq)) = table.request {
            if client == our_client_id {
                if let Some((Some(reply), _)) = self.waiting.remove(&seq) {
                    self.answers
                        .push((reply, Ok(Answer::Members(table.clone()))));
                }
            }
        }
        if table.removed.contains(&self.me) && !self.table.removed.contains(&self.me) {
            tracing::warn!(
                slot,
                "this member was removed from the cluster; it stops once the change is in force"
            );
        }
        // Members leaving stay reachable: until the membership without them governs their
        // votes still count (a removed leader still leads), and after it a removed member
        // that missed the change must still hear it (see `all_peers`).
        self.all_peers.extend(self.table.peer_addrs(self.me));
        self.all_peers.extend(table.peer_addrs(self.me));
        self.table = table;
        Some(self.all_peers.clone())
    }

    /// A snapshot from a peer replaced the state: its newest membership becomes the table
    /// (the membership values it covers are never applied here). Returns the transport's
    /// peers.
    pub(crate) fn on_snapshot(&mut self, engine: &Engine) -> Option<BTreeMap<NodeId, String>> {
        let table = MemberTable::from_membership(engine.members()?).ok()?;
        if table.removed.contains(&self.me) && !self.table.removed.contains(&self.me) {
            tracing::warn!("this member was removed from the cluster (learned from a snapshot)");
        }
        self.all_peers.extend(table.peer_addrs(self.me));
        self.table = table;
        Some(self.all_peers.clone())
    }

    /// Starts moving leadership to `to`; answered when `to` leads (see `poll`).
    pub(crate) fn move_leader(
        &mut self,
        engine: &mut Engine,
        to: NodeId,
        reply: W,
        deadline: Time,
    ) {
        match engine.transfer_leadership(to) {
            Ok(()) if to == self.me => self.answers.push((reply, Ok(Answer::LeaderMoved))),
            Ok(()) => self.moves.push((to, reply, deadline)),
            Err(TransferError::NotLeader) => {
                self.answers.push((reply, Err(ReplicaError::NotLeader)))
            }
            Err(TransferError::NotAVoter) => self.answers.push((
                reply,
                Err(ReplicaError::Precondition(
                    "etcdserver: bad leader transferee".into(),
                )),
            )),
        }
    }

    /// Answers finished or expired leader moves, expires requests, and publishes this
    /// member's name and client URLs until the table shows them.
    pub(crate) fn poll(
        &mut self,
        engine: &mut Engine,
        client_id: u64,
        next_seq: &mut u64,
        now: Time,
    ) {
        let leader = engine.leader();
        for (to, reply, deadline) in std::mem::take(&mut self.moves) {
            if leader == Some(to) {
                self.answers.push((reply, Ok(Answer::LeaderMoved)));
            } else if now >= deadline {
                self.answers.push((
                    reply,
                    Err(ReplicaError::Precondition(
                        "etcdserver: request timed out, leader transfer took too long".into(),
                    )),
                ));
            } else {
                self.moves.push((to, reply, deadline));
            }
        }
        let expired: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, (_, d))| now >= *d)
            .map(|(&s, _)| s)
            .collect();
        for seq in expired {
            if let Some((Some(reply), _)) = self.waiting.remove(&seq) {
                self.answers.push((reply, Err(ReplicaError::Timeout)));
            }
        }
        self.propose_next(engine);
        let Some(mine) = self.table.members.get(&self.me) else {
            return;
        };
        let published = mine.name == self.name && mine.client_urls == self.client_urls;
        let due = self
            .last_publish
            .is_none_or(|t| now.saturating_sub(t) >= PUBLISH_RETRY);
        if published || !due || leader.is_none() {
            return;
        }
        self.last_publish = Some(now);
        let request = AdminRequest::Publish {
            id: self.me,
            name: self.name.clone(),
            client_urls: self.client_urls.clone(),
        };
        let seq = *next_seq;
        if self
            .submit(engine, client_id, seq, request, None, now + PUBLISH_RETRY)
            .is_ok()
        {
            *next_seq += 1;
        }
    }
}

impl<W> Admin<W> {
    /// Everyone still waiting here (the replica is stopping): membership requests and leader
    /// moves alike.
    pub(crate) fn take_waiters(&mut self) -> Vec<W> {
        let waiting = std::mem::take(&mut self.waiting);
        let moves = std::mem::take(&mut self.moves);
        waiting
            .into_values()
            .filter_map(|(w, _)| w)
            .chain(moves.into_iter().map(|(_, w, _)| w))
            .collect()
    }
}
