//! Reads that need not run where the store is applied: on a frozen [`ReadView`], with the
//! work of one read bounded or abandoned when nobody wants its answer any more.
//!
//! A read costs time in proportion to the keys it covers (and sorts), which a client
//! chooses: one Txn of 128 value-sorted ranges over 20,000 keys is 2.5 million keys. The
//! server applies commands on one thread that must also keep heartbeats and elections going,
//! so it runs a read there only while it stays within a small budget
//! ([`KvStore::read_within`]) and otherwise hands a [`ReadView`] (an O(1) frozen copy of
//! the keyspace, see store.rs) to another thread ([`ReadView::read`]). The reads inside a
//! write (a Txn's Range ops) are done the same way: [`KvStore::apply_encoded_with`] answers
//! them within a budget and leaves the rest, each with a view of the state it must see, in
//! the [`Applied`] it returns, to be finished elsewhere ([`Applied::complete`]).

use crate::error::KvError;
use crate::index::ChangeIndex;
use crate::lease::Lease;
use crate::request::{LeaseEpoch, RangeRequest, Request, RequestOp, TxnRequest};
use crate::response::{RangeResponse, Response, ResponseHeader, ResponseOp, TxnResponse};
use crate::store::{KeyHistory, Keyspace, KvStore};
use crate::validate::{check_range_request, check_txn};
use bytes::Bytes;
use imbl::OrdMap;
use std::convert::Infallible;
use std::sync::Arc;

/// How often (in units of work) an abandonable read asks whether it is still wanted.
const ABANDON_CHECK_UNITS: u64 = 4096;

/// Counts the work of a read: one unit per key of a range (or of a compare's range), one
/// per key sorted.
pub(crate) trait Work {
    type Stop;
    fn charge(&mut self, units: u64) -> Result<(), Self::Stop>;
}

/// No bound: for what must run to the end (a write's compares, `KvStore::range`).
#[derive(Debug)]
pub(crate) struct Unmetered;

impl Work for Unmetered {
    type Stop = Infallible;

    #[inline]
    fn charge(&mut self, _units: u64) -> Result<(), Infallible> {
        Ok(())
    }
}

/// Why a metered read stopped before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// It would do more than its budget.
    Budget,
    /// Nobody wants its answer any more.
    Abandoned,
}

/// A budget, and a question asked now and then: "is the answer still wanted?".
pub(crate) struct Meter<'a> {
    left: u64,
    abandoned: Option<&'a dyn Fn() -> bool>,
    until_check: u64,
}

impl std::fmt::Debug for Meter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter").field("left", &self.left).finish()
    }
}

impl<'a> Meter<'a> {
    pub(crate) fn budget(units: u64) -> Meter<'static> {
        Meter {
            left: units,
            abandoned: None,
            until_check: u64::MAX,
        }
    }

    pub(crate) fn abandonable(abandoned: &'a dyn Fn() -> bool) -> Meter<'a> {
        Meter {
            left: u64::MAX,
            abandoned: Some(abandoned),
            until_check: 0,
        }
    }
}

impl Work for Meter<'_> {
    type Stop = Stop;

    #[inline]
    fn charge(&mut self, units: u64) -> Result<(), Stop> {
        self.left = self.left.checked_sub(units).ok_or(Stop::Budget)?;
        if let Some(abandoned) = self.abandoned {
            match self.until_check.checked_sub(units) {
                Some(left) => self.until_check = left,
                None => {
                    self.until_check = ABANDON_CHECK_UNITS;
                    if abandoned() {
                        return Err(Stop::Abandoned);
                    }
                }
            }
        }
        Ok(())
    }
}

/// A request that changes nothing, whatever the state: a Range, or a Txn with no Put or
/// DeleteRange in any branch at any depth. Such a read is served without the log
/// (linearizable ones after a read barrier).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRequest(Read);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Read {
    Range(RangeRequest),
    Txn(TxnRequest),
}

impl ReadRequest {
    pub fn range(request: RangeRequest) -> ReadRequest {
        ReadRequest(Read::Range(request))
    }

    /// The txn as a read, or back as it was if some branch writes.
    pub fn txn(request: TxnRequest) -> Result<ReadRequest, TxnRequest> {
        if request.is_read_only() {
            Ok(ReadRequest(Read::Txn(request)))
        } else {
            Err(request)
        }
    }
}

