//! Writes and transactions, in etcd's order of events:
//!
//! 1. every compare of the txn, and of every nested txn on the path taken, is evaluated
//!    against the store as it was before the txn (so the path is fixed up front);
//! 2. the ops on that path are checked against the same pre-txn state (read revisions,
//!    `ignore_value` targets, leases); any failure rejects the whole txn, nothing written;
//! 3. the ops run in order, all writes at revision + 1, and a read in the txn sees the
//!    writes before it.
//!
//! Once step 3 starts nothing can fail, which is what makes a txn atomic without undo.

use crate::error::KvError;
use crate::read::{ApplyReads, Unmetered, Work};
use crate::request::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest,
};
use crate::response::{DeleteRangeResponse, PutResponse, ResponseHeader, ResponseOp, TxnResponse};
use crate::store::{Keyspace, KvStore, Record};
use std::cmp::Ordering;

/// The branch each txn takes: its own, then one entry per nested txn of that branch.
#[derive(Debug)]
pub(crate) struct Path {
    succeeded: bool,
    nested: Vec<Path>,
}

/// Revision bookkeeping for one write request: its writes carry `begin + 1`, and the
/// revision only advances if something actually changed.
#[derive(Debug)]
struct Write {
    begin: i64,
    changed: bool,
}

impl Write {
    fn new(begin: i64) -> Write {
        Write {
            begin,
            changed: false,
        }
    }

    fn rev(&self) -> i64 {
        self.begin + 1
    }

    /// The revision a read sees at this point of the request.
    fn view(&self) -> i64 {
        self.begin + i64::from(self.changed)
    }
}

fn branch(t: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &t.success
    } else {
        &t.failure
    }
}

impl KvStore {
    pub(crate) fn apply_put(&mut self, p: &PutRequest) -> Result<PutResponse, KvError> {
        // A plain put checks the lease first; a put inside a txn checks the key first.
        self.keyspace().check_lease(p)?;
        self.check_put(p)?;
        let mut w = Write::new(self.revision);
        let resp = self.exec_put(p, &mut w);
        self.commit_changes(w.rev());
        Ok(resp)
    }

    pub(crate) fn apply_delete(&mut self, d: &DeleteRangeRequest) -> DeleteRangeResponse {
        let mut w = Write::new(self.revision);
        let resp = self.exec_delete(d, &mut w);
        self.commit_changes(w.rev());
        resp
    }

    pub(crate) fn apply_txn(
        &mut self,
        t: &TxnRequest,
        reads: &mut ApplyReads,
    ) -> Result<TxnResponse, KvError> {
        // The compares decide what is written, so they run here whatever they cost (one
        // step per key of a compare's range, no copying).
        let ks = self.keyspace();
        let Ok(path) = ks.path(t, &mut Unmetered);
        ks.check_path(t, &path, self.revision)?;
        let mut w = Write::new(self.revision);
        let mut resp = self.exec_txn(t, &path, &mut w, reads);
        self.commit_changes(w.rev());
        resp.header.revision = self.revision;
        Ok(resp)
    }

    fn check_put(&self, p: &PutRequest) -> Result<(), KvError> {
        self.keyspace().check_put(p)
    }

