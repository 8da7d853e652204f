//! At-most-once execution per `(client_id, seq)`.
//!
//! A client that times out retries with the same sequence number, and the retry may reach
//! the log twice. For each client we keep the last sequence applied and its result: the same
//! sequence again gets that result without executing; an older one is a stale duplicate and
//! is refused. Clients are expected to number their commands increasingly and to wait for one
//! before sending the next (as etcd's own clients do per request).
//!
//! The table is bounded. When full, the client least recently applied is forgotten; "recent"
//! counts applied commands (a logical clock advanced identically on every replica), never
//! wall time, so every replica evicts the same client.

use crate::error::KvError;
use crate::response::Response;
use imbl::OrdMap;
use std::collections::BTreeMap;

pub(crate) type Outcome = Result<Response, KvError>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClientEntry {
    pub(crate) last_seq: u64,
    /// The value of `ClientTable::clock` when this client was last applied.
    pub(crate) last_used: u64,
    pub(crate) outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClientTable {
    pub(crate) max_clients: usize,
    /// Advances on every command recorded or replayed.
    pub(crate) clock: u64,
    /// Persistent (shared copy-on-write with snapshot views, like the keyspace).
    pub(crate) clients: OrdMap<u64, ClientEntry>,
    /// `last_used -> client_id`, the eviction order (derived; rebuilt on restore).
    pub(crate) by_use: BTreeMap<u64, u64>,
}

impl ClientTable {
    pub(crate) fn new(max_clients: usize) -> ClientTable {
        ClientTable {
            max_clients,
            clock: 0,
            clients: OrdMap::new(),
            by_use: BTreeMap::new(),
        }
    }

    /// The outcome to return instead of executing, if `(client_id, seq)` is not new.
    /// Client 0 is anonymous and never deduplicated.
    pub(crate) fn replay(&mut self, client_id: u64, seq: u64) -> Option<Outcome> {
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
            return Some(Err(KvError::Stale {
                client_id,
                seq,
                last_seq,
            }));
        }
        let entry = self.clients.get_mut(&client_id)?;
        self.clock += 1;
        self.by_use.remove(&entry.last_used);
        entry.last_used = self.clock;
        self.by_use.insert(self.clock, client_id);
        Some(entry.outcome.clone())
    }

    /// Remembers the outcome of a newly executed command.
    pub(crate) fn record(&mut self, client_id: u64, seq: u64, outcome: Outcome) {
        if client_id == 0 {
            return;
        }
        self.clock += 1;
        let entry = ClientEntry {
            last_seq: seq,
            last_used: self.clock,
            outcome,
        };
        if let Some(old) = self.clients.insert(client_id, entry) {
            self.by_use.remove(&old.last_used);
        }
        self.by_use.insert(self.clock, client_id);
        while self.clients.len() > self.max_clients {
            let Some((_, evicted)) = self.by_use.pop_first() else {
                break;
            };
            self.clients.remove(&evicted);
        }
    }

    /// Rebuilds the eviction index after a restore.
    pub(crate) fn reindex(&mut self) {
        self.by_use = self
            .clients
            .iter()
            .map(|(id, e)| (e.last_used, *id))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::{CompactionResponse, ResponseHeader};

    fn outcome(rev: i64) -> Outcome {
        Ok(Response::Compact(CompactionResponse {
            header: ResponseHeader { revision: rev },
        }))
    }

    #[test]
    fn replays_last_and_refuses_older() {
        let mut t = ClientTable::new(10);
        assert_eq!(t.replay(1, 5), None);
        t.record(1, 5, outcome(2));
        assert_eq!(t.replay(1, 5), Some(outcome(2)));
        assert!(matches!(
            t.replay(1, 4),
            Some(Err(KvError::Stale { last_seq: 5, .. }))
        ));
        assert_eq!(t.replay(1, 6), None);
        assert_eq!(t.replay(0, 0), None);
        t.record(0, 0, outcome(3));
        assert!(!t.clients.contains_key(&0));
    }

    #[test]
    fn evicts_least_recently_used() {
        let mut t = ClientTable::new(2);
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
}
