//! Snapshots: the whole replicated state (keyspace with history, revisions, dedup table) as
//! one byte string, so a lagging replica can install it instead of replaying the log.
//!
//! Layout: magic `SKVS`, a format version byte, the body, then a CRC-32C of everything
//! before it (little-endian). The body is canonical: two stores in the same state encode to
//! the same bytes, which is what the determinism checks compare.
//!
//! Taking a snapshot is split in two: [`KvStore::snapshot_view`] freezes the state in O(1)
//! (the store's maps are persistent, see store.rs), and [`SnapshotView::encode`] serializes
//! the frozen state, on any thread, while the store goes on applying commands.

use crate::codec::{put_outcome, read_outcome, read_tagged_outcome};
use crate::dedup::{kept_bytes, ClientEntry, ClientTable, Kept, KEPT_OUTCOME_BYTES_MAX};
use crate::error::DecodeError;
use crate::lease::{encode_leases, read_leases, Lease};
use crate::request::LeaseEpoch;
use crate::store::{KeyHistory, KvStore, Record};
use crate::wire::{put_bytes, put_i64, put_len, put_u8, put_varint, Reader};
use bytes::Bytes;
use imbl::OrdMap;
use std::collections::BTreeMap;
use std::ops::Bound::{Included, Unbounded};

const MAGIC: &[u8; 4] = b"SKVS";

/// The snapshot format this code writes. It also reads format 2 (records without lease and
/// sub-revision, no lease table) and format 1 (before the dedup table kept only what
/// exactly-once needs), whose outcomes it strips as it reads them.
pub const SNAPSHOT_FORMAT_VERSION: u8 = 3;

/// Format 1: the dedup table kept whole outcomes, reads included, and had no byte bound.
const FORMAT_V1: u8 = 1;

/// Format 2: records carry no lease and no sub-revision, and there is no lease table.
const FORMAT_V2: u8 = 2;

/// A kept outcome's tag for a command that could not write (0 and 1 are
/// `codec::put_outcome`'s response and error).
const KEPT_READ: u8 = 2;

const TOMBSTONE: u8 = 0;
const LIVE: u8 = 1;

/// The whole state of a [`KvStore`] as of the moment [`KvStore::snapshot_view`] was called,
/// frozen: later writes to the store do not show in it. Cheap to take and to clone (it
/// shares the store's structure), `Send + Sync + 'static`, so it can be encoded on another
/// thread. Holding one makes the store copy each part (B-tree node, key history) the first
/// time it writes to it, so drop views once encoded.
#[derive(Clone, Debug)]
pub struct SnapshotView {
    revision: i64,
    compact_revision: i64,
    keys: OrdMap<Bytes, KeyHistory>,
    clients_max: usize,
    kept_bytes_max: u64,
    clock: u64,
    clients: OrdMap<u64, ClientEntry>,
    /// The store's `size_bytes` then: a capacity hint for the encoding.
    size: u64,
    /// Keys from this one on may hold records compaction made unreachable (compact.rs).
    trim_from: Option<Bytes>,
    leases: OrdMap<i64, Lease>,
    lease_epoch: LeaseEpoch,
}

