//! The linearizability check of a client history against the key-value model
//! ([`crate::model`]), by the search in [`crate::search`].
//!
//! A history in which nothing reports or compares a revision splits into independent parts
//! (keys, joined where a txn names several): it is linearizable iff each part is, and the
//! parts are searched one by one. Revisions are one counter over all keys, so a history that
//! records them is searched whole.
//!
//! Unknown puts whose value nobody ever read or compared against are interchangeable per key
//! ("junk": all they can do is hide the current value, to explain a failed compare, or use up
//! a revision and a version), so they write one shared junk value and form one class per key
//! for the search. The reduction is exact: nothing can tell their values apart.

use crate::history::{History, HistoryOp};
use crate::model::{Key, KvModel, Op, Response, Semantics, Target, TxnResult, Val};
use crate::search::{search, Call, Deepest, Outcome};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Most search steps per independent part before the check gives up (reported as a failure:
/// an unchecked history must not pass silently).
pub const STEPS_MAX: u64 = 50_000_000;

/// The value junk puts write: clients must never write it.
pub const JUNK: Val = u64::MAX;

/// Why a history failed the check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckError {
    /// No linearization exists: at most `linearized` of the part's `ops` operations could be
    /// ordered, and then `culprit` fit nowhere.
    NotLinearizable {
        keys: Vec<Key>,
        ops: usize,
        linearized: usize,
        culprit: Box<HistoryOp>,
    },
    /// The search ran out of steps before deciding.
    GaveUp {
        keys: Vec<Key>,
        ops: usize,
        linearized: usize,
        culprit: Box<HistoryOp>,
    },
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (keys, ops, linearized, culprit) = match self {
            CheckError::NotLinearizable {
                keys,
                ops,
                linearized,
                culprit,
            } => {
                write!(f, "not linearizable: ")?;
                (keys, ops, linearized, culprit)
            }
            CheckError::GaveUp {
                keys,
                ops,
                linearized,
                culprit,
            } => {
                write!(f, "search gave up after {STEPS_MAX} steps: ")?;
                (keys, ops, linearized, culprit)
            }
        };
        write!(
            f,
            "keys {keys:?}: at most {linearized} of {ops} operations linearize, then client \
             {}'s {:?} -> {} (invoked at h{}",
            culprit.client,
            culprit.op,
            match &culprit.complete {
                Some((_, r)) => format!("{r:?}"),
                None => "unknown".to_string(),
            },
            culprit.invoke
        )?;
        if let Some((t, _)) = &culprit.complete {
            write!(f, ", returned at h{t}")?;
        }
        write!(f, ") fits nowhere")
    }
}

impl std::error::Error for CheckError {}

/// Checks that `history` is linearizable for a store behaving as `semantics` says.
pub fn check(history: &History, semantics: Semantics) -> Result<(), CheckError> {
    let ops: Vec<&HistoryOp> = history.relevant().collect();
    for part in parts(&ops, semantics) {
        check_part(&part, semantics)?;
    }
    Ok(())
}

/// The independent parts of a history (see the module comment), in key order.
fn parts<'a>(ops: &[&'a HistoryOp], semantics: Semantics) -> Vec<Vec<&'a HistoryOp>> {
    let whole = KvModel::for_ops(semantics, ops.iter().map(|o| (&o.op, o.response())));
    if whole.track_revisions {
        return vec![ops.to_vec()];
    }
    // Union-find over keys; an operation naming no key (a compaction) changes nothing
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
    for o in ops {
        let keys = o.op.keys();
        if let Some((&first, rest)) = keys.split_first() {
            let a = root(&mut parent, first);
            for &k in rest {
                let b = root(&mut parent, k);
                parent.insert(b, a);
            }
        }
    }
    let mut by_root: BTreeMap<Key, Vec<&HistoryOp>> = BTreeMap::new();
    for o in ops {
        if let Some(&k) = o.op.keys().first() {
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
                if let Some(v) = read.value {
                    seen.insert((*key, v));
                }
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
                            if let Some(v) = read.value {
                                seen.insert((op.key(), v));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    seen
}

fn check_part(ops: &[&HistoryOp], semantics: Semantics) -> Result<(), CheckError> {
    let model = KvModel::for_ops(semantics, ops.iter().map(|o| (&o.op, o.response())));
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
        })
        .collect();
    let failed = |d: Deepest| {
        let mut keys: Vec<Key> = ops.iter().flat_map(|o| o.op.keys()).collect();
        keys.sort_unstable();
        keys.dedup();
        (
            keys,
            ops.len(),
            d.linearized,
            Box::new(ops[d.culprit].clone()),
        )
    };
    match search(&model, model.initial(), &calls, STEPS_MAX) {
        Outcome::Linearizable => Ok(()),
        Outcome::NotLinearizable(d) => {
            let (keys, ops, linearized, culprit) = failed(d);
            Err(CheckError::NotLinearizable {
                keys,
                ops,
                linearized,
                culprit,
            })
        }
        Outcome::GaveUp(d) => {
            let (keys, ops, linearized, culprit) = failed(d);
            Err(CheckError::GaveUp {
                keys,
                ops,
                linearized,
                culprit,
            })
        }
    }
}
