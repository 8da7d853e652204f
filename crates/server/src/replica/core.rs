//! The core task: feeds the replica (`synod-replica`) every input with the time, ends its
//! turn, and carries out the effects: messages to the transport, persist jobs to the persist
//! thread, snapshot and export encoding on threads of their own, large reads to the read
//! workers, answers to the waiting clients, peers to the transport.

use super::persist;
use super::readers::Readers;
use super::ticker::{self, LocalClock};
use super::{Input, ReplicaHandle, Waiter, INPUT_QUEUE_MAX};
use crate::metrics::Metrics;
use crate::status::Shared;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use synod_paxos::{Config, DurableState, Message, NodeId, Role};
use synod_replica::watch::{StreamId, WatchResponse};
use synod_replica::{
    Answer, Count, Effects, ExportJob, Observer, PersistJob, ReplicaConfig, Restored, SnapshotJob,
    StartError,
};
use tokio::sync::mpsc;

type Replica = synod_replica::Replica<Waiter>;

/// Inputs handled between two turns' ends at most, so a flood of one kind (say, client
/// writes) cannot starve the engine's output (and with it, the replies).
const INPUTS_PER_TURN_MAX: usize = 4096;

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
    pub auto_compaction: Option<synod_replica::Retention>,
    /// Periodic watch progress (`--experimental-watch-progress-notify-interval`).
    pub watch_progress_interval: Duration,
}

/// The replica's counts and measurements, into the member's metrics.
#[derive(Debug)]
struct MetricsObserver(Arc<Metrics>);

impl Observer for MetricsObserver {
    fn count(&self, what: Count, n: u64) {
        let m = &self.0;
        let counter = match what {
            Count::ProposalsSubmitted => &m.proposals_submitted,
            Count::ProposalsFailed => &m.proposals_failed,
            Count::ProposalsApplied => &m.proposals_applied,
            Count::ReadsSerializable => &m.reads_serializable,
            Count::ReadsLinearizable => &m.reads_linearizable,
            Count::ReadsFailed => &m.reads_failed,
            Count::SlotsCommitted => &m.slots_committed,
            Count::SnapshotsSaved => &m.snapshots_saved,
            Count::SnapshotsInstalled => &m.snapshots_installed,
            Count::LeaderChanges => &m.leader_changes,
            Count::ElectionsStarted => &m.elections_started,
        };
        counter.fetch_add(n, Relaxed);
    }

    fn proposal_latency(&self, waited: Duration) {
        self.0.proposal_seconds.observe(waited.as_secs_f64());
    }

    fn batch_commands(&self, n: usize) {
        self.0.batch_commands.observe(n as f64);
    }
}

