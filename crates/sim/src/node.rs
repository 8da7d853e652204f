//! One member: the server's replica (`synod_replica::Replica`, the same code the `synod`
//! binary runs) inside a simulated process: a drifting clock, a disk, a queue of inputs held
//! while the process is paused, and the carrying out of the replica's effects exactly as the
//! server's shell does them (crates/server/src/replica/core.rs):
//!
//! - a turn: report the time (`advance`: the engine ticks the local clock owes), feed inputs,
//!   check timers, `end_turn`, take the effects;
//! - messages leave at once; persist jobs queue for the disk (`disk.rs`: one group per sync,
//!   `after` messages and `persisted(seq)` once it returns); snapshot jobs are encoded and
//!   handed to the disk behind the jobs before them (the server encodes on a thread, then
//!   queues the same job); read jobs run at once (the server runs them on read workers);
//!   answers go to the clients and the operator that wait for them;
//! - a start opens the disk (recovery; a brand-new member writes its first state), restores
//!   the store from the newest snapshot and starts the replica over the rest; a lost log tail
//!   starts a peer recovery before any other input.
//!
//! Before any message or request is handled, the time of the turn is reported: a node that
//! was paused catches up on ticks before it acts, which is what makes leader leases sound.
//!
//! Watch streams: a client's requests on a stream and its reports of responses read
//! (`WatchInput`) wait for the node's next turn (its next tick at the latest), as the
//! server's Watch service queues them for its core; the turn's responses go back with the
//! effects. After every turn the node also reads the revisions its store reached from the
//! store's history, for the reference history and its determinism check
//! (watch_reference.rs).

use crate::disk::{Corruption, CrashLoss, Disk, Done};
use crate::rng::Rng;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use synod_kv::{Budget, History, KeyRange};
use synod_paxos::{Body, Config, DurableState, Message, NodeId, RecoveryPhase, SharedValue, Slot};
use synod_replica::watch::{StreamId, WatchRequest, WatchResponse};
use synod_replica::{
    AdminRequest, Answer, Observer, PersistJob, Replica, ReplicaConfig, ReplicaError, Restored,
};
use synod_storage::StorageError;

/// Changes read from a store's history per call when reporting revisions (whole
/// revisions: a call may return more).
const HISTORY_READ_EVENTS_MAX: usize = 4_096;

/// Which request an answer belongs to: a client's operation, or the operator's (`client`
/// [`OPERATOR`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub client: u64,
    pub op: u64,
}

impl synod_replica::Waiter for Ticket {}

/// The client id of the operator's membership and leadership requests.
pub const OPERATOR: u64 = u64::MAX;

/// A request as the replica's client interface takes it (the server's gRPC layer makes the
/// same calls).
#[derive(Clone, Debug)]
pub enum Request {
    /// Through the log: Put, DeleteRange, Txn, Compact, or a Range read in the log.
    Write {
        ticket: Ticket,
        request: synod_kv::Request,
    },
    /// A Range served without the log, after a read barrier when `linearizable`.
    Read {
        ticket: Ticket,
        request: synod_kv::ReadRequest,
        linearizable: bool,
    },
    /// A membership request, as etcdctl's `member add/remove/promote` sends it.
    Admin {
        ticket: Ticket,
        request: AdminRequest,
    },
    /// Maintenance.MoveLeader, asked of the leader.
    MoveLeader { ticket: Ticket, to: NodeId },
}

/// Inputs that wait in a paused node's queue until it resumes.
#[derive(Debug)]
pub enum Held {
    Message(Message),
    Request(Request),
    /// What the persist path finished.
    Disk(Done),
    /// The snapshot thread wrote a snapshot file: the persist path adopts it next.
    SnapshotWritten {
        slot: Slot,
        data: bytes::Bytes,
        meta: synod_storage::SnapshotMeta,
    },
}

