//! The MVCC keyspace: for every key, the versions it went through, in revision order.
//!
//! Layout: a `BTreeMap` from key to its history (a short `Vec` of records, oldest first; a
//! record is either a value or a tombstone). Ordered maps only: iteration order reaches
//! responses and snapshots, and every replica must produce identical bytes. A read at the
//! current revision looks at the last record of each key; a read in the past binary-searches
//! the history. Compaction trims every history to what is still reachable.

use crate::dedup::ClientTable;
use crate::error::KvError;
use crate::response::{CompactionResponse, KeyValue, ResponseHeader};
use bytes::Bytes;
use std::collections::btree_map::{self, BTreeMap};
use std::ops::Bound::{Excluded, Included, Unbounded};

/// The most compares, or ops in one branch, a Txn may have (etcd's default `--max-txn-ops`).
/// Every replica must use the same bound, so it is a constant rather than a setting.
pub const MAX_TXN_OPS: usize = 128;

/// The most clients whose last response the dedup table remembers by default.
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;

/// `size_bytes` accounting: an empty etcd database is not zero bytes (clients divide by it,
/// and Maintenance.Status reports it), so count a base page plus rough per-item overheads.
const BASE_SIZE: u64 = 4096;
pub(crate) const KEY_OVERHEAD: u64 = 64;
pub(crate) const RECORD_OVERHEAD: u64 = 48;

/// One version of a key: what a put wrote, or a deletion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) mod_rev: i64,
    /// 0 for a tombstone.
    pub(crate) create_rev: i64,
    /// 0 for a tombstone.
    pub(crate) version: i64,
    /// `None` marks a tombstone.
    pub(crate) value: Option<Bytes>,
}

impl Record {
    pub(crate) fn is_live(&self) -> bool {
        self.value.is_some()
    }

    pub(crate) fn size(&self) -> u64 {
        RECORD_OVERHEAD + self.value.as_ref().map_or(0, |v| v.len() as u64)
    }

    pub(crate) fn to_kv(&self, key: &Bytes) -> KeyValue {
        KeyValue {
            key: key.clone(),
            create_revision: self.create_rev,
            mod_revision: self.mod_rev,
            version: self.version,
            value: self.value.clone().unwrap_or_default(),
            lease: 0,
        }
    }
}

/// The records of one key, strictly increasing in `mod_rev`, never empty while in the map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyHistory {
    pub(crate) records: Vec<Record>,
}

impl KeyHistory {
    /// The live version visible at revision `rev`, if the key existed then.
    pub(crate) fn at(&self, rev: i64) -> Option<&Record> {
        let last = self.records.last()?;
        // Fast path: nearly all reads are at the current revision.
        let rec = if last.mod_rev <= rev {
            last
        } else {
            let i = self.records.partition_point(|r| r.mod_rev <= rev);
            self.records.get(i.checked_sub(1)?)?
        };
        rec.is_live().then_some(rec)
    }

    /// The newest version, if the key currently exists (including writes of a running txn).
    pub(crate) fn latest(&self) -> Option<&Record> {
        self.records.last().filter(|r| r.is_live())
    }
}

/// The replicated state machine: keyspace, revision counters and the dedup table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvStore {
    pub(crate) keys: BTreeMap<Bytes, KeyHistory>,
    /// The revision of the last change; 1 for an empty store, as in etcd.
    pub(crate) revision: i64,
    /// Reads below this revision fail. -1 until the first compaction, as in etcd.
    pub(crate) compact_revision: i64,
    /// Keys whose latest record is live.
    pub(crate) live_keys: usize,
    /// Approximate bytes held, see [`BASE_SIZE`].
    pub(crate) size: u64,
    pub(crate) clients: ClientTable,
}

impl Default for KvStore {
    fn default() -> KvStore {
        KvStore::new()
    }
}

impl KvStore {
    /// An empty store at revision 1.
    pub fn new() -> KvStore {
        KvStore::with_max_clients(DEFAULT_MAX_CLIENTS)
    }

    /// An empty store whose dedup table remembers at most `max_clients` clients (at least 1).
    /// All replicas must use the same value; it is carried in snapshots.
    pub fn with_max_clients(max_clients: usize) -> KvStore {
        KvStore {
            keys: BTreeMap::new(),
            revision: 1,
            compact_revision: -1,
            live_keys: 0,
            size: BASE_SIZE,
            clients: ClientTable::new(max_clients.max(1)),
        }
    }

