//! At-most-once execution per `(client_id, seq)`.
//!
//! A client that times out retries with the same sequence number, and the retry may reach
//! the log twice. For each client we keep the last sequence applied and what a duplicate of
//! it needs: the same sequence again is not executed but answered from what was kept; an
//! older one is a stale duplicate and is refused. Clients are expected to number their
//! commands increasingly and to wait for one before sending the next (as etcd's own clients
//! do per request).
//!
//! What is kept is only what exactly-once needs, never what was read (docs/KV.md,
//! "Deduplication"):
//! - a command that cannot write (a Range, a Txn with no write in any branch) keeps nothing
//!   but its sequence: a duplicate runs again, which changes nothing;
//! - an error keeps the error;
//! - a command that could write keeps its response stripped of everything it read: header
//!   revisions, whether a txn's compares held, how many keys each delete removed; no range
//!   results, no `prev_kv`s. A txn whose stripped response would still take more than
//!   [`KEPT_OUTCOME_BYTES_MAX`] keeps its header and `succeeded` only.
//!
//! The table is bounded in clients (`clients_max`) and in the bytes it keeps
//! (`kept_bytes_max`, accounted as [`kept_bytes`] says). When over either, the client least
//! recently applied is forgotten; "recent" counts applied commands (a logical clock advanced
//! identically on every replica), never wall time, so every replica evicts the same client.

use crate::error::KvError;
use crate::response::{
    DeleteRangeResponse, PutResponse, RangeResponse, Response, ResponseOp, TxnResponse,
};
use imbl::OrdMap;
use std::collections::BTreeMap;

pub(crate) type Outcome = Result<Response, KvError>;

/// The most bytes (as [`kept_bytes`] accounts them) one client's kept outcome may take: a
/// txn's stripped response beyond it keeps its header and `succeeded` only. 4 KiB is 254
/// ops, more than a txn within etcd's `--max-txn-ops` has unless it nests.
pub const KEPT_OUTCOME_BYTES_MAX: u64 = 4096;

/// The most bytes the whole table keeps by default (see [`kept_bytes`]).
pub const DEFAULT_KEPT_BYTES_MAX: u64 = 4 << 20;

/// Accounted per client (its id, sequence, use stamp and outcome tag), whatever it keeps.
const ENTRY_BYTES: u64 = 32;
/// Accounted per response op a kept txn response holds.
const OP_BYTES: u64 = 16;

/// What the table keeps of a command's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kept {
    /// The command could not write: a duplicate is run again.
    Read,
    /// The error, or the response stripped of what was read.
    Outcome(Outcome),
}

impl Kept {
    /// What to keep of `outcome`, the outcome of a command that `read_only` or not.
    pub(crate) fn of(read_only: bool, outcome: &Outcome) -> Kept {
        if read_only {
            return Kept::Read;
        }
        Kept::Outcome(match outcome {
            Ok(resp) => Ok(strip(resp)),
            Err(e) => Err(e.clone()),
        })
    }

    /// What to keep of an outcome remembered whole by an older version (snapshot format 1),
    /// whose request is not known any more: a Range is a read; a Txn might have written, so
    /// its response is stripped rather than run again.
    pub(crate) fn from_v1(outcome: &Outcome) -> Kept {
        let read_only = matches!(outcome, Ok(Response::Range(_)));
        Kept::of(read_only, outcome)
    }
}

/// The response without what it read, within [`KEPT_OUTCOME_BYTES_MAX`].
fn strip(resp: &Response) -> Response {
    match resp {
        Response::Range(r) => Response::Range(strip_range(r)),
        Response::Put(p) => Response::Put(strip_put(p)),
        Response::DeleteRange(d) => Response::DeleteRange(strip_delete(d)),
        // Nothing read: kept whole.
        Response::Compact(_)
        | Response::LeaseGrant(_)
        | Response::LeaseRevoke(_)
        | Response::LeaseEpoch(_) => resp.clone(),
        Response::Txn(t) => {
            let mut kept = strip_txn(t);
            if ENTRY_BYTES + OP_BYTES * ops(&kept) > KEPT_OUTCOME_BYTES_MAX {
                kept.responses = Vec::new();
            }
            Response::Txn(kept)
        }
    }
}

fn strip_range(r: &RangeResponse) -> RangeResponse {
    RangeResponse {
        header: r.header,
        ..RangeResponse::default()
    }
}

fn strip_put(p: &PutResponse) -> PutResponse {
    PutResponse {
        header: p.header,
        prev_kv: None,
    }
}

fn strip_delete(d: &DeleteRangeResponse) -> DeleteRangeResponse {
    DeleteRangeResponse {
        header: d.header,
        deleted: d.deleted,
        prev_kvs: Vec::new(),
    }
}

