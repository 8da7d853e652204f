//! etcd's protobuf messages to synod-kv's requests, and synod-kv's responses back. The state
//! machine never sees protobuf: what travels in the log is synod-kv's own compact encoding.

use crate::error::ServerError;
use bytes::Bytes;
use etcd_client::proto::{
    PbCompactionRequest, PbCompactionResponse, PbCompare, PbDeleteRequest, PbDeleteResponse,
    PbKeyValue, PbPutRequest, PbPutResponse, PbRangeRequest, PbRangeResponse, PbResponseHeader,
    PbResponseOp, PbTargetUnion, PbTxnOpRequest, PbTxnOpResponse, PbTxnRequest, PbTxnRequestOp,
    PbTxnResponse,
};
use synod_kv as kv;

/// What every response header carries besides the revision.
#[derive(Debug, Clone, Copy)]
pub struct HeaderInfo {
    pub cluster_id: u64,
    pub member_id: u64,
    pub term: u64,
}

impl HeaderInfo {
    pub fn header(&self, revision: i64) -> Option<PbResponseHeader> {
        Some(PbResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.term,
        })
    }
}

/// The header of a response not tied to a request's own revision: the store's current one.
pub fn current_header(shared: &crate::status::Shared) -> Option<PbResponseHeader> {
    let live = shared.status();
    HeaderInfo {
        cluster_id: shared.cluster_id,
        member_id: shared.member_id,
        term: live.term,
    }
    .header(live.revision)
}

fn invalid(msg: impl Into<String>) -> ServerError {
    ServerError::Replica(synod_replica::ReplicaError::InvalidArgument(msg.into()))
}

pub fn range_request(r: PbRangeRequest) -> Result<kv::RangeRequest, ServerError> {
    let sort_order = match r.sort_order {
        0 => kv::SortOrder::None,
        1 => kv::SortOrder::Ascend,
        2 => kv::SortOrder::Descend,
        n => return Err(invalid(format!("etcdserver: invalid sort order {n}"))),
    };
    let sort_target = match r.sort_target {
        0 => kv::SortTarget::Key,
        1 => kv::SortTarget::Version,
        2 => kv::SortTarget::Create,
        3 => kv::SortTarget::Mod,
        4 => kv::SortTarget::Value,
        n => return Err(invalid(format!("etcdserver: invalid sort target {n}"))),
    };
    Ok(kv::RangeRequest {
        key: Bytes::from(r.key),
        range_end: Bytes::from(r.range_end),
        limit: r.limit,
        revision: r.revision,
        sort_order,
        sort_target,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    })
}

