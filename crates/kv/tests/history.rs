//! The store's history (`History`: changes in a window, one change, a key at a revision, and
//! `Applied::changes`) against the naive model's record of every revision, over random
//! requests and compactions; read in small budgets and resumed, on the store and on frozen
//! views.

use bytes::Bytes;
use proptest::prelude::*;
use synod_kv::*;

mod support;

use support::gen::*;
use support::model::Model;

/// A window query: a range, `from`, `to` (relative to the revision when asked), a budget.
#[derive(Clone, Debug)]
struct Query {
    range: KeyRange,
    from: i64,
    to: i64,
    events_max: usize,
    bytes_max: usize,
}

fn query() -> impl Strategy<Value = Query> {
    (
        key(),
        range_end(),
        -1i64..40,
        -2i64..12,
        1usize..6,
        1usize..12,
    )
        .prop_map(|(k, e, from, span, events_max, bytes_max)| Query {
            range: KeyRange::new(k, e),
            from,
            to: from + span,
            events_max,
            bytes_max,
        })
}

/// Reads the window in calls of the query's budget, each resuming after the last; checks
/// each call's progress and budget. Returns the events, or the error of the first call.
fn read_resuming(h: &impl History, q: &Query) -> Result<Vec<Event>, KvError> {
    let budget = Budget {
        events_max: q.events_max,
        bytes_max: q.bytes_max,
    };
    let to = q.to.min(h.revision());
    let mut from = q.from;
    let mut all = Vec::new();
    loop {
        let c = h.changes(&q.range, from, q.to, budget)?;
        assert!(c.through <= to, "{c:?} past {to}");
        if from > to {
            assert_eq!((c.through, c.events.len()), (to, 0));
            return Ok(all);
        }
        assert!(c.through >= from, "no progress from {from}: {c:?}");
        assert!(c
            .events
            .iter()
            .all(|e| (from..=c.through).contains(&e.kv.mod_revision)));
        // Stopped only once the budget was spent, and at a revision boundary: the events
        // before the last revision fit in it.
        let last = c.events.last().map_or(0, |e| e.kv.mod_revision);
        let before: Vec<&Event> = c
            .events
            .iter()
            .filter(|e| e.kv.mod_revision < last)
            .collect();
        assert!(before.len() < q.events_max.max(1) || before.is_empty());
        let bytes: usize = before
            .iter()
            .map(|e| e.kv.key.len() + e.kv.value.len())
            .sum();
        assert!(bytes < q.bytes_max || before.is_empty());
        all.extend(c.events);
        if c.through == to {
            return Ok(all);
        }
        from = c.through + 1;
    }
}