impl SnapshotView {
    /// The store revision the view holds.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Encodes the state: the bytes [`KvStore::snapshot`] gave when the view was taken.
    /// Takes time and memory in proportion to the whole store (all history kept).
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        self.encode_into(&mut buf);
        buf.shrink_to_fit();
        buf
    }

    /// Appends the encoding to `buf` (after whatever a caller put there, such as a header of
    /// its own): a snapshot of a large store is then built in one buffer, with no second
    /// allocation and copy of the whole thing.
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        // `size` overestimates the encoding a little (per-record overheads), so one
        // allocation nearly always holds it all.
        buf.reserve(usize::try_from(self.size).unwrap_or(1024));
        let start = buf.len();
        buf.extend_from_slice(MAGIC);
        put_u8(buf, SNAPSHOT_FORMAT_VERSION);
        put_i64(buf, self.revision);
        put_i64(buf, self.compact_revision);
        // Histories not trimmed yet since the last compaction are encoded as if they were,
        // so the bytes do not depend on how far trimming got (compact.rs).
        let cuts: Vec<usize> = match &self.trim_from {
            Some(from) => self
                .keys
                .range::<_, [u8]>((Included(&from[..]), Unbounded))
                .map(|(_, hist)| hist.compaction_cut(self.compact_revision))
                .collect(),
            None => Vec::new(),
        };
        let trimmed = self.keys.len() - cuts.len();
        let gone = self
            .keys
            .iter()
            .skip(trimmed)
            .zip(&cuts)
            .filter(|((_, hist), &cut)| cut == hist.len())
            .count();
        put_len(buf, self.keys.len() - gone);
        let mut cuts = cuts.into_iter();
        for (i, (key, hist)) in self.keys.iter().enumerate() {
            let cut = if i < trimmed {
                0
            } else {
                cuts.next().unwrap_or(0)
            };
            if cut == hist.len() {
                continue;
            }
            put_bytes(buf, key);
            put_len(buf, hist.len() - cut);
            for rec in hist.iter().skip(cut) {
                put_i64(buf, rec.mod_rev);
                put_varint(buf, u64::from(rec.sub));
                match &rec.value {
                    Some(value) => {
                        put_u8(buf, LIVE);
                        put_i64(buf, rec.create_rev);
                        put_i64(buf, rec.version);
                        put_bytes(buf, value);
                        put_i64(buf, rec.lease);
                    }
                    None => put_u8(buf, TOMBSTONE),
                }
            }
        }
        encode_leases(buf, &self.leases, self.lease_epoch);
        put_varint(buf, self.clients_max as u64);
        put_varint(buf, self.kept_bytes_max);
        put_varint(buf, self.clock);
        put_len(buf, self.clients.len());
        for (id, entry) in &self.clients {
            put_varint(buf, *id);
            put_varint(buf, entry.last_seq);
            put_varint(buf, entry.last_used);
            match &entry.kept {
                Kept::Read => put_u8(buf, KEPT_READ),
                Kept::Outcome(outcome) => put_outcome(buf, outcome),
            }
        }
        let crc = crc32c::crc32c(&buf[start..]);
        buf.extend_from_slice(&crc.to_le_bytes());
    }
}

impl KvStore {
    /// Freezes the complete state in O(1) (a few pointer copies), for
    /// [`SnapshotView::encode`] to serialize later, on any thread.
    pub fn snapshot_view(&self) -> SnapshotView {
        SnapshotView {
            revision: self.revision,
            compact_revision: self.compact_revision,
            keys: self.keys.clone(),
            clients_max: self.clients.clients_max,
            kept_bytes_max: self.clients.kept_bytes_max,
            clock: self.clients.clock,
            clients: self.clients.clients.clone(),
            size: self.size,
            trim_from: self.trim_from.clone(),
            leases: self.leases.clone(),
            lease_epoch: self.lease_epoch,
        }
    }

    /// Encodes the complete state (`self.snapshot_view().encode()`).
    pub fn snapshot(&self) -> Bytes {
        Bytes::from(self.snapshot_view().encode())
    }

    /// Rebuilds a store from [`KvStore::snapshot`] output. Corruption (bad checksum, unknown
    /// version, inconsistent contents) is an error, never a panic.
    pub fn restore(snapshot: &[u8]) -> Result<KvStore, DecodeError> {
        let header = MAGIC.len() + 1;
        if snapshot.len() < header + 4 {
            return Err(DecodeError("snapshot too short"));
        }
        let (body, crc) = snapshot.split_at(snapshot.len() - 4);
        if &body[..MAGIC.len()] != MAGIC {
            return Err(DecodeError("not a synod-kv snapshot"));
        }
        let version = body[MAGIC.len()];
        if !matches!(version, FORMAT_V1 | FORMAT_V2 | SNAPSHOT_FORMAT_VERSION) {
            return Err(DecodeError("unsupported snapshot format version"));
        }
        let expected = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32c::crc32c(body) != expected {
            return Err(DecodeError("snapshot checksum mismatch"));
        }
        let mut r = Reader::new(&body[header..]);
        let revision = r.i64()?;
        let compact_revision = r.i64()?;
        if revision < 1 || compact_revision < -1 || compact_revision > revision {
            return Err(DecodeError("snapshot revisions out of range"));
        }
        let keys = read_keys(&mut r, revision, version)?;
        let (leases, lease_epoch) = if version >= SNAPSHOT_FORMAT_VERSION {
            read_leases(&mut r, &keys)?
        } else {
            (OrdMap::new(), LeaseEpoch::default())
        };
        let clients = read_clients(&mut r, version)?;
        r.finish()?;
        let changes = crate::index::rebuild(&keys, revision, compact_revision)?;
        let mut store = KvStore {
            keys,
            revision,
            compact_revision,
            live_keys: 0,
            size: 0,
            clients,
            trim_from: None,
            changes,
            trim_index: false,
            changing: Vec::new(),
            leases,
            lease_epoch,
        };
        store.recount();
        Ok(store)
    }
}