    /// Runs the ops of the branch `path` chose. The header revision stays 0: etcd sets it
    /// only on the outermost txn response.
    fn exec_txn(
        &mut self,
        t: &TxnRequest,
        path: &Path,
        w: &mut Write,
        reads: &mut ApplyReads,
    ) -> TxnResponse {
        let ops = branch(t, path.succeeded);
        let mut nested = path.nested.iter();
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(reads.range(self, r, w.view())),
                RequestOp::Put(p) => {
                    reads.wrote();
                    ResponseOp::Put(self.exec_put(p, w))
                }
                RequestOp::DeleteRange(d) => {
                    reads.wrote();
                    ResponseOp::DeleteRange(self.exec_delete(d, w))
                }
                RequestOp::Txn(inner) => {
                    let p = nested.next().expect("one path entry per nested txn");
                    ResponseOp::Txn(self.exec_txn(inner, p, w, reads))
                }
            });
        }
        TxnResponse {
            header: ResponseHeader::default(),
            succeeded: path.succeeded,
            responses,
        }
    }

    fn exec_put(&mut self, p: &PutRequest, w: &mut Write) -> PutResponse {
        let rev = w.rev();
        // With `ignore_value`/`ignore_lease` the key exists: checked against the pre-request
        // state, and the interval check forbids deleting it earlier in the same txn.
        let latest = self.latest(&p.key);
        let value = if p.ignore_value {
            latest.and_then(|r| r.value.clone()).unwrap_or_default()
        } else {
            p.value.clone()
        };
        let lease = if p.ignore_lease {
            latest.map_or(0, |r| r.lease)
        } else {
            p.lease
        };
        let prev_kv = self.write_put(&p.key, value, lease, rev, p.prev_kv);
        w.changed = true;
        PutResponse {
            header: ResponseHeader { revision: rev },
            prev_kv,
        }
    }

    fn exec_delete(&mut self, d: &DeleteRangeRequest, w: &mut Write) -> DeleteRangeResponse {
        let (deleted, prev_kvs) = self.write_delete_range(&d.key, &d.range_end, w.rev(), d.prev_kv);
        if deleted > 0 {
            w.changed = true;
        }
        DeleteRangeResponse {
            header: ResponseHeader { revision: w.view() },
            deleted,
            prev_kvs,
        }
    }
}

impl Keyspace<'_> {
    /// The branch every txn on the way takes, decided by its compares against this state.
    pub(crate) fn path<W: Work>(self, t: &TxnRequest, work: &mut W) -> Result<Path, W::Stop> {
        let mut succeeded = true;
        for c in &t.compare {
            if !self.compare_holds(c, work)? {
                succeeded = false;
                break;
            }
        }
        let mut nested = Vec::new();
        for op in branch(t, succeeded) {
            if let RequestOp::Txn(inner) = op {
                nested.push(self.path(inner, work)?);
            }
        }
        Ok(Path { succeeded, nested })
    }

    /// etcd: a compare with a range must hold for every existing key in it; with no key
    /// there, the field compares as zero, except that a value compare fails (a missing
    /// value cannot be told apart from an empty one, so etcd refuses to guess).
    fn compare_holds<W: Work>(self, c: &Compare, work: &mut W) -> Result<bool, W::Stop> {
        let mut matched = false;
        for (_, hist) in self.span(&c.key, &c.range_end) {
            work.charge(1)?;
            if let Some(rec) = hist.latest() {
                matched = true;
                if !compare_record(c, Some(rec)) {
                    return Ok(false);
                }
            }
        }
        Ok(matched || compare_record(c, None))
    }

    fn check_put(self, p: &PutRequest) -> Result<(), KvError> {
        if (p.ignore_value || p.ignore_lease) && self.latest(&p.key).is_none() {
            return Err(KvError::KeyNotFound);
        }
        Ok(())
    }

    /// A put may attach a key only to a lease that exists.
    fn check_lease(self, p: &PutRequest) -> Result<(), KvError> {
        if p.lease != 0 && !self.leases.contains_key(&p.lease) {
            return Err(KvError::LeaseNotFound);
        }
        Ok(())
    }

    /// The checks of the ops on the path, against this state at `revision` (read revisions,
    /// `ignore_value` targets, leases).
    pub(crate) fn check_path(
        self,
        t: &TxnRequest,
        path: &Path,
        revision: i64,
    ) -> Result<(), KvError> {
        let mut nested = path.nested.iter();
        for op in branch(t, path.succeeded) {
            match op {
                RequestOp::Range(r) => self.check_read_revision(r.revision, revision)?,
                RequestOp::Put(p) => {
                    self.check_put(p)?;
                    self.check_lease(p)?;
                }
                RequestOp::DeleteRange(_) => {}
                RequestOp::Txn(inner) => {
                    let p = nested.next().expect("one path entry per nested txn");
                    self.check_path(inner, p, revision)?;
                }
            }
        }
        Ok(())
    }

    /// Runs a read-only txn's path at `revision` (its Range ops; a read-only txn has no
    /// others but nested txns). The header revision stays 0, as in [`KvStore::exec_txn`].
    pub(crate) fn read_txn<W: Work>(
        self,
        t: &TxnRequest,
        path: &Path,
        revision: i64,
        work: &mut W,
    ) -> Result<TxnResponse, W::Stop> {
        let ops = branch(t, path.succeeded);
        let mut nested = path.nested.iter();
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                RequestOp::Range(r) => {
                    responses.push(ResponseOp::Range(self.read_range(r, revision, work)?));
                }
                RequestOp::Txn(inner) => {
                    let p = nested.next().expect("one path entry per nested txn");
                    responses.push(ResponseOp::Txn(self.read_txn(inner, p, revision, work)?));
                }
                // Never here: `ReadRequest` holds only read-only txns.
                RequestOp::Put(_) | RequestOp::DeleteRange(_) => {}
            }
        }
        Ok(TxnResponse {
            header: ResponseHeader::default(),
            succeeded: path.succeeded,
            responses,
        })
    }
}

