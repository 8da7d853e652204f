//! The properties every seed must satisfy, and what a failure looks like.
//!
//! 1. Agreement: every slot any replica ever delivers (before or after a restart) holds the
//!    same value everywhere. Checked online, at each delivery, so the trace stops right there.
//! 2. No acknowledged write lost: after the liveness phase every replica's store holds every
//!    write a client saw acknowledged, at its revision.
//! 3. The client history, with the revisions the replicas answered, is linearizable under
//!    etcd's semantics (synod-check: a stale-read test, then Lowe's search).
//! 4. Liveness: once every fault is healed, a fresh write commits and every replica catches
//!    up within a stated bound (a replica whose disk refused to start is not healed and is
//!    left out; corruption never takes away the majority of healthy disks).
//! 5. Storage: a restart never accepts a log damaged in a way the storage said it would
//!    detect ("corruption served"), and never refuses an undamaged one.
//! 6. Determinism: every store lists the same changes for a revision (watch_reference.rs).
//! 7. Watch history: every watcher receives exactly its slice of that history, in order,
//!    whole revisions, no gap, no duplicate, across resumes on other members; progress and
//!    compaction answers are truthful (watch_check.rs).
//! 8. Lease safety: no expiry that takes effect was proposed before the TTL of the lease's
//!    last acknowledged grant or keep-alive passed in real time since it was sent; after
//!    healing, a lease nobody keeps alive is revoked within a bound (lease_check.rs).

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
    /// Two replicas' stores list different changes for one revision.
    Determinism,
    /// A watcher received something other than its slice of the history, or a progress or
    /// compaction answer that was not true.
    Watch,
    /// A lease expired before its TTL passed since an acknowledged grant or keep-alive.
    LeaseSafety,
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

#[cfg(test)]
mod tests {
    use super::*;

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
