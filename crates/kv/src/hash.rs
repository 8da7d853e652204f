//! Hashes of the keyspace, for members to compare: etcd's HashKV, reproduced exactly, and
//! Synod's own Hash.
//!
//! HashKV (etcd's `hashByRev` and `kvHasher`): CRC-32C over the bucket name `key`, then
//! over every record bolt would hold, in (revision, sub) order, each as its bolt key (8-byte
//! big-endian revision, `_`, 8-byte big-endian sub-revision, `t` for a tombstone) followed by
//! its value (the protobuf `mvccpb.KeyValue`; a tombstone's holds only the key). Records
//! above the requested revision are left out; so are those at or below the compaction
//! revision that are not the live version visible at the requested one (etcd's `Keep`,
//! unless no key is live there), and a tombstone at the compaction revision. Records come
//! from the histories as compaction leaves them, so the hash does not depend on how far
//! trimming got. docs/design/WATCH_LEASE.md 1.8 has etcd 3.5.30's values for a script; the
//! tests reproduce them.
//!
//! etcd's Hash is a CRC of its whole bolt file, which Synod cannot reproduce; Synod's is the
//! CRC-32C of the canonical snapshot encoding of the revisions, the keyspace and the lease
//! table (not the dedup table): equal on every member at one applied revision.

use crate::error::KvError;
use crate::lease::Lease;
use crate::read::ReadView;
use crate::request::LeaseEpoch;
use crate::store::{Keyspace, KvStore, Record};
use crate::wire::{put_bytes, put_i64, put_len, put_u8, put_varint};
use bytes::Bytes;
use imbl::OrdMap;

/// etcd's HashKV answer (the header revision is the store's current one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashKv {
    pub hash: u32,
    /// The compaction revision; -1 if never compacted (etcd's value).
    pub compact_revision: i64,
}

/// The bucket etcd keeps the records in; its name starts the hash.
const BUCKET: &[u8] = b"key";

impl Keyspace<'_> {
    fn hash_kv(self, rev: i64, current: i64) -> Result<HashKv, KvError> {
        let compact = self.compact_revision;
        if rev > 0 && rev < compact {
            return Err(KvError::Compacted);
        }
        if rev > current {
            return Err(KvError::FutureRevision);
        }
        // As etcd: 0 is the current revision (a negative one selects no record).
        let rev = if rev == 0 { current } else { rev };
        let mut crc = crc32c::crc32c(BUCKET);
        let mut buf = Vec::new();
        // Records at or below the compaction revision: each key's live version there, if it
        // is still the version visible at `rev` (unless no key is live at `rev`).
        let keep_any = self.keys.values().any(|h| h.at(rev).is_some());
        let mut old: Vec<(&Bytes, &Record)> = self
            .keys
            .iter()
            .filter_map(|(k, h)| {
                let r = h.at(compact)?;
                let kept = !keep_any || h.at(rev).is_some_and(|v| v.mod_rev == r.mod_rev);
                (r.mod_rev <= rev && kept).then_some((k, r))
            })
            .collect();
        old.sort_unstable_by_key(|(_, r)| (r.mod_rev, r.sub));
        for (key, rec) in old {
            crc = hash_record(crc, &mut buf, key, rec);
        }
        // Every record after it, from the revision index.
        for (r, keys) in self.changes.range(compact + 1, rev) {
            for key in keys.iter() {
                if let Some(rec) = self.keys.get(&key[..]).and_then(|h| h.exactly_at(r)) {
                    crc = hash_record(crc, &mut buf, key, rec);
                }
            }
        }
        Ok(HashKv {
            hash: crc,
            compact_revision: compact,
        })
    }
}

/// Adds one record, as bolt holds it, to the CRC.
fn hash_record(crc: u32, buf: &mut Vec<u8>, key: &[u8], rec: &Record) -> u32 {
    buf.clear();
    buf.extend_from_slice(&rec.mod_rev.to_be_bytes());
    buf.push(b'_');
    buf.extend_from_slice(&i64::from(rec.sub).to_be_bytes());
    match &rec.value {
        Some(value) => {
            pb_bytes(buf, 1, key);
            pb_int(buf, 2, rec.create_rev);
            pb_int(buf, 3, rec.mod_rev);
            pb_int(buf, 4, rec.version);
            pb_bytes(buf, 5, value);
            pb_int(buf, 6, rec.lease);
        }
        None => {
            buf.push(b't');
            pb_bytes(buf, 1, key);
        }
    }
    crc32c::crc32c_append(crc, buf)
}