/// The replica and what carries out its effects.
struct Core {
    replica: Replica,
    network: Arc<dyn Network>,
    persist: std::sync::mpsc::Sender<PersistJob>,
    /// Serves the reads too large for a turn (readers.rs).
    readers: Readers,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    clock: LocalClock,
    peer_dial: BTreeMap<NodeId, String>,
    /// Writes our own snapshots' files off the persist thread (disk storage only).
    snapshot_writer: Option<synod_storage::SnapshotWriter>,
    /// Why the replica stopped, if it was not asked to.
    fatal: Option<String>,
    /// Each open watch stream's task, by the replica's stream id.
    watch_streams: std::collections::HashMap<StreamId, mpsc::Sender<WatchResponse>>,
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

/// The running replica: its core task and its threads.
#[derive(Debug)]
pub struct Running {
    pub handle: ReplicaHandle,
    core: tokio::task::JoinHandle<Result<(), String>>,
    persist: JoinHandle<()>,
    ticker: JoinHandle<()>,
}

impl Running {
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

fn replica_config(cfg: &CoreConfig, shared: &Shared, incarnation: u64) -> ReplicaConfig {
    ReplicaConfig {
        engine: cfg.engine.clone(),
        tick: cfg.tick,
        request_timeout: cfg.request_timeout,
        snapshot_every_commands: cfg.snapshot_every_commands,
        snapshot_chunk_bytes: synod_replica::SNAPSHOT_CHUNK_BYTES,
        cluster_id: shared.cluster_id,
        member_id: shared.member_id,
        name: shared.name.clone(),
        client_urls: cfg.client_urls.clone(),
        auto_compaction: cfg.auto_compaction,
        watch_progress_interval: cfg.watch_progress_interval,
        lease_second: Duration::from_secs(1),
        incarnation,
        planted: synod_replica::Planted::bug(
            cfg.planted_bug_local_reads
                .then_some(synod_replica::ReplicaBug::LinearizableReadsServedLocally),
        )
        .expect("the flag exists only in builds with the planted-bugs feature"),
    }
}

/// Starts the replica's core task (on the current runtime) and threads. `durable` is what
/// storage recovered (or the bootstrap state, already written); the engine re-delivers
/// every chosen slot above the snapshot `restored` holds, which rebuilds the store.
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
) -> Result<Running, StartError> {
    let observer = Box::new(MetricsObserver(metrics.clone()));
    let mut replica = Replica::new(
        replica_config(&cfg, &shared, incarnation),
        durable,
        restored,
        observer,
    )?;
    if let Some(loss) = wal.recovered().lost_tail() {
        metrics.conditions.raise(
            crate::conditions::Condition::RecoveringFromPeers,
            format!(
                "the write-ahead log lost part of its synced tail ({loss}); this member votes \
                 on nothing and serves no serializable read until it recovered what it may \
                 have promised and accepted from a quorum of its peers"
            ),
        );
        replica.start_peer_recovery(shared.members().members.keys().copied());
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
    let core = Core {
        replica,
        network,
        persist: persist_tx,
        readers: Readers::start(),
        shared,
        metrics,
        clock: LocalClock::new(cfg.clock_skew_ppm),
        peer_dial: cfg.peer_dial.clone(),
        snapshot_writer,
        fatal: None,
        watch_streams: std::collections::HashMap::new(),
    };
    let core = tokio::spawn(core.run(inputs_rx));
    Ok(Running {
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
        // The effects of starting: the member table and peers from the log.
        let fx = self.replica.effects();
        self.carry_out(fx);
        self.publish();
        while let Some(first) = inputs.recv().await {
            if !self.turn(first, &mut inputs) {
                break;
            }
        }
        self.replica.stop();
        let fx = self.replica.effects();
        self.carry_out(fx);
        match self.fatal.take() {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    /// Handles `first` and whatever else is queued (up to a bound), ends the replica's turn
    /// and carries out its effects. Returns false when the replica must stop.
    fn turn(&mut self, first: Input, inputs: &mut mpsc::Receiver<Input>) -> bool {
        // Time first: whatever arrived is handled at the engine's current idea of now.
        self.replica.advance(self.clock.now());
        let mut go_on = self.handle(first);
        for _ in 0..INPUTS_PER_TURN_MAX {
            if !go_on {
                break;
            }
            match inputs.try_recv() {
                Ok(input) => go_on = self.handle(input),
                Err(_) => break,
            }
        }
        let network = self.network.clone();
        self.replica
            .end_turn(&|peer| network.inbound_connection(peer));
        let fx = self.replica.effects();
        let stop = self.carry_out(fx);
        self.publish();
        go_on && !stop && self.fatal.is_none()
    }

    /// Returns false when the replica must stop.
    fn handle(&mut self, input: Input) -> bool {
        match input {
            Input::Peer(m) => self.replica.step_peer(m),
            Input::Write { payload, waiter } => self.replica.write(payload, waiter),
            Input::Read {
                request,
                linearizable,
                waiter,
            } => self.replica.read(request, linearizable, waiter),
            Input::Tick => {
                let network = self.network.clone();
                self.replica
                    .check_timers(&|peer| network.inbound_connection(peer));
            }
            Input::Admin { request, waiter } => self.replica.admin(request, waiter),
            Input::MoveLeader { to, waiter } => self.replica.move_leader(to, waiter),
            Input::Export { waiter } => self.replica.export(waiter),
            Input::WatchOpen { responses, opened } => {
                let stream = self.replica.watch_open();
                if opened.send(stream).is_ok() {
                    self.watch_streams.insert(stream, responses);
                } else {
                    self.replica.watch_close(stream);
                }
            }
            Input::Watch { stream, request } => self.replica.watch_request(stream, request),
            Input::WatchDrained { stream, responses } => {
                self.replica.watch_drained(stream, responses)
            }
            Input::WatchClose { stream } => {
                self.watch_streams.remove(&stream);
                self.replica.watch_close(stream);
            }
            Input::LeaseKeepAlive { id, waiter } => self.replica.lease_keep_alive(id, waiter),
            Input::LeaseTimeToLive { id, keys, waiter } => {
                self.replica.lease_time_to_live(id, keys, waiter)
            }
            Input::LeaseLeases { waiter } => self.replica.lease_leases(waiter),
            Input::HashKv { revision, waiter } => self.replica.hash_kv(revision, waiter),
            Input::Hash { waiter } => self.replica.hash(waiter),
            Input::Persisted(seq) => self.replica.persisted(seq),
            Input::SnapshotSaved {
                slot,
                data,
                received,
                saved,
            } => self.replica.snapshot_saved(slot, data, received, saved),
            Input::Fatal(reason) => {
                tracing::error!("stopping: {reason}");
                self.fatal = Some(reason);
                return false;
            }
            Input::Shutdown => return false,
        }
        true
    }

    /// Carries out a turn's effects, in the order the replica's contract asks for. Returns
    /// true when the replica asked to stop.
    fn carry_out(&mut self, fx: Effects<Waiter>) -> bool {
        let Effects {
            messages,
            persist,
            snapshots,
            exports,
            reads,
            hashes,
            answers,
            peers,
            members,
            stop,
            watch,
        } = fx;
        for m in messages {
            self.network.send(m);
        }
        for job in persist {
            self.persist_job(job);
        }
        for job in snapshots {
            self.encode_snapshot(job);
        }
        for job in exports {
            export(job);
        }
        for job in reads {
            self.readers.run(job);
        }
        for job in hashes {
            self.readers.hash(job);
        }
        for (waiter, result) in answers {
            waiter.answer(result);
        }
        self.send_watch_responses(watch);
        if let Some(mut peers) = peers {
            dial_overrides(&mut peers, &self.peer_dial);
            self.network.set_peers(peers);
        }
        if let Some(table) = members {
            self.shared.set_members(table);
        }
        stop.is_some()
    }

    /// Hands each watch response to its stream's task. A task whose queue is full has a
    /// client that sends requests but reads no answers (the replica bounds everything else):
    /// its stream is dropped, which ends it with an error.
    fn send_watch_responses(&mut self, responses: Vec<(StreamId, WatchResponse)>) {
        for (stream, response) in responses {
            let Some(tx) = self.watch_streams.get(&stream) else {
                continue;
            };
            if let Err(e) = tx.try_send(response) {
                if matches!(e, mpsc::error::TrySendError::Full(_)) {
                    tracing::warn!(
                        stream,
                        "closing a watch stream whose client reads no responses"
                    );
                }
                self.watch_streams.remove(&stream);
                self.replica.watch_close(stream);
            }
        }
    }

    fn persist_job(&mut self, job: PersistJob) {
        if self.persist.send(job).is_err() {
            self.fatal
                .get_or_insert_with(|| "the persist thread stopped".to_string());
        }
    }

    /// Encodes a snapshot on a thread of its own, however long it takes, writes its file
    /// there too (so the log's group commits go on meanwhile), and hands it to the persist
    /// thread, which adopts it (or, without a writer or if writing failed here, writes it
    /// itself, reporting a real disk error) after the batches queued before, and reports
    /// `SnapshotSaved`.
    fn encode_snapshot(&mut self, job: SnapshotJob) {
        let persist = self.persist.clone();
        let writer = self.snapshot_writer.clone();
        let spawned = std::thread::Builder::new()
            .name("synod-snapshot".into())
            .spawn(move || {
                lower_priority();
                let started = std::time::Instant::now();
                let data = job.encode();
                let slot = job.slot;
                drop(job); // lets the replica write in place again
                tracing::debug!(
                    slot,
                    bytes = data.len(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "snapshot encoded"
                );
                let written = writer.and_then(|w| match w.write(slot, &data) {
                    Ok(meta) => Some(meta),
                    Err(e) => {
                        tracing::warn!(slot, "writing a snapshot file: {e}");
                        None
                    }
                });
                // Fails only once the persist thread has stopped, and the core with it.
                let _ = persist.send(PersistJob::Snapshot {
                    slot,
                    data,
                    received: false,
                    written,
                });
            });
        if let Err(e) = spawned {
            // The replica waits for this snapshot's report before taking another: without
            // a thread, none comes, so say so loudly.
            tracing::error!("cannot start a thread to encode a snapshot: {e}");
            self.fatal
                .get_or_insert_with(|| format!("cannot start a snapshot thread: {e}"));
        }
    }

    fn publish(&mut self) {
        let status = self.replica.status();
        self.metrics
            .is_leader
            .store(u64::from(status.role == Role::Leader), Relaxed);
        self.metrics
            .has_leader
            .store(u64::from(status.leader.is_some()), Relaxed);
        self.metrics
            .lease_held
            .store(u64::from(status.lease_held), Relaxed);
        self.shared.publish(status);
    }
}

/// Encodes a copy of the store for a client on a thread of its own.
fn export(job: ExportJob<Waiter>) {
    let spawned = std::thread::Builder::new()
        .name("synod-export".into())
        .spawn(move || {
            lower_priority();
            let data = job.encode();
            let slot = job.slot;
            job.waiter.answer(Ok(Answer::Exported { slot, data }));
        });
    if let Err(e) = spawned {
        // The waiter went with the closure: the client sees the request fail.
        tracing::warn!("cannot start a thread to export a snapshot: {e}");
    }
}
