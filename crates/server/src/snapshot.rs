//! A member's snapshot: the key-value store as of an applied slot, plus the membership in
//! force after it (the engine needs it once the log entries that held it are gone).
//! synod-storage adds the checksum and crash-safe writing; this is only the payload.
//!
//! ```text
//! [magic "SYNSNAP1"][voter count: u32 LE][voter id: u64 LE]*[kv snapshot: rest]
//! ```

use bytes::{BufMut, Bytes};
use synod_paxos::{Membership, NodeId};

const MAGIC: &[u8; 8] = b"SYNSNAP1";

/// Most voters a snapshot may name; more means the bytes are not a snapshot.
const VOTERS_MAX: u32 = 1024;

pub fn encode(membership: &Membership, kv: &[u8]) -> Bytes {
    let voters = membership.voters();
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + 8 * voters.len() + kv.len());
    out.put_slice(MAGIC);
    out.put_u32_le(voters.len() as u32);
    for &v in voters {
        out.put_u64_le(v);
    }
    out.put_slice(kv);
    Bytes::from(out)
}

/// The membership and the key-value store's own snapshot bytes.
pub fn decode(data: &Bytes) -> Result<(Membership, Bytes), String> {
    let rest = data
        .strip_prefix(MAGIC.as_slice())
        .ok_or("not a Synod snapshot (bad magic)")?;
    let (count, mut rest) = rest
        .split_first_chunk::<4>()
        .map(|(c, r)| (u32::from_le_bytes(*c), r))
        .ok_or("snapshot truncated in its header")?;
    if count == 0 || count > VOTERS_MAX {
        return Err(format!("snapshot names {count} voters"));
    }
    let mut voters: Vec<NodeId> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (id, r) = rest
            .split_first_chunk::<8>()
            .ok_or("snapshot truncated in its membership")?;
        voters.push(u64::from_le_bytes(*id));
        rest = r;
    }
    let membership = Membership::new(voters).ok_or("snapshot holds an invalid membership")?;
    let kv_start = data.len() - rest.len();
    Ok((membership, data.slice(kv_start..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let m = Membership::new([3, 1, 2]).unwrap();
        let data = encode(&m, b"kv-bytes");
        let (m2, kv) = decode(&data).unwrap();
        assert_eq!(m2, m);
        assert_eq!(&kv[..], b"kv-bytes");
        for cut in 0..data.len() - 8 {
            assert!(decode(&data.slice(..cut)).is_err(), "cut at {cut}");
        }
        assert!(decode(&Bytes::from_static(b"SYNSNAP1\xff\xff\xff\xff")).is_err());
        assert!(decode(&Bytes::from_static(b"garbage")).is_err());
    }
}