/// A watch client's input on one of this node's streams, taken in the node's next turn.
#[derive(Debug)]
pub enum WatchInput {
    /// Read by the server only while the stream has room for the answer
    /// (`Replica::watch_accepts_requests`): until then it waits here, in order.
    Request {
        stream: StreamId,
        request: WatchRequest,
    },
    /// The client read the stream's `responses` oldest responses.
    Drained { stream: StreamId, responses: usize },
    /// The client went away.
    Close { stream: StreamId },
}

/// Real time per lease TTL unit in the simulator: TTLs of tens of units then last tenths
/// of a second, like the simulated timers.
pub const LEASE_SECOND: Duration = Duration::from_millis(10);

/// A lease client's request to this node, taken in the node's next turn (lease_clients.rs).
#[derive(Debug)]
pub enum LeaseInput {
    /// A grant, revoke, or put with a lease: through the log.
    Write {
        ticket: Ticket,
        request: synod_kv::Request,
    },
    KeepAlive {
        ticket: Ticket,
        id: i64,
    },
    TimeToLive {
        ticket: Ticket,
        id: i64,
    },
    Leases {
        ticket: Ticket,
    },
}

/// What this node's replica reported about leases (through its observer), in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseSeen {
    /// As leader, it proposed to expire lease `id` under `epoch`.
    ExpiryProposed {
        id: i64,
        epoch: synod_kv::LeaseEpoch,
    },
    /// Lease `id` was revoked in its store while it applied `slot`.
    Revoked { slot: Slot, id: i64 },
}

/// When this node takes snapshots and how it ships them (drawn per seed).
#[derive(Clone, Copy, Debug)]
pub struct SnapshotPolicy {
    /// A snapshot after this many applied commands (`--snapshot-count`); `None`: never.
    pub every: Option<u64>,
    /// Bytes per `SnapshotChunk` message.
    pub chunk_bytes: usize,
}

/// What happened to snapshots during one turn, for the counters and the trace.
#[derive(Debug, Default)]
pub struct SnapshotEvents {
    pub taken: Vec<Slot>,
    pub saved: Vec<Slot>,
    /// (peer, slot, bytes)
    pub sent: Vec<(NodeId, Slot, u64)>,
    /// Reassembled and handed to the persist path.
    pub received: Vec<Slot>,
    pub installed: Vec<Slot>,
}

/// What the simulation must act on after a turn.
#[derive(Debug, Default)]
pub struct Effects {
    pub sends: Vec<Message>,
    /// Completion times of syncs started (each needs a `DiskDone` event).
    pub disk_done_at: Vec<u64>,
    /// Slots applied, in order, with their values (the agreement check).
    pub applied: Vec<(Slot, SharedValue)>,
    pub answers: Vec<(Ticket, Result<Answer, ReplicaError>)>,
    pub snapshots: SnapshotEvents,
    /// A breach of the driver contract (not a protocol violation per se).
    pub contract: Option<String>,
    /// The replica ended its peer recovery (the end is queued for the persist path), and the
    /// persist path recorded an end durably.
    pub recovery_ended: bool,
    pub recovery_recorded: bool,
    /// The replica asks to stop: it was removed and the change is in force.
    pub stop: bool,
    /// Snapshot files written by the snapshot thread: each reaches the persist path (to be
    /// adopted) a little later, as `Held::SnapshotWritten`.
    pub snapshot_files: Vec<Held>,
    /// Responses the turn handed to watch streams, in order per stream.
    pub watch: Vec<(StreamId, WatchResponse)>,
    /// The store's revision and compaction revision when the turn ended.
    pub store: Option<(i64, i64)>,
    /// The changes of the revisions the store reached since it was last read, in order
    /// (whole revisions, one list per read of its history).
    pub history: Vec<Vec<crate::watch_reference::Change>>,
    /// What the replica reported about leases (the LeaseSafety check).
    pub leases: Vec<LeaseSeen>,
}

