//! HashKV against a reference written from etcd's description alone (docs/design/
//! WATCH_LEASE.md 1.4), over the naive model's record of every revision: random requests,
//! leases and compactions, every revision hashed.

use bytes::Bytes;
use proptest::prelude::*;
use synod_kv::*;

mod support;

use support::gen::*;
use support::model::Model;

/// Appends a protobuf varint.
fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// `mvccpb.KeyValue` as gogoproto marshals it: fields in order, zero ones left out.
fn key_value(kv: &KeyValue) -> Vec<u8> {
    let mut buf = Vec::new();
    let bytes = |buf: &mut Vec<u8>, tag: u8, b: &Bytes| {
        if !b.is_empty() {
            buf.push(tag);
            varint(buf, b.len() as u64);
            buf.extend_from_slice(b);
        }
    };
    let int = |buf: &mut Vec<u8>, tag: u8, v: i64| {
        if v != 0 {
            buf.push(tag);
            varint(buf, v as u64);
        }
    };
    bytes(&mut buf, 0x0a, &kv.key);
    int(&mut buf, 0x10, kv.create_revision);
    int(&mut buf, 0x18, kv.mod_revision);
    int(&mut buf, 0x20, kv.version);
    bytes(&mut buf, 0x2a, &kv.value);
    int(&mut buf, 0x30, kv.lease);
    buf
}

/// etcd's HashKV from the model: every event is a record at (revision, place in it); those
/// compaction removed are gone (a key's versions before its live one at the compaction
/// revision, tombstones before it); then `kvHasher`'s rules.
fn reference(model: &Model, rev: i64) -> Result<(u32, i64), KvError> {
    let (current, compact) = (model.rev(), model.compacted);
    if rev > 0 && rev < compact {
        return Err(KvError::Compacted);
    }
    if rev > current {
        return Err(KvError::FutureRevision);
    }
    let rev = if rev == 0 { current } else { rev };
    let state_at = |r: i64| &model.states[(r - 1) as usize];
    let keep_any = rev >= 1 && !state_at(rev).is_empty();
    let mut crc = crc32c::crc32c(b"key");
    for r in 1..=rev {
        for (sub, e) in model.events[(r - 1) as usize].iter().enumerate() {
            let live_at = |at: i64| state_at(at).get(&e.kv.key).map(|kv| kv.mod_revision);
            let tombstone = e.kind == EventKind::Delete;
            if r <= compact {
                // Stored: the key's live version at the compaction revision; the hash
                // skips a tombstone at it.
                if tombstone || live_at(compact) != Some(r) {
                    continue;
                }
                if keep_any && live_at(rev) != Some(r) {
                    continue;
                }
            }
            let mut record = r.to_be_bytes().to_vec();
            record.push(b'_');
            record.extend_from_slice(&(sub as i64).to_be_bytes());
            if tombstone {
                record.push(b't');
                record.extend(key_value(&KeyValue {
                    key: e.kv.key.clone(),
                    ..KeyValue::default()
                }));
            } else {
                record.extend(key_value(&e.kv));
            }
            crc = crc32c::crc32c_append(crc, &record);
        }
    }
    Ok((crc, compact))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Every revision (and 0, a negative one, a future one) hashes as the reference says,
    /// on the store whatever trimming got to, on a view and on a restored copy.
    #[test]
    fn hash_kv_matches_the_reference(
        reqs in prop::collection::vec(request(), 1..50),
        trim_step in 0u64..4,
    ) {
        let mut store = KvStore::new();
        let mut model = Model::new();
        for req in &reqs {
            let _ = model.apply(req);
            store.apply_encoded_with(0, 0, &encode_request(req), Reads::Skip);
            store.compact_step(trim_step);
        }
        let restored = KvStore::restore(&store.snapshot()).unwrap();
        let view = store.read_view();
        for rev in -1..=model.rev() + 1 {
            let want = reference(&model, rev);
            let got = store.hash_kv(rev).map(|h| (h.hash, h.compact_revision));
            prop_assert_eq!(&got, &want, "rev {}", rev);
            prop_assert_eq!(view.hash_kv(rev), store.hash_kv(rev));
            prop_assert_eq!(restored.hash_kv(rev), store.hash_kv(rev));
        }
        prop_assert_eq!(restored.hash(), store.hash());
        prop_assert_eq!(view.hash(), store.hash());
    }
}
