//! One segment file of the write-ahead log, `<dir>/wal/wal-<first seq:016x>.log`, and the
//! recovery scan that decides where a segment's good frames end and whether what follows is an
//! interrupted write (cut off) or damage (refuse to start).
//!
//! The rule (docs/STORAGE.md, "Recovery"): let frame `k` be the first frame that is not whole
//! and valid. If a valid frame after it was written when frame `k` was already synced (its
//! `synced_upto >= k`), the bad frame held synced data: corruption. Otherwise everything from
//! frame `k` on belongs to the last, unsynced group of writes: a torn tail. Only the last
//! segment can have a torn tail, because a segment is synced before the next one is created.

use crate::batch::{self, Logged};
use crate::error::StorageError;
use crate::frame::{self, FrameError};
use bytes::Bytes;
use std::path::Path;

pub fn file_name(first_seq: u64) -> String {
    format!("wal-{first_seq:016x}.log")
}

pub fn parse_name(name: &str) -> Option<u64> {
    crate::fsutil::parse_hex_name(name, "wal-", ".log")
}

/// Where the good frames of a segment end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanEnd {
    /// Bytes of whole, valid frames from the start of the file.
    pub valid_len: u64,
    /// The seq the next frame must carry.
    pub next_seq: u64,
    /// The bytes after `valid_len` are an interrupted write to be cut off (last segment only).
    pub torn: bool,
}

/// Scans one segment's contents, handing every good frame to `visit` with its offset.
/// `last` says whether this is the newest segment (the only one allowed a torn tail).
pub fn scan(
    path: &Path,
    data: &[u8],
    first_seq: u64,
    last: bool,
    mut visit: impl FnMut(u64, Logged) -> Result<(), StorageError>,
) -> Result<ScanEnd, StorageError> {
    let mut pos = 0usize;
    let mut seq = first_seq;
    while pos < data.len() {
        let (range, len) = match frame::decode(&data[pos..]) {
            Ok(ok) => ok,
            Err(e) => {
                if !last {
                    return Err(StorageError::corrupt(
                        path,
                        pos as u64,
                        format!("{} in a segment that was synced whole", e.describe()),
                    ));
                }
                check_torn(path, data, pos, seq, e)?;
                return Ok(ScanEnd {
                    valid_len: pos as u64,
                    next_seq: seq,
                    torn: true,
                });
            }
        };
        let payload = Bytes::copy_from_slice(&data[pos + range.start..pos + range.end]);
        // The checksum matched, so these are the bytes that were written: a payload that
        // does not decode is a format mismatch or a bug, never a torn write.
        let logged = batch::decode(payload).map_err(|e| {
            StorageError::corrupt(path, pos as u64, format!("frame checksum ok but {e}"))
        })?;
        if logged.seq != seq {
            return Err(StorageError::corrupt(
                path,
                pos as u64,
                format!("frame carries seq {} where {seq} was expected", logged.seq),
            ));
        }
        visit(pos as u64, logged)?;
        pos += len;
        seq += 1;
    }
    if !last && seq == first_seq {
        return Err(StorageError::corrupt(
            path,
            0,
            "empty segment before the newest one",
        ));
    }
    Ok(ScanEnd {
        valid_len: pos as u64,
        next_seq: seq,
        torn: false,
    })
}

/// Decides whether the damage at `offset` (where frame `bad_seq` should start) is a torn
/// tail. It is corruption if any valid frame after it says frame `bad_seq` had been synced.
fn check_torn(
    path: &Path,
    data: &[u8],
    offset: usize,
    bad_seq: u64,
    error: FrameError,
) -> Result<(), StorageError> {
    let rest = &data[offset..];
    // Preallocated or never-written space: the common case, and nothing can follow it.
    if rest.iter().all(|&b| b == 0) {
        return Ok(());
    }
    // The damaged frame's length cannot be trusted, so look for a witness at every offset.
    for start in offset + 1..data.len().saturating_sub(frame::HEADER_LEN - 1) {
        let Ok((range, _)) = frame::decode(&data[start..]) else {
            continue;
        };
        let payload = Bytes::copy_from_slice(&data[start + range.start..start + range.end]);
        if let Ok(witness) = batch::decode(payload) {
            if witness.synced_upto >= bad_seq {
                return Err(StorageError::corrupt(
                    path,
                    offset as u64,
                    format!(
                        "{} (frame seq {bad_seq}), yet the valid frame at offset {start} was \
                         written after it had been synced",
                        error.describe()
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Batch;
    use proptest::prelude::*;

    fn segment(frames: &[(u64, u64)]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(seq, synced_upto) in frames {
            let mut payload = Vec::new();
            batch::encode(seq, synced_upto, &Batch::default(), &mut payload);
            frame::encode(&payload, &mut out);
        }
        out
    }

    fn count(data: &[u8], last: bool) -> Result<(usize, ScanEnd), StorageError> {
        let mut n = 0;
        let end = scan(Path::new("seg"), data, 1, last, |_, _| {
            n += 1;
            Ok(())
        })?;
        Ok((n, end))
    }

    #[test]
    fn damage_in_an_unsynced_group_is_a_torn_tail() {
        // Frames 2 and 3 were written together after frame 1 was synced.
        let mut data = segment(&[(1, 0), (2, 1), (3, 1)]);
        let third = data.len() - 12 - 5;
        let second = third - 12 - 5;
        data[second + 13] ^= 1;
        let (n, end) = count(&data, true).unwrap();
        assert_eq!((n, end.valid_len, end.torn), (1, second as u64, true));
    }

    #[test]
    fn damage_before_a_later_sync_is_corruption() {
        let mut data = segment(&[(1, 0), (2, 1), (3, 2)]);
        let second = (data.len() / 3) as u64;
        data[second as usize + 13] ^= 1;
        match count(&data, true) {
            Err(StorageError::Corrupt { offset, .. }) => assert_eq!(offset, second),
            other => panic!("expected corruption, got {other:?}"),
        }
        assert!(count(&data[..data.len() / 3 * 2], false).is_err());
    }

    #[test]
    fn sequence_gaps_are_corruption() {
        let data = segment(&[(1, 0), (3, 1)]);
        assert!(matches!(
            count(&data, true),
            Err(StorageError::Corrupt { .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_segments_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), last in any::<bool>()) {
            let _ = count(&bytes, last);
        }

        #[test]
        fn garbage_after_good_frames_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut data = segment(&[(1, 0), (2, 1)]);
            data.extend_from_slice(&tail);
            if let Ok((n, _)) = count(&data, true) {
                prop_assert!(n >= 2);
            }
        }
    }
}
