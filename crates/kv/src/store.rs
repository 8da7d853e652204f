//! The MVCC keyspace: for every key, the versions it went through, in revision order.
//!
//! Layout: an ordered map from key to its history (its records, oldest first; a record is
//! either a value or a tombstone). Ordered maps only: iteration order reaches responses and
//! snapshots, and every replica must produce identical bytes. A read at the current revision
//! looks at the last record of each key; a read in the past binary-searches the history.
//! Compaction trims every history to what is still reachable.
//!
//! The map is persistent (`imbl::OrdMap`, a B-tree whose nodes are shared copy-on-write), a
//! history keeps its newest record inline and the older ones behind an `Arc`, so
//! [`KvStore::snapshot_view`] freezes the whole state in O(1): it clones a root pointer.
//! While nothing shares them, writes change nodes and histories in place; while a view is
//! alive, the first write to a node or a history copies it (one B-tree path, one list of
//! older records), so a snapshot costs the writer at most one copy of each part it touches
//! while the view lives. See docs/KV.md.

use crate::dedup::{ClientTable, DEFAULT_KEPT_BYTES_MAX};
use crate::error::KvError;
use crate::index::ChangeIndex;
use crate::lease::Lease;
use crate::request::LeaseEpoch;
use crate::response::KeyValue;
use bytes::Bytes;
use imbl::OrdMap;
use std::ops::Bound::{Excluded, Included, Unbounded};
use std::sync::Arc;

/// The most compares, or ops in one branch, a Txn may have (etcd's default `--max-txn-ops`).
/// Every replica must use the same bound, so it is a constant rather than a setting.
pub const TXN_OPS_MAX: usize = 128;

/// The most clients whose last response the dedup table remembers by default.
pub const DEFAULT_CLIENTS_MAX: usize = 10_000;

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
    /// The lease the key is attached to from this version on; 0 for none (and tombstones).
    pub(crate) lease: i64,
    /// The place of this change among the changes of its revision, from 0 (etcd's
    /// sub-revision): the order of a Txn's writes, which watchers see them in.
    pub(crate) sub: u32,
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
            lease: self.lease,
        }
    }
}

/// Older records are kept in chunks of at most this many (see [`KeyHistory`]). A write while a
/// snapshot view shares a history copies at most one chunk, plus the list of chunks once
/// every `CHUNK` writes: a bounded cost, however long the history. Small in unit tests, so
/// that they cross chunk boundaries.
const CHUNK: usize = if cfg!(test) { 3 } else { 16 };

/// The records of one key, strictly increasing in `mod_rev`; never empty. The newest is held
/// inline, so reads and writes at the current revision need no further pointer. The older
/// ones are shared with snapshot views, in chunks behind `Arc`s: a write appends to `tail`
/// (copying it first if a view holds it), and a full `tail` moves, as it is, to the end of
/// `sealed`, a list of chunks that are never written again. So a write copies at most
/// [`CHUNK`] records, never the whole history, and costs no more pointers than one list.
#[derive(Clone, Debug)]
pub(crate) struct KeyHistory {
    /// Older records, oldest first, in chunks none of which is empty; `None` rather than
    /// empty.
    sealed: Option<Arc<Vec<Arc<Vec<Record>>>>>,
    /// The older records after `sealed`: at most [`CHUNK`], `None` rather than empty.
    tail: Option<Arc<Vec<Record>>>,
    /// The newest record.
    last: Record,
}

/// Equal records, however they are chunked.
impl PartialEq for KeyHistory {
    fn eq(&self, other: &KeyHistory) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for KeyHistory {}

impl KeyHistory {
    pub(crate) fn new(record: Record) -> KeyHistory {
        KeyHistory {
            sealed: None,
            tail: None,
            last: record,
        }
    }

    /// Rebuilds a history from its records, oldest first; `None` if there are none.
    pub(crate) fn from_records(mut records: Vec<Record>) -> Option<KeyHistory> {
        let last = records.pop()?;
        let mut chunks: Vec<Arc<Vec<Record>>> = records
            .chunks(CHUNK)
            .map(|c| Arc::new(c.to_vec()))
            .collect();
        let tail = chunks.pop();
        Some(KeyHistory {
            sealed: (!chunks.is_empty()).then(|| Arc::new(chunks)),
            tail,
            last,
        })
    }

