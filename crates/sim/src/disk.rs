//! A node's simulated disk: write batches become durable only after a random fsync latency,
//! in order; a crash loses whatever is not durable yet (optionally keeping a torn prefix).
//!
//! A batch is exactly one `Ready`'s `hard_state` + `records`, plus the messages that must
//! wait for it (`messages_after_persist`) and its `persist_seq`: the engine may only learn
//! "persisted" and those messages may only leave once the batch is on disk.

use crate::rng::Rng;
use std::collections::{BTreeMap, VecDeque};
use synod_paxos::{DurableState, HardState, LogRecord, Message, Slot};

/// One write batch on its way to the platter.
#[derive(Debug)]
pub struct Batch {
    pub persist_seq: Option<u64>,
    pub hard_state: Option<HardState>,
    pub records: Vec<LogRecord>,
    pub after_persist: Vec<Message>,
    /// Simulated time at which the batch is durable.
    pub done_at_us: u64,
}

/// What a crash kept of the writes in flight, for the trace.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CrashLoss {
    pub batches_lost: usize,
    pub batches_kept: usize,
    pub torn_records_kept: usize,
}

#[derive(Debug)]
pub struct Disk {
    hard_state: HardState,
    /// The latest durable record per slot.
    records: BTreeMap<Slot, LogRecord>,
    pending: VecDeque<Batch>,
}

impl Disk {
    /// A fresh member's disk, holding the bootstrap state.
    pub fn new(bootstrap: DurableState) -> Disk {
        let mut disk = Disk {
            hard_state: bootstrap.hard_state,
            records: BTreeMap::new(),
            pending: VecDeque::new(),
        };
        for r in bootstrap.records {
            disk.records.insert(r.slot, r);
        }
        disk
    }

    /// Queues a batch. Batches complete in submission order (one log file, one fsync queue),
    /// so a batch is never durable before an earlier one. Returns its completion time.
    pub fn write(&mut self, mut batch: Batch, now_us: u64, latency_us: u64) -> u64 {
        let after_previous = self.pending.back().map_or(0, |b| b.done_at_us);
        batch.done_at_us = (now_us + latency_us).max(after_previous);
        let done = batch.done_at_us;
        self.pending.push_back(batch);
        done
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Completes the oldest pending batch (its fsync returned): it becomes durable. Returns
    /// its persist sequence number and the messages that waited for it.
    pub fn complete_next(&mut self) -> Option<(Option<u64>, Vec<Message>)> {
        let batch = self.pending.pop_front()?;
        self.make_durable(batch.hard_state, batch.records);
        Some((batch.persist_seq, batch.after_persist))
    }

    fn make_durable(&mut self, hard_state: Option<HardState>, records: Vec<LogRecord>) {
        if let Some(hs) = hard_state {
            self.hard_state = hs;
        }
        for r in records {
            self.records.insert(r.slot, r);
        }
    }

    /// The process died: writes not yet durable are lost. With `torn`, a random prefix of the
    /// pending batches may survive whole, and a prefix of the next one's records without its
    /// hard state. Both are legal outcomes of a crash mid-write, and neither can hurt: nothing
    /// that depended on those writes was sent yet.
    pub fn crash(&mut self, rng: &mut Rng, torn: bool) -> CrashLoss {
        let pending = std::mem::take(&mut self.pending);
        let mut loss = CrashLoss::default();
        let keep = if torn && !pending.is_empty() {
            rng.below(pending.len() as u64 + 1) as usize
        } else {
            0
        };
        for (i, batch) in pending.into_iter().enumerate() {
            if i < keep {
                self.make_durable(batch.hard_state, batch.records);
                loss.batches_kept += 1;
            } else if i == keep && torn && !batch.records.is_empty() && rng.chance(0.5) {
                let n = rng.below(batch.records.len() as u64 + 1) as usize;
                let records: Vec<LogRecord> = batch.records.into_iter().take(n).collect();
                loss.torn_records_kept = records.len();
                loss.batches_lost += 1;
                self.make_durable(None, records);
            } else {
                loss.batches_lost += 1;
            }
        }
        loss
    }

    /// What a restarting replica reads back: the last durable hard state and the latest
    /// durable record per slot, in slot order.
    pub fn recover(&self) -> DurableState {
        DurableState {
            hard_state: self.hard_state,
            records: self.records.values().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use synod_paxos::{Ballot, Membership, Value};

    fn record(slot: Slot) -> LogRecord {
        LogRecord {
            slot,
            ballot: Ballot::new(1, 1),
            value: Arc::new(Value::Noop),
            chosen: false,
        }
    }

    fn batch(slots: &[Slot]) -> Batch {
        Batch {
            persist_seq: Some(1),
            hard_state: None,
            records: slots.iter().map(|&s| record(s)).collect(),
            after_persist: Vec::new(),
            done_at_us: 0,
        }
    }

    #[test]
    fn batches_complete_in_order_and_crash_loses_pending() {
        let members = Membership::new([1, 2, 3]).unwrap();
        let mut disk = Disk::new(DurableState::bootstrap(&members));
        let first = disk.write(batch(&[2]), 0, 500);
        let second = disk.write(batch(&[3]), 10, 100);
        assert!(second >= first, "a later batch never completes first");
        disk.complete_next();
        let loss = disk.crash(&mut Rng::new(1), false);
        assert_eq!(loss.batches_lost, 1);
        let slots: Vec<Slot> = disk.recover().records.iter().map(|r| r.slot).collect();
        assert_eq!(slots, vec![1, 2]);
    }
}