impl From<RangeRequest> for ReadRequest {
    fn from(request: RangeRequest) -> ReadRequest {
        ReadRequest::range(request)
    }
}

impl TxnRequest {
    /// A Range op in some branch, nested txns included: its answer may carry what it read.
    pub fn answers_reads(&self) -> bool {
        self.success.iter().chain(&self.failure).any(|op| match op {
            RequestOp::Range(_) => true,
            RequestOp::Put(p) => p.prev_kv,
            RequestOp::DeleteRange(d) => d.prev_kv,
            RequestOp::Txn(t) => t.answers_reads(),
        })
    }

    /// No Put or DeleteRange in any branch, nested txns included: the txn changes nothing
    /// whichever way its compares go.
    pub fn is_read_only(&self) -> bool {
        self.success.iter().chain(&self.failure).all(|op| match op {
            RequestOp::Range(_) => true,
            RequestOp::Put(_) | RequestOp::DeleteRange(_) => false,
            RequestOp::Txn(t) => t.is_read_only(),
        })
    }
}

impl Request {
    /// Whether its answer carries what it read (range results, `prev_kv`s): what the dedup
    /// table does not keep, so a duplicate's answer lacks it (docs/KV.md, "Deduplication").
    pub fn answers_reads(&self) -> bool {
        match self {
            Request::Range(_) => true,
            Request::Put(p) => p.prev_kv,
            Request::DeleteRange(d) => d.prev_kv,
            Request::Txn(t) => t.answers_reads(),
            Request::Compact(_)
            | Request::LeaseGrant(_)
            | Request::LeaseRevoke(_)
            | Request::LeaseEpoch(_) => false,
        }
    }

    /// A Range, or a read-only Txn ([`TxnRequest::is_read_only`]).
    pub fn is_read_only(&self) -> bool {
        match self {
            Request::Range(_) => true,
            Request::Txn(t) => t.is_read_only(),
            Request::Put(_)
            | Request::DeleteRange(_)
            | Request::Compact(_)
            | Request::LeaseGrant(_)
            | Request::LeaseRevoke(_)
            | Request::LeaseEpoch(_) => false,
        }
    }
}

/// The keyspace frozen at one revision: later writes to the store do not show in it. O(1)
/// to take ([`KvStore::read_view`]: it shares the store's persistent maps, see store.rs),
/// `Send + Sync + 'static`, so a read can run on it on any thread. While it lives, the
/// store copies each B-tree node or history chunk the first time it writes to it; drop
/// views once read.
#[derive(Clone, Debug)]
pub struct ReadView {
    keys: OrdMap<Bytes, KeyHistory>,
    changes: ChangeIndex,
    leases: OrdMap<i64, Lease>,
    lease_epoch: LeaseEpoch,
    revision: i64,
    compact_revision: i64,
}

impl ReadView {
    /// The store revision the view holds.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The lease epoch when the view was taken.
    pub fn lease_epoch(&self) -> LeaseEpoch {
        self.lease_epoch
    }

    pub(crate) fn keyspace(&self) -> Keyspace<'_> {
        Keyspace {
            keys: &self.keys,
            changes: &self.changes,
            leases: &self.leases,
            compact_revision: self.compact_revision,
        }
    }

    /// Serves `request` as the store would have when the view was taken, however much work
    /// it takes, unless `abandoned` (asked every few thousand keys) says the answer is no
    /// longer wanted: then `None`.
    pub fn read(
        &self,
        request: &ReadRequest,
        abandoned: &dyn Fn() -> bool,
    ) -> Option<Result<Response, KvError>> {
        let mut meter = Meter::abandonable(abandoned);
        read(self.keyspace(), self.revision, request, &mut meter).ok()
    }
}

impl KvStore {
    /// Freezes the keyspace as it is now, in O(1), for reads on other threads.
    pub fn read_view(&self) -> ReadView {
        ReadView {
            keys: self.keys.clone(),
            changes: self.changes.clone(),
            leases: self.leases.clone(),
            lease_epoch: self.lease_epoch,
            revision: self.revision,
            compact_revision: self.compact_revision,
        }
    }

    /// Serves `request` here if that takes at most `work_max` units of work (one per key a
    /// range or compare covers, one per key sorted); `None` if it would take more, after at
    /// most `work_max` units: serve it from a [`ReadView`] elsewhere.
    pub fn read_within(
        &self,
        request: &ReadRequest,
        work_max: u64,
    ) -> Option<Result<Response, KvError>> {
        let mut meter = Meter::budget(work_max);
        read(self.keyspace(), self.revision, request, &mut meter).ok()
    }
}

