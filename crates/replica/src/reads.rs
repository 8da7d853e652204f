//! Reads without the log: serializable ones from the local store at once, linearizable ones
//! once a read barrier confirms the store is up to date. Small reads run inside the turn;
//! larger ones go to the shell as [`ReadJob`]s over a view frozen when they were due, so one
//! heavy read never holds up the others.

use crate::effects::{Answer, Count, ReadJob};
use crate::error::ReplicaError;
use crate::replica::Replica;
use crate::Waiter;
use synod_kv::ReadRequest;
use synod_paxos::{ReadError, ReadId};

/// Work (keys a range or compare covers, keys sorted) a turn spends on one read, or on the
/// reads of one write Txn, before handing them to the shell. About 50-100 µs.
pub const INLINE_READ_WORK_MAX: u64 = 1000;

impl<W: Waiter> Replica<W> {
    pub(crate) fn start_read(&mut self, request: ReadRequest, linearizable: bool, waiter: W) {
        if !linearizable && self.recovering {
            self.fx
                .answers
                .push((waiter, Err(ReplicaError::Recovering)));
            return;
        }
        if !linearizable || self.reads_served_locally() {
            self.observer.count(Count::ReadsSerializable, 1);
            self.serve(request, waiter);
            return;
        }
        let id = self.next_read;
        self.next_read += 1;
        self.reads.insert(id, (request, waiter));
        self.engine.read_barrier(id);
    }

    fn reads_served_locally(&self) -> bool {
        self.cfg
            .planted
            .is(crate::ReplicaBug::LinearizableReadsServedLocally)
    }

    /// Serves a read from the store as it is now: here if it stays within
    /// [`INLINE_READ_WORK_MAX`], else by the shell, from a view frozen now (O(1)).
    fn serve(&mut self, request: ReadRequest, waiter: W) {
        match self.kv.read_within(&request, INLINE_READ_WORK_MAX) {
            Some(result) => {
                let answer = result.map(Answer::Kv).map_err(ReplicaError::from);
                self.fx.answers.push((waiter, answer));
            }
            None => self.fx.reads.push(ReadJob::Read {
                view: self.kv.read_view(),
                request,
                waiter,
            }),
        }
    }

    /// Read barriers passed (`reads_ready`: the store has applied everything chosen before
    /// the read arrived) or failed.
    pub(crate) fn finish_reads(&mut self, ready: Vec<ReadId>, failed: Vec<(ReadId, ReadError)>) {
        for id in ready {
            if let Some((request, waiter)) = self.reads.remove(&id) {
                self.observer.count(Count::ReadsLinearizable, 1);
                self.serve(request, waiter);
            } else {
                self.lease_barrier_passed(id);
            }
        }
        for (id, e) in failed {
            let error = match e {
                ReadError::NoLeader => ReplicaError::NoLeader,
                ReadError::Busy => ReplicaError::TooManyRequests,
                ReadError::Timeout => ReplicaError::Timeout,
            };
            if let Some((_, waiter)) = self.reads.remove(&id) {
                self.observer.count(Count::ReadsFailed, 1);
                self.fx.answers.push((waiter, Err(error)));
            } else {
                self.lease_barrier_failed(id, error);
            }
        }
    }
}