    fn sealed(&self) -> &[Arc<Vec<Record>>] {
        self.sealed.as_deref().map_or(&[], Vec::as_slice)
    }

    fn tail(&self) -> &[Record] {
        self.tail.as_deref().map_or(&[], Vec::as_slice)
    }

    pub(crate) fn len(&self) -> usize {
        self.sealed().iter().map(|c| c.len()).sum::<usize>() + self.tail().len() + 1
    }

    /// The records, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Record> {
        self.sealed()
            .iter()
            .flat_map(|c| c.iter())
            .chain(self.tail())
            .chain(std::iter::once(&self.last))
    }

    /// The newest older record with `mod_rev <= rev`.
    fn older_at(&self, rev: i64) -> Option<&Record> {
        fn last_at(records: &[Record], rev: i64) -> Option<&Record> {
            let i = records.partition_point(|r| r.mod_rev <= rev);
            records.get(i.checked_sub(1)?)
        }
        let tail = self.tail();
        if tail.first().is_some_and(|r| r.mod_rev <= rev) {
            return last_at(tail, rev);
        }
        let sealed = self.sealed();
        let c = sealed.partition_point(|c| c.first().is_some_and(|r| r.mod_rev <= rev));
        last_at(sealed.get(c.checked_sub(1)?)?, rev)
    }

    /// The live version visible at revision `rev`, if the key existed then.
    pub(crate) fn at(&self, rev: i64) -> Option<&Record> {
        // Fast path: nearly all reads are at the current revision.
        let rec = if self.last.mod_rev <= rev {
            &self.last
        } else {
            self.older_at(rev)?
        };
        rec.is_live().then_some(rec)
    }

    /// The record written exactly at revision `rev` (live or a tombstone), if any.
    pub(crate) fn exactly_at(&self, rev: i64) -> Option<&Record> {
        let rec = if self.last.mod_rev <= rev {
            &self.last
        } else {
            self.older_at(rev)?
        };
        (rec.mod_rev == rev).then_some(rec)
    }

    /// The newest version, if the key currently exists (including writes of a running txn).
    pub(crate) fn latest(&self) -> Option<&Record> {
        Some(&self.last).filter(|r| r.is_live())
    }

    /// Appends `record`, replacing the newest one if it has the same revision (histories keep
    /// one record per revision). Returns the bytes (see [`Record::size`]) added and removed.
    fn push(&mut self, record: Record) -> (u64, u64) {
        let added = record.size();
        let prev = std::mem::replace(&mut self.last, record);
        if prev.mod_rev == self.last.mod_rev {
            return (added, prev.size());
        }
        match &mut self.tail {
            Some(tail) if tail.len() < CHUNK => Arc::make_mut(tail).push(prev),
            tail => {
                if let Some(full) = tail.replace(Arc::new(vec![prev])) {
                    match &mut self.sealed {
                        Some(sealed) => Arc::make_mut(sealed).push(full),
                        None => self.sealed = Some(Arc::new(vec![full])),
                    }
                }
            }
        }
        (added, 0)
    }

    /// Where compaction at `rev` cuts: the number of oldest records no read at `rev` or
    /// later can reach. The record current at `rev` stays unless it is a tombstone older
    /// than `rev` (then nothing at or before `rev` is readable any more). A tombstone made
    /// at `rev` itself stays until the next compaction: a watch may start at the compaction
    /// revision (as in etcd), and must see that delete. All of them means the key goes.
    pub(crate) fn compaction_cut(&self, rev: i64) -> usize {
        let visible = self.iter().take_while(|r| r.mod_rev <= rev).count();
        match visible.checked_sub(1) {
            Some(i)
                if self
                    .iter()
                    .nth(i)
                    .is_some_and(|r| r.is_live() || r.mod_rev == rev) =>
            {
                i
            }
            Some(_) => visible,
            None => 0,
        }
    }

