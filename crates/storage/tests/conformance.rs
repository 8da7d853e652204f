//! One conformance suite, run against both implementations: whatever the simulator proves with
//! `MemStorage` must hold for `DiskStorage`, and the other way round.
//!
//! Each case is a generic function over a [`Harness`] (how to make a fresh store, reopen one
//! after a crash, and damage one); the `conformance!` macro at the bottom runs every case for
//! both.

mod common;

use common::{batches, frame_ends, newest_data_segment, overwrite, record, Model};
use synod_paxos::{Ballot, HardState};
use synod_storage::{Batch, DiskStorage, LossKind, MemStorage, Options, Storage, StorageError};
use tempfile::TempDir;

trait Harness {
    type S: Storage;
    fn fresh(&mut self) -> Self::S;
    /// The process stops (anything not synced may be lost) and starts again from the disk.
    fn reopen(&mut self, s: Self::S) -> Result<Self::S, StorageError>;
    /// Damages the second batch ever written, as a bit flip on disk would.
    fn damage_second_batch(&mut self, s: Self::S) -> Self::S;
    /// Damages the newest snapshot.
    fn damage_newest_snapshot(&mut self, s: Self::S, slot: u64) -> Self::S;
    /// Stops the store and loses synced batches at the end of the log (at least one, fewer
    /// than all), in the way `kind` names: `TruncatedSegment` (the newest segment cut short),
    /// `MissingSegment` (the newest segment deleted) or `DamagedFrame` (a byte flipped in the
    /// last batch); then starts it again.
    fn lose_tail(&mut self, s: Self::S, kind: LossKind) -> Self::S;
}

#[derive(Default)]
struct DiskHarness {
    dirs: Vec<TempDir>,
}

/// Small segments, so every case crosses several rotations.
const OPTIONS: Options = Options {
    segment_bytes_max: 2048,
    snapshots_kept: 2,
};

fn flip_byte(path: &std::path::Path, offset: usize) {
    let mut data = std::fs::read(path).unwrap();
    data[offset] ^= 0x10;
    std::fs::write(path, data).unwrap();
}

impl Harness for DiskHarness {
    type S = DiskStorage;

    fn fresh(&mut self) -> DiskStorage {
        let dir = TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let s = DiskStorage::open(dir.path().join("data"), OPTIONS).unwrap();
        self.dirs.push(dir);
        s
    }

    fn reopen(&mut self, s: DiskStorage) -> Result<DiskStorage, StorageError> {
        let dir = s.dir().to_path_buf();
        drop(s);
        DiskStorage::open(dir, OPTIONS)
    }

    fn damage_second_batch(&mut self, s: DiskStorage) -> DiskStorage {
        let path = s.dir().join("wal").join(format!("wal-{:016x}.log", 1));
        let data = std::fs::read(&path).unwrap();
        flip_byte(&path, frame_ends(&data)[0] + 14);
        s
    }

    fn lose_tail(&mut self, s: DiskStorage, kind: LossKind) -> DiskStorage {
        let dir = s.dir().to_path_buf();
        drop(s);
        let newest = newest_data_segment(&dir);
        let data = std::fs::read(&newest).unwrap();
        let end = *frame_ends(&data).last().unwrap();
        match kind {
            LossKind::TruncatedSegment => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&newest)
                    .unwrap();
                file.set_len(end as u64 - 30).unwrap();
            }
            LossKind::MissingSegment => std::fs::remove_file(&newest).unwrap(),
            LossKind::DamagedFrame => overwrite(&newest, end - 20, &[data[end - 20] ^ 0x04]),
            other => panic!("no such fault: {other:?}"),
        }
        DiskStorage::open(dir, OPTIONS).unwrap()
    }

    fn damage_newest_snapshot(&mut self, s: DiskStorage, slot: u64) -> DiskStorage {
        let path = s.dir().join("snap").join(format!("snap-{slot:016x}.snap"));
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        flip_byte(&path, len - 1);
        s
    }
}

struct MemHarness;

impl Harness for MemHarness {
    type S = MemStorage;

    fn fresh(&mut self) -> MemStorage {
        MemStorage::new()
    }

