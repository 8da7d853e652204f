//! The inbound side: the accept loop and one task per inbound connection, which checks the
//! handshake, then decodes batch frames and hands their messages to the replica.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use synod_paxos::{Message, NodeId};
use tokio::io::{AsyncRead, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::frame::{self, FrameError, LEN_BYTES};
use super::handshake::{Answer, Hello, CONTROL_FRAME_MAX};
use super::stats::bump;
use super::{lock, read, IncarnationRefusal, Shared};

/// Read buffer of an inbound connection: many small frames cost one system call.
const READ_BUFFER_BYTES: usize = 64 << 10;

/// Time allowed to tell a refused dialer why before closing.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// A handshaken inbound connection, as registered in `Shared::inbound`.
#[derive(Debug)]
pub(super) struct InboundConn {
    id: u64,
    /// Tells the connection's task to close.
    close: Arc<Notify>,
}

/// Accepts peer connections until `stop` changes, then closes the listener and waits for the
/// connection tasks.
pub(super) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(shared.tuning.inbound_connections_max));
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        tracing::error!(error = %e, "peer connection task panicked");
                    }
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        conns.spawn(serve(shared.clone(), stream, remote, slot));
                    }
                    Err(_) => {
                        // Closing at once (not queueing) keeps garbage connections from
                        // piling up; a real peer redials after its back-off.
                        bump(&shared.counters.inbound_over_limit, 1);
                        tracing::warn!(
                            %remote,
                            limit = shared.tuning.inbound_connections_max,
                            "too many inbound peer connections; closing a new one"
                        );
                    }
                },
                Err(e) => {
                    // E.g. out of file descriptors: pause instead of spinning on the error.
                    tracing::warn!(error = %e, "accepting a peer connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    conns.shutdown().await;
}

/// Serves one inbound connection. `_slot` holds its place under the connection limit.
async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    remote: SocketAddr,
    _slot: OwnedSemaphorePermit,
) {
    // Only the tiny answer goes this way; no point delaying it.
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(READ_BUFFER_BYTES, rd);

    let hello = match timeout(
        shared.tuning.handshake_timeout,
        frame::read_frame(&mut rd, CONTROL_FRAME_MAX),
    )
    .await
    {
        Ok(Ok(payload)) => Hello::parse(&payload),
        Ok(Err(FrameError::TooLarge { len, .. })) => Err(format!(
            "not a synod peer (first frame announces {len} bytes)"
        )),
        Ok(Err(FrameError::Closed)) => {
            // A port probe or health check; not worth a warning.
            bump(&shared.counters.handshake_refusals, 1);
            tracing::debug!(%remote, "inbound connection closed before its handshake");
            return;
        }
        Ok(Err(e)) => {
            bump(&shared.counters.handshake_refusals, 1);
            tracing::warn!(%remote, error = %e, "inbound peer handshake failed");
            return;
        }
        Err(_) => Err(format!(
            "no handshake within {:?}",
            shared.tuning.handshake_timeout
        )),
    };
    let accepted = match hello.and_then(|hello| check_hello(&shared, &hello).map(|()| hello)) {
        Ok(hello) => {
            // The incarnation is checked (and, for a peer seen for the first time, recorded
            // durably) before the connection may supersede the peer's current one, and before
            // anything it sends can reach the replica. The disk write counts against the
            // handshake's time.
            match timeout(
                shared.tuning.handshake_timeout,
                shared.check_incarnation(hello.from, hello.incarnation),
            )
            .await
            {
                Ok(Ok(())) => register(&shared, hello.from).map(|conn| (hello.from, conn)),
                Ok(Err(IncarnationRefusal::Replaced(reason))) => {
                    bump(&shared.counters.handshake_refusals, 1);
                    bump(&shared.counters.incarnation_refusals, 1);
                    shared.log_incarnation_refusal(
                        hello.from,
                        &format!("refused an inbound peer connection from {remote}: {reason}"),
                    );
                    let answer = Answer::Replaced.encode();
                    let _ =
                        timeout(REFUSAL_WRITE_TIMEOUT, frame::write_frame(&mut wr, &answer)).await;
                    return;
                }
                Ok(Err(IncarnationRefusal::Unrecorded(reason))) => Err(reason),
                Err(_) => Err(format!(
                    "could not record the incarnation of member {:x} within {:?}",
                    hello.from, shared.tuning.handshake_timeout
                )),
            }
        }
        Err(reason) => Err(reason),
    };
    let (from, conn) = match accepted {
        Ok(ok) => ok,
        Err(reason) => {
            bump(&shared.counters.handshake_refusals, 1);
            // The reason stays here: the dialer may be a stranger (see `handshake`).
            tracing::warn!(%remote, %reason, "refused an inbound peer connection");
            let answer = Answer::Refused.encode();
            let _ = timeout(REFUSAL_WRITE_TIMEOUT, frame::write_frame(&mut wr, &answer)).await;
            return;
        }
    };
    let _registration = Registration {
        shared: &shared,
        peer: from,
        id: conn.id,
    };
    let answer = Answer::Accepted {
        incarnation: shared.incarnation,
    };
    let answered = timeout(
        shared.tuning.handshake_timeout,
        frame::write_frame(&mut wr, &answer.encode()),
    )
    .await;
    if !matches!(answered, Ok(Ok(()))) {
        tracing::debug!(peer = from, %remote, "could not answer an inbound handshake");
        return;
    }
    let Some(inbound) = lock(&shared.inbound_tx).clone() else {
        return;
    };
    bump(&shared.counters.inbound_accepted, 1);
    tracing::info!(peer = from, %remote, "peer connected (inbound)");

    let why = tokio::select! {
        _ = conn.close.notified() => {
            "superseded by a newer connection from the peer, or the peer was removed".to_owned()
        }
        why = receive(&shared, &mut rd, from, &inbound) => why,
    };
    tracing::info!(peer = from, %remote, reason = %why, "inbound peer connection closed");
    // Keeps the write half, and so the connection, open until here: dropping it earlier
    // would half-close the socket and make the dialer think we hung up.
    drop(wr);
}

