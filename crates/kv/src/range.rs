//! Range reads, with etcd's exact rules for `count`, `limit`/`more`, filters and sorting.

use crate::error::KvError;
use crate::read::{Unmetered, Work};
use crate::request::{RangeRequest, SortOrder, SortTarget};
use crate::response::{KeyValue, RangeResponse, ResponseHeader};
use crate::store::{Keyspace, KvStore, Record};
use crate::validate::check_range_request;
use bytes::Bytes;
use std::cmp::Ordering;

impl KvStore {
    /// Serves a read without going through the log (a linearizable read after a read
    /// barrier, or a serializable one). Never changes the store. However large the range,
    /// it runs to the end here; see [`KvStore::read_within`] for a bounded form.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, KvError> {
        check_range_request(req)?;
        let ks = self.keyspace();
        ks.check_read_revision(req.revision, self.revision)?;
        let Ok(resp) = ks.read_range(req, self.revision, &mut Unmetered);
        Ok(resp)
    }
}

impl Keyspace<'_> {
    /// Executes a read whose revision was already checked against the view at `view_rev`
    /// (the current revision, or inside a txn the revision its writes will get). Charges
    /// `work` one unit per key of the range and one per key it sorts.
    pub(crate) fn read_range<W: Work>(
        self,
        req: &RangeRequest,
        view_rev: i64,
        work: &mut W,
    ) -> Result<RangeResponse, W::Stop> {
        let read_rev = if req.revision > 0 {
            req.revision
        } else {
            view_rev
        };
        let default_order = is_default_ordering(req.sort_target, req.sort_order);
        let filtered = has_revision_filters(req);
        // Like etcd: with the natural key order and no filters, stop collecting after
        // limit + 1 keys (the extra one sets `more`); otherwise collect everything, filter
        // and sort, then cut. `count` always covers the whole range.
        let collect_limit = if req.count_only {
            0
        } else if req.limit > 0 && default_order && !filtered {
            usize::try_from(req.limit)
                .unwrap_or(usize::MAX)
                .saturating_add(1)
        } else {
            usize::MAX
        };
        // Collect references, and make `KeyValue`s (two reference counts each) only of the
        // keys that are returned: a sorted read with a limit then costs one pass and a
        // selection, not a copy and a full sort of the range.
        let mut count = 0i64;
        let mut hits: Vec<(&Bytes, &Record)> = Vec::new();
        for (key, hist) in self.span(&req.key, &req.range_end) {
            work.charge(1)?;
            if let Some(rec) = hist.at(read_rev) {
                count += 1;
                if hits.len() < collect_limit {
                    hits.push((key, rec));
                }
            }
        }
        if filtered {
            hits.retain(|(_, rec)| passes_filters(req, rec));
        }
        let limit = usize::try_from(req.limit).ok().filter(|&l| l > 0);
        let more = limit.is_some_and(|l| hits.len() > l);
        let order = sort_order(req);
        if !is_default_ordering(req.sort_target, order) {
            work.charge(hits.len() as u64)?;
            let cmp = sort_cmp(req.sort_target, order);
            if let Some(l) = limit.filter(|&l| l < hits.len()) {
                hits.select_nth_unstable_by(l, cmp);
                hits.truncate(l);
            }
            hits.sort_unstable_by(cmp);
        } else if let Some(l) = limit {
            hits.truncate(l);
        }
        let kvs = hits
            .into_iter()
            .map(|(key, rec)| {
                let mut kv = KeyValue {
                    key: key.clone(),
                    create_revision: rec.create_rev,
                    mod_revision: rec.mod_rev,
                    version: rec.version,
                    value: Bytes::new(),
                    lease: rec.lease,
                };
                if !req.keys_only {
                    kv.value = rec.value.clone().unwrap_or_default();
                }
                kv
            })
            .collect();
        Ok(RangeResponse {
            header: ResponseHeader { revision: view_rev },
            kvs,
            more,
            count,
        })
    }
}

/// Storage order is ascending by key, so these orderings need no sort.
fn is_default_ordering(target: SortTarget, order: SortOrder) -> bool {
    order == SortOrder::None || (target == SortTarget::Key && order == SortOrder::Ascend)
}

fn has_revision_filters(req: &RangeRequest) -> bool {
    req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0
}

fn passes_filters(req: &RangeRequest, rec: &Record) -> bool {
    !(req.max_mod_revision != 0 && rec.mod_rev > req.max_mod_revision
        || req.min_mod_revision != 0 && rec.mod_rev < req.min_mod_revision
        || req.max_create_revision != 0 && rec.create_rev > req.max_create_revision
        || req.min_create_revision != 0 && rec.create_rev < req.min_create_revision)
}

/// The order a sort uses: etcd sorts by a non-key target without an order ascending.
fn sort_order(req: &RangeRequest) -> SortOrder {
    if req.sort_order == SortOrder::None && req.sort_target != SortTarget::Key {
        SortOrder::Ascend
    } else {
        req.sort_order
    }
}