fn read_keys(
    r: &mut Reader<'_>,
    revision: i64,
    version: u8,
) -> Result<OrdMap<Bytes, KeyHistory>, DecodeError> {
    // key length + one key byte + record count.
    let n = r.len(3)?;
    let mut keys: Vec<(Bytes, KeyHistory)> = Vec::with_capacity(n);
    // Formats before 3 have no sub-revisions: number a revision's changes in key order.
    let mut next_sub: BTreeMap<i64, u32> = BTreeMap::new();
    for _ in 0..n {
        let key = r.bytes()?;
        if key.is_empty() || keys.last().is_some_and(|(prev, _)| *prev >= key) {
            return Err(DecodeError("snapshot keys not strictly increasing"));
        }
        // mod revision + tag.
        let m = r.len(2)?;
        if m == 0 {
            return Err(DecodeError("snapshot key without history"));
        }
        let mut records: Vec<Record> = Vec::with_capacity(m);
        for _ in 0..m {
            let mod_rev = r.i64()?;
            if mod_rev > revision || records.last().map_or(mod_rev < 1, |p| p.mod_rev >= mod_rev) {
                return Err(DecodeError("snapshot record revisions out of order"));
            }
            let sub = if version >= SNAPSHOT_FORMAT_VERSION {
                u32::try_from(r.varint()?)
                    .map_err(|_| DecodeError("snapshot sub-revision out of range"))?
            } else {
                let next = next_sub.entry(mod_rev).or_insert(0);
                *next += 1;
                *next - 1
            };
            records.push(read_record(r, mod_rev, sub, version)?);
        }
        let hist = KeyHistory::from_records(records).expect("m > 0 records");
        keys.push((key, hist));
    }
    Ok(keys.into_iter().collect())
}

/// The rest of a record whose revision and sub-revision are known.
fn read_record(
    r: &mut Reader<'_>,
    mod_rev: i64,
    sub: u32,
    format: u8,
) -> Result<Record, DecodeError> {
    Ok(match r.u8()? {
        LIVE => {
            let create_rev = r.i64()?;
            let version = r.i64()?;
            if create_rev < 1 || create_rev > mod_rev || version < 1 {
                return Err(DecodeError("snapshot record inconsistent"));
            }
            let value = Some(r.bytes()?);
            let lease = if format >= SNAPSHOT_FORMAT_VERSION {
                r.i64()?
            } else {
                0
            };
            Record {
                mod_rev,
                create_rev,
                version,
                lease,
                sub,
                value,
            }
        }
        TOMBSTONE => Record {
            mod_rev,
            create_rev: 0,
            version: 0,
            lease: 0,
            sub,
            value: None,
        },
        _ => return Err(DecodeError("unknown snapshot record tag")),
    })
}