/// Checks a well-formed hello against our configuration: the cluster, the receiver, and that
/// the sender is a peer (checked again by `register`, under its lock; checked here so that
/// no incarnation is recorded for a stranger).
fn check_hello(shared: &Shared, hello: &Hello) -> Result<(), String> {
    if hello.cluster_id != shared.cluster_id {
        return Err(format!(
            "cluster id {} is not ours ({})",
            hello.cluster_id, shared.cluster_id
        ));
    }
    if hello.to != shared.self_id {
        return Err(format!(
            "addressed to node {}, but this is node {}",
            hello.to, shared.self_id
        ));
    }
    if !read(&shared.peers).contains_key(&hello.from) {
        return Err(not_a_peer(hello.from));
    }
    Ok(())
}

fn not_a_peer(id: NodeId) -> String {
    format!("node {id} is not a member of our peer list")
}

/// Registers the handshaken connection of `peer`, closing the previous one: a peer dials a
/// new connection only after giving up on the old, which may otherwise linger if its host
/// vanished without closing it. Refuses a sender that is not a configured peer. The check
/// and the insertion happen under the `inbound` lock, which `close_unknown_inbound` takes
/// after updating the peers, so a connection from a peer being removed cannot slip in.
fn register(shared: &Shared, peer: NodeId) -> Result<InboundConn, String> {
    let mut inbound = lock(&shared.inbound);
    if !read(&shared.peers).contains_key(&peer) {
        return Err(not_a_peer(peer));
    }
    let conn = InboundConn {
        id: shared.next_conn_id.fetch_add(1, Ordering::Relaxed),
        close: Arc::new(Notify::new()),
    };
    let previous = inbound.insert(
        peer,
        InboundConn {
            id: conn.id,
            close: conn.close.clone(),
        },
    );
    if let Some(previous) = previous {
        previous.close.notify_one();
    }
    Ok(conn)
}

/// Unregisters a connection when its task ends (or is aborted), unless a newer one took
/// its place.
struct Registration<'a> {
    shared: &'a Shared,
    peer: NodeId,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut inbound = lock(&self.shared.inbound);
        if inbound.get(&self.peer).is_some_and(|c| c.id == self.id) {
            inbound.remove(&self.peer);
        }
    }
}

/// The id of `peer`'s current handshaken inbound connection, if it has one.
pub(super) fn inbound_connection(shared: &Shared, peer: NodeId) -> Option<u64> {
    lock(&shared.inbound).get(&peer).map(|c| c.id)
}

/// Closes the inbound connections of nodes that are no longer peers.
pub(super) fn close_unknown_inbound(shared: &Shared) {
    let mut inbound = lock(&shared.inbound);
    let peers = read(&shared.peers);
    inbound.retain(|id, conn| {
        let keep = peers.contains_key(id);
        if !keep {
            conn.close.notify_one();
        }
        keep
    });
}

/// Reads batch frames and delivers their messages until the connection ends or breaks;
/// returns why.
async fn receive<R: AsyncRead + Unpin>(
    shared: &Shared,
    rd: &mut R,
    from: NodeId,
    inbound: &mpsc::Sender<Message>,
) -> String {
    let counters = &shared.counters;
    let mut misaddressed_logged = false;
    loop {
        let payload = match frame::read_frame(rd, shared.frame_bytes_max).await {
            Ok(payload) => payload,
            Err(FrameError::Closed) => return "peer closed the connection".to_owned(),
            Err(e @ FrameError::TooLarge { .. }) => {
                bump(&counters.oversized_frames, 1);
                tracing::warn!(peer = from, error = %e, "closing a peer connection");
                return e.to_string();
            }
            Err(FrameError::Truncated) => {
                bump(&counters.truncated_frames, 1);
                return FrameError::Truncated.to_string();
            }
            Err(FrameError::Io(e)) => return e.to_string(),
        };
        bump(&counters.frames_received, 1);
        bump(&counters.bytes_received, (LEN_BYTES + payload.len()) as u64);
        let messages = match frame::decode_batch(payload) {
            Ok(messages) => messages,
            Err(e) => {
                bump(&counters.decode_errors, 1);
                tracing::warn!(peer = from, error = %e, "closing a peer connection");
                return e.to_string();
            }
        };
        for msg in messages {
            // The handshake named the sender and the receiver; a message claiming otherwise
            // is dropped, so one node cannot speak for another over its connection.
            if msg.from != from || msg.to != shared.self_id {
                bump(&counters.dropped_misaddressed, 1);
                if !misaddressed_logged {
                    misaddressed_logged = true;
                    tracing::warn!(
                        peer = from,
                        claimed_from = msg.from,
                        to = msg.to,
                        "dropping misaddressed messages from a peer"
                    );
                }
                continue;
            }
            // Counted first, so the count never lags what the replica can already see.
            bump(&counters.messages_received, 1);
            // Awaiting here is the backpressure described in the module docs.
            if inbound.send(msg).await.is_err() {
                return "the replica stopped receiving".to_owned();
            }
        }
    }
}
