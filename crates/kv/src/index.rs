//! The revision index: for each revision, the keys it changed, in the order it changed them
//! (etcd's sub-revisions).
//!
//! The keyspace is ordered by key, which is what ranges need; a watcher catching up needs the
//! changes in revision order, and scanning every key of its range for each revision would
//! cost in proportion to the keys watched rather than to what changed. So applying keeps,
//! beside the keyspace, one entry per revision that changed something: the changed keys,
//! sharing the key map's allocations (a `Bytes` clone copies no bytes). The records
//! themselves stay in the key histories; the index only says where to look.
//!
//! It is derived data: rebuilt from the records' `(mod_rev, sub)` on restore and never
//! encoded in snapshots, so it cannot make replicas differ. Compaction trims it like the
//! histories (compact.rs): entries below the compaction revision go (the records at it
//! stay, tombstones included, so a watch from there sees them). The entry of a revision
//! lists a key once, even if a Txn wrote it twice (histories keep one record per revision).

use crate::error::DecodeError;
use crate::store::{KeyHistory, KvStore, Record};
use bytes::Bytes;
use imbl::{OrdMap, Vector};
use std::sync::Arc;

/// Revision → the keys it changed, in sub order. Every revision from `first` to the store's
/// changed something (that is what moves the revision), so the entries are dense: a
/// persistent vector (views share it in O(1)) indexed by `revision - first`. Appending is
/// O(1); an ordered map keyed by revision cost a third of the apply rate (docs/KV.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChangeIndex {
    /// The revision of `entries[0]`: 2 (revision 1 is the empty store's) or the compaction
    /// revision, once compaction trimmed the index.
    first: i64,
    entries: Vector<Arc<[Bytes]>>,
}

/// The first revision an index can hold.
const FIRST_CHANGE: i64 = 2;

impl ChangeIndex {
    pub(crate) fn new() -> ChangeIndex {
        ChangeIndex {
            first: FIRST_CHANGE,
            entries: Vector::new(),
        }
    }

    /// Records the keys revision `rev` changed: the revision after the last one listed.
    pub(crate) fn push(&mut self, rev: i64, keys: Arc<[Bytes]>) {
        debug_assert_eq!(rev, self.first + self.entries.len() as i64);
        self.entries.push_back(keys);
    }

    /// The keys revision `rev` changed, in sub order, if it is listed.
    pub(crate) fn get(&self, rev: i64) -> Option<&Arc<[Bytes]>> {
        let i = usize::try_from(rev.checked_sub(self.first)?).ok()?;
        self.entries.get(i)
    }

    /// The entries of the revisions in `from..=to` that are listed, in revision order.
    pub(crate) fn range(&self, from: i64, to: i64) -> impl Iterator<Item = (i64, &Arc<[Bytes]>)> {
        let from = from.max(self.first);
        let len = self.entries.len();
        let index = |rev: i64| usize::try_from(rev - self.first).map_or(0, |i| i.min(len));
        let (start, end) = (index(from), index(to.saturating_add(1)).max(index(from)));
        let first = from;
        self.entries
            .focus()
            .narrow(start..end)
            .into_iter()
            .zip(first..)
            .map(|(keys, rev)| (rev, keys))
    }
}

/// Whether a record belongs in the index of a store compacted at `compact_revision`: it
/// is at it or newer.
fn indexed(rec: &Record, compact_revision: i64) -> bool {
    // Records at the compaction revision stay, tombstones included (store.rs,
    // `compaction_cut`): a watch may start there.
    rec.mod_rev >= compact_revision
}

/// The index of `keys` at `revision`, compacted at `compact_revision`, from the records'
/// revisions and sub-revisions; an error if two records claim the same `(revision, sub)`.
pub(crate) fn rebuild(
    keys: &OrdMap<Bytes, KeyHistory>,
    revision: i64,
    compact_revision: i64,
) -> Result<ChangeIndex, DecodeError> {
    let mut all: Vec<(i64, u32, &Bytes)> = keys
        .iter()
        .flat_map(|(key, hist)| {
            hist.iter()
                .filter(|r| indexed(r, compact_revision))
                .map(move |r| (r.mod_rev, r.sub, key))
        })
        .collect();
    all.sort_unstable_by_key(|&(rev, sub, _)| (rev, sub));
    if all.windows(2).any(|w| (w[0].0, w[0].1) == (w[1].0, w[1].1)) {
        return Err(DecodeError("snapshot records share a sub-revision"));
    }
    let mut index = ChangeIndex {
        first: compact_revision.max(FIRST_CHANGE),
        entries: Vector::new(),
    };
    let mut groups = all.chunk_by(|a, b| a.0 == b.0).peekable();
    for rev in index.first..=revision {
        let keys: Arc<[Bytes]> = match groups.next_if(|g| g[0].0 == rev) {
            Some(group) => group.iter().map(|&(_, _, k)| k.clone()).collect(),
            None => Arc::new([]),
        };
        index.push(rev, keys);
    }
    Ok(index)
}

