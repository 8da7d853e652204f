//! A member's snapshot: the key-value store as of an applied slot, plus what the engine
//! needs to resume after it (the slot and the memberships governing the slots after it,
//! `synod_paxos::SnapshotInfo`). synod-storage adds the checksum and crash-safe writing;
//! this is only the payload.
//!
//! ```text
//! [magic "SYNSNAP2"][info length: u32 LE][engine's snapshot info][kv snapshot: rest]
//! ```

use bytes::{BufMut, Bytes};
use synod_paxos::codec::{decode_snapshot_info, encode_snapshot_info};
use synod_paxos::{Slot, SnapshotInfo};

const MAGIC: &[u8; 8] = b"SYNSNAP2";

/// The engine's part is small (a few memberships); more means the bytes are not a snapshot.
const INFO_BYTES_MAX: u32 = 16 << 20;

/// The header: magic, the engine's info and its length. The store's part follows.
fn header(info: &SnapshotInfo) -> Vec<u8> {
    let info = encode_snapshot_info(info);
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + info.len());
    out.put_slice(MAGIC);
    out.put_u32_le(info.len() as u32);
    out.put_slice(&info);
    out
}

/// A snapshot of the store frozen in `view`, built in one buffer: the store's part (all of
/// the history, hundreds of MB without compaction) is neither allocated nor copied twice.
pub fn encode_view(info: &SnapshotInfo, view: &synod_kv::SnapshotView) -> Bytes {
    let mut out = header(info);
    view.encode_into(&mut out);
    Bytes::from(out)
}

/// A snapshot from the store's encoded bytes (tests: any bytes stand for the store).
#[cfg(test)]
fn encode(info: &SnapshotInfo, kv: &[u8]) -> Bytes {
    let mut out = header(info);
    out.put_slice(kv);
    Bytes::from(out)
}

/// Why bytes are not a snapshot this replica can install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    BadMagic,
    Truncated,
    /// The header names more membership bytes than there are, or than any snapshot holds.
    InfoLength(u32),
    Info(synod_paxos::codec::DecodeError),
    /// Announced (by its sender) for one slot, it holds another.
    SlotMismatch {
        announced: Slot,
        held: Slot,
    },
    /// The store's part does not decode.
    Store(synod_kv::DecodeError),
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatError::BadMagic => f.write_str("not a Synod snapshot (bad magic)"),
            FormatError::Truncated => f.write_str("snapshot truncated in its header"),
            FormatError::InfoLength(n) => {
                write!(f, "snapshot header names {n} bytes of membership")
            }
            FormatError::Info(e) => write!(f, "snapshot membership: {e}"),
            FormatError::SlotMismatch { announced, held } => {
                write!(f, "announced slot {announced} but holds slot {held}")
            }
            FormatError::Store(e) => write!(f, "snapshot store: {e}"),
        }
    }
}

impl std::error::Error for FormatError {}

/// The engine's snapshot info and the key-value store's own snapshot bytes.
pub fn decode(data: &Bytes) -> Result<(SnapshotInfo, Bytes), FormatError> {
    let rest = data
        .strip_prefix(MAGIC.as_slice())
        .ok_or(FormatError::BadMagic)?;
    let (len, rest) = rest
        .split_first_chunk::<4>()
        .map(|(c, r)| (u32::from_le_bytes(*c), r))
        .ok_or(FormatError::Truncated)?;
    if len > INFO_BYTES_MAX || len as usize > rest.len() {
        return Err(FormatError::InfoLength(len));
    }
    let start = MAGIC.len() + 4;
    let info =
        decode_snapshot_info(data.slice(start..start + len as usize)).map_err(FormatError::Info)?;
    Ok((info, data.slice(start + len as usize..)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_paxos::{Membership, MembershipChange};

    #[test]
    fn round_trips_and_refuses_garbage() {
        let info = SnapshotInfo {
            slot: 9,
            memberships: vec![MembershipChange {
                slot: 1,
                membership: Membership::new([3, 1, 2]).unwrap(),
            }],
        };
        let data = encode(&info, b"kv-bytes");
        let (info2, kv) = decode(&data).unwrap();
        assert_eq!(info2, info);
        assert_eq!(&kv[..], b"kv-bytes");
        for cut in 0..data.len() - 8 {
            assert!(decode(&data.slice(..cut)).is_err(), "cut at {cut}");
        }
        assert!(decode(&Bytes::from_static(b"SYNSNAP2\xff\xff\xff\xff")).is_err());
        assert!(decode(&Bytes::from_static(b"garbage")).is_err());
    }

    #[test]
    fn encoding_a_view_in_place_gives_the_same_bytes() {
        let mut kv = synod_kv::KvStore::default();
        for i in 0..50u64 {
            let put = synod_kv::Request::Put(synod_kv::PutRequest {
                key: format!("k{}", i % 7).into_bytes().into(),
                value: vec![b'v'; i as usize].into(),
                ..Default::default()
            });
            let _ = kv.apply_encoded(1, i + 1, &synod_kv::encode_request(&put));
        }
        let info = SnapshotInfo {
            slot: 50,
            memberships: vec![MembershipChange {
                slot: 1,
                membership: Membership::new([1, 2, 3]).unwrap(),
            }],
        };
        let view = kv.snapshot_view();
        assert_eq!(encode_view(&info, &view), encode(&info, &view.encode()));
    }
}