    /// Drops the `n` oldest records (fewer than [`KeyHistory::len`]); returns their bytes.
    /// Rebuilds the chunks from what is left (compaction is rare; this keeps it simple).
    pub(crate) fn drop_oldest(&mut self, n: usize) -> u64 {
        if n == 0 {
            return 0;
        }
        let freed = self.iter().take(n).map(Record::size).sum();
        let rest: Vec<Record> = self.iter().skip(n).cloned().collect();
        if let Some(rebuilt) = KeyHistory::from_records(rest) {
            *self = rebuilt;
        }
        freed
    }

    /// Writes `value` with `lease` at `rev`, change `sub` of the revision, on top of the
    /// current version; returns the version it replaced (if `want_prev`), whether the key was
    /// live before, and the bytes added and removed.
    fn put(
        &mut self,
        key: &Bytes,
        value: Bytes,
        lease: i64,
        (rev, sub): (i64, u32),
        want_prev: bool,
    ) -> (Option<KeyValue>, bool, u64, u64) {
        let prev = self.latest();
        let was_live = prev.is_some();
        let prev_kv = if want_prev {
            prev.map(|r| r.to_kv(key))
        } else {
            None
        };
        let (create_rev, version) = match prev {
            Some(r) => (r.create_rev, r.version + 1),
            None => (rev, 1),
        };
        let (added, removed) = self.push(Record {
            mod_rev: rev,
            create_rev,
            version,
            lease,
            sub,
            value: Some(value),
        });
        (prev_kv, was_live, added, removed)
    }
}

/// A keyspace to read: the store's own (while it applies) or a frozen [`crate::ReadView`]'s.
/// Everything a read needs, borrowed, so the same read code serves both.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Keyspace<'a> {
    pub(crate) keys: &'a OrdMap<Bytes, KeyHistory>,
    /// For each revision, the keys it changed (index.rs).
    pub(crate) changes: &'a ChangeIndex,
    /// The leases that exist (lease.rs).
    pub(crate) leases: &'a OrdMap<i64, Lease>,
    /// Reads below this revision fail. -1 until the first compaction, as in etcd.
    pub(crate) compact_revision: i64,
}

impl<'a> Keyspace<'a> {
    /// The keys in `[key, range_end)` with their histories, in key order. `range_end` forms
    /// as in etcd: empty means just `key`; `"\0"` means every key from `key` on.
    pub(crate) fn span(
        self,
        key: &'a [u8],
        range_end: &'a [u8],
    ) -> impl Iterator<Item = (&'a Bytes, &'a KeyHistory)> + 'a {
        let keys = self.keys;
        let (single, many) = if range_end.is_empty() {
            (keys.get_key_value(key), None)
        } else if range_end == b"\0" {
            (
                None,
                Some(keys.range::<_, [u8]>((Included(key), Unbounded))),
            )
        } else if range_end > key {
            (
                None,
                Some(keys.range::<_, [u8]>((Included(key), Excluded(range_end)))),
            )
        } else {
            // An inverted range is empty (and `OrdMap::range` would panic on it).
            (None, None)
        };
        single.into_iter().chain(many.into_iter().flatten())
    }

    /// The newest live version of `key`, if it exists.
    pub(crate) fn latest(self, key: &[u8]) -> Option<&'a Record> {
        self.keys.get(key).and_then(KeyHistory::latest)
    }

    /// etcd's revision checks for a read against a view at revision `current`.
    pub(crate) fn check_read_revision(self, revision: i64, current: i64) -> Result<(), KvError> {
        if revision > current {
            Err(KvError::FutureRevision)
        } else if revision > 0 && revision < self.compact_revision {
            Err(KvError::Compacted)
        } else {
            Ok(())
        }
    }
}

