//! The checks etcd's gRPC layer makes before a request is proposed. They depend only on the
//! request, not on the store, and run again at apply time so that the state machine never
//! relies on the proposer having made them.

use crate::error::KvError;
use crate::request::{
    DeleteRangeRequest, PutRequest, RangeRequest, Request, RequestOp, TxnRequest,
};
use crate::store::TXN_OPS_MAX;
use bytes::Bytes;
use std::collections::BTreeSet;

pub(crate) fn check_request(req: &Request) -> Result<(), KvError> {
    match req {
        Request::Range(r) => check_range_request(r),
        Request::Put(p) => check_put_request(p),
        Request::DeleteRange(d) => check_delete_request(d),
        Request::Txn(t) => check_txn(t),
        // Their checks depend on the store (lease table, epoch): made when applied.
        Request::Compact(_)
        | Request::LeaseGrant(_)
        | Request::LeaseRevoke(_)
        | Request::LeaseEpoch(_) => Ok(()),
    }
}

pub(crate) fn check_txn(t: &TxnRequest) -> Result<(), KvError> {
    check_txn_request(t, TXN_OPS_MAX)?;
    // After the cheap checks, as etcd does, so a huge txn fails on size first.
    check_intervals(&t.success)?;
    check_intervals(&t.failure)?;
    Ok(())
}

pub(crate) fn check_range_request(r: &RangeRequest) -> Result<(), KvError> {
    if r.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    Ok(())
}

fn check_put_request(p: &PutRequest) -> Result<(), KvError> {
    if p.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(KvError::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(KvError::LeaseProvided);
    }
    Ok(())
}

fn check_delete_request(d: &DeleteRangeRequest) -> Result<(), KvError> {
    if d.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    Ok(())
}

/// Nested txns share the op budget: each level leaves its children `ops_max` minus its own
/// width. This also bounds the nesting depth, which keeps every recursion over a txn shallow.
fn check_txn_request(t: &TxnRequest, ops_max: usize) -> Result<(), KvError> {
    let width = t.compare.len().max(t.success.len()).max(t.failure.len());
    if width > ops_max {
        return Err(KvError::TooManyOps);
    }
    if t.compare.iter().any(|c| c.key.is_empty()) {
        return Err(KvError::EmptyKey);
    }
    for op in t.success.iter().chain(&t.failure) {
        match op {
            RequestOp::Range(r) => check_range_request(r)?,
            RequestOp::Put(p) => check_put_request(p)?,
            RequestOp::DeleteRange(d) => check_delete_request(d)?,
            RequestOp::Txn(t) => check_txn_request(t, ops_max - width)?,
        }
    }
    Ok(())
}

/// The keys a DeleteRange covers, for overlap checks.
#[derive(Debug)]
struct Interval {
    start: Bytes,
    /// Empty: just `start`. `"\0"`: unbounded. Otherwise exclusive end.
    end: Bytes,
}

impl Interval {
    fn contains(&self, key: &[u8]) -> bool {
        if self.end.is_empty() {
            key == &self.start[..]
        } else {
            key >= &self.start[..] && (&self.end[..] == b"\0" || key < &self.end[..])
        }
    }
}

/// etcd's rule against writing a key twice in one branch: puts must be distinct, and no put
/// may fall inside a DeleteRange of the same branch, at any nesting level. Puts in the
/// success and failure branches of one nested txn may coincide (only one branch runs).
///
/// One deliberate difference: etcd's interval check treats a `range_end` of `"\0"` as an
/// ordinary (empty) bound and so misses a put under a "from key onwards" delete; we treat it
/// as unbounded, the way the delete itself does. etcd either lets such a txn through or, when
/// the put has `ignore_value`, panics applying it; we reject it as a duplicate key.
pub(crate) fn check_intervals(ops: &[RequestOp]) -> Result<(), KvError> {
    intervals(ops).map(|_| ())
}

