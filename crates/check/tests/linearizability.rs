//! Hand-written histories that are and are not linearizable, values and revisions.

mod support;

use support::*;
use synod_check::{check, CheckError, Compare, Op, Read, Response, Semantics, Target, Txn, TxnOp};

const K: u64 = 1;
const J: u64 = 2;

fn exact() -> Semantics {
    Semantics::default()
}

fn others() -> Semantics {
    Semantics {
        other_writers: true,
        ..Semantics::default()
    }
}

fn ok(ops: Vec<synod_check::HistoryOp>, s: Semantics) {
    let h = history(ops);
    assert_eq!(check(&h, s), Ok(()), "{:#?}", h.ops);
}

fn fails(ops: Vec<synod_check::HistoryOp>, s: Semantics) -> CheckError {
    let h = history(ops);
    match check(&h, s) {
        Ok(()) => panic!("accepted a history that is not linearizable: {:#?}", h.ops),
        Err(e) => e,
    }
}

// Values, without revisions (the simulator's toy store records none).

#[test]
fn concurrent_writes_either_order() {
    ok(
        vec![
            op(1, put(K, 1), 1, Some((4, written(None)))),
            op(2, put(K, 2), 2, Some((5, written(None)))),
            op(3, get(K), 6, Some((7, read(Some(1), None)))),
        ],
        exact(),
    );
}

#[test]
fn stale_read_fails() {
    let e = fails(
        vec![
            op(1, put(K, 1), 1, Some((2, written(None)))),
            op(2, put(K, 2), 3, Some((4, written(None)))),
            op(3, get(K), 5, Some((6, read(Some(1), None)))),
        ],
        exact(),
    );
    // The fast test names the write read and the one that overwrote it.
    let text = e.to_string();
    assert!(matches!(e, CheckError::Stale(_)), "{text}");
    assert!(
        text.contains("stale read on key 1")
            && text.contains("client 3's Get { key: 1 }")
            && text.contains("the value of client 1's Put { key: 1, value: 1 }")
            && text.contains("but client 2's Put { key: 1, value: 2 }"),
        "{text}"
    );
}

#[test]
fn lost_write_fails() {
    fails(
        vec![
            op(1, put(K, 1), 1, Some((2, written(None)))),
            op(2, get(K), 3, Some((4, read(None, None)))),
        ],
        exact(),
    );
}

#[test]
fn unknown_write_may_take_effect_late() {
    ok(
        vec![
            op(1, put(K, 1), 1, None),
            op(2, get(K), 2, Some((3, read(None, None)))),
            op(2, get(K), 4, Some((5, read(Some(1), None)))),
        ],
        exact(),
    );
}

#[test]
fn failed_cas_needs_the_unknown_write() {
    // Only the unknown (junk) write explains the failed compare-and-set.
    ok(
        vec![
            op(1, put(K, 7), 1, None),
            op(2, cas(K, None, 8), 2, Some((3, swapped(false, None)))),
        ],
        exact(),
    );
}

#[test]
fn duplicated_write_fails() {
    // Put 1, put 2, then reading 1 again: as if the first put were applied a second time.
    fails(
        vec![
            op(1, put(K, 1), 1, Some((2, written(None)))),
            op(1, put(K, 2), 3, Some((4, written(None)))),
            op(2, get(K), 5, Some((8, read(Some(2), None)))),
            op(3, get(K), 6, Some((7, read(Some(1), None)))),
        ],
        exact(),
    );
}

#[test]
fn a_deleted_key_reads_absent_and_a_second_delete_deletes_nothing() {
    ok(
        vec![
            op(1, put(K, 1), 1, Some((2, written(Some(2))))),
            op(1, delete(K), 3, Some((4, deleted(1, Some(3))))),
            op(2, delete(K), 5, Some((6, deleted(0, Some(3))))),
            op(2, get(K), 7, Some((8, read(None, Some(3))))),
        ],
        exact(),
    );
    // The value comes back after the delete.
    fails(
        vec![
            op(1, put(K, 1), 1, Some((2, written(None)))),
            op(1, delete(K), 3, Some((4, deleted(1, None)))),
            op(2, get(K), 5, Some((6, read(Some(1), None)))),
        ],
        exact(),
    );
    // A delete of an absent key must not advance the revision.
    fails(
        vec![
            op(1, delete(K), 1, Some((2, deleted(0, Some(2))))),
            op(2, put(K, 1), 3, Some((4, written(Some(2))))),
        ],
        exact(),
    );
}