/// The replicated state machine: keyspace, revision counters and the dedup table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvStore {
    pub(crate) keys: OrdMap<Bytes, KeyHistory>,
    /// The revision of the last change; 1 for an empty store, as in etcd.
    pub(crate) revision: i64,
    /// Reads below this revision fail. -1 until the first compaction, as in etcd.
    pub(crate) compact_revision: i64,
    /// Keys whose latest record is live.
    pub(crate) live_keys: usize,
    /// Approximate bytes held, see [`BASE_SIZE`].
    pub(crate) size: u64,
    pub(crate) clients: ClientTable,
    /// Keys from this one on may still hold history older than `compact_revision` that no
    /// read can reach (compact.rs); `None` once compaction has dropped it all.
    pub(crate) trim_from: Option<Bytes>,
    /// For each revision since the compaction, the keys it changed in sub order (derived
    /// from the records; rebuilt on restore, never in snapshots). See index.rs.
    pub(crate) changes: ChangeIndex,
    /// The revision index still holds entries compaction made unreachable (compact.rs).
    pub(crate) trim_index: bool,
    /// The keys the running request changed so far, in sub order; empty between requests.
    pub(crate) changing: Vec<Bytes>,
    /// The leases granted and not revoked, each with the keys attached to it now (lease.rs).
    pub(crate) leases: OrdMap<i64, Lease>,
    /// The greatest leader epoch a `LeaseEpoch` request announced: expiry revokes decided
    /// under any other are stale.
    pub(crate) lease_epoch: LeaseEpoch,
}

impl Default for KvStore {
    fn default() -> KvStore {
        KvStore::new()
    }
}

impl KvStore {
    /// An empty store at revision 1.
    pub fn new() -> KvStore {
        KvStore::with_clients_max(DEFAULT_CLIENTS_MAX)
    }

    /// An empty store whose dedup table remembers at most `clients_max` clients (at least 1).
    /// All replicas must use the same value; it is carried in snapshots.
    pub fn with_clients_max(clients_max: usize) -> KvStore {
        KvStore::with_dedup_bounds(clients_max, DEFAULT_KEPT_BYTES_MAX)
    }

