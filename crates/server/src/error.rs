//! Why a client request failed, and the gRPC status etcd answers with in that case (etcd's
//! clients match on the code and the message, so both are etcd's).

use std::fmt;
use synod_kv::{ErrorCode, KvError};
use synod_replica::ReplicaError;
use tonic::{Code, Status};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerError {
    /// The replica's answer (no leader, timeout, refused by the store, ...): the same
    /// failures the simulator sees.
    Replica(ReplicaError),
    /// The request needs something Synod does not do yet.
    Unimplemented(&'static str),
    /// This member's write-ahead log cannot be written (its NOSPACE alarm is raised): it
    /// takes no writes. etcd's answer while its NOSPACE alarm is raised.
    NoSpace,
    /// The request is larger than `--max-request-bytes` (etcd's check on what it proposes).
    RequestTooLarge,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Replica(e) => e.fmt(f),
            ServerError::Unimplemented(what) => write!(f, "synod: {what} is not supported yet"),
            ServerError::NoSpace => f.write_str("etcdserver: mvcc: database space exceeded"),
            ServerError::RequestTooLarge => f.write_str("etcdserver: request is too large"),
        }
    }
}

impl std::error::Error for ServerError {}

impl From<KvError> for ServerError {
    fn from(e: KvError) -> Self {
        ServerError::Replica(ReplicaError::Kv(e))
    }
}

impl From<ReplicaError> for ServerError {
    fn from(e: ReplicaError) -> Self {
        ServerError::Replica(e)
    }
}

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Status {
        let code = match &e {
            ServerError::Replica(
                ReplicaError::NoLeader
                | ReplicaError::Recovering
                | ReplicaError::Timeout
                | ReplicaError::Stopped
                | ReplicaError::LeaderChanged
                | ReplicaError::NotLeader,
            ) => Code::Unavailable,
            ServerError::Replica(ReplicaError::Precondition(_)) => Code::FailedPrecondition,
            ServerError::Replica(ReplicaError::NotFound(_)) => Code::NotFound,
            ServerError::Replica(ReplicaError::TooManyRequests) | ServerError::NoSpace => {
                Code::ResourceExhausted
            }
            ServerError::Replica(ReplicaError::InvalidArgument(_))
            | ServerError::RequestTooLarge => Code::InvalidArgument,
            ServerError::Unimplemented(_) => Code::Unimplemented,
            ServerError::Replica(ReplicaError::Kv(k)) => match k.code() {
                ErrorCode::InvalidArgument => Code::InvalidArgument,
                ErrorCode::OutOfRange => Code::OutOfRange,
                ErrorCode::NotFound => Code::NotFound,
                ErrorCode::FailedPrecondition => Code::FailedPrecondition,
            },
        };
        Status::new(code, e.to_string())
    }
}
