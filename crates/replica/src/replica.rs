//! The replica: its state, its inputs and the end of a turn, where the engine's output is
//! drained into effects.

use crate::admin::Admin;
use crate::clock::Ticks;
use crate::compactor::Compactor;
use crate::config::{ReplicaConfig, StartError};
use crate::effects::{Answer, Count, Effects, Observer, Stop};
use crate::error::ReplicaError;
use crate::leases::Leases;
use crate::lessor::Lessor;
use crate::members::{AdminRequest, MemberTable};
use crate::persist::PersistJob;
use crate::snapshots::Snapshots;
use crate::watch::{StreamId, WatchHub, WatchRequest};
use crate::writes::PendingWrite;
use crate::{Time, Waiter};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use synod_kv::{KvStore, ReadRequest};
use synod_paxos::{DurableState, Engine, Message, NodeId, ReadId, Ready, Role, Slot};

/// Work (records looked at or copied) of compaction's trimming per turn (synod-kv
/// `KvStore::compact_step`): trimming 1,000,000 records of 10,000 keys took at most 1.24 ms
/// per step in a release build, where dropping them all at once took 247 ms.
const COMPACT_STEP_WORK_MAX: u64 = 10_000;

/// The state machine as restored from the newest snapshot (empty without one).
#[derive(Debug, Default)]
pub struct Restored {
    pub kv: KvStore,
    /// The snapshot itself (slot, encoded), to serve to peers that need it.
    pub latest: Option<(Slot, Bytes)>,
}

/// What the replica publishes about itself after a turn (endpoint status, metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub role: Role,
    pub leader: Option<NodeId>,
    /// The promised round (etcd's raft term).
    pub term: u64,
    pub commit_slot: Slot,
    pub applied_slot: Slot,
    pub revision: i64,
    pub db_size_bytes: u64,
    pub voters: Vec<NodeId>,
    pub lease_held: bool,
    /// Recovering a lost log tail from its peers.
    pub recovering: bool,
}

impl Default for ReplicaStatus {
    fn default() -> Self {
        ReplicaStatus {
            role: Role::Follower,
            leader: None,
            term: 0,
            commit_slot: 0,
            applied_slot: 0,
            revision: 1,
            db_size_bytes: 0,
            voters: Vec::new(),
            lease_held: false,
            recovering: false,
        }
    }
}

/// One replica, sans I/O. `W` is whoever waits for an answer (see [`Waiter`]).
#[derive(Debug)]
pub struct Replica<W> {
    pub(crate) cfg: ReplicaConfig,
    pub(crate) engine: Engine,
    /// The engine is recovering a lost log tail from its peers (serializable reads refused).
    pub(crate) recovering: bool,
    pub(crate) kv: KvStore,
    ticks: Ticks,
    /// The time of the current turn.
    pub(crate) now: Time,
    pub(crate) next_seq: u64,
    pub(crate) writes: BTreeMap<u64, PendingWrite<W>>,
    pub(crate) next_read: ReadId,
    pub(crate) reads: HashMap<ReadId, (ReadRequest, W)>,
    pub(crate) last_leader: Option<NodeId>,
    pub(crate) last_role: Role,
    pub(crate) snapshots: Snapshots,
    pub(crate) admin: Admin<W>,
    pub(crate) compactor: Option<Compactor>,
    pub(crate) observer: Box<dyn Observer>,
    /// The watch streams this member serves, from its own applied store.
    pub(crate) watch: WatchHub,
    /// Lease questions in flight and, at the leader, the lessor's deadlines.
    pub(crate) leases: Leases<W>,
    pub(crate) fx: Effects<W>,
    stopped: bool,
}

