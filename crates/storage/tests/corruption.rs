//! Damage to data that was synced: a flipped bit anywhere in a segment or a snapshot is always
//! detected and never served. In the log, damage that later data depends on stops recovery
//! with an error naming the file and offset; damage at the tail of the log (the newest
//! segment's last frame, or its header) is cut off and reported as a lost tail.

mod common;

use common::{batches, frame_ends, newest_data_segment, Model, SEGMENT_HEADER_LEN};
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use synod_storage::{DiskStorage, LossKind, Options, Storage, StorageError};
use tempfile::TempDir;

const SMALL: Options = Options {
    segment_bytes_max: 512,
    snapshots_kept: 2,
};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Overwrites one byte in place. (Rewriting the whole file would truncate it first, and ext4
/// flushes a file that was truncated and rewritten on close: thousands of times too slow.)
fn poke(file: &mut File, offset: usize, byte: u8) {
    file.seek(SeekFrom::Start(offset as u64)).unwrap();
    file.write_all(&[byte]).unwrap();
}

/// Start offsets of the frames in one segment.
fn frame_starts(data: &[u8]) -> Vec<usize> {
    let mut starts = vec![SEGMENT_HEADER_LEN];
    starts.extend(frame_ends(data));
    starts.pop();
    starts
}

#[test]
fn every_bit_flipped_in_any_segment_is_detected() {
    let tmp = TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().join("data");
    let all = batches(21, 24);
    let mut s = DiskStorage::open(&dir, SMALL).unwrap();
    for b in &all {
        s.append(b).unwrap();
    }
    drop(s);
    let newest = newest_data_segment(&dir);
    let segments: Vec<PathBuf> = files(&dir.join("wal"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log") && *p <= newest)
        .collect();
    assert!(segments.len() >= 3, "the test needs several segments");
    let everything = Model::after(&all).durable_state(0);
    let all_but_last = Model::after(&all[..all.len() - 1]).durable_state(0);
    let is_prefix = |got: &synod_paxos::DurableState| {
        (0..=all.len()).any(|k| Model::after(&all[..k]).durable_state(0) == *got)
    };
    for (i, segment) in segments.iter().enumerate() {
        let is_newest = i + 1 == segments.len();
        let good = fs::read(segment).unwrap();
        let starts = frame_starts(&good);
        let last_frame = starts[starts.len() - 1];
        let data_end = *frame_ends(&good).last().unwrap();
        let mut file = OpenOptions::new().write(true).open(segment).unwrap();
        for bit in 0..good.len() * 8 {
            let byte = bit / 8;
            poke(&mut file, byte, good[byte] ^ (1 << (bit % 8)));
            let what = format!("{} bit {bit}", segment.display());
            match DiskStorage::inspect(&dir, SMALL) {
                Err(StorageError::Corrupt { path, offset, .. }) => {
                    assert_eq!(&path, segment, "{what}: the error names the damaged file");
                    assert!(byte < data_end, "{what}: refused over unused space");
                    assert!(
                        offset as usize <= byte,
                        "{what}: offset {offset} after the damage"
                    );
                    assert!(
                        offset == 0 || starts.contains(&(offset as usize)),
                        "{what}: not a frame start"
                    );
                    // At the tail of the log, damage is a loss, not a refusal.
                    assert!(
                        !is_newest || (byte >= SEGMENT_HEADER_LEN && byte < last_frame),
                        "{what}: refused"
                    );
                }
                Err(e) => panic!("{what}: unexpected error {e}"),
                Ok(recovered) => match recovered.lost_tail() {
                    Some(lost) => {
                        assert!(is_newest, "{what}: a loss before the newest segment");
                        assert_eq!(lost.kind, LossKind::DamagedFrame, "{what}");
                        let got = recovered.durable_state();
                        if byte < SEGMENT_HEADER_LEN {
                            assert!(is_prefix(&got), "{what}");
                        } else if byte < data_end {
                            assert!(byte >= last_frame, "{what}: unnoticed");
                            assert_eq!(got, all_but_last, "{what}");
                        } else {
                            // Garbage right after the last frame: nothing was lost, but it
                            // cannot be told from damage to a frame there.
                            assert_eq!(got, everything, "{what}");
                        }
                    }
                    None => {
                        // Only space that never held data (after the last frame or a seal).
                        assert!(byte >= data_end, "{what}: unnoticed");
                        assert_eq!(recovered.durable_state(), everything, "{what}");
                    }
                },
            }
            poke(&mut file, byte, good[byte]);
        }
    }
    // And the real open refuses with a message an operator can act on.
    let mut bad = fs::read(&segments[1]).unwrap();
    let at = frame_starts(&bad)[1] + 14;
    bad[at] ^= 0x40;
    fs::write(&segments[1], &bad).unwrap();
    let err = DiskStorage::open(&dir, SMALL).unwrap_err();
    let message = err.to_string();
    let offset = format!("byte offset {}", frame_starts(&bad)[1]);
    assert!(
        message.contains(&segments[1].display().to_string()),
        "{message}"
    );
    assert!(message.contains(&offset), "{message}");
    assert!(message.contains("STORAGE.md"), "{message}");
}

#[test]
fn every_bit_flipped_in_a_snapshot_is_detected_and_never_served() {
    let tmp = TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().join("data");
    let mut s = DiskStorage::open(&dir, SMALL).unwrap();
    s.save_snapshot(10, b"the older snapshot").unwrap();
    let data: Vec<u8> = (0..48u8).collect();
    s.save_snapshot(20, &data).unwrap();
    let path = dir.join("snap").join(format!("snap-{:016x}.snap", 20));
    let good = fs::read(&path).unwrap();
    let mut file = OpenOptions::new().write(true).open(&path).unwrap();
    for bit in 0..good.len() * 8 {
        let byte = bit / 8;
        poke(&mut file, byte, good[byte] ^ (1 << (bit % 8)));
        match s.latest_snapshot() {
            Err(StorageError::SnapshotCorrupt { path: p, .. }) => assert_eq!(p, path),
            other => panic!("bit {bit}: served or misreported: {other:?}"),
        }
        let recovered = DiskStorage::inspect(&dir, SMALL).unwrap();
        assert_eq!(recovered.snapshot.map(|m| m.slot), Some(10), "bit {bit}");
        assert_eq!(recovered.report.damaged_snapshots[0].0, path, "bit {bit}");
        if bit + 1 < good.len() * 8 {
            poke(&mut file, byte, good[byte]);
        }
    }
    // A real open sets the damaged file aside and serves the older snapshot.
    drop(s);
    let s = DiskStorage::open(&dir, SMALL).unwrap();
    let latest = s.latest_snapshot().unwrap().unwrap();
    assert_eq!(
        (latest.meta.slot, &latest.data[..]),
        (10, &b"the older snapshot"[..])
    );
    assert!(!path.exists());
    assert!(path.with_extension("snap.corrupt").exists());
}

#[test]
fn a_missing_segment_is_detected() {
    let tmp = TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().join("data");
    let mut s = DiskStorage::open(&dir, SMALL).unwrap();
    for b in &batches(22, 24) {
        s.append(b).unwrap();
    }
    drop(s);
    let segments = common::wal_segments(&dir);
    fs::remove_file(&segments[1]).unwrap();
    match DiskStorage::open(&dir, SMALL) {
        Err(StorageError::Corrupt { path, offset, .. }) => {
            assert_eq!((path, offset), (segments[2].clone(), 0));
        }
        other => panic!("a missing segment went unnoticed: {other:?}"),
    }
}

#[test]
fn a_compacted_log_without_its_snapshot_is_refused() {
    let tmp = TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().join("data");
    let mut s = DiskStorage::open(&dir, SMALL).unwrap();
    for b in &batches(23, 40) {
        s.append(b).unwrap();
    }
    let before = s.segment_count();
    s.save_snapshot(20, b"x").unwrap();
    s.compact(20).unwrap();
    assert!(s.segment_count() < before, "compaction deleted segments");
    drop(s);
    for f in files(&dir.join("snap")) {
        fs::remove_file(f).unwrap();
    }
    assert!(matches!(
        DiskStorage::open(&dir, SMALL),
        Err(StorageError::Corrupt { .. })
    ));
}

#[test]
fn an_old_format_log_is_refused_with_what_to_do() {
    let tmp = TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().join("data");
    fs::create_dir_all(dir.join("wal")).unwrap();
    // An old segment: frames from offset 0, no header.
    let mut old = Vec::new();
    let len = 5u32.to_le_bytes();
    old.extend_from_slice(&len);
    old.extend_from_slice(&crc32c::crc32c(&len).to_le_bytes());
    old.extend_from_slice(&crc32c::crc32c(b"hello").to_le_bytes());
    old.extend_from_slice(b"hello");
    let path = dir.join("wal").join(format!("wal-{:016x}.log", 1));
    fs::write(&path, &old).unwrap();
    let err = DiskStorage::open(&dir, SMALL).unwrap_err();
    assert!(
        matches!(err, StorageError::UnsupportedFormat { .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("new member"), "{message}");
    assert_eq!(fs::read(&path).unwrap(), old, "nothing was changed");
}

#[test]
fn garbage_in_the_prepared_segment_is_refused() {
    // The segment after the active one is never written before the active one is sealed:
    // data in it means the chain was broken (documented as a refusal).
    let tmp = TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().join("data");
    let mut s = DiskStorage::open(&dir, SMALL).unwrap();
    for b in &batches(25, 3) {
        s.append(b).unwrap();
    }
    drop(s);
    let spare = common::wal_segments(&dir).pop().unwrap();
    let mut file = OpenOptions::new().write(true).open(&spare).unwrap();
    poke(&mut file, 300, 0x5a);
    assert!(matches!(
        DiskStorage::open(&dir, SMALL),
        Err(StorageError::Corrupt { .. })
    ));
}