/// Where a node stands in recovering from a lost log tail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PeerRecovery {
    /// No loss reported at the last start, or its recovery is over and recorded.
    #[default]
    Idle,
    /// The engine is recovering.
    Engine,
    /// The engine is done; the end is queued behind the last `Ready`.
    Recording,
}

/// Why a node did not start.
#[derive(Debug)]
pub enum StartError {
    /// Recovery failed: the disk is damaged (what the server refuses to start on).
    Refused(StorageError),
    /// Recovery succeeded on a disk damaged in a way the storage said it would detect. The
    /// replica was not started: that would serve corrupted state.
    CorruptionServed(Corruption),
    /// The newest snapshot on disk does not decode (the server refuses to start on it).
    SnapshotUndecodable(String),
    /// Recovery handed over the snapshot whose file was damaged on purpose.
    SnapshotServed(Slot),
}

/// A clock running at `1 + drift_ppm / 10^6` times real speed since `epoch_us`.
#[derive(Clone, Copy, Debug)]
struct Clock {
    drift_ppm: i64,
    epoch_us: u64,
}

impl Clock {
    fn rate(&self) -> u128 {
        (1_000_000 + self.drift_ppm) as u128
    }

    /// Local time elapsed by real time `now_us`, in local microseconds.
    fn local_us(&self, now_us: u64) -> u64 {
        let elapsed = u128::from(now_us.saturating_sub(self.epoch_us));
        (elapsed * self.rate() / 1_000_000) as u64
    }

    /// The first real microsecond at which local time reaches `local_us`.
    fn real_us(&self, local_us: u64) -> u64 {
        let us = (u128::from(local_us) * 1_000_000).div_ceil(self.rate());
        self.epoch_us + us as u64
    }
}

/// The replica's observer: collects the slots it applies for the agreement check, and what
/// it reports about leases (with the slot being applied, for revokes).
#[derive(Debug, Default, Clone)]
struct AppliedLog(
    Arc<Mutex<Vec<(Slot, SharedValue)>>>,
    Arc<Mutex<(Slot, Vec<LeaseSeen>)>>,
);

impl Observer for AppliedLog {
    fn applied(&self, slot: Slot, value: &SharedValue) {
        let mut log = self.0.lock().expect("one thread");
        log.push((slot, value.clone()));
        self.1.lock().expect("one thread").0 = slot;
    }

    fn lease_expiry_proposed(&self, id: i64, epoch: synod_kv::LeaseEpoch) {
        let mut leases = self.1.lock().expect("one thread");
        leases.1.push(LeaseSeen::ExpiryProposed { id, epoch });
    }

    fn lease_revoked(&self, id: i64) {
        let mut leases = self.1.lock().expect("one thread");
        let slot = leases.0;
        leases.1.push(LeaseSeen::Revoked { slot, id });
    }
}

/// What every start of a node's replica is configured with, but its incarnation.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub replica: ReplicaConfig,
    /// Members to ask when its whole log is lost (what its flags name).
    pub hinted_peers: Vec<NodeId>,
}

#[derive(Debug)]
pub struct Node {
    pub id: u64,
    config: NodeConfig,
    replica: Option<Replica<Ticket>>,
    applied: AppliedLog,
    pub disk: Disk,
    /// Writes snapshot files off the persist path (taken at every start).
    writer: Option<synod_storage::SnapshotWriter>,
    clock: Clock,
    /// Bumped on every restart, so events meant for a previous life are ignored.
    pub incarnation: u64,
    pub paused: bool,
    /// The disk refused to start (damage detected): down for good, as an operator would keep
    /// it until the member is replaced.
    pub refused: Option<String>,
    held: VecDeque<Held>,
    /// Started at least once (a node added to the cluster may be started only once the
    /// change naming it is chosen).
    pub launched: bool,
    /// Removed from the cluster and stopped for good: never restarted.
    pub retired: bool,
    /// Gather inputs this long before ending the turn (`Swarm::turn_us`).
    pub turn_us: u64,
    /// Inputs were handled whose turn has not ended yet: the simulation ends it.
    pub drain_owed: bool,
    /// Recovery from a lost log tail, since the last start.
    pub peer_recovery: PeerRecovery,
    /// Watch inputs waiting for the next turn.
    watch_inbox: VecDeque<WatchInput>,
    /// Lease clients' requests waiting for the next turn.
    lease_inbox: VecDeque<LeaseInput>,
    /// The newest revision of this life's store already read for the reference history.
    read_revision: i64,
}

