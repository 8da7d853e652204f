//! Crash consistency of the disk log. Segments are preallocated and read as zeros where nothing
//! was written, and disks write 512-byte sectors atomically, so a crash (a power cut included)
//! leaves each sector of the last, unsynced group of writes either whole or as it was before:
//! zeros. Whatever subset of those sectors arrived, in whatever order, recovery yields a prefix
//! of what was written, never less than what was synced, and reports no loss: the member (and
//! a whole cluster cut at once) comes back by itself. The file never changes size.

mod common;

use common::{batches, frame_ends, overwrite, wal_segments, Model, Rng};
use std::fs;
use std::path::PathBuf;
use synod_paxos::DurableState;
use synod_storage::{Batch, DiskStorage, LossKind, Options, Storage};
use tempfile::TempDir;

/// One segment for the whole log, so the last group is in one file.
const ONE_SEGMENT: Options = Options {
    segment_bytes_max: 64 << 10,
    snapshots_kept: 2,
};
const SECTOR: usize = 512;

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
    /// The synced record as the crash left it (a real open updates it: put it back).
    record: Vec<u8>,
}

/// Writes `synced` batches with a sync each, then a last group of `group` batches with one
/// sync for all of them, whose end the tests then tear as a crash during that sync would. The
/// synced record is put back as it was before the group: the crash came before that sync
/// returned, and the record only ever says what a returned sync made durable.
fn write_log(seed: u64, synced: usize, group: usize) -> Written {
    let tmp = TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().join("data");
    let all = batches(seed, synced + group);
    let mut s = DiskStorage::open(&dir, ONE_SEGMENT).unwrap();
    for b in &all[..synced] {
        s.append(b).unwrap();
    }
    drop(s);
    let record = dir.join("wal").join("synced");
    let before_group = fs::read(&record).unwrap();
    let mut s = DiskStorage::open(&dir, ONE_SEGMENT).unwrap();
    for b in &all[synced..] {
        s.write(b).unwrap();
    }
    s.sync().unwrap();
    drop(s);
    fs::write(&record, &before_group).unwrap();
    let segment = wal_segments(&dir)[0].clone();
    let bytes = fs::read(&segment).unwrap();
    let frame_ends = frame_ends(&bytes);
    assert_eq!(frame_ends.len(), all.len());
    Written {
        _tmp: tmp,
        dir,
        segment,
        batches: all,
        synced,
        bytes,
        frame_ends,
        record: before_group,
    }
}

impl Written {
    fn prefix(&self, k: usize) -> DurableState {
        Model::after(&self.batches[..k]).durable_state(0)
    }

    /// Where the synced part ends and the last group starts.
    fn group_start(&self) -> usize {
        self.frame_ends[self.synced - 1]
    }

    fn group_end(&self) -> usize {
        *self.frame_ends.last().unwrap()
    }

    /// Whole frames within the first `len` bytes.
    fn whole_frames(&self, len: usize) -> usize {
        self.frame_ends
            .iter()
            .take_while(|&&end| end <= len)
            .count()
    }

    /// The segment as a crash left it when only the sectors of the last group for which
    /// `arrived` says so reached the disk (the others read as zeros from the group's start).
    fn crashed(&self, arrived: impl Fn(usize) -> bool) -> Vec<u8> {
        let mut contents = self.bytes.clone();
        let (start, end) = (self.group_start(), self.group_end());
        let mut sector = start - start % SECTOR;
        while sector < end {
            if !arrived(sector) {
                contents[sector.max(start)..(sector + SECTOR).min(end)].fill(0);
            }
            sector += SECTOR;
        }
        contents
    }

    /// Whole frames `contents` holds unchanged from the start.
    fn intact_frames(&self, contents: &[u8]) -> usize {
        let same = contents
            .iter()
            .zip(&self.bytes)
            .take_while(|(a, b)| a == b)
            .count();
        self.whole_frames(same)
    }

