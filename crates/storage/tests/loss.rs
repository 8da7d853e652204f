//! A lost or damaged synced tail: 1,000 batches are written and synced one
//! by one, the member stops, its log files are mutated, and it starts again. Whatever was done,
//! recovery either refuses to start or reports the loss (`Recovered::lost_tail`); it never cuts
//! acknowledged batches silently. Before the fix all of these started with batches silently
//! gone (a: 34 of 1,000, b: 108, c: the last one).

mod common;

use common::{batches, frame_ends, newest_data_segment, overwrite, wal_segments, Model};
use std::fs;
use std::path::{Path, PathBuf};
use synod_storage::{Batch, DiskStorage, LossKind, Options, Storage};
use tempfile::TempDir;

/// Small segments, so 1,000 batches span many of them.
const OPTIONS: Options = Options {
    segment_bytes_max: 16 << 10,
    snapshots_kept: 2,
};

struct Written {
    _tmp: TempDir,
    dir: PathBuf,
    all: Vec<Batch>,
}

fn write_1000(snapshot_every: Option<usize>) -> Written {
    let tmp = TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().join("data");
    let all = batches(7, 1000);
    let mut s = DiskStorage::open(&dir, OPTIONS).unwrap();
    let mut model = Model::default();
    for (i, b) in all.iter().enumerate() {
        s.append(b).unwrap();
        model.apply(b);
        if snapshot_every.is_some_and(|n| i % n == n - 1) {
            // Every slot recorded so far goes into the snapshot (the test's state machine).
            let top = *model.records.keys().last().unwrap();
            s.save_snapshot(top, b"state").unwrap();
            s.compact(top).unwrap();
        }
    }
    drop(s);
    Written {
        _tmp: tmp,
        dir,
        all,
    }
}

impl Written {
    /// Opens after the damage: the loss must be reported as `kind`, the state must be a
    /// prefix of what was written, and the next open reports it again. Returns the prefix
    /// length.
    fn expect_loss(&self, kind: LossKind, what: &str) -> usize {
        let inspected = DiskStorage::inspect(&self.dir, OPTIONS)
            .unwrap_or_else(|e| panic!("{what}: inspect refused: {e}"));
        let s = DiskStorage::open(&self.dir, OPTIONS)
            .unwrap_or_else(|e| panic!("{what}: open refused: {e}"));
        let r = s.recovered();
        let lost = r
            .lost_tail()
            .unwrap_or_else(|| panic!("{what}: acknowledged batches silently gone"));
        assert_eq!(lost.kind, kind, "{what}: {lost}");
        assert_eq!(
            inspected.lost_tail().map(|l| l.kind),
            Some(kind),
            "{what}: inspect"
        );
        let floor = r.snapshot_slot();
        let got = r.durable_state();
        let kept = (0..=self.all.len())
            .rev()
            .find(|&k| Model::after(&self.all[..k]).durable_state(floor) == got)
            .unwrap_or_else(|| panic!("{what}: not a prefix of what was written"));
        assert!(self.dir.join("wal").join("LOST_TAIL").exists(), "{what}");
        for copy in &lost.set_aside {
            assert!(copy.exists(), "{what}: evidence {} kept", copy.display());
        }
        drop(s);
        let s = DiskStorage::open(&self.dir, OPTIONS).unwrap();
        assert_eq!(
            s.recovered().lost_tail().map(|l| l.kind),
            Some(LossKind::Unrecovered),
            "{what}: reported again until peer recovery finishes"
        );
        assert_eq!(s.recovered().durable_state(), got, "{what}: second open");
        kept
    }

    fn newest(&self) -> (PathBuf, Vec<u8>, usize) {
        let path = newest_data_segment(&self.dir);
        let data = fs::read(&path).unwrap();
        let end = *frame_ends(&data).last().unwrap();
        (path, data, end)
    }
}

