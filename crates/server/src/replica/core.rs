//! The core task: steps the engine with every input, hands its output to the network and
//! the persist thread, applies chosen commands to the key-value store and answers clients.

use super::persist::{self, PersistJob};
use super::readers::{Readers, INLINE_READ_WORK_MAX};
use super::snapshot_receiver::SnapshotReceiver;
use super::ticker;
use super::{Input, ReplicaHandle, Reply, INPUT_QUEUE_MAX};
use crate::error::ServerError;
use crate::metrics::Metrics;
use crate::snapshot;
use crate::status::{Shared, Snapshot};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use synod_kv::{KvStore, ReadRequest, Reads, Response};
use synod_paxos::{
    Body, Command, Config, DurableState, Engine, Message, NodeId, ProposeError, ReadError, ReadId,
    Ready, Role, Slot, SnapshotChunk, SnapshotInfo, Value,
};
use tokio::sync::mpsc;

/// Inputs handled between two `Ready`s at most, so a flood of one kind (say, client writes)
/// cannot starve the engine's output (and with it, the replies).
const INPUTS_PER_READY_MAX: usize = 4096;

/// Work (records looked at or copied) of compaction's trimming per turn (synod-kv
/// `KvStore::compact_step`): trimming 1,000,000 records of 10,000 keys took at most 1.24 ms
/// per step in a release build, where dropping them all at once took 247 ms.
const COMPACT_STEP_WORK_MAX: u64 = 10_000;

/// Snapshots travel to peers in pieces of this size (each one peer message).
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// Where the core sends messages for peers. The transport implements it; tests can too.
pub trait Network: Send + Sync + 'static {
    fn send(&self, message: Message);

    /// The members changed: where each peer listens now (id -> host:port).
    fn set_peers(&self, _peers: BTreeMap<NodeId, String>) {}

    /// The connection `peer`'s messages arrive on now (`None`: it has none), so that a
    /// snapshot being received from it is dropped once that connection is gone. A network
    /// that cannot tell reports one connection forever.
    fn inbound_connection(&self, _peer: NodeId) -> Option<u64> {
        Some(0)
    }
}

impl Network for crate::transport::Transport {
    fn send(&self, message: Message) {
        crate::transport::Transport::send(self, message);
    }

    fn set_peers(&self, peers: BTreeMap<NodeId, String>) {
        self.update_peers(peers);
    }

    fn inbound_connection(&self, peer: NodeId) -> Option<u64> {
        crate::transport::Transport::inbound_connection(self, peer)
    }
}

#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub engine: Config,
    /// Real time per engine tick.
    pub tick: Duration,
    /// Rate error of this member's clock, in parts per million (tests only: how leases
    /// behave when a clock runs fast or slow).
    pub clock_skew_ppm: i64,
    pub request_timeout: Duration,
    /// Planted bug (tests of the fault-injection harness only): linearizable reads are
    /// served from local state, with no read barrier.
    pub planted_bug_local_reads: bool,
    /// Take a snapshot (and drop the log below it) after this many applied commands.
    pub snapshot_every_commands: u64,
    /// This member's advertised client URLs, published in the member table.
    pub client_urls: Vec<String>,
    /// Addresses to dial some peers at instead of their peer URLs (`--peer-dial`, tests).
    pub peer_dial: BTreeMap<NodeId, String>,
    /// Automatic compaction of the store's history (`--auto-compaction-*`); `None`: off.
    pub auto_compaction: Option<super::Retention>,
}

#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