impl Node {
    /// A node with an empty disk (it writes `bootstrap` on its first start), not started.
    pub fn new(config: NodeConfig, bootstrap: DurableState, drift_ppm: i64) -> Node {
        Node {
            id: config.replica.member_id,
            config,
            replica: None,
            applied: AppliedLog::default(),
            disk: Disk::new(bootstrap),
            writer: None,
            clock: Clock {
                drift_ppm,
                epoch_us: 0,
            },
            incarnation: 0,
            paused: false,
            refused: None,
            held: VecDeque::new(),
            launched: false,
            retired: false,
            turn_us: 0,
            drain_owed: false,
            peer_recovery: PeerRecovery::Idle,
            watch_inbox: VecDeque::new(),
            lease_inbox: VecDeque::new(),
            read_revision: 1,
        }
    }

    /// The first start, from the empty disk.
    pub fn launch(&mut self, now_us: u64) {
        debug_assert!(!self.launched);
        self.launched = true;
        self.start(now_us)
            .expect("a brand-new member's disk opens and bootstraps");
    }

    /// Removed from the cluster: the process stops for good.
    pub fn retire(&mut self) {
        self.replica = None;
        self.drain_owed = false;
        self.held.clear();
        self.watch_inbox.clear();
        self.lease_inbox.clear();
        self.paused = false;
        self.incarnation += 1;
        self.retired = true;
    }

    /// The slot of the newest durable snapshot this node holds (0 without one).
    pub fn snapshot_slot(&self) -> Slot {
        self.replica.as_ref().map_or(0, |r| r.snapshot_slot())
    }

    pub fn replica(&self) -> Option<&Replica<Ticket>> {
        self.replica.as_ref()
    }

    pub fn engine(&self) -> Option<&synod_paxos::Engine> {
        self.replica.as_ref().map(|r| r.engine())
    }

    pub fn is_up(&self) -> bool {
        self.replica.is_some()
    }

    /// Up and not paused: able to act right now.
    pub fn is_running(&self) -> bool {
        self.replica.is_some() && !self.paused
    }

    /// The last slot applied to the store (0 when down).
    pub fn applied_slot(&self) -> Slot {
        self.engine().map_or(0, |e| e.applied_slot())
    }