    fn reopen(&mut self, mut s: MemStorage) -> Result<MemStorage, StorageError> {
        s.restart().map(|()| s)
    }

    fn damage_second_batch(&mut self, mut s: MemStorage) -> MemStorage {
        s.corrupt_record(1);
        s
    }

    fn damage_newest_snapshot(&mut self, mut s: MemStorage, slot: u64) -> MemStorage {
        assert!(s.corrupt_snapshot(slot));
        s
    }

    fn lose_tail(&mut self, mut s: MemStorage, kind: LossKind) -> MemStorage {
        match kind {
            LossKind::TruncatedSegment => assert_eq!(s.lose_synced_tail(1), 1),
            LossKind::MissingSegment => assert_eq!(s.lose_newest_segment(3), 3),
            LossKind::DamagedFrame => assert!(!s.corrupt_record(s.durable_batches() - 1)),
            other => panic!("no such fault: {other:?}"),
        }
        s.restart().unwrap();
        s
    }
}

fn append_all<S: Storage>(s: &mut S, batches: &[Batch]) {
    for b in batches {
        s.append(b).unwrap();
    }
}

fn fresh_storage_is_empty<H: Harness>(h: &mut H) {
    let s = h.fresh();
    assert!(s.recovered().is_empty());
    assert!(s.latest_snapshot().unwrap().is_none());
    let s = h.reopen(s).unwrap();
    assert!(s.recovered().is_empty());
}

fn synced_batches_survive_reopen<H: Harness>(h: &mut H) {
    let all = batches(1, 120);
    let mut s = h.fresh();
    append_all(&mut s, &all[..60]);
    let mut s = h.reopen(s).unwrap();
    assert_eq!(
        s.recovered().durable_state(),
        Model::after(&all[..60]).durable_state(0)
    );
    // Writing goes on after a reopen, and both halves survive the next one.
    append_all(&mut s, &all[60..]);
    let s = h.reopen(s).unwrap();
    assert_eq!(
        s.recovered().durable_state(),
        Model::after(&all).durable_state(0)
    );
}

fn group_commit_makes_every_written_batch_durable<H: Harness>(h: &mut H) {
    let all = batches(2, 40);
    let mut s = h.fresh();
    for b in &all {
        s.write(b).unwrap();
    }
    s.sync().unwrap();
    let s = h.reopen(s).unwrap();
    assert_eq!(
        s.recovered().durable_state(),
        Model::after(&all).durable_state(0)
    );
}

fn unsynced_batches_may_be_lost_but_only_as_a_suffix<H: Harness>(h: &mut H) {
    let all = batches(3, 30);
    let mut s = h.fresh();
    append_all(&mut s, &all[..20]);
    for b in &all[20..] {
        s.write(b).unwrap();
    }
    let s = h.reopen(s).unwrap();
    let got = s.recovered().durable_state();
    let prefix = (20..=30).find(|&k| Model::after(&all[..k]).durable_state(0) == got);
    assert!(
        prefix.is_some(),
        "recovered state is no prefix of at least the synced batches"
    );
    assert!(
        s.recovered().lost_tail().is_none(),
        "unsynced writes are no loss"
    );
}

