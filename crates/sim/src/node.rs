//! One replica: the real engine, its drifting clock, its disk and its state machine, and the
//! driver loop that moves `Ready` output between them exactly as the server will.
//!
//! The driver loop, per `Ready`: hand `hard_state` + `records` to the persist path as one
//! storage batch (written with whatever else queued, then synced once: group commit, see
//! `disk.rs`), send `messages` now, hold `messages_after_persist` until that sync returned
//! (then send them and call `persisted`), apply `committed` in slot order and call
//! `applied`, serve `reads_ready` from the state machine and fail `reads_failed`. Before any
//! message or client request is handled, every tick the local clock owes is delivered first:
//! a node that was paused catches up on time before it acts, which is what makes leader
//! leases sound.
//!
//! Snapshots (`snapshot.rs`), as the server takes them: every `every` applied slots the
//! state machine is encoded with `Engine::snapshot_info` and handed to the persist path
//! behind the writes queued before it; once it is saved (durable), the storage compacts its
//! log and the engine is told (`compact`). `Ready::send_snapshot` is served from the newest
//! durable snapshot, in `Body::SnapshotChunk` pieces over the network; a complete snapshot
//! received from a peer is made durable first, then (if the engine still `wants_snapshot`)
//! it replaces the state machine and is installed. A start restores the state machine from
//! the newest durable snapshot and the engine replays the log suffix above it.
//!
//! A lost log tail, as the server handles it: when the storage reports one at a start
//! (`Recovered::lost_tail`), the engine is told right after `Engine::new`
//! (`start_peer_recovery`) and votes only once it recovered from its peers. When
//! `Status::recovery` turns `None`, every `Ready` up to then has been queued, so the driver
//! queues `finish_peer_recovery` behind them: it runs once they are durable. A crash before
//! that leaves the loss reported again, and the next start recovers again.

use crate::disk::{Corruption, CrashLoss, Disk, Done};
use crate::kv::{Key, Kv, KvResult, Val};
use crate::rng::Rng;
use crate::snapshot::{self, Incoming};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use synod_paxos::{
    Command, Config, DurableState, Engine, Membership, Message, NodeId, ProposeError, ReadError,
    ReadId, RecoveryPhase, SharedValue, Slot, SnapshotInfo,
};
use synod_storage::{Batch, StorageError};

/// Most `Ready`s one input may produce before the driver calls it a livelock.
const READY_ROUNDS_MAX: usize = 10_000;

/// Which client operation a request belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub client: u64,
    pub op: u64,
}

/// A request from a client, as the replica's API receives it.
#[derive(Clone, Debug)]
pub enum Request {
    Propose {
        ticket: Ticket,
        command: Command,
    },
    Read {
        ticket: Ticket,
        key: Key,
    },
    /// The operator asks this replica (the leader, it believes) for a membership change.
    ChangeMembership(Membership),
    /// The operator asks this replica (the leader) to hand leadership to a voter.
    TransferLeadership(NodeId),
}

/// Inputs that wait in a paused node's queue until it resumes.
#[derive(Debug)]
pub enum Held {
    Message(Message),
    Request(Request),
    /// A group of writes became durable (its sync returned): the last persist seq and the
    /// messages that waited for it. Held while the process is stopped.
    Persisted(Option<u64>, Vec<Message>),
    /// A snapshot was saved (durable, the storage's log compacted up to it), or found not
    /// newer than the one on disk.
    SnapshotSaved {
        slot: Slot,
        data: Bytes,
        received: bool,
        saved: bool,
    },
    /// The end of a peer recovery was recorded durably.
    RecoveryFinished,
}

impl From<Done> for Held {
    fn from(done: Done) -> Held {
        match done {
            Done::Persisted(seq, messages) => Held::Persisted(seq, messages),
            Done::Snapshot {
                slot,
                data,
                received,
                saved,
            } => Held::SnapshotSaved {
                slot,
                data,
                received,
                saved,
            },
            Done::RecoveryFinished => Held::RecoveryFinished,
        }
    }
}

