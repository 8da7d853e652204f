//! Compaction, in two halves: the one that every replica must do at the same point of the
//! log, and the one that can be done a little at a time.
//!
//! A `Compact` at revision `r` changes what can be read: reads below `r` fail from the
//! moment it is applied. That is the replicated part, and it is O(1): the command sets the
//! compaction revision. Dropping the history no read can reach any more (each key's records
//! before the one current at `r`, and keys whose history ends in a tombstone at or before
//! `r`) takes time in proportion to the whole history: 84-1,388 ms on the server's core in
//! one piece, during which it answered nobody and sent no heartbeat. So it is done by
//! [`KvStore::compact_step`], a bounded amount at a time, from a cursor over the keys; the
//! server takes one step per turn of its core. Nothing observable depends on how far it got:
//! reads at `r` or later never look at the dropped records, and snapshots encode every
//! history as if it were trimmed already (snapshot.rs), so replicas that trimmed at
//! different paces still produce identical snapshots. [`KvStore::apply`] and
//! [`KvStore::apply_encoded`] finish it before they return.

use crate::error::KvError;
use crate::response::{CompactionResponse, ResponseHeader};
use crate::store::{KvStore, Record, KEY_OVERHEAD};
use bytes::Bytes;
use std::ops::Bound::{Included, Unbounded};

impl KvStore {
    /// etcd's Compact: from now on reads below `rev` fail; each key's version current at
    /// `rev`, and everything newer, stays. Does not change the revision. The history older
    /// than that is dropped by [`KvStore::compact_step`].
    pub(crate) fn compact(&mut self, rev: i64) -> Result<CompactionResponse, KvError> {
        if rev <= self.compact_revision {
            return Err(KvError::Compacted);
        }
        if rev > self.revision {
            return Err(KvError::FutureRevision);
        }
        self.compact_revision = rev;
        // From the first key again: those before the cursor were trimmed at an older
        // revision.
        self.trim_from = Some(Bytes::new());
        self.trim_index = true;
        Ok(CompactionResponse {
            header: ResponseHeader {
                revision: self.revision,
            },
        })
    }

    /// Whether compaction has history left to drop.
    pub fn compaction_pending(&self) -> bool {
        self.trim_from.is_some() || self.trim_index
    }

    /// Drops history that compaction made unreachable, doing about `work_max` units of work
    /// at most (one per key looked at, one per record looked at or kept in a trimmed
    /// history, one per key listed in a dropped entry of the revision index, so a unit is a
    /// few tens of nanoseconds); returns whether some is left.
    pub fn compact_step(&mut self, work_max: u64) -> bool {
        let mut work = if self.trim_index {
            self.trim_index(work_max)
        } else {
            0
        };
        let Some(from) = self.trim_from.take() else {
            return self.compaction_pending();
        };
        let rev = self.compact_revision;
        // The map has no `retain`: find what changes first, then change only that (mutable
        // lookups copy nodes a snapshot view still shares).
        let mut trims: Vec<(Bytes, usize)> = Vec::new();
        for (key, hist) in self.keys.range::<_, [u8]>((Included(&from[..]), Unbounded)) {
            if work >= work_max {
                self.trim_from = Some(key.clone());
                break;
            }
            let cut = hist.compaction_cut(rev);
            work = work.saturating_add(1 + cut as u64);
            if cut > 0 {
                work = work.saturating_add(hist.len() as u64);
                trims.push((key.clone(), cut));
            }
        }
        let mut freed = 0u64;
        for (key, cut) in trims {
            let Some(hist) = self.keys.get_mut(&key[..]) else {
                continue;
            };
            if cut < hist.len() {
                freed += hist.drop_oldest(cut);
            } else {
                freed += KEY_OVERHEAD + key.len() as u64;
                freed += hist.iter().map(Record::size).sum::<u64>();
                self.keys.remove(&key[..]);
            }
        }
        self.size -= freed;
        self.compaction_pending()
    }

    /// Drops all the history compaction made unreachable.
    pub(crate) fn finish_compaction(&mut self) {
        while self.compact_step(u64::MAX) {}
    }
}

#[cfg(test)]
mod tests {
    use crate::request::*;
    use crate::*;

    /// Trimmed a little at a time, interleaved with writes and another compaction, the
    /// store snapshots as one trimmed at once, and ends the same.
    #[test]
    fn stepwise_compaction_matches_compaction_at_once() {
        let mut stepwise = KvStore::new();
        let mut at_once = KvStore::new();
        let put = |k: usize, v: usize| {
            let p = PutRequest::new(format!("k{k:02}"), format!("v{v}"));
            encode_request(&Request::Put(p))
        };
        let delete = |k: usize| {
            encode_request(&Request::DeleteRange(DeleteRangeRequest::key(format!(
                "k{k:02}"
            ))))
        };
        let compact = |r: i64| encode_request(&Request::Compact(CompactionRequest { revision: r }));
        let mut payloads = Vec::new();
        for round in 0..6 {
            for k in 0..30 {
                payloads.push(put(k, round));
            }
            payloads.push(delete(round * 3));
        }
        payloads.push(compact(150));
        payloads.extend((0..10).map(|k| put(k, 9)));
        payloads.push(compact(170));
        payloads.extend((5..15).map(delete));
        for (i, payload) in payloads.iter().enumerate() {
            let reads = Reads::Within(u64::MAX);
            let a = stepwise.apply_encoded_with(1, i as u64, payload, reads);
            assert!(a.outcome().is_ok());
            at_once.apply_encoded(1, i as u64, payload).unwrap();
            assert!(!at_once.compaction_pending());
            assert_eq!(stepwise.snapshot(), at_once.snapshot(), "after #{i}");
            stepwise.compact_step(7);
        }
        assert!(stepwise.compaction_pending());
        let mut steps = 0;
        while stepwise.compact_step(7) {
            steps += 1;
            assert_eq!(stepwise.snapshot(), at_once.snapshot());
        }
        assert!(steps > 3, "{steps} steps");
        assert_eq!(stepwise, at_once);
        assert_eq!(KvStore::restore(&at_once.snapshot()).unwrap(), at_once);
    }
}
