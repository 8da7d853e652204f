//! Closed-loop clients. Each has its own id and issues one operation at a time (increasing
//! seq) to a random member, as an etcd client would: Puts, Deletes, compare-and-sets (on the
//! value, the mod revision last seen, or absence), now and then a DeleteRange or a
//! compaction, and reads (one key or a range) served linearizably by the replica or through
//! the log. Their history (synod-check's) records the server's answers with revisions. An
//! operation that definitely did not happen (the replica refused it) leaves the history; one
//! that timed out stays with an unknown outcome, since it may still take effect later.

use crate::options::Swarm;
use crate::rng::Rng;
use std::collections::BTreeMap;
use synod_check::{Compare, Key, Op, Response, Rev, Target, Txn, TxnOp, TxnResult, Val};

/// How a client's current operation travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Through the log (`Replica::write`; a read as a Range in the log); answered once
    /// applied.
    Log,
    /// A linearizable read (`Replica::read`): a read barrier, then the replica's store.
    Barrier,
    /// A serializable read (`Replica::read`, not linearizable): the replica's store as it is.
    /// Not part of the linearizable history; checked against the store at its revision.
    Local,
}

/// A serializable read's answer: what the store held for `key` at `revision`.
#[derive(Clone, Copy, Debug)]
pub struct LocalRead {
    pub node: u64,
    pub key: Key,
    pub read: synod_check::Read,
    pub revision: Rev,
}

/// A write the client saw acknowledged: it must be in every replica's store at `revision`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acked {
    pub key: Key,
    pub value: Val,
    pub revision: Rev,
}

/// The operation a client is waiting for.
#[derive(Clone, Debug)]
pub struct Pending {
    pub seq: u64,
    pub node: u64,
    pub incarnation: u64,
    pub route: Route,
    pub op: Op,
    pub history: usize,
}

/// What a client last saw of a key: its value and mod revision (for its compare-and-sets,
/// so that some of them succeed).
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    value: Option<Val>,
    mod_revision: Rev,
}

#[derive(Debug)]
pub struct Client {
    pub id: u64,
    next_seq: u64,
    pub pending: Option<Pending>,
    seen: BTreeMap<Key, Seen>,
    /// The newest store revision any answer showed it (what its compactions aim below).
    revision: Rev,
    /// Acknowledged writes, which must survive every fault.
    pub acked: Vec<Acked>,
}

impl Client {
    pub fn new(id: u64) -> Client {
        Client {
            id,
            next_seq: 1,
            pending: None,
            seen: BTreeMap::new(),
            revision: 1,
            acked: Vec::new(),
        }
    }

    /// Draws the next operation and its route.
    pub fn draw(&self, rng: &mut Rng, swarm: &Swarm) -> (Op, Route) {
        let key = rng.range(1, swarm.keys);
        let value = (self.id << 32) | self.next_seq;
        if rng.below(100) < swarm.read_pct {
            let route = if rng.below(100) < swarm.log_read_pct {
                Route::Log
            } else if rng.chance(0.2) {
                Route::Local
            } else {
                Route::Barrier
            };
            let op = if route != Route::Local && rng.chance(0.15) {
                Op::Range {
                    start: 1,
                    end: swarm.keys + 1,
                }
            } else {
                Op::Get { key }
            };
            return (op, route);
        }
        let seen = self.seen.get(&key).copied().unwrap_or_default();
        let op = if rng.below(100) < swarm.cas_pct {
            let target = match rng.below(10) {
                0..=4 => match seen.value {
                    Some(v) if rng.chance(0.8) => Target::Value(v),
                    _ => Target::Version(0),
                },
                5..=8 => Target::ModRevision(seen.mod_revision),
                _ => Target::Version(0),
            };
            // A failed compare reads the key instead, as etcd clients' retry loops do.
            Op::Txn(Txn {
                compares: vec![Compare { key, target }],
                success: vec![TxnOp::Put { key, value }],
                failure: vec![TxnOp::Get { key }],
            })
        } else {
            match rng.below(100) {
                0..=9 => Op::Delete { key },
                10 => Op::DeleteRange {
                    start: 1,
                    end: swarm.keys + 1,
                },
                n if (11..11 + swarm.compact_pct).contains(&n) && self.revision > 2 => {
                    Op::Compact {
                        revision: self.revision - rng.range(0, 2),
                    }
                }
                _ => Op::Put { key, value },
            }
        };
        (op, Route::Log)
    }

    /// Starts waiting for an operation; returns its seq.
    pub fn begin(&mut self, node: u64, incarnation: u64, op: Op, route: Route, h: usize) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending = Some(Pending {
            seq,
            node,
            incarnation,
            route,
            op,
            history: h,
        });
        seq
    }

    /// The pending operation completed with `response`.
    pub fn finish(&mut self, response: &Response) -> Pending {
        let p = self
            .pending
            .take()
            .expect("finish without a pending operation");
        let revision = response.revision().unwrap_or(0);
        self.revision = self.revision.max(revision);
        let mut writes: Vec<(Key, Option<Val>)> = Vec::new();
        match (&p.op, response) {
            (Op::Put { key, value }, _) => writes.push((*key, Some(*value))),
            (Op::Delete { key }, _) => writes.push((*key, None)),
            (
                Op::Txn(t),
                Response::Txn {
                    succeeded, results, ..
                },
            ) => {
                let ops = if *succeeded { &t.success } else { &t.failure };
                for (op, result) in ops.iter().zip(results) {
                    match (op, result) {
                        (TxnOp::Put { key, value }, _) => writes.push((*key, Some(*value))),
                        (TxnOp::Get { key }, TxnResult::Get(read)) => {
                            self.seen.insert(*key, seen_of(read));
                        }
                        _ => {}
                    }
                }
            }
            (Op::Get { key }, Response::Get { read, .. }) => {
                self.seen.insert(*key, seen_of(read));
            }
            _ => {}
        }
        for (key, value) in writes {
            let mod_revision = if value.is_some() { revision } else { 0 };
            self.seen.insert(
                key,
                Seen {
                    value,
                    mod_revision,
                },
            );
            if let Some(value) = value {
                self.acked.push(Acked {
                    key,
                    value,
                    revision,
                });
            }
        }
        p
    }

    /// The pending operation failed or timed out.
    pub fn abandon(&mut self) -> Pending {
        self.pending
            .take()
            .expect("abandon without a pending operation")
    }
}

fn seen_of(read: &synod_check::Read) -> Seen {
    Seen {
        value: read.value,
        mod_revision: read.meta.map_or(0, |m| m.mod_revision),
    }
}
