//! Peer transport: Paxos messages between replicas over TCP.
//!
//! Every node dials every peer and uses that connection only to send; it reads what peers
//! send on the connections they dial to it. Two nodes therefore share two connections, one
//! per direction, and never need to decide who dials whom.
//!
//! # Wire protocol
//!
//! Everything is a frame, `[payload length: u32 LE][payload]`.
//! 1. The dialer sends a hello (42 bytes): `b"SYNODPX1"`, protocol version u16 LE (3),
//!    cluster id u64 LE, its own id u64 LE, the id it expects to reach u64 LE, its
//!    incarnation u64 LE.
//! 2. The acceptor answers with one frame: `0` followed by its own incarnation u64 LE
//!    (accepted), or `1` followed by the text `refused`, or `2` followed by `refused` (the
//!    sender's incarnation is refused, see below), after which it closes. A refusal tells
//!    the dialer nothing more, since it may be a stranger: the acceptor logs the reason
//!    (the cluster id, ids or incarnation that did not match). It refuses a wrong
//!    magic or version, another cluster's id, a receiver id that is not its own, a sender
//!    that is not in its peer list, and a sender whose incarnation is not the one recorded
//!    for it. The hello must arrive within `TransportTuning::handshake_timeout`, and a frame
//!    read before the handshake may hold at most 256 bytes. The dialer in turn checks the
//!    acceptor's incarnation, and closes without sending if it is not the recorded one.
//! 3. The dialer then sends batch frames, `[count: varint][message]*count`, messages in the
//!    `synod_paxos::codec` encoding. The acceptor refuses frames over `frame_bytes_max`, and
//!    closes the connection on any frame that does not decode; it drops (and counts) a
//!    message whose `from` is not the handshaken peer or whose `to` is not itself.
//!
//! The handshake guards against misconfiguration (a node of another cluster, a stale
//! address, a member restarted on an emptied data directory), not against an attacker:
//! there is no authentication or encryption.
//!
//! # Incarnations
//!
//! A member's incarnation is drawn when its data directory is created, so a member whose
//! directory was wiped comes back under its old id with a new one, and with none of its
//! Paxos promises or accepted values. Each node records the incarnation it first sees for
//! every peer member id (`TransportConfig::peer_incarnations`, written durably) before it
//! hands any message of that connection to the replica and before it sends anything on a
//! connection it dialed; a handshake presenting another incarnation for a recorded id is
//! refused both ways, counted (`TransportStats::incarnation_refusals`) and logged at error
//! level at most once per `INCARNATION_LOG_INTERVAL` per peer. The member must be removed
//! and added back as a new member (docs/SERVER.md, "Replacing a member whose disk was
//! wiped").
//!
//! # Delivery
//!
//! Messages to one peer arrive in the order they were sent, or not at all: Paxos tolerates
//! loss, duplication and reordering, so the transport drops rather than waits.
//! - Each peer has a bounded outbound queue (`queue_messages_max`). `send` never blocks;
//!   when the queue is full the *oldest* queued message is dropped, because under Paxos a
//!   newer message (a later heartbeat, commit point or ballot) is worth more than an old
//!   one, and after an outage the peer should first hear the current state.
//! - Messages wait in the queue while the peer is unreachable; the writer redials with
//!   exponential back-off and jitter between `reconnect_backoff_min` and `_max`.
//! - The writer drains everything queued (up to `TransportTuning::batch_bytes_max`) into one
//!   frame and one write: batching costs no latency when the queue is short and saves
//!   system calls and packets when it is long.
//! - A batch whose write fails is lost (counted in `dropped_unsent`).
//! - On the inbound side decoded messages go to the replica's bounded channel with an
//!   awaited `send`: a replica that falls behind stops the reading of its connections, TCP
//!   flow control then stalls the peers' writers, and their bounded queues drop the oldest
//!   messages. Dropping at the receiver (`try_send`) would bound memory just as well, but
//!   would waste bytes already sent and decoded, and drop the newest messages instead of
//!   the oldest.
//!
//! Memory is bounded: per peer `queue_messages_max` messages and one batch in encoding; per
//! inbound connection one frame of at most `frame_bytes_max` (allocated as it arrives, and
//! only after the handshake), with at most `inbound_connections_max` connections; and the
//! replica's inbound channel.

