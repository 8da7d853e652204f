//! The ways a request can fail, with etcd's exact error strings (clients match on them), and
//! the ways an encoding can be malformed.

use std::fmt;

/// The gRPC status code the server should answer with. Kept here, not in the server, because
/// the mapping is part of etcd's observable behaviour and belongs next to the messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidArgument,
    OutOfRange,
    NotFound,
    FailedPrecondition,
}

/// A request that was rejected. Every variant is deterministic: all replicas applying the
/// same command reach the same error, so errors are part of the replicated outcome (and are
/// remembered by the dedup table like any response).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvError {
    /// A Range, Put, DeleteRange or Compare with an empty key.
    EmptyKey,
    /// A Put with `ignore_value` and a non-empty value.
    ValueProvided,
    /// A Put with `ignore_lease` and a non-zero lease.
    LeaseProvided,
    /// A Put naming, or a revoke of, a lease that does not exist; a grant of lease id 0.
    LeaseNotFound,
    /// A grant of a lease id that exists.
    LeaseExists,
    /// A grant with a TTL above [`crate::LEASE_TTL_MAX`].
    LeaseTtlTooLarge,
    /// An expiry revoke under a lease epoch that is not the store's any more (or not yet):
    /// decided by a leader since deposed, so it must not take effect. Nothing changes.
    LeaseExpiryStale,
    /// A Put with `ignore_value`/`ignore_lease` on a key that does not exist.
    KeyNotFound,
    /// A Txn branch that writes the same key twice (put/put or put/delete).
    DuplicateKey,
    /// A Txn with more than [`crate::TXN_OPS_MAX`] compares or ops in a branch.
    TooManyOps,
    /// A read or compaction at a revision that compaction already dropped.
    Compacted,
    /// A read or compaction at a revision the store has not reached.
    FutureRevision,
    /// A command whose sequence number is lower than the last one applied for its client:
    /// the client has moved on, so this is a stale retry and must not execute.
    Stale {
        client_id: u64,
        seq: u64,
        last_seq: u64,
    },
    /// A log payload that does not decode as a request.
    Malformed(DecodeError),
}

impl KvError {
    /// The status code etcd uses for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            KvError::EmptyKey
            | KvError::ValueProvided
            | KvError::LeaseProvided
            | KvError::KeyNotFound
            | KvError::DuplicateKey
            | KvError::TooManyOps
            | KvError::Malformed(_) => ErrorCode::InvalidArgument,
            KvError::LeaseNotFound => ErrorCode::NotFound,
            KvError::LeaseExists | KvError::LeaseExpiryStale => ErrorCode::FailedPrecondition,
            KvError::LeaseTtlTooLarge => ErrorCode::OutOfRange,
            KvError::Compacted | KvError::FutureRevision => ErrorCode::OutOfRange,
            KvError::Stale { .. } => ErrorCode::FailedPrecondition,
        }
    }
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::EmptyKey => f.write_str("etcdserver: key is not provided"),
            KvError::ValueProvided => f.write_str("etcdserver: value is provided"),
            KvError::LeaseProvided => f.write_str("etcdserver: lease is provided"),
            KvError::LeaseNotFound => f.write_str("etcdserver: requested lease not found"),
            KvError::LeaseExists => f.write_str("etcdserver: lease already exists"),
            KvError::LeaseTtlTooLarge => f.write_str("etcdserver: too large lease TTL"),
            KvError::LeaseExpiryStale => {
                f.write_str("synod: lease expiry decided under a stale leader epoch")
            }
            KvError::KeyNotFound => f.write_str("etcdserver: key not found"),
            KvError::DuplicateKey => f.write_str("etcdserver: duplicate key given in txn request"),
            KvError::TooManyOps => f.write_str("etcdserver: too many operations in txn request"),
            KvError::Compacted => {
                f.write_str("etcdserver: mvcc: required revision has been compacted")
            }
            KvError::FutureRevision => {
                f.write_str("etcdserver: mvcc: required revision is a future revision")
            }
            KvError::Stale {
                client_id,
                seq,
                last_seq,
            } => write!(
                f,
                "synod: duplicate or stale request: client {client_id} sequence {seq} \
                 is older than its last applied sequence {last_seq}"
            ),
            KvError::Malformed(e) => write!(f, "synod: malformed request: {}", e.0),
        }
    }
}

impl std::error::Error for KvError {}

/// Bytes that are not a valid encoding (of a request, a response or a snapshot). The reason
/// is static so the error is cheap and can never echo attacker-controlled input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed encoding: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_codes_match_etcd() {
        let cases = [
            (
                KvError::EmptyKey,
                "etcdserver: key is not provided",
                ErrorCode::InvalidArgument,
            ),
            (
                KvError::ValueProvided,
                "etcdserver: value is provided",
                ErrorCode::InvalidArgument,
            ),
            (
                KvError::LeaseProvided,
                "etcdserver: lease is provided",
                ErrorCode::InvalidArgument,
            ),
            (
                KvError::LeaseNotFound,
                "etcdserver: requested lease not found",
                ErrorCode::NotFound,
            ),
            (
                KvError::LeaseExists,
                "etcdserver: lease already exists",
                ErrorCode::FailedPrecondition,
            ),
            (
                KvError::LeaseTtlTooLarge,
                "etcdserver: too large lease TTL",
                ErrorCode::OutOfRange,
            ),
            (
                KvError::KeyNotFound,
                "etcdserver: key not found",
                ErrorCode::InvalidArgument,
            ),
            (
                KvError::DuplicateKey,
                "etcdserver: duplicate key given in txn request",
                ErrorCode::InvalidArgument,
            ),
            (
                KvError::TooManyOps,
                "etcdserver: too many operations in txn request",
                ErrorCode::InvalidArgument,
            ),
            (
                KvError::Compacted,
                "etcdserver: mvcc: required revision has been compacted",
                ErrorCode::OutOfRange,
            ),
            (
                KvError::FutureRevision,
                "etcdserver: mvcc: required revision is a future revision",
                ErrorCode::OutOfRange,
            ),
        ];
        for (err, msg, code) in cases {
            assert_eq!(err.to_string(), msg);
            assert_eq!(err.code(), code);
        }
        let stale = KvError::Stale {
            client_id: 7,
            seq: 3,
            last_seq: 5,
        };
        assert_eq!(stale.code(), ErrorCode::FailedPrecondition);
        assert!(stale.to_string().contains("stale"));
    }
}
