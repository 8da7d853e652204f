//! etcd's `Lock` and `Unlock` (`v3lock`, over `concurrency.Mutex`).
//!
//! Lock: with lease 0 a lease of [`SESSION_TTL`] is granted first (and never kept alive).
//! One Txn creates `name/<hex lease>` if absent (empty value, with the lease) and reads the
//! oldest key under `name/`, or else reads our key and the oldest: our create revision is the
//! Txn's revision or the key's. If there is no other key or the oldest is ours, the lock is
//! held, answered with the Txn's header. Otherwise we wait for every older key to be deleted
//! ([`super::wait`]) and then read our key: gone means its lease ended meanwhile
//! ("mutex: session is expired"); there, the lock is held, answered with that read's
//! header. A wait or read that fails, or a caller that gives up while waiting, deletes our
//! key, so no later waiter queues behind a lock nobody will take.

use super::wait::Predecessors;
use super::{
    granted, guarded, lease_key, oldest, prefix_of, range_of, txn_of, txn_range, Progress,
    RecipeError, Reply, Step, SESSION_TTL,
};
use bytes::Bytes;
use synod_kv::{DeleteRangeRequest, PutRequest, RangeRequest, Request, RequestOp};

/// The lock is held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locked {
    /// `name/<hex lease>`: what Unlock takes.
    pub key: Bytes,
    /// The header revision of the answer.
    pub revision: i64,
}

/// Unlock: delete the key Lock answered (a missing key is no error).
pub fn unlock_request(key: Bytes) -> Request {
    Request::DeleteRange(DeleteRangeRequest::key(key))
}

/// One Lock call (see the module docs).
#[derive(Debug)]
pub struct Lock<E> {
    prefix: Bytes,
    /// Our key, once the lease is known.
    key: Bytes,
    state: State<E>,
}

#[derive(Debug)]
enum State<E> {
    Granting,
    Acquiring,
    Waiting(Predecessors),
    /// Reading our key once the older ones are gone.
    Checking,
    /// Deleting our key after the error held, which is the answer whatever the delete's
    /// outcome.
    Releasing(RecipeError<E>),
    Finished,
}

impl<E> Lock<E> {
    /// Lock `name` with `lease` (0: grant one first).
    pub fn start(name: &[u8], lease: i64) -> (Lock<E>, Step) {
        let prefix = prefix_of(name);
        if lease == 0 {
            let lock = Lock {
                prefix,
                key: Bytes::new(),
                state: State::Granting,
            };
            return (lock, Step::Grant { ttl: SESSION_TTL });
        }
        Lock::acquire(prefix, lease)
    }

    fn acquire(prefix: Bytes, lease: i64) -> (Lock<E>, Step) {
        let key = lease_key(&prefix, lease);
        let holder = RequestOp::Range(oldest(&prefix));
        let put = PutRequest {
            lease,
            ..PutRequest::new(key.clone(), Bytes::new())
        };
        let mut txn = guarded(&key, 0, vec![RequestOp::Put(put), holder.clone()]);
        txn.failure = vec![RequestOp::Range(RangeRequest::key(key.clone())), holder];
        let lock = Lock {
            prefix,
            key,
            state: State::Acquiring,
        };
        (lock, Step::Write(Request::Txn(txn)))
    }

    /// The next step after `reply` (the outcome of the last step), or the answer.
    pub fn next(&mut self, reply: Result<Reply, E>) -> Progress<Locked, E> {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Granting => match reply.map(granted) {
                Ok(Ok(lease)) => {
                    let (lock, step) = Lock::acquire(self.prefix.clone(), lease);
                    *self = lock;
                    Progress::Next(step)
                }
                Ok(Err(what)) => Progress::Done(Err(RecipeError::Unexpected(what))),
                Err(e) => Progress::Done(Err(RecipeError::Request(e))),
            },
            // etcd deletes nothing when this Txn fails: whether it wrote is unknown, and the
            // lease will take the key with it.
            State::Acquiring => match reply.map(|r| self.acquired(r)) {
                Ok(Ok(progress)) => progress,
                Ok(Err(what)) => Progress::Done(Err(RecipeError::Unexpected(what))),
                Err(e) => Progress::Done(Err(RecipeError::Request(e))),
            },
            State::Waiting(wait) => match reply.map(|r| wait.next(r)) {
                Ok(Ok(Some(step))) => {
                    self.state = State::Waiting(wait);
                    Progress::Next(step)
                }
                Ok(Ok(None)) => {
                    self.state = State::Checking;
                    Progress::Next(Step::Read(RangeRequest::key(self.key.clone())))
                }
                Ok(Err(what)) => self.release(RecipeError::Unexpected(what)),
                Err(e) => self.release(RecipeError::Request(e)),
            },
            State::Checking => match reply.map(range_of) {
                Ok(Ok(r)) if r.kvs.is_empty() => Progress::Done(Err(RecipeError::SessionExpired)),
                Ok(Ok(r)) => Progress::Done(Ok(Locked {
                    key: self.key.clone(),
                    revision: r.header.revision,
                })),
                Ok(Err(what)) => self.release(RecipeError::Unexpected(what)),
                Err(e) => self.release(RecipeError::Request(e)),
            },
            State::Releasing(error) => Progress::Done(Err(error)),
            State::Finished => Progress::Done(Err(RecipeError::Unexpected(
                "a reply to a lock that is done",
            ))),
        }
    }

    /// The Txn's outcome: held, or wait for the older keys.
    fn acquired(&mut self, reply: Reply) -> Result<Progress<Locked, E>, &'static str> {
        let txn = txn_of(reply)?;
        let mine = if txn.succeeded {
            txn.header.revision
        } else {
            let ours = txn_range(&txn, 0)?;
            let kv = ours
                .kvs
                .first()
                .ok_or("our key is missing where it exists")?;
            kv.create_revision
        };
        let holder = txn_range(&txn, 1)?.kvs.first();
        if holder.is_none_or(|kv| kv.create_revision == mine) {
            return Ok(Progress::Done(Ok(Locked {
                key: self.key.clone(),
                revision: txn.header.revision,
            })));
        }
        let (wait, step) = Predecessors::start(self.prefix.clone(), mine);
        self.state = State::Waiting(wait);
        Ok(Progress::Next(step))
    }

    fn release(&mut self, error: RecipeError<E>) -> Progress<Locked, E> {
        self.state = State::Releasing(error);
        Progress::Next(Step::Write(unlock_request(self.key.clone())))
    }

    /// What to do if the caller gives up now: delete our key if it is queued (waiting,
    /// checking, or being deleted after a failure), as etcd does when a Lock's context is
    /// cancelled (its delete does not depend on that context). Its outcome is not waited for.
    pub fn abort(&self) -> Option<Request> {
        match self.state {
            State::Waiting(_) | State::Checking | State::Releasing(_) => {
                Some(unlock_request(self.key.clone()))
            }
            _ => None,
        }
    }
}
