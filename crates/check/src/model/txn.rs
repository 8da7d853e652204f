//! Transactions: compares evaluated on the state before the txn, then the taken branch's
//! operations in order, every write at one new revision.

use super::{KeyState, KvModel, Revision, State};
use crate::op::{Compare, Key, Response, Rev, Target, Txn, TxnOp, TxnResult};

impl KvModel {
    /// Whether the compare holds; `None` when the model cannot tell (a revision it only
    /// bounds), which the caller resolves.
    fn compare(&self, state: &State, c: &Compare) -> Option<bool> {
        let entry = state.get(c.key);
        let revision = |f: fn(&KeyState) -> Revision, r: Rev| match entry {
            None => Some(r == 0),
            // A present key was written at some revision, and revisions start at 1.
            Some(_) if r == 0 => Some(false),
            Some(e) => match f(e) {
                Revision::Known(k) => Some(k == r),
                Revision::AtLeast(lo) if r < lo => Some(false),
                Revision::AtLeast(_) => None,
            },
        };
        match c.target {
            Target::Value(v) => Some(entry.is_some_and(|e| e.value == v)),
            Target::Version(v) => match entry {
                None => Some(v == 0),
                Some(_) if v == 0 => Some(false),
                Some(e) if self.track_versions => Some(e.version == v),
                Some(_) => None,
            },
            Target::ModRevision(r) => revision(|e| e.modified, r),
            Target::CreateRevision(r) => revision(|e| e.create, r),
        }
    }

    /// Whether `ops` run on `state` change anything (a delete of an absent key does not).
    fn branch_writes(state: &State, ops: &[TxnOp]) -> bool {
        let mut deleted: Vec<Key> = Vec::new();
        for op in ops {
            match *op {
                TxnOp::Get { .. } => {}
                TxnOp::Put { .. } => return true,
                TxnOp::Delete { key } => {
                    if state.get(key).is_some() && !deleted.contains(&key) {
                        return true;
                    }
                    deleted.push(key);
                }
            }
        }
        false
    }

    /// `choice` matters only when neither the model nor the answer tells whether the
    /// compares held: 0 takes success, 1 failure.
    pub(super) fn txn(
        &self,
        state: &State,
        txn: &Txn,
        response: Option<&Response>,
        choice: usize,
    ) -> Option<State> {
        let (recorded, succeeded_recorded, results) = match response {
            None => (None, None, None),
            Some(Response::Txn {
                succeeded,
                results,
                revision,
            }) => (*revision, Some(*succeeded), Some(results)),
            Some(_) => return None,
        };
        let mut holds = Some(true);
        for c in &txn.compares {
            match self.compare(state, c) {
                Some(false) => {
                    holds = Some(false);
                    break;
                }
                Some(true) => {}
                None => holds = None,
            }
        }
        let succeeded = match (holds, succeeded_recorded) {
            (Some(h), Some(r)) if h != r => return None,
            (Some(h), _) if choice == 0 => h,
            (Some(_), _) => return None,
            (None, Some(r)) => r,
            (None, None) => choice == 0,
        };
        let mut next = state.clone();
        if succeeded && holds.is_none() {
            // The compares held, so the revisions they name are the keys' revisions.
            self.pin_compares(&mut next, &txn.compares);
        }
        let ops = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        if results.is_some_and(|r| r.len() != ops.len()) {
            return None;
        }
        let writes = Self::branch_writes(&next, ops);
        let (revision, modified) = if writes {
            self.write_revision(&next, recorded)?
        } else {
            (self.read_revision(&next, recorded)?, Revision::AtLeast(0))
        };
        for (i, op) in ops.iter().enumerate() {
            let result = results.map(|r| r[i]);
            match (*op, result) {
                (TxnOp::Get { .. }, None) => {}
                (TxnOp::Get { key }, Some(TxnResult::Get(read))) => {
                    self.read(&mut next, key, &read)?
                }
                (TxnOp::Put { key, value }, None | Some(TxnResult::Put)) => {
                    self.put(&mut next, key, value, modified)
                }
                (TxnOp::Delete { key }, None) => next.set(key, None),
                (TxnOp::Delete { key }, Some(TxnResult::Delete { deleted })) => {
                    if deleted != u64::from(next.get(key).is_some()) {
                        return None;
                    }
                    next.set(key, None);
                }
                _ => return None,
            }
        }
        next.revision = next.revision.max(revision);
        Some(next)
    }

    fn pin_compares(&self, state: &mut State, compares: &[Compare]) {
        for c in compares {
            let Some(mut e) = state.get(c.key).copied() else {
                continue;
            };
            match c.target {
                Target::ModRevision(r) => e.modified = Revision::Known(r),
                Target::CreateRevision(r) => e.create = Revision::Known(r),
                Target::Value(_) | Target::Version(_) => continue,
            }
            state.set(c.key, Some(e));
        }
    }
}