struct PendingWrite {
    reply: Reply<Response>,
    arrived: Instant,
    /// The leader the write went to (this member, or the one it was forwarded to).
    leader: Option<NodeId>,
    /// A Txn with reads holds one of `TXN_READS_INFLIGHT_MAX` until answered.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

struct Core {
    engine: Engine,
    /// The engine is recovering a lost log tail from its peers (serializable reads refused).
    recovering: bool,
    kv: KvStore,
    network: Arc<dyn Network>,
    persist: std::sync::mpsc::Sender<PersistJob>,
    /// This incarnation's client id for the dedup table: proposals of earlier incarnations
    /// may still be applied, but nobody here waits for them.
    client_id: u64,
    next_seq: u64,
    writes: BTreeMap<u64, PendingWrite>,
    next_read: ReadId,
    reads: HashMap<ReadId, (ReadRequest, Reply<Response>)>,
    /// Serves the reads too large to run here (readers.rs).
    readers: Readers,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    request_timeout: Duration,
    last_leader: Option<NodeId>,
    last_role: Role,
    applied_since_snapshot: u64,
    /// Payload bytes of the commands applied since the last snapshot.
    applied_bytes_since_snapshot: u64,
    fatal: Option<String>,
    clock: ticker::TickClock,
    planted_bug_local_reads: bool,
    snapshots: Snapshots,
    admin: super::admin::Admin,
    peer_dial: BTreeMap<NodeId, String>,
    /// Writes our own snapshots' files off the persist thread (disk storage only).
    snapshot_writer: Option<synod_storage::SnapshotWriter>,
    compactor: Option<super::compactor::Compactor>,
}

/// Makes the calling thread yield the CPU to the member's other threads when they compete
/// for it (nice 10). For snapshot encoding: it can take a second of CPU and is needed only
/// eventually (to bound the log), while the runtime thread and the persist thread serve
/// clients now; at equal priority, on a busy machine, it showed as a dip in throughput and a
/// higher p99 while a snapshot was encoded.
pub(super) fn lower_priority() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), SNAPSHOT_THREAD_NICE) {
        tracing::debug!("cannot lower the priority of a snapshot thread: {e}");
    }
}

/// Nice value of threads doing background work (snapshot encoding).
const SNAPSHOT_THREAD_NICE: i32 = 10;

/// Replaces the addresses of peers named in `--peer-dial`.
fn dial_overrides(peers: &mut BTreeMap<NodeId, String>, dial: &BTreeMap<NodeId, String>) {
    for (id, addr) in peers.iter_mut() {
        if let Some(a) = dial.get(id) {
            addr.clone_from(a);
        }
    }
}

/// Snapshot state: taking them by policy, serving them to lagging peers, and reassembling
/// one from a peer.
#[derive(Debug, Default)]
struct Snapshots {
    /// Take a snapshot after this many applied commands (etcd's `--snapshot-count`).
    every_commands: u64,
    /// The newest durable snapshot (slot, encoded), served to peers that need it.
    latest: Option<(Slot, Bytes)>,
    /// A snapshot of our own is being written.
    saving: bool,
    /// A snapshot from a peer being reassembled (bounded; only the leader's).
    receiver: SnapshotReceiver,
    /// A received snapshot, decoded and waiting to be durable before it replaces the store.
    installing: Option<(SnapshotInfo, KvStore)>,
}

/// The state machine as restored from the newest snapshot (empty without one).
#[derive(Debug, Default)]
pub struct Restored {
    pub kv: KvStore,
    /// The snapshot itself (slot, encoded), to serve to peers that need it.
    pub latest: Option<(Slot, Bytes)>,
}

/// The running replica: its core task and its threads.
#[derive(Debug)]
pub struct Replica {
    pub handle: ReplicaHandle,
    core: tokio::task::JoinHandle<Result<(), String>>,
    persist: JoinHandle<()>,
    ticker: JoinHandle<()>,
}

impl Replica {
    /// Waits for the core and the threads to end (after `handle.shutdown()`); the error
    /// says why the replica stopped, if it was not asked to.
    pub async fn join(self) -> Result<(), String> {
        let result = self
            .core
            .await
            .unwrap_or_else(|e| Err(format!("replica task failed: {e}")));
        // Both end once the core has dropped its end of their queues.
        let (persist, ticker) = (self.persist, self.ticker);
        let _ = tokio::task::spawn_blocking(move || {
            let _ = persist.join();
            let _ = ticker.join();
        })
        .await;
        result
    }
}

