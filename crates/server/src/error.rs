//! Why a client request failed, and the gRPC status etcd answers with in that case (etcd's
//! clients match on the code and the message, so both are etcd's).

use std::fmt;
use synod_kv::{ErrorCode, KvError};
use tonic::{Code, Status};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerError {
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
    /// The request is not valid (bad field values, unsupported options).
    InvalidArgument(String),
    /// The request needs something Synod does not do yet.
    Unimplemented(&'static str),
    /// The request contradicts the cluster's state (etcd's FailedPrecondition errors).
    Precondition(String),
    /// The request names something that does not exist.
    NotFound(String),
    /// Only the leader does this.
    NotLeader,
    /// This member's write-ahead log cannot be written (its NOSPACE alarm is raised): it
    /// takes no writes. etcd's answer while its NOSPACE alarm is raised.
    NoSpace,
    /// The request is larger than `--max-request-bytes` (etcd's check on what it proposes).
    RequestTooLarge,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::NoLeader => f.write_str("etcdserver: no leader"),
            ServerError::Recovering => f.write_str(
                "synod: this member is recovering lost log entries from its peers; \
                 read linearizably or from another member",
            ),
            ServerError::Timeout => f.write_str("etcdserver: request timed out"),
            ServerError::TooManyRequests => f.write_str("etcdserver: too many requests"),
            ServerError::Stopped => f.write_str("etcdserver: server stopped"),
            ServerError::LeaderChanged => f.write_str("etcdserver: leader changed"),
            ServerError::Kv(e) => write!(f, "{e}"),
            ServerError::InvalidArgument(m) => f.write_str(m),
            ServerError::Unimplemented(what) => write!(f, "synod: {what} is not supported yet"),
            ServerError::Precondition(m) | ServerError::NotFound(m) => f.write_str(m),
            ServerError::NotLeader => f.write_str("etcdserver: not leader"),
            ServerError::NoSpace => f.write_str("etcdserver: mvcc: database space exceeded"),
            ServerError::RequestTooLarge => f.write_str("etcdserver: request is too large"),
        }
    }
}

impl std::error::Error for ServerError {}

impl From<KvError> for ServerError {
    fn from(e: KvError) -> Self {
        ServerError::Kv(e)
    }
}

impl From<synod_replica::ReplicaError> for ServerError {
    fn from(e: synod_replica::ReplicaError) -> Self {
        use synod_replica::ReplicaError as R;
        match e {
            R::NoLeader => ServerError::NoLeader,
            R::Recovering => ServerError::Recovering,
            R::Timeout => ServerError::Timeout,
            R::TooManyRequests => ServerError::TooManyRequests,
            R::Stopped => ServerError::Stopped,
            R::LeaderChanged => ServerError::LeaderChanged,
            R::Kv(e) => ServerError::Kv(e),
            R::InvalidArgument(m) => ServerError::InvalidArgument(m),
            R::Precondition(m) => ServerError::Precondition(m),
            R::NotFound(m) => ServerError::NotFound(m),
            R::NotLeader => ServerError::NotLeader,
        }
    }
}

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Status {
        let code = match &e {
            ServerError::NoLeader
            | ServerError::Recovering
            | ServerError::Timeout
            | ServerError::Stopped
            | ServerError::LeaderChanged
            | ServerError::NotLeader => Code::Unavailable,
            ServerError::Precondition(_) => Code::FailedPrecondition,
            ServerError::NotFound(_) => Code::NotFound,
            ServerError::TooManyRequests | ServerError::NoSpace => Code::ResourceExhausted,
            ServerError::InvalidArgument(_) | ServerError::RequestTooLarge => Code::InvalidArgument,
            ServerError::Unimplemented(_) => Code::Unimplemented,
            ServerError::Kv(k) => match k.code() {
                ErrorCode::InvalidArgument => Code::InvalidArgument,
                ErrorCode::OutOfRange => Code::OutOfRange,
                ErrorCode::NotFound => Code::NotFound,
                ErrorCode::FailedPrecondition => Code::FailedPrecondition,
            },
        };
        Status::new(code, e.to_string())
    }
}
