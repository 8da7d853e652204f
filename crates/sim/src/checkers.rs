//! The properties every seed must satisfy, and what a failure looks like.
//!
//! 1. Agreement: every slot any replica ever delivers (before or after a restart) holds the
//!    same value everywhere. Checked online, at each delivery, so the trace stops right there.
//! 2. No acknowledged command lost: after the liveness phase every replica's state machine has
//!    applied every command a client saw acknowledged.
//! 3. The client history is linearizable (Wing–Gong/Lowe search, see `linearizability`).
//! 4. Liveness: once every fault is healed, a fresh write commits and every replica catches
//!    up within a stated bound (a replica whose disk refused to start is not healed and is
//!    left out; corruption never takes away the majority of healthy disks).
//! 5. Storage: a restart never accepts a log damaged in a way the storage said it would
//!    detect ("corruption served"), and never refuses an undamaged one.

use crate::client::{History, HistoryOp};
use crate::ops::{KvOp, KvResult};
use crate::trace::describe_value;
use std::collections::BTreeMap;
use std::fmt;
use synod_paxos::{NodeId, SharedValue, Slot};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViolationKind {
    /// Two replicas delivered different values for one slot.
    Agreement,
    /// An acknowledged command is missing from a replica's applied state.
    LostWrite,
    /// The client history has no linearization.
    Linearizability,
    /// The healed cluster made no progress within the bound.
    Liveness,
    /// The engine broke its driver contract (order of deliveries, persistence sequencing).
    Contract,
    /// The engine (or the simulator) panicked: an internal assertion fired.
    Panic,
    /// A restart accepted a log with damage `corrupt_record` reported as detectable: an engine
    /// would have started from corrupted state.
    CorruptionServed,
    /// A restart refused a disk nobody damaged.
    StorageRefused,
}

#[derive(Clone, Debug)]
pub struct Violation {
    pub kind: ViolationKind,
    /// Simulated time of detection, in microseconds.
    pub at_us: u64,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} violation at {}.{:03}ms: {}",
            self.kind,
            self.at_us / 1000,
            self.at_us % 1000,
            self.detail
        )
    }
}

/// Every value ever delivered per slot, with the replica that delivered it first.
#[derive(Debug, Default)]
pub struct Agreement {
    chosen: BTreeMap<Slot, (SharedValue, NodeId)>,
}

impl Agreement {
    /// Records that `node` delivered `value` in `slot`. `Ok(true)` when the slot was new.
    pub fn observe(
        &mut self,
        node: NodeId,
        slot: Slot,
        value: &SharedValue,
    ) -> Result<bool, String> {
        match self.chosen.get(&slot) {
            None => {
                self.chosen.insert(slot, (value.clone(), node));
                Ok(true)
            }
            Some((v, _)) if std::sync::Arc::ptr_eq(v, value) || **v == **value => Ok(false),
            Some((v, first)) => Err(format!(
                "slot {slot}: node {first} delivered {} but node {node} delivered {}",
                describe_value(v),
                describe_value(value)
            )),
        }
    }

    /// The highest slot any replica delivered.
    pub fn highest_slot(&self) -> Slot {
        self.chosen.keys().next_back().copied().unwrap_or(0)
    }
}

/// Checks the history: first a fast, exact test for the most common failure (a stale read,
/// which names the operations involved), then the full linearizability search.
pub fn check_linearizable(history: &History) -> Result<(), String> {
    stale_reads(history)?;
    crate::linearizability::check(history)
}

