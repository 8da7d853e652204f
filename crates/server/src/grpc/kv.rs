//! etcd's KV service.

use super::convert::{self, HeaderInfo};
use crate::replica::ReplicaHandle;
use crate::status::Shared;
use etcd_client::proto::{
    PbCompactionRequest, PbCompactionResponse, PbDeleteRequest, PbDeleteResponse, PbKvService,
    PbPutRequest, PbPutResponse, PbRangeRequest, PbRangeResponse, PbTxnRequest, PbTxnResponse,
};
use std::pin::Pin;
use std::sync::Arc;
use synod_kv as kv;
use tonic::codegen::tokio_stream::Stream;
use tonic::{Request, Response, Status};

#[derive(Debug, Clone)]
pub struct KvService {
    pub replica: ReplicaHandle,
    pub shared: Arc<Shared>,
    /// `--max-request-bytes`, which sizes RangeStream's chunks.
    pub request_bytes_max: usize,
}

impl KvService {
    fn header(&self) -> HeaderInfo {
        HeaderInfo {
            cluster_id: self.shared.cluster_id,
            member_id: self.shared.member_id,
            term: self.shared.status().term,
        }
    }

    async fn write(&self, request: kv::Request) -> Result<kv::Response, Status> {
        Ok(self.replica.write(&request).await?)
    }
}

fn unexpected(what: &str) -> Status {
    // The state machine answers each request kind with its own response kind; anything else
    // is a bug, reported rather than crashing the member.
    Status::internal(format!(
        "synod: unexpected response kind to a {what} request"
    ))
}

#[tonic::async_trait]
impl PbKvService for KvService {
    async fn range(
        &self,
        request: Request<PbRangeRequest>,
    ) -> Result<Response<PbRangeResponse>, Status> {
        let request = request.into_inner();
        let linearizable = !request.serializable;
        let range = convert::range_request(request)?;
        match self
            .replica
            .read(kv::ReadRequest::range(range), linearizable)
            .await?
        {
            kv::Response::Range(r) => Ok(Response::new(convert::range_response(r, self.header()))),
            _ => Err(unexpected("range")),
        }
    }

    type RangeStreamStream = Pin<
        Box<dyn Stream<Item = Result<etcd_client::proto::PbRangeStreamResponse, Status>> + Send>,
    >;

    async fn range_stream(
        &self,
        request: Request<PbRangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        let chunks = super::range_stream::start(
            self.replica.clone(),
            self.header(),
            request.into_inner(),
            self.request_bytes_max,
        )?;
        Ok(Response::new(Box::pin(
            tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(chunks),
        )))
    }

    async fn put(&self, request: Request<PbPutRequest>) -> Result<Response<PbPutResponse>, Status> {
        let put = convert::put_request(request.into_inner());
        match self.write(kv::Request::Put(put)).await? {
            kv::Response::Put(r) => Ok(Response::new(convert::put_response(r, self.header()))),
            _ => Err(unexpected("put")),
        }
    }

    async fn delete_range(
        &self,
        request: Request<PbDeleteRequest>,
    ) -> Result<Response<PbDeleteResponse>, Status> {
        let delete = convert::delete_request(request.into_inner());
        match self.write(kv::Request::DeleteRange(delete)).await? {
            kv::Response::DeleteRange(r) => {
                Ok(Response::new(convert::delete_response(r, self.header())))
            }
            _ => Err(unexpected("delete")),
        }
    }

    /// A Txn that cannot write (no Put or DeleteRange in any branch) is a read, as in etcd:
    /// served without the log, after a read barrier unless every op is a serializable Range.
    /// Any other Txn goes through the log.
    async fn txn(&self, request: Request<PbTxnRequest>) -> Result<Response<PbTxnResponse>, Status> {
        let request = request.into_inner();
        let serializable = convert::txn_is_serializable(&request);
        let txn = convert::txn_request(request)?;
        let response = match kv::ReadRequest::txn(txn) {
            Ok(read) => self.replica.read(read, !serializable).await?,
            Err(txn) => self.write(kv::Request::Txn(txn)).await?,
        };
        match response {
            kv::Response::Txn(r) => Ok(Response::new(convert::txn_response(r, self.header()))),
            _ => Err(unexpected("txn")),
        }
    }

    async fn compact(
        &self,
        request: Request<PbCompactionRequest>,
    ) -> Result<Response<PbCompactionResponse>, Status> {
        let compact = convert::compaction_request(request.into_inner());
        match self.write(kv::Request::Compact(compact)).await? {
            kv::Response::Compact(r) => Ok(Response::new(convert::compaction_response(
                r,
                self.header(),
            ))),
            _ => Err(unexpected("compact")),
        }
    }
}