mod frame;
mod handshake;
mod reader;
mod stats;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use synod_paxos::{Message, NodeId};
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use stats::{PeerStats, TransportStats};

use handshake::PeerIncarnations;
use stats::{bump, Counters};
use writer::{Peer, PeerQueue};

pub const DEFAULT_QUEUE_MESSAGES_MAX: usize = 4096;
pub const DEFAULT_FRAME_BYTES_MAX: usize = 64 << 20;
// The largest application message (`Body::App`) fits a default frame with its envelope
// (batch count, ids, kind, length: under 64 bytes); otherwise the writer would drop it.
const _: () = assert!(synod_paxos::APP_DATA_BYTES_MAX + 64 <= DEFAULT_FRAME_BYTES_MAX);
pub const DEFAULT_RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
pub const DEFAULT_RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A refused incarnation is logged at error level at most this often per peer (its
/// connection attempts repeat every back-off); in between at debug level.
pub const INCARNATION_LOG_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Nodes of different clusters refuse each other at the handshake.
    pub cluster_id: u64,
    pub self_id: NodeId,
    /// The peer listen address.
    pub listen: SocketAddr,
    /// Peer id -> "host:port" to dial. An entry for `self_id` is ignored.
    pub peers: BTreeMap<NodeId, String>,
    /// Bound of each peer's outbound queue, in messages.
    pub queue_messages_max: usize,
    /// Largest frame payload accepted, and sent: a message that alone encodes to more is
    /// dropped. Should be the same on every node. Clamped to `u32::MAX`.
    pub frame_bytes_max: usize,
    pub reconnect_backoff_min: Duration,
    pub reconnect_backoff_max: Duration,
    /// This member's incarnation, drawn when its data directory was created; sent in the
    /// handshake, both ways. `new` sets 0, for transports without a data directory.
    pub incarnation: u64,
    /// The file recording the incarnation first seen for each peer member id (in the data
    /// directory). `None` keeps the record in memory only: it then lasts as long as the
    /// transport, so a restarted transport relearns its peers' incarnations.
    pub peer_incarnations: Option<PathBuf>,
    /// Member names, for log messages only. Updated with `set_member_names`.
    pub member_names: BTreeMap<NodeId, String>,
}

impl TransportConfig {
    /// A configuration with the default bounds and back-off.
    pub fn new(
        cluster_id: u64,
        self_id: NodeId,
        listen: SocketAddr,
        peers: BTreeMap<NodeId, String>,
    ) -> TransportConfig {
        TransportConfig {
            cluster_id,
            self_id,
            listen,
            peers,
            queue_messages_max: DEFAULT_QUEUE_MESSAGES_MAX,
            frame_bytes_max: DEFAULT_FRAME_BYTES_MAX,
            reconnect_backoff_min: DEFAULT_RECONNECT_BACKOFF_MIN,
            reconnect_backoff_max: DEFAULT_RECONNECT_BACKOFF_MAX,
            incarnation: 0,
            peer_incarnations: None,
            member_names: BTreeMap::new(),
        }
    }
}

/// Knobs that rarely need changing; tests shorten them.
#[derive(Clone, Debug)]
pub struct TransportTuning {
    /// Time for a connection to complete its handshake, both ways (connect included when
    /// dialing). Guards the listener against connections that never speak.
    pub handshake_timeout: Duration,
    /// Time for one batch to be written; a peer that accepts no bytes for this long is
    /// treated as gone and redialed.
    pub write_timeout: Duration,
    /// Inbound connections open at once, handshaken or not; more are closed at accept.
    pub inbound_connections_max: usize,
    /// A batch frame is closed once it holds this many bytes of messages.
    pub batch_bytes_max: usize,
}

