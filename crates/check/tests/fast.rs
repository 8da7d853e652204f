//! The fast tests on their own: stale reads and revision order, and what they name.

mod support;

use support::*;
use synod_check::{revision_order, stale_reads, HistoryOp, RevisionOrder, StaleRead};

const K: u64 = 1;

fn stale(ops: Vec<HistoryOp>) -> Result<(), StaleRead> {
    stale_reads(&history(ops))
}

#[test]
fn a_read_of_an_overwritten_value_is_stale() {
    let e = stale(vec![
        op(1, put(K, 10), 1, Some((2, written(None)))),
        op(1, put(K, 20), 3, Some((4, written(None)))),
        op(2, get(K), 5, Some((6, read(Some(10), None)))),
    ])
    .unwrap_err();
    let StaleRead::Overwritten {
        written,
        overwritten,
        ..
    } = &e
    else {
        panic!("{e}");
    };
    assert_eq!(written.as_ref().map(|w| w.invoke), Some(1));
    assert_eq!(overwritten.invoke, 3);
}

#[test]
fn a_read_concurrent_with_the_overwrite_is_not_stale() {
    assert_eq!(
        stale(vec![
            op(1, put(K, 10), 1, Some((2, written(None)))),
            op(1, put(K, 20), 3, Some((6, written(None)))),
            op(2, get(K), 4, Some((5, read(Some(10), None)))),
            op(3, put(K, 10 + 1), 7, None),
        ]),
        Ok(())
    );
}

#[test]
fn reading_absent_after_a_write_is_stale() {
    assert!(matches!(
        stale(vec![
            op(1, put(K, 10), 1, Some((2, written(None)))),
            op(2, get(K), 3, Some((4, read(None, None)))),
        ]),
        Err(StaleRead::Overwritten { written: None, .. })
    ));
}

#[test]
fn a_value_never_written_or_only_by_a_branch_not_taken_is_caught() {
    let e = stale(vec![op(2, get(K), 3, Some((4, read(Some(99), None))))]).unwrap_err();
    assert!(e.to_string().contains("nobody wrote"), "{e}");
    let e = stale(vec![
        op(1, cas(K, Some(5), 99), 1, Some((2, swapped(false, None)))),
        op(2, get(K), 3, Some((4, read(Some(99), None)))),
    ])
    .unwrap_err();
    assert!(matches!(e, StaleRead::NotTaken { .. }), "{e}");
}

#[test]
fn keys_with_repeated_values_or_deletes_are_left_to_the_search() {
    assert_eq!(
        stale(vec![
            op(1, put(K, 10), 1, Some((2, written(None)))),
            op(1, put(K, 20), 3, Some((4, written(None)))),
            op(1, put(K, 10), 5, Some((6, written(None)))),
            op(2, get(K), 7, Some((8, read(Some(20), None)))),
        ]),
        Ok(())
    );
    assert_eq!(
        stale(vec![
            op(1, put(K, 10), 1, Some((2, written(None)))),
            op(1, delete(K), 3, Some((4, deleted(1, None)))),
            op(2, get(K), 5, Some((6, read(Some(10), None)))),
        ]),
        Ok(())
    );
}

#[test]
fn revisions_in_real_time_order_pass() {
    let h = history(vec![
        op(1, put(K, 1), 1, Some((3, written(Some(2))))),
        // Concurrent with the put: may report the revision before it.
        op(2, get(K), 2, Some((4, read(None, Some(1))))),
        op(2, get(K), 5, Some((6, read(Some(1), Some(2))))),
        op(1, delete(K), 7, Some((8, deleted(1, Some(3))))),
        // A delete of nothing creates no revision.
        op(1, delete(K), 9, Some((10, deleted(0, Some(3))))),
    ]);
    assert_eq!(revision_order(&h), Ok(()));
}

#[test]
fn a_revision_created_twice_or_not_after_an_earlier_answer_is_named() {
    let h = history(vec![
        op(1, put(K, 1), 1, Some((2, written(Some(2))))),
        op(2, put(K + 1, 1), 3, Some((4, written(Some(2))))),
    ]);
    let e = revision_order(&h).unwrap_err();
    assert!(
        matches!(&e, RevisionOrder::Duplicate { revision: 2, first, second }
            if first.client == 1 && second.client == 2),
        "{e}"
    );
    let h = history(vec![
        op(1, get(K), 1, Some((2, read(None, Some(5))))),
        op(2, put(K, 1), 3, Some((4, written(Some(5))))),
    ]);
    let e = revision_order(&h).unwrap_err();
    assert!(
        matches!(&e, RevisionOrder::Backwards { earlier, later }
            if earlier.client == 1 && later.client == 2),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("revision went back: client 2's Put"),
        "{e}"
    );
}
