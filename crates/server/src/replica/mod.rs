//! The shell around the sans-IO replica (`synod-replica`): one task that owns it and carries
//! out its effects (`core`), one thread that makes its persist jobs durable (`persist`), one
//! that ticks (`ticker`), and read workers for reads too large for a turn (`readers`).
//! Everything else (gRPC handlers, the peer transport) talks to the core through one bounded
//! queue of [`Input`]s, via a [`ReplicaHandle`].
//!
//! Why the core is a task and the persist step a thread: the core never waits on anything
//! but its queue, so it can share the server's single runtime thread with the gRPC handlers
//! and the transport, and every hand-off between them (a request in, its reply out, a peer
//! message in, a message out) is a task switch on that thread rather than a futex wake-up and
//! a context switch (measured: ~40% less CPU per linearizable get, ~10% per put, on 2 cores
//! running 3 members; docs/BENCHMARKS.md). The persist thread blocks in fdatasync; keeping it
//! off the runtime keeps that blocking from stalling network I/O, and lets the leader's disk
//! write run in parallel with its Accepts going out (the seeds' "write to disk in parallel
//! with sending accepts").

mod core;
mod persist;
mod readers;
mod ticker;

pub use self::core::CoreConfig;
pub use synod_replica::{Restored, Retention, StartError};

use crate::error::ServerError;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use synod_kv::{ReadRequest, Request, RequestOp, Response, TxnRequest};
use synod_paxos::Message;
use synod_replica::watch::{StreamId, WatchRequest, WatchResponse};
use synod_replica::{Answer, ReplicaError};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// Most inputs waiting for the core; beyond it clients get "too many requests".
pub const INPUT_QUEUE_MAX: usize = 65_536;

/// Write Txns with Range ops in flight at most; beyond it clients get "too many requests".
/// Their reads may end up queued for a read worker after the Txn is applied, where they can
/// no longer be refused (readers.rs); this bounds that queue.
pub const TXN_READS_INFLIGHT_MAX: usize = 1024;

/// A client waiting for its answer: where to send it, and (a Txn with reads) the permit it
/// holds until then.
#[derive(Debug)]
pub(crate) struct Waiter {
    reply: oneshot::Sender<Result<Answer, ServerError>>,
    /// One of [`TXN_READS_INFLIGHT_MAX`], held until answered.
    _permit: Option<OwnedSemaphorePermit>,
}

impl Waiter {
    pub(crate) fn new(
        permit: Option<OwnedSemaphorePermit>,
    ) -> (Waiter, oneshot::Receiver<Result<Answer, ServerError>>) {
        let (reply, rx) = oneshot::channel();
        (
            Waiter {
                reply,
                _permit: permit,
            },
            rx,
        )
    }

    pub(crate) fn answer(self, result: Result<Answer, ReplicaError>) {
        let _ = self.reply.send(result.map_err(ServerError::from));
    }

    pub(crate) fn fail(self, error: ServerError) {
        let _ = self.reply.send(Err(error));
    }
}

impl synod_replica::Waiter for Waiter {
    fn is_gone(&self) -> bool {
        self.reply.is_closed()
    }
}

#[derive(Debug)]
pub(crate) enum Input {
    Peer(Message),
    /// An encoded `synod_kv::Request` to replicate.
    Write {
        payload: Bytes,
        waiter: Waiter,
    },
    /// A read (a Range or a read-only Txn); `linearizable` ones wait for a read barrier
    /// first.
    Read {
        request: ReadRequest,
        linearizable: bool,
        waiter: Waiter,
    },
    /// A consistent copy of the store for a client (Maintenance.Snapshot).
    Export {
        waiter: Waiter,
    },
    Tick,
    /// A membership request (etcd's Cluster API), answered with the table that results.
    Admin {
        request: crate::members::AdminRequest,
        waiter: Waiter,
    },
    /// Hand leadership to a member (Maintenance.MoveLeader); this member must lead.
    MoveLeader {
        to: synod_paxos::NodeId,
        waiter: Waiter,
    },
    /// Everything the core handed the persist thread up to this sequence is durable.
    Persisted(u64),
    /// A snapshot job finished (`saved`: it is durable and the log below it dropped; else a
    /// newer snapshot was already there).
    SnapshotSaved {
        slot: synod_paxos::Slot,
        data: Bytes,
        received: bool,
        saved: bool,
    },
    /// A client opened a watch stream: the core sends its responses to `responses`.
    WatchOpen {
        responses: mpsc::Sender<WatchResponse>,
        opened: oneshot::Sender<StreamId>,
    },
    /// A request on a watch stream.
    Watch {
        stream: StreamId,
        request: WatchRequest,
    },
    /// The stream's task wrote this many more of its responses to the client.
    WatchDrained {
        stream: StreamId,
        responses: usize,
    },
    /// The watch stream ended.
    WatchClose {
        stream: StreamId,
    },
    /// Renew a lease (etcd's LeaseKeepAlive); a follower forwards it to the leader.
    LeaseKeepAlive {
        id: i64,
        waiter: Waiter,
    },
    /// A lease's remaining and granted TTL (and its keys, if asked), from the leader.
    LeaseTimeToLive {
        id: i64,
        keys: bool,
        waiter: Waiter,
    },
    /// Every lease in this member's store.
    LeaseLeases {
        waiter: Waiter,
    },
    /// etcd's HashKV of this member's store (a read worker computes it).
    HashKv {
        revision: i64,
        waiter: Waiter,
    },
    /// Synod's Hash of this member's store (a read worker computes it).
    Hash {
        waiter: Waiter,
    },
    /// The persist thread panicked: storage's state is unknown, so the member stops.
    Fatal(String),
    Shutdown,
}

