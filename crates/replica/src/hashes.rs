//! Maintenance.HashKV and Maintenance.Hash. Both read every key of the store (HashKV also
//! the revision index from the compaction on), so a turn never computes them: the replica
//! freezes the store in a view (O(1)) and hands the shell a [`HashJob`] to run elsewhere
//! (the server: on a read worker), as it does with large reads.
//!
//! The answer covers this member's applied store when the request arrived, without a read
//! barrier: etcd also answers from the member's own backend, since a hash is for comparing
//! members, and the revision it reports says which state it covers.

use crate::effects::Answer;
use crate::error::ReplicaError;
use crate::replica::Replica;
use crate::Waiter;
use synod_kv::ReadView;

/// Which hash a [`HashJob`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashKind {
    /// etcd's HashKV at `revision` (0: the view's revision).
    Kv { revision: i64 },
    /// Synod's own Hash of the whole state (etcd's hashes its database file).
    Store,
}

/// A hash of the store frozen in `view`, too costly for a turn: the shell runs it and
/// answers `waiter` with [`Answer::HashKv`] or [`Answer::Hash`].
#[derive(Debug)]
pub struct HashJob<W> {
    pub view: ReadView,
    pub kind: HashKind,
    pub waiter: W,
}

impl<W: Waiter> HashJob<W> {
    /// Computes the hash here, however long it takes; returns whom to answer and with what,
    /// or `None` if the waiter gave up before it started.
    pub fn run(self) -> Option<(W, Result<Answer, ReplicaError>)> {
        if self.waiter.is_gone() {
            return None;
        }
        let revision = self.view.revision();
        let answer = match self.kind {
            HashKind::Kv { revision: at } => self
                .view
                .hash_kv(at)
                .map(|hash| Answer::HashKv { hash, revision })
                .map_err(ReplicaError::from),
            HashKind::Store => Ok(Answer::Hash {
                hash: self.view.hash(),
                revision,
            }),
        };
        Some((self.waiter, answer))
    }
}

impl<W: Waiter> Replica<W> {
    /// etcd's HashKV of this member's store at `revision` (0: its current revision), as a
    /// [`HashJob`] in the effects.
    pub fn hash_kv(&mut self, revision: i64, waiter: W) {
        self.start_hash(HashKind::Kv { revision }, waiter);
    }

    /// Synod's Hash of this member's store, as a [`HashJob`] in the effects.
    pub fn hash(&mut self, waiter: W) {
        self.start_hash(HashKind::Store, waiter);
    }

    fn start_hash(&mut self, kind: HashKind, waiter: W) {
        self.fx.hashes.push(HashJob {
            view: self.kv.read_view(),
            kind,
            waiter,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ReplicaConfig, Restored, Unobserved};
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Duration;
    use synod_kv::{CompactionRequest, KvError, KvStore, PutRequest, Request};
    use synod_paxos::{Config, DurableState, Membership};

    /// A waiter whose client may have gone.
    #[derive(Debug, Clone, Default)]
    struct Client(Rc<Cell<bool>>);

    impl Waiter for Client {
        fn is_gone(&self) -> bool {
            self.0.get()
        }
    }

    /// A replica over a store with a few revisions, compacted at 3 (never started: hashes
    /// need only the store).
    fn replica() -> Replica<Client> {
        let mut kv = KvStore::new();
        for (i, key) in ["a", "b", "a", "c"].into_iter().enumerate() {
            let put = Request::Put(PutRequest::new(key, format!("v{i}")));
            kv.apply(0, 0, &put).unwrap();
        }
        let compact = Request::Compact(CompactionRequest { revision: 3 });
        kv.apply(0, 0, &compact).unwrap();
        let cfg = ReplicaConfig {
            engine: Config::new(1),
            tick: Duration::from_millis(1),
            request_timeout: Duration::from_millis(500),
            snapshot_every_commands: u64::MAX,
            snapshot_chunk_bytes: 1 << 20,
            cluster_id: 1,
            member_id: 1,
            name: "one".into(),
            client_urls: Vec::new(),
            auto_compaction: None,
            incarnation: 1,
            lease_second: Duration::from_millis(10),
            watch_progress_interval: Duration::from_secs(60),
            planted: crate::Planted::default(),
        };
        let durable = DurableState::bootstrap(&Membership::new([1]).unwrap());
        let restored = Restored { kv, latest: None };
        Replica::new(cfg, durable, restored, Box::new(Unobserved)).unwrap()
    }

    fn run(r: &mut Replica<Client>) -> Result<Answer, ReplicaError> {
        let mut jobs = r.effects().hashes;
        assert_eq!(jobs.len(), 1);
        let (_, answer) = jobs.pop().unwrap().run().expect("the client waits");
        answer
    }

    #[test]
    fn hashes_are_the_stores_with_its_revision() {
        let mut r = replica();
        let want = r.kv().read_view();
        for at in [0, 3, 4, 5] {
            r.hash_kv(at, Client::default());
            match run(&mut r) {
                Ok(Answer::HashKv { hash, revision }) => {
                    assert_eq!(Ok(hash), want.hash_kv(at), "at {at}");
                    assert_eq!(revision, 5);
                }
                other => panic!("at {at}: {other:?}"),
            }
        }
        r.hash(Client::default());
        match run(&mut r) {
            Ok(Answer::Hash { hash, revision }) => assert_eq!((hash, revision), (want.hash(), 5)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn revisions_out_of_reach_are_etcds_errors() {
        let mut r = replica();
        r.hash_kv(2, Client::default());
        assert!(matches!(
            run(&mut r),
            Err(ReplicaError::Kv(KvError::Compacted))
        ));
        r.hash_kv(6, Client::default());
        assert!(matches!(
            run(&mut r),
            Err(ReplicaError::Kv(KvError::FutureRevision))
        ));
    }

    #[test]
    fn a_client_that_left_gets_no_hash() {
        let mut r = replica();
        let client = Client::default();
        r.hash(client.clone());
        client.0.set(true);
        let job = r.effects().hashes.pop().expect("a job");
        assert!(job.run().is_none());
    }
}
