//! Random requests over a tiny keyspace, so that they collide often.

use bytes::Bytes;
use proptest::prelude::*;
use synod_kv::*;

pub fn key() -> impl Strategy<Value = Bytes> {
    prop::sample::select(vec!["a", "b", "c", "d", "e"]).prop_map(Bytes::from)
}

pub fn range_end() -> impl Strategy<Value = Bytes> {
    prop::sample::select(vec!["", "", "\0", "c", "e", "zz", "a"]).prop_map(Bytes::from)
}

pub fn value() -> impl Strategy<Value = Bytes> {
    prop::sample::select(vec!["", "x", "y", "zz"]).prop_map(Bytes::from)
}

pub fn range_req(rev_max: i64) -> impl Strategy<Value = RangeRequest> {
    (
        (key(), range_end(), -1i64..4, 0..rev_max),
        (0usize..3, 0usize..5, any::<bool>(), any::<bool>()),
        prop::collection::vec(0i64..8, 4),
        any::<bool>(),
    )
        .prop_map(
            |((k, e, limit, revision), (o, t, keys_only, count_only), f, filters)| {
                let mut r = RangeRequest::range(k, e);
                r.limit = limit;
                r.revision = revision;
                r.sort_order = [SortOrder::None, SortOrder::Ascend, SortOrder::Descend][o];
                r.sort_target = [
                    SortTarget::Key,
                    SortTarget::Version,
                    SortTarget::Create,
                    SortTarget::Mod,
                    SortTarget::Value,
                ][t];
                r.keys_only = keys_only;
                r.count_only = count_only;
                if filters {
                    r.min_mod_revision = f[0];
                    r.max_mod_revision = f[1];
                    r.min_create_revision = f[2];
                    r.max_create_revision = f[3];
                }
                r
            },
        )
}

/// Lease ids: 0 (none) half the time, else one of a few that are granted, revoked,
/// granted again.
pub fn lease_id() -> impl Strategy<Value = i64> {
    prop_oneof![1 => Just(0i64), 1 => 1i64..4]
}

pub fn put_req() -> impl Strategy<Value = PutRequest> {
    (
        (key(), value(), any::<bool>(), prop::bool::weighted(0.15)),
        (lease_id(), prop::bool::weighted(0.15)),
    )
        .prop_map(|((k, v, prev_kv, ignore_value), (lease, ignore_lease))| {
            let mut p = PutRequest::new(k, if ignore_value { Bytes::new() } else { v });
            p.prev_kv = prev_kv;
            p.ignore_value = ignore_value;
            p.ignore_lease = ignore_lease;
            p.lease = if ignore_lease { 0 } else { lease };
            p
        })
}

pub fn epoch() -> impl Strategy<Value = LeaseEpoch> {
    (0u64..3, 0u64..2).prop_map(|(round, node)| LeaseEpoch { round, node })
}

/// Grants (now and then with an id in use, id 0, or a TTL too large), revokes (now and then
/// as an expiry under some epoch), epochs.
pub fn lease_request() -> impl Strategy<Value = Request> {
    let ttl = prop_oneof![5 => 1i64..100, 1 => Just(LEASE_TTL_MAX + 1)];
    prop_oneof![
        3 => (lease_id(), ttl)
            .prop_map(|(id, ttl)| Request::LeaseGrant(LeaseGrantRequest { id, ttl })),
        2 => (lease_id(), prop::option::weighted(0.3, epoch()))
            .prop_map(|(id, expiry)| Request::LeaseRevoke(LeaseRevokeRequest { id, expiry })),
        1 => epoch().prop_map(Request::LeaseEpoch),
    ]
}

pub fn delete_req() -> impl Strategy<Value = DeleteRangeRequest> {
    (key(), range_end(), any::<bool>()).prop_map(|(k, e, prev_kv)| {
        let mut d = DeleteRangeRequest::range(k, e);
        d.prev_kv = prev_kv;
        d
    })
}

pub fn compare_gen() -> impl Strategy<Value = Compare> {
    let target = prop_oneof![
        (0i64..4).prop_map(CompareTarget::Version),
        (0i64..10).prop_map(CompareTarget::Create),
        (0i64..10).prop_map(CompareTarget::Mod),
        value().prop_map(CompareTarget::Value),
        (0i64..2).prop_map(CompareTarget::Lease),
    ];
    let result = prop::sample::select(vec![
        CompareResult::Equal,
        CompareResult::Greater,
        CompareResult::Less,
        CompareResult::NotEqual,
    ]);
    (
        result,
        target,
        key(),
        prop::sample::select(vec!["", "", "\0", "d"]),
    )
        .prop_map(|(result, target, k, e)| Compare {
            result,
            target,
            key: k,
            range_end: Bytes::from(e),
        })
}

pub fn op() -> impl Strategy<Value = RequestOp> {
    prop_oneof![
        3 => put_req().prop_map(RequestOp::Put),
        2 => delete_req().prop_map(RequestOp::DeleteRange),
        2 => range_req(1).prop_map(RequestOp::Range),
    ]
}

pub fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        5 => put_req().prop_map(Request::Put),
        2 => delete_req().prop_map(Request::DeleteRange),
        3 => range_req(30).prop_map(Request::Range),
        3 => (
            prop::collection::vec(compare_gen(), 0..3),
            prop::collection::vec(op(), 0..4),
            prop::collection::vec(op(), 0..4),
        )
            .prop_map(|(compare, success, failure)| Request::Txn(TxnRequest {
                compare,
                success,
                failure,
            })),
        1 => (0i64..30).prop_map(|revision| Request::Compact(CompactionRequest { revision })),
        3 => lease_request(),
    ]
}
