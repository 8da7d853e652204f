//! Why a client's request failed at the replica. The messages are etcd's where etcd has the
//! same failure, because etcd's clients match on them; the server maps each to etcd's gRPC
//! code.

use std::fmt;
use synod_kv::KvError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaError {
    /// No leader is known (an election is under way, or this member is cut off).
    NoLeader,
    /// A serializable read at a member still recovering lost log entries from its peers: its
    /// own state may be older than what it acknowledged.
    Recovering,
    /// The request was not applied within the request timeout. Its outcome is unknown: it
    /// may still be applied later.
    Timeout,
    /// Too many requests are waiting; retry later.
    TooManyRequests,
    /// The member is shutting down.
    Stopped,
    /// The leader changed while the request was in flight; its outcome is unknown.
    LeaderChanged,
    /// The state machine refused the request.
    Kv(KvError),
    /// The request is not valid (bad field values).
    InvalidArgument(String),
    /// The request contradicts the cluster's state (etcd's FailedPrecondition errors).
    Precondition(String),
    /// The request names something that does not exist.
    NotFound(String),
    /// Only the leader does this.
    NotLeader,
}

impl fmt::Display for ReplicaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplicaError::NoLeader => f.write_str("etcdserver: no leader"),
            ReplicaError::Recovering => f.write_str(
                "synod: this member is recovering lost log entries from its peers; \
                 read linearizably or from another member",
            ),
            ReplicaError::Timeout => f.write_str("etcdserver: request timed out"),
            ReplicaError::TooManyRequests => f.write_str("etcdserver: too many requests"),
            ReplicaError::Stopped => f.write_str("etcdserver: server stopped"),
            ReplicaError::LeaderChanged => f.write_str("etcdserver: leader changed"),
            ReplicaError::Kv(e) => write!(f, "{e}"),
            ReplicaError::InvalidArgument(m)
            | ReplicaError::Precondition(m)
            | ReplicaError::NotFound(m) => f.write_str(m),
            ReplicaError::NotLeader => f.write_str("etcdserver: not leader"),
        }
    }
}

impl std::error::Error for ReplicaError {}

impl From<KvError> for ReplicaError {
    fn from(e: KvError) -> Self {
        ReplicaError::Kv(e)
    }
}
