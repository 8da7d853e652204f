//! Responses, mirroring etcd's etcdserverpb messages. The header carries only the revision:
//! cluster id, member id and term are properties of the serving node, filled in by the
//! server, and must not be part of the replicated state.

use bytes::Bytes;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseHeader {
    /// The store revision when the request was applied (after it, for writes).
    pub revision: i64,
}

/// etcd's `mvccpb.KeyValue`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Bytes,
    /// The revision of the put that created this generation of the key.
    pub create_revision: i64,
    /// The revision of the last put to the key.
    pub mod_revision: i64,
    /// Puts since the key was (re)created, starting at 1.
    pub version: i64,
    pub value: Bytes,
    /// The lease the key is attached to; 0 for none.
    pub lease: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    pub header: ResponseHeader,
    pub kvs: Vec<KeyValue>,
    /// More keys matched than `limit` allowed.
    pub more: bool,
    /// Keys in the range at the read revision, before filters and limit.
    pub count: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutResponse {
    pub header: ResponseHeader,
    /// The key before the put, if `prev_kv` was asked and the key existed.
    pub prev_kv: Option<KeyValue>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeResponse {
    pub header: ResponseHeader,
    pub deleted: i64,
    /// The deleted keys, if `prev_kv` was asked.
    pub prev_kvs: Vec<KeyValue>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseOp {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnResponse {
    /// For a nested txn the revision is 0, as in etcd (only the outermost header is set).
    pub header: ResponseHeader,
    /// Whether the compares held (and `success` ran).
    pub succeeded: bool,
    /// One response per op of the branch that ran, in order.
    pub responses: Vec<ResponseOp>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionResponse {
    pub header: ResponseHeader,
}

/// A lease granted: its id and TTL, header at the current revision (a grant changes none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseGrantResponse {
    pub header: ResponseHeader,
    pub id: i64,
    pub ttl: i64,
}

/// A lease revoked: the header carries the revision after its keys were deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseRevokeResponse {
    pub header: ResponseHeader,
}

/// A lease epoch recorded: the header carries the current revision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseEpochResponse {
    pub header: ResponseHeader,
}

/// The outcome of a [`crate::Request`], one variant per request kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    LeaseEpoch(LeaseEpochResponse),
}

impl Response {
    pub fn header(&self) -> &ResponseHeader {
        match self {
            Response::Range(r) => &r.header,
            Response::Put(r) => &r.header,
            Response::DeleteRange(r) => &r.header,
            Response::Txn(r) => &r.header,
            Response::Compact(r) => &r.header,
            Response::LeaseGrant(r) => &r.header,
            Response::LeaseRevoke(r) => &r.header,
            Response::LeaseEpoch(r) => &r.header,
        }
    }
}