fn set_len(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

#[test]
fn a_segment_truncated_to_two_thirds_is_a_reported_loss() {
    let w = write_1000(None);
    let (path, data, end) = w.newest();
    set_len(&path, end as u64 * 2 / 3);
    let kept = w.expect_loss(LossKind::TruncatedSegment, "truncated to 2/3");
    assert!(kept < 1000);
    // The cut segment was copied aside whole, and repaired to its full size.
    assert_eq!(fs::metadata(&path).unwrap().len(), data.len() as u64);
}

#[test]
fn a_deleted_newest_segment_is_a_reported_loss() {
    let w = write_1000(None);
    let (path, _, _) = w.newest();
    fs::remove_file(&path).unwrap();
    w.expect_loss(LossKind::MissingSegment, "newest segment deleted");
    // With frequent snapshots every older segment was compacted away: the whole log is gone.
    let w = write_1000(Some(100));
    let (path, _, _) = w.newest();
    fs::remove_file(&path).unwrap();
    w.expect_loss(LossKind::LogMissing, "only segment deleted");
}

#[test]
fn a_deleted_newest_segment_and_its_prepared_successor_are_a_reported_loss() {
    let w = write_1000(None);
    let (path, _, _) = w.newest();
    for p in wal_segments(&w.dir).into_iter().filter(|p| *p >= path) {
        fs::remove_file(p).unwrap();
    }
    w.expect_loss(LossKind::MissingSegment, "newest segments deleted");
}

#[test]
fn a_byte_flipped_near_the_end_is_a_reported_loss() {
    let w = write_1000(None);
    let (path, data, end) = w.newest();
    overwrite(&path, end - 20, &[data[end - 20] ^ 0x20]);
    assert_eq!(
        w.expect_loss(LossKind::DamagedFrame, "byte flipped 20 before the end"),
        999
    );
    assert!(
        fs::read(PathBuf::from(format!("{}.damaged", path.display())))
            .unwrap()
            .ne(&data)
    );
}

#[test]
fn the_last_50_bytes_cut_or_zeroed_are_a_reported_loss() {
    let w = write_1000(None);
    let (path, data, end) = w.newest();
    overwrite(&path, end - 50, &[0u8; 50]);
    w.expect_loss(LossKind::DamagedFrame, "last 50 bytes zeroed");

    let w = write_1000(None);
    let (path, _, end) = w.newest();
    set_len(&path, end as u64 - 50);
    w.expect_loss(LossKind::TruncatedSegment, "last 50 bytes cut");
    let _ = data;
}

#[test]
fn synced_frames_zeroed_whole_are_caught_by_the_synced_record() {
    // Zeros where whole sectors of synced frames were: what a lost write looks like, and
    // indistinguishable from an interrupted one inside the segment. The synced record, brought
    // up to date by the clean close, says those frames were durable.
    let w = write_1000(None);
    let (path, data, end) = w.newest();
    let ends = frame_ends(&data);
    let from = ends[ends.len() - 40].next_multiple_of(512);
    assert!(from < end);
    overwrite(&path, from, &vec![0u8; end - from]);
    w.expect_loss(LossKind::BelowSyncedRecord, "synced sectors zeroed");
}

#[test]
fn a_missing_synced_record_is_a_reported_loss() {
    let w = write_1000(None);
    fs::remove_file(w.dir.join("wal").join("synced")).unwrap();
    assert_eq!(
        w.expect_loss(LossKind::SyncedRecordUnreadable, "record deleted"),
        1000
    );
}

#[test]
fn a_log_deleted_behind_its_snapshots_is_a_reported_loss() {
    let w = write_1000(Some(300));
    fs::remove_dir_all(w.dir.join("wal")).unwrap();
    let s = DiskStorage::open(&w.dir, OPTIONS).unwrap();
    let lost = s.recovered().lost_tail().expect("reported");
    assert_eq!(lost.kind, LossKind::LogMissing);
    assert!(s.recovered().snapshot.is_some());
    assert!(!s.recovered().is_empty());
    drop(s);
    let mut s = DiskStorage::open(&w.dir, OPTIONS).unwrap();
    let again = s.recovered().lost_tail().map(|l| l.kind);
    assert_eq!(again, Some(LossKind::Unrecovered));
    // Recovered from the peers without writing anything: the loss is over all the same.
    s.finish_peer_recovery().unwrap();
    drop(s);
    let s = DiskStorage::open(&w.dir, OPTIONS).unwrap();
    assert!(s.recovered().lost_tail().is_none());
}

#[test]
fn a_segment_missing_in_the_middle_is_refused() {
    let w = write_1000(None);
    let segments = wal_segments(&w.dir);
    fs::remove_file(&segments[segments.len() / 2]).unwrap();
    let err = DiskStorage::open(&w.dir, OPTIONS).unwrap_err();
    assert!(err.is_corruption(), "{err}");
}