impl Default for TransportTuning {
    fn default() -> TransportTuning {
        TransportTuning {
            handshake_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            inbound_connections_max: 64,
            batch_bytes_max: 1 << 20,
        }
    }
}

/// State shared by the handle and every task. Tasks hold this, never `Inner`, so dropping the
/// last `Transport` handle is what stops them.
struct Shared {
    cluster_id: u64,
    self_id: NodeId,
    queue_messages_max: usize,
    frame_bytes_max: usize,
    backoff_min: Duration,
    backoff_max: Duration,
    tuning: TransportTuning,
    counters: Counters,
    /// The configured peers: who we dial, and who may dial us.
    peers: RwLock<BTreeMap<NodeId, Peer>>,
    /// The current handshaken inbound connection of each peer. Lock order: `inbound` before
    /// `peers` when both are held.
    inbound: Mutex<HashMap<NodeId, reader::InboundConn>>,
    /// Taken out at shutdown, so the replica's receiver sees the channel close once the
    /// last reader is gone.
    inbound_tx: Mutex<Option<mpsc::Sender<Message>>>,
    next_conn_id: AtomicU64,
    closed: AtomicBool,
    /// Our own incarnation.
    incarnation: u64,
    /// The incarnation first seen for each peer member id.
    incarnations: Arc<PeerIncarnations>,
    member_names: RwLock<BTreeMap<NodeId, String>>,
    /// When a refused incarnation of each peer was last logged at error level.
    incarnation_logged: Mutex<HashMap<NodeId, Instant>>,
}

/// Why a peer's incarnation was not accepted.
#[derive(Debug)]
enum IncarnationRefusal {
    /// The peer presents another incarnation than the one recorded for its member id.
    Replaced(String),
    /// The incarnation is new and could not be recorded durably.
    Unrecorded(String),
}

impl Shared {
    fn name_of(&self, id: NodeId) -> String {
        read(&self.member_names)
            .get(&id)
            .cloned()
            .unwrap_or_else(|| "name unknown".to_owned())
    }

    /// Accepts `peer`'s `incarnation` if it is the one recorded for the peer, or if none
    /// is and it is now recorded durably. Waits for the disk only for a peer seen for the
    /// first time.
    async fn check_incarnation(
        &self,
        peer: NodeId,
        incarnation: u64,
    ) -> Result<(), IncarnationRefusal> {
        let known = match self.incarnations.known(peer) {
            Some(known) => known,
            None => {
                let record = self.incarnations.clone();
                let recorded =
                    tokio::task::spawn_blocking(move || record.check_or_record(peer, incarnation))
                        .await;
                match recorded {
                    Ok(Ok(Ok(new))) => {
                        if new {
                            tracing::info!(
                                peer,
                                incarnation = format!("{incarnation:016x}"),
                                "recorded the incarnation of a peer seen for the first time"
                            );
                        }
                        return Ok(());
                    }
                    // Another connection of the same id recorded another one meanwhile.
                    Ok(Ok(Err(known))) => known,
                    Ok(Err(e)) => {
                        return Err(IncarnationRefusal::Unrecorded(format!(
                            "cannot record the incarnation of member {peer:x}: {e}"
                        )))
                    }
                    Err(e) => {
                        return Err(IncarnationRefusal::Unrecorded(format!(
                            "cannot record the incarnation of member {peer:x}: {e}"
                        )))
                    }
                }
            }
        };
        if known == incarnation {
            return Ok(());
        }
        Err(IncarnationRefusal::Replaced(format!(
            "member {peer:x} ({}) presents incarnation {incarnation:016x} but this member \
             knows it as {known:016x}: its data directory was replaced; remove it (etcdctl \
             member remove) and add it back as a new member",
            self.name_of(peer)
        )))
    }