impl<W: Waiter> Replica<W> {
    /// A replica over what storage recovered (`durable`, or the bootstrap state, already
    /// written) and the store restored from the newest snapshot. The engine re-delivers every
    /// chosen slot above the snapshot, which rebuilds the rest of the store.
    pub fn new(
        cfg: ReplicaConfig,
        durable: DurableState,
        restored: Restored,
        observer: Box<dyn Observer>,
    ) -> Result<Replica<W>, StartError> {
        let engine = Engine::new(cfg.engine.clone(), durable).map_err(StartError::Engine)?;
        let admin = Admin::new(
            cfg.cluster_id,
            cfg.member_id,
            cfg.name.clone(),
            cfg.client_urls.clone(),
            &engine,
        );
        let mut fx = Effects::default();
        // The shell starts with the peers its flags name; the log's member table rules.
        if !admin.table.members.is_empty() {
            fx.peers = Some(admin.table.peer_addrs(cfg.member_id));
            fx.members = Some(admin.table.clone());
        }
        Ok(Replica {
            recovering: engine.is_recovering(),
            engine,
            kv: restored.kv,
            ticks: Ticks::new(cfg.tick),
            now: Time::ZERO,
            next_seq: 1,
            writes: BTreeMap::new(),
            next_read: 1,
            reads: HashMap::new(),
            last_leader: None,
            last_role: Role::Follower,
            snapshots: Snapshots::new(cfg.snapshot_every_commands, restored.latest),
            admin,
            compactor: cfg.auto_compaction.map(Compactor::new),
            observer,
            watch: WatchHub::new(cfg.watch_progress_interval).with_planted(cfg.planted),
            leases: Leases::new(lessor(&cfg), cfg.incarnation),
            fx,
            stopped: false,
            cfg,
        })
    }

    /// Storage reported a lost log tail: acknowledged promises or values may be gone, so
    /// vote on nothing until the peers told us what we may have promised and accepted
    /// (docs/PROTOCOL.md). Call before any other input. A member whose whole log is gone
    /// knows no membership: `hinted` names the members to ask (its flags); their answers say
    /// which memberships must answer.
    pub fn start_peer_recovery(&mut self, hinted: impl IntoIterator<Item = NodeId>) {
        self.engine.start_peer_recovery();
        self.engine.hint_recovery_peers(hinted);
        self.recovering = self.engine.is_recovering();
    }

    /// The time of this turn: delivers the engine ticks that came due. Call first in a turn.
    pub fn advance(&mut self, now: Time) {
        self.now = self.now.max(now);
        for _ in 0..self.ticks.take_due(self.now) {
            self.engine.tick();
        }
    }

    /// When the next engine tick comes due.
    pub fn next_tick_at(&self) -> Time {
        self.ticks.next_due()
    }

    /// A message from a peer.
    pub fn step_peer(&mut self, message: Message) {
        self.engine.step(message);
    }

    /// A client's write: an encoded `synod_kv::Request`, replicated and answered once
    /// applied (with its reads, if it is a Txn with Range ops).
    pub fn write(&mut self, payload: Bytes, waiter: W) {
        self.propose(payload, Some(waiter));
    }

    /// A Range or read-only Txn, served without the log: from the local store at once if not
    /// `linearizable`, else once a read barrier confirms the store is up to date.
    pub fn read(&mut self, request: ReadRequest, linearizable: bool, waiter: W) {
        self.start_read(request, linearizable, waiter);
    }

    /// A consistent copy of the store for a client (Maintenance.Snapshot).
    pub fn export(&mut self, waiter: W) {
        self.start_export(waiter);
    }

    /// A membership request (etcd's Cluster API), answered with the table that results.
    pub fn admin(&mut self, request: AdminRequest, waiter: W) {
        let deadline = self.now + self.cfg.request_timeout;
        let seq = self.next_seq;
        match self.admin.submit(
            &mut self.engine,
            self.cfg.incarnation,
            seq,
            request,
            Some(waiter),
            deadline,
        ) {
            Ok(()) => self.next_seq += 1,
            Err((e, Some(waiter))) => self.fx.answers.push((waiter, Err(e))),
            Err((_, None)) => {}
        }
    }

    /// Hands leadership to member `to` (Maintenance.MoveLeader); this member must lead.
    pub fn move_leader(&mut self, to: NodeId, waiter: W) {
        // Answer before the client's own wait (the request timeout) gives up, so it hears why
        // rather than a bare timeout.
        let deadline = self.now + self.cfg.request_timeout.mul_f64(0.9);
        self.admin
            .move_leader(&mut self.engine, to, waiter, deadline);
    }

    /// Opens a watch stream (etcd's Watch RPC); its responses come in `Effects::watch`.
    pub fn watch_open(&mut self) -> StreamId {
        self.watch.open()
    }