/// How gRPC handlers reach the replica. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ReplicaHandle {
    inputs: mpsc::Sender<Input>,
    request_timeout: Duration,
    /// [`TXN_READS_INFLIGHT_MAX`] permits.
    txn_reads: Arc<Semaphore>,
}

impl ReplicaHandle {
    fn submit(&self, input: Input) -> Result<(), ServerError> {
        self.inputs.try_send(input).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                ServerError::Replica(synod_replica::ReplicaError::TooManyRequests)
            }
            mpsc::error::TrySendError::Closed(_) => {
                ServerError::Replica(synod_replica::ReplicaError::Stopped)
            }
        })
    }

    async fn wait(
        &self,
        rx: oneshot::Receiver<Result<Answer, ServerError>>,
    ) -> Result<Answer, ServerError> {
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ServerError::Replica(synod_replica::ReplicaError::Stopped)),
            Err(_) => Err(ServerError::Replica(synod_replica::ReplicaError::Timeout)),
        }
    }

    /// Replicates a write and returns its outcome once applied (and its reads, if it is a
    /// Txn with Range ops, answered).
    pub async fn write(&self, request: &Request) -> Result<Response, ServerError> {
        let permit = match request {
            Request::Txn(t) if has_reads(t) => {
                Some(self.txn_reads.clone().try_acquire_owned().map_err(|_| {
                    ServerError::Replica(synod_replica::ReplicaError::TooManyRequests)
                })?)
            }
            _ => None,
        };
        let (waiter, rx) = Waiter::new(permit);
        self.submit(Input::Write {
            payload: synod_kv::encode_request(request),
            waiter,
        })?;
        kv_answer(self.wait(rx).await?)
    }

    /// Serves a Range or a read-only Txn without the log: from the local store at once if
    /// not `linearizable`, else once a read barrier confirms it is up to date.
    pub async fn read(
        &self,
        request: impl Into<ReadRequest>,
        linearizable: bool,
    ) -> Result<Response, ServerError> {
        let (waiter, rx) = Waiter::new(None);
        self.submit(Input::Read {
            request: request.into(),
            linearizable,
            waiter,
        })?;
        kv_answer(self.wait(rx).await?)
    }

    /// The store as of the last applied slot, encoded as a snapshot (with the membership).
    pub async fn export(&self) -> Result<(synod_paxos::Slot, Bytes), ServerError> {
        let (waiter, rx) = Waiter::new(None);
        self.submit(Input::Export { waiter })?;
        match self.wait(rx).await? {
            Answer::Exported { slot, data } => Ok((slot, data)),
            other => Err(unexpected(other)),
        }
    }

    /// Changes the membership through the log; returns the member table that results.
    pub async fn admin(
        &self,
        request: crate::members::AdminRequest,
    ) -> Result<crate::members::MemberTable, ServerError> {
        let (waiter, rx) = Waiter::new(None);
        self.submit(Input::Admin { request, waiter })?;
        match self.wait(rx).await? {
            Answer::Members(table) => Ok(table),
            other => Err(unexpected(other)),
        }
    }

    /// Moves leadership to member `to` (call at the leader); returns once `to` leads.
    pub async fn move_leader(&self, to: synod_paxos::NodeId) -> Result<(), ServerError> {
        let (waiter, rx) = Waiter::new(None);
        self.submit(Input::MoveLeader { to, waiter })?;
        match self.wait(rx).await? {
            Answer::LeaderMoved => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Opens a watch stream whose responses the core sends to `responses`.
    pub async fn watch_open(
        &self,
        responses: mpsc::Sender<WatchResponse>,
    ) -> Result<StreamId, ServerError> {
        let (opened, rx) = oneshot::channel();
        self.submit(Input::WatchOpen { responses, opened })?;
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(_)) => Err(ServerError::Replica(ReplicaError::Stopped)),
            Err(_) => Err(ServerError::Replica(ReplicaError::Timeout)),
        }
    }

    /// A request on watch stream `stream`; waits for room in the core's queue (so a client
    /// flooding requests is slowed, not refused).
    pub async fn watch_request(
        &self,
        stream: StreamId,
        request: WatchRequest,
    ) -> Result<(), ServerError> {
        self.inputs
            .send(Input::Watch { stream, request })
            .await
            .map_err(|_| ServerError::Replica(ReplicaError::Stopped))
    }

    /// The stream's task wrote `responses` more responses to its client.
    pub async fn watch_drained(&self, stream: StreamId, responses: usize) {
        let _ = self
            .inputs
            .send(Input::WatchDrained { stream, responses })
            .await;
    }

    /// The watch stream ended.
    pub async fn watch_close(&self, stream: StreamId) {
        let _ = self.inputs.send(Input::WatchClose { stream }).await;
    }

    /// Renews lease `id` at the leader (forwarded by a follower); returns the TTL it was
    /// granted, or 0 if it does not exist (or expired).
    pub async fn lease_keep_alive(&self, id: i64) -> Result<i64, ServerError> {
        let (waiter, rx) = Waiter::new(None);
        self.submit(Input::LeaseKeepAlive { id, waiter })?;
        match self.wait(rx).await? {
            Answer::LeaseKeepAlive { ttl, .. } => Ok(ttl),
            other => Err(unexpected(other)),
        }
    }

    /// What the leader knows of lease `id`: remaining TTL (-1 if unknown), granted TTL and,
    /// if `keys`, its keys.
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<LeaseTimeToLive, ServerError> {
        let (waiter, rx) = Waiter::new(None);
        self.submit(Input::LeaseTimeToLive { id, keys, waiter })?;
        match self.wait(rx).await? {
            Answer::LeaseTimeToLive {
                ttl,
                granted_ttl,
                keys,
                ..
            } => Ok(LeaseTimeToLive {
                ttl,
                granted_ttl,
                keys,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// The ids of the leases in this member's store.
    pub async fn lease_leases(&self) -> Result<Vec<i64>, ServerError> {
        let (waiter, rx) = Waiter::new(None);
        self.submit(Input::LeaseLeases { waiter })?;
        match self.wait(rx).await? {
            Answer::Leases(ids) => Ok(ids),
            other => Err(unexpected(other)),
        }
    }

    /// etcd's HashKV of this member's store at `revision` (0: its current one), and the
    /// revision the store was at.
    pub async fn hash_kv(&self, revision: i64) -> Result<(synod_kv::HashKv, i64), ServerError> {
        let (waiter, rx) = Waiter::new(None);
        self.submit(Input::HashKv { revision, waiter })?;
        match self.wait(rx).await? {
            Answer::HashKv { hash, revision } => Ok((hash, revision)),
            other => Err(unexpected(other)),
        }
    }

    /// Synod's Hash of this member's store, and the revision the store was at.
    pub async fn hash(&self) -> Result<(u32, i64), ServerError> {
        let (waiter, rx) = Waiter::new(None);
        self.submit(Input::Hash { waiter })?;
        match self.wait(rx).await? {
            Answer::Hash { hash, revision } => Ok((hash, revision)),
            other => Err(unexpected(other)),
        }
    }

    /// Asks the replica to stop; returns at once.
    pub fn shutdown(&self) {
        // A full queue still gets the message through eventually; a closed one is stopped.
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            let _ = inputs.send(Input::Shutdown).await;
        });
    }
}

/// A lease as TimeToLive reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTimeToLive {
    /// Seconds left (truncated); -1 if the lease does not exist.
    pub ttl: i64,
    pub granted_ttl: i64,
    /// Its keys in key order, if asked for.
    pub keys: Vec<Bytes>,
}

