//! The checker on handmade histories: each rule must pass the right delivery and fail the
//! broken ones.

use super::*;
use crate::watch_reference::tests::{del, put};

/// Revisions 2..=7: a created at 2, b at 3, a again at 4, a Txn of a and b at 5, a deleted
/// at 6, c at 7.
fn reference() -> Reference {
    let mut r = Reference::default();
    let revisions = vec![
        vec![put("a", 1, 2, 2, 1)],
        vec![put("b", 1, 3, 3, 1)],
        vec![put("a", 2, 4, 2, 2)],
        vec![put("a", 3, 5, 2, 3), put("b", 2, 5, 3, 2)],
        vec![del("a", 6)],
        vec![put("c", 1, 7, 7, 1)],
    ];
    for (i, changes) in revisions.into_iter().enumerate() {
        r.observe(1, i as i64 + 2, &changes).expect("first report");
    }
    r
}

fn spec(key: &str, range_end: &str) -> WatchSpec {
    WatchSpec {
        key: Bytes::copy_from_slice(key.as_bytes()),
        range_end: Bytes::copy_from_slice(range_end.as_bytes()),
        filter_put: false,
        filter_delete: false,
        prev_kv: false,
        progress_notify: false,
    }
}

fn at(revision: i64, compact_revision: i64) -> Emitted {
    Emitted {
        node: 1,
        revision,
        compact_revision,
    }
}

/// An event response with the given changes (and `prev_kv` from the reference if `prev`).
fn response(r: &Reference, header: i64, changes: &[Change], prev: bool) -> WatchResponse {
    let events = changes
        .iter()
        .map(|c| WatchEvent {
            kind: c.kind,
            kv: c.kv.clone(),
            prev_kv: prev
                .then(|| r.previous(&c.kv.key, c.kv.mod_revision).cloned())
                .flatten()
                .filter(|_| {
                    !(c.kind == EventKind::Put && c.kv.create_revision == c.kv.mod_revision)
                }),
        })
        .collect();
    WatchResponse {
        watch_id: 0,
        revision: header,
        events,
        ..WatchResponse::default()
    }
}

/// The changes of `rev` in the reference that `spec` wants.
fn wanted(r: &Reference, s: &WatchSpec, rev: i64) -> Vec<Change> {
    r.changes(rev)
        .expect("in the reference")
        .iter()
        .filter(|c| s.wants(c))
        .cloned()
        .collect()
}

#[test]
fn the_exact_slice_passes_in_one_or_many_responses() {
    let r = reference();
    let s = spec("a", "");
    let mut w = WatcherLog::new(s.clone(), 2);
    w.created(2, 7);
    // Catch-up: revisions 2 and 4 in one response (header = the store's), then 5 and 6.
    let mut first = wanted(&r, &s, 2);
    first.extend(wanted(&r, &s, 4));
    w.events(&response(&r, 7, &first, false), at(7, 0), &r)
        .unwrap();
    for rev in [5, 6] {
        w.events(
            &response(&r, rev, &wanted(&r, &s, rev), false),
            at(7, 0),
            &r,
        )
        .unwrap();
    }
    assert_eq!(w.cursor(), Some(7));
    assert_eq!(w.resume_from(), 7);
}

#[test]
fn a_missed_revision_is_a_gap() {
    let r = reference();
    let s = spec("a", "b"); // a only, as a range
    let mut w = WatcherLog::new(s.clone(), 3);
    w.created(3, 7);
    let e = w
        .events(&response(&r, 5, &wanted(&r, &s, 5), false), at(7, 0), &r)
        .unwrap_err();
    assert!(e.contains("revision 4 was never received"), "{e}");
}

#[test]
fn a_revision_twice_or_before_the_start_fails() {
    let r = reference();
    let s = spec("\0", "\0");
    let mut w = created(&s, 4, 7);
    let e = w
        .events(&response(&r, 7, &wanted(&r, &s, 3), false), at(7, 0), &r)
        .unwrap_err();
    assert!(e.contains("revision 3 arrived"), "{e}");
    w.events(&response(&r, 4, &wanted(&r, &s, 4), false), at(7, 0), &r)
        .unwrap();
    let e = w
        .events(&response(&r, 4, &wanted(&r, &s, 4), false), at(7, 0), &r)
        .unwrap_err();
    assert!(e.contains("revision 4 arrived"), "{e}");
}