impl KvStore {
    /// Drops index entries compaction made unreachable, about `work_max` units at a time
    /// (one per key listed); returns the units used. Clears `trim_index` once done.
    pub(crate) fn trim_index(&mut self, work_max: u64) -> u64 {
        let rev = self.compact_revision;
        let index = &mut self.changes;
        let mut work = 0u64;
        while index.first < rev {
            if work >= work_max {
                return work;
            }
            let keys = index.entries.pop_front().map_or(0, |k| k.len() as u64);
            index.first += 1;
            work = work.saturating_add(1 + keys);
        }
        self.trim_index = false;
        work
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::*;

    fn apply(s: &mut KvStore, req: Request) {
        s.apply(0, 0, &req).unwrap();
    }

    fn keys(s: &KvStore, rev: i64) -> Vec<&[u8]> {
        s.changes
            .get(rev)
            .map(|ks| ks.iter().map(|k| &k[..]).collect())
            .unwrap_or_default()
    }

    fn put(k: &str) -> RequestOp {
        RequestOp::Put(PutRequest::new(k.to_owned(), "v"))
    }

    fn nested(op: RequestOp) -> RequestOp {
        RequestOp::Txn(TxnRequest {
            compare: vec![],
            success: vec![op],
            failure: vec![],
        })
    }

    /// Keys in the order a Txn changed them, each once; nothing for revisions unchanged;
    /// compaction trims entries below it and the deletes at it; a rebuild agrees.
    #[test]
    fn entries_follow_writes_and_compaction() {
        let mut s = KvStore::new();
        apply(&mut s, Request::Put(PutRequest::new("b", "1"))); // 2
        apply(&mut s, Request::Put(PutRequest::new("a", "1"))); // 3
        apply(
            &mut s,
            Request::Txn(TxnRequest {
                compare: vec![],
                success: vec![
                    put("c"),
                    RequestOp::DeleteRange(DeleteRangeRequest::key("a")),
                    nested(put("b")),
                    nested(RequestOp::DeleteRange(DeleteRangeRequest::key("b"))),
                    put("d"),
                ],
                failure: vec![],
            }),
        ); // 4
        apply(&mut s, Request::DeleteRange(DeleteRangeRequest::key("zz"))); // nothing
        assert_eq!(s.revision(), 4);
        assert_eq!(keys(&s, 1), Vec::<&[u8]>::new());
        assert_eq!(keys(&s, 2), [b"b"]);
        assert_eq!(keys(&s, 4), [&b"c"[..], b"a", b"b", b"d"]);
        let subs: Vec<u32> = ["c", "a", "b", "d"]
            .iter()
            .map(|k| s.keys[k.as_bytes()].exactly_at(4).unwrap().sub)
            .collect();
        assert_eq!(subs, [0, 1, 2, 3]);
        assert_eq!(
            rebuild(&s.keys, s.revision, s.compact_revision).unwrap(),
            s.changes
        );
        apply(&mut s, Request::Compact(CompactionRequest { revision: 4 }));
        assert!(!s.trim_index);
        assert_eq!(s.changes.range(0, 10).count(), 1);
        // The deletes at the compaction revision stay listed (and their tombstones kept).
        assert_eq!(keys(&s, 4), [&b"c"[..], b"a", b"b", b"d"]);
        assert_eq!(
            rebuild(&s.keys, s.revision, s.compact_revision).unwrap(),
            s.changes
        );
    }

    #[test]
    fn trimming_goes_step_by_step() {
        let mut s = KvStore::new();
        for i in 0..20 {
            apply(&mut s, Request::Put(PutRequest::new(format!("k{i}"), "v")));
        }
        let payload = crate::encode_request(&Request::Compact(CompactionRequest { revision: 15 }));
        s.apply_encoded_with(0, 0, &payload, crate::Reads::Skip);
        assert!(s.compaction_pending());
        let mut steps = 0;
        while s.compact_step(3) {
            steps += 1;
        }
        assert!(steps >= 4, "{steps}");
        assert_eq!(s.changes.range(0, 100).next().unwrap().0, 15);
        assert_eq!(
            rebuild(&s.keys, s.revision, s.compact_revision).unwrap(),
            s.changes
        );
    }
}