fn kv_answer(answer: Answer) -> Result<Response, ServerError> {
    match answer {
        Answer::Kv(response) => Ok(response),
        other => Err(unexpected(other)),
    }
}

/// An answer of the wrong kind: a bug in the replica, reported to the client as a stop
/// rather than a crash of the member.
fn unexpected(answer: Answer) -> ServerError {
    tracing::error!(
        ?answer,
        "the replica answered a request with the wrong kind of answer"
    );
    ServerError::Replica(synod_replica::ReplicaError::Stopped)
}

/// Whether a txn has a Range op anywhere (either branch, nested txns included).
fn has_reads(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).any(|op| match op {
        RequestOp::Range(_) => true,
        RequestOp::Txn(inner) => has_reads(inner),
        RequestOp::Put(_) | RequestOp::DeleteRange(_) => false,
    })
}

/// Delivers peer messages from the transport to the core, waiting for room rather than
/// dropping (the transport's own queues are bounded, so back-pressure reaches the sockets).
pub(crate) async fn forward_peer_messages(
    mut from_peers: mpsc::Receiver<Message>,
    inputs: mpsc::Sender<Input>,
) {
    while let Some(m) = from_peers.recv().await {
        if inputs.send(Input::Peer(m)).await.is_err() {
            return;
        }
    }
}

pub use self::core::start;