fn intervals(ops: &[RequestOp]) -> Result<(BTreeSet<Bytes>, Vec<Interval>), KvError> {
    // This level's deletes first: a put anywhere below must not fall inside them.
    let mut dels: Vec<Interval> = ops
        .iter()
        .filter_map(|op| match op {
            RequestOp::DeleteRange(d) => Some(Interval {
                start: d.key.clone(),
                end: d.range_end.clone(),
            }),
            _ => None,
        })
        .collect();
    let deleted = |dels: &[Interval], key: &[u8]| dels.iter().any(|iv| iv.contains(key));
    let mut puts = BTreeSet::new();
    for op in ops {
        let RequestOp::Txn(t) = op else { continue };
        let (puts_then, dels_then) = intervals(&t.success)?;
        let (puts_else, dels_else) = intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || deleted(&dels, k) {
                return Err(KvError::DuplicateKey);
            }
        }
        // `puts` does not hold `puts_then` yet: a key in both branches is fine.
        for k in &puts_else {
            if puts.contains(k) || deleted(&dels, k) {
                return Err(KvError::DuplicateKey);
            }
        }
        puts.extend(puts_then);
        puts.extend(puts_else);
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let RequestOp::Put(p) = op else { continue };
        if puts.contains(&p.key) || deleted(&dels, &p.key) {
            return Err(KvError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Compare, CompareResult, CompareTarget};

    fn put(k: &'static str) -> RequestOp {
        RequestOp::Put(PutRequest::new(k, "v"))
    }
    fn del(k: &'static str, end: &'static str) -> RequestOp {
        RequestOp::DeleteRange(DeleteRangeRequest::range(k, end))
    }
    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp::Txn(TxnRequest {
            compare: vec![],
            success,
            failure,
        })
    }
    fn check(success: Vec<RequestOp>) -> Result<(), KvError> {
        check_request(&Request::Txn(TxnRequest {
            compare: vec![],
            success,
            failure: vec![],
        }))
    }

    #[test]
    fn duplicate_puts_and_put_delete_overlaps() {
        assert_eq!(check(vec![put("a"), put("a")]), Err(KvError::DuplicateKey));
        assert_eq!(check(vec![put("a"), put("b")]), Ok(()));
        assert_eq!(
            check(vec![put("b"), del("a", "c")]),
            Err(KvError::DuplicateKey)
        );
        assert_eq!(check(vec![del("a", "c"), put("c")]), Ok(()));
        assert_eq!(
            check(vec![del("a", ""), put("a")]),
            Err(KvError::DuplicateKey)
        );
        assert_eq!(
            check(vec![del("a", "\0"), put("zzz")]),
            Err(KvError::DuplicateKey)
        );
        // Two deletes may overlap; so may reads.
        assert_eq!(check(vec![del("a", "c"), del("b", "d")]), Ok(()));
    }

    #[test]
    fn nested_overlaps() {
        // A put in a nested txn against this level's put or delete.
        assert_eq!(
            check(vec![put("a"), txn(vec![put("a")], vec![])]),
            Err(KvError::DuplicateKey)
        );
        assert_eq!(
            check(vec![txn(vec![put("a")], vec![]), del("a", "")]),
            Err(KvError::DuplicateKey)
        );
        // A nested delete against this level's put.
        assert_eq!(
            check(vec![txn(vec![del("a", "")], vec![]), put("a")]),
            Err(KvError::DuplicateKey)
        );
        // Then and else branches of one nested txn are exclusive.
        assert_eq!(check(vec![txn(vec![put("a")], vec![put("a")])]), Ok(()));
        // But two sibling txns may both run.
        assert_eq!(
            check(vec![
                txn(vec![put("a")], vec![]),
                txn(vec![], vec![put("a")])
            ]),
            Err(KvError::DuplicateKey)
        );
        // The failure branch is checked even though only one branch will run.
        let req = Request::Txn(TxnRequest {
            compare: vec![],
            success: vec![],
            failure: vec![put("x"), put("x")],
        });
        assert_eq!(check_request(&req), Err(KvError::DuplicateKey));
    }

    #[test]
    fn static_checks() {
        assert_eq!(check(vec![put("")]), Err(KvError::EmptyKey));
        let mut p = PutRequest::new("k", "v");
        p.ignore_value = true;
        assert_eq!(check_request(&Request::Put(p)), Err(KvError::ValueProvided));
        let mut p = PutRequest::new("k", "");
        p.ignore_lease = true;
        p.lease = 5;
        assert_eq!(check_request(&Request::Put(p)), Err(KvError::LeaseProvided));
        let cmp = Compare::new("", CompareResult::Equal, CompareTarget::Version(0));
        let req = Request::Txn(TxnRequest {
            compare: vec![cmp],
            ..TxnRequest::default()
        });
        assert_eq!(check_request(&req), Err(KvError::EmptyKey));
        let req = Request::DeleteRange(DeleteRangeRequest::key(""));
        assert_eq!(check_request(&req), Err(KvError::EmptyKey));
    }

    #[test]
    fn op_budget_is_shared_with_nested_txns() {
        let wide = |n: usize| {
            (0..n)
                .map(|_| RequestOp::Range(RangeRequest::key("k")))
                .collect()
        };
        assert_eq!(check(wide(TXN_OPS_MAX)), Ok(()));
        assert_eq!(check(wide(TXN_OPS_MAX + 1)), Err(KvError::TooManyOps));
        // 100 ops here leave 28 for the nested txn.
        let mut ops: Vec<RequestOp> = wide(99);
        ops.push(txn(wide(28), vec![]));
        assert_eq!(check(ops.clone()), Ok(()));
        ops[99] = txn(wide(29), vec![]);
        assert_eq!(check(ops), Err(KvError::TooManyOps));
        // Deep nesting runs out of budget.
        let mut deep = txn(vec![], vec![]);
        for _ in 0..200 {
            deep = txn(vec![deep], vec![]);
        }
        assert_eq!(check(vec![deep]), Err(KvError::TooManyOps));
    }
}