    /// Puts `contents` in place of the segment and checks that recovery brings back exactly
    /// the first `expect` batches with no loss: always read-only (fast: no fsync), and with a
    /// real open when `open`, which must zero what follows them and keep the file's size.
    fn recover_from(
        &self,
        contents: &[u8],
        expect: usize,
        what: &str,
        open: bool,
    ) -> Option<DiskStorage> {
        assert!(
            expect >= self.synced,
            "{what}: the test expects less than was synced"
        );
        overwrite(&self.segment, 0, contents);
        fs::write(self.dir.join("wal").join("synced"), &self.record).unwrap();
        let end = self.frame_ends[expect - 1];
        let recovered = DiskStorage::inspect(&self.dir, ONE_SEGMENT)
            .unwrap_or_else(|e| panic!("{what}: recovery failed: {e}"));
        assert_eq!(recovered.durable_state(), self.prefix(expect), "{what}");
        assert!(
            recovered.lost_tail().is_none(),
            "{what}: {:?}",
            recovered.lost_tail()
        );
        let dirty = contents[end..].iter().any(|&b| b != 0);
        let torn = recovered.report.torn_tail.as_ref();
        assert_eq!(
            torn.map(|t| t.offset as usize),
            dirty.then_some(end),
            "{what}"
        );
        if !open {
            return None;
        }
        let s = DiskStorage::open(&self.dir, ONE_SEGMENT)
            .unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
        assert_eq!(s.recovered().durable_state(), self.prefix(expect), "{what}");
        assert!(s.recovered().lost_tail().is_none(), "{what}");
        let after = fs::read(&self.segment).unwrap();
        assert_eq!(
            after.len(),
            self.bytes.len(),
            "{what}: the size never changes"
        );
        assert!(
            after[end..].iter().all(|&b| b == 0),
            "{what}: the cut tail reads as zeros"
        );
        Some(s)
    }
}

#[test]
fn every_sector_prefix_of_the_last_group_recovers_a_prefix() {
    let w = write_log(11, 30, 24);
    let (start, end) = (w.group_start(), w.group_end());
    assert!(end - start > 3 * SECTOR, "the group spans several sectors");
    let mut cut = start - start % SECTOR;
    let mut n = 0;
    while cut <= end {
        let contents = w.crashed(|sector| sector < cut);
        let arrived_upto = cut.max(start).min(end);
        let expect = w.whole_frames(arrived_upto);
        w.recover_from(
            &contents,
            expect,
            &format!("sectors up to {cut}"),
            n % 2 == 0,
        );
        cut += SECTOR;
        n += 1;
    }
}

#[test]
fn any_sector_of_the_last_group_missing_cuts_before_it() {
    // The kernel and the drive may persist the sectors of one unsynced write in any order: a
    // later frame of the group may be whole while an earlier one is not. That is still an
    // interrupted write (every frame of the group says the same sync point), so the log ends
    // before the first frame with a missing sector; nothing synced is lost, and no loss is
    // reported.
    let w = write_log(14, 30, 24);
    let (start, end) = (w.group_start(), w.group_end());
    let mut missing = start - start % SECTOR;
    while missing < end {
        let contents = w.crashed(|sector| sector != missing);
        let expect = w.intact_frames(&contents);
        w.recover_from(
            &contents,
            expect,
            &format!("sector {missing} missing"),
            true,
        );
        missing += SECTOR;
    }
}

#[test]
fn random_sectors_of_the_last_group_recover_a_prefix() {
    let mut rng = Rng::new(5);
    for seed in 0..40 {
        let w = write_log(
            100 + seed,
            5 + rng.below(20) as usize,
            1 + rng.below(16) as usize,
        );
        for round in 0..8 {
            let bits = rng.next();
            let contents = w.crashed(|sector| bits >> (sector / SECTOR % 64) & 1 == 1);
            let expect = w.intact_frames(&contents);
            let what = format!("seed {seed} round {round}");
            w.recover_from(&contents, expect, &what, round == 0);
        }
    }
}

#[test]
fn a_byte_level_cut_never_loses_synced_batches_silently() {
    // Not what a sector-atomic disk leaves, but nothing synced may go unreported anyway:
    // recovery keeps a prefix of at least the synced batches, and reports a loss only for
    // damage it cannot explain (a bad frame with no sector of zeros), never below the sync.
    let w = write_log(12, 30, 4);
    for cut in w.group_start()..=w.group_end() {
        let mut contents = w.bytes.clone();
        contents[cut..w.group_end()].fill(0);
        overwrite(&w.segment, 0, &contents);
        let r = DiskStorage::inspect(&w.dir, ONE_SEGMENT).unwrap();
        let kept = w.intact_frames(&contents);
        assert_eq!(r.durable_state(), w.prefix(kept), "cut at {cut}");
        if let Some(lost) = r.lost_tail() {
            assert_eq!(lost.kind, LossKind::DamagedFrame, "cut at {cut}");
            assert!(lost.offset as usize >= w.group_start(), "cut at {cut}");
        }
    }
}

