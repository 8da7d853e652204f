//! Snapshots of a replica's state machine, as the simulator's driver takes, stores, ships and
//! installs them (what the server does too, `crates/server/src/replica/core.rs`).
//!
//! A snapshot's bytes are the engine's [`SnapshotInfo`] (its slot and the memberships that
//! govern the slots after it, [`synod_paxos::codec::encode_snapshot_info`]) followed by the
//! key-value store ([`Kv::encode`]). They are stored with `Storage::save_snapshot` (durable
//! when it returns; a crash before that loses them, see `disk.rs`) and travel to a lagging
//! peer as `Body::SnapshotChunk` messages over the simulated network, each subject to loss,
//! duplication, delay, reordering and partitions like any other message. The receiver
//! reassembles the pieces in any order ([`Incoming`]).

use crate::kv::Kv;
use bytes::Bytes;
use std::collections::BTreeMap;
use synod_paxos::codec::{decode_snapshot_info, encode_snapshot_info, put_varint, Reader};
use synod_paxos::{Body, Message, NodeId, Slot, SnapshotChunk, SnapshotInfo};

/// `[varint: length of the info][info][kv]`.
pub fn encode(info: &SnapshotInfo, kv: &Kv) -> Bytes {
    let info = encode_snapshot_info(info);
    let kv = kv.encode();
    let mut out = Vec::with_capacity(info.len() + kv.len() + 4);
    put_varint(&mut out, info.len() as u64);
    out.extend_from_slice(&info);
    out.extend_from_slice(&kv);
    Bytes::from(out)
}

/// The inverse of [`encode`]; also checks that the two parts name the same slot.
pub fn decode(data: &Bytes) -> Result<(SnapshotInfo, Kv), String> {
    let mut r = Reader::new(data.clone());
    let info_len = r.varint().map_err(|e| e.to_string())? as usize;
    let start = data.len() - r.remaining();
    if info_len > r.remaining() {
        return Err("snapshot info longer than the snapshot".into());
    }
    let info = decode_snapshot_info(data.slice(start..start + info_len))
        .map_err(|e| format!("snapshot info: {e}"))?;
    let kv = Kv::decode(data.slice(start + info_len..)).map_err(|e| format!("snapshot kv: {e}"))?;
    if kv.applied() != info.slot {
        return Err(format!(
            "snapshot at slot {} holds a state machine at slot {}",
            info.slot,
            kv.applied()
        ));
    }
    Ok((info, kv))
}

/// The pieces of `data` (a snapshot at `slot`) as messages from `from` to `to`.
pub fn chunks(from: NodeId, to: NodeId, slot: Slot, data: &Bytes, chunk: usize) -> Vec<Message> {
    let total = data.len() as u64;
    let chunk = chunk.max(1);
    let mut out = Vec::with_capacity(data.len() / chunk + 1);
    let mut offset = 0;
    loop {
        let end = (offset + chunk).min(data.len());
        out.push(Message {
            from,
            to,
            body: Body::SnapshotChunk {
                slot,
                total,
                offset: offset as u64,
                data: data.slice(offset..end),
            },
        });
        offset = end;
        if offset >= data.len() {
            return out;
        }
    }
}

/// A snapshot being reassembled from a peer's pieces, which may arrive in any order, twice,
/// or not at all (a transfer missing a piece is abandoned when a newer one starts; the
/// leader asks for another after an election timeout).
#[derive(Debug)]
pub struct Incoming {
    from: NodeId,
    slot: Slot,
    total: u64,
    pieces: BTreeMap<u64, Bytes>,
}

impl Incoming {
    /// Adds a piece to `incoming` (starting a new assembly if it belongs to another
    /// transfer of at least the same slot); returns the whole snapshot once every byte is
    /// there.
    pub fn add(incoming: &mut Option<Incoming>, c: SnapshotChunk) -> Option<(Slot, Bytes)> {
        let same = incoming
            .as_ref()
            .is_some_and(|i| (i.from, i.slot, i.total) == (c.from, c.slot, c.total));
        if !same {
            if incoming
                .as_ref()
                .is_some_and(|i| i.from == c.from && i.slot > c.slot)
            {
                return None; // a late piece of this sender's older transfer
            }
            // Another sender's transfer replaces an unfinished one: that sender may be gone
            // for good (a removed member that offered its snapshot to a candidate).
            *incoming = Some(Incoming {
                from: c.from,
                slot: c.slot,
                total: c.total,
                pieces: BTreeMap::new(),
            });
        }
        let inc = incoming.as_mut().expect("set above");
        inc.pieces.entry(c.offset).or_insert(c.data);
        let mut covered = 0u64;
        for (&offset, piece) in &inc.pieces {
            if offset > covered {
                return None; // a gap
            }
            covered = covered.max(offset + piece.len() as u64);
        }
        if covered < inc.total {
            return None;
        }
        let inc = incoming.take().expect("matched");
        let mut data = Vec::with_capacity(inc.total as usize);
        for (offset, piece) in inc.pieces {
            let skip = (data.len() as u64).saturating_sub(offset) as usize;
            if skip < piece.len() {
                data.extend_from_slice(&piece[skip..]);
            }
        }
        data.truncate(inc.total as usize);
        Some((inc.slot, Bytes::from(data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_paxos::{Membership, MembershipChange, Value};

    fn snapshot() -> (SnapshotInfo, Kv) {
        let mut kv = Kv::default();
        for slot in 1..=7 {
            kv.apply(slot, &Value::Noop);
        }
        let info = SnapshotInfo {
            slot: 7,
            memberships: vec![MembershipChange {
                slot: 1,
                membership: Membership::new([1, 2, 3]).unwrap(),
            }],
        };
        (info, kv)
    }

    #[test]
    fn a_snapshot_survives_chunking_in_any_order() {
        let (info, kv) = snapshot();
        let data = encode(&info, &kv);
        let mut pieces = chunks(1, 2, 7, &data, 3);
        assert!(pieces.len() > 3);
        pieces.reverse();
        pieces.push(pieces[1].clone()); // a duplicate
        let mut incoming = None;
        let mut whole = None;
        for m in pieces {
            let Body::SnapshotChunk {
                slot,
                total,
                offset,
                data,
            } = m.body
            else {
                unreachable!()
            };
            let c = SnapshotChunk {
                from: m.from,
                slot,
                total,
                offset,
                data,
            };
            if let Some(done) = Incoming::add(&mut incoming, c) {
                whole = Some(done);
            }
        }
        let (slot, bytes) = whole.expect("reassembled");
        assert_eq!((slot, &bytes), (7, &data));
        let (back, kv2) = decode(&bytes).unwrap();
        assert_eq!((back, kv2.applied()), (info, 7));
        assert!(decode(&bytes.slice(..bytes.len() - 2)).is_err());
    }
}
