//! etcd's Lease service. Grants and revokes go through the log like any write; keep-alives,
//! TimeToLive and Leases go to the replica's lessor (`synod_replica`), which renews at the
//! leader (a follower forwards) and revokes expired leases through the log itself.
//!
//! What this file decides, as etcd's server does before proposing: the id of a grant that
//! names none, the minimum TTL (which depends on this member's election timeout, so it is
//! applied here and the log carries the raised TTL: every member applies the same grant),
//! and the refusal of a TTL over etcd's maximum (synod-kv refuses it too; checking here
//! saves a slot).

use super::convert::{current_header, HeaderInfo};
use crate::error::ServerError;
use crate::replica::ReplicaHandle;
use crate::status::Shared;
use etcd_client::proto::{
    PbLeaseGrantRequest, PbLeaseGrantResponse, PbLeaseKeepAliveRequest, PbLeaseKeepAliveResponse,
    PbLeaseLeasesRequest, PbLeaseLeasesResponse, PbLeaseRevokeRequest, PbLeaseRevokeResponse,
    PbLeaseService, PbLeaseStatus, PbLeaseTimeToLiveRequest, PbLeaseTimeToLiveResponse,
};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use synod_kv::{KvError, LeaseGrantRequest, LeaseRevokeRequest, Request as KvRequest};
use synod_replica::ReplicaError;
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

/// Ids drawn for one grant that names none. A random 63-bit id collides with an existing
/// lease with negligible probability; a collision is answered "lease already exists" by the
/// store, and drawing again makes even that invisible to the client.
const ID_DRAWS_MAX: usize = 3;

#[derive(Debug, Clone)]
pub struct LeaseService {
    pub replica: ReplicaHandle,
    pub shared: Arc<Shared>,
    /// The shortest TTL granted, in seconds ([`ttl_min`]).
    pub ttl_min: i64,
}

/// etcd's minimum lease TTL: one and a half election timeouts, rounded up to whole seconds
/// (etcd: `ceil((3 * electionTicks / 2) * heartbeat)`), so a lease cannot expire during the
/// election that follows a leader's failure. At least 1 s.
pub fn ttl_min(election_timeout: Duration) -> i64 {
    let nanos = election_timeout.as_nanos().saturating_mul(3) / 2;
    let secs = nanos.div_ceil(1_000_000_000);
    i64::try_from(secs).unwrap_or(i64::MAX).max(1)
}

/// A positive, non-zero lease id from the operating system's random source. Random rather
/// than etcd's per-member sequence: any member may pick ids, before and after restarts,
/// and 63 random bits keep them apart without coordination; clients treat ids as opaque.
fn random_id() -> Result<i64, Status> {
    loop {
        let drawn = getrandom::u64()
            .map_err(|e| Status::unavailable(format!("synod: cannot draw a lease id: {e}")))?;
        let id = (drawn >> 1) as i64;
        if id != 0 {
            return Ok(id);
        }
    }
}

fn unexpected(what: &str) -> Status {
    // The state machine answers each request kind with its own response kind; anything else
    // is a bug, reported rather than crashing the member.
    Status::internal(format!(
        "synod: unexpected response kind to a {what} request"
    ))
}

impl LeaseService {
    fn header_info(&self) -> HeaderInfo {
        HeaderInfo {
            cluster_id: self.shared.cluster_id,
            member_id: self.shared.member_id,
            term: self.shared.status().term,
        }
    }

    /// Proposes one grant; the store's answer.
    async fn grant(&self, id: i64, ttl: i64) -> Result<synod_kv::Response, ServerError> {
        let request = KvRequest::LeaseGrant(LeaseGrantRequest { id, ttl });
        self.replica.write(&request).await
    }

