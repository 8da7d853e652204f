//! The binary encoding of requests (they travel in the log as `Command.payload`) and of
//! outcomes (they are kept in snapshots by the dedup table).
//!
//! A request starts with a format version byte, so the format can evolve: a replica refuses
//! a version it does not know rather than misreading it. Fields follow in a fixed order;
//! integers are varints (signed ones zigzag), byte strings and lists are length-prefixed,
//! booleans are packed into a flags byte, enums are one byte. See docs/KV.md.

use crate::dedup::Outcome;
use crate::error::{DecodeError, KvError};
use crate::request::{
    CompactionRequest, Compare, CompareResult, CompareTarget, DeleteRangeRequest, LeaseEpoch,
    LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest, Request, RequestOp, SortOrder,
    SortTarget, TxnRequest,
};
use crate::response::{
    CompactionResponse, DeleteRangeResponse, KeyValue, LeaseEpochResponse, LeaseGrantResponse,
    LeaseRevokeResponse, PutResponse, RangeResponse, Response, ResponseHeader, ResponseOp,
    TxnResponse,
};
use crate::wire::{put_bytes, put_flags, put_i64, put_len, put_u8, put_varint, Reader, Result};
use bytes::Bytes;

/// The newest request format this code writes and reads: version 2 adds the lease
/// requests. Requests version 1 can express are still written as version 1, so replicas
/// not upgraded yet keep applying them; a lease request needs every replica upgraded
/// (docs/KV.md, "Versioning").
pub const REQUEST_FORMAT_VERSION: u8 = 2;

/// The format before leases: Range, Put, DeleteRange, Txn, Compact.
const FORMAT_V1: u8 = 1;

/// Nested txns deeper than this are refused while decoding, so hostile input cannot exhaust
/// the stack. The txn op budget already limits valid requests to about this depth.
const DEPTH_MAX: usize = 130;

const KIND_RANGE: u8 = 1;
const KIND_PUT: u8 = 2;
const KIND_DELETE: u8 = 3;
const KIND_TXN: u8 = 4;
const KIND_COMPACT: u8 = 5;
const KIND_LEASE_GRANT: u8 = 6;
const KIND_LEASE_REVOKE: u8 = 7;
const KIND_LEASE_EPOCH: u8 = 8;

/// Encodes a request for the log.
pub fn encode_request(req: &Request) -> Bytes {
    let mut buf = Vec::with_capacity(request_size_hint(req));
    let version = match req {
        Request::LeaseGrant(_) | Request::LeaseRevoke(_) | Request::LeaseEpoch(_) => {
            REQUEST_FORMAT_VERSION
        }
        _ => FORMAT_V1,
    };
    put_u8(&mut buf, version);
    match req {
        Request::Range(r) => {
            put_u8(&mut buf, KIND_RANGE);
            put_range(&mut buf, r);
        }
        Request::Put(p) => {
            put_u8(&mut buf, KIND_PUT);
            put_put(&mut buf, p);
        }
        Request::DeleteRange(d) => {
            put_u8(&mut buf, KIND_DELETE);
            put_delete(&mut buf, d);
        }
        Request::Txn(t) => {
            put_u8(&mut buf, KIND_TXN);
            put_txn(&mut buf, t);
        }
        Request::Compact(c) => {
            put_u8(&mut buf, KIND_COMPACT);
            put_i64(&mut buf, c.revision);
        }
        Request::LeaseGrant(g) => {
            put_u8(&mut buf, KIND_LEASE_GRANT);
            put_i64(&mut buf, g.id);
            put_i64(&mut buf, g.ttl);
        }
        Request::LeaseRevoke(r) => {
            put_u8(&mut buf, KIND_LEASE_REVOKE);
            put_i64(&mut buf, r.id);
            match r.expiry {
                Some(epoch) => {
                    put_u8(&mut buf, 1);
                    put_epoch(&mut buf, epoch);
                }
                None => put_u8(&mut buf, 0),
            }
        }
        Request::LeaseEpoch(epoch) => {
            put_u8(&mut buf, KIND_LEASE_EPOCH);
            put_epoch(&mut buf, *epoch);
        }
    }
    Bytes::from(buf)
}

