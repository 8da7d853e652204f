//! One segment file of the write-ahead log, `<dir>/wal/wal-<index:016x>.log`: its header, and
//! the scan that finds where its good frames end and what follows them.
//!
//! ```text
//! [magic "SYNODWAL"][version u32 = 2][index u64][size u64][crc32c of the 28 bytes before: u32]
//! [frame]* [seal frame]? [zeros up to `size`]
//! ```
//!
//! A segment is created at its full `size` (preallocated, reading as zeros) and never changes
//! size, so a file shorter than its header says lost its tail. Where the good frames end, what
//! follows is either zeros (the clean end), the remains of an interrupted write (a torn tail),
//! or damage. The rules (docs/STORAGE.md, "Recovery"): let frame `k` be the first frame that
//! is not whole and valid.
//! - A valid frame after it written when frame `k` was already synced (its `synced_upto >= k`)
//!   is a *witness*: frame `k` held synced data that later data depends on.
//! - Writes are sector-atomic and land in zero-filled space, so an interrupted write leaves, in
//!   each 512-byte sector, either all of the new bytes or the old zeros. A bad frame none of
//!   whose sectors reads as zeros (from the frame's start on) cannot be a torn write: damage.
//! - Otherwise it is a torn tail: the last, unsynced group of writes, cut off without loss.

use crate::batch::{self, Logged};
use crate::error::StorageError;
use crate::frame;
use bytes::Bytes;
use std::path::Path;
use synod_paxos::Slot;

pub const HEADER_LEN: usize = 32;
const MAGIC: [u8; 8] = *b"SYNODWAL";
/// Version 1 was the headerless, growing segment of earlier releases (not readable here).
pub const VERSION: u32 = 2;
/// The unit a disk writes atomically (the conservative, classic size).
pub const SECTOR: usize = 512;
/// The largest seal frame: frame header, kind byte, three varints.
pub const SEAL_FRAME_MAX: usize = frame::HEADER_LEN + 1 + 3 * 10;

pub fn file_name(index: u64) -> String {
    format!("wal-{index:016x}.log")
}

pub fn parse_name(name: &str) -> Option<u64> {
    crate::fsutil::parse_hex_name(name, "wal-", ".log")
}

pub fn encode_header(index: u64, size: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&index.to_le_bytes());
    h[20..28].copy_from_slice(&size.to_le_bytes());
    let crc = crc32c::crc32c(&h[..28]);
    h[28..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A segment's header: its place in the chain and its preallocated size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub index: u64,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The file starts with a frame: a segment of the old, headerless format.
    OldFormat,
    /// A header from a newer (or unknown) format version.
    Version(u32),
    /// Too short, bad magic or bad checksum.
    Damaged(&'static str),
}

pub fn decode_header(data: &[u8]) -> Result<Header, HeaderError> {
    // The old format began with a frame, whose length field has a checksum of its own.
    let old = data
        .get(..8)
        .is_some_and(|h| h[..8] != MAGIC[..8] && crc32c::crc32c(&h[..4]).to_le_bytes() == h[4..8]);
    if old {
        return Err(HeaderError::OldFormat);
    }
    let Some(h) = data.get(..HEADER_LEN) else {
        return Err(HeaderError::Damaged("shorter than a segment header"));
    };
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[i..i + 8]);
        u64::from_le_bytes(b)
    };
    if h[..8] != MAGIC {
        return Err(HeaderError::Damaged("bad magic"));
    }
    if crc32c::crc32c(&h[..28]).to_le_bytes() != h[28..32] {
        return Err(HeaderError::Damaged("header checksum mismatch"));
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if version != VERSION {
        return Err(HeaderError::Version(version));
    }
    Ok(Header {
        index: u64_at(12),
        size: u64_at(20),
    })
}

/// True when any byte after the header is not zero: the segment was written to (a prepared
/// segment that was never used holds only zeros there).
pub fn has_data(data: &[u8]) -> bool {
    data.get(HEADER_LEN..)
        .is_some_and(|d| d.iter().any(|&b| b != 0))
}

/// What a segment holds after its good frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Only zeros (or the good frames end with a seal, after which nothing is read).
    Clean,
    /// The remains of an interrupted write, up to `dirty_end` (after it, only zeros).
    Torn { dirty_end: u64 },
    /// A bad frame that no interrupted write explains. With a `witness` (the offset of a
    /// later valid frame written after the bad one had been synced) it is damage in the middle
    /// of the log; without, damage at its tail.
    Damaged {
        reason: String,
        witness: Option<u64>,
        dirty_end: u64,
    },
}

/// Where a segment's good frames end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    /// Offset just after the last good frame (at least [`HEADER_LEN`]).
    pub end: u64,
    /// The seq of the first good frame, if any.
    pub first_seq: Option<u64>,
    /// The seq the next frame must carry.
    pub next_seq: u64,
    /// The highest slot of any record in the good frames.
    pub highest_slot: Slot,
    /// The good frames end with a seal naming this segment index as the next.
    pub seal: Option<u64>,
    pub stop: Stop,
}

