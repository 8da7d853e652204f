//! The outbound side: one bounded queue and one writer task per peer. The writer dials,
//! handshakes, then drains the queue into batch frames until the connection fails, and
//! redials with back-off.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use synod_paxos::codec::put_message;
use synod_paxos::{Message, NodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::frame::{self, FrameError, BATCH_HEADER_RESERVE};
use super::handshake::{Answer, Hello, CONTROL_FRAME_MAX};
use super::stats::{bump, ConnectedFlag, PeerCounters};
use super::{lock, IncarnationRefusal, Shared};

/// A peer's bounded outbound queue. `send` pushes from any thread under a short mutex; the
/// writer pops.
#[derive(Debug)]
pub(super) struct PeerQueue {
    items: Mutex<VecDeque<Message>>,
    /// Wakes the writer. `notify_one` keeps a permit when the writer is not waiting, so a
    /// push between its emptiness check and its wait is not missed.
    ready: Notify,
    capacity: usize,
}

impl PeerQueue {
    pub(super) fn new(capacity: usize) -> PeerQueue {
        PeerQueue {
            items: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    /// Appends `msg`; returns true if the queue was full and its oldest message was dropped.
    pub(super) fn push(&self, msg: Message) -> bool {
        let dropped = {
            let mut items = lock(&self.items);
            let full = items.len() >= self.capacity;
            if full {
                items.pop_front();
            }
            items.push_back(msg);
            full
        };
        self.ready.notify_one();
        dropped
    }

    fn pop(&self) -> Option<Message> {
        lock(&self.items).pop_front()
    }

    pub(super) fn len(&self) -> usize {
        lock(&self.items).len()
    }

    fn is_empty(&self) -> bool {
        lock(&self.items).is_empty()
    }
}

/// A configured peer as the transport holds it. Dropping it aborts its writer.
pub(super) struct Peer {
    pub(super) addr: String,
    pub(super) queue: Arc<PeerQueue>,
    pub(super) counters: Arc<PeerCounters>,
    pub(super) task: Option<JoinHandle<()>>,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("addr", &self.addr)
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl Peer {
    pub(super) fn start(
        runtime: &Handle,
        shared: &Arc<Shared>,
        id: NodeId,
        addr: String,
        queue: Arc<PeerQueue>,
        counters: Arc<PeerCounters>,
    ) -> Peer {
        let task = runtime.spawn(run(
            shared.clone(),
            id,
            addr.clone(),
            queue.clone(),
            counters.clone(),
        ));
        Peer {
            addr,
            queue,
            counters,
            task: Some(task),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

#[derive(Debug)]
enum DialError {
    Connect(io::Error),
    TimedOut,
    Refused(String),
    /// The peer refused our incarnation: it knows our member id under another one.
    RefusedAsReplaced,
    Protocol(String),
    /// The peer presents another incarnation than the one recorded for it; we closed.
    Replaced(String),
    /// The peer's incarnation could not be recorded; we closed.
    Unrecorded(String),
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialError::Connect(e) => write!(f, "connect failed: {e}"),
            DialError::TimedOut => f.write_str("connect or handshake timed out"),
            DialError::Refused(reason) => write!(f, "handshake refused: {reason}"),
            DialError::RefusedAsReplaced => f.write_str(
                "the peer refuses this member's incarnation: it knows this member id under \
                 another one, so this member's data directory was replaced (or belongs to \
                 another member); remove this member (etcdctl member remove) and add it back \
                 as a new member",
            ),
            DialError::Protocol(e) => write!(f, "handshake failed: {e}"),
            DialError::Replaced(reason) => write!(f, "refused the peer: {reason}"),
            DialError::Unrecorded(reason) => write!(f, "refused the peer: {reason}"),
        }
    }
}

/// The writer task of one peer; runs until aborted.
async fn run(
    shared: Arc<Shared>,
    peer: NodeId,
    addr: String,
    queue: Arc<PeerQueue>,
    counters: Arc<PeerCounters>,
) {
    let mut backoff = Backoff::new(
        shared.backoff_min,
        shared.backoff_max,
        seed(shared.self_id, peer),
    );
    // A message taken from the queue that did not fit the previous frame.
    let mut pending: Option<Message> = None;
    // Repeated identical failures (a peer that is down for an hour) are logged once at warn.
    let mut last_failure: Option<String> = None;
    loop {
        match dial(&shared, peer, &addr).await {
            Ok(stream) => {
                last_failure = None;
                bump(&shared.counters.connects, 1);
                bump(&counters.connects, 1);
                tracing::info!(peer, %addr, "connected to peer");
                let began = Instant::now();
                let flag = ConnectedFlag::raise(&counters);
                let why = pump(&shared, stream, &queue, &counters, &mut pending).await;
                drop(flag);
                tracing::warn!(peer, %addr, reason = %why, "connection to peer lost");
                // Only a connection that held for a while earns a quick redial; one that
                // keeps dropping right after its handshake (say, two nodes configured with
                // the same id, superseding each other at the peer) backs off like a failed
                // dial.
                if began.elapsed() >= shared.backoff_max {
                    backoff.reset();
                }
            }
            Err(e) => {
                let replaced = matches!(e, DialError::Replaced(_) | DialError::RefusedAsReplaced);
                match e {
                    DialError::Refused(_) | DialError::Protocol(_) => {
                        bump(&shared.counters.handshakes_refused_by_peer, 1)
                    }
                    DialError::Connect(_) | DialError::TimedOut => {
                        bump(&shared.counters.connect_failures, 1)
                    }
                    DialError::RefusedAsReplaced => {
                        bump(&shared.counters.handshakes_refused_by_peer, 1);
                    }
                    DialError::Replaced(_) => {
                        bump(&shared.counters.incarnation_refusals, 1);
                    }
                    DialError::Unrecorded(_) => {}
                }
                let text = e.to_string();
                if replaced {
                    shared.log_incarnation_refusal(
                        peer,
                        &format!("peer {peer:x} ({}) at {addr}: {text}", shared.name_of(peer)),
                    );
                } else if last_failure.as_deref() == Some(text.as_str()) {
                    tracing::debug!(peer, %addr, error = %text, "cannot reach peer");
                } else {
                    tracing::warn!(peer, %addr, error = %text, "cannot reach peer");
                    last_failure = Some(text);
                }
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Connects and completes the handshake within `handshake_timeout`.
async fn dial(shared: &Shared, peer: NodeId, addr: &str) -> Result<TcpStream, DialError> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.map_err(DialError::Connect)?;
        // Batches are already coalesced; Nagle would only add latency to heartbeats.
        stream.set_nodelay(true).map_err(DialError::Connect)?;
        let hello = Hello {
            cluster_id: shared.cluster_id,
            from: shared.self_id,
            to: peer,
            incarnation: shared.incarnation,
        };
        frame::write_frame(&mut stream, &hello.encode())
            .await
            .map_err(|e| DialError::Protocol(e.to_string()))?;
        // The stream is read unbuffered, so nothing past the answer is consumed.
        match frame::read_frame(&mut stream, CONTROL_FRAME_MAX).await {
            Ok(payload) => match Answer::parse(&payload) {
                // Checked (and recorded, for a peer seen for the first time) before anything
                // is sent on the connection; dropping it unused closes it.
                Ok(Answer::Accepted { incarnation }) => {
                    match shared.check_incarnation(peer, incarnation).await {
                        Ok(()) => Ok(stream),
                        Err(IncarnationRefusal::Replaced(reason)) => {
                            Err(DialError::Replaced(reason))
                        }
                        Err(IncarnationRefusal::Unrecorded(reason)) => {
                            Err(DialError::Unrecorded(reason))
                        }
                    }
                }
                // A refusal carries no reason; the peer's log has it.
                Ok(Answer::Refused) => Err(DialError::Refused(
                    "the peer refused the handshake (its log says why)".to_owned(),
                )),
                Ok(Answer::Replaced) => Err(DialError::RefusedAsReplaced),
                Err(e) => Err(DialError::Protocol(e.to_owned())),
            },
            Err(FrameError::Closed) => Err(DialError::Refused(
                "connection closed before an answer".to_owned(),
            )),
            Err(e) => Err(DialError::Protocol(e.to_string())),
        }
    };
    match timeout(shared.tuning.handshake_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(DialError::TimedOut),
    }
}

/// Sends batches until the connection fails; returns why.
async fn pump(
    shared: &Shared,
    stream: TcpStream,
    queue: &PeerQueue,
    counters: &PeerCounters,
    pending: &mut Option<Message>,
) -> String {
    let (mut rd, mut wr) = stream.into_split();
    let mut probe = [0u8; 64];
    let mut buf = Vec::new();
    loop {
        while pending.is_none() && queue.is_empty() {
            // The peer never writes after its answer, so a readable socket means it closed
            // (or broke protocol). Watching for that while idle notices a restarted peer at
            // once instead of at the next failed write, which would lose a batch.
            tokio::select! {
                _ = queue.ready.notified() => {}
                r = rd.read(&mut probe) => {
                    return match r {
                        Ok(0) => "peer closed the connection".to_owned(),
                        Ok(_) => "peer sent unexpected bytes".to_owned(),
                        Err(e) => e.to_string(),
                    };
                }
            }
        }
        let Some((start, count)) = encode_batch(shared, queue, pending, &mut buf) else {
            continue;
        };
        let frame = &buf[start..];
        match timeout(shared.tuning.write_timeout, wr.write_all(frame)).await {
            Ok(Ok(())) => {
                let c = &shared.counters;
                bump(&c.frames_sent, 1);
                bump(&c.messages_sent, count);
                bump(&c.bytes_sent, frame.len() as u64);
                bump(&counters.messages_sent, count);
            }
            Ok(Err(e)) => {
                bump(&shared.counters.dropped_unsent, count);
                return e.to_string();
            }
            Err(_) => {
                bump(&shared.counters.dropped_unsent, count);
                return format!("write stalled for {:?}", shared.tuning.write_timeout);
            }
        }
        // One huge message should not pin its buffer for the life of the connection.
        if buf.capacity() > 2 * shared.tuning.batch_bytes_max + BATCH_HEADER_RESERVE {
            buf = Vec::new();
        }
    }
}

/// Encodes queued messages into `buf` as one batch frame: everything queued, until the
/// messages take `batch_bytes_max` bytes; never more than `frame_bytes_max`. Returns where
/// the frame starts in `buf` and how many messages it holds, or None if there was nothing
/// to send.
fn encode_batch(
    shared: &Shared,
    queue: &PeerQueue,
    pending: &mut Option<Message>,
    buf: &mut Vec<u8>,
) -> Option<(usize, u64)> {
    buf.clear();
    buf.resize(BATCH_HEADER_RESERVE, 0);
    let mut count: u64 = 0;
    while buf.len() - BATCH_HEADER_RESERVE < shared.tuning.batch_bytes_max {
        // Pop one message at a time so `send` never waits on the lock while we encode.
        let Some(msg) = pending.take().or_else(|| queue.pop()) else {
            break;
        };
        let before = buf.len();
        put_message(buf, &msg);
        let payload = frame::varint_len(count + 1) + buf.len() - BATCH_HEADER_RESERVE;
        if payload > shared.frame_bytes_max {
            let size = buf.len() - before;
            buf.truncate(before);
            if count == 0 {
                // Alone it is still too big: it can never be sent.
                bump(&shared.counters.dropped_oversized, 1);
                tracing::warn!(
                    peer = msg.to,
                    kind = msg.body.kind(),
                    bytes = size,
                    limit = shared.frame_bytes_max,
                    "dropping a message larger than the frame limit"
                );
                continue;
            }
            *pending = Some(msg);
            break;
        }
        count += 1;
    }
    if count == 0 {
        return None;
    }
    Some((frame::seal_batch(buf, count), count))
}

/// Exponential back-off with jitter: each delay is drawn from the upper half of a ceiling
/// that doubles from `min` to `max`, so nodes that lost a peer together do not redial it in
/// lockstep, and no delay is below `min`.
#[derive(Debug)]
struct Backoff {
    min: Duration,
    max: Duration,
    ceiling: Duration,
    rng: u64,
}

impl Backoff {
    fn new(min: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            min,
            max,
            ceiling: min,
            rng: seed,
        }
    }

    fn reset(&mut self) {
        self.ceiling = self.min;
    }

    fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = ceiling.saturating_mul(2).min(self.max);
        let floor = (ceiling / 2).max(self.min);
        let span = ceiling.saturating_sub(floor);
        floor + span.mul_f64(self.unit())
    }

    /// Uniform in [0, 1) (splitmix64).
    fn unit(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn seed(self_id: NodeId, peer: NodeId) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ self_id.rotate_left(32) ^ peer.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_paxos::{Ballot, Body};

    fn msg(round: u64) -> Message {
        Message {
            from: 1,
            to: 2,
            body: Body::Heartbeat {
                ballot: Ballot::new(1, 1),
                commit: 0,
                round,
            },
        }
    }

    #[test]
    fn full_queue_drops_the_oldest() {
        let q = PeerQueue::new(3);
        for r in 0..3 {
            assert!(!q.push(msg(r)));
        }
        assert!(q.push(msg(3)));
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop(), Some(msg(1)));
    }

    #[test]
    fn backoff_grows_within_bounds_and_resets() {
        let (min, max) = (Duration::from_millis(50), Duration::from_secs(2));
        let mut b = Backoff::new(min, max, 42);
        let mut last_ceiling = Duration::ZERO;
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d >= min && d <= max, "{d:?}");
            last_ceiling = last_ceiling.max(d);
        }
        assert!(last_ceiling >= max / 2);
        b.reset();
        assert!(b.next_delay() <= min);
    }
}