fn read_clients(r: &mut Reader<'_>, version: u8) -> Result<ClientTable, DecodeError> {
    let clients_max = usize::try_from(r.varint()?)
        .ok()
        .filter(|&m| m >= 1)
        .ok_or(DecodeError("snapshot client bound out of range"))?;
    let kept_bytes_max = if version == FORMAT_V1 {
        crate::dedup::DEFAULT_KEPT_BYTES_MAX
    } else {
        Some(r.varint()?)
            .filter(|&m| m >= KEPT_OUTCOME_BYTES_MAX)
            .ok_or(DecodeError("snapshot kept bytes bound out of range"))?
    };
    let clock = r.varint()?;
    // id, seq, last use, outcome tag.
    let n = r.len(4)?;
    if n > clients_max {
        return Err(DecodeError("snapshot holds more clients than its bound"));
    }
    let mut table = ClientTable::new(clients_max, kept_bytes_max);
    table.clock = clock;
    let mut last_id = 0u64;
    for _ in 0..n {
        let id = r.varint()?;
        if id <= last_id {
            return Err(DecodeError("snapshot client ids not strictly increasing"));
        }
        last_id = id;
        let last_seq = r.varint()?;
        let last_used = r.varint()?;
        if last_used > clock {
            return Err(DecodeError("snapshot client used after the clock"));
        }
        let kept = if version == FORMAT_V1 {
            Kept::from_v1(&read_outcome(r)?)
        } else {
            read_kept(r)?
        };
        table.clients.insert(
            id,
            ClientEntry {
                last_seq,
                last_used,
                kept,
            },
        );
    }
    table.reindex();
    if table.by_use.len() != table.clients.len() {
        return Err(DecodeError("snapshot clients share a use stamp"));
    }
    if version == FORMAT_V1 {
        // Format 1 had no byte bound: forget the least recently used, as applying would.
        table.evict();
    } else if table.kept_bytes > table.kept_bytes_max {
        return Err(DecodeError("snapshot clients keep more than their bound"));
    }
    Ok(table)
}