/// Everything `h` answers agrees with `model`: the queries (whole and resumed), and every
/// key's change and version at every revision.
fn check(h: &impl History, model: &Model, queries: &[Query]) -> Result<(), TestCaseError> {
    prop_assert_eq!(h.revision(), model.rev());
    prop_assert_eq!(h.compact_revision(), model.compacted);
    let unbounded = Budget {
        events_max: usize::MAX,
        bytes_max: usize::MAX,
    };
    for q in queries {
        let want = model.changes(&q.range, q.from, q.to);
        let whole = h
            .changes(&q.range, q.from, q.to, unbounded)
            .map(|c| c.events);
        prop_assert_eq!(&whole, &want, "{:?}", q);
        prop_assert_eq!(&read_resuming(h, q), &want, "{:?}", q);
    }
    for key in ["a", "b", "c", "d", "e"] {
        for rev in -1..=h.revision() + 1 {
            prop_assert_eq!(
                h.event_at(key.as_bytes(), rev),
                model.event_at(key.as_bytes(), rev)
            );
            prop_assert_eq!(
                h.kv_at(key.as_bytes(), rev),
                model.kv_at(key.as_bytes(), rev)
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The store's history and `Applied::changes` match the model; a view taken midway
    /// answers as the store did then, after the store moved on (compactions included); and
    /// a store restored from a snapshot answers the same (its index is rebuilt).
    #[test]
    fn history_matches_the_model(
        reqs in prop::collection::vec(request(), 1..60),
        queries in prop::collection::vec(query(), 1..6),
        cut in any::<prop::sample::Index>(),
        trim_step in 0u64..6,
    ) {
        let cut = cut.index(reqs.len() + 1);
        let mut store = KvStore::new();
        let mut model = Model::new();
        let mut frozen = None;
        for (i, req) in reqs.iter().enumerate() {
            if i == cut {
                frozen = Some((store.read_view(), model.clone()));
            }
            let before = model.rev();
            let _ = model.apply(req);
            let applied = store.apply_encoded_with(0, 0, &encode_request(req), Reads::Skip);
            // Trimmed a few units at a time: answers must not depend on how far it got.
            store.compact_step(trim_step);
            let want = (model.rev() > before).then(|| {
                let keys: Vec<Bytes> = model.events[before as usize]
                    .iter()
                    .map(|e| e.kv.key.clone())
                    .collect();
                (model.rev(), keys)
            });
            let got = applied.changes().map(|(rev, keys)| (rev, keys.to_vec()));
            prop_assert_eq!(got, want, "request #{}: {:?}", i, req);
            check(&store, &model, &queries)?;
        }
        if let Some((view, then)) = frozen {
            check(&view, &then, &queries)?;
        }
        let restored = KvStore::restore(&store.snapshot()).unwrap();
        check(&restored, &model, &queries)?;
    }
}

/// `Applied::changes` is `None` for replays, errors, reads, compactions and writes that
/// changed nothing.
#[test]
fn applied_changes_only_for_changes() {
    let mut s = KvStore::new();
    let apply = |s: &mut KvStore, client: u64, seq: u64, req: Request| {
        s.apply_encoded_with(client, seq, &encode_request(&req), Reads::Skip)
            .changes()
    };
    let put = Request::Put(PutRequest::new("k", "v"));
    let (rev, keys) = apply(&mut s, 1, 1, put.clone()).unwrap();
    assert_eq!((rev, &keys[..]), (2, &[Bytes::from("k")][..]));
    assert_eq!(apply(&mut s, 1, 1, put.clone()), None, "a replay");
    assert_eq!(apply(&mut s, 1, 0, put), None, "stale");
    let bad = Request::Put(PutRequest::new("", "v"));
    assert_eq!(apply(&mut s, 1, 2, bad), None, "an error");
    let read = Request::Range(RangeRequest::key("k"));
    assert_eq!(apply(&mut s, 1, 3, read), None, "a read");
    let none = Request::DeleteRange(DeleteRangeRequest::key("nothing"));
    assert_eq!(apply(&mut s, 1, 4, none), None, "deleted nothing");
    let compact = Request::Compact(CompactionRequest { revision: 2 });
    assert_eq!(apply(&mut s, 1, 5, compact), None, "a compaction");
    assert_eq!(s.revision(), 2);
}

/// A budget never splits a revision, however large: a Txn of many puts comes whole, and
/// the next call goes on after it.
#[test]
fn a_revision_is_never_split() {
    let mut s = KvStore::new();
    let puts = (0..20)
        .map(|i| RequestOp::Put(PutRequest::new(format!("k{i:02}"), "v")))
        .collect();
    s.apply(
        0,
        0,
        &Request::Txn(TxnRequest {
            compare: vec![],
            success: puts,
            failure: vec![],
        }),
    )
    .unwrap();
    s.apply(0, 0, &Request::Put(PutRequest::new("k00", "w")))
        .unwrap();
    let all = KeyRange::new(Bytes::from("\0"), Bytes::from("\0"));
    let budget = Budget {
        events_max: 1,
        bytes_max: 1,
    };
    let first = s.changes(&all, 1, 100, budget).unwrap();
    assert_eq!((first.events.len(), first.through), (20, 2));
    let keys: Vec<&[u8]> = first.events.iter().map(|e| &e.kv.key[..]).collect();
    assert_eq!(keys[..2], [b"k00", b"k01"]);
    let next = s.changes(&all, 3, 100, budget).unwrap();
    assert_eq!((next.events.len(), next.through), (1, 3));
    assert_eq!(next.events[0].kv.version, 2);
    // A window of nothing: from past to.
    let empty = s.changes(&all, 4, 3, budget).unwrap();
    assert_eq!((empty.events.len(), empty.through), (0, 3));
    let key = KeyRange::new(Bytes::from("k05"), Bytes::new());
    assert!(key.contains(b"k05") && !key.contains(b"k050"));
    let inverted = KeyRange::new(Bytes::from("k05"), Bytes::from("k01"));
    assert!(!inverted.contains(b"k05") && !inverted.contains(b"k03"));
}
