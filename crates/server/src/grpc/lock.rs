//! etcd's Lock service (`v3lockpb.Lock`), and the shell that runs the lock and election
//! recipes (`synod_replica::recipes`) on this member for both services.
//!
//! etcd serves Lock and Election by running its client recipes through an in-process
//! client; here the recipes are state machines and [`Shell`] carries out their steps on the
//! [`ReplicaHandle`]: writes through the log, linearizable reads, lease grants with an id
//! drawn here, and waits for a key's delete through a watch stream of this member's own,
//! opened for the wait and closed when it ends or the call is dropped. A call dropped while
//! it waits (its client went away) does the cleanup etcd does for a cancelled call (a queued
//! lock's key deleted, a waiting candidate resigned), without waiting for its outcome.
//!
//! Every failure reaches the client with gRPC code Unknown and the error's text, as etcd's
//! services return their client's errors as plain Go errors (WATCH_LEASE.md 1.8).

use super::convert::HeaderInfo;
use super::proto::v3lockpb::lock_server::Lock as LockApi;
use super::proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use super::watch::RESPONSES_QUEUED_MAX;
use crate::error::ServerError;
use crate::metrics::Metrics;
use crate::replica::ReplicaHandle;
use crate::status::Shared;
use bytes::Bytes;
use etcd_client::proto::PbResponseHeader;
use std::fmt;
use std::sync::Arc;
use synod_kv::{KeyRange, KvError, LeaseGrantRequest, Request as KvRequest, Response};
use synod_replica::recipes::{
    unlock_request, Campaign, Lock, Locked, Proclaim, Progress, RecipeError, Reply, Resign, Step,
};
use synod_replica::watch::{StreamId, WatchCreate, WatchRequest, WatchResponse};
use synod_replica::ReplicaError;
use tokio::sync::mpsc;
use tonic::{Request, Response as GrpcResponse, Status};

/// Lease ids drawn for one grant before giving up: a drawn id is taken with odds of about
/// one in 2^63 / (leases), so a second draw is already rare.
const LEASE_ID_DRAWS_MAX: u32 = 8;

/// Why a step of a recipe failed.
#[derive(Debug)]
pub(super) enum StepError {
    /// The replica's or the store's answer (a refusal, a timeout, no leader, ...).
    Server(ServerError),
    /// The wait's watch was refused or ended by this member, for this reason.
    WatchCanceled(String),
    /// No random lease id could be drawn.
    Random(getrandom::Error),
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepError::Server(e) => e.fmt(f),
            StepError::WatchCanceled(reason) => f.write_str(reason),
            StepError::Random(e) => write!(f, "synod: cannot draw a lease id: {e}"),
        }
    }
}

impl From<ServerError> for StepError {
    fn from(e: ServerError) -> StepError {
        StepError::Server(e)
    }
}

/// A recipe's failure as etcd's services answer it: code Unknown, the error's text.
pub(super) fn unknown(e: RecipeError<StepError>) -> Status {
    Status::unknown(e.to_string())
}

/// A recipe the shell runs to its answer.
pub(super) trait Recipe {
    type Out;
    fn next(&mut self, reply: Result<Reply, StepError>) -> Progress<Self::Out, StepError>;
    /// The cleanup to do if the call is dropped now.
    fn abort(&self) -> Option<KvRequest> {
        None
    }
}

impl Recipe for Lock<StepError> {
    type Out = Locked;
    fn next(&mut self, reply: Result<Reply, StepError>) -> Progress<Locked, StepError> {
        Lock::next(self, reply)
    }
    fn abort(&self) -> Option<KvRequest> {
        Lock::abort(self)
    }
}

impl Recipe for Campaign<StepError> {
    type Out = synod_replica::recipes::Campaigned;
    fn next(&mut self, reply: Result<Reply, StepError>) -> Progress<Self::Out, StepError> {
        Campaign::next(self, reply)
    }
    fn abort(&self) -> Option<KvRequest> {
        Campaign::abort(self)
    }
}

impl Recipe for Proclaim {
    type Out = i64;
    fn next(&mut self, reply: Result<Reply, StepError>) -> Progress<i64, StepError> {
        Proclaim::next(self, reply)
    }
}

