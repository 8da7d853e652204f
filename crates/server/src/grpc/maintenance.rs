//! etcd's Maintenance service: what `etcdctl endpoint status`, `endpoint health`,
//! `endpoint hashkv` and `alarm list` need.

use crate::conditions::Condition;
use crate::error::ServerError;
use crate::metrics::Metrics;
use crate::status::Shared;
use etcd_client::proto::{
    PbAlarmMember, PbAlarmRequest, PbAlarmResponse, PbDefragmentRequest, PbDefragmentResponse,
    PbDowngradeRequest, PbDowngradeResponse, PbHashKvRequest, PbHashKvResponse, PbHashRequest,
    PbHashResponse, PbMaintenanceService, PbMoveLeaderRequest, PbMoveLeaderResponse,
    PbResponseHeader, PbSnapshotRequest, PbSnapshotResponse, PbStatusRequest, PbStatusResponse,
};
use etcd_client::{AlarmAction, AlarmType};
use std::pin::Pin;
use std::sync::Arc;
use synod_replica::ReplicaError;
use tonic::codegen::tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// The etcd release Synod answers as (`Status.version`): the one whose behaviour it
/// follows and is compared with (tests/etcd_compare.rs). Clients read it to decide what to
/// use: Kubernetes sends watch progress requests only to 3.4.31+ and 3.5.13+.
pub const ETCD_VERSION: &str = "3.5.30";

/// The empty store still has a size: etcdctl divides by it.
const DB_SIZE_MIN_BYTES: u64 = 4096;

#[derive(Debug, Clone)]
pub struct MaintenanceService {
    pub shared: Arc<Shared>,
    pub replica: crate::replica::ReplicaHandle,
    pub metrics: Arc<Metrics>,
}

/// Pieces of a snapshot streamed to a client.
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

impl MaintenanceService {
    fn header(&self) -> Option<PbResponseHeader> {
        super::convert::current_header(&self.shared)
    }

    /// The header of an answer computed from the store at `revision`.
    fn header_at(&self, revision: i64) -> Option<PbResponseHeader> {
        let mut header = self.header();
        if let Some(h) = header.as_mut() {
            h.revision = revision;
        }
        header
    }

    /// The alarms this member raises (etcd lists every member's, replicated through its
    /// log; Synod's are local: ask each member, as `etcdctl endpoint status` does).
    fn alarms(&self) -> Vec<(Condition, PbAlarmMember)> {
        let mut out: Vec<(Condition, PbAlarmMember)> = Vec::new();
        for c in self.metrics.conditions.active() {
            if let Some(alarm) = c.alarm() {
                if out.iter().all(|(_, a)| a.alarm != alarm as i32) {
                    let member = PbAlarmMember {
                        member_id: self.shared.member_id,
                        alarm: alarm as i32,
                    };
                    out.push((c, member));
                }
            }
        }
        out
    }
}