fn read<W: Work>(
    ks: Keyspace<'_>,
    revision: i64,
    request: &ReadRequest,
    work: &mut W,
) -> Result<Result<Response, KvError>, W::Stop> {
    match &request.0 {
        Read::Range(r) => {
            if let Err(e) =
                check_range_request(r).and_then(|()| ks.check_read_revision(r.revision, revision))
            {
                return Ok(Err(e));
            }
            Ok(Ok(Response::Range(ks.read_range(r, revision, work)?)))
        }
        Read::Txn(t) => {
            if let Err(e) = check_txn(t) {
                return Ok(Err(e));
            }
            let path = ks.path(t, work)?;
            if let Err(e) = ks.check_path(t, &path, revision) {
                return Ok(Err(e));
            }
            let mut resp = ks.read_txn(t, &path, revision, work)?;
            resp.header.revision = revision;
            Ok(Ok(Response::Txn(resp)))
        }
    }
}

/// How an apply answers the reads a command holds (a Range through the log, the Range ops
/// of a Txn). They change nothing, so only a client waiting for the answer needs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// Nobody waits: skip them. Their results in the outcome are empty (header only).
    Skip,
    /// Run them during the apply while they take at most this many units of work in all
    /// (see [`KvStore::read_within`]); leave the rest in the [`Applied`], each with a view
    /// of the state it must see, to be run elsewhere by [`Applied::complete`].
    Within(u64),
}

/// A command's outcome as an apply left it: complete, or with reads still to run.
#[derive(Debug)]
pub struct Applied {
    pub(crate) outcome: Result<Response, KvError>,
    pub(crate) pending: Vec<PendingRead>,
    /// A duplicate of a command applied before, answered from what the dedup table kept.
    pub(crate) replayed: bool,
    /// The revision the command made and the keys it changed (its revision index entry).
    pub(crate) changes: Option<(i64, Arc<[Bytes]>)>,
    /// What a lease command did, if it took effect.
    pub(crate) lease: Option<LeaseApplied>,
}

/// What a lease command that took effect did: what the replica's lessor follows (it keeps
/// deadlines for the leases that exist, and promotes when its own epoch is applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseApplied {
    Granted {
        id: i64,
        ttl: i64,
    },
    /// Revoked by a client, or expired by the leader of the store's epoch.
    Revoked {
        id: i64,
    },
    /// A leader's epoch was announced (the store's epoch is the greatest announced).
    Epoch(LeaseEpoch),
}

/// A Range op whose result an apply left to run elsewhere.
#[derive(Debug)]
pub(crate) struct PendingRead {
    /// Its place among the command's Range ops, in execution order.
    index: usize,
    /// The state as the op saw it (the writes before it in its txn, not those after).
    view: ReadView,
    request: RangeRequest,
    view_rev: i64,
}

impl Applied {
    pub(crate) fn done(outcome: Result<Response, KvError>) -> Applied {
        Applied {
            outcome,
            pending: Vec::new(),
            replayed: false,
            changes: None,
            lease: None,
        }
    }

    /// The answer to a duplicate, from what the dedup table kept of the first one: without
    /// anything the command read (see [`Request::answers_reads`]).
    pub(crate) fn replayed(outcome: Result<Response, KvError>) -> Applied {
        Applied {
            replayed: true,
            ..Applied::done(outcome)
        }
    }

    /// The revision the command made and the keys it changed there, in the order it changed
    /// them (sub-revision order, each key once): what watchers of those keys must hear
    /// about. `None` for a duplicate, an error, a read, and a write that changed nothing
    /// (a delete of no key, a Txn whose branch did not write, a compaction).
    pub fn changes(&self) -> Option<(i64, Arc<[Bytes]>)> {
        self.changes.clone()
    }

    /// What the command did to leases, if it was a lease command that took effect (not for
    /// a duplicate, an error, or a stale expiry).
    pub fn lease(&self) -> Option<LeaseApplied> {
        self.lease
    }

    /// Whether this is a duplicate's answer, from the dedup table.
    pub fn is_replay(&self) -> bool {
        self.replayed
    }

