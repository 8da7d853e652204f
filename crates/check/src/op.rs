//! What clients ask and what comes back: etcd's key-value requests, on keys and values that
//! are small integers (a client with byte keys or values maps them, see [`crate::Interner`]).
//!
//! Everything a response may leave out is an `Option`: a client that did not record the
//! header revision, or a key's metadata, leaves that part unchecked.

pub type Key = u64;
pub type Val = u64;
pub type Rev = u64;

/// A client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A linearizable read of one key.
    Get {
        key: Key,
    },
    /// A linearizable read of every key in `[start, end)`.
    Range {
        start: Key,
        end: Key,
    },
    Put {
        key: Key,
        value: Val,
    },
    Delete {
        key: Key,
    },
    /// Deletes every key in `[start, end)`.
    DeleteRange {
        start: Key,
        end: Key,
    },
    Txn(Txn),
    Compact {
        revision: Rev,
    },
}

/// If every compare holds, `success` runs, else `failure`; in order, a get seeing the writes
/// before it, every write at the same new revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<TxnOp>,
    pub failure: Vec<TxnOp>,
}

/// An equality compare on one key, evaluated before the txn writes anything. An absent key
/// has version, create revision and mod revision 0, and no value (a value compare fails),
/// as in etcd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compare {
    pub key: Key,
    pub target: Target,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Value(Val),
    ModRevision(Rev),
    CreateRevision(Rev),
    /// `Version(0)`: the key is absent.
    Version(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnOp {
    Get { key: Key },
    Put { key: Key, value: Val },
    Delete { key: Key },
}

/// What a read found for one key. `value: None`: the key is absent. `meta: None`: absent, or
/// the client did not record it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Read {
    pub value: Option<Val>,
    pub meta: Option<KeyMeta>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyMeta {
    pub create_revision: Rev,
    pub mod_revision: Rev,
    pub version: u64,
}

/// What a request returned; `revision` is the response header's (`None`: not recorded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Get {
        read: Read,
        revision: Option<Rev>,
    },
    /// The keys present in the range, in key order (each read's value is `Some`).
    Range {
        reads: Vec<(Key, Read)>,
        revision: Option<Rev>,
    },
    Put {
        revision: Option<Rev>,
    },
    /// For `Delete` and `DeleteRange`: how many keys it removed.
    Delete {
        deleted: u64,
        revision: Option<Rev>,
    },
    Txn {
        succeeded: bool,
        /// One per op of the taken branch.
        results: Vec<TxnResult>,
        revision: Option<Rev>,
    },
    Compact {
        revision: Option<Rev>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnResult {
    Get(Read),
    Put,
    Delete { deleted: u64 },
}

impl TxnOp {
    pub fn key(&self) -> Key {
        match *self {
            TxnOp::Get { key } | TxnOp::Put { key, .. } | TxnOp::Delete { key } => key,
        }
    }
}

impl Op {
    /// A compare-and-set: put `new` if `key` holds `expect` (`None`: if it is absent).
    pub fn cas(key: Key, expect: Option<Val>, new: Val) -> Op {
        let target = match expect {
            Some(v) => Target::Value(v),
            None => Target::Version(0),
        };
        Op::Txn(Txn {
            compares: vec![Compare { key, target }],
            success: vec![TxnOp::Put { key, value: new }],
            failure: Vec::new(),
        })
    }

    /// The keys the request names (a range is named by its bounds, see [`Op::range`]; a
    /// compaction names none).
    pub fn keys(&self) -> Vec<Key> {
        match self {
            Op::Get { key } | Op::Put { key, .. } | Op::Delete { key } => vec![*key],
            Op::Range { .. } | Op::DeleteRange { .. } | Op::Compact { .. } => Vec::new(),
            Op::Txn(t) => {
                let mut keys: Vec<Key> = t.compares.iter().map(|c| c.key).collect();
                keys.extend(t.success.iter().chain(&t.failure).map(TxnOp::key));
                keys.sort_unstable();
                keys.dedup();
                keys
            }
        }
    }

    /// The half-open key range a range request covers.
    pub fn range(&self) -> Option<(Key, Key)> {
        match *self {
            Op::Range { start, end } | Op::DeleteRange { start, end } => Some((start, end)),
            _ => None,
        }
    }

    /// Whether the request can change the store (a txn: if either branch writes).
    pub fn may_write(&self) -> bool {
        match self {
            Op::Get { .. } | Op::Range { .. } | Op::Compact { .. } => false,
            Op::Put { .. } | Op::Delete { .. } | Op::DeleteRange { .. } => true,
            Op::Txn(t) => t
                .success
                .iter()
                .chain(&t.failure)
                .any(|o| !matches!(o, TxnOp::Get { .. })),
        }
    }

    /// Whether the request only reads (a compaction is neither: it discards history).
    pub fn is_read(&self) -> bool {
        !self.may_write() && !matches!(self, Op::Compact { .. })
    }
}

impl Response {
    /// A get's answer without revisions or metadata.
    pub fn value(value: Option<Val>) -> Response {
        Response::Get {
            read: Read { value, meta: None },
            revision: None,
        }
    }

    /// A put's answer without a revision.
    pub fn written() -> Response {
        Response::Put { revision: None }
    }

    /// The answer to [`Op::cas`] without a revision.
    pub fn swapped(swapped: bool) -> Response {
        Response::Txn {
            succeeded: swapped,
            results: if swapped {
                vec![TxnResult::Put]
            } else {
                Vec::new()
            },
            revision: None,
        }
    }

    pub fn revision(&self) -> Option<Rev> {
        match *self {
            Response::Get { revision, .. }
            | Response::Range { revision, .. }
            | Response::Put { revision }
            | Response::Delete { revision, .. }
            | Response::Txn { revision, .. }
            | Response::Compact { revision } => revision,
        }
    }

    /// The revision this answer says its request created, if it wrote and the header was
    /// recorded: no other request can have created it.
    pub fn created_revision(&self, op: &Op) -> Option<Rev> {
        let wrote = match (op, self) {
            (Op::Put { .. }, Response::Put { .. }) => true,
            (Op::Delete { .. } | Op::DeleteRange { .. }, Response::Delete { deleted, .. }) => {
                *deleted > 0
            }
            (
                Op::Txn(t),
                Response::Txn {
                    succeeded, results, ..
                },
            ) => {
                let ops = if *succeeded { &t.success } else { &t.failure };
                ops.iter().zip(results).any(|(o, r)| match (o, r) {
                    (TxnOp::Put { .. }, _) => true,
                    (TxnOp::Delete { .. }, TxnResult::Delete { deleted }) => *deleted > 0,
                    _ => false,
                })
            }
            _ => false,
        };
        if wrote {
            self.revision()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_names_its_key_and_writes() {
        let op = Op::cas(3, None, 7);
        assert_eq!(op.keys(), vec![3]);
        assert!(op.may_write() && !op.is_read());
        assert!(Op::Range { start: 1, end: 5 }.is_read());
        assert!(!Op::Compact { revision: 3 }.is_read());
    }

    #[test]
    fn created_revision_only_for_writes_that_changed_something() {
        let put = Op::Put { key: 1, value: 2 };
        assert_eq!(
            Response::Put { revision: Some(5) }.created_revision(&put),
            Some(5)
        );
        let del = Op::Delete { key: 1 };
        let none = Response::Delete {
            deleted: 0,
            revision: Some(5),
        };
        assert_eq!(none.created_revision(&del), None);
        let failed = Response::Txn {
            succeeded: false,
            results: Vec::new(),
            revision: Some(9),
        };
        assert_eq!(failed.created_revision(&Op::cas(1, Some(2), 3)), None);
    }
}
