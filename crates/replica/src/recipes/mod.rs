//! etcd's Lock and Election services as sans-I/O state machines (docs/design/WATCH_LEASE.md
//! 1.3), so the server's gRPC services and the simulator's clients run the same logic.
//!
//! etcd serves `v3lockpb.Lock` and `v3electionpb.Election` by running its client-side
//! recipes (`client/v3/concurrency`) against itself: every lock or candidate is a key
//! `name/<lease id in hex>` attached to a lease, the oldest such key (by create revision)
//! holds the lock or the leadership, and each waiter watches the next older key until it is
//! deleted. A machine here asks for the requests those recipes make, one at a time
//! ([`Step`]), and takes their outcomes back ([`Reply`]), until it is done. It never reads a
//! clock and does no I/O: the shell carries out each step (a write through the log, a
//! linearizable read, a lease grant with an id it picks, a watch for a delete) and feeds the
//! result in, or the shell's own error, which the machine hands back in
//! [`RecipeError::Request`] once it has asked for whatever cleanup etcd does.
//!
//! A caller that gives up (its client went away) asks the machine for `abort`, the cleanup
//! etcd does when a wait is cancelled, and carries it out without waiting for an answer.

mod election;
mod lock;
mod observe;
#[cfg(test)]
mod tests;
mod wait;

pub use election::{leader_read, Campaign, Campaigned, Current, LeaderKey, Proclaim, Resign};
pub use lock::{unlock_request, Lock, Locked};
pub use observe::{Observe, ObserveStep, Observed};

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;
use synod_kv::{
    Compare, CompareResult, CompareTarget, RangeRequest, RangeResponse, Request, Response,
    SortOrder, SortTarget, TxnRequest, TxnResponse,
};

/// The TTL, in seconds, of the lease granted for a request that names none (lease 0):
/// etcd's default session TTL. The lease is not kept alive.
pub const SESSION_TTL: i64 = 60;

/// What a machine asks the shell to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Replicate this write and reply with its response.
    Write(Request),
    /// Serve this read linearizably and reply with its response.
    Read(RangeRequest),
    /// Grant a lease of `ttl` seconds, its id chosen by the shell, and reply with the grant's
    /// response.
    Grant { ttl: i64 },
    /// Watch `key` from `from_revision` on and reply [`Reply::Deleted`] once a DELETE event
    /// of it arrives (puts are ignored).
    WaitDelete { key: Bytes, from_revision: i64 },
}

/// The outcome of a [`Step`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The store's response to a write, read or grant.
    Kv(Response),
    /// The key waited for was deleted.
    Deleted,
}

/// A machine's answer to a reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress<T, E> {
    Next(Step),
    Done(Result<T, RecipeError<E>>),
}

/// Why a recipe failed. `E` is the shell's error for a request it could not carry out (the
/// store's refusal, a timeout, no leader, a compacted watch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecipeError<E> {
    Request(E),
    /// The lock's key was gone once the older keys were: its lease expired or was revoked.
    SessionExpired,
    /// Proclaim by a caller whose key is not the one it names (or is gone).
    NotLeader,
    /// No key under the election's prefix.
    NoLeader,
    /// Proclaim or Resign without a `leader`.
    MissingLeader,
    /// A reply of another kind than the step asked for, or without what the step's response
    /// always holds: a bug in the shell, never a client's doing.
    Unexpected(&'static str),
}