    /// Logs a refusal over incarnations: at error level once per `INCARNATION_LOG_INTERVAL`
    /// per peer, at debug level in between.
    fn log_incarnation_refusal(&self, peer: NodeId, text: &str) {
        let now = Instant::now();
        let due = {
            let mut logged = lock(&self.incarnation_logged);
            let due = logged
                .get(&peer)
                .is_none_or(|&at| now.duration_since(at) >= INCARNATION_LOG_INTERVAL);
            if due {
                logged.insert(peer, now);
            }
            due
        };
        if due {
            tracing::error!(peer, "{text}");
        } else {
            tracing::debug!(peer, "{text}");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing leaves these structures inconsistent across a panic, so poisoning is ignored
    // rather than spreading the panic to every thread that sends.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// A running transport. Clones share it; it stops when `shutdown` is awaited or the last
/// clone is dropped.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    runtime: Handle,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("cluster_id", &self.inner.shared.cluster_id)
            .field("self_id", &self.inner.shared.self_id)
            .field("incarnation", &self.inner.shared.incarnation)
            .field("local_addr", &self.inner.local_addr)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Binds the listener and spawns the accept loop and one writer task per peer on the
    /// current tokio runtime. Messages that pass the handshake and the checks go to
    /// `inbound`.
    pub async fn start(
        cfg: TransportConfig,
        inbound: mpsc::Sender<Message>,
    ) -> std::io::Result<Transport> {
        Transport::start_with(cfg, TransportTuning::default(), inbound).await
    }

    pub async fn start_with(
        cfg: TransportConfig,
        tuning: TransportTuning,
        inbound: mpsc::Sender<Message>,
    ) -> std::io::Result<Transport> {
        let listener = TcpListener::bind(cfg.listen).await?;
        let local_addr = listener.local_addr()?;
        let tuning = TransportTuning {
            inbound_connections_max: tuning.inbound_connections_max.max(1),
            batch_bytes_max: tuning.batch_bytes_max.max(1),
            ..tuning
        };
        let backoff_min = cfg.reconnect_backoff_min.max(Duration::from_millis(1));
        let incarnations = Arc::new(PeerIncarnations::load(cfg.peer_incarnations.clone())?);
        let shared = Arc::new(Shared {
            cluster_id: cfg.cluster_id,
            self_id: cfg.self_id,
            queue_messages_max: cfg.queue_messages_max.max(1),
            frame_bytes_max: cfg.frame_bytes_max.min(u32::MAX as usize),
            backoff_min,
            backoff_max: cfg.reconnect_backoff_max.max(backoff_min),
            tuning,
            counters: Counters::default(),
            peers: RwLock::new(BTreeMap::new()),
            inbound: Mutex::new(HashMap::new()),
            inbound_tx: Mutex::new(Some(inbound)),
            next_conn_id: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            incarnation: cfg.incarnation,
            incarnations,
            member_names: RwLock::new(cfg.member_names),
            incarnation_logged: Mutex::new(HashMap::new()),
        });
        let runtime = Handle::current();
        let (stop, stop_rx) = watch::channel(false);
        let accept = runtime.spawn(reader::accept_loop(shared.clone(), listener, stop_rx));
        tracing::info!(
            self_id = cfg.self_id,
            cluster_id = cfg.cluster_id,
            incarnation = format!("{:016x}", cfg.incarnation),
            %local_addr,
            "peer transport listening"
        );
        let transport = Transport {
            inner: Arc::new(Inner {
                shared,
                runtime,
                local_addr,
                stop,
                accept: Mutex::new(Some(accept)),
            }),
        };
        transport.update_peers(cfg.peers);
        Ok(transport)
    }

    /// Queues `msg` for its peer (`msg.to`). Never blocks: if that peer's queue is full the
    /// oldest queued message is dropped; a message to an unknown peer is dropped. Both are
    /// counted. Callable from any thread.
    pub fn send(&self, msg: Message) {
        let shared = &self.inner.shared;
        let peers = read(&shared.peers);
        match peers.get(&msg.to) {
            Some(peer) => {
                if peer.queue.push(msg) {
                    bump(&shared.counters.dropped_queue_full, 1);
                    bump(&peer.counters.dropped_queue_full, 1);
                }
            }
            None => bump(&shared.counters.dropped_unknown_peer, 1),
        }
    }

    pub fn stats(&self) -> TransportStats {
        let shared = &self.inner.shared;
        let mut stats = shared.counters.snapshot();
        let inbound: Vec<NodeId> = lock(&shared.inbound).keys().copied().collect();
        for (&id, peer) in read(&shared.peers).iter() {
            let snapshot =
                peer.counters
                    .snapshot(&peer.addr, peer.queue.len(), inbound.contains(&id));
            stats.peers.insert(id, snapshot);
        }
        stats
    }

    /// The inbound connection `peer`'s messages arrive on now: `None` while it has none,
    /// and a new value each time it reconnects. Lets the replica drop what it assembles
    /// from a peer's messages (a snapshot) once the connection they came on is gone.
    pub fn inbound_connection(&self, peer: NodeId) -> Option<u64> {
        reader::inbound_connection(&self.inner.shared, peer)
    }

    /// The address the listener is bound to (the real port when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Replaces the peer list (after a membership change). New peers get a writer; removed
    /// peers lose theirs, with their queue, and their inbound connection is closed; a peer
    /// whose address changed is redialed, keeping its queue. Callable from any thread.
    pub fn update_peers(&self, peers: BTreeMap<NodeId, String>) {
        let inner = &self.inner;
        let shared = &inner.shared;
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        let removed = {
            let mut map = write(&shared.peers);
            let mut old = std::mem::take(&mut *map);
            for (id, addr) in peers {
                if id == shared.self_id {
                    continue;
                }
                let peer = match old.remove(&id) {
                    Some(peer) if peer.addr == addr => peer,
                    Some(peer) => {
                        tracing::info!(peer = id, from = %peer.addr, to = %addr, "peer address changed");
                        let (queue, counters) = (peer.queue.clone(), peer.counters.clone());
                        drop(peer);
                        Peer::start(&inner.runtime, shared, id, addr, queue, counters)
                    }
                    None => {
                        let queue = Arc::new(PeerQueue::new(shared.queue_messages_max));
                        Peer::start(&inner.runtime, shared, id, addr, queue, Default::default())
                    }
                };
                map.insert(id, peer);
            }
            old
        };
        for id in removed.keys() {
            tracing::info!(peer = id, "peer removed");
        }
        // Dropping a peer aborts its writer, which closes the outbound connection.
        drop(removed);
        reader::close_unknown_inbound(shared);
    }

    /// Replaces the member names used in log messages.
    pub fn set_member_names(&self, names: BTreeMap<NodeId, String>) {
        *write(&self.inner.shared.member_names) = names;
    }

    /// Stops every task and closes every connection and the listener; returns once they are
    /// gone, so the listen address can be bound again. Other clones stop working too.
    pub async fn shutdown(self) {
        let inner = &self.inner;
        inner.shared.closed.store(true, Ordering::Release);
        // The accept loop closes the listener and waits for its connection tasks.
        let _ = inner.stop.send(true);
        let accept = lock(&inner.accept).take();
        if let Some(accept) = accept {
            let _ = accept.await;
        }
        let peers = std::mem::take(&mut *write(&inner.shared.peers));
        for (_, mut peer) in peers {
            if let Some(task) = peer.task.take() {
                task.abort();
                let _ = task.await;
            }
        }
        lock(&inner.shared.inbound_tx).take();
        tracing::info!(self_id = inner.shared.self_id, "peer transport stopped");
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        // Aborting the accept loop drops its JoinSet, which aborts the connection tasks.
        if let Some(accept) = lock(&self.accept).take() {
            accept.abort();
        }
        let peers = std::mem::take(&mut *write(&self.shared.peers));
        drop(peers);
        lock(&self.shared.inbound_tx).take();
    }
}