/// Decodes a request from the log. Never panics; rejects unknown versions, unknown tags,
/// unknown flag bits and trailing bytes.
pub fn decode_request(buf: &[u8]) -> std::result::Result<Request, DecodeError> {
    let mut r = Reader::new(buf);
    let version = r.u8()?;
    if version != FORMAT_V1 && version != REQUEST_FORMAT_VERSION {
        return Err(DecodeError("unsupported request format version"));
    }
    let req = match (r.u8()?, version) {
        (KIND_RANGE, _) => Request::Range(read_range(&mut r)?),
        (KIND_PUT, _) => Request::Put(read_put(&mut r)?),
        (KIND_DELETE, _) => Request::DeleteRange(read_delete(&mut r)?),
        (KIND_TXN, _) => Request::Txn(read_txn(&mut r, 0)?),
        (KIND_COMPACT, _) => Request::Compact(CompactionRequest { revision: r.i64()? }),
        (KIND_LEASE_GRANT, REQUEST_FORMAT_VERSION) => Request::LeaseGrant(LeaseGrantRequest {
            id: r.i64()?,
            ttl: r.i64()?,
        }),
        (KIND_LEASE_REVOKE, REQUEST_FORMAT_VERSION) => {
            let id = r.i64()?;
            let expiry = match r.u8()? {
                0 => None,
                1 => Some(read_epoch(&mut r)?),
                _ => return Err(DecodeError("bad lease expiry tag")),
            };
            Request::LeaseRevoke(LeaseRevokeRequest { id, expiry })
        }
        (KIND_LEASE_EPOCH, REQUEST_FORMAT_VERSION) => Request::LeaseEpoch(read_epoch(&mut r)?),
        _ => return Err(DecodeError("unknown request kind")),
    };
    r.finish()?;
    Ok(req)
}

pub(crate) fn put_epoch(buf: &mut Vec<u8>, epoch: LeaseEpoch) {
    put_varint(buf, epoch.round);
    put_varint(buf, epoch.node);
}

pub(crate) fn read_epoch(r: &mut Reader<'_>) -> Result<LeaseEpoch> {
    Ok(LeaseEpoch {
        round: r.varint()?,
        node: r.varint()?,
    })
}

fn request_size_hint(req: &Request) -> usize {
    match req {
        Request::Put(p) => 16 + p.key.len() + p.value.len(),
        Request::Range(r) => 24 + r.key.len() + r.range_end.len(),
        Request::DeleteRange(d) => 8 + d.key.len() + d.range_end.len(),
        Request::Txn(_) => 256,
        Request::Compact(_)
        | Request::LeaseGrant(_)
        | Request::LeaseRevoke(_)
        | Request::LeaseEpoch(_) => 24,
    }
}

fn put_range(buf: &mut Vec<u8>, r: &RangeRequest) {
    put_bytes(buf, &r.key);
    put_bytes(buf, &r.range_end);
    put_i64(buf, r.limit);
    put_i64(buf, r.revision);
    put_u8(buf, sort_order_tag(r.sort_order));
    put_u8(buf, sort_target_tag(r.sort_target));
    put_flags(buf, &[r.keys_only, r.count_only]);
    put_i64(buf, r.min_mod_revision);
    put_i64(buf, r.max_mod_revision);
    put_i64(buf, r.min_create_revision);
    put_i64(buf, r.max_create_revision);
}

fn read_range(r: &mut Reader<'_>) -> Result<RangeRequest> {
    let key = r.bytes()?;
    let range_end = r.bytes()?;
    let limit = r.i64()?;
    let revision = r.i64()?;
    let sort_order = match r.u8()? {
        0 => SortOrder::None,
        1 => SortOrder::Ascend,
        2 => SortOrder::Descend,
        _ => return Err(DecodeError("unknown sort order")),
    };
    let sort_target = match r.u8()? {
        0 => SortTarget::Key,
        1 => SortTarget::Version,
        2 => SortTarget::Create,
        3 => SortTarget::Mod,
        4 => SortTarget::Value,
        _ => return Err(DecodeError("unknown sort target")),
    };
    let [keys_only, count_only] = r.flags()?;
    Ok(RangeRequest {
        key,
        range_end,
        limit,
        revision,
        sort_order,
        sort_target,
        keys_only,
        count_only,
        min_mod_revision: r.i64()?,
        max_mod_revision: r.i64()?,
        min_create_revision: r.i64()?,
        max_create_revision: r.i64()?,
    })
}

