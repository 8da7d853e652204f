//! Leases, as etcd's lessor keeps them in its state machine: a table of leases (id and
//! granted TTL) and, for each, the keys attached to it now. Time is not here: deadlines,
//! keep-alives and the decision that a lease expired belong to the replica's lessor
//! (leader only), which proposes a revoke through the log when one expires.
//!
//! - A grant adds a lease and changes no revision. A revoke deletes the lease's keys in one
//!   write, in key order (so watchers see them at one revision, in that order), and removes
//!   the lease; without keys it changes no revision.
//! - A put with a lease attaches the key (moving it from its previous lease), a put without
//!   `ignore_lease` detaches it, a delete detaches it. The keys of a lease are derived from
//!   the keys' latest records, so a snapshot carries only the table and restore rebuilds
//!   them by scanning the live keys, never the history.
//! - The lease epoch: the greatest leader epoch announced through the log. An expiry revoke
//!   carries the epoch it was decided under and takes effect only if that is still the
//!   store's epoch: a deposed leader's expiry chosen late is stale (docs/design/
//!   WATCH_LEASE.md section 3), and answered [`KvError::LeaseExpiryStale`].

use crate::codec::{put_epoch, read_epoch};
use crate::error::{DecodeError, KvError};
use crate::read::ReadView;
use crate::request::{LeaseEpoch, LeaseGrantRequest, LeaseRevokeRequest, LEASE_TTL_MAX};
use crate::response::{
    LeaseEpochResponse, LeaseGrantResponse, LeaseRevokeResponse, ResponseHeader,
};
use crate::store::{KeyHistory, KvStore};
use crate::wire::{put_i64, put_len, Reader};
use bytes::Bytes;
use imbl::{OrdMap, OrdSet};

/// A lease granted and not revoked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Lease {
    /// The TTL granted, in seconds.
    pub(crate) ttl: i64,
    /// The keys attached to it now (derived from the keys' latest records).
    pub(crate) keys: OrdSet<Bytes>,
}

