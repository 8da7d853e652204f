//! Linearizability by brute force: some subset of the unknown operations plus every known
//! one, in some order that respects real time, gives every recorded answer.

use super::store::{matches, Store};
use std::collections::BTreeSet;
use synod_check::{HistoryOp, Read, Response, Rev, TxnResult};

/// Orders that respect real time: nothing still to place returned before `i` was invoked.
fn minimal(ops: &[HistoryOp], left: &[usize], i: usize) -> bool {
    left.iter().all(|&j| {
        j == i
            || ops[j]
                .complete
                .as_ref()
                .is_none_or(|(t, _)| *t > ops[i].invoke)
    })
}

fn subsets(ops: &[HistoryOp], mut ok: impl FnMut(&[usize]) -> bool) -> bool {
    let ops: Vec<&HistoryOp> = ops.iter().collect();
    let unknown: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i].complete.is_none())
        .collect();
    (0..1u32 << unknown.len()).any(|mask| {
        let chosen: Vec<usize> = (0..ops.len())
            .filter(|&i| match unknown.iter().position(|&u| u == i) {
                Some(bit) => mask & (1 << bit) != 0,
                None => true,
            })
            .collect();
        ok(&chosen)
    })
}

/// Against the reference store: the exact semantics (no other writers).
pub fn linearizable(ops: &[HistoryOp]) -> bool {
    fn orders(ops: &[HistoryOp], left: &[usize], store: &Store) -> bool {
        left.is_empty()
            || left.iter().any(|&i| {
                if !minimal(ops, left, i) {
                    return false;
                }
                let mut next = store.clone();
                let actual = next.apply(&ops[i].op);
                if ops[i].response().is_some_and(|r| !matches(r, &actual)) {
                    return false;
                }
                let rest: Vec<usize> = left.iter().copied().filter(|&j| j != i).collect();
                orders(ops, &rest, &next)
            })
    }
    subsets(ops, |chosen| orders(ops, chosen, &Store::default()))
}

/// Against the reference store with other writers (on other keys): before each request the
/// revision may jump ahead. Only where a jump lands relative to the revisions the history
/// mentions matters, so the jumps tried are to each mentioned revision and to the first
/// unmentioned one after each.
pub fn linearizable_with_other_writers(ops: &[HistoryOp]) -> bool {
    let mut mentioned: BTreeSet<Rev> = BTreeSet::new();
    for o in ops {
        mention(o.response(), &mut mentioned);
    }
    fn orders(ops: &[HistoryOp], left: &[usize], store: &Store, m: &BTreeSet<Rev>) -> bool {
        left.is_empty()
            || left.iter().any(|&i| {
                if !minimal(ops, left, i) {
                    return false;
                }
                let rest: Vec<usize> = left.iter().copied().filter(|&j| j != i).collect();
                // Where the revision may stand before the request: here, or where it makes
                // a mentioned revision (or the first unmentioned one after it) the request's.
                let mut bases: BTreeSet<Rev> = BTreeSet::from([store.revision]);
                for &r in m.range(store.revision..) {
                    bases.extend([r, r + 1, r.saturating_sub(1).max(store.revision)]);
                }
                bases.into_iter().any(|base| {
                    let mut next = store.clone();
                    next.revision = base;
                    let actual = next.apply(&ops[i].op);
                    if ops[i].response().is_some_and(|r| !matches(r, &actual)) {
                        return false;
                    }
                    orders(ops, &rest, &next, m)
                })
            })
    }
    subsets(ops, |chosen| {
        orders(ops, chosen, &Store::default(), &mentioned)
    })
}

fn mention(r: Option<&Response>, m: &mut BTreeSet<Rev>) {
    let mut read = |r: &Read| {
        if let Some(meta) = r.meta {
            m.extend([meta.mod_revision, meta.create_revision]);
        }
    };
    match r {
        Some(Response::Get { read: g, .. }) => read(g),
        Some(Response::Range { reads, .. }) => reads.iter().for_each(|(_, g)| read(g)),
        Some(Response::Txn { results, .. }) => {
            for r in results {
                if let TxnResult::Get(g) = r {
                    read(g);
                }
            }
        }
        _ => {}
    }
    m.extend(r.and_then(Response::revision));
}