impl Recipe for Resign {
    type Out = i64;
    fn next(&mut self, reply: Result<Reply, StepError>) -> Progress<i64, StepError> {
        Resign::next(self, reply)
    }
}

/// Carries out recipe steps on this member (see the module docs).
#[derive(Debug, Clone)]
pub(super) struct Shell {
    pub replica: ReplicaHandle,
    pub shared: Arc<Shared>,
    /// Whether the member refuses writes (its NOSPACE alarm).
    pub metrics: Arc<Metrics>,
    /// `--max-request-bytes`: a call whose request is larger is refused, as etcd's inner
    /// write of it would be.
    pub request_bytes_max: usize,
    /// The least TTL a lease is granted with, as the Lease service raises grants to it.
    pub lease_ttl_min: i64,
}

impl Shell {
    /// This member's header fields, the term as of now.
    pub(super) fn header_info(&self) -> HeaderInfo {
        HeaderInfo {
            cluster_id: self.shared.cluster_id,
            member_id: self.shared.member_id,
            term: self.shared.status().term,
        }
    }

    pub(super) fn header(&self, revision: i64) -> Option<PbResponseHeader> {
        self.header_info().header(revision)
    }

    /// Refuses a writing call over `--max-request-bytes`, with etcd's text.
    pub(super) fn check_size(&self, message: &impl prost::Message) -> Result<(), Status> {
        if message.encoded_len() > self.request_bytes_max {
            let e = StepError::Server(ServerError::RequestTooLarge);
            return Err(unknown(RecipeError::Request(e)));
        }
        Ok(())
    }

    /// Runs `recipe` from `first` to its answer. Dropped midway, it starts the recipe's
    /// cleanup and returns.
    pub(super) async fn run<R: Recipe>(
        &self,
        recipe: R,
        first: Progress<R::Out, StepError>,
    ) -> Result<R::Out, RecipeError<StepError>> {
        let mut running = Running {
            shell: self,
            recipe,
        };
        let mut progress = first;
        loop {
            match progress {
                Progress::Done(result) => return result,
                Progress::Next(step) => {
                    let reply = self.step(step).await;
                    progress = running.recipe.next(reply);
                }
            }
        }
    }

    async fn step(&self, step: Step) -> Result<Reply, StepError> {
        match step {
            Step::Write(request) => Ok(Reply::Kv(self.write(&request).await?)),
            Step::Read(read) => Ok(Reply::Kv(self.replica.read(read, true).await?)),
            Step::Grant { ttl } => Ok(Reply::Kv(self.grant(ttl).await?)),
            Step::WaitDelete { key, from_revision } => {
                self.wait_delete(key, from_revision).await?;
                Ok(Reply::Deleted)
            }
        }
    }

    /// A write, unless the member refuses writes (as etcd's quota check refuses its
    /// services' inner writes and grants).
    pub(super) async fn write(&self, request: &KvRequest) -> Result<Response, ServerError> {
        if let Some(refusal) = self.metrics.conditions.write_refusal() {
            return Err(refusal);
        }
        self.replica.write(request).await
    }

    /// Grants a lease of `ttl` seconds with a random positive id, drawing again if taken.
    async fn grant(&self, ttl: i64) -> Result<Response, StepError> {
        let mut draws = 0;
        loop {
            draws += 1;
            let id = random_lease_id()?;
            let ttl = ttl.max(self.lease_ttl_min);
            let grant = KvRequest::LeaseGrant(LeaseGrantRequest { id, ttl });
            match self.write(&grant).await {
                Err(ServerError::Replica(ReplicaError::Kv(KvError::LeaseExists)))
                    if draws < LEASE_ID_DRAWS_MAX => {}
                result => return Ok(result?),
            }
        }
    }

    /// Returns once `key` is deleted at `from_revision` or later.
    async fn wait_delete(&self, key: Bytes, from_revision: i64) -> Result<(), StepError> {
        let range = KeyRange::new(key, Bytes::new());
        let mut watch = KeyWatch::open(self.replica.clone(), range, from_revision).await?;
        loop {
            let response = watch.next().await?;
            let deleted = response
                .events
                .iter()
                .any(|e| e.kind == synod_kv::EventKind::Delete);
            if deleted {
                return Ok(());
            }
        }
    }
}