/// A synced tail lost in any of the ways `lose_tail` knows: the restart cuts the log at the
/// last good batch, reports the loss, and keeps reporting it (however often it restarts) until
/// the driver says the replica recovered from its peers; writes go on meanwhile.
fn a_lost_synced_tail_is_reported_until_peer_recovery_finishes<H: Harness>(h: &mut H) {
    for kind in [
        LossKind::TruncatedSegment,
        LossKind::MissingSegment,
        LossKind::DamagedFrame,
    ] {
        let all = batches(7, 120);
        let mut s = h.fresh();
        append_all(&mut s, &all[..100]);
        let s = h.lose_tail(s, kind);
        let lost = s.recovered().lost_tail().cloned();
        assert_eq!(lost.as_ref().map(|l| l.kind), Some(kind), "{kind:?}");
        assert!(
            !s.recovered().is_empty(),
            "{kind:?}: a replica with a loss is not new"
        );
        let got = s.recovered().durable_state();
        let kept = (0..100)
            .rev()
            .find(|&k| Model::after(&all[..k]).durable_state(0) == got)
            .unwrap_or_else(|| panic!("{kind:?}: not a prefix of what was written"));
        let mut s = h.reopen(s).unwrap();
        let again = s.recovered().lost_tail().map(|l| l.kind);
        assert_eq!(
            again,
            Some(LossKind::Unrecovered),
            "{kind:?}: reported again"
        );
        assert_eq!(
            s.recovered().durable_state(),
            got,
            "{kind:?}: nothing more cut"
        );
        // The replica relearns from its peers and writes on; then recovery is finished.
        append_all(&mut s, &all[kept..]);
        s.finish_peer_recovery().unwrap();
        let s = h.reopen(s).unwrap();
        assert!(
            s.recovered().lost_tail().is_none(),
            "{kind:?}: marker removed"
        );
        assert_eq!(
            s.recovered().durable_state(),
            Model::after(&all).durable_state(0),
            "{kind:?}"
        );
    }
}

fn a_later_record_replaces_an_earlier_one<H: Harness>(h: &mut H) {
    let mut s = h.fresh();
    s.append(&Batch::new(None, vec![record(5, 1, 3, false)]))
        .unwrap();
    s.append(&Batch::new(
        None,
        vec![record(4, 2, 3, false), record(5, 2, 9, true)],
    ))
    .unwrap();
    let s = h.reopen(s).unwrap();
    let records = s.recovered().durable_state().records;
    assert_eq!(records, vec![record(4, 2, 3, false), record(5, 2, 9, true)]);
}

fn the_promise_never_goes_backwards<H: Harness>(h: &mut H) {
    let hs = |round, node| HardState {
        promised: Ballot::new(round, node),
        commit: 0,
    };
    let mut s = h.fresh();
    s.append(&Batch::new(Some(hs(5, 2)), Vec::new())).unwrap();
    let lower = Batch::new(Some(hs(5, 1)), vec![record(1, 5, 1, false)]);
    assert!(matches!(
        s.append(&lower),
        Err(StorageError::PromiseRegressed { .. })
    ));
    // Refusing is not a failure of the storage: equal and higher promises still go through.
    s.append(&Batch::new(Some(hs(5, 2)), Vec::new())).unwrap();
    let s = h.reopen(s).unwrap();
    assert_eq!(s.recovered().hard_state, hs(5, 2));
    assert!(
        s.recovered().records.is_empty(),
        "the refused batch was not written at all"
    );
    let mut s = s;
    assert!(s.append(&Batch::new(Some(hs(4, 9)), Vec::new())).is_err());
    s.append(&Batch::new(Some(hs(6, 1)), Vec::new())).unwrap();
    let s = h.reopen(s).unwrap();
    assert_eq!(s.recovered().hard_state, hs(6, 1));
}

fn an_empty_batch_is_ignored<H: Harness>(h: &mut H) {
    let mut s = h.fresh();
    s.append(&Batch::default()).unwrap();
    let s = h.reopen(s).unwrap();
    assert!(s.recovered().is_empty());
}

fn snapshots_are_kept_served_and_cover_the_log<H: Harness>(h: &mut H) {
    let all = batches(4, 60);
    let mut s = h.fresh();
    append_all(&mut s, &all);
    s.save_snapshot(10, b"at ten").unwrap();
    s.save_snapshot(20, b"at twenty").unwrap();
    for stale in [20, 15] {
        assert!(matches!(
            s.save_snapshot(stale, b"x"),
            Err(StorageError::SnapshotNotNewer { newest: 20, .. })
        ));
    }
    let latest = s.latest_snapshot().unwrap().unwrap();
    assert_eq!(
        (latest.meta.slot, &latest.data[..]),
        (20, &b"at twenty"[..])
    );
    let s = h.reopen(s).unwrap();
    assert_eq!(s.recovered().snapshot.map(|m| m.slot), Some(20));
    assert_eq!(
        s.recovered().durable_state(),
        Model::after(&all).durable_state(20),
        "records at or below the snapshot are dropped"
    );
    assert_eq!(
        &s.latest_snapshot().unwrap().unwrap().data[..],
        b"at twenty"
    );
}