pub fn put_request(r: PbPutRequest) -> kv::PutRequest {
    kv::PutRequest {
        key: Bytes::from(r.key),
        value: Bytes::from(r.value),
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

pub fn delete_request(r: PbDeleteRequest) -> kv::DeleteRangeRequest {
    kv::DeleteRangeRequest {
        key: Bytes::from(r.key),
        range_end: Bytes::from(r.range_end),
        prev_kv: r.prev_kv,
    }
}

fn compare(c: PbCompare) -> Result<kv::Compare, ServerError> {
    let result = match c.result {
        0 => kv::CompareResult::Equal,
        1 => kv::CompareResult::Greater,
        2 => kv::CompareResult::Less,
        3 => kv::CompareResult::NotEqual,
        n => return Err(invalid(format!("etcdserver: invalid compare result {n}"))),
    };
    // etcd reads the operand the target names; a union holding another kind reads as zero.
    let target = match (c.target, c.target_union) {
        (0, Some(PbTargetUnion::Version(v))) => kv::CompareTarget::Version(v),
        (0, _) => kv::CompareTarget::Version(0),
        (1, Some(PbTargetUnion::CreateRevision(v))) => kv::CompareTarget::Create(v),
        (1, _) => kv::CompareTarget::Create(0),
        (2, Some(PbTargetUnion::ModRevision(v))) => kv::CompareTarget::Mod(v),
        (2, _) => kv::CompareTarget::Mod(0),
        (3, Some(PbTargetUnion::Value(v))) => kv::CompareTarget::Value(Bytes::from(v)),
        (3, _) => kv::CompareTarget::Value(Bytes::new()),
        (4, Some(PbTargetUnion::Lease(v))) => kv::CompareTarget::Lease(v),
        (4, _) => kv::CompareTarget::Lease(0),
        (n, _) => return Err(invalid(format!("etcdserver: invalid compare target {n}"))),
    };
    Ok(kv::Compare {
        result,
        target,
        key: Bytes::from(c.key),
        range_end: Bytes::from(c.range_end),
    })
}

fn request_op(op: PbTxnRequestOp) -> Result<kv::RequestOp, ServerError> {
    match op.request {
        Some(PbTxnOpRequest::RequestRange(r)) => Ok(kv::RequestOp::Range(range_request(r)?)),
        Some(PbTxnOpRequest::RequestPut(r)) => Ok(kv::RequestOp::Put(put_request(r))),
        Some(PbTxnOpRequest::RequestDeleteRange(r)) => {
            Ok(kv::RequestOp::DeleteRange(delete_request(r)))
        }
        Some(PbTxnOpRequest::RequestTxn(t)) => Ok(kv::RequestOp::Txn(txn_request(t)?)),
        None => Err(invalid("etcdserver: a txn operation holds no request")),
    }
}

pub fn txn_request(t: PbTxnRequest) -> Result<kv::TxnRequest, ServerError> {
    Ok(kv::TxnRequest {
        compare: t
            .compare
            .into_iter()
            .map(compare)
            .collect::<Result<_, _>>()?,
        success: t
            .success
            .into_iter()
            .map(request_op)
            .collect::<Result<_, _>>()?,
        failure: t
            .failure
            .into_iter()
            .map(request_op)
            .collect::<Result<_, _>>()?,
    })
}

/// etcd's `isTxnSerializable`: every op of both branches is a Range asking for a
/// serializable read (a nested Txn is not), so the Txn needs no read barrier.
pub fn txn_is_serializable(t: &PbTxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .all(|op| matches!(&op.request, Some(PbTxnOpRequest::RequestRange(r)) if r.serializable))
}

pub fn compaction_request(c: PbCompactionRequest) -> kv::CompactionRequest {
    kv::CompactionRequest {
        revision: c.revision,
    }
}

pub(crate) fn key_value(kv: kv::KeyValue) -> PbKeyValue {
    PbKeyValue {
        key: kv.key.to_vec(),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value.to_vec(),
        lease: kv.lease,
    }
}

pub fn range_response(r: kv::RangeResponse, h: HeaderInfo) -> PbRangeResponse {
    PbRangeResponse {
        header: h.header(r.header.revision),
        kvs: r.kvs.into_iter().map(key_value).collect(),
        more: r.more,
        count: r.count,
    }
}

pub fn put_response(r: kv::PutResponse, h: HeaderInfo) -> PbPutResponse {
    PbPutResponse {
        header: h.header(r.header.revision),
        prev_kv: r.prev_kv.map(key_value),
    }
}

pub fn delete_response(r: kv::DeleteRangeResponse, h: HeaderInfo) -> PbDeleteResponse {
    PbDeleteResponse {
        header: h.header(r.header.revision),
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(key_value).collect(),
    }
}

pub fn txn_response(r: kv::TxnResponse, h: HeaderInfo) -> PbTxnResponse {
    let responses = r
        .responses
        .into_iter()
        .map(|op| PbResponseOp {
            response: Some(match op {
                kv::ResponseOp::Range(r) => PbTxnOpResponse::ResponseRange(range_response(r, h)),
                kv::ResponseOp::Put(r) => PbTxnOpResponse::ResponsePut(put_response(r, h)),
                kv::ResponseOp::DeleteRange(r) => {
                    PbTxnOpResponse::ResponseDeleteRange(delete_response(r, h))
                }
                kv::ResponseOp::Txn(r) => PbTxnOpResponse::ResponseTxn(txn_response(r, h)),
            }),
        })
        .collect();
    PbTxnResponse {
        header: h.header(r.header.revision),
        succeeded: r.succeeded,
        responses,
    }
}

pub fn compaction_response(r: kv::CompactionResponse, h: HeaderInfo) -> PbCompactionResponse {
    PbCompactionResponse {
        header: h.header(r.header.revision),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_client::proto::PbRangeRequest;

    fn range(serializable: bool) -> PbTxnRequestOp {
        PbTxnRequestOp {
            request: Some(PbTxnOpRequest::RequestRange(PbRangeRequest {
                key: b"k".to_vec(),
                serializable,
                ..PbRangeRequest::default()
            })),
        }
    }

    #[test]
    fn serializable_txns_are_etcds() {
        let txn = |success, failure| PbTxnRequest {
            compare: vec![],
            success,
            failure,
        };
        assert!(txn_is_serializable(&txn(vec![], vec![])));
        assert!(txn_is_serializable(&txn(
            vec![range(true)],
            vec![range(true)]
        )));
        assert!(!txn_is_serializable(&txn(
            vec![range(true)],
            vec![range(false)]
        )));
        let nested = PbTxnRequestOp {
            request: Some(PbTxnOpRequest::RequestTxn(txn(vec![range(true)], vec![]))),
        };
        assert!(!txn_is_serializable(&txn(vec![nested], vec![])));
    }
}
