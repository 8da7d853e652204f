//! Crash consistency of the disk log: whatever a crash leaves of the last group of writes
//! (any prefix of its bytes, zeros, garbage, or pages that reached the disk out of order),
//! recovery yields a prefix of what was written and never less than what was synced.

mod common;

use common::{batches, Model};
use std::fs;
use std::path::{Path, PathBuf};
use synod_paxos::DurableState;
use synod_storage::{Batch, DiskStorage, Options, Storage};
use tempfile::TempDir;

/// One segment for the whole log, so cutting one file is cutting the log.
const ONE_SEGMENT: Options = Options {
    segment_bytes_max: 1 << 30,
    snapshots_kept: 2,
};

struct Written {
    _tmp: TempDir,
    dir: PathBuf,
    segment: PathBuf,
    batches: Vec<Batch>,
    /// Batches synced one by one before the last group.
    synced: usize,
    /// The segment's contents, and where each frame ends.
    bytes: Vec<u8>,
    frame_ends: Vec<usize>,
}

/// Writes `synced` batches with a sync each, then a last group of `group` batches with one
/// sync for all of them.
fn write_log(seed: u64, synced: usize, group: usize) -> Written {
    let tmp = TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().join("data");
    let all = batches(seed, synced + group);
    let mut s = DiskStorage::open(&dir, ONE_SEGMENT).unwrap();
    for b in &all[..synced] {
        s.append(b).unwrap();
    }
    for b in &all[synced..] {
        s.write(b).unwrap();
    }
    s.sync().unwrap();
    drop(s);
    let segment = dir.join("wal").join(format!("wal-{:016x}.log", 1));
    let bytes = fs::read(&segment).unwrap();
    let mut frame_ends = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 12 + len;
        frame_ends.push(pos);
    }
    assert_eq!(frame_ends.len(), all.len());
    Written {
        _tmp: tmp,
        dir,
        segment,
        batches: all,
        synced,
        bytes,
        frame_ends,
    }
}

impl Written {
    fn prefix(&self, k: usize) -> DurableState {
        Model::after(&self.batches[..k]).durable_state(0)
    }

    /// Where the synced part ends: no cut goes below it.
    fn synced_len(&self) -> usize {
        self.frame_ends[self.synced - 1]
    }

    /// Whole frames within the first `len` bytes.
    fn whole_frames(&self, len: usize) -> usize {
        self.frame_ends
            .iter()
            .take_while(|&&end| end <= len)
            .count()
    }

    /// Puts `contents` in place of the segment and checks that recovery brings back exactly
    /// the first `expect` batches: always read-only (fast: no fsync), and for a sample of cases
    /// with a real open, which must cut the log to those batches.
    fn recover_from(&self, contents: &[u8], expect: usize, what: &str) -> Option<DiskStorage> {
        assert!(
            expect >= self.synced,
            "{what}: the test expects less than was synced"
        );
        fs::write(&self.segment, contents).unwrap();
        let end = if expect == 0 {
            0
        } else {
            self.frame_ends[expect - 1]
        };
        let recovered = DiskStorage::inspect(&self.dir, ONE_SEGMENT)
            .unwrap_or_else(|e| panic!("{what}: recovery failed: {e}"));
        assert_eq!(recovered.durable_state(), self.prefix(expect), "{what}");
        let torn = recovered.report.torn_tail.as_ref();
        assert_eq!(
            torn.map(|t| t.offset as usize),
            (contents.len() > end).then_some(end),
            "{what}"
        );
        let sampled =
            contents.len() & 0xf == 0 || contents.len() == end || contents.len() == end + 1;
        if !sampled {
            return None;
        }
        let s = DiskStorage::open(&self.dir, ONE_SEGMENT)
            .unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
        assert_eq!(s.recovered().durable_state(), self.prefix(expect), "{what}");
        assert_eq!(
            fs::metadata(&self.segment).unwrap().len() as usize,
            end,
            "{what}: cut"
        );
        Some(s)
    }

    /// Whole frames that `contents` holds unchanged (a zero or garbage byte may happen to
    /// equal the byte that was written).
    fn intact_frames(&self, contents: &[u8]) -> usize {
        let same = contents
            .iter()
            .zip(&self.bytes)
            .take_while(|(a, b)| a == b)
            .count();
        self.whole_frames(same)
    }
}

#[test]
fn every_cut_of_the_last_group_recovers_a_prefix() {
    let w = write_log(11, 30, 3);
    for cut in w.synced_len()..=w.bytes.len() {
        let expect = w.whole_frames(cut);
        w.recover_from(&w.bytes[..cut], expect, &format!("cut at {cut}"));
    }
}

