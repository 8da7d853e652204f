//! Snapshot files written off the log's thread (`Storage::snapshot_writer`) and adopted
//! after: durable once written, found after a crash before adoption, refused (and removed)
//! when a newer snapshot overtook them. `MemStorage` models the same files for the simulator:
//! random runs of saves, writes, adoptions, damage and restarts must go the same way on both.

use synod_storage::{DiskStorage, Options, Storage, StorageError};

#[test]
fn written_then_adopted_snapshots_are_the_newest_and_survive_a_crash_before_adoption() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = DiskStorage::open(dir.path(), Options::default()).unwrap();
    let writer = s
        .snapshot_writer()
        .expect("disk storage writes snapshot files");
    let meta = std::thread::spawn(move || writer.write(10, b"at ten").unwrap())
        .join()
        .unwrap();
    assert!(s.latest_snapshot().unwrap().is_none(), "not adopted yet");
    s.adopt_snapshot(meta).unwrap();
    assert_eq!(&s.latest_snapshot().unwrap().unwrap().data[..], b"at ten");

    // Written, then a crash before the log's thread adopted it: recovery finds it.
    let meta = s
        .snapshot_writer()
        .unwrap()
        .write(20, b"at twenty")
        .unwrap();
    assert_eq!(meta.slot, 20);
    drop(s);
    let s = DiskStorage::open(dir.path(), Options::default()).unwrap();
    let latest = s.latest_snapshot().unwrap().unwrap();
    assert_eq!(
        (latest.meta.slot, &latest.data[..]),
        (20, &b"at twenty"[..])
    );
}

#[test]
fn an_overtaken_snapshot_file_is_refused_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = DiskStorage::open(dir.path(), Options::default()).unwrap();
    let meta = s.snapshot_writer().unwrap().write(10, b"ours").unwrap();
    // A snapshot received from a peer, newer, was saved meanwhile.
    s.save_snapshot(30, b"from a peer").unwrap();
    assert!(matches!(
        s.adopt_snapshot(meta),
        Err(StorageError::SnapshotNotNewer {
            slot: 10,
            newest: 30
        })
    ));
    drop(s);
    let s = DiskStorage::open(dir.path(), Options::default()).unwrap();
    assert_eq!(s.latest_snapshot().unwrap().unwrap().meta.slot, 30);
    let files: Vec<String> = walk(dir.path());
    assert!(
        !files.iter().any(|f| f.contains("10")),
        "the overtaken file is gone: {files:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.file_name().to_string_lossy().to_string());
        }
    }
    out
}

/// What the twins are compared on: every operation's outcome, the newest snapshot served, and
/// after every restart what recovery found.
mod twins {
    use super::*;
    use proptest::prelude::*;
    use std::path::Path;
    use synod_paxos::{Ballot, LogRecord, Value};
    use synod_storage::{Batch, MemStorage, SnapshotMeta};

    #[derive(Clone, Debug)]
    enum Op {
        /// A synced batch of one record at the next slot.
        Append,
        Save(u64),
        /// A file written off the log's thread; its meta is kept for `Adopt`.
        Write(u64),
        /// Adopts the `i`-th meta ever written (again, if it was already), or a meta of a
        /// file never written when there is none.
        Adopt(usize),
        Corrupt(u64),
        Restart,
    }

    fn op() -> impl Strategy<Value = Op> {
        let slot = 1..12u64;
        prop_oneof![
            2 => Just(Op::Append),
            3 => slot.clone().prop_map(Op::Save),
            4 => slot.clone().prop_map(Op::Write),
            4 => (0..8usize).prop_map(Op::Adopt),
            2 => slot.prop_map(Op::Corrupt),
            2 => Just(Op::Restart),
        ]
    }

    const OPTIONS: Options = Options {
        segment_bytes_max: 2048,
        snapshots_kept: 2,
    };

    /// A bit flip's effect that a second one cannot undo: the magic overwritten.
    fn corrupt_file(dir: &Path, slot: u64) -> bool {
        let path = dir.join("snap").join(format!("snap-{slot:016x}.snap"));
        let Ok(mut data) = std::fs::read(&path) else {
            return false;
        };
        data[0] = b'X';
        std::fs::write(&path, data).unwrap();
        true
    }

