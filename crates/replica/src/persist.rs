//! The persist queue: what the replica asks to be made durable, and how jobs that queued up
//! together share one sync (group commit). The grouping rules live here so the server's
//! persist thread and the simulator's disk follow the same ones.

use bytes::Bytes;
use synod_paxos::{Message, Slot};
use synod_storage::{Batch, SnapshotMeta};

/// Most jobs merged into one sync; bounds the latency the first of them pays.
pub const JOBS_PER_SYNC_MAX: usize = 1024;

#[derive(Debug)]
pub enum PersistJob {
    /// An engine `Ready`'s durable part.
    Ready {
        /// Report `persisted(seq)` once this job is durable.
        seq: Option<u64>,
        batch: Batch,
        /// Messages that may leave only once the batch is durable (Promise, Accepted, ...).
        after: Vec<Message>,
    },
    /// Save a snapshot (durably), then drop the log it covers; report `snapshot_saved`.
    Snapshot {
        slot: Slot,
        data: Bytes,
        /// Received from a peer (to be installed), rather than taken here.
        received: bool,
        /// Its file is already written and durable (`Storage::snapshot_writer`): only adopt it.
        written: Option<SnapshotMeta>,
    },
    /// The engine finished recovering a lost log tail from its peers: once every job before
    /// this one is durable (the promise raised to the fence among them), record that the
    /// recovery is done (`Storage::finish_peer_recovery`), so the next start does not repeat
    /// it.
    FinishRecovery,
}

/// One sync's worth of jobs.
#[derive(Debug, Default)]
pub struct PersistGroup {
    /// `PersistJob::Ready`s, in order: write them all, sync once, then send each one's
    /// `after` messages and report the last `seq`.
    pub readys: Vec<(Option<u64>, Batch, Vec<Message>)>,
    /// A `Snapshot` or `FinishRecovery` job that came after them: it runs once they are
    /// durable, so order is kept.
    pub then: Option<PersistJob>,
}

/// Groups `first` with the jobs `next` yields without waiting (`None`: nothing queued), up
/// to the first job that must wait for the group (a snapshot, the end of a recovery) or
/// [`JOBS_PER_SYNC_MAX`].
pub fn group_jobs(first: PersistJob, mut next: impl FnMut() -> Option<PersistJob>) -> PersistGroup {
    let mut group = PersistGroup::default();
    let mut job = Some(first);
    while let Some(j) = job.take() {
        match j {
            PersistJob::Ready { seq, batch, after } => group.readys.push((seq, batch, after)),
            other => {
                group.then = Some(other);
                break;
            }
        }
        if group.readys.len() < JOBS_PER_SYNC_MAX {
            job = next();
        }
    }
    group
}

impl PersistGroup {
    /// The last `seq` of the group: report it once the group is durable.
    pub fn last_seq(&self) -> Option<u64> {
        self.readys.iter().rev().find_map(|(seq, _, _)| *seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(seq: u64) -> PersistJob {
        PersistJob::Ready {
            seq: Some(seq),
            batch: Batch::default(),
            after: Vec::new(),
        }
    }

    #[test]
    fn a_group_ends_before_what_must_wait_for_it() {
        let mut queue = vec![ready(2), PersistJob::FinishRecovery, ready(3)].into_iter();
        let group = group_jobs(ready(1), || queue.next());
        assert_eq!(group.readys.len(), 2);
        assert_eq!(group.last_seq(), Some(2));
        assert!(matches!(group.then, Some(PersistJob::FinishRecovery)));
        assert!(matches!(
            queue.next(),
            Some(PersistJob::Ready { seq: Some(3), .. })
        ));
    }

    #[test]
    fn a_group_holds_at_most_jobs_per_sync_max() {
        let mut n = 1;
        let group = group_jobs(ready(0), || {
            n += 1;
            Some(ready(n))
        });
        assert_eq!(group.readys.len(), JOBS_PER_SYNC_MAX);
        assert!(group.then.is_none());
    }
}
