//! The linearizability check of a client history against the key-value model
//! ([`crate::model`]), by the search in [`crate::search`].
//!
//! A history in which nothing reports or compares a revision splits into independent parts
//! (keys, joined where a txn names several or a range covers several): it is linearizable
//! iff each part is, and the parts are searched one by one. Revisions are one counter over
//! all keys, so a history that records them is searched whole (recorded revisions then fix
//! most of the order, which keeps that search narrow).
//!
//! Unknown puts whose value nobody ever read or compared against are interchangeable per key
//! ("junk": all they can do is hide the current value, to explain a failed compare, or use up
//! a revision and a version), so they write one shared junk value and form one class per key
//! for the search. The reduction is exact: nothing can tell their values apart.

use crate::error::{CheckError, Failure};
use crate::history::{History, HistoryOp};
use crate::model::{KvModel, Semantics, State};
use crate::op::{Key, Op, Response, Target, TxnResult, Val};
use crate::search::{search, Call, Deepest, Outcome};
use std::collections::{BTreeMap, BTreeSet};

/// Most search steps per independent part before [`check`] gives up (reported as a
/// failure). Tens of thousands of operations with revisions recorded take a few million.
pub const STEPS_MAX: u64 = 50_000_000;

/// The value junk puts write: clients must never write it.
pub const JUNK: Val = u64::MAX;

/// Checks that `history` is linearizable for a store behaving as `semantics` says: first
/// the fast tests of stale reads and revision order (their reports name the operations
/// involved), then the search.
pub fn check(history: &History, semantics: Semantics) -> Result<(), CheckError> {
    check_bounded(history, semantics, STEPS_MAX)
}

/// [`check`] with another bound on search steps per part.
pub fn check_bounded(
    history: &History,
    semantics: Semantics,
    steps_max: u64,
) -> Result<(), CheckError> {
    crate::stale::stale_reads(history).map_err(CheckError::Stale)?;
    crate::order::revision_order(history).map_err(CheckError::Revisions)?;
    let ops: Vec<&HistoryOp> = history.relevant().collect();
    for part in parts(&ops, semantics, false) {
        match check_part(&part, semantics, steps_max, false) {
            Err(gave_up @ CheckError::GaveUp { .. }) => {
                // Proving that no linearization exists can take the search very long when
                // many outcomes are unknown. Without revisions the history splits per key
                // and is searched quickly; what is not linearizable without them is not
                // with them either, so that search may still prove it.
                for sub in parts(&part, semantics, true) {
                    if let Err(e @ CheckError::NotLinearizable(_)) =
                        check_part(&sub, semantics, steps_max, true)
                    {
                        return Err(e);
                    }
                }
                return Err(gave_up);
            }
            r => r?,
        }
    }
    Ok(())
}

/// The model for `ops`; `relaxed`: ignoring every revision.
fn model_for(ops: &[&HistoryOp], semantics: Semantics, relaxed: bool) -> KvModel {
    let mut model = KvModel::for_ops(semantics, ops.iter().map(|o| (&o.op, o.response())));
    if relaxed {
        model.track_revisions = false;
    }
    model
}

/// The keys an operation touches: those it names, and those of `named` in its range. A
/// range covering no named key stands for itself by its start.
fn touched(op: &Op, named: &BTreeSet<Key>) -> Vec<Key> {
    match op.range() {
        Some((start, end)) if start < end => {
            let inside: Vec<Key> = named.range(start..end).copied().collect();
            if inside.is_empty() {
                vec![start]
            } else {
                inside
            }
        }
        Some((start, _)) => vec![start],
        None => op.keys(),
    }
}

/// The independent parts of a history (see the module comment), in key order.
fn parts<'a>(
    ops: &[&'a HistoryOp],
    semantics: Semantics,
    relaxed: bool,
) -> Vec<Vec<&'a HistoryOp>> {
    if model_for(ops, semantics, relaxed).track_revisions {
        return vec![ops.to_vec()];
    }
    let named: BTreeSet<Key> = ops.iter().flat_map(|o| o.op.keys()).collect();
    // Union-find over keys; an operation touching no key (a compaction) changes nothing
    // observable here and is left out.
    let mut parent: BTreeMap<Key, Key> = BTreeMap::new();
    fn root(parent: &mut BTreeMap<Key, Key>, k: Key) -> Key {
        let p = *parent.entry(k).or_insert(k);
        if p == k {
            return k;
        }
        let r = root(parent, p);
        parent.insert(k, r);
        r
    }
    let touches: Vec<Vec<Key>> = ops.iter().map(|o| touched(&o.op, &named)).collect();
    for keys in &touches {
        if let Some((&first, rest)) = keys.split_first() {
            let a = root(&mut parent, first);
            for &k in rest {
                let b = root(&mut parent, k);
                if a != b {
                    parent.insert(b, a);
                }
            }
        }
    }
    let mut by_root: BTreeMap<Key, Vec<&HistoryOp>> = BTreeMap::new();
    for (o, keys) in ops.iter().zip(&touches) {
        if let Some(&k) = keys.first() {
            let r = root(&mut parent, k);
            by_root.entry(r).or_default().push(o);
        }
    }
    by_root.into_values().collect()
}