    /// The current store revision (etcd's header revision).
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The revision of the last compaction; 0 if the store was never compacted.
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision.max(0)
    }

    /// Approximate memory held by keys, values and history; never 0.
    pub fn size_bytes(&self) -> u64 {
        self.size
    }

    /// Keys that currently exist.
    pub fn key_count(&self) -> usize {
        self.live_keys
    }

    /// The keys in `[key, range_end)` with their histories, in key order. `range_end` forms
    /// as in etcd: empty means just `key`; `"\0"` means every key from `key` on.
    pub(crate) fn span<'a>(
        &'a self,
        key: &'a [u8],
        range_end: &'a [u8],
    ) -> impl Iterator<Item = (&'a Bytes, &'a KeyHistory)> + 'a {
        let (single, many) = if range_end.is_empty() {
            (self.keys.get_key_value(key), None)
        } else if range_end == b"\0" {
            (
                None,
                Some(self.keys.range::<[u8], _>((Included(key), Unbounded))),
            )
        } else if range_end > key {
            (
                None,
                Some(
                    self.keys
                        .range::<[u8], _>((Included(key), Excluded(range_end))),
                ),
            )
        } else {
            // An inverted range is empty (and `BTreeMap::range` would panic on it).
            (None, None)
        };
        single.into_iter().chain(many.into_iter().flatten())
    }

    /// The live version of `key` as the running request sees it.
    pub(crate) fn latest(&self, key: &[u8]) -> Option<&Record> {
        self.keys.get(key).and_then(KeyHistory::latest)
    }

    /// etcd's revision checks for a read against a view at revision `current`.
    pub(crate) fn check_read_revision(&self, revision: i64, current: i64) -> Result<(), KvError> {
        if revision > current {
            Err(KvError::FutureRevision)
        } else if revision > 0 && revision < self.compact_revision {
            Err(KvError::Compacted)
        } else {
            Ok(())
        }
    }

    /// Writes `value` to `key` at revision `rev`, returning the version it replaced.
    ///
    /// If the key was already written at `rev` (possible only in a txn, see txn.rs) the
    /// record is replaced rather than appended: histories keep one record per revision,
    /// and a read at `rev` must see the last write of that revision.
    pub(crate) fn write_put(&mut self, key: &Bytes, value: Bytes, rev: i64) -> Option<KeyValue> {
        let hist = match self.keys.entry(key.clone()) {
            btree_map::Entry::Occupied(o) => o.into_mut(),
            btree_map::Entry::Vacant(v) => {
                self.size += KEY_OVERHEAD + key.len() as u64;
                v.insert(KeyHistory::default())
            }
        };
        let prev = hist.latest();
        let prev_kv = prev.map(|r| r.to_kv(key));
        let (create_rev, version) = match prev {
            Some(r) => (r.create_rev, r.version + 1),
            None => (rev, 1),
        };
        let record = Record {
            mod_rev: rev,
            create_rev,
            version,
            value: Some(value),
        };
        if prev_kv.is_none() {
            self.live_keys += 1;
        }
        self.size += record.size();
        if hist.records.last().is_some_and(|r| r.mod_rev == rev) {
            if let Some(old) = hist.records.pop() {
                self.size -= old.size();
            }
        }
        hist.records.push(record);
        prev_kv
    }

    /// Deletes `key` at revision `rev`; false if it did not exist.
    pub(crate) fn write_delete(&mut self, key: &[u8], rev: i64) -> bool {
        let Some(hist) = self.keys.get_mut(key) else {
            return false;
        };
        if hist.latest().is_none() {
            return false;
        }
        let tombstone = Record {
            mod_rev: rev,
            create_rev: 0,
            version: 0,
            value: None,
        };
        self.size += tombstone.size();
        if hist.records.last().is_some_and(|r| r.mod_rev == rev) {
            if let Some(old) = hist.records.pop() {
                self.size -= old.size();
            }
        }
        hist.records.push(tombstone);
        self.live_keys -= 1;
        true
    }

    /// Deletes every existing key in `[key, range_end)` at revision `rev`; returns how many,
    /// and their last versions if `want_prev`.
    pub(crate) fn write_delete_range(
        &mut self,
        key: &[u8],
        range_end: &[u8],
        rev: i64,
        want_prev: bool,
    ) -> (i64, Vec<KeyValue>) {
        let mut victims = Vec::new();
        let mut prev = Vec::new();
        for (k, hist) in self.span(key, range_end) {
            if let Some(r) = hist.latest() {
                if want_prev {
                    prev.push(r.to_kv(k));
                }
                victims.push(k.clone());
            }
        }
        for k in &victims {
            self.write_delete(k, rev);
        }
        (victims.len() as i64, prev)
    }

    /// etcd's Compact: forget history before `rev`, keeping each key's version current at
    /// `rev` so reads at `rev` and later are unaffected. Does not change the revision.
    pub(crate) fn compact(&mut self, rev: i64) -> Result<CompactionResponse, KvError> {
        if rev <= self.compact_revision {
            return Err(KvError::Compacted);
        }
        if rev > self.revision {
            return Err(KvError::FutureRevision);
        }
        self.compact_revision = rev;
        let mut freed = 0u64;
        self.keys.retain(|key, hist| {
            let visible = hist.records.partition_point(|r| r.mod_rev <= rev);
            // Keep the record current at `rev` unless it is a tombstone: then nothing at or
            // before `rev` is readable any more.
            let keep_from = match visible.checked_sub(1) {
                Some(i) if hist.records[i].is_live() => i,
                Some(_) => visible,
                None => 0,
            };
            freed += hist
                .records
                .drain(..keep_from)
                .map(|r| r.size())
                .sum::<u64>();
            if hist.records.is_empty() {
                freed += KEY_OVERHEAD + key.len() as u64;
                false
            } else {
                true
            }
        });
        self.size -= freed;
        Ok(CompactionResponse {
            header: ResponseHeader {
                revision: self.revision,
            },
        })
    }

    /// Recomputes the derived counters from the keyspace (after a restore).
    pub(crate) fn recount(&mut self) {
        self.live_keys = self.keys.values().filter(|h| h.latest().is_some()).count();
        self.size = BASE_SIZE
            + self
                .keys
                .iter()
                .map(|(k, h)| {
                    KEY_OVERHEAD + k.len() as u64 + h.records.iter().map(Record::size).sum::<u64>()
                })
                .sum::<u64>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn fresh_store_is_at_revision_one_and_not_empty_in_size() {
        let s = KvStore::new();
        assert_eq!(s.revision(), 1);
        assert_eq!(s.compact_revision(), 0);
        assert_eq!(s.key_count(), 0);
        assert!(s.size_bytes() > 0);
    }

    #[test]
    fn history_lookup_at_past_revisions() {
        let mut s = KvStore::new();
        s.write_put(&b("k"), b("v2"), 2);
        s.write_put(&b("k"), b("v3"), 3);
        s.write_delete(b"k", 5);
        s.write_put(&b("k"), b("v7"), 7);
        let h = &s.keys[&b("k")];
        assert!(h.at(1).is_none());
        assert_eq!(h.at(2).unwrap().value, Some(b("v2")));
        assert_eq!(h.at(4).unwrap().version, 2);
        assert!(h.at(5).is_none());
        assert!(h.at(6).is_none());
        let r = h.at(7).unwrap();
        assert_eq!((r.create_rev, r.version), (7, 1));
    }

    #[test]
    fn size_accounting_matches_recount() {
        let mut s = KvStore::new();
        s.write_put(&b("a"), b("1"), 2);
        s.write_put(&b("a"), b("22"), 3);
        s.write_put(&b("b"), b("333"), 3);
        s.write_delete(b"b", 3);
        s.write_delete(b"a", 4);
        s.revision = 4;
        let tracked = (s.size, s.live_keys);
        s.recount();
        assert_eq!(tracked, (s.size, s.live_keys));
        s.compact(4).unwrap();
        let tracked = (s.size, s.live_keys);
        s.recount();
        assert_eq!(tracked, (s.size, s.live_keys));
        assert_eq!(s.size, BASE_SIZE);
        assert!(s.keys.is_empty());
    }

    #[test]
    fn inverted_span_is_empty() {
        let mut s = KvStore::new();
        s.write_put(&b("m"), b("1"), 2);
        assert_eq!(s.span(b"z", b"a").count(), 0);
        assert_eq!(s.span(b"m", b"m").count(), 0);
        assert_eq!(s.span(b"m", b"").count(), 1);
        assert_eq!(s.span(b"a", b"\0").count(), 1);
    }
}
