//! etcd's Cluster service. Changes go through the log as admin commands (see
//! `replica/admin.rs`), so any member takes them; the answer lists the members as of the
//! membership the change produced.

use crate::error::ServerError;
use crate::members::{AdminRequest, MemberRecord, MemberTable};
use crate::replica::ReplicaHandle;
use crate::status::Shared;
use etcd_client::proto::{
    PbClusterService, PbMember, PbMemberAddRequest, PbMemberAddResponse, PbMemberListRequest,
    PbMemberListResponse, PbMemberPromoteRequest, PbMemberPromoteResponse, PbMemberRemoveRequest,
    PbMemberRemoveResponse, PbMemberUpdateRequest, PbMemberUpdateResponse, PbResponseHeader,
};
use std::sync::Arc;
use synod_replica::ReplicaError;
use tonic::{Request, Response, Status};

#[derive(Debug, Clone)]
pub struct ClusterService {
    pub shared: Arc<Shared>,
    pub replica: ReplicaHandle,
}

fn member(r: &MemberRecord) -> PbMember {
    PbMember {
        id: r.id,
        name: r.name.clone(),
        peer_ur_ls: r.peer_urls.clone(),
        client_ur_ls: r.client_urls.clone(),
        is_learner: r.learner,
    }
}

fn members(t: &MemberTable) -> Vec<PbMember> {
    t.members.values().map(member).collect()
}

fn member_id(id: u64) -> Result<u64, Status> {
    if id == 0 {
        return Err(ServerError::from(ReplicaError::InvalidArgument(
            "etcdserver: member ID must not be 0".into(),
        ))
        .into());
    }
    Ok(id)
}

impl ClusterService {
    fn header(&self) -> Option<PbResponseHeader> {
        super::convert::current_header(&self.shared)
    }

    async fn change(&self, request: AdminRequest) -> Result<MemberTable, Status> {
        Ok(self.replica.admin(request).await?)
    }
}

#[tonic::async_trait]
impl PbClusterService for ClusterService {
    async fn member_add(
        &self,
        request: Request<PbMemberAddRequest>,
    ) -> Result<Response<PbMemberAddResponse>, Status> {
        let r = request.into_inner();
        let peer_urls: Vec<String> = r
            .peer_ur_ls
            .iter()
            .map(|u| u.trim_end_matches('/').to_string())
            .collect();
        let first = peer_urls.first().cloned();
        let table = self
            .change(AdminRequest::Add {
                peer_urls,
                learner: r.is_learner,
            })
            .await?;
        let added = table
            .members
            .values()
            .find(|m| m.peer_urls.first() == first.as_ref())
            .map(member);
        Ok(Response::new(PbMemberAddResponse {
            header: self.header(),
            member: added,
            members: members(&table),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<PbMemberRemoveRequest>,
    ) -> Result<Response<PbMemberRemoveResponse>, Status> {
        let id = member_id(request.into_inner().id)?;
        let table = self.change(AdminRequest::Remove { id }).await?;
        Ok(Response::new(PbMemberRemoveResponse {
            header: self.header(),
            members: members(&table),
        }))
    }

    async fn member_update(
        &self,
        request: Request<PbMemberUpdateRequest>,
    ) -> Result<Response<PbMemberUpdateResponse>, Status> {
        let r = request.into_inner();
        let id = member_id(r.id)?;
        let peer_urls = r
            .peer_ur_ls
            .iter()
            .map(|u| u.trim_end_matches('/').to_string())
            .collect();
        let table = self.change(AdminRequest::Update { id, peer_urls }).await?;
        Ok(Response::new(PbMemberUpdateResponse {
            header: self.header(),
            members: members(&table),
        }))
    }

    async fn member_list(
        &self,
        _request: Request<PbMemberListRequest>,
    ) -> Result<Response<PbMemberListResponse>, Status> {
        Ok(Response::new(PbMemberListResponse {
            header: self.header(),
            members: members(&self.shared.members()),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<PbMemberPromoteRequest>,
    ) -> Result<Response<PbMemberPromoteResponse>, Status> {
        let id = member_id(request.into_inner().id)?;
        let table = self.change(AdminRequest::Promote { id }).await?;
        Ok(Response::new(PbMemberPromoteResponse {
            header: self.header(),
            members: members(&table),
        }))
    }
}