#[test]
fn garbage_in_place_of_the_last_group_is_reported_never_served() {
    // A crash leaves zeros where a write did not arrive, never other bytes: garbage with no
    // sector of zeros is damage, reported as a loss at the first bad frame.
    let w = write_log(13, 30, 3);
    let mut rng = Rng::new(99);
    for cut in (w.group_start()..w.group_end()).step_by(7) {
        let mut contents = w.bytes.clone();
        contents[cut..w.group_end()]
            .iter_mut()
            .for_each(|b| *b = rng.next() as u8 | 1);
        overwrite(&w.segment, 0, &contents);
        let r = DiskStorage::inspect(&w.dir, ONE_SEGMENT).unwrap();
        let kept = w.whole_frames(cut);
        assert_eq!(r.durable_state(), w.prefix(kept), "garbage from {cut}");
        let kind = r.lost_tail().map(|l| l.kind);
        assert_eq!(kind, Some(LossKind::DamagedFrame), "garbage from {cut}");
    }
}

#[test]
fn writing_goes_on_after_a_torn_tail_is_cut() {
    let w = write_log(15, 10, 6);
    // The group's first sectors arrived, the rest did not.
    let cut = (w.group_start() / SECTOR + 1) * SECTOR;
    let contents = w.crashed(|sector| sector < cut);
    let expect = w.whole_frames(cut);
    let mut s = w
        .recover_from(&contents, expect, "torn group", true)
        .expect("a real open");
    // The rest of the history goes on from the surviving prefix.
    let more = &batches(15, 30)[expect..];
    for b in more {
        s.append(b).unwrap();
    }
    drop(s);
    let s = DiskStorage::open(&w.dir, ONE_SEGMENT).unwrap();
    let mut model = Model::after(&w.batches[..expect]);
    more.iter().for_each(|b| model.apply(b));
    assert_eq!(s.recovered().durable_state(), model.durable_state(0));
    assert!(s.recovered().report.torn_tail.is_none());
    assert!(s.recovered().lost_tail().is_none());
}

#[test]
fn a_crash_right_after_rotation_leaves_an_unused_segment_that_recovery_accepts() {
    let tmp = TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().join("data");
    let small = Options {
        segment_bytes_max: 1024,
        snapshots_kept: 2,
    };
    let all = batches(17, 60);
    let mut s = DiskStorage::open(&dir, small).unwrap();
    // Synced one by one until a write rotates: the full segment is sealed and synced, the
    // write that needed the new one (and the hard state opening it) are not.
    let mut k = 0;
    loop {
        let before = s.segment_count();
        s.write(&all[k]).unwrap();
        k += 1;
        if s.segment_count() > before && before > 2 {
            break;
        }
        s.sync().unwrap();
    }
    drop(s); // a crash: the unsynced write is lost
    let mut s = DiskStorage::open(&dir, small).unwrap();
    assert_eq!(
        s.recovered().durable_state(),
        Model::after(&all[..k - 1]).durable_state(0)
    );
    assert!(s.recovered().lost_tail().is_none());
    for b in &all[k - 1..] {
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
fn a_crash_while_preparing_the_next_segment_is_no_loss() {
    let tmp = TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().join("data");
    let all = batches(18, 20);
    let mut s = DiskStorage::open(&dir, ONE_SEGMENT).unwrap();
    for b in &all {
        s.append(b).unwrap();
    }
    drop(s);
    // The prepared segment after the active one: cut short, or with a half-written header.
    let spare = wal_segments(&dir).pop().unwrap();
    for damage in 0..2 {
        if damage == 0 {
            fs::write(&spare, b"SYNODW").unwrap();
        } else {
            fs::write(&spare, b"").unwrap();
        }
        let s = DiskStorage::open(&dir, ONE_SEGMENT).unwrap();
        assert!(s.recovered().lost_tail().is_none(), "{damage}");
        assert!(s.recovered().report.torn_tail.is_none(), "{damage}");
        assert_eq!(
            s.recovered().durable_state(),
            Model::after(&all).durable_state(0)
        );
    }
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
