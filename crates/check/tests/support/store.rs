//! An independent sequential etcd store for the tests: the reference the checker's model is
//! judged against, written plainly from etcd's rules rather than from the model.

use std::collections::BTreeMap;
use synod_check::{KeyMeta, Op, Read, Response, Rev, Target, TxnOp, TxnResult, Val};

#[derive(Clone, Debug)]
pub struct Store {
    pub revision: Rev,
    /// key -> (value, meta)
    pub keys: BTreeMap<u64, (Val, KeyMeta)>,
}

impl Default for Store {
    fn default() -> Store {
        Store {
            revision: 1,
            keys: BTreeMap::new(),
        }
    }
}

impl Store {
    fn read(&self, key: u64) -> Read {
        match self.keys.get(&key) {
            None => Read::default(),
            Some(&(value, meta)) => Read {
                value: Some(value),
                meta: Some(meta),
            },
        }
    }

    /// A put at revision `rev`.
    fn put(&mut self, key: u64, value: Val, rev: Rev) {
        let meta = match self.keys.get(&key) {
            Some((_, m)) => KeyMeta {
                create_revision: m.create_revision,
                mod_revision: rev,
                version: m.version + 1,
            },
            None => KeyMeta {
                create_revision: rev,
                mod_revision: rev,
                version: 1,
            },
        };
        self.keys.insert(key, (value, meta));
    }

    fn holds(&self, key: u64, target: Target) -> bool {
        let e = self.keys.get(&key);
        match target {
            Target::Value(v) => e.is_some_and(|e| e.0 == v),
            Target::Version(v) => e.map_or(0, |e| e.1.version) == v,
            Target::ModRevision(r) => e.map_or(0, |e| e.1.mod_revision) == r,
            Target::CreateRevision(r) => e.map_or(0, |e| e.1.create_revision) == r,
        }
    }

    /// Applies `op` and returns the full answer.
    pub fn apply(&mut self, op: &Op) -> Response {
        let next = self.revision + 1;
        match op {
            Op::Get { key } => Response::Get {
                read: self.read(*key),
                revision: Some(self.revision),
            },
            Op::Range { start, end } => Response::Range {
                reads: self
                    .keys
                    .range(*start..(*end).max(*start))
                    .map(|(k, _)| (*k, self.read(*k)))
                    .collect(),
                revision: Some(self.revision),
            },
            Op::Put { key, value } => {
                self.put(*key, *value, next);
                self.revision = next;
                Response::Put {
                    revision: Some(next),
                }
            }
            Op::Delete { key } => self.delete_range(*key, key + 1),
            Op::DeleteRange { start, end } => self.delete_range(*start, *end),
            Op::Txn(t) => {
                let succeeded = t.compares.iter().all(|c| self.holds(c.key, c.target));
                let ops = if succeeded { &t.success } else { &t.failure };
                let mut changed = false;
                let mut results = Vec::new();
                for o in ops {
                    results.push(match *o {
                        TxnOp::Get { key } => TxnResult::Get(self.read(key)),
                        TxnOp::Put { key, value } => {
                            self.put(key, value, next);
                            changed = true;
                            TxnResult::Put
                        }
                        TxnOp::Delete { key } => {
                            let deleted = u64::from(self.keys.remove(&key).is_some());
                            changed |= deleted > 0;
                            TxnResult::Delete { deleted }
                        }
                    });
                }
                if changed {
                    self.revision = next;
                }
                Response::Txn {
                    succeeded,
                    results,
                    revision: Some(self.revision),
                }
            }
            Op::Compact { .. } => Response::Compact {
                revision: Some(self.revision),
            },
        }
    }

    fn delete_range(&mut self, start: u64, end: u64) -> Response {
        let doomed: Vec<u64> = self
            .keys
            .range(start..end.max(start))
            .map(|(k, _)| *k)
            .collect();
        for k in &doomed {
            self.keys.remove(k);
        }
        if !doomed.is_empty() {
            self.revision += 1;
        }
        Response::Delete {
            deleted: doomed.len() as u64,
            revision: Some(self.revision),
        }
    }
}

/// The answer as a client that records no revisions or metadata sees it.
pub fn strip(r: Response) -> Response {
    let read = |r: Read| Read {
        value: r.value,
        meta: None,
    };
    match r {
        Response::Get { read: g, .. } => Response::Get {
            read: read(g),
            revision: None,
        },
        Response::Range { reads, .. } => Response::Range {
            reads: reads.into_iter().map(|(k, r)| (k, read(r))).collect(),
            revision: None,
        },
        Response::Put { .. } => Response::Put { revision: None },
        Response::Delete { deleted, .. } => Response::Delete {
            deleted,
            revision: None,
        },
        Response::Txn {
            succeeded, results, ..
        } => Response::Txn {
            succeeded,
            results: results
                .into_iter()
                .map(|r| match r {
                    TxnResult::Get(g) => TxnResult::Get(read(g)),
                    other => other,
                })
                .collect(),
            revision: None,
        },
        Response::Compact { .. } => Response::Compact { revision: None },
    }
}

/// Whether the store's full answer `actual` is what the client recorded (what it left out
/// matches anything).
pub fn matches(recorded: &Response, actual: &Response) -> bool {
    fn rev(recorded: Option<Rev>, actual: Option<Rev>) -> bool {
        recorded.is_none() || recorded == actual
    }
    fn read(recorded: &Read, actual: &Read) -> bool {
        recorded.value == actual.value && (recorded.meta.is_none() || recorded.meta == actual.meta)
    }
    match (recorded, actual) {
        (
            Response::Get {
                read: a,
                revision: ra,
            },
            Response::Get {
                read: b,
                revision: rb,
            },
        ) => read(a, b) && rev(*ra, *rb),
        (
            Response::Range {
                reads: a,
                revision: ra,
            },
            Response::Range {
                reads: b,
                revision: rb,
            },
        ) => {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && read(&x.1, &y.1))
                && rev(*ra, *rb)
        }
        (Response::Put { revision: ra }, Response::Put { revision: rb })
        | (Response::Compact { revision: ra }, Response::Compact { revision: rb }) => rev(*ra, *rb),
        (
            Response::Delete {
                deleted: a,
                revision: ra,
            },
            Response::Delete {
                deleted: b,
                revision: rb,
            },
        ) => a == b && rev(*ra, *rb),
        (
            Response::Txn {
                succeeded: sa,
                results: a,
                revision: ra,
            },
            Response::Txn {
                succeeded: sb,
                results: b,
                revision: rb,
            },
        ) => {
            sa == sb
                && a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| match (x, y) {
                    (TxnResult::Get(x), TxnResult::Get(y)) => read(x, y),
                    _ => x == y,
                })
                && rev(*ra, *rb)
        }
        _ => false,
    }
}
