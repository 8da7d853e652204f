//! The read workers: a few threads that serve reads too large for the core task, on frozen
//! views of the store (`synod_kv::ReadView`, O(1) to take), so that no client request can
//! hold the runtime thread that answers the other clients and keeps heartbeats, elections
//! and the persist hand-offs going.
//!
//! The replica runs a read itself while it stays within `synod_replica::INLINE_READ_WORK_MAX` (a get, a
//! short range: nearly all of them, with no thread hop); past that it stops and queues the
//! read here with a view. Two kinds of job:
//! - a read (a Range, a read-only Txn) or a hash of the whole store (Maintenance.HashKV and
//!   Hash, always here): at most [`READ_QUEUE_MAX`] wait; beyond that the client gets
//!   etcd's "too many requests" at once;
//! - the reads a write Txn left (its Range ops past the budget, each with a view of the
//!   state it must see): the write is applied, so this job cannot be refused; its number is
//!   bounded by the permits of [`super::TXN_READS_INFLIGHT_MAX`], taken before the Txn is
//!   proposed and held until its answer is sent.
//!
//! A worker asks every few thousand keys whether the client still waits (its reply channel
//! is open) and drops the job when not, so the work a request can cause ends with the
//! request's own timeout. Workers run at a lower priority (nice 10): on a busy machine the
//! runtime thread, which every client and the protocol need, goes first.

use super::Waiter;
use crate::error::ServerError;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use synod_replica::{Answer, HashJob, ReadJob};

/// Reads and hashes waiting for a worker; beyond it clients get "too many requests".
pub(crate) const READ_QUEUE_MAX: usize = 1024;

/// Workers at most (one per CPU up to this).
const READ_WORKERS_MAX: usize = 4;

/// What a worker does.
enum Job {
    Read(ReadJob<Waiter>),
    Hash(HashJob<Waiter>),
}

impl Job {
    /// Whether a client may be refused it (the reads a write left may not).
    fn refusable(&self) -> bool {
        !matches!(self, Job::Read(ReadJob::Complete { .. }))
    }

    fn refuse(self) {
        let waiter = match self {
            Job::Read(ReadJob::Read { waiter, .. }) | Job::Hash(HashJob { waiter, .. }) => waiter,
            Job::Read(ReadJob::Complete { .. }) => return,
        };
        waiter.fail(ServerError::Replica(
            synod_replica::ReplicaError::TooManyRequests,
        ));
    }
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Refusable jobs in `jobs`.
    reads: usize,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A worker that panicked left the queue consistent (it only pops under the lock).
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The pool. Dropping it stops the workers once their current job ends; queued jobs are
/// dropped, so their clients hear that the member stopped.
pub(crate) struct Readers {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers").finish_non_exhaustive()
    }
}

impl Readers {
    /// Starts one worker per CPU, at most [`READ_WORKERS_MAX`].
    pub(crate) fn start() -> Readers {
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, READ_WORKERS_MAX);
        Readers::with_workers(workers)
    }

    fn with_workers(workers: usize) -> Readers {
        let shared = Arc::new(Shared::default());
        for i in 0..workers {
            let shared = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("synod-read-{i}"))
                .spawn(move || work(&shared));
            if let Err(e) = spawned {
                tracing::warn!("cannot start a read worker: {e}");
            }
        }
        Readers { shared }
    }

    /// Queues a read. One is refused ("too many requests", at once) when
    /// [`READ_QUEUE_MAX`] reads and hashes wait; the reads a write left never are (see the
    /// module comment).
    pub(crate) fn run(&self, job: ReadJob<Waiter>) {
        self.push(Job::Read(job));
    }

    /// Queues a hash, refused as reads are.
    pub(crate) fn hash(&self, job: HashJob<Waiter>) {
        self.push(Job::Hash(job));
    }

    fn push(&self, job: Job) {
        let mut q = self.shared.lock();
        if job.refusable() {
            if q.reads >= READ_QUEUE_MAX {
                drop(q);
                job.refuse();
                return;
            }
            q.reads += 1;
        }
        q.jobs.push_back(job);
        drop(q);
        self.shared.wake.notify_one();
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        let mut q = self.shared.lock();
        q.closed = true;
        q.jobs.clear();
        q.reads = 0;
        drop(q);
        self.shared.wake.notify_all();
    }
}

fn work(shared: &Shared) {
    super::core::lower_priority();
    loop {
        let job = {
            let mut q = shared.lock();
            loop {
                if q.closed {
                    return;
                }
                if let Some(job) = q.jobs.pop_front() {
                    if job.refusable() {
                        q.reads -= 1;
                    }
                    break job;
                }
                q = shared.wake.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        run(job);
    }
}

/// Runs a job; a waiter that gave up (before or during it) gets nothing.
fn run(job: Job) {
    let done = match job {
        Job::Read(job) => job.run().map(|(w, result)| (w, result.map(Answer::Kv))),
        Job::Hash(job) => job.run(),
    };
    if let Some((waiter, result)) = done {
        waiter.answer(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_kv::{KvStore, PutRequest, RangeRequest, ReadRequest, Request, Response};

    fn read(s: &KvStore, waiter: Waiter) -> ReadJob<Waiter> {
        ReadJob::Read {
            view: s.read_view(),
            request: ReadRequest::range(RangeRequest::prefix("k")),
            waiter,
        }
    }

    fn hash(s: &KvStore, waiter: Waiter) -> HashJob<Waiter> {
        HashJob {
            view: s.read_view(),
            kind: synod_replica::HashKind::Kv { revision: 0 },
            waiter,
        }
    }

    fn store(keys: usize) -> KvStore {
        let mut s = KvStore::new();
        for i in 0..keys {
            let put = Request::Put(PutRequest::new(format!("k{i:05}"), "v"));
            s.apply(0, 0, &put).unwrap();
        }
        s
    }

    #[tokio::test]
    async fn serves_reads_and_refuses_beyond_the_queue_bound() {
        let s = store(100);
        // No workers: nothing leaves the queue.
        let idle = Readers::with_workers(0);
        let mut waiting = Vec::new();
        for _ in 0..READ_QUEUE_MAX {
            let (waiter, rx) = Waiter::new(None);
            idle.run(read(&s, waiter));
            waiting.push(rx);
        }
        let (waiter, rx) = Waiter::new(None);
        idle.run(read(&s, waiter));
        assert!(matches!(
            rx.await.unwrap(),
            Err(ServerError::Replica(
                synod_replica::ReplicaError::TooManyRequests
            ))
        ));
        // A hash of the whole store waits with the reads, and is refused as they are.
        let (waiter, rx) = Waiter::new(None);
        idle.hash(hash(&s, waiter));
        assert!(matches!(
            rx.await.unwrap(),
            Err(ServerError::Replica(
                synod_replica::ReplicaError::TooManyRequests
            ))
        ));
        drop(idle);
        // Stopped: the queued reads are dropped, their clients hear so.
        assert!(waiting.pop().unwrap().await.is_err());

        let readers = Readers::with_workers(2);
        let (waiter, rx) = Waiter::new(None);
        readers.run(read(&s, waiter));
        let Ok(Answer::Kv(Response::Range(r))) = rx.await.unwrap() else {
            panic!("not a range")
        };
        assert_eq!(r.count, 100);
        let (waiter, rx) = Waiter::new(None);
        readers.hash(hash(&s, waiter));
        let Ok(Answer::HashKv { hash, revision }) = rx.await.unwrap() else {
            panic!("not a hash")
        };
        assert_eq!((Ok(hash), revision), (s.hash_kv(0), 101));
    }
}
