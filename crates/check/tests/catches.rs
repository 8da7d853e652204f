//! The failures the checker exists for, with revisions recorded as a real etcd client sees
//! them, and what its reports say: stale reads, lost writes, wrong revisions, doubled
//! writes; and the histories that look alike but are fine.

mod support;

use support::*;
use synod_check::{check, check_bounded, CheckError, HistoryOp, Op, Read, Response, Semantics};

const K: u64 = 1;
const J: u64 = 2;

fn exact() -> Semantics {
    Semantics::default()
}

fn fails(ops: Vec<HistoryOp>) -> CheckError {
    let h = history(ops);
    match check(&h, exact()) {
        Ok(()) => panic!("accepted a history that is not linearizable: {:#?}", h.ops),
        Err(e) => e,
    }
}

fn ok(ops: Vec<HistoryOp>) {
    let h = history(ops);
    assert_eq!(check(&h, exact()), Ok(()), "{:#?}", h.ops);
}

#[test]
fn a_stale_read_with_the_right_old_revision_is_caught() {
    // The read is consistent with itself (value 2, mod revision 3, header 3), only too old:
    // a write at revision 4 had completed before it began.
    let stale = || {
        vec![
            op(1, put(K, 1), 1, Some((2, written(Some(2))))),
            op(1, put(K, 2), 3, Some((4, written(Some(3))))),
            op(1, put(K, 1), 5, Some((6, written(Some(4))))),
            op(2, get(K), 7, Some((8, read_meta(2, 2, 3, 2, 3)))),
        ]
    };
    // The revision order names both requests.
    let e = fails(stale());
    let text = e.to_string();
    assert!(matches!(e, CheckError::Revisions(_)), "{text}");
    assert!(
        text.starts_with("revision went back: client 2's Get { key: 1 }")
            && text.contains("began after client 1's Put { key: 1, value: 1 }"),
        "{text}"
    );
    // Without the header revision, values repeating (so the stale-read test does not
    // apply either), the search says it.
    let mut ops = stale();
    if let Some((_, Response::Get { revision, .. })) = &mut ops[3].complete {
        *revision = None;
    }
    let e = fails(ops);
    let text = e.to_string();
    assert!(matches!(e, CheckError::NotLinearizable(_)), "{text}");
    assert!(
        text.contains("then client 2's Get { key: 1 }")
            && text.contains("revision 4, key 1 = 1")
            && text.contains("client 1's Put { key: 1, value: 1 } -> Put { revision: Some(4) }"),
        "{text}"
    );
}

#[test]
fn a_lost_write_is_caught() {
    // Acknowledged at revision 3, then a later read at revision 3 shows the older value.
    fails(vec![
        op(1, put(K, 1), 1, Some((2, written(Some(2))))),
        op(1, put(K, 2), 3, Some((4, written(Some(3))))),
        op(2, get(K), 5, Some((6, read(Some(1), Some(3))))),
    ]);
    // The key vanished: the read finds it absent at a revision after the put.
    fails(vec![
        op(1, put(K, 1), 1, Some((2, written(Some(2))))),
        op(2, get(K), 3, Some((4, read(None, Some(2))))),
    ]);
    // A write that timed out may be lost: that is fine.
    ok(vec![
        op(1, put(K, 1), 1, Some((2, written(Some(2))))),
        op(1, put(K, 2), 3, None),
        op(2, get(K), 5, Some((6, read_meta(1, 2, 2, 1, 2)))),
    ]);
}

#[test]
fn a_wrong_revision_is_caught_even_with_the_right_values() {
    // The second write skipped a revision nobody else could have taken.
    fails(vec![
        op(1, put(K, 1), 1, Some((2, written(Some(2))))),
        op(1, put(K, 2), 3, Some((4, written(Some(4))))),
        op(2, get(K), 5, Some((6, read_meta(2, 2, 4, 2, 4)))),
    ]);
    // A read's header revision lags its own data.
    fails(vec![
        op(1, put(K, 1), 1, Some((2, written(Some(2))))),
        op(2, get(K), 3, Some((4, read_meta(1, 2, 2, 1, 1)))),
    ]);
    // A put the store bumped twice (two revisions for one request).
    fails(vec![
        op(1, put(K, 1), 1, Some((2, written(Some(3))))),
        op(2, get(K), 3, Some((4, read_meta(1, 3, 3, 1, 3)))),
    ]);
}