/// Starts the replica's core task (on the current runtime) and threads. `durable` is what
/// storage recovered (or the bootstrap state, already written); the engine re-delivers
/// every chosen slot from slot 1, which rebuilds the key-value store.
#[allow(clippy::too_many_arguments)]
pub fn start(
    cfg: CoreConfig,
    durable: DurableState,
    restored: Restored,
    wal: Box<dyn synod_storage::Storage + Send>,
    network: Arc<dyn Network>,
    from_peers: mpsc::Receiver<Message>,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    incarnation: u64,
) -> Result<Replica, StartError> {
    let engine =
        Engine::new(cfg.engine.clone(), durable).map_err(|e| StartError(format!("engine: {e}")))?;
    let mut engine = engine;
    if let Some(loss) = wal.recovered().lost_tail() {
        // Acknowledged promises or values may be gone: vote on nothing until the peers told
        // us what we may have promised and accepted (docs/PROTOCOL.md).
        metrics.conditions.raise(
            crate::conditions::Condition::RecoveringFromPeers,
            format!(
                "the write-ahead log lost part of its synced tail ({loss}); this member votes \
                 on nothing and serves no serializable read until it recovered what it may \
                 have promised and accepted from a quorum of its peers"
            ),
        );
        engine.start_peer_recovery();
        // A member whose whole log is gone knows no membership: ask the members the flags
        // name too; their answers say which memberships must answer.
        engine.hint_recovery_peers(shared.members().members.keys().copied());
    }
    let (inputs_tx, inputs_rx) = mpsc::channel(INPUT_QUEUE_MAX);
    let (persist_tx, persist_rx) = std::sync::mpsc::channel();
    let snapshot_writer = wal.snapshot_writer();
    tokio::spawn(super::forward_peer_messages(from_peers, inputs_tx.clone()));

    let persist = persist::spawn(
        wal,
        persist_rx,
        network.clone(),
        inputs_tx.clone(),
        metrics.clone(),
    );
    let ticker = ticker::spawn(cfg.tick, inputs_tx.clone());
    let admin = super::admin::Admin::new(
        shared.cluster_id,
        shared.member_id,
        shared.name.clone(),
        cfg.client_urls.clone(),
        &engine,
    );
    // The transport starts with the peers the flags name; the log's member table rules.
    if !admin.table.members.is_empty() {
        let mut peers = admin.table.peer_addrs(shared.member_id);
        dial_overrides(&mut peers, &cfg.peer_dial);
        network.set_peers(peers);
        shared.set_members(admin.table.clone());
    }
    let core = Core {
        recovering: engine.status().recovery.is_some(),
        engine,
        kv: restored.kv,
        network,
        persist: persist_tx,
        client_id: incarnation,
        next_seq: 1,
        writes: BTreeMap::new(),
        next_read: 1,
        reads: HashMap::new(),
        readers: Readers::start(),
        shared,
        metrics,
        request_timeout: cfg.request_timeout,
        last_leader: None,
        last_role: Role::Follower,
        applied_since_snapshot: 0,
        applied_bytes_since_snapshot: 0,
        fatal: None,
        clock: ticker::TickClock::new(cfg.tick, cfg.clock_skew_ppm),
        planted_bug_local_reads: cfg.planted_bug_local_reads,
        snapshots: Snapshots {
            every_commands: cfg.snapshot_every_commands,
            latest: restored.latest,
            ..Snapshots::default()
        },
        admin,
        peer_dial: cfg.peer_dial.clone(),
        snapshot_writer,
        compactor: cfg.auto_compaction.map(super::compactor::Compactor::new),
    };
    let core = tokio::spawn(core.run(inputs_rx));
    Ok(Replica {
        handle: ReplicaHandle {
            inputs: inputs_tx,
            request_timeout: cfg.request_timeout,
            txn_reads: Arc::new(tokio::sync::Semaphore::new(super::TXN_READS_INFLIGHT_MAX)),
        },
        core,
        persist,
        ticker,
    })
}

impl Core {
    /// Handles inputs until told to stop (or the queue closes). A task on the server's
    /// single-threaded runtime, beside the gRPC handlers and the transport: handing it an
    /// input, or it a reply to them, costs no thread wake-up (see `replica/mod.rs`).
    async fn run(mut self, mut inputs: mpsc::Receiver<Input>) -> Result<(), String> {
        self.publish();
        while let Some(first) = inputs.recv().await {
            if !self.turn(first, &mut inputs) {
                break;
            }
        }
        self.finish()
    }