/// Scans a segment's contents (header included), handing every good batch to `visit` with its
/// offset. `first_seq` is the seq the first frame must carry (`None`: any, for the oldest
/// segment of a compacted log). A frame whose checksums pass but whose payload does not decode
/// or carries the wrong seq is corruption (an error): no interrupted write produces one.
pub fn scan(
    path: &Path,
    data: &[u8],
    first_seq: Option<u64>,
    mut visit: impl FnMut(u64, &Logged) -> Result<(), StorageError>,
) -> Result<Scan, StorageError> {
    let mut out = Scan {
        end: HEADER_LEN as u64,
        first_seq: None,
        next_seq: first_seq.unwrap_or(1),
        highest_slot: 0,
        seal: None,
        stop: Stop::Clean,
    };
    let mut pos = HEADER_LEN;
    let mut expected = first_seq;
    while pos < data.len() {
        let (range, len) = match frame::decode(&data[pos..]) {
            Ok(ok) => ok,
            Err(e) => {
                out.stop = classify(data, pos, out.next_seq, e.describe());
                return Ok(out);
            }
        };
        let payload = Bytes::copy_from_slice(&data[pos + range.start..pos + range.end]);
        let logged = batch::decode(payload).map_err(|e| {
            StorageError::corrupt(path, pos as u64, format!("frame checksum ok but {e}"))
        })?;
        if let Some(seq) = expected.filter(|&s| s != logged.seq) {
            return Err(StorageError::corrupt(
                path,
                pos as u64,
                format!("frame carries seq {} where {seq} was expected", logged.seq),
            ));
        }
        visit(pos as u64, &logged)?;
        out.first_seq.get_or_insert(logged.seq);
        let top = logged.batch.records.iter().map(|r| r.slot).max();
        out.highest_slot = out.highest_slot.max(top.unwrap_or(0));
        pos += len;
        out.end = pos as u64;
        out.next_seq = logged.seq + 1;
        expected = Some(out.next_seq);
        if logged.seal.is_some() {
            out.seal = logged.seal;
            return Ok(out);
        }
    }
    Ok(out)
}

/// Decides what the bytes from `offset` on are, where frame `bad_seq` should start.
fn classify(data: &[u8], offset: usize, bad_seq: u64, error: &str) -> Stop {
    let Some(last) = data.iter().rposition(|&b| b != 0).filter(|&l| l >= offset) else {
        return Stop::Clean;
    };
    let dirty_end = last as u64 + 1;
    // The damaged frame's length cannot be trusted, so look for a witness at every offset up
    // to the last non-zero byte (a frame header is never all zeros).
    for start in offset + 1..=last {
        let Ok((range, _)) = frame::decode(&data[start..]) else {
            continue;
        };
        let payload = Bytes::copy_from_slice(&data[start + range.start..start + range.end]);
        if let Ok(witness) = batch::decode(payload) {
            if witness.synced_upto >= bad_seq {
                return Stop::Damaged {
                    reason: format!(
                        "{error} (frame seq {bad_seq}), yet the valid frame at offset {start} was \
                         written after it had been synced"
                    ),
                    witness: Some(start as u64),
                    dirty_end,
                };
            }
        }
    }
    if torn_write_explains(data, offset) {
        return Stop::Torn { dirty_end };
    }
    Stop::Damaged {
        reason: format!(
            "{error} (frame seq {bad_seq}), and no sector of it reads as unwritten: damage, \
             not an interrupted write"
        ),
        witness: None,
        dirty_end,
    }
}

