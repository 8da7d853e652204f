//! What reads say about the request that created a revision, for placing writes whose
//! outcome is unknown. All of it is exact (only one request creates a revision, and a key's
//! version counts its puts since it was created), so it only removes placements no
//! linearization has:
//! - a key some read found last modified at `r` was put there, with the value read, by the
//!   request that created `r`;
//! - a value only one request may write, read with mod revision `m`, was written at `m`;
//! - two reads of one key in one generation, at mod revisions `m1 < m2` with versions
//!   `v1`, `v2`, say that exactly `v2 - v1` requests put the key in `(m1, m2]`: if the
//!   requests that answered with those revisions account for all of them, no other request
//!   put the key there.

use crate::op::{Key, Op, Read, Response, Rev, TxnOp, TxnResult, Val};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub(crate) struct Evidence {
    /// Per revision: the keys reads found last modified there, with their values.
    modified: BTreeMap<Rev, Vec<(Key, Val)>>,
    /// Per (key, value) that only one request of the history may write: the revisions at
    /// which reads found it.
    sole: BTreeMap<(Key, Val), Vec<Rev>>,
    /// Per key: revision ranges `(after, upto]`, sorted and disjoint, in which no request
    /// but those that answered puts it.
    accounted: BTreeMap<Key, Vec<(Rev, Rev)>>,
}

/// The puts `op` may make: both branches of a txn.
fn puts(op: &Op) -> Vec<(Key, Val)> {
    let mut puts: Vec<(Key, Val)> = match op {
        Op::Put { key, value } => vec![(*key, *value)],
        Op::Txn(t) => t
            .success
            .iter()
            .chain(&t.failure)
            .filter_map(|o| match *o {
                TxnOp::Put { key, value } => Some((key, value)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    puts.sort_unstable();
    puts.dedup();
    puts
}

/// The keys a request put, by its answer.
fn answered_puts(op: &Op, response: &Response) -> Vec<Key> {
    match (op, response) {
        (Op::Put { key, .. }, Response::Put { .. }) => vec![*key],
        (Op::Txn(t), Response::Txn { succeeded, .. }) => {
            let ops = if *succeeded { &t.success } else { &t.failure };
            let mut keys: Vec<Key> = ops
                .iter()
                .filter_map(|o| match *o {
                    TxnOp::Put { key, .. } => Some(key),
                    _ => None,
                })
                .collect();
            keys.dedup();
            keys
        }
        _ => Vec::new(),
    }
}

/// Every key a response read with its metadata: (key, read).
fn reads<'a>(op: &'a Op, response: &'a Response) -> Vec<(Key, &'a Read)> {
    match (op, response) {
        (Op::Get { key }, Response::Get { read, .. }) => vec![(*key, read)],
        (_, Response::Range { reads, .. }) => reads.iter().map(|(k, r)| (*k, r)).collect(),
        (
            Op::Txn(t),
            Response::Txn {
                succeeded, results, ..
            },
        ) => {
            let ops = if *succeeded { &t.success } else { &t.failure };
            ops.iter()
                .zip(results)
                .filter_map(|(o, r)| match r {
                    TxnResult::Get(r) => Some((o.key(), r)),
                    _ => None,
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

impl Evidence {
    pub(crate) fn gather(ops: &[(&Op, Option<&Response>)]) -> Evidence {
        let mut e = Evidence::default();
        let mut writers: BTreeMap<(Key, Val), usize> = BTreeMap::new();
        // (key, value, create revision, mod revision, version)
        let mut seen: Vec<(Key, Val, Rev, Rev, u64)> = Vec::new();
        // Per key, the revisions at which answered requests put it.
        let mut answered: BTreeMap<Key, Vec<Rev>> = BTreeMap::new();
        for &(op, response) in ops {
            for p in puts(op) {
                *writers.entry(p).or_default() += 1;
            }
            let Some(response) = response else {
                continue;
            };
            if let Some(r) = response.created_revision(op) {
                for k in answered_puts(op, response) {
                    answered.entry(k).or_default().push(r);
                }
            }
            for (k, read) in reads(op, response) {
                if let (Some(v), Some(m)) = (read.value, read.meta) {
                    seen.push((k, v, m.create_revision, m.mod_revision, m.version));
                }
            }
        }
        for revs in answered.values_mut() {
            revs.sort_unstable();
        }
        seen.sort_unstable();
        seen.dedup();
        for &(k, v, _, m, _) in &seen {
            let at = e.modified.entry(m).or_default();
            if !at.contains(&(k, v)) {
                at.push((k, v));
            }
            if writers.get(&(k, v)) == Some(&1) {
                e.sole.entry((k, v)).or_default().push(m);
            }
        }
        // Per key and generation (create revision): (mod revision, version) points, with
        // the creation itself at version 1.
        let mut generations: BTreeMap<(Key, Rev), Vec<(Rev, u64)>> = BTreeMap::new();
        for &(k, _, c, m, version) in &seen {
            let points = generations.entry((k, c)).or_insert_with(|| vec![(c, 1)]);
            points.push((m, version));
        }
        for ((k, _), mut points) in generations {
            points.sort_unstable();
            points.dedup();
            let known = answered.get(&k).map_or(&[][..], Vec::as_slice);
            let count = |after: Rev, upto: Rev| {
                known.partition_point(|&r| r <= upto) - known.partition_point(|&r| r <= after)
            };
            let ranges = e.accounted.entry(k).or_default();
            for w in points.windows(2) {
                let ((m1, v1), (m2, v2)) = (w[0], w[1]);
                if m1 < m2 && v2.checked_sub(v1) == Some(count(m1, m2) as u64) {
                    ranges.push((m1, m2));
                }
            }
        }
        for ranges in e.accounted.values_mut() {
            ranges.sort_unstable();
            let mut merged: Vec<(Rev, Rev)> = Vec::with_capacity(ranges.len());
            for &(a, b) in ranges.iter() {
                match merged.last_mut() {
                    Some(last) if a <= last.1 => last.1 = last.1.max(b),
                    _ => merged.push((a, b)),
                }
            }
            *ranges = merged;
        }
        e
    }

    /// Whether the request that created revision `r` may have put exactly `written`
    /// (key, value) pairs; `answered`: whether it is the request that answered with `r`.
    pub(crate) fn admits(&self, r: Rev, written: &[(Key, Val)], answered: bool) -> bool {
        if let Some(seen) = self.modified.get(&r) {
            if !seen.iter().all(|p| written.contains(p)) {
                return false;
            }
        }
        written.iter().all(|&(k, v)| {
            self.sole.get(&(k, v)).is_none_or(|revs| revs.contains(&r))
                && (answered
                    || self.accounted.get(&k).is_none_or(|ranges| {
                        let i = ranges.partition_point(|&(_, upto)| upto < r);
                        ranges.get(i).is_none_or(|&(after, _)| r <= after)
                    }))
        })
    }
}