    /// Starts (or restarts) the replica from what the disk recovered: the store from the
    /// newest durable snapshot, the engine from it and the log above it (re-delivering every
    /// chosen slot there). Never started from a damaged disk, whether recovery noticed or not.
    fn start(&mut self, now_us: u64) -> Result<(), StartError> {
        let (mut durable, snapshot) = self.disk.open().map_err(StartError::Refused)?;
        if let Some(c) = self.disk.corruption().filter(|c| c.detectable) {
            return Err(StartError::CorruptionServed(c));
        }
        let restored = match snapshot {
            Some(data) => {
                let (info, kv) = synod_replica::snapshot_format::decode(&data)
                    .map_err(|e| StartError::SnapshotUndecodable(e.to_string()))?;
                if self.disk.damaged_snapshot() == Some(info.slot) {
                    return Err(StartError::SnapshotServed(info.slot));
                }
                let kv = synod_kv::KvStore::restore(&kv)
                    .map_err(|e| StartError::SnapshotUndecodable(e.to_string()))?;
                let restored = Restored {
                    kv,
                    latest: Some((info.slot, data)),
                };
                durable.snapshot = Some(info);
                restored
            }
            None => Restored::default(),
        };
        let mut cfg = self.config.replica.clone();
        // A real process seeds its election randomness afresh on every start, and draws a
        // new incarnation (its client id in the store's dedup table).
        let life = (self.incarnation + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        cfg.engine.seed = self.config.replica.engine.seed ^ life;
        cfg.incarnation = (cfg.engine.seed ^ life.rotate_left(17)).max(1);
        self.applied = AppliedLog::default();
        let observer = Box::new(self.applied.clone());
        let mut replica = Replica::new(cfg, durable, restored, observer)
            .expect("the configuration was validated");
        self.peer_recovery = PeerRecovery::Idle;
        if self.disk.lost_tail().is_some() {
            // Before any other input: this replica may have forgotten votes it gave.
            replica.start_peer_recovery(self.config.hinted_peers.iter().copied());
            if replica.status().recovering {
                self.peer_recovery = PeerRecovery::Engine;
            }
        }
        self.replica = Some(replica);
        self.writer = self.disk.snapshot_writer();
        self.clock.epoch_us = now_us;
        self.paused = false;
        self.held.clear();
        self.watch_inbox.clear();
        self.lease_inbox.clear();
        // The restored store (snapshot and replayed log) is read again, and held to the
        // reference like any other.
        self.read_revision = 1;
        Ok(())
    }

    /// The process dies: pending disk writes are lost (or torn), memory is gone.
    pub fn crash(&mut self, rng: &mut Rng, torn: bool) -> CrashLoss {
        self.replica = None;
        self.peer_recovery = PeerRecovery::Idle;
        self.held.clear();
        self.watch_inbox.clear();
        self.lease_inbox.clear();
        self.paused = false;
        self.drain_owed = false;
        self.incarnation += 1;
        self.disk.crash(rng, torn)
    }

    /// Starts the process again from its disk, or fails and stays down for good.
    pub fn restart(&mut self, now_us: u64) -> Result<(), StartError> {
        debug_assert!(self.replica.is_none() && self.refused.is_none());
        self.start(now_us).inspect_err(|e| {
            self.refused = Some(match e {
                StartError::Refused(e) => e.to_string(),
                StartError::CorruptionServed(c) => format!("corruption served: {c:?}"),
                StartError::SnapshotUndecodable(e) => format!("snapshot undecodable: {e}"),
                StartError::SnapshotServed(slot) => format!("damaged snapshot {slot} served"),
            })
        })
    }

    /// Opens a watch stream on a running replica (a client's Watch call).
    pub fn watch_open(&mut self) -> Option<StreamId> {
        if !self.is_running() {
            return None;
        }
        self.replica.as_mut().map(|r| r.watch_open())
    }

    /// A watch input, for the next turn (dropped if the process is down: the stream is).
    pub fn watch_input(&mut self, input: WatchInput) {
        if self.replica.is_some() {
            self.watch_inbox.push_back(input);
        }
    }

    /// A lease request, for the next turn (dropped if the process is down: its connection
    /// is; the client gives up on it after its timeout).
    pub fn lease_input(&mut self, input: LeaseInput) {
        if self.replica.is_some() {
            self.lease_inbox.push_back(input);
        }
    }

    /// Real time at which the quiet period of this node's peer recovery ends, while it is in
    /// one (`RecoveryPhase::Quiet`, in local ticks since the start).
    pub fn recovery_quiet_until(&self) -> Option<u64> {
        match self.engine()?.status().recovery? {
            RecoveryPhase::Quiet { until } => {
                let tick_us = self.config.replica.tick.as_micros() as u64;
                Some(self.clock.real_us(until * tick_us))
            }
            _ => None,
        }
    }

    /// Real time of the next local tick, for scheduling.
    pub fn next_tick_at(&self) -> u64 {
        match &self.replica {
            Some(r) => self.clock.real_us(r.next_tick_at().as_micros() as u64),
            None => u64::MAX,
        }
    }

    /// Reports the time to the replica: it delivers the ticks the local clock owes.
    fn advance(&mut self, now_us: u64) {
        let local = Duration::from_micros(self.clock.local_us(now_us));
        if let Some(r) = self.replica.as_mut() {
            r.advance(local);
        }
    }

    /// A timer tick: the time, timers, the end of the turn.
    pub fn catch_up(&mut self, now_us: u64, rng: &mut Rng, fsync: (u64, u64), fx: &mut Effects) {
        if self.is_running() {
            self.advance(now_us);
            self.end_turn(now_us, rng, fsync, fx);
        }
    }

    /// Lets a running node act without new input (after a start: the engine has chosen
    /// slots from its disk to deliver; after a turn's gathering time).
    pub fn poke(&mut self, now_us: u64, rng: &mut Rng, fsync: (u64, u64), fx: &mut Effects) {
        self.catch_up(now_us, rng, fsync, fx);
    }

    /// Feeds one input (reporting the time first), or holds it while paused.
    pub fn input(
        &mut self,
        held: Held,
        now_us: u64,
        rng: &mut Rng,
        fsync: (u64, u64),
        fx: &mut Effects,
    ) {
        if self.replica.is_none() {
            return;
        }
        if self.paused {
            self.held.push_back(held);
            return;
        }
        self.advance(now_us);
        self.feed(held, fx);
        if self.turn_us == 0 {
            self.end_turn(now_us, rng, fsync, fx);
        } else {
            self.drain_owed = true; // more inputs may join this turn
        }
    }

    fn feed(&mut self, held: Held, fx: &mut Effects) {
        let replica = self.replica.as_mut().expect("checked by the caller");
        match held {
            Held::Message(m) => replica.step_peer(m),
            Held::Request(Request::Write { ticket, request }) => {
                replica.write(synod_kv::encode_request(&request), ticket)
            }
            Held::Request(Request::Read {
                ticket,
                request,
                linearizable,
            }) => replica.read(request, linearizable, ticket),
            Held::Request(Request::Admin { ticket, request }) => replica.admin(request, ticket),
            Held::Request(Request::MoveLeader { ticket, to }) => replica.move_leader(to, ticket),
            Held::Disk(Done::Persisted(seq, messages)) => {
                fx.sends.extend(messages);
                if let Some(seq) = seq {
                    replica.persisted(seq);
                }
            }
            Held::Disk(Done::Snapshot {
                slot,
                data,
                received,
                saved,
            }) => {
                let before = replica.snapshot_slot();
                replica.snapshot_saved(slot, data, received, saved);
                if saved && !received {
                    fx.snapshots.saved.push(slot);
                } else if received && replica.snapshot_slot() > before {
                    fx.snapshots.installed.push(slot);
                }
            }
            Held::Disk(Done::RecoveryFinished) => {
                self.peer_recovery = PeerRecovery::Idle;
                fx.recovery_recorded = true;
            }
            Held::SnapshotWritten { slot, data, meta } => {
                self.disk.enqueue(PersistJob::Snapshot {
                    slot,
                    data,
                    received: false,
                    written: Some(meta),
                });
            }
        }
    }

    /// Resumes a paused node: the time first, then everything that queued up, in order.
    pub fn resume(&mut self, now_us: u64, rng: &mut Rng, fsync: (u64, u64), fx: &mut Effects) {
        self.paused = false;
        self.advance(now_us);
        while let Some(h) = self.held.pop_front() {
            self.feed(h, fx);
        }
        self.end_turn(now_us, rng, fsync, fx);
    }

    /// Ends the turn and carries out its effects, as the server's core task does.
    fn end_turn(&mut self, now_us: u64, rng: &mut Rng, fsync: (u64, u64), fx: &mut Effects) {
        self.drain_owed = false;
        let Some(replica) = self.replica.as_mut() else {
            return;
        };
        // One connection per peer for the whole run: the simulated network has none to lose
        // (a transfer is still dropped when its sender stops leading, or stalls).
        let inbound = |_: NodeId| Some(0);
        feed_watch(replica, &mut self.watch_inbox);
        feed_leases(replica, &mut self.lease_inbox);
        replica.check_timers(&inbound);
        replica.end_turn(&inbound);
        let out = replica.effects();
        fx.applied
            .append(&mut self.applied.0.lock().expect("one thread"));
        fx.leases
            .append(&mut self.applied.1.lock().expect("one thread").1);
        for m in &out.messages {
            if let Body::SnapshotChunk {
                slot,
                total,
                offset: 0,
                ..
            } = &m.body
            {
                fx.snapshots.sent.push((m.to, *slot, *total));
            }
        }
        fx.sends.extend(out.messages);
        for job in out.persist {
            match &job {
                PersistJob::FinishRecovery => {
                    self.peer_recovery = PeerRecovery::Recording;
                    fx.recovery_ended = true;
                }
                PersistJob::Snapshot {
                    slot,
                    received: true,
                    ..
                } => fx.snapshots.received.push(*slot),
                _ => {}
            }
            self.disk.enqueue(job);
        }
        for job in out.snapshots {
            // The server's snapshot thread: encode, write the file (durable, not yet the
            // newest snapshot), then hand the persist path the job that adopts it. Here the
            // file is written now and the job arrives later (`snapshot_files`); a crash in
            // between leaves a written file that the next start finds like any saved one.
            fx.snapshots.taken.push(job.slot);
            let data = job.encode();
            let written = self.writer.as_ref().map(|w| w.write(job.slot, &data));
            match written {
                Some(Ok(meta)) => fx.snapshot_files.push(Held::SnapshotWritten {
                    slot: job.slot,
                    data,
                    meta,
                }),
                // As the server does when its writer fails: the persist path saves it.
                Some(Err(_)) | None => self.disk.enqueue(PersistJob::Snapshot {
                    slot: job.slot,
                    data,
                    received: false,
                    written: None,
                }),
            }
        }
        for job in out.exports {
            let answer = Answer::Exported {
                slot: job.slot,
                data: job.encode(),
            };
            fx.answers.push((job.waiter, Ok(answer)));
        }
        for job in out.reads {
            if let Some((ticket, result)) = job.run() {
                fx.answers.push((ticket, result.map(Answer::Kv)));
            }
        }
        fx.answers.extend(out.answers);
        fx.stop |= out.stop.is_some();
        fx.watch.extend(out.watch);
        self.read_history(fx);
        self.start_disk(now_us, rng, fsync, fx);
    }

    /// Reports the revisions the store reached since the last turn, with their changes, as
    /// its history lists them. Revisions below the compaction revision cannot be read; the
    /// replica that reached them first read them before any compaction could (a Compact
    /// names a revision some client already saw, so it is applied in a later turn).
    fn read_history(&mut self, fx: &mut Effects) {
        let Some(kv) = self.replica.as_ref().map(|r| r.kv()) else {
            return;
        };
        let (revision, compacted) = (kv.revision(), kv.compact_revision());
        fx.store = Some((revision, compacted));
        let mut from = (self.read_revision + 1).max(compacted);
        self.read_revision = self.read_revision.max(revision);
        let all = KeyRange::new(
            bytes::Bytes::from_static(b"\0"),
            bytes::Bytes::from_static(b"\0"),
        );
        let budget = Budget {
            events_max: HISTORY_READ_EVENTS_MAX,
            bytes_max: usize::MAX,
        };
        while from <= revision {
            let changes = match kv.changes(&all, from, revision, budget) {
                Ok(changes) if changes.through >= from => changes,
                other => {
                    fx.contract = Some(format!(
                        "node {}: its store's history from revision {from} to {revision}: {other:?}",
                        self.id
                    ));
                    return;
                }
            };
            if !changes.events.is_empty() {
                fx.history.push(changes.events);
            }
            from = changes.through + 1;
        }
    }

    /// The persist thread picks up what queued once its current sync is done.
    pub fn start_disk(&mut self, now_us: u64, rng: &mut Rng, fsync: (u64, u64), fx: &mut Effects) {
        match self.disk.start_group() {
            Ok(None) => {}
            Ok(Some(wrote)) => {
                let latency = if wrote {
                    rng.range(fsync.0, fsync.1)
                } else {
                    0
                };
                // A snapshot costs a write, an fsync and a rename: about two syncs.
                let latency = if self.disk.saving_snapshot() {
                    latency + rng.range(fsync.0, fsync.1)
                } else {
                    latency
                };
                fx.disk_done_at.push(now_us + latency);
            }
            Err(e) => {
                fx.contract = Some(format!("node {}: storage refused a write: {e}", self.id));
            }
        }
    }
}

/// Hands the replica every lease request waiting.
fn feed_leases(replica: &mut Replica<Ticket>, inbox: &mut VecDeque<LeaseInput>) {
    while let Some(input) = inbox.pop_front() {
        match input {
            LeaseInput::Write { ticket, request } => {
                replica.write(synod_kv::encode_request(&request), ticket)
            }
            LeaseInput::KeepAlive { ticket, id } => replica.lease_keep_alive(id, ticket),
            LeaseInput::TimeToLive { ticket, id } => replica.lease_time_to_live(id, true, ticket),
            LeaseInput::Leases { ticket } => replica.lease_leases(ticket),
        }
    }
}

/// Hands the replica the watch inputs it can take: everything, except a stream's requests
/// while the stream has no room for their answers (they wait, in order, as the server stops
/// reading such a stream).
fn feed_watch(replica: &mut Replica<Ticket>, inbox: &mut VecDeque<WatchInput>) {
    if inbox.is_empty() {
        return;
    }
    let mut waiting = VecDeque::new();
    let mut blocked: Vec<StreamId> = Vec::new();
    while let Some(input) = inbox.pop_front() {
        match input {
            WatchInput::Request { stream, .. }
                if blocked.contains(&stream) || !replica.watch_accepts_requests(stream) =>
            {
                if !blocked.contains(&stream) {
                    blocked.push(stream);
                }
                waiting.push_back(input);
            }
            WatchInput::Request { stream, request } => replica.watch_request(stream, request),
            WatchInput::Drained { stream, responses } => replica.watch_drained(stream, responses),
            WatchInput::Close { stream } => {
                replica.watch_close(stream);
                waiting.retain(
                    |w| !matches!(w, WatchInput::Request { stream: s, .. } if *s == stream),
                );
            }
        }
    }
    *inbox = waiting;
}

/// The replica configuration of a simulated member: simulation-sized timers, the seed's
/// snapshot policy. One engine tick is one local millisecond.
pub fn replica_config(
    engine: Config,
    cluster_id: u64,
    name: String,
    policy: SnapshotPolicy,
    request_timeout: Duration,
) -> ReplicaConfig {
    ReplicaConfig {
        member_id: engine.id,
        engine,
        tick: Duration::from_millis(1),
        request_timeout,
        snapshot_every_commands: policy.every.unwrap_or(u64::MAX),
        snapshot_chunk_bytes: policy.chunk_bytes,
        cluster_id,
        name,
        client_urls: Vec::new(),
        auto_compaction: None,
        incarnation: 1,
        lease_second: LEASE_SECOND,
        // Simulated runs last seconds: notify often enough to be exercised.
        watch_progress_interval: Duration::from_millis(200),
        planted: synod_replica::Planted::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_local_and_real_times_agree() {
        for drift in [-300_000, -50_000, 0, 1, 50_000, 300_000] {
            let c = Clock {
                drift_ppm: drift,
                epoch_us: 1234,
            };
            for local in [1, 2, 39, 40, 1000, 123_457_000] {
                let t = c.real_us(local);
                assert!(c.local_us(t) >= local, "drift {drift} local {local}");
                assert!(c.local_us(t - 1) < local, "drift {drift} local {local}");
            }
        }
    }
}
