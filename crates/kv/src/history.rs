//! The past of the keyspace, read through a narrow interface: the changes in a window of
//! revisions (a watcher catching up), one change (a watcher that is in sync, right after an
//! apply) and the version of a key at a revision (`prev_kv`).
//!
//! The watch hub and the lessor read history only through [`History`], never through the
//! store's maps, so a store that keeps its history on disk can serve them later. Every call
//! is bounded ([`Budget`]) and resumable (start again after [`Changes::through`]).
//!
//! Events follow etcd's watch: a put carries the whole `KeyValue` (lease included); a delete
//! carries only the key and the deleting revision. A revision's events come in the order its
//! request changed the keys (sub-revision order), each key once (see index.rs). Events at
//! the compaction revision include its deletes: compaction keeps the tombstones made at its
//! own revision until the next one (store.rs, `compaction_cut`).

use crate::error::KvError;
use crate::read::ReadView;
use crate::response::KeyValue;
use crate::store::{Keyspace, KvStore};
use bytes::Bytes;

/// The keys a watch (or a range) selects, in etcd's forms: an empty `range_end` selects
/// `key` alone; `"\0"` every key from `key` on; anything else `[key, range_end)`, empty if
/// `range_end <= key`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyRange {
    pub key: Bytes,
    pub range_end: Bytes,
}

impl KeyRange {
    pub fn new(key: Bytes, range_end: Bytes) -> KeyRange {
        KeyRange { key, range_end }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match &self.range_end[..] {
            b"" => key == &self.key[..],
            b"\0" => key >= &self.key[..],
            end => key >= &self.key[..] && key < end,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change of one key, as etcd's watch reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// Put: the version written, whole. Delete: only `key`, and `mod_revision` = the
    /// deleting revision.
    pub kv: KeyValue,
}

impl Event {
    /// What the event weighs against [`Budget::bytes_max`]: its key and value.
    fn bytes(&self) -> usize {
        self.kv.key.len() + self.kv.value.len()
    }
}

/// How much one [`History::changes`] call may do before it stops (at a revision boundary).
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Changes looked at, those of keys outside the range included (so a narrow watch over
    /// a busy history is bounded too); hence also at most this many events.
    pub events_max: usize,
    /// Bytes of keys and values of the events returned.
    pub bytes_max: usize,
}

/// The events one [`History::changes`] call read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changes {
    /// In (revision, sub) order.
    pub events: Vec<Event>,
    /// Every change up to this revision was looked at: continue from `through + 1`.
    pub through: i64,
}

/// Read access to the past of a store (see the module docs).
pub trait History {
    /// The store revision of this store or view.
    fn revision(&self) -> i64;

    /// The compaction revision; -1 if never compacted (unlike
    /// [`KvStore::compact_revision`], which reports 0 then, as etcd's API does).
    fn compact_revision(&self) -> i64;

    /// The events of keys in `range` with revision in `from..=to` (`to` clamped to
    /// [`History::revision`]), in (revision, sub) order. Every change in the window is
    /// looked at; the call stops at a revision boundary once `budget` is spent, but never
    /// splits a revision and always covers at least one (if `from <= to`), however large.
    /// `through` is `to` when it got to the end. [`KvError::Compacted`] if
    /// `from < compact_revision`.
    fn changes(
        &self,
        range: &KeyRange,
        from: i64,
        to: i64,
        budget: Budget,
    ) -> Result<Changes, KvError>;

    /// The change `key` underwent at exactly revision `rev`, if any and not compacted.
    fn event_at(&self, key: &[u8], rev: i64) -> Option<Event>;

    /// The version of `key` visible at `rev` (`prev_kv`); `None` if the key did not exist
    /// then, or `rev` is compacted or in the future.
    fn kv_at(&self, key: &[u8], rev: i64) -> Option<KeyValue>;
}

impl Keyspace<'_> {
    fn changes(
        self,
        range: &KeyRange,
        from: i64,
        to: i64,
        current: i64,
        budget: Budget,
    ) -> Result<Changes, KvError> {
        if from < self.compact_revision {
            return Err(KvError::Compacted);
        }
        let to = to.min(current);
        let (mut looked, mut bytes) = (0usize, 0usize);
        let mut events = Vec::new();
        let mut through = to;
        let mut started = false;
        for (rev, keys) in self.changes.range(from, to) {
            if started && (looked >= budget.events_max || bytes >= budget.bytes_max) {
                through = rev - 1;
                break;
            }
            started = true;
            looked = looked.saturating_add(keys.len());
            for key in keys.iter().filter(|k| range.contains(k)) {
                if let Some(event) = self.event(key, rev) {
                    bytes = bytes.saturating_add(event.bytes());
                    events.push(event);
                }
            }
        }
        Ok(Changes { events, through })
    }

    /// The change of `key` at `rev`, for a key listed in the index at `rev`.
    fn event(self, key: &Bytes, rev: i64) -> Option<Event> {
        let rec = self.keys.get(&key[..])?.exactly_at(rev)?;
        if rec.is_live() {
            return Some(Event {
                kind: EventKind::Put,
                kv: rec.to_kv(key),
            });
        }
        // Compaction keeps the tombstones made at its own revision (store.rs,
        // `compaction_cut`) until the next one, so a watch from the compaction revision sees
        // those deletes; older ones are gone, or about to be.
        (rev >= self.compact_revision).then(|| Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: key.clone(),
                mod_revision: rev,
                ..KeyValue::default()
            },
        })
    }

    fn event_at(self, key: &[u8], rev: i64, current: i64) -> Option<Event> {
        if rev < self.compact_revision || rev > current {
            return None;
        }
        let (key, _) = self.keys.get_key_value(key)?;
        self.event(key, rev)
    }

    fn kv_at(self, key: &[u8], rev: i64, current: i64) -> Option<KeyValue> {
        if rev < self.compact_revision || rev > current {
            return None;
        }
        let (key, hist) = self.keys.get_key_value(key)?;
        hist.at(rev).map(|r| r.to_kv(key))
    }
}

impl History for KvStore {
    fn revision(&self) -> i64 {
        self.revision
    }

    fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    fn changes(
        &self,
        range: &KeyRange,
        from: i64,
        to: i64,
        budget: Budget,
    ) -> Result<Changes, KvError> {
        self.keyspace()
            .changes(range, from, to, self.revision, budget)
    }

    fn event_at(&self, key: &[u8], rev: i64) -> Option<Event> {
        self.keyspace().event_at(key, rev, self.revision)
    }

    fn kv_at(&self, key: &[u8], rev: i64) -> Option<KeyValue> {
        self.keyspace().kv_at(key, rev, self.revision)
    }
}

impl History for ReadView {
    fn revision(&self) -> i64 {
        ReadView::revision(self)
    }

    fn compact_revision(&self) -> i64 {
        self.keyspace().compact_revision
    }

    fn changes(
        &self,
        range: &KeyRange,
        from: i64,
        to: i64,
        budget: Budget,
    ) -> Result<Changes, KvError> {
        self.keyspace()
            .changes(range, from, to, ReadView::revision(self), budget)
    }

    fn event_at(&self, key: &[u8], rev: i64) -> Option<Event> {
        self.keyspace().event_at(key, rev, ReadView::revision(self))
    }

    fn kv_at(&self, key: &[u8], rev: i64) -> Option<KeyValue> {
        self.keyspace().kv_at(key, rev, ReadView::revision(self))
    }
}