/// The order of a sorted read. etcd sorts with an unstable sort, leaving the order of ties
/// unspecified; replicas must agree byte for byte, so ties go in ascending key order (in
/// both directions). Keys are unique, so this is a total order, and an unstable sort or a
/// selection by it gives one answer.
fn sort_cmp(
    target: SortTarget,
    order: SortOrder,
) -> impl Fn(&(&Bytes, &Record), &(&Bytes, &Record)) -> Ordering + Copy {
    move |&(ka, a), &(kb, b)| {
        let field = match target {
            SortTarget::Key => ka.cmp(kb),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_rev.cmp(&b.create_rev),
            SortTarget::Mod => a.mod_rev.cmp(&b.mod_rev),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        let field = if order == SortOrder::Descend {
            field.reverse()
        } else {
            field
        };
        field.then_with(|| ka.cmp(kb))
    }
}

#[cfg(test)]
mod tests {
    use crate::request::*;
    use crate::{KvError, KvStore, Request, Response};
    use bytes::Bytes;

    fn put(s: &mut KvStore, k: &str, v: &str) {
        let req = Request::Put(PutRequest::new(k.to_owned(), v.to_owned()));
        s.apply(0, 0, &req).unwrap();
    }

    fn keys(r: &crate::RangeResponse) -> Vec<String> {
        r.kvs
            .iter()
            .map(|kv| String::from_utf8(kv.key.to_vec()).unwrap())
            .collect()
    }

    fn store_abcde() -> KvStore {
        let mut s = KvStore::new();
        for k in ["a", "b", "c", "d", "e"] {
            put(&mut s, k, &format!("v{k}"));
        }
        s
    }

    #[test]
    fn range_end_forms() {
        let s = store_abcde();
        let r = s.range(&RangeRequest::key("c")).unwrap();
        assert_eq!(keys(&r), ["c"]);
        let r = s.range(&RangeRequest::range("b", "d")).unwrap();
        assert_eq!(keys(&r), ["b", "c"]);
        let r = s.range(&RangeRequest::range("c", "\0")).unwrap();
        assert_eq!(keys(&r), ["c", "d", "e"]);
        let r = s.range(&RangeRequest::range("\0", "\0")).unwrap();
        assert_eq!(keys(&r), ["a", "b", "c", "d", "e"]);
        let r = s.range(&RangeRequest::range("d", "b")).unwrap();
        assert_eq!((r.count, r.kvs.len()), (0, 0));
        let r = s.range(&RangeRequest::key("zz")).unwrap();
        assert_eq!((r.count, r.kvs.len(), r.more), (0, 0, false));
    }

    #[test]
    fn prefix_reads() {
        let mut s = KvStore::new();
        for k in ["foo", "foo/a", "foo/b", "fop", "fo"] {
            put(&mut s, k, "x");
        }
        let r = s.range(&RangeRequest::prefix("foo")).unwrap();
        assert_eq!(keys(&r), ["foo", "foo/a", "foo/b"]);
        let r = s.range(&RangeRequest::prefix("")).unwrap();
        assert_eq!(r.count, 5);
    }

    #[test]
    fn empty_key_is_rejected() {
        let s = store_abcde();
        assert_eq!(s.range(&RangeRequest::default()), Err(KvError::EmptyKey));
    }

    #[test]
    fn limit_more_and_count() {
        let s = store_abcde();
        let mut req = RangeRequest::range("a", "\0");
        req.limit = 2;
        let r = s.range(&req).unwrap();
        assert_eq!(keys(&r), ["a", "b"]);
        assert!(r.more);
        assert_eq!(r.count, 5);
        req.limit = 5;
        let r = s.range(&req).unwrap();
        assert!(!r.more);
        assert_eq!(r.kvs.len(), 5);
        req.limit = -1;
        assert_eq!(s.range(&req).unwrap().kvs.len(), 5);
    }

    #[test]
    fn count_only_and_keys_only() {
        let s = store_abcde();
        let mut req = RangeRequest::range("b", "\0");
        req.count_only = true;
        req.limit = 1;
        let r = s.range(&req).unwrap();
        assert_eq!((r.count, r.kvs.len(), r.more), (4, 0, false));
        let mut req = RangeRequest::range("b", "d");
        req.keys_only = true;
        let r = s.range(&req).unwrap();
        assert_eq!(keys(&r), ["b", "c"]);
        assert!(r
            .kvs
            .iter()
            .all(|kv| kv.value.is_empty() && kv.version == 1));
    }

    #[test]
    fn sorting() {
        let mut s = KvStore::new();
        put(&mut s, "a", "3");
        put(&mut s, "b", "1");
        put(&mut s, "c", "2");
        put(&mut s, "b", "1"); // b: version 2
        let mut req = RangeRequest::range("a", "\0");
        req.sort_target = SortTarget::Value;
        req.sort_order = SortOrder::Descend;
        assert_eq!(keys(&s.range(&req).unwrap()), ["a", "c", "b"]);
        req.sort_order = SortOrder::None; // a non-key target defaults to ascending
        assert_eq!(keys(&s.range(&req).unwrap()), ["b", "c", "a"]);
        req.sort_target = SortTarget::Key;
        req.sort_order = SortOrder::Descend;
        assert_eq!(keys(&s.range(&req).unwrap()), ["c", "b", "a"]);
        req.sort_target = SortTarget::Mod;
        req.sort_order = SortOrder::Descend;
        assert_eq!(keys(&s.range(&req).unwrap()), ["b", "c", "a"]);
        req.sort_target = SortTarget::Create;
        req.sort_order = SortOrder::Ascend;
        assert_eq!(keys(&s.range(&req).unwrap()), ["a", "b", "c"]);
        // Ties in version keep key order, in both directions.
        req.sort_target = SortTarget::Version;
        req.sort_order = SortOrder::Descend;
        assert_eq!(keys(&s.range(&req).unwrap()), ["b", "a", "c"]);
        // Sorting happens before the limit is applied.
        req.limit = 1;
        let r = s.range(&req).unwrap();
        assert_eq!((keys(&r), r.more, r.count), (vec!["b".to_owned()], true, 3));
    }

    /// etcd quirk, kept for compatibility: a sort target without a sort order sorts
    /// ascending, but counts as the natural order for the limit, so only the first
    /// limit + 1 keys (in key order) are sorted.
    #[test]
    fn sort_target_without_order_sorts_only_the_fetched_keys() {
        let mut s = KvStore::new();
        put(&mut s, "c", "x"); // create 2
        put(&mut s, "b", "x"); // create 3
        put(&mut s, "a", "x"); // create 4
        let mut req = RangeRequest::range("a", "\0");
        req.sort_target = SortTarget::Create;
        req.limit = 1;
        // Fetched: a, b; sorted by create: b, a; cut to one.
        assert_eq!(keys(&s.range(&req).unwrap()), ["b"]);
        req.sort_order = SortOrder::Ascend;
        assert_eq!(keys(&s.range(&req).unwrap()), ["c"]);
    }

    #[test]
    fn revision_filters_do_not_change_count() {
        let mut s = KvStore::new();
        put(&mut s, "a", "1"); // rev 2
        put(&mut s, "b", "1"); // rev 3
        put(&mut s, "c", "1"); // rev 4
        put(&mut s, "a", "2"); // rev 5
        let mut req = RangeRequest::range("a", "\0");
        req.min_mod_revision = 3;
        req.max_mod_revision = 4;
        let r = s.range(&req).unwrap();
        assert_eq!(
            (keys(&r), r.count),
            (vec!["b".to_owned(), "c".to_owned()], 3)
        );
        let mut req = RangeRequest::range("a", "\0");
        req.max_create_revision = 2;
        assert_eq!(keys(&s.range(&req).unwrap()), ["a"]);
        req.max_create_revision = 0;
        req.min_create_revision = 3;
        req.limit = 1;
        let r = s.range(&req).unwrap();
        assert_eq!((keys(&r), r.more), (vec!["b".to_owned()], true));
    }

    #[test]
    fn past_revisions_and_errors() {
        let mut s = KvStore::new();
        put(&mut s, "k", "v2"); // rev 2
        put(&mut s, "k", "v3"); // rev 3
        let del = Request::DeleteRange(DeleteRangeRequest::key("k"));
        s.apply(0, 0, &del).unwrap(); // rev 4
        let at = |s: &KvStore, rev| {
            let mut req = RangeRequest::key("k");
            req.revision = rev;
            s.range(&req)
        };
        assert_eq!(at(&s, 1).unwrap().kvs.len(), 0);
        assert_eq!(at(&s, 2).unwrap().kvs[0].value, Bytes::from("v2"));
        let r = at(&s, 3).unwrap();
        assert_eq!((r.kvs[0].version, r.header.revision), (2, 4));
        assert_eq!(at(&s, 4).unwrap().kvs.len(), 0);
        assert_eq!(at(&s, 5), Err(KvError::FutureRevision));
        assert_eq!(at(&s, 0).unwrap().header.revision, 4);
        let compact = Request::Compact(crate::CompactionRequest { revision: 3 });
        assert!(matches!(s.apply(0, 0, &compact), Ok(Response::Compact(_))));
        assert_eq!(at(&s, 2), Err(KvError::Compacted));
        assert_eq!(at(&s, 3).unwrap().kvs[0].value, Bytes::from("v3"));
        assert_eq!(at(&s, -1).unwrap().kvs.len(), 0);
    }
}