    /// A request on a watch stream: create or cancel a watcher, or ask for progress.
    pub fn watch_request(&mut self, stream: StreamId, request: WatchRequest) {
        self.watch.request(stream, request, &self.kv);
    }

    /// The shell wrote the `responses` oldest responses of `stream` to its client.
    pub fn watch_drained(&mut self, stream: StreamId, responses: usize) {
        self.watch.drained(stream, responses);
    }

    /// Whether the shell should read another request of `stream` now: not while the
    /// stream's responses are not being written (the client is not reading them).
    pub fn watch_accepts_requests(&self, stream: StreamId) -> bool {
        self.watch.accepts_requests(stream)
    }

    /// The client of `stream` went away: its watchers are dropped.
    pub fn watch_close(&mut self, stream: StreamId) {
        self.watch.close(stream);
    }

    /// Everything the persist path was handed up to this sequence is durable.
    pub fn persisted(&mut self, seq: u64) {
        self.engine.persisted(seq);
    }

    /// Timers: drops a stalled or orphaned snapshot transfer, fails writes past the request
    /// timeout, proposes auto-compaction. `inbound_connection` says which connection a peer's
    /// messages arrive on now (`None`: it has none). Call about once per tick.
    pub fn check_timers(&mut self, inbound_connection: &dyn Fn(NodeId) -> Option<u64>) {
        let leader = self.engine.leader();
        self.snapshots
            .receiver
            .check(leader, inbound_connection, self.now);
        self.expire_writes();
        self.auto_compact();
        self.lease_timers();
    }

    /// Ends a turn: proposes due membership changes, drains the engine's output into
    /// effects, trims compacted history a bounded step, and notes what changed. Take the
    /// effects next ([`Replica::effects`]).
    pub fn end_turn(&mut self, inbound_connection: &dyn Fn(NodeId) -> Option<u64>) {
        let (incarnation, now) = (self.cfg.incarnation, self.now);
        self.admin
            .poll(&mut self.engine, incarnation, &mut self.next_seq, now);
        self.lease_tenure();
        while self.engine.has_ready() {
            let ready = self.engine.ready();
            self.process(ready, inbound_connection);
        }
        // A Compact only moves the compaction revision; the history it makes unreachable is
        // dropped a bounded amount per turn, so compacting a long history never holds a turn
        // (synod-kv compact.rs).
        if self.kv.compaction_pending() {
            self.kv.compact_step(COMPACT_STEP_WORK_MAX);
        }
        self.note_changes();
        self.watch.catch_up(&self.kv);
        self.watch.tick_progress(self.now, &self.kv);
        self.fx.watch.append(&mut self.watch.take_output());
        self.fx.answers.append(&mut self.admin.answers);
        if self.removed_and_done() && self.fx.stop.is_none() {
            tracing::warn!(
                "this member was removed from the cluster and the change is in force: \
                 stopping (its data directory must not be reused; add a new member instead)"
            );
            self.fx.stop = Some(Stop::Removed);
        }
    }

    /// The effects of the inputs since the last call.
    pub fn effects(&mut self) -> Effects<W> {
        std::mem::take(&mut self.fx)
    }