/// True when some 512-byte sector of the bad frame at `offset` holds only zeros from the
/// frame's start on: a sector the interrupted write did not reach. The frame's extent comes
/// from its length field when that passes its checksum, else it is the frame header alone.
fn torn_write_explains(data: &[u8], offset: usize) -> bool {
    let header = data.get(offset..offset + 8);
    let len = header.and_then(|h| {
        (crc32c::crc32c(&h[..4]).to_le_bytes() == h[4..8])
            .then(|| u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize)
    });
    let extent = len.map_or(frame::HEADER_LEN, |l| frame::HEADER_LEN.saturating_add(l));
    let end = offset.saturating_add(extent).min(data.len());
    let mut sector = offset - offset % SECTOR;
    while sector < end {
        let part = &data[sector.max(offset)..(sector + SECTOR).min(data.len())];
        if part.iter().all(|&b| b == 0) {
            return true;
        }
        sector += SECTOR;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Batch;
    use proptest::prelude::*;

    /// A segment of `size` bytes holding frames `(seq, synced_upto)`; returns it and the frame
    /// starts.
    fn segment(frames: &[(u64, u64)], size: usize) -> (Vec<u8>, Vec<usize>) {
        let mut out = encode_header(1, size as u64).to_vec();
        let mut starts = Vec::new();
        for &(seq, synced_upto) in frames {
            starts.push(out.len());
            let mut payload = Vec::new();
            batch::encode(seq, synced_upto, &Batch::default(), &mut payload);
            frame::encode(&payload, &mut out);
        }
        out.resize(size.max(out.len()), 0);
        (out, starts)
    }

    fn run(data: &[u8]) -> Result<(usize, Scan), StorageError> {
        let mut n = 0;
        let scan = scan(Path::new("seg"), data, Some(1), |_, _| {
            n += 1;
            Ok(())
        })?;
        Ok((n, scan))
    }

    #[test]
    fn headers_round_trip_and_old_segments_are_recognised() {
        let h = encode_header(7, 4096);
        assert_eq!(
            decode_header(&h),
            Ok(Header {
                index: 7,
                size: 4096
            })
        );
        for bit in 0..HEADER_LEN * 8 {
            let mut bad = h;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_header(&bad).is_err(), "bit {bit}");
        }
        let mut old = Vec::new();
        frame::encode(b"payload of an old segment's first frame", &mut old);
        assert_eq!(decode_header(&old), Err(HeaderError::OldFormat));
    }

    #[test]
    fn zeros_after_the_frames_are_a_clean_end() {
        let (data, starts) = segment(&[(1, 0), (2, 1)], 4096);
        let (n, s) = run(&data).unwrap();
        assert_eq!((n, s.stop, s.next_seq), (2, Stop::Clean, 3));
        assert!(s.end as usize > starts[1]);
    }

    #[test]
    fn a_sector_of_zeros_in_a_bad_frame_is_a_torn_write() {
        // Frame 2 (synced) ends in the first sector; frames 3.. were one unsynced write
        // reaching into the second sector, which arrived while the first did not.
        let frames: Vec<(u64, u64)> = (1..=40)
            .map(|s| (s, if s <= 2 { s - 1 } else { 2 }))
            .collect();
        let (full, starts) = segment(&frames, 4096);
        let mut torn = full.clone();
        torn[starts[2]..SECTOR].fill(0);
        let (n, s) = run(&torn).unwrap();
        assert_eq!(n, 2);
        assert!(matches!(s.stop, Stop::Torn { .. }), "{:?}", s.stop);
        // The same bytes, but one flipped where a whole sector was written: damage.
        let mut flipped = full;
        flipped[starts[2] + 13] ^= 1;
        let (_, s) = run(&flipped).unwrap();
        assert!(
            matches!(s.stop, Stop::Damaged { witness: None, .. }),
            "{:?}",
            s.stop
        );
    }

    #[test]
    fn a_flipped_byte_in_the_last_frame_is_damage() {
        let (mut data, starts) = segment(&[(1, 0), (2, 1), (3, 2)], 4096);
        data[starts[2] + 13] ^= 1;
        let (n, s) = run(&data).unwrap();
        assert_eq!(n, 2);
        assert!(
            matches!(s.stop, Stop::Damaged { witness: None, .. }),
            "{:?}",
            s.stop
        );
    }

    #[test]
    fn damage_before_a_later_sync_has_a_witness() {
        let (mut data, starts) = segment(&[(1, 0), (2, 1), (3, 2)], 4096);
        data[starts[1] + 13] ^= 1;
        let (_, s) = run(&data).unwrap();
        assert!(
            matches!(s.stop, Stop::Damaged { witness: Some(w), .. } if w == starts[2] as u64),
            "{:?}",
            s.stop
        );
    }

    #[test]
    fn a_seal_ends_the_scan() {
        let mut data = encode_header(1, 4096).to_vec();
        let mut payload = Vec::new();
        batch::encode_seal(1, 0, 2, &mut payload);
        frame::encode(&payload, &mut data);
        data.resize(4096, 0xee); // whatever follows a seal is not read
        let (n, s) = run(&data).unwrap();
        assert_eq!((n, s.seal, s.stop), (1, Some(2), Stop::Clean));
    }

    #[test]
    fn sequence_gaps_are_corruption() {
        let (data, _) = segment(&[(1, 0), (3, 1)], 4096);
        assert!(matches!(run(&data), Err(StorageError::Corrupt { .. })));
    }

    proptest! {
        #[test]
        fn arbitrary_segments_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let _ = decode_header(&bytes);
            let _ = run(&bytes);
        }

        #[test]
        fn garbage_after_good_frames_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..600)) {
            let (mut data, _) = segment(&[(1, 0), (2, 1)], 0);
            data.extend_from_slice(&tail);
            if let Ok((n, _)) = run(&data) {
                prop_assert!(n >= 2);
            }
        }
    }
}