/// A protobuf varint field (proto3: omitted when 0; negative numbers as 10-byte two's
/// complement, as Go's int64 encodes).
fn pb_int(buf: &mut Vec<u8>, field: u8, v: i64) {
    if v != 0 {
        buf.push(field << 3);
        put_varint(buf, v as u64);
    }
}

/// A protobuf length-delimited field (omitted when empty).
fn pb_bytes(buf: &mut Vec<u8>, field: u8, v: &[u8]) {
    if !v.is_empty() {
        buf.push(field << 3 | 2);
        put_varint(buf, v.len() as u64);
        buf.extend_from_slice(v);
    }
}

/// Synod's Hash: the CRC-32C of the snapshot encoding of revisions, keyspace (as compaction
/// leaves it) and lease table, computed record by record without building the encoding.
fn hash(ks: Keyspace<'_>, revision: i64, leases: &OrdMap<i64, Lease>, epoch: LeaseEpoch) -> u32 {
    let mut buf = Vec::new();
    put_i64(&mut buf, revision);
    put_i64(&mut buf, ks.compact_revision);
    let mut crc = crc32c::crc32c(&buf);
    for (key, hist) in ks.keys {
        let cut = hist.compaction_cut(ks.compact_revision);
        if cut == hist.len() {
            continue;
        }
        buf.clear();
        put_bytes(&mut buf, key);
        put_len(&mut buf, hist.len() - cut);
        crc = crc32c::crc32c_append(crc, &buf);
        for rec in hist.iter().skip(cut) {
            buf.clear();
            put_i64(&mut buf, rec.mod_rev);
            put_varint(&mut buf, u64::from(rec.sub));
            match &rec.value {
                Some(value) => {
                    put_u8(&mut buf, 1);
                    put_i64(&mut buf, rec.create_rev);
                    put_i64(&mut buf, rec.version);
                    put_bytes(&mut buf, value);
                    put_i64(&mut buf, rec.lease);
                }
                None => put_u8(&mut buf, 0),
            }
            crc = crc32c::crc32c_append(crc, &buf);
        }
    }
    buf.clear();
    crate::lease::encode_leases(&mut buf, leases, epoch);
    crc32c::crc32c_append(crc, &buf)
}

impl KvStore {
    /// etcd's HashKV at `rev` (0: the current revision): `Compacted` below the compaction
    /// revision, `FutureRevision` above the current one. Reads every key and the revision
    /// index from the compaction on: run it on a [`ReadView`] off the applying thread.
    pub fn hash_kv(&self, rev: i64) -> Result<HashKv, KvError> {
        self.keyspace().hash_kv(rev, self.revision)
    }

    /// Synod's Hash (see the module docs): equal on members at the same applied revision.
    pub fn hash(&self) -> u32 {
        hash(
            self.keyspace(),
            self.revision,
            &self.leases,
            self.lease_epoch,
        )
    }
}

impl ReadView {
    /// [`KvStore::hash_kv`] as of the view.
    pub fn hash_kv(&self, rev: i64) -> Result<HashKv, KvError> {
        self.keyspace().hash_kv(rev, self.revision())
    }

    /// [`KvStore::hash`] as of the view.
    pub fn hash(&self) -> u32 {
        let ks = self.keyspace();
        hash(ks, self.revision(), ks.leases, self.lease_epoch())
    }
}

#[cfg(test)]
mod tests {
    use crate::request::*;
    use crate::*;

    fn apply(s: &mut KvStore, req: Request) {
        s.apply(0, 0, &req).unwrap();
    }

    fn put(s: &mut KvStore, key: &str, value: &str, lease: i64) {
        let mut p = PutRequest::new(key.to_owned(), value.to_owned());
        p.lease = lease;
        apply(s, Request::Put(p));
    }

    fn hash(s: &KvStore, rev: i64) -> Result<(u32, i64), KvError> {
        let h = s.hash_kv(rev)?;
        let v = s.read_view().hash_kv(rev)?;
        assert_eq!(h, v);
        Ok((h.hash, h.compact_revision))
    }

