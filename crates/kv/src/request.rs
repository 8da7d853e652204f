//! Requests, mirroring etcd's etcdserverpb messages field for field where the field affects
//! the state machine. Server-only fields (`serializable`, `physical`) are left to the server.

use bytes::Bytes;

/// etcd's `RangeRequest.SortOrder`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SortOrder {
    #[default]
    None,
    Ascend,
    Descend,
}

/// etcd's `RangeRequest.SortTarget`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SortTarget {
    #[default]
    Key,
    Version,
    Create,
    Mod,
    Value,
}

/// Reads the keys in `[key, range_end)` (see the crate docs for the `range_end` forms).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    pub key: Bytes,
    pub range_end: Bytes,
    /// At most this many keys; 0 (or negative) means no limit.
    pub limit: i64,
    /// Read as of this revision; 0 (or negative) means the current revision.
    pub revision: i64,
    pub sort_order: SortOrder,
    pub sort_target: SortTarget,
    pub keys_only: bool,
    pub count_only: bool,
    /// Filters on the returned keys; 0 means no filter. They do not change `count`.
    pub min_mod_revision: i64,
    pub max_mod_revision: i64,
    pub min_create_revision: i64,
    pub max_create_revision: i64,
}

impl RangeRequest {
    /// A read of one key.
    pub fn key(key: impl Into<Bytes>) -> RangeRequest {
        RangeRequest {
            key: key.into(),
            ..RangeRequest::default()
        }
    }

    /// A read of `[key, range_end)`.
    pub fn range(key: impl Into<Bytes>, range_end: impl Into<Bytes>) -> RangeRequest {
        RangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            ..RangeRequest::default()
        }
    }

    /// A read of every key starting with `prefix` (etcd's `WithPrefix`).
    pub fn prefix(prefix: impl Into<Bytes>) -> RangeRequest {
        let (key, range_end) = prefix_range(prefix.into());
        RangeRequest::range(key, range_end)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutRequest {
    pub key: Bytes,
    pub value: Bytes,
    /// The lease to attach the key to (it must exist); 0 detaches it from any.
    pub lease: i64,
    pub prev_kv: bool,
    /// Keep the key's current value (the key must exist; `value` must be empty).
    pub ignore_value: bool,
    /// Keep the key's current lease (the key must exist; `lease` must be 0).
    pub ignore_lease: bool,
}

impl PutRequest {
    pub fn new(key: impl Into<Bytes>, value: impl Into<Bytes>) -> PutRequest {
        PutRequest {
            key: key.into(),
            value: value.into(),
            ..PutRequest::default()
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeRequest {
    pub key: Bytes,
    pub range_end: Bytes,
    pub prev_kv: bool,
}

impl DeleteRangeRequest {
    /// Deletes one key.
    pub fn key(key: impl Into<Bytes>) -> DeleteRangeRequest {
        DeleteRangeRequest {
            key: key.into(),
            ..DeleteRangeRequest::default()
        }
    }

    /// Deletes `[key, range_end)`.
    pub fn range(key: impl Into<Bytes>, range_end: impl Into<Bytes>) -> DeleteRangeRequest {
        DeleteRangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            prev_kv: false,
        }
    }
}

/// etcd's `Compare.CompareResult`: how the key's field relates to the operand
/// (`Greater` holds when the key's field is greater than the operand).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CompareResult {
    #[default]
    Equal,
    Greater,
    Less,
    NotEqual,
}

/// etcd's `Compare.target` together with its `target_union` operand. Making them one enum
/// rules out etcd's "target says VERSION but the union holds a value" mismatch; the server
/// maps such a mismatch to an operand of 0 (or empty), as etcd does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    Version(i64),
    Create(i64),
    Mod(i64),
    Value(Bytes),
    Lease(i64),
}

impl Default for CompareTarget {
    fn default() -> CompareTarget {
        CompareTarget::Version(0)
    }
}

/// One guard of a Txn. With a `range_end` it must hold for every key in the range.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compare {
    pub result: CompareResult,
    pub target: CompareTarget,
    pub key: Bytes,
    pub range_end: Bytes,
}

impl Compare {
    /// A compare on a single key.
    pub fn new(key: impl Into<Bytes>, result: CompareResult, target: CompareTarget) -> Compare {
        Compare {
            result,
            target,
            key: key.into(),
            range_end: Bytes::new(),
        }
    }
}

/// One operation of a Txn branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOp {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
}

/// If every compare holds, runs `success`, otherwise `failure`; atomically, at one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

/// Drops the history before `revision` (the versions current at `revision` stay readable).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionRequest {
    pub revision: i64,
}

/// The largest TTL a lease may be granted, in seconds (etcd's `MaxLeaseTTL`).
pub const LEASE_TTL_MAX: i64 = 9_000_000_000;

/// A leader's term as the lease epoch: the replica converts its Paxos ballot into it
/// (synod-kv does not depend on synod-paxos). Ordered like ballots: round, then node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseEpoch {
    pub round: u64,
    pub node: u64,
}

/// Creates lease `id` with `ttl` seconds. The proposer picks a non-zero id when the client
/// gave none and raises `ttl` to the minimum, so the outcome does not depend on any
/// member's settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseGrantRequest {
    pub id: i64,
    pub ttl: i64,
}

/// Revokes lease `id`, deleting the keys attached to it at one revision. `expiry` is set by
/// a leader revoking an expired lease: the epoch it expired it under, and the revoke takes
/// effect only if that epoch is still the store's [`LeaseEpoch`] (docs/design/WATCH_LEASE.md
/// section 3: an expiry decided by a deposed leader may be chosen late, and must not apply).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseRevokeRequest {
    pub id: i64,
    pub expiry: Option<LeaseEpoch>,
}

/// Everything that travels through the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// A read through the log (etcd allows it; synod normally serves reads without one).
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
    LeaseGrant(LeaseGrantRequest),
    LeaseRevoke(LeaseRevokeRequest),
    /// A new leader's promotion: the store's lease epoch becomes the greater of it and this.
    LeaseEpoch(LeaseEpoch),
}

/// The `(key, range_end)` pair that selects every key starting with `prefix`, as etcd's
/// client computes it: an empty prefix means all keys, and a prefix of only 0xff bytes has
/// no upper bound.
pub fn prefix_range(prefix: Bytes) -> (Bytes, Bytes) {
    if prefix.is_empty() {
        return (Bytes::from_static(b"\0"), Bytes::from_static(b"\0"));
    }
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return (prefix, Bytes::from(end));
        }
    }
    (prefix, Bytes::from_static(b"\0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_range_forms() {
        let end = |p: &'static [u8]| prefix_range(Bytes::from_static(p)).1;
        assert_eq!(end(b"abc"), Bytes::from_static(b"abd"));
        assert_eq!(end(b"a\xff"), Bytes::from_static(b"b"));
        assert_eq!(end(b"\xff\xff"), Bytes::from_static(b"\0"));
        assert_eq!(
            prefix_range(Bytes::new()),
            (Bytes::from_static(b"\0"), Bytes::from_static(b"\0"))
        );
    }
}
