//! A fast, exact test for the most common failure, a stale read, which names the operations
//! involved (the full search only says where it got stuck).
//!
//! On a key whose writes each write a different value and that nothing deletes: if write `w`
//! wrote what get `r` returned and another write `w2` started after `w` completed and
//! completed before `r` started, then `w2` lies between them in every linearization and `r`
//! cannot return `w`'s value. Likewise a get that finds a key absent after some write to it
//! completed. Keys that do not qualify are left to the full search.

use crate::history::{History, HistoryOp};
use crate::model::{Key, Op, Response, TxnOp, Val};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StaleRead {
    /// A get returned a value no request wrote.
    NeverWritten { key: Key, read: Box<HistoryOp> },
    /// A get returned the value of a txn whose taken branch did not write it.
    NotTaken {
        key: Key,
        read: Box<HistoryOp>,
        txn: Box<HistoryOp>,
    },
    /// A get returned `seen` although a later write completed before the get began.
    Overwritten {
        key: Key,
        read: Box<HistoryOp>,
        seen: Option<Val>,
        overwritten_at: u64,
    },
}

impl fmt::Display for StaleRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StaleRead::NeverWritten { key, read } => {
                write!(f, "key {key}: read {read:?} returned a value nobody wrote")
            }
            StaleRead::NotTaken { key, read, txn } => write!(
                f,
                "key {key}: read {read:?} returned a value of a txn branch not taken {txn:?}"
            ),
            StaleRead::Overwritten {
                key,
                read,
                seen,
                overwritten_at,
            } => write!(
                f,
                "stale read on key {key}: client {} read {seen:?} (invoked at h{}), but a later \
                 write had completed at h{overwritten_at} before the read began (h = history \
                 order)",
                read.client, read.invoke
            ),
        }
    }
}

impl std::error::Error for StaleRead {}

/// The values `op` may write to keys: (key, value, whether the write certainly happened).
fn writes(o: &HistoryOp) -> Vec<(Key, Val, Option<bool>)> {
    match (&o.op, o.response()) {
        (Op::Put { key, value }, r) => vec![(*key, *value, r.map(|_| true))],
        (Op::Txn(t), r) => {
            let taken = match r {
                Some(Response::Txn { succeeded, .. }) => Some(*succeeded),
                _ => None,
            };
            let branch = |ops: &[TxnOp], happened: Option<bool>| {
                ops.iter()
                    .filter_map(move |op| match *op {
                        TxnOp::Put { key, value } => Some((key, value, happened)),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            };
            let mut w = branch(&t.success, taken);
            w.extend(branch(&t.failure, taken.map(|s| !s)));
            w
        }
        _ => Vec::new(),
    }
}

fn deletes(op: &Op) -> Vec<Key> {
    match op {
        Op::Delete { key } => vec![*key],
        Op::Txn(t) => t
            .success
            .iter()
            .chain(&t.failure)
            .filter_map(|o| match *o {
                TxnOp::Delete { key } => Some(key),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

pub fn stale_reads(history: &History) -> Result<(), StaleRead> {
    // Per key: its writes (op, value, certainly happened), and its plain gets.
    type Writes<'a> = Vec<(&'a HistoryOp, Val, Option<bool>)>;
    let mut keys: BTreeMap<Key, (Writes<'_>, Vec<&HistoryOp>, bool)> = BTreeMap::new();
    for o in history.relevant() {
        for (k, v, happened) in writes(o) {
            keys.entry(k).or_default().0.push((o, v, happened));
        }
        for k in deletes(&o.op) {
            keys.entry(k).or_default().2 = true;
        }
        if let Op::Get { key } = o.op {
            keys.entry(key).or_default().1.push(o);
        }
    }
    for (key, (writes, reads, deleted)) in keys {
        let mut writer: BTreeMap<Val, (&HistoryOp, Option<bool>)> = BTreeMap::new();
        for &(o, v, happened) in &writes {
            if writer.insert(v, (o, happened)).is_some() {
                // Not unique: the test does not apply.
                writer.clear();
                break;
            }
        }
        if deleted || (writer.is_empty() && !writes.is_empty()) {
            continue;
        }
        // Writes that took effect for sure, in invocation order, with the suffix minimum of
        // their completion times: "some write invoked after t completed by time x?"
        let mut certain: Vec<(u64, u64)> = writes
            .iter()
            .filter(|w| w.2 == Some(true))
            .filter_map(|(o, _, _)| o.complete.as_ref().map(|(done, _)| (o.invoke, *done)))
            .collect();
        certain.sort_unstable();
        let mut suffix_min = vec![u64::MAX; certain.len() + 1];
        for i in (0..certain.len()).rev() {
            suffix_min[i] = suffix_min[i + 1].min(certain[i].1);
        }
        let completed_after = |t: u64| {
            let i = certain.partition_point(|&(invoke, _)| invoke <= t);
            suffix_min[i]
        };
        for r in reads {
            let Some(Response::Get { read, .. }) = r.response() else {
                continue;
            };
            let seen = read.value;
            let overwritten_by = match seen {
                None => suffix_min[0],
                Some(v) => match writer.get(&v) {
                    None => {
                        return Err(StaleRead::NeverWritten {
                            key,
                            read: Box::new(r.clone()),
                        })
                    }
                    Some((w, Some(false))) => {
                        return Err(StaleRead::NotTaken {
                            key,
                            read: Box::new(r.clone()),
                            txn: Box::new((*w).clone()),
                        })
                    }
                    Some((w, _)) => match &w.complete {
                        Some((done, _)) => completed_after(*done),
                        None => u64::MAX,
                    },
                },
            };
            if overwritten_by < r.invoke {
                return Err(StaleRead::Overwritten {
                    key,
                    read: Box::new(r.clone()),
                    seen,
                    overwritten_at: overwritten_by,
                });
            }
        }
    }
    Ok(())
}