    /// Grants with an id drawn here, drawing again if it was taken.
    async fn grant_any_id(&self, ttl: i64) -> Result<synod_kv::Response, Status> {
        let mut draws = 0;
        loop {
            draws += 1;
            match self.grant(random_id()?, ttl).await {
                Err(ServerError::Replica(ReplicaError::Kv(KvError::LeaseExists)))
                    if draws < ID_DRAWS_MAX => {}
                result => return Ok(result?),
            }
        }
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<PbLeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PbLeaseService for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<PbLeaseGrantRequest>,
    ) -> Result<Response<PbLeaseGrantResponse>, Status> {
        let request = request.into_inner();
        if request.ttl > synod_kv::LEASE_TTL_MAX {
            return Err(ServerError::from(KvError::LeaseTtlTooLarge).into());
        }
        let ttl = request.ttl.max(self.ttl_min);
        let response = if request.id == 0 {
            self.grant_any_id(ttl).await?
        } else {
            self.grant(request.id, ttl).await?
        };
        match response {
            // A grant changes no revision: the header carries the current one.
            synod_kv::Response::LeaseGrant(r) => Ok(Response::new(PbLeaseGrantResponse {
                header: self.header_info().header(r.header.revision),
                id: r.id,
                ttl: r.ttl,
                error: String::new(),
            })),
            _ => Err(unexpected("lease grant")),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<PbLeaseRevokeRequest>,
    ) -> Result<Response<PbLeaseRevokeResponse>, Status> {
        let id = request.into_inner().id;
        let request = KvRequest::LeaseRevoke(LeaseRevokeRequest { id, expiry: None });
        match self.replica.write(&request).await? {
            // The header is the revision after the lease's keys were deleted.
            synod_kv::Response::LeaseRevoke(r) => Ok(Response::new(PbLeaseRevokeResponse {
                header: self.header_info().header(r.header.revision),
            })),
            _ => Err(unexpected("lease revoke")),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<PbLeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        // Room for one response: the next request is read only once the previous answer
        // was taken by gRPC, so a stream holds one request in flight whatever the client
        // sends, and HTTP/2 flow control pushes back on a client that sends faster.
        let (out, out_rx) = mpsc::channel(1);
        let task = KeepAlives {
            replica: self.replica.clone(),
            shared: self.shared.clone(),
            out,
        };
        tokio::spawn(task.run(request.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<PbLeaseTimeToLiveRequest>,
    ) -> Result<Response<PbLeaseTimeToLiveResponse>, Status> {
        let request = request.into_inner();
        let lease = self
            .replica
            .lease_time_to_live(request.id, request.keys)
            .await?;
        Ok(Response::new(PbLeaseTimeToLiveResponse {
            header: current_header(&self.shared),
            id: request.id,
            ttl: lease.ttl,
            granted_ttl: lease.granted_ttl,
            keys: lease.keys.into_iter().map(|k| k.to_vec()).collect(),
        }))
    }

    async fn lease_leases(
        &self,
        _request: Request<PbLeaseLeasesRequest>,
    ) -> Result<Response<PbLeaseLeasesResponse>, Status> {
        let ids = self.replica.lease_leases().await?;
        Ok(Response::new(PbLeaseLeasesResponse {
            header: current_header(&self.shared),
            leases: ids.into_iter().map(|id| PbLeaseStatus { id }).collect(),
        }))
    }
}

/// One keep-alive stream: its requests answered in order, one at a time.
struct KeepAlives {
    replica: ReplicaHandle,
    shared: Arc<Shared>,
    out: mpsc::Sender<Result<PbLeaseKeepAliveResponse, Status>>,
}

impl KeepAlives {
    async fn run(self, mut incoming: Streaming<PbLeaseKeepAliveRequest>) {
        loop {
            let request = tokio::select! {
                request = incoming.message() => request,
                _ = self.out.closed() => return,
            };
            let id = match request {
                Ok(Some(request)) => request.id,
                // The client closed its side: the stream ends without error, as etcd's.
                Ok(None) => return,
                Err(status) => {
                    let _ = self.out.send(Err(status)).await;
                    return;
                }
            };
            // etcd fills the header before renewing, so it never names a revision the
            // renewal could have followed (a revoke of the lease, say).
            let header = current_header(&self.shared);
            let renewed = tokio::select! {
                renewed = self.replica.lease_keep_alive(id) => renewed,
                _ = self.out.closed() => return,
            };
            // An unknown (or expired) lease is answered TTL 0 and the stream stays open;
            // any other failure ends it with etcd's status.
            let (answer, end) = match renewed {
                Ok(ttl) => (Ok(PbLeaseKeepAliveResponse { header, id, ttl }), false),
                Err(e) => (Err(Status::from(e)), true),
            };
            if self.out.send(answer).await.is_err() || end {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimum_ttl_is_etcds() {
        // etcd's defaults (election 1000 ms): 1.5 s, rounded up.
        assert_eq!(ttl_min(Duration::from_millis(1000)), 2);
        assert_eq!(ttl_min(Duration::from_millis(2000)), 3);
        assert_eq!(ttl_min(Duration::from_millis(2100)), 4);
        // Short election timeouts still grant whole seconds.
        assert_eq!(ttl_min(Duration::from_millis(200)), 1);
        assert_eq!(ttl_min(Duration::ZERO), 1);
    }

    #[test]
    fn drawn_ids_are_positive() {
        for _ in 0..1000 {
            assert!(random_id().unwrap() > 0);
        }
    }
}