#[test]
fn every_cut_followed_by_zeros_recovers_a_prefix() {
    let w = write_log(12, 30, 3);
    for cut in w.synced_len()..=w.bytes.len() {
        // Zeros up to the original length (the write extended the file but its data never
        // arrived), and zeros well past it (preallocated space).
        for zeros in [w.bytes.len() - cut, w.bytes.len() - cut + 4096] {
            let mut contents = w.bytes[..cut].to_vec();
            contents.resize(cut + zeros, 0);
            let expect = w.intact_frames(&contents);
            w.recover_from(&contents, expect, &format!("cut at {cut} + {zeros} zeros"));
        }
    }
}

#[test]
fn every_cut_followed_by_garbage_recovers_a_prefix() {
    let w = write_log(13, 30, 3);
    let mut rng = common::Rng::new(99);
    for cut in w.synced_len()..w.bytes.len() {
        let mut contents = w.bytes[..cut].to_vec();
        contents.extend((cut..w.bytes.len()).map(|_| rng.next() as u8));
        let expect = w.intact_frames(&contents);
        w.recover_from(&contents, expect, &format!("garbage from {cut}"));
    }
}

#[test]
fn frames_of_the_last_group_that_reached_the_disk_out_of_order_are_a_torn_tail() {
    // The kernel and the drive may persist the pages of one unsynced write in any order: a
    // later frame of the group may be whole while an earlier one is not. That is still an
    // interrupted write (every frame of the group says the same sync point), so the log ends
    // before the first missing frame; nothing synced is lost, and it is not corruption.
    let w = write_log(14, 30, 4);
    for missing in w.synced..w.batches.len() {
        let start = w.frame_ends[missing - 1];
        let end = w.frame_ends[missing];
        for hole_end in [start + 1, (start + end) / 2, end] {
            let mut contents = w.bytes.clone();
            contents[start..hole_end].fill(0);
            w.recover_from(
                &contents,
                missing,
                &format!("frame {missing} zeroed to {hole_end}"),
            );
        }
    }
}

#[test]
fn writing_goes_on_after_a_torn_tail_is_cut() {
    let w = write_log(15, 10, 2);
    let cut = w.frame_ends[w.synced] + 1; // the group's second frame, torn
    let mut s = w
        .recover_from(&w.bytes[..cut], w.synced + 1, "torn second frame")
        .expect("a real open");
    // The rest of the history goes on from the surviving prefix.
    let more = &batches(15, 16)[w.synced + 1..];
    for b in more {
        s.append(b).unwrap();
    }
    drop(s);
    let s = DiskStorage::open(&w.dir, ONE_SEGMENT).unwrap();
    let mut model = Model::after(&w.batches[..w.synced + 1]);
    more.iter().for_each(|b| model.apply(b));
    assert_eq!(s.recovered().durable_state(), model.durable_state(0));
    assert!(s.recovered().report.torn_tail.is_none());
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn a_crash_right_after_rotation_leaves_an_empty_segment_that_recovery_accepts() {
    let tmp = TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().join("data");
    let small = Options {
        segment_bytes_max: 512,
        snapshots_kept: 2,
    };
    let all = batches(17, 60);
    let mut s = DiskStorage::open(&dir, small).unwrap();
    for b in &all[..40] {
        s.append(b).unwrap();
    }
    drop(s);
    let files = segment_files(&dir);
    assert!(files.len() > 2, "the test needs rotations");
    // The newest segment was created but nothing in it reached the disk.
    fs::write(&files[files.len() - 1], b"").unwrap();
    let mut s = DiskStorage::open(&dir, small).unwrap();
    let got = s.recovered().durable_state();
    let k = (0..=40)
        .rev()
        .find(|&k| Model::after(&all[..k]).durable_state(0) == got)
        .expect("a prefix");
    for b in &all[k..] {
        s.append(b).unwrap();
    }
    drop(s);
    let s = DiskStorage::open(&dir, small).unwrap();
    assert_eq!(
        s.recovered().durable_state(),
        Model::after(&all).durable_state(0)
    );
}

#[test]
fn an_interrupted_snapshot_save_leaves_no_snapshot() {
    let tmp = TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().join("data");
    let mut s = DiskStorage::open(&dir, ONE_SEGMENT).unwrap();
    s.save_snapshot(5, b"whole").unwrap();
    drop(s);
    // A save that crashed before its rename leaves only a temporary file.
    let tmp_file = dir.join("snap").join(format!("snap-{:016x}.snap.tmp", 9));
    fs::write(&tmp_file, b"half a snapsh").unwrap();
    let s = DiskStorage::open(&dir, ONE_SEGMENT).unwrap();
    assert_eq!(s.recovered().snapshot.map(|m| m.slot), Some(5));
    assert!(!tmp_file.exists(), "leftover temporary files are removed");
    assert!(s.recovered().report.damaged_snapshots.is_empty());
}
