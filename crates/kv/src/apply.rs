//! The state machine's entry points for commands from the log.

use crate::codec::decode_request;
use crate::dedup::{Kept, Replay};
use crate::error::KvError;
use crate::read::{Applied, ApplyReads, LeaseApplied, Reads};
use crate::request::Request;
use crate::response::Response;
use crate::store::KvStore;
use crate::validate::{check_range_request, check_request};

impl KvStore {
    /// Applies one command from the log, at most once per `(client_id, seq)`: a repeat of
    /// the client's last sequence is not executed but answered from what the dedup table
    /// kept (see docs/KV.md, "Deduplication": a write's response without what it read), an
    /// older sequence fails with [`KvError::Stale`]. `client_id` 0 opts out of
    /// deduplication (for commands the server itself issues, such as periodic compaction).
    /// Every read in the command runs here, however large, and a compaction drops the
    /// history it makes unreachable before this returns.
    pub fn apply(&mut self, client_id: u64, seq: u64, req: &Request) -> Result<Response, KvError> {
        let reads = Reads::Within(u64::MAX);
        let outcome = match self.clients.replay(client_id, seq) {
            Some(Replay::Answer(outcome)) => outcome,
            Some(Replay::Again) => self.execute(req, reads).outcome(),
            None => self.apply_new(client_id, seq, req, reads).outcome(),
        };
        self.finish_compaction();
        outcome
    }

    /// [`KvStore::apply`] for an encoded payload (`Command.payload`). Duplicates of writes
    /// are answered before decoding. A payload that does not decode fails with
    /// [`KvError::Malformed`] on every replica alike; it is not remembered, since decoding
    /// it again fails again.
    pub fn apply_encoded(
        &mut self,
        client_id: u64,
        seq: u64,
        payload: &[u8],
    ) -> Result<Response, KvError> {
        let outcome = self
            .apply_encoded_with(client_id, seq, payload, Reads::Within(u64::MAX))
            .outcome();
        self.finish_compaction();
        outcome
    }

    /// [`KvStore::apply_encoded`], computing of the command's reads (which change nothing)
    /// only what `reads` asks: none if nobody waits for the answer, or those within a budget,
    /// leaving the rest to [`Applied::complete`] on another thread. The state, and what the
    /// dedup table keeps, are the same whatever `reads` is. A compaction leaves the history
    /// it makes unreachable to [`KvStore::compact_step`].
    pub fn apply_encoded_with(
        &mut self,
        client_id: u64,
        seq: u64,
        payload: &[u8],
        reads: Reads,
    ) -> Applied {
        let again = match self.clients.replay(client_id, seq) {
            Some(Replay::Answer(outcome)) => return Applied::replayed(outcome),
            Some(Replay::Again) => true,
            None => false,
        };
        let req = match decode_request(payload) {
            Ok(req) => req,
            Err(e) => return Applied::done(Err(KvError::Malformed(e))),
        };
        if again {
            self.execute(&req, reads)
        } else {
            self.apply_new(client_id, seq, &req, reads)
        }
    }

    fn apply_new(&mut self, client_id: u64, seq: u64, req: &Request, reads: Reads) -> Applied {
        let applied = self.execute(req, reads);
        let kept = Kept::of(req.is_read_only(), &applied.outcome);
        self.clients.record(client_id, seq, kept);
        applied
    }

    fn execute(&mut self, req: &Request, reads: Reads) -> Applied {
        let before = self.revision;
        let mut reads = ApplyReads::new(reads);
        let outcome = self.execute_with(req, &mut reads);
        let mut applied = reads.finish(outcome);
        if applied.outcome.is_ok() {
            applied.lease = match req {
                Request::LeaseGrant(g) => Some(LeaseApplied::Granted {
                    id: g.id,
                    ttl: g.ttl,
                }),
                Request::LeaseRevoke(r) => Some(LeaseApplied::Revoked { id: r.id }),
                Request::LeaseEpoch(e) => Some(LeaseApplied::Epoch(*e)),
                _ => None,
            };
        }
        if self.revision != before {
            applied.changes = self
                .changes
                .get(self.revision)
                .map(|keys| (self.revision, keys.clone()));
        }
        applied
    }

