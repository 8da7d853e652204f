//! Watches, sans I/O: etcd's Watch service as a state machine the server and the simulator
//! both run.
//!
//! A client opens a stream ([`crate::Replica::watch_open`]) and sends requests on it
//! ([`WatchRequest`]); the replica answers with [`WatchResponse`]s in
//! `Effects::watch`, which the shell writes to the stream in order and reports written
//! ([`crate::Replica::watch_drained`]). Each member serves watches from its own applied
//! store, so a watch on a follower sees the leader's events, possibly later.
//!
//! A watcher is in one of two states:
//! - *synced*: it has had every event up to the store's revision. Each applied command hands
//!   its changed keys to the hub, which sends every synced watcher whose range holds one of
//!   them one response for that revision (all the events of a Txn or a lease revoke
//!   together).
//! - *unsynced*: it wants events from an older revision (a start revision in the past, a
//!   stream that fell behind, a store replaced by a snapshot). A bounded step per turn reads
//!   the next batch from the store's history (`synod_kv::History::changes`, at most
//!   [`CATCHUP_EVENTS_PER_RESPONSE_MAX`] events, whole revisions) until the watcher reaches
//!   the store's revision and becomes synced. If the history it needs was compacted
//!   meanwhile, it is canceled with the compaction revision, as etcd does.
//!
//! Memory is bounded by stream, not by how far behind a client is: a stream holds at most
//! [`WATCH_STREAM_RESPONSES_MAX`] responses and [`WATCH_STREAM_BYTES_MAX`] bytes the shell
//! has not yet written. A synced watcher whose stream is full becomes unsynced and is caught
//! up from history once the stream drains, so a slow client never blocks writes, other
//! watchers or other streams, and never makes the member buffer its backlog (etcd keeps
//! such "victim" events in memory without bound). See docs/design/WATCH_LEASE.md.

mod catchup;
mod deliver;
mod hub;
#[cfg(test)]
mod tests;

pub use hub::WatchHub;

use synod_kv::{EventKind, KeyRange, KeyValue};

/// A watch stream, as the replica numbers them (never reused within a run).
pub type StreamId = u64;

/// Responses a stream may hold that the shell has not written yet (etcd's per-stream channel
/// holds 128). Control responses (created, canceled, progress on request) are answers to the
/// client's own requests and are always queued; events and periodic progress wait for room.
pub const WATCH_STREAM_RESPONSES_MAX: usize = 128;

/// Bytes of events a stream may hold that the shell has not written yet. One response may be
/// larger (a single revision is never split here; the shell fragments it if asked), but none
/// is queued while the stream is over this.
pub const WATCH_STREAM_BYTES_MAX: usize = 4 << 20;

/// Watchers one member serves at once, over all streams. A create beyond it is answered
/// created and canceled at once with [`WATCHERS_MAX_REASON`] (etcd has no bound).
pub const WATCHERS_MAX: usize = 100_000;

/// The cancel reason of a create refused by [`WATCHERS_MAX`].
pub const WATCHERS_MAX_REASON: &str = "synod: too many watchers on this member";

/// Events a catching-up watcher gets in one response (whole revisions, so one revision with
/// more changes goes whole). etcd batches by revisions (1,000 at a time); events bound the
/// response size better, whatever the Txns look like.
pub const CATCHUP_EVENTS_PER_RESPONSE_MAX: usize = 1_000;

/// Events the hub reads from history per turn, over all catching-up watchers: catching up a
/// watcher a million revisions behind takes many turns, each short, so heartbeats and writes
/// go on meanwhile.
pub const CATCHUP_EVENTS_PER_TURN_MAX: usize = 10_000;

/// What a client sends on a watch stream (etcd's `WatchRequest`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchRequest {
    Create(WatchCreate),
    Cancel {
        watch_id: i64,
    },
    /// etcd's `RequestProgress`: one response with `watch_id = -1` and the store's revision,
    /// if every watcher of the stream is synced.
    Progress,
}

/// etcd's `WatchCreateRequest`, its key range already in etcd's forms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchCreate {
    pub range: KeyRange,
    /// 0: from the next revision on.
    pub start_revision: i64,
    /// Periodic progress responses while idle (every `ReplicaConfig::watch_progress_interval`).
    pub progress_notify: bool,
    pub filter_put: bool,
    pub filter_delete: bool,
    pub prev_kv: bool,
    /// 0: the stream picks one.
    pub watch_id: i64,
    /// Large responses may be split by the shell (etcd's `fragment`).
    pub fragment: bool,
}

impl WatchCreate {
    /// A watch of `range` from `start_revision` with no options.
    pub fn new(range: KeyRange, start_revision: i64) -> WatchCreate {
        WatchCreate {
            range,
            start_revision,
            progress_notify: false,
            filter_put: false,
            filter_delete: false,
            prev_kv: false,
            watch_id: 0,
            fragment: false,
        }
    }
}

/// One event as a watcher receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// PUT: the key as written. DELETE: the key and the deleting revision only.
    pub kv: KeyValue,
    /// The version before this change, if the watcher asked and it is neither a creation nor
    /// compacted away.
    pub prev_kv: Option<KeyValue>,
}

/// etcd's `WatchResponse` (the server adds cluster id, member id and term to the header).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchResponse {
    pub watch_id: i64,
    /// The header revision.
    pub revision: i64,
    pub created: bool,
    pub canceled: bool,
    /// Set on the cancel of a watcher whose history was compacted.
    pub compact_revision: i64,
    pub cancel_reason: String,
    /// The watcher allows the shell to split this response (etcd's `fragment`).
    pub fragment: bool,
    pub events: Vec<WatchEvent>,
}

impl WatchResponse {
    /// Roughly the bytes this response takes on the wire, for the stream's byte bound.
    pub fn size(&self) -> usize {
        const EVENT_OVERHEAD: usize = 48;
        let kv = |kv: &KeyValue| kv.key.len() + kv.value.len() + EVENT_OVERHEAD;
        64 + self.cancel_reason.len()
            + self
                .events
                .iter()
                .map(|e| kv(&e.kv) + e.prev_kv.as_ref().map_or(0, kv))
                .sum::<usize>()
    }
}

/// The reasons etcd gives when it refuses a create (cancel_reason of a created+canceled
/// response with `watch_id = -1`).
pub mod reasons {
    /// The range end is not after the key.
    pub const EMPTY_RANGE: &str = "mvcc: watcher range is empty";
    /// A client-chosen watch id is in use on the stream.
    pub const DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
    /// A negative start revision.
    pub const NEGATIVE_START: &str = "etcdserver: mvcc: required revision has been compacted";
}

/// The key of a watcher: its stream and its id on that stream.
pub(crate) type WatcherKey = (StreamId, i64);

/// Whether `kind` passes a watcher's filters.
pub(crate) fn passes(create: &WatchCreate, kind: EventKind) -> bool {
    match kind {
        EventKind::Put => !create.filter_put,
        EventKind::Delete => !create.filter_delete,
    }
}