fn strip_txn(t: &TxnResponse) -> TxnResponse {
    TxnResponse {
        header: t.header,
        succeeded: t.succeeded,
        responses: t
            .responses
            .iter()
            .map(|op| match op {
                ResponseOp::Range(r) => ResponseOp::Range(strip_range(r)),
                ResponseOp::Put(p) => ResponseOp::Put(strip_put(p)),
                ResponseOp::DeleteRange(d) => ResponseOp::DeleteRange(strip_delete(d)),
                ResponseOp::Txn(inner) => ResponseOp::Txn(strip_txn(inner)),
            })
            .collect(),
    }
}

/// Response ops in a txn response, nested ones included.
fn ops(t: &TxnResponse) -> u64 {
    t.responses
        .iter()
        .map(|op| match op {
            ResponseOp::Txn(inner) => 1 + ops(inner),
            _ => 1,
        })
        .sum()
}

/// The bytes a client entry is accounted: [`ENTRY_BYTES`], plus [`OP_BYTES`] per op of a
/// kept txn response. Stripped responses hold no keys or values, so this follows their
/// encoded size (within a small factor) without encoding them; it is the same on every
/// replica, which eviction needs.
pub(crate) fn kept_bytes(kept: &Kept) -> u64 {
    match kept {
        Kept::Outcome(Ok(Response::Txn(t))) => ENTRY_BYTES + OP_BYTES * ops(t),
        _ => ENTRY_BYTES,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClientEntry {
    pub(crate) last_seq: u64,
    /// The value of `ClientTable::clock` when this client was last applied.
    pub(crate) last_used: u64,
    pub(crate) kept: Kept,
}

/// What to do with a command that is not new.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Answer this, without executing.
    Answer(Outcome),
    /// A duplicate of a command that cannot write: run it again.
    Again,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClientTable {
    pub(crate) clients_max: usize,
    pub(crate) kept_bytes_max: u64,
    /// Advances on every command recorded or replayed.
    pub(crate) clock: u64,
    /// Persistent (shared copy-on-write with snapshot views, like the keyspace).
    pub(crate) clients: OrdMap<u64, ClientEntry>,
    /// `last_used -> client_id`, the eviction order (derived; rebuilt on restore).
    pub(crate) by_use: BTreeMap<u64, u64>,
    /// The sum of [`kept_bytes`] over the clients (derived; recounted on restore).
    pub(crate) kept_bytes: u64,
}

impl ClientTable {
    /// A table of at most `clients_max` (at least 1) keeping at most `kept_bytes_max` bytes
    /// (at least one client's [`KEPT_OUTCOME_BYTES_MAX`]).
    pub(crate) fn new(clients_max: usize, kept_bytes_max: u64) -> ClientTable {
        ClientTable {
            clients_max: clients_max.max(1),
            kept_bytes_max: kept_bytes_max.max(KEPT_OUTCOME_BYTES_MAX),
            clock: 0,
            clients: OrdMap::new(),
            by_use: BTreeMap::new(),
            kept_bytes: 0,
        }
    }

    /// What to do instead of executing, if `(client_id, seq)` is not new.
    /// Client 0 is anonymous and never deduplicated.
    pub(crate) fn replay(&mut self, client_id: u64, seq: u64) -> Option<Replay> {
        if client_id == 0 {
            return None;
        }
        // Nearly always a new sequence: look without a mutable lookup (which copies nodes a
        // snapshot view shares).
        let last_seq = self.clients.get(&client_id)?.last_seq;
        if seq > last_seq {
            return None;
        }
        if seq < last_seq {
            return Some(Replay::Answer(Err(KvError::Stale {
                client_id,
                seq,
                last_seq,
            })));
        }
        let entry = self.clients.get_mut(&client_id)?;
        self.clock += 1;
        self.by_use.remove(&entry.last_used);
        entry.last_used = self.clock;
        self.by_use.insert(self.clock, client_id);
        Some(match &entry.kept {
            Kept::Read => Replay::Again,
            Kept::Outcome(outcome) => Replay::Answer(outcome.clone()),
        })
    }

    /// Remembers what a duplicate of a newly executed command needs.
    pub(crate) fn record(&mut self, client_id: u64, seq: u64, kept: Kept) {
        if client_id == 0 {
            return;
        }
        self.clock += 1;
        let bytes = kept_bytes(&kept);
        let entry = ClientEntry {
            last_seq: seq,
            last_used: self.clock,
            kept,
        };
        if let Some(old) = self.clients.insert(client_id, entry) {
            self.by_use.remove(&old.last_used);
            self.kept_bytes -= kept_bytes(&old.kept);
        }
        self.kept_bytes += bytes;
        self.by_use.insert(self.clock, client_id);
        self.evict();
    }

    /// Forgets the least recently used clients while over a bound. The newest client stays:
    /// it alone is within both bounds.
    pub(crate) fn evict(&mut self) {
        while self.clients.len() > self.clients_max || self.kept_bytes > self.kept_bytes_max {
            let Some((_, evicted)) = self.by_use.pop_first() else {
                break;
            };
            if let Some(old) = self.clients.remove(&evicted) {
                self.kept_bytes -= kept_bytes(&old.kept);
            }
        }
    }

    /// Rebuilds the derived eviction index and byte count after a restore.
    pub(crate) fn reindex(&mut self) {
        self.by_use = self
            .clients
            .iter()
            .map(|(id, e)| (e.last_used, *id))
            .collect();
        self.kept_bytes = self.clients.values().map(|e| kept_bytes(&e.kept)).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::{CompactionResponse, KeyValue, ResponseHeader};

    fn outcome(rev: i64) -> Kept {
        Kept::Outcome(Ok(Response::Compact(CompactionResponse {
            header: ResponseHeader { revision: rev },
        })))
    }

    fn answer(k: Kept) -> Option<Replay> {
        match k {
            Kept::Outcome(o) => Some(Replay::Answer(o)),
            Kept::Read => Some(Replay::Again),
        }
    }

    #[test]
    fn replays_last_and_refuses_older() {
        let mut t = ClientTable::new(10, DEFAULT_KEPT_BYTES_MAX);
        assert_eq!(t.replay(1, 5), None);
        t.record(1, 5, outcome(2));
        assert_eq!(t.replay(1, 5), answer(outcome(2)));
        assert!(matches!(
            t.replay(1, 4),
            Some(Replay::Answer(Err(KvError::Stale { last_seq: 5, .. })))
        ));
        assert_eq!(t.replay(1, 6), None);
        assert_eq!(t.replay(0, 0), None);
        t.record(0, 0, outcome(3));
        assert!(!t.clients.contains_key(&0));
        // A read is run again, and still refuses older sequences.
        t.record(1, 6, Kept::Read);
        assert_eq!(t.replay(1, 6), Some(Replay::Again));
        assert!(matches!(t.replay(1, 5), Some(Replay::Answer(Err(_)))));
    }

    #[test]
    fn evicts_least_recently_used() {
        let mut t = ClientTable::new(2, DEFAULT_KEPT_BYTES_MAX);
        t.record(1, 1, outcome(1));
        t.record(2, 1, outcome(2));
        // Touching client 1 makes client 2 the oldest.
        assert!(t.replay(1, 1).is_some());
        t.record(3, 1, outcome(3));
        assert_eq!(t.clients.keys().copied().collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(t.by_use.len(), 2);
        let mut rebuilt = t.clone();
        rebuilt.reindex();
        assert_eq!(rebuilt, t);
    }

    fn big_txn(ops: usize) -> Outcome {
        let kv = KeyValue {
            key: "k".into(),
            value: vec![b'v'; 1000].into(),
            ..KeyValue::default()
        };
        Ok(Response::Txn(TxnResponse {
            header: ResponseHeader { revision: 9 },
            succeeded: true,
            responses: (0..ops)
                .map(|i| {
                    if i % 2 == 0 {
                        ResponseOp::Range(RangeResponse {
                            kvs: vec![kv.clone(); 10],
                            count: 10,
                            ..RangeResponse::default()
                        })
                    } else {
                        ResponseOp::Put(PutResponse {
                            header: ResponseHeader { revision: 9 },
                            prev_kv: Some(kv.clone()),
                        })
                    }
                })
                .collect(),
        }))
    }

    #[test]
    fn keeps_no_reads_and_bounds_each_client() {
        let Kept::Outcome(Ok(Response::Txn(t))) = Kept::of(false, &big_txn(100)) else {
            panic!("a txn response")
        };
        assert_eq!(t.responses.len(), 100);
        assert!(t.succeeded);
        assert!(t.responses.iter().all(|op| match op {
            ResponseOp::Range(r) => r.kvs.is_empty() && r.count == 0,
            ResponseOp::Put(p) => p.prev_kv.is_none() && p.header.revision == 9,
            _ => false,
        }));
        // Too many ops to keep: the header and `succeeded` only.
        let kept = Kept::of(false, &big_txn(300));
        let Kept::Outcome(Ok(Response::Txn(t))) = &kept else {
            panic!("a txn response")
        };
        assert!(t.responses.is_empty() && t.succeeded && t.header.revision == 9);
        assert!(kept_bytes(&kept) <= KEPT_OUTCOME_BYTES_MAX);
        assert_eq!(Kept::of(true, &big_txn(3)), Kept::Read);
    }

    #[test]
    fn evicts_to_stay_within_the_byte_bound() {
        let mut t = ClientTable::new(100, 2 * KEPT_OUTCOME_BYTES_MAX);
        for id in 1..=4 {
            t.record(id, 1, Kept::of(false, &big_txn(200)));
        }
        assert!(t.kept_bytes <= 2 * KEPT_OUTCOME_BYTES_MAX);
        assert_eq!(t.clients.keys().copied().collect::<Vec<_>>(), vec![3, 4]);
        let mut rebuilt = t.clone();
        rebuilt.reindex();
        assert_eq!(rebuilt, t);
    }
}