/// Finds a read that returned a value already overwritten before the read began. Every write
/// writes a unique value and nothing deletes, so if write `w` wrote what read `r` returned and
/// another write `w2` started after `w` completed and completed before `r` started, then `w2`
/// lies between them in every linearization and `r` cannot return `w`'s value. Likewise a
/// read that finds a key absent after some write to it completed.
pub fn stale_reads(history: &History) -> Result<(), String> {
    let mut keys: BTreeMap<u64, Vec<&HistoryOp>> = BTreeMap::new();
    for op in history.relevant() {
        keys.entry(op.op.key()).or_default().push(op);
    }
    for (key, ops) in keys {
        // Writes that took effect for sure, in invocation order, with the suffix minimum of
        // their completion times: "some write invoked after t completed by time x?"
        let mut writes: Vec<(u64, u64)> = ops
            .iter()
            .filter_map(|o| match (o.op, o.complete) {
                (KvOp::Put { .. }, Some((done, _)))
                | (KvOp::Cas { .. }, Some((done, KvResult::Swapped(true)))) => {
                    Some((o.invoke, done))
                }
                _ => None,
            })
            .collect();
        writes.sort_unstable();
        let mut suffix_min = vec![u64::MAX; writes.len() + 1];
        for i in (0..writes.len()).rev() {
            suffix_min[i] = suffix_min[i + 1].min(writes[i].1);
        }
        let completed_after = |t: u64| {
            let i = writes.partition_point(|&(invoke, _)| invoke <= t);
            suffix_min[i]
        };
        let writer: BTreeMap<u64, &HistoryOp> = ops
            .iter()
            .filter_map(|o| match o.op {
                KvOp::Put { value, .. } => Some((value, *o)),
                KvOp::Cas { new, .. } => Some((new, *o)),
                KvOp::Get { .. } => None,
            })
            .collect();
        for r in &ops {
            let (KvOp::Get { .. }, Some((_, KvResult::Value(seen)))) = (r.op, r.complete) else {
                continue;
            };
            let overwritten_by = match seen {
                None => suffix_min[0],
                Some(v) => match writer.get(&v) {
                    None => {
                        return Err(format!(
                            "key {key}: read {r:?} returned a value nobody wrote"
                        ))
                    }
                    Some(w) => match w.complete {
                        Some((_, KvResult::Swapped(false))) => {
                            return Err(format!(
                                "key {key}: read {r:?} returned the value of a failed CAS {w:?}"
                            ))
                        }
                        Some((done, _)) => completed_after(done),
                        None => u64::MAX,
                    },
                },
            };
            if overwritten_by < r.invoke {
                return Err(format!(
                    "stale read on key {key}: client {} read {seen:?} (invoked at h{}), but a \
                     later write had completed at h{} before the read began (h = history \
                     order, shown as [h..] in the trace)",
                    r.client, r.invoke, overwritten_by
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(client, op, invoke, complete)`.
    type Row = (u64, KvOp, u64, Option<(u64, KvResult)>);

    fn history(ops: &[Row]) -> History {
        let mut h = History::default();
        for &(client, op, invoke, complete) in ops {
            h.ops.push(HistoryOp {
                client,
                op,
                invoke,
                complete,
                discarded: false,
            });
        }
        h
    }

    const PUT1: KvOp = KvOp::Put { key: 1, value: 10 };
    const PUT2: KvOp = KvOp::Put { key: 1, value: 20 };
    const GET: KvOp = KvOp::Get { key: 1 };

    #[test]
    fn stale_read_after_overwrite_is_caught() {
        let h = history(&[
            (1, PUT1, 1, Some((2, KvResult::Written))),
            (1, PUT2, 3, Some((4, KvResult::Written))),
            (2, GET, 5, Some((6, KvResult::Value(Some(10))))),
        ]);
        assert!(stale_reads(&h).unwrap_err().contains("stale read"));
    }

    #[test]
    fn concurrent_overwrite_is_not_stale() {
        let h = history(&[
            (1, PUT1, 1, Some((2, KvResult::Written))),
            (1, PUT2, 3, Some((6, KvResult::Written))),
            (2, GET, 4, Some((5, KvResult::Value(Some(10))))),
            (3, PUT1, 7, None),
        ]);
        assert_eq!(stale_reads(&h), Ok(()));
    }

    #[test]
    fn reading_absent_after_a_write_is_stale() {
        let h = history(&[
            (1, PUT1, 1, Some((2, KvResult::Written))),
            (2, GET, 3, Some((4, KvResult::Value(None)))),
        ]);
        assert!(stale_reads(&h).is_err());
    }

    #[test]
    fn reading_a_value_never_written_is_caught() {
        let h = history(&[(2, GET, 3, Some((4, KvResult::Value(Some(99)))))]);
        assert!(stale_reads(&h).unwrap_err().contains("nobody wrote"));
    }

    #[test]
    fn agreement_rejects_a_second_value() {
        use std::sync::Arc;
        use synod_paxos::Value;
        let mut a = Agreement::default();
        assert_eq!(a.observe(1, 5, &Arc::new(Value::Noop)), Ok(true));
        assert_eq!(a.observe(2, 5, &Arc::new(Value::Noop)), Ok(false));
        let other = Arc::new(Value::Commands(Vec::new()));
        assert!(a.observe(3, 5, &other).is_err());
        assert_eq!(a.highest_slot(), 5);
    }
}
