//! Closed-loop clients and the history they record for the linearizability checker.
//!
//! Each client has its own id and issues one operation at a time (increasing seq) to a random
//! replica: reads (mostly linearizable read barriers served from that replica's state
//! machine, some through the log), puts and compare-and-sets on a few keys. An operation that
//! definitely did not happen (the replica refused it) leaves the history; one that times out
//! stays with an unknown outcome, since it may still take effect later.

use crate::node::Ticket;
use crate::ops::{Answered, Key, KvOp, KvResult, Val};
use crate::options::Swarm;
use crate::rng::Rng;
use std::collections::BTreeMap;

/// One operation as the checker sees it. Times are positions in one global order of
/// invocations and completions (a strictly increasing counter), so "completed before invoked"
/// is exact even when both happen in the same simulated microsecond.
#[derive(Clone, Debug)]
pub struct HistoryOp {
    pub client: u64,
    pub op: KvOp,
    pub invoke: u64,
    /// `None` while pending, and forever if the outcome is unknown.
    pub complete: Option<(u64, KvResult)>,
    /// The operation definitely did not happen: it is not part of the history.
    pub discarded: bool,
}

#[derive(Debug, Default)]
pub struct History {
    pub ops: Vec<HistoryOp>,
    clock: u64,
}

impl History {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    pub fn invoke(&mut self, client: u64, op: KvOp) -> usize {
        let invoke = self.tick();
        self.ops.push(HistoryOp {
            client,
            op,
            invoke,
            complete: None,
            discarded: false,
        });
        self.ops.len() - 1
    }

    /// Records a completion; returns its position in the history's order.
    pub fn complete(&mut self, index: usize, result: KvResult) -> u64 {
        let at = self.tick();
        self.ops[index].complete = Some((at, result));
        at
    }

    pub fn discard(&mut self, index: usize) {
        self.ops[index].discarded = true;
    }

    /// Operations that count: completed ones, and unknown-outcome writes. A read whose
    /// outcome is unknown changed nothing and is left out.
    pub fn relevant(&self) -> impl Iterator<Item = &HistoryOp> {
        self.ops
            .iter()
            .filter(|o| !o.discarded && (o.complete.is_some() || !o.op.is_read()))
    }
}

/// How a client's current operation travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Through the log (`Replica::write`; a Get as a Range in the log); answered once
    /// applied.
    Log,
    /// A linearizable read (`Replica::read`): a read barrier, then the replica's store.
    Barrier,
}

/// A write the client saw acknowledged: it must be in every replica's store at `revision`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acked {
    pub key: Key,
    pub value: Val,
    pub revision: i64,
}

/// The operation a client is waiting for.
#[derive(Clone, Copy, Debug)]
pub struct Pending {
    pub seq: u64,
    pub node: u64,
    pub incarnation: u64,
    pub route: Route,
    pub op: KvOp,
    pub history: usize,
}

#[derive(Debug)]
pub struct Client {
    pub id: u64,
    next_seq: u64,
    pub pending: Option<Pending>,
    /// The last value this client saw per key: what its compare-and-sets expect, so that
    /// some of them succeed.
    seen: BTreeMap<Key, Option<Val>>,
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
            acked: Vec::new(),
        }
    }

    pub fn ticket(&self) -> Option<Ticket> {
        self.pending.map(|p| Ticket {
            client: self.id,
            op: p.seq,
        })
    }

    /// Draws the next operation and its route; `seq` is assigned by the caller via
    /// [`Client::begin`].
    pub fn draw(&self, rng: &mut Rng, swarm: &Swarm) -> (KvOp, Route) {
        let key = rng.range(1, swarm.keys);
        let value = (self.id << 32) | self.next_seq;
        if rng.below(100) < swarm.read_pct {
            let route = if rng.below(100) < swarm.log_read_pct {
                Route::Log
            } else {
                Route::Barrier
            };
            return (KvOp::Get { key }, route);
        }
        if rng.below(100) < swarm.cas_pct {
            let expect = match self.seen.get(&key) {
                Some(&seen) if rng.chance(0.8) => seen,
                _ => None,
            };
            let op = KvOp::Cas {
                key,
                expect,
                new: value,
            };
            return (op, Route::Log);
        }
        (KvOp::Put { key, value }, Route::Log)
    }

    /// Starts waiting for an operation; returns its seq.
    pub fn begin(&mut self, node: u64, incarnation: u64, op: KvOp, route: Route, h: usize) -> u64 {
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

    /// The pending operation completed with `answered`.
    pub fn finish(&mut self, answered: Answered) -> Pending {
        let p = self
            .pending
            .take()
            .expect("finish without a pending operation");
        let written = match (p.op, answered.result) {
            (KvOp::Put { key, value }, _) => Some((key, value)),
            (KvOp::Cas { key, new, .. }, KvResult::Swapped(true)) => Some((key, new)),
            _ => None,
        };
        if let Some((key, value)) = written {
            let revision = answered.revision;
            self.acked.push(Acked {
                key,
                value,
                revision,
            });
        }
        match (p.op, answered.result) {
            (KvOp::Get { key }, KvResult::Value(v)) => {
                self.seen.insert(key, v);
            }
            (KvOp::Put { key, value }, _) => {
                self.seen.insert(key, Some(value));
            }
            (KvOp::Cas { key, new, .. }, KvResult::Swapped(true)) => {
                self.seen.insert(key, Some(new));
            }
            _ => {}
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