    /// etcd 3.5.30's answers to docs/design/WATCH_LEASE.md 1.8's script. At the compaction
    /// revision Synod computes the hash afresh, as etcd does after a restart (etcd answers
    /// a hash remembered from the compaction until then).
    #[test]
    fn hash_kv_matches_etcd() {
        let mut s = KvStore::new();
        assert_eq!(hash(&s, 0), Ok((1084519789, -1)));
        assert_eq!(hash(&s, 1), Ok((1084519789, -1)));
        put(&mut s, "a", "1", 0); // 2
        put(&mut s, "b", "2", 0); // 3
        put(&mut s, "a", "3", 0); // 4
        apply(&mut s, Request::DeleteRange(DeleteRangeRequest::key("b"))); // 5
        apply(
            &mut s,
            Request::Txn(TxnRequest {
                compare: vec![],
                success: vec![
                    RequestOp::Put(PutRequest::new("c", "4")),
                    RequestOp::Put(PutRequest::new("d", "5")),
                    RequestOp::DeleteRange(DeleteRangeRequest::key("a")),
                ],
                failure: vec![],
            }),
        ); // 6
        apply(
            &mut s,
            Request::LeaseGrant(LeaseGrantRequest {
                id: 0x1234,
                ttl: 3600,
            }),
        );
        put(&mut s, "e", "6", 0x1234); // 7
        put(&mut s, "c", "7", 0); // 8
        for (rev, want) in [
            (0, 1496930474),
            (8, 1496930474),
            (4, 2069675932),
            (5, 1125682900),
            (6, 3071562260),
            (7, 3363873713),
        ] {
            assert_eq!(hash(&s, rev), Ok((want, -1)), "rev {rev}");
        }
        assert_eq!(hash(&s, 9), Err(KvError::FutureRevision));
        let payload = encode_request(&Request::Compact(CompactionRequest { revision: 5 }));
        s.apply_encoded_with(0, 0, &payload, Reads::Skip);
        // Whatever trimming got to.
        let mut steps = 0;
        loop {
            for (rev, want) in [
                (0, 1195082910),
                (8, 1195082910),
                (5, 3184071396),
                (6, 3561739795),
                (7, 1395948503),
            ] {
                assert_eq!(hash(&s, rev), Ok((want, 5)), "rev {rev}, step {steps}");
            }
            assert_eq!(hash(&s, 4), Err(KvError::Compacted));
            if !s.compact_step(2) {
                break;
            }
            steps += 1;
        }
        assert!(steps > 1);
        put(&mut s, "f", "8", 0); // 9
        for (rev, want) in [
            (0, 3063500052),
            (9, 3063500052),
            (7, 1395948503),
            (5, 3184071396),
        ] {
            assert_eq!(hash(&s, rev), Ok((want, 5)), "rev {rev}");
        }
        let restored = KvStore::restore(&s.snapshot()).unwrap();
        assert_eq!(restored.hash_kv(0), s.hash_kv(0));
    }

    /// Synod's Hash: equal for equal states (a restored copy, whatever trimming got to),
    /// different when keys, revisions or leases differ; a view keeps its own.
    #[test]
    fn hash_follows_the_state() {
        let mut s = KvStore::new();
        let empty = s.hash();
        put(&mut s, "a", "1", 0);
        put(&mut s, "a", "2", 0);
        let two = s.hash();
        assert_ne!(empty, two);
        let view = s.read_view();
        apply(
            &mut s,
            Request::LeaseGrant(LeaseGrantRequest { id: 1, ttl: 5 }),
        );
        let leased = s.hash();
        assert_ne!(leased, two);
        assert_eq!(view.hash(), two);
        let payload = encode_request(&Request::Compact(CompactionRequest { revision: 3 }));
        s.apply_encoded_with(0, 0, &payload, Reads::Skip);
        let compacted = s.hash();
        assert_ne!(compacted, leased);
        assert_eq!(KvStore::restore(&s.snapshot()).unwrap().hash(), compacted);
        while s.compact_step(1) {}
        assert_eq!(s.hash(), compacted);
        assert_eq!(s.read_view().hash(), compacted);
    }
}