#[test]
fn a_revision_split_across_responses_fails() {
    let r = reference();
    let s = spec("\0", "\0");
    let mut w = created(&s, 5, 7);
    let both = wanted(&r, &s, 5);
    let e = w
        .events(&response(&r, 5, &both[..1], false), at(7, 0), &r)
        .unwrap_err();
    assert!(e.contains("revision 5: received"), "{e}");
}

#[test]
fn events_out_of_order_in_one_response_fail() {
    let r = reference();
    let s = spec("\0", "\0");
    let mut w = created(&s, 2, 7);
    let mut changes = wanted(&r, &s, 3);
    changes.extend(wanted(&r, &s, 2));
    let e = w
        .events(&response(&r, 7, &changes, false), at(7, 0), &r)
        .unwrap_err();
    assert!(e.contains("out of revision order"), "{e}");
}

#[test]
fn filters_select_what_is_wanted() {
    let r = reference();
    let mut s = spec("a", "");
    s.filter_delete = true;
    let mut w = created(&s, 5, 7);
    w.events(&response(&r, 5, &wanted(&r, &s, 5), false), at(7, 0), &r)
        .unwrap();
    // Revision 6 (a's delete) is filtered out: c's put at 7 is not wanted either, so a
    // progress at 7 is fine.
    w.progress(7, at(7, 0), &r).unwrap();
    // A delete the filter should have dropped.
    let mut w = created(&s, 6, 7);
    let e = w
        .events(&response(&r, 6, &[del("a", 6)], false), at(7, 0), &r)
        .unwrap_err();
    assert!(e.contains("revision 6: received [DEL a@6]"), "{e}");
}

#[test]
fn prev_kv_must_be_the_version_before() {
    let r = reference();
    let mut s = spec("a", "");
    s.prev_kv = true;
    let mut w = created(&s, 4, 7);
    w.events(&response(&r, 4, &wanted(&r, &s, 4), true), at(7, 0), &r)
        .unwrap();
    // Revision 5 with the wrong previous version (revision 2's instead of 4's).
    let mut bad = response(&r, 5, &wanted(&r, &s, 5), true);
    bad.events[0].prev_kv = Some(put("a", 1, 2, 2, 1).kv);
    let e = w.events(&bad, at(7, 0), &r).unwrap_err();
    assert!(e.contains("prev_kv PUT a=01@2"), "{e}");
    // Missing: fine only if the member had compacted past revision 4.
    let mut missing = response(&r, 5, &wanted(&r, &s, 5), true);
    missing.events[0].prev_kv = None;
    assert!(w.clone().events(&missing, at(7, 4), &r).is_err());
    w.events(&missing, at(7, 5), &r).unwrap();
    // Not asked for: none may come.
    let mut w = created(&spec("a", ""), 6, 7);
    let e = w
        .events(&response(&r, 6, &[del("a", 6)], true), at(7, 0), &r)
        .unwrap_err();
    assert!(e.contains("prev_kv PUT a=03@5"), "{e}");
}

#[test]
fn progress_vouches_for_everything_below_it() {
    let r = reference();
    let s = spec("b", "");
    // Progress at 5 without b's change at 5: a gap made visible.
    let mut w = created(&s, 4, 7);
    let e = w.progress(5, at(7, 0), &r).unwrap_err();
    assert!(e.contains("revision 5 was never received"), "{e}");
    // Progress at 4, then an event at 3 or 4: it said there was none.
    let mut w = created(&s, 4, 7);
    w.progress(4, at(7, 0), &r).unwrap();
    assert!(w
        .clone()
        .events(&response(&r, 4, &wanted(&r, &s, 3), false), at(7, 0), &r)
        .is_err());
    w.events(&response(&r, 5, &wanted(&r, &s, 5), false), at(7, 0), &r)
        .unwrap();
    // Progress below an event already received (from a member resumed on that is behind)
    // says nothing new.
    w.progress(4, at(7, 0), &r).unwrap();
    assert_eq!(w.cursor(), Some(6));
    // Beyond the member's own store.
    assert!(w.progress(8, at(7, 0), &r).is_err());
    // A future start: no progress before the store reaches it.
    let mut w = created(&s, 9, 7);
    let e = w.progress(7, at(7, 0), &r).unwrap_err();
    assert!(e.contains("below the start 9"), "{e}");
    assert_eq!(w.cursor(), Some(9));
}