    /// Whether the command was refused as a stale duplicate ([`KvError::Stale`]): its client
    /// had applied a newer sequence. The command did not execute now, but an earlier copy of
    /// it may have (or none ever will); its proposer cannot tell which from this outcome.
    pub fn is_stale(&self) -> bool {
        matches!(self.outcome, Err(KvError::Stale { .. }))
    }

    /// Whether every read was answered during the apply (or skipped).
    pub fn is_complete(&self) -> bool {
        self.pending.is_empty()
    }

    /// The outcome as it stands: with [`Reads::Skip`], or once [`Applied::is_complete`].
    pub fn outcome(self) -> Result<Response, KvError> {
        self.outcome
    }

    /// Runs the reads the apply left (on any thread; the views are frozen), unless
    /// `abandoned` (asked every few thousand keys) says the answer is no longer wanted:
    /// then `None`.
    pub fn complete(self, abandoned: &dyn Fn() -> bool) -> Option<Result<Response, KvError>> {
        let mut results = Vec::with_capacity(self.pending.len());
        for p in &self.pending {
            let mut meter = Meter::abandonable(abandoned);
            let resp = p
                .view
                .keyspace()
                .read_range(&p.request, p.view_rev, &mut meter)
                .ok()?;
            results.push((p.index, resp));
        }
        let mut outcome = self.outcome;
        if let Ok(resp) = &mut outcome {
            let mut results = results.into_iter().peekable();
            let mut index = 0;
            match resp {
                Response::Range(r) => fill(r, &mut index, &mut results),
                Response::Txn(t) => fill_txn(t, &mut index, &mut results),
                _ => {}
            }
        }
        Some(outcome)
    }
}

type Results = std::iter::Peekable<std::vec::IntoIter<(usize, RangeResponse)>>;

fn fill(r: &mut RangeResponse, index: &mut usize, results: &mut Results) {
    if let Some((_, resp)) = results.next_if(|(i, _)| i == index) {
        *r = resp;
    }
    *index += 1;
}

fn fill_txn(t: &mut TxnResponse, index: &mut usize, results: &mut Results) {
    for op in &mut t.responses {
        match op {
            ResponseOp::Range(r) => fill(r, index, results),
            ResponseOp::Txn(inner) => fill_txn(inner, index, results),
            ResponseOp::Put(_) | ResponseOp::DeleteRange(_) => {}
        }
    }
}

/// The reads of one command being applied: answered, skipped or left pending.
#[derive(Debug)]
pub(crate) struct ApplyReads {
    mode: Reads,
    meter: Meter<'static>,
    /// The budget ran out: leave every later read pending without trying.
    over: bool,
    next_index: usize,
    pending: Vec<PendingRead>,
    /// A view of the state since the last write of the command (shared by the reads that
    /// follow it), taken when a read is first left pending.
    view: Option<ReadView>,
}

impl ApplyReads {
    pub(crate) fn new(mode: Reads) -> ApplyReads {
        let budget = match mode {
            Reads::Skip => 0,
            Reads::Within(units) => units,
        };
        ApplyReads {
            mode,
            meter: Meter::budget(budget),
            over: false,
            next_index: 0,
            pending: Vec::new(),
            view: None,
        }
    }

    /// Answers (or skips, or leaves pending) a Range whose revision was checked, as the
    /// store now is, at `view_rev`.
    pub(crate) fn range(
        &mut self,
        store: &KvStore,
        request: &RangeRequest,
        view_rev: i64,
    ) -> RangeResponse {
        let index = self.next_index;
        self.next_index += 1;
        let placeholder = RangeResponse {
            header: ResponseHeader { revision: view_rev },
            ..RangeResponse::default()
        };
        if self.mode == Reads::Skip {
            return placeholder;
        }
        if !self.over {
            match store
                .keyspace()
                .read_range(request, view_rev, &mut self.meter)
            {
                Ok(resp) => return resp,
                Err(_) => self.over = true,
            }
        }
        let view = self.view.get_or_insert_with(|| store.read_view()).clone();
        self.pending.push(PendingRead {
            index,
            view,
            request: request.clone(),
            view_rev,
        });
        placeholder
    }

    /// The command wrote: reads after this must see a newer state.
    pub(crate) fn wrote(&mut self) {
        self.view = None;
    }