/// When this node takes snapshots and how it ships them (drawn per seed).
#[derive(Clone, Copy, Debug)]
pub struct SnapshotPolicy {
    /// A snapshot every this many applied slots; `None`: never (the log is never compacted).
    pub every: Option<u64>,
    /// Bytes per `SnapshotChunk` message.
    pub chunk_bytes: usize,
}

/// Snapshot work in progress, and the newest durable snapshot (what peers are sent).
#[derive(Debug, Default)]
struct Snapshots {
    /// The slot of the newest snapshot taken, saved or installed.
    last: Slot,
    /// Ours is being saved.
    saving: bool,
    /// A peer's is being saved; installed once durable.
    installing: Option<(SnapshotInfo, Kv)>,
    /// The newest durable snapshot.
    latest: Option<(Slot, Bytes)>,
    incoming: Option<Incoming>,
}

/// What happened to snapshots during one input, for the counters and the trace.
#[derive(Debug, Default)]
pub struct SnapshotEvents {
    pub taken: Vec<Slot>,
    pub saved: Vec<Slot>,
    /// (peer, slot, pieces)
    pub sent: Vec<(NodeId, Slot, usize)>,
    /// (sender, slot) reassembled and handed to the persist path.
    pub received: Vec<(NodeId, Slot)>,
    pub installed: Vec<Slot>,
}

/// One applied slot and the results of the commands it held.
#[derive(Debug)]
pub struct Applied {
    pub slot: Slot,
    pub value: SharedValue,
    pub results: Vec<(u64, u64, Option<KvResult>)>,
}

/// What the simulation must act on after feeding a node an input.
#[derive(Debug, Default)]
pub struct Effects {
    pub sends: Vec<Message>,
    /// Completion times of syncs started (each needs a `DiskDone` event).
    pub disk_done_at: Vec<u64>,
    pub applied: Vec<Applied>,
    pub reads: Vec<(Ticket, Result<Option<Val>, ReadError>)>,
    pub rejected: Vec<(Ticket, ProposeError)>,
    /// Outcomes of operator requests, for the trace.
    pub admin: Vec<String>,
    pub snapshots: SnapshotEvents,
    /// A breach of the engine's driver contract (not a protocol violation per se).
    pub contract: Option<String>,
    /// The engine ended its peer recovery (the end is queued for the persist path), and the
    /// persist path recorded an end durably.
    pub recovery_ended: bool,
    pub recovery_recorded: bool,
}

/// Where a node stands in recovering from a lost log tail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PeerRecovery {
    /// No loss reported at the last start, or its recovery is over and recorded.
    #[default]
    Idle,
    /// The engine is recovering (`Status::recovery` is `Some`).
    Engine,
    /// The engine is done; `finish_peer_recovery` is queued behind the last `Ready`.
    Recording,
}

/// Why a node did not start.
#[derive(Debug)]
pub enum StartError {
    /// Recovery failed: the disk is damaged (what the server refuses to start on).
    Refused(StorageError),
    /// Recovery succeeded on a disk damaged in a way the storage said it would detect. The
    /// engine was not started: that would serve corrupted state.
    CorruptionServed(Corruption),
}

/// A clock running at `1 + drift_ppm / 10^6` times real speed since `epoch_us`; one local
/// tick is one local millisecond.
#[derive(Clone, Copy, Debug)]
struct Clock {
    drift_ppm: i64,
    epoch_us: u64,
}

impl Clock {
    fn rate(&self) -> u128 {
        (1_000_000 + self.drift_ppm) as u128
    }

    /// Local ticks elapsed by real time `now_us`.
    fn ticks_at(&self, now_us: u64) -> u64 {
        let elapsed = u128::from(now_us.saturating_sub(self.epoch_us));
        (elapsed * self.rate() / 1_000_000_000) as u64
    }

    /// Real time at which local tick `k` happens (the first microsecond it is owed).
    fn time_of_tick(&self, k: u64) -> u64 {
        let us = (u128::from(k) * 1_000_000_000).div_ceil(self.rate());
        self.epoch_us + us as u64
    }
}