/// Values some read returned or some compare names, per key.
fn observed(ops: &[&HistoryOp]) -> BTreeSet<(Key, Val)> {
    let mut seen = BTreeSet::new();
    for o in ops {
        match (&o.op, o.response()) {
            (Op::Get { key }, Some(Response::Get { read, .. })) => {
                seen.extend(read.value.map(|v| (*key, v)));
            }
            (Op::Range { .. }, Some(Response::Range { reads, .. })) => {
                seen.extend(reads.iter().filter_map(|(k, r)| r.value.map(|v| (*k, v))));
            }
            (Op::Txn(t), r) => {
                for c in &t.compares {
                    if let Target::Value(v) = c.target {
                        seen.insert((c.key, v));
                    }
                }
                if let Some(Response::Txn {
                    succeeded, results, ..
                }) = r
                {
                    let ops = if *succeeded { &t.success } else { &t.failure };
                    for (op, result) in ops.iter().zip(results) {
                        if let TxnResult::Get(read) = result {
                            seen.extend(read.value.map(|v| (op.key(), v)));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    seen
}

fn check_part(
    ops: &[&HistoryOp],
    semantics: Semantics,
    steps_max: u64,
    relaxed: bool,
) -> Result<(), CheckError> {
    let model = model_for(ops, semantics, relaxed);
    let seen = observed(ops);
    // Per operation: the junk put replacing it, and its class (the key's index).
    let mut classes: BTreeMap<Key, usize> = BTreeMap::new();
    let junk: Vec<Option<(Op, usize)>> = ops
        .iter()
        .map(|o| match o.op {
            Op::Put { key, value } if o.complete.is_none() && !seen.contains(&(key, value)) => {
                let n = classes.len();
                let class = *classes.entry(key).or_insert(n);
                Some((Op::Put { key, value: JUNK }, class))
            }
            _ => None,
        })
        .collect();
    let calls: Vec<Call<'_, Op, Response>> = ops
        .iter()
        .zip(&junk)
        .map(|(o, j)| Call {
            invoke: o.invoke,
            complete: o.complete.as_ref().map(|(t, r)| (*t, r)),
            op: j.as_ref().map_or(&o.op, |(op, _)| op),
            class: j.as_ref().map(|(_, c)| *c),
            order: order(o),
        })
        .collect();
    match search(&model, model.initial(), &calls, steps_max) {
        Outcome::Linearizable => Ok(()),
        Outcome::NotLinearizable(d) => Err(CheckError::NotLinearizable(failure(ops, &model, d))),
        Outcome::GaveUp(d) => Err(CheckError::GaveUp {
            steps_max,
            failure: failure(ops, &model, d),
        }),
    }
}

/// Where an operation goes among those that may go next: a write at its revision, a read
/// of revision `r` before the write of `r + 1`; anything without a revision first.
fn order(o: &HistoryOp) -> u64 {
    let Some(r) = o.response() else {
        return 0;
    };
    match (r.created_revision(&o.op), r.revision()) {
        (Some(created), _) => created.saturating_mul(2),
        (None, Some(header)) => header.saturating_mul(2).saturating_add(1),
        (None, None) => 0,
    }
}

fn failure(ops: &[&HistoryOp], model: &KvModel, d: Deepest<State>) -> Box<Failure> {
    let named: BTreeSet<Key> = ops.iter().flat_map(|o| o.op.keys()).collect();
    let keys: BTreeSet<Key> = ops.iter().flat_map(|o| touched(&o.op, &named)).collect();
    let culprit = ops[d.culprit].clone();
    let values = match culprit.op.range() {
        Some((start, end)) => d
            .state
            .range(start, end)
            .iter()
            .map(|(k, e)| (*k, Some(e.value)))
            .collect(),
        None => culprit
            .op
            .keys()
            .into_iter()
            .map(|k| (k, d.state.get(k).map(|e| e.value)))
            .collect(),
    };
    Box::new(Failure {
        keys: keys.into_iter().collect(),
        ops: ops.len(),
        linearized: d.linearized,
        culprit,
        recent: d.recent.iter().map(|&i| ops[i].clone()).collect(),
        revision: model.track_revisions.then_some(d.state.revision),
        values,
    })
}