    pub(crate) fn finish(self, outcome: Result<Response, KvError>) -> Applied {
        Applied {
            outcome,
            pending: self.pending,
            replayed: false,
            changes: None,
            lease: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::request::*;
    use crate::*;
    use bytes::Bytes;

    fn store(keys: usize) -> KvStore {
        let mut s = KvStore::new();
        for i in 0..keys {
            let put = PutRequest::new(format!("k{i:03}"), format!("v{}", keys - i));
            s.apply(0, 0, &Request::Put(put)).unwrap();
        }
        s
    }

    #[test]
    fn lease_commands_report_what_took_effect() {
        let mut s = KvStore::new();
        let mut apply = |seq: u64, req: Request| {
            s.apply_encoded_with(7, seq, &encode_request(&req), Reads::Skip)
                .lease()
        };
        let grant = Request::LeaseGrant(LeaseGrantRequest { id: 5, ttl: 10 });
        assert_eq!(
            apply(1, grant.clone()),
            Some(LeaseApplied::Granted { id: 5, ttl: 10 })
        );
        assert_eq!(apply(1, grant.clone()), None, "a duplicate");
        assert_eq!(apply(2, grant), None, "an error: the lease exists");
        let epoch = LeaseEpoch { round: 3, node: 1 };
        assert_eq!(
            apply(3, Request::LeaseEpoch(epoch)),
            Some(LeaseApplied::Epoch(epoch))
        );
        let stale = LeaseRevokeRequest {
            id: 5,
            expiry: Some(LeaseEpoch { round: 2, node: 1 }),
        };
        assert_eq!(
            apply(4, Request::LeaseRevoke(stale)),
            None,
            "a stale expiry"
        );
        let expiry = LeaseRevokeRequest {
            id: 5,
            expiry: Some(epoch),
        };
        assert_eq!(
            apply(5, Request::LeaseRevoke(expiry)),
            Some(LeaseApplied::Revoked { id: 5 })
        );
        let put = Request::Put(PutRequest::new("k", "v"));
        assert_eq!(apply(6, put), None);
    }

    fn by_value(limit: i64) -> RangeRequest {
        let mut r = RangeRequest::prefix("k");
        r.sort_target = SortTarget::Value;
        r.sort_order = SortOrder::Descend;
        r.limit = limit;
        r
    }

    fn txn(success: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            compare: vec![Compare::new(
                "k000",
                CompareResult::Equal,
                CompareTarget::Version(1),
            )],
            success,
            failure: vec![],
        }
    }

    #[test]
    fn read_only_txns() {
        let get = RequestOp::Range(RangeRequest::key("k"));
        let put = RequestOp::Put(PutRequest::new("k", "v"));
        let nested = |op| RequestOp::Txn(txn(vec![op]));
        assert!(txn(vec![get.clone(), nested(get.clone())]).is_read_only());
        assert!(!txn(vec![get.clone(), nested(put.clone())]).is_read_only());
        let mut t = txn(vec![]);
        t.failure = vec![RequestOp::DeleteRange(DeleteRangeRequest::key("k"))];
        assert!(!t.is_read_only());
        assert!(ReadRequest::txn(t).is_err());
        assert!(Request::Range(RangeRequest::key("k")).is_read_only());
        assert!(!Request::Compact(CompactionRequest { revision: 1 }).is_read_only());
    }

    /// Within its budget a read runs where the store is; over it, it stops (after at most
    /// the budget) and a view answers the same, however the store changed since.
    #[test]
    fn budgeted_reads_and_views() {
        let mut s = store(50);
        let read = ReadRequest::txn(txn(vec![
            RequestOp::Range(by_value(2)),
            RequestOp::Txn(txn(vec![RequestOp::Range(RangeRequest::key("k001"))])),
        ]))
        .unwrap();
        let whole = s.read_within(&read, u64::MAX).unwrap();
        // One key for each compare, 50 in the range and 50 sorted (the limit applies after
        // the sort), one in the nested read.
        let work = 1 + 50 + 50 + 1 + 1;
        assert!(s.read_within(&read, work - 1).is_none());
        assert_eq!(s.read_within(&read, work).as_ref(), Some(&whole));
        let view = s.read_view();
        s.apply(
            0,
            0,
            &Request::DeleteRange(DeleteRangeRequest::range("k", "l")),
        )
        .unwrap();
        assert_eq!(view.read(&read, &|| false), Some(whole.clone()));
        assert_eq!(view.revision() + 1, s.revision());
        // Abandoned: no answer.
        assert_eq!(view.read(&read, &|| true), None);
        let Ok(Response::Txn(t)) = whole else {
            panic!("{whole:?}")
        };
        let ResponseOp::Range(r) = &t.responses[0] else {
            panic!()
        };
        assert_eq!(r.kvs[0].value, Bytes::from("v9"));
        assert_eq!((r.count, r.more), (50, true));
    }

    /// The reads of a write txn left pending see the state at their place in the txn: the
    /// writes before them, not those after, nor anything applied later.
    #[test]
    fn pending_reads_of_a_write_see_their_place_in_it() {
        let t = TxnRequest {
            compare: vec![],
            success: vec![
                RequestOp::Range(by_value(1)),
                RequestOp::Put(PutRequest::new("k999", "v99")),
                RequestOp::Range(by_value(1)),
                RequestOp::Txn(txn(vec![RequestOp::Range(RangeRequest::prefix("k"))])),
                RequestOp::DeleteRange(DeleteRangeRequest::key("k000")),
                RequestOp::Range(RangeRequest::prefix("k")),
            ],
            failure: vec![],
        };
        let req = Request::Txn(t);
        let want = store(20).apply(0, 0, &req).unwrap();
        for budget in [0, 1, 25, 45, 1000] {
            let mut s = store(20);
            let mut skipping = store(20);
            let payload = encode_request(&req);
            let applied = s.apply_encoded_with(7, 1, &payload, Reads::Within(budget));
            skipping.apply_encoded_with(7, 1, &payload, Reads::Skip);
            assert_eq!(applied.is_complete(), budget == 1000, "budget {budget}");
            s.apply(
                0,
                0,
                &Request::DeleteRange(DeleteRangeRequest::range("k", "l")),
            )
            .unwrap();
            skipping
                .apply(
                    0,
                    0,
                    &Request::DeleteRange(DeleteRangeRequest::range("k", "l")),
                )
                .unwrap();
            assert_eq!(applied.complete(&|| false), Some(Ok(want.clone())));
            assert_eq!(s.snapshot(), skipping.snapshot());
        }
        let Response::Txn(t) = want else { panic!() };
        let counts: Vec<i64> = t
            .responses
            .iter()
            .filter_map(|op| match op {
                ResponseOp::Range(r) => Some(r.count),
                ResponseOp::Txn(t) => match &t.responses[0] {
                    ResponseOp::Range(r) => Some(r.count),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        assert_eq!(counts, [20, 21, 21, 20]);
    }

    /// What the dedup table keeps of a write holds nothing it read, and a duplicate gets
    /// that; a duplicate of a read is read again.
    #[test]
    fn duplicates_get_what_was_kept() {
        let mut s = store(20);
        let mut del = DeleteRangeRequest::range("k010", "k015");
        del.prev_kv = true;
        let t = Request::Txn(TxnRequest {
            compare: vec![],
            success: vec![
                RequestOp::Range(RangeRequest::prefix("k")),
                RequestOp::DeleteRange(del),
            ],
            failure: vec![],
        });
        let first = s.apply(3, 1, &t).unwrap();
        let Response::Txn(full) = &first else {
            panic!()
        };
        let again = s.apply(3, 1, &t).unwrap();
        let Response::Txn(kept) = &again else {
            panic!()
        };
        assert_eq!((kept.header, kept.succeeded), (full.header, full.succeeded));
        let [ResponseOp::Range(r), ResponseOp::DeleteRange(d)] = &kept.responses[..] else {
            panic!("{kept:?}")
        };
        assert_eq!((r.header.revision, r.kvs.len(), r.count), (21, 0, 0));
        assert_eq!((d.header.revision, d.deleted, d.prev_kvs.len()), (22, 5, 0));
        assert!(s.snapshot().len() < 20 * 40, "{} bytes", s.snapshot().len());
        // A read through the log keeps nothing, and a duplicate is read again.
        let read = Request::Range(RangeRequest::prefix("k"));
        assert_eq!(s.apply(3, 2, &read).unwrap_or_else(|e| panic!("{e}")), {
            let mut r = s.range(&RangeRequest::prefix("k")).unwrap();
            r.header.revision = 22;
            Response::Range(r)
        });
        s.apply(0, 0, &Request::Put(PutRequest::new("k100", "x")))
            .unwrap();
        let Ok(Response::Range(r)) = s.apply(3, 2, &read) else {
            panic!()
        };
        assert_eq!(r.count, 16);
    }
}