impl<E: fmt::Display> fmt::Display for RecipeError<E> {
    /// etcd's texts: these errors reach clients (with gRPC code Unknown, as etcd's plain Go
    /// errors do), and clients match on them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecipeError::Request(e) => e.fmt(f),
            RecipeError::SessionExpired => f.write_str("mutex: session is expired"),
            RecipeError::NotLeader => f.write_str("election: not leader"),
            RecipeError::NoLeader => f.write_str("election: no leader"),
            RecipeError::MissingLeader => f.write_str("\"leader\" field must be provided"),
            RecipeError::Unexpected(what) => write!(f, "synod: unexpected reply: {what}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for RecipeError<E> {}

/// `name` and the `/` that ends every key of a lock or election.
fn prefix_of(name: &[u8]) -> Bytes {
    let mut prefix = BytesMut::with_capacity(name.len() + 1);
    prefix.put_slice(name);
    prefix.put_u8(b'/');
    prefix.freeze()
}

/// The key of `lease` under `prefix`: the lease id in lower-case hex as Go's `%x` prints it
/// (a negative id as `-` and the hex of its magnitude).
fn lease_key(prefix: &[u8], lease: i64) -> Bytes {
    let hex = if lease < 0 {
        format!("-{:x}", lease.unsigned_abs())
    } else {
        format!("{lease:x}")
    };
    let mut key = BytesMut::with_capacity(prefix.len() + hex.len());
    key.put_slice(prefix);
    key.put_slice(hex.as_bytes());
    key.freeze()
}

/// The oldest key under `prefix` (etcd's `WithFirstCreate`).
fn oldest(prefix: &Bytes) -> RangeRequest {
    RangeRequest {
        limit: 1,
        sort_order: SortOrder::Ascend,
        sort_target: SortTarget::Create,
        ..RangeRequest::prefix(prefix.clone())
    }
}

/// The newest key under `prefix` created at or before `max_create` (etcd's
/// `WithLastCreate` with `WithMaxCreateRev`).
fn newest_at_or_before(prefix: &Bytes, max_create: i64) -> RangeRequest {
    RangeRequest {
        limit: 1,
        sort_order: SortOrder::Descend,
        sort_target: SortTarget::Create,
        max_create_revision: max_create,
        ..RangeRequest::prefix(prefix.clone())
    }
}

/// Whether `key` exists with create revision `create`.
fn created_at(key: &Bytes, create: i64) -> Compare {
    Compare::new(
        key.clone(),
        CompareResult::Equal,
        CompareTarget::Create(create),
    )
}

/// A Txn running `success` if `key`'s create revision is `create` (0: the key is absent).
fn guarded(key: &Bytes, create: i64, success: Vec<synod_kv::RequestOp>) -> TxnRequest {
    TxnRequest {
        compare: vec![created_at(key, create)],
        success,
        failure: Vec::new(),
    }
}

fn txn_of(reply: Reply) -> Result<TxnResponse, &'static str> {
    match reply {
        Reply::Kv(Response::Txn(t)) => Ok(t),
        _ => Err("a txn's reply is not a txn response"),
    }
}

fn range_of(reply: Reply) -> Result<RangeResponse, &'static str> {
    match reply {
        Reply::Kv(Response::Range(r)) => Ok(r),
        _ => Err("a read's reply is not a range response"),
    }
}

/// The id of a granted lease.
fn granted(reply: Reply) -> Result<i64, &'static str> {
    match reply {
        Reply::Kv(Response::LeaseGrant(g)) if g.id != 0 => Ok(g.id),
        _ => Err("a grant's reply is not a lease granted"),
    }
}

/// The keys the `i`-th op of a txn's branch read.
fn txn_range(txn: &TxnResponse, i: usize) -> Result<&RangeResponse, &'static str> {
    match txn.responses.get(i) {
        Some(synod_kv::ResponseOp::Range(r)) => Ok(r),
        _ => Err("a txn's response lacks the range it asked for"),
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn keys_print_the_lease_as_gos_hex() {
        assert_eq!(lease_key(b"mylock/", 0x1234abcd), "mylock/1234abcd");
        assert_eq!(lease_key(b"neg/", -0x2a), "neg/-2a");
        assert_eq!(lease_key(b"m/", i64::MIN), "m/-8000000000000000");
        assert_eq!(lease_key(b"m/", i64::MAX), "m/7fffffffffffffff");
        assert_eq!(prefix_of(b""), "/");
    }
}