/// etcd's compareKV: the key's field, compared to the operand. `None` is a missing key.
fn compare_record(c: &Compare, rec: Option<&Record>) -> bool {
    let field = |f: fn(&Record) -> i64| rec.map_or(0, f);
    let ord = match &c.target {
        CompareTarget::Version(v) => field(|r| r.version).cmp(v),
        CompareTarget::Create(v) => field(|r| r.create_rev).cmp(v),
        CompareTarget::Mod(v) => field(|r| r.mod_rev).cmp(v),
        CompareTarget::Lease(v) => field(|r| r.lease).cmp(v),
        CompareTarget::Value(v) => match rec.and_then(|r| r.value.as_ref()) {
            Some(value) => value[..].cmp(&v[..]),
            None => return false,
        },
    };
    match c.result {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::NotEqual => ord != Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
    }
}

#[cfg(test)]
mod tests {
    use crate::request::*;
    use crate::*;
    use bytes::Bytes;

    fn apply(s: &mut KvStore, req: Request) -> Result<Response, KvError> {
        s.apply(0, 0, &req)
    }

    fn put(s: &mut KvStore, k: &str, v: &str) -> PutResponse {
        match apply(s, Request::Put(PutRequest::new(k.to_owned(), v.to_owned()))) {
            Ok(Response::Put(p)) => p,
            other => panic!("put failed: {other:?}"),
        }
    }

    fn txn(s: &mut KvStore, t: TxnRequest) -> Result<TxnResponse, KvError> {
        apply(s, Request::Txn(t)).map(|r| match r {
            Response::Txn(t) => t,
            other => panic!("not a txn response: {other:?}"),
        })
    }

    fn get(s: &KvStore, k: &str) -> Option<KeyValue> {
        s.range(&RangeRequest::key(k.to_owned()))
            .unwrap()
            .kvs
            .into_iter()
            .next()
    }

    fn cmp(k: &str, result: CompareResult, target: CompareTarget) -> Compare {
        Compare::new(k.to_owned(), result, target)
    }

    fn op_put(k: &str, v: &str) -> RequestOp {
        RequestOp::Put(PutRequest::new(k.to_owned(), v.to_owned()))
    }

