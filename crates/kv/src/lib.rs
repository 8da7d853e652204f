//! # synod-kv: the replicated state machine behind Synod's etcd v3 API
//!
//! An MVCC keyspace with etcd's semantics. Every replica applies the same commands from the
//! Paxos log, in the same order, and reaches byte-identical state: nothing here reads a
//! clock, iterates a hash map or depends on the machine.
//!
//! - One store revision per request that changes something (a whole Txn is one revision);
//!   an empty store is at revision 1, like a fresh etcd cluster.
//! - Each key has `create_revision`, `mod_revision` and `version`; deleting a key ends its
//!   generation, and putting it again starts a new one at version 1.
//! - `range_end`: empty selects just `key`; `"\0"` selects every key from `key` on;
//!   anything else selects `[key, range_end)`. Key `"\0"` with range end `"\0"` is all keys.
//! - Reads at past revisions, down to the last compaction.
//! - Commands are deduplicated by `(client_id, seq)`; see [`KvStore::apply`].
//!
//! The gRPC server converts etcd's protobuf messages to and from the plain types of this
//! crate, and ships requests through the log with [`encode_request`]/[`decode_request`].
//! See docs/KV.md for the data model, the deviations from etcd and the encodings.

mod apply;
mod codec;
mod compact;
mod dedup;
mod error;
mod hash;
mod history;
mod index;
mod lease;
mod range;
mod read;
mod request;
mod response;
mod snapshot;
mod store;
mod txn;
mod validate;
mod wire;

pub use codec::{decode_request, encode_request, REQUEST_FORMAT_VERSION};
pub use dedup::{DEFAULT_KEPT_BYTES_MAX, KEPT_OUTCOME_BYTES_MAX};
pub use error::{DecodeError, ErrorCode, KvError};
pub use hash::HashKv;
pub use history::{Budget, Changes, Event, EventKind, History, KeyRange};
pub use read::{Applied, LeaseApplied, ReadRequest, ReadView, Reads};
pub use request::{
    prefix_range, CompactionRequest, Compare, CompareResult, CompareTarget, DeleteRangeRequest,
    LeaseEpoch, LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest, Request,
    RequestOp, SortOrder, SortTarget, TxnRequest, LEASE_TTL_MAX,
};
pub use response::{
    CompactionResponse, DeleteRangeResponse, KeyValue, LeaseEpochResponse, LeaseGrantResponse,
    LeaseRevokeResponse, PutResponse, RangeResponse, Response, ResponseHeader, ResponseOp,
    TxnResponse,
};
pub use snapshot::{SnapshotView, SNAPSHOT_FORMAT_VERSION};
pub use store::{KvStore, DEFAULT_CLIENTS_MAX, TXN_OPS_MAX};