fn sort_order_tag(o: SortOrder) -> u8 {
    match o {
        SortOrder::None => 0,
        SortOrder::Ascend => 1,
        SortOrder::Descend => 2,
    }
}

fn sort_target_tag(t: SortTarget) -> u8 {
    match t {
        SortTarget::Key => 0,
        SortTarget::Version => 1,
        SortTarget::Create => 2,
        SortTarget::Mod => 3,
        SortTarget::Value => 4,
    }
}

fn put_put(buf: &mut Vec<u8>, p: &PutRequest) {
    put_bytes(buf, &p.key);
    put_bytes(buf, &p.value);
    put_i64(buf, p.lease);
    put_flags(buf, &[p.prev_kv, p.ignore_value, p.ignore_lease]);
}

fn read_put(r: &mut Reader<'_>) -> Result<PutRequest> {
    let key = r.bytes()?;
    let value = r.bytes()?;
    let lease = r.i64()?;
    let [prev_kv, ignore_value, ignore_lease] = r.flags()?;
    Ok(PutRequest {
        key,
        value,
        lease,
        prev_kv,
        ignore_value,
        ignore_lease,
    })
}

fn put_delete(buf: &mut Vec<u8>, d: &DeleteRangeRequest) {
    put_bytes(buf, &d.key);
    put_bytes(buf, &d.range_end);
    put_flags(buf, &[d.prev_kv]);
}

