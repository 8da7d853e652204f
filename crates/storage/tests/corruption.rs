//! Damage to data that was synced: a flipped bit anywhere in a segment or a snapshot is always
//! detected and never served. In the log it stops recovery with an error naming the file and
//! offset; the one exception is the last frame (nothing after it can vouch that it was synced),
//! which recovery treats as a torn write and cuts off, so it is not served either.

mod common;

use common::{batches, Model};
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use synod_storage::{DiskStorage, Options, Storage, StorageError};
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
    let mut starts = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        starts.push(pos);
        pos += 12 + u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
    }
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
    let segments = files(&dir.join("wal"));
    assert!(segments.len() >= 3, "the test needs several segments");
    let all_but_last = Model::after(&all[..all.len() - 1]).durable_state(0);
    for (i, segment) in segments.iter().enumerate() {
        let good = fs::read(segment).unwrap();
        let starts = frame_starts(&good);
        let last_frame = starts[starts.len() - 1];
        let mut file = OpenOptions::new().write(true).open(segment).unwrap();
        for bit in 0..good.len() * 8 {
            let byte = bit / 8;
            poke(&mut file, byte, good[byte] ^ (1 << (bit % 8)));
            let what = format!("{} bit {bit}", segment.display());
            match DiskStorage::inspect(&dir, SMALL) {
                Err(StorageError::Corrupt { path, offset, .. }) => {
                    assert_eq!(&path, segment, "{what}: the error names the damaged file");
                    assert!(
                        offset as usize <= byte,
                        "{what}: offset {offset} after the damage"
                    );
                    assert!(
                        starts.contains(&(offset as usize)),
                        "{what}: not a frame start"
                    );
                }
                Err(e) => panic!("{what}: unexpected error {e}"),
                Ok(recovered) => {
                    // Only the last frame of the log may be read as a torn write.
                    assert!(
                        i + 1 == segments.len() && byte >= last_frame,
                        "{what}: unnoticed"
                    );
                    assert_eq!(recovered.durable_state(), all_but_last, "{what}");
                    assert!(recovered.report.torn_tail.is_some(), "{what}");
                }
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
    let segments = files(&dir.join("wal"));
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
fn a_log_deleted_behind_its_snapshots_is_refused() {
    let tmp = TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().join("data");
    let mut s = DiskStorage::open(&dir, SMALL).unwrap();
    for b in &batches(24, 10) {
        s.append(b).unwrap();
    }
    s.save_snapshot(5, b"x").unwrap();
    drop(s);
    fs::remove_dir_all(dir.join("wal")).unwrap();
    assert!(matches!(
        DiskStorage::open(&dir, SMALL),
        Err(StorageError::Corrupt { .. })
    ));
}