/// A positive, non-zero lease id from the operating system's random source.
fn random_lease_id() -> Result<i64, StepError> {
    loop {
        let id = (getrandom::u64().map_err(StepError::Random)? >> 1) as i64;
        if id != 0 {
            return Ok(id);
        }
    }
}

/// A recipe being run: dropped before its answer, it starts the recipe's cleanup.
struct Running<'a, R: Recipe> {
    shell: &'a Shell,
    recipe: R,
}

impl<R: Recipe> Drop for Running<'_, R> {
    fn drop(&mut self) {
        // A recipe that answered has no cleanup left: this acts only on a dropped call.
        if let Some(cleanup) = self.recipe.abort() {
            let shell = self.shell.clone();
            spawn_detached(async move {
                if let Err(e) = shell.write(&cleanup).await {
                    tracing::debug!(%e, "cleanup of an abandoned lock or campaign failed");
                }
            });
        }
    }
}

/// One watcher on a watch stream of its own: the responses for one range from one revision.
/// Closing the stream when dropped.
pub(super) struct KeyWatch {
    replica: ReplicaHandle,
    stream: StreamId,
    responses: mpsc::Receiver<WatchResponse>,
}

impl KeyWatch {
    pub(super) async fn open(
        replica: ReplicaHandle,
        range: KeyRange,
        from_revision: i64,
    ) -> Result<KeyWatch, ServerError> {
        let (sender, responses) = mpsc::channel(RESPONSES_QUEUED_MAX);
        let stream = replica.watch_open(sender).await?;
        let watch = KeyWatch {
            replica,
            stream,
            responses,
        };
        let create = WatchCreate::new(range, from_revision);
        let request = WatchRequest::Create(create);
        watch.replica.watch_request(stream, request).await?;
        Ok(watch)
    }

    /// The next response, reported written so the stream's bound moves on. A cancel
    /// (compaction, a refused create) is an error, as etcd's client makes it.
    pub(super) async fn next(&mut self) -> Result<WatchResponse, StepError> {
        let stopped = ServerError::Replica(ReplicaError::Stopped);
        let response = self.responses.recv().await.ok_or(stopped)?;
        self.replica.watch_drained(self.stream, 1).await;
        if response.compact_revision != 0 {
            return Err(StepError::Server(KvError::Compacted.into()));
        }
        if response.canceled {
            return Err(StepError::WatchCanceled(response.cancel_reason));
        }
        Ok(response)
    }
}

impl Drop for KeyWatch {
    fn drop(&mut self) {
        let replica = self.replica.clone();
        let stream = self.stream;
        spawn_detached(async move { replica.watch_close(stream).await });
    }
}

/// Runs `work` on its own, from a `drop`: only inside the runtime (a drop outside it, as the
/// process ends, has no one left to clean up for).
fn spawn_detached(work: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(work);
    }
}

/// etcd's Lock service.
#[derive(Debug, Clone)]
pub struct LockService {
    pub(super) shell: Shell,
}

#[tonic::async_trait]
impl LockApi for LockService {
    async fn lock(
        &self,
        request: Request<LockRequest>,
    ) -> Result<GrpcResponse<LockResponse>, Status> {
        let request = request.into_inner();
        self.shell.check_size(&request)?;
        let (lock, step) = Lock::start(&request.name, request.lease);
        let locked = self.shell.run(lock, Progress::Next(step)).await;
        let locked = locked.map_err(unknown)?;
        Ok(GrpcResponse::new(LockResponse {
            header: self.shell.header(locked.revision),
            key: locked.key.to_vec(),
        }))
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<GrpcResponse<UnlockResponse>, Status> {
        let request = request.into_inner();
        self.shell.check_size(&request)?;
        let delete = unlock_request(Bytes::from(request.key));
        let deleted = self.shell.write(&delete).await;
        let deleted = deleted.map_err(|e| unknown(RecipeError::Request(e.into())))?;
        Ok(GrpcResponse::new(UnlockResponse {
            header: self.shell.header(deleted.header().revision),
        }))
    }
}