#[derive(Debug)]
pub struct Node {
    pub id: u64,
    config: Config,
    engine: Option<Engine>,
    pub disk: Disk,
    pub kv: Kv,
    clock: Clock,
    ticks_delivered: u64,
    /// Bumped on every restart, so events meant for a previous life are ignored.
    pub incarnation: u64,
    pub paused: bool,
    /// The disk refused to start (damage detected): down for good, as an operator would keep
    /// it until the replica is replaced.
    pub refused: Option<String>,
    held: VecDeque<Held>,
    next_read_id: ReadId,
    reads: BTreeMap<ReadId, (Ticket, Key)>,
    policy: SnapshotPolicy,
    snapshots: Snapshots,
    /// Started at least once (a node added to the cluster may be started only once the
    /// change naming it is chosen).
    pub launched: bool,
    /// Removed from the cluster and stopped for good: never restarted.
    pub retired: bool,
    /// Gather inputs this long before taking the engine's output (`Swarm::turn_us`).
    pub turn_us: u64,
    /// Inputs were handled whose output was not taken yet: the simulation ends the turn.
    pub drain_owed: bool,
    /// Recovery from a lost log tail, since the last start.
    pub peer_recovery: PeerRecovery,
}

impl Node {
    /// A node with an empty disk (it writes `bootstrap` on its first start), not started.
    pub fn new(
        config: Config,
        bootstrap: DurableState,
        drift_ppm: i64,
        policy: SnapshotPolicy,
    ) -> Node {
        Node {
            id: config.id,
            disk: Disk::new(bootstrap),
            config,
            engine: None,
            kv: Kv::default(),
            clock: Clock {
                drift_ppm,
                epoch_us: 0,
            },
            ticks_delivered: 0,
            incarnation: 0,
            paused: false,
            refused: None,
            held: VecDeque::new(),
            next_read_id: 1,
            reads: BTreeMap::new(),
            policy,
            snapshots: Snapshots::default(),
            launched: false,
            retired: false,
            turn_us: 0,
            drain_owed: false,
            peer_recovery: PeerRecovery::Idle,
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
        self.engine = None;
        self.drain_owed = false;
        self.held.clear();
        self.reads.clear();
        self.paused = false;
        self.incarnation += 1;
        self.retired = true;
    }

    /// The slot of the newest durable snapshot this node holds (0 without one).
    pub fn snapshot_slot(&self) -> Slot {
        self.snapshots.latest.as_ref().map_or(0, |(s, _)| *s)
    }

    pub fn engine(&self) -> Option<&Engine> {
        self.engine.as_ref()
    }

    pub fn is_up(&self) -> bool {
        self.engine.is_some()
    }

    /// Up and not paused: able to act right now.
    pub fn is_running(&self) -> bool {
        self.engine.is_some() && !self.paused
    }

    /// Starts (or restarts) the engine from what the disk recovered, with an empty state
    /// machine (the engine re-delivers every chosen slot from slot 1) and a fresh clock. An
    /// engine is never started from a damaged disk, whether recovery noticed or not.
    fn start(&mut self, now_us: u64) -> Result<(), StartError> {
        let (mut durable, snapshot) = self.disk.open().map_err(StartError::Refused)?;
        if let Some(c) = self.disk.corruption().filter(|c| c.detectable) {
            return Err(StartError::CorruptionServed(c));
        }
        // The state machine starts from the newest durable snapshot, the engine from it and
        // the log suffix above it.
        self.snapshots = Snapshots::default();
        self.kv = match snapshot {
            Some(data) => {
                let (info, kv) = snapshot::decode(&data)
                    .unwrap_or_else(|e| panic!("node {}: own snapshot unreadable: {e}", self.id));
                self.snapshots.last = info.slot;
                self.snapshots.latest = Some((info.slot, data));
                durable.snapshot = Some(info);
                kv
            }
            None => Kv::default(),
        };
        let mut config = self.config.clone();
        // A real process seeds its election randomness afresh on every start.
        config.seed = self.config.seed ^ self.incarnation.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut engine =
            Engine::new(config, durable).expect("the configuration was validated before the run");
        self.peer_recovery = PeerRecovery::Idle;
        if self.disk.lost_tail().is_some() {
            // Before any other input: this replica may have forgotten votes it gave.
            engine.start_peer_recovery();
            self.peer_recovery = PeerRecovery::Engine;
        }
        self.engine = Some(engine);
        self.clock.epoch_us = now_us;
        self.ticks_delivered = 0;
        self.paused = false;
        self.held.clear();
        self.reads.clear();
        Ok(())
    }

    /// The process dies: pending disk writes are lost (or torn), memory is gone.
    pub fn crash(&mut self, rng: &mut Rng, torn: bool) -> CrashLoss {
        self.engine = None;
        self.peer_recovery = PeerRecovery::Idle;
        self.held.clear();
        self.reads.clear();
        self.paused = false;
        self.incarnation += 1;
        self.disk.crash(rng, torn)
    }

    /// Starts the process again from its disk, or fails and stays down for good.
    pub fn restart(&mut self, now_us: u64) -> Result<(), StartError> {
        debug_assert!(self.engine.is_none() && self.refused.is_none());
        self.start(now_us).inspect_err(|e| {
            self.refused = Some(match e {
                StartError::Refused(e) => e.to_string(),
                StartError::CorruptionServed(c) => format!("corruption served: {c:?}"),
            })
        })
    }

    /// Real time at which the quiet period of this node's peer recovery ends, while it is in
    /// one (`RecoveryPhase::Quiet`, in local ticks since the start).
    pub fn recovery_quiet_until(&self) -> Option<u64> {
        match self.engine.as_ref()?.status().recovery? {
            RecoveryPhase::Quiet { until } => Some(self.clock.time_of_tick(until)),
            _ => None,
        }
    }

    /// Real time of the next local tick, for scheduling.
    pub fn next_tick_at(&self) -> u64 {
        self.clock.time_of_tick(self.ticks_delivered + 1)
    }

    /// Delivers every tick the local clock owes by `now_us`, draining after each one.
    pub fn catch_up(&mut self, now_us: u64, rng: &mut Rng, fsync: (u64, u64), fx: &mut Effects) {
        let owed = self.clock.ticks_at(now_us);
        while self.ticks_delivered < owed && self.engine.is_some() {
            self.ticks_delivered += 1;
            self.engine.as_mut().expect("checked").tick();
            self.drain(now_us, rng, fsync, fx);
        }
    }

    /// Lets a running node act without new input: after a start the engine has chosen slots
    /// from its disk to deliver.
    pub fn poke(&mut self, now_us: u64, rng: &mut Rng, fsync: (u64, u64), fx: &mut Effects) {
        if self.is_running() {
            self.catch_up(now_us, rng, fsync, fx);
            self.drain(now_us, rng, fsync, fx);
        }
    }

    /// Feeds one input (catching up on ticks first), or holds it while paused.
    pub fn input(
        &mut self,
        held: Held,
        now_us: u64,
        rng: &mut Rng,
        fsync: (u64, u64),
        fx: &mut Effects,
    ) {
        if self.engine.is_none() {
            return;
        }
        if self.paused {
            self.held.push_back(held);
            return;
        }
        self.catch_up(now_us, rng, fsync, fx);
        let engine = self.engine.as_mut().expect("checked");
        match held {
            Held::Message(m) => engine.step(m),
            Held::Request(Request::Propose { ticket, command }) => {
                if let Err(e) = engine.propose(vec![command]) {
                    fx.rejected.push((ticket, e));
                }
            }
            Held::Request(Request::Read { ticket, key }) => {
                let id = self.next_read_id;
                self.next_read_id += 1;
                self.reads.insert(id, (ticket, key));
                engine.read_barrier(id);
            }
            Held::Request(Request::ChangeMembership(m)) => {
                let voters = m.voters().to_vec();
                let learners = m.learners().to_vec();
                let outcome = match engine.propose_membership(m) {
                    Ok(()) => "accepted".to_string(),
                    Err(e) => format!("refused: {e}"),
                };
                fx.admin.push(format!(
                    "membership change to voters {voters:?} learners {learners:?} {outcome}"
                ));
            }
            Held::Request(Request::TransferLeadership(to)) => {
                let outcome = match engine.transfer_leadership(to) {
                    Ok(()) => "accepted".to_string(),
                    Err(e) => format!("refused: {e}"),
                };
                fx.admin
                    .push(format!("leadership transfer to n{to} {outcome}"));
            }
            Held::Persisted(seq, messages) => {
                fx.sends.extend(messages);
                if let Some(seq) = seq {
                    engine.persisted(seq);
                }
            }
            Held::SnapshotSaved {
                slot,
                data,
                received,
                saved,
            } => self.snapshot_saved(slot, data, received, saved, fx),
            Held::RecoveryFinished => {
                self.peer_recovery = PeerRecovery::Idle;
                fx.recovery_recorded = true;
            }
        }
        if self.turn_us == 0 {
            self.drain(now_us, rng, fsync, fx);
        } else {
            self.drain_owed = true; // more inputs may join this turn
        }
    }

    /// The persist path saved a snapshot (or found a newer one on disk).
    fn snapshot_saved(
        &mut self,
        slot: Slot,
        data: Bytes,
        received: bool,
        saved: bool,
        fx: &mut Effects,
    ) {
        if saved && self.snapshot_slot() < slot {
            self.snapshots.latest = Some((slot, data));
        }
        let engine = self.engine.as_mut().expect("checked by the caller");
        if !received {
            self.snapshots.saving = false;
            if saved {
                // Durable: the engine may forget what it covers.
                engine.compact(slot);
                fx.snapshots.saved.push(slot);
            }
            return;
        }
        let Some((info, kv)) = self.snapshots.installing.take() else {
            return;
        };
        debug_assert_eq!(info.slot, slot);
        if !saved || !engine.wants_snapshot(slot) {
            return; // overtaken meanwhile: keep the state machine we have
        }
        self.kv = kv;
        let installed = engine.install_snapshot(info);
        assert!(installed, "wanted a moment ago");
        self.snapshots.last = self.snapshots.last.max(slot);
        fx.snapshots.installed.push(slot);
    }

    /// Takes a snapshot when `every` slots were applied since the last one and none is
    /// being saved or installed: encoded now, saved by the persist path after every write
    /// queued before it.
    fn maybe_snapshot(&mut self, applied: Slot, fx: &mut Effects) {
        let Some(every) = self.policy.every else {
            return;
        };
        if applied < self.snapshots.last + every
            || self.snapshots.saving
            || self.snapshots.installing.is_some()
        {
            return;
        }
        let engine = self.engine.as_ref().expect("checked by the caller");
        let info = engine.snapshot_info(applied);
        let data = snapshot::encode(&info, &self.kv);
        self.snapshots.last = applied;
        self.snapshots.saving = true;
        self.disk.enqueue_snapshot(applied, data, false);
        fx.snapshots.taken.push(applied);
    }

    /// Ships the newest durable snapshot to a peer that lags behind the compaction point.
    fn send_snapshot(&mut self, peer: NodeId, fx: &mut Effects) {
        let Some((slot, data)) = &self.snapshots.latest else {
            fx.contract = Some(format!(
                "node {}: asked to send a snapshot to n{peer} but holds none",
                self.id
            ));
            return;
        };
        let pieces = snapshot::chunks(self.id, peer, *slot, data, self.policy.chunk_bytes);
        fx.snapshots.sent.push((peer, *slot, pieces.len()));
        fx.sends.extend(pieces);
    }

    /// A piece of a peer's snapshot; once whole, decoded and still wanted, it goes to the
    /// persist path (then `snapshot_saved` installs it).
    fn receive_chunk(&mut self, chunk: synod_paxos::SnapshotChunk, fx: &mut Effects) {
        let from = chunk.from;
        let Some((slot, data)) = Incoming::add(&mut self.snapshots.incoming, chunk) else {
            return;
        };
        let engine = self.engine.as_ref().expect("checked by the caller");
        if self.snapshots.installing.is_some() || !engine.wants_snapshot(slot) {
            return;
        }
        match snapshot::decode(&data) {
            Ok((info, kv)) if info.slot == slot => {
                self.snapshots.installing = Some((info, kv));
                self.disk.enqueue_snapshot(slot, data, true);
                fx.snapshots.received.push((from, slot));
            }
            Ok((info, _)) => {
                fx.contract = Some(format!(
                    "node {}: a snapshot sent as slot {slot} holds slot {}",
                    self.id, info.slot
                ))
            }
            Err(e) => {
                fx.contract = Some(format!(
                    "node {}: undecodable snapshot from n{from}: {e}",
                    self.id
                ))
            }
        }
    }

    /// Resumes a paused node: ticks first, then everything that queued up, in order.
    pub fn resume(&mut self, now_us: u64, rng: &mut Rng, fsync: (u64, u64), fx: &mut Effects) {
        self.paused = false;
        self.catch_up(now_us, rng, fsync, fx);
        while let Some(h) = self.held.pop_front() {
            self.input(h, now_us, rng, fsync, fx);
        }
    }

    /// Takes `Ready`s until the engine has nothing more, carrying out each one.
    fn drain(&mut self, now_us: u64, rng: &mut Rng, fsync: (u64, u64), fx: &mut Effects) {
        self.drain_owed = false;
        if self.engine.is_none() {
            return;
        }
        let mut rounds = 0;
        while self.engine.as_ref().is_some_and(Engine::has_ready) {
            let engine = self.engine.as_mut().expect("checked");
            rounds += 1;
            if rounds > READY_ROUNDS_MAX {
                fx.contract = Some(format!(
                    "node {}: has_ready() still true after {READY_ROUNDS_MAX} Readys",
                    self.id
                ));
                return;
            }
            let ready = engine.ready();
            if ready.persist_seq.is_some() {
                self.disk.enqueue(
                    ready.persist_seq,
                    Batch::new(ready.hard_state, ready.records),
                    ready.messages_after_persist,
                );
            } else if ready.hard_state.is_some()
                || !ready.records.is_empty()
                || !ready.messages_after_persist.is_empty()
            {
                fx.contract = Some(format!(
                    "node {}: Ready has something to persist but no persist_seq",
                    self.id
                ));
            }
            fx.sends.extend(ready.messages);
            let mut last = None;
            for c in ready.committed {
                if c.slot != self.kv.applied() + 1 {
                    fx.contract = Some(format!(
                        "node {}: committed slot {} delivered after slot {}",
                        self.id,
                        c.slot,
                        self.kv.applied()
                    ));
                    return;
                }
                let results = self.kv.apply(c.slot, &c.value);
                last = Some(c.slot);
                fx.applied.push(Applied {
                    slot: c.slot,
                    value: c.value,
                    results,
                });
            }
            if let Some(slot) = last {
                engine.applied(slot);
            }
            for id in ready.reads_ready {
                if let Some((ticket, key)) = self.reads.remove(&id) {
                    fx.reads.push((ticket, Ok(self.kv.get(key))));
                }
            }
            for (id, e) in ready.reads_failed {
                if let Some((ticket, _)) = self.reads.remove(&id) {
                    fx.reads.push((ticket, Err(e)));
                }
            }
            if let Some(slot) = last {
                self.maybe_snapshot(slot, fx);
            }
            for peer in ready.send_snapshot {
                self.send_snapshot(peer, fx);
            }
            for chunk in ready.snapshot_chunks {
                self.receive_chunk(chunk, fx);
            }
        }
        // The recovery ended: every Ready up to here is queued (the last one carries the promise
        // raised to the fence), so recording the end behind them is in order.
        if self.peer_recovery == PeerRecovery::Engine
            && self
                .engine
                .as_ref()
                .is_some_and(|e| e.status().recovery.is_none())
        {
            self.peer_recovery = PeerRecovery::Recording;
            self.disk.enqueue_finish_recovery();
            fx.recovery_ended = true;
        }
        // The persist thread picks up what this input queued once its current sync is done.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_ticks_and_times_agree() {
        for drift in [-300_000, -50_000, 0, 1, 50_000, 300_000] {
            let c = Clock {
                drift_ppm: drift,
                epoch_us: 1234,
            };
            for k in [1, 2, 39, 40, 1000, 123_457] {
                let t = c.time_of_tick(k);
                assert_eq!(c.ticks_at(t), k, "drift {drift} tick {k}");
                assert_eq!(c.ticks_at(t - 1), k - 1, "drift {drift} tick {k}");
            }
        }
    }
}