    #[test]
    fn put_revisions_and_versions() {
        let mut s = KvStore::new();
        let r = put(&mut s, "k", "v1");
        assert_eq!(r.header.revision, 2);
        let kv = get(&s, "k").unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 2, 1));
        put(&mut s, "other", "x");
        put(&mut s, "k", "v2");
        let kv = get(&s, "k").unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 4, 2));
        assert_eq!(s.revision(), 4);
        assert_eq!(s.key_count(), 2);
    }

    #[test]
    fn delete_resets_version_and_create_revision() {
        let mut s = KvStore::new();
        put(&mut s, "k", "v1"); // 2
        put(&mut s, "k", "v2"); // 3
        let del = Request::DeleteRange(DeleteRangeRequest::key("k"));
        let Ok(Response::DeleteRange(d)) = apply(&mut s, del.clone()) else {
            panic!()
        };
        assert_eq!((d.deleted, d.header.revision), (1, 4));
        assert!(get(&s, "k").is_none());
        assert_eq!(s.key_count(), 0);
        // Deleting nothing does not bump the revision.
        let Ok(Response::DeleteRange(d)) = apply(&mut s, del) else {
            panic!()
        };
        assert_eq!((d.deleted, d.header.revision, s.revision()), (0, 4, 4));
        put(&mut s, "k", "v3"); // 5
        let kv = get(&s, "k").unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
    }

    #[test]
    fn put_prev_kv_and_ignore_value() {
        let mut s = KvStore::new();
        let mut p = PutRequest::new("k", "v1");
        p.prev_kv = true;
        let Ok(Response::Put(r)) = apply(&mut s, Request::Put(p.clone())) else {
            panic!()
        };
        assert_eq!(r.prev_kv, None);
        p.value = Bytes::from("v2");
        let Ok(Response::Put(r)) = apply(&mut s, Request::Put(p)) else {
            panic!()
        };
        assert_eq!(r.prev_kv.unwrap().value, Bytes::from("v1"));
        let mut iv = PutRequest::new("k", "");
        iv.ignore_value = true;
        apply(&mut s, Request::Put(iv.clone())).unwrap();
        let kv = get(&s, "k").unwrap();
        assert_eq!((kv.value, kv.version), (Bytes::from("v2"), 3));
        iv.key = Bytes::from("missing");
        assert_eq!(apply(&mut s, Request::Put(iv)), Err(KvError::KeyNotFound));
        let mut il = PutRequest::new("k", "v4");
        il.ignore_lease = true;
        apply(&mut s, Request::Put(il)).unwrap();
        assert_eq!(get(&s, "k").unwrap().value, Bytes::from("v4"));
    }

    #[test]
    fn leases_are_refused() {
        let mut s = KvStore::new();
        let mut p = PutRequest::new("k", "v");
        p.lease = 42;
        assert_eq!(
            apply(&mut s, Request::Put(p.clone())),
            Err(KvError::LeaseNotFound)
        );
        // A plain put reports the lease before the missing key.
        p.ignore_value = true;
        p.value = Bytes::new();
        assert_eq!(apply(&mut s, Request::Put(p)), Err(KvError::LeaseNotFound));
        assert_eq!(s.revision(), 1);
    }

    #[test]
    fn delete_range_with_prev_kv() {
        let mut s = KvStore::new();
        for k in ["a", "b", "c", "d"] {
            put(&mut s, k, k);
        }
        let mut d = DeleteRangeRequest::range("b", "d");
        d.prev_kv = true;
        let Ok(Response::DeleteRange(r)) = apply(&mut s, Request::DeleteRange(d)) else {
            panic!()
        };
        assert_eq!(r.deleted, 2);
        let keys: Vec<_> = r.prev_kvs.iter().map(|kv| kv.key.clone()).collect();
        assert_eq!(keys, [Bytes::from("b"), Bytes::from("c")]);
        assert_eq!(r.header.revision, 6);
        let d = DeleteRangeRequest::range("a", "\0");
        let Ok(Response::DeleteRange(r)) = apply(&mut s, Request::DeleteRange(d)) else {
            panic!()
        };
        assert_eq!((r.deleted, r.prev_kvs.len()), (2, 0));
        assert_eq!(s.key_count(), 0);
    }

    #[test]
    fn txn_is_one_revision_and_reads_see_earlier_writes() {
        let mut s = KvStore::new();
        put(&mut s, "a", "0"); // 2
        let t = TxnRequest {
            compare: vec![],
            success: vec![
                RequestOp::Range(RangeRequest::key("b")),
                op_put("b", "1"),
                op_put("c", "1"),
                RequestOp::Range(RangeRequest::range("a", "\0")),
                RequestOp::DeleteRange(DeleteRangeRequest::key("a")),
                RequestOp::Range(RangeRequest::range("a", "\0")),
            ],
            failure: vec![],
        };
        let r = txn(&mut s, t).unwrap();
        assert!(r.succeeded);
        assert_eq!(r.header.revision, 3);
        assert_eq!(s.revision(), 3);
        let [ResponseOp::Range(r0), ResponseOp::Put(p1), ResponseOp::Put(p2), ResponseOp::Range(r3), ResponseOp::DeleteRange(d4), ResponseOp::Range(r5)] =
            &r.responses[..]
        else {
            panic!("{r:?}")
        };
        // Headers inside a txn show the revision as seen at that point.
        assert_eq!((r0.count, r0.header.revision), (0, 2));
        assert_eq!((p1.header.revision, p2.header.revision), (3, 3));
        assert_eq!((r3.count, r3.header.revision), (3, 3));
        assert_eq!((d4.deleted, d4.header.revision), (1, 3));
        assert_eq!(r5.count, 2);
        assert_eq!(get(&s, "b").unwrap().mod_revision, 3);
        // All writes share the revision.
        assert_eq!(get(&s, "c").unwrap().create_revision, 3);
    }

    #[test]
    fn read_only_txn_does_not_bump_revision() {
        let mut s = KvStore::new();
        put(&mut s, "a", "0");
        let t = TxnRequest {
            compare: vec![cmp("a", CompareResult::Equal, CompareTarget::Version(1))],
            success: vec![
                RequestOp::Range(RangeRequest::key("a")),
                RequestOp::DeleteRange(DeleteRangeRequest::key("nope")),
            ],
            failure: vec![op_put("x", "y")],
        };
        let r = txn(&mut s, t).unwrap();
        assert!(r.succeeded);
        assert_eq!((r.header.revision, s.revision()), (2, 2));
    }

    #[test]
    fn compare_targets_and_results() {
        let mut s = KvStore::new();
        put(&mut s, "k", "m"); // 2
        put(&mut s, "k", "m"); // 3: version 2
        let holds = |s: &mut KvStore, c: Compare| {
            txn(
                s,
                TxnRequest {
                    compare: vec![c],
                    ..TxnRequest::default()
                },
            )
            .unwrap()
            .succeeded
        };
        use CompareResult::*;
        use CompareTarget::*;
        assert!(holds(&mut s, cmp("k", Equal, Version(2))));
        assert!(holds(&mut s, cmp("k", Greater, Version(1))));
        assert!(holds(&mut s, cmp("k", Less, Version(3))));
        assert!(holds(&mut s, cmp("k", NotEqual, Version(1))));
        assert!(!holds(&mut s, cmp("k", Greater, Version(2))));
        assert!(holds(&mut s, cmp("k", Equal, Create(2))));
        assert!(holds(&mut s, cmp("k", Equal, Mod(3))));
        assert!(holds(&mut s, cmp("k", Greater, Value(Bytes::from("l")))));
        assert!(holds(&mut s, cmp("k", Less, Value(Bytes::from("mm")))));
        assert!(holds(&mut s, cmp("k", Equal, Value(Bytes::from("m")))));
        assert!(holds(&mut s, cmp("k", Equal, Lease(0))));
        // A missing key: fields compare as 0, values never match.
        assert!(holds(&mut s, cmp("x", Equal, Version(0))));
        assert!(holds(&mut s, cmp("x", Equal, Create(0))));
        assert!(holds(&mut s, cmp("x", Less, Mod(1))));
        assert!(!holds(&mut s, cmp("x", Equal, Value(Bytes::new()))));
        assert!(!holds(&mut s, cmp("x", NotEqual, Value(Bytes::from("a")))));
        // All compares must hold.
        let t = TxnRequest {
            compare: vec![cmp("k", Equal, Version(2)), cmp("k", Equal, Version(3))],
            ..TxnRequest::default()
        };
        assert!(!txn(&mut s, t).unwrap().succeeded);
    }

    #[test]
    fn range_compares_apply_to_every_key() {
        let mut s = KvStore::new();
        put(&mut s, "p/a", "1");
        put(&mut s, "p/b", "1");
        put(&mut s, "q", "9");
        let holds = |s: &mut KvStore, mut c: Compare, end: &str| {
            c.range_end = Bytes::from(end.to_owned());
            txn(
                s,
                TxnRequest {
                    compare: vec![c],
                    ..TxnRequest::default()
                },
            )
            .unwrap()
            .succeeded
        };
        use CompareResult::*;
        use CompareTarget::*;
        let v1 = || Value(Bytes::from("1"));
        assert!(holds(&mut s, cmp("p/", Equal, v1()), "p0"));
        assert!(!holds(&mut s, cmp("p/", Equal, v1()), "\0"));
        assert!(holds(&mut s, cmp("p/", Less, Mod(4)), "p0"));
        assert!(!holds(&mut s, cmp("p/", Less, Mod(3)), "p0"));
        // An empty range: non-value compares see zeros, value compares fail.
        assert!(holds(&mut s, cmp("r", Equal, Version(0)), "\0"));
        assert!(!holds(&mut s, cmp("r", Equal, Value(Bytes::new())), "\0"));
    }

    #[test]
    fn failure_branch_and_nested_txns() {
        let mut s = KvStore::new();
        put(&mut s, "k", "v"); // 2
        use CompareResult::*;
        use CompareTarget::*;
        let nested = TxnRequest {
            // Evaluated before the outer txn writes anything: "n" does not exist yet, even
            // though the outer branch puts it first.
            compare: vec![cmp("n", Equal, Version(0))],
            success: vec![op_put("inner", "yes")],
            failure: vec![op_put("inner", "no")],
        };
        let t = TxnRequest {
            compare: vec![cmp("k", Equal, Version(5))],
            success: vec![op_put("never", "x")],
            failure: vec![
                op_put("n", "1"),
                RequestOp::Txn(nested),
                RequestOp::Range(RangeRequest::key("inner")),
            ],
        };
        let r = txn(&mut s, t).unwrap();
        assert!(!r.succeeded);
        assert_eq!(r.header.revision, 3);
        let [ResponseOp::Put(_), ResponseOp::Txn(inner), ResponseOp::Range(read)] =
            &r.responses[..]
        else {
            panic!("{r:?}")
        };
        assert!(inner.succeeded);
        assert_eq!(inner.header.revision, 0);
        let [ResponseOp::Put(ip)] = &inner.responses[..] else {
            panic!()
        };
        assert_eq!(ip.header.revision, 3);
        assert_eq!(read.kvs[0].value, Bytes::from("yes"));
        assert!(get(&s, "never").is_none());
        assert_eq!(s.revision(), 3);
    }

    #[test]
    fn txn_errors_leave_store_untouched() {
        let mut s = KvStore::new();
        put(&mut s, "k", "v"); // 2
        let before = s.snapshot();
        let mut future = RangeRequest::key("k");
        future.revision = 3;
        let t = TxnRequest {
            compare: vec![],
            success: vec![op_put("a", "1"), RequestOp::Range(future)],
            failure: vec![],
        };
        assert_eq!(txn(&mut s, t), Err(KvError::FutureRevision));
        let mut iv = PutRequest::new("missing", "");
        iv.ignore_value = true;
        let t = TxnRequest {
            compare: vec![],
            success: vec![op_put("a", "1"), RequestOp::Put(iv)],
            failure: vec![],
        };
        assert_eq!(txn(&mut s, t), Err(KvError::KeyNotFound));
        let mut leased = PutRequest::new("a", "1");
        leased.lease = 1;
        let t = TxnRequest {
            compare: vec![],
            success: vec![],
            failure: vec![RequestOp::Put(leased)],
        };
        // The failing op is on the branch not taken: no error.
        assert!(txn(&mut s, t).unwrap().succeeded);
        let t = TxnRequest {
            compare: vec![],
            success: vec![op_put("a", "1"), op_put("a", "2")],
            failure: vec![],
        };
        assert_eq!(txn(&mut s, t), Err(KvError::DuplicateKey));
        assert_eq!(s.snapshot(), before);
    }

    #[test]
    fn put_then_delete_in_sibling_txns_is_one_change() {
        // etcd's interval check lets sibling nested txns put and then delete the same key.
        let mut s = KvStore::new();
        put(&mut s, "k", "old"); // 2
        let inner = |op| {
            RequestOp::Txn(TxnRequest {
                compare: vec![],
                success: vec![op],
                failure: vec![],
            })
        };
        let t = TxnRequest {
            compare: vec![],
            success: vec![
                inner(op_put("k", "new")),
                inner(RequestOp::DeleteRange(DeleteRangeRequest::key("k"))),
                inner(op_put("fresh", "1")),
                inner(RequestOp::DeleteRange(DeleteRangeRequest::key("fresh"))),
            ],
            failure: vec![],
        };
        let r = txn(&mut s, t).unwrap();
        assert_eq!(r.header.revision, 3);
        assert!(get(&s, "k").is_none());
        assert!(get(&s, "fresh").is_none());
        assert_eq!(s.key_count(), 0);
        let mut at2 = RangeRequest::key("k");
        at2.revision = 2;
        assert_eq!(s.range(&at2).unwrap().kvs[0].value, Bytes::from("old"));
        put(&mut s, "k", "again"); // 4
        let kv = get(&s, "k").unwrap();
        assert_eq!((kv.version, kv.create_revision), (1, 4));
        // The store still snapshots and restores consistently.
        assert_eq!(KvStore::restore(&s.snapshot()).unwrap(), s);
    }

    #[test]
    fn compaction_rules() {
        let mut s = KvStore::new();
        put(&mut s, "k", "v2"); // 2
        put(&mut s, "k", "v3"); // 3
        put(&mut s, "gone", "x"); // 4
        apply(
            &mut s,
            Request::DeleteRange(DeleteRangeRequest::key("gone")),
        )
        .unwrap(); // 5
        let compact =
            |s: &mut KvStore, revision| apply(s, Request::Compact(CompactionRequest { revision }));
        assert_eq!(compact(&mut s, 6), Err(KvError::FutureRevision));
        let Ok(Response::Compact(c)) = compact(&mut s, 3) else {
            panic!()
        };
        assert_eq!(c.header.revision, 5);
        assert_eq!(s.revision(), 5);
        assert_eq!(s.compact_revision(), 3);
        assert_eq!(compact(&mut s, 3), Err(KvError::Compacted));
        assert_eq!(compact(&mut s, 2), Err(KvError::Compacted));
        let mut at = RangeRequest::range("a", "\0");
        at.revision = 3;
        let r = s.range(&at).unwrap();
        assert_eq!(r.kvs.len(), 1);
        assert_eq!(r.kvs[0].value, Bytes::from("v3"));
        at.revision = 4;
        assert_eq!(s.range(&at).unwrap().count, 2);
        compact(&mut s, 5).unwrap();
        // The key deleted at the compaction revision keeps only its tombstone (a watch from
        // 5 must see the delete) until the next compaction, which drops it entirely.
        assert_eq!(s.keys.len(), 2);
        assert_eq!(s.keys[&Bytes::from("gone")].len(), 1);
        put(&mut s, "k", "v6"); // 6
        compact(&mut s, 6).unwrap();
        assert_eq!(s.keys.len(), 1);
        at.revision = 4;
        assert_eq!(s.range(&at), Err(KvError::Compacted));
        // A txn reading at a compacted revision fails as a whole.
        let t = TxnRequest {
            compare: vec![],
            success: vec![op_put("z", "1"), RequestOp::Range(at)],
            failure: vec![],
        };
        assert_eq!(txn(&mut s, t), Err(KvError::Compacted));
    }

    #[test]
    fn fresh_store_compaction_follows_etcd() {
        let mut s = KvStore::new();
        let compact =
            |s: &mut KvStore, revision| apply(s, Request::Compact(CompactionRequest { revision }));
        assert_eq!(compact(&mut s, 2), Err(KvError::FutureRevision));
        compact(&mut s, 1).unwrap();
        assert_eq!(compact(&mut s, 1), Err(KvError::Compacted));
    }
}
