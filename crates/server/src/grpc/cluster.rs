//! etcd's Cluster service. The membership is fixed at bootstrap for now; changing it goes
//! through the log (issue 7), so the mutating calls say so instead of pretending.

use crate::error::ServerError;
use crate::status::Shared;
use etcd_client::proto::{
    PbClusterService, PbMember, PbMemberAddRequest, PbMemberAddResponse, PbMemberListRequest,
    PbMemberListResponse, PbMemberPromoteRequest, PbMemberPromoteResponse, PbMemberRemoveRequest,
    PbMemberRemoveResponse, PbMemberUpdateRequest, PbMemberUpdateResponse, PbResponseHeader,
};
use std::sync::Arc;
use tonic::{Request, Response, Status};

#[derive(Debug, Clone)]
pub struct ClusterService {
    pub shared: Arc<Shared>,
}

impl ClusterService {
    fn header(&self) -> Option<PbResponseHeader> {
        super::convert::current_header(&self.shared)
    }
}

#[tonic::async_trait]
impl PbClusterService for ClusterService {
    async fn member_add(
        &self,
        _request: Request<PbMemberAddRequest>,
    ) -> Result<Response<PbMemberAddResponse>, Status> {
        Err(ServerError::Unimplemented("MemberAdd (membership changes)").into())
    }

    async fn member_remove(
        &self,
        _request: Request<PbMemberRemoveRequest>,
    ) -> Result<Response<PbMemberRemoveResponse>, Status> {
        Err(ServerError::Unimplemented("MemberRemove (membership changes)").into())
    }

    async fn member_update(
        &self,
        _request: Request<PbMemberUpdateRequest>,
    ) -> Result<Response<PbMemberUpdateResponse>, Status> {
        Err(ServerError::Unimplemented("MemberUpdate (membership changes)").into())
    }

    async fn member_list(
        &self,
        _request: Request<PbMemberListRequest>,
    ) -> Result<Response<PbMemberListResponse>, Status> {
        let voters = self.shared.snapshot().voters;
        let members = self
            .shared
            .members
            .iter()
            // Before the first step publishes, every configured member is listed.
            .filter(|m| voters.is_empty() || voters.contains(&m.id))
            .map(|m| PbMember {
                id: m.id,
                name: m.name.clone(),
                peer_ur_ls: m.peer_urls.clone(),
                client_ur_ls: m.client_urls.clone(),
                is_learner: false,
            })
            .collect();
        Ok(Response::new(PbMemberListResponse {
            header: self.header(),
            members,
        }))
    }

    async fn member_promote(
        &self,
        _request: Request<PbMemberPromoteRequest>,
    ) -> Result<Response<PbMemberPromoteResponse>, Status> {
        Err(ServerError::Unimplemented("MemberPromote (membership changes)").into())
    }
}