impl KvStore {
    pub(crate) fn apply_lease_grant(
        &mut self,
        g: &LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, KvError> {
        // etcd's order: the id, the TTL, then whether it exists.
        if g.id == 0 {
            return Err(KvError::LeaseNotFound);
        }
        if g.ttl > LEASE_TTL_MAX {
            return Err(KvError::LeaseTtlTooLarge);
        }
        if self.leases.contains_key(&g.id) {
            return Err(KvError::LeaseExists);
        }
        let lease = Lease {
            ttl: g.ttl,
            keys: OrdSet::new(),
        };
        self.leases.insert(g.id, lease);
        Ok(LeaseGrantResponse {
            header: ResponseHeader {
                revision: self.revision,
            },
            id: g.id,
            ttl: g.ttl,
        })
    }

    pub(crate) fn apply_lease_revoke(
        &mut self,
        r: &LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse, KvError> {
        if r.expiry.is_some_and(|epoch| epoch != self.lease_epoch) {
            return Err(KvError::LeaseExpiryStale);
        }
        let Some(lease) = self.leases.get(&r.id) else {
            return Err(KvError::LeaseNotFound);
        };
        // Sorted (the set is ordered): the deletes get their sub-revisions in key order.
        let keys: Vec<Bytes> = lease.keys.iter().cloned().collect();
        let rev = self.revision + 1;
        for key in &keys {
            self.write_delete(key, rev);
        }
        self.commit_changes(rev);
        self.leases.remove(&r.id);
        Ok(LeaseRevokeResponse {
            header: ResponseHeader {
                revision: self.revision,
            },
        })
    }

    pub(crate) fn apply_lease_epoch(&mut self, epoch: LeaseEpoch) -> LeaseEpochResponse {
        self.lease_epoch = self.lease_epoch.max(epoch);
        LeaseEpochResponse {
            header: ResponseHeader {
                revision: self.revision,
            },
        }
    }

    /// Attaches `key` to `lease` (0: none). The lease exists: puts are checked first.
    pub(crate) fn attach(&mut self, lease: i64, key: Bytes) {
        if let Some(l) = self.leases.get_mut(&lease) {
            l.keys.insert(key);
        }
    }

    /// Detaches `key` from `lease` (0: none).
    pub(crate) fn detach(&mut self, lease: i64, key: &Bytes) {
        if let Some(l) = self.leases.get_mut(&lease) {
            l.keys.remove(key);
        }
    }

    /// The TTL lease `id` was granted, if it exists.
    pub fn lease(&self, id: i64) -> Option<i64> {
        self.leases.get(&id).map(|l| l.ttl)
    }

    /// Every lease, `(id, granted TTL)`, by id.
    pub fn leases(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.leases.iter().map(|(id, l)| (*id, l.ttl))
    }

    /// The keys attached to lease `id` now, sorted; none if it does not exist.
    pub fn lease_keys(&self, id: i64) -> Vec<Bytes> {
        keys_of(&self.leases, id)
    }

    /// The greatest leader epoch announced (expiry revokes under another one are stale).
    pub fn lease_epoch(&self) -> LeaseEpoch {
        self.lease_epoch
    }
}

/// The same reads on a frozen view (O(1) to take: the table is persistent).
impl ReadView {
    /// The TTL lease `id` was granted, if it existed when the view was taken.
    pub fn lease(&self, id: i64) -> Option<i64> {
        self.keyspace().leases.get(&id).map(|l| l.ttl)
    }

    /// Every lease, `(id, granted TTL)`, by id.
    pub fn leases(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.keyspace().leases.iter().map(|(id, l)| (*id, l.ttl))
    }

    /// The keys attached to lease `id`, sorted.
    pub fn lease_keys(&self, id: i64) -> Vec<Bytes> {
        keys_of(self.keyspace().leases, id)
    }
}

fn keys_of(leases: &OrdMap<i64, Lease>, id: i64) -> Vec<Bytes> {
    leases
        .get(&id)
        .map(|l| l.keys.iter().cloned().collect())
        .unwrap_or_default()
}

/// The snapshot's lease table: `n { id ttl }` by id, then the epoch.
pub(crate) fn encode_leases(buf: &mut Vec<u8>, leases: &OrdMap<i64, Lease>, epoch: LeaseEpoch) {
    put_len(buf, leases.len());
    for (id, lease) in leases {
        put_i64(buf, *id);
        put_i64(buf, lease.ttl);
    }
    put_epoch(buf, epoch);
}

/// Reads the lease table and attaches the keys whose latest version names a lease; a key
/// attached to a lease not in the table is an error.
pub(crate) fn read_leases(
    r: &mut Reader<'_>,
    keys: &OrdMap<Bytes, KeyHistory>,
) -> Result<(OrdMap<i64, Lease>, LeaseEpoch), DecodeError> {
    // id + ttl.
    let n = r.len(2)?;
    let mut leases = OrdMap::new();
    let mut last = None;
    for _ in 0..n {
        let id = r.i64()?;
        let ttl = r.i64()?;
        if id == 0 || last.is_some_and(|l| l >= id) || ttl > LEASE_TTL_MAX {
            return Err(DecodeError("snapshot lease table inconsistent"));
        }
        last = Some(id);
        let keys = OrdSet::new();
        leases.insert(id, Lease { ttl, keys });
    }
    let epoch = read_epoch(r)?;
    for (key, hist) in keys {
        let Some(lease) = hist.latest().map(|rec| rec.lease).filter(|&l| l != 0) else {
            continue;
        };
        let l = leases
            .get_mut(&lease)
            .ok_or(DecodeError("snapshot key attached to an unknown lease"))?;
        l.keys.insert(key.clone());
    }
    Ok((leases, epoch))
}

#[cfg(test)]
mod tests {
    use crate::request::*;
    use crate::*;
    use bytes::Bytes;

    fn apply(s: &mut KvStore, req: Request) -> Result<Response, KvError> {
        s.apply(0, 0, &req)
    }

    fn grant(s: &mut KvStore, id: i64, ttl: i64) -> Result<Response, KvError> {
        apply(s, Request::LeaseGrant(LeaseGrantRequest { id, ttl }))
    }

    fn revoke(s: &mut KvStore, id: i64, expiry: Option<LeaseEpoch>) -> Result<i64, KvError> {
        match apply(s, Request::LeaseRevoke(LeaseRevokeRequest { id, expiry }))? {
            Response::LeaseRevoke(r) => Ok(r.header.revision),
            other => panic!("{other:?}"),
        }
    }

    fn put(s: &mut KvStore, key: &str, lease: i64) -> Result<Response, KvError> {
        let mut p = PutRequest::new(key.to_owned(), "v");
        p.lease = lease;
        apply(s, Request::Put(p))
    }

    fn lease_of(s: &KvStore, key: &str) -> Option<i64> {
        let kvs = s.range(&RangeRequest::key(key.to_owned())).unwrap().kvs;
        kvs.first().map(|kv| kv.lease)
    }

    fn keys(s: &KvStore, id: i64) -> Vec<Bytes> {
        s.lease_keys(id)
    }

    #[test]
    fn grants_follow_etcd() {
        let mut s = KvStore::new();
        let Ok(Response::LeaseGrant(g)) = grant(&mut s, 7, 30) else {
            panic!()
        };
        assert_eq!((g.id, g.ttl, g.header.revision), (7, 30, 1));
        assert_eq!(grant(&mut s, 7, 30), Err(KvError::LeaseExists));
        assert_eq!(grant(&mut s, 0, 30), Err(KvError::LeaseNotFound));
        assert_eq!(
            grant(&mut s, 8, LEASE_TTL_MAX + 1),
            Err(KvError::LeaseTtlTooLarge)
        );
        grant(&mut s, -2, LEASE_TTL_MAX).unwrap();
        assert_eq!(
            s.leases().collect::<Vec<_>>(),
            [(-2, LEASE_TTL_MAX), (7, 30)]
        );
        assert_eq!((s.lease(7), s.lease(8)), (Some(30), None));
        // Grants change no revision.
        assert_eq!(s.revision(), 1);
    }

    /// Puts attach (moving keys between leases), a put without `ignore_lease` detaches, a
    /// delete detaches; compares on LEASE see the key's lease; unknown leases are refused.
    #[test]
    fn attach_and_detach() {
        let mut s = KvStore::new();
        grant(&mut s, 1, 10).unwrap();
        grant(&mut s, 2, 10).unwrap();
        assert_eq!(put(&mut s, "a", 3), Err(KvError::LeaseNotFound));
        put(&mut s, "a", 1).unwrap();
        put(&mut s, "b", 1).unwrap();
        put(&mut s, "c", 2).unwrap();
        assert_eq!(keys(&s, 1), [Bytes::from("a"), Bytes::from("b")]);
        assert_eq!(lease_of(&s, "a"), Some(1));
        put(&mut s, "a", 2).unwrap();
        assert_eq!(
            (keys(&s, 1), keys(&s, 2).len()),
            (vec![Bytes::from("b")], 2)
        );
        let mut keep = PutRequest::new("a", "w");
        keep.ignore_lease = true;
        apply(&mut s, Request::Put(keep)).unwrap();
        assert_eq!(lease_of(&s, "a"), Some(2));
        put(&mut s, "a", 0).unwrap();
        assert_eq!(
            (lease_of(&s, "a"), keys(&s, 2)),
            (Some(0), vec![Bytes::from("c")])
        );
        apply(&mut s, Request::DeleteRange(DeleteRangeRequest::key("c"))).unwrap();
        assert!(keys(&s, 2).is_empty());
        let on_lease = |s: &mut KvStore, key: &str, lease| {
            let c = Compare::new(
                key.to_owned(),
                CompareResult::Equal,
                CompareTarget::Lease(lease),
            );
            let t = TxnRequest {
                compare: vec![c],
                ..TxnRequest::default()
            };
            matches!(apply(s, Request::Txn(t)), Ok(Response::Txn(t)) if t.succeeded)
        };
        assert!(on_lease(&mut s, "b", 1) && !on_lease(&mut s, "b", 0));
        // In a txn the key check comes first; an unknown lease fails the whole txn.
        let mut leased = PutRequest::new("z", "1");
        leased.lease = 9;
        let t = TxnRequest {
            compare: vec![],
            success: vec![
                RequestOp::Put(PutRequest::new("y", "1")),
                RequestOp::Put(leased),
            ],
            failure: vec![],
        };
        let before = s.revision();
        assert_eq!(apply(&mut s, Request::Txn(t)), Err(KvError::LeaseNotFound));
        assert_eq!(s.revision(), before);
        assert_eq!(KvStore::restore(&s.snapshot()).unwrap(), s);
    }

    /// A revoke deletes the lease's keys at one revision, in key order (one index entry,
    /// one watch response); without keys it changes no revision; the lease is gone.
    #[test]
    fn revoke_deletes_the_keys_at_one_revision() {
        let mut s = KvStore::new();
        grant(&mut s, 5, 10).unwrap();
        grant(&mut s, 6, 10).unwrap();
        for key in ["m", "b", "x"] {
            put(&mut s, key, 5).unwrap();
        }
        put(&mut s, "other", 0).unwrap(); // 5
        let payload = encode_request(&Request::LeaseRevoke(LeaseRevokeRequest {
            id: 5,
            expiry: None,
        }));
        let applied = s.apply_encoded_with(1, 1, &payload, Reads::Skip);
        let (rev, changed) = applied.changes().unwrap();
        assert_eq!(applied.outcome().unwrap().header().revision, 6);
        assert_eq!(rev, 6);
        assert_eq!(
            changed[..],
            [Bytes::from("b"), Bytes::from("m"), Bytes::from("x")]
        );
        let all = KeyRange::new(Bytes::from("\0"), Bytes::from("\0"));
        let budget = Budget {
            events_max: 1,
            bytes_max: 1,
        };
        let c = s.changes(&all, 6, 6, budget).unwrap();
        assert!(c.events.iter().all(|e| e.kind == EventKind::Delete));
        assert_eq!(c.events.len(), 3);
        assert_eq!(s.key_count(), 1);
        assert_eq!(s.lease(5), None);
        assert_eq!(revoke(&mut s, 5, None), Err(KvError::LeaseNotFound));
        // A duplicate is answered from the dedup table, not revoked again.
        let again = s.apply_encoded_with(1, 1, &payload, Reads::Skip);
        assert!(again.is_replay() && again.changes().is_none());
        assert_eq!(revoke(&mut s, 6, None), Ok(6));
        assert_eq!(s.revision(), 6);
    }

    /// An expiry revoke takes effect only under the store's current lease epoch.
    #[test]
    fn stale_expiry_is_ignored() {
        let mut s = KvStore::new();
        let epoch = |round, node| LeaseEpoch { round, node };
        grant(&mut s, 1, 10).unwrap();
        put(&mut s, "k", 1).unwrap();
        apply(&mut s, Request::LeaseEpoch(epoch(3, 1))).unwrap();
        apply(&mut s, Request::LeaseEpoch(epoch(2, 9))).unwrap();
        assert_eq!(s.lease_epoch(), epoch(3, 1));
        assert_eq!(s.read_view().lease_epoch(), epoch(3, 1));
        for stale in [epoch(2, 9), epoch(3, 0), epoch(3, 2), epoch(4, 1)] {
            assert_eq!(
                revoke(&mut s, 1, Some(stale)),
                Err(KvError::LeaseExpiryStale)
            );
        }
        assert_eq!((s.lease(1), s.revision()), (Some(10), 2));
        assert_eq!(revoke(&mut s, 1, Some(epoch(3, 1))), Ok(3));
        assert_eq!(s.key_count(), 0);
    }

    /// The table, the epoch and the keys' leases survive snapshots; the attached keys are
    /// rebuilt; a key naming a lease not in the table is refused.
    #[test]
    fn leases_survive_snapshots() {
        let mut s = KvStore::new();
        grant(&mut s, 1, 10).unwrap();
        grant(&mut s, 2, 20).unwrap();
        put(&mut s, "a", 1).unwrap();
        put(&mut s, "b", 2).unwrap();
        apply(
            &mut s,
            Request::LeaseEpoch(LeaseEpoch { round: 4, node: 2 }),
        )
        .unwrap();
        let view = s.read_view();
        let restored = KvStore::restore(&s.snapshot()).unwrap();
        assert_eq!(restored, s);
        assert_eq!(restored.lease_keys(1), [Bytes::from("a")]);
        assert_eq!(restored.lease_epoch(), LeaseEpoch { round: 4, node: 2 });
        revoke(&mut s, 1, None).unwrap();
        assert_eq!(view.lease_keys(1), [Bytes::from("a")]);
        assert_eq!(view.leases().collect::<Vec<_>>(), [(1, 10), (2, 20)]);
        assert_eq!(view.lease(2), Some(20));
        // Drop lease 2 from the table by hand: key "b" then names an unknown lease.
        let mut broken = s.clone();
        broken.leases.remove(&2);
        assert_eq!(
            KvStore::restore(&broken.snapshot()),
            Err(crate::DecodeError(
                "snapshot key attached to an unknown lease"
            ))
        );
    }
}
