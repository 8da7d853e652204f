//! Waiting for the older keys of a lock or election to go (etcd's `waitDeletes`): read the
//! newest key created before ours, wait for its delete from the read's revision, and again,
//! until none is left. Waiting on the next older key only, not on the holder, means each
//! delete wakes one waiter, not all of them.

use super::{newest_at_or_before, range_of, Reply, Step};
use bytes::Bytes;

#[derive(Debug)]
pub(super) struct Predecessors {
    prefix: Bytes,
    /// Our key's create revision less one.
    max_create: i64,
}

impl Predecessors {
    /// Starts waiting for the keys under `prefix` created before `mine`.
    pub(super) fn start(prefix: Bytes, mine: i64) -> (Predecessors, Step) {
        let wait = Predecessors {
            prefix,
            max_create: mine - 1,
        };
        let read = wait.read();
        (wait, read)
    }

    fn read(&self) -> Step {
        Step::Read(newest_at_or_before(&self.prefix, self.max_create))
    }

    /// The next step after `reply`, or `None` once no older key is left.
    pub(super) fn next(&self, reply: Reply) -> Result<Option<Step>, &'static str> {
        if reply == Reply::Deleted {
            return Ok(Some(self.read()));
        }
        let range = range_of(reply)?;
        Ok(range.kvs.into_iter().next().map(|kv| Step::WaitDelete {
            key: kv.key,
            // The read saw the key at its revision, so its delete comes at a later one; a
            // watch from the read's revision cannot miss it.
            from_revision: range.header.revision,
        }))
    }
}
