//! A fast, exact test for the most common failure, a stale read, which names the operations
//! involved (the full search only says where it got stuck).
//!
//! On a key whose writes each write a different value and that nothing deletes: if write `w`
//! wrote what get `r` returned and another write `w2` started after `w` completed and
//! completed before `r` started, then `w2` lies between them in every linearization and `r`
//! cannot return `w`'s value. Likewise a get that finds a key absent after some write to it
//! completed. Keys that do not qualify are left to the full search.

use crate::error::Describe;
use crate::history::{History, HistoryOp};
use crate::op::{Key, Op, Response, TxnOp, Val};
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
    /// A get returned what `written` wrote (`None`: found the key absent) although
    /// `overwritten`, invoked after `written` completed, completed before the get began.
    Overwritten {
        key: Key,
        read: Box<HistoryOp>,
        written: Option<Box<HistoryOp>>,
        overwritten: Box<HistoryOp>,
    },
}

impl fmt::Display for StaleRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StaleRead::NeverWritten { key, read } => write!(
                f,
                "key {key}: {} returned a value nobody wrote",
                Describe(read)
            ),
            StaleRead::NotTaken { key, read, txn } => write!(
                f,
                "key {key}: {} returned a value only the branch not taken of {} writes",
                Describe(read),
                Describe(txn)
            ),
            StaleRead::Overwritten {
                key,
                read,
                written,
                overwritten,
            } => {
                write!(f, "stale read on key {key}: {} saw ", Describe(read))?;
                match written {
                    Some(w) => write!(f, "the value of {}", Describe(w))?,
                    None => write!(f, "no value")?,
                }
                write!(
                    f,
                    ", but {} had overwritten it before the read began (h: positions in the \
                     history's order of invocations and completions)",
                    Describe(overwritten)
                )
            }
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

/// The fast test (see the module comment).
pub fn stale_reads(history: &History) -> Result<(), StaleRead> {
    // Per key: its writes (op, value, certainly happened), its plain gets, and whether
    // anything may delete it.
    type Writes<'a> = Vec<(&'a HistoryOp, Val, Option<bool>)>;
    let mut keys: BTreeMap<Key, (Writes<'_>, Vec<&HistoryOp>, bool)> = BTreeMap::new();
    let mut ranges: Vec<(Key, Key)> = Vec::new();
    for o in history.relevant() {
        for (k, v, happened) in writes(o) {
            keys.entry(k).or_default().0.push((o, v, happened));
        }
        for k in deletes(&o.op) {
            keys.entry(k).or_default().2 = true;
        }
        match o.op {
            Op::Get { key } => keys.entry(key).or_default().1.push(o),
            Op::DeleteRange { start, end } => ranges.push((start, end)),
            _ => {}
        }
    }
    for (key, (writes, reads, deleted)) in keys {
        let deleted = deleted || ranges.iter().any(|&(s, e)| (s..e).contains(&key));
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
        // their completion times: "which write invoked after t completed first?"
        let mut certain: Vec<(u64, u64, &HistoryOp)> = writes
            .iter()
            .filter(|w| w.2 == Some(true))
            .filter_map(|(o, _, _)| o.complete.as_ref().map(|(done, _)| (o.invoke, *done, *o)))
            .collect();
        certain.sort_unstable_by_key(|c| (c.0, c.1));
        let mut suffix_min: Vec<Option<(u64, &HistoryOp)>> = vec![None; certain.len() + 1];
        for i in (0..certain.len()).rev() {
            let here = (certain[i].1, certain[i].2);
            suffix_min[i] = Some(match suffix_min[i + 1] {
                Some(later) if later.0 < here.0 => later,
                _ => here,
            });
        }
        let completed_after = |t: u64| {
            let i = certain.partition_point(|c| c.0 <= t);
            suffix_min[i]
        };
        for r in reads {
            let Some(Response::Get { read, .. }) = r.response() else {
                continue;
            };
            let (written, overwritten) = match read.value {
                None => (None, suffix_min[0]),
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
                        Some((done, _)) => (Some(*w), completed_after(*done)),
                        None => (Some(*w), None),
                    },
                },
            };
            if let Some((at, by)) = overwritten {
                if at < r.invoke {
                    return Err(StaleRead::Overwritten {
                        key,
                        read: Box::new(r.clone()),
                        written: written.map(|w| Box::new(w.clone())),
                        overwritten: Box::new(by.clone()),
                    });
                }
            }
        }
    }
    Ok(())
}