    fn execute_with(&mut self, req: &Request, reads: &mut ApplyReads) -> Result<Response, KvError> {
        check_request(req)?;
        match req {
            Request::Range(r) => {
                check_range_request(r)?;
                self.keyspace()
                    .check_read_revision(r.revision, self.revision)?;
                Ok(Response::Range(reads.range(self, r, self.revision)))
            }
            Request::Put(p) => self.apply_put(p).map(Response::Put),
            Request::DeleteRange(d) => Ok(Response::DeleteRange(self.apply_delete(d))),
            Request::Txn(t) => self.apply_txn(t, reads).map(Response::Txn),
            Request::Compact(c) => self.compact(c.revision).map(Response::Compact),
            Request::LeaseGrant(g) => self.apply_lease_grant(g).map(Response::LeaseGrant),
            Request::LeaseRevoke(r) => self.apply_lease_revoke(r).map(Response::LeaseRevoke),
            Request::LeaseEpoch(e) => Ok(Response::LeaseEpoch(self.apply_lease_epoch(*e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::codec::tests::request;
    use crate::request::*;
    use crate::*;
    use proptest::prelude::*;

    #[test]
    fn duplicate_returns_the_stored_response_without_executing() {
        let mut s = KvStore::new();
        let req = Request::Put(PutRequest::new("k", "v"));
        let first = s.apply(7, 1, &req).unwrap();
        let again = s.apply(7, 1, &req).unwrap();
        assert_eq!(first, again);
        assert_eq!(s.revision(), 2);
        // Even a different request under the same sequence gets the recorded answer.
        let other = Request::Put(PutRequest::new("x", "y"));
        assert_eq!(s.apply(7, 1, &other).unwrap(), first);
        assert_eq!(s.key_count(), 1);
        // An older sequence is refused.
        assert!(matches!(
            s.apply(7, 0, &other),
            Err(KvError::Stale {
                client_id: 7,
                seq: 0,
                last_seq: 1
            })
        ));
        // Newer sequences execute; errors are remembered too.
        let bad = Request::Put(PutRequest::new("", "y"));
        assert_eq!(s.apply(7, 2, &bad), Err(KvError::EmptyKey));
        assert_eq!(s.apply(7, 2, &req), Err(KvError::EmptyKey));
        assert_eq!(s.revision(), 2);
        // Client 0 is never deduplicated.
        s.apply(0, 1, &req).unwrap();
        s.apply(0, 1, &req).unwrap();
        assert_eq!(s.revision(), 4);
    }

    #[test]
    fn dedup_survives_snapshots() {
        let mut s = KvStore::new();
        let req = Request::Put(PutRequest::new("k", "v"));
        let first = s.apply(9, 4, &req).unwrap();
        let mut restored = KvStore::restore(&s.snapshot()).unwrap();
        assert_eq!(restored.apply(9, 4, &req).unwrap(), first);
        assert_eq!(restored.revision(), 2);
    }

    #[test]
    fn evicted_clients_are_forgotten_deterministically() {
        let mut s = KvStore::with_clients_max(2);
        let req = |k: &str| Request::Put(PutRequest::new(k.to_owned(), "v"));
        s.apply(1, 1, &req("a")).unwrap();
        s.apply(2, 1, &req("b")).unwrap();
        s.apply(3, 1, &req("c")).unwrap(); // evicts client 1
        assert_eq!(s.revision(), 4);
        s.apply(1, 1, &req("a")).unwrap(); // executes again
        assert_eq!(s.revision(), 5);
        s.apply(3, 1, &req("c")).unwrap(); // still remembered
        assert_eq!(s.revision(), 5);
    }

    #[test]
    fn encoded_commands() {
        let mut s = KvStore::new();
        let enc = encode_request(&Request::Put(PutRequest::new("k", "v")));
        let first = s.apply_encoded(1, 1, &enc).unwrap();
        assert_eq!(s.apply_encoded(1, 1, &enc).unwrap(), first);
        assert!(matches!(
            s.apply_encoded(1, 2, b"\x01\xff"),
            Err(KvError::Malformed(_))
        ));
        assert_eq!(s.revision(), 2);
        // A duplicate is answered before its payload is looked at.
        assert_eq!(s.apply_encoded(1, 1, b"garbage").unwrap(), first);
    }

    fn run(store: &mut KvStore, cmds: &[(u64, u64, Request)]) -> Vec<Result<Response, KvError>> {
        cmds.iter()
            .map(|(c, q, r)| store.apply(*c, *q, r))
            .collect()
    }

    /// A random command mix over a tiny keyspace, so commands collide often.
    fn command() -> impl Strategy<Value = (u64, u64, Request)> {
        let key = prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(bytes::Bytes::from);
        let end = prop::sample::select(vec!["", "\0", "c", "zz"]).prop_map(bytes::Bytes::from);
        let simple = prop_oneof![
            4 => (key.clone(), key.clone()).prop_map(|(k, v)| {
                let mut p = PutRequest::new(k, v);
                p.prev_kv = true;
                Request::Put(p)
            }),
            2 => (key.clone(), end.clone()).prop_map(|(k, e)| {
                let mut d = DeleteRangeRequest::range(k, e);
                d.prev_kv = true;
                Request::DeleteRange(d)
            }),
            1 => (0i64..12).prop_map(|revision| Request::Compact(CompactionRequest { revision })),
            2 => (1i64..3, key.clone()).prop_map(|(lease, k)| {
                let mut p = PutRequest::new(k, "leased");
                p.lease = lease;
                Request::Put(p)
            }),
            2 => (0i64..3, 1i64..20)
                .prop_map(|(id, ttl)| Request::LeaseGrant(LeaseGrantRequest { id, ttl })),
            1 => (0i64..3, prop::option::weighted(0.5, (0u64..2, 0u64..2)))
                .prop_map(|(id, e)| Request::LeaseRevoke(LeaseRevokeRequest {
                    id,
                    expiry: e.map(|(round, node)| LeaseEpoch { round, node }),
                })),
            1 => (0u64..2, 0u64..2)
                .prop_map(|(round, node)| Request::LeaseEpoch(LeaseEpoch { round, node })),
            1 => (key.clone(), end, 0i64..10).prop_map(|(k, e, rev)| {
                let mut r = RangeRequest::range(k, e);
                r.revision = rev;
                Request::Range(r)
            }),
        ];
        let any_request = prop_oneof![4 => simple, 1 => request()];
        (0u64..4, 0u64..6, any_request)
    }

    proptest! {
        /// Determinism: the same commands give the same responses and identical snapshots,
        /// including on a replica restored from a snapshot taken midway.
        #[test]
        fn replicas_agree(cmds in prop::collection::vec(command(), 0..60), cut in any::<prop::sample::Index>()) {
            let mut a = KvStore::with_clients_max(2);
            let mut b = KvStore::with_clients_max(2);
            let ra = run(&mut a, &cmds);
            let rb = run(&mut b, &cmds);
            prop_assert_eq!(&ra, &rb);
            prop_assert_eq!(a.snapshot(), b.snapshot());

            let split = cut.index(cmds.len() + 1);
            let mut c = KvStore::with_clients_max(2);
            let mut rc = run(&mut c, &cmds[..split]);
            let mut c = KvStore::restore(&c.snapshot()).unwrap();
            rc.extend(run(&mut c, &cmds[split..]));
            prop_assert_eq!(&ra, &rc);
            prop_assert_eq!(a.snapshot(), c.snapshot());

            prop_assert_eq!(a.leases().collect::<Vec<_>>(), c.leases().collect::<Vec<_>>());
            // The derived counters stay exact.
            let mut recounted = a.clone();
            recounted.recount();
            prop_assert_eq!((recounted.size_bytes(), recounted.key_count()), (a.size_bytes(), a.key_count()));
        }
    }
}