// Revisions.

#[test]
fn revisions_advance_by_one_per_write_across_keys() {
    ok(
        vec![
            op(1, put(K, 1), 1, Some((2, written(Some(2))))),
            op(2, put(J, 5), 3, Some((4, written(Some(3))))),
            op(1, put(K, 2), 5, Some((6, written(Some(4))))),
            op(3, get(K), 7, Some((8, read_meta(2, 2, 4, 2, 4)))),
            op(3, get(J), 9, Some((10, read_meta(5, 3, 3, 1, 4)))),
        ],
        exact(),
    );
}

#[test]
fn a_get_returning_a_stale_mod_revision_fails() {
    // The value is the newest, but its mod revision is the first put's.
    fails(
        vec![
            op(1, put(K, 1), 1, Some((2, written(Some(2))))),
            op(1, put(K, 2), 3, Some((4, written(Some(3))))),
            op(2, get(K), 5, Some((6, read_meta(2, 2, 2, 2, 3)))),
        ],
        exact(),
    );
    // Also when other writers may advance the revision.
    fails(
        vec![
            op(1, put(K, 1), 1, Some((2, written(Some(5))))),
            op(1, put(K, 2), 3, Some((4, written(Some(9))))),
            op(2, get(K), 5, Some((6, read_meta(2, 5, 5, 2, 9)))),
        ],
        others(),
    );
}

#[test]
fn a_wrong_version_or_create_revision_fails() {
    let base = || {
        vec![
            op(1, put(K, 1), 1, Some((2, written(Some(2))))),
            op(1, put(K, 2), 3, Some((4, written(Some(3))))),
        ]
    };
    let with = |r| {
        let mut v = base();
        v.push(op(2, get(K), 5, Some((6, r))));
        v
    };
    ok(with(read_meta(2, 2, 3, 2, 3)), exact());
    fails(with(read_meta(2, 2, 3, 3, 3)), exact());
    fails(with(read_meta(2, 3, 3, 2, 3)), exact());
}

#[test]
fn two_writes_with_the_same_revision_fail() {
    let ops = || {
        vec![
            op(1, put(K, 1), 1, Some((3, written(Some(2))))),
            op(2, put(J, 1), 2, Some((4, written(Some(2))))),
        ]
    };
    fails(ops(), exact());
    fails(ops(), others());
}

#[test]
fn a_revision_going_backwards_fails() {
    // A read that began after a write at revision 3 completed reports revision 2.
    let ops = || {
        vec![
            op(1, put(K, 1), 1, Some((2, written(Some(2))))),
            op(1, put(J, 1), 3, Some((4, written(Some(3))))),
            op(2, get(K), 5, Some((6, read(Some(1), Some(2))))),
        ]
    };
    fails(ops(), exact());
    fails(ops(), others());
    // A write that began after another completed gets a lower revision.
    let ops = || {
        vec![
            op(1, put(K, 1), 1, Some((2, written(Some(3))))),
            op(2, put(J, 1), 3, Some((4, written(Some(2))))),
        ]
    };
    fails(ops(), exact());
    fails(ops(), others());
}

#[test]
fn a_txn_compare_that_succeeded_on_a_stale_value_fails() {
    fails(
        vec![
            op(1, put(K, 1), 1, Some((2, written(Some(2))))),
            op(1, put(K, 2), 3, Some((4, written(Some(3))))),
            op(2, cas(K, Some(1), 3), 5, Some((6, swapped(true, Some(4))))),
        ],
        exact(),
    );
    // On a stale mod revision.
    fails(
        vec![
            op(1, put(K, 1), 1, Some((2, written(Some(2))))),
            op(1, put(K, 2), 3, Some((4, written(Some(3))))),
            op(2, cas_rev(K, 2, 3), 5, Some((6, swapped(true, Some(4))))),
        ],
        exact(),
    );
    // The same compare on the current mod revision is fine.
    ok(
        vec![
            op(1, put(K, 1), 1, Some((2, written(Some(2))))),
            op(1, put(K, 2), 3, Some((4, written(Some(3))))),
            op(2, cas_rev(K, 3, 3), 5, Some((6, swapped(true, Some(4))))),
        ],
        exact(),
    );
}