/// A kept outcome of format 2: what [`Kept::of`] keeps, and nothing more.
fn read_kept(r: &mut Reader<'_>) -> Result<Kept, DecodeError> {
    let tag = r.u8()?;
    if tag == KEPT_READ {
        return Ok(Kept::Read);
    }
    let outcome = read_tagged_outcome(tag, r)?;
    let kept = Kept::Outcome(outcome);
    // Stripping what is stripped changes nothing; anything else was never kept.
    let restripped = match &kept {
        Kept::Outcome(o) => Kept::of(false, o),
        Kept::Read => Kept::Read,
    };
    if restripped != kept || kept_bytes(&kept) > KEPT_OUTCOME_BYTES_MAX {
        return Err(DecodeError("snapshot keeps more of an outcome than needed"));
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::DEFAULT_KEPT_BYTES_MAX;
    use crate::request::*;
    use crate::Request;
    use proptest::prelude::*;

    fn sample() -> KvStore {
        let mut s = KvStore::with_clients_max(3);
        let reqs = [
            Request::Put(PutRequest::new("a", "1")),
            Request::Put(PutRequest::new("b", "2")),
            Request::Put(PutRequest::new("a", "3")),
            Request::DeleteRange(DeleteRangeRequest::key("b")),
            Request::Put(PutRequest::new("c", "")),
            Request::Compact(CompactionRequest { revision: 3 }),
            Request::Range(RangeRequest::prefix("")),
            Request::Put(PutRequest::new("", "bad")),
        ];
        for (i, req) in reqs.iter().enumerate() {
            let _ = s.apply(1 + i as u64 % 4, i as u64, req);
        }
        s
    }

    #[test]
    fn round_trip_restores_equal_state() {
        let s = sample();
        let snap = s.snapshot();
        let restored = KvStore::restore(&snap).unwrap();
        assert_eq!(restored, s);
        assert_eq!(restored.snapshot(), snap);
        let empty = KvStore::new();
        assert_eq!(KvStore::restore(&empty.snapshot()).unwrap(), empty);
    }

    #[test]
    fn corruption_is_detected() {
        let snap = sample().snapshot().to_vec();
        for i in 0..snap.len() {
            let mut bad = snap.clone();
            bad[i] ^= 0x40;
            assert!(KvStore::restore(&bad).is_err(), "flip at {i} not detected");
        }
        for len in 0..snap.len() {
            assert!(KvStore::restore(&snap[..len]).is_err());
        }
        let mut bad = snap.clone();
        bad[4] = SNAPSHOT_FORMAT_VERSION + 1;
        assert_eq!(
            KvStore::restore(&bad),
            Err(DecodeError("unsupported snapshot format version"))
        );
    }

    /// A view is frozen: writes after it (to the same keys, txns, deletes, compaction of
    /// everything it holds, new clients) do not show in it.
    #[test]
    fn view_encodes_the_state_when_taken() {
        fn assert_send_static<T: Send + Sync + 'static>(_: &T) {}
        let mut s = sample();
        let before = s.snapshot();
        let view = s.snapshot_view();
        assert_send_static(&view);
        let reqs = [
            Request::Put(PutRequest::new("a", "4")),
            Request::Put(PutRequest::new("d", "5")),
            Request::Txn(TxnRequest {
                compare: vec![],
                success: vec![
                    RequestOp::Put(PutRequest::new("e", "6")),
                    RequestOp::DeleteRange(DeleteRangeRequest::key("c")),
                ],
                failure: vec![],
            }),
            Request::DeleteRange(DeleteRangeRequest::range("a", "\0")),
            Request::Compact(CompactionRequest { revision: 9 }),
        ];
        for (i, req) in reqs.iter().enumerate() {
            s.apply(10 + i as u64, 1, req).unwrap();
        }
        assert_eq!(s.key_count(), 0);
        let copy = view.clone();
        drop(view);
        let encoded = std::thread::spawn(move || copy.encode()).join().unwrap();
        assert_eq!(encoded, before);
        assert_eq!(KvStore::restore(&encoded).unwrap(), sample());
        // The store went on as if no view had been taken.
        let restored = KvStore::restore(&s.snapshot()).unwrap();
        assert_eq!(restored, s);
    }

    /// A format 1 snapshot (whole outcomes, reads included) restores with what format 2
    /// keeps: a Range through the log is a read, a txn keeps no range results or prev_kvs.
    #[test]
    fn format_1_restores_keeping_no_reads() {
        use crate::response::*;
        let kv = KeyValue {
            key: "a".into(),
            value: vec![b'x'; 1000].into(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            lease: 0,
        };
        let range = RangeResponse {
            header: ResponseHeader { revision: 2 },
            kvs: vec![kv.clone(); 3],
            more: false,
            count: 3,
        };
        let txn = TxnResponse {
            header: ResponseHeader { revision: 3 },
            succeeded: true,
            responses: vec![
                ResponseOp::Range(range.clone()),
                ResponseOp::Put(PutResponse {
                    header: ResponseHeader { revision: 3 },
                    prev_kv: Some(kv),
                }),
            ],
        };
        let mut body = MAGIC.to_vec();
        body.push(FORMAT_V1);
        put_i64(&mut body, 3);
        put_i64(&mut body, -1);
        put_len(&mut body, 0);
        put_varint(&mut body, 10); // clients_max
        put_varint(&mut body, 2); // clock
        put_len(&mut body, 2);
        for (id, outcome) in [(1, Response::Range(range)), (2, Response::Txn(txn))] {
            put_varint(&mut body, id);
            put_varint(&mut body, 1);
            put_varint(&mut body, id);
            put_outcome(&mut body, &Ok(outcome));
        }
        let crc = crc32c::crc32c(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        assert!(body.len() > 4000);
        let mut s = KvStore::restore(&body).unwrap();
        assert_eq!(s.clients.clients[&1].kept, Kept::Read);
        let read = Request::Range(RangeRequest::key("a"));
        let Ok(Response::Range(r)) = s.apply(1, 1, &read) else {
            panic!()
        };
        assert_eq!(r.count, 0); // read again, in the restored (empty) store
        let Ok(Response::Txn(t)) = s.apply(2, 1, &read) else {
            panic!()
        };
        let [ResponseOp::Range(r), ResponseOp::Put(p)] = &t.responses[..] else {
            panic!("{t:?}")
        };
        assert!(r.kvs.is_empty() && p.prev_kv.is_none() && p.header.revision == 3);
        let again = s.snapshot();
        assert_eq!(again[MAGIC.len()], SNAPSHOT_FORMAT_VERSION);
        assert!(again.len() < 200, "{} bytes", again.len());
        assert_eq!(KvStore::restore(&again).unwrap(), s);
    }

    /// A body that passes the checksum but lies (keys out of order, two records at one
    /// sub-revision) is still refused.
    #[test]
    fn inconsistent_body_with_valid_checksum_is_refused() {
        let body = |keys: [&[u8]; 2], subs: [u64; 2]| {
            let mut body = MAGIC.to_vec();
            body.push(SNAPSHOT_FORMAT_VERSION);
            put_i64(&mut body, 5);
            put_i64(&mut body, -1);
            put_len(&mut body, 2);
            for (key, sub) in keys.into_iter().zip(subs) {
                put_bytes(&mut body, key);
                put_len(&mut body, 1);
                put_i64(&mut body, 2);
                put_varint(&mut body, sub);
                put_u8(&mut body, TOMBSTONE);
            }
            put_len(&mut body, 0); // leases
            put_varint(&mut body, 0);
            put_varint(&mut body, 0);
            put_varint(&mut body, 10);
            put_varint(&mut body, DEFAULT_KEPT_BYTES_MAX);
            put_varint(&mut body, 0);
            put_len(&mut body, 0);
            let crc = crc32c::crc32c(&body);
            body.extend_from_slice(&crc.to_le_bytes());
            body
        };
        assert!(KvStore::restore(&body([b"a", b"b"], [0, 1])).is_ok());
        assert_eq!(
            KvStore::restore(&body([b"b", b"a"], [0, 1])),
            Err(DecodeError("snapshot keys not strictly increasing"))
        );
        assert_eq!(
            KvStore::restore(&body([b"a", b"b"], [1, 1])),
            Err(DecodeError("snapshot records share a sub-revision"))
        );
    }

    /// A format 2 snapshot (no leases, no sub-revisions) restores with lease 0 everywhere
    /// and each revision's changes numbered in key order; it is written back as format 3.
    #[test]
    fn format_2_restores_numbering_changes_in_key_order() {
        let mut body = MAGIC.to_vec();
        body.push(FORMAT_V2);
        put_i64(&mut body, 4);
        put_i64(&mut body, 2);
        // a: put at 2, put at 3; b: put at 3, deleted at 4; c: deleted at 4 after 3.
        type Records<'a> = &'a [(i64, bool)];
        let records: [(&[u8], Records); 3] = [
            (b"a", &[(2, true), (3, true)]),
            (b"b", &[(3, true), (4, false)]),
            (b"c", &[(3, true), (4, false)]),
        ];
        put_len(&mut body, records.len());
        for (key, recs) in records {
            put_bytes(&mut body, key);
            put_len(&mut body, recs.len());
            for &(rev, live) in recs {
                put_i64(&mut body, rev);
                if live {
                    put_u8(&mut body, LIVE);
                    put_i64(&mut body, recs[0].0);
                    put_i64(&mut body, rev - recs[0].0 + 1);
                    put_bytes(&mut body, b"v");
                } else {
                    put_u8(&mut body, TOMBSTONE);
                }
            }
        }
        put_varint(&mut body, 10);
        put_varint(&mut body, DEFAULT_KEPT_BYTES_MAX);
        put_varint(&mut body, 0);
        put_len(&mut body, 0);
        let crc = crc32c::crc32c(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        let s = KvStore::restore(&body).unwrap();
        let sub = |k: &[u8], rev| s.keys[k].exactly_at(rev).map(|r| (r.sub, r.lease));
        assert_eq!(sub(b"a", 2), Some((0, 0)));
        assert_eq!(
            [sub(b"a", 3), sub(b"b", 3), sub(b"c", 3)],
            [Some((0, 0)), Some((1, 0)), Some((2, 0))]
        );
        assert_eq!([sub(b"b", 4), sub(b"c", 4)], [Some((0, 0)), Some((1, 0))]);
        // The index starts at the compaction revision (2).
        let listed: Vec<(i64, usize)> = s.changes.range(0, 9).map(|(r, k)| (r, k.len())).collect();
        assert_eq!(listed, [(2, 1), (3, 3), (4, 2)]);
        let again = s.snapshot();
        assert_eq!(again[MAGIC.len()], SNAPSHOT_FORMAT_VERSION);
        assert_eq!(KvStore::restore(&again).unwrap(), s);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = KvStore::restore(&buf);
            // Also with a valid frame around garbage, to reach the body parser.
            for version in [FORMAT_V1, FORMAT_V2, SNAPSHOT_FORMAT_VERSION] {
                let mut framed = MAGIC.to_vec();
                framed.push(version);
                framed.extend_from_slice(&buf);
                let crc = crc32c::crc32c(&framed);
                framed.extend_from_slice(&crc.to_le_bytes());
                let _ = KvStore::restore(&framed);
            }
        }
    }
}