#[tonic::async_trait]
impl PbMaintenanceService for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<PbAlarmRequest>,
    ) -> Result<Response<PbAlarmResponse>, Status> {
        let r = request.into_inner();
        let alarms = match AlarmAction::try_from(r.action) {
            Ok(AlarmAction::Get) => self.alarms().into_iter().map(|(_, a)| a).collect(),
            // `etcdctl alarm disarm` names each listed alarm in turn. A condition is a fact,
            // not a flag: say what clears it rather than pretend.
            Ok(AlarmAction::Deactivate) => {
                let wanted = |a: &PbAlarmMember| {
                    (r.member_id == 0 || r.member_id == a.member_id)
                        && (r.alarm == AlarmType::None as i32 || r.alarm == a.alarm)
                };
                if let Some((c, _)) = self.alarms().into_iter().find(|(_, a)| wanted(a)) {
                    return Err(ServerError::from(ReplicaError::Precondition(
                        c.disarm_refusal().into(),
                    ))
                    .into());
                }
                Vec::new()
            }
            Ok(AlarmAction::Activate) => {
                return Err(ServerError::Unimplemented("activating an alarm by request").into())
            }
            Err(_) => {
                return Err(ServerError::from(ReplicaError::InvalidArgument(format!(
                    "etcdserver: unknown alarm action {}",
                    r.action
                )))
                .into())
            }
        };
        Ok(Response::new(PbAlarmResponse {
            header: self.header(),
            alarms,
        }))
    }

    async fn status(
        &self,
        _request: Request<PbStatusRequest>,
    ) -> Result<Response<PbStatusResponse>, Status> {
        let live = self.shared.status();
        let db_size = live.db_size_bytes.max(DB_SIZE_MIN_BYTES) as i64;
        let mut errors = Vec::new();
        if live.leader.is_none() {
            errors.push("etcdserver: no leader".to_string());
        }
        errors.extend(
            self.metrics
                .conditions
                .active()
                .map(|c| c.status_error(self.shared.member_id)),
        );
        Ok(Response::new(PbStatusResponse {
            header: self.header(),
            version: ETCD_VERSION.to_string(),
            db_size,
            leader: live.leader.unwrap_or(0),
            raft_index: live.commit_slot,
            raft_term: live.term,
            raft_applied_index: live.applied_slot,
            errors,
            db_size_in_use: live.db_size_bytes.max(DB_SIZE_MIN_BYTES) as i64,
            is_learner: self
                .shared
                .members()
                .members
                .get(&self.shared.member_id)
                .is_some_and(|m| m.learner),
            // etcd 3.5 leaves it empty (3.6 reports its storage schema).
            storage_version: String::new(),
            db_size_quota: 0,
            downgrade_info: None,
        }))
    }

    async fn defragment(
        &self,
        _request: Request<PbDefragmentRequest>,
    ) -> Result<Response<PbDefragmentResponse>, Status> {
        // The store lives in memory and the log is append-only: nothing to defragment.
        Ok(Response::new(PbDefragmentResponse {
            header: self.header(),
        }))
    }

    /// Synod's own hash of the whole state (etcd's is a CRC of its database file, which
    /// Synod does not have): equal on members at the same revision.
    async fn hash(
        &self,
        _request: Request<PbHashRequest>,
    ) -> Result<Response<PbHashResponse>, Status> {
        let (hash, revision) = self.replica.hash().await?;
        Ok(Response::new(PbHashResponse {
            header: self.header_at(revision),
            hash,
        }))
    }

    /// etcd's HashKV, bit for bit (synod-kv hash.rs), of this member's store at the
    /// requested revision (0: its current one); the header carries the revision the store
    /// was at. etcd 3.5 never fills `hash_revision`.
    async fn hash_kv(
        &self,
        request: Request<PbHashKvRequest>,
    ) -> Result<Response<PbHashKvResponse>, Status> {
        let at = request.into_inner().revision;
        let (hash, revision) = self.replica.hash_kv(at).await?;
        Ok(Response::new(PbHashKvResponse {
            header: self.header_at(revision),
            hash: hash.hash,
            compact_revision: hash.compact_revision,
            hash_revision: 0,
        }))
    }

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<PbSnapshotResponse, Status>> + Send>>;

    /// A consistent copy of the store (Synod's snapshot format, not etcd's bbolt file), in
    /// etcd's stream convention that `etcdctl snapshot save` checks: zero padding to a
    /// multiple of 512 bytes, then the SHA-256 of everything before it.
    async fn snapshot(
        &self,
        _request: Request<PbSnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let (_, snapshot) = self.replica.export().await?;
        let mut padded = snapshot.to_vec();
        padded.resize(snapshot.len().div_ceil(512) * 512, 0);
        let digest = <sha2::Sha256 as sha2::Digest>::digest(&padded);
        padded.extend_from_slice(&digest);
        let data = bytes::Bytes::from(padded);
        let header = self.header();
        let total = data.len();
        let mut pieces = Vec::new();
        let mut offset = 0;
        while offset < total || pieces.is_empty() {
            let end = (offset + SNAPSHOT_CHUNK_BYTES).min(total);
            pieces.push(Ok(PbSnapshotResponse {
                header,
                remaining_bytes: (total - end) as u64,
                blob: data.slice(offset..end).to_vec(),
                version: ETCD_VERSION.to_string(),
            }));
            offset = end;
        }
        let stream = tonic::codegen::tokio_stream::iter(pieces);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn move_leader(
        &self,
        request: Request<PbMoveLeaderRequest>,
    ) -> Result<Response<PbMoveLeaderResponse>, Status> {
        let to = request.into_inner().target_id;
        self.replica.move_leader(to).await?;
        Ok(Response::new(PbMoveLeaderResponse {
            header: self.header(),
        }))
    }

    async fn downgrade(
        &self,
        _request: Request<PbDowngradeRequest>,
    ) -> Result<Response<PbDowngradeResponse>, Status> {
        Err(ServerError::Unimplemented("Downgrade").into())
    }
}