    /// An empty store whose dedup table remembers at most `clients_max` clients (at least 1)
    /// and keeps at most `kept_bytes_max` bytes of their outcomes (at least
    /// [`crate::KEPT_OUTCOME_BYTES_MAX`]; see docs/KV.md, "Deduplication"). All replicas
    /// must use the same values; they are carried in snapshots.
    pub fn with_dedup_bounds(clients_max: usize, kept_bytes_max: u64) -> KvStore {
        KvStore {
            keys: OrdMap::new(),
            revision: 1,
            compact_revision: -1,
            live_keys: 0,
            size: BASE_SIZE,
            clients: ClientTable::new(clients_max, kept_bytes_max),
            trim_from: None,
            changes: ChangeIndex::new(),
            trim_index: false,
            changing: Vec::new(),
            leases: OrdMap::new(),
            lease_epoch: LeaseEpoch::default(),
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

    /// What reads look at: the keyspace as it is now (including the writes of a running
    /// txn) and the compaction point.
    pub(crate) fn keyspace(&self) -> Keyspace<'_> {
        Keyspace {
            keys: &self.keys,
            changes: &self.changes,
            leases: &self.leases,
            compact_revision: self.compact_revision,
        }
    }

    /// The keys in `[key, range_end)` with their histories, in key order.
    pub(crate) fn span<'a>(
        &'a self,
        key: &'a [u8],
        range_end: &'a [u8],
    ) -> impl Iterator<Item = (&'a Bytes, &'a KeyHistory)> + 'a {
        self.keyspace().span(key, range_end)
    }

    /// The live version of `key` as the running request sees it.
    pub(crate) fn latest(&self, key: &[u8]) -> Option<&Record> {
        self.keys.get(key).and_then(KeyHistory::latest)
    }

    /// Writes `value` with `lease` to `key` at revision `rev`; returns the version it
    /// replaced if `want_prev` (building it costs two `Bytes` clones, so only when asked).
    ///
    /// If the key was already written at `rev` (possible only in a txn, see txn.rs) the
    /// record is replaced rather than appended: histories keep one record per revision,
    /// and a read at `rev` must see the last write of that revision. The key keeps its
    /// place (sub-revision) among the revision's changes: it is listed once.
    pub(crate) fn write_put(
        &mut self,
        key: &Bytes,
        value: Bytes,
        lease: i64,
        rev: i64,
        want_prev: bool,
    ) -> Option<KeyValue> {
        let next_sub = self.next_sub();
        let mut relinked = None;
        // One lookup by reference for an existing key; the key is cloned only for a new one
        // (and the revision index shares the map's copy).
        let (prev_kv, was_live, added, removed) = match self.keys.get_key_value_mut(&key[..]) {
            Some((k, hist)) => {
                let sub = if hist.last.mod_rev == rev {
                    hist.last.sub
                } else {
                    self.changing.push(k.clone());
                    next_sub
                };
                let old_lease = hist.latest().map_or(0, |r| r.lease);
                if old_lease != lease {
                    relinked = Some((k.clone(), old_lease));
                }
                hist.put(key, value, lease, (rev, sub), want_prev)
            }
            None => {
                let record = Record {
                    mod_rev: rev,
                    create_rev: rev,
                    version: 1,
                    lease,
                    sub: next_sub,
                    value: Some(value),
                };
                let added = record.size();
                self.keys.insert(key.clone(), KeyHistory::new(record));
                self.changing.push(key.clone());
                if lease != 0 {
                    relinked = Some((key.clone(), 0));
                }
                self.size += KEY_OVERHEAD + key.len() as u64;
                (None, false, added, 0)
            }
        };
        if let Some((key, old_lease)) = relinked {
            self.detach(old_lease, &key);
            self.attach(lease, key);
        }
        if !was_live {
            self.live_keys += 1;
        }
        self.size = self.size + added - removed;
        prev_kv
    }

    /// The sub-revision of the next key the running request changes.
    fn next_sub(&self) -> u32 {
        // A revision changes at most as many keys as a Txn can name and a DeleteRange can
        // cover, far below 2^32; saturating keeps this total all the same.
        u32::try_from(self.changing.len()).unwrap_or(u32::MAX)
    }

    /// Deletes `key` at revision `rev`; false if it did not exist.
    pub(crate) fn write_delete(&mut self, key: &[u8], rev: i64) -> bool {
        let next_sub = self.next_sub();
        let Some((k, hist)) = self.keys.get_key_value_mut(key) else {
            return false;
        };
        let Some(old_lease) = hist.latest().map(|r| r.lease) else {
            return false;
        };
        let attached = (old_lease != 0).then(|| k.clone());
        let sub = if hist.last.mod_rev == rev {
            hist.last.sub
        } else {
            self.changing.push(k.clone());
            next_sub
        };
        let (added, removed) = hist.push(Record {
            mod_rev: rev,
            create_rev: 0,
            version: 0,
            lease: 0,
            sub,
            value: None,
        });
        self.size = self.size + added - removed;
        self.live_keys -= 1;
        if let Some(k) = attached {
            self.detach(old_lease, &k);
        }
        true
    }

    /// Ends a request's writes, all made at revision `rev`: if they changed anything, the
    /// store is at `rev` now and the revision index lists the keys changed, in sub order.
    pub(crate) fn commit_changes(&mut self, rev: i64) {
        if self.changing.is_empty() {
            return;
        }
        self.revision = rev;
        let keys: Arc<[Bytes]> = self.changing.drain(..).collect();
        self.changes.push(rev, keys);
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

    /// Recomputes the derived counters from the keyspace (after a restore).
    pub(crate) fn recount(&mut self) {
        self.live_keys = self.keys.values().filter(|h| h.latest().is_some()).count();
        self.size = BASE_SIZE
            + self
                .keys
                .iter()
                .map(|(k, h)| {
                    KEY_OVERHEAD + k.len() as u64 + h.iter().map(Record::size).sum::<u64>()
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
        s.write_put(&b("k"), b("v2"), 0, 2, false);
        s.write_put(&b("k"), b("v3"), 0, 3, false);
        s.write_delete(b"k", 5);
        s.write_put(&b("k"), b("v7"), 0, 7, false);
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
        s.write_put(&b("a"), b("1"), 0, 2, false);
        s.commit_changes(2);
        s.write_put(&b("a"), b("22"), 0, 3, true);
        s.write_put(&b("b"), b("333"), 0, 3, false);
        s.write_delete(b"b", 3);
        s.commit_changes(3);
        s.write_delete(b"a", 4);
        s.commit_changes(4);
        assert_eq!(s.revision, 4);
        let tracked = (s.size, s.live_keys);
        s.recount();
        assert_eq!(tracked, (s.size, s.live_keys));
        s.compact(4).unwrap();
        s.finish_compaction();
        let tracked = (s.size, s.live_keys);
        s.recount();
        assert_eq!(tracked, (s.size, s.live_keys));
        // "a", deleted at the compaction revision, keeps its tombstone until the next one.
        assert_eq!(s.size, BASE_SIZE + KEY_OVERHEAD + 1 + RECORD_OVERHEAD);
        assert_eq!(s.keys.len(), 1);
    }

    #[test]
    fn inverted_span_is_empty() {
        let mut s = KvStore::new();
        s.write_put(&b("m"), b("1"), 0, 2, false);
        assert_eq!(s.span(b"z", b"a").count(), 0);
        assert_eq!(s.span(b"m", b"m").count(), 0);
        assert_eq!(s.span(b"m", b"").count(), 1);
        assert_eq!(s.span(b"a", b"\0").count(), 1);
    }

    /// A chunked history against a plain `Vec` of records: pushes (new revisions, same
    /// revision rewrites, tombstones), compactions and reads at every revision, with frozen
    /// copies (what a snapshot view holds) taken along the way and checked at the end.
    mod chunked {
        use super::*;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Op {
            /// A record at the next revision (`true`) or at the current one (`false`);
            /// `live: false` is a tombstone.
            Push {
                next: bool,
                live: bool,
            },
            Compact {
                back: i64,
            },
            Freeze,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                8 => (any::<bool>(), prop::bool::weighted(0.8))
                    .prop_map(|(next, live)| Op::Push { next, live }),
                1 => (0i64..12).prop_map(|back| Op::Compact { back }),
                2 => Just(Op::Freeze),
            ]
        }

        fn record(rev: i64, live: bool) -> Record {
            Record {
                mod_rev: rev,
                create_rev: if live { 1 } else { 0 },
                version: if live { rev } else { 0 },
                lease: if live { rev % 3 } else { 0 },
                sub: 0,
                value: live.then(|| Bytes::from(format!("v{rev}"))),
            }
        }

        fn check(h: &KeyHistory, model: &[Record], rev: i64) {
            assert_eq!(h.len(), model.len());
            assert!(h.iter().eq(model.iter()));
            assert!(h.sealed().iter().all(|c| !c.is_empty() && c.len() <= CHUNK));
            if let Some(tail) = &h.tail {
                assert!(!tail.is_empty() && tail.len() <= CHUNK);
            }
            for r in 0..=rev + 1 {
                let want = model
                    .iter()
                    .rev()
                    .find(|x| x.mod_rev <= r)
                    .filter(|x| x.is_live());
                assert_eq!(h.at(r), want, "read at {r}");
            }
            assert_eq!(KeyHistory::from_records(model.to_vec()).as_ref(), Some(h));
        }

        proptest! {
            #[test]
            fn matches_a_plain_vec(ops in prop::collection::vec(op(), 1..120)) {
                let mut rev = 1;
                let mut h = KeyHistory::new(record(rev, true));
                let mut model = vec![record(rev, true)];
                let mut frozen = Vec::new();
                for op in ops {
                    match op {
                        Op::Push { next, live } => {
                            rev += i64::from(next);
                            let (added, removed) = h.push(record(rev, live));
                            let old = if model.last().is_some_and(|r| r.mod_rev == rev) {
                                model.pop().map_or(0, |r| r.size())
                            } else {
                                0
                            };
                            model.push(record(rev, live));
                            prop_assert_eq!((added, removed), (record(rev, live).size(), old));
                        }
                        Op::Compact { back } => {
                            let at = (rev - back).max(1);
                            let cut = h.compaction_cut(at);
                            let visible = model.iter().filter(|r| r.mod_rev <= at).count();
                            let want = match visible.checked_sub(1) {
                                Some(i) if model[i].is_live() || model[i].mod_rev == at => i,
                                Some(_) => visible,
                                None => 0,
                            };
                            prop_assert_eq!(cut, want);
                            if cut < model.len() {
                                let freed = h.drop_oldest(cut);
                                let gone: u64 = model.drain(..cut).map(|r| r.size()).sum();
                                prop_assert_eq!(freed, gone);
                            }
                        }
                        Op::Freeze => frozen.push((h.clone(), model.clone())),
                    }
                    check(&h, &model, rev);
                }
                for (h, model) in &frozen {
                    check(h, model, rev);
                }
            }
        }
    }
}
