//! Linearizability by brute force: some subset of the unknown operations plus every known
//! one, in some order that respects real time, gives every recorded answer.

use super::store::{matches, Store};
use synod_check::search::Model;
use synod_check::{HistoryOp, KvModel, Semantics};

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

/// Against the checker's own model, tracking everything and without the checker's
/// reductions: for semantics the reference store does not cover (other writers).
pub fn linearizable_by_model(ops: &[HistoryOp], semantics: Semantics) -> bool {
    let model = KvModel::new(semantics);
    fn orders(
        model: &KvModel,
        ops: &[HistoryOp],
        left: &[usize],
        state: &<KvModel as Model>::State,
    ) -> bool {
        left.is_empty()
            || left.iter().any(|&i| {
                if !minimal(ops, left, i) {
                    return false;
                }
                let (op, r) = (&ops[i].op, ops[i].response());
                let rest: Vec<usize> = left.iter().copied().filter(|&j| j != i).collect();
                (0..model.choices(op, r)).any(|c| {
                    model
                        .step(state, op, r, c)
                        .is_some_and(|next| orders(model, ops, &rest, &next))
                })
            })
    }
    subsets(ops, |chosen| orders(&model, ops, chosen, &model.initial()))
}