#[test]
fn a_doubled_write_is_caught_by_its_revisions() {
    // The first put applied a second time after the second one: the value comes back with
    // a new mod revision and version.
    let e = fails(vec![
        op(1, put(K, 1), 1, Some((2, written(Some(2))))),
        op(1, put(K, 2), 3, Some((4, written(Some(3))))),
        op(2, get(K), 5, Some((6, read_meta(1, 2, 4, 3, 4)))),
    ]);
    assert!(e.to_string().contains("client 2's Get"), "{e}");
    // Also when nothing reads the value back: the revisions alone show a write that no
    // request made.
    fails(vec![
        op(1, put(K, 1), 1, Some((2, written(Some(2))))),
        op(1, put(J, 2), 3, Some((4, written(Some(4))))),
    ]);
}

#[test]
fn revisions_let_an_unknown_write_fill_exactly_one_gap() {
    // One unknown put, two revisions missing: only one can be its.
    fails(vec![
        op(1, put(K, 1), 1, Some((2, written(Some(2))))),
        op(3, put(J, 9), 2, None),
        op(1, put(K, 2), 3, Some((4, written(Some(5))))),
    ]);
    ok(vec![
        op(1, put(K, 1), 1, Some((2, written(Some(2))))),
        op(3, put(J, 9), 2, None),
        op(1, put(K, 2), 3, Some((4, written(Some(4))))),
    ]);
}

#[test]
fn range_reads_see_every_present_key_at_one_revision() {
    let range = |start, end| Op::Range { start, end };
    let kv = |k, v, rev| {
        (
            k,
            Read {
                value: Some(v),
                meta: Some(synod_check::KeyMeta {
                    create_revision: rev,
                    mod_revision: rev,
                    version: 1,
                }),
            },
        )
    };
    let got = |reads, revision| Response::Range {
        reads,
        revision: Some(revision),
    };
    ok(vec![
        op(1, put(K, 1), 1, Some((2, written(Some(2))))),
        op(1, put(J, 2), 3, Some((4, written(Some(3))))),
        op(
            2,
            range(1, 3),
            5,
            Some((6, got(vec![kv(K, 1, 2), kv(J, 2, 3)], 3))),
        ),
        op(2, range(2, 9), 7, Some((8, got(vec![kv(J, 2, 3)], 3)))),
    ]);
    // Missing a key written before the read began: half a state.
    fails(vec![
        op(1, put(K, 1), 1, Some((2, written(Some(2))))),
        op(1, put(J, 2), 3, Some((4, written(Some(3))))),
        op(2, range(1, 3), 5, Some((6, got(vec![kv(J, 2, 3)], 3)))),
    ]);
}

#[test]
fn a_range_delete_removes_every_key_at_one_revision() {
    let del = Op::DeleteRange { start: 1, end: 3 };
    ok(vec![
        op(1, put(K, 1), 1, Some((2, written(Some(2))))),
        op(1, put(J, 2), 3, Some((4, written(Some(3))))),
        op(2, del.clone(), 5, Some((6, deleted(2, Some(4))))),
        op(2, get(J), 7, Some((8, read(None, Some(4))))),
        op(2, put(K, 5), 9, Some((10, written(Some(5))))),
    ]);
    // Two revisions for one range delete.
    fails(vec![
        op(1, put(K, 1), 1, Some((2, written(Some(2))))),
        op(1, put(J, 2), 3, Some((4, written(Some(3))))),
        op(2, del, 5, Some((6, deleted(2, Some(5))))),
    ]);
}

#[test]
fn a_compare_and_set_as_the_simulator_records_it() {
    // No revisions at all: values only, split per key.
    let mut h = synod_check::History::default();
    let a = h.invoke(1, Op::Put { key: K, value: 7 });
    h.complete(a, Response::written());
    let b = h.invoke(2, Op::cas(K, Some(7), 8));
    h.complete(b, Response::swapped(true));
    let c = h.invoke(3, Op::cas(K, None, 9));
    h.complete(c, Response::swapped(false));
    let d = h.invoke(3, Op::Get { key: K });
    h.complete(d, Response::value(Some(8)));
    // Refused by the replica: it never happened.
    let e = h.invoke(4, Op::Put { key: K, value: 10 });
    h.discard(e);
    assert_eq!(check(&h, exact()), Ok(()));
    let f = h.invoke(3, Op::Get { key: K });
    h.complete(f, Response::value(Some(10)));
    assert!(check(&h, exact()).is_err());
}

#[test]
fn a_search_out_of_steps_is_a_failure_not_a_pass() {
    let ops = vec![
        op(1, put(K, 1), 1, Some((4, written(None)))),
        op(2, put(K, 2), 2, Some((5, written(None)))),
        op(3, get(K), 6, Some((7, read(Some(1), None)))),
    ];
    let e = check_bounded(&history(ops), exact(), 2).unwrap_err();
    assert!(matches!(e, CheckError::GaveUp { steps_max: 2, .. }), "{e}");
    assert!(
        e.to_string().starts_with("search gave up after 2 steps"),
        "{e}"
    );
}