fn compaction_keeps_the_promise_and_everything_above_the_snapshot<H: Harness>(h: &mut H) {
    let promise = HardState {
        promised: Ballot::new(7, 3),
        commit: 1,
    };
    let mut s = h.fresh();
    // The promise is only in the very first batch, which compaction will remove.
    s.append(&Batch::new(Some(promise), vec![record(1, 7, 10, true)]))
        .unwrap();
    let rest: Vec<Batch> = (2..200)
        .map(|slot| Batch::new(None, vec![record(slot, 7, 40, false)]))
        .collect();
    append_all(&mut s, &rest);
    s.compact(150).unwrap(); // no snapshot: nothing may go
    s.save_snapshot(100, b"a").unwrap();
    s.save_snapshot(150, b"b").unwrap();
    s.compact(150).unwrap(); // the log keeps everything above 100, the older snapshot
    let mut s = h.reopen(s).unwrap();
    assert_eq!(s.recovered().hard_state, promise);
    assert_eq!(s.recovered().snapshot.map(|m| m.slot), Some(150));
    let slots: Vec<u64> = s.recovered().records.keys().copied().collect();
    assert_eq!(slots, (151..200).collect::<Vec<_>>());
    // A damaged newest snapshot: recovery falls back to the older one, whose suffix the log
    // still holds, and reports the damaged one.
    s.save_snapshot(180, b"c").unwrap();
    let s = h.damage_newest_snapshot(s, 180);
    assert!(
        s.latest_snapshot().is_err(),
        "a damaged snapshot is never served"
    );
    let s = h.reopen(s).unwrap();
    assert_eq!(s.recovered().snapshot.map(|m| m.slot), Some(150));
    assert_eq!(s.recovered().report.damaged_snapshots.len(), 1);
    assert_eq!(&s.latest_snapshot().unwrap().unwrap().data[..], b"b");
    assert_eq!(s.recovered().records.len(), 49);
}

fn damage_to_synced_data_refuses_to_start<H: Harness>(h: &mut H) {
    let all = batches(5, 40);
    let mut s = h.fresh();
    append_all(&mut s, &all);
    let s = h.damage_second_batch(s);
    match h.reopen(s) {
        Err(e @ StorageError::Corrupt { .. }) => {
            assert!(e.is_corruption());
            assert!(e.to_string().contains("offset"), "{e}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("damage to synced data went unnoticed"),
    }
}

fn writes_after_a_torn_crash_continue_the_log<H: Harness>(h: &mut H) {
    let all = batches(6, 50);
    let mut s = h.fresh();
    append_all(&mut s, &all[..25]);
    s.write(&all[25]).unwrap();
    let mut s = h.reopen(s).unwrap();
    let kept_all = Model::after(&all[..26]).durable_state(0) == s.recovered().durable_state();
    let from = if kept_all { 26 } else { 25 };
    append_all(&mut s, &all[from..]);
    let s = h.reopen(s).unwrap();
    assert_eq!(
        s.recovered().durable_state(),
        Model::after(&all).durable_state(0)
    );
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod disk {
            $( #[test] fn $case() { super::$case(&mut super::DiskHarness::default()) } )*
        }
        mod mem {
            $( #[test] fn $case() { super::$case(&mut super::MemHarness) } )*
        }
    };
}

conformance!(
    fresh_storage_is_empty,
    synced_batches_survive_reopen,
    group_commit_makes_every_written_batch_durable,
    unsynced_batches_may_be_lost_but_only_as_a_suffix,
    a_later_record_replaces_an_earlier_one,
    the_promise_never_goes_backwards,
    an_empty_batch_is_ignored,
    snapshots_are_kept_served_and_cover_the_log,
    compaction_keeps_the_promise_and_everything_above_the_snapshot,
    damage_to_synced_data_refuses_to_start,
    writes_after_a_torn_crash_continue_the_log,
    a_lost_synced_tail_is_reported_until_peer_recovery_finishes,
);