#[test]
fn a_skipped_revision_needs_another_writer() {
    let ops = || {
        vec![
            op(1, put(K, 1), 1, Some((2, written(Some(2))))),
            op(1, put(K, 2), 3, Some((4, written(Some(4))))),
        ]
    };
    fails(ops(), exact());
    ok(ops(), others());
    // An unknown write of this history fills the gap.
    let mut with_unknown = ops();
    with_unknown.push(op(2, put(J, 9), 2, None));
    ok(with_unknown, exact());
}

#[test]
fn an_unknown_write_read_later_with_its_revision() {
    // Other writers: the unknown put's revision is only bounded until a read names it.
    ok(
        vec![
            op(1, put(K, 1), 1, Some((2, written(Some(4))))),
            op(1, put(K, 2), 3, None),
            op(2, get(K), 5, Some((6, read_meta(2, 4, 7, 2, 8)))),
            op(2, cas_rev(K, 7, 3), 7, Some((8, swapped(true, Some(9))))),
        ],
        others(),
    );
    // Its revision cannot be older than the write before it.
    fails(
        vec![
            op(1, put(K, 1), 1, Some((2, written(Some(4))))),
            op(1, put(K, 2), 3, None),
            op(2, get(K), 5, Some((6, read_meta(2, 4, 4, 2, 8)))),
        ],
        others(),
    );
}

#[test]
fn a_read_reporting_a_revision_before_a_write_it_saw_fails_across_keys() {
    // The get of J returns revision 2, so it precedes the put of J at revision 3 ... but it
    // saw that put's value.
    fails(
        vec![
            op(1, put(K, 1), 1, Some((2, written(Some(2))))),
            op(1, put(J, 7), 3, Some((4, written(Some(3))))),
            op(2, get(J), 5, Some((6, read(Some(7), Some(2))))),
        ],
        exact(),
    );
}

#[test]
fn compaction_does_not_change_the_revision() {
    let compact = |rev| Op::Compact { revision: rev };
    let compacted = |rev| Response::Compact {
        revision: Some(rev),
    };
    ok(
        vec![
            op(1, put(K, 1), 1, Some((2, written(Some(2))))),
            op(1, compact(2), 3, Some((4, compacted(2)))),
            op(1, put(K, 2), 5, Some((6, written(Some(3))))),
        ],
        exact(),
    );
    fails(
        vec![
            op(1, put(K, 1), 1, Some((2, written(Some(2))))),
            op(1, compact(2), 3, Some((4, compacted(3)))),
        ],
        exact(),
    );
}

#[test]
fn a_txn_writes_every_key_at_one_revision_and_reads_its_own_writes() {
    let txn = Op::Txn(Txn {
        compares: vec![Compare {
            key: K,
            target: Target::Version(0),
        }],
        success: vec![
            TxnOp::Put { key: K, value: 1 },
            TxnOp::Put { key: J, value: 2 },
            TxnOp::Get { key: J },
        ],
        failure: vec![],
    });
    let got_j = |mod_rev| {
        synod_check::TxnResult::Get(Read {
            value: Some(2),
            meta: Some(synod_check::KeyMeta {
                create_revision: mod_rev,
                mod_revision: mod_rev,
                version: 1,
            }),
        })
    };
    let done = |mod_rev| Response::Txn {
        succeeded: true,
        results: vec![
            synod_check::TxnResult::Put,
            synod_check::TxnResult::Put,
            got_j(mod_rev),
        ],
        revision: Some(2),
    };
    ok(
        vec![
            op(1, txn.clone(), 1, Some((2, done(2)))),
            op(2, get(K), 3, Some((4, read_meta(1, 2, 2, 1, 2)))),
        ],
        exact(),
    );
    fails(vec![op(1, txn, 1, Some((2, done(1))))], exact());
}

#[test]
fn a_failed_compare_takes_the_other_branch() {
    // The failure branch reads the current value.
    let got = |v| Response::Txn {
        succeeded: false,
        results: vec![synod_check::TxnResult::Get(Read {
            value: Some(v),
            meta: None,
        })],
        revision: Some(3),
    };
    ok(
        vec![
            op(1, put(K, 1), 1, Some((2, written(Some(2))))),
            op(1, put(K, 2), 3, Some((4, written(Some(3))))),
            op(2, cas_rev(K, 2, 3), 5, Some((6, got(2)))),
        ],
        exact(),
    );
    fails(
        vec![
            op(1, put(K, 1), 1, Some((2, written(Some(2))))),
            op(1, put(K, 2), 3, Some((4, written(Some(3))))),
            op(2, cas_rev(K, 2, 3), 5, Some((6, got(1)))),
        ],
        exact(),
    );
}