    fn file_name(path: &Path) -> String {
        let path = path.to_string_lossy();
        path.rsplit(['/', ':'])
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// An outcome with the parts that differ between the twins (whole paths, and how the
    /// damage to a snapshot showed) left out.
    fn outcome<T: std::fmt::Debug>(r: &Result<T, StorageError>) -> String {
        match r {
            Ok(v) => format!("ok {v:?}"),
            Err(e) => error(e),
        }
    }

    fn error(e: &StorageError) -> String {
        match e {
            StorageError::SnapshotNotNewer { slot, newest } => {
                format!("not newer {slot} {newest}")
            }
            StorageError::SnapshotCorrupt { path, .. } => format!("corrupt {}", file_name(path)),
            StorageError::Io { path, op, source } => {
                format!("io {op} {} {:?}", file_name(path), source.kind())
            }
            other => format!("other {other}"),
        }
    }

    fn latest<S: Storage>(s: &S) -> String {
        outcome(&s.latest_snapshot().map(|l| l.map(|l| (l.meta, l.data))))
    }

    fn recovered<S: Storage>(s: &S) -> String {
        let r = s.recovered();
        let damaged: Vec<String> = r
            .report
            .damaged_snapshots
            .iter()
            .map(|(p, _why)| file_name(p))
            .collect();
        format!("{:?} {damaged:?} {:?}", r.snapshot, r.durable_state())
    }

    fn batch(slot: u64) -> Batch {
        let record = LogRecord {
            slot,
            ballot: Ballot::new(1, 1),
            value: std::sync::Arc::new(Value::Noop),
            chosen: false,
        };
        Batch::new(None, vec![record])
    }

    fn run(ops: &[Op]) -> Result<(), TestCaseError> {
        let tmp = tempfile::TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let dir = tmp.path().join("data");
        let mut disk = DiskStorage::open(&dir, OPTIONS).unwrap();
        let mut mem = MemStorage::new();
        let mut written: Vec<SnapshotMeta> = Vec::new();
        let mut next_slot = 1;
        for (i, op) in ops.iter().enumerate() {
            let data = format!("{op:?} at step {i}");
            let (d, m) = match op {
                Op::Append => {
                    next_slot += 1;
                    let b = batch(next_slot - 1);
                    (outcome(&disk.append(&b)), outcome(&mem.append(&b)))
                }
                Op::Save(slot) => (
                    outcome(&disk.save_snapshot(*slot, data.as_bytes())),
                    outcome(&mem.save_snapshot(*slot, data.as_bytes())),
                ),
                Op::Write(slot) => {
                    let d = disk
                        .snapshot_writer()
                        .unwrap()
                        .write(*slot, data.as_bytes());
                    let m = mem.snapshot_writer().unwrap().write(*slot, data.as_bytes());
                    if let Ok(meta) = &d {
                        written.push(*meta);
                    }
                    (outcome(&d), outcome(&m))
                }
                Op::Adopt(n) => {
                    let never_written = SnapshotMeta {
                        slot: 12 + *n as u64,
                        size: 1,
                    };
                    let meta = written.get(n % written.len().max(1)).copied();
                    let meta = meta.unwrap_or(never_written);
                    (
                        outcome(&disk.adopt_snapshot(meta)),
                        outcome(&mem.adopt_snapshot(meta)),
                    )
                }
                Op::Corrupt(slot) => (
                    corrupt_file(&dir, *slot).to_string(),
                    mem.corrupt_snapshot(*slot).to_string(),
                ),
                Op::Restart => {
                    drop(disk);
                    let d = DiskStorage::open(&dir, OPTIONS);
                    let m = mem.restart();
                    let opened = d.as_ref().map_or_else(error, |_| "ok ()".to_string());
                    prop_assert_eq!(opened, outcome(&m), "step {}: {:?}", i, op);
                    disk = d.unwrap();
                    (recovered(&disk), recovered(&mem))
                }
            };
            prop_assert_eq!(d, m, "step {}: {:?}", i, op);
            prop_assert_eq!(latest(&disk), latest(&mem), "after step {}", i);
        }
        Ok(())
    }

    proptest! {
        // A failure prints its shrunk input; no regression file beside the test.
        #![proptest_config(ProptestConfig {
            cases: 48,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn memory_and_disk_snapshots_agree(ops in proptest::collection::vec(op(), 1..40)) {
            run(&ops)?;
        }
    }
}