    fn finish(&mut self) -> Result<(), String> {
        self.fail_all(ServerError::Stopped);
        match self.fatal.take() {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    /// Handles `first` and whatever else is queued (up to a bound), then drains the engine's
    /// output. Returns false when the replica must stop.
    fn turn(&mut self, first: Input, inputs: &mut mpsc::Receiver<Input>) -> bool {
        // Time first: whatever arrived is handled at the engine's current idea of now.
        for _ in 0..self.clock.take_due(Instant::now()) {
            self.engine.tick();
        }
        if !self.handle(first) {
            return false;
        }
        let mut stop = false;
        for _ in 0..INPUTS_PER_READY_MAX {
            match inputs.try_recv() {
                Ok(input) => {
                    if !self.handle(input) {
                        stop = true;
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        self.admin.poll(
            &mut self.engine,
            self.client_id,
            &mut self.next_seq,
            Instant::now(),
        );
        while self.engine.has_ready() {
            let ready = self.engine.ready();
            self.process(ready);
        }
        // A Compact only moves the compaction revision; the history it makes unreachable is
        // dropped a bounded amount per turn (the ticker guarantees turns), so compacting a
        // long history never holds this thread (synod-kv compact.rs).
        if self.kv.compaction_pending() {
            self.kv.compact_step(COMPACT_STEP_WORK_MAX);
        }
        self.publish();
        if stop {
            return false;
        }
        if self.removed_and_done() {
            tracing::warn!(
                "this member was removed from the cluster and the change is in force: \
                 stopping (its data directory must not be reused; add a new member instead)"
            );
            return false;
        }
        true
    }

    /// Returns false when the replica must stop.
    fn handle(&mut self, input: Input) -> bool {
        match input {
            Input::Peer(m) => self.engine.step(m),
            Input::Write {
                payload,
                reply,
                arrived,
                permit,
            } => self.propose(payload, reply, arrived, permit),
            Input::Read {
                request,
                linearizable,
                reply,
            } => self.read(request, linearizable, reply),
            Input::Tick => {
                let now = Instant::now();
                let (leader, network) = (self.engine.status().leader, &self.network);
                self.snapshots
                    .receiver
                    .check(leader, |peer| network.inbound_connection(peer), now);
                self.expire(now);
                self.auto_compact(now);
            }
            Input::Admin { request, reply } => {
                let deadline = Instant::now() + self.request_timeout;
                let seq = self.next_seq;
                match self.admin.submit(
                    &mut self.engine,
                    self.client_id,
                    seq,
                    request,
                    Some(reply),
                    deadline,
                ) {
                    Ok(()) => self.next_seq += 1,
                    Err((e, reply)) => {
                        if let Some(reply) = reply {
                            let _ = reply.send(Err(e));
                        }
                    }
                }
            }
            Input::MoveLeader { to, reply } => {
                // Answer before the client's own wait (the request timeout) gives up, so it
                // hears why rather than a bare timeout.
                let deadline = Instant::now() + self.request_timeout.mul_f64(0.9);
                self.admin
                    .move_leader(&mut self.engine, to, reply, deadline);
            }
            Input::Export { reply } => {
                // Freeze the store here (O(1)); encode it on a thread of its own.
                let applied = self.engine.status().applied;
                let members = self.engine.snapshot_info(applied);
                let view = self.kv.snapshot_view();
                let spawned = std::thread::Builder::new()
                    .name("synod-export".into())
                    .spawn(move || {
                        lower_priority();
                        let data = snapshot::encode_view(&members, &view);
                        let _ = reply.send(Ok((applied, data)));
                    });
                if let Err(e) = spawned {
                    // The reply went with the closure: the client sees the request fail.
                    tracing::warn!("cannot start a thread to export a snapshot: {e}");
                }
            }
            Input::Persisted(seq) => self.engine.persisted(seq),
            Input::SnapshotSaved {
                slot,
                data,
                received,
                saved,
            } => self.snapshot_saved(slot, data, received, saved),
            Input::Fatal(reason) => {
                tracing::error!("stopping: {reason}");
                self.fatal = Some(reason);
                return false;
            }
            Input::Shutdown => return false,
        }
        true
    }

    fn propose(
        &mut self,
        payload: bytes::Bytes,
        reply: Reply<Response>,
        arrived: Instant,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) {
        let seq = self.next_seq;
        let command = Command {
            client_id: self.client_id,
            seq,
            payload,
        };
        match self.engine.propose(vec![command]) {
            Ok(()) => {
                self.next_seq += 1;
                self.metrics.proposals_submitted.fetch_add(1, Relaxed);
                let leader = self.engine.status().leader;
                self.writes.insert(
                    seq,
                    PendingWrite {
                        reply,
                        arrived,
                        leader,
                        permit,
                    },
                );
            }
            Err(e) => {
                self.metrics.proposals_failed.fetch_add(1, Relaxed);
                let _ = reply.send(Err(match e {
                    ProposeError::NoLeader => ServerError::NoLeader,
                    ProposeError::Busy => ServerError::TooManyRequests,
                    // Only membership proposals fail these ways; this is a command.
                    ProposeError::Empty
                    | ProposeError::NotLeader
                    | ProposeError::MembershipChanging => {
                        unreachable!("one command is proposed")
                    }
                }));
            }
        }
    }

    fn read(&mut self, request: ReadRequest, linearizable: bool, reply: Reply<Response>) {
        if !linearizable && self.recovering {
            let _ = reply.send(Err(ServerError::Recovering));
            return;
        }
        if !linearizable || self.planted_bug_local_reads {
            self.metrics.reads_serializable.fetch_add(1, Relaxed);
            self.serve(request, reply);
            return;
        }
        let id = self.next_read;
        self.next_read += 1;
        self.reads.insert(id, (request, reply));
        self.engine.read_barrier(id);
    }

    /// Serves a read from the store as it is now: here if it stays within
    /// `INLINE_READ_WORK_MAX`, else on a read worker, from a view frozen now (O(1)).
    fn serve(&mut self, request: ReadRequest, reply: Reply<Response>) {
        match self.kv.read_within(&request, INLINE_READ_WORK_MAX) {
            Some(result) => {
                let _ = reply.send(result.map_err(ServerError::from));
            }
            None => self.readers.read(self.kv.read_view(), request, reply),
        }
    }

    fn process(&mut self, ready: Ready) {
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
        } = ready;
        // Messages that do not depend on the write leave first: the disk write then runs in
        // parallel with the peers' own.
        for m in messages {
            self.network.send(m);
        }
        if persist_seq.is_some() || !messages_after_persist.is_empty() {
            self.persist_job(PersistJob::Ready {
                seq: persist_seq,
                batch: synod_storage::Batch::new(hard_state, records),
                after: messages_after_persist,
            });
        }
        let mut last = None;
        for c in committed {
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
            self.receive_chunk(chunk);
        }
        for id in reads_ready {
            if let Some((request, reply)) = self.reads.remove(&id) {
                self.metrics.reads_linearizable.fetch_add(1, Relaxed);
                self.serve(request, reply);
            }
        }
        for (id, e) in reads_failed {
            if let Some((_, reply)) = self.reads.remove(&id) {
                self.metrics.reads_failed.fetch_add(1, Relaxed);
                let _ = reply.send(Err(match e {
                    ReadError::NoLeader => ServerError::NoLeader,
                    ReadError::Busy => ServerError::TooManyRequests,
                    ReadError::Timeout => ServerError::Timeout,
                }));
            }
        }
    }

    fn apply(&mut self, slot: Slot, value: &Value) {
        self.metrics.slots_committed.fetch_add(1, Relaxed);
        let commands = match value {
            Value::Commands(commands) => commands,
            Value::Membership(m) => {
                if let Some(peers) = self
                    .admin
                    .on_membership(m, slot, self.client_id, &self.shared)
                {
                    self.set_peers(peers);
                }
                return;
            }
            Value::Noop => return, // fills a gap
        };
        self.metrics.batch_commands.observe(commands.len() as f64);
        self.applied_since_snapshot += commands.len() as u64;
        self.applied_bytes_since_snapshot +=
            commands.iter().map(|c| c.payload.len() as u64).sum::<u64>();
        for c in commands {
            if let Some(request) = crate::members::decode_request(&c.payload) {
                let origin = (c.client_id, c.seq);
                self.admin
                    .on_command(&self.engine, self.client_id, origin, request);
                self.metrics.proposals_applied.fetch_add(1, Relaxed);
                continue;
            }
            // A payload that does not decode fails the same way on every replica, so the
            // replicas stay identical; the proposer learns why. The command's reads (a Txn's
            // Range ops) are computed only for a client waiting here, and only within a
            // budget: the rest go to a read worker with frozen views.
            let waiting = if c.client_id == self.client_id {
                self.writes.remove(&c.seq)
            } else {
                None
            };
            let reads = match &waiting {
                Some(w) if !w.reply.is_closed() => Reads::Within(INLINE_READ_WORK_MAX),
                _ => Reads::Skip,
            };
            let applied = self
                .kv
                .apply_encoded_with(c.client_id, c.seq, &c.payload, reads);
            self.metrics.proposals_applied.fetch_add(1, Relaxed);
            if let Some(w) = waiting {
                self.metrics
                    .proposal_seconds
                    .observe(w.arrived.elapsed().as_secs_f64());
                if applied.is_complete() {
                    let _ = w.reply.send(applied.outcome().map_err(ServerError::from));
                } else {
                    self.readers.complete(applied, w.reply, w.permit);
                }
            }
        }
    }

    /// At the leader, proposes the compaction `--auto-compaction-*` asks for, through the
    /// log like a client's (nobody waits for its answer).
    fn auto_compact(&mut self, now: Instant) {
        if self.last_role != Role::Leader {
            return;
        }
        let (revision, compacted) = (self.kv.revision(), self.kv.compact_revision());
        let Some(target) = self
            .compactor
            .as_mut()
            .and_then(|c| c.due(now, revision, compacted))
        else {
            return;
        };
        tracing::info!(revision = target, "auto-compaction");
        let request = synod_kv::Request::Compact(synod_kv::CompactionRequest { revision: target });
        let (reply, _ignored) = tokio::sync::oneshot::channel();
        self.propose(synod_kv::encode_request(&request), reply, now, None);
    }

    fn persist_job(&mut self, job: PersistJob) {
        if self.persist.send(job).is_err() {
            self.fatal
                .get_or_insert_with(|| "the persist thread stopped".to_string());
        }
    }

    /// Takes a snapshot at `applied` when enough was applied since the last one: at least
    /// `--snapshot-count` commands, and commands of at least half as many bytes as the last
    /// snapshot holds. The second condition keeps the cost of snapshots proportional to the
    /// writes (at most about two bytes encoded per byte written): each one encodes and
    /// writes the whole store, which (without compaction) holds every revision ever
    /// written, so at a fixed command count their cost per write would grow with the
    /// history without bound. It costs at most half a snapshot's worth of log (memory,
    /// disk, and replay at restart) on top of the snapshot; with the history compacted the
    /// store is small and the command count decides, as before.
    ///
    /// Here the store is only frozen as of `applied` (O(1): its maps are persistent); a
    /// thread of its own encodes that view, however long it takes, and hands the bytes to
    /// the persist thread, which writes them after the batches queued before and reports
    /// `SnapshotSaved` as for any snapshot.
    fn maybe_snapshot(&mut self, applied: Slot) {
        let last_bytes = self
            .snapshots
            .latest
            .as_ref()
            .map_or(0, |(_, data)| data.len() as u64);
        if self.applied_since_snapshot < self.snapshots.every_commands
            || self.applied_bytes_since_snapshot < last_bytes / 2
            || self.snapshots.saving
            || self.snapshots.installing.is_some()
        {
            return;
        }
        let membership = self.engine.snapshot_info(applied);
        let view = self.kv.snapshot_view();
        let persist = self.persist.clone();
        let writer = self.snapshot_writer.clone();
        let spawned = std::thread::Builder::new()
            .name("synod-snapshot".into())
            .spawn(move || {
                lower_priority();
                let started = Instant::now();
                let data = snapshot::encode_view(&membership, &view);
                drop(view); // lets the core write in place again
                tracing::debug!(
                    slot = applied,
                    bytes = data.len(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "snapshot encoded"
                );
                // The file is written here too, so the log's group commits go on meanwhile;
                // the persist thread only adopts it (or, without a writer or if writing
                // failed here, writes it itself, reporting a real disk error).
                let written = writer.and_then(|w| match w.write(applied, &data) {
                    Ok(meta) => Some(meta),
                    Err(e) => {
                        tracing::warn!(slot = applied, "writing a snapshot file: {e}");
                        None
                    }
                });
                // Fails only once the persist thread has stopped, and the core with it.
                let _ = persist.send(PersistJob::Snapshot {
                    slot: applied,
                    data,
                    received: false,
                    written,
                });
            });
        self.applied_since_snapshot = 0;
        self.applied_bytes_since_snapshot = 0;
        match spawned {
            Ok(_) => self.snapshots.saving = true,
            Err(e) => tracing::warn!("cannot start a thread to encode a snapshot: {e}"),
        }
    }

    fn snapshot_saved(&mut self, slot: Slot, data: Bytes, received: bool, saved: bool) {
        if !received {
            self.snapshots.saving = false;
            if saved {
                // Durable: the engine may forget what it covers.
                self.engine.compact(slot);
                self.snapshots.latest = Some((slot, data));
                self.metrics.snapshots_saved.fetch_add(1, Relaxed);
            }
            return;
        }
        let Some((info, kv)) = self.snapshots.installing.take() else {
            return;
        };
        debug_assert_eq!(info.slot, slot);
        if !saved || !self.engine.wants_snapshot(slot) {
            return; // overtaken meanwhile: keep the store we have
        }
        self.kv = kv;
        let installed = self.engine.install_snapshot(info);
        debug_assert!(installed, "wanted a moment ago, on this same thread");
        if let Some(peers) = self.admin.on_snapshot(&self.engine, &self.shared) {
            self.set_peers(peers);
        }
        self.snapshots.latest = Some((slot, data));
        self.applied_since_snapshot = 0;
        self.applied_bytes_since_snapshot = 0;
        self.metrics.snapshots_installed.fetch_add(1, Relaxed);
        tracing::info!(slot, "installed a snapshot from a peer");
    }

    /// Sends our newest snapshot to a peer that lags behind our compaction point.
    fn send_snapshot(&mut self, peer: NodeId) {
        let Some((slot, data)) = self.snapshots.latest.clone() else {
            return; // nothing compacted without a snapshot, so this does not happen
        };
        let total = data.len() as u64;
        tracing::info!(peer, slot, bytes = total, "sending a snapshot");
        let mut offset = 0;
        while offset < data.len() {
            let end = (offset + SNAPSHOT_CHUNK_BYTES).min(data.len());
            self.network.send(Message {
                from: self.engine.id(),
                to: peer,
                body: Body::SnapshotChunk {
                    slot,
                    total,
                    offset: offset as u64,
                    data: data.slice(offset..end),
                },
            });
            offset = end;
        }
    }

    /// Hands a piece of a peer's snapshot to the receiver (`snapshot_receiver.rs`: the
    /// leader's only, memory bounded and freed with the transfer); once whole and valid, has
    /// it made durable (then `snapshot_saved` installs it).
    fn receive_chunk(&mut self, c: SnapshotChunk) {
        let leader = self.engine.status().leader;
        let connection = self.network.inbound_connection(c.from);
        let received = self
            .snapshots
            .receiver
            .receive(c, leader, connection, Instant::now());
        let Some(inc) = received else {
            return;
        };
        if self.snapshots.installing.is_some() || !self.engine.wants_snapshot(inc.slot) {
            return;
        }
        let data = inc.data;
        let decoded = snapshot::decode(&data).and_then(|(info, kv)| {
            if info.slot != inc.slot {
                return Err(format!(
                    "announced slot {} but holds slot {}",
                    inc.slot, info.slot
                ));
            }
            KvStore::restore(&kv)
                .map(|kv| (info, kv))
                .map_err(|e| e.to_string())
        });
        match decoded {
            Ok((info, kv)) => {
                self.snapshots.installing = Some((info, kv));
                self.persist_job(PersistJob::Snapshot {
                    slot: inc.slot,
                    data,
                    received: true,
                    written: None,
                });
            }
            Err(e) => tracing::warn!(
                from = inc.from,
                slot = inc.slot,
                "bad snapshot from a peer: {e}"
            ),
        }
    }

    /// Fails writes that waited longer than the request timeout (the client has given up;
    /// the command may still be applied later, which is why its outcome is "unknown").
    fn expire(&mut self, now: Instant) {
        while let Some(entry) = self.writes.first_entry() {
            if now.duration_since(entry.get().arrived) < self.request_timeout {
                break;
            }
            let w = entry.remove();
            self.metrics.proposals_failed.fetch_add(1, Relaxed);
            let _ = w.reply.send(Err(ServerError::Timeout));
        }
    }

    /// Writes that went to a leader that is no longer the leader may have been lost with
    /// it (or may still be chosen by its successor): tell their clients now that the outcome
    /// is unknown, rather than at the request timeout.
    fn fail_orphaned_writes(&mut self, leader: Option<NodeId>) {
        let orphaned: Vec<u64> = self
            .writes
            .iter()
            .filter(|(_, w)| w.leader != leader)
            .map(|(&seq, _)| seq)
            .collect();
        for seq in orphaned {
            if let Some(w) = self.writes.remove(&seq) {
                self.metrics.proposals_failed.fetch_add(1, Relaxed);
                let _ = w.reply.send(Err(ServerError::LeaderChanged));
            }
        }
    }

    fn fail_all(&mut self, e: ServerError) {
        for (_, w) in std::mem::take(&mut self.writes) {
            let _ = w.reply.send(Err(e.clone()));
        }
        for (_, (_, reply)) in self.reads.drain() {
            let _ = reply.send(Err(e.clone()));
        }
    }

    /// This member was removed and is no longer needed (`Engine::retired`: a slot the
    /// membership without it governs is chosen; a removed leader hands over first).
    fn removed_and_done(&mut self) -> bool {
        let status = self.engine.status();
        // The engine only knows the newest membership it learned leaves this member out: a
        // member that joined later sees such memberships while it replays the log. Removal
        // is what the member table records (its removed ids).
        status.retired && self.admin.table.removed.contains(&self.shared.member_id)
    }

    fn set_peers(&self, mut peers: BTreeMap<NodeId, String>) {
        dial_overrides(&mut peers, &self.peer_dial);
        self.network.set_peers(peers);
    }

    fn publish(&mut self) {
        let status = self.engine.status();
        if self.recovering && status.recovery.is_none() {
            // Recorded as done only once the Ready that ended it (with the promise raised to
            // the fence) is durable: the persist thread takes jobs in order.
            self.recovering = false;
            self.persist_job(PersistJob::FinishRecovery);
        }
        if status.leader != self.last_leader {
            if status.leader.is_some() {
                self.metrics.leader_changes.fetch_add(1, Relaxed);
            }
            tracing::info!(leader = ?status.leader, role = ?status.role, "leader changed");
            self.last_leader = status.leader;
            self.fail_orphaned_writes(status.leader);
        }
        if status.role != self.last_role {
            if status.role == Role::Candidate {
                self.metrics.elections_started.fetch_add(1, Relaxed);
            }
            self.last_role = status.role;
        }
        self.metrics
            .is_leader
            .store(u64::from(status.role == Role::Leader), Relaxed);
        self.metrics
            .has_leader
            .store(u64::from(status.leader.is_some()), Relaxed);
        self.metrics
            .lease_held
            .store(u64::from(status.lease_held), Relaxed);
        let size = self.kv.size_bytes();
        self.shared.publish(Snapshot {
            role: status.role,
            leader: status.leader,
            term: status.promised.round,
            commit_slot: status.commit,
            applied_slot: status.applied,
            revision: self.kv.revision(),
            db_size_bytes: size,
            db_size_in_use_bytes: size,
            voters: status
                .members
                .as_ref()
                .map_or(Vec::new(), |m| m.voters().to_vec()),
        });
    }
}