fn read_delete(r: &mut Reader<'_>) -> Result<DeleteRangeRequest> {
    let key = r.bytes()?;
    let range_end = r.bytes()?;
    let [prev_kv] = r.flags()?;
    Ok(DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

fn put_txn(buf: &mut Vec<u8>, t: &TxnRequest) {
    put_len(buf, t.compare.len());
    for c in &t.compare {
        put_compare(buf, c);
    }
    for ops in [&t.success, &t.failure] {
        put_len(buf, ops.len());
        for op in ops {
            put_op(buf, op);
        }
    }
}

/// The fewest bytes a compare (5) or an op (4) can take, to bound list lengths.
const MIN_COMPARE_SIZE: usize = 5;
const MIN_OP_SIZE: usize = 4;

fn read_txn(r: &mut Reader<'_>, depth: usize) -> Result<TxnRequest> {
    if depth >= DEPTH_MAX {
        return Err(DecodeError("txn nested too deeply"));
    }
    let n = r.len(MIN_COMPARE_SIZE)?;
    let mut compare = Vec::with_capacity(n);
    for _ in 0..n {
        compare.push(read_compare(r)?);
    }
    let mut branches = [Vec::new(), Vec::new()];
    for ops in &mut branches {
        let n = r.len(MIN_OP_SIZE)?;
        ops.reserve_exact(n);
        for _ in 0..n {
            ops.push(read_op(r, depth)?);
        }
    }
    let [success, failure] = branches;
    Ok(TxnRequest {
        compare,
        success,
        failure,
    })
}

fn put_op(buf: &mut Vec<u8>, op: &RequestOp) {
    match op {
        RequestOp::Range(r) => {
            put_u8(buf, KIND_RANGE);
            put_range(buf, r);
        }
        RequestOp::Put(p) => {
            put_u8(buf, KIND_PUT);
            put_put(buf, p);
        }
        RequestOp::DeleteRange(d) => {
            put_u8(buf, KIND_DELETE);
            put_delete(buf, d);
        }
        RequestOp::Txn(t) => {
            put_u8(buf, KIND_TXN);
            put_txn(buf, t);
        }
    }
}

fn read_op(r: &mut Reader<'_>, depth: usize) -> Result<RequestOp> {
    Ok(match r.u8()? {
        KIND_RANGE => RequestOp::Range(read_range(r)?),
        KIND_PUT => RequestOp::Put(read_put(r)?),
        KIND_DELETE => RequestOp::DeleteRange(read_delete(r)?),
        KIND_TXN => RequestOp::Txn(read_txn(r, depth + 1)?),
        _ => return Err(DecodeError("unknown txn op kind")),
    })
}

fn put_compare(buf: &mut Vec<u8>, c: &Compare) {
    put_u8(
        buf,
        match c.result {
            CompareResult::Equal => 0,
            CompareResult::Greater => 1,
            CompareResult::Less => 2,
            CompareResult::NotEqual => 3,
        },
    );
    match &c.target {
        CompareTarget::Version(v) => {
            put_u8(buf, 0);
            put_i64(buf, *v);
        }
        CompareTarget::Create(v) => {
            put_u8(buf, 1);
            put_i64(buf, *v);
        }
        CompareTarget::Mod(v) => {
            put_u8(buf, 2);
            put_i64(buf, *v);
        }
        CompareTarget::Value(v) => {
            put_u8(buf, 3);
            put_bytes(buf, v);
        }
        CompareTarget::Lease(v) => {
            put_u8(buf, 4);
            put_i64(buf, *v);
        }
    }
    put_bytes(buf, &c.key);
    put_bytes(buf, &c.range_end);
}

fn read_compare(r: &mut Reader<'_>) -> Result<Compare> {
    let result = match r.u8()? {
        0 => CompareResult::Equal,
        1 => CompareResult::Greater,
        2 => CompareResult::Less,
        3 => CompareResult::NotEqual,
        _ => return Err(DecodeError("unknown compare result")),
    };
    let target = match r.u8()? {
        0 => CompareTarget::Version(r.i64()?),
        1 => CompareTarget::Create(r.i64()?),
        2 => CompareTarget::Mod(r.i64()?),
        3 => CompareTarget::Value(r.bytes()?),
        4 => CompareTarget::Lease(r.i64()?),
        _ => return Err(DecodeError("unknown compare target")),
    };
    Ok(Compare {
        result,
        target,
        key: r.bytes()?,
        range_end: r.bytes()?,
    })
}

// ---- Outcomes (for the dedup table in snapshots) ----

pub(crate) fn put_outcome(buf: &mut Vec<u8>, outcome: &Outcome) {
    match outcome {
        Ok(resp) => {
            put_u8(buf, 0);
            put_response(buf, resp);
        }
        Err(e) => {
            put_u8(buf, 1);
            put_error(buf, e);
        }
    }
}

pub(crate) fn read_outcome(r: &mut Reader<'_>) -> Result<Outcome> {
    let tag = r.u8()?;
    read_tagged_outcome(tag, r)
}

/// The rest of an outcome whose tag (0 response, 1 error) was read.
pub(crate) fn read_tagged_outcome(tag: u8, r: &mut Reader<'_>) -> Result<Outcome> {
    match tag {
        0 => Ok(Ok(read_response(r)?)),
        1 => Ok(Err(read_error(r)?)),
        _ => Err(DecodeError("unknown outcome tag")),
    }
}

fn put_error(buf: &mut Vec<u8>, e: &KvError) {
    let tag = match e {
        KvError::EmptyKey => 1,
        KvError::ValueProvided => 2,
        KvError::LeaseProvided => 3,
        KvError::LeaseNotFound => 4,
        KvError::KeyNotFound => 5,
        KvError::DuplicateKey => 6,
        KvError::TooManyOps => 7,
        KvError::Compacted => 8,
        KvError::FutureRevision => 9,
        KvError::Stale { .. } => 10,
        KvError::Malformed(_) => 11,
        KvError::LeaseExists => 12,
        KvError::LeaseTtlTooLarge => 13,
        KvError::LeaseExpiryStale => 14,
    };
    put_u8(buf, tag);
    if let KvError::Stale {
        client_id,
        seq,
        last_seq,
    } = e
    {
        put_varint(buf, *client_id);
        put_varint(buf, *seq);
        put_varint(buf, *last_seq);
    }
}

fn read_error(r: &mut Reader<'_>) -> Result<KvError> {
    Ok(match r.u8()? {
        1 => KvError::EmptyKey,
        2 => KvError::ValueProvided,
        3 => KvError::LeaseProvided,
        4 => KvError::LeaseNotFound,
        5 => KvError::KeyNotFound,
        6 => KvError::DuplicateKey,
        7 => KvError::TooManyOps,
        8 => KvError::Compacted,
        9 => KvError::FutureRevision,
        10 => KvError::Stale {
            client_id: r.varint()?,
            seq: r.varint()?,
            last_seq: r.varint()?,
        },
        // Malformed payloads are never remembered (see apply.rs); the reason string is
        // static and not carried, so a restored one gets a generic reason.
        11 => KvError::Malformed(DecodeError("malformed request")),
        12 => KvError::LeaseExists,
        13 => KvError::LeaseTtlTooLarge,
        14 => KvError::LeaseExpiryStale,
        _ => return Err(DecodeError("unknown error tag")),
    })
}

fn put_header(buf: &mut Vec<u8>, h: &ResponseHeader) {
    put_i64(buf, h.revision);
}

fn read_header(r: &mut Reader<'_>) -> Result<ResponseHeader> {
    Ok(ResponseHeader { revision: r.i64()? })
}

fn put_kv(buf: &mut Vec<u8>, kv: &KeyValue) {
    put_bytes(buf, &kv.key);
    put_i64(buf, kv.create_revision);
    put_i64(buf, kv.mod_revision);
    put_i64(buf, kv.version);
    put_bytes(buf, &kv.value);
    put_i64(buf, kv.lease);
}

/// key, create, mod, version, value, lease: at least one byte each.
const MIN_KV_SIZE: usize = 6;

fn read_kv(r: &mut Reader<'_>) -> Result<KeyValue> {
    Ok(KeyValue {
        key: r.bytes()?,
        create_revision: r.i64()?,
        mod_revision: r.i64()?,
        version: r.i64()?,
        value: r.bytes()?,
        lease: r.i64()?,
    })
}

fn put_kvs(buf: &mut Vec<u8>, kvs: &[KeyValue]) {
    put_len(buf, kvs.len());
    for kv in kvs {
        put_kv(buf, kv);
    }
}

fn read_kvs(r: &mut Reader<'_>) -> Result<Vec<KeyValue>> {
    let n = r.len(MIN_KV_SIZE)?;
    let mut kvs = Vec::with_capacity(n);
    for _ in 0..n {
        kvs.push(read_kv(r)?);
    }
    Ok(kvs)
}

fn put_response(buf: &mut Vec<u8>, resp: &Response) {
    match resp {
        Response::Range(r) => {
            put_u8(buf, KIND_RANGE);
            put_range_response(buf, r);
        }
        Response::Put(p) => {
            put_u8(buf, KIND_PUT);
            put_put_response(buf, p);
        }
        Response::DeleteRange(d) => {
            put_u8(buf, KIND_DELETE);
            put_delete_response(buf, d);
        }
        Response::Txn(t) => {
            put_u8(buf, KIND_TXN);
            put_txn_response(buf, t);
        }
        Response::Compact(c) => {
            put_u8(buf, KIND_COMPACT);
            put_header(buf, &c.header);
        }
        Response::LeaseGrant(g) => {
            put_u8(buf, KIND_LEASE_GRANT);
            put_header(buf, &g.header);
            put_i64(buf, g.id);
            put_i64(buf, g.ttl);
        }
        Response::LeaseRevoke(r) => {
            put_u8(buf, KIND_LEASE_REVOKE);
            put_header(buf, &r.header);
        }
        Response::LeaseEpoch(e) => {
            put_u8(buf, KIND_LEASE_EPOCH);
            put_header(buf, &e.header);
        }
    }
}

fn read_response(r: &mut Reader<'_>) -> Result<Response> {
    Ok(match r.u8()? {
        KIND_RANGE => Response::Range(read_range_response(r)?),
        KIND_PUT => Response::Put(read_put_response(r)?),
        KIND_DELETE => Response::DeleteRange(read_delete_response(r)?),
        KIND_TXN => Response::Txn(read_txn_response(r, 0)?),
        KIND_COMPACT => Response::Compact(CompactionResponse {
            header: read_header(r)?,
        }),
        KIND_LEASE_GRANT => Response::LeaseGrant(LeaseGrantResponse {
            header: read_header(r)?,
            id: r.i64()?,
            ttl: r.i64()?,
        }),
        KIND_LEASE_REVOKE => Response::LeaseRevoke(LeaseRevokeResponse {
            header: read_header(r)?,
        }),
        KIND_LEASE_EPOCH => Response::LeaseEpoch(LeaseEpochResponse {
            header: read_header(r)?,
        }),
        _ => return Err(DecodeError("unknown response kind")),
    })
}

fn put_range_response(buf: &mut Vec<u8>, r: &RangeResponse) {
    put_header(buf, &r.header);
    put_kvs(buf, &r.kvs);
    put_flags(buf, &[r.more]);
    put_i64(buf, r.count);
}

fn read_range_response(r: &mut Reader<'_>) -> Result<RangeResponse> {
    let header = read_header(r)?;
    let kvs = read_kvs(r)?;
    let [more] = r.flags()?;
    Ok(RangeResponse {
        header,
        kvs,
        more,
        count: r.i64()?,
    })
}

fn put_put_response(buf: &mut Vec<u8>, p: &PutResponse) {
    put_header(buf, &p.header);
    match &p.prev_kv {
        Some(kv) => {
            put_u8(buf, 1);
            put_kv(buf, kv);
        }
        None => put_u8(buf, 0),
    }
}

fn read_put_response(r: &mut Reader<'_>) -> Result<PutResponse> {
    let header = read_header(r)?;
    let prev_kv = match r.u8()? {
        0 => None,
        1 => Some(read_kv(r)?),
        _ => return Err(DecodeError("bad prev_kv tag")),
    };
    Ok(PutResponse { header, prev_kv })
}

fn put_delete_response(buf: &mut Vec<u8>, d: &DeleteRangeResponse) {
    put_header(buf, &d.header);
    put_i64(buf, d.deleted);
    put_kvs(buf, &d.prev_kvs);
}

fn read_delete_response(r: &mut Reader<'_>) -> Result<DeleteRangeResponse> {
    Ok(DeleteRangeResponse {
        header: read_header(r)?,
        deleted: r.i64()?,
        prev_kvs: read_kvs(r)?,
    })
}

fn put_txn_response(buf: &mut Vec<u8>, t: &TxnResponse) {
    put_header(buf, &t.header);
    put_flags(buf, &[t.succeeded]);
    put_len(buf, t.responses.len());
    for op in &t.responses {
        match op {
            ResponseOp::Range(r) => {
                put_u8(buf, KIND_RANGE);
                put_range_response(buf, r);
            }
            ResponseOp::Put(p) => {
                put_u8(buf, KIND_PUT);
                put_put_response(buf, p);
            }
            ResponseOp::DeleteRange(d) => {
                put_u8(buf, KIND_DELETE);
                put_delete_response(buf, d);
            }
            ResponseOp::Txn(t) => {
                put_u8(buf, KIND_TXN);
                put_txn_response(buf, t);
            }
        }
    }
}

/// tag + header + at least one more byte.
const MIN_RESPONSE_OP_SIZE: usize = 3;

fn read_txn_response(r: &mut Reader<'_>, depth: usize) -> Result<TxnResponse> {
    if depth >= DEPTH_MAX {
        return Err(DecodeError("txn response nested too deeply"));
    }
    let header = read_header(r)?;
    let [succeeded] = r.flags()?;
    let n = r.len(MIN_RESPONSE_OP_SIZE)?;
    let mut responses = Vec::with_capacity(n);
    for _ in 0..n {
        responses.push(match r.u8()? {
            KIND_RANGE => ResponseOp::Range(read_range_response(r)?),
            KIND_PUT => ResponseOp::Put(read_put_response(r)?),
            KIND_DELETE => ResponseOp::DeleteRange(read_delete_response(r)?),
            KIND_TXN => ResponseOp::Txn(read_txn_response(r, depth + 1)?),
            _ => return Err(DecodeError("unknown response op kind")),
        });
    }
    Ok(TxnResponse {
        header,
        succeeded,
        responses,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small_bytes() -> impl Strategy<Value = Bytes> {
        prop::collection::vec(any::<u8>(), 0..6).prop_map(Bytes::from)
    }

    fn range_req() -> impl Strategy<Value = RangeRequest> {
        (
            (small_bytes(), small_bytes(), any::<i64>(), any::<i64>()),
            (0u8..3, 0u8..5, any::<bool>(), any::<bool>()),
            (any::<i64>(), any::<i64>(), any::<i64>(), any::<i64>()),
        )
            .prop_map(
                |((key, range_end, limit, revision), (o, t, ko, co), (a, b, c, d))| RangeRequest {
                    key,
                    range_end,
                    limit,
                    revision,
                    sort_order: [SortOrder::None, SortOrder::Ascend, SortOrder::Descend]
                        [o as usize],
                    sort_target: [
                        SortTarget::Key,
                        SortTarget::Version,
                        SortTarget::Create,
                        SortTarget::Mod,
                        SortTarget::Value,
                    ][t as usize],
                    keys_only: ko,
                    count_only: co,
                    min_mod_revision: a,
                    max_mod_revision: b,
                    min_create_revision: c,
                    max_create_revision: d,
                },
            )
    }

    fn put_req() -> impl Strategy<Value = PutRequest> {
        (
            small_bytes(),
            small_bytes(),
            any::<i64>(),
            any::<[bool; 3]>(),
        )
            .prop_map(
                |(key, value, lease, [prev_kv, ignore_value, ignore_lease])| PutRequest {
                    key,
                    value,
                    lease,
                    prev_kv,
                    ignore_value,
                    ignore_lease,
                },
            )
    }

    fn delete_req() -> impl Strategy<Value = DeleteRangeRequest> {
        (small_bytes(), small_bytes(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| {
            DeleteRangeRequest {
                key,
                range_end,
                prev_kv,
            }
        })
    }

    fn compare() -> impl Strategy<Value = Compare> {
        let target = prop_oneof![
            any::<i64>().prop_map(CompareTarget::Version),
            any::<i64>().prop_map(CompareTarget::Create),
            any::<i64>().prop_map(CompareTarget::Mod),
            small_bytes().prop_map(CompareTarget::Value),
            any::<i64>().prop_map(CompareTarget::Lease),
        ];
        let result = prop_oneof![
            Just(CompareResult::Equal),
            Just(CompareResult::Greater),
            Just(CompareResult::Less),
            Just(CompareResult::NotEqual),
        ];
        (result, target, small_bytes(), small_bytes()).prop_map(
            |(result, target, key, range_end)| Compare {
                result,
                target,
                key,
                range_end,
            },
        )
    }

    fn op() -> impl Strategy<Value = RequestOp> {
        let leaf = prop_oneof![
            range_req().prop_map(RequestOp::Range),
            put_req().prop_map(RequestOp::Put),
            delete_req().prop_map(RequestOp::DeleteRange),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            (
                prop::collection::vec(compare(), 0..3),
                prop::collection::vec(inner.clone(), 0..4),
                prop::collection::vec(inner, 0..4),
            )
                .prop_map(|(compare, success, failure)| {
                    RequestOp::Txn(TxnRequest {
                        compare,
                        success,
                        failure,
                    })
                })
        })
    }

    pub(crate) fn request() -> impl Strategy<Value = Request> {
        prop_oneof![
            range_req().prop_map(Request::Range),
            put_req().prop_map(Request::Put),
            delete_req().prop_map(Request::DeleteRange),
            op().prop_map(|op| match op {
                RequestOp::Txn(t) => Request::Txn(t),
                other => Request::Txn(TxnRequest {
                    compare: vec![],
                    success: vec![other],
                    failure: vec![],
                }),
            }),
            any::<i64>().prop_map(|revision| Request::Compact(CompactionRequest { revision })),
            (any::<i64>(), any::<i64>())
                .prop_map(|(id, ttl)| Request::LeaseGrant(LeaseGrantRequest { id, ttl })),
            (any::<i64>(), prop::option::of(epoch()))
                .prop_map(|(id, expiry)| Request::LeaseRevoke(LeaseRevokeRequest { id, expiry })),
            epoch().prop_map(Request::LeaseEpoch),
        ]
    }

    fn epoch() -> impl Strategy<Value = LeaseEpoch> {
        (any::<u64>(), any::<u64>()).prop_map(|(round, node)| LeaseEpoch { round, node })
    }

    proptest! {
        #[test]
        fn request_round_trip(req in request()) {
            let enc = encode_request(&req);
            prop_assert_eq!(decode_request(&enc).unwrap(), req);
        }

        #[test]
        fn arbitrary_bytes_never_panic(buf in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_request(&buf);
            let mut r = Reader::new(&buf);
            let _ = read_outcome(&mut r);
        }

        #[test]
        fn mutated_encodings_never_panic(req in request(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut enc = encode_request(&req).to_vec();
            let i = at.index(enc.len());
            enc[i] = byte;
            let _ = decode_request(&enc);
            enc.truncate(i);
            prop_assert!(decode_request(&enc).is_err());
        }
    }

    #[test]
    fn rejects_unknown_version_kind_and_trailing_bytes() {
        let enc = encode_request(&Request::Put(PutRequest::new("k", "v"))).to_vec();
        let mut bad = enc.clone();
        bad[0] = REQUEST_FORMAT_VERSION + 1;
        assert_eq!(
            decode_request(&bad),
            Err(DecodeError("unsupported request format version"))
        );
        let mut bad = enc.clone();
        bad[1] = 9;
        assert!(decode_request(&bad).is_err());
        let mut bad = enc;
        bad.push(0);
        assert_eq!(decode_request(&bad), Err(DecodeError("trailing bytes")));
        assert!(decode_request(&[]).is_err());
    }

    /// Requests format 1 expresses are still written as format 1 (replicas not upgraded yet
    /// apply them); lease requests are format 2, and a format 1 lease request is refused.
    #[test]
    fn lease_requests_alone_use_format_2() {
        let put = encode_request(&Request::Put(PutRequest::new("k", "v")));
        assert_eq!(put[0], FORMAT_V1);
        let grant = encode_request(&Request::LeaseGrant(LeaseGrantRequest { id: 5, ttl: 10 }));
        assert_eq!(grant[0], REQUEST_FORMAT_VERSION);
        let mut old = grant.to_vec();
        old[0] = FORMAT_V1;
        assert_eq!(
            decode_request(&old),
            Err(DecodeError("unknown request kind"))
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let mut t = TxnRequest::default();
        for _ in 0..DEPTH_MAX + 5 {
            t = TxnRequest {
                compare: vec![],
                success: vec![RequestOp::Txn(t)],
                failure: vec![],
            };
        }
        let enc = encode_request(&Request::Txn(t));
        assert_eq!(
            decode_request(&enc),
            Err(DecodeError("txn nested too deeply"))
        );
    }

    #[test]
    fn put_encoding_is_compact() {
        let enc = encode_request(&Request::Put(PutRequest::new("key", "value")));
        // version, kind, 1+3 key, 1+5 value, lease, flags
        assert_eq!(enc.len(), 14);
    }

    #[test]
    fn outcome_round_trip() {
        let kv = KeyValue {
            key: Bytes::from("k"),
            create_revision: 2,
            mod_revision: 3,
            version: 2,
            value: Bytes::from("v"),
            lease: 0,
        };
        let header = ResponseHeader { revision: 9 };
        let outcomes: Vec<Outcome> = vec![
            Ok(Response::Range(RangeResponse {
                header,
                kvs: vec![kv.clone(), kv.clone()],
                more: true,
                count: 7,
            })),
            Ok(Response::Put(PutResponse {
                header,
                prev_kv: Some(kv.clone()),
            })),
            Ok(Response::Put(PutResponse {
                header,
                prev_kv: None,
            })),
            Ok(Response::DeleteRange(DeleteRangeResponse {
                header,
                deleted: 1,
                prev_kvs: vec![kv.clone()],
            })),
            Ok(Response::Txn(TxnResponse {
                header,
                succeeded: false,
                responses: vec![
                    ResponseOp::Put(PutResponse::default()),
                    ResponseOp::Txn(TxnResponse {
                        header: ResponseHeader::default(),
                        succeeded: true,
                        responses: vec![ResponseOp::Range(RangeResponse::default())],
                    }),
                    ResponseOp::DeleteRange(DeleteRangeResponse::default()),
                ],
            })),
            Ok(Response::Compact(CompactionResponse { header })),
            Ok(Response::LeaseGrant(LeaseGrantResponse {
                header,
                id: -3,
                ttl: 60,
            })),
            Ok(Response::LeaseRevoke(LeaseRevokeResponse { header })),
            Ok(Response::LeaseEpoch(LeaseEpochResponse { header })),
            Err(KvError::LeaseExpiryStale),
            Err(KvError::LeaseExists),
            Err(KvError::LeaseTtlTooLarge),
            Err(KvError::Compacted),
            Err(KvError::Stale {
                client_id: 1,
                seq: 2,
                last_seq: 3,
            }),
            Err(KvError::DuplicateKey),
        ];
        for o in outcomes {
            let mut buf = Vec::new();
            put_outcome(&mut buf, &o);
            let mut r = Reader::new(&buf);
            assert_eq!(read_outcome(&mut r).unwrap(), o);
            r.finish().unwrap();
        }
    }
}