#[test]
fn a_compacted_cancel_needs_a_compacted_next_revision() {
    let r = reference();
    let s = spec("a", "");
    let mut w = created(&s, 3, 7);
    w.compacted(5, at(7, 5)).unwrap();
    assert!(w.compacted(5, at(7, 4)).is_err(), "beyond the member's");
    assert!(
        w.compacted(3, at(7, 5)).is_err(),
        "watching at it is allowed"
    );
    // After receiving 4 and 5 it needs 6 on: compaction at 6 is no reason.
    let mut events = wanted(&r, &s, 4);
    events.extend(wanted(&r, &s, 5));
    w.events(&response(&r, 7, &events, false), at(7, 0), &r)
        .unwrap();
    assert!(w.compacted(6, at(7, 6)).is_err());
    w.compacted(7, at(7, 7)).unwrap();
    // A progress on the stream vouches as much.
    w.events(&response(&r, 6, &wanted(&r, &s, 6), false), at(7, 0), &r)
        .unwrap();
    w.progress(7, at(7, 0), &r).unwrap();
    assert!(w.compacted(8, at(8, 8)).is_err());
    // Resumed elsewhere from the revision after its last event (etcd clients do not resume
    // from progress): that member may cancel it for a compaction above that.
    assert_eq!(w.resume_from(), 7);
    w.created(7, 8);
    w.compacted(8, at(8, 8)).unwrap();
    assert!(w.compacted(7, at(8, 8)).is_err());
}

#[test]
fn a_resume_continues_without_gap_or_duplicate() {
    let r = reference();
    let s = spec("\0", "\0");
    let mut w = WatcherLog::new(s.clone(), 0);
    w.created(0, 3); // placed at 4
    w.events(&response(&r, 4, &wanted(&r, &s, 4), false), at(4, 0), &r)
        .unwrap();
    assert_eq!(w.resume_from(), 5);
    // Resumed on a member that already applied 5..=7: it catches up from 5.
    w.created(w.resume_from(), 7);
    let mut dup = wanted(&r, &s, 4);
    dup.extend(wanted(&r, &s, 5));
    assert!(w
        .clone()
        .events(&response(&r, 7, &dup, false), at(7, 0), &r)
        .is_err());
    let skipped = wanted(&r, &s, 6);
    assert!(w
        .clone()
        .events(&response(&r, 7, &skipped, false), at(7, 0), &r)
        .is_err());
    let mut rest = wanted(&r, &s, 5);
    rest.extend(wanted(&r, &s, 6));
    rest.extend(wanted(&r, &s, 7));
    w.events(&response(&r, 7, &rest, false), at(7, 0), &r)
        .unwrap();
}

#[test]
fn deletes_at_the_compaction_revision_are_not_optional() {
    let r = reference();
    let all = spec("\0", "\0");
    // Revision 6 is a's delete only: a member compacted at 6 still has it (etcd would not).
    let mut w = created(&all, 6, 7);
    let e = w
        .events(&response(&r, 7, &wanted(&r, &all, 7), false), at(7, 6), &r)
        .unwrap_err();
    assert!(
        e.contains("revision 6 was never received: [DEL a@6]"),
        "{e}"
    );
}

#[test]
fn ranges_follow_etcd() {
    let one = spec("b", "");
    assert!(one.covers(b"b") && !one.covers(b"ba"));
    let from = spec("b", "\0");
    assert!(from.covers(b"b") && from.covers(b"zz") && !from.covers(b"a"));
    let range = spec("b", "c");
    assert!(range.covers(b"bzz") && !range.covers(b"c"));
    assert_eq!(format!("{range}"), "[b..c)");
}

/// A watcher already created from `start`, the member at `header`.
fn created(spec: &WatchSpec, start: i64, header: i64) -> WatcherLog {
    let mut w = WatcherLog::new(spec.clone(), start);
    w.created(start, header);
    w
}