    /// The replica stops: everyone waiting hears "server stopped" (in the effects).
    pub fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        for (_, w) in std::mem::take(&mut self.writes) {
            if let Some(waiter) = w.waiter {
                self.fx.answers.push((waiter, Err(ReplicaError::Stopped)));
            }
        }
        for (_, (_, waiter)) in self.reads.drain() {
            self.fx.answers.push((waiter, Err(ReplicaError::Stopped)));
        }
        self.stop_leases();
        self.fx.answers.append(&mut self.admin.answers);
        for waiter in self.admin.take_waiters() {
            self.fx.answers.push((waiter, Err(ReplicaError::Stopped)));
        }
    }

    pub fn status(&self) -> ReplicaStatus {
        let status = self.engine.status();
        let size = self.kv.size_bytes();
        ReplicaStatus {
            role: status.role,
            leader: status.leader,
            term: status.promised.round,
            commit_slot: status.commit,
            applied_slot: status.applied,
            revision: self.kv.revision(),
            db_size_bytes: size,
            voters: status
                .members
                .as_ref()
                .map_or(Vec::new(), |m| m.voters().to_vec()),
            lease_held: status.lease_held,
            recovering: self.recovering,
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn kv(&self) -> &KvStore {
        &self.kv
    }

    /// The table of the newest applied membership.
    pub fn member_table(&self) -> &MemberTable {
        &self.admin.table
    }

    /// The newest durable snapshot's slot (0 without one).
    pub fn snapshot_slot(&self) -> Slot {
        self.snapshots.latest.as_ref().map_or(0, |(s, _)| *s)
    }

    fn process(&mut self, ready: Ready, inbound_connection: &dyn Fn(NodeId) -> Option<u64>) {
        let Ready {
            persist_seq,
            hard_state,
            records,
            messages,
            messages_after_persist,
            committed,
            reads_ready,
            reads_failed,
            send_snapshot,
            snapshot_chunks,
            app_messages,
        } = ready;
        // Messages that do not depend on the write leave first: the disk write then runs in
        // parallel with the peers' own.
        self.fx.messages.extend(messages);
        if persist_seq.is_some() || !messages_after_persist.is_empty() {
            self.fx.persist.push(PersistJob::Ready {
                seq: persist_seq,
                batch: synod_storage::Batch::new(hard_state, records),
                after: messages_after_persist,
            });
        }
        let mut last = None;
        for c in committed {
            self.observer.applied(c.slot, &c.value);
            self.apply(c.slot, &c.value);
            last = Some(c.slot);
        }
        if let Some(slot) = last {
            self.engine.applied(slot);
            self.maybe_snapshot(slot);
        }
        for peer in send_snapshot {
            self.send_snapshot(peer);
        }
        for chunk in snapshot_chunks {
            let connection = inbound_connection(chunk.from);
            self.receive_chunk(chunk, connection);
        }
        self.receive_app(app_messages);
        self.finish_reads(reads_ready, reads_failed);
    }

    /// The member table changed (a membership applied, a snapshot installed): the shell
    /// updates its peers and publishes the table.
    pub(crate) fn members_changed(&mut self, peers: Option<BTreeMap<NodeId, String>>) {
        if let Some(peers) = peers {
            self.fx.peers = Some(peers);
            self.fx.members = Some(self.admin.table.clone());
        }
    }

    /// Notes the end of a peer recovery, leader and role changes.
    fn note_changes(&mut self) {
        let (leader, role) = (self.engine.leader(), self.engine.role());
        if self.recovering && !self.engine.is_recovering() {
            // Recorded as done only once the Ready that ended it (with the promise raised to
            // the fence) is durable: the persist path takes jobs in order.
            self.recovering = false;
            self.fx.persist.push(PersistJob::FinishRecovery);
        }
        if leader != self.last_leader {
            if leader.is_some() {
                self.observer.count(Count::LeaderChanges, 1);
            }
            tracing::info!(leader = ?leader, role = ?role, "leader changed");
            self.last_leader = leader;
            self.fail_orphaned_writes(leader);
        }
        if role != self.last_role {
            if role == Role::Candidate {
                self.observer.count(Count::ElectionsStarted, 1);
            }
            self.last_role = role;
        }
    }

    /// This member was removed and is no longer needed (`Engine::retired`: a slot the
    /// membership without it governs is chosen; a removed leader hands over first).
    fn removed_and_done(&self) -> bool {
        // The engine only knows the newest membership it learned leaves this member out: a
        // member that joined later sees such memberships while it replays the log. Removal
        // is what the member table records (its removed ids).
        self.engine.retired() && self.admin.table.removed.contains(&self.cfg.member_id)
    }
}

/// Answers as the shell delivers them: `Answer::Kv` for reads and writes.
impl Answer {
    pub fn into_kv(self) -> Option<synod_kv::Response> {
        match self {
            Answer::Kv(r) => Some(r),
            _ => None,
        }
    }
}

/// The lessor as the configuration asks: TTL units, the clock-drift bound, and etcd's
/// extension of every lease by an election timeout when a leader is promoted.
fn lessor(cfg: &ReplicaConfig) -> Lessor {
    let ticks = u32::try_from(cfg.engine.election_timeout_ticks).unwrap_or(u32::MAX);
    Lessor::new(
        cfg.lease_second,
        cfg.engine.clock_drift_ppm_max,
        cfg.tick.saturating_mul(ticks),
    )
}
